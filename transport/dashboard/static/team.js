// The team page: the agents (owners change roles), teams (owners and
// admins create, delete and set members), invitations, and the owner's
// audit log.
import { api, agentId, el, formSubmit, showError } from './common.js';

const $ = id => document.getElementById(id);
const page = $('team-page');
const manager = page.dataset.manager === 'yes';
const owner = page.dataset.owner === 'yes';
const me = agentId();
const ROLES = ['owner', 'admin', 'agent'];

let agents = []; // the roster: [{id, name, email, role}]

const nameOf = id => agents.find(a => a.id === id)?.name || (id ? 'Agent ' + id.slice(-6) : '—');

// ---- agents and roles ---------------------------------------------------

function roleCell(a) {
  if (!owner) return el('td', { textContent: a.role });
  const sel = el('select', {}, ROLES.map(r => el('option', { value: r, textContent: r })), { 'aria-label': 'Role of ' + a.name, 'data-agent': a.id });
  sel.value = a.role;
  const err = el('p', { className: 'error' }, [], { role: 'alert', hidden: '' });
  sel.addEventListener('change', async () => {
    showError(err, '');
    sel.disabled = true;
    try {
      const saved = await api('PUT', `/api/v1/agents/${encodeURIComponent(a.id)}/role`, { role: sel.value });
      a.role = saved.role;
      loadAudit();
      // An owner who is no longer one sees the page as their new role.
      if (a.id === me && saved.role !== 'owner') location.reload();
    } catch (e) {
      sel.value = a.role;
      showError(err, e.message);
    } finally {
      sel.disabled = false;
    }
  });
  return el('td', {}, [sel, err]);
}

async function loadAgents() {
  try {
    ({ agents } = await api('GET', '/api/v1/agents'));
    $('team-rows').replaceChildren(...agents.map(a => el('tr', {}, [
      el('td', { textContent: a.name }),
      el('td', { textContent: a.email }),
      roleCell(a),
    ], { 'data-agent': a.id })));
  } catch (e) {
    showError($('team-error'), e.message);
  }
}

// ---- teams -------------------------------------------------------------

function teamCard(t) {
  const members = new Set(t.member_ids || []);
  const err = el('p', { className: 'error' }, [], { role: 'alert', hidden: '' });
  const status = el('span', { className: 'status' }, [], { role: 'status' });
  const boxes = agents.map(a => {
    const box = el('input', { type: 'checkbox', value: a.id, checked: members.has(a.id), disabled: !manager });
    return el('label', { className: 'toggle member' }, [box, ' ' + a.name]);
  });
  const card = el('div', { className: 'team-card' }, [
    el('h3', { textContent: t.name }),
    el('fieldset', {}, [el('legend', { className: 'visually-hidden', textContent: 'Members of ' + t.name }), ...boxes]),
  ], { 'data-team': t.id });
  if (manager) {
    const save = el('button', { type: 'button', className: 'primary', textContent: 'Save members' }, [], { 'data-save': t.id });
    const del = el('button', { type: 'button', className: 'quiet danger', textContent: 'Delete team' }, [], { 'data-delete': t.id });
    save.addEventListener('click', async () => {
      showError(err, '');
      status.textContent = '';
      save.disabled = true;
      const ids = [...card.querySelectorAll('input[type="checkbox"]:checked')].map(b => b.value);
      try {
        await api('PUT', `/api/v1/teams/${encodeURIComponent(t.id)}/members`, { agent_ids: ids });
        status.textContent = 'Saved.';
        loadAudit();
      } catch (e) {
        showError(err, e.message);
      } finally {
        save.disabled = false;
      }
    });
    del.addEventListener('click', async () => {
      if (!confirm(`Delete the team ${t.name}? Its conversations are then seen by owners and admins only.`)) return;
      showError(err, '');
      del.disabled = true;
      try {
        await api('DELETE', `/api/v1/teams/${encodeURIComponent(t.id)}`);
        loadTeams();
        loadAudit();
      } catch (e) {
        showError(err, e.message);
        del.disabled = false;
      }
    });
    card.append(el('div', { className: 'bar' }, [save, status, del]));
  }
  card.append(err);
  return card;
}

async function loadTeams() {
  try {
    const { teams } = await api('GET', '/api/v1/teams');
    teams.sort((a, b) => a.name.localeCompare(b.name));
    $('teams').replaceChildren(...teams.map(teamCard));
    $('teams-empty').hidden = teams.length > 0;
    showError($('teams-error'), '');
  } catch (e) {
    showError($('teams-error'), 'The teams could not load: ' + e.message);
  }
}

const teamForm = $('team-form');
if (teamForm) {
  formSubmit(teamForm, async () => {
    const name = teamForm.name.value.trim();
    if (!name) throw new Error('Name the team.');
    await api('POST', '/api/v1/teams', { name });
    teamForm.reset();
    await loadTeams();
    loadAudit();
  });
}

// ---- invitations --------------------------------------------------------

const form = $('invite-form');
if (form) {
  formSubmit(form, async () => {
    const email = form.email.value.trim();
    const inv = await api('POST', '/api/v1/invitations', { email, role: form.role.value });
    $('invite-to').textContent = email;
    $('invite-url').textContent = inv.invite_url;
    $('invite-expires').textContent = new Date(inv.expires_at).toLocaleString();
    $('invite-result').hidden = false;
    form.reset();
  });
}

// ---- audit log (owners) ------------------------------------------------

function detailText(d) {
  return Object.entries(d || {}).map(([k, v]) => {
    if ((k === 'agent_id' || k === 'invited_by') && agents.some(a => a.id === v)) v = nameOf(v);
    if (k === 'member_ids') v = v ? v.split(',').map(nameOf).join(', ') : 'none';
    return `${k.replace(/_/g, ' ')}: ${v}`;
  }).join('; ');
}

async function loadAudit() {
  if (!owner) return;
  try {
    const { events } = await api('GET', '/api/v1/audit?limit=100');
    $('audit-rows').replaceChildren(...events.map(ev => el('tr', {}, [
      el('td', {}, [el('time', { textContent: new Date(ev.at).toLocaleString() }, [], { datetime: ev.at })]),
      el('td', { textContent: ev.actor_id ? nameOf(ev.actor_id) : '—' }),
      el('td', {}, [el('code', { textContent: ev.action })]),
      el('td', { textContent: ev.ip || '' }),
      el('td', { className: 'detail', textContent: detailText(ev.detail) }),
    ], { 'data-action': ev.action })));
    showError($('audit-error'), '');
  } catch (e) {
    showError($('audit-error'), 'The audit log could not load: ' + e.message);
  }
}

async function start() {
  await loadAgents();
  await Promise.all([loadTeams(), loadAudit()]);
}
start();
