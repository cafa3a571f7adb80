/* ChatPacket widget loader. It adds the chat frame (an iframe served by
   ChatPacket) and resizes it when the frame asks. Nothing is stored and no
   request is made to anyone but ChatPacket until the visitor opens the
   chat; then the frame hands over the session id, kept in this site's
   localStorage under "chatpacket:<widget key>" so that the next page goes
   on with the same conversation. The id never goes into a URL. */
(() => {
  const me = document.currentScript || document.querySelector('script[data-key][src*="/widget.js"]');
  if (!me || !me.dataset.key || document.getElementById('chatpacket-frame')) return;
  const key = me.dataset.key;
  const cp = new URL(me.src, location.href).origin;
  const skey = 'chatpacket:' + key;
  let stored = null;
  try {
    stored = JSON.parse(localStorage.getItem(skey));
  } catch (e) { /* storage blocked or the entry garbled: start afresh */ }
  const f = document.createElement('iframe');
  f.id = 'chatpacket-frame';
  f.title = 'Chat';
  f.referrerPolicy = 'no-referrer';
  // A page opened from a file has no origin to name: "null".
  const here = /^(null|file:)/.test(location.origin) ? 'null' : location.origin;
  f.src = cp + '/widget/frame?key=' + encodeURIComponent(key) + '&origin=' + encodeURIComponent(here);
  let open = false;
  // Hidden until the frame says it is ready: a widget that cannot start
  // (an unknown key, an organization being deleted) shows nothing.
  let ready = false;
  let last = location.href;

  // CSSOM, not a style attribute: a strict CSP on the host page allows it.
  const size = () => {
    const full = open && innerWidth < 480;
    const edge = full ? '0' : '16px';
    Object.assign(f.style, {
      position: 'fixed', right: edge, bottom: edge, zIndex: '2147483647', visibility: ready ? 'visible' : 'hidden',
      border: '0', margin: '0', padding: '0', background: 'transparent', colorScheme: 'normal',
      width: full ? '100%' : open ? '380px' : '60px',
      height: full ? '100%' : open ? '600px' : '60px',
      maxWidth: full ? 'none' : 'calc(100% - 32px)',
      maxHeight: full ? 'none' : 'calc(100% - 32px)',
      borderRadius: full ? '0' : open ? '12px' : '50%',
      boxShadow: full ? 'none' : '0 4px 24px rgba(0,0,0,.25)',
    });
  };
  const post = (type, data) => f.contentWindow && f.contentWindow.postMessage(Object.assign({ type }, data), cp);
  const page = (referrer) => ({ url: location.href, title: document.title, referrer });

  addEventListener('message', (e) => {
    if (e.source !== f.contentWindow || e.origin !== cp || !e.data) return;
    const d = e.data;
    if (d.type === 'cp:ready') {
      ready = true;
      size();
      post('cp:init', { session_id: (stored && stored.session_id) || null, open: !!(stored && stored.open), page: page(document.referrer) });
    } else if (d.type === 'cp:resize') {
      open = !!d.open;
      size();
    } else if (d.type === 'cp:store' && typeof d.session_id === 'string') {
      stored = { session_id: d.session_id, open: !!d.open };
      try {
        localStorage.setItem(skey, JSON.stringify(stored));
      } catch (e) { /* storage blocked: the chat still works on this page */ }
    }
  });

  // Single-page sites change pages without loading one: tell the frame.
  const moved = () => setTimeout(() => {
    if (location.href === last) return;
    const from = last;
    last = location.href;
    post('cp:page', { page: page(from) });
  });
  for (const m of ['pushState', 'replaceState']) {
    const orig = history[m];
    history[m] = function () {
      const r = orig.apply(this, arguments);
      moved();
      return r;
    };
  }
  addEventListener('popstate', moved);
  addEventListener('resize', size);
  size();
  const add = () => document.body.appendChild(f);
  if (document.body) add();
  else addEventListener('DOMContentLoaded', add);
})();
