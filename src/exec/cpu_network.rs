//! The CPU executor: the reference functions of `crate::reference`, stage by stage. It is the oracle
//! the GPU executor is tested against, and the fallback where no adapter exists.

use super::network::{BadStep, StepSync};
use super::{Network, Totals};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::optim::{OptimizerSetup, OptimizerStep, ParamGroups};
use crate::reference as cpu;
use crate::reference::{NormStats, Real};
use crate::spec::{Activation, Loss, Model, NormState, Op};

pub struct CpuNetwork {
    model: Model,
    loss: Loss,
    setup: OptimizerSetup,
    groups: ParamGroups,
    params: Vec<f32>,
    grads: Vec<f32>,
    state: Vec<f32>,
    norm: NormState,
    steps: usize,
    /// Key of the dropout masks (`Network::set_dropout_seed`).
    dropout_seed: u64,
    train_x: Vec<f32>,
    train_labels: Vec<u32>,
    /// The training set's real targets (regression), k per row.
    train_targets: Option<crate::data::Targets>,
    last_loss: f32,
    loss_sum: f64,
    first_bad: Option<BadStep>,
    correct: usize,
    count: usize,
}

impl CpuNetwork {
    /// One training step; with `sync`, one rank's share of a data-parallel step (synchronised
    /// batch norms exchange their statistics and sums, and the gradient passes through it
    /// before the update).
    fn step(&mut self, batch: &[u32], mut sync: Option<&mut dyn StepSync>) -> Result<()> {
        super::network::check_batch(batch, self.train_labels.len(), usize::MAX)?;
        let ranks = sync.as_ref().map_or(1, |s| s.ranks());
        super::network::check_batch_norm_rows(&self.model, batch.len(), ranks)?;
        let d = self.model.inputs;
        let rows = batch.len();
        let mut x = Vec::with_capacity(rows * d);
        let mut labels = Vec::with_capacity(rows);
        for &i in batch {
            let i = i as usize;
            x.extend_from_slice(&self.train_x[i * d..(i + 1) * d]);
            labels.push(self.train_labels[i]);
        }
        let (model, params) = (&self.model, &self.params);
        let key = DropoutKey { seed: self.dropout_seed, step: self.steps as u64 };
        let trace = forward(model, params, &self.norm.running, &x, rows, Mode::Train, Some(key), sync.as_deref_mut())?;
        update_running(&self.model, &trace, &mut self.norm, rows, ranks);
        let targets = self.train_targets.as_ref().map(|t| t.rows_of(batch.iter().map(|&i| i as usize)));
        let targets = targets.as_deref();
        let out = cpu::loss_of(self.loss, trace.output(), targets, &labels, rows, self.model.outputs());
        self.grads = backward(&self.model, &self.params, &trace, out.grad, rows, sync.as_deref_mut())?;
        if let Some(sync) = sync {
            sync.gradient(&mut self.grads)?;
        }
        let step = OptimizerStep {
            optimizer: &self.setup.optimizer,
            step: self.steps as u32 + 1,
            lr_factor: self.setup.schedule.factor(self.steps as u32),
            groups: &self.groups,
            max_norm: self.setup.clip_grad_norm,
        };
        let coef = cpu::clip_coefficient(&self.grads, self.setup.clip_grad_norm);
        cpu::optimizer_update(&mut self.params, &self.grads, &mut self.state, &step, coef);
        self.steps += 1;
        // The same per-step divergence record as the GPU's kernels keep.
        if self.first_bad.is_none() {
            let param_bad = self.params.iter().any(|p| !p.is_finite()).then_some(self.steps);
            let loss_bad = (!out.loss.is_finite()).then_some((self.steps, out.loss));
            self.first_bad = BadStep::first(loss_bad, param_bad);
        }
        self.last_loss = out.loss;
        self.loss_sum += out.loss as f64 * rows as f64;
        self.correct += out.correct;
        self.count += rows;
        Ok(())
    }

    /// Whether this machine can give the reference path its memory: parameters, gradients and
    /// optimizer state, and a batch's activations (values, pre-activations, gradients), checked
    /// by reserving it before anything is allocated, so an absurd layer is an error rather than
    /// an allocation abort.
    pub fn check_fits(model: &Model, max_rows: usize, state_slots: usize) -> Result<()> {
        let widths = model.stages.iter().try_fold(model.inputs, |a, s| a.checked_add(s.outputs()));
        let values = widths
            .and_then(|w| w.checked_mul(max_rows))
            .and_then(|a| a.checked_mul(3))
            .and_then(|a| model.param_len.checked_mul(3 + state_slots).and_then(|p| p.checked_add(a)));
        let bytes = values.and_then(|v| v.checked_mul(4));
        let fits = bytes.is_some_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok());
        if fits {
            return Ok(());
        }
        Err(Error::Model(format!(
            "the CPU reference path needs about {} for {} parameters and {max_rows}-row batches, more than this \
             machine can allocate; narrow the model or the batch",
            bytes.map_or("more bytes than addressable".to_string(), |b| format!(
                "{:.1} GiB",
                b as f64 / (1u64 << 30) as f64
            )),
            model.param_len
        )))
    }

    pub fn new(model: Model, loss: Loss, setup: impl Into<OptimizerSetup>, params: Vec<f32>) -> Result<CpuNetwork> {
        check_params(&model, &params)?;
        let setup = setup.into();
        setup.validate().map_err(Error::Usage)?;
        let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
        let n = model.param_len;
        Ok(CpuNetwork {
            state: setup.optimizer.initial_state(n),
            norm: model.init_norm_state(),
            groups,
            setup,
            model,
            loss,
            params,
            grads: vec![0.0; n],
            steps: 0,
            dropout_seed: 0,
            train_x: Vec::new(),
            train_labels: Vec::new(),
            train_targets: None,
            last_loss: f32::NAN,
            loss_sum: 0.0,
            first_bad: None,
            correct: 0,
            count: 0,
        })
    }
}

/// Batch norm's two behaviours, as PyTorch's `model.train()` and `model.eval()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normalise with the batch's statistics (and let the caller update the running ones).
    Train,
    /// Normalise with the running statistics.
    Eval,
}

/// What the forward pass keeps for the backward pass.
pub struct Trace<T> {
    /// Every value: 0 is the input, s + 1 the output of stage s.
    pub values: Vec<Vec<T>>,
    /// Each stage's pre-activation (Dense only).
    pub preacts: Vec<Option<Vec<T>>>,
    /// Each batch-norm stage's normalising statistics.
    pub stats: Vec<Option<NormStats>>,
    /// Each dropout stage's mask and scale when one was drawn (training); the backward pass
    /// applies the same one (kept, not redrawn: a bool per element is cheap on the host).
    pub masks: Vec<Option<(Vec<bool>, f32)>>,
}

/// Which masks a training forward pass draws: the run's seed and the optimizer step (0 for the
/// first), so a resumed run draws what an uninterrupted one would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u64,
}

impl<T> Trace<T> {
    pub fn output(&self) -> &[T] {
        self.values.last().map_or(&[][..], |v| &v[..])
    }
}

/// The forward pass over `rows` rows of `x`, in the float type `T` (shapes checked by callers);
/// with `sync` (training, data-parallel), synchronised batch norms use the global batch's
/// statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Real>(
    model: &Model,
    params: &[T],
    running: &[f32],
    x: &[T],
    rows: usize,
    mode: Mode,
    dropout: Option<DropoutKey>,
    mut sync: Option<&mut (dyn StepSync + '_)>,
) -> Result<Trace<T>> {
    let mut values = vec![x.to_vec()];
    let mut preacts = Vec::with_capacity(model.stages.len());
    let mut stats = Vec::with_capacity(model.stages.len());
    let mut masks = Vec::with_capacity(model.stages.len());
    for stage in &model.stages {
        let input = &values[stage.input];
        let (mut preact, mut stat, mut mask) = (None, None, None);
        let y = match stage.op {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let w = &params[weight..weight + n * k];
                let b = bias.map(|b| &params[b..b + n]);
                let (z, y) = cpu::linear_forward(input, w, b, rows, k, n, act);
                preact = Some(z);
                y
            }
            Op::BatchNorm { width, gamma, beta, norm, act } => {
                let layer = &model.norms[norm];
                let s = match (mode, sync.as_deref_mut()) {
                    (Mode::Train, Some(sync)) if layer.sync => {
                        let mut s = cpu::batchnorm_stats(input, rows, width, layer.eps);
                        sync.norm_stats(&mut s.mean, &mut s.var)?;
                        s
                    }
                    (Mode::Train, _) => cpu::batchnorm_stats(input, rows, width, layer.eps),
                    (Mode::Eval, _) => NormStats::running(
                        &running[layer.running_mean..layer.running_mean + width],
                        &running[layer.running_var..layer.running_var + width],
                        layer.eps,
                    ),
                };
                let y = cpu::batchnorm_forward(
                    input,
                    rows,
                    width,
                    &params[gamma..gamma + width],
                    &params[beta..beta + width],
                    &s,
                    act,
                );
                stat = Some(s);
                y
            }
            Op::Activation { act, .. } => cpu::activation_forward(input, act),
            Op::Add { skip, .. } => cpu::residual_add(input, &values[skip]),
            Op::Dropout { p, layer, .. } => match dropout {
                Some(key) => {
                    let draw = cpu::DropoutDraw::new(p, key.seed, key.step, layer);
                    let m = draw.mask(input.len());
                    let y = cpu::dropout_apply(input, &m, draw.scale);
                    mask = Some((m, draw.scale));
                    y
                }
                None => input.clone(),
            },
        };
        values.push(y);
        preacts.push(preact);
        stats.push(stat);
        masks.push(mask);
    }
    Ok(Trace { values, preacts, stats, masks })
}

/// Adds `g` into the gradient of a value: the first contribution is stored, later ones summed,
/// readers taken in reverse stage order as on the GPU (which applies a producer's act' to each
/// contribution before summing, where this applies it once to the sum: a rounding difference).
fn accumulate<T: Real>(slot: &mut Option<Vec<T>>, g: Vec<T>) {
    match slot {
        None => *slot = Some(g),
        Some(acc) => acc.iter_mut().zip(g).for_each(|(a, b)| *a = T::of(a.to_f64() + b.to_f64())),
    }
}

/// The gradient of every parameter (flat like `params`) from the gradient with respect to the
/// network's output. Batch norm is differentiated in training mode (statistics depend on x), so
/// `trace` must come from a training-mode forward pass (with the same `sync`).
pub(crate) fn backward<T: Real>(
    model: &Model,
    params: &[T],
    trace: &Trace<T>,
    grad_out: Vec<T>,
    rows: usize,
    mut sync: Option<&mut (dyn StepSync + '_)>,
) -> Result<Vec<T>> {
    let mut grads = vec![T::of(0.0); model.param_len];
    let mut value_grads: Vec<Option<Vec<T>>> = vec![None; model.stages.len() + 1];
    value_grads[model.stages.len()] = Some(grad_out);
    for (s, stage) in model.stages.iter().enumerate().rev() {
        // Every value but the input is read by a later stage or the loss, so its gradient exists.
        let g = value_grads[s + 1].take().unwrap_or_else(|| vec![T::of(0.0); rows * stage.outputs()]);
        let input = &trace.values[stage.input];
        let dx = match stage.op {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let dz = match &trace.preacts[s] {
                    Some(z) if act.kind != Activation::Identity => cpu::activation_backward(z, &g, act),
                    _ => g,
                };
                grads[weight..weight + n * k].copy_from_slice(&cpu::linear_backward_weight(&dz, input, rows, k, n));
                if let Some(b) = bias {
                    grads[b..b + n].copy_from_slice(&cpu::bias_grad(&dz, rows, n));
                }
                (stage.input != 0).then(|| cpu::linear_backward_input(&dz, &params[weight..weight + n * k], rows, k, n))
            }
            Op::BatchNorm { width, gamma, beta, act, norm } => {
                let stats = trace.stats[s].as_ref().expect("batch-norm stage keeps its statistics");
                let (gm, bt) = (&params[gamma..gamma + width], &params[beta..beta + width]);
                let mut sums = cpu::batchnorm_backward_reduce(input, &g, rows, width, gm, bt, stats, act);
                if let (Some(sync), true) = (sync.as_deref_mut(), model.norms[norm].sync) {
                    sync.norm_sums(&mut sums)?;
                }
                grads[beta..beta + width].iter_mut().zip(&sums[..width]).for_each(|(d, &v)| *d = T::of(v));
                grads[gamma..gamma + width].iter_mut().zip(&sums[width..]).for_each(|(d, &v)| *d = T::of(v));
                Some(cpu::batchnorm_backward_input(input, &g, rows, width, gm, bt, stats, act, &sums))
            }
            Op::Activation { act, .. } => Some(cpu::activation_backward(input, &g, act)),
            Op::Dropout { .. } => match &trace.masks[s] {
                Some((mask, scale)) => Some(cpu::dropout_apply(&g, mask, *scale)),
                None => Some(g),
            },
            Op::Add { skip, .. } => {
                if skip != 0 {
                    accumulate(&mut value_grads[skip], g.clone());
                }
                Some(g)
            }
        };
        if let (Some(dx), true) = (dx, stage.input != 0) {
            accumulate(&mut value_grads[stage.input], dx);
        }
    }
    Ok(grads)
}

/// Training-mode loss and parameter gradients for one batch, in the float type `T`: the
/// reference's own forward and backward, used in f64 for finite-difference checks.
pub fn loss_and_grads<T: Real>(
    model: &Model,
    loss: Loss,
    params: &[T],
    running: &[f32],
    x: &[T],
    labels: &[u32],
    rows: usize,
) -> Result<(T, Vec<T>)> {
    let shape = |what: &str, expected: usize, got: usize| Error::Shape {
        what: what.into(),
        expected: format!("{expected} values"),
        got: got.to_string(),
    };
    if params.len() != model.param_len {
        return Err(shape("flat parameter vector", model.param_len, params.len()));
    }
    if running.len() != model.running_len {
        return Err(shape("batch-norm running statistics", model.running_len, running.len()));
    }
    if Some(x.len()) != rows.checked_mul(model.inputs) || labels.len() != rows {
        return Err(shape("batch input", rows * model.inputs, x.len()));
    }
    super::network::check_batch_norm_rows(model, rows, 1)?;
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= model.outputs()) {
        return Err(Error::Usage(format!("label {bad} is not below the model's {} outputs", model.outputs())));
    }
    // Dropout off: the loss is then a fixed function of the parameters to differentiate.
    let trace = forward(model, params, running, x, rows, Mode::Train, None, None)?;
    let out = cpu::loss_of(loss, trace.output(), None, labels, rows, model.outputs());
    let grads = backward(model, params, &trace, out.grad, rows, None)?;
    Ok((out.loss, grads))
}

/// Updates every batch-norm layer's running statistics from a training forward pass over
/// `rows` rows on each of `ranks` ranks (a synchronised layer's statistics are over all of them).
pub(crate) fn update_running<T>(model: &Model, trace: &Trace<T>, norm: &mut NormState, rows: usize, ranks: usize) {
    for (s, stage) in model.stages.iter().enumerate() {
        if let (Op::BatchNorm { width, norm: k, .. }, Some(stats)) = (&stage.op, &trace.stats[s]) {
            let layer = &model.norms[*k];
            norm.batches_tracked[*k] += 1;
            let factor = layer.momentum.factor(norm.batches_tracked[*k]);
            let (mean_part, var_part) = split_two(&mut norm.running, layer.running_mean, layer.running_var, *width);
            let count = if layer.sync { rows * ranks } else { rows };
            cpu::batchnorm_update_running(mean_part, var_part, stats, count, factor);
        }
    }
}

/// Two disjoint `len`-long windows of one slice.
pub(super) fn split_two(v: &mut [f32], a: usize, b: usize, len: usize) -> (&mut [f32], &mut [f32]) {
    debug_assert!(a + len <= b);
    let (lo, hi) = v.split_at_mut(b);
    (&mut lo[a..a + len], &mut hi[..len])
}

pub(crate) fn check_params(model: &Model, params: &[f32]) -> Result<()> {
    if params.len() != model.param_len {
        return Err(Error::Shape {
            what: "flat parameter vector".into(),
            expected: format!("{} elements", model.param_len),
            got: format!("{}", params.len()),
        });
    }
    Ok(())
}

impl Network for CpuNetwork {
    fn describe(&self) -> String {
        "CPU reference".into()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn set_train_data(&mut self, data: &Dataset) -> Result<()> {
        super::network::check_features(&self.model, data)?;
        super::network::check_loss_targets(self.loss, data)?;
        self.train_x = data.x.clone();
        self.train_labels = data.labels.clone();
        self.train_targets = data.targets.clone();
        Ok(())
    }

    fn trains_regression(&self) -> bool {
        self.train_targets.is_some()
    }

    fn train_step(&mut self, batch: &[u32]) -> Result<()> {
        self.step(batch, None)
    }

    fn train_step_reduced(&mut self, batch: &[u32], sync: &mut dyn StepSync) -> Result<()> {
        self.step(batch, Some(sync))
    }

    fn last_loss(&mut self) -> Result<f32> {
        Ok(self.last_loss)
    }

    fn take_totals(&mut self) -> Result<Totals> {
        let t = Totals {
            mean_loss: (self.loss_sum / self.count.max(1) as f64) as f32,
            accuracy: self.correct as f32 / self.count.max(1) as f32,
            samples: self.count,
            first_bad: self.first_bad.take(),
        };
        (self.loss_sum, self.correct, self.count) = (0.0, 0, 0);
        Ok(t)
    }

    fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        super::network::check_rows(&self.model, x, rows)?;
        let trace = forward(&self.model, &self.params, &self.norm.running, x, rows, Mode::Eval, None, None)?;
        Ok(trace.values.last().cloned().unwrap_or_default())
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn set_params(&mut self, flat: &[f32]) -> Result<()> {
        check_params(&self.model, flat)?;
        self.params.copy_from_slice(flat);
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        Ok(self.grads.clone())
    }

    fn optimizer_state(&mut self) -> Result<Vec<f32>> {
        Ok(self.state.clone())
    }

    fn set_optimizer_state(&mut self, state: &[f32]) -> Result<()> {
        if state.len() != self.state.len() {
            return Err(Error::Shape {
                what: "optimizer state".into(),
                expected: format!("{} values", self.state.len()),
                got: state.len().to_string(),
            });
        }
        self.state.copy_from_slice(state);
        Ok(())
    }

    fn norm_state(&mut self) -> Result<NormState> {
        Ok(self.norm.clone())
    }

    fn set_norm_state(&mut self, state: &NormState) -> Result<()> {
        super::network::check_norm_state(&self.model, state)?;
        self.norm = state.clone();
        Ok(())
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn set_dropout_seed(&mut self, seed: u64) {
        self.dropout_seed = seed;
    }

    fn set_steps(&mut self, steps: usize) {
        self.steps = steps;
    }

    fn lr(&self) -> f32 {
        self.setup.lr_at(self.steps as u32) as f32
    }
}
