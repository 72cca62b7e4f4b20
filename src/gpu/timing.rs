//! Device time of compute passes from timestamp queries (where the adapter has them), for
//! `bench`: while a timer is running, every submitted pass writes a timestamp at its start and
//! end into the next pair of a query set, resolved in the same submit; `finish` reads them all
//! back at once, so timing adds no read-back inside the measured steps.

use super::{Gpu, GpuBuffer};
use crate::error::{Error, Result};

/// 4-byte elements per pass in the resolve buffer: one 256-byte resolve slot.
const SLOT_ELEMENTS: usize = (wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT / 4) as usize;

pub struct PassTimer {
    set: wgpu::QuerySet,
    resolve: GpuBuffer,
    capacity: u32,
    used: u32,
}

impl PassTimer {
    /// Room for `passes` passes; None where the device has no timestamp queries, or for more
    /// passes than one query set holds (wgpu's QUERY_SET_MAX_QUERIES, two per pass).
    fn new(gpu: &Gpu, passes: u32) -> Option<PassTimer> {
        let fits = passes > 0 && 2 * passes as u64 <= wgpu::QUERY_SET_MAX_QUERIES as u64;
        if !gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) || !fits {
            return None;
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * passes,
        });
        // Each pass's two u64 at its own 256-byte-aligned slot (QUERY_RESOLVE_BUFFER_ALIGNMENT).
        let len = SLOT_ELEMENTS * passes as usize;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pass timestamps (resolved)"),
            size: (4 * len) as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(PassTimer { set, resolve: GpuBuffer { buffer, len }, capacity: passes, used: 0 })
    }

    /// The timestamp writes of the next pass (None once the query set is full).
    pub(crate) fn next(&mut self) -> Option<(wgpu::ComputePassTimestampWrites<'_>, u32)> {
        if self.used == self.capacity {
            return None;
        }
        let i = self.used;
        self.used += 1;
        let writes = wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        };
        Some((writes, i))
    }

    /// Copies pass `i`'s two timestamps into the resolve buffer (recorded after the pass).
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder, i: u32) {
        let offset = i as u64 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;
        encoder.resolve_query_set(&self.set, 2 * i..2 * i + 2, &self.resolve.buffer, offset);
    }
}

impl Gpu {
    /// Starts timing the next `passes` submitted passes; false where the device cannot, or
    /// `passes` is more than one query set holds (2,048).
    pub fn start_pass_timer(&self, passes: u32) -> bool {
        let timer = PassTimer::new(self, passes);
        let on = timer.is_some();
        *self.timer.lock().unwrap_or_else(|e| e.into_inner()) = timer;
        on
    }

    /// Stops the timer and returns the device seconds of each pass it timed.
    pub fn finish_pass_timer(&self) -> Result<Vec<f64>> {
        let timer = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(t) = timer else {
            return Err(Error::Readback("no pass timer was running".into()));
        };
        let stamps = self.read::<u64>(&t.resolve, 0, SLOT_ELEMENTS * t.used as usize)?;
        let period = self.queue.get_timestamp_period() as f64 * 1e-9;
        let per_slot = SLOT_ELEMENTS / 2;
        Ok(stamps.chunks_exact(per_slot).map(|p| p[1].saturating_sub(p[0]) as f64 * period).collect())
    }
}
