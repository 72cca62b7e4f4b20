//! The host's part of a data-parallel GPU step. The gradient is cut into buckets that go to the
//! all-reduce as soon as the backward pass has finished them, while the device runs the rest of
//! it. A synchronised batch norm (SyncBatchNorm) splits the step too: its statistics and backward
//! sums are read back, combined through `StepSync`, and written where the next kernels read
//! them. Without GPU-direct collectives those round trips are the price of data parallelism.

use std::ops::Range;

use super::launch::Launch;
use super::network::StepSync;
use crate::device::GpuBuffer;
use crate::error::Result;
use crate::kernels::Gpu;
use crate::reference as cpu;
use crate::reference::NormStats;
use crate::spec::plan::Buf;
use crate::spec::{Model, NormLayer};

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
    /// Index in the backward launches of its `batchnorm_backward_reduce` (set once they are built).
    pub reduce: Option<usize>,
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
        let (mean_part, var_part) =
            super::cpu_network::split_two(running_host, layer.running_mean, layer.running_var, w);
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

/// DDP's default `bucket_cap_mb`: the gradient goes to the all-reduce in buckets of about this
/// size, so a model under it makes one call a step.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// A piece of the flat gradient that is final after backward launch `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GradBucket {
    pub after: usize,
    pub range: Range<usize>,
}

/// For each backward launch, where the gradient's finished tail starts once it has run: the
/// backward pass writes the last layers' gradients first and the layout puts them last, so the
/// finished part grows from the end. `writes[i]` are the offsets of the tensors launch i writes.
pub(crate) fn finished_tails(model: &Model, writes: &[Vec<usize>]) -> Vec<usize> {
    let mut finished = vec![false; model.params.len()];
    let mut tails = Vec::with_capacity(writes.len());
    for offsets in writes {
        for &o in offsets {
            if let Some(t) = model.params.iter().position(|t| t.offset == o) {
                finished[t] = true;
            }
        }
        let unfinished = finished.iter().rposition(|&f| !f);
        tails.push(match unfinished {
            None => 0,
            Some(t) => model.params.get(t + 1).map_or(model.param_len, |next| next.offset),
        });
    }
    tails
}

/// The buckets for a cap of `cap` elements: a cut after the first launch that leaves at least
/// `cap` finished elements past the previous cut, and the rest after the last launch.
pub(crate) fn buckets(tails: &[usize], param_len: usize, cap: usize) -> Vec<GradBucket> {
    let mut end = param_len;
    let mut out = Vec::new();
    for (after, &tail) in tails.iter().enumerate() {
        if tail < end && end - tail >= cap.max(1) {
            out.push(GradBucket { after, range: tail..end });
            end = tail;
        }
    }
    // Always at least one bucket, even an empty one: the stop request rides in the first.
    if end > 0 || out.is_empty() {
        out.push(GradBucket { after: tails.len().saturating_sub(1), range: 0..end });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LayerSpec;

    /// 5 → 7 → BN → 3 → 2: (weight, bias) tensors of three Linears and a batch norm's (γ, β).
    fn model() -> Model {
        let bn = LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false };
        let layers = vec![
            LayerSpec::Linear { out: 7, bias: true },
            bn,
            LayerSpec::Linear { out: 3, bias: true },
            LayerSpec::Relu,
            LayerSpec::Linear { out: 2, bias: false },
        ];
        Model::new(5, layers).unwrap()
    }

    /// The backward pass's writes for `model()`, launch by launch: loss, layer 4's dW, its dX,
    /// layer 2's dW (+db), its dX, the batch norm's reduce (γ, β), its dx, layer 0's dW (+db).
    fn writes(m: &Model) -> Vec<Vec<usize>> {
        let o = |i: usize| m.params[i].offset;
        vec![vec![], vec![o(6)], vec![], vec![o(4), o(5)], vec![], vec![o(2), o(3)], vec![], vec![o(0), o(1)]]
    }

    #[test]
    fn the_finished_tail_grows_from_the_end_as_the_backward_pass_runs() {
        let m = model();
        let names: Vec<&str> = m.params.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "4.weight"]);
        let o = |i: usize| m.params[i].offset;
        let tails = finished_tails(&m, &writes(&m));
        assert_eq!(tails, [m.param_len, o(6), o(6), o(4), o(4), o(2), o(2), 0]);
    }

    #[test]
    fn a_tensor_finished_out_of_order_waits_for_the_ones_after_it() {
        let m = model();
        let o = |i: usize| m.params[i].offset;
        // Layer 2 before layer 4: nothing is final until layer 4's weight is.
        let tails = finished_tails(&m, &[vec![o(4), o(5)], vec![o(6)], vec![o(0), o(1), o(2), o(3)]]);
        assert_eq!(tails, [m.param_len, o(4), 0]);
    }

    #[test]
    fn buckets_partition_the_gradient_from_the_end() {
        let m = model();
        let o = |i: usize| m.params[i].offset;
        let tails = finished_tails(&m, &writes(&m));
        let n = m.param_len;
        // A cap above the gradient: one bucket, after the last launch.
        assert_eq!(buckets(&tails, n, n + 1), [GradBucket { after: 7, range: 0..n }]);
        // A cap of one element: a bucket wherever the tail moved.
        let each = buckets(&tails, n, 1);
        let want = [(1, o(6)..n), (3, o(4)..o(6)), (5, o(2)..o(4)), (7, 0..o(2))];
        assert_eq!(each, want.map(|(after, range)| GradBucket { after, range }));
        // In between: cuts once at least `cap` elements are final past the last cut.
        let cap = n - o(4);
        assert_eq!(
            buckets(&tails, n, cap),
            [GradBucket { after: 3, range: o(4)..n }, GradBucket { after: 7, range: 0..o(4) }]
        );
    }
}
