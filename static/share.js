// The share page's one script: the copy button, and a Reveal form that is
// sent once (a double click would spend two views, and the second answer,
// "used up", would replace the page that shows the value). Everything else
// works without it (the value is in a read-only field a person can select).
'use strict';

async function copyText(field) {
  try {
    await navigator.clipboard.writeText(field.value);
    return true;
  } catch (_) {
    // No clipboard API (an insecure origin, an old browser): the selection.
    field.focus();
    field.select();
    try { return document.execCommand('copy'); } catch (_) { return false; }
  }
}

document.addEventListener('submit', (ev) => {
  const form = ev.target;
  if (form.id !== 'reveal-form') return;
  if (form.dataset.sent) {
    ev.preventDefault();
    return;
  }
  form.dataset.sent = '1';
  const button = form.querySelector('button[type=submit]');
  if (button) button.textContent = 'Revealing…';
});

// Back to a page from the history cache: the form may be sent again.
window.addEventListener('pageshow', () => {
  const form = document.getElementById('reveal-form');
  if (form) delete form.dataset.sent;
});

document.addEventListener('DOMContentLoaded', () => {
  const field = document.getElementById('secret-value');
  const button = document.getElementById('copy');
  const status = document.getElementById('copy-status');
  if (!field || !button) return;
  button.hidden = false;
  field.addEventListener('focus', () => field.select());
  button.addEventListener('click', async () => {
    const ok = await copyText(field);
    button.dataset.copied = ok ? '1' : '0';
    button.textContent = ok ? 'Copied' : 'Copy';
    status.classList.toggle('bad', !ok);
    status.textContent = ok ? 'Copied to the clipboard.' : 'Could not copy: select the value and copy it yourself.';
  });
});
