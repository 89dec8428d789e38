// The share page (/s/{token}) in a real browser: Debian's chromium (never a
// downloaded one), headless, driven by playwright-core. Run by
// tests/share_page.rs, which starts the server, creates a secret and a share
// (maxUses 2, a password) over REST, and hands over, in LK_BROWSER (JSON):
//   base      the page's origin (http://localhost:PORT)
//   url       the share's link, on that origin
//   shareId   the share's id; apiKey: the creator's key (to read its counters)
//   password  the share's password
//   shots     where screenshots go
// It prints one JSON object of what it saw; the Rust test asserts on it (the
// value itself is compared there, never printed by the server).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const cfg = JSON.parse(process.env.LK_BROWSER);
const seen = { pages: {} };
const log = (...a) => process.stderr.write(a.join(' ') + '\n');
const desktop = { width: 1200, height: 900 };
const phone = { width: 390, height: 844 };

async function uses() {
  const r = await fetch(`${cfg.base}/api/v1/shares/${cfg.shareId}`, { headers: { authorization: `Bearer ${cfg.apiKey}` } });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, uses: body.uses, usesLeft: body.usesLeft, shareStatus: body.status };
}

/// The headers and status of a page's main response, and whether its HTML carries `needle`.
async function record(name, resp, needle) {
  const h = resp.headers();
  const html = await resp.text().catch(() => '');
  seen.pages[name] = {
    status: resp.status(),
    csp: h['content-security-policy'],
    cacheControl: h['cache-control'],
    referrerPolicy: h['referrer-policy'],
    frame: h['x-frame-options'],
    robots: h['x-robots-tag'],
    htmlHasValue: needle ? html.includes(needle) : undefined,
  };
}

async function shots(page, name) {
  await page.screenshot({ path: join(cfg.shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(phone);
  await page.screenshot({ path: join(cfg.shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(desktop);
}

/// Submits the reveal form and returns the response of the page it lands on.
async function submit(page) {
  const [resp] = await Promise.all([page.waitForNavigation(), page.click('#reveal')]);
  return resp;
}

mkdirSync(cfg.shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: desktop });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: cfg.base });
  const page = await context.newPage();
  page.on('console', (m) => log('console:', m.type(), m.text()));
  page.on('pageerror', (e) => { log('pageerror:', e.message); seen.pageErrors = (seen.pageErrors || 0) + 1; });
  // What the browser sends as Origin with the page's own form (under no-referrer: "null").
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.isNavigationRequest()) {
      seen.formOrigin = r.headers()['origin'] ?? '(none)';
      seen.formPosts = (seen.formPosts || 0) + 1;
    }
  });

  // The landing: what is shared, no value, nothing counted.
  seen.usesAtStart = await uses();
  const landing = await page.goto(cfg.url);
  await record('landing', landing, cfg.value);
  seen.landing = {
    name: (await page.textContent('.secret-name')).trim(),
    expires: (await page.textContent('#expires')).trim(),
    usesLeft: (await page.textContent('#uses-left')).trim(),
    passwordField: await page.isVisible('#password'),
    button: (await page.textContent('#reveal')).trim(),
    domHasValue: (await page.content()).includes(cfg.value),
  };
  await shots(page, 'share-landing');
  seen.usesAfterLanding = await uses();

  // A wrong password: the form again, with an error; no use counted.
  await page.fill('#password', 'not the password');
  const wrong = await submit(page);
  await record('wrongPassword', wrong, cfg.value);
  seen.wrongPassword = {
    error: ((await page.textContent('#share-error').catch(() => '')) || '').trim(),
    passwordField: await page.isVisible('#password'),
  };
  await shots(page, 'share-wrong-password');
  seen.usesAfterWrong = await uses();

  // The right one, double-clicked: sent once; the value, in a read-only field; copy works.
  await page.fill('#password', cfg.password);
  // The POST is held back 400 ms, as on a slow network, so a second click lands while the first is under way:
  // one view is spent. (Chromium itself drops the second submission; share.js guards other browsers too.)
  let posts = 0;
  await page.route('**/s/*', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    posts += 1;
    await new Promise((r) => setTimeout(r, 400));
    return route.continue();
  });
  const clicks = async () => {
    await page.click('#reveal', { noWaitAfter: true });
    await page.waitForTimeout(100);
    await page.click('#reveal', { noWaitAfter: true, timeout: 2000 }).catch(() => {});
  };
  const [first] = await Promise.all([page.waitForNavigation(), clicks()]);
  await page.unroute('**/s/*');
  seen.doubleClickPosts = posts;
  await record('firstReveal', first);
  seen.firstReveal = {
    value: await page.inputValue('#secret-value'),
    readOnly: await page.$eval('#secret-value', (e) => e.readOnly),
    usesLine: (await page.textContent('#uses-line')).trim(),
    copyVisible: await page.isVisible('#copy'),
  };
  await page.click('#copy');
  await page.waitForSelector('#copy[data-copied]');
  seen.copy = {
    copied: await page.getAttribute('#copy', 'data-copied'),
    button: (await page.textContent('#copy')).trim(),
    status: (await page.textContent('#copy-status')).trim(),
    clipboard: await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `unreadable: ${e.message}`),
  };
  await shots(page, 'share-revealed');
  seen.usesAfterFirst = await uses();

  // The second (last) reveal says so.
  await page.goto(cfg.url);
  seen.secondLandingUsesLeft = (await page.textContent('#uses-left')).trim();
  await page.fill('#password', cfg.password);
  const second = await submit(page);
  await record('secondReveal', second);
  seen.secondReveal = {
    value: await page.inputValue('#secret-value'),
    usesLine: (await page.textContent('#uses-line')).trim(),
  };
  await shots(page, 'share-last-view');
  seen.usesAfterSecond = await uses();

  // A third open: used up.
  const third = await page.goto(cfg.url);
  await record('usedUp', third, cfg.value);
  seen.usedUp = {
    state: await page.getAttribute('#share-state', 'data-state'),
    heading: (await page.textContent('#share-state h1')).trim(),
    hasForm: await page.isVisible('#reveal-form'),
  };
  await shots(page, 'share-used-up');

  // A link that never existed.
  const missing = await page.goto(`${cfg.base}/s/shr_doesnotexist${Date.now()}`);
  await record('notFound', missing);
  seen.notFound = { state: await page.getAttribute('#share-state', 'data-state') };
  await shots(page, 'share-not-found');

  await context.close();
  process.stdout.write(JSON.stringify(seen) + '\n');
} finally {
  await browser.close();
}
