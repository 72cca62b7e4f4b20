//! Compiled pipelines, built once per device, and `Dispatch`: one bound kernel launch that can be
//! recorded into every step's compute pass without rebuilding anything.

use super::context::scoped;
use super::{shaders, Gpu, GpuBuffer};
use crate::error::{Error, Result};

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

#[derive(Clone, Copy)]
enum Slot {
    Read,
    ReadWrite,
    Uniform,
}

fn layout(device: &wgpu::Device, label: &str, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match slot {
                    Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    Slot::Uniform => wgpu::BufferBindingType::Uniform,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries })
}

/// Which matmul kernel to launch: the same product, two schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Workgroup-memory tiles (matmul.wgsl `matmul`): for GPUs.
    Tiled,
    /// Register blocks read straight from the buffers (`matmul_direct`): for CPU-backed adapters.
    Direct,
}

impl MatmulVariant {
    pub const ALL: [MatmulVariant; 2] = [MatmulVariant::Tiled, MatmulVariant::Direct];

    pub fn entry(self) -> &'static str {
        match self {
            MatmulVariant::Tiled => "matmul",
            MatmulVariant::Direct => "matmul_direct",
        }
    }

    /// Direct on CPU adapters (measured 1.4× faster on lavapipe), tiled elsewhere;
    /// `$GRADFLOW_MATMUL=tiled|direct` overrides.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> MatmulVariant {
        match std::env::var("GRADFLOW_MATMUL").as_deref() {
            Ok("tiled") => MatmulVariant::Tiled,
            Ok("direct") => MatmulVariant::Direct,
            _ if info.device_type == wgpu::DeviceType::Cpu => MatmulVariant::Direct,
            _ => MatmulVariant::Tiled,
        }
    }
}

/// One family of kernels: a WGSL file, the bind-group layout its entry points share, and a
/// pipeline per entry point.
#[derive(Clone)]
pub struct Family {
    pub layout: wgpu::BindGroupLayout,
    pipelines: Vec<(&'static str, wgpu::ComputePipeline)>,
}

impl Family {
    fn new(device: &wgpu::Device, file: &str, slots: &[Slot], entries: &[&'static str]) -> Result<Family> {
        let src = shaders::source(file).ok_or_else(|| Error::Model(format!("no shader {file}")))?;
        scoped(device, &format!("compiling {file}"), || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            let layout = layout(device, file, slots);
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(file),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipelines = entries
                .iter()
                .map(|entry| {
                    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&pipeline_layout),
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    });
                    (*entry, pipeline)
                })
                .collect();
            Family { layout, pipelines }
        })
    }

    fn pipeline(&self, entry: &str) -> &wgpu::ComputePipeline {
        // Entry names are compile-time constants of this module, so a miss is a bug here.
        &self.pipelines.iter().find(|(e, _)| *e == entry).expect("entry point compiled").1
    }

    /// Binds `buffers` (in binding order, the uniform last) to `entry` and returns the launch.
    fn dispatch<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        entry: &str,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        gpu.scoped(entry, || {
            let uniform = gpu.uniform(entry, params);
            let mut entries: Vec<wgpu::BindGroupEntry> = buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                .collect();
            entries.push(wgpu::BindGroupEntry { binding: buffers.len() as u32, resource: uniform.as_entire_binding() });
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &self.layout,
                entries: &entries,
            });
            Dispatch { pipeline: self.pipeline(entry).clone(), bind_group, uniform, groups }
        })
    }
}

/// One kernel launch with its buffers bound: recorded into a pass each step, its parameters
/// rewritten through the uniform only when they change (a shorter last batch, a new learning rate).
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    pub groups: [u32; 3],
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    /// New parameters (queued before the next submit) and the grid they need.
    pub fn update<P: bytemuck::Pod>(&mut self, gpu: &Gpu, params: &P, groups: [u32; 3]) {
        gpu.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
        self.groups = groups;
    }
}

/// Parameters of `matmul` and `bias_grad` (matmul.wgsl's `MatmulParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub tiles_n: u32,
    pub a_offset: u32,
    pub a_stride_m: u32,
    pub a_stride_k: u32,
    pub b_offset: u32,
    pub b_stride_k: u32,
    pub b_stride_n: u32,
    pub c_offset: u32,
    pub bias_offset: u32,
    pub flags: u32,
    pub act: u32,
    pub slope: f32,
    pub tiles_total: u32,
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_STORE_PREACT: u32 = 2;
pub const FLAG_ACT_GRAD: u32 = 4;
pub const FLAG_ACCUMULATE: u32 = 8;
pub const MATMUL_TILE: u32 = 64;

impl MatmulParams {
    /// Fills in the tile counts for m × n and returns the grid.
    pub fn tiled(mut self) -> (MatmulParams, [u32; 3]) {
        self.tiles_n = self.n.div_ceil(MATMUL_TILE);
        self.tiles_total = self.m.div_ceil(MATMUL_TILE) * self.tiles_n;
        let groups = if self.m == 0 || self.n == 0 { 0 } else { self.tiles_total };
        (self, grid(groups))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ActParams {
    pub len: u32,
    pub act: u32,
    pub slope: f32,
    pub flags: u32,
}

/// activation.wgsl: add to the destination instead of overwriting it.
pub const ACT_ACCUMULATE: u32 = 1;

/// Parameters of batchnorm.wgsl's kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BnParams {
    pub rows: u32,
    pub cols: u32,
    pub gamma_offset: u32,
    pub beta_offset: u32,
    pub mean_offset: u32,
    pub var_offset: u32,
    pub flags: u32,
    pub act: u32,
    pub slope: f32,
    pub eps: f32,
    pub keep: f32,
    pub take: f32,
}

/// batchnorm.wgsl: normalise with the batch's statistics and update the running ones.
pub const BN_TRAIN: u32 = 1;
/// batchnorm.wgsl: `batchnorm_backward_input` adds dx to its destination.
pub const BN_ACCUMULATE: u32 = 2;
/// Features per workgroup of the batch-norm reductions.
pub const BN_FEATURES: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub cols: u32,
    pub use_targets: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub rows: u32,
    pub cols: u32,
    pub _pad: [u32; 2],
}

/// Indices into `loss.wgsl`'s `totals` buffer.
pub const TOTAL_STEP_LOSS: usize = 0;
pub const TOTAL_LOSS_SUM: usize = 1;
pub const TOTAL_CORRECT: usize = 2;
pub const TOTAL_COUNT: usize = 3;
pub const TOTALS_LEN: usize = 4;

/// Every compiled kernel of the crate, plus the placeholder buffers bound to unused slots.
#[derive(Clone)]
pub struct Kernels {
    matmul: Family,
    activation: Family,
    loss: Family,
    optim: Family,
    data: Family,
    batchnorm: Family,
    unused_read: wgpu::Buffer,
    unused_write: wgpu::Buffer,
}

fn groups_for(len: usize, per_group: u32) -> [u32; 3] {
    grid((len as u64).div_ceil(per_group as u64).min(u32::MAX as u64) as u32)
}

impl Kernels {
    /// Compiles every kernel family for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Kernels> {
        use Slot::*;
        let placeholder = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Kernels {
            matmul: Family::new(
                device,
                "matmul.wgsl",
                &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
                &["matmul", "matmul_direct", "bias_grad"],
            )?,
            activation: Family::new(
                device,
                "activation.wgsl",
                &[Read, Read, ReadWrite, Uniform],
                &["activation_forward", "activation_backward", "residual_add"],
            )?,
            loss: Family::new(
                device,
                "loss.wgsl",
                &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform],
                &["cross_entropy", "mse", "loss_reduce"],
            )?,
            optim: Family::new(
                device,
                "optim.wgsl",
                &[ReadWrite, Read, ReadWrite, Read, ReadWrite, Uniform],
                &[
                    "sgd_update",
                    "adagrad_update",
                    "rmsprop_update",
                    "adam_update",
                    "grad_norm_partial",
                    "grad_norm_finish",
                ],
            )?,
            data: Family::new(
                device,
                "data.wgsl",
                &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
                &["gather_batch", "copy_f32"],
            )?,
            batchnorm: Family::new(
                device,
                "batchnorm.wgsl",
                &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Uniform],
                &["batchnorm_stats", "batchnorm_forward", "batchnorm_backward_reduce", "batchnorm_backward_input"],
            )?,
            unused_read: placeholder("unused (read)"),
            unused_write: placeholder("unused (write)"),
        })
    }
}

impl Gpu {
    /// c[c_offset..] = epilogue(A·B); see matmul.wgsl. `bias` and `aux` may be absent.
    pub fn matmul(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: Option<&GpuBuffer>,
        c: &GpuBuffer,
        aux: Option<&GpuBuffer>,
        params: MatmulParams,
    ) -> Result<Dispatch> {
        let (params, groups) = params.tiled();
        let bias = bias.map_or(&self.kernels.unused_read, |b| &b.buffer);
        let aux = aux.map_or(&self.kernels.unused_write, |b| &b.buffer);
        self.kernels.matmul.dispatch(
            self,
            self.matmul_variant.entry(),
            &[&a.buffer, &b.buffer, bias, &c.buffer, aux],
            &params,
            groups,
        )
    }

    /// c[c_offset + j] = Σ_r a[a_offset + r·n + j] for an m × n matrix in `a`.
    pub fn bias_grad(&self, a: &GpuBuffer, c: &GpuBuffer, params: MatmulParams) -> Result<Dispatch> {
        let groups = Gpu::bias_grad_grid(&params);
        self.kernels.matmul.dispatch(
            self,
            "bias_grad",
            &[&a.buffer, &self.kernels.unused_read, &self.kernels.unused_read, &c.buffer, &self.kernels.unused_write],
            &params,
            groups,
        )
    }

    pub fn bias_grad_grid(params: &MatmulParams) -> [u32; 3] {
        groups_for(params.n as usize, 256)
    }

    /// y = act(x) (`forward`) or y = dy ⊙ act'(x).
    pub fn activation(
        &self,
        forward: bool,
        x: &GpuBuffer,
        dy: Option<&GpuBuffer>,
        y: &GpuBuffer,
        params: ActParams,
    ) -> Result<Dispatch> {
        let entry = if forward { "activation_forward" } else { "activation_backward" };
        let dy = dy.map_or(&self.kernels.unused_read, |b| &b.buffer);
        self.kernels.activation.dispatch(
            self,
            entry,
            &[&x.buffer, dy, &y.buffer],
            &params,
            groups_for(params.len as usize, 256),
        )
    }

    /// y = x + skip (the end of a residual block).
    pub fn residual_add(&self, x: &GpuBuffer, skip: &GpuBuffer, y: &GpuBuffer, params: ActParams) -> Result<Dispatch> {
        self.kernels.activation.dispatch(
            self,
            "residual_add",
            &[&x.buffer, &skip.buffer, &y.buffer],
            &params,
            groups_for(params.len as usize, 256),
        )
    }

    /// One batch-norm kernel (`entry`, see batchnorm.wgsl); `dy` only for the backward kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm(
        &self,
        entry: &'static str,
        x: &GpuBuffer,
        dy: Option<&GpuBuffer>,
        params: &GpuBuffer,
        running: &GpuBuffer,
        stats: &GpuBuffer,
        out: Option<&GpuBuffer>,
        grads: &GpuBuffer,
        p: BnParams,
    ) -> Result<Dispatch> {
        let dy = dy.map_or(&self.kernels.unused_read, |b| &b.buffer);
        let out = out.map_or(&self.kernels.unused_write, |b| &b.buffer);
        self.kernels.batchnorm.dispatch(
            self,
            entry,
            &[&x.buffer, dy, &params.buffer, &running.buffer, &stats.buffer, out, &grads.buffer],
            &p,
            Gpu::batchnorm_grid(entry, &p),
        )
    }

    /// Reductions run one workgroup per 16 features; the element-wise kernels one thread per value.
    pub fn batchnorm_grid(entry: &str, p: &BnParams) -> [u32; 3] {
        match entry {
            "batchnorm_stats" | "batchnorm_backward_reduce" => groups_for(p.cols as usize, BN_FEATURES),
            _ => groups_for(p.rows as usize * p.cols as usize, 256),
        }
    }

    pub fn elementwise_grid(len: usize) -> [u32; 3] {
        groups_for(len, 256)
    }

    /// The per-row loss kernel (`cross_entropy` or `mse`) writing gradient and row statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &self,
        entry: &'static str,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        targets: Option<&GpuBuffer>,
        grad: &GpuBuffer,
        row_stats: &GpuBuffer,
        totals: &GpuBuffer,
        params: LossParams,
    ) -> Result<Dispatch> {
        let targets = targets.map_or(&self.kernels.unused_read, |b| &b.buffer);
        self.kernels.loss.dispatch(
            self,
            entry,
            &[&logits.buffer, &labels.buffer, targets, &grad.buffer, &row_stats.buffer, &totals.buffer],
            &params,
            Gpu::loss_grid(params.rows as usize),
        )
    }

    pub fn loss_grid(rows: usize) -> [u32; 3] {
        groups_for(rows, 64)
    }

    /// Sums the row statistics into the batch loss and the running totals.
    pub fn loss_reduce(&self, row_stats: &GpuBuffer, totals: &GpuBuffer, params: LossParams) -> Result<Dispatch> {
        self.kernels.loss.dispatch(
            self,
            "loss_reduce",
            &[
                &self.kernels.unused_read,
                &self.kernels.unused_read,
                &self.kernels.unused_read,
                &self.kernels.unused_write,
                &row_stats.buffer,
                &totals.buffer,
            ],
            &params,
            [1, 1, 1],
        )
    }

    /// One optimizer kernel (`entry`) over the flat parameter buffer; see optim.wgsl.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_kernel(
        &self,
        entry: &'static str,
        param: &GpuBuffer,
        grad: &GpuBuffer,
        state: &GpuBuffer,
        block_group: &GpuBuffer,
        clip: &GpuBuffer,
        params: &crate::gpu::optimizer::OptParams,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.kernels.optim.dispatch(
            self,
            entry,
            &[&param.buffer, &grad.buffer, &state.buffer, &block_group.buffer, &clip.buffer],
            params,
            groups,
        )
    }

    /// Gathers `params.rows` rows named by `indices` from the resident data set.
    pub fn gather_batch(
        &self,
        src_x: &GpuBuffer,
        src_labels: &GpuBuffer,
        indices: &GpuBuffer,
        dst_x: &GpuBuffer,
        dst_labels: &GpuBuffer,
        params: GatherParams,
    ) -> Result<Dispatch> {
        self.kernels.data.dispatch(
            self,
            "gather_batch",
            &[&src_x.buffer, &src_labels.buffer, &indices.buffer, &dst_x.buffer, &dst_labels.buffer],
            &params,
            Gpu::gather_grid(&params),
        )
    }

    pub fn gather_grid(params: &GatherParams) -> [u32; 3] {
        groups_for(params.rows as usize * params.cols as usize, 256)
    }

    /// dst[i] = src[i] for i < len: the bandwidth yardstick.
    pub fn copy_f32(&self, src: &GpuBuffer, dst: &GpuBuffer, len: usize) -> Result<Dispatch> {
        let params = GatherParams { rows: len as u32, cols: 1, _pad: [0; 2] };
        self.kernels.data.dispatch(
            self,
            "copy_f32",
            &[
                &src.buffer,
                &self.kernels.unused_read,
                &self.kernels.unused_read,
                &dst.buffer,
                &self.kernels.unused_write,
            ],
            &params,
            groups_for(len, 256),
        )
    }
}

/// Records `dispatches` into one compute pass and submits it: the unit of work of a step.
pub fn submit(gpu: &Gpu, label: &str, dispatches: &[&Dispatch]) -> Result<()> {
    submit_with(gpu, label, |_| {}, dispatches)
}

/// As `submit`, with `before` recording copies or clears ahead of the pass in the same submit.
pub fn submit_with(
    gpu: &Gpu,
    label: &str,
    before: impl FnOnce(&mut wgpu::CommandEncoder),
    dispatches: &[&Dispatch],
) -> Result<()> {
    gpu.scoped(label, || {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        before(&mut encoder);
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        gpu.queue.submit([encoder.finish()]);
    })
}
