// What the page tests share: the page's server (`gradflow serve`, started here unless
// GRADFLOW_WEB_URL names one), headless Chromium with WebGPU, and waiting on the page's status
// elements. The repository root is two folders up.
//
// Environment:
//   GRADFLOW_WEB_URL      the page's URL; default: start `gradflow serve --port 0` and use its URL
//   GRADFLOW_WEB_DIR      the folder that server serves (default: web)
//   GRADFLOW_BIN          the gradflow binary (default: target/release/gradflow)
//   GRADFLOW_SCREENSHOTS  where the screenshots and the downloaded model go (default: web/tests/out)
//   CHROMIUM              the browser (default: /usr/bin/chromium, Debian's package)

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUT = resolve(ROOT, process.env.GRADFLOW_SCREENSHOTS || 'web/tests/out');

// Chromium 148 in headless=new on a machine without a GPU (Debian bookworm, x86-64, tried with a
// scratch page calling navigator.gpu.requestAdapter()): --enable-unsafe-webgpu alone gives an
// adapter, Dawn's SwiftShader (vendor "google", architecture "swiftshader"), and requestDevice()
// succeeds. Adding --enable-features=Vulkan, --use-webgpu-adapter=swiftshader or
// --use-vulkan=swiftshader changed nothing, so none is passed. (WebGPU needs a secure context:
// http://127.0.0.1 is one.)
const ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Starts `gradflow serve --port 0` (or takes GRADFLOW_WEB_URL); returns { url, stop }. */
export async function startServer() {
  if (process.env.GRADFLOW_WEB_URL) {
    return { url: process.env.GRADFLOW_WEB_URL.replace(/\/?$/, '/'), stop: async () => {} };
  }
  const bin = resolve(ROOT, process.env.GRADFLOW_BIN || 'target/release/gradflow');
  const dir = process.env.GRADFLOW_WEB_DIR || 'web';
  const child = spawn(bin, ['serve', '--dir', dir, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  // The server logs a line per request on stderr: kept for a failure's message, not printed.
  const log = [];
  createInterface({ input: child.stderr }).on('line', (l) => log.push(l));
  const url = await new Promise((ok, fail) => {
    child.once('error', (e) => fail(new Error(`could not start ${bin}: ${e.message} (build it: cargo build --release)`)));
    child.once('exit', (code) => fail(new Error(`${bin} serve exited with ${code}:\n${log.join('\n')}`)));
    // Its first line: "serving DIR at http://127.0.0.1:PORT/ (Ctrl-C stops)".
    createInterface({ input: child.stdout }).once('line', (line) => {
      const m = line.match(/http:\/\/\S+\//);
      if (m) ok(m[0]);
      else fail(new Error(`no URL in gradflow serve's first line: ${line}`));
    });
  });
  child.removeAllListeners('exit');
  // Should the tests die before `after` runs, the server goes with them.
  const orphan = () => child.kill('SIGKILL');
  process.once('exit', orphan);
  const stop = async () => {
    process.off('exit', orphan);
    if (child.exitCode !== null) return;
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    await exited;
  };
  return { url, stop, log };
}

/** Headless Chromium with WebGPU on a fresh profile; returns { context, close }. */
export async function startBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'gradflow-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // --headless=new is passed in ARGS: Playwright's own headless switch would add --headless.
    headless: false,
    args: ARGS,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** A new page that records its console errors and uncaught exceptions (for failure messages). */
export async function openPage(context) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') page.problems.push(`console.${m.type()}: ${m.text()}`);
  });
  return page;
}

/** Waits until `#id`'s text starts with one of `prefixes` (within `timeoutMs`); returns the text. */
export async function waitForText(page, id, prefixes, timeoutMs) {
  await page.waitForFunction(
    ([id, prefixes]) => {
      const text = (document.getElementById(id)?.textContent ?? '').trimStart();
      return prefixes.some((p) => text.startsWith(p));
    },
    [id, prefixes],
    { timeout: timeoutMs, polling: 250 },
  );
  return (await page.textContent(`#${id}`)).trim();
}

/** The text of `#id` now, or a note that there is none (for messages after a timeout). */
export async function textNow(page, id) {
  return (await page.locator(`#${id}`).textContent({ timeout: 1000 }).catch(() => null)) ?? `(no #${id})`;
}

/** Saves a full-page screenshot as OUT/NAME.png; returns the path. */
export async function screenshot(page, name) {
  mkdirSync(OUT, { recursive: true });
  const path = join(OUT, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Seconds from env `name`, else `fallback`, as milliseconds. */
export function seconds(name, fallback) {
  const v = Number(process.env[name] || fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`$${name}=${process.env[name]} is not a positive number of seconds`);
  return v * 1000;
}
