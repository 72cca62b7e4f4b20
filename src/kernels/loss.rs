//! loss.wgsl: per-row losses with their gradients, and the reduction into the running totals;
//! each mirrors a function of `reference::loss`.

use crate::device::{entries, groups_for, Dispatch, Entry, GpuBuffer};
use crate::error::{Error, Result};
use crate::spec::Loss;

use super::Gpu;

entries! {
    /// loss.wgsl's entry points.
    pub enum LossEntry in "loss.wgsl" {
        /// Softmax cross-entropy per row: gradient and row statistics.
        CrossEntropy = "cross_entropy",
        /// Mean squared error per row.
        Mse = "mse",
        /// The row statistics summed into the batch loss and the running totals.
        Reduce = "loss_reduce",
        /// `CrossEntropy` and `Reduce` in one workgroup, for small batches (same bits).
        CrossEntropyReduced = "cross_entropy_reduced",
        /// `Mse` and `Reduce` in one workgroup.
        MseReduced = "mse_reduced",
    }
}

impl LossEntry {
    /// The per-row kernel of `loss`.
    pub fn per_row(loss: Loss) -> LossEntry {
        match loss {
            Loss::CrossEntropy => LossEntry::CrossEntropy,
            Loss::Mse => LossEntry::Mse,
        }
    }

    /// The single-workgroup kernel of `loss` (per-row and reduction in one).
    pub fn reduced(loss: Loss) -> LossEntry {
        match loss {
            Loss::CrossEntropy => LossEntry::CrossEntropyReduced,
            Loss::Mse => LossEntry::MseReduced,
        }
    }
}

/// loss.wgsl's `LossParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub cols: u32,
    /// MSE: 1 = compare with `targets`, 0 = with one-hot labels.
    pub use_targets: u32,
    /// Models of a batch laid out side by side (0 or 1: one), workgroup z of the grid; model z's
    /// slice of each binding lies its model stride after model z − 1's.
    pub models: u32,
    pub logits_model_stride: u32,
    pub labels_model_stride: u32,
    pub targets_model_stride: u32,
    pub grad_model_stride: u32,
    pub row_stats_model_stride: u32,
    pub totals_model_stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// The largest batch whose loss runs in one workgroup (loss.wgsl's `*_reduced` entry points).
pub const LOSS_ONE_GROUP_ROWS: usize = 64;

/// Indices into `loss.wgsl`'s `totals` buffer.
pub const TOTAL_STEP_LOSS: usize = 0;
pub const TOTAL_LOSS_SUM: usize = 1;
pub const TOTAL_CORRECT: usize = 2;
pub const TOTAL_COUNT: usize = 3;
pub const TOTAL_STEPS: usize = 4;
pub const TOTAL_FIRST_BAD: usize = 5;
pub const TOTAL_BAD_LOSS: usize = 6;
pub const TOTALS_LEN: usize = 7;

impl LossParams {
    /// A loss over `rows` rows of `cols` columns (MSE against `targets` when `use_targets`).
    pub fn new(rows: usize, cols: usize, use_targets: bool) -> LossParams {
        LossParams { rows: rows as u32, cols: cols as u32, use_targets: u32::from(use_targets), ..Default::default() }
    }

    /// The same loss for `models` models, each binding's slice (logits, labels, targets, grad,
    /// row statistics, totals) `strides` elements after the previous model's.
    pub fn for_models(self, models: usize, strides: [usize; 6]) -> LossParams {
        let [logits, labels, targets, grad, row_stats, totals] = strides.map(|s| s as u32);
        LossParams {
            models: models as u32,
            logits_model_stride: logits,
            labels_model_stride: labels,
            targets_model_stride: targets,
            grad_model_stride: grad,
            row_stats_model_stride: row_stats,
            totals_model_stride: totals,
            ..self
        }
    }

    /// Models the launch covers (`models`, where 0 means one).
    pub fn model_count(&self) -> u32 {
        self.models.max(1)
    }

    /// The launch's grid (z: the models).
    pub fn grid(&self, entry: LossEntry) -> [u32; 3] {
        let [x, y, _] = match entry {
            LossEntry::CrossEntropy | LossEntry::Mse => groups_for(self.rows as usize, 64),
            _ => [1, 1, 1],
        };
        [x, y, self.model_count()]
    }

    /// Loop iterations of one invocation: a row's loss loops over its columns four times, a
    /// reduction over its share of the rows.
    pub fn loop_iterations(&self, entry: LossEntry) -> usize {
        let row = 4 * self.cols as usize;
        match entry {
            LossEntry::CrossEntropy | LossEntry::Mse | LossEntry::Reduce => {
                row + (self.rows as usize).div_ceil(256) + 64
            }
            LossEntry::CrossEntropyReduced | LossEntry::MseReduced => row + 2 * LOSS_ONE_GROUP_ROWS,
        }
    }
}

/// Elements of logits, labels, targets, grad, row_stats and totals that `entry` may touch: one
/// model's, then for a batch the last model's, its model strides further on. A batch whose
/// models would write over one another's gradient, row statistics or totals is refused.
fn extents(entry: LossEntry, p: &LossParams) -> Result<Vec<u64>> {
    let rows = p.rows as u64;
    let matrix = rows * p.cols as u64;
    let targets = if p.use_targets != 0 { matrix } else { 0 };
    let totals = TOTALS_LEN as u64;
    let one = match entry {
        LossEntry::Reduce => [0, 0, 0, 0, 2 * rows, totals],
        _ => [matrix, rows, targets, matrix, 2 * rows, totals],
    };
    let strides = [
        p.logits_model_stride,
        p.labels_model_stride,
        p.targets_model_stride,
        p.grad_model_stride,
        p.row_stats_model_stride,
        p.totals_model_stride,
    ];
    let last = (p.model_count() - 1) as u64;
    if last > 0 && (3..6).any(|b| one[b] > 0 && (strides[b] as u64) < one[b]) {
        return Err(Error::LaunchParams {
            kernel: entry.name(),
            why: format!(
                "{} models whose outputs overlap: gradient, row statistics and totals move {}, {} and {} per model, \
                 one model writes {}, {} and {}",
                p.model_count(),
                strides[3],
                strides[4],
                strides[5],
                one[3],
                one[4],
                one[5]
            ),
        });
    }
    Ok((0..6).map(|b| if one[b] == 0 { 0 } else { one[b] + last * strides[b] as u64 }).collect())
}

impl Gpu {
    /// One loss.wgsl kernel: logits [rows, cols], labels (or MSE targets), the gradient, row
    /// statistics and running totals.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &self,
        entry: LossEntry,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        targets: Option<&GpuBuffer>,
        grad: &GpuBuffer,
        row_stats: &GpuBuffer,
        totals: &GpuBuffer,
        params: LossParams,
    ) -> Result<Dispatch> {
        let what = format!("{} over {} rows of {} columns", entry.name(), params.rows, params.cols);
        self.check_loops(&what, params.loop_iterations(entry))?;
        let targets = targets.map_or(self.kernels.none_read(), |b| b.bind());
        self.kernels.loss.dispatch(
            self,
            entry,
            &[],
            &[logits.bind(), labels.bind(), targets, grad.bind(), row_stats.bind(), totals.bind()],
            extents,
            &params,
            params.grid(entry),
        )
    }

    /// A loss step over batches of up to `max_rows` rows: the per-row kernel then `Reduce`, or,
    /// for at most `LOSS_ONE_GROUP_ROWS` rows, the single-workgroup form doing both in one
    /// dispatch (same bits). Training, Hessian products and `exec::ops` build their loss
    /// launches here.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_step(
        &self,
        loss: Loss,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        targets: Option<&GpuBuffer>,
        grad: &GpuBuffer,
        row_stats: &GpuBuffer,
        totals: &GpuBuffer,
        params: LossParams,
        max_rows: usize,
    ) -> Result<Vec<Dispatch>> {
        if max_rows <= LOSS_ONE_GROUP_ROWS {
            let reduced = LossEntry::reduced(loss);
            return Ok(vec![self.loss(reduced, logits, labels, targets, grad, row_stats, totals, params)?]);
        }
        Ok(vec![
            self.loss(LossEntry::per_row(loss), logits, labels, targets, grad, row_stats, totals, params)?,
            self.loss_reduce(row_stats, totals, params)?,
        ])
    }

    /// Sums the row statistics into the batch loss and the running totals.
    pub fn loss_reduce(&self, row_stats: &GpuBuffer, totals: &GpuBuffer, params: LossParams) -> Result<Dispatch> {
        let (unused_read, unused_write) = (self.kernels.none_read(), self.kernels.none_write());
        self.kernels.loss.dispatch(
            self,
            LossEntry::Reduce,
            &[],
            &[unused_read, unused_read, unused_read, unused_write, row_stats.bind(), totals.bind()],
            extents,
            &params,
            params.grid(LossEntry::Reduce),
        )
    }
}
