//! small_mlp.wgsl: many SGD steps of a small MLP in one invocation (`exec::small_mlp` drives
//! it). Its parameters, limits, entry point and launch builder. Its reference is the CPU
//! network replaying the same steps (`exec::cpu_network`), which tests/small_mlp.rs holds it to.

use crate::device::{entries, Dispatch, GpuBuffer};
use crate::error::{Error, Result};

use super::Gpu;

entries! {
    /// small_mlp.wgsl's entry point.
    pub enum SmallMlpEntry in "small_mlp.wgsl" {
        Sgd = "small_mlp_sgd",
    }
}

pub const MAX_LAYERS: usize = 8;
pub const MAX_WIDTH: usize = 16;
pub const MAX_BATCH: usize = 8;
pub const MAX_PARAMS: usize = 512;
pub const NO_BIAS: u32 = u32::MAX;
pub const LOSS_MSE: u32 = 0;
pub const LOSS_CROSS_ENTROPY: u32 = 1;
/// small_mlp.wgsl's `SmallMlpParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SmallMlpParams {
    pub layers: u32,
    pub rows: u32,
    pub batch: u32,
    pub steps: u32,
    pub first_step: u32,
    pub every: u32,
    pub loss: u32,
    pub param_len: u32,
    pub lr: f32,
    pub momentum: f32,
    pub one_minus_dampening: f32,
    pub first_momentum_step: u32,
    pub shape: [[u32; 4]; MAX_LAYERS],
    pub act: [[u32; 4]; MAX_LAYERS],
}

/// Elements of params, velocity, x, labels, schedule and costs the kernel may touch, after
/// checking what its workgroup arrays rely on: at most `MAX_LAYERS` layers of at most
/// `MAX_WIDTH` units, `MAX_PARAMS` parameters, `MAX_BATCH` rows per step, and every layer's
/// weights and bias inside the parameters. Row indices in the schedule are data: the kernel
/// clamps each below `rows`.
fn extents(entry: SmallMlpEntry, p: &SmallMlpParams) -> Result<Vec<u64>> {
    let refuse = |why: String| Err(Error::LaunchParams { kernel: crate::device::Entry::name(entry), why });
    if p.layers as usize > MAX_LAYERS || p.layers == 0 {
        return refuse(format!("{} layers (1 to {MAX_LAYERS})", p.layers));
    }
    if p.param_len as usize > MAX_PARAMS || p.batch as usize > MAX_BATCH || p.rows == 0 {
        return refuse(format!("{} parameters, {} rows per step, {} rows", p.param_len, p.batch, p.rows));
    }
    for (l, s) in p.shape.iter().take(p.layers as usize).enumerate() {
        let [inputs, outputs, weight, bias] = s.map(u64::from);
        let inside = weight + inputs * outputs <= p.param_len as u64
            && (s[3] == NO_BIAS || bias + outputs <= p.param_len as u64);
        if inputs as usize > MAX_WIDTH || outputs as usize > MAX_WIDTH || !inside {
            return refuse(format!("layer {l}'s shape {s:?} does not fit"));
        }
    }
    let steps = p.first_step as u64 + p.steps as u64;
    let costs = if p.every == 0 { 0 } else { steps / p.every as u64 };
    let rows = p.rows as u64;
    let params = p.param_len as u64;
    Ok(vec![params, params, rows * p.shape[0][0] as u64, rows, steps * p.batch as u64, costs])
}

impl Gpu {
    /// One dispatch of small_mlp.wgsl over `buffers` (params, velocity, x, labels, schedule, costs).
    pub fn small_mlp_kernel(&self, buffers: &[&GpuBuffer; 6], p: &SmallMlpParams) -> Result<Dispatch> {
        let bound: Vec<_> = buffers.iter().map(|b| b.bind()).collect();
        self.kernels.small_mlp.dispatch(self, SmallMlpEntry::Sgd, &[], &bound, extents, p, [1, 1, 1])
    }
}
