// Builds the TOML config `gradflow train` reads from the page's controls, so a run in the page
// can be copied into the CLI unchanged (docs/config.md is the format).

// Every optimizer and momentum form the engine has, as the page offers them.
export const OPTIMIZERS = [
  { id: 'sgd', label: 'SGD', lr: 0.1 },
  { id: 'momentum', label: 'SGD + momentum (PyTorch form)', lr: 0.05 },
  { id: 'heavy-ball', label: 'heavy ball (course form)', lr: 0.05 },
  { id: 'nesterov', label: 'Nesterov (PyTorch, nesterov = true)', lr: 0.05 },
  { id: 'nesterov-lookahead', label: 'Nesterov look-ahead (course form)', lr: 0.05 },
  { id: 'adagrad', label: 'AdaGrad', lr: 0.05 },
  { id: 'rmsprop', label: 'RMSprop', lr: 0.005 },
  { id: 'adam', label: 'Adam', lr: 0.01 },
  { id: 'adamw', label: 'AdamW', lr: 0.01 },
];

// The number as TOML writes a float (an integer-looking value keeps a ".0" so it stays a float).
export function num(v) {
  const x = Number(v);
  if (!Number.isFinite(x)) throw new Error(`"${v}" is not a number`);
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

function int(v, what) {
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0) throw new Error(`${what}: expected a whole number ≥ 0, found "${v}"`);
  return String(x);
}

const str = (s) => JSON.stringify(String(s));

// The [optimizer] table's lines (without the header) for optimizer `id` with settings `o`
// ({ lr, momentum, beta1, beta2, weightDecay }).
export function optimizerLines(id, o) {
  const lines = [];
  const wd = o.weightDecay !== undefined && o.weightDecay !== '' && Number(o.weightDecay) !== 0;
  const mu = o.momentum ?? 0.9;
  switch (id) {
    case 'sgd':
      lines.push('type = "sgd"', `lr = ${num(o.lr)}`);
      break;
    case 'momentum':
      lines.push('type = "sgd"', `lr = ${num(o.lr)}`, `momentum = ${num(mu)}`);
      break;
    case 'heavy-ball':
      lines.push('type = "sgd"', `lr = ${num(o.lr)}`, `momentum = { value = ${num(mu)}, form = "heavy-ball" }`);
      break;
    case 'nesterov':
      lines.push('type = "sgd"', `lr = ${num(o.lr)}`, `momentum = ${num(mu)}`, 'nesterov = true');
      break;
    case 'nesterov-lookahead':
      lines.push('type = "sgd"', `lr = ${num(o.lr)}`,
        `momentum = { value = ${num(mu)}, form = "nesterov-lookahead" }`);
      break;
    case 'adagrad':
      lines.push('type = "adagrad"', `lr = ${num(o.lr)}`);
      break;
    case 'rmsprop':
      lines.push('type = "rmsprop"', `lr = ${num(o.lr)}`);
      break;
    case 'adam':
    case 'adamw':
      lines.push(`type = "${id}"`, `lr = ${num(o.lr)}`);
      if (o.beta1 !== undefined && o.beta2 !== undefined) lines.push(`betas = [${num(o.beta1)}, ${num(o.beta2)}]`);
      break;
    default:
      throw new Error(`unknown optimizer "${id}"`);
  }
  // AdamW's own default decay is 0.01; the others' is 0, so only a non-zero value is written,
  // except for AdamW where the box always says what it uses.
  if (id === 'adamw' && o.weightDecay !== undefined && o.weightDecay !== '') lines.push(`weight_decay = ${num(o.weightDecay)}`);
  else if (wd) lines.push(`weight_decay = ${num(o.weightDecay)}`);
  return lines;
}

// "16, 16" → [16, 16]; an empty text is no hidden layer.
export function parseHidden(text) {
  const parts = text.split(/[,\s]+/).filter((s) => s !== '');
  return parts.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`hidden layers: "${s}" is not a width ≥ 1 (write e.g. 16,16)`);
    return n;
  });
}

// The [model] layers: each hidden layer is linear (bias off before batch norm, which cancels
// it), batch norm if asked, the activation; with residual blocks every hidden layer after the
// first is y = x + f(x), with a bias-free projection where the width changes.
export function layerLines(hidden, m) {
  const block = (w) => {
    const parts = [m.batchNorm ? `{ type = "linear", out = ${w}, bias = false }` : `{ type = "linear", out = ${w} }`];
    if (m.batchNorm) parts.push('{ type = "batch-norm" }');
    parts.push(`{ type = "${m.activation}" }`);
    return parts;
  };
  const lines = [];
  hidden.forEach((w, i) => {
    if (m.residual && i > 0) {
      const proj = hidden[i - 1] !== w ? 'projection = true, ' : '';
      lines.push(`  { type = "residual", ${proj}layers = [ ${block(w).join(', ')} ] },`);
    } else {
      lines.push(`  ${block(w).join(', ')},`);
    }
  });
  lines.push(`  { type = "linear", out = ${m.outputs} },`);
  return lines;
}

// The [data] table for the page's data choice.
export function dataLines(d) {
  switch (d.kind) {
    case 'spirals':
    case 'xor':
    case 'circles':
    case 'blobs': {
      const lines = [`generate = "${d.kind}"`, `points = ${int(d.points, 'points')}`, `noise = ${num(d.noise)}`];
      if (d.kind === 'spirals' || d.kind === 'blobs') lines.push(`classes = ${int(d.classes, 'classes')}`);
      lines.push(`seed = ${int(d.dataSeed, 'data seed')}`, 'standardize = true', 'test_fraction = 0.2');
      return lines;
    }
    case 'digits':
      return d.digitsData;
    case 'csv': {
      const col = /^\d+$/.test(d.labelColumn) ? d.labelColumn : str(d.labelColumn || 'last');
      return [`path = ${str(d.fileName || 'data.csv')}`, `label_column = ${col}`, 'standardize = true', 'test_fraction = 0.2'];
    }
    default:
      throw new Error(`unknown data "${d.kind}"`);
  }
}

// The [data] lines of `gradflow`'s digits config (the CLI's own), comments dropped.
export function dataTableOf(toml) {
  const out = [];
  let inData = false;
  for (const raw of toml.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trimEnd();
    if (/^\s*\[/.test(line)) inData = line.trim() === '[data]';
    else if (inData && line.trim() !== '' && !line.trim().startsWith('#')) out.push(line.trim());
  }
  return out;
}

// The [train] schedule as an inline table.
export function scheduleOf(s) {
  switch (s.type) {
    case 'constant':
      return null;
    case 'step':
      return `{ type = "step", every = ${int(s.a, 'schedule every')}, gamma = ${num(s.b)} }`;
    case 'exponential':
      return `{ type = "exponential", gamma = ${num(s.b)} }`;
    case 'cosine':
      return `{ type = "cosine", total = ${int(s.a, 'schedule total')}, warmup = ${int(s.b, 'schedule warmup')} }`;
    case 'linear-decay':
      return `{ type = "linear-decay", tau = ${int(s.a, 'schedule tau')}, final_factor = ${num(s.b)} }`;
    default:
      throw new Error(`unknown schedule "${s.type}"`);
  }
}

// The whole config. `form` holds the page's settings; `optimizer` is { id, ...settings }.
export function buildConfig(form, optimizer) {
  const hidden = parseHidden(form.hidden);
  const t = [
    '# Written by the gradflow page: `gradflow train --config this.toml` runs the same thing.',
    '[data]', ...dataLines(form.data), '',
    '[model]', `loss = "${form.loss}"`, `init_seed = ${int(form.seed, 'seed')}`, 'layers = [',
    ...layerLines(hidden, form.model), ']', '',
    '[optimizer]', ...optimizerLines(optimizer.id, optimizer), '',
    '[train]', `epochs = ${int(form.epochs, 'epochs')}`, `batch_size = ${int(form.batchSize, 'batch size')}`,
    `batching = "${form.batching}"`,
    // Batch norm cannot train on a short last batch of one row.
    `drop_last = ${form.model.batchNorm ? 'true' : 'false'}`,
    `seed = ${int(form.seed, 'seed')}`,
  ];
  const sched = scheduleOf(form.schedule);
  if (sched) t.push(`schedule = ${sched}`);
  return t.join('\n') + '\n';
}
