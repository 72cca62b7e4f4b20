//! The optimizer on the device: its state, the group table, gradient clipping, and the launches
//! that make one update (optim.wgsl). Built once; each step rewrites only the uniform.

use super::Gpu;
use crate::device::{entries, grid, groups_for, Dispatch, GpuBuffer};
use crate::error::{Error, Result};
use crate::optim::{MomentumForm, Optimizer, OptimizerStep, ParamGroups, MAX_GROUPS};

entries! {
    /// optim.wgsl's entry points.
    pub enum OptEntry in "optim.wgsl" {
        /// torch.optim.SGD (momentum, dampening, Nesterov; heavy-ball and look-ahead forms).
        SgdUpdate = "sgd_update",
        /// torch.optim.Adagrad.
        AdagradUpdate = "adagrad_update",
        /// torch.optim.RMSprop (centered, momentum).
        RmspropUpdate = "rmsprop_update",
        /// torch.optim.Adam / AdamW (amsgrad).
        AdamUpdate = "adam_update",
        /// Per-chunk sums of squares of the gradient.
        GradNormPartial = "grad_norm_partial",
        /// The gradient's norm and clip_grad_norm_'s coefficient.
        GradNormFinish = "grad_norm_finish",
    }
}

impl OptEntry {
    /// The update kernel of `opt`.
    pub fn update(opt: &Optimizer) -> OptEntry {
        match opt.normalized() {
            Optimizer::Sgd(_) => OptEntry::SgdUpdate,
            Optimizer::Adagrad(_) => OptEntry::AdagradUpdate,
            Optimizer::Rmsprop(_) => OptEntry::RmspropUpdate,
            _ => OptEntry::AdamUpdate,
        }
    }
}

/// State slots `entry` touches with these parameters (optim.wgsl: SGD's momentum buffer only
/// with momentum; RMSprop's average gradient when centered and buffer with momentum; Adam's
/// running maximum with amsgrad).
fn state_slots(entry: OptEntry, p: &OptParams) -> u64 {
    match entry {
        OptEntry::SgdUpdate => u64::from(p.momentum != 0.0),
        OptEntry::AdagradUpdate => 1,
        OptEntry::RmspropUpdate => {
            if p.momentum > 0.0 {
                3
            } else if p.flags & FLAG_CENTERED != 0 {
                2
            } else {
                1
            }
        }
        OptEntry::AdamUpdate => 2 + u64::from(p.flags & FLAG_AMSGRAD != 0),
        OptEntry::GradNormPartial | OptEntry::GradNormFinish => 0,
    }
}

/// Elements of param, grad, state, block_group and clip that `entry` may touch: whole quads of
/// the `len` parameters, `state_stride` per state slot, one group index per 64-element block
/// (each clamped below `MAX_GROUPS` by the kernel), the clip header and one partial per chunk.
fn extents(entry: OptEntry, p: &OptParams) -> Result<Vec<u64>> {
    let len = p.len as u64;
    let quads = 4 * len.div_ceil(4);
    let clip = CLIP_PARTIALS as u64 + len.div_ceil(NORM_CHUNK as u64);
    Ok(match entry {
        OptEntry::GradNormPartial | OptEntry::GradNormFinish => vec![0, quads, 0, 0, clip],
        _ => {
            let state = if state_slots(entry, p) == 0 {
                0
            } else {
                (state_slots(entry, p) - 1) * p.state_stride as u64 + quads
            };
            vec![quads, quads, state, len.div_ceil(64), CLIP_PARTIALS as u64]
        }
    })
}

/// optim.wgsl's `OptParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptParams {
    pub len: u32,
    pub flags: u32,
    /// Elements between the state's slots on the device: `len` rounded up to a whole vec4, so
    /// every slot starts on a quad (optim.wgsl updates four elements at a time).
    pub state_stride: u32,
    pub max_norm: f32,
    pub momentum: f32,
    pub one_minus_dampening: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub alpha: f32,
    pub lr_decay_div: f32,
    pub bias_c1: f32,
    pub bias_c2_sqrt: f32,
    pub one_minus_beta2: f32,
    pub one_minus_alpha: f32,
    /// The 1-based step, recorded in `clip[CLIP_BAD_STEP]` by the first update that writes a
    /// NaN or ±Inf parameter.
    pub step: u32,
    pub groups: [[f32; 4]; MAX_GROUPS],
}

pub const FLAG_NESTEROV: u32 = 1;
pub const FLAG_HEAVY_BALL: u32 = 2;
pub const FLAG_NESTEROV_LOOKAHEAD: u32 = 4;
pub const FLAG_CENTERED: u32 = 8;
pub const FLAG_AMSGRAD: u32 = 16;
pub const FLAG_DECOUPLED: u32 = 32;
pub const FLAG_CLIP: u32 = 64;
pub const FLAG_FIRST_STEP: u32 = 128;
/// Gradient elements per workgroup of `grad_norm_partial`.
pub const NORM_CHUNK: usize = 4096;
/// optim.wgsl's `clip` buffer: the coefficient, the norm, the first step that wrote a
/// non-finite parameter (0: none), then `grad_norm_partial`'s sums.
pub const CLIP_COEF: usize = 0;
pub const CLIP_NORM: usize = 1;
pub const CLIP_BAD_STEP: usize = 2;
pub const CLIP_PARTIALS: usize = 3;
/// Invocations per workgroup of `grad_norm_partial` and `grad_norm_finish` (their tree's width).
pub const NORM_THREADS: usize = 256;

impl OptParams {
    /// optim.wgsl's pipeline constant: the flags fixed for a whole run (all but FIRST_STEP).
    pub fn constants(&self) -> [(&'static str, u32); 1] {
        [("OPT_FLAGS", self.flags & !FLAG_FIRST_STEP)]
    }

    /// Every number of one step, computed on the host in f64 and rounded once, exactly as the
    /// CPU reference (`reference::optimizer_update`) rounds them.
    pub fn new(len: usize, s: &OptimizerStep) -> OptParams {
        let t = s.step as f64;
        let mut p = OptParams {
            len: len as u32,
            state_stride: state_stride(len) as u32,
            max_norm: s.max_norm.unwrap_or(0.0),
            step: s.step,
            ..Default::default()
        };
        if s.max_norm.is_some() {
            p.flags |= FLAG_CLIP;
        }
        if s.step == 1 {
            p.flags |= FLAG_FIRST_STEP;
        }
        for (g, &(lr, wd)) in s.groups.groups.iter().enumerate() {
            p.groups[g] = [(lr * s.lr_factor) as f32, wd as f32, 0.0, 0.0];
        }
        match s.optimizer.normalized() {
            Optimizer::Sgd(o) => {
                p.momentum = o.momentum.value() as f32;
                p.one_minus_dampening = (1.0 - o.dampening) as f32;
                p.flags |= match o.momentum.form() {
                    MomentumForm::Pytorch if o.nesterov => FLAG_NESTEROV,
                    MomentumForm::Pytorch => 0,
                    MomentumForm::HeavyBall => FLAG_HEAVY_BALL,
                    MomentumForm::NesterovLookahead => FLAG_NESTEROV_LOOKAHEAD,
                };
            }
            Optimizer::Adagrad(o) => {
                p.eps = o.eps as f32;
                p.lr_decay_div = (1.0 + (t - 1.0) * o.lr_decay) as f32;
            }
            Optimizer::Rmsprop(o) => {
                p.alpha = o.alpha as f32;
                p.one_minus_alpha = (1.0 - o.alpha) as f32;
                p.eps = o.eps as f32;
                p.momentum = o.momentum as f32;
                if o.centered {
                    p.flags |= FLAG_CENTERED;
                }
            }
            Optimizer::Adam(o) => {
                p.one_minus_beta1 = (1.0 - o.betas[0]) as f32;
                p.beta2 = o.betas[1] as f32;
                p.one_minus_beta2 = (1.0 - o.betas[1]) as f32;
                p.eps = o.eps as f32;
                p.bias_c1 = (1.0 - o.betas[0].powf(t)) as f32;
                p.bias_c2_sqrt = (1.0 - o.betas[1].powf(t)).sqrt() as f32;
                if o.amsgrad {
                    p.flags |= FLAG_AMSGRAD;
                }
                if o.decoupled {
                    p.flags |= FLAG_DECOUPLED;
                }
            }
            Optimizer::Adamw(_) => {}
        }
        p
    }
}

/// Elements per state slot on the device (see `OptParams::state_stride`).
fn state_stride(len: usize) -> usize {
    len.next_multiple_of(4)
}

/// The host's slot-major state (slots of `len`) laid out with the device's stride.
fn to_device_layout(state: &[f32], len: usize) -> Vec<f32> {
    let (stride, slot) = (state_stride(len).max(1), len.max(1));
    let mut out = vec![0.0; stride * (state.len() / slot)];
    for (dst, src) in out.chunks_mut(stride).zip(state.chunks(slot)) {
        dst[..src.len()].copy_from_slice(src);
    }
    out
}

impl Gpu {
    /// One optimizer kernel over the flat parameter buffer; see optim.wgsl.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_kernel(
        &self,
        entry: OptEntry,
        param: &GpuBuffer,
        grad: &GpuBuffer,
        state: &GpuBuffer,
        block_group: &GpuBuffer,
        clip: &GpuBuffer,
        params: &OptParams,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.kernels.optim.dispatch(
            self,
            entry,
            &params.constants(),
            &[param.bind(), grad.bind(), state.bind(), block_group.bind(), clip.bind()],
            extents,
            params,
            groups,
        )
    }
}

pub struct GpuOptimizer {
    optimizer: Optimizer,
    groups: ParamGroups,
    max_norm: Option<f32>,
    len: usize,
    state: GpuBuffer,
    clip: GpuBuffer,
    _block_group: GpuBuffer,
    norm_partial: Option<Dispatch>,
    norm_finish: Option<Dispatch>,
    update: Dispatch,
    /// What the update's uniform holds now (rewritten only when a step changes it).
    written: Option<OptParams>,
}

impl GpuOptimizer {
    /// State, group table and launches for updating `param` (length `len`) from `grad`.
    pub fn new(
        gpu: &Gpu,
        param: &GpuBuffer,
        grad: &GpuBuffer,
        optimizer: &Optimizer,
        groups: ParamGroups,
        max_norm: Option<f32>,
    ) -> Result<GpuOptimizer> {
        let len = param.len;
        if let Some(m) = max_norm {
            crate::optim::validate_clip(m).map_err(Error::Usage)?;
        }
        let state = gpu.upload("optimizer state", &to_device_layout(&optimizer.initial_state(len), len))?;
        let block_group = gpu.upload("parameter groups", &groups.block_group)?;
        let chunks = len.div_ceil(NORM_CHUNK);
        let mut clip_init = vec![0.0f32; CLIP_PARTIALS + chunks];
        clip_init[CLIP_COEF] = 1.0;
        let clip = gpu.upload("gradient clipping", &clip_init)?;
        let first = OptimizerStep { optimizer, step: 1, lr_factor: 1.0, groups: &groups, max_norm };
        let params = OptParams::new(len, &first);
        let elementwise = groups_for(len.div_ceil(4), 256);
        let update = gpu.optimizer_kernel(
            OptEntry::update(optimizer),
            param,
            grad,
            &state,
            &block_group,
            &clip,
            &params,
            elementwise,
        )?;
        let (norm_partial, norm_finish) = if max_norm.is_some() {
            let partial = gpu.optimizer_kernel(
                OptEntry::GradNormPartial,
                param,
                grad,
                &state,
                &block_group,
                &clip,
                &params,
                grid(chunks as u32),
            )?;
            let finish = gpu.optimizer_kernel(
                OptEntry::GradNormFinish,
                param,
                grad,
                &state,
                &block_group,
                &clip,
                &params,
                [1, 1, 1],
            )?;
            (Some(partial), Some(finish))
        } else {
            (None, None)
        };
        Ok(GpuOptimizer {
            optimizer: optimizer.clone(),
            groups,
            max_norm,
            len,
            state,
            clip,
            _block_group: block_group,
            norm_partial,
            norm_finish,
            update,
            written: None,
        })
    }

    /// Step `step`'s numbers (1-based) with the schedule's `lr_factor`, as the update reads them.
    pub fn step_params(&self, step: u32, lr_factor: f64) -> OptParams {
        let s = OptimizerStep {
            optimizer: &self.optimizer,
            step,
            lr_factor,
            groups: &self.groups,
            max_norm: self.max_norm,
        };
        OptParams::new(self.len, &s)
    }

    /// The update launch, whose parameters `prepare` writes (or a many-steps submit copies).
    pub(crate) fn update_launch(&self) -> &Dispatch {
        &self.update
    }

    /// Records that the update's uniform now holds `params` (a many-steps submit copied them).
    pub(crate) fn mark_written(&mut self, params: OptParams) {
        self.written = Some(params);
    }

    /// Writes step `step`'s numbers (1-based) with the schedule's `lr_factor`.
    pub fn prepare(&mut self, gpu: &Gpu, step: u32, lr_factor: f64) {
        let params = self.step_params(step, lr_factor);
        if self.written.is_some_and(|w| bytemuck::bytes_of(&w) == bytemuck::bytes_of(&params)) {
            return;
        }
        let groups = self.update.groups();
        // Unchecked: `params` comes from the optimizer and length the launch was checked with
        // in `new`, and a step changes none of what its extents depend on.
        self.update.write_steps(gpu, &params, &[groups]);
        self.written = Some(params);
    }

    /// The launches of one update, in order (norm reduction first when clipping).
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.norm_partial.iter().chain(self.norm_finish.iter()).chain(std::iter::once(&self.update))
    }

    /// The optimizer state, slot-major with slots of `len` (see `Optimizer::state_slots`).
    pub fn state(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let stride = state_stride(self.len);
        if stride == 0 {
            return Ok(Vec::new());
        }
        let device = gpu.read_all(&self.state)?;
        Ok(device.chunks(stride).flat_map(|slot| &slot[..self.len.min(slot.len())]).copied().collect())
    }

    /// Overwrites the state (same layout as `state`).
    pub fn set_state(&self, gpu: &Gpu, state: &[f32]) -> Result<()> {
        let expected = self.len * self.optimizer.state_slots();
        if state.len() != expected {
            return Err(Error::Shape {
                what: "optimizer state".into(),
                expected: format!("{expected} values"),
                got: state.len().to_string(),
            });
        }
        gpu.write(&self.state, &to_device_layout(state, self.len));
        Ok(())
    }

    /// (coefficient, gradient norm) of the last clipped step.
    pub fn clip_stats(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        let c = gpu.read::<f32>(&self.clip, 0, 2)?;
        Ok((c[CLIP_COEF], c[CLIP_NORM]))
    }

    /// The first step (1-based) whose update wrote a NaN or ±Inf parameter since the last call,
    /// if any; clears the record.
    pub fn take_bad_step(&self, gpu: &Gpu) -> Result<Option<usize>> {
        // The kernel stores the step's bits (exact for any u32 step).
        let step = gpu.read::<u32>(&self.clip, CLIP_BAD_STEP, 1)?[0];
        if step == 0 {
            return Ok(None);
        }
        gpu.write_at(&self.clip, CLIP_BAD_STEP, &[0u32]);
        Ok(Some(step as usize))
    }

    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }
}

// ---- Error bounds of the update kernels, shared by the tests and `gradflow check` ----------------
// In the crate's error model (`reference::bounds`): u = 2^-24, γ_k = k·u/(1 − k·u).

use crate::reference::bounds::{gamma, EPS as U};

/// One step's share of |p(f32) − p(exact)| for an element at `p` whose update (the |g| replay's,
/// see tests/optimizers.rs) has size `update`: each line rounds once, ≤ 4 roundings reach p, and
/// every state recurrence (≤ 8 roundings a step, contraction ≤ 1) has drifted by ≤ 8·step·u.
pub fn update_step_error_bound(p: f64, update: f64, step: u32) -> f64 {
    4.0 * U * p.abs() + 8.0 * U * step as f64 * update.abs()
}

/// |state(f32) − state(exact)| after `step` steps, for a state slot whose |g| replay holds
/// `replay`: ≤ 8 roundings per step of terms no larger than the replay's, none amplified (each
/// recurrence contracts at the rate the replay decays), so ≤ 8u per step of the replay's size.
pub fn state_error_bound(replay: f64, step: u32) -> f64 {
    8.0 * U * step as f64 * replay.abs()
}

/// Longest chain of roundings a g_i² meets in the GPU's Σg² (optim.wgsl): its square, the
/// invocation's sequential sum of NORM_CHUNK/NORM_THREADS terms (the first addition, to 0, is
/// exact), the workgroup's tree, then `grad_norm_finish`'s sequential sum over every 256th
/// chunk (a second term past 256 chunks, i.e. 256·4096 elements) and its tree.
pub fn grad_norm_rounding_depth(len: usize) -> usize {
    let tree = NORM_THREADS.ilog2() as usize;
    let per_invocation = NORM_CHUNK / NORM_THREADS;
    let per_finish_invocation = len.div_ceil(NORM_CHUNK).div_ceil(NORM_THREADS).max(1);
    1 + (per_invocation - 1) + tree + (per_finish_invocation - 1) + tree
}

/// Relative error of the GPU's gradient norm (`clip_stats().1`) over `len` elements: Σg² within
/// γ_D (D the depth above, every term ≥ 0), then sqrt, which Vulkan and WGSL define as
/// 1/inverseSqrt (2 ulp, then 2.5 ulp: ≤ 9u/(1 − 4u)); the lower side is the larger:
/// 1 − √(1 − γ_D)·(1 − 9u/(1 − 4u)).
pub fn grad_norm_rel_error(len: usize) -> f64 {
    let sqrt = 9.0 * U / (1.0 - 4.0 * U);
    1.0 - (1.0 - gamma(grad_norm_rounding_depth(len))).sqrt() * (1.0 - sqrt)
}

/// Relative error of the GPU's clipping coefficient min(max_norm / (‖g‖ + 1e-6), 1)
/// (`clip_stats().0`) over `len` elements: the norm's error r, one rounded addition, a division
/// within 2.5 ulp (5u): (1 + 5u) / ((1 − r)(1 − u)) − 1 (the min with 1 adds none).
pub fn clip_coefficient_rel_error(len: usize) -> f64 {
    (1.0 + 5.0 * U) / ((1.0 - grad_norm_rel_error(len)) * (1.0 - U)) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_norm_reduction_is_32_roundings_deep_until_256_chunks_then_one_more_per_256() {
        assert_eq!(grad_norm_rounding_depth(1), 32);
        assert_eq!(grad_norm_rounding_depth(NORM_CHUNK * NORM_THREADS), 32);
        assert_eq!(grad_norm_rounding_depth(NORM_CHUNK * NORM_THREADS + 1), 33);
        // ≈ 25u on the norm: γ_32/2 through the square root plus the root's own 9u.
        assert!((grad_norm_rel_error(1) / U - 25.0).abs() < 0.01, "{}", grad_norm_rel_error(1) / U);
    }
}
