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
    /// Bytes between the parameters' step slots (0: one slot, the launch's parameters are
    /// fixed for the steps of a submit).
    uniform_stride: u64,
    /// Step slots every per-step binding of the launch holds (`usize::MAX` when it has none).
    slots: usize,
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
    /// Bytes per step slot of each binding with a dynamic offset, in binding order (empty for
    /// a launch without them).
    pub strides: Vec<u64>,
}

impl Dispatch {
    /// A launch of `steps` sharing `uniform`, built with `params`, which `bounds` has checked.
    pub(crate) fn new<P: bytemuck::Pod>(
        steps: Vec<Step>,
        uniform: wgpu::Buffer,
        bounds: BoundsCheck,
        params: &P,
    ) -> Dispatch {
        Dispatch::new_models(steps, uniform, 0, usize::MAX, bounds, std::slice::from_ref(params))
    }

    /// A launch over a batch of models, built with one parameter struct per model, whose
    /// parameters (`uniform_stride` > 0) and step rings hold `slots` step slots.
    pub(crate) fn new_models<P: bytemuck::Pod>(
        steps: Vec<Step>,
        uniform: wgpu::Buffer,
        uniform_stride: u64,
        slots: usize,
        bounds: BoundsCheck,
        params: &[P],
    ) -> Dispatch {
        Dispatch {
            steps,
            uniform,
            uniform_stride,
            slots,
            window_base: [0, 0],
            bounds,
            built: bytemuck::cast_slice(params).to_vec(),
        }
    }

    /// Records the launch into `pass` (a launch with an empty grid records nothing).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_slot(pass, 0);
    }

    /// Records the launch reading step slot `slot` of its per-step bindings (`slot` below
    /// `slots`, checked by `submit_steps`).
    fn record_slot(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        for step in &self.steps {
            if step.groups.contains(&0) {
                continue;
            }
            // Strides and slots are multiples of 256 bytes inside buffers the device accepted.
            let offsets: Vec<u32> = step.strides.iter().map(|s| (s * slot as u64) as u32).collect();
            pass.set_pipeline(&step.pipeline);
            pass.set_bind_group(0, &step.bind_group, &offsets);
            pass.dispatch_workgroups(step.groups[0], step.groups[1], step.groups[2]);
        }
    }

    /// Step slots the launch's per-step bindings hold (`usize::MAX` when it has none).
    pub fn slots(&self) -> usize {
        self.slots
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

    /// Writes the parameters steps `first`, `first + 1`, … of a many-steps submit read,
    /// `per_slot` structs each (one per model, as `write_models`), in one queued write (lands
    /// before the next submit). The caller has checked them with `check`.
    pub(crate) fn write_slots<P: bytemuck::Pod>(
        &self,
        gpu: &Context,
        first: usize,
        params: &[P],
        per_slot: usize,
    ) -> Result<()> {
        let slots = params.len().checked_div(per_slot).unwrap_or(0);
        let chunk = per_slot * std::mem::size_of::<P>();
        let one_slot = self.uniform_stride == 0;
        if (one_slot && first + slots > 1)
            || (!one_slot && (first + slots > self.slots || chunk as u64 > self.uniform_stride))
        {
            return Err(crate::error::Error::Plan(format!(
                "parameters for step slots {first}..{} of a launch with {} slots",
                first + slots,
                if one_slot { 1 } else { self.slots }
            )));
        }
        let bytes = super::buffer::gather_slots(bytemuck::cast_slice(params), chunk, self.uniform_stride as usize);
        if !bytes.is_empty() {
            gpu.queue.write_buffer(&self.uniform, first as u64 * self.uniform_stride, &bytes);
        }
        Ok(())
    }
}

/// A buffer-to-buffer copy recorded before a step's pass in `submit_steps`: unlike a queue write,
/// which lands before the whole submit, it is ordered with the passes around it, so each step
/// of a submit can read its own batch (a streamed batch's rows, which no ring holds).
pub struct StepCopy<'a> {
    pub src: &'a GpuBuffer,
    pub src_offset: u64,
    pub dst: &'a wgpu::Buffer,
    pub dst_offset: u64,
    pub size: u64,
}

/// One step of a many-steps submit: its copies, then its launches reading step slot `slot`.
pub struct StepRecord<'a> {
    pub copies: Vec<StepCopy<'a>>,
    pub slot: usize,
    pub dispatches: Vec<&'a Dispatch>,
}

/// Step slots every launch of `dispatches` holds: the fewest of their rings', at most
/// `STEP_SLOTS` (also for launches without a per-step binding).
pub fn step_slots(dispatches: &[&Dispatch]) -> usize {
    dispatches.iter().map(|d| d.slots()).min().unwrap_or(1).min(super::buffer::STEP_SLOTS)
}

/// Records every step into one command buffer and submits it once: the host's cost of a submit
/// is paid once for all of them. Steps without copies share one compute pass, each reading its
/// own slot of the step rings; a step with copies starts a new pass after them.
pub fn submit_steps(gpu: &Context, label: &str, steps: &[StepRecord]) -> Result<()> {
    for step in steps {
        if let Some(d) = step.dispatches.iter().find(|d| step.slot >= d.slots) {
            return Err(crate::error::Error::Plan(format!(
                "step slot {} of a launch with {} slots ({label})",
                step.slot, d.slots
            )));
        }
    }
    gpu.scoped(label, || {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        let mut steps = steps.iter().peekable();
        while let Some(first) = steps.next() {
            for c in &first.copies {
                encoder.copy_buffer_to_buffer(&c.src.buffer, c.src.offset + c.src_offset, c.dst, c.dst_offset, c.size);
            }
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
            let mut step = first;
            loop {
                for d in &step.dispatches {
                    d.record_slot(&mut pass, step.slot);
                }
                match steps.peek() {
                    Some(next) if next.copies.is_empty() => step = steps.next().expect("peeked"),
                    _ => break,
                }
            }
        }
        let start = web_time::Instant::now();
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
        let start = web_time::Instant::now();
        gpu.queue.submit([encoder.finish()]);
        SUBMIT_NANOS.fetch_add(start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    })
}

/// Nanoseconds spent inside `queue.submit` by this process: a driver that runs work on submit
/// (lavapipe waits there for a free slot) counts it here, so `bench` can report host time
/// without it.
pub static SUBMIT_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
