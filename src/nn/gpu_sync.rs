//! The host's part of a synchronised batch norm (SyncBatchNorm) in a data-parallel GPU step: the
//! step is submitted in pieces, and between them the ranks' statistics and backward sums are
//! read back, combined through `StepSync`, and written where the next kernels read them. Without
//! GPU-direct collectives that round trip is the price of the global batch's statistics.

use super::launch::Launch;
use super::network::StepSync;
use super::plan::Buf;
use super::NormLayer;
use crate::cpu::{self, NormStats};
use crate::error::Result;
use crate::gpu::{Gpu, GpuBuffer};

/// One synchronised batch-norm layer's launches and buffers.
pub(crate) struct SyncedNorm {
    /// The layer in `Model::norms`.
    pub norm: usize,
    pub width: usize,
    pub gamma: usize,
    pub beta: usize,
    /// Its [shift, d, inv_std] statistics buffer.
    pub stats: Buf,
    /// Index in the network's forward launches of its ordinary training statistics, which a
    /// data-parallel step replaces by `share_stats`.
    pub train_stats: usize,
    /// `batchnorm_stats` with `BN_SYNC`: this rank's shift, d and biased variance.
    pub share_stats: Launch,
    /// Index in the backward launches of its `batchnorm_backward_reduce`.
    pub reduce: usize,
}

impl SyncedNorm {
    /// The global batch's statistics from this rank's share (read from `stats`), written back as
    /// [shift, d, inv_std] for `batchnorm_forward`, and the running statistics updated on the host
    /// as the CPU reference does (over `rows` × ranks rows) in `running` and its host copy.
    #[allow(clippy::too_many_arguments)]
    pub fn sync_stats(
        &self,
        gpu: &Gpu,
        layer: &NormLayer,
        stats: &GpuBuffer,
        running: &GpuBuffer,
        running_host: &mut [f32],
        factor: f64,
        rows: usize,
        sync: &mut dyn StepSync,
    ) -> Result<()> {
        let w = self.width;
        let share = gpu.read::<f32>(stats, 0, 3 * w)?;
        // shift + d holds the share's mean to f64 precision (two f32s, added exactly).
        let mut mean: Vec<f64> = (0..w).map(|j| share[j] as f64 + share[w + j] as f64).collect();
        let mut var: Vec<f64> = share[2 * w..].iter().map(|&v| v as f64).collect();
        sync.norm_stats(&mut mean, &mut var)?;
        let global = NormStats { mean, var, eps: layer.eps };
        let mut out = vec![0.0f32; 3 * w];
        for j in 0..w {
            let shift = global.mean[j] as f32;
            out[j] = shift;
            out[w + j] = (global.mean[j] - shift as f64) as f32;
            out[2 * w + j] = (1.0 / (global.var[j] + layer.eps).sqrt()) as f32;
        }
        gpu.write(stats, &out);
        let (lo, hi) = running_host.split_at_mut(layer.running_var);
        let (mean_part, var_part) = (&mut lo[layer.running_mean..layer.running_mean + w], &mut hi[..w]);
        cpu::batchnorm_update_running(mean_part, var_part, &global, rows * sync.ranks(), factor);
        gpu.write_at(running, layer.running_mean, mean_part);
        gpu.write_at(running, layer.running_var, var_part);
        Ok(())
    }

    /// The backward sums `batchnorm_backward_reduce` left in the dβ and dγ slots of `grads`,
    /// replaced by their mean over the ranks for `batchnorm_backward_input` (and the gradient).
    pub fn sync_sums(&self, gpu: &Gpu, grads: &GpuBuffer, sync: &mut dyn StepSync) -> Result<()> {
        let w = self.width;
        // One read of the span holding both slots (and the alignment padding between them).
        let lo = self.gamma.min(self.beta);
        let span = gpu.read::<f32>(grads, lo, self.gamma.max(self.beta) + w - lo)?;
        let slot = |at: usize| span[at - lo..at - lo + w].iter().map(|&v| v as f64);
        let mut sums: Vec<f64> = slot(self.beta).chain(slot(self.gamma)).collect();
        sync.norm_sums(&mut sums)?;
        let rounded: Vec<f32> = sums.iter().map(|&v| v as f32).collect();
        gpu.write_at(grads, self.beta, &rounded[..w]);
        gpu.write_at(grads, self.gamma, &rounded[w..]);
        Ok(())
    }
}
