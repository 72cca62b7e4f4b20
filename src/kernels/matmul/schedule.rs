//! Which of the product's schedules runs a given shape: the variants, the uniform-window
//! conditions, and the per-shape-class choice the autotuner makes.

use super::MatmulParams;
use crate::error::{Error, Result};

/// Environment variable pinning one matmul schedule for every product.
pub const MATMUL_ENV: &str = "GRADFLOW_MATMUL";
const MATMUL_VALUES: &str = "one of tiled, direct, packed, uniform (or unset, to autotune)";

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

    /// `$GRADFLOW_MATMUL=tiled|direct|packed|uniform` if set; otherwise None (the autotuner
    /// decides). Any other value is refused: ignoring it would autotune a run the user meant to pin.
    pub fn from_env() -> Result<Option<MatmulVariant>> {
        crate::error::env_value(MATMUL_ENV, MATMUL_VALUES)?.map(|v| MatmulVariant::parse_env(&v)).transpose()
    }

    /// A `$GRADFLOW_MATMUL` value: one of the schedules' names.
    pub fn parse_env(value: &str) -> Result<MatmulVariant> {
        MatmulVariant::from_name(value).ok_or_else(|| Error::Env {
            var: MATMUL_ENV,
            value: value.into(),
            expected: MATMUL_VALUES,
        })
    }

    /// The schedule this product actually runs: `Packed` needs both operands to fit a texture
    /// (m, n and ceil(k/4) at most the device's 2-D texture size) and falls back to `Direct`,
    /// which has no size limit beyond the buffers', when they do not.
    /// `Uniform` needs each operand within one window (`UNIFORM_WINDOW` floats from the 256-byte
    /// boundary below its offset) and falls back to `Direct` too; whether the buffers leave room
    /// for the windows is checked where they are bound (`Gpu::matmul`).
    /// Loop iterations one invocation of this schedule runs for `p`, as llvmpipe counts them
    /// against its budget (`Context::loop_limit`). Measured on lavapipe with exact sums of constants:
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
pub(crate) fn window_start(offset: u32, limits: &wgpu::Limits) -> u32 {
    let align = (limits.min_uniform_buffer_offset_alignment / 4).max(1);
    offset - offset % align
}

/// Whether a rows × cols operand at `offset` with these strides lies inside its window.
pub(crate) fn window_fits(
    offset: u32,
    rows: u32,
    cols: u32,
    stride_r: u32,
    stride_c: u32,
    limits: &wgpu::Limits,
) -> bool {
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
