//! Many models per dispatch: N copies of one architecture (Linears, batch norms, activations,
//! residual blocks) trained side by side, each
//! with its own initial parameters, optimizer (type, hyper-parameters, schedule, clipping) and
//! batch rows, as JAX's `vmap` over models or PyTorch's `torch.func` ensembling. Their parameters
//! and gradients lie in one buffer, model k's slice `stride` elements after model k − 1's; a step
//! is one launch of small_net.wgsl with a workgroup per model (a small model), or the per-op
//! launches each over every model (`per_op`: a larger one), then one optimizer launch per kind
//! of optimizer in the batch (each model's hyper-parameters, schedule, state and clipping its own),
//! all in one submit. The training set is uploaded once and read by every model
//! through its batch's row indices.
//!
//! Each model's numbers are those of a `GpuNetwork` on the same step (fused, or per op on the
//! same matmul schedule) with the same start, to the bit: the same kernel does the same sums,
//! and the same update kernel runs on the same values (tests/batched.rs). On the fused step a
//! batch norm's running statistics stay in each model's slice of the values buffer
//! (`norm_state`), as a lone network's stay in its fused step's values; per op, in each model's
//! slice of the running buffer.

use std::sync::Arc;

mod per_op;
use per_op::PerOpBatch;

use super::network::{check_batch, check_batch_norm_rows, BadStep, Totals};
use super::StepKind;
use crate::data::Dataset;
use crate::device::{submit_steps, Dispatch, GpuBuffer, StepRecord, VIEW_ALIGN};
use crate::error::{Error, Result};
use crate::kernels::optim::{GpuOptimizer, OptimizerModel, OPT_MODELS_PER_LAUNCH};
use crate::kernels::small_net::{SMALL_NET_MAX_MODELS, SMALL_NET_TOTALS_STRIDE};
use crate::kernels::SmallNetParams;
use crate::kernels::{
    Gpu, SmallNet, SmallNetBuffers, TOTALS_LEN, TOTAL_BAD_LOSS, TOTAL_CORRECT, TOTAL_COUNT, TOTAL_FIRST_BAD,
    TOTAL_LOSS_SUM, TOTAL_STEP_LOSS,
};
use crate::optim::{OptimizerSetup, ParamGroups};
use crate::spec::{Loss, Model, NormState};

/// N models of one architecture, trained together on the GPU.
///
/// Three learning rates of Adam on XOR, side by side, each model's loss read every 50 steps:
///
/// ```
/// use std::sync::Arc;
/// use gradflow::exec::BatchedNetworks;
/// use gradflow::kernels::Gpu;
/// use gradflow::prelude::*;
///
/// # fn main() -> Result<()> {
/// let Ok(gpu) = Gpu::new(None) else { return Ok(()) }; // no adapter: nothing to train on
/// let corners = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// let rows: Vec<[f32; 2]> = corners.iter().cycle().take(32).copied().collect();
/// let labels: Vec<u32> = [0, 1, 1, 0].iter().cycle().take(32).copied().collect();
/// let data = Dataset::from_nested(&rows, &labels)?;
///
/// let model = Model::mlp(2, &[16], 2, Activation::Tanh)?;
/// let lrs = [0.001, 0.01, 0.1];
/// let setups = lrs.iter().map(|&lr| OptimizerSetup::from(Optimizer::from(Optimizer::adam(lr)))).collect();
/// let starts: Vec<Vec<f32>> = (0..3).map(|seed| model.init_params(seed)).collect();
/// let mut nets = BatchedNetworks::new(Arc::new(gpu), model, Loss::CrossEntropy, setups, &starts, 8)?;
/// nets.set_train_data(&data)?;
///
/// let mut history = vec![Vec::new(); 3]; // each model's mean loss per 50 steps
/// for step in 0..200u32 {
///     let batch: Vec<u32> = (0..8).map(|i| (step * 8 + i) % 32).collect();
///     nets.train_step(&[&batch, &batch, &batch])?;
///     if step % 50 == 49 {
///         for (k, totals) in nets.take_totals()?.into_iter().enumerate() {
///             history[k].push(totals.mean_loss);
///         }
///     }
/// }
/// assert!(history.iter().all(|h| h.len() == 4));
/// assert!(history[2][3] < history[0][3], "lr 0.1 ends lower than lr 0.001: {history:?}");
/// # Ok(())
/// # }
/// ```
pub struct BatchedNetworks {
    gpu: Arc<Gpu>,
    model: Model,
    max_rows: usize,
    /// Elements from one model's parameters to the next's (a multiple of the view alignment).
    stride: usize,
    params: GpuBuffer,
    grads: GpuBuffer,
    totals: GpuBuffer,
    indices: GpuBuffer,
    /// How a step runs: one fused launch for every model, or the per-op launches over them all.
    step: BatchStep,
    train: Option<(GpuBuffer, GpuBuffer)>,
    train_rows: usize,
    /// One launch per kind of optimizer (`OptimizerModel::launch_key`) and per 64 models (fewer
    /// where their state would not fit one buffer), with its models in order.
    optimizers: Vec<(GpuOptimizer, Vec<usize>)>,
    /// Model k's (launch, place in it).
    placed: Vec<(usize, usize)>,
    setups: Vec<OptimizerSetup>,
    steps: usize,
    totals_from_step: usize,
    /// Every model's batch rows of the coming step, model-major, `max_rows` apart.
    index_words: Vec<u32>,
}

/// A batch's step.
enum BatchStep {
    Fused(Box<FusedBatch>),
    PerOp(Box<PerOpBatch>),
}

/// small_net.wgsl's launch over every model, a workgroup each.
struct FusedBatch {
    layout: SmallNet,
    /// Each model's values (and batch-norm running statistics), `layout.values_len` apart.
    values: GpuBuffer,
    /// Built once the training data is set, with the batch size it was built for.
    launch: Option<(Dispatch, usize)>,
    /// A batch norm's blend changes every step (momentum "none"): each step writes its own
    /// launch parameters.
    blend_changes: bool,
}

impl FusedBatch {
    /// The layout, values and (later) launch of `models` models of `model` on the fused step;
    /// each model's batch-norm running statistics start as a fresh module's, in its values.
    fn new(g: &Gpu, model: &Model, loss: Loss, models: usize, max_rows: usize) -> Result<FusedBatch> {
        let layout = SmallNet::new(model, loss, max_rows)
            .map_err(|why| Error::Usage(format!("the fused step does not take this model: {why}")))?;
        g.check_small_net_loops(&layout.params)?;
        let total = layout
            .values_len
            .checked_mul(models)
            .ok_or_else(|| Error::Usage(format!("{models} models of {} values overflow", layout.values_len)))?;
        let values = if layout.has_norms() {
            let one = layout.initial_values(&model.init_norm_state().running);
            g.upload("batched fused-step values", &one.repeat(models))?
        } else {
            g.storage("batched fused-step values", total)?
        };
        let blend_changes = layout.blend_changes(model);
        Ok(FusedBatch { layout, values, launch: None, blend_changes })
    }

    /// The launch's parameters for step `step` of `models` models, `stride` apart, at batches
    /// of `rows` rows from a set of `train_rows` (a batch norm's blend may change with the step).
    fn params(
        &self,
        model: &Model,
        rows: usize,
        train_rows: usize,
        models: usize,
        stride: usize,
        step: usize,
    ) -> SmallNetParams {
        let layout = if self.blend_changes { self.layout.with_blend(model, step as u64) } else { self.layout };
        layout.params.for_batch(rows, train_rows, true).for_models(models, stride)
    }
}

impl BatchedNetworks {
    /// One model per entry of `setups`, model k starting from `inits[k]`, for batches of up to
    /// `max_rows` rows: on the fused step where the model fits it (`SmallNet::new`), else on the
    /// per-op launches, each over every model.
    pub fn new(
        gpu: Arc<Gpu>,
        model: Model,
        loss: Loss,
        setups: Vec<OptimizerSetup>,
        inits: &[Vec<f32>],
        max_rows: usize,
    ) -> Result<BatchedNetworks> {
        let fits = SmallNet::new(&model, loss, max_rows).is_ok_and(|l| gpu.check_small_net_loops(&l.params).is_ok());
        let kind = if fits { StepKind::SmallNet } else { StepKind::PerOp };
        BatchedNetworks::with_step(gpu, model, loss, setups, inits, max_rows, kind)
    }

    /// `new` on the step `kind` says: the fused step (an error saying why when the model does
    /// not fit it) or the per-op launches.
    pub fn with_step(
        gpu: Arc<Gpu>,
        model: Model,
        loss: Loss,
        setups: Vec<OptimizerSetup>,
        inits: &[Vec<f32>],
        max_rows: usize,
        kind: StepKind,
    ) -> Result<BatchedNetworks> {
        let n = setups.len();
        if n == 0 || n > SMALL_NET_MAX_MODELS || inits.len() != n {
            return Err(Error::Usage(format!(
                "batched training takes 1 to {SMALL_NET_MAX_MODELS} models, each with a start: got {n} optimizers and {} starts",
                inits.len()
            )));
        }
        // Each model's mask would need its own element count and seed in one launch: refused
        // here, as a usage error, so that callers train the runs one by one instead.
        if model.has_dropout() {
            return Err(Error::Usage("batched training does not draw dropout masks; train the runs one by one".into()));
        }
        for (k, p) in inits.iter().enumerate() {
            super::cpu_network::check_params(&model, p).map_err(|e| Error::Usage(format!("model {k}: {e}")))?;
        }
        if !model.norms.is_empty() && max_rows < 2 {
            return Err(Error::Usage(format!(
                "batched training with batch norm needs batches of at least 2 rows, not {max_rows}"
            )));
        }
        let align = (VIEW_ALIGN / 4) as usize;
        let stride = model.param_len.next_multiple_of(align);
        let total =
            |per: usize| per.checked_mul(n).ok_or_else(|| Error::Usage(format!("{n} models of {per} values overflow")));
        let mut flat = vec![0.0f32; total(stride)?];
        for (k, p) in inits.iter().enumerate() {
            flat[k * stride..k * stride + p.len()].copy_from_slice(p);
        }
        let g = &*gpu;
        let params = g.upload("batched parameters", &flat)?;
        let params = params.side_by_side(stride);
        let grads = g.storage("batched gradients", total(stride)?)?.side_by_side(stride);
        let totals =
            g.storage("batched loss totals", total(SMALL_NET_TOTALS_STRIDE)?)?.side_by_side(SMALL_NET_TOTALS_STRIDE);
        let step = match kind {
            StepKind::SmallNet => BatchStep::Fused(Box::new(FusedBatch::new(g, &model, loss, n, max_rows)?)),
            StepKind::PerOp => {
                let shared = per_op::Shared { params: &params, grads: &grads, totals: &totals };
                BatchStep::PerOp(Box::new(PerOpBatch::new(g, &model, loss, n, max_rows, shared)?))
            }
        };
        let indices = g.step_ring("batched batch indices", total(max_rows)?)?;
        // Models whose optimizers share a kernel, flags and group table share one launch, at
        // most 64 (optim.wgsl's uniform array) and as many as their state buffer fits.
        let limit = (g.max_storage_bytes() / 4) as usize;
        let per_launch = |setup: &OptimizerSetup| {
            let state = setup.optimizer.state_slots() * model.param_len.next_multiple_of(4);
            (limit / state.max(1)).clamp(1, OPT_MODELS_PER_LAUNCH)
        };
        let mut kinds: Vec<(_, Vec<OptimizerModel>, Vec<usize>)> = Vec::new();
        let mut placed = Vec::with_capacity(n);
        for (k, setup) in setups.iter().enumerate() {
            setup.validate().map_err(|e| Error::Usage(format!("model {k}: {e}")))?;
            let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
            let member = OptimizerModel {
                optimizer: setup.optimizer.clone(),
                groups,
                max_norm: setup.clip_grad_norm,
                offset: k * stride,
            };
            let key = member.launch_key(model.param_len);
            let room = per_launch(setup);
            let l = match kinds.iter().position(|(kk, members, _)| *kk == key && members.len() < room) {
                Some(l) => l,
                None => {
                    kinds.push((key, Vec::new(), Vec::new()));
                    kinds.len() - 1
                }
            };
            placed.push((l, kinds[l].1.len()));
            kinds[l].1.push(member);
            kinds[l].2.push(k);
        }
        let optimizers = kinds
            .into_iter()
            .map(|(_, members, ks)| Ok((GpuOptimizer::for_models(g, &params, &grads, model.param_len, members)?, ks)))
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchedNetworks {
            gpu,
            model,
            max_rows,
            stride,
            params,
            grads,
            totals,
            indices,
            step,
            train: None,
            train_rows: 0,
            optimizers,
            placed,
            setups,
            steps: 0,
            totals_from_step: 0,
            index_words: vec![0; n * max_rows],
        })
    }

    /// The most models of `model` one batch can hold on `gpu` at batches of `max_rows` rows: each
    /// of the batch's shared buffers (parameters, gradients, the fused step's values or the
    /// per-op step's activations, batch and statistics) must fit
    /// the adapter's largest storage binding (queried, not assumed), and one launch takes at
    /// most `SMALL_NET_MAX_MODELS` workgroups. The optimizer state is one buffer per optimizer
    /// launch, whose models `new` limits to what that buffer can hold; the training set is shared.
    pub fn max_models(gpu: &Gpu, model: &Model, loss: Loss, max_rows: usize) -> Result<usize> {
        let stride = model.param_len.next_multiple_of((VIEW_ALIGN / 4) as usize);
        let limit = (gpu.max_storage_bytes() / 4) as usize;
        let mut per_model = vec![stride, SMALL_NET_TOTALS_STRIDE, max_rows];
        match SmallNet::new(model, loss, max_rows) {
            Ok(layout) => per_model.push(layout.values_len),
            // The per-op step's: every planned value, the batch, its per-row loss, the statistics.
            Err(_) => {
                let plan = crate::spec::plan::Plan::new(model, max_rows)?;
                per_model.extend(plan.buffers.iter().map(|b| b.len));
                per_model.extend([max_rows * model.inputs, 2 * max_rows, model.running_len]);
            }
        }
        let widest = per_model.into_iter().max().unwrap_or(1);
        Ok((limit / widest.max(1)).min(SMALL_NET_MAX_MODELS))
    }

    /// Models in the batch.
    pub fn len(&self) -> usize {
        self.setups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.setups.is_empty()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Uploads the training set every model's batch indices refer to (once, for all of them).
    pub fn set_train_data(&mut self, data: &Dataset) -> Result<()> {
        super::network::refuse_targets(data, "training several models side by side")?;
        super::network::check_features(&self.model, data)?;
        let x = self.gpu.upload("training inputs", &data.x)?;
        let labels = self.gpu.upload("training labels", &data.labels)?;
        match &mut self.step {
            BatchStep::Fused(f) => f.launch = None,
            BatchStep::PerOp(p) => p.set_train_data(&self.gpu, &x, &labels, &self.indices, data)?,
        }
        self.train = Some((x, labels));
        self.train_rows = data.n;
        Ok(())
    }

    /// The step's launches for batches of `rows` rows, built or resized.
    fn prepare_step(&mut self, rows: usize) -> Result<()> {
        let Some((x, labels)) = &self.train else {
            return Err(Error::Usage("train_step before set_train_data".into()));
        };
        let fused = match &mut self.step {
            BatchStep::PerOp(p) => return p.resize(&self.gpu, rows as u32),
            BatchStep::Fused(f) => f,
        };
        let p = fused.params(&self.model, rows, self.train_rows, self.setups.len(), self.stride, self.steps);
        match &mut fused.launch {
            Some((_, r)) if *r == rows => {}
            Some((d, r)) => {
                d.update(&self.gpu, &p, self.gpu.small_net_launch(&p).2)?;
                *r = rows;
            }
            None => {
                let b = SmallNetBuffers {
                    params: &self.params,
                    grads: &self.grads,
                    values: &fused.values,
                    totals: &self.totals,
                    x,
                    labels,
                    indices: Some(&self.indices),
                };
                fused.launch = Some((self.gpu.small_net_step(&b, &p)?, rows));
            }
        }
        Ok(())
    }

    /// One step of every model, model k on the training rows `batches[k]` (all of one size): one
    /// forward-backward launch for all, one update launch per kind of optimizer, one submit.
    /// Nothing is read back.
    pub fn train_step(&mut self, batches: &[&[u32]]) -> Result<()> {
        self.train_steps(&[batches])
    }

    /// Several steps in one submit, step s giving model k the rows `steps[s][k]` (every batch of
    /// the submit of one size), as `train_step` would run them one by one: each step's batch
    /// rows and optimizer numbers are written to its own slot of the launches' step rings
    /// before the submit, and the steps follow one another in one compute pass (as
    /// `GpuNetwork`'s many-steps submit does; slot 0 is left to a lone step there, and here too).
    pub fn train_steps(&mut self, steps: &[&[&[u32]]]) -> Result<()> {
        let Some(first) = steps.first() else { return Ok(()) };
        let rows = first.first().map_or(0, |b| b.len());
        for batches in steps {
            if batches.len() != self.len() {
                return Err(Error::Usage(format!("{} batches for {} models", batches.len(), self.len())));
            }
            for (k, b) in batches.iter().enumerate() {
                if b.len() != rows {
                    return Err(Error::Usage(format!(
                        "model {k}'s batch has {} rows, model 0's first {rows}: the steps of one submit share a batch size",
                        b.len()
                    )));
                }
                check_batch(b, self.train_rows, self.max_rows)?;
            }
        }
        if matches!(self.step, BatchStep::PerOp(_)) {
            check_batch_norm_rows(&self.model, rows, 1)?;
        }
        self.prepare_step(rows)?;
        // Slots 1.. hold the steps (slot 0 too where a ring has only one): split a submit that
        // would not fit.
        let slots = self.step_slots()?;
        let base = usize::from(slots > 1);
        let fit = slots - base;
        if fit < steps.len() {
            return steps.chunks(fit).try_for_each(|chunk| self.train_steps(chunk));
        }
        // Each step's numbers, gathered per launch and written in one go.
        let mut indices = Vec::with_capacity(steps.len() * self.index_words.len());
        for batches in steps {
            for (k, b) in batches.iter().enumerate() {
                self.index_words[k * self.max_rows..k * self.max_rows + rows].copy_from_slice(b);
            }
            indices.extend_from_slice(&self.index_words);
        }
        self.gpu.write_slots(&self.indices, base, &indices, self.index_words.len())?;
        match &self.step {
            BatchStep::Fused(f) => {
                let (models, train_rows) = (self.setups.len(), self.train_rows);
                let params: Vec<SmallNetParams> = (0..steps.len())
                    .map(|j| f.params(&self.model, rows, train_rows, models, self.stride, self.steps + j))
                    .collect();
                let launch = &f.launch.as_ref().expect("built by prepare_step").0;
                params.iter().try_for_each(|p| launch.check(p))?;
                launch.write_slots(&self.gpu, base, &params, 1)?;
            }
            BatchStep::PerOp(p) => p.write_blends(&self.gpu, &self.model, base, self.steps, steps.len())?,
        }
        for (opt, ks) in &self.optimizers {
            let mut all = Vec::with_capacity(steps.len() * ks.len());
            for j in 0..steps.len() {
                let step = (self.steps + j) as u32;
                let factors: Vec<f64> = ks.iter().map(|&k| self.setups[k].schedule.factor(step)).collect();
                all.extend(opt.models_params(step + 1, &factors)?);
            }
            opt.update_launch().write_slots(&self.gpu, base, &all, ks.len())?;
        }
        let records: Vec<StepRecord> = (0..steps.len())
            .map(|j| Ok(StepRecord { copies: Vec::new(), slot: base + j, dispatches: self.step_dispatches()? }))
            .collect::<Result<_>>()?;
        submit_steps(&self.gpu, "batched training steps", &records)?;
        self.steps += steps.len();
        Ok(())
    }

    /// The launches of one step: the forward-backward launch of every model, then the updates.
    fn step_dispatches(&self) -> Result<Vec<&Dispatch>> {
        let mut dispatches: Vec<&Dispatch> = match &self.step {
            BatchStep::Fused(f) => f.launch.iter().map(|(d, _)| d).collect(),
            BatchStep::PerOp(p) => p.launches()?,
        };
        dispatches.extend(self.optimizers.iter().flat_map(|(o, _)| o.dispatches()));
        Ok(dispatches)
    }

    /// Step slots every launch of a step holds: the fewest of its launches' rings.
    fn step_slots(&self) -> Result<usize> {
        Ok(crate::device::step_slots(&self.step_dispatches()?))
    }

    /// Optimizer launches a step makes: one per kind of optimizer in the batch (and per 64 models
    /// of a kind).
    pub fn optimizer_launches(&self) -> usize {
        self.optimizers.len()
    }

    /// Optimizer steps taken by every model.
    pub fn steps(&self) -> usize {
        self.steps
    }

    fn check_model(&self, k: usize) -> Result<()> {
        if k >= self.len() {
            return Err(Error::Usage(format!("model {k} of {}", self.len())));
        }
        Ok(())
    }

    /// Model k's flat parameters.
    pub fn params(&mut self, k: usize) -> Result<Vec<f32>> {
        self.check_model(k)?;
        self.gpu.read(&self.params, k * self.stride, self.model.param_len)
    }

    /// Model k's last gradient.
    pub fn grads(&mut self, k: usize) -> Result<Vec<f32>> {
        self.check_model(k)?;
        self.gpu.read(&self.grads, k * self.stride, self.model.param_len)
    }

    /// Model k's batch-norm running statistics and batch counts (`Network::norm_state`'s layout).
    pub fn norm_state(&mut self, k: usize) -> Result<NormState> {
        self.check_model(k)?;
        let len = self.model.running_len;
        let running = match &self.step {
            _ if len == 0 => Vec::new(),
            BatchStep::Fused(f) => self.gpu.read(&f.values, k * f.layout.values_len + f.layout.running_at, len)?,
            BatchStep::PerOp(p) => p.running_of(&self.gpu, k, len)?,
        };
        Ok(NormState { running, batches_tracked: vec![self.steps as u64; self.model.norms.len()] })
    }

    /// Model k's optimizer state (the layout of `Network::optimizer_state`).
    pub fn optimizer_state(&mut self, k: usize) -> Result<Vec<f32>> {
        self.check_model(k)?;
        let (l, m) = self.placed[k];
        self.optimizers[l].0.state_of(&self.gpu, m)
    }

    /// Every model's loss and accuracy over the steps since the last call (one read-back), then
    /// counts afresh.
    pub fn take_totals(&mut self) -> Result<Vec<Totals>> {
        let all = self.gpu.read::<f32>(&self.totals, 0, self.totals.len)?;
        // Each optimizer launch's record of the first step that wrote a bad parameter: one
        // read-back per launch, not per model.
        let bad_steps = self.optimizers.iter().map(|(o, _)| o.take_bad_steps(&self.gpu)).collect::<Result<Vec<_>>>()?;
        let mut cleared = vec![0.0f32; all.len()];
        let mut out = Vec::with_capacity(self.len());
        for (k, t) in all.chunks(SMALL_NET_TOTALS_STRIDE).enumerate() {
            cleared[k * SMALL_NET_TOTALS_STRIDE + TOTAL_STEP_LOSS] = t[TOTAL_STEP_LOSS];
            let count = t[TOTAL_COUNT];
            let loss_bad = (t[TOTAL_FIRST_BAD] > 0.0)
                .then(|| (self.totals_from_step + t[TOTAL_FIRST_BAD] as usize, t[TOTAL_BAD_LOSS]));
            out.push(Totals {
                mean_loss: t[TOTAL_LOSS_SUM] / count.max(1.0),
                accuracy: t[TOTAL_CORRECT] / count.max(1.0),
                samples: count as usize,
                first_bad: BadStep::first(loss_bad, {
                    let (l, m) = self.placed[k];
                    bad_steps[l][m]
                }),
            });
        }
        const { assert!(TOTALS_LEN <= SMALL_NET_TOTALS_STRIDE) };
        self.gpu.write(&self.totals, &cleared);
        self.totals_from_step = self.steps;
        Ok(out)
    }
}
