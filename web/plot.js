// Canvas plots for the page: line charts with axes and legends, decision regions, surface level
// sets with trajectories. HiDPI aware: the backing store is the CSS size × devicePixelRatio.

export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

// The canvas's 2-D context scaled so drawing is in CSS pixels; returns [ctx, width, height].
export function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400;
  const h = canvas.clientHeight || 260;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '12px system-ui, sans-serif';
  return [ctx, w, h];
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

// Ticks (as log10 values) at the decades, and at 2 and 5 times them when under two decades show.
function logTicks(y0, y1) {
  const ticks = [];
  const mults = y1 - y0 < 2 ? [1, 2, 5] : [1];
  for (let k = Math.floor(y0); k <= Math.ceil(y1); k++) {
    for (const m of mults) { const t = k + Math.log10(m); if (t >= y0 && t <= y1) ticks.push(t); }
  }
  return ticks;
}

const fmt = (v) => {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(0);
  return String(Number(v.toPrecision(4)));
};

// A line chart. series: [{ name, color, points: [[x, y], ...], dash }]; opts: { xLabel, yLabel,
// logY, yMin, yMax, title, marks: [{ x, color, label }] }.
export function lineChart(canvas, series, opts = {}) {
  const [ctx, w, h] = setup(canvas);
  const pad = { l: 58, r: 12, t: opts.title ? 24 : 10, b: 40 };
  const pts = series.flatMap((s) => s.points).filter(([, y]) => y !== null && Number.isFinite(y) && (!opts.logY || y > 0));
  ctx.fillStyle = '#555';
  if (pts.length === 0) {
    ctx.fillText(opts.empty || 'no data yet', w / 2 - 30, h / 2);
    axesLabels(ctx, w, h, pad, opts);
    return;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  if (opts.xMin !== undefined) x0 = opts.xMin;
  if (x1 === x0) x1 = x0 + 1;
  const ty = (y) => (opts.logY ? Math.log10(y) : y);
  let [y0, y1] = [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))];
  if (opts.yMin !== undefined) y0 = opts.yMin;
  if (opts.yMax !== undefined) y1 = opts.yMax;
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const m = (y1 - y0) * 0.05;
  if (opts.yMin === undefined) y0 -= m;
  if (opts.yMax === undefined) y1 += m;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y) => h - pad.b - ((ty(y) - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  // Grid and ticks.
  ctx.strokeStyle = '#e4e4e4';
  ctx.lineWidth = 1;
  ctx.fillStyle = '#555';
  ctx.textAlign = 'right';
  const yticks = opts.logY ? logTicks(y0, y1) : niceTicks(y0, y1);
  for (const t of yticks) {
    const py = opts.logY ? h - pad.b - ((t - y0) / (y1 - y0)) * (h - pad.t - pad.b) : Y(t);
    ctx.beginPath(); ctx.moveTo(pad.l, py); ctx.lineTo(w - pad.r, py); ctx.stroke();
    ctx.fillText(opts.logY ? fmt(10 ** t) : fmt(t), pad.l - 5, py + 4);
  }
  ctx.textAlign = 'center';
  for (const t of niceTicks(x0, x1, 6)) {
    ctx.beginPath(); ctx.moveTo(X(t), pad.t); ctx.lineTo(X(t), h - pad.b); ctx.stroke();
    ctx.fillText(fmt(t), X(t), h - pad.b + 15);
  }
  ctx.strokeStyle = '#888';
  ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  for (const mk of opts.marks || []) {
    ctx.strokeStyle = mk.color || '#d62728';
    ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(X(mk.x), pad.t); ctx.lineTo(X(mk.x), h - pad.b); ctx.stroke();
    ctx.setLineDash([]);
  }
  // Lines.
  ctx.save();
  ctx.beginPath(); ctx.rect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b); ctx.clip();
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y) || (opts.logY && y <= 0)) { pen = false; continue; }
      if (pen) ctx.lineTo(X(x), Y(y)); else ctx.moveTo(X(x), Y(y));
      pen = true;
    }
    ctx.stroke();
    if (s.points.length === 1 && s.points[0][1] !== null) {
      ctx.fillStyle = s.color;
      ctx.beginPath(); ctx.arc(X(s.points[0][0]), Y(s.points[0][1]), 3, 0, 7); ctx.fill();
    }
  }
  ctx.restore();
  ctx.setLineDash([]);
  axesLabels(ctx, w, h, pad, opts);
  const named = series.filter((s) => s.name);
  // Accuracy curves climb to the top right, so their legend goes to the bottom right.
  legend(ctx, named, w - pad.r - 8, opts.legendBottom ? h - pad.b - 12 - named.length * 16 : pad.t + 6);
}

function axesLabels(ctx, w, h, pad, opts) {
  ctx.fillStyle = '#333';
  ctx.textAlign = 'center';
  if (opts.title) { ctx.font = 'bold 13px system-ui, sans-serif'; ctx.fillText(opts.title, w / 2, 15); ctx.font = '12px system-ui, sans-serif'; }
  if (opts.xLabel) ctx.fillText(opts.xLabel, (pad.l + w - pad.r) / 2, h - 6);
  if (opts.yLabel) {
    ctx.save();
    ctx.translate(13, (pad.t + h - pad.b) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(opts.yLabel + (opts.logY ? ' (log scale)' : ''), 0, 0);
    ctx.restore();
  }
}

// A legend box in the top-right corner, right edge at x.
export function legend(ctx, series, x, y) {
  if (series.length === 0) return;
  const wMax = Math.max(...series.map((s) => ctx.measureText(s.name).width)) + 34;
  const hBox = series.length * 16 + 6;
  ctx.fillStyle = 'rgba(255,255,255,0.85)';
  ctx.fillRect(x - wMax, y, wMax, hBox);
  ctx.strokeStyle = '#ccc';
  ctx.strokeRect(x - wMax, y, wMax, hBox);
  ctx.textAlign = 'left';
  series.forEach((s, i) => {
    const yy = y + 14 + i * 16;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath(); ctx.moveTo(x - wMax + 6, yy - 4); ctx.lineTo(x - wMax + 24, yy - 4); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#222';
    ctx.fillText(s.name, x - wMax + 28, yy);
  });
}

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// Decision regions: each cell in its class's colour, paler where the model is less sure
// (confidence from 1/k to 1), training points on top. r is the JSON of Run.regions.
export function regionsPlot(canvas, r, classNames) {
  const [ctx, w, h] = setup(canvas);
  const pad = { l: 40, r: 10, t: 10, b: 32 };
  const side = Math.min(w - pad.l - pad.r, h - pad.t - pad.b);
  const img = new ImageData(r.resolution, r.resolution);
  const floor = 1 / Math.max(r.classes, 2);
  for (let i = 0; i < r.cells.length; i++) {
    const [cr, cg, cb] = rgb(COLORS[r.cells[i] % COLORS.length]);
    // Alpha from 0.1 (a guess among k classes) to 0.6 (certain).
    const t = Math.max(0, Math.min(1, (r.confidence[i] - floor) / (1 - floor)));
    const a = 0.1 + 0.5 * t;
    img.data[4 * i] = Math.round(255 * (1 - a) + cr * a);
    img.data[4 * i + 1] = Math.round(255 * (1 - a) + cg * a);
    img.data[4 * i + 2] = Math.round(255 * (1 - a) + cb * a);
    img.data[4 * i + 3] = 255;
  }
  const off = document.createElement('canvas');
  off.width = off.height = r.resolution;
  off.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, pad.l, pad.t, side, side);
  const [x0, x1, y0, y1] = r.bounds;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * side;
  const Y = (y) => pad.t + ((y1 - y) / (y1 - y0)) * side;
  for (const [x, y, l] of r.points) {
    ctx.fillStyle = COLORS[l % COLORS.length];
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 0.8;
    ctx.beginPath(); ctx.arc(X(x), Y(y), 2.6, 0, 7); ctx.fill(); ctx.stroke();
  }
  ctx.strokeStyle = '#888';
  ctx.strokeRect(pad.l, pad.t, side, side);
  ctx.fillStyle = '#555';
  ctx.textAlign = 'center';
  for (const t of niceTicks(x0, x1, 5)) ctx.fillText(fmt(t), X(t), pad.t + side + 14);
  ctx.fillText('feature 1', pad.l + side / 2, pad.t + side + 28);
  ctx.textAlign = 'right';
  for (const t of niceTicks(y0, y1, 5)) ctx.fillText(fmt(t), pad.l - 4, Y(t) + 4);
  ctx.save(); ctx.translate(11, pad.t + side / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = 'center';
  ctx.fillText('feature 2', 0, 0); ctx.restore();
  legend(ctx, (classNames || []).slice(0, r.classes).map((n, i) => ({ name: `class ${n}`, color: COLORS[i % COLORS.length] })), pad.l + side - 4, pad.t + 4);
}

// A 2-D function's level sets on a shaded field, and trajectories on top.
// f: (x, y) → value; bounds [x0, x1, y0, y1]; paths: [{ name, color, points: [[x, y], ...] }].
export function surfacePlot(canvas, f, bounds, paths, opts = {}) {
  const [ctx, w, h] = setup(canvas);
  // The legend goes below the plot so it never hides a path.
  const named = paths.filter((p) => p.name);
  const pad = { l: 44, r: 10, t: 10, b: 38 + (named.length ? named.length * 16 + 8 : 0) };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const [x0, x1, y0, y1] = bounds;
  const n = 240;
  const m = Math.round((n * ph) / pw);
  const vals = new Float64Array(n * m);
  let lo = Infinity;
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    const v = f(x0 + ((j + 0.5) / n) * (x1 - x0), y1 - ((i + 0.5) / m) * (y1 - y0));
    vals[i * n + j] = v;
    lo = Math.min(lo, v);
  }
  // Log-spaced levels of f − min (signed log for a saddle, where f has no minimum in the box).
  const signed = lo < 0;
  const level = (v) => (signed ? Math.sign(v) * Math.log1p(Math.abs(v)) * 3 : Math.log(v - lo + 1e-3) * 2.5);
  const lv = vals.map(level);
  let [a, b] = [Infinity, -Infinity];
  for (const v of lv) { a = Math.min(a, v); b = Math.max(b, v); }
  const img = new ImageData(n, m);
  for (let k = 0; k < n * m; k++) {
    const t = (lv[k] - a) / (b - a || 1);
    const band = Math.floor(lv[k]);
    const j = k % n;
    const edge = (j + 1 < n && Math.floor(lv[k + 1]) !== band) || (k + n < n * m && Math.floor(lv[k + n]) !== band);
    // Blue (low) to sand (high), contour lines darker.
    let [r, g, bl] = [70 + 180 * t, 110 + 120 * t, 190 - 60 * t];
    if (edge) { r *= 0.6; g *= 0.6; bl *= 0.6; }
    img.data[4 * k] = r; img.data[4 * k + 1] = g; img.data[4 * k + 2] = bl; img.data[4 * k + 3] = 255;
  }
  const off = document.createElement('canvas');
  off.width = n; off.height = m;
  off.getContext('2d').putImageData(img, 0, 0);
  ctx.drawImage(off, pad.l, pad.t, pw, ph);
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y) => pad.t + ((y1 - y) / (y1 - y0)) * ph;
  ctx.save();
  ctx.beginPath(); ctx.rect(pad.l, pad.t, pw, ph); ctx.clip();
  for (const p of paths) {
    ctx.strokeStyle = p.color; ctx.fillStyle = p.color; ctx.lineWidth = 2;
    ctx.beginPath();
    p.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    const last = p.points[p.points.length - 1];
    if (last) { ctx.beginPath(); ctx.arc(X(last[0]), Y(last[1]), 4, 0, 7); ctx.fill(); }
  }
  if (opts.start) { ctx.fillStyle = '#000'; ctx.beginPath(); ctx.arc(X(opts.start[0]), Y(opts.start[1]), 4, 0, 7); ctx.fill(); }
  if (opts.min) { ctx.strokeStyle = '#000'; ctx.lineWidth = 2; const [mx, my] = [X(opts.min[0]), Y(opts.min[1])]; ctx.beginPath(); ctx.moveTo(mx - 5, my - 5); ctx.lineTo(mx + 5, my + 5); ctx.moveTo(mx + 5, my - 5); ctx.lineTo(mx - 5, my + 5); ctx.stroke(); }
  ctx.restore();
  ctx.strokeStyle = '#888'; ctx.strokeRect(pad.l, pad.t, pw, ph);
  ctx.fillStyle = '#555'; ctx.textAlign = 'center';
  for (const t of niceTicks(x0, x1, 6)) ctx.fillText(fmt(t), X(t), pad.t + ph + 14);
  ctx.fillText('x', pad.l + pw / 2, pad.t + ph + 29);
  ctx.textAlign = 'right';
  for (const t of niceTicks(y0, y1, 5)) ctx.fillText(fmt(t), pad.l - 4, Y(t) + 4);
  ctx.save(); ctx.translate(11, pad.t + ph / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = 'center'; ctx.fillText('y', 0, 0); ctx.restore();
  legend(ctx, named, pad.l + pw, pad.t + ph + 36);
}
