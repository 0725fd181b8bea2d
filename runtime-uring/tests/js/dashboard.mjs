// Drives the admin dashboard (runtime-uring/src/admin/dashboard.html) in Debian's headless
// Chromium through playwright-core (no browser download). Run by the Rust admin test:
//   ADMIN_URL=http://127.0.0.1:18083 API_KEY=k API_SECRET=s CLIENT_ID=c1 SCREENSHOT=/tmp/d.png \
//     node dashboard.mjs
// Prints one line per step (LOGIN_REFUSED, LOGGED_IN, CLIENT_SEEN, STATS_SHOWN,
// SCREENSHOT <path>, KICKED, DONE); exits non-zero with "FAIL <step>: <reason>" otherwise.
import { chromium } from 'playwright-core';

const OVERALL_MS = 60_000;
const STEP_MS = 20_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`FAIL setup: environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const adminUrl = need('ADMIN_URL').replace(/\/+$/, '');
const key = need('API_KEY');
const secret = need('API_SECRET');
const clientId = need('CLIENT_ID');
const screenshot = need('SCREENSHOT');

// CSS attribute value: a double-quoted string with " and \ escaped.
const cssString = (s) => '"' + s.replace(/["\\]/g, '\\$&').replace(/\n/g, '\\a ') + '"';

let browser = null;
let page = null;
const pageErrors = [];

async function fail(step, reason) {
  console.error(`FAIL ${step}: ${reason}`);
  if (page) {
    try {
      const status = await page.locator('#status').textContent({ timeout: 1000 });
      if (status) console.error(`  dashboard status line: ${status}`);
    } catch (_) { /* page unusable */ }
    try {
      const path = screenshot.replace(/\.png$/i, '') + '-failure.png';
      await page.screenshot({ path, fullPage: true, timeout: 5000 });
      console.error(`  failure screenshot: ${path}`);
    } catch (_) { /* page unusable */ }
  }
  for (const e of pageErrors) console.error(`  page error: ${e}`);
  try { if (browser) await browser.close(); } catch (_) {}
  process.exit(1);
}

const overall = setTimeout(() => {
  fail('timeout', `not done after ${OVERALL_MS / 1000} s`);
}, OVERALL_MS);

async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    await fail(name, (e && e.message ? e.message : String(e)).split('\n')[0]);
  }
}

await step('launch', async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    headless: true,
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    // failed fetches (the wrong-secret 401 among them) are logged by Chromium itself: not news
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) console.error(`  console: ${m.text()}`);
  });
});

await step('open', async () => {
  const res = await page.goto(adminUrl + '/');
  if (!res || !res.ok()) throw new Error(`GET ${adminUrl}/ -> ${res ? res.status() : 'no response'}`);
  await page.locator('#login').waitFor({ state: 'visible' });
});

await step('login-refused', async () => {
  await page.locator('#login input[name="key"]').fill(key);
  await page.locator('#login input[name="secret"]').fill(secret + '-wrong');
  await page.locator('#login button[type="submit"]').click();
  const err = page.locator('#login-error');
  await err.waitFor({ state: 'visible' });
  const text = (await err.textContent()) || '';
  if (!text.includes('Wrong key or secret')) throw new Error(`#login-error says "${text}"`);
  if (await page.locator('#dash').isVisible()) throw new Error('#dash visible after a wrong secret');
  console.log('LOGIN_REFUSED');
});

await step('login', async () => {
  await page.locator('#login input[name="key"]').fill(key);
  await page.locator('#login input[name="secret"]').fill(secret);
  await page.locator('#login button[type="submit"]').click();
  await page.locator('#dash').waitFor({ state: 'visible' });
  console.log('LOGGED_IN');
});

const row = page.locator(`#clients tr[data-clientid=${cssString(clientId)}]`);

await step('client-seen', async () => {
  await row.waitFor({ state: 'visible' });
  console.log('CLIENT_SEEN');
});

await step('stats-shown', async () => {
  // also waits for two computed message rates (three /metrics polls, ~2 s), so the chart
  // draws a line in the screenshot
  await page.waitForFunction(() => {
    const canvas = document.querySelector('canvas#rate-chart');
    const text = (document.getElementById('stat-connections') || {}).textContent || '';
    const rate = (document.getElementById('rate-in') || {}).textContent || '';
    return canvas && /^\d+$/.test(text.trim()) && Number(text) >= 1
      && Number(canvas.dataset.points || 0) >= 2 && Number.isFinite(Number(rate));
  }, null, { polling: 200 });
  console.log('STATS_SHOWN');
});

await step('screenshot', async () => {
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`SCREENSHOT ${screenshot}`);
});

await step('kick', async () => {
  await row.getByRole('button', { name: 'Kick', exact: true }).click();
  await row.waitFor({ state: 'detached' });
  console.log('KICKED');
});

await step('page-errors', async () => {
  if (pageErrors.length) throw new Error(`${pageErrors.length} uncaught error(s) in the page`);
});

clearTimeout(overall);
await browser.close();
console.log('DONE');
