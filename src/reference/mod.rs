//! The CPU reference: every GPU kernel again in plain Rust, written to be checked by eye.
//! Sums are accumulated in f64 and rounded once, so the reference is accurate to about one f32
//! rounding and the GPU's error bound can be stated against it. Every function is generic over
//! the float type, so the same code also runs in f64 (finite-difference checks, exact
//! trajectories).

pub mod activation;
pub mod batchnorm;
pub mod bounds;
pub mod dropout;
pub mod hvp;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod philox;

pub use activation::{activate, activate_grad, activation_backward, activation_forward};
pub use batchnorm::{
    batchnorm_backward, batchnorm_backward_input, batchnorm_backward_reduce, batchnorm_forward, batchnorm_stats,
    batchnorm_update_running, residual_add, NormStats,
};
pub use dropout::{dropout_apply, DropoutDraw};
pub use linear::{bias_grad, linear_backward_input, linear_backward_weight, linear_forward, linear_forward_models};
pub use loss::{argmax, cross_entropy, loss_of, mse, LossOutput};
pub use optim::{clip_coefficient, clip_coefficient_rel_error, optimizer_update, Real};
