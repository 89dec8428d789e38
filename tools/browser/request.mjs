// The secret-request page (/requests/{id}) in a real browser: Debian's
// chromium (never a downloaded one), headless, driven by playwright-core.
// Run by tests/request_page.rs, which starts the server, signs an agent up,
// makes its human an owner, and has the agent ask for a value over REST; it
// hands over, in LK_BROWSER (JSON):
//   base        the page's origin (http://localhost:PORT)
//   url         the request's page, as the agent shows it (/requests/{id})
//   ownerToken  the owner's token (lko_…), typed on the sign-in page
//   value       the value the owner pastes
//   shots       where screenshots go
// It prints one JSON object of what it saw; the Rust test asserts on it.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const cfg = JSON.parse(process.env.LK_BROWSER);
const seen = { pages: {} };
const log = (...a) => process.stderr.write(a.join(' ') + '\n');
const desktop = { width: 1200, height: 900 };
const phone = { width: 390, height: 844 };

async function record(name, resp) {
  const h = resp.headers();
  const html = await resp.text().catch(() => '');
  seen.pages[name] = {
    status: resp.status(),
    url: resp.url(),
    csp: h['content-security-policy'],
    cacheControl: h['cache-control'],
    referrerPolicy: h['referrer-policy'],
    frame: h['x-frame-options'],
    htmlHasValue: html.includes(cfg.value),
  };
}

async function shots(page, name) {
  await page.screenshot({ path: join(cfg.shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(phone);
  await page.screenshot({ path: join(cfg.shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(desktop);
}

const text = async (page, sel) => ((await page.textContent(sel).catch(() => '')) || '').trim();

mkdirSync(cfg.shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: desktop });
  const page = await context.newPage();
  page.on('console', (m) => log('console:', m.type(), m.text()));
  page.on('pageerror', (e) => { log('pageerror:', e.message); seen.pageErrors = (seen.pageErrors || 0) + 1; });
  const urls = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) urls.push(f.url()); });

  // Not signed in: the agent's link leads to the sign-in page, which knows where to come back.
  const signin = await page.goto(cfg.url);
  await record('signin', signin);
  seen.signinUrl = page.url();
  seen.signinNext = await page.inputValue('input[name=next]');
  await shots(page, 'request-signin');

  // The owner types their token; the sign-in lands on the request.
  await page.fill('input[name=token]', cfg.ownerToken);
  const [landed] = await Promise.all([page.waitForNavigation({ url: /\/approvals\/requests\// }), page.click('button[type=submit]')]);
  await record('request', landed);
  seen.request = {
    url: page.url(),
    name: await text(page, '#request-name'),
    state: await text(page, '#request-state'),
    reason: await text(page, '#request-reason'),
    instructions: await text(page, '#request-instructions'),
    requester: await text(page, '#request-requester'),
    obtainHref: await page.getAttribute('#obtain-link', 'href'),
    obtainRel: await page.getAttribute('#obtain-link', 'rel'),
    inputType: await page.getAttribute('#request-value', 'type'),
    button: await text(page, '#request-store'),
  };
  await shots(page, 'request-pending');

  // The owner pastes the value and stores it.
  await page.fill('#request-value', cfg.value);
  seen.typedHidden = await page.$eval('#request-value', (e) => e.type === 'password' && e.value.length > 0);
  const [after] = await Promise.all([page.waitForNavigation(), page.click('#request-store')]);
  await record('fulfilled', after);
  seen.fulfilled = {
    url: page.url(),
    state: await text(page, '#request-state'),
    notice: await text(page, '.notice.good'),
    secret: await text(page, '#request-secret'),
    hasForm: await page.isVisible('#request-form'),
    domHasValue: (await page.content()).includes(cfg.value),
  };
  await shots(page, 'request-fulfilled');

  // Opened again later: still no value, no form.
  const again = await page.goto(cfg.url);
  await record('reopened', again);
  seen.reopened = { state: await text(page, '#request-state'), hasForm: await page.isVisible('#request-form') };

  seen.urls = urls;
  seen.urlsHaveValue = urls.some((u) => u.includes(cfg.value) || u.includes(encodeURIComponent(cfg.value)));
  await context.close();
  process.stdout.write(JSON.stringify(seen) + '\n');
} finally {
  await browser.close();
}
