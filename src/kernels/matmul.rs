//! The matrix product with its fused epilogues (matmul.wgsl and its packed and uniform-window
//! schedules): parameters, flags, the schedule choice and the one launch builder.

use crate::device::dispatch::Step;
use crate::device::pipeline::{buffer, layout_at, module, pipeline, Bounds, Specialized, PACKED_FORMAT};
use crate::device::{entries, grid, groups_for, scoped, shader_checks, shaders, strided_extent};
use crate::device::{Dispatch, Entry, GpuBuffer, Slot};
use crate::error::{Error, Result};
use crate::spec::{Act, Activation};

use super::Gpu;

entries! {
    /// matmul.wgsl's entry points: the product in workgroup-memory tiles or register blocks.
    pub enum MatmulEntry in "matmul.wgsl" {
        Tiled = "matmul",
        Direct = "matmul_direct",
    }
}

entries! {
    /// matmul_packed.wgsl's entry points: packing both operands into textures, then the product.
    pub enum PackedEntry in "matmul_packed.wgsl" {
        Pack = "matmul_pack",
        Product = "matmul_packed",
    }
}

entries! {
    /// matmul_uniform.wgsl's entry point: the product read from uniform windows.
    pub enum UniformEntry in "matmul_uniform.wgsl" {
        Product = "matmul_uniform",
    }
}

/// Elements of A, B, bias, C and aux a product may touch (matmul.wgsl's `load_a`, `load_b`,
/// `store_c` and `store_row_sum`): A and B through their strides, bias with `FLAG_BIAS`, C at
/// c_offset (and the row sums at bias_offset of C), aux with any flag that uses it. Every
/// schedule indexes the same elements.
fn extents<E>(_: E, p: &MatmulParams) -> Result<Vec<u64>> {
    let (m, n) = (p.m as u64, p.n as u64);
    let empty = m == 0 || n == 0;
    let a = strided_extent(p.a_offset, &[(p.m, p.a_stride_m), (p.k, p.a_stride_k)]);
    let b = strided_extent(p.b_offset, &[(p.k, p.b_stride_k), (p.n, p.b_stride_n)]);
    let bias = if p.flags & FLAG_BIAS != 0 && !empty { p.bias_offset as u64 + n } else { 0 };
    let mut c = if empty { 0 } else { p.c_offset as u64 + m * n };
    if p.flags & FLAG_ROW_SUM != 0 && !empty {
        c = c.max(p.bias_offset as u64 + m);
    }
    let uses_aux = p.flags & (FLAG_STORE_PREACT | FLAG_ACT_GRAD | FLAG_ADD_SKIP) != 0;
    let aux = if uses_aux && !empty { m * n } else { 0 };
    Ok(vec![a, b, bias, c, aux])
}

/// (width, height of A's texture, height of B's) for a packed product, each rounded up to a
/// power of two: llvmpipe compiles a separate shader variant for every combination of
/// power-of-two and other texture sizes, about 12 s each with a cold shader cache, so every
/// product shares one variant instead of compiling its own.
pub fn packed_extent(p: &MatmulParams) -> (u32, u32, u32) {
    let pot = |v: u32| v.max(1).checked_next_power_of_two().unwrap_or(u32::MAX);
    (pot(p.k.div_ceil(4)), pot(p.m), pot(p.n))
}

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

pub use crate::device::buffer::UNIFORM_WINDOW;

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
    pub(crate) fn new(device: &wgpu::Device) -> Result<PackedFamily> {
        use Slot::*;
        let file = PackedEntry::FILE;
        let src = shaders::source(file).ok_or_else(|| Error::Model(format!("no shader {file}")))?;
        scoped(device, "compiling matmul_packed.wgsl", || {
            let module = module(device, file, src);
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
                pack: pipeline(device, &module, &pack_layout, PackedEntry::Pack.name(), &[]),
                product: Specialized::default(),
                module,
                pack_layout,
                product_layout,
            }
        })
    }
}

impl Dispatch {
    /// A matmul launch resized to `p` (its m or k follows the batch): every step's grid. Only
    /// shrinking is allowed, with offsets, strides and epilogue as built, so the schedule's own
    /// conditions (texture sizes, uniform windows) still hold; the bounds are checked again.
    pub fn update_matmul(&mut self, gpu: &Gpu, p: MatmulParams) -> Result<()> {
        let (p, main) = p.tiled();
        let built: MatmulParams = *bytemuck::try_from_bytes(&self.built)
            .map_err(|_| Error::Plan("update_matmul on a launch that is not a matrix product".into()))?;
        let same_layout = MatmulParams { m: built.m, n: built.n, k: built.k, ..p }.tiled().0;
        if p.m > built.m
            || p.n > built.n
            || p.k > built.k
            || bytemuck::bytes_of(&same_layout) != bytemuck::bytes_of(&built)
        {
            return Err(Error::LaunchParams {
                kernel: "matmul",
                why: format!(
                    "a product built as {}×{}×{} can only shrink, with its offsets, strides and epilogue unchanged \
                     (asked for {}×{}×{})",
                    built.m, built.k, built.n, p.m, p.k, p.n
                ),
            });
        }
        self.check(&p)?;
        let rebased = MatmulParams {
            a_offset: p.a_offset - self.window_base[0],
            b_offset: p.b_offset - self.window_base[1],
            ..p
        };
        let grids: Vec<[u32; 3]> = if self.steps.len() == 2 { vec![p.pack_grid(), main] } else { vec![main] };
        self.write_steps(gpu, &rebased, &grids);
        Ok(())
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

/// A dense layer's forward epilogue, z = x·Wᵀ (+ b) and y = act(z) (+ skip): the one place its
/// flags are chosen. Training, Hessian products, `exec::ops`, `check` and `bench` all build
/// their forward products through `MatmulParams::dense_forward` with one of these.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue {
    /// Where the bias lies in the bias binding (`FLAG_BIAS`).
    pub bias_at: Option<usize>,
    pub act: Act,
    /// Keep z in aux for the backward pass (`FLAG_STORE_PREACT`).
    pub keep_z: bool,
    /// Add aux after the activation: a residual sum (`FLAG_ADD_SKIP`).
    pub add_skip: bool,
    /// Add to C instead of overwriting it (`FLAG_ACCUMULATE`): a value with two producers.
    pub accumulate: bool,
}

impl Epilogue {
    /// Training's epilogue for a layer with this bias and activation: z is kept exactly when
    /// there is an activation to differentiate (the plan's rule), so a layer without one (every
    /// model's last) runs the bias-only epilogue.
    pub fn dense(bias_at: Option<usize>, act: Act) -> Epilogue {
        let keep_z = act.kind != Activation::Identity;
        Epilogue { bias_at, act, keep_z, add_skip: false, accumulate: false }
    }

    /// A product with no activation: the bias at most, perhaps accumulated (the R-operator's terms).
    pub fn linear(bias_at: Option<usize>, accumulate: bool) -> Epilogue {
        Epilogue { bias_at, act: Act::IDENTITY, keep_z: false, add_skip: false, accumulate }
    }

    /// The epilogue's flags (matmul.wgsl's `FLAG_*`).
    pub fn flags(&self) -> u32 {
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        flag(self.bias_at.is_some(), FLAG_BIAS)
            | flag(self.keep_z, FLAG_STORE_PREACT)
            | flag(self.add_skip, FLAG_ADD_SKIP)
            | flag(self.accumulate, FLAG_ACCUMULATE)
    }
}

/// The layer launches: each lays out the product over the batch and sets offsets and flags.
impl MatmulParams {
    /// y = epilogue(x·Wᵀ) with W at `weight_at` of its buffer.
    pub fn dense_forward(rows: usize, inputs: usize, outputs: usize, weight_at: usize, e: Epilogue) -> MatmulParams {
        MatmulParams {
            b_offset: weight_at as u32,
            bias_offset: e.bias_at.unwrap_or(0) as u32,
            flags: e.flags(),
            act: e.act.kind.code(),
            slope: e.act.slope,
            ..MatmulParams::linear_forward(rows, inputs, outputs)
        }
    }

    /// dX = dZ·W with W at `weight_at`, times act'(z_prev) read from aux when `act_grad` names
    /// the producer's activation, added to dX when `accumulate`.
    pub fn dense_backward_input(
        rows: usize,
        inputs: usize,
        outputs: usize,
        weight_at: usize,
        act_grad: Option<Act>,
        accumulate: bool,
    ) -> MatmulParams {
        let act = act_grad.unwrap_or(Act::IDENTITY);
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        MatmulParams {
            b_offset: weight_at as u32,
            flags: flag(act_grad.is_some(), FLAG_ACT_GRAD) | flag(accumulate, FLAG_ACCUMULATE),
            act: act.kind.code(),
            slope: act.slope,
            ..MatmulParams::linear_backward_input(rows, inputs, outputs)
        }
    }

    /// dW = dZᵀ·X written at `weight_at` of the gradient buffer and db = Σ_rows dZ at `bias_at`,
    /// in one launch, added to what is there when `accumulate`.
    pub fn dense_backward_params(
        rows: usize,
        inputs: usize,
        outputs: usize,
        weight_at: usize,
        bias_at: Option<usize>,
        accumulate: bool,
    ) -> MatmulParams {
        let p = MatmulParams::linear_backward_params(rows, inputs, outputs, bias_at);
        let flags = p.flags | if accumulate { FLAG_ACCUMULATE } else { 0 };
        MatmulParams { c_offset: weight_at as u32, flags, ..p }
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
        let bias_bound = bias.map_or(self.kernels.none_read(), |b| b.bind());
        let aux_bound = aux.map_or(self.kernels.none_write(), |b| b.bind());
        let bound = [a.bind(), b.bind(), bias_bound, c.bind(), aux_bound];
        let (bias, aux) = (bias_bound.buffer, aux_bound.buffer);
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
        let bounds = Bounds::new(MatmulEntry::Tiled, &bound, extents);
        bounds.check(&params)?;
        let entry = match variant {
            MatmulVariant::Packed => return self.matmul_packed(a, b, bias, c, aux, params, groups, bounds),
            MatmulVariant::Uniform => return self.matmul_uniform(a, b, bias, c, aux, params, groups, bounds),
            MatmulVariant::Tiled => MatmulEntry::Tiled,
            MatmulVariant::Direct => MatmulEntry::Direct,
        };
        self.kernels.matmul.dispatch(self, entry, &params.epilogue(), &bound, extents, &params, groups)
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
        bounds: Bounds<MatmulEntry, MatmulParams>,
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
            let pipeline = f.pipeline(&self.device, UniformEntry::Product, &constants);
            let mut d = Dispatch::new(vec![Step { pipeline, bind_group, groups }], uniform, bounds.erase(), &params);
            d.window_base = window_base;
            d
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
        bounds: Bounds<MatmulEntry, MatmulParams>,
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
            Dispatch::new(
                vec![
                    Step { pipeline: f.pack.clone(), bind_group: pack, groups: params.pack_grid() },
                    Step {
                        pipeline: f.product.get(
                            &self.device,
                            &f.module,
                            &f.product_layout,
                            PackedEntry::Product.name(),
                            &params.epilogue(),
                        ),
                        bind_group: product,
                        groups,
                    },
                ],
                uniform,
                bounds.erase(),
                &params,
            )
        })
    }
}
