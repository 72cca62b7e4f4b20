//! The executor layer: the GPU and CPU executors that run one model description the same way,
//! Hessian-vector products on both, data-parallel synchronisation, the one-shot ops the tests
//! and `check` call, the many-steps small-MLP trainer, and many models trained side by side
//! (`BatchedNetworks`).

pub mod batched;
pub mod cpu_network;
pub mod gpu_hessian;
pub mod gpu_network;
mod gpu_sync;
pub mod hessian;
pub mod hessian_summary;
mod launch;
pub mod network;
pub mod ops;
pub mod ops_hvp;
pub mod small_mlp;

pub use batched::BatchedNetworks;
pub use cpu_network::CpuNetwork;
pub use gpu_network::{GpuNetwork, StepKind, DEFAULT_STEPS_PER_SUBMIT};
pub use network::{BadStep, Network, StepSync, Totals};
