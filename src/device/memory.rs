//! Allocating, uploading and reading back buffers. Every read-back is a future (`map_async`
//! awaited); the blocking forms wrap it for the native CLI.

use wgpu::util::DeviceExt;

use super::buffer::{
    gather_slots, GpuBuffer, PendingRead, Ring, STEP_RING_BYTES, STEP_SLOTS, STORAGE, VIEW_ALIGN, WINDOW_SLACK,
};
use super::Context;
use crate::error::{Error, Result};

impl Context {
    fn check_size(&self, what: &str, len: usize) -> Result<u64> {
        // Whole 16-byte quads: kernels that work four elements at a time (optim.wgsl) read the
        // last quad whole, so every allocation holds it (`GpuBuffer::bind`).
        let bytes = (len.max(1) as u64).saturating_mul(4).next_multiple_of(16);
        let limit = self.max_storage_bytes();
        if bytes > limit {
            return Err(Error::TooLargeForDevice { what: what.to_string(), bytes, limit });
        }
        Ok(bytes)
    }

    /// The allocation for `bytes` of elements: with the window slack where the device allows it
    /// (a buffer without it simply never gets the uniform-window product).
    fn allocation(&self, bytes: u64) -> u64 {
        let padded = bytes + WINDOW_SLACK;
        if padded <= self.max_storage_bytes() {
            padded
        } else {
            bytes
        }
    }

    /// A zero-filled storage buffer of `len` elements; an error if the device cannot hold it.
    pub fn storage(&self, what: &str, len: usize) -> Result<GpuBuffer> {
        let buffer = self.zeroed(what, self.allocation(self.check_size(what, len)?))?;
        Ok(GpuBuffer { buffer, len, offset: 0, ring: None, per_model: 0 })
    }

    /// A zero-filled storage buffer of `bytes` bytes (wgpu zeroes every new buffer).
    fn zeroed(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.scoped(what, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes,
                usage: STORAGE,
                mapped_at_creation: false,
            })
        })
    }

    /// A zero-filled step ring of `len` elements per slot: as many slots as `STEP_SLOTS` and
    /// `STEP_RING_BYTES` allow (at least one), each starting on a `VIEW_ALIGN` boundary.
    pub fn step_ring(&self, what: &str, len: usize) -> Result<GpuBuffer> {
        let slot = self.check_size(what, len)?.next_multiple_of(VIEW_ALIGN);
        let slots = (STEP_RING_BYTES / slot).clamp(1, STEP_SLOTS as u64);
        let bytes = slots * slot;
        if bytes > self.max_storage_bytes() {
            return Err(Error::TooLargeForDevice { what: what.to_string(), bytes, limit: self.max_storage_bytes() });
        }
        let buffer = self.zeroed(what, bytes)?;
        Ok(GpuBuffer { buffer, len, offset: 0, ring: Some(Ring { stride: slot, slots: slots as usize }), per_model: 0 })
    }

    /// Writes `data`, `per_slot` elements to a slot, into the slots of the step ring `dst` from
    /// slot `first` on, in one queued write (like `write`): what those steps of the next
    /// many-steps submit read.
    pub fn write_slots<T: bytemuck::Pod>(
        &self,
        dst: &GpuBuffer,
        first: usize,
        data: &[T],
        per_slot: usize,
    ) -> Result<()> {
        let ring = dst.ring.unwrap_or(Ring { stride: (dst.len * 4) as u64, slots: 1 });
        let bytes = gather_slots(bytemuck::cast_slice(data), per_slot * std::mem::size_of::<T>(), ring.stride as usize);
        let slots = data.len().checked_div(per_slot).unwrap_or(0);
        if per_slot * std::mem::size_of::<T>() > dst.len * 4 || first + slots > ring.slots {
            return Err(Error::Plan(format!(
                "a write of {slots} slots of {per_slot} elements from slot {first} to a ring of {} slots of {} elements",
                ring.slots, dst.len
            )));
        }
        if !bytes.is_empty() {
            self.queue.write_buffer(&dst.buffer, dst.offset + first as u64 * ring.stride, &bytes);
        }
        Ok(())
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, what: &str, data: &[T]) -> Result<GpuBuffer> {
        assert_eq!(std::mem::size_of::<T>(), 4, "GPU buffers hold 4-byte elements");
        let size = self.allocation(self.check_size(what, data.len())?);
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let mut contents = vec![0u8; size as usize];
        contents[..bytes.len()].copy_from_slice(bytes);
        let buffer = self.scoped(what, || {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: &contents,
                usage: STORAGE,
            })
        })?;
        Ok(GpuBuffer { buffer, len: data.len(), offset: 0, ring: None, per_model: 0 })
    }

    /// A uniform buffer holding one parameter struct; rewritten with `queue.write_buffer` when it
    /// changes. Also bindable as read-only storage (small_net.wgsl reads its parameters so).
    pub fn uniform<T: bytemuck::Pod>(&self, what: &str, value: &T) -> wgpu::Buffer {
        self.uniform_slice(what, std::slice::from_ref(value))
    }

    /// `old` when it holds at least `len` elements, else a new storage buffer of `len` rounded
    /// up to a power of two (never past the device's largest binding, never below `len`): a
    /// staging buffer kept between submits that grows to what they need.
    pub fn reuse_or_grow(&self, old: Option<GpuBuffer>, what: &str, len: usize) -> Result<GpuBuffer> {
        match old {
            Some(b) if b.len >= len => Ok(b),
            _ => {
                let limit = (self.max_storage_bytes() / 4) as usize;
                self.storage(what, len.next_power_of_two().min(limit).max(len))
            }
        }
    }

    /// A launch's parameter buffer of `slots` step slots `stride` bytes apart, each bound as
    /// `binding` bytes from its start, with `first` at slot 0 (the rest zeros).
    pub(crate) fn parameter_ring(
        &self,
        what: &str,
        first: &[u8],
        stride: u64,
        slots: u64,
        binding: u64,
    ) -> wgpu::Buffer {
        let size = ((slots - 1) * stride + binding).max(first.len() as u64);
        let mut contents = vec![0u8; size as usize];
        contents[..first.len()].copy_from_slice(first);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: &contents,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A parameter buffer holding `values` in order (one struct per model of a batched launch).
    pub fn uniform_slice<T: bytemuck::Pod>(&self, what: &str, values: &[T]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: bytemuck::cast_slice(values),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Overwrites the start of `dst` with `data` (queued: lands before the next submit runs).
    pub fn write<T: bytemuck::Pod>(&self, dst: &GpuBuffer, data: &[T]) {
        if !data.is_empty() {
            self.queue.write_buffer(&dst.buffer, dst.offset, bytemuck::cast_slice(data));
        }
    }

    /// Overwrites elements `offset..` of `dst` with `data` (queued like `write`); out-of-range
    /// writes are dropped (the callers write fixed slots of buffers they sized).
    pub fn write_at<T: bytemuck::Pod>(&self, dst: &GpuBuffer, offset: usize, data: &[T]) {
        if !data.is_empty() && offset + data.len() <= dst.len {
            self.queue.write_buffer(&dst.buffer, dst.offset + (offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }

    /// Copies `len` elements from `offset` of `src` back to the host: copy into a staging buffer,
    /// `map_async`, wait on a futures-intrusive channel while polling the device.
    pub fn read<T: bytemuck::Pod>(&self, src: &GpuBuffer, offset: usize, len: usize) -> Result<Vec<T>> {
        self.start_read(src, offset, len)?.finish(self)
    }

    /// `read` as a future: the form a browser build awaits.
    pub async fn read_async<T: bytemuck::Pod>(&self, src: &GpuBuffer, offset: usize, len: usize) -> Result<Vec<T>> {
        self.start_read(src, offset, len)?.values(self).await
    }

    /// The first half of `read`: submits the copy of elements `offset..offset + len` of `src`
    /// (after everything submitted so far) and asks for the staging buffer's mapping, without
    /// waiting. Work submitted after it runs while the host waits on `PendingRead::finish`,
    /// which waits for this copy alone.
    pub fn start_read(&self, src: &GpuBuffer, offset: usize, len: usize) -> Result<PendingRead> {
        if len == 0 {
            return Ok(PendingRead { mapping: None });
        }
        if offset + len > src.len {
            return Err(Error::Readback(format!(
                "asked for elements {offset}..{} of a buffer of {}",
                offset + len,
                src.len
            )));
        }
        let staging = self.staging(len)?;
        self.start_read_via(src, offset, len, &staging)
    }

    /// A host-readable buffer for read-backs of up to `len` elements, to be kept by a caller that
    /// reads every step (a data-parallel step's gradient buckets) rather than made per read.
    pub fn staging(&self, len: usize) -> Result<wgpu::Buffer> {
        self.scoped("read-back staging", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("staging"),
                size: (len.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// `start_read` through `staging` (from `Gpu::staging`, at least `len` elements, not mapped).
    pub fn start_read_via(
        &self,
        src: &GpuBuffer,
        offset: usize,
        len: usize,
        staging: &wgpu::Buffer,
    ) -> Result<PendingRead> {
        if len == 0 {
            return Ok(PendingRead { mapping: None });
        }
        let bytes = (len * 4) as u64;
        if offset + len > src.len || bytes > staging.size() {
            return Err(Error::Readback(format!(
                "asked for elements {offset}..{} of a buffer of {} through {} staged",
                offset + len,
                src.len,
                staging.size() / 4
            )));
        }
        let index = self.scoped("read-back", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&src.buffer, src.offset + (offset * 4) as u64, staging, 0, bytes);
            self.queue.submit([encoder.finish()])
        })?;
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |result| {
            sender.send(result).ok();
        });
        Ok(PendingRead { mapping: Some((staging.clone(), bytes, index, receiver)) })
    }

    /// The whole buffer, as f32.
    pub fn read_all(&self, src: &GpuBuffer) -> Result<Vec<f32>> {
        self.read(src, 0, src.len)
    }

    /// `read_all` as a future: the form a browser build awaits.
    pub async fn read_all_async(&self, src: &GpuBuffer) -> Result<Vec<f32>> {
        self.read_async(src, 0, src.len).await
    }
}

impl PendingRead {
    /// Waits for the copy's submission (not for work submitted after it) and returns the values.
    pub fn finish<T: bytemuck::Pod>(self, gpu: &Context) -> Result<Vec<T>> {
        super::context::wait("a read-back", self.values(gpu))
    }

    /// The values, once the copy's mapping has completed: natively the device is polled for the
    /// copy's submission first; in a browser the event loop completes the mapping.
    pub async fn values<T: bytemuck::Pod>(self, gpu: &Context) -> Result<Vec<T>> {
        let Some((staging, bytes, index, receiver)) = self.mapping else {
            return Ok(Vec::new());
        };
        #[cfg(not(target_arch = "wasm32"))]
        gpu.device
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
            .map_err(|e| Error::Readback(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        let _ = (gpu, index);
        match receiver.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("map callback never ran".into())),
        }
        let slice = staging.slice(..bytes);
        let data = {
            let view = slice.get_mapped_range().map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        Ok(data)
    }
}
