import { api, el, formSubmit, showError } from './common.js';

async function loadTeam() {
  const rows = document.getElementById('team-rows');
  try {
    const { agents } = await api('GET', '/api/v1/agents');
    rows.replaceChildren(...agents.map(a => el('tr', {}, [
      el('td', { textContent: a.name }),
      el('td', { textContent: a.email }),
      el('td', { textContent: a.role }),
    ])));
  } catch (e) {
    showError(document.getElementById('team-error'), e.message);
  }
}

const form = document.getElementById('invite-form');
if (form) {
  formSubmit(form, async () => {
    const email = form.email.value.trim();
    const inv = await api('POST', '/api/v1/invitations', { email, role: form.role.value });
    document.getElementById('invite-to').textContent = email;
    document.getElementById('invite-url').textContent = inv.invite_url;
    document.getElementById('invite-expires').textContent = new Date(inv.expires_at).toLocaleString();
    document.getElementById('invite-result').hidden = false;
    form.reset();
  });
}
loadTeam();
