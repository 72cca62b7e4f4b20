//! Storage buffers with their element counts, and what binds them to a launch.

/// A storage buffer of `len` 4-byte elements (f32 or u32).
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

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
        let len = (self.len as u64).next_multiple_of(4).min(self.buffer.size() / 4);
        Binding { buffer: &self.buffer, len }
    }
}

/// A buffer bound to a launch with the number of 4-byte elements the launch may touch in it.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) len: u64,
}

impl<'a> Binding<'a> {
    /// A placeholder for a binding the launch does not use: no element may be touched.
    pub(crate) fn unused(buffer: &'a wgpu::Buffer) -> Binding<'a> {
        Binding { buffer, len: 0 }
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
