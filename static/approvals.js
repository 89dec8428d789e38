// The one script of the approval page: the WebAuthn ceremonies. Everything
// else is plain forms. Forms with data-passkey="PURPOSE" get a fresh,
// user-verified assertion made for that purpose before they are sent.
'use strict';

const dec = (s) => {
  s = s.replace(/-/g, '+').replace(/_/g, '/');
  while (s.length % 4) s += '=';
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
};
const enc = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const csrf = () => document.querySelector('meta[name=csrf]').content;

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf() },
    body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.message || ('HTTP ' + r.status));
  return j;
}

function showError(e) {
  const p = document.getElementById('js-error');
  p.textContent = 'Passkey: ' + (e && e.message ? e.message : e);
  p.hidden = false;
}

async function assertionFor(purpose) {
  const o = await post('/approvals/webauthn/assert', { purpose });
  const pk = o.publicKey;
  pk.challenge = dec(pk.challenge);
  (pk.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
  const c = await navigator.credentials.get({ publicKey: pk });
  return JSON.stringify({
    id: c.id,
    rawId: enc(c.rawId),
    type: c.type,
    response: {
      authenticatorData: enc(c.response.authenticatorData),
      clientDataJSON: enc(c.response.clientDataJSON),
      signature: enc(c.response.signature),
      userHandle: c.response.userHandle ? enc(c.response.userHandle) : null,
    },
    extensions: {},
  });
}

async function registerPasskey(button) {
  const assertion = button.dataset.confirm ? await assertionFor('passkey.register') : null;
  const o = await post('/approvals/passkeys/start', { assertion });
  const pk = o.publicKey;
  pk.challenge = dec(pk.challenge);
  pk.user.id = dec(pk.user.id);
  (pk.excludeCredentials || []).forEach((c) => { c.id = dec(c.id); });
  const c = await navigator.credentials.create({ publicKey: pk });
  const credential = {
    id: c.id,
    rawId: enc(c.rawId),
    type: c.type,
    response: {
      attestationObject: enc(c.response.attestationObject),
      clientDataJSON: enc(c.response.clientDataJSON),
    },
    extensions: {},
  };
  const name = document.getElementById('passkey-name').value;
  await post('/approvals/passkeys/finish', { credential, name });
  location.reload();
}

document.addEventListener('submit', (ev) => {
  const form = ev.target;
  const purpose = form.dataset.passkey;
  if (!purpose || form.dataset.confirmed) return;
  ev.preventDefault();
  assertionFor(purpose).then((a) => {
    form.querySelector('input[name=assertion]').value = a;
    form.dataset.confirmed = '1';
    form.submit();
  }, showError);
});

document.addEventListener('DOMContentLoaded', () => {
  const b = document.getElementById('register-passkey');
  if (b) b.addEventListener('click', () => registerPasskey(b).catch(showError));
});
