// The login form. With two-factor on, the first answer is totp_required:
// the code field appears and the form is sent again with it.
import { api, formSubmit } from './common.js';

const form = document.getElementById('login-form');
const totpRow = document.getElementById('totp-row');

formSubmit(form, async () => {
  const body = { email: form.email.value.trim(), password: form.password.value };
  const asked = !totpRow.hidden;
  if (asked) {
    body.totp = form.totp.value.trim();
    if (!body.totp) {
      form.totp.focus();
      throw new Error('Enter the code of your authenticator app, or a recovery code.');
    }
  }
  try {
    await api('POST', '/api/v1/login', body);
  } catch (e) {
    if (e.code === 'totp_required') {
      totpRow.hidden = false;
      form.totp.value = '';
      form.totp.focus();
      if (!asked) return; // not an error: the second step
      throw new Error('Enter the code of your authenticator app, or a recovery code.');
    }
    if (e.code === 'invalid_credentials' && asked) {
      form.totp.value = '';
      throw new Error('That did not work: the code is wrong or was used already (or the password is wrong). Try the current code.');
    }
    throw e;
  }
  location.assign(form.dataset.next || '/app');
});
form.email.focus();
