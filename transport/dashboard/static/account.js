// The agent's own account: password, two-factor, login history, sessions,
// and, for owners, deleting the organization.
import { api, el, formSubmit, showError } from './common.js';

const $ = id => document.getElementById(id);

// ---- password ----------------------------------------------------------

const pwForm = $('password-form');
formSubmit(pwForm, async () => {
  $('pw-status').textContent = '';
  const next = pwForm.new_password.value;
  if (next.length < 10) throw new Error('Choose a new password of 10 characters or more.');
  try {
    await api('POST', '/api/v1/password', { current_password: pwForm.current_password.value, new_password: next });
  } catch (e) {
    if (e.code === 'invalid_credentials') throw new Error('Your current password is wrong.');
    throw e;
  }
  pwForm.reset();
  $('pw-status').textContent = 'Password changed. Your other sessions were logged out.';
});

// ---- verification ------------------------------------------------------

const resend = $('resend-verify');
if (resend) {
  resend.addEventListener('click', async () => {
    resend.disabled = true;
    try {
      await api('POST', '/api/v1/account/verify/resend');
      $('resend-status').textContent = 'Sent: open the newest email.';
    } catch (e) {
      $('resend-status').textContent = e.code === 'already_verified' ? 'Your email is verified already.' : e.message;
      resend.disabled = false;
    }
  });
}

// ---- two-factor --------------------------------------------------------

const tf = $('two-factor');

function showTwoFactor(on) {
  tf.dataset.enabled = on ? 'on' : 'off';
  $('tf-state').textContent = on ? 'Two-factor authentication is on.' : 'Two-factor authentication is off.';
  $('tf-off').hidden = on;
  $('tf-disable-form').hidden = !on;
  if (!on) $('tf-recovery').hidden = true;
  $('tf-enroll').hidden = true;
}

$('tf-setup').addEventListener('click', async () => {
  const b = $('tf-setup');
  showError($('tf-error'), '');
  b.disabled = true;
  try {
    const s = await api('POST', '/api/v1/2fa/setup');
    $('tf-qr').src = 'data:image/png;base64,' + s.qr_png_base64;
    $('tf-secret').textContent = s.secret;
    $('tf-off').hidden = true;
    $('tf-enroll').hidden = false;
    $('tf-code').focus();
  } catch (e) {
    if (e.code === 'two_factor_enabled') showTwoFactor(true);
    else showError($('tf-error'), e.message);
  } finally {
    b.disabled = false;
  }
});

const enableForm = $('tf-enable-form');
formSubmit(enableForm, async () => {
  const code = enableForm.code.value.replace(/\s+/g, '');
  if (!code) throw new Error('Enter the 6-digit code your app shows.');
  const { recovery_codes: codes } = await api('POST', '/api/v1/2fa/enable', { code });
  enableForm.reset();
  $('tf-qr').removeAttribute('src');
  $('tf-secret').textContent = '';
  showTwoFactor(true);
  $('recovery-codes').textContent = codes.join('\n');
  $('tf-recovery').hidden = false;
  $('recovery-codes').focus();
});

const disableForm = $('tf-disable-form');
formSubmit(disableForm, async () => {
  try {
    await api('POST', '/api/v1/2fa/disable', { password: disableForm.password.value, code: disableForm.code.value.trim() });
  } catch (e) {
    if (e.code === 'invalid_credentials') throw new Error('Your password is wrong.');
    if (e.code === 'two_factor_disabled') { showTwoFactor(false); return; }
    throw e;
  }
  disableForm.reset();
  showTwoFactor(false);
});

// ---- logins and sessions ------------------------------------------------

async function loadLogins() {
  try {
    const { logins } = await api('GET', '/api/v1/account/logins');
    $('login-rows').replaceChildren(...logins.map(l => el('tr', {}, [
      el('td', {}, [el('time', { textContent: new Date(l.at).toLocaleString() }, [], { datetime: l.at })]),
      el('td', { textContent: l.browser || 'Unknown' }),
      el('td', { textContent: l.os || 'Unknown' }),
      el('td', { textContent: l.ip }),
      el('td', {}, l.new_device ? [el('span', { className: 'badge warn', textContent: 'new device' })] : []),
    ])));
    showError($('logins-error'), '');
  } catch (e) {
    showError($('logins-error'), 'Your logins could not load: ' + e.message);
  }
}

$('logout-all').addEventListener('click', async () => {
  const b = $('logout-all');
  b.disabled = true;
  showError($('logout-all-error'), '');
  try {
    await api('POST', '/api/v1/logout/all');
    location.assign('/login');
  } catch (e) {
    showError($('logout-all-error'), e.message);
    b.disabled = false;
  }
});

showTwoFactor(tf.dataset.enabled === 'on');
loadLogins();

// ---- deleting the organization (owners) ---------------------------------

const del = $('delete-org');
const delForm = $('del-form');
if (delForm) {
  formSubmit(delForm, async () => {
    if (delForm.confirm.value.trim() !== del.dataset.org) throw new Error('Type the organization\'s name exactly to confirm.');
    await api('POST', '/api/v1/account/terminate');
    location.reload();
  });
}

const delCancel = $('del-cancel');
if (delCancel) {
  delCancel.addEventListener('click', async () => {
    delCancel.disabled = true;
    showError($('del-error'), '');
    try {
      await api('POST', '/api/v1/account/terminate/cancel');
      location.reload();
    } catch (e) {
      showError($('del-error'), e.message);
      delCancel.disabled = false;
    }
  });
  // The countdown to the erasure, in days and hours.
  const at = new Date($('del-at').getAttribute('datetime'));
  const tick = () => {
    const left = Math.max(0, at - Date.now());
    const days = Math.floor(left / 864e5), hours = Math.floor(left % 864e5 / 36e5);
    $('del-countdown').textContent = left === 0 ? 'any moment now'
      : `in ${days} day${days === 1 ? '' : 's'} and ${hours} hour${hours === 1 ? '' : 's'}`;
  };
  tick();
  setInterval(tick, 60e3);
}
