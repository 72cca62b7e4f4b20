//! Activations, forward and backward (activation.wgsl, and the matmul epilogue).

use super::Real;
use crate::spec::{Act, Activation};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// act(z), evaluated in f64.
pub fn activate<T: Real>(z: T, act: Act) -> T {
    let x = z.to_f64();
    let y = match act.kind {
        Activation::Identity => x,
        Activation::Relu => x.max(0.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                act.slope as f64 * x
            }
        }
    };
    T::of(y)
}

/// act'(z), evaluated in f64.
pub fn activate_grad<T: Real>(z: T, act: Act) -> T {
    T::of(activate_grad_f64(z.to_f64(), act))
}

pub(crate) fn activate_grad_f64(x: f64, act: Act) -> f64 {
    match act.kind {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Sigmoid => sigmoid(x) * (1.0 - sigmoid(x)),
        Activation::Tanh => 1.0 - x.tanh() * x.tanh(),
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + x * pdf
        }
        Activation::LeakyRelu => {
            if x > 0.0 {
                1.0
            } else {
                act.slope as f64
            }
        }
    }
}

/// y = act(x), element-wise.
pub fn activation_forward<T: Real>(x: &[T], act: Act) -> Vec<T> {
    x.iter().map(|&v| activate(v, act)).collect()
}

/// dx = dy ⊙ act'(x), element-wise, rounded once.
pub fn activation_backward<T: Real>(x: &[T], dy: &[T], act: Act) -> Vec<T> {
    x.iter().zip(dy).map(|(&v, &g)| T::of(g.to_f64() * activate_grad_f64(v.to_f64(), act))).collect()
}
