//! Dense layers: y = act(x·Wᵀ + b) and its three backward products (matmul.wgsl).
//! x is [m, k], W is [n, k] (torch.nn.Linear's [out, in]), y is [m, n]; all row-major.

use super::activation::activate;
use super::Real;
use crate::spec::Act;

/// Returns (z, y): the pre-activation x·Wᵀ + b and y = act(z).
pub fn linear_forward<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
) -> (Vec<T>, Vec<T>) {
    let mut z = vec![T::of(0.0); m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += x[i * k + p].to_f64() * w[j * k + p].to_f64();
            }
            if let Some(b) = b {
                s += b[j].to_f64();
            }
            z[i * n + j] = T::of(s);
        }
    }
    let y = z.iter().map(|&v| activate(v, act)).collect();
    (z, y)
}

/// dx = dz·W: [m, n]·[n, k] → [m, k].
pub fn linear_backward_input<T: Real>(dz: &[T], w: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut dx = vec![T::of(0.0); m * k];
    for i in 0..m {
        for p in 0..k {
            let mut s = 0.0f64;
            for j in 0..n {
                s += dz[i * n + j].to_f64() * w[j * k + p].to_f64();
            }
            dx[i * k + p] = T::of(s);
        }
    }
    dx
}

/// dW = dzᵀ·x: [n, m]·[m, k] → [n, k].
pub fn linear_backward_weight<T: Real>(dz: &[T], x: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut dw = vec![T::of(0.0); n * k];
    for j in 0..n {
        for p in 0..k {
            let mut s = 0.0f64;
            for i in 0..m {
                s += dz[i * n + j].to_f64() * x[i * k + p].to_f64();
            }
            dw[j * k + p] = T::of(s);
        }
    }
    dw
}

/// db = Σ_rows dz: [m, n] → [n].
pub fn bias_grad<T: Real>(dz: &[T], m: usize, n: usize) -> Vec<T> {
    (0..n).map(|j| T::of((0..m).map(|i| dz[i * n + j].to_f64()).sum::<f64>())).collect()
}
