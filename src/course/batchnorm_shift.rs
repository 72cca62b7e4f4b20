//! Batch norm, before and after an SGD step (Ioffe & Szegedy 2015): a deep tanh MLP with and
//! without BatchNorm from the same weight matrices; the pre-activations of its hidden units,
//! read from the CPU reference's training-mode forward pass; their per-layer statistics on a
//! fixed probe batch as training goes (internal covariate shift, measured); and a learning-rate
//! sweep of both nets.

use crate::data::{BatchScheme, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::exec::cpu_network::{forward, loss_and_grads, Mode};
use crate::exec::{CpuNetwork, Network};
use crate::optim::Sgd;
use crate::reference::batchnorm_forward;
use crate::spec::{Act, LayerSpec, Loss, Model, Op};

/// The two nets' shape: `depth` hidden layers of `width` tanh units, a Linear head to `classes`.
#[derive(Clone, Copy, Debug)]
pub struct Net {
    pub inputs: usize,
    pub width: usize,
    pub depth: usize,
    pub classes: usize,
}

impl Net {
    /// [Linear(width)+tanh] × depth, or with batch norm [Linear(width, no bias), BatchNorm, tanh]
    /// × depth (batch norm cancels a bias), then Linear(classes).
    pub fn model(&self, batch_norm: bool) -> Result<Model> {
        let mut layers = Vec::new();
        for _ in 0..self.depth {
            layers.push(LayerSpec::Linear { out: self.width, bias: !batch_norm });
            if batch_norm {
                layers.push(LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false });
            }
            layers.push(LayerSpec::Tanh);
        }
        layers.push(LayerSpec::Linear { out: self.classes, bias: true });
        Model::new(self.inputs, layers)
    }

    /// PyTorch's default draw for both nets, with the batch-norm net's weight matrices copied
    /// from the plain net's, so the two differ only by the normalisation (and the plain biases).
    pub fn init(&self, seed: u64) -> Result<[Vec<f32>; 2]> {
        let (plain, bn) = (self.model(false)?, self.model(true)?);
        let plain_params = plain.init_params(seed);
        let mut bn_params = bn.init_params(seed);
        let matrices = |m: &Model| m.params.iter().filter(|t| t.shape.len() == 2).cloned().collect::<Vec<_>>();
        for (p, b) in matrices(&plain).iter().zip(matrices(&bn)) {
            bn_params[b.offset..b.offset + b.len].copy_from_slice(&plain_params[p.offset..p.offset + p.len]);
        }
        Ok([plain_params, bn_params])
    }
}

/// One hidden layer's pre-activations over a batch, [rows, width] row-major: `linear` is the
/// Linear's output; `normalised` (batch-norm net only) is γ·x̂ + β, what tanh reads there.
#[derive(Clone, Debug)]
pub struct Preacts {
    pub linear: Vec<f32>,
    pub normalised: Option<Vec<f32>>,
}

impl Preacts {
    /// What the nonlinearity reads: the normalised values where there are any.
    pub fn tanh_input(&self) -> &[f32] {
        self.normalised.as_deref().unwrap_or(&self.linear)
    }
}

/// Every hidden layer's pre-activations on `x` (`rows` rows) under `params`, from a
/// training-mode forward pass (batch norm uses this batch's statistics, as in a step).
pub fn preactivations(model: &Model, params: &[f32], x: &[f32], rows: usize) -> Result<Vec<Preacts>> {
    let running = vec![0.0f32; model.running_len];
    let trace = forward(model, params, &running, x, rows, Mode::Train, None, None)?;
    let mut layers: Vec<Preacts> = Vec::new();
    for (s, stage) in model.stages.iter().enumerate() {
        match stage.op {
            // The head's Linear is no hidden layer.
            Op::Dense { outputs, .. } if s + 1 < model.stages.len() => {
                let z = trace.preacts[s].clone().unwrap_or_else(|| trace.values[s + 1].clone());
                debug_assert_eq!(z.len(), rows * outputs);
                layers.push(Preacts { linear: z, normalised: None });
            }
            Op::BatchNorm { width, gamma, beta, .. } => {
                let stats = trace.stats[s].as_ref().expect("a training-mode pass keeps batch-norm statistics");
                let (g, b) = (&params[gamma..gamma + width], &params[beta..beta + width]);
                let y = batchnorm_forward(&trace.values[stage.input], rows, width, g, b, stats, Act::IDENTITY);
                if let Some(last) = layers.last_mut() {
                    last.normalised = Some(y);
                }
            }
            _ => {}
        }
    }
    Ok(layers)
}

/// Column `unit` of a [rows, width] matrix.
pub fn column(values: &[f32], width: usize, unit: usize) -> Vec<f32> {
    values.iter().skip(unit).step_by(width).copied().collect()
}

/// Per-column mean and biased variance of a [rows, width] matrix, in f64.
pub fn column_stats(values: &[f32], width: usize) -> Vec<(f64, f64)> {
    let rows = values.len() / width;
    (0..width)
        .map(|j| {
            let col = column(values, width, j);
            let mean = col.iter().map(|&v| v as f64).sum::<f64>() / rows as f64;
            let var = col.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / rows as f64;
            (mean, var)
        })
        .collect()
}

/// Counts of `values` in `bins` equal bins over [lo, hi] (the last closed); `edges` has bins + 1.
#[derive(Clone, Debug)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<usize>,
}

/// A histogram of `values` on bins over [lo, hi]; a value outside is an error (the caller
/// chooses the range from the data).
pub fn histogram(values: &[f32], lo: f64, hi: f64, bins: usize) -> Result<Histogram> {
    if bins == 0 || lo.is_nan() || hi.is_nan() || lo >= hi {
        return Err(Error::Usage(format!("a histogram needs bins > 0 and lo < hi, got {bins} bins on [{lo}, {hi}]")));
    }
    let width = (hi - lo) / bins as f64;
    let edges = (0..=bins).map(|i| lo + i as f64 * width).collect();
    let mut counts = vec![0; bins];
    for &v in values {
        let v = v as f64;
        if !(lo..=hi).contains(&v) {
            return Err(Error::Usage(format!("value {v} is outside the histogram's range [{lo}, {hi}]")));
        }
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    Ok(Histogram { edges, counts })
}

/// The smallest and largest of several samples together.
pub fn range_of(samples: &[&[f32]]) -> (f64, f64) {
    let all = samples.iter().flat_map(|s| s.iter().map(|&v| v as f64));
    all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// How far a layer's unit statistics moved from a reference, scale-free, averaged over units:
/// mean |μ_j − μ⁰_j| / σ⁰_j and mean |ln(σ²_j / σ⁰²_j)|.
pub fn shift(now: &[(f64, f64)], start: &[(f64, f64)]) -> (f64, f64) {
    let n = now.len() as f64;
    let mean = now.iter().zip(start).map(|(a, b)| (a.0 - b.0).abs() / b.1.sqrt()).sum::<f64>() / n;
    let var = now.iter().zip(start).map(|(a, b)| (a.1 / b.1).ln().abs()).sum::<f64>() / n;
    (mean, var)
}

/// A CPU network of plain SGD(lr) on `data`, from `params`.
pub fn sgd_net(model: &Model, params: Vec<f32>, lr: f64, data: &Dataset) -> Result<CpuNetwork> {
    let mut net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, Sgd::new(lr), params)?;
    net.set_train_data(data)?;
    Ok(net)
}

/// The first `rows` rows of `data` (features, labels): the fixed probe batch.
pub fn probe(data: &Dataset, rows: usize) -> (Vec<f32>, Vec<u32>) {
    (data.x[..rows * data.d].to_vec(), data.labels[..rows].to_vec())
}

/// One layer's unit statistics (mean, variance) at the Linear output and, with batch norm, at
/// tanh's input.
type LayerStats = [Option<Vec<(f64, f64)>>; 2];

/// Per layer, per recorded step: the shift (mean, log-variance) of the layer's pre-activations
/// on the probe batch from step 0, at the Linear's output and (batch-norm net) at tanh's input.
#[derive(Clone, Debug, Default)]
pub struct ShiftTrace {
    pub steps: Vec<usize>,
    /// [layer][record] (mean shift, log-variance shift) of the Linear outputs.
    pub linear: Vec<Vec<(f64, f64)>>,
    /// The same for γ·x̂ + β (empty without batch norm).
    pub normalised: Vec<Vec<(f64, f64)>>,
    /// Training-mode loss on the probe batch at each record.
    pub probe_loss: Vec<f64>,
}

/// Trains `model` from `params` with SGD(lr), batches of `batch` shuffled with `seed`, for
/// `steps` steps, recording the probe batch's statistics every `every` steps (and at 0).
#[allow(clippy::too_many_arguments)]
pub fn shift_over_training(
    model: &Model,
    params: Vec<f32>,
    data: &Dataset,
    probe_rows: usize,
    lr: f64,
    batch: usize,
    steps: usize,
    every: usize,
    seed: u64,
) -> Result<ShiftTrace> {
    let (px, py) = probe(data, probe_rows);
    let stats_of = |p: &[f32]| -> Result<Vec<LayerStats>> {
        let layers = preactivations(model, p, &px, probe_rows)?;
        Ok(layers
            .iter()
            .map(|l| {
                let w = l.linear.len() / probe_rows;
                [Some(column_stats(&l.linear, w)), l.normalised.as_ref().map(|n| column_stats(n, w))]
            })
            .collect())
    };
    let start = stats_of(&params)?;
    let mut out = ShiftTrace {
        linear: vec![Vec::new(); start.len()],
        normalised: vec![Vec::new(); start.len()],
        ..Default::default()
    };
    let record = |step: usize, p: &[f32], out: &mut ShiftTrace| -> Result<()> {
        let now = stats_of(p)?;
        for (l, (a, b)) in now.iter().zip(&start).enumerate() {
            out.linear[l].push(shift(a[0].as_ref().expect("linear"), b[0].as_ref().expect("linear")));
            if let (Some(x), Some(y)) = (&a[1], &b[1]) {
                out.normalised[l].push(shift(x, y));
            }
        }
        let running = vec![0.0f32; model.running_len];
        out.probe_loss.push(loss_and_grads(model, Loss::CrossEntropy, p, &running, &px, &py, probe_rows)?.0 as f64);
        out.steps.push(step);
        Ok(())
    };
    record(0, &params, &mut out)?;
    let mut net = sgd_net(model, params, lr, data)?;
    let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, batch, true, seed)?;
    let mut done = 0;
    while done < steps {
        for b in batcher.next_epoch() {
            if done == steps {
                break;
            }
            net.train_step(&b.iter().map(|&i| i as u32).collect::<Vec<_>>())?;
            done += 1;
            if done % every == 0 {
                record(done, &net.params()?, &mut out)?;
            }
        }
    }
    out.normalised.retain(|v| !v.is_empty());
    Ok(out)
}

/// Training-mode cross-entropy of the whole of `data` (batch norm on the full set's statistics).
pub fn full_loss(model: &Model, params: &[f32], data: &Dataset) -> Result<f64> {
    let running = vec![0.0f32; model.running_len];
    Ok(loss_and_grads(model, Loss::CrossEntropy, params, &running, &data.x, &data.labels, data.n)?.0 as f64)
}

/// Trains from `params` with SGD(lr) for `steps` steps (batches of `batch`, shuffled with
/// `seed`) and returns the final `full_loss` (NaN or ∞ where it diverged).
pub fn final_loss(
    model: &Model,
    params: Vec<f32>,
    data: &Dataset,
    lr: f64,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Result<f64> {
    let mut net = sgd_net(model, params, lr, data)?;
    let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, batch, true, seed)?;
    let mut done = 0;
    while done < steps {
        for b in batcher.next_epoch().into_iter().take(steps - done) {
            net.train_step(&b.iter().map(|&i| i as u32).collect::<Vec<_>>())?;
            done += 1;
        }
    }
    full_loss(model, &net.params()?, data)
}
