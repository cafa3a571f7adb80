import { api, formSubmit } from './common.js';

const form = document.getElementById('signup-form');
formSubmit(form, async () => {
  const email = form.email.value.trim();
  const password = form.password.value;
  if (password.length < 10) throw new Error('Choose a password of 10 characters or more.');
  await api('POST', '/api/v1/signup', {
    organization: form.organization.value.trim(), name: form.name.value.trim(), email, password,
  });
  await api('POST', '/api/v1/login', { email, password });
  location.assign('/app');
});
form.organization.focus();
