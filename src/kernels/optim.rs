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
    /// The update an `OptParams::update` names (None: no update's number).
    pub fn of_update(update: u32) -> Option<OptEntry> {
        match update {
            UPDATE_SGD => Some(OptEntry::SgdUpdate),
            UPDATE_ADAGRAD => Some(OptEntry::AdagradUpdate),
            UPDATE_RMSPROP => Some(OptEntry::RmspropUpdate),
            UPDATE_ADAM => Some(OptEntry::AdamUpdate),
            _ => None,
        }
    }

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
/// For a model of a batch, each from its own bases (`param_base`, `state_base`, `clip_base`).
pub(crate) fn extents(entry: OptEntry, p: &OptParams) -> Result<Vec<u64>> {
    let len = p.len as u64;
    let quads = 4 * u64::from(p.param_base) + 4 * len.div_ceil(4);
    let clip_base = u64::from(p.clip_base);
    let clip = clip_base + CLIP_PARTIALS as u64 + len.div_ceil(NORM_CHUNK as u64);
    Ok(match entry {
        OptEntry::GradNormPartial | OptEntry::GradNormFinish => vec![0, quads, 0, 0, clip],
        _ => {
            let state = if state_slots(entry, p) == 0 {
                0
            } else {
                4 * u64::from(p.state_base) + (state_slots(entry, p) - 1) * p.state_stride as u64 + 4 * len.div_ceil(4)
            };
            vec![quads, quads, state, len.div_ceil(64), clip_base + CLIP_PARTIALS as u64]
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
    /// The model's first quad of the parameter and gradient buffers (0 for a lone model).
    pub param_base: u32,
    /// The model's first quad of the state buffer.
    pub state_base: u32,
    /// The model's first element of the clip buffer.
    pub clip_base: u32,
    /// UPDATE_*: the update this model takes (the fused small-network step switches on it).
    pub update: u32,
    pub groups: [[f32; 4]; MAX_GROUPS],
}

/// optim_update.wgsl's numbers for the updates (`OptParams::update`).
pub const UPDATE_SGD: u32 = 0;
pub const UPDATE_ADAGRAD: u32 = 1;
pub const UPDATE_RMSPROP: u32 = 2;
pub const UPDATE_ADAM: u32 = 3;

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
        let update = match OptEntry::update(s.optimizer) {
            OptEntry::SgdUpdate => UPDATE_SGD,
            OptEntry::AdagradUpdate => UPDATE_ADAGRAD,
            OptEntry::RmspropUpdate => UPDATE_RMSPROP,
            _ => UPDATE_ADAM,
        };
        let mut p = OptParams {
            len: len as u32,
            update,
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
    /// One optimizer kernel over the flat parameter buffer, for one model or (`params`: one
    /// struct per model, workgroup z) a batch of them; see optim.wgsl.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_kernel(
        &self,
        entry: OptEntry,
        param: &GpuBuffer,
        grad: &GpuBuffer,
        state: &GpuBuffer,
        block_group: &GpuBuffer,
        clip: &GpuBuffer,
        params: &[OptParams],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        if params.is_empty() || params.len() > OPT_MODELS_PER_LAUNCH {
            return Err(Error::Usage(format!(
                "an optimizer launch updates 1 to {OPT_MODELS_PER_LAUNCH} models, not {}",
                params.len()
            )));
        }
        let constants = params[0].constants();
        // optim.wgsl's `models` is a fixed-size uniform array: the rest of it is zeros (len 0),
        // which no workgroup reads (the grid's z is the number of models).
        self.kernels.optim.dispatch_models(
            self,
            entry,
            &constants,
            &[param.bind(), grad.bind(), state.bind(), block_group.bind(), clip.bind()],
            extents,
            params,
            OPT_MODELS_PER_LAUNCH,
            // The update's step number and learning rate change every step; the norm's inputs not.
            !matches!(entry, OptEntry::GradNormPartial | OptEntry::GradNormFinish),
            groups,
        )
    }
}

/// Models one optimizer launch updates at most: the length of optim.wgsl's uniform array
/// `models` (checked against the WGSL by tests/shader_layout.rs). 64 structs take 13 KiB,
/// inside the smallest uniform binding an adapter may offer (16 KiB, downlevel and WebGL2).
pub const OPT_MODELS_PER_LAUNCH: usize = 64;

/// One model of an optimizer launch: what updates it, and where its slices start.
#[derive(Clone, Debug)]
pub struct OptimizerModel {
    pub optimizer: Optimizer,
    pub groups: ParamGroups,
    pub max_norm: Option<f32>,
    /// Its first parameter (and gradient) in the launch's buffers: a multiple of 4.
    pub offset: usize,
}

impl OptimizerModel {
    /// What models must share to be updated by one launch: the kernel, the pipeline constant
    /// (the optimizer's form and flags, clipping on or off) and the group table.
    pub fn launch_key(&self, len: usize) -> (OptEntry, u32, Vec<u32>) {
        let first = OptimizerStep {
            optimizer: &self.optimizer,
            step: 1,
            lr_factor: 1.0,
            groups: &self.groups,
            max_norm: self.max_norm,
        };
        let flags = OptParams::new(len, &first).constants()[0].1;
        (OptEntry::update(&self.optimizer), flags, self.groups.block_group.clone())
    }
}

/// The optimizer on the device for one model, or for a batch of models trained side by side
/// (one launch updates them all: workgroup z picks the model, whose numbers, state and clip
/// record are its own). State and clip records are the optimizer's; parameters and gradients
/// are the caller's buffers.
pub struct GpuOptimizer {
    len: usize,
    models: Vec<Member>,
    state: GpuBuffer,
    clip: GpuBuffer,
    block_group: GpuBuffer,
    norm_partial: Option<Dispatch>,
    norm_finish: Option<Dispatch>,
    update: Dispatch,
    /// What the update's parameter buffer holds now (rewritten only when a step changes it).
    written: Option<Vec<OptParams>>,
}

/// What the fused step's update binds besides the network's buffers: the optimizer's state,
/// group table and clip record (`GpuOptimizer::fused_update`).
pub struct UpdateBuffers<'a> {
    pub state: &'a GpuBuffer,
    pub block_group: &'a GpuBuffer,
    pub clip: &'a GpuBuffer,
}

/// One model of a `GpuOptimizer` and its bases in the launch's buffers.
struct Member {
    model: OptimizerModel,
    state_base: usize,
    clip_base: usize,
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
        let model = OptimizerModel { optimizer: optimizer.clone(), groups, max_norm, offset: 0 };
        GpuOptimizer::for_models(gpu, param, grad, param.len, vec![model])
    }

    /// One launch updating every model of `models`, each `len` parameters from its `offset`
    /// in `param` and `grad`. They must share a `launch_key`.
    pub fn for_models(
        gpu: &Gpu,
        param: &GpuBuffer,
        grad: &GpuBuffer,
        len: usize,
        models: Vec<OptimizerModel>,
    ) -> Result<GpuOptimizer> {
        let Some(first) = models.first() else {
            return Err(Error::Usage("an optimizer launch needs at least one model".into()));
        };
        let key = first.launch_key(len);
        let first_name = first.optimizer.name();
        let chunks = len.div_ceil(NORM_CHUNK);
        let clip_len = CLIP_PARTIALS + chunks;
        let (mut state_init, mut clip_init, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for (k, m) in models.into_iter().enumerate() {
            if let Some(n) = m.max_norm {
                crate::optim::validate_clip(n).map_err(Error::Usage)?;
            }
            if m.launch_key(len) != key {
                return Err(Error::Usage(format!(
                    "model {k}'s optimizer ({}) cannot share a launch with model 0's ({})",
                    m.optimizer.name(),
                    first_name
                )));
            }
            if !m.offset.is_multiple_of(4) {
                return Err(Error::Usage(format!("model {k}'s parameters start at {}, not a multiple of 4", m.offset)));
            }
            // Updates write whole quads: two models' slices must not share one.
            let apart = state_stride(len).max(4);
            if let Some(j) = members.iter().position(|o: &Member| o.model.offset.abs_diff(m.offset) < apart) {
                return Err(Error::Usage(format!(
                    "model {k}'s parameters (from {}) overlap model {j}'s (from {})",
                    m.offset, members[j].model.offset
                )));
            }
            let state_base = state_init.len();
            state_init.extend(to_device_layout(&m.optimizer.initial_state(len), len));
            let clip_base = clip_init.len();
            clip_init.extend(std::iter::repeat_n(0.0f32, clip_len));
            clip_init[clip_base + CLIP_COEF] = 1.0;
            members.push(Member { model: m, state_base, clip_base });
        }
        let state = gpu.upload("optimizer state", &state_init)?;
        let block_group = gpu.upload("parameter groups", &key.2)?;
        let clip = gpu.upload("gradient clipping", &clip_init)?;
        let params: Vec<OptParams> = members.iter().map(|m| member_params(len, m, 1, 1.0)).collect();
        let n = members.len() as u32;
        let with_models = |[x, y, _]: [u32; 3]| [x, y, n];
        let launch =
            |entry, groups| gpu.optimizer_kernel(entry, param, grad, &state, &block_group, &clip, &params, groups);
        let update = launch(key.0, with_models(groups_for(len.div_ceil(4), 256)))?;
        let (norm_partial, norm_finish) = if params[0].flags & FLAG_CLIP != 0 {
            (
                Some(launch(OptEntry::GradNormPartial, with_models(grid(chunks as u32)))?),
                Some(launch(OptEntry::GradNormFinish, [1, 1, n])?),
            )
        } else {
            (None, None)
        };
        Ok(GpuOptimizer {
            len,
            models: members,
            state,
            clip,
            block_group,
            norm_partial,
            norm_finish,
            update,
            written: None,
        })
    }

    /// Models the launch updates.
    pub fn models(&self) -> usize {
        self.models.len()
    }

    fn member(&self, k: usize) -> Result<&Member> {
        self.models
            .get(k)
            .ok_or_else(|| Error::Usage(format!("model {k} of {} in the optimizer launch", self.models.len())))
    }

    /// Model k's numbers for step `step` (1-based) with the schedule's `lr_factor`.
    fn model_params(&self, k: usize, step: u32, lr_factor: f64) -> OptParams {
        member_params(self.len, &self.models[k], step, lr_factor)
    }

    /// Step `step`'s numbers (1-based) with the schedule's `lr_factor`, as the update reads them
    /// (a lone model's; `prepare_models` writes a batch's).
    pub fn step_params(&self, step: u32, lr_factor: f64) -> OptParams {
        self.model_params(0, step, lr_factor)
    }

    /// The update launch, whose parameters `prepare` writes (or a many-steps submit writes per
    /// step slot).
    pub(crate) fn update_launch(&self) -> &Dispatch {
        &self.update
    }

    /// Every model's numbers for step `step` with model k's schedule factor `lr_factors[k]`,
    /// in the order the update reads them (what `prepare_models` writes).
    pub(crate) fn models_params(&self, step: u32, lr_factors: &[f64]) -> Result<Vec<OptParams>> {
        if lr_factors.len() != self.models.len() {
            return Err(Error::Usage(format!(
                "{} learning-rate factors for {} models",
                lr_factors.len(),
                self.models.len()
            )));
        }
        Ok(lr_factors.iter().enumerate().map(|(k, &f)| self.model_params(k, step, f)).collect())
    }

    /// Writes step `step`'s numbers (1-based) with the schedule's `lr_factor`, for every model.
    pub fn prepare(&mut self, gpu: &Gpu, step: u32, lr_factor: f64) {
        let factors = vec![lr_factor; self.models.len()];
        // One factor per model by construction: the length check cannot fail.
        let _ = self.prepare_models(gpu, step, &factors);
    }

    /// Writes step `step`'s numbers with model k's schedule factor `lr_factors[k]` (one per
    /// model). Only the update reads per-step numbers: the norm launches keep what they were
    /// built with (length, bases, max_norm).
    pub fn prepare_models(&mut self, gpu: &Gpu, step: u32, lr_factors: &[f64]) -> Result<()> {
        let params = self.models_params(step, lr_factors)?;
        let same = |w: &[OptParams]| bytemuck::cast_slice::<_, u8>(w) == bytemuck::cast_slice::<_, u8>(&params);
        if self.written.as_deref().is_some_and(same) {
            return Ok(());
        }
        let groups = self.update.groups();
        // Unchecked: every struct comes from its model's optimizer, length and bases, which the
        // launch was checked with in `for_models`; a step changes none of what extents read.
        self.update.write_models(gpu, &params, &[groups]);
        self.written = Some(params);
        Ok(())
    }

    /// What the fused small-network step binds to update the models in its own launch
    /// (small_net_train.wgsl); None with clipping, whose norm takes launches of its own.
    pub(crate) fn fused_update(&self) -> Option<UpdateBuffers<'_>> {
        if self.norm_partial.is_some() {
            return None;
        }
        Some(UpdateBuffers { state: &self.state, block_group: &self.block_group, clip: &self.clip })
    }

    /// The launches of one update, in order (norm reduction first when clipping).
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.norm_partial.iter().chain(self.norm_finish.iter()).chain(std::iter::once(&self.update))
    }

    /// The optimizer state, slot-major with slots of `len` (see `Optimizer::state_slots`).
    pub fn state(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.state_of(gpu, 0)
    }

    /// Model k's optimizer state (the layout of `state`).
    pub fn state_of(&self, gpu: &Gpu, k: usize) -> Result<Vec<f32>> {
        crate::device::wait("reading the optimizer state", self.state_of_async(gpu, k))
    }

    /// `state_of` as a future: the form a page awaits.
    pub async fn state_of_async(&self, gpu: &Gpu, k: usize) -> Result<Vec<f32>> {
        let m = self.member(k)?;
        let stride = state_stride(self.len);
        let slots = m.model.optimizer.state_slots();
        if stride == 0 || slots == 0 {
            return Ok(Vec::new());
        }
        let device = gpu.read_async::<f32>(&self.state, m.state_base, stride * slots).await?;
        Ok(device.chunks(stride).flat_map(|slot| &slot[..self.len.min(slot.len())]).copied().collect())
    }

    /// Overwrites a lone model's state (same layout as `state`).
    pub fn set_state(&self, gpu: &Gpu, state: &[f32]) -> Result<()> {
        let m = self.member(0)?;
        let expected = self.len * m.model.optimizer.state_slots();
        if state.len() != expected {
            return Err(Error::Shape {
                what: "optimizer state".into(),
                expected: format!("{expected} values"),
                got: state.len().to_string(),
            });
        }
        gpu.write_at(&self.state, m.state_base, &to_device_layout(state, self.len));
        Ok(())
    }

    /// (coefficient, gradient norm) of a lone model's last clipped step.
    pub fn clip_stats(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        crate::device::wait("reading the clipping statistics", self.clip_stats_async(gpu))
    }

    /// `clip_stats` as a future: the form a page awaits.
    pub async fn clip_stats_async(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        let c = gpu.read_async::<f32>(&self.clip, self.member(0)?.clip_base, 2).await?;
        Ok((c[CLIP_COEF], c[CLIP_NORM]))
    }

    /// The first step (1-based) whose update wrote a NaN or ±Inf parameter of a lone model
    /// since the last call, if any; clears the record.
    pub fn take_bad_step(&self, gpu: &Gpu) -> Result<Option<usize>> {
        crate::device::wait("reading the bad-step record", self.take_bad_step_async(gpu))
    }

    /// `take_bad_step` as a future: the form a page awaits.
    pub async fn take_bad_step_async(&self, gpu: &Gpu) -> Result<Option<usize>> {
        let at = self.member(0)?.clip_base + CLIP_BAD_STEP;
        // The kernel stores the step's bits (exact for any u32 step).
        let step = gpu.read_async::<u32>(&self.clip, at, 1).await?[0];
        if step == 0 {
            return Ok(None);
        }
        gpu.write_at(&self.clip, at, &[0u32]);
        Ok(Some(step as usize))
    }

    /// `take_bad_step` for every model of the launch, in one read-back.
    pub fn take_bad_steps(&self, gpu: &Gpu) -> Result<Vec<Option<usize>>> {
        let clip = gpu.read::<u32>(&self.clip, 0, self.clip.len)?;
        let mut out = Vec::with_capacity(self.models.len());
        for m in &self.models {
            let at = m.clip_base + CLIP_BAD_STEP;
            let step = clip.get(at).copied().unwrap_or(0);
            if step != 0 {
                gpu.write_at(&self.clip, at, &[0u32]);
            }
            out.push((step != 0).then_some(step as usize));
        }
        Ok(out)
    }

    /// A lone model's optimizer (model 0's in a batch).
    pub fn optimizer(&self) -> &Optimizer {
        &self.models[0].model.optimizer
    }
}

/// A member's numbers for step `step` (1-based) with the schedule's `lr_factor`, and its bases.
fn member_params(len: usize, member: &Member, step: u32, lr_factor: f64) -> OptParams {
    let Member { model: m, state_base, clip_base } = member;
    let s = OptimizerStep { optimizer: &m.optimizer, step, lr_factor, groups: &m.groups, max_norm: m.max_norm };
    // Each state slot starts on a quad (state_stride) and so does each model's state. A base
    // past u32 saturates, and the launch's bounds check refuses it.
    let word = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    OptParams {
        param_base: word(m.offset / 4),
        state_base: word(state_base / 4),
        clip_base: word(*clip_base),
        ..OptParams::new(len, &s)
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
