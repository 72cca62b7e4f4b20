//! small_net.wgsl: a small dense network's whole forward and backward pass (loss included) in one
//! launch of one workgroup per model, for models whose per-op launches would cost more than their
//! arithmetic, and for batches of same-shaped models trained side by side. Its parameters and layout (`SmallNet::new` says which models it takes), entry
//! point, loop count and launch builder. Its reference is the per-op path it replaces, the same
//! sums in the same order (tests/small_net.rs holds the two together, and both to the CPU).

use crate::device::{entries, Binding, Dispatch, Entry, GpuBuffer};
use crate::error::{Error, Result};
use crate::spec::{Loss, Model, Op};

use super::loss::{LOSS_ONE_GROUP_ROWS, TOTALS_LEN};
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

pub const SMALL_NET_MAX_LAYERS: usize = 8;
/// The largest batch (the loss's one-workgroup reduction sums this many rows), and the
/// workgroup's invocations on a GPU.
pub const SMALL_NET_WORKGROUP: usize = LOSS_ONE_GROUP_ROWS;
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
    pub delta_a: u32,
    pub delta_b: u32,
    /// Models side by side (one workgroup each); model m's slices start at m times the strides.
    pub models: u32,
    pub param_stride: u32,
    pub values_stride: u32,
    pub index_stride: u32,
    pub _pad: [u32; 3],
    /// Per layer: inputs, outputs, weight offset, bias offset (`SMALL_NET_NO_BIAS`: none).
    pub shape: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: activation code, leaky slope's f32 bits, z offset, output offset (in `values`).
    pub act: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per layer: `SMALL_NET_DENSE` or `SMALL_NET_NORM`, and a batch norm's running mean, running
    /// variance and batch statistics offsets (in `values`).
    pub norm: [[u32; 4]; SMALL_NET_MAX_LAYERS],
    /// Per batch norm: eps, keep, take (the running statistics' blend of the coming step), 0.
    pub blend: [[f32; 4]; SMALL_NET_MAX_LAYERS],
}

/// small_net.wgsl's layer kinds.
pub const SMALL_NET_DENSE: u32 = 0;
pub const SMALL_NET_NORM: u32 = 1;

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

/// A layer the fused step runs.
enum Layer {
    Dense { inputs: usize, outputs: usize, weight: usize, bias: Option<usize>, act: crate::spec::Act },
    Norm { width: usize, gamma: usize, beta: usize, norm: usize, act: crate::spec::Act },
}

impl SmallNet {
    /// The layout for batches of up to `max_rows` rows, or why the kernel does not take the model:
    /// only chains of Linear layers and batch norms (each with its activation), at most
    /// `SMALL_NET_MAX_LAYERS`, batches of at most `SMALL_NET_WORKGROUP` rows (and, with a batch
    /// norm, at least 2). A batch norm's blend is that of the first step (`with_blend`).
    pub fn new(model: &Model, loss: Loss, max_rows: usize) -> std::result::Result<SmallNet, String> {
        let mut layers = Vec::new();
        for (s, stage) in model.stages.iter().enumerate() {
            if stage.input != s {
                return Err(format!("layer {} is inside a residual block", stage.name));
            }
            match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => {
                    layers.push(Layer::Dense { inputs, outputs, weight, bias, act })
                }
                Op::BatchNorm { norm, .. } if model.norms[norm].sync => {
                    return Err(format!("layer {} is a synchronised batch norm", stage.name))
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => {
                    layers.push(Layer::Norm { width, gamma, beta, norm, act })
                }
                Op::Activation { .. } => return Err(format!("layer {} is an activation on its own", stage.name)),
                Op::Add { .. } => return Err(format!("layer {} ends a residual block", stage.name)),
            }
        }
        if layers.is_empty() || layers.len() > SMALL_NET_MAX_LAYERS {
            return Err(format!("{} Linear and batch-norm layers (1 to {SMALL_NET_MAX_LAYERS})", layers.len()));
        }
        if max_rows == 0 || max_rows > SMALL_NET_WORKGROUP {
            return Err(format!("batches of {max_rows} rows (1 to {SMALL_NET_WORKGROUP})"));
        }
        if max_rows == 1 && !model.norms.is_empty() {
            return Err("batches of 1 row: a batch norm in training mode needs more".into());
        }
        let width = |l: &Layer| match *l {
            Layer::Dense { inputs, outputs, .. } => inputs.max(outputs),
            Layer::Norm { width, .. } => width,
        };
        let widest = layers.iter().map(width).max().unwrap_or(0);
        let at = |n: usize| u32::try_from(n).map_err(|_| format!("{n} values do not fit the kernel's offsets"));
        let mut p = SmallNetParams {
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
        // `values`: the running statistics, each layer's z and output (the last layer's output
        // is the logits) and a batch norm's statistics, then the logits' gradient, the row
        // statistics and the two backward halves.
        let mut len = 0usize;
        let mut take = |n: usize| -> std::result::Result<u32, String> {
            let start = at(len)?;
            len += n;
            Ok(start)
        };
        let running_at = take(model.running_len)? as usize;
        let mut norm_of = [None; SMALL_NET_MAX_LAYERS];
        for (l, layer) in layers.iter().enumerate() {
            let (outputs, act) = match *layer {
                Layer::Dense { inputs, outputs, weight, bias, act } => {
                    let bias = bias.map_or(Ok(SMALL_NET_NO_BIAS), at)?;
                    p.shape[l] = [at(inputs)?, at(outputs)?, at(weight)?, bias];
                    (outputs, act)
                }
                Layer::Norm { width, gamma, beta, norm, act } => {
                    let n = &model.norms[norm];
                    p.shape[l] = [at(width)?, at(width)?, at(gamma)?, at(beta)?];
                    let (mean, var) = (at(running_at + n.running_mean)?, at(running_at + n.running_var)?);
                    p.norm[l] = [SMALL_NET_NORM, mean, var, take(3 * width)?];
                    norm_of[l] = Some(norm);
                    (width, act)
                }
            };
            p.act[l] = [act.kind.code(), act.slope.to_bits(), take(max_rows * outputs)?, take(max_rows * outputs)?];
        }
        p.logits_at = p.act[layers.len() - 1][3];
        p.logit_grads_at = take(max_rows * model.outputs())?;
        p.stats_at = take(2 * max_rows)?;
        p.delta_a = take(max_rows * widest)?;
        p.delta_b = take(max_rows * widest)?;
        at(len)?;
        (p.models, p.values_stride, p.index_stride) = (1, at(len)?, max_rows as u32);
        let layout = SmallNet { params: p, values_len: len, running_at, norm_of };
        Ok(layout.with_blend(model, 0))
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
                if p.norm[l][0] == SMALL_NET_NORM {
                    6 * rows * o
                } else {
                    3 * rows * i * o
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
    /// dX's sums; then the loss rows and the reduction tree.
    pub fn loop_iterations(&self, lanes: usize) -> usize {
        let rows = self.rows as usize;
        let share = |n: usize| n.div_ceil(lanes) + 1;
        let mut n = 2 * (self.layers as usize + 1);
        for (l, s) in self.shape[..self.layers as usize].iter().enumerate() {
            let (i, o) = (s[0] as usize, s[1] as usize);
            if self.norm[l][0] == SMALL_NET_NORM {
                // Statistics and backward sums: 16 partials of rows/16 each and the tree, twice
                // each; normalising and dx: one pass over the elements each.
                let per_feature = 2 * (16 + rows + 16) + 2 * (16 + rows + 16);
                n += share(o) * per_feature + 2 * share(rows * o);
                continue;
            }
            n += share(rows * o) * (i + 1);
            n += share(o * i) * (rows + 1) + share(o) * (rows + 1);
            if l > 0 {
                n += share(rows * i) * (o + 1);
            }
        }
        let loss = share(SMALL_NET_WORKGROUP) * 4 * (self.cols as usize + 1);
        let tree = 7 + (0..6).map(|level| share(SMALL_NET_WORKGROUP >> (level + 1))).sum::<usize>();
        n + loss + tree + share(rows * self.cols as usize)
    }
}

/// Elements of params, grads, values, totals, src_x, src_labels and indices a launch may touch,
/// after checking the chain the kernel walks: 1 to `SMALL_NET_MAX_LAYERS` layers, 1 to
/// `SMALL_NET_WORKGROUP` rows, each layer's input width the last one's output, the first the
/// input's, the last the outputs'. Indices are data: the kernel clamps them below `src_rows`.
fn extents(entry: SmallNetEntry, p: &SmallNetParams) -> Result<Vec<u64>> {
    let refuse = |why: String| Err(Error::LaunchParams { kernel: entry.name(), why });
    let layers = p.layers as usize;
    if layers == 0 || layers > SMALL_NET_MAX_LAYERS {
        return refuse(format!("{layers} layers (1 to {SMALL_NET_MAX_LAYERS})"));
    }
    if p.rows == 0 || p.rows as usize > SMALL_NET_WORKGROUP || p.src_rows == 0 || p.use_targets != 0 {
        return refuse(format!(
            "{} rows from {} (1 to {SMALL_NET_WORKGROUP}), targets {}",
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
    let mut width = p.inputs;
    for (l, s) in p.shape[..layers].iter().enumerate() {
        let [inputs, outputs, weight, bias] = *s;
        if inputs != width || outputs == 0 {
            return refuse(format!("layer {l} takes {inputs} inputs to {outputs} outputs after a width of {width}"));
        }
        width = outputs;
        match p.norm[l] {
            [SMALL_NET_DENSE, ..] => {
                params = params.max(weight as u64 + inputs as u64 * outputs as u64);
                if bias != SMALL_NET_NO_BIAS {
                    params = params.max(bias as u64 + outputs as u64);
                }
            }
            [SMALL_NET_NORM, mean, var, stats] if inputs == outputs && p.rows > 1 => {
                // γ at `weight`, β at `bias`, each `outputs` long.
                let n = outputs as u64;
                params = params.max(weight as u64 + n).max(bias as u64 + n);
                values = values.max(mean as u64 + n).max(var as u64 + n).max(stats as u64 + 3 * n);
            }
            other => {
                return refuse(format!(
                    "layer {l} of kind {other:?}, {inputs} to {outputs} features, batches of {} rows (a batch norm \
                     keeps its width and needs 2 rows or more)",
                    p.rows
                ))
            }
        }
        let [_, _, z, out] = p.act[l];
        values = values.max(z as u64 + rows * outputs as u64).max(out as u64 + rows * outputs as u64);
    }
    if width != p.cols || p.act[layers - 1][3] != p.logits_at {
        return refuse(format!("the last layer's {width} outputs are not the {} logits", p.cols));
    }
    let widest = p.shape[..layers].iter().map(|s| s[0].max(s[1]) as u64).max().unwrap_or(0);
    let matrix = rows * p.cols as u64;
    values = values
        .max(p.logit_grads_at as u64 + matrix)
        .max(p.stats_at as u64 + 2 * rows)
        .max(p.delta_a as u64 + rows * widest)
        .max(p.delta_b as u64 + rows * widest);
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
    /// The most multiply-adds per model-step for which runs of one small model train side by side
    /// by default (`train::side_by_side`). On a CPU adapter measured on lavapipe: 16 XOR-sized
    /// runs (6,144 per step) side by side gave 1.5× one per-op run's samples/s, 12 runs of a
    /// 2-16-16-3 net (32,256) 0.6×. On a GPU, the fused step's own limit.
    pub fn side_by_side_max_step_macs(&self) -> usize {
        if self.info.device_type == wgpu::DeviceType::Cpu {
            SIDE_BY_SIDE_MAX_STEP_MACS_CPU
        } else {
            SMALL_NET_MAX_STEP_MACS
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
        let most = max_lanes(&self.info);
        if !(1..=most).contains(&self.small_net_lanes) {
            let why = format!("{} invocations per model (1 to {most} on this backend)", self.small_net_lanes);
            return Err(Error::LaunchParams { kernel: SmallNetEntry::ForwardBackward.name(), why });
        }
        self.check_small_net_loops(p)?;
        let indices: Binding = b.indices.map_or(self.kernels.none_read(), |i| i.bind());
        let bound =
            [b.params.bind(), b.grads.bind(), b.values.bind(), b.totals.bind(), b.x.bind(), b.labels.bind(), indices];
        let (entry, constants, grid) = self.small_net_launch(p);
        self.kernels.small_net.dispatch(self, entry, &constants, &bound, extents, p, grid)
    }
}
