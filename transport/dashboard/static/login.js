import { api, formSubmit } from './common.js';

const form = document.getElementById('login-form');
formSubmit(form, async () => {
  await api('POST', '/api/v1/login', { email: form.email.value.trim(), password: form.password.value });
  location.assign(form.dataset.next || '/app');
});
form.email.focus();
