//! batchnorm.wgsl: batch statistics, normalisation and its backward reductions
//! (torch.nn.BatchNorm1d); each mirrors a function of `reference::batchnorm`.

use crate::device::{entries, grid, groups_for, Dispatch, Entry, GpuBuffer};
use crate::error::{Error, Result};

use super::Gpu;

entries! {
    /// batchnorm.wgsl's entry points.
    pub enum BnEntry in "batchnorm.wgsl" {
        /// Per-feature statistics (and the running update in training).
        Stats = "batchnorm_stats",
        /// y = act(γ·x̂ + β).
        Forward = "batchnorm_forward",
        /// Σdu and Σdu·x̂ per feature: the γ and β gradients.
        BackwardReduce = "batchnorm_backward_reduce",
        /// dx from the reduced sums.
        BackwardInput = "batchnorm_backward_input",
    }
}

/// batchnorm.wgsl's `BnParams`.
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
    /// Models of a batch laid out side by side (0 or 1: one), workgroup z of the grid; model z's
    /// slice of each binding lies its model stride after model z − 1's.
    pub models: u32,
    pub x_model_stride: u32,
    pub dy_model_stride: u32,
    pub params_model_stride: u32,
    pub running_model_stride: u32,
    pub stats_model_stride: u32,
    pub out_model_stride: u32,
    pub grads_model_stride: u32,
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
        act: crate::spec::Act,
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
            ..Default::default()
        }
    }

    /// The same layer for `models` models, each binding's slice (x, dy, params, running, stats,
    /// out, grads) `strides` elements after the previous model's.
    pub fn for_models(self, models: usize, strides: [usize; 7]) -> BnParams {
        let [x, dy, params, running, stats, out, grads] = strides.map(|s| s as u32);
        BnParams {
            models: models as u32,
            x_model_stride: x,
            dy_model_stride: dy,
            params_model_stride: params,
            running_model_stride: running,
            stats_model_stride: stats,
            out_model_stride: out,
            grads_model_stride: grads,
            ..self
        }
    }

    /// Models the launch covers (`models`, where 0 means one).
    pub fn model_count(&self) -> u32 {
        self.models.max(1)
    }

    /// Training mode: normalise with the batch's statistics and blend them into the running
    /// ones, running ← keep·running + take·batch with keep = 1 − factor formed in f64 and
    /// rounded once (as the CPU reference does).
    pub fn training(self, factor: f64) -> BnParams {
        let (keep, take) = blend(factor);
        BnParams { flags: self.flags | BN_TRAIN, keep, take, ..self }
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

/// The running statistics' blend for a momentum factor: (keep, take), keep = 1 − factor rounded
/// once (as torch computes it in double), so running ← keep·running + take·batch.
pub fn blend(factor: f64) -> (f32, f32) {
    ((1.0 - factor) as f32, factor as f32)
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

impl BnParams {
    /// Reductions run one workgroup per 16 features; the element-wise kernels one workgroup per
    /// 64 features × 64 rows (batchnorm.wgsl's EW_* constants).
    pub fn grid(&self, entry: BnEntry) -> [u32; 3] {
        let [x, y, _] = match entry {
            BnEntry::Stats | BnEntry::BackwardReduce => groups_for(self.cols as usize, BN_FEATURES),
            BnEntry::Forward | BnEntry::BackwardInput => {
                let tiles = (self.cols as usize).div_ceil(BN_EW_COLS) * (self.rows as usize).div_ceil(BN_EW_ROWS);
                grid(tiles.min(u32::MAX as usize) as u32)
            }
        };
        [x, y, if x == 0 { 0 } else { self.model_count() }]
    }

    /// Loop iterations of one invocation of `entry`: a reduction's lane runs over every 16th row
    /// (the statistics twice); the element-wise kernels over 64 rows.
    pub fn loop_iterations(&self, entry: BnEntry) -> usize {
        let passes = match entry {
            BnEntry::Stats => 2,
            BnEntry::BackwardReduce => 1,
            _ => 0,
        };
        passes * (self.rows as usize).div_ceil(16) + BN_EW_ROWS
    }
}

/// Elements of x, dy, params, running, stats, out and grads that `entry` may touch: [rows, cols]
/// activations, γ and β at their offsets of params and grads, the running mean and variance at
/// theirs, three stats blocks of cols; for a batch, the last model's, its model strides further
/// on. A batch whose models would write inside one another's slices is refused.
fn extents(entry: BnEntry, p: &BnParams) -> Result<Vec<u64>> {
    let cols = p.cols as u64;
    let matrix = p.rows as u64 * cols;
    let at = |offset: u32| if cols == 0 { 0 } else { offset as u64 + cols };
    let affine = at(p.gamma_offset).max(at(p.beta_offset));
    let running = at(p.mean_offset).max(at(p.var_offset));
    let stats = 3 * cols;
    let one = match entry {
        BnEntry::Stats => [matrix, 0, 0, running, stats, 0, 0],
        BnEntry::Forward => [matrix, 0, affine, 0, stats, matrix, 0],
        BnEntry::BackwardReduce => [matrix, matrix, affine, 0, stats, 0, affine],
        BnEntry::BackwardInput => [matrix, matrix, affine, 0, stats, matrix, affine],
    };
    let strides = [
        p.x_model_stride,
        p.dy_model_stride,
        p.params_model_stride,
        p.running_model_stride,
        p.stats_model_stride,
        p.out_model_stride,
        p.grads_model_stride,
    ];
    // What the entry writes: running and stats, out, or grads.
    let writes: &[usize] = match entry {
        BnEntry::Stats => &[3, 4],
        BnEntry::Forward | BnEntry::BackwardInput => &[5],
        BnEntry::BackwardReduce => &[6],
    };
    let last = (p.model_count() - 1) as u64;
    if let Some(&b) = writes.iter().find(|&&b| last > 0 && one[b] > strides[b] as u64) {
        return Err(Error::LaunchParams {
            kernel: entry.name(),
            why: format!(
                "{} models whose slices of binding {b} overlap: {} apart, each reaching {}",
                p.model_count(),
                strides[b],
                one[b]
            ),
        });
    }
    Ok((0..7).map(|b| if one[b] == 0 { 0 } else { one[b] + last * strides[b] as u64 }).collect())
}

impl Gpu {
    /// One batch-norm kernel; `dy` only for the backward kernels, `out` not for the reductions.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm(
        &self,
        entry: BnEntry,
        x: &GpuBuffer,
        dy: Option<&GpuBuffer>,
        params: &GpuBuffer,
        running: &GpuBuffer,
        stats: &GpuBuffer,
        out: Option<&GpuBuffer>,
        grads: &GpuBuffer,
        p: BnParams,
    ) -> Result<Dispatch> {
        self.check_loops(&format!("{} over {} rows", entry.name(), p.rows), p.loop_iterations(entry))?;
        let dy = dy.map_or(self.kernels.none_read(), |b| b.bind());
        let out = out.map_or(self.kernels.none_write(), |b| b.bind());
        let bound = [x.bind(), dy, params.bind(), running.bind(), stats.bind(), out, grads.bind()];
        // The statistics' running-average blend changes over the first batches (momentum "none").
        if entry == BnEntry::Stats {
            return self.kernels.batchnorm.dispatch_per_step(
                self,
                entry,
                &p.constants(),
                &bound,
                extents,
                &p,
                p.grid(entry),
            );
        }
        self.kernels.batchnorm.dispatch(self, entry, &p.constants(), &bound, extents, &p, p.grid(entry))
    }
}
