//! Optimizer updates over a flat parameter vector (optim.wgsl).

use crate::optim::Sgd;

/// One torch.optim.SGD step: g = grad + wd·p; buf = μ·buf + (1 − dampening)·g (buf = g on the
/// first step); g = nesterov ? g + μ·buf : buf; p −= lr·g. Each line in f32, as the kernel.
pub fn sgd_update(param: &mut [f32], grad: &[f32], velocity: &mut [f32], sgd: &Sgd, lr: f32, first_step: bool) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if sgd.weight_decay != 0.0 {
            g += sgd.weight_decay * param[i];
        }
        if sgd.momentum != 0.0 {
            let buf = if first_step { g } else { sgd.momentum * velocity[i] + (1.0 - sgd.dampening) * g };
            velocity[i] = buf;
            g = if sgd.nesterov { g + sgd.momentum * buf } else { buf };
        }
        param[i] -= lr * g;
    }
}
