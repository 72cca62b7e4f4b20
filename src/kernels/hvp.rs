//! hvp.wgsl: the R-operator's own terms (Hessian-vector products). Each mirrors a function of
//! `reference::hvp`.

use crate::device::{entries, groups_for, Dispatch, Entry, GpuBuffer};
use crate::error::Result;

use super::Gpu;

entries! {
    /// hvp.wgsl's entry points.
    pub enum HvpEntry in "hvp.wgsl" {
        /// R{act'(z)·g}.
        ActivationRBackward = "activation_r_backward",
        /// R{∂L/∂z} of softmax cross-entropy.
        CrossEntropyR = "cross_entropy_r",
        /// R{∂L/∂z} of the mean squared error.
        MseR = "mse_r",
        /// R{x̂} statistics and R{y} of a training-mode batch norm.
        BatchnormRForward = "batchnorm_r_forward",
        /// The four R-sums per feature and the product's γ, β entries.
        BatchnormRBackwardReduce = "batchnorm_r_backward_reduce",
        /// R{dx} of a batch norm.
        BatchnormRBackwardInput = "batchnorm_r_backward_input",
    }
}

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
    pub fn grid(&self, entry: HvpEntry) -> [u32; 3] {
        use HvpEntry::*;
        match entry {
            CrossEntropyR => groups_for(self.rows as usize, 64),
            BatchnormRForward | BatchnormRBackwardReduce => groups_for(self.cols as usize, HVP_FEATURES),
            BatchnormRBackwardInput => groups_for(self.rows as usize * self.cols as usize, 256),
            ActivationRBackward | MseR => groups_for(self.len as usize, 256),
        }
    }

    /// Loop iterations of one invocation of `entry` (llvmpipe's budget, `Context::check_loops`).
    pub fn loop_iterations(&self, entry: HvpEntry) -> usize {
        match entry {
            HvpEntry::BatchnormRForward => 2 * (self.rows as usize).div_ceil(16),
            HvpEntry::BatchnormRBackwardReduce => (self.rows as usize).div_ceil(16),
            HvpEntry::CrossEntropyR => 3 * self.cols as usize,
            _ => 0,
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

/// Elements of x, rx, g, rg, θ, v, stats and out that `entry` may touch (hvp.wgsl's indexing:
/// [rows, cols] activations, γ and β at their offsets of θ and v, nine stats blocks of cols).
fn extents(entry: HvpEntry, p: &HvpParams) -> Result<Vec<u64>> {
    use HvpEntry::*;
    let (len, cols) = (p.len as u64, p.cols as u64);
    let matrix = p.rows as u64 * cols;
    let affine = if cols == 0 { 0 } else { p.gamma_offset.max(p.beta_offset) as u64 + cols };
    Ok(match entry {
        ActivationRBackward => vec![len, len, len, len, 0, 0, 0, len],
        CrossEntropyR => vec![matrix, matrix, 0, 0, 0, 0, 0, matrix],
        MseR => vec![0, len, 0, 0, 0, 0, 0, len],
        BatchnormRForward => vec![matrix, matrix, 0, 0, affine, affine, 5 * cols, matrix],
        BatchnormRBackwardReduce => vec![matrix, matrix, matrix, matrix, affine, affine, 9 * cols, affine],
        BatchnormRBackwardInput => vec![matrix, matrix, matrix, matrix, affine, affine, 9 * cols, matrix],
    })
}

impl Gpu {
    /// One of hvp.wgsl's kernels, with its grid from `params`.
    pub fn hvp_kernel<'a>(&'a self, entry: HvpEntry, b: &HvpBuffers<'a>, params: HvpParams) -> Result<Dispatch> {
        let what = format!("{} over {} rows of {}", entry.name(), params.rows, params.cols);
        self.check_loops(&what, params.loop_iterations(entry))?;
        let read = |o: Option<&'a GpuBuffer>| o.map_or(self.kernels.none_read(), |b| b.bind());
        let stats = b.stats.map_or(self.kernels.none_write(), |b| b.bind());
        self.kernels.hvp.dispatch(
            self,
            entry,
            &params.constants(),
            &[b.x.bind(), b.rx.bind(), read(b.g), read(b.rg), read(b.theta), read(b.v), stats, b.out.bind()],
            extents,
            &params,
            params.grid(entry),
        )
    }
}
