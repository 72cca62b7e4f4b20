//! small_net.wgsl: a small network's whole forward and backward pass (loss included) in one
//! launch of one workgroup per model, for models whose per-op launches would cost more than their
//! arithmetic, and for batches of same-shaped models trained side by side. Its parameters and layout (`SmallNet::new` says which models it takes), entry
//! point, loop count and launch builder. Its reference is the per-op path it replaces, the same
//! sums in the same order (tests/small_net.rs holds the two together, and both to the CPU).

use crate::device::pipeline::Bounds;
use crate::device::{entries, Binding, Dispatch, Entry, GpuBuffer};
use crate::error::{Error, Result};
use crate::spec::{Loss, Model, Op};

use super::loss::{LOSS_ONE_GROUP_ROWS, TOTALS_LEN};
use super::optim::{OptEntry, OptParams, UpdateBuffers, FLAG_CLIP};
use super::Gpu;

entries! {
    /// small_net.wgsl's entry point.
    pub enum SmallNetEntry in "small_net.wgsl" {
        /// Forward, loss and backward of one step, the gradient written for the optimizer: a
        /// workgroup per model, `LANES` invocations sharing it.
        ForwardBackward = "small_net_forward_backward",
        /// The same with a model per invocation and no barriers, for one lane per model (CPU
        /// adapters, GL).
        Models = "small_net_models",
    }
}

entries! {
    /// small_net_train.wgsl's entry points: small_net.wgsl's, each followed by the optimizer's
    /// update of its model in the same launch.
    pub enum SmallNetTrainEntry in "small_net_train.wgsl" {
        /// `ForwardBackward`, then the workgroup's lanes update the model.
        Train = "small_net_train",
        /// `Models`, then each invocation updates its model.
        ModelsTrain = "small_net_models_train",
    }
}

/// Storage buffers small_net_train.wgsl binds (every one of its bindings): past WebGPU's
/// default of 8 per stage, so the fused update is taken only where the adapter allows that many.
pub const SMALL_NET_TRAIN_STORAGE_BINDINGS: u32 = 12;

pub const SMALL_NET_MAX_LAYERS: usize = 32;
/// The workgroup's invocations on a GPU (and the batch up to which the loss sums one row per part).
pub const SMALL_NET_WORKGROUP: usize = LOSS_ONE_GROUP_ROWS;
/// The largest batch: a bound on the kernel's row loops. What limits a batch in practice is
/// checked where it applies: the adapter's loop budget and buffer sizes, and the step's
/// multiply-adds against the per-op path (`Gpu::small_net_max_step_macs`).
pub const SMALL_NET_MAX_ROWS: usize = 1 << 16;
/// Partial sums of the loss past `SMALL_NET_WORKGROUP` rows (loss.wgsl's `loss_reduce`).
pub const SMALL_NET_LOSS_PARTS: usize = 256;
pub const SMALL_NET_NO_BIAS: u32 = u32::MAX;
pub const SMALL_NET_CROSS_ENTROPY: u32 = 0;
pub const SMALL_NET_MSE: u32 = 1;
/// Words of `totals` per model (TOTALS_LEN rounded up).
pub const SMALL_NET_TOTALS_STRIDE: usize = 8;
/// The most models one launch takes (workgroups along x).
pub const SMALL_NET_MAX_MODELS: usize = 65_535;
/// Models per workgroup of `Models`: one SIMD group of llvmpipe's 8 lanes (256-bit vectors),
/// so that a batch spreads over its threads.
pub const SMALL_NET_MODEL_GROUP: u32 = 8;
/// The most multiply-adds per step a GPU's one workgroup takes on by default, past which the
/// per-op path's many workgroups should win even after paying for their launches. An estimate
/// (64 invocations at ~1 ns per multiply-add against ~10 launches of ~5 µs), not yet measured on
/// a GPU.
pub const SMALL_NET_MAX_STEP_MACS: usize = 200_000;
/// The same on a CPU adapter, measured on lavapipe (docs/benchmarks.md, "Small models"): there
/// the fused step's one invocation pays a few hundred ns per loop iteration against ~260 µs for
/// the per-op step of a small net, so it wins only for the tiniest steps (Higham's net: 48
/// multiply-adds, 3× faster fused; the XOR-sized net at batch 32: 6,144, 2.4× slower fused).
pub const SMALL_NET_MAX_STEP_MACS_CPU: usize = 1_024;
/// `Gpu::side_by_side_max_step_macs` on a CPU adapter.
pub const SIDE_BY_SIDE_MAX_STEP_MACS_CPU: usize = 12_288;
/// The models a GPU is taken to run at once, one workgroup each (a small GPU's multiprocessors
/// hold that many 64-invocation workgroups; a large one more): past it, more runs side by side
/// do not raise the step's budget.
pub const SIDE_BY_SIDE_CONCURRENT_MODELS: usize = 64;

/// small_net.wgsl's `SmallNetParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SmallNetParams {
    pub rows: u32,
    pub cols: u32,
    pub use_targets: u32,
    pub layers: u32,
    pub inputs: u32,
    pub src_rows: u32,
    pub gathered: u32,
    pub loss: u32,
    pub logits_at: u32,
    pub logit_grads_at: u32,
    pub stats_at: u32,
    /// Models side by side (one workgroup each); model m's slices start at m times the strides.
    pub models: u32,
    pub param_stride: u32,
    pub values_stride: u32,
    pub index_stride: u32,
    /// The model's parameters (and gradient elements): small_net_train.wgsl's update loops to it.
    pub param_len: u32,
    /// Per layer: inputs, outputs, weight offset, bias offset (`SMALL_NET_NO_BIAS`: none).
    pub shape: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: activation code, leaky slope's f32 bits, z offset, output offset (in `values`).
    pub act: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: `SMALL_NET_DENSE` or `SMALL_NET_NORM`, and a batch norm's running mean, running
    /// variance and batch statistics offsets (in `values`).
    pub norm: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per batch norm: eps, keep, take (the running statistics' blend of the coming step), 0.
    pub blend: [[f32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: its input's offset in `values` (`SMALL_NET_NONE`: the network input), a sum's
    /// skip value's, and the gradient slots of those two (`SMALL_NET_NONE`: none wanted).
    pub link: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: its output's gradient slot, `SMALL_NET_GRAD_ADD_*` flags, 0, 0.
    pub grad: [[u32; 4]; SMALL_NET_MAX_LAYERS],
}

/// small_net.wgsl's layer kinds: a Linear, a batch norm, an activation on its own, the sum that
/// ends a residual block.
pub const SMALL_NET_DENSE: u32 = 0;
pub const SMALL_NET_NORM: u32 = 1;
pub const SMALL_NET_ACT: u32 = 2;
pub const SMALL_NET_ADD: u32 = 3;
/// No value (the network input, as a layer's input) or no gradient slot.
pub const SMALL_NET_NONE: u32 = u32::MAX;
/// The layer adds its input's (skip's) gradient to a slot a later layer already wrote.
pub const SMALL_NET_GRAD_ADD_IN: u32 = 1;
pub const SMALL_NET_GRAD_ADD_SKIP: u32 = 2;

/// A model laid out for small_net.wgsl at a batch size: the launch's parameters and the length
/// of the `values` scratch it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmallNet {
    pub params: SmallNetParams,
    pub values_len: usize,
    /// Where the model's batch-norm running statistics (laid out as `Model::running`) start in
    /// `values`; the fused step keeps them there between steps.
    pub running_at: usize,
    /// Each layer's batch norm (its index in `Model::norms`), if it is one.
    pub norm_of: [Option<usize>; SMALL_NET_MAX_LAYERS],
}

/// What each stage of the model is to the fused step.
enum Layer {
    Dense { inputs: usize, outputs: usize, weight: usize, bias: Option<usize>, act: crate::spec::Act },
    Norm { width: usize, gamma: usize, beta: usize, norm: usize, act: crate::spec::Act },
    Act { width: usize, act: crate::spec::Act },
    Add { width: usize, skip: usize },
}

impl SmallNet {
    /// The layout for batches of up to `max_rows` rows, or why the kernel does not take the model:
    /// at most `SMALL_NET_MAX_LAYERS` stages (Linears, batch norms, activations, residual sums),
    /// batches of at most `SMALL_NET_MAX_ROWS` rows (and, with a batch norm, at least 2). A batch
    /// norm's blend is that of the first step (`with_blend`).
    pub fn new(model: &Model, loss: Loss, max_rows: usize) -> std::result::Result<SmallNet, String> {
        let mut layers = Vec::new();
        for stage in &model.stages {
            layers.push(match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => Layer::Dense { inputs, outputs, weight, bias, act },
                Op::BatchNorm { norm, .. } if model.norms[norm].sync => {
                    return Err(format!("layer {} is a synchronised batch norm", stage.name))
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => Layer::Norm { width, gamma, beta, norm, act },
                Op::Activation { width, act } => Layer::Act { width, act },
                Op::Add { skip, .. } if skip == stage.input => {
                    return Err(format!("layer {} adds a value to itself", stage.name))
                }
                Op::Add { width, skip } => Layer::Add { width, skip },
                // Its mask is a Philox draw per element and step, which the fused kernel does
                // not carry: the per-op path runs such a model.
                Op::Dropout { .. } => return Err(format!("layer {} is a dropout", stage.name)),
            });
        }
        if layers.is_empty() || layers.len() > SMALL_NET_MAX_LAYERS {
            return Err(format!(
                "{} stages (Linears, batch norms, activations, sums: 1 to {SMALL_NET_MAX_LAYERS})",
                layers.len()
            ));
        }
        if max_rows == 0 || max_rows > SMALL_NET_MAX_ROWS {
            return Err(format!("batches of {max_rows} rows (1 to {SMALL_NET_MAX_ROWS})"));
        }
        if max_rows == 1 && !model.norms.is_empty() {
            return Err("batches of 1 row: a batch norm in training mode needs more".into());
        }
        let at = |n: usize| u32::try_from(n).map_err(|_| format!("{n} values do not fit the kernel's offsets"));
        let last = layers.len() - 1;
        let mut p = SmallNetParams {
            param_len: at(model.param_len)?,
            rows: max_rows as u32,
            cols: at(model.outputs())?,
            layers: layers.len() as u32,
            inputs: at(model.inputs)?,
            loss: match loss {
                Loss::CrossEntropy => SMALL_NET_CROSS_ENTROPY,
                Loss::Mse => SMALL_NET_MSE,
            },
            ..Default::default()
        };
        // `values`: the running statistics; each layer's z (a Linear's or a batch norm's), output
        // and batch-norm statistics; each value's gradient slot (the last one's the logits'
        // gradient); the row statistics.
        let mut len = 0usize;
        let mut take = |n: usize| -> std::result::Result<u32, String> {
            let start = at(len)?;
            len += n;
            Ok(start)
        };
        let running_at = take(model.running_len)? as usize;
        let mut norm_of = [None; SMALL_NET_MAX_LAYERS];
        // Value v (0: the network input, s + 1: stage s's output): where it lies, its gradient slot.
        let mut value_at = vec![SMALL_NET_NONE];
        for (l, layer) in layers.iter().enumerate() {
            let rows_of = |n: usize| max_rows * n;
            let (shape, act, z, norm) = match *layer {
                Layer::Dense { inputs, outputs, weight, bias, act } => {
                    let bias = bias.map_or(Ok(SMALL_NET_NO_BIAS), at)?;
                    let shape = [at(inputs)?, at(outputs)?, at(weight)?, bias];
                    (shape, act, take(rows_of(outputs))?, [SMALL_NET_DENSE, 0, 0, 0])
                }
                Layer::Norm { width, gamma, beta, norm, act } => {
                    let n = &model.norms[norm];
                    let (mean, var) = (at(running_at + n.running_mean)?, at(running_at + n.running_var)?);
                    norm_of[l] = Some(norm);
                    let z = take(rows_of(width))?;
                    let shape = [at(width)?, at(width)?, at(gamma)?, at(beta)?];
                    (shape, act, z, [SMALL_NET_NORM, mean, var, take(3 * width)?])
                }
                Layer::Act { width, act } => {
                    ([at(width)?, at(width)?, 0, 0], act, SMALL_NET_NONE, [SMALL_NET_ACT, 0, 0, 0])
                }
                Layer::Add { width, .. } => {
                    let identity = crate::spec::Act::IDENTITY;
                    ([at(width)?, at(width)?, 0, 0], identity, SMALL_NET_NONE, [SMALL_NET_ADD, 0, 0, 0])
                }
            };
            let out = take(rows_of(shape[1] as usize))?;
            (p.shape[l], p.norm[l]) = (shape, norm);
            p.act[l] = [act.kind.code(), act.slope.to_bits(), z, out];
            value_at.push(out);
        }
        p.logits_at = p.act[last][3];
        // Gradient slots, and which reader of a value stores its gradient first: the last one
        // (backward runs in reverse); earlier readers add.
        let mut slot = vec![SMALL_NET_NONE];
        for (l, stage) in model.stages.iter().enumerate() {
            slot.push(if l == last { SMALL_NET_NONE } else { take(max_rows * stage.outputs())? });
        }
        p.logit_grads_at = take(max_rows * model.outputs())?;
        slot[last + 1] = p.logit_grads_at;
        let mut written = vec![false; slot.len()];
        for (l, stage) in model.stages.iter().enumerate().rev() {
            let mut flags = 0;
            let mut read = |v: usize, flag: u32| {
                if std::mem::replace(&mut written[v], true) {
                    flags |= flag;
                }
            };
            read(stage.input, SMALL_NET_GRAD_ADD_IN);
            let skip = match layers[l] {
                Layer::Add { skip, .. } => {
                    read(skip, SMALL_NET_GRAD_ADD_SKIP);
                    skip
                }
                _ => 0,
            };
            let skip_at = if skip == 0 { SMALL_NET_NONE } else { value_at[skip] };
            p.link[l] = [
                value_at[stage.input],
                skip_at,
                slot[stage.input],
                if skip == 0 { SMALL_NET_NONE } else { slot[skip] },
            ];
            p.grad[l] = [slot[l + 1], flags, 0, 0];
        }
        p.stats_at = take(2 * max_rows)?;
        at(len)?;
        (p.models, p.values_stride, p.index_stride) = (1, at(len)?, max_rows as u32);
        let layout = SmallNet { params: p, values_len: len, running_at, norm_of };
        Ok(layout.with_blend(model, 0))
    }

    /// One model's `values` as a step starts them: zeros, but for the batch-norm running
    /// statistics `running` (laid out as `Model::running`) at `running_at`.
    pub fn initial_values(&self, running: &[f32]) -> Vec<f32> {
        let mut values = vec![0.0f32; self.values_len];
        values[self.running_at..self.running_at + running.len()].copy_from_slice(running);
        values
    }

    /// Whether the model has a batch norm.
    pub fn has_norms(&self) -> bool {
        self.norm_of.iter().any(Option::is_some)
    }

    /// Whether a batch norm's blend changes from step to step (momentum "none": the cumulative
    /// average), so that each step needs its own parameters.
    pub fn blend_changes(&self, model: &Model) -> bool {
        self.norm_of.iter().flatten().any(|&k| model.norms[k].momentum.factor(1) != model.norms[k].momentum.factor(2))
    }

    /// This layout with each batch norm's blend for the step after `batches_tracked` batches,
    /// as `BnParams::training` sets it for the per-op kernel.
    pub fn with_blend(mut self, model: &Model, batches_tracked: u64) -> SmallNet {
        for (l, norm) in self.norm_of.iter().enumerate() {
            if let Some(k) = *norm {
                let n = &model.norms[k];
                let (keep, take) = crate::kernels::batchnorm::blend(n.momentum.factor(batches_tracked + 1));
                self.params.blend[l] = [n.eps as f32, keep, take, 0.0];
            }
        }
        self
    }

    /// Multiply-adds per step of `rows` rows: a Linear's forward product and its two backward
    /// ones, a batch norm's six passes over its values (two for the statistics, one to
    /// normalise, two for the backward sums and dx).
    pub fn step_macs(&self, rows: usize) -> usize {
        let p = &self.params;
        let layers = 0..p.layers as usize;
        layers
            .map(|l| {
                let [i, o, _, _] = p.shape[l].map(|v| v as usize);
                match p.norm[l][0] {
                    SMALL_NET_NORM => 6 * rows * o,
                    SMALL_NET_ACT | SMALL_NET_ADD => rows * o,
                    _ => 3 * rows * i * o,
                }
            })
            .sum()
    }
}

impl SmallNetParams {
    /// These parameters for a batch of `rows` rows read from `src_rows` data rows (through the
    /// batch's indices when `gathered`).
    pub fn for_batch(&self, rows: usize, src_rows: usize, gathered: bool) -> SmallNetParams {
        SmallNetParams { rows: rows as u32, src_rows: src_rows as u32, gathered: gathered as u32, ..*self }
    }

    /// These parameters for `models` models side by side, each one's parameters (and gradient)
    /// `param_stride` elements after the last's.
    pub fn for_models(&self, models: usize, param_stride: usize) -> SmallNetParams {
        SmallNetParams { models: models as u32, param_stride: param_stride as u32, ..*self }
    }

    /// Loop iterations of one of `lanes` invocations (each loop's body runs plus one test per
    /// entry), which llvmpipe's budget applies to: per layer, the forward elements with their
    /// sums, the weight and bias gradients with theirs over the rows, and past the first layer
    /// dX's sums; then the loss rows and the reduction tree (and the update's quads, when it
    /// shares the launch).
    pub fn loop_iterations(&self, lanes: usize) -> usize {
        let rows = self.rows as usize;
        let share = |n: usize| n.div_ceil(lanes) + 1;
        let mut n = 4 * (self.layers as usize + 1);
        for l in 0..self.layers as usize {
            let [i, o, _, _] = self.shape[l].map(|v| v as usize);
            // dZ in place, and the input's gradient when wanted.
            n += share(rows * o);
            let input_grad = self.link[l][2] != SMALL_NET_NONE;
            match self.norm[l][0] {
                SMALL_NET_NORM => {
                    // Statistics and backward sums: 16 partials of rows/16 each and the tree,
                    // twice each; normalising and dx: one pass over the elements each.
                    let per_feature = 2 * (16 + rows + 16) + 2 * (16 + rows + 16);
                    n += share(o) * per_feature + 2 * share(rows * o);
                }
                SMALL_NET_ACT | SMALL_NET_ADD => n += 2 * share(rows * o),
                _ => {
                    n += share(rows * o) * (i + 1);
                    n += share(o * i) * (rows + 1) + share(o) * (rows + 1);
                    if input_grad {
                        n += share(rows * i) * (o + 1);
                    }
                }
            }
        }
        // The loss rows, their partial sums and the tree over the parts.
        let parts = if rows <= SMALL_NET_WORKGROUP { SMALL_NET_WORKGROUP } else { SMALL_NET_LOSS_PARTS };
        let loss = share(rows) * 4 * (self.cols as usize + 1) + share(parts);
        let levels = parts.trailing_zeros() as usize;
        let tree = levels + 1 + (0..levels).map(|level| share(parts >> (level + 1))).sum::<usize>();
        // small_net_train.wgsl's update: a quad of the parameters each.
        let update = share((self.param_len as usize).div_ceil(4));
        n + loss + tree + share(rows * self.cols as usize) + update
    }
}

/// Elements of params, grads, values, totals, src_x, src_labels and indices a launch may touch,
/// after checking the chain the kernel walks: 1 to `SMALL_NET_MAX_LAYERS` layers, 1 to
/// `SMALL_NET_MAX_ROWS` rows, each layer's input width the last one's output, the first the
/// input's, the last the outputs'. Indices are data: the kernel clamps them below `src_rows`.
fn extents(entry: SmallNetEntry, p: &SmallNetParams) -> Result<Vec<u64>> {
    let refuse = |why: String| Err(Error::LaunchParams { kernel: entry.name(), why });
    let layers = p.layers as usize;
    if layers == 0 || layers > SMALL_NET_MAX_LAYERS {
        return refuse(format!("{layers} layers (1 to {SMALL_NET_MAX_LAYERS})"));
    }
    if p.rows == 0 || p.rows as usize > SMALL_NET_MAX_ROWS || p.src_rows == 0 || p.use_targets != 0 {
        return refuse(format!(
            "{} rows from {} (1 to {SMALL_NET_MAX_ROWS}), targets {}",
            p.rows, p.src_rows, p.use_targets
        ));
    }
    if p.gathered == 0 && p.src_rows < p.rows {
        return refuse(format!("a batch of {} rows in {} source rows", p.rows, p.src_rows));
    }
    if p.models == 0 || p.models as usize > SMALL_NET_MAX_MODELS || (p.models > 1 && p.gathered == 0) {
        return refuse(format!("{} models (1 to {SMALL_NET_MAX_MODELS}; several read their own rows)", p.models));
    }
    if p.index_stride < p.rows {
        return refuse(format!("{} batch rows per model in index slices of {}", p.rows, p.index_stride));
    }
    let rows = p.rows as u64;
    let (mut params, mut values) = (0u64, 0u64);
    // A value of `width` at `at` (NONE: the network input, which must be that wide).
    let value = |l: usize, at: u32, width: u32, values: &mut u64| -> Result<()> {
        if at == SMALL_NET_NONE {
            if width != p.inputs {
                let why = format!("layer {l} reads {width} features of the {}-wide input", p.inputs);
                return Err(Error::LaunchParams { kernel: entry.name(), why });
            }
        } else {
            *values = (*values).max(at as u64 + rows * width as u64);
        }
        Ok(())
    };
    for l in 0..layers {
        let [inputs, outputs, weight, bias] = p.shape[l];
        let [kind, mean, var, stats] = p.norm[l];
        let [input_at, skip_at, input_grad, skip_grad] = p.link[l];
        if inputs == 0 || outputs == 0 || (kind != SMALL_NET_DENSE && inputs != outputs) {
            return refuse(format!("layer {l} of kind {kind} takes {inputs} inputs to {outputs} outputs"));
        }
        value(l, input_at, inputs, &mut values)?;
        let n = outputs as u64;
        match kind {
            SMALL_NET_DENSE => {
                params = params.max(weight as u64 + inputs as u64 * n);
                if bias != SMALL_NET_NO_BIAS {
                    params = params.max(bias as u64 + n);
                }
            }
            SMALL_NET_NORM if p.rows > 1 => {
                // γ at `weight`, β at `bias`, each `outputs` long.
                params = params.max(weight as u64 + n).max(bias as u64 + n);
                values = values.max(mean as u64 + n).max(var as u64 + n).max(stats as u64 + 3 * n);
            }
            SMALL_NET_ACT => {}
            SMALL_NET_ADD => value(l, skip_at, outputs, &mut values)?,
            _ => {
                return refuse(format!(
                    "layer {l} of kind {kind} in batches of {} rows (a batch norm needs 2 rows or more)",
                    p.rows
                ))
            }
        }
        let [_, _, z, out] = p.act[l];
        if kind == SMALL_NET_DENSE || kind == SMALL_NET_NORM {
            values = values.max(z as u64 + rows * n);
        }
        values = values.max(out as u64 + rows * n).max(p.grad[l][0] as u64 + rows * n);
        for (slot, width) in [(input_grad, inputs), (skip_grad, outputs)] {
            if slot != SMALL_NET_NONE {
                values = values.max(slot as u64 + rows * width as u64);
            }
        }
    }
    // small_net_train.wgsl's update loops over the quads of `param_len` (each guarded again by
    // the optimizer's own length).
    params = params.max((p.param_len as u64).next_multiple_of(4));
    let last = layers - 1;
    if p.shape[last][1] != p.cols || p.act[last][3] != p.logits_at || p.grad[last][0] != p.logit_grads_at {
        return refuse(format!("the last layer's {} outputs are not the {} logits", p.shape[last][1], p.cols));
    }
    let matrix = rows * p.cols as u64;
    values = values.max(p.logit_grads_at as u64 + matrix).max(p.stats_at as u64 + 2 * rows);
    if p.models > 1 && ((p.param_stride as u64) < params || (p.values_stride as u64) < values) {
        return refuse(format!("models {} and {} elements apart overlap", p.param_stride, p.values_stride));
    }
    let before_last = p.models as u64 - 1;
    let params = before_last * p.param_stride as u64 + params;
    let values = before_last * p.values_stride as u64 + values;
    let totals = before_last * SMALL_NET_TOTALS_STRIDE as u64 + TOTALS_LEN as u64;
    let src = if p.gathered != 0 { p.src_rows as u64 } else { rows };
    let indices = if p.gathered != 0 { before_last * p.index_stride as u64 + rows } else { 0 };
    Ok(vec![params, params, values, totals, src * p.inputs as u64, src, indices])
}

/// What a small_net.wgsl launch reads and writes.
pub struct SmallNetBuffers<'a> {
    pub params: &'a GpuBuffer,
    pub grads: &'a GpuBuffer,
    pub values: &'a GpuBuffer,
    pub totals: &'a GpuBuffer,
    /// The data rows: the resident training set (read through `indices`) or the batch itself.
    pub x: &'a GpuBuffer,
    pub labels: &'a GpuBuffer,
    /// The batch's row indices; None when `x` and `labels` hold the batch.
    pub indices: Option<&'a GpuBuffer>,
}

/// The bounds of small_net_train.wgsl's update, from its numbers (the family's parameters): the
/// update the numbers name, never clipping (its norm is launches of its own), optim.wgsl's
/// extents for parameters, gradient, state, groups and clip. The network's buffers are held to
/// `SmallNetParams` by `TrainStep::write_net` before each write of the ring at binding 7.
fn train_extents(entry: SmallNetTrainEntry, p: &OptParams) -> Result<Vec<u64>> {
    let refuse = |why: String| Err(Error::LaunchParams { kernel: entry.name(), why });
    let Some(update) = OptEntry::of_update(p.update) else {
        return refuse(format!("update number {}", p.update));
    };
    if p.flags & FLAG_CLIP != 0 {
        return refuse("gradient clipping (its norm takes launches of its own)".into());
    }
    let [param, grad, state, groups, clip] = <[u64; 5]>::try_from(super::optim::extents(update, p)?)
        .map_err(|_| Error::Plan("optim.wgsl's extents are five buffers".into()))?;
    let net = (std::mem::size_of::<SmallNetParams>() / 4) as u64;
    Ok(vec![param, grad, 0, 0, 0, 0, 0, net, state, groups, clip])
}

/// A fused step whose update runs in the same launch: the launch, whose parameters are the
/// optimizer's numbers, and the step ring it reads the network's parameters from.
pub struct TrainStep {
    pub launch: Dispatch,
    ring: GpuBuffer,
    /// small_net.wgsl's extents over the network's seven buffers, held against every
    /// `SmallNetParams` before it is written to the ring.
    net: Bounds<SmallNetEntry, SmallNetParams>,
}

impl TrainStep {
    /// Writes the network's parameters of step slots `first..` (one per slot), each checked first.
    pub fn write_net(&self, gpu: &Gpu, first: usize, params: &[SmallNetParams]) -> Result<()> {
        params.iter().try_for_each(|p| self.net.check(p))?;
        params.iter().try_for_each(|p| gpu.check_small_net_loops(p))?;
        gpu.write_slots(&self.ring, first, params, 1)
    }

    /// Step slots the launch holds.
    pub fn slots(&self) -> usize {
        self.launch.slots()
    }
}

/// small_net.wgsl's invocations on an adapter: one on a CPU adapter, where switching between a
/// workgroup's invocations at each barrier costs more than a small step's arithmetic, and on the
/// GL backend (`max_lanes`), else `SMALL_NET_WORKGROUP`.
pub fn default_lanes(info: &wgpu::AdapterInfo) -> u32 {
    if info.device_type == wgpu::DeviceType::Cpu || info.backend == wgpu::Backend::Gl {
        1
    } else {
        SMALL_NET_WORKGROUP as u32
    }
}

/// The most lanes per model the kernel may use on an adapter: one on the GL backend, where the
/// lanes' storage writes did not reach each other across `storageBarrier` (naga's GLSL declares
/// no buffer `coherent`; seen on llvmpipe's GL driver, the gradients wrong by 15 %).
pub fn max_lanes(info: &wgpu::AdapterInfo) -> u32 {
    if info.backend == wgpu::Backend::Gl {
        1
    } else {
        SMALL_NET_WORKGROUP as u32
    }
}

impl Gpu {
    /// The most multiply-adds per model-step for which `runs` runs of one small model train side
    /// by side by default (`train::side_by_side`). On a CPU adapter measured on lavapipe: 16
    /// XOR-sized runs (6,144 per step) side by side gave 1.5× one per-op run's samples/s, 12 runs
    /// of a 2-16-16-3 net (32,256) 0.6×. On a GPU the models' workgroups run at once, so the
    /// batch's step costs about one model's fused step, against `runs` per-op steps one after
    /// another: the fused step's own break-even times the runs, up to
    /// `SIDE_BY_SIDE_CONCURRENT_MODELS` (an estimate from the lone one, not yet measured on a GPU).
    pub fn side_by_side_max_step_macs(&self, runs: usize) -> usize {
        if self.info.device_type == wgpu::DeviceType::Cpu {
            SIDE_BY_SIDE_MAX_STEP_MACS_CPU
        } else {
            SMALL_NET_MAX_STEP_MACS * runs.clamp(1, SIDE_BY_SIDE_CONCURRENT_MODELS)
        }
    }

    /// The most multiply-adds per step for which this adapter takes the fused step by default.
    pub fn small_net_max_step_macs(&self) -> usize {
        if self.info.device_type == wgpu::DeviceType::Cpu {
            SMALL_NET_MAX_STEP_MACS_CPU
        } else {
            SMALL_NET_MAX_STEP_MACS
        }
    }

    /// The entry point, its constants and its grid for `p`: with one lane (a CPU adapter, GL) a
    /// model per invocation and no barriers, even for one model (on lavapipe the one-lane
    /// `ForwardBackward` still pays for its barriers: 1,667 µs a step of the XOR-sized net
    /// against ~430 µs), else a workgroup per model.
    pub fn small_net_launch(&self, p: &SmallNetParams) -> (SmallNetEntry, [(&'static str, u32); 2], [u32; 3]) {
        if self.small_net_lanes == 1 {
            let constants = [("LANES", 1), ("MODEL_GROUP", SMALL_NET_MODEL_GROUP)];
            (SmallNetEntry::Models, constants, [p.models.div_ceil(SMALL_NET_MODEL_GROUP), 1, 1])
        } else {
            let constants = [("LANES", self.small_net_lanes), ("MODEL_GROUP", SMALL_NET_MODEL_GROUP)];
            (SmallNetEntry::ForwardBackward, constants, [p.models, 1, 1])
        }
    }

    /// Ok when a launch with `p` stays inside this adapter's loop budget.
    pub fn check_small_net_loops(&self, p: &SmallNetParams) -> Result<()> {
        self.check_loops("the fused small-network step", p.loop_iterations(self.small_net_lanes as usize))
    }

    /// One launch of small_net.wgsl; `p` from `SmallNet::new`, `SmallNetParams::for_batch` and,
    /// for several models, `for_models`.
    pub fn small_net_step(&self, b: &SmallNetBuffers, p: &SmallNetParams) -> Result<Dispatch> {
        let bound = self.small_net_bindings(b, p)?;
        let (entry, constants, grid) = self.small_net_launch(p);
        // A batch norm's blend may change from step to step; the indices do.
        self.kernels.small_net.dispatch_per_step(self, entry, &constants, &bound, extents, p, grid)
    }

    /// Whether this adapter binds enough storage buffers for the update to share the fused
    /// step's launch (`small_net_train_step`).
    pub fn small_net_trains(&self) -> bool {
        self.kernels.small_net_train.is_some()
    }

    /// The fused step and the update of one model in one launch (small_net_train.wgsl): `p` as
    /// for `small_net_step`, `opt` the optimizer's numbers of the coming step (a lone model's:
    /// its parameters from 0). An error where the adapter binds too few storage buffers
    /// (`small_net_trains`) or the optimizer clips.
    pub fn small_net_train_step(
        &self,
        b: &SmallNetBuffers,
        p: &SmallNetParams,
        u: &UpdateBuffers,
        opt: &OptParams,
    ) -> Result<TrainStep> {
        let Some(family) = &self.kernels.small_net_train else {
            let why = format!(
                "the adapter binds {} storage buffers per stage, not {SMALL_NET_TRAIN_STORAGE_BINDINGS}",
                self.limits.max_storage_buffers_per_shader_stage
            );
            return Err(Error::LaunchParams { kernel: SmallNetTrainEntry::Train.name(), why });
        };
        if p.models != 1 || opt.param_base != 0 {
            let why = format!("{} models from quad {}: one model from 0", p.models, opt.param_base);
            return Err(Error::LaunchParams { kernel: SmallNetTrainEntry::Train.name(), why });
        }
        let bound = self.small_net_bindings(b, p)?;
        let (net_entry, [lanes, group], grid) = self.small_net_launch(p);
        let net = Bounds::new(net_entry, &bound, extents);
        net.check(p)?;
        let ring = self.step_ring("fused-step parameters", std::mem::size_of::<SmallNetParams>() / 4)?;
        self.write_slots(&ring, 0, std::slice::from_ref(p), 1)?;
        let entry = match net_entry {
            SmallNetEntry::ForwardBackward => SmallNetTrainEntry::Train,
            SmallNetEntry::Models => SmallNetTrainEntry::ModelsTrain,
        };
        let constants = [lanes, group, opt.constants()[0]];
        let mut all = bound.to_vec();
        all.extend([ring.bind(), u.state.bind(), u.block_group.bind(), u.clip.bind()]);
        let launch = family.dispatch_models(
            self,
            entry,
            &constants,
            &all,
            train_extents,
            std::slice::from_ref(opt),
            super::optim::OPT_MODELS_PER_LAUNCH,
            true,
            grid,
        )?;
        Ok(TrainStep { launch, ring, net })
    }

    /// small_net.wgsl's seven buffers for `p`, after checking the lanes and loops it would run.
    fn small_net_bindings<'a>(&'a self, b: &SmallNetBuffers<'a>, p: &SmallNetParams) -> Result<[Binding<'a>; 7]> {
        let most = max_lanes(&self.info);
        if !(1..=most).contains(&self.small_net_lanes) {
            let why = format!("{} invocations per model (1 to {most} on this backend)", self.small_net_lanes);
            return Err(Error::LaunchParams { kernel: SmallNetEntry::ForwardBackward.name(), why });
        }
        self.check_small_net_loops(p)?;
        let indices: Binding = b.indices.map_or(self.kernels.none_read(), |i| i.bind());
        Ok([b.params.bind(), b.grads.bind(), b.values.bind(), b.totals.bind(), b.x.bind(), b.labels.bind(), indices])
    }
}
