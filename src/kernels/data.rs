//! data.wgsl: gathering a batch from the resident data set, and the copy yardstick. The CPU
//! counterpart is plain indexing (`data::Dataset::gather`); tests/kernels_gpu_vs_cpu.rs holds
//! the two equal, bit for bit.

use crate::device::{entries, groups_for, Dispatch, GpuBuffer};
use crate::error::{Error, Result};

use super::Gpu;

entries! {
    /// data.wgsl's entry points.
    pub enum DataEntry in "data.wgsl" {
        /// dst[r, :] = src[indices[r], :], labels likewise.
        GatherBatch = "gather_batch",
        /// dst[i] = src[i]: the bandwidth yardstick.
        CopyF32 = "copy_f32",
    }
}

/// data.wgsl's `GatherParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    /// Rows gathered (the batch), or elements copied.
    pub rows: u32,
    pub cols: u32,
    /// Rows of the resident set: the kernel clamps every index below it.
    pub src_rows: u32,
    pub _pad: u32,
}

impl GatherParams {
    /// Gathering `rows` rows of `cols` features from a resident set of `src_rows` rows.
    pub fn new(rows: usize, cols: usize, src_rows: usize) -> GatherParams {
        GatherParams { rows: rows as u32, cols: cols as u32, src_rows: src_rows as u32, _pad: 0 }
    }

    pub fn grid(&self) -> [u32; 3] {
        groups_for(self.rows as usize * self.cols as usize, 256)
    }
}

/// Elements of src_x, src_labels, indices, dst_x and dst_labels that `entry` may touch. Indices
/// are data, not parameters: the kernel clamps each below `src_rows`.
fn extents(entry: DataEntry, p: &GatherParams) -> Result<Vec<u64>> {
    let (rows, cols) = (p.rows as u64, p.cols as u64);
    Ok(match entry {
        DataEntry::GatherBatch => {
            if p.src_rows == 0 && rows * cols > 0 {
                return Err(Error::LaunchParams {
                    kernel: crate::device::Entry::name(entry),
                    why: "gathering from no rows".into(),
                });
            }
            let src = p.src_rows as u64;
            vec![src * cols, src, rows, rows * cols, rows]
        }
        DataEntry::CopyF32 => vec![rows, 0, 0, rows, 0],
    })
}

impl Gpu {
    /// Gathers `params.rows` rows named by `indices` from the resident data set.
    pub fn gather_batch(
        &self,
        src_x: &GpuBuffer,
        src_labels: &GpuBuffer,
        indices: &GpuBuffer,
        dst_x: &GpuBuffer,
        dst_labels: &GpuBuffer,
        params: GatherParams,
    ) -> Result<Dispatch> {
        self.kernels.data.dispatch(
            self,
            DataEntry::GatherBatch,
            &[],
            &[src_x.bind(), src_labels.bind(), indices.bind(), dst_x.bind(), dst_labels.bind()],
            extents,
            &params,
            params.grid(),
        )
    }

    /// dst[i] = src[i] for i < len: the bandwidth yardstick.
    pub fn copy_f32(&self, src: &GpuBuffer, dst: &GpuBuffer, len: usize) -> Result<Dispatch> {
        let params = GatherParams::new(len, 1, 0);
        let (unused_read, unused_write) = (self.kernels.none_read(), self.kernels.none_write());
        self.kernels.data.dispatch(
            self,
            DataEntry::CopyF32,
            &[],
            &[src.bind(), unused_read, unused_read, dst.bind(), unused_write],
            extents,
            &params,
            groups_for(len, 256),
        )
    }
}
