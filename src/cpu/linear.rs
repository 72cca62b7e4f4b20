//! Dense layers: y = act(x·Wᵀ + b) and its three backward products (matmul.wgsl).
//! x is [m, k], W is [n, k] (torch.nn.Linear's [out, in]), y is [m, n]; all row-major.

use super::activation::activate;
use crate::nn::Act;

/// Returns (z, y): the pre-activation x·Wᵀ + b and y = act(z).
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
) -> (Vec<f32>, Vec<f32>) {
    let mut z = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += x[i * k + p] as f64 * w[j * k + p] as f64;
            }
            if let Some(b) = b {
                s += b[j] as f64;
            }
            z[i * n + j] = s as f32;
        }
    }
    let y = z.iter().map(|&v| activate(v, act)).collect();
    (z, y)
}

/// dx = dz·W: [m, n]·[n, k] → [m, k].
pub fn linear_backward_input(dz: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; m * k];
    for i in 0..m {
        for p in 0..k {
            let mut s = 0.0f64;
            for j in 0..n {
                s += dz[i * n + j] as f64 * w[j * k + p] as f64;
            }
            dx[i * k + p] = s as f32;
        }
    }
    dx
}

/// dW = dzᵀ·x: [n, m]·[m, k] → [n, k].
pub fn linear_backward_weight(dz: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut dw = vec![0.0f32; n * k];
    for j in 0..n {
        for p in 0..k {
            let mut s = 0.0f64;
            for i in 0..m {
                s += dz[i * n + j] as f64 * x[i * k + p] as f64;
            }
            dw[j * k + p] = s as f32;
        }
    }
    dw
}

/// db = Σ_rows dz: [m, n] → [n].
pub fn bias_grad(dz: &[f32], m: usize, n: usize) -> Vec<f32> {
    (0..n).map(|j| (0..m).map(|i| dz[i * n + j] as f64).sum::<f64>() as f32).collect()
}
