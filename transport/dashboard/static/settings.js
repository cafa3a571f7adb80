import { api, showError } from './common.js';

const form = document.getElementById('settings-form');
const status = document.getElementById('settings-status');
const fields = ['name', 'widget_color', 'widget_greeting', 'allowed_origins'];

function clearErrors() {
  for (const f of fields) {
    showError(document.getElementById('err-' + f), '');
    form.elements[f].removeAttribute('aria-invalid');
  }
  showError(document.getElementById('form-error'), '');
}

// fieldOf names the field a refusal is about, so it shows beside it.
function fieldOf(code) {
  switch (code) {
    case 'invalid_origin': return 'allowed_origins';
    case 'invalid_name': return 'name';
    default: return null;
  }
}

function guessField(message) {
  const m = message.toLowerCase();
  if (m.includes('colou') || m.includes('color')) return 'widget_color';
  if (m.includes('greeting')) return 'widget_greeting';
  if (m.includes('origin')) return 'allowed_origins';
  if (m.includes('name')) return 'name';
  return null;
}

form.addEventListener('submit', async ev => {
  ev.preventDefault();
  clearErrors();
  status.textContent = 'Saving…';
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  const body = {
    name: form.elements.name.value.trim(),
    widget_color: form.elements.widget_color.value,
    widget_greeting: form.elements.widget_greeting.value,
    allowed_origins: form.elements.allowed_origins.value.split('\n').map(s => s.trim()).filter(Boolean),
  };
  try {
    const saved = await api('PATCH', '/api/v1/settings', body);
    form.elements.name.value = saved.name;
    form.elements.widget_greeting.value = saved.widget_greeting;
    form.elements.allowed_origins.value = (saved.allowed_origins || []).join('\n');
    if (saved.widget_color) form.elements.widget_color.value = saved.widget_color;
    const org = document.getElementById('org-name');
    if (org) org.textContent = saved.name;
    status.textContent = 'Saved.';
  } catch (e) {
    status.textContent = '';
    const f = fieldOf(e.code) || guessField(e.message);
    if (f) {
      showError(document.getElementById('err-' + f), e.message);
      form.elements[f].setAttribute('aria-invalid', 'true');
      form.elements[f].focus();
    } else {
      showError(document.getElementById('form-error'), e.message);
    }
  } finally {
    button.disabled = false;
  }
});
