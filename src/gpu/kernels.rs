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
    /// A sampled rgba32float texture read with `textureLoad`.
    Texture,
    /// A write-only rgba32float storage texture.
    TextureOut,
}

/// The texel format of packed operands: four f32 per texel.
pub const PACKED_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

/// (width, height of A's texture, height of B's) for a packed product, each rounded up to a
/// power of two: llvmpipe compiles a separate shader variant for every combination of
/// power-of-two and other texture sizes, about 12 s each with a cold shader cache, so every
/// product shares one variant instead of compiling its own.
pub fn packed_extent(p: &MatmulParams) -> (u32, u32, u32) {
    let pot = |v: u32| v.max(1).checked_next_power_of_two().unwrap_or(u32::MAX);
    (pot(p.k.div_ceil(4)), pot(p.m), pot(p.n))
}

fn binding_type(slot: Slot) -> wgpu::BindingType {
    let buffer = |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
    match slot {
        Slot::Read => buffer(wgpu::BufferBindingType::Storage { read_only: true }),
        Slot::ReadWrite => buffer(wgpu::BufferBindingType::Storage { read_only: false }),
        Slot::Uniform => buffer(wgpu::BufferBindingType::Uniform),
        Slot::Texture => wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        Slot::TextureOut => wgpu::BindingType::StorageTexture {
            access: wgpu::StorageTextureAccess::WriteOnly,
            format: PACKED_FORMAT,
            view_dimension: wgpu::TextureViewDimension::D2,
        },
    }
}

/// A layout with `slots` at the given binding numbers.
fn layout_at(device: &wgpu::Device, label: &str, slots: &[(u32, Slot)]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: binding_type(slot),
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries })
}

/// A whole buffer at `binding`, for the bind groups built by hand (texture and window products).
fn buffer(binding: u32, b: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }
}

/// Environment variable that turns wgpu's injected shader checks back on (`1`).
pub const SHADER_CHECKS_ENV: &str = "GRADFLOW_SHADER_CHECKS";

/// Whether kernels are compiled with wgpu's runtime checks (bounds clamps, loop bounding,
/// division guards): off unless `$GRADFLOW_SHADER_CHECKS=1`.
pub fn shader_checks() -> bool {
    std::env::var(SHADER_CHECKS_ENV).is_ok_and(|v| v == "1")
}

/// Compiles one kernel family's WGSL.
///
/// # Safety contract (why the unchecked module is sound)
/// Without checks, a kernel that indexes past a binding reads or writes outside it. Every
/// index a kernel computes is kept inside its bindings by these two halves:
/// - **The host** builds each launch from sizes it has validated: every buffer is allocated for
///   the largest batch it will see (`GpuNetwork::new`, `ops::*` size their buffers from the same
///   m, n, k), offsets and strides come from `Model::params` (checked against the parameter
///   buffer's length by `check_params`), batch indices are checked against the resident rows
///   (`check_batch`) before they are written, labels against the class count when data is
///   loaded, and packed textures are created for the launch's largest m, n, k. A uniform-window
///   product is built only when each operand's last value plus the kernel's vec4 over-read
///   (`WINDOW_OVERREAD`) lies inside its 16,384-float window (`window_fits`) and the buffer
///   holds the whole 64 KiB window from its aligned start (the slack every buffer is allocated
///   with; checked in `Gpu::matmul`); wgpu itself validates the bound window's size.
/// - **Each kernel** guards every index derived from its parameters: `if (i >= len) return`
///   or the `r < p.m && k < p.k` tests of `load_a`/`load_b`/`store_c`, a clamp to the last row
///   for texel fetches and window reads past the edge (`min(col, p.n - 1)`, `min(k, p.k - 1)`),
///   `min(label, cols - 1)` for a label
///   it reads, and loops bounded by uniform sizes. Divisors are uniform sizes the host never
///   sets to zero (a zero-sized launch is skipped before dispatch: `Dispatch::record`).
///
/// A third rule is llvmpipe's, not wgpu's: it ends every loop of an invocation once all its loops
/// have run 65,535 iterations together, silently. Each launch whose loop count grows with its
/// sizes is checked against `Gpu::loop_limit` before it is built (`Gpu::check_loops`): long
/// products move to the tiled schedule, which loops once per 16 of k; what still does not fit
/// is an error.
///
/// `$GRADFLOW_SHADER_CHECKS=1` restores wgpu's checks; CI runs the kernel tests in both modes.
fn module(device: &wgpu::Device, file: &str, src: String) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor { label: Some(file), source: wgpu::ShaderSource::Wgsl(src.into()) };
    if shader_checks() {
        device.create_shader_module(desc)
    } else {
        // SAFETY: see the contract above; every WGSL file compiled here is this crate's own.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    }
}

/// Values for a module's pipeline-overridable constants (`override NAME: u32` in WGSL), by name.
pub type Constants = [(&'static str, u32)];

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    layout: &wgpu::BindGroupLayout,
    entry: &str,
    constants: &Constants,
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = constants.iter().map(|&(name, v)| (name, v as f64)).collect();
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
        cache: None,
    })
}

/// A module's pipelines, one per entry point and set of override constants, made on first use
/// (or up front for the default constants) and shared by every clone of the device's kernels.
/// The epilogues are specialised this way: with their flags and activation as constants the
/// driver folds the branches away, which on lavapipe cut the cold compile of a product from
/// 0.7–6.8 s to 0.3–0.5 s and its run time by up to 40 %.
#[derive(Clone, Default)]
struct Specialized {
    made: std::sync::Arc<std::sync::Mutex<Vec<SpecializedPipeline>>>,
}

/// (entry point, constants, the pipeline).
type SpecializedPipeline = (&'static str, Vec<(&'static str, u32)>, wgpu::ComputePipeline);

impl Specialized {
    fn get(
        &self,
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        layout: &wgpu::BindGroupLayout,
        entry: &'static str,
        constants: &Constants,
    ) -> wgpu::ComputePipeline {
        // A poisoned lock only means another thread panicked while inserting; the list is intact.
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, p)) = made.iter().find(|(e, c, _)| *e == entry && c[..] == *constants) {
            return p.clone();
        }
        let p = pipeline(device, module, layout, entry, constants);
        made.push((entry, constants.to_vec(), p.clone()));
        p
    }
}

/// Which matmul kernel to launch: the same product, three schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Workgroup-memory tiles (matmul.wgsl `matmul`): for GPUs.
    Tiled,
    /// Register blocks read straight from the buffers (`matmul_direct`).
    Direct,
    /// Operands packed into textures, then register blocks read by texel fetches
    /// (matmul_packed.wgsl): for CPU-backed adapters, where texel fetches are cheap gathers.
    Packed,
    /// Register blocks read from 64 KiB uniform-buffer windows of both operands
    /// (matmul_uniform.wgsl): small products on CPU-backed adapters, with no packing pass.
    Uniform,
}

impl MatmulVariant {
    pub const ALL: [MatmulVariant; 4] =
        [MatmulVariant::Tiled, MatmulVariant::Direct, MatmulVariant::Packed, MatmulVariant::Uniform];

    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Tiled => "tiled",
            MatmulVariant::Direct => "direct",
            MatmulVariant::Packed => "packed",
            MatmulVariant::Uniform => "uniform",
        }
    }

    pub fn from_name(name: &str) -> Option<MatmulVariant> {
        MatmulVariant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// `$GRADFLOW_MATMUL=tiled|direct|packed|uniform` if set; otherwise None (the autotuner decides).
    pub fn from_env() -> Option<MatmulVariant> {
        std::env::var("GRADFLOW_MATMUL").ok().and_then(|v| MatmulVariant::from_name(&v))
    }

    /// The schedule this product actually runs: `Packed` needs both operands to fit a texture
    /// (m, n and ceil(k/4) at most the device's 2-D texture size) and falls back to `Direct`,
    /// which has no size limit beyond the buffers', when they do not.
    /// `Uniform` needs each operand within one window (`UNIFORM_WINDOW` floats from the 256-byte
    /// boundary below its offset) and falls back to `Direct` too; whether the buffers leave room
    /// for the windows is checked where they are bound (`Gpu::matmul`).
    /// Loop iterations one invocation of this schedule runs for `p`, as llvmpipe counts them
    /// against its budget (`Gpu::loop_limit`). Measured on lavapipe with exact sums of constants:
    /// its compiler unrolls the constant inner loops of compiled-unchecked modules, so `tiled`
    /// runs once per 16 of k, `packed` once per 4 and `direct` once per k; with wgpu's checks on
    /// (`GRADFLOW_SHADER_CHECKS=1`) the tiled and packed inner loops stay loops, 16 iterations and
    /// two tests each. The uniform product walks at most 8 blocks of 8 rows, k/4 at a time.
    pub fn loop_iterations(self, p: &MatmulParams, checks: bool) -> usize {
        let k = p.k as usize;
        let inner = if checks { 18 } else { 1 };
        match self {
            MatmulVariant::Tiled => k.div_ceil(16) * inner,
            MatmulVariant::Direct => k,
            MatmulVariant::Packed => k.div_ceil(4) * inner,
            MatmulVariant::Uniform => {
                k.div_ceil(4) * (p.m as usize).div_ceil(8).clamp(1, 8) * if checks { 10 } else { 1 }
            }
        }
    }

    pub fn for_shape(self, p: &MatmulParams, limits: &wgpu::Limits) -> MatmulVariant {
        let fits = match self {
            MatmulVariant::Packed => {
                let (width, a_rows, b_rows) = packed_extent(p);
                width.max(a_rows).max(b_rows) <= limits.max_texture_dimension_2d
            }
            MatmulVariant::Uniform => {
                limits.max_uniform_buffer_binding_size as usize >= UNIFORM_WINDOW * 4
                    && limits.min_uniform_buffer_offset_alignment as usize * 4 <= UNIFORM_WINDOW
                    && window_fits(p.a_offset, p.m, p.k, p.a_stride_m, p.a_stride_k, limits)
                    && window_fits(p.b_offset, p.k, p.n, p.b_stride_k, p.b_stride_n, limits)
            }
            _ => true,
        };
        if fits {
            self
        } else {
            MatmulVariant::Direct
        }
    }
}

/// Floats in one operand window of the uniform-window product (matmul_uniform.wgsl: 4096 vec4).
pub const UNIFORM_WINDOW: usize = 16384;

/// The first element of the uniform window holding an operand at `offset`: the offset rounded
/// down to the device's uniform-binding alignment.
fn window_start(offset: u32, limits: &wgpu::Limits) -> u32 {
    let align = (limits.min_uniform_buffer_offset_alignment / 4).max(1);
    offset - offset % align
}

/// Whether a rows × cols operand at `offset` with these strides lies inside its window.
fn window_fits(offset: u32, rows: u32, cols: u32, stride_r: u32, stride_c: u32, limits: &wgpu::Limits) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (offset - window_start(offset, limits)) as u64
        + (rows as u64 - 1) * stride_r as u64
        + (cols as u64 - 1) * stride_c as u64;
    // The vec4 loads of matmul_uniform.wgsl read up to 7 values past the last real one.
    last + WINDOW_OVERREAD < UNIFORM_WINDOW as u64
}

/// Values past an operand's last one that the uniform-window product may read (and discard).
const WINDOW_OVERREAD: u64 = 8;

/// matmul_uniform.wgsl's WINDOW_LAYOUT flags.
pub const WINDOW_A_ALONG_K: u32 = 1;
pub const WINDOW_A_ALONG_M: u32 = 2;
pub const WINDOW_B_ALONG_K: u32 = 4;
pub const WINDOW_B_ALONG_N: u32 = 8;

impl MatmulParams {
    /// How the operands lie in their windows (matmul_uniform.wgsl's WINDOW_LAYOUT): an axis of
    /// stride 1 with a 4-aligned offset and 4-aligned other stride is read four values at a time.
    pub fn window_layout(&self) -> u32 {
        let aligned = |offset: u32, other: u32| offset.is_multiple_of(4) && other.is_multiple_of(4);
        let mut layout = 0;
        if self.a_stride_k == 1 && aligned(self.a_offset, self.a_stride_m) {
            layout |= WINDOW_A_ALONG_K;
        } else if self.a_stride_m == 1 && aligned(self.a_offset, self.a_stride_k) {
            layout |= WINDOW_A_ALONG_M;
        }
        if self.b_stride_k == 1 && aligned(self.b_offset, self.b_stride_n) {
            layout |= WINDOW_B_ALONG_K;
        } else if self.b_stride_n == 1 && aligned(self.b_offset, self.b_stride_k) {
            layout |= WINDOW_B_ALONG_N;
        }
        layout
    }
}

/// The largest dimension of a product in the small class: the small batches of 1–64 rows and
/// narrow layers, where a schedule's fixed costs (packing, a mostly idle 64×64 tile) weigh most.
pub const SMALL_PRODUCT_DIM: u32 = 64;

/// The matmul schedule per shape class, as the autotuner chose it (or one schedule for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Products with m, n or k at most `SMALL_PRODUCT_DIM`.
    pub small: MatmulVariant,
    pub large: MatmulVariant,
}

impl Schedule {
    pub fn uniform(variant: MatmulVariant) -> Schedule {
        Schedule { small: variant, large: variant }
    }

    pub fn is_small(p: &MatmulParams) -> bool {
        p.m.min(p.n).min(p.k) <= SMALL_PRODUCT_DIM
    }

    /// The schedule of the product `p` on a device with `limits`. A small product the small
    /// class's schedule cannot run (a tall-skinny dW whose operands exceed the uniform windows)
    /// takes the large class's, not a generic fallback.
    pub fn for_product(&self, p: &MatmulParams, limits: &wgpu::Limits) -> MatmulVariant {
        if Schedule::is_small(p) && self.small.for_shape(p, limits) == self.small {
            return self.small;
        }
        self.large.for_shape(p, limits)
    }

    /// "packed", or "packed (small products: direct)".
    pub fn name(&self) -> String {
        if self.small == self.large {
            self.large.name().to_string()
        } else {
            format!("{} (small products: {})", self.large.name(), self.small.name())
        }
    }

    /// The cache file's form: "packed", or "direct,packed" (small, large).
    pub fn to_cache(&self) -> String {
        if self.small == self.large {
            self.large.name().to_string()
        } else {
            format!("{},{}", self.small.name(), self.large.name())
        }
    }

    pub fn from_cache(text: &str) -> Option<Schedule> {
        match text.split_once(',') {
            Some((small, large)) => {
                Some(Schedule { small: MatmulVariant::from_name(small)?, large: MatmulVariant::from_name(large)? })
            }
            None => MatmulVariant::from_name(text).map(Schedule::uniform),
        }
    }
}

/// One family of kernels: a WGSL file, the bind-group layout its entry points share, and a
/// pipeline per entry point.
#[derive(Clone)]
pub struct Family {
    pub layout: wgpu::BindGroupLayout,
    module: wgpu::ShaderModule,
    pipelines: Specialized,
}

impl Family {
    /// A family whose bindings are `slots` at 0, 1, 2, … (the uniform last), with the default
    /// pipelines of `entries` made now.
    fn new(device: &wgpu::Device, file: &str, slots: &[Slot], entries: &[&'static str]) -> Result<Family> {
        let numbered: Vec<(u32, Slot)> = slots.iter().enumerate().map(|(i, &s)| (i as u32, s)).collect();
        Family::with_bindings(device, file, &numbered, entries)
    }

    /// A family with `slots` at the given binding numbers.
    fn with_bindings(
        device: &wgpu::Device,
        file: &str,
        slots: &[(u32, Slot)],
        entries: &[&'static str],
    ) -> Result<Family> {
        let src = shaders::source(file).ok_or_else(|| Error::Model(format!("no shader {file}")))?;
        scoped(device, &format!("compiling {file}"), || {
            let module = module(device, file, src);
            let layout = layout_at(device, file, slots);
            let family = Family { layout, module, pipelines: Specialized::default() };
            for entry in entries {
                family.pipeline(device, entry, &[]);
            }
            family
        })
    }

    /// `entry` specialised on `constants` (its default pipeline when empty).
    fn pipeline(&self, device: &wgpu::Device, entry: &'static str, constants: &Constants) -> wgpu::ComputePipeline {
        self.pipelines.get(device, &self.module, &self.layout, entry, constants)
    }

    /// Binds `buffers` (in binding order, the uniform last) to `entry` and returns the launch.
    fn dispatch<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_specialized(gpu, entry, &[], buffers, params, groups)
    }

    /// `dispatch` with `entry` specialised on `constants` (its default pipeline when empty).
    fn dispatch_specialized<P: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        constants: &Constants,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        gpu.scoped(entry, || {
            let pipeline = self.pipeline(&gpu.device, entry, constants);
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
            Dispatch { steps: vec![Step { pipeline, bind_group, groups }], uniform, window_base: [0, 0] }
        })
    }
}

/// The texture product's two kernels, each with its own layout: a texture cannot be bound for
/// writing and for sampling in the same dispatch.
#[derive(Clone)]
pub struct PackedFamily {
    module: wgpu::ShaderModule,
    pack_layout: wgpu::BindGroupLayout,
    product_layout: wgpu::BindGroupLayout,
    pack: wgpu::ComputePipeline,
    /// `matmul_packed`, one pipeline per epilogue.
    product: Specialized,
}

impl PackedFamily {
    const FILE: &'static str = "matmul_packed.wgsl";

    fn new(device: &wgpu::Device) -> Result<PackedFamily> {
        use Slot::*;
        let src = shaders::source(Self::FILE).ok_or_else(|| Error::Model(format!("no shader {}", Self::FILE)))?;
        scoped(device, "compiling matmul_packed.wgsl", || {
            let module = module(device, Self::FILE, src);
            // Binding numbers as declared in matmul.wgsl (0–5) and matmul_packed.wgsl (6–9).
            let pack_layout = layout_at(
                device,
                "matmul_pack",
                &[(0, Read), (1, Read), (5, Uniform), (8, TextureOut), (9, TextureOut)],
            );
            let product_layout = layout_at(
                device,
                "matmul_packed",
                &[(2, Read), (3, ReadWrite), (4, ReadWrite), (5, Uniform), (6, Texture), (7, Texture)],
            );
            PackedFamily {
                pack: pipeline(device, &module, &pack_layout, "matmul_pack", &[]),
                product: Specialized::default(),
                module,
                pack_layout,
                product_layout,
            }
        })
    }
}

/// One kernel launch with its buffers bound: recorded into a pass each step, its parameters
/// rewritten through the uniform only when they change (a shorter last batch, a new learning rate).
/// A launch is one dispatch, or a short sequence sharing one parameter struct (the texture
/// product packs its operands, then multiplies).
pub struct Dispatch {
    steps: Vec<Step>,
    uniform: wgpu::Buffer,
    /// Elements subtracted from (a_offset, b_offset) when a matmul's parameters are rewritten:
    /// the uniform-window product reads its operands relative to their windows.
    window_base: [u32; 2],
}

struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
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

    /// New parameters (queued before the next submit) and the grid they need.
    pub fn update<P: bytemuck::Pod>(&mut self, gpu: &Gpu, params: &P, groups: [u32; 3]) {
        self.update_steps(gpu, params, &[groups]);
    }

    /// New parameters and one grid per step (a single grid applies to the last step).
    pub fn update_steps<P: bytemuck::Pod>(&mut self, gpu: &Gpu, params: &P, groups: &[[u32; 3]]) {
        gpu.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
        let first = self.steps.len().saturating_sub(groups.len());
        for (step, g) in self.steps[first..].iter_mut().zip(groups) {
            step.groups = *g;
        }
    }

    /// A matmul launch resized to `p` (its m or k follows the batch): every step's grid.
    pub fn update_matmul(&mut self, gpu: &Gpu, p: MatmulParams) {
        let (mut p, main) = p.tiled();
        p.a_offset -= self.window_base[0];
        p.b_offset -= self.window_base[1];
        if self.steps.len() == 2 {
            self.update_steps(gpu, &p, &[p.pack_grid(), main]);
        } else {
            self.update(gpu, &p, main);
        }
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
pub const FLAG_ROW_SUM: u32 = 16;
/// Adds `aux` (the skip value of a residual sum) after the activation; aux then holds no z, so
/// it excludes `FLAG_STORE_PREACT` and `FLAG_ACT_GRAD`.
pub const FLAG_ADD_SKIP: u32 = 32;
pub const MATMUL_TILE: u32 = 64;

/// The three products of a Linear layer with `rows` rows, `inputs` in-features and `outputs`
/// out-features, as strides over row-major x [rows, inputs], W [outputs, inputs] and
/// dz [rows, outputs]. These are the only places that lay the products out: training
/// (`GpuNetwork`), the one-shot ops the tests check (`gpu::ops`), `bench` and the autotuner all
/// start from them and add offsets, flags and the activation with struct-update syntax.
impl MatmulParams {
    /// y = x·Wᵀ: [rows, inputs]·[inputs, outputs].
    pub fn linear_forward(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (rows as u32, inputs as u32, outputs as u32);
        MatmulParams { m, n, k, a_stride_m: k, a_stride_k: 1, b_stride_k: 1, b_stride_n: k, ..Default::default() }
    }

    /// dx = dz·W: [rows, outputs]·[outputs, inputs].
    pub fn linear_backward_input(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (rows as u32, outputs as u32, inputs as u32);
        MatmulParams { m, n, k, a_stride_m: k, a_stride_k: 1, b_stride_k: n, b_stride_n: 1, ..Default::default() }
    }

    /// dW = dzᵀ·x: [outputs, rows]·[rows, inputs].
    pub fn linear_backward_weight(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (outputs as u32, rows as u32, inputs as u32);
        MatmulParams { m, n, k, a_stride_m: 1, a_stride_k: m, b_stride_k: n, b_stride_n: 1, ..Default::default() }
    }

    /// The weight-gradient launch of a layer: dW = dzᵀ·x and, when it has a bias, in the same
    /// launch the bias gradient db = Σ_rows dz (the row sums of dzᵀ) written at `bias_offset`
    /// of the output buffer.
    pub fn linear_backward_params(
        rows: usize,
        inputs: usize,
        outputs: usize,
        bias_offset: Option<usize>,
    ) -> MatmulParams {
        let dw = MatmulParams::linear_backward_weight(rows, inputs, outputs);
        match bias_offset {
            Some(offset) => MatmulParams { flags: FLAG_ROW_SUM, bias_offset: offset as u32, ..dw },
            None => dw,
        }
    }
}

impl MatmulParams {
    /// Fills in the tile counts for m × n and returns the grid.
    pub fn tiled(mut self) -> (MatmulParams, [u32; 3]) {
        self.tiles_n = self.n.div_ceil(MATMUL_TILE);
        self.tiles_total = self.m.div_ceil(MATMUL_TILE) * self.tiles_n;
        let groups = if self.m == 0 || self.n == 0 { 0 } else { self.tiles_total };
        (self, grid(groups))
    }

    /// The epilogue's pipeline constants (matmul.wgsl): a launch's flags and activation select
    /// its pipeline, so they are fixed once the launch is built (a resize changes m or k only).
    pub fn epilogue(&self) -> [(&'static str, u32); 2] {
        [("EPILOGUE_FLAGS", self.flags), ("EPILOGUE_ACT", self.act)]
    }

    /// The grid of `matmul_pack`: one invocation per texel of both packed operands.
    pub fn pack_grid(&self) -> [u32; 3] {
        if self.m == 0 || self.n == 0 {
            return [0; 3];
        }
        let texels = self.k.div_ceil(4) as usize * (self.m as usize + self.n as usize);
        groups_for(texels, 256)
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

impl ActParams {
    /// activation.wgsl's pipeline constants: the activation and the launch's flags.
    pub fn constants(&self) -> [(&'static str, u32); 2] {
        [("ACT", self.act), ("ACT_FLAGS", self.flags)]
    }
}

/// activation.wgsl: add to the destination instead of overwriting it.
pub const ACT_ACCUMULATE: u32 = 1;

/// Parameters of hvp.wgsl's kernels (the R-operator's own terms).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HvpParams {
    pub len: u32,
    pub rows: u32,
    pub cols: u32,
    pub act: u32,
    pub slope: f32,
    pub flags: u32,
    pub gamma_offset: u32,
    pub beta_offset: u32,
}

/// hvp.wgsl: add to the destination instead of overwriting it.
pub const HVP_ACCUMULATE: u32 = 1;
/// Features per workgroup of hvp.wgsl's batch-norm reductions.
pub const HVP_FEATURES: u32 = 16;

impl HvpParams {
    /// hvp.wgsl's pipeline constants.
    pub fn constants(&self) -> [(&'static str, u32); 2] {
        [("ACT", self.act), ("HVP_FLAGS", self.flags)]
    }

    /// The grid of `entry` for these parameters.
    pub fn grid(&self, entry: &str) -> [u32; 3] {
        match entry {
            "cross_entropy_r" => groups_for(self.rows as usize, 64),
            "batchnorm_r_forward" | "batchnorm_r_backward_reduce" => groups_for(self.cols as usize, HVP_FEATURES),
            "batchnorm_r_backward_input" => groups_for(self.rows as usize * self.cols as usize, 256),
            _ => groups_for(self.len as usize, 256),
        }
    }
}

/// What one hvp.wgsl launch binds (absent inputs get a placeholder).
pub struct HvpBuffers<'a> {
    pub x: &'a GpuBuffer,
    pub rx: &'a GpuBuffer,
    pub g: Option<&'a GpuBuffer>,
    pub rg: Option<&'a GpuBuffer>,
    pub theta: Option<&'a GpuBuffer>,
    pub v: Option<&'a GpuBuffer>,
    pub stats: Option<&'a GpuBuffer>,
    pub out: &'a GpuBuffer,
}

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

impl BnParams {
    /// One batch-norm layer over a [rows, cols] batch in eval mode (normalise with the running
    /// statistics; no blend): γ and β at `gamma`, `beta` of the parameter buffer, the running
    /// mean and variance at `mean`, `var` of the running buffer. Training, `ops` and `bench` all
    /// start here.
    #[allow(clippy::too_many_arguments)]
    pub fn layer(
        rows: usize,
        cols: usize,
        gamma: usize,
        beta: usize,
        mean: usize,
        var: usize,
        eps: f64,
        act: crate::nn::Act,
    ) -> BnParams {
        BnParams {
            rows: rows as u32,
            cols: cols as u32,
            gamma_offset: gamma as u32,
            beta_offset: beta as u32,
            mean_offset: mean as u32,
            var_offset: var as u32,
            flags: 0,
            act: act.kind.code(),
            slope: act.slope,
            eps: eps as f32,
            keep: 1.0,
            take: 0.0,
        }
    }

    /// Training mode: normalise with the batch's statistics and blend them into the running
    /// ones, running ← keep·running + take·batch with keep = 1 − factor formed in f64 and
    /// rounded once (as the CPU reference does).
    pub fn training(self, factor: f64) -> BnParams {
        BnParams { flags: self.flags | BN_TRAIN, keep: (1.0 - factor) as f32, take: factor as f32, ..self }
    }

    /// One rank's share of a synchronised batch norm's training statistics (`BN_SYNC`).
    pub fn synced(self) -> BnParams {
        BnParams { flags: self.flags | BN_TRAIN | BN_SYNC, ..self }
    }

    /// batchnorm.wgsl's pipeline constants: the activation after the norm and the launch's
    /// flags (training or eval statistics, accumulate), each combination its own pipeline.
    pub fn constants(&self) -> [(&'static str, u32); 2] {
        [("ACT", self.act), ("BN_FLAGS", self.flags)]
    }
}

/// batchnorm.wgsl: normalise with the batch's statistics and update the running ones.
pub const BN_TRAIN: u32 = 1;
/// batchnorm.wgsl: `batchnorm_backward_input` adds dx to its destination.
pub const BN_ACCUMULATE: u32 = 2;
/// batchnorm.wgsl: `batchnorm_stats` computes one rank's share of a synchronised batch norm,
/// leaving its biased variance where inv_std goes and the running statistics to the host.
pub const BN_SYNC: u32 = 4;
/// Features per workgroup of the batch-norm reductions.
pub const BN_FEATURES: u32 = 16;
/// Features and rows per workgroup of the element-wise batch-norm kernels.
pub const BN_EW_COLS: usize = 64;
pub const BN_EW_ROWS: usize = 64;

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

/// The largest batch whose loss runs in one workgroup (loss.wgsl's `*_reduced` entry points).
pub const LOSS_ONE_GROUP_ROWS: usize = 64;

/// Indices into `loss.wgsl`'s `totals` buffer.
pub const TOTAL_STEP_LOSS: usize = 0;
pub const TOTAL_LOSS_SUM: usize = 1;
pub const TOTAL_CORRECT: usize = 2;
pub const TOTAL_COUNT: usize = 3;
pub const TOTAL_STEPS: usize = 4;
pub const TOTAL_FIRST_BAD: usize = 5;
pub const TOTAL_BAD_LOSS: usize = 6;
pub const TOTALS_LEN: usize = 7;

/// Every compiled kernel of the crate, plus the placeholder buffers bound to unused slots.
#[derive(Clone)]
pub struct Kernels {
    matmul: Family,
    packed: PackedFamily,
    /// The uniform-window product: its operands are uniform windows at bindings 10 and 11, the
    /// rest as in matmul.wgsl; bound by hand (`Gpu::matmul_uniform`), so no default pipeline.
    uniform: Family,
    activation: Family,
    loss: Family,
    optim: Family,
    data: Family,
    batchnorm: Family,
    /// The R-operator's kernels (Hessian-vector products), compiled on first use: most runs
    /// never need them.
    hvp: Family,
    /// Many SGD steps of a small MLP per dispatch (`gpu::small_mlp`), compiled on first use.
    small_mlp: Family,
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
                &["matmul", "matmul_direct"],
            )?,
            packed: PackedFamily::new(device)?,
            uniform: Family::with_bindings(
                device,
                "matmul_uniform.wgsl",
                &[(2, Read), (3, ReadWrite), (4, ReadWrite), (5, Uniform), (10, Uniform), (11, Uniform)],
                &[],
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
                &["cross_entropy", "mse", "loss_reduce", "cross_entropy_reduced", "mse_reduced"],
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
            hvp: Family::new(
                device,
                "hvp.wgsl",
                &[Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform],
                &[],
            )?,
            small_mlp: Family::new(
                device,
                "small_mlp.wgsl",
                &[ReadWrite, ReadWrite, Read, Read, Read, ReadWrite, Uniform],
                &[],
            )?,
            unused_read: placeholder("unused (read)"),
            unused_write: placeholder("unused (write)"),
        })
    }
}

impl Kernels {
    pub(crate) fn small_mlp_dispatch(
        &self,
        gpu: &Gpu,
        buffers: &[&wgpu::Buffer],
        p: &super::small_mlp::SmallMlpParams,
    ) -> Result<Dispatch> {
        self.small_mlp.dispatch(gpu, "small_mlp_sgd", buffers, p, [1, 1, 1])
    }
}

impl Gpu {
    /// c[c_offset..] = epilogue(A·B); see matmul.wgsl. `bias` and `aux` may be absent. The
    /// schedule is `self.matmul_schedule`'s for the product's shape class, as far as the shape
    /// allows (`MatmulVariant::for_shape`).
    pub fn matmul(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: Option<&GpuBuffer>,
        c: &GpuBuffer,
        aux: Option<&GpuBuffer>,
        params: MatmulParams,
    ) -> Result<Dispatch> {
        if params.flags & FLAG_ADD_SKIP != 0 && params.flags & (FLAG_STORE_PREACT | FLAG_ACT_GRAD) != 0 {
            return Err(Error::Plan(format!(
                "a matmul epilogue cannot add a skip value and use z through the same aux buffer (flags {:#x})",
                params.flags
            )));
        }
        let (params, groups) = params.tiled();
        let bias = bias.map_or(&self.kernels.unused_read, |b| &b.buffer);
        let aux = aux.map_or(&self.kernels.unused_write, |b| &b.buffer);
        let windows_fit = |buffer: &GpuBuffer, offset: u32| {
            (window_start(offset, &self.limits) as u64 + UNIFORM_WINDOW as u64) * 4 <= buffer.buffer.size()
        };
        let mut variant = self.matmul_schedule.for_product(&params, &self.limits);
        if variant == MatmulVariant::Uniform && !(windows_fit(a, params.a_offset) && windows_fit(b, params.b_offset)) {
            // Buffers without the window slack: the large class's schedule, as for_product would.
            variant = match self.matmul_schedule.large.for_shape(&params, &self.limits) {
                MatmulVariant::Uniform => MatmulVariant::Direct,
                v => v,
            };
        }
        // llvmpipe's loop budget: past it, the tiled schedule (the fewest iterations per k);
        // past that too, an error rather than a sum cut short.
        if let Some(limit) = self.loop_limit() {
            let checks = shader_checks();
            if variant.loop_iterations(&params, checks) > limit {
                variant = MatmulVariant::Tiled;
            }
            let iterations = variant.loop_iterations(&params, checks);
            if iterations > limit {
                let what = format!("a {}×{}×{} matrix product", params.m, params.k, params.n);
                self.check_loops(&what, iterations)?;
            }
        }
        let entry = match variant {
            MatmulVariant::Packed => return self.matmul_packed(a, b, bias, c, aux, params, groups),
            MatmulVariant::Uniform => return self.matmul_uniform(a, b, bias, c, aux, params, groups),
            MatmulVariant::Tiled => "matmul",
            MatmulVariant::Direct => "matmul_direct",
        };
        let buffers = [&a.buffer, &b.buffer, bias, &c.buffer, aux];
        self.kernels.matmul.dispatch_specialized(self, entry, &params.epilogue(), &buffers, &params, groups)
    }

    /// The uniform-window product: 64 KiB uniform bindings of A's and B's buffers at the
    /// aligned starts of their windows, the offsets in the parameters rebased to them.
    #[allow(clippy::too_many_arguments)]
    fn matmul_uniform(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: &wgpu::Buffer,
        c: &GpuBuffer,
        aux: &wgpu::Buffer,
        params: MatmulParams,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let f = &self.kernels.uniform;
        self.scoped("matmul (uniform windows)", || {
            let window_base =
                [window_start(params.a_offset, &self.limits), window_start(params.b_offset, &self.limits)];
            let rebased = MatmulParams {
                a_offset: params.a_offset - window_base[0],
                b_offset: params.b_offset - window_base[1],
                ..params
            };
            let uniform = self.uniform("matmul (uniform windows)", &rebased);
            fn window(binding: u32, g: &GpuBuffer, start: u32) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry {
                    binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &g.buffer,
                        offset: start as u64 * 4,
                        size: std::num::NonZeroU64::new(UNIFORM_WINDOW as u64 * 4),
                    }),
                }
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_uniform"),
                layout: &f.layout,
                entries: &[
                    buffer(2, bias),
                    buffer(3, &c.buffer),
                    buffer(4, aux),
                    buffer(5, &uniform),
                    window(10, a, window_base[0]),
                    window(11, b, window_base[1]),
                ],
            });
            let [flags, act] = params.epilogue();
            let constants = [flags, act, ("WINDOW_LAYOUT", rebased.window_layout())];
            let pipeline = f.pipeline(&self.device, "matmul_uniform", &constants);
            Dispatch { steps: vec![Step { pipeline, bind_group, groups }], uniform, window_base }
        })
    }

    /// The texture product: two textures sized for this launch's m, n and k (rounded up to powers
    /// of two; a resized launch only shrinks), `matmul_pack` filling them and `matmul_packed`
    /// reading them.
    #[allow(clippy::too_many_arguments)]
    fn matmul_packed(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: &wgpu::Buffer,
        c: &GpuBuffer,
        aux: &wgpu::Buffer,
        params: MatmulParams,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let f = &self.kernels.packed;
        self.scoped("matmul (packed)", || {
            let (width, a_rows, b_rows) = packed_extent(&params);
            let texture = |label, rows: u32| {
                let t = self.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size: wgpu::Extent3d { width, height: rows, depth_or_array_layers: 1 },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: PACKED_FORMAT,
                    usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
                    view_formats: &[],
                });
                t.create_view(&Default::default())
            };
            let (a_view, b_view) = (texture("packed A", a_rows), texture("packed B", b_rows));
            let uniform = self.uniform("matmul (packed)", &params);
            fn view(binding: u32, v: &wgpu::TextureView) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::TextureView(v) }
            }
            let pack = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_pack"),
                layout: &f.pack_layout,
                entries: &[
                    buffer(0, &a.buffer),
                    buffer(1, &b.buffer),
                    buffer(5, &uniform),
                    view(8, &a_view),
                    view(9, &b_view),
                ],
            });
            let product = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_packed"),
                layout: &f.product_layout,
                entries: &[
                    buffer(2, bias),
                    buffer(3, &c.buffer),
                    buffer(4, aux),
                    buffer(5, &uniform),
                    view(6, &a_view),
                    view(7, &b_view),
                ],
            });
            Dispatch {
                steps: vec![
                    Step { pipeline: f.pack.clone(), bind_group: pack, groups: params.pack_grid() },
                    Step {
                        pipeline: f.product.get(
                            &self.device,
                            &f.module,
                            &f.product_layout,
                            "matmul_packed",
                            &params.epilogue(),
                        ),
                        bind_group: product,
                        groups,
                    },
                ],
                uniform,
                window_base: [0, 0],
            }
        })
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
        self.kernels.activation.dispatch_specialized(
            self,
            entry,
            &params.constants(),
            &[&x.buffer, dy, &y.buffer],
            &params,
            groups_for(params.len as usize, 256),
        )
    }

    /// One of hvp.wgsl's kernels (`entry`), with its grid from `params`.
    pub fn hvp_kernel<'a>(&'a self, entry: &'static str, b: &HvpBuffers<'a>, params: HvpParams) -> Result<Dispatch> {
        let loops = match entry {
            "batchnorm_r_forward" => 2 * (params.rows as usize).div_ceil(16),
            "batchnorm_r_backward_reduce" => (params.rows as usize).div_ceil(16),
            "cross_entropy_r" => 3 * params.cols as usize,
            _ => 0,
        };
        self.check_loops(&format!("{entry} over {} rows of {}", params.rows, params.cols), loops)?;
        let unused = &self.kernels.unused_read;
        let read = |o: Option<&'a GpuBuffer>| -> &'a wgpu::Buffer { o.map_or(unused, |b| &b.buffer) };
        let stats = b.stats.map_or(&self.kernels.unused_write, |b| &b.buffer);
        self.kernels.hvp.dispatch_specialized(
            self,
            entry,
            &params.constants(),
            &[&b.x.buffer, &b.rx.buffer, read(b.g), read(b.rg), read(b.theta), read(b.v), stats, &b.out.buffer],
            &params,
            params.grid(entry),
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
        // A reduction's lane runs over every 16th row (the statistics twice); the rest 16 rows.
        let passes = match entry {
            "batchnorm_stats" => 2,
            "batchnorm_backward_reduce" => 1,
            _ => 0,
        };
        let what = format!("{entry} over {} rows", p.rows);
        self.check_loops(&what, passes * (p.rows as usize).div_ceil(16) + BN_EW_ROWS)?;
        let dy = dy.map_or(&self.kernels.unused_read, |b| &b.buffer);
        let out = out.map_or(&self.kernels.unused_write, |b| &b.buffer);
        self.kernels.batchnorm.dispatch_specialized(
            self,
            entry,
            &p.constants(),
            &[&x.buffer, dy, &params.buffer, &running.buffer, &stats.buffer, out, &grads.buffer],
            &p,
            Gpu::batchnorm_grid(entry, &p),
        )
    }

    /// Reductions run one workgroup per 16 features; the element-wise kernels one workgroup per
    /// 64 features × 64 rows (batchnorm.wgsl's EW_* constants).
    pub fn batchnorm_grid(entry: &str, p: &BnParams) -> [u32; 3] {
        match entry {
            "batchnorm_stats" | "batchnorm_backward_reduce" => groups_for(p.cols as usize, BN_FEATURES),
            _ => {
                let tiles = (p.cols as usize).div_ceil(BN_EW_COLS) * (p.rows as usize).div_ceil(BN_EW_ROWS);
                grid(tiles.min(u32::MAX as usize) as u32)
            }
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
        // A row's loss loops over its columns four times; the reduction over rows/256 per lane.
        let what = format!("{entry} over {} rows of {} columns", params.rows, params.cols);
        self.check_loops(&what, 4 * params.cols as usize + (params.rows as usize).div_ceil(256) + 64)?;
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

    /// A loss step over batches of up to `max_rows` rows: the per-row kernel `entry` then
    /// `loss_reduce`, or, for at most `LOSS_ONE_GROUP_ROWS` rows, `entry`'s single-workgroup form
    /// doing both in one dispatch (same bits). Training (`nn::launch`) and `gpu::ops` both
    /// build their loss launches here.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_step(
        &self,
        entry: &'static str,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        targets: Option<&GpuBuffer>,
        grad: &GpuBuffer,
        row_stats: &GpuBuffer,
        totals: &GpuBuffer,
        params: LossParams,
        max_rows: usize,
    ) -> Result<Vec<Dispatch>> {
        if max_rows <= LOSS_ONE_GROUP_ROWS {
            let reduced = match entry {
                "cross_entropy" => "cross_entropy_reduced",
                "mse" => "mse_reduced",
                other => return Err(Error::Plan(format!("no single-workgroup form of loss {other}"))),
            };
            let what = format!("{reduced} over {} rows of {} columns", params.rows, params.cols);
            self.check_loops(&what, 4 * params.cols as usize + 2 * LOSS_ONE_GROUP_ROWS)?;
            let targets = targets.map_or(&self.kernels.unused_read, |b| &b.buffer);
            let buffers = [&logits.buffer, &labels.buffer, targets, &grad.buffer, &row_stats.buffer, &totals.buffer];
            return Ok(vec![self.kernels.loss.dispatch(self, reduced, &buffers, &params, [1, 1, 1])?]);
        }
        Ok(vec![
            self.loss(entry, logits, labels, targets, grad, row_stats, totals, params)?,
            self.loss_reduce(row_stats, totals, params)?,
        ])
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
        self.kernels.optim.dispatch_specialized(
            self,
            entry,
            &params.constants(),
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
