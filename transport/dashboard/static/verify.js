// Spends the token of a verification link: the page, not the GET, does it,
// so a mail scanner that fetches the link leaves it unused.
import { api } from './common.js';

const status = document.getElementById('verify-status');
const token = status.dataset.token;

async function verify() {
  if (!token) {
    status.textContent = 'This link has no token. Open the link of the email exactly as it is.';
    return;
  }
  try {
    await api('POST', '/api/v1/account/verify', { token });
    status.textContent = 'Your email is verified. Thank you!';
  } catch (e) {
    status.textContent = e.status === 404
      ? 'This link is not valid any more: it works once, for 48 hours. If you opened it before, your email is already verified (your Account page says so).'
      : 'Your email could not be verified: ' + e.message;
    status.classList.add('error');
  }
}
verify();
