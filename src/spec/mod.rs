//! The spec layer: what a model is, independent of where it runs. Layer kinds, activations,
//! losses, the model description with its parameter layout, and the pure launch plan.

pub mod activation;
pub mod builder;
pub mod loss;
pub mod model;
pub mod plan;

pub use activation::{Act, Activation};
pub use builder::ModelBuilder;
pub use loss::Loss;
pub use model::{BnMomentum, Init, LayerSpec, Model, NormLayer, NormState, Op, ParamTensor, Stage, PARAM_ALIGN};
