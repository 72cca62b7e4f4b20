//! The course's experiments on explicit functions: optimizers run through the same update code
//! as training (the GPU's fused kernels or the CPU reference) on a gradient the host computes,
//! the continuous-time view of momentum, ResNets as forward Euler, and the noise ball of SGD on
//! least squares.

pub mod batchnorm_shift;
pub mod continuous;
pub mod critical;
pub mod deep_linear;
pub mod descent;
pub mod mimic;
pub mod noise_ball;
pub mod resnet_depth;
pub mod resnet_ode;
pub mod surfaces;
pub mod width;
