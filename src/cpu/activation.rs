//! Activations, forward and backward (activation.wgsl, and the matmul epilogue).

use crate::nn::{Act, Activation};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// act(z), evaluated in f64.
pub fn activate(z: f32, act: Act) -> f32 {
    let x = z as f64;
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
    y as f32
}

/// act'(z), evaluated in f64.
pub fn activate_grad(z: f32, act: Act) -> f32 {
    activate_grad_f64(z as f64, act) as f32
}

fn activate_grad_f64(x: f64, act: Act) -> f64 {
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
pub fn activation_forward(x: &[f32], act: Act) -> Vec<f32> {
    x.iter().map(|&v| activate(v, act)).collect()
}

/// dx = dy ⊙ act'(x), element-wise, rounded once.
pub fn activation_backward(x: &[f32], dy: &[f32], act: Act) -> Vec<f32> {
    x.iter().zip(dy).map(|(&v, &g)| (g as f64 * activate_grad_f64(v as f64, act)) as f32).collect()
}
