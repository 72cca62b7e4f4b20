// The web page end to end in headless Chromium: the self-test (index.html?selftest) reaches PASS,
// and every view runs to `done:` with a screenshot each; the model view's download is a valid
// safetensors file.
//
// Timeouts, in seconds, from the environment: GRADFLOW_SELFTEST_TIMEOUT_S (default 360: the
// self-test takes up to ~3 minutes on SwiftShader, so twice that), GRADFLOW_VIEW_TIMEOUT_S (default
// 300, per view). GRADFLOW_WEB_EPOCHS: the train view's epochs (default 5: a smoke run).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { OUT, openPage, screenshot, seconds, startBrowser, startServer, textNow, waitForText } from './harness.mjs';

const SELFTEST_MS = seconds('GRADFLOW_SELFTEST_TIMEOUT_S', 360);
const VIEW_MS = seconds('GRADFLOW_VIEW_TIMEOUT_S', 300);
const EPOCHS = process.env.GRADFLOW_WEB_EPOCHS || '5';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  console.log(`page: ${server.url}`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Waits for `#id` to say done: or error:, printing the line either way (and why on a timeout). */
async function outcome(page, id, ms) {
  try {
    const line = await waitForText(page, id, ['done:', 'error:'], ms);
    console.log(`#${id}: ${line}`);
    return line;
  } catch (e) {
    const line = `timed out after ${ms / 1000} s; #${id} says: ${await textNow(page, id)}`;
    console.log(`#${id}: ${line}`);
    return line;
  }
}

/** The line to assert with: the page's console errors and uncaught exceptions, if any. */
const problems = (page) => (page.problems.length ? `\npage problems:\n${page.problems.join('\n')}` : '');

test('the self-test reaches PASS', { timeout: SELFTEST_MS + 60_000 }, async () => {
  const page = await openPage(browser.context);
  await page.goto(`${server.url}index.html?selftest`);
  console.log(`#adapter: ${await textNow(page, 'adapter')}`);
  let line;
  try {
    line = await waitForText(page, 'selftest', ['selftest: PASS', 'selftest: FAIL'], SELFTEST_MS);
  } catch {
    line = `timed out after ${SELFTEST_MS / 1000} s; #selftest says: ${await textNow(page, 'selftest')}`;
  }
  console.log(line);
  console.log(`screenshot: ${await screenshot(page, 'selftest')}`);
  assert.match(line, /^selftest: PASS/, problems(page));
  await page.close();
});

// Views with a start button and a status line, after train (which the others' models may use).
const VIEWS = [
  ['compare', 'compare'],
  ['surfaces', 'surface'],
  ['spectrum', 'spectrum'],
  ['check', 'check'],
];

test('every view runs to done', async (t) => {
  const page = await openPage(browser.context);
  await page.goto(server.url);
  console.log(`#adapter: ${await textNow(page, 'adapter')}`);

  await t.test('train (spirals)', { timeout: VIEW_MS + 30_000 }, async () => {
    await page.click('#tab-train');
    await page.selectOption('#train-data', 'spirals');
    await page.fill('#train-epochs', EPOCHS);
    await page.click('#train-start');
    const line = await outcome(page, 'train-status', VIEW_MS);
    console.log(`screenshot: ${await screenshot(page, 'train')}`);
    assert.match(line, /^done:/, problems(page));
  });

  for (const [view, prefix] of VIEWS) {
    await t.test(view, { timeout: VIEW_MS + 30_000 }, async () => {
      await page.click(`#tab-${view}`);
      await page.click(`#${prefix}-start`);
      const line = await outcome(page, `${prefix}-status`, VIEW_MS);
      console.log(`screenshot: ${await screenshot(page, view)}`);
      assert.match(line, /^done:/, problems(page));
    });
  }

  await t.test('model: info and a safetensors download', { timeout: VIEW_MS + 30_000 }, async () => {
    await page.click('#tab-model');
    const info = (await textNow(page, 'model-info')).trim();
    console.log(`#model-info: ${info}`);
    assert.notEqual(info, '', 'the model view describes the model');
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: VIEW_MS }), page.click('#model-download')]);
    const name = download.suggestedFilename();
    assert.match(name, /\.safetensors$/);
    const path = join(OUT, name);
    await download.saveAs(path);
    console.log(`screenshot: ${await screenshot(page, 'model')}; download: ${path}`);
    // safetensors: an 8-byte little-endian header length, a JSON header of tensors (dtype, shape,
    // data_offsets into the bytes after it), and exactly those bytes.
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__');
    assert.ok(tensors.length > 0, 'the file holds tensors');
    const end = Math.max(...tensors.map(([, t]) => t.data_offsets[1]));
    assert.equal(bytes.length, 8 + n + end, 'the data section is exactly what the header describes');
  });

  await page.close();
});

// A dropped CSV whose labels are names (the CLI reads those), trained on the CPU reference in a
// tab that says it is hidden, then its spectrum: the page's hidden-tab path (a message to itself instead of frames
// and timers) must carry the run to its end. Headless Chromium does not throttle a hidden page's
// timers, so the time bound only catches a stall, not throttling itself.
test('a CSV with named classes trains in a hidden tab; its CPU spectrum leaves the page live', { timeout: VIEW_MS + 30_000 }, async () => {
  const page = await openPage(browser.context);
  await page.goto(server.url);
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { get: () => true });
    Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
  });
  const rows = ['a,b,kind'];
  for (let i = 0; i < 120; i++) {
    const kind = ['cat', 'dog', 'fox'][i % 3];
    rows.push(`${(i % 3) + Math.sin(i)},${(i % 7) / 7},${kind}`);
  }
  await page.click('#tab-train');
  await page.selectOption('#train-data', 'csv');
  await page.setInputFiles('#train-csv', { name: 'animals.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n') + '\n') });
  await page.selectOption('#executor', 'cpu');
  await page.fill('#train-epochs', '20');
  // The file is read asynchronously; the config shown follows it.
  await page.waitForFunction(() => document.getElementById('train-config').textContent.includes('animals.csv'), null, { timeout: 10_000 });
  const config = await textNow(page, 'train-config');
  assert.match(config, /out = 3 \},\s*\]/, `the last layer is 3 wide for 3 named classes:\n${config}`);
  const t0 = Date.now();
  await page.click('#train-start');
  const line = await outcome(page, 'train-status', VIEW_MS);
  const seconds = (Date.now() - t0) / 1000;
  assert.match(line, /^done: epoch 20,/, problems(page));
  // Throttled timers would give at least a second an epoch.
  assert.ok(seconds < 15, `20 tiny epochs took ${seconds} s in a hidden tab`);

  // The spectrum of that CPU run runs on the page's thread: it must yield to it as it goes, so a
  // 20 ms timer keeps firing (a thread held throughout would fire it about once, at the end).
  await page.click('#tab-spectrum');
  await page.fill('#spectrum-steps', '200');
  await page.evaluate(() => { window.ticks = 0; window.ticker = setInterval(() => { window.ticks++; }, 20); });
  const s0 = Date.now();
  await page.click('#spectrum-start');
  const spectrum = await outcome(page, 'spectrum-status', VIEW_MS);
  const ms = Date.now() - s0;
  const ticks = await page.evaluate(() => { clearInterval(window.ticker); return window.ticks; });
  console.log(`CPU spectrum: ${ticks} timer ticks in ${ms} ms`);
  assert.match(spectrum, /^done:/, problems(page));
  assert.ok(ticks >= Math.min(10, ms / 200), `only ${ticks} ticks of a 20 ms timer in ${ms} ms: the page's thread was held`);
  await page.close();
});

// A run that diverges stops with the engine's error, and is over: its weights are not finite and
// its step count no longer matches its epochs, so the model view refuses to save it.
test('a diverging run stops with an error and cannot be saved', { timeout: VIEW_MS + 30_000 }, async () => {
  const page = await openPage(browser.context);
  await page.goto(server.url);
  await page.click('#tab-train');
  await page.selectOption('#train-data', 'xor');
  await page.selectOption('#executor', 'cpu');
  await page.selectOption('#train-optimizer', 'sgd');
  await page.fill('#train-lr', '1e30');
  await page.fill('#train-epochs', '5');
  await page.click('#train-start');
  const line = await outcome(page, 'train-status', VIEW_MS);
  assert.match(line, /^error: .*(diverged|not finite|NaN|inf)/i, problems(page));
  await page.click('#tab-model');
  await page.click('#model-download');
  const saved = await waitForText(page, 'model-status', ['saved', 'error:'], 60_000);
  console.log(`#model-status: ${saved}`);
  assert.match(saved, /^error: this run stopped at an error/, problems(page));
  await page.close();
});
