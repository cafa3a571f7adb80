/* ChatPacket chat frame. It runs on ChatPacket's origin inside the iframe
   the loader adds, speaks to the loader only by postMessage (checked
   against the host origin given in its URL), and to ChatPacket through
   the widget API and /ws/widget. Message bodies are text: they go into the
   page with textContent, never as HTML. */
'use strict';
(() => {
  const q = new URLSearchParams(location.search);
  const KEY = q.get('key');
  const HOST = q.get('origin');
  // A page opened from a file has no origin postMessage can target (the
  // loader names it "null"): the frame then posts to its parent whatever
  // it is, and still takes messages from its parent only.
  const TARGET = HOST === 'null' ? '*' : HOST;
  const fromHost = (o) => o === HOST || (HOST === 'null' && /^(null|file:)/.test(o));
  const $ = (id) => document.getElementById(id);
  const ui = {
    launcher: $('launcher'), panel: $('panel'), close: $('close'), title: $('title'), greeting: $('greeting'),
    history: $('history'), list: $('list'), convs: $('convs'), fresh: $('new'), log: $('log'), typing: $('typing'),
    status: $('status'), composer: $('composer'), text: $('text'), contact: $('contact'), contactOpen: $('contact-open'),
    contactCancel: $('contact-cancel'), cname: $('cname'), cemail: $('cemail'),
  };

  const S = {
    sid: null, // the session id (the loader keeps it in the host's storage)
    token: null, // the visitor token, for the API and the socket
    me: null, // the visitor id
    open: false,
    starting: null, // the promise of the session's start
    ws: null,
    live: false, // the socket is open
    tries: 0, // failed connections in a row: the back-off's exponent
    timer: 0,
    convs: new Map(), // id → conversation
    cur: null, // the conversation shown; null: a new one, not started yet
    draft: null, // the messages of a conversation not started yet
    draftSent: null, // the client_id that starts it, while in flight
    mine: new Map(), // client_id → own message
    pages: [], // page views not sent yet
    typedAt: 0,
    typingTimer: 0,
  };
  const newConv = (id) => ({ id, msgs: [], seqs: new Set(), last: 0, lastOther: 0, agentRead: 0, sentRead: 0, watched: false, status: '' });
  S.draft = newConv(null);
  const conv = (id) => {
    let c = S.convs.get(id);
    if (!c) S.convs.set(id, (c = newConv(id)));
    return c;
  };
  const shown = () => (S.cur ? conv(S.cur) : S.draft);

  // --- The host page, by postMessage -------------------------------------
  const tell = (type, data) => {
    if (parent !== window) parent.postMessage(Object.assign({ type }, data), TARGET);
  };
  addEventListener('message', (e) => {
    if (e.source !== parent || !fromHost(e.origin) || !e.data) return;
    const d = e.data;
    if (d.type === 'cp:init') {
      page(d.page);
      if (typeof d.session_id === 'string' && d.session_id && !S.sid) {
        S.sid = d.session_id;
        start();
      }
      if (d.open) setOpen(true, false);
    } else if (d.type === 'cp:page') {
      page(d.page);
    }
  });
  const page = (p) => {
    if (!p || typeof p.url !== 'string') return;
    S.pages.push({ type: 'page_view', url: p.url, title: String(p.title || ''), referrer: String(p.referrer || '') });
    if (S.pages.length > 50) S.pages.shift(); // a long visit before any chat keeps its latest pages
    sendPages();
  };
  const sendPages = () => {
    while (S.live && S.pages.length) frame(S.pages.shift());
  };

  // --- The API -------------------------------------------------------------
  const api = async (method, path, body) => {
    const headers = { 'Content-Type': 'application/json' };
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    const r = await fetch(path, { method, headers, body: body && JSON.stringify(body), credentials: 'omit', cache: 'no-store' });
    if (!r.ok) throw new Error(method + ' ' + path + ': ' + r.status);
    return r.status === 204 ? null : r.json();
  };
  const session = async () => {
    const r = await api('POST', '/api/v1/widget/sessions', S.sid ? { widget_key: KEY, session_id: S.sid } : { widget_key: KEY });
    S.sid = r.session_id;
    S.token = r.visitor_token;
    S.me = r.visitor_id;
    tell('cp:store', { session_id: S.sid, open: S.open });
  };

  // start begins (or continues) the visitor's session: only once the
  // visitor opened the chat, on this page or an earlier one.
  const start = () => (S.starting ||= (async () => {
    await session();
    const { conversations } = await api('GET', '/api/v1/widget/conversations');
    listConvs(conversations);
    if (S.cur === null && !S.draft.msgs.length && conversations.length) show(conversations[0].id);
    connect();
  })().catch(() => {
    S.starting = null;
    status('Cannot reach the chat. Trying again…');
    setTimeout(start, 2000 + Math.random() * 3000);
  }));

  // --- The socket ----------------------------------------------------------
  const frame = (f) => S.live && S.ws.send(JSON.stringify(f));
  const connect = () => {
    clearTimeout(S.timer);
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/widget?token=' + encodeURIComponent(S.token));
    S.ws = ws;
    let healthy = 0;
    ws.onopen = () => {
      S.live = true;
      // A server that accepts and at once closes must not make this a
      // tight loop: the back-off restarts only once the socket held.
      healthy = setTimeout(() => (S.tries = 0), 5000);
      status('');
      for (const c of S.convs.values()) if (c.watched) frame({ type: 'resume', conversation_id: c.id, after: c.last });
      sendPages();
      flush();
      readNow();
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      receive(f);
    };
    ws.onclose = () => {
      clearTimeout(healthy);
      if (S.ws !== ws) return;
      S.live = false;
      S.ws = null;
      for (const m of S.mine.values()) m.inflight = false;
      S.draftSent = null;
      status('Connection lost. Reconnecting…');
      retry();
    };
  };
  // retry reconnects after an exponential back-off with jitter, from 0.5 s
  // to 30 s; after a few failures it asks for a fresh token first (it may
  // have expired).
  const retry = () => {
    const d = Math.min(30000, 500 * 2 ** S.tries++);
    S.timer = setTimeout(async () => {
      if (S.tries > 3) {
        try {
          await session();
        } catch (e) {
          retry();
          return;
        }
      }
      connect();
    }, d / 2 + (Math.random() * d) / 2);
  };
  addEventListener('online', () => {
    if (S.token && !S.ws) connect();
  });

  const receive = (f) => {
    const c = f.conversation_id ? conv(f.conversation_id) : null;
    switch (f.type) {
      case 'ack': {
        const m = S.mine.get(f.client_id);
        if (!m) return;
        if (m.conv === null) adopt(f.conversation_id);
        delivered(c, m, f.seq);
        flush();
        break;
      }
      case 'message': {
        if (c.seqs.has(f.seq)) return;
        const m = f.client_id && f.author.kind === 'visitor' && S.mine.get(f.client_id);
        if (m) {
          if (m.conv === null) adopt(f.conversation_id);
          delivered(c, m, f.seq);
        } else {
          const msg = { seq: f.seq, body: f.body, kind: f.author.kind, mine: f.author.kind === 'visitor', erased: !!f.erased, at: f.created_at, state: 'sent' };
          if (msg.mine && msg.seq <= c.agentRead) msg.state = 'read';
          c.seqs.add(f.seq);
          c.msgs.push(msg);
          place(c, msg);
          if (!msg.mine) {
            c.lastOther = Math.max(c.lastOther, f.seq);
            if (c.id === S.cur) typing(false);
          }
        }
        c.last = Math.max(c.last, f.seq);
        readNow();
        break;
      }
      case 'typing':
        if (c.id === S.cur && f.author && f.author.kind !== 'visitor') typing(true);
        break;
      case 'read':
        if (f.reader_id === S.me || f.seq <= c.agentRead) return;
        c.agentRead = f.seq;
        for (const m of c.msgs) if (m.mine && m.seq && m.seq <= f.seq && m.state !== 'read') setState(m, 'read');
        break;
      case 'conversation':
        c.status = f.status || c.status;
        break;
      case 'error':
        status(f.message || 'Something went wrong.');
        break;
    }
  };

  // adopt makes the conversation the server started for the draft's first
  // message the home of every draft message.
  const adopt = (id) => {
    const c = conv(id);
    c.watched = true; // a send makes the socket watch it
    for (const m of S.draft.msgs) {
      m.conv = id;
      c.msgs.push(m);
    }
    const wasShown = S.cur === null;
    S.draft = newConv(null);
    S.draftSent = null;
    if (wasShown) S.cur = id;
  };
  const delivered = (c, m, seq) => {
    if (!m.seq) {
      m.seq = seq;
      c.seqs.add(seq);
      c.last = Math.max(c.last, seq);
      setState(m, seq <= c.agentRead ? 'read' : 'sent');
      if (c.id === S.cur) place(c, m);
    }
  };

  // --- Sending -------------------------------------------------------------
  const newID = () => 'w' + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  const say = (body) => {
    const c = shown();
    const m = { cid: newID(), body, mine: true, kind: 'visitor', state: 'sending', conv: S.cur, inflight: false };
    c.msgs.push(m);
    S.mine.set(m.cid, m);
    place(c, m);
    flush();
  };
  // flush sends every message not acknowledged yet, in order; a new
  // conversation's later messages wait until its first is acknowledged,
  // since that names the conversation. Resending after a reconnect is
  // safe: the same client_id gets the same seq.
  const flush = () => {
    if (!S.live) {
      if (S.token && [...S.mine.values()].some((m) => m.state === 'sending')) status('Offline. Your messages will be sent when the connection is back.');
      return;
    }
    for (const m of S.mine.values()) {
      if (m.state !== 'sending' || m.inflight) continue;
      if (m.conv) {
        m.inflight = true;
        frame({ type: 'send', conversation_id: m.conv, client_id: m.cid, body: m.body });
      } else if (!S.draftSent) {
        m.inflight = true;
        S.draftSent = m.cid;
        frame({ type: 'send', client_id: m.cid, body: m.body });
      }
    }
  };

  // --- Reading and typing -----------------------------------------------------
  const readNow = () => {
    const c = S.cur && S.convs.get(S.cur);
    if (!c || !S.live || !S.open || document.visibilityState !== 'visible' || c.lastOther <= c.sentRead) return;
    c.sentRead = c.last;
    frame({ type: 'read', conversation_id: c.id, seq: c.last });
  };
  document.addEventListener('visibilitychange', readNow);
  const typing = (on) => {
    clearTimeout(S.typingTimer);
    ui.typing.textContent = on ? 'typing…' : '';
    if (on) S.typingTimer = setTimeout(() => typing(false), 4000);
  };

  // --- Drawing -------------------------------------------------------------
  const status = (text) => {
    ui.status.textContent = text;
  };
  const stateText = { sending: 'Sending…', sent: 'Sent', read: 'Read' };
  const setState = (m, state) => {
    m.state = state;
    if (m.stateEl) m.stateEl.textContent = stateText[state];
  };
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const draw = (m) => {
    const e = el('div', 'msg ' + (m.mine ? 'mine' : m.kind === 'system' ? 'system' : 'them') + (m.erased ? ' erased' : ''));
    if (!m.mine && m.kind === 'agent') e.append(el('span', 'who sr', 'Agent:'));
    if (m.mine) e.append(el('span', 'who sr', 'You:'));
    const b = el('p', 'body', m.erased ? 'This message was erased.' : m.body);
    if (m.at) b.title = new Date(m.at).toLocaleString();
    e.append(b);
    if (m.mine) e.append((m.stateEl = el('small', 'state', stateText[m.state])));
    e.m = m;
    return e;
  };
  // place puts m's element in the log in seq order (messages not yet
  // acknowledged last), if c is the conversation shown.
  const place = (c, m) => {
    if (c !== shown()) return;
    m.el ||= draw(m);
    const atEnd = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    let before = null;
    if (m.seq) {
      for (const e of ui.log.children) {
        if (e.m !== m && (!e.m.seq || e.m.seq > m.seq)) {
          before = e;
          break;
        }
      }
    }
    if (m.el.parentNode !== ui.log || m.el.nextSibling !== before) ui.log.insertBefore(m.el, before);
    if (atEnd || m.mine) ui.log.scrollTop = ui.log.scrollHeight;
  };
  const render = () => {
    ui.log.replaceChildren();
    const c = shown();
    for (const m of [...c.msgs].sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity))) place(c, m);
    ui.log.scrollTop = ui.log.scrollHeight;
  };
  const show = (id) => {
    S.cur = id;
    typing(false);
    if (id) {
      const c = conv(id);
      if (!c.watched) {
        c.watched = true;
        frame({ type: 'resume', conversation_id: id, after: c.last });
      }
    }
    render();
    showList(false);
    readNow();
  };

  const listConvs = (list) => {
    ui.convs.replaceChildren();
    for (const c of list) {
      const b = el('button');
      b.type = 'button';
      const when = c.last_message_at ? new Date(c.last_message_at).toLocaleString() : 'New';
      b.append(el('span', '', 'Conversation of ' + when), el('small', '', c.status === 'closed' ? 'Closed' : 'Open'));
      b.addEventListener('click', () => {
        show(c.id);
        ui.text.focus();
      });
      const li = el('li');
      li.append(b);
      ui.convs.append(li);
    }
  };
  const showList = (on) => {
    ui.list.hidden = !on;
    ui.log.hidden = on;
    ui.history.setAttribute('aria-expanded', String(on));
    if (on && S.token) api('GET', '/api/v1/widget/conversations').then((r) => listConvs(r.conversations), () => {});
  };

  const setOpen = (open, byVisitor) => {
    if (S.open === open) return;
    S.open = open;
    tell('cp:resize', { open });
    ui.launcher.hidden = open;
    ui.launcher.setAttribute('aria-expanded', String(open));
    ui.panel.hidden = !open;
    if (open) {
      if (S.sid) tell('cp:store', { session_id: S.sid, open });
      start();
      if (byVisitor) ui.text.focus();
      ui.log.scrollTop = ui.log.scrollHeight;
      readNow();
    } else {
      if (S.sid) tell('cp:store', { session_id: S.sid, open });
      if (byVisitor) ui.launcher.focus();
    }
  };

  // --- Events ----------------------------------------------------------------
  ui.launcher.addEventListener('click', () => setOpen(true, true));
  ui.close.addEventListener('click', () => setOpen(false, true));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && S.open) setOpen(false, true);
  });
  ui.history.addEventListener('click', () => showList(ui.list.hidden));
  ui.fresh.addEventListener('click', () => {
    show(null);
    ui.text.focus();
  });
  ui.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = ui.text.value.trim();
    if (!body) return;
    ui.text.value = '';
    grow();
    if (!ui.list.hidden) showList(false);
    start();
    say(body);
  });
  ui.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  const grow = () => {
    ui.text.style.height = 'auto';
    ui.text.style.height = Math.min(ui.text.scrollHeight + 2, 120) + 'px';
  };
  ui.text.addEventListener('input', () => {
    grow();
    const now = Date.now();
    if (S.cur && ui.text.value && now - S.typedAt >= 2000 && S.live) {
      S.typedAt = now;
      frame({ type: 'typing', conversation_id: S.cur });
    }
  });
  ui.contactOpen.addEventListener('click', () => {
    ui.contact.hidden = false;
    ui.cname.focus();
  });
  ui.contactCancel.addEventListener('click', () => {
    ui.contact.hidden = true;
    ui.contactOpen.focus();
  });
  ui.contact.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await start();
      await api('POST', '/api/v1/widget/contact', { name: ui.cname.value.trim(), email: ui.cemail.value.trim() });
      ui.contact.hidden = true;
      status('Thanks, your details are saved.');
    } catch (err) {
      status('Please check the email address and try again.');
    }
  });

  // --- Configuration ------------------------------------------------------
  fetch('/api/v1/widget/config?widget_key=' + encodeURIComponent(KEY), { credentials: 'omit' })
    .then((r) => (r.ok ? r.json() : null))
    .then((c) => {
      if (!c) return;
      if (c.name) {
        ui.title.textContent = c.name;
        ui.launcher.setAttribute('aria-label', 'Open chat with ' + c.name);
      }
      ui.greeting.textContent = c.widget_greeting || 'Ask us anything. We usually answer within minutes.';
      if (/^#[0-9a-f]{6}$/i.test(c.widget_color || '')) {
        const n = parseInt(c.widget_color.slice(1), 16);
        const lum = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
        document.documentElement.style.setProperty('--c', c.widget_color);
        document.documentElement.style.setProperty('--on', lum > 160 ? '#111' : '#fff');
      }
    }, () => {});
  tell('cp:ready', {});
})();
