// Asks for a reset link. The answer is the same whether or not the email
// has an account, and so is what the page says.
import { api, formSubmit } from './common.js';

const form = document.getElementById('forgot-form');
formSubmit(form, async () => {
  const email = form.email.value.trim();
  if (!email.includes('@')) throw new Error('Enter the email address of your account.');
  await api('POST', '/api/v1/password/forgot', { email });
  const done = document.getElementById('forgot-done');
  done.textContent = `If an account exists for ${email}, we sent a link to it to choose a new password. The link works once, for 1 hour.`;
  done.hidden = false;
  form.hidden = true;
});
form.email.focus();
