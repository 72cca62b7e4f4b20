//! dropout.wgsl: torch's inverted dropout with its mask drawn from Philox4x32-10, mirroring
//! `reference::DropoutDraw` and `reference::dropout_apply` bit for bit (tests/dropout.rs).

use crate::device::{entries, groups_for, Dispatch, GpuBuffer};
use crate::error::Result;
use crate::reference::DropoutDraw;

use super::Gpu;

entries! {
    /// dropout.wgsl's entry points.
    pub enum DropEntry in "dropout.wgsl" {
        /// y (+)= mask ⊙ x / (1 − p): forward on x, backward on dy.
        Apply = "dropout_apply",
        /// The raw Philox words (known-answer test): counter (j + threshold, step, layer, flags).
        Words = "philox_words",
    }
}

/// dropout.wgsl's `DropoutParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    pub len: u32,
    pub step: u32,
    pub layer: u32,
    pub threshold: u32,
    pub key0: u32,
    pub key1: u32,
    pub scale: f32,
    pub flags: u32,
}

/// dropout.wgsl: add to the destination instead of overwriting it.
pub const DROPOUT_ACCUMULATE: u32 = 1;

impl DropoutParams {
    /// `draw` over `len` elements.
    pub fn new(draw: &DropoutDraw, len: usize, accumulate: bool) -> DropoutParams {
        DropoutParams {
            len: len as u32,
            step: draw.step,
            layer: draw.layer,
            threshold: draw.threshold,
            key0: draw.key[0],
            key1: draw.key[1],
            scale: draw.scale,
            flags: if accumulate { DROPOUT_ACCUMULATE } else { 0 },
        }
    }

    /// The identity (evaluation): every element kept, scaled by 1 (exact).
    pub fn identity(len: usize) -> DropoutParams {
        DropoutParams { len: len as u32, scale: 1.0, ..Default::default() }
    }

    /// The same launch drawing the mask of optimizer step `step` under `seed`.
    pub fn at(self, seed: u64, step: u64) -> DropoutParams {
        DropoutParams { step: step as u32, key0: seed as u32, key1: (seed >> 32) as u32, ..self }
    }

    /// One invocation per element.
    pub fn grid(&self) -> [u32; 3] {
        groups_for(self.len as usize, 256)
    }
}

/// Both entries read x (none for the raw words) and write y at [0, len).
fn extents(entry: DropEntry, p: &DropoutParams) -> Result<Vec<u64>> {
    let len = p.len as u64;
    Ok(vec![if entry == DropEntry::Apply { len } else { 0 }, len])
}

impl Gpu {
    /// `entry` over `params.len` elements: x (unused by `Words`) and y.
    pub fn dropout(
        &self,
        entry: DropEntry,
        x: Option<&GpuBuffer>,
        y: &GpuBuffer,
        params: DropoutParams,
    ) -> Result<Dispatch> {
        let x = x.map_or(self.kernels.none_read(), |b| b.bind());
        // The step (and so the mask) changes every step: parameters in per-step slots.
        self.kernels.dropout.dispatch_per_step(self, entry, &[], &[x, y.bind()], extents, &params, params.grid())
    }
}
