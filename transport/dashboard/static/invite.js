import { api, formSubmit, showError } from './common.js';

const form = document.getElementById('invite-form');
const info = document.getElementById('invite-info');
const token = form.dataset.token;

async function load() {
  try {
    const inv = await api('GET', '/api/v1/invitations/' + encodeURIComponent(token));
    document.getElementById('invite-org').textContent = inv.organization;
    document.getElementById('invite-email').textContent = inv.email;
    document.getElementById('invite-role').textContent = inv.role;
    info.textContent = `You are invited to answer chats for ${inv.organization}.`;
    document.getElementById('invite-facts').hidden = false;
    form.hidden = false;
    form.name.focus();
  } catch (e) {
    info.textContent = e.status === 404 || e.status === 410
      ? 'This invitation is not valid any more. Ask your team for a new one.'
      : e.message;
  }
}

formSubmit(form, async () => {
  if (form.password.value.length < 10) throw new Error('Choose a password of 10 characters or more.');
  await api('POST', '/api/v1/invitations/' + encodeURIComponent(token) + '/accept', {
    name: form.name.value.trim(), password: form.password.value,
  });
  location.assign('/app');
});
showError(document.getElementById('form-error'), '');
load();
