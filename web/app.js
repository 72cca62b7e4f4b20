// The gradflow page: wires the controls to the wasm crate (web/src: Lab, Run) and draws what
// the engine returns. Every number shown comes from the engine; the page only plots it.
import init, { open_lab, digits_csv, digits_config, toy_noise, csv_classes } from './pkg/gradflow_web.js';
import { OPTIMIZERS, buildConfig, optimizerLines, dataTableOf } from './config.js';
import { COLORS, lineChart, regionsPlot, surfacePlot } from './plot.js';

const $ = (id) => document.getElementById(id);
const state = { lab: null, run: null, runInfo: null, busy: false, stop: false, csv: null, csvName: null, history: [], regions: null, classNames: [] };

// Lets the browser paint between epochs. A hidden tab draws no frames and throttles timers to a
// second or more, so there a message to itself (not throttled) lets the work go on at full speed.
const breathe = () => new Promise((r) => {
  if (document.hidden) {
    const c = new MessageChannel();
    c.port1.onmessage = () => r();
    c.port2.postMessage(null);
    return;
  }
  requestAnimationFrame(() => r());
  setTimeout(r, 100);
});

function message(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try { return JSON.stringify(e); } catch { return String(e); }
}

function setStatus(id, text, error = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', error);
}

const pct = (a) => (a === null || a === undefined ? '—' : `${(a * 100).toFixed(1)}%`);
const fix = (v, d = 4) => (v === null || v === undefined ? '—' : Number(v).toFixed(d));

// ---------- tabs ----------
for (const b of document.querySelectorAll('.tabs button')) {
  b.addEventListener('click', () => {
    for (const o of document.querySelectorAll('.tabs button')) {
      o.classList.toggle('active', o === b);
      $(o.dataset.view).hidden = o !== b;
    }
    redraw();
  });
}

// ---------- adapter ----------
function showAdapter() {
  const el = $('adapter');
  const a = JSON.parse(state.lab.adapter());
  el.textContent = '';
  if (!a.available) {
    el.classList.add('none');
    el.innerHTML = '<strong>No WebGPU in this browser</strong>: everything runs on the CPU reference (wasm). ';
    const why = document.createElement('span');
    why.textContent = a.whyNot ? `(${a.whyNot})` : '';
    el.append(why);
    const gpuOpt = $('executor').querySelector('option[value=gpu]');
    gpuOpt.disabled = true;
    $('executor').value = 'cpu';
    return;
  }
  const d = document.createElement('details');
  const s = document.createElement('summary');
  s.textContent = `GPU: ${a.name || '(unnamed adapter)'} · ${a.backend} · ${a.deviceType}`;
  d.append(s);
  const t = document.createElement('table');
  const row = (k, v) => { const tr = t.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; };
  if (a.driver) row('driver', a.driver);
  for (const [k, v] of a.limits) row(k, v.toLocaleString('en'));
  for (const [k, v] of a.features) row(k, v ? 'yes' : 'no');
  if (a.matmul) row('matmul', a.matmul);
  d.append(t);
  for (const n of a.notes) { const p = document.createElement('div'); p.textContent = `note: ${n}`; d.append(p); }
  el.append(d);
}

// GPU errors reported late (shader compilation, validation), shown under the adapter; a GPU run
// stops on them since its numbers would be garbage.
function drainGpuErrors() {
  const late = state.lab.lateErrors();
  if (late.length) {
    state.gpuErrors = (state.gpuErrors || []).concat(late);
    const n = state.gpuErrors.length;
    $('gpu-errors').hidden = false;
    $('gpu-errors-summary').textContent = `The GPU reported ${n === 1 ? 'an error' : `${n} errors`}: GPU runs will fail; the CPU reference still works (details)`;
    $('gpu-errors-text').textContent = state.gpuErrors.join('\n').slice(0, 8000);
  }
  return late;
}

// Stops a GPU action whose numbers a late error has spoilt. Call `drainGpuErrors()` as the
// action starts, so errors left from an earlier one are shown but not blamed on this one.
function stopOnGpuErrors(onGpu) {
  const late = drainGpuErrors();
  if (late.length && onGpu) throw new Error(`the GPU reported: ${late[0]}`);
}

// ---------- the Train form ----------
const digitsData = () => dataTableOf(digits_config());

function fillOptimizerSelect() {
  const sel = $('train-optimizer');
  for (const o of OPTIMIZERS) sel.add(new Option(o.label, o.id));
  sel.value = 'adam';
  sel.addEventListener('change', () => { $('train-lr').value = OPTIMIZERS.find((o) => o.id === sel.value).lr; syncForm(); });
}

const SCHEDULE_FIELDS = { step: ['every', 'gamma'], exponential: [null, 'gamma'], cosine: ['total', 'warmup'], 'linear-decay': ['tau', 'final factor'], constant: [null, null] };

function syncForm() {
  const data = $('train-data').value;
  const planar = ['spirals', 'xor', 'circles', 'blobs'].includes(data);
  document.querySelector('.planar-only').classList.toggle('hidden', !planar);
  document.querySelector('.classes-only').classList.toggle('hidden', !(data === 'spirals' || data === 'blobs'));
  document.querySelector('.csv-only').classList.toggle('hidden', data !== 'csv');
  const opt = $('train-optimizer').value;
  for (const el of document.querySelectorAll('.opt-momentum')) el.classList.toggle('hidden', !['momentum', 'heavy-ball', 'nesterov', 'nesterov-lookahead'].includes(opt));
  for (const el of document.querySelectorAll('.opt-betas')) el.classList.toggle('hidden', !['adam', 'adamw'].includes(opt));
  const [a, b] = SCHEDULE_FIELDS[$('train-schedule').value];
  document.querySelector('.sched-a').classList.toggle('hidden', !a);
  document.querySelector('.sched-b').classList.toggle('hidden', !b);
  if (a) $('train-sched-a-name').textContent = a;
  if (b) $('train-sched-b-name').textContent = b;
  showConfig();
}

// Sensible starting settings per data set (the user can change all of them).
const PRESETS = {
  spirals: { hidden: '32,32', epochs: 60, optimizer: 'adam', lr: 0.01, batch: 32 },
  xor: { hidden: '8,8', epochs: 40, optimizer: 'adam', lr: 0.01, batch: 32 },
  circles: { hidden: '16,16', epochs: 40, optimizer: 'adam', lr: 0.01, batch: 32 },
  blobs: { hidden: '8', epochs: 20, optimizer: 'adam', lr: 0.01, batch: 32 },
  digits: { hidden: '128,64', epochs: 30, optimizer: 'momentum', lr: 0.05, batch: 32 },
  csv: { hidden: '32,32', epochs: 30, optimizer: 'adam', lr: 0.01, batch: 32 },
};

function applyPreset() {
  const p = PRESETS[$('train-data').value];
  $('train-hidden').value = p.hidden;
  $('train-epochs').value = p.epochs;
  $('train-optimizer').value = p.optimizer;
  $('train-lr').value = p.lr;
  $('train-batch').value = p.batch;
  // The library's own default for the set (small beside the gap between its classes).
  if (state.wasm) {
    const noise = toy_noise($('train-data').value);
    if (noise !== undefined) $('train-noise').value = noise;
  }
  syncForm();
}

function outputsOf(data) {
  if (data === 'digits') return 10;
  if (data === 'spirals' || data === 'blobs') return Number($('train-classes').value);
  if (data === 'xor' || data === 'circles') return 2;
  if (!state.csv) throw new Error('choose a CSV file first');
  // The engine's own CSV reader (named classes too), once per file and label column.
  const label = $('train-label').value;
  if (state.csvClasses?.csv !== state.csv || state.csvClasses.label !== label) {
    state.csvClasses = { csv: state.csv, label, n: csv_classes(state.csv, label) };
  }
  return state.csvClasses.n;
}

// The page's settings as buildConfig takes them.
function form() {
  const data = $('train-data').value;
  return {
    data: {
      kind: data, points: $('train-points').value, noise: $('train-noise').value, classes: $('train-classes').value,
      dataSeed: $('train-seed').value, digitsData: digitsData(), fileName: state.csvName, labelColumn: $('train-label').value.trim(),
    },
    hidden: $('train-hidden').value,
    model: { activation: $('train-activation').value, batchNorm: $('train-bn').checked, residual: $('train-residual').checked, outputs: outputsOf(data) },
    loss: $('train-loss').value,
    epochs: $('train-epochs').value,
    batchSize: $('train-batch').value,
    batching: $('train-batching').value,
    seed: $('train-seed').value,
    schedule: { type: $('train-schedule').value, a: $('train-sched-a').value, b: $('train-sched-b').value },
  };
}

function trainOptimizer() {
  return {
    id: $('train-optimizer').value, lr: $('train-lr').value, momentum: $('train-momentum').value,
    beta1: $('train-beta1').value, beta2: $('train-beta2').value, weightDecay: $('train-wd').value,
  };
}

function showConfig() {
  try { $('train-config').textContent = buildConfig(form(), trainOptimizer()); } catch (e) { $('train-config').textContent = `# ${message(e)}`; }
}

const csvText = () => ($('train-data').value === 'digits' ? digits_csv() : $('train-data').value === 'csv' ? state.csv : null);

// ---------- Train ----------
function drawTrain() {
  const h = state.history;
  const logY = $('train-logy').checked;
  lineChart($('train-loss-plot'), [
    { name: 'train loss', color: COLORS[0], points: h.map((l) => [l.epoch, l.trainLoss]) },
    { name: 'test loss', color: COLORS[1], points: h.map((l) => [l.epoch, l.testLoss]) },
  ], { xLabel: 'epoch', yLabel: 'loss', logY, title: 'Loss' });
  lineChart($('train-acc-plot'), [
    { name: 'train accuracy', color: COLORS[0], points: h.map((l) => [l.epoch, l.trainAccuracy === null ? null : l.trainAccuracy * 100]) },
    { name: 'test accuracy', color: COLORS[1], points: h.map((l) => [l.epoch, l.testAccuracy === null ? null : l.testAccuracy * 100]) },
  ], { xLabel: 'epoch', yLabel: 'accuracy (%)', title: 'Accuracy', legendBottom: true });
  const rc = $('train-regions');
  if (state.regions) { rc.hidden = false; regionsPlot(rc, state.regions, state.classNames); }
  else if (state.runInfo && !state.runInfo.planar) rc.hidden = true;
  else lineChart(rc, [], { title: 'Decision regions', empty: 'decision regions appear while training (2-D data)' });
}

function logLine(l) {
  return `epoch ${String(l.epoch).padStart(3)}/${l.epochs}  train loss ${fix(l.trainLoss)}  acc ${pct(l.trainAccuracy)}  `
    + `test loss ${fix(l.testLoss)}  acc ${pct(l.testAccuracy)}  lr ${Number(l.lr).toPrecision(3)}  ${(l.seconds * 1e3).toFixed(0)} ms`;
}

function setBusy(busy) {
  state.busy = busy;
  for (const id of ['compare-start', 'surface-start', 'spectrum-start', 'check-start', 'model-download']) $(id).disabled = busy;
  $('model-load').disabled = busy;
}

async function train() {
  if (state.busy && $('train-start').classList.contains('stop')) { state.stop = true; return; }
  if (state.busy) return;
  const btn = $('train-start');
  setBusy(true);
  state.stop = false;
  btn.textContent = 'Stop';
  btn.classList.add('stop');
  state.history = [];
  state.regions = null;
  $('train-log').textContent = '';
  try {
    const f = form();
    const toml = buildConfig(f, trainOptimizer());
    $('train-config').textContent = toml;
    const executor = $('executor').value;
    drainGpuErrors();
    if (state.run) { state.run.free(); state.run = null; }
    setStatus('train-status', 'building the model…');
    await breathe();
    const run = state.lab.run(toml, csvText(), executor);
    state.run = run;
    state.runInfo = { toml, device: run.device().split('\n')[0].trim(), planar: run.isPlanar(), executor, hidden: f.hidden, model: f.model, data: f.data.kind, epochsDone: 0 };
    state.classNames = JSON.parse(run.classNames());
    const n = run.epochs();
    let [regionsAt, regionsMs] = [0, 0];
    drawTrain();
    let last = null;
    for (let e = 1; e <= n; e++) {
      if (state.stop) break;
      last = JSON.parse(await run.epoch());
      stopOnGpuErrors(executor === 'gpu');
      state.history.push(last);
      state.runInfo.epochsDone = last.epoch;
      $('train-log').textContent += logLine(last) + '\n';
      $('train-log').scrollTop = 1e9;
      // Regions cost a 120² prediction; on a slow adapter (SwiftShader: seconds) they are
      // refreshed so as to take at most about a fifth of the time.
      if (state.runInfo.planar && (e === n || performance.now() - regionsAt > 4 * regionsMs)) {
        const t0 = performance.now();
        state.regions = JSON.parse(await run.regions(120));
        stopOnGpuErrors(executor === 'gpu');
        regionsAt = performance.now();
        regionsMs = regionsAt - t0;
      }
      setStatus('train-status', `epoch ${last.epoch}/${n} · train loss ${fix(last.trainLoss)} · test accuracy ${pct(last.testAccuracy)} · ${state.runInfo.device}`);
      drawTrain();
      await breathe();
    }
    if (state.runInfo.planar && state.stop && last) {
      state.regions = JSON.parse(await run.regions(120));
      stopOnGpuErrors(executor === 'gpu');
    }
    drawTrain();
    if (last) {
      const acc = last.testAccuracy === null ? '—' : `${(last.testAccuracy * 100).toFixed(1)}%`;
      setStatus('train-status', `done: epoch ${last.epoch}, train loss ${fix(last.trainLoss)}, test accuracy ${acc}${state.stop ? ' (stopped)' : ''}`);
    } else setStatus('train-status', 'stopped before the first epoch');
    showModelInfo();
    setStatus('spectrum-status', 'ready: the Train tab\'s model');
  } catch (e) {
    setStatus('train-status', `error: ${message(e)}`, true);
  } finally {
    btn.textContent = 'Start';
    btn.classList.remove('stop');
    setBusy(false);
  }
}

// ---------- Compare ----------
function optimizerTable(tbodyId, checked, lrOf) {
  const tb = $(tbodyId).querySelector('tbody');
  for (const o of OPTIMIZERS) {
    const tr = tb.insertRow();
    const cb = document.createElement('input');
    cb.type = 'checkbox'; cb.checked = checked.includes(o.id); cb.dataset.opt = o.id; cb.id = `${tbodyId}-${o.id}`;
    tr.insertCell().append(cb);
    const lab = document.createElement('label'); lab.htmlFor = cb.id; lab.textContent = o.label;
    tr.insertCell().append(lab);
    const lr = document.createElement('input');
    lr.type = 'number'; lr.step = 'any'; lr.value = lrOf(o); lr.dataset.lr = o.id; lr.style.width = '6em';
    tr.insertCell().append(lr);
  }
}

function chosen(tableId) {
  const t = $(tableId);
  return [...t.querySelectorAll('input[type=checkbox]')].filter((c) => c.checked)
    .map((c) => ({ id: c.dataset.opt, lr: t.querySelector(`input[data-lr="${c.dataset.opt}"]`).value, label: OPTIMIZERS.find((o) => o.id === c.dataset.opt).label }));
}

const compareState = { runs: [] };

function drawCompare() {
  const metric = $('compare-metric').value;
  const scale = metric === 'testAccuracy' ? 100 : 1;
  lineChart($('compare-plot'), compareState.runs.map((r, i) => ({
    name: r.label, color: COLORS[i % COLORS.length],
    points: r.history.map((l) => [l.epoch, l[metric] === null ? null : l[metric] * scale]),
  })), {
    xLabel: 'epoch', yLabel: { testLoss: 'test loss', trainLoss: 'train loss', testAccuracy: 'test accuracy (%)' }[metric],
    logY: $('compare-logy').checked && metric !== 'testAccuracy', title: 'Optimizers from the same start, on the same batches',
  });
}

async function compare() {
  if (state.busy) return;
  setBusy(true);
  $('train-start').disabled = true;
  const runs = [];
  try {
    const opts = chosen('compare-optimizers');
    if (opts.length === 0) throw new Error('choose at least one optimizer');
    const f = form();
    const executor = $('executor').value;
    drainGpuErrors();
    compareState.runs = [];
    for (const o of opts) {
      const optimizer = { ...trainOptimizer(), id: o.id, lr: o.lr };
      const run = state.lab.run(buildConfig(f, optimizer), csvText(), executor);
      runs.push(run);
      compareState.runs.push({ label: `${o.label}, lr ${o.lr}`, history: [], run });
    }
    const n = runs[0].epochs();
    for (let e = 1; e <= n; e++) {
      for (const r of compareState.runs) r.history.push(JSON.parse(await r.run.epoch()));
      stopOnGpuErrors(executor === 'gpu');
      setStatus('compare-status', `epoch ${e}/${n}`);
      drawCompare();
      await breathe();
    }
    const rows = compareState.runs.map((r) => { const l = r.history[r.history.length - 1]; return `${r.label.padEnd(48)} test loss ${fix(l.testLoss)}  test acc ${pct(l.testAccuracy)}`; });
    $('compare-table').textContent = rows.join('\n');
    setStatus('compare-status', `done: ${compareState.runs.map((r) => `${r.label.split(',')[0]} ${fix(r.history[r.history.length - 1].testLoss)}`).join(' · ')} (final test loss)`);
  } catch (e) {
    setStatus('compare-status', `error: ${message(e)}`, true);
  } finally {
    for (const r of runs) r.free();
    for (const r of compareState.runs) r.run = null;
    $('train-start').disabled = false;
    setBusy(false);
  }
}

// ---------- Surfaces ----------
const SURFACES = {
  quadratic: { f: (x, y) => 0.5 * (x * x + 100 * y * y), bounds: [-1.2, 1.2, -1.2, 1.2], min: [0, 0] },
  rosenbrock: { f: (x, y) => (1 - x) ** 2 + 100 * (y - x * x) ** 2, bounds: [-1.5, 1.5, -0.5, 1.5], min: [1, 1] },
  saddle: { f: (x, y) => 5 * x * x - y * y, bounds: [-1.2, 1.2, -1.2, 1.2], min: null },
};
// Starting learning rates per surface, each stable there: κ = 100 needs lr < 2/100 for SGD;
// Rosenbrock's curvature at (−1.2, 1) is about 1300, so SGD needs lr below ~1.5e-3.
const SURFACE_LR = {
  quadratic: { sgd: 0.015, momentum: 0.005, 'heavy-ball': 0.005, nesterov: 0.005, 'nesterov-lookahead': 0.005, adagrad: 0.3, rmsprop: 0.01, adam: 0.05, adamw: 0.05 },
  rosenbrock: { sgd: 0.001, momentum: 0.0002, 'heavy-ball': 0.0002, nesterov: 0.0002, 'nesterov-lookahead': 0.0002, adagrad: 0.3, rmsprop: 0.003, adam: 0.05, adamw: 0.05 },
  saddle: { sgd: 0.05, momentum: 0.02, 'heavy-ball': 0.02, nesterov: 0.02, 'nesterov-lookahead': 0.02, adagrad: 0.1, rmsprop: 0.01, adam: 0.02, adamw: 0.02 },
};
const surfaceState = { paths: [], shown: 0 };

function drawSurface() {
  const s = SURFACES[$('surface-name').value];
  const bounds = surfaceState.bounds || s.bounds;
  const k = surfaceState.shown;
  const paths = surfaceState.paths.map((p, i) => ({ name: p.label, color: COLORS[i % COLORS.length], points: p.path.slice(0, k + 1) }));
  surfacePlot($('surface-plot'), s.f, bounds, paths, { start: surfaceState.paths[0]?.path[0], min: s.min });
  lineChart($('surface-values'), surfaceState.paths.map((p, i) => ({
    name: p.label, color: COLORS[i % COLORS.length], points: p.values.slice(0, k + 1).map((v, j) => [j, v]),
  })), { xLabel: 'step', yLabel: 'f(x, y)', logY: $('surface-name').value !== 'saddle', title: 'Value along the path' });
}

async function surfaces() {
  if (state.busy) return;
  if (typeof state.lab.surface !== 'function') { setStatus('surface-status', 'error: not available in this build (Lab.surface is missing)', true); drawSurface(); return; }
  setBusy(true);
  try {
    const name = $('surface-name').value;
    const steps = Number($('surface-steps').value);
    const opts = chosen('surface-optimizers');
    if (opts.length === 0) throw new Error('choose at least one optimizer');
    surfaceState.paths = [];
    surfaceState.shown = 0;
    const executor = $('executor').value;
    drainGpuErrors();
    for (const o of opts) {
      const toml = optimizerLines(o.id, { lr: o.lr, momentum: 0.9 }).join('\n') + '\n';
      setStatus('surface-status', `running ${o.label}…`);
      const r = JSON.parse(await state.lab.surface(name, toml, steps, executor));
      stopOnGpuErrors(executor === 'gpu');
      surfaceState.bounds = r.bounds;
      surfaceState.paths.push({ label: `${o.label}, lr ${o.lr}`, path: r.path, values: r.values });
    }
    const total = Math.max(...surfaceState.paths.map((p) => p.path.length - 1));
    // Animate: about four seconds whatever the step count.
    const per = Math.max(1, Math.ceil(total / 240));
    for (let k = 0; k <= total; k += per) {
      surfaceState.shown = k;
      setStatus('surface-status', `step ${k}/${total}`);
      drawSurface();
      await breathe();
    }
    surfaceState.shown = total;
    drawSurface();
    const ends = surfaceState.paths.map((p) => `${p.label.split(',')[0]} f = ${Number(p.values[p.values.length - 1]).toPrecision(3)}`);
    setStatus('surface-status', `done: ${steps} steps · ${ends.join(' · ')}`);
  } catch (e) {
    setStatus('surface-status', `error: ${message(e)}`, true);
  } finally {
    setBusy(false);
  }
}

// ---------- Spectrum ----------
async function spectrum() {
  if (state.busy) return;
  const run = state.run;
  if (!run) { setStatus('spectrum-status', 'error: no trained model: train one on the Train tab first', true); return; }
  if (typeof run.spectrum !== 'function') { setStatus('spectrum-status', 'error: not available in this build (Run.spectrum is missing)', true); return; }
  setBusy(true);
  $('train-start').disabled = true;
  try {
    const onGpu = state.runInfo.executor === 'gpu';
    setStatus('spectrum-status', onGpu ? 'running Lanczos…' : 'running Lanczos on the CPU reference…');
    await breathe();
    drainGpuErrors();
    const s = JSON.parse(await run.spectrum(Number($('spectrum-k').value), Number($('spectrum-steps').value)));
    stopOnGpuErrors(onGpu);
    const lmax = Math.max(...s.top);
    const lmin = s.bottom.length ? Math.min(...s.bottom) : Math.min(...s.top);
    lineChart($('spectrum-plot'), [{ name: 'spectral density', color: COLORS[0], points: s.density.x.map((x, i) => [x, s.density.y[i]]) }], {
      xLabel: 'eigenvalue λ', yLabel: 'density', title: `Hessian spectrum (${s.params} parameters, ${s.rows} rows)`,
      marks: s.top.map((x) => ({ x, color: COLORS[1] })), yMin: 0,
    });
    const p3 = (v) => `${(100 * v).toPrecision(3)} %`;
    const delta = Number(s.resolution).toExponential(2);
    // SLQ cannot tell the sign of mass within ±δ of zero: say how much there is, not just the index.
    const index = s.exactIndex !== null
      ? `${p3(s.exactIndex)} of all ${s.params} eigenvalues below zero (exact: every eigenvalue computed)`
      : `${p3(s.index)} of the spectrum below −δ, and ${p3(s.unresolved)} within ±δ (δ = ${delta}), whose sign SLQ cannot tell`;
    $('spectrum-out').textContent = [
      `device     ${s.device}`, `λ_max      ${lmax.toPrecision(6)}`, `λ_min      ${lmin.toPrecision(6)}`,
      `index      ${index}`, `top        ${s.top.map((v) => v.toPrecision(5)).join(', ')}`,
      `bottom     ${s.bottom.map((v) => v.toPrecision(5)).join(', ')}`, `method     ${s.method}`,
      `time       ${Number(s.seconds).toFixed(2)} s, ${s.products} Hessian-vector products`,
      '(dashed red lines: the top eigenvalues)',
    ].join('\n');
    const shown = s.exactIndex !== null ? `${p3(s.exactIndex)} (exact)` : `${p3(s.index)} (+ ${p3(s.unresolved)} unresolved)`;
    setStatus('spectrum-status', `done: λ_max = ${lmax.toPrecision(5)}, λ_min = ${lmin.toPrecision(5)}, index = ${shown}`);
  } catch (e) {
    setStatus('spectrum-status', `error: ${message(e)}`, true);
  } finally {
    $('train-start').disabled = false;
    setBusy(false);
  }
}

// ---------- Check ----------
async function check() {
  if (state.busy) return;
  if (typeof state.lab.check !== 'function') { setStatus('check-status', 'error: not available in this build (Lab.check is missing)', true); return; }
  setBusy(true);
  try {
    setStatus('check-status', 'checking every kernel family against the CPU reference…');
    await breathe();
    drainGpuErrors();
    const r = JSON.parse(await state.lab.check());
    stopOnGpuErrors(true);
    const t = $('check-table');
    t.innerHTML = '<thead><tr><th>op</th><th>worst error</th><th>share of bound</th><th>result</th></tr></thead>';
    const tb = t.createTBody();
    for (const op of r.ops) {
      const tr = tb.insertRow();
      tr.insertCell().textContent = op.op;
      tr.insertCell().textContent = Number(op.worst).toExponential(2);
      tr.insertCell().textContent = `${(op.share * 100).toFixed(1)}%`;
      const c = tr.insertCell();
      c.textContent = op.pass ? 'ok' : 'FAIL';
      c.className = op.pass ? 'pass' : 'fail';
    }
    setStatus('check-status', `done: ${r.passed} ops within bounds, ${r.failed} failed (${r.adapter})`, r.failed > 0);
  } catch (e) {
    setStatus('check-status', `error: ${message(e)}`, true);
  } finally {
    setBusy(false);
  }
}

// ---------- Model ----------
const TORCH_ACT = { relu: 'nn.ReLU()', tanh: 'nn.Tanh()', sigmoid: 'nn.Sigmoid()', gelu: 'nn.GELU()', 'leaky-relu': 'nn.LeakyReLU(0.01)', identity: 'nn.Identity()' };

// The PyTorch model matching the run's layers (docs/config.md's Residual module when needed).
function torchModel(info, inputs) {
  const hidden = info.hidden.split(/[,\s]+/).filter(Boolean).map(Number);
  const m = info.model;
  const block = (i, w) => {
    const lin = `nn.Linear(${i}, ${w}${m.batchNorm ? ', bias=False' : ''})`;
    return [lin, ...(m.batchNorm ? [`nn.BatchNorm1d(${w})`] : []), TORCH_ACT[m.activation]];
  };
  const parts = [];
  let width = inputs;
  hidden.forEach((w, k) => {
    if (m.residual && k > 0) {
      const proj = width !== w ? `, projection=nn.Linear(${width}, ${w}, bias=False)` : '';
      parts.push(`Residual(${block(width, w).join(', ')}${proj})`);
    } else parts.push(...block(width, w));
    width = w;
  });
  parts.push(`nn.Linear(${width}, ${m.outputs})`);
  const scale = (info.toml.match(/^scale = (\S+)/m) || [])[1];
  const residual = m.residual && hidden.length > 1 ? `
class Residual(nn.Module):
    """gradflow's residual layer: y = skip(x) + body(x)."""
    def __init__(self, *layers, projection=None):
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.projection = projection
    def forward(self, x):
        return (x if self.projection is None else self.projection(x)) + self.body(x)
` : '';
  return `import torch, torch.nn as nn
from safetensors.torch import load_file
${residual}
state = load_file("gradflow-model.safetensors")
model = nn.Sequential(
    ${parts.join(',\n    ')},
)
# The file also holds the optimizer state ("optimizer.*") and the input standardisation ("gradflow.*").
model.load_state_dict({k: v for k, v in state.items() if not k.startswith(("optimizer.", "gradflow."))})
model.eval()
x = torch.zeros(1, ${inputs})   # one row of your data, in its own units${scale ? `
x = x * ${scale}                # the config's data.scale` : ''}
if "gradflow.input_mean" in state:
    x = (x - state["gradflow.input_mean"]) / state["gradflow.input_std"]
print(model(x).argmax(dim=1))
`;
}

function inputsOf(info) {
  if (info.data === 'digits') return 64;
  // A CSV's features: every column but the label.
  if (info.data === 'csv' && state.csv) return state.csv.split(/\r?\n/)[0].split(',').length - 1;
  return 2;
}

// PyTorch's parameter count (sum of numel over model.parameters()) of the run's layers: the
// engine's flat buffer may be padded between tensors, so its length is not this.
function paramCount(info, inputs) {
  const hidden = info.hidden.split(/[,\s]+/).filter(Boolean).map(Number);
  const m = info.model;
  let n = 0;
  let width = inputs;
  hidden.forEach((w, k) => {
    n += width * w + (m.batchNorm ? 2 * w : w);
    if (m.residual && k > 0 && width !== w) n += width * w;
    width = w;
  });
  return n + width * m.outputs + m.outputs;
}

async function showModelInfo() {
  const info = state.runInfo;
  if (!info || !state.run) return;
  const inputs = inputsOf(info);
  const params = Number.isInteger(inputs) ? paramCount(info, inputs).toLocaleString('en') : '?';
  const layers = `${info.hidden || '(none)'} hidden, ${info.model.activation}${info.model.batchNorm ? ', batch norm' : ''}${info.model.residual ? ', residual' : ''}, ${info.model.outputs} outputs`;
  $('model-info').textContent = `${info.device} · data ${info.data} · layers ${layers} · ${params} parameters · trained ${info.epochsDone} epochs`;
  $('model-python').textContent = torchModel(info, inputs);
}

async function download() {
  if (state.busy) return;
  if (!state.run) { setStatus('model-status', 'error: no model yet: train one on the Train tab', true); return; }
  setBusy(true);
  try {
    drainGpuErrors();
    const bytes = await state.run.safetensors();
    // A GPU error on the way would have spoilt the bytes read back.
    stopOnGpuErrors(state.runInfo?.executor === 'gpu');
    const a = $('model-link');
    if (a.href) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    a.download = 'gradflow-model.safetensors';
    a.textContent = `gradflow-model.safetensors (${bytes.length.toLocaleString('en')} bytes)`;
    a.hidden = false;
    a.click();
    setStatus('model-status', `saved gradflow-model.safetensors: ${bytes.length} bytes`);
  } catch (e) {
    setStatus('model-status', `error: ${message(e)}`, true);
  } finally {
    setBusy(false);
  }
}

async function load(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  if (!state.run) { setStatus('model-status', 'no run to load into: train one on the Train tab (the file must fit its layers)', true); return; }
  setBusy(true);
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    drainGpuErrors();
    state.run.loadSafetensors(bytes, file.name);
    const [loss, acc] = JSON.parse(await state.run.evaluateTest());
    stopOnGpuErrors(state.runInfo?.executor === 'gpu');
    setStatus('model-status', `loaded ${file.name}: test loss ${fix(loss)}, test accuracy ${pct(acc)}`);
  } catch (e) {
    setStatus('model-status', `error: ${message(e)}`, true);
  } finally {
    ev.target.value = '';
    setBusy(false);
  }
}

// ---------- self-test ----------
async function selftest() {
  const el = $('selftest');
  el.hidden = false;
  el.textContent = 'selftest: running…';
  try {
    if (typeof state.lab.selftest !== 'function') { el.textContent = 'selftest: FAIL not built'; return; }
    const r = JSON.parse(await state.lab.selftest());
    el.textContent = `selftest: ${r.pass ? 'PASS' : 'FAIL'} ${r.summary}\n${(r.lines || []).join('\n')}`;
  } catch (e) {
    el.textContent = `selftest: FAIL ${message(e)}`;
  }
}

function redraw() {
  if (!$('view-train').hidden) drawTrain();
  if (!$('view-compare').hidden) drawCompare();
  if (!$('view-surfaces').hidden) drawSurface();
}

// ---------- start ----------
async function main() {
  fillOptimizerSelect();
  optimizerTable('compare-optimizers', ['sgd', 'heavy-ball', 'nesterov-lookahead', 'adam'], (o) => o.lr);
  optimizerTable('surface-optimizers', ['sgd', 'heavy-ball', 'adam'], (o) => SURFACE_LR.quadratic[o.id]);
  for (const el of document.querySelectorAll('#train-form input, #train-form select')) el.addEventListener('change', syncForm);
  $('train-data').addEventListener('change', applyPreset);
  $('train-csv').addEventListener('change', async (ev) => {
    const f = ev.target.files[0];
    state.csv = f ? await f.text() : null;
    state.csvName = f ? f.name : null;
    syncForm();
  });
  $('train-logy').addEventListener('change', drawTrain);
  $('compare-metric').addEventListener('change', drawCompare);
  $('compare-logy').addEventListener('change', drawCompare);
  $('surface-name').addEventListener('change', () => {
    const lrs = SURFACE_LR[$('surface-name').value];
    for (const el of document.querySelectorAll('#surface-optimizers input[data-lr]')) el.value = lrs[el.dataset.lr];
    // Rosenbrock's valley takes many small steps; the saddle's escape only a few dozen.
    $('surface-steps').value = { quadratic: 100, rosenbrock: 1000, saddle: 60 }[$('surface-name').value];
    surfaceState.paths = []; surfaceState.bounds = null; drawSurface();
  });
  $('train-start').addEventListener('click', train);
  $('compare-start').addEventListener('click', compare);
  $('surface-start').addEventListener('click', surfaces);
  $('spectrum-start').addEventListener('click', spectrum);
  $('check-start').addEventListener('click', check);
  $('model-download').addEventListener('click', download);
  $('model-load').addEventListener('change', load);
  window.addEventListener('resize', redraw);
  applyPreset();
  setBusy(true);
  $('train-start').disabled = true;
  try {
    await init();
    state.wasm = true;
    applyPreset();
    state.lab = await open_lab();
    showAdapter();
    drainGpuErrors();
  } catch (e) {
    $('adapter').textContent = `error: the engine did not load: ${message(e)}`;
    $('adapter').classList.add('none');
    return;
  }
  $('train-start').disabled = false;
  setBusy(false);
  for (const [m, id] of [['surface', 'surface-status'], ['check', 'check-status']]) {
    if (typeof state.lab[m] !== 'function') setStatus(id, 'not available in this build');
  }
  drawTrain();
  if (new URLSearchParams(location.search).has('selftest')) await selftest();
}

main();
