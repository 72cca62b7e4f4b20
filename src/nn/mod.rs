//! Layers and models: what a config describes, how parameters are laid out, and the two
//! executors (GPU and CPU reference) that run one model description the same way.

pub mod activation;
pub mod builder;
pub mod cpu_network;
pub mod gpu_hessian;
pub mod gpu_network;
mod gpu_sync;
pub mod hessian;
mod launch;
pub mod loss;
pub mod model;
pub mod network;
pub mod plan;

pub use activation::{Act, Activation};
pub use builder::ModelBuilder;
pub use cpu_network::CpuNetwork;
pub use gpu_network::GpuNetwork;
pub use loss::Loss;
pub use model::{BnMomentum, Init, LayerSpec, Model, NormLayer, NormState, Op, ParamTensor, Stage, PARAM_ALIGN};
pub use network::{BadStep, Network, StepSync, Totals};
