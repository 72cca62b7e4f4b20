//! activation.wgsl: activations forward and backward, and the residual sum; each mirrors a
//! function of `reference` (`activation_forward`, `activation_backward`, `residual_add`), and
//! tests/kernels_gpu_vs_cpu.rs holds one against the other.

use crate::device::{entries, groups_for, Dispatch, GpuBuffer};
use crate::error::Result;

use super::Gpu;

entries! {
    /// activation.wgsl's entry points.
    pub enum ActEntry in "activation.wgsl" {
        /// y = act(x).
        Forward = "activation_forward",
        /// y = dy ⊙ act'(x) (added to y with `ACT_ACCUMULATE`).
        Backward = "activation_backward",
        /// y = x + skip: the end of a residual block.
        ResidualAdd = "residual_add",
    }
}

/// activation.wgsl's `ActParams`.
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

    /// The launch's grid: one invocation per element.
    pub fn grid(&self) -> [u32; 3] {
        groups_for(self.len as usize, 256)
    }
}

/// activation.wgsl: add to the destination instead of overwriting it.
pub const ACT_ACCUMULATE: u32 = 1;

/// Every entry reads x and (backward, residual) the second input, and writes y, at [0, len).
fn extents(entry: ActEntry, p: &ActParams) -> Result<Vec<u64>> {
    let len = p.len as u64;
    let second = if entry == ActEntry::Forward { 0 } else { len };
    Ok(vec![len, second, len])
}

impl Gpu {
    /// `entry` over `params.len` elements: x, the second input (dy, or the skip value for
    /// `ResidualAdd`; unused forward) and y.
    pub fn activation(
        &self,
        entry: ActEntry,
        x: &GpuBuffer,
        second: Option<&GpuBuffer>,
        y: &GpuBuffer,
        params: ActParams,
    ) -> Result<Dispatch> {
        let second = second.map_or(self.kernels.none_read(), |b| b.bind());
        let constants = if entry == ActEntry::ResidualAdd { vec![] } else { params.constants().to_vec() };
        self.kernels.activation.dispatch(
            self,
            entry,
            &constants,
            &[x.bind(), second, y.bind()],
            extents,
            &params,
            params.grid(),
        )
    }

    /// y = x + skip (the end of a residual block).
    pub fn residual_add(&self, x: &GpuBuffer, skip: &GpuBuffer, y: &GpuBuffer, params: ActParams) -> Result<Dispatch> {
        self.activation(ActEntry::ResidualAdd, x, Some(skip), y, params)
    }
}
