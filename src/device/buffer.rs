//! Storage buffers with their element counts, and what binds them to a launch.

/// A storage buffer of `len` 4-byte elements (f32 or u32), or a view of `len` elements of one
/// from byte `offset` on (`GpuBuffer::view`: model k's slice of a batch of models).
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    /// Bytes from the buffer's start (0 but for a view; a multiple of `VIEW_ALIGN`).
    pub offset: u64,
    /// For a step ring (`Context::step_ring`): `len` elements per step slot, slot j at
    /// `j * stride` bytes, which a launch binds with a dynamic offset. None: one slot.
    pub ring: Option<Ring>,
    /// For a buffer holding a batch of models side by side (`side_by_side`): elements from one
    /// model's slice to the next's, the model stride its launches get. 0: one model's, or
    /// shared by every model of a batch (the training set).
    pub per_model: usize,
}

/// The slots of a step ring: each step of a many-steps submit reads its own slot, written before
/// the submit, so no copy between the steps' launches is needed (`submit_steps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Bytes between slots: a multiple of `VIEW_ALIGN`, the dynamic offset's alignment.
    pub stride: u64,
    pub slots: usize,
}

/// Step slots of a ring (`Context::step_ring`, a per-step launch's parameters): slot 0 for a
/// lone step, and one for each of the up to 32 steps of a many-steps submit (the training
/// loop's default steps per submit), which read their own batch and numbers without copies.
pub const STEP_SLOTS: usize = 33;

/// A step ring's largest size: a ring of large batches gets fewer slots (at least one).
pub const STEP_RING_BYTES: u64 = 16 << 20;

/// The alignment of a view's start: WebGPU's largest `minStorageBufferOffsetAlignment`, so a
/// view binds on every adapter.
pub const VIEW_ALIGN: u64 = 256;

/// Every buffer can also be bound as a uniform window (the uniform-window product, matmul_uniform.wgsl).
pub(crate) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Bytes allocated past a buffer's elements so that a 64 KiB uniform window starting anywhere
/// inside it stays inside the allocation.
/// Floats in one operand window of the uniform-window product (matmul_uniform.wgsl: 4096 vec4).
pub const UNIFORM_WINDOW: usize = 16384;
pub(crate) const WINDOW_SLACK: u64 = (UNIFORM_WINDOW * 4) as u64;

impl GpuBuffer {
    /// The buffer as a launch binds it: its element count, rounded up to the whole last quad
    /// every allocation holds, is what the bounds check holds every index against (not the
    /// allocation's window slack past it). Never more than the allocation, whatever `len` says.
    pub fn bind(&self) -> Binding<'_> {
        let room = match self.ring {
            Some(r) => r.stride,
            None => self.buffer.size() - self.offset,
        };
        let len = (self.len as u64).next_multiple_of(4).min(room / 4);
        // A ring binds one slot's range; the dynamic offset moves it from slot to slot.
        let size = (self.offset > 0 || self.ring.is_some()).then_some(len * 4);
        Binding { buffer: &self.buffer, offset: self.offset, size, len, ring: self.ring }
    }

    /// Elements `start..start + len` of this buffer as a buffer of their own (sharing its memory),
    /// which launches bind from its first element; `start` must fall on a `VIEW_ALIGN` boundary.
    pub fn view(&self, start: usize, len: usize) -> crate::error::Result<GpuBuffer> {
        let offset = self.offset + (start as u64) * 4;
        if !offset.is_multiple_of(VIEW_ALIGN) || start + len > self.len || len == 0 || self.ring.is_some() {
            return Err(crate::error::Error::Plan(format!(
                "a view of elements {start}..{} of a buffer of {} (starts must be multiples of {} elements)",
                start + len,
                self.len,
                VIEW_ALIGN / 4
            )));
        }
        Ok(GpuBuffer { buffer: self.buffer.clone(), len, offset, ring: None, per_model: 0 })
    }

    /// This buffer as `len / per_model` models' slices of `per_model` elements each.
    pub fn side_by_side(self, per_model: usize) -> GpuBuffer {
        GpuBuffer { per_model, ..self }
    }

    /// The bind-group resource: the whole buffer, or a view's range.
    pub(crate) fn resource<'a>(b: &Binding<'a>) -> wgpu::BindingResource<'a> {
        match b.size {
            None => b.buffer.as_entire_binding(),
            Some(size) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: b.buffer,
                offset: b.offset,
                size: std::num::NonZeroU64::new(size),
            }),
        }
    }
}

/// A buffer bound to a launch with the number of 4-byte elements the launch may touch in it.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    /// A view's start and size in bytes (0 and None: the whole buffer).
    pub(crate) offset: u64,
    pub(crate) size: Option<u64>,
    pub(crate) len: u64,
    /// A step ring's slots: the launch binds it with a dynamic offset (`Slot::ReadPerStep`).
    pub(crate) ring: Option<Ring>,
}

impl<'a> Binding<'a> {
    /// A placeholder for a binding the launch does not use: no element may be touched.
    pub(crate) fn unused(buffer: &'a wgpu::Buffer) -> Binding<'a> {
        Binding { buffer, offset: 0, size: None, len: 0, ring: None }
    }
}

/// A read-back under way (`Gpu::start_read`).
#[must_use = "a pending read holds its staging buffer until finished"]
pub struct PendingRead {
    #[allow(clippy::type_complexity)]
    pub(crate) mapping: Option<(
        wgpu::Buffer,
        u64,
        wgpu::SubmissionIndex,
        futures_intrusive::channel::shared::OneshotReceiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    )>,
}

/// `data`'s chunks of `chunk` bytes laid `stride` bytes apart (zeros between), the last unpadded:
/// one write fills several step slots.
pub(crate) fn gather_slots(data: &[u8], chunk: usize, stride: usize) -> Vec<u8> {
    if chunk == 0 || data.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len() / chunk * stride);
    for c in data.chunks(chunk) {
        out.resize(out.len().next_multiple_of(stride.max(1)), 0);
        out.extend_from_slice(c);
    }
    out
}
