// The privacy page: the tenant's ledger of data-subject requests, with the
// days left on open ones, and a form to record one received by other means.
import { api, el, formSubmit, formatTime, showError } from './common.js';

const $ = id => document.getElementById(id);
const manager = $('privacy-page').dataset.manager === 'yes';

const KINDS = {
  export: 'Access / export', correction: 'Correction', deletion: 'Erasure',
  restriction: 'Restriction', consent_withdrawal: 'Consent withdrawn',
};

function statusCell(r) {
  if (r.done_at) return el('td', { textContent: 'Done ' + formatTime(r.done_at) });
  const left = r.days_left;
  const text = left < 0 ? `Late by ${-left} day${left === -1 ? '' : 's'}` : `${left} day${left === 1 ? '' : 's'} left`;
  const done = el('button', { type: 'button', textContent: 'Mark done' });
  const err = el('p', { className: 'error' }, [], { role: 'alert', hidden: '' });
  done.addEventListener('click', async () => {
    done.disabled = true;
    try {
      await api('POST', `/api/v1/privacy/requests/${encodeURIComponent(r.id)}/done`);
      load();
    } catch (e) {
      done.disabled = false;
      showError(err, e.message);
    }
  });
  return el('td', { className: left < 0 ? 'late' : '' }, [text, ' ', done, err]);
}

async function load() {
  try {
    const open = $('open-only').checked;
    const { requests } = await api('GET', '/api/v1/privacy/requests' + (open ? '?open=true' : ''));
    showError($('requests-error'), '');
    $('requests-empty').hidden = requests.length > 0;
    $('request-rows').replaceChildren(...requests.map(r => el('tr', {}, [
      el('td', { textContent: KINDS[r.kind] || r.kind }),
      el('td', { textContent: r.visitor_id || '—' }),
      el('td', { textContent: formatTime(r.requested_at) }),
      el('td', { textContent: formatTime(r.due_at) }),
      statusCell(r),
      el('td', { textContent: r.note || '' }),
    ], { 'data-request': r.id })));
  } catch (e) {
    showError($('requests-error'), e.message);
  }
}

if (manager) {
  $('open-only').addEventListener('change', load);
  const form = $('request-form');
  formSubmit(form, async () => {
    await api('POST', '/api/v1/privacy/requests', {
      kind: form.kind.value, visitor_id: form.visitor_id.value.trim(), note: form.note.value.trim(),
    });
    form.reset();
    load();
  });
  load();
}
