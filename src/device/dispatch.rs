//! `Dispatch`: one bound kernel launch, recorded into every step's compute pass without
//! rebuilding anything, the grid helpers, and `submit`, the unit of work of a step.

use super::{Context, GpuBuffer};
use crate::error::Result;

/// A launch's bounds check over its parameters' bytes (`pipeline::Bounds`, erased).
pub type BoundsCheck = std::sync::Arc<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// The largest workgroup count per dimension that every WebGPU device accepts.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Lays `groups` workgroups out as (x, y, 1) with x ≤ 65,535; kernels rebuild the flat index.
pub fn grid(groups: u32) -> [u32; 3] {
    if groups == 0 {
        return [0, 0, 0];
    }
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [x, groups.div_ceil(x), 1]
}

/// Workgroups of `per_group` invocations covering `len` elements, laid out by `grid`.
pub fn groups_for(len: usize, per_group: u32) -> [u32; 3] {
    grid((len as u64).div_ceil(per_group as u64).min(u32::MAX as u64) as u32)
}

/// One kernel launch with its buffers bound: recorded into a pass each step, its parameters
/// rewritten through the uniform only when they change (a shorter last batch, a new learning rate).
/// A launch is one dispatch, or a short sequence sharing one parameter struct (the texture
/// product packs its operands, then multiplies).
pub struct Dispatch {
    pub(crate) steps: Vec<Step>,
    uniform: wgpu::Buffer,
    /// Elements subtracted from (a_offset, b_offset) when a matmul's parameters are rewritten:
    /// the uniform-window product reads its operands relative to their windows.
    pub(crate) window_base: [u32; 2],
    /// Checks parameters against the bound buffers before they are written.
    bounds: BoundsCheck,
    /// The parameters the launch was built with (a resize may only shrink a product).
    pub(crate) built: Vec<u8>,
}

/// One dispatch of a launch.
pub struct Step {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Dispatch {
    /// A launch of `steps` sharing `uniform`, built with `params`, which `bounds` has checked.
    pub(crate) fn new<P: bytemuck::Pod>(
        steps: Vec<Step>,
        uniform: wgpu::Buffer,
        bounds: BoundsCheck,
        params: &P,
    ) -> Dispatch {
        Dispatch::new_models(steps, uniform, bounds, std::slice::from_ref(params))
    }

    /// A launch over a batch of models, built with one parameter struct per model.
    pub(crate) fn new_models<P: bytemuck::Pod>(
        steps: Vec<Step>,
        uniform: wgpu::Buffer,
        bounds: BoundsCheck,
        params: &[P],
    ) -> Dispatch {
        Dispatch { steps, uniform, window_base: [0, 0], bounds, built: bytemuck::cast_slice(params).to_vec() }
    }

    /// Records the launch into `pass` (a launch with an empty grid records nothing).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for step in &self.steps {
            if step.groups.contains(&0) {
                continue;
            }
            pass.set_pipeline(&step.pipeline);
            pass.set_bind_group(0, &step.bind_group, &[]);
            pass.dispatch_workgroups(step.groups[0], step.groups[1], step.groups[2]);
        }
    }

    /// The grid of the launch's last (main) kernel.
    pub fn groups(&self) -> [u32; 3] {
        self.steps.last().map_or([0; 3], |s| s.groups)
    }

    /// New parameters (queued before the next submit) and the grid they need, refused when
    /// they would reach past a bound buffer.
    pub fn update<P: bytemuck::Pod>(&mut self, gpu: &Context, params: &P, groups: [u32; 3]) -> Result<()> {
        self.update_steps(gpu, params, &[groups])
    }

    /// New parameters and one grid per step (a single grid applies to the last step).
    pub fn update_steps<P: bytemuck::Pod>(&mut self, gpu: &Context, params: &P, groups: &[[u32; 3]]) -> Result<()> {
        (self.bounds)(bytemuck::bytes_of(params))?;
        self.write_steps(gpu, params, groups);
        Ok(())
    }

    /// `update_steps` without the check: for parameters already checked in another form (the
    /// uniform-window product checks absolute offsets, then writes them rebased).
    pub(crate) fn write_steps<P: bytemuck::Pod>(&mut self, gpu: &Context, params: &P, groups: &[[u32; 3]]) {
        self.write_models(gpu, std::slice::from_ref(params), groups);
    }

    /// `write_steps` for a batched launch: one struct per model from the first (checked by the
    /// caller, whose structs differ from the built ones only in per-step numbers).
    pub(crate) fn write_models<P: bytemuck::Pod>(&mut self, gpu: &Context, params: &[P], groups: &[[u32; 3]]) {
        gpu.queue.write_buffer(&self.uniform, 0, bytemuck::cast_slice(params));
        let first = self.steps.len().saturating_sub(groups.len());
        for (step, g) in self.steps[first..].iter_mut().zip(groups) {
            step.groups = *g;
        }
    }

    /// Runs the launch's bounds check on `params`.
    pub(crate) fn check<P: bytemuck::Pod>(&self, params: &P) -> Result<()> {
        (self.bounds)(bytemuck::bytes_of(params))
    }

    /// A copy that sets this launch's parameters inside a submit (`submit_steps`) to the
    /// `P`-sized bytes at `src_offset` of `src`, which the caller has checked with `check`.
    pub(crate) fn params_copy<'a, P: bytemuck::Pod>(&'a self, src: &'a GpuBuffer, src_offset: u64) -> StepCopy<'a> {
        self.models_params_copy::<P>(src, src_offset, 1)
    }

    /// `params_copy` for a batched launch: the first `models` structs.
    pub(crate) fn models_params_copy<'a, P: bytemuck::Pod>(
        &'a self,
        src: &'a GpuBuffer,
        src_offset: u64,
        models: usize,
    ) -> StepCopy<'a> {
        let size = (models * std::mem::size_of::<P>()) as u64;
        StepCopy { src, src_offset, dst: &self.uniform, dst_offset: 0, size }
    }
}

/// A buffer-to-buffer copy recorded before a step's pass in `submit_steps`: unlike a queue write,
/// which lands before the whole submit, it is ordered with the passes around it, so each step
/// of a submit can read its own batch indices and parameters.
pub struct StepCopy<'a> {
    pub src: &'a GpuBuffer,
    pub src_offset: u64,
    pub dst: &'a wgpu::Buffer,
    pub dst_offset: u64,
    pub size: u64,
}

/// One step of a many-steps submit: its copies, then its launches in one compute pass.
pub struct StepRecord<'a> {
    pub copies: Vec<StepCopy<'a>>,
    pub dispatches: Vec<&'a Dispatch>,
}

/// Records every step (copies, then a pass) into one command buffer and submits it once: the
/// host's cost of a submit is paid once for all of them.
pub fn submit_steps(gpu: &Context, label: &str, steps: &[StepRecord]) -> Result<()> {
    gpu.scoped(label, || {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        for step in steps {
            for c in &step.copies {
                encoder.copy_buffer_to_buffer(&c.src.buffer, c.src.offset + c.src_offset, c.dst, c.dst_offset, c.size);
            }
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
            for d in &step.dispatches {
                d.record(&mut pass);
            }
        }
        let start = std::time::Instant::now();
        gpu.queue.submit([encoder.finish()]);
        SUBMIT_NANOS.fetch_add(start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    })
}

/// Records `dispatches` into one compute pass and submits it: the unit of work of a step.
pub fn submit(gpu: &Context, label: &str, dispatches: &[&Dispatch]) -> Result<()> {
    submit_with(gpu, label, |_| {}, dispatches)
}

/// As `submit`, with `before` recording copies or clears ahead of the pass in the same submit.
pub fn submit_with(
    gpu: &Context,
    label: &str,
    before: impl FnOnce(&mut wgpu::CommandEncoder),
    dispatches: &[&Dispatch],
) -> Result<()> {
    gpu.scoped(label, || {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        before(&mut encoder);
        let mut timer = gpu.timer.lock().unwrap_or_else(|e| e.into_inner());
        let (timestamp_writes, timed) = match timer.as_mut().and_then(|t| t.next()) {
            Some((writes, i)) => (Some(writes), Some(i)),
            None => (None, None),
        };
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        if let (Some(t), Some(i)) = (timer.as_ref(), timed) {
            t.resolve(&mut encoder, i);
        }
        drop(timer);
        let start = std::time::Instant::now();
        gpu.queue.submit([encoder.finish()]);
        SUBMIT_NANOS.fetch_add(start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    })
}

/// Nanoseconds spent inside `queue.submit` by this process: a driver that runs work on submit
/// (lavapipe waits there for a free slot) counts it here, so `bench` can report host time
/// without it.
pub static SUBMIT_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
