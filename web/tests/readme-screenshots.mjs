// The README's pictures of the page (docs/web-*.png), made by using it as a reader would: train
// the spirals to the end, compare four optimizers on circles, run Rosenbrock, compute a spectrum,
// check the kernels. Run after scripts/build-web.sh and cargo build --release:
//
//   node web/tests/readme-screenshots.mjs
//
// Not a test (web/tests/*.test.mjs are): a person looks at the pictures before committing them.

import { join } from 'node:path';
import { ROOT, openPage, startBrowser, startServer, waitForText } from './harness.mjs';

const DOCS = join(ROOT, 'docs');
const server = await startServer();
const browser = await startBrowser();
const page = await openPage(browser.context);
await page.setViewportSize({ width: 1280, height: 860 });
const shot = async (name) => {
  const path = join(DOCS, `web-${name}.png`);
  await page.screenshot({ path, fullPage: false });
  console.log(path);
};
const run = async (start, status, ms = 600_000) => {
  await page.click(`#${start}`);
  console.log(`#${status}: ${await waitForText(page, status, ['done:', 'error:'], ms)}`);
};
try {
  await page.goto(server.url);
  await waitForText(page, 'adapter', ['GPU', 'no WebGPU', 'CPU'], 60_000);
  await page.selectOption('#train-data', 'spirals');
  await run('train-start', 'train-status');
  await shot('train');
  await page.click('#tab-spectrum');
  await run('spectrum-start', 'spectrum-status');
  await shot('spectrum');
  await page.click('#tab-surfaces');
  await page.selectOption('#surface-name', 'rosenbrock');
  await run('surface-start', 'surface-status');
  await shot('surfaces');
  await page.click('#tab-train');
  await page.selectOption('#train-data', 'circles');
  await page.click('#tab-compare');
  await run('compare-start', 'compare-status');
  await shot('compare');
  await page.click('#tab-check');
  await run('check-start', 'check-status');
  await shot('check');
  await page.click('#tab-model');
  await shot('model');
  if (page.problems.length) console.log(page.problems.join('\n'));
} finally {
  await browser.close();
  await server.stop();
}
