//! The GPU path: device selection, buffers, compiled kernels and their dispatches.

pub mod autotune;
pub mod buffer;
pub mod context;
pub mod kernels;
pub mod ops;
pub mod optimizer;
pub mod shaders;
pub mod small_mlp;
pub mod timing;

pub use buffer::GpuBuffer;
pub use context::{describe_adapter, list_adapters, Gpu};
pub use kernels::Kernels;
