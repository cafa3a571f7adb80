// The inbox: the conversation list, one conversation and its visitor, kept
// live by /ws/agent. The socket delivers every conversation of the tenant
// as it becomes active; the open conversation is also resumed on it, so
// its typing and read frames come too.
import { api, agentId, el, showError, newClientId, formatTime } from './common.js';

const me = agentId();
const $ = id => document.getElementById(id);

const state = {
  status: 'open',
  filter: 'all',
  convs: new Map(),    // id → {id, visitor_id, status, assignee_id, last_message_at, last_seq, preview, unread}
  agents: new Map(),   // id → {id, name, role}
  teams: new Map(),    // id → {id, name, member_ids}
  visitors: new Map(), // visitor id → name given by the visitor
  current: null,       // the open conversation's id
  nodes: new Map(),    // seq → <li> of the open conversation
  pending: new Map(),  // client_id → {conv, body, note, node, timer}
  maxSeq: 0,           // highest seq shown in the open conversation
  seenSeq: 0,          // highest seq the visitor read
  lastTypingSent: 0,
};

const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 5000;
const VISITOR_REFRESH_MS = 10000;
const ACK_WITHIN_MS = 10000;

// ---- the list ----------------------------------------------------------

function visitorLabel(c) {
  return state.visitors.get(c.visitor_id) || (c.visitor_id ? 'Visitor ' + c.visitor_id.slice(-6) : 'Visitor');
}

function agentName(id) {
  if (!id) return '';
  if (id === me) return 'You';
  return state.agents.get(id)?.name || 'An agent';
}

function merge(c) {
  const old = state.convs.get(c.id) || { id: c.id };
  for (const [k, v] of Object.entries(c)) if (v !== undefined) old[k] = v;
  state.convs.set(c.id, old);
  return old;
}

function shown(c) {
  if (c.status !== state.status) return false;
  if (state.filter === 'unassigned') return !c.assignee_id;
  if (state.filter === 'mine') return c.assignee_id === me;
  return true;
}

function renderList() {
  const list = $('conversations');
  const items = [...state.convs.values()].filter(shown)
    .sort((a, b) => (b.last_message_at || '').localeCompare(a.last_message_at || ''));
  list.replaceChildren(...items.map(c => {
    const meta = [];
    if (c.assignee_id) meta.push(el('span', { className: 'assignee', textContent: agentName(c.assignee_id) }));
    const b = el('button', { type: 'button', className: 'conv-item' + (c.unread ? ' unread' : '') }, [
      el('span', { className: 'conv-who', textContent: visitorLabel(c) }),
      el('time', { className: 'when', textContent: formatTime(c.last_message_at) }, [], c.last_message_at ? { datetime: c.last_message_at } : {}),
      el('span', { className: 'preview', textContent: c.preview || ' ' }),
      el('span', { className: 'meta' }, meta),
    ], { 'data-id': c.id });
    if (c.id === state.current) b.setAttribute('aria-current', 'true');
    if (c.unread) b.setAttribute('aria-label', visitorLabel(c) + ', new messages: ' + (c.preview || ''));
    b.addEventListener('click', () => openConversation(c.id, true));
    return el('li', {}, [b]);
  }));
  $('list-empty').hidden = items.length > 0;
  const open = [...state.convs.values()].filter(c => c.status === 'open' && c.unread).length;
  document.title = (open ? `(${open}) ` : '') + 'Inbox · ChatPacket';
}

async function loadList() {
  try {
    const { conversations } = await api('GET', '/api/v1/conversations?status=all');
    for (const c of conversations) merge(c);
    showError($('list-error'), '');
  } catch (e) {
    showError($('list-error'), 'The inbox could not load: ' + e.message);
  }
  renderList();
  loadPreviews();
}

// loadPreviews fetches the last message of the newest conversations that
// have no preview yet.
async function loadPreviews() {
  const todo = [...state.convs.values()].filter(c => !c.preview && c.last_seq > 0)
    .sort((a, b) => (b.last_message_at || '').localeCompare(a.last_message_at || '')).slice(0, 30);
  await Promise.all(todo.map(async c => {
    try {
      const { messages } = await api('GET', `/api/v1/conversations/${encodeURIComponent(c.id)}/messages?after=${c.last_seq - 1}&limit=1`);
      if (messages.length && !c.preview) c.preview = previewOf(messages[0]);
    } catch { /* a preview is a nicety */ }
  }));
  if (todo.length) renderList();
}

function previewOf(m) {
  if (m.erased) return '(erased)';
  const who = m.internal ? 'Note: ' : m.author?.kind === 'agent' ? (m.author.id === me ? 'You: ' : agentName(m.author.id) + ': ') : '';
  return who + (m.body || '');
}

async function loadAgents() {
  try {
    const { agents } = await api('GET', '/api/v1/agents');
    const sel = $('assignee');
    sel.replaceChildren(el('option', { value: '', textContent: 'Unassigned' }));
    for (const a of agents) {
      state.agents.set(a.id, a);
      sel.append(el('option', { value: a.id, textContent: a.id === me ? `${a.name} (you)` : a.name }));
    }
  } catch (e) {
    showError($('list-error'), 'The team could not load: ' + e.message);
  }
}

async function loadTeams() {
  try {
    const { teams } = await api('GET', '/api/v1/teams');
    state.teams = new Map(teams.map(t => [t.id, t]));
    const sel = $('conv-team');
    sel.replaceChildren(el('option', { value: '', textContent: 'No team' }),
      ...teams.sort((a, b) => a.name.localeCompare(b.name)).map(t => el('option', { value: t.id, textContent: t.name })));
    if (state.current) renderHead();
  } catch (e) {
    showError($('list-error'), 'The teams could not load: ' + e.message);
  }
}

// setTeamChoice shows a conversation's team; one deleted since (or not
// loaded yet) gets an option of its own, so the select does not lie.
function setTeamChoice(id) {
  const sel = $('conv-team');
  if (id && !state.teams.has(id) && !sel.querySelector(`option[value="${CSS.escape(id)}"]`)) {
    sel.append(el('option', { value: id, textContent: 'A deleted team' }));
  }
  sel.value = id;
}

for (const b of document.querySelectorAll('.tab')) {
  b.addEventListener('click', () => {
    state.status = b.dataset.status;
    for (const o of document.querySelectorAll('.tab')) o.setAttribute('aria-pressed', String(o === b));
    renderList();
    loadList();
  });
}
for (const b of document.querySelectorAll('.filter')) {
  b.addEventListener('click', () => {
    state.filter = b.dataset.filter;
    for (const o of document.querySelectorAll('.filter')) o.setAttribute('aria-pressed', String(o === b));
    renderList();
  });
}

// ---- one conversation --------------------------------------------------

let visitorTimer = null;
let typingTimer = null;

function statusLabel(s) {
  return { open: 'Open', pending: 'Pending', closed: 'Closed' }[s] || s || '';
}

function renderHead() {
  const c = state.convs.get(state.current);
  if (!c) return;
  $('conv-title').textContent = visitorLabel(c);
  const badge = $('conv-status');
  badge.textContent = statusLabel(c.status);
  badge.className = 'badge status-' + (c.status || 'open');
  $('assignee').value = c.assignee_id || '';
  $('assign-me').disabled = c.assignee_id === me;
  setTeamChoice(c.team_id || '');
  for (const b of document.querySelectorAll('[data-set-status]')) {
    const on = b.dataset.setStatus === c.status;
    b.setAttribute('aria-pressed', String(on));
    b.disabled = on;
  }
}

async function openConversation(id, push) {
  if (!id) return closeView();
  const c = state.convs.get(id) || merge({ id });
  state.current = id;
  state.nodes.clear();
  state.maxSeq = 0;
  state.seenSeq = 0;
  c.unread = false;
  $('messages').replaceChildren();
  for (const p of state.pending.values()) if (p.conv === id) $('messages').append(p.node);
  $('typing').textContent = '';
  showError($('conv-error'), '');
  $('conv-placeholder').hidden = true;
  $('conv').hidden = false;
  $('visitor-pane').hidden = false;
  $('inbox').classList.add('show-conv');
  const url = '/app?c=' + encodeURIComponent(id);
  if (push) history.pushState({ c: id }, '', url);
  else history.replaceState({ c: id }, '', url);
  renderHead();
  renderList();
  clearInterval(visitorTimer);
  visitorTimer = setInterval(() => loadVisitor(), VISITOR_REFRESH_MS);
  loadVisitor();
  await loadMessages(id);
  if (state.current !== id) return;
  // Watch it from what we have: typing and read frames follow, and
  // anything written meanwhile is replayed.
  sendFrame({ type: 'resume', conversation_id: id, after: state.maxSeq });
  markRead();
  if (push) $('reply').focus();
}

async function loadMessages(id) {
  const c = state.convs.get(id);
  let after = c?.last_seq > 100 ? c.last_seq - 100 : 0;
  try {
    for (let page = 0; page < 10; page++) {
      const { messages } = await api('GET', `/api/v1/conversations/${encodeURIComponent(id)}/messages?after=${after}&limit=100`);
      if (state.current !== id) return;
      for (const m of messages) showMessage(m);
      if (messages.length < 100) break;
      after = messages[messages.length - 1].seq;
    }
  } catch (e) {
    showError($('conv-error'), 'The messages could not load: ' + e.message);
  }
}

function closeView() {
  state.current = null;
  clearInterval(visitorTimer);
  $('conv').hidden = true;
  $('visitor-pane').hidden = true;
  $('conv-placeholder').hidden = false;
  $('inbox').classList.remove('show-conv');
  renderList();
}

function authorLabel(m) {
  if (m.internal) return 'Internal note · ' + agentName(m.author?.id);
  switch (m.author?.kind) {
    case 'visitor': return visitorLabel(state.convs.get(state.current) || {});
    case 'agent': return agentName(m.author.id);
    default: return 'ChatPacket';
  }
}

function messageNode(m) {
  const kind = m.internal ? 'note' : (m.author?.kind || 'system');
  const li = el('li', { className: 'msg msg-' + kind + (m.author?.id === me ? ' mine' : '') });
  if (m.seq) li.dataset.seq = m.seq;
  if (m.client_id) li.dataset.clientId = m.client_id;
  li.append(
    el('div', { className: 'msg-head' }, [
      el('span', { className: 'msg-author', textContent: authorLabel(m) }),
      el('time', { className: 'msg-time', textContent: formatTime(m.created_at) }, [], m.created_at ? { datetime: m.created_at } : {}),
    ]),
    el('p', { className: 'msg-body', textContent: m.erased ? '(erased at the visitor’s request)' : m.body }),
  );
  if (kind === 'agent' || kind === 'note') li.append(el('span', { className: 'msg-status' }));
  return li;
}

// place puts a message's node in seq order, before messages still sending.
function place(node, seq) {
  const list = $('messages');
  for (const other of list.children) {
    if (other === node) continue;
    const s = Number(other.dataset.seq || Infinity);
    if (s > seq) {
      list.insertBefore(node, other);
      return;
    }
  }
  list.append(node);
}

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function showMessage(m) {
  if (state.nodes.has(m.seq)) return;
  const p = m.client_id && state.pending.get(m.client_id);
  let node;
  if (p && p.conv === state.current) {
    node = p.node;
    settle(m.client_id, m.seq);
  } else {
    node = messageNode(m);
  }
  node.dataset.seq = m.seq;
  state.nodes.set(m.seq, node);
  state.maxSeq = Math.max(state.maxSeq, m.seq);
  place(node, m.seq);
  updateStatuses();
  scrollDown();
}

function setStatus(node, text) {
  const s = node.querySelector('.msg-status');
  if (s) s.textContent = text;
}

// updateStatuses marks the team's replies Sent or Seen (by the visitor).
function updateStatuses() {
  for (const [seq, node] of state.nodes) {
    if (node.classList.contains('msg-agent')) setStatus(node, seq <= state.seenSeq ? 'Seen' : 'Sent');
    else if (node.classList.contains('msg-note')) setStatus(node, 'Saved');
  }
}

// settle ends a pending message: the server has it under seq.
function settle(clientId, seq) {
  const p = state.pending.get(clientId);
  if (!p) return;
  clearTimeout(p.timer);
  state.pending.delete(clientId);
  p.node.dataset.seq = seq;
  p.node.querySelector('.msg-retry')?.remove();
  if (p.conv === state.current && !state.nodes.has(seq)) {
    state.nodes.set(seq, p.node);
    state.maxSeq = Math.max(state.maxSeq, seq);
    place(p.node, seq);
  }
  setStatus(p.node, p.note ? 'Saved' : (seq <= state.seenSeq ? 'Seen' : 'Sent'));
}

function failed(clientId, why) {
  const p = state.pending.get(clientId);
  if (!p) return;
  setStatus(p.node, 'Not sent' + (why ? ': ' + why : ''));
  if (!p.node.querySelector('.msg-retry')) {
    const retry = el('button', { type: 'button', className: 'quiet msg-retry', textContent: 'Retry' });
    retry.addEventListener('click', () => { retry.remove(); deliver(clientId); });
    p.node.append(retry);
  }
}

// deliver sends a pending message: a reply over the socket (REST when the
// socket is down), a note over REST. Retries keep the client_id, so the
// server stores each once.
async function deliver(clientId) {
  const p = state.pending.get(clientId);
  if (!p) return;
  setStatus(p.node, 'Sending…');
  clearTimeout(p.timer);
  if (!p.note && ws?.readyState === WebSocket.OPEN) {
    sendFrame({ type: 'send', conversation_id: p.conv, client_id: clientId, body: p.body });
    p.timer = setTimeout(() => failed(clientId, 'no answer'), ACK_WITHIN_MS);
    return;
  }
  const path = `/api/v1/conversations/${encodeURIComponent(p.conv)}/${p.note ? 'notes' : 'messages'}`;
  try {
    const { seq } = await api('POST', path, { client_id: clientId, body: p.body });
    settle(clientId, seq);
  } catch (e) {
    failed(clientId, e.message);
  }
}

function sendReply() {
  const box = $('reply');
  const body = box.value.trim();
  if (!body || !state.current) return;
  const note = $('note-toggle').checked;
  const clientId = newClientId();
  const node = messageNode({ author: { kind: 'agent', id: me }, body, internal: note, client_id: clientId, created_at: new Date().toISOString() });
  node.classList.add('sending');
  state.pending.set(clientId, { conv: state.current, body, note, node, timer: null });
  $('messages').append(node);
  scrollDown();
  box.value = '';
  deliver(clientId);
}

$('reply-form').addEventListener('submit', ev => { ev.preventDefault(); sendReply(); });
$('reply').addEventListener('keydown', ev => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendReply();
  }
});
$('reply').addEventListener('input', () => {
  if ($('note-toggle').checked || !state.current) return; // notes are not for the visitor's eyes
  const now = Date.now();
  if (now - state.lastTypingSent >= TYPING_EVERY_MS) {
    state.lastTypingSent = now;
    sendFrame({ type: 'typing', conversation_id: state.current });
  }
});
$('note-toggle').addEventListener('change', () => {
  const note = $('note-toggle').checked;
  $('reply-form').classList.toggle('note-mode', note);
  $('reply').placeholder = note ? 'Write an internal note… (only your team sees it)' : 'Write a reply… (Enter sends, Shift+Enter for a new line)';
  $('send').textContent = note ? 'Add note' : 'Send';
  $('reply').focus();
});

function markRead() {
  if (!state.current || !state.maxSeq || document.visibilityState !== 'visible') return;
  sendFrame({ type: 'read', conversation_id: state.current, seq: state.maxSeq });
}
document.addEventListener('visibilitychange', markRead);

async function update(path, body) {
  const id = state.current;
  showError($('conv-error'), '');
  try {
    const c = await api('POST', `/api/v1/conversations/${encodeURIComponent(id)}/${path}`, body);
    if (c?.id) merge(c);
    renderHead();
    renderList();
  } catch (e) {
    showError($('conv-error'), e.message);
  }
}

$('assignee').addEventListener('change', () => update('assign', { assignee_id: $('assignee').value }));
$('assign-me').addEventListener('click', () => update('assign', { assignee_id: me }));
$('conv-team').addEventListener('change', () => update('team', { team_id: $('conv-team').value }));
for (const b of document.querySelectorAll('[data-set-status]')) {
  b.addEventListener('click', () => update('status', { status: b.dataset.setStatus }));
}
$('back').addEventListener('click', () => { history.pushState({}, '', '/app'); closeView(); });
document.addEventListener('keydown', ev => {
  if (ev.key === 'Escape' && state.current && $('inbox').classList.contains('show-conv') && matchMedia('(max-width: 800px)').matches) {
    history.pushState({}, '', '/app');
    closeView();
  }
});
window.addEventListener('popstate', () => {
  const id = new URLSearchParams(location.search).get('c');
  if (id) openConversation(id, false);
  else closeView();
});

// ---- the visitor panel -------------------------------------------------

function setFact(id, text) {
  $(id).textContent = text || '—';
}

function pageLink(view) {
  const label = view.title || view.url;
  if (/^https?:\/\//i.test(view.url)) {
    return el('a', { href: view.url, textContent: label, target: '_blank', rel: 'noopener noreferrer' }, [], { title: view.url });
  }
  return document.createTextNode(label);
}

async function loadVisitor() {
  const c = state.convs.get(state.current);
  if (!c?.visitor_id) return;
  const conv = c.id;
  try {
    const v = await api('GET', '/api/v1/visitors/' + encodeURIComponent(c.visitor_id));
    if (state.current !== conv) return;
    showError($('visitor-error'), '');
    const privacy = $('v-privacy');
    if (privacy) privacy.hidden = !!v.erased;
    if (v.erased) {
      for (const f of ['v-name', 'v-email', 'v-page', 'v-browser', 'v-os', 'v-seen', 'v-referrer', 'v-ip']) setFact(f, '');
      setFact('v-name', 'Erased at the visitor’s request');
      $('v-pages').replaceChildren();
      return;
    }
    if (privacy) {
      $('v-export').href = '/api/v1/visitors/' + encodeURIComponent(c.visitor_id) + '/export';
      $('v-withdraw').disabled = !!v.consent_withdrawn;
      $('v-withdraw').textContent = v.consent_withdrawn ? 'Consent to tracking withdrawn' : 'Withdraw consent to tracking';
    }
    if (v.name && state.visitors.get(c.visitor_id) !== v.name) {
      state.visitors.set(c.visitor_id, v.name);
      renderHead();
      renderList();
    }
    setFact('v-name', v.name);
    setFact('v-email', v.email);
    setFact('v-browser', v.browser);
    setFact('v-os', v.os);
    setFact('v-seen', formatTime(v.last_seen_at));
    setFact('v-referrer', v.referrer);
    setFact('v-ip', v.ip);
    const views = v.page_views || [];
    $('v-page').replaceChildren(views.length ? pageLink(views[0]) : '—');
    $('v-pages').replaceChildren(...views.map(p => el('li', {}, [
      pageLink(p), ' ', el('time', { className: 'hint', textContent: formatTime(p.at) }, [], { datetime: p.at }),
    ])));
  } catch (e) {
    showError($('visitor-error'), 'Visitor details could not load: ' + e.message);
  }
}

// privacyAction asks for confirmation, then calls path for the open
// conversation's visitor and reloads the panel.
async function privacyAction(question, path) {
  const c = state.convs.get(state.current);
  if (!c?.visitor_id || !confirm(question)) return;
  showError($('v-privacy-error'), '');
  try {
    await api(path.method, '/api/v1/visitors/' + encodeURIComponent(c.visitor_id) + path.suffix);
    // Open it again: an erased visitor's messages now read as erased.
    if (state.current) await openConversation(state.current, false);
  } catch (e) {
    showError($('v-privacy-error'), e.message);
  }
}

if ($('v-privacy')) {
  $('v-withdraw').addEventListener('click', () => privacyAction(
    'Withdraw this visitor’s consent to tracking? Their page views are deleted and no new ones are kept. Their conversations stay.',
    { method: 'POST', suffix: '/consent/withdraw' }));
  $('v-under16').addEventListener('click', () => privacyAction(
    'Mark this visitor as under 16? ChatPacket keeps no data of children: everything about them is erased at once, on every node. This cannot be undone.',
    { method: 'POST', suffix: '/under-16' }));
  $('v-erase').addEventListener('click', () => privacyAction(
    'Erase this visitor? Their contact, pages and messages are destroyed on every node and in every backup’s restore. This cannot be undone.',
    { method: 'DELETE', suffix: '' }));
}

// ---- the socket --------------------------------------------------------

let ws = null;
let backoff = 500;
let everOpen = false;

function setConn(text, live) {
  const s = $('conn-status');
  s.textContent = text;
  s.classList.toggle('live', !!live);
}

function sendFrame(f) {
  if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(f));
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const sock = new WebSocket(`${proto}//${location.host}/ws/agent`);
  ws = sock;
  sock.addEventListener('open', () => {
    setConn('Live', true);
    backoff = 500;
    if (everOpen) {
      // Back after a break: catch up on the list and the open conversation.
      loadList();
      if (state.current) sendFrame({ type: 'resume', conversation_id: state.current, after: state.maxSeq });
    }
    everOpen = true;
    for (const id of state.pending.keys()) deliver(id);
  });
  sock.addEventListener('message', ev => {
    let f;
    try { f = JSON.parse(ev.data); } catch { return; }
    handleFrame(f);
  });
  sock.addEventListener('close', () => {
    if (ws !== sock) return;
    setConn('Reconnecting…', false);
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  });
}

function handleFrame(f) {
  switch (f.type) {
    case 'conversation': {
      const c = merge({ id: f.conversation_id, visitor_id: f.visitor_id || undefined, status: f.status, assignee_id: f.assignee_id ?? undefined, team_id: f.team_id ?? undefined, last_seq: f.last_seq || undefined });
      if (f.assignee_id === '') c.assignee_id = '';
      if (f.conversation_id === state.current) renderHead();
      renderList();
      break;
    }
    case 'message': {
      const c = state.convs.get(f.conversation_id) || merge({ id: f.conversation_id, status: 'open' });
      c.last_seq = Math.max(c.last_seq || 0, f.seq);
      if (!c.last_message_at || (f.created_at || '') >= c.last_message_at) {
        c.last_message_at = f.created_at || c.last_message_at;
        c.preview = previewOf(f);
      }
      if (f.conversation_id === state.current) {
        showMessage(f);
        if (f.author?.kind === 'visitor') {
          $('typing').textContent = '';
          markRead();
          loadVisitor();
        }
      } else if (f.author?.kind === 'visitor') {
        c.unread = true;
      }
      renderList();
      break;
    }
    case 'conversation_removed':
      // Moved to a team this agent is not in: it leaves their view.
      state.convs.delete(f.conversation_id);
      if (f.conversation_id === state.current) {
        history.pushState({}, '', '/app');
        closeView();
        showError($('list-error'), 'That conversation moved to a team you are not in.');
      }
      renderList();
      break;
    case 'ack':
      settle(f.client_id, f.seq);
      break;
    case 'typing':
      if (f.conversation_id === state.current && f.author?.kind === 'visitor') {
        $('typing').textContent = visitorLabel(state.convs.get(state.current) || {}) + ' is typing…';
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => { $('typing').textContent = ''; }, TYPING_SHOWN_MS);
      }
      break;
    case 'read': {
      const c = state.convs.get(f.conversation_id);
      if (f.conversation_id === state.current && c && f.reader_id === c.visitor_id) {
        state.seenSeq = Math.max(state.seenSeq, f.seq);
        updateStatuses();
      }
      break;
    }
    case 'error':
      if (state.current) showError($('conv-error'), f.message || f.code);
      break;
  }
}

// ---- start -------------------------------------------------------------

async function start() {
  connect();
  await Promise.all([loadAgents(), loadTeams(), loadList()]);
  const first = $('inbox').dataset.conversation || new URLSearchParams(location.search).get('c');
  if (first) openConversation(first, false);
}
start();
