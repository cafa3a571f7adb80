// Sets a new password with the token of a reset link.
import { api, formSubmit } from './common.js';

const form = document.getElementById('reset-form');
const token = form.dataset.token;

function expired() {
  form.hidden = true;
  document.getElementById('reset-expired').hidden = false;
}

formSubmit(form, async () => {
  const password = form.password.value;
  if (password.length < 10) throw new Error('Choose a password of 10 characters or more.');
  if (password !== form.password2.value) throw new Error('The two passwords differ.');
  try {
    await api('POST', '/api/v1/password/reset', { token, password });
  } catch (e) {
    if (e.status === 404) return expired();
    throw e;
  }
  form.hidden = true;
  document.getElementById('reset-done').hidden = false;
  document.getElementById('reset-login').focus();
});
if (!token) expired();
else form.password.focus();
