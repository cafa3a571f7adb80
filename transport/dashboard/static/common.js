// Shared by every dashboard page: JSON calls to /api/v1 with the session's
// CSRF token, the logout button, copy buttons and small DOM helpers.
// User content only ever goes in through textContent and attributes.

export const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || '';
export const agentId = () => document.querySelector('meta[name="agent-id"]')?.content || '';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from Retry-After; 0 when absent
  }
}

// api calls the JSON API and returns the decoded answer (null for 204);
// a refusal throws an ApiError with the server's code and sentence (for
// 429 rate_limited, a sentence with the seconds to wait).
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'ChatPacket cannot be reached; check your connection.');
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const e = data?.error || {};
    if (res.status === 401 && document.querySelector('meta[name="agent-id"]')) {
      // The session ended (logged out elsewhere, expired): log in again.
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    }
    const retry = Math.max(0, parseInt(res.headers.get('Retry-After') || '0', 10) || 0);
    if (res.status === 429) {
      throw new ApiError(429, e.code || 'rate_limited', `Too many attempts, try again in ${Math.max(1, retry)} s.`, retry);
    }
    throw new ApiError(res.status, e.code || 'http_' + res.status, e.message || `The server answered ${res.status}.`, retry);
  }
  return data;
}

// el builds an element: props sets properties (className, textContent,
// type…), attrs attributes; children are nodes or strings (as text).
export function el(tag, props = {}, children = [], attrs = {}) {
  const n = document.createElement(tag);
  Object.assign(n, props);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  for (const c of children) n.append(c);
  return n;
}

export function showError(node, message) {
  if (!node) return;
  node.textContent = message || '';
  node.hidden = !message;
}

export const newClientId = () =>
  (crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join(''));

export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// formSubmit runs fn on submit with the submit button disabled, showing a
// refusal in the form's #form-error (or, on pages with several forms, its
// p.error[role="alert"]).
export function formSubmit(form, fn) {
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    const err = form.querySelector('#form-error') || form.querySelector('p.error[role="alert"]');
    showError(err, '');
    button.disabled = true;
    try {
      await fn();
    } catch (e) {
      showError(err, e.message || String(e));
      err?.focus?.();
    } finally {
      button.disabled = false;
    }
  });
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

function wireCopyButtons() {
  for (const b of document.querySelectorAll('button[data-copy]')) {
    b.addEventListener('click', async () => {
      const src = document.getElementById(b.dataset.copy);
      const status = document.getElementById('copy-status');
      if (await copyText(src.textContent)) {
        if (status) status.textContent = 'Copied.';
      } else {
        // No clipboard permission: select it so Ctrl+C copies.
        const range = document.createRange();
        range.selectNodeContents(src);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        if (status) status.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
      }
    });
  }
}

function wireLogout() {
  const b = document.getElementById('logout');
  if (!b) return;
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await api('POST', '/api/v1/logout');
    } catch { /* logged out or not, the login page is where to go */ }
    location.assign('/login');
  });
}

wireCopyButtons();
wireLogout();
