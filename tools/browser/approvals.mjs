// The approval page in a real browser: Debian's chromium (never a downloaded
// one), headless, driven by playwright-core, with Chromium's virtual
// authenticator for the passkey. Run by tests/pages.rs, which starts the
// server and the CLI and hands over, in LK_BROWSER (JSON):
//   base        the page's origin (http://localhost:PORT)
//   signinUrl   the owner's one-time sign-in link (from `latchkey owner add`)
//   ownerToken  the owner's token (for the REST check)
//   apiKey      an agent's API key; secretId: a critical secret (optional)
//   hiddenId    a use_only secret the owner loosens on the dashboard (optional)
//   shots       where screenshots go
// It prints one JSON object of what it saw; the Rust test asserts on it.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cfg = JSON.parse(process.env.LK_BROWSER);
const seen = {};
const log = (...a) => process.stderr.write(a.join(' ') + '\n');

async function agentRead(id) {
  const r = await fetch(`${cfg.base}/api/v1/secrets/${id}`, { headers: { authorization: `Bearer ${cfg.apiKey}` } });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, code: body.code, approvalUrl: body.approvalUrl, approvalId: body.approvalId, value: body.value };
}

const dataDir = mkdtempSync(join(tmpdir(), 'lk-chromium-'));
mkdirSync(cfg.shots, { recursive: true });
const context = await chromium.launchPersistentContext(dataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1200, height: 900 },
});
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => log('console:', m.type(), m.text()));
  page.on('pageerror', (e) => log('pageerror:', e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });

  // Sign in with the one-time link: the GET shows a button, the POST spends it.
  await page.goto(cfg.signinUrl);
  await Promise.all([page.waitForURL(`${cfg.base}/approvals`), page.click('button[type=submit]')]);
  const home = await page.goto(`${cfg.base}/approvals`);
  const h = home.headers();
  seen.headers = { csp: h['content-security-policy'], cacheControl: h['cache-control'], referrerPolicy: h['referrer-policy'], frame: h['x-frame-options'] };
  const cookie = (await context.cookies()).find((c) => c.name === 'lk_session');
  seen.cookie = cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, secure: cookie.secure, path: cookie.path };
  seen.noPasskeyWarning = await page.isVisible('#no-passkey');
  await page.screenshot({ path: join(cfg.shots, 'approvals-signed-in.png'), fullPage: true });
  // Loosening a secret's exposure: an owner's form on the dashboard (before
  // any passkey exists, so no confirmation is asked).
  if (cfg.hiddenId) {
    const before = await agentRead(cfg.hiddenId);
    seen.hiddenBefore = { status: before.status, code: before.code };
    await page.selectOption('form[action="/approvals/exposure"] select[name=secret]', cfg.hiddenId);
    await page.selectOption('form[action="/approvals/exposure"] select[name=exposure]', 'reveal');
    await page.screenshot({ path: join(cfg.shots, 'approvals-exposure.png'), fullPage: true });
    await Promise.all([page.waitForURL(/done=exposure/), page.click('form[action="/approvals/exposure"] button[type=submit]')]);
    const after = await agentRead(cfg.hiddenId);
    seen.hiddenAfter = { status: after.status, value: after.value };
  }
  // The link is single use.
  const again = await page.request.post(cfg.signinUrl, { maxRedirects: 0 });
  seen.linkReuseStatus = again.status();

  // A form POST without the CSRF token (same origin, with the session cookie).
  seen.csrfMissingStatus = await page.evaluate(async () => {
    const r = await fetch('/approvals/owners', { method: 'POST', body: new URLSearchParams({ name: 'Mallory' }), redirect: 'manual' });
    return r.status;
  });

  // Register a passkey on the virtual authenticator.
  await page.fill('#passkey-name', 'laptop');
  await Promise.all([page.waitForEvent('load'), page.click('#register-passkey')]);
  await page.waitForSelector('text=need a passkey confirmation');
  seen.passkeyRegistered = (await page.textContent('body')).includes('laptop');
  seen.authenticatorCredentials = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials.length;

  if (cfg.secretId) {
    // The agent reads a critical secret: approval required.
    const first = await agentRead(cfg.secretId);
    seen.firstRead = first;
    // The owner opens the approval URL the agent handed out, and approves with the passkey.
    await page.goto(first.approvalUrl.replace(/^https?:\/\/[^/]+/, cfg.base));
    await page.screenshot({ path: join(cfg.shots, 'approval-pending-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(cfg.shots, 'approval-pending-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1200, height: 900 });
    await Promise.all([page.waitForURL(/done=approved/), page.click('form.approve button[type=submit]')]);
    seen.approvedPage = (await page.textContent('.outcome').catch(() => '')) || '';
    await page.screenshot({ path: join(cfg.shots, 'approval-approved.png'), fullPage: true });
    seen.approvedRead = await agentRead(cfg.secretId);
    seen.nextRead = await agentRead(cfg.secretId);

    // Deny the next request, with a reason.
    await page.goto(seen.nextRead.approvalUrl.replace(/^https?:\/\/[^/]+/, cfg.base));
    await page.fill('form.deny input[name=reason]', 'not during the freeze');
    await Promise.all([page.waitForURL(/done=denied/), page.click('form.deny button[type=submit]')]);
    seen.deniedPage = (await page.textContent('.outcome').catch(() => '')) || '';
    seen.afterDenyRead = await agentRead(cfg.secretId);

    // The owner token alone cannot decide a critical request once a passkey exists.
    const third = seen.afterDenyRead.approvalId ? seen.afterDenyRead : await agentRead(cfg.secretId);
    const r = await fetch(`${cfg.base}/api/v1/approvals/${third.approvalId}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cfg.ownerToken}`, 'content-type': 'application/json' },
      body: '{}',
    });
    seen.ownerTokenApprove = { status: r.status, code: (await r.json().catch(() => ({}))).code };

    const policy = await fetch(`${cfg.base}/api/v1/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${cfg.ownerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ approvalRequired: { sensitive: true } }),
    });
    seen.ownerTokenPolicy = { status: policy.status, code: (await policy.json().catch(() => ({}))).code };

    await page.goto(`${cfg.base}/approvals`);
    await page.screenshot({ path: join(cfg.shots, 'approvals-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(cfg.shots, 'approvals-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1200, height: 900 });

    // Strong actions on the page, each confirmed with the passkey: the policy, then a lower tier.
    await page.check('input[name=sensitive]');
    await Promise.all([page.waitForURL(/done=policy/), page.click('form[action="/approvals/policy"] button[type=submit]')]);
    seen.policySensitive = await page.isChecked('input[name=sensitive]');
    await page.selectOption('form[action="/approvals/tier"] select[name=tier]', 'standard');
    await Promise.all([page.waitForURL(/done=tier/), page.click('form[action="/approvals/tier"] button[type=submit]')]);
    seen.afterLoweringRead = await agentRead(cfg.secretId);
  }
  process.stdout.write(JSON.stringify(seen) + '\n');
} finally {
  await context.close();
  rmSync(dataDir, { recursive: true, force: true });
}
