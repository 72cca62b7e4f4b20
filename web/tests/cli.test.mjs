// The page and the CLI give the same model: web/selftest.toml trained in the page on the wasm CPU
// reference and saved as safetensors holds the same tensors, bit for bit, as
// `gradflow train --config web/selftest.toml --cpu --save` (the same code, compiled twice), and the
// same run metadata; only the config's data path (the page has no file) and so the checksum differ.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, openPage, startBrowser, startServer } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** { header (without metadata), metadata, data bytes of each tensor } of a safetensors file. */
function parse(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const { __metadata__: metadata = {}, ...tensors } = header;
  const data = {};
  for (const [name, t] of Object.entries(tensors)) {
    data[name] = bytes.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
  }
  return { tensors, metadata, data };
}

test('a model saved in the page is the one the CLI saves', { timeout: 300_000 }, async () => {
  const page = await openPage(browser.context);
  await page.goto(server.url);
  const bytes = await page.evaluate(async () => {
    const m = await import('./pkg/gradflow_web.js');
    await m.default();
    const lab = await m.open_lab();
    const run = lab.run(m.selftest_config(), m.selftest_data(), 'cpu');
    for (let e = 0; e < run.epochs(); e++) await run.epoch();
    return Array.from(await run.safetensors());
  });
  await page.close();
  const fromPage = parse(Buffer.from(bytes));

  const dir = mkdtempSync(join(tmpdir(), 'gradflow-web-cli-'));
  const saved = join(dir, 'cli.safetensors');
  const bin = resolve(ROOT, process.env.GRADFLOW_BIN || 'target/release/gradflow');
  execFileSync(bin, ['train', '--config', resolve(ROOT, 'web/selftest.toml'), '--cpu', '--quiet', '--save', saved]);
  const fromCli = parse(readFileSync(saved));

  assert.deepEqual(Object.keys(fromPage.tensors).sort(), Object.keys(fromCli.tensors).sort());
  for (const name of Object.keys(fromCli.tensors)) {
    assert.deepEqual(fromPage.tensors[name], fromCli.tensors[name], `${name}: dtype, shape, offsets`);
    assert.ok(fromPage.data[name].equals(fromCli.data[name]), `${name}: the page's bytes differ from the CLI's`);
  }
  for (const key of ['format', 'gradflow.steps', 'gradflow.epoch', 'gradflow.batch', 'gradflow.optimizer',
    'gradflow.state_layout', 'gradflow.schedule', 'gradflow.train_rows', 'gradflow.class_names']) {
    assert.equal(fromPage.metadata[key], fromCli.metadata[key], `metadata ${key}`);
  }
  console.log(`${Object.keys(fromCli.tensors).length} tensors equal bit for bit; steps ${fromCli.metadata['gradflow.steps']}`);
});
