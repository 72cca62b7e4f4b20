//! Optimizer updates, one element at a time, exactly as optim.wgsl: the same lines in the same
//! order. Generic over the float type: in f32 it is the reference the GPU is held against; in
//! f64 it gives the exact trajectory that error bounds are measured along. Every 1 − h of a
//! hyper-parameter is formed in f64 and rounded once (1 − 0.999 in f32 would carry 1000× the
//! rounding error of 0.999), as PyTorch does with its Python floats.

use crate::optim::{MomentumForm, Optimizer, OptimizerStep, CLIP_EPS};

/// The arithmetic the updates need, for f32 and f64.
pub trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    fn of(v: f64) -> Self;
    fn sqrt(self) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn of(v: f64) -> f32 {
        v as f32
    }
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn of(v: f64) -> f64 {
        v
    }
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
}

fn max<T: Real>(a: T, b: T) -> T {
    if a > b {
        a
    } else {
        b
    }
}

/// torch.nn.utils.clip_grad_norm_'s coefficient: min(max_norm / (‖g‖ + 1e-6), 1), with the
/// norm summed in f64 here (the GPU sums in f32 in a fixed order).
pub fn clip_coefficient(grads: &[f32], max_norm: Option<f32>) -> f32 {
    match max_norm {
        None => 1.0,
        Some(max_norm) => {
            let norm = grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32;
            (max_norm / (norm + CLIP_EPS)).min(1.0)
        }
    }
}

/// Relative error of `clip_coefficient` over `len` gradients in f32: the f64 norm (a sequential
/// sum of squares within γ_{len+1} in f64, and its root) rounded once to f32, one f32 addition
/// and one correctly rounded division: (1 + u) / ((1 − r)(1 − u)) − 1, r = (1 + u)(1 + γ64_{len+2}) − 1.
pub fn clip_coefficient_rel_error(len: usize) -> f64 {
    let (u, u64) = (f32::EPSILON as f64 / 2.0, f64::EPSILON / 2.0);
    let k = (len + 2) as f64;
    let r = (1.0 + u) * (1.0 + k * u64 / (1.0 - k * u64)) - 1.0;
    (1.0 + u) / ((1.0 - r) * (1.0 - u)) - 1.0
}

/// One optimizer step over the flat `params` with gradients `grads` and `state` (slot-major:
/// `state[s·len + i]`), in the float type `T` (hyper-parameters are rounded to `T` as given).
pub fn optimizer_update<T: Real>(params: &mut [T], grads: &[T], state: &mut [T], step: &OptimizerStep, clip_coef: T) {
    let len = params.len();
    let opt = step.optimizer.normalized();
    let t = step.step as f64;
    // Each group's (lr × schedule factor, weight decay), rounded once to T.
    let table: Vec<(T, T)> =
        step.groups.groups.iter().map(|&(lr, wd)| (T::of(lr * step.lr_factor), T::of(wd))).collect();
    for i in 0..len {
        let (lr, wd) = table[step.groups.group_of(i)];
        let g = grads[i] * clip_coef;
        let p = &mut params[i];
        match &opt {
            Optimizer::Sgd(s) => {
                let mu = T::of(s.momentum.value());
                let v = &mut state[i];
                let mut g = g;
                if wd.to_f64() != 0.0 {
                    g = g + wd * *p;
                }
                if mu.to_f64() == 0.0 {
                    *p = *p - lr * g;
                    continue;
                }
                match s.momentum.form() {
                    MomentumForm::Pytorch => {
                        let buf = if step.step == 1 { g } else { mu * *v + T::of(1.0 - s.dampening) * g };
                        *v = buf;
                        let d = if s.nesterov { g + mu * buf } else { buf };
                        *p = *p - lr * d;
                    }
                    MomentumForm::HeavyBall => {
                        *v = mu * *v - lr * g;
                        *p = *p + *v;
                    }
                    MomentumForm::NesterovLookahead => {
                        let old = *v;
                        let new = mu * old - lr * g;
                        *v = new;
                        *p = *p + new + mu * (new - old);
                    }
                }
            }
            Optimizer::Adagrad(a) => {
                let mut g = g;
                if wd.to_f64() != 0.0 {
                    g = g + wd * *p;
                }
                let clr = lr / T::of(1.0 + (t - 1.0) * a.lr_decay);
                let sum = &mut state[i];
                *sum = *sum + g * g;
                let std = sum.sqrt() + T::of(a.eps);
                *p = *p - clr * (g / std);
            }
            Optimizer::Rmsprop(r) => {
                let mut g = g;
                if wd.to_f64() != 0.0 {
                    g = g + wd * *p;
                }
                let (alpha, one_minus_alpha) = (T::of(r.alpha), T::of(1.0 - r.alpha));
                let sq = state[i] * alpha + one_minus_alpha * g * g;
                state[i] = sq;
                let avg = if r.centered {
                    let ga = state[len + i] + one_minus_alpha * (g - state[len + i]);
                    state[len + i] = ga;
                    (sq - ga * ga).sqrt()
                } else {
                    sq.sqrt()
                } + T::of(r.eps);
                if r.momentum > 0.0 {
                    let buf = state[2 * len + i] * T::of(r.momentum) + g / avg;
                    state[2 * len + i] = buf;
                    *p = *p - lr * buf;
                } else {
                    *p = *p - lr * (g / avg);
                }
            }
            Optimizer::Adam(a) => {
                let mut g = g;
                if a.decoupled {
                    *p = *p * (T::of(1.0) - lr * wd);
                } else if wd.to_f64() != 0.0 {
                    g = g + wd * *p;
                }
                let b2 = T::of(a.betas[1]);
                let m = state[i] + T::of(1.0 - a.betas[0]) * (g - state[i]);
                let v = state[len + i] * b2 + T::of(1.0 - a.betas[1]) * g * g;
                state[i] = m;
                state[len + i] = v;
                let bc1 = T::of(1.0 - a.betas[0].powf(t));
                let bc2_sqrt = T::of((1.0 - (a.betas[1]).powf(t)).sqrt());
                let v_used = if a.amsgrad {
                    let vmax = max(state[2 * len + i], v);
                    state[2 * len + i] = vmax;
                    vmax
                } else {
                    v
                };
                let denom = v_used.sqrt() / bc2_sqrt + T::of(a.eps);
                *p = *p - (lr / bc1) * (m / denom);
            }
            Optimizer::Adamw(_) => unreachable!("normalized() turns AdamW into Adam"),
        }
    }
}
