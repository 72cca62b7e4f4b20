//! Context time of compute passes from timestamp queries (where the adapter has them), for
//! `bench`: while a timer is running, every submitted pass writes a timestamp at its start and
//! end into the next pair of a query set, resolved in the same submit; `finish` reads them all
//! back at once, so timing adds no read-back inside the measured steps.

use super::GpuBuffer;

/// 4-byte elements per pass in the resolve buffer: one 256-byte resolve slot.
pub(crate) const SLOT_ELEMENTS: usize = (wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT / 4) as usize;

pub struct PassTimer {
    set: wgpu::QuerySet,
    pub(crate) resolve: GpuBuffer,
    capacity: u32,
    pub(crate) used: u32,
}

impl PassTimer {
    /// Room for `passes` passes; None where the device has no timestamp queries, or for more
    /// passes than one query set holds (wgpu's QUERY_SET_MAX_QUERIES, two per pass).
    pub(crate) fn new(device: &wgpu::Device, passes: u32) -> Option<PassTimer> {
        let fits = passes > 0 && 2 * passes as u64 <= wgpu::QUERY_SET_MAX_QUERIES as u64;
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) || !fits {
            return None;
        }
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * passes,
        });
        // Each pass's two u64 at its own 256-byte-aligned slot (QUERY_RESOLVE_BUFFER_ALIGNMENT).
        let len = SLOT_ELEMENTS * passes as usize;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pass timestamps (resolved)"),
            size: (4 * len) as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(PassTimer {
            set,
            resolve: GpuBuffer { buffer, len, offset: 0, ring: None, per_model: 0 },
            capacity: passes,
            used: 0,
        })
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
