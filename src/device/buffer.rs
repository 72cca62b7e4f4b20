//! Storage buffers with their element counts, and what binds them to a launch.

/// A storage buffer of `len` 4-byte elements (f32 or u32), or a view of `len` elements of one
/// from byte `offset` on (`GpuBuffer::view`: model k's slice of a batch of models).
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    /// Bytes from the buffer's start (0 but for a view; a multiple of `VIEW_ALIGN`).
    pub offset: u64,
}

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
        let len = (self.len as u64).next_multiple_of(4).min((self.buffer.size() - self.offset) / 4);
        let size = (self.offset > 0).then_some(len * 4);
        Binding { buffer: &self.buffer, offset: self.offset, size, len }
    }

    /// Elements `start..start + len` of this buffer as a buffer of their own (sharing its memory),
    /// which launches bind from its first element; `start` must fall on a `VIEW_ALIGN` boundary.
    pub fn view(&self, start: usize, len: usize) -> crate::error::Result<GpuBuffer> {
        let offset = self.offset + (start as u64) * 4;
        if !offset.is_multiple_of(VIEW_ALIGN) || start + len > self.len || len == 0 {
            return Err(crate::error::Error::Plan(format!(
                "a view of elements {start}..{} of a buffer of {} (starts must be multiples of {} elements)",
                start + len,
                self.len,
                VIEW_ALIGN / 4
            )));
        }
        Ok(GpuBuffer { buffer: self.buffer.clone(), len, offset })
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
}

impl<'a> Binding<'a> {
    /// A placeholder for a binding the launch does not use: no element may be touched.
    pub(crate) fn unused(buffer: &'a wgpu::Buffer) -> Binding<'a> {
        Binding { buffer, offset: 0, size: None, len: 0 }
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
