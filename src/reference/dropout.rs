//! Dropout as torch's `nn.Dropout` in training mode: each element kept with probability 1 − p and
//! scaled by 1/(1 − p) (inverted dropout, so evaluation is the identity). The mask is drawn from
//! Philox4x32-10, element i of a layer at a step from counter (i / 4, step, layer, 0), word i % 4,
//! keyed by the run's seed; shaders/dropout.wgsl draws the identical mask. Nothing is stored
//! between steps: a resumed run at the same step draws the same mask.

use super::philox::philox4x32_10;
use super::Real;

/// Everything one layer's mask at one step depends on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutDraw {
    pub key: [u32; 2],
    pub step: u32,
    pub layer: u32,
    /// Keep iff the top 24 bits of the word, k, are ≥ this: u = k·2⁻²⁴ ≥ p exactly when
    /// k ≥ ⌈p·2²⁴⌉ (an integer compare, so both paths decide alike).
    pub threshold: u32,
    /// 1/(1 − p) in f32 (0 for p = 1, where nothing is kept).
    pub scale: f32,
}

/// The 24-bit uniform's resolution: u = (bits >> 8)·2⁻²⁴.
pub const UNIFORM_BITS: u32 = 24;

impl DropoutDraw {
    /// Layer `layer`'s draw at optimizer step `step` (0 for the first) of a run seeded `seed`,
    /// dropping with probability `p` in [0, 1].
    pub fn new(p: f32, seed: u64, step: u64, layer: usize) -> DropoutDraw {
        let p = p as f64;
        let threshold = (p * (1u64 << UNIFORM_BITS) as f64).ceil() as u32;
        let scale = if p < 1.0 { (1.0 / (1.0 - p)) as f32 } else { 0.0 };
        DropoutDraw {
            key: [seed as u32, (seed >> 32) as u32],
            step: step as u32,
            layer: layer as u32,
            threshold,
            scale,
        }
    }

    /// Whether element `i` is kept.
    pub fn keep(&self, i: usize) -> bool {
        let words = philox4x32_10([(i / 4) as u32, self.step, self.layer, 0], self.key);
        (words[i % 4] >> (32 - UNIFORM_BITS)) >= self.threshold
    }

    /// The mask over `len` elements.
    pub fn mask(&self, len: usize) -> Vec<bool> {
        (0..len).map(|i| self.keep(i)).collect()
    }
}

/// y = mask ⊙ x / (1 − p): kept elements scaled in one rounding (x·scale), dropped ones 0.
pub fn dropout_apply<T: Real>(x: &[T], mask: &[bool], scale: f32) -> Vec<T> {
    x.iter().zip(mask).map(|(&v, &k)| if k { T::of(v.to_f64() * scale as f64) } else { T::of(0.0) }).collect()
}
