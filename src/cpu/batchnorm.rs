//! Batch normalisation over the rows of an [m, n] batch, as torch.nn.BatchNorm1d (batchnorm.wgsl).
//! Statistics are kept in f64 so the reference does not round the mean of large-mean features;
//! every output is computed in f64 and rounded once.

use super::activation::activate_grad_f64;
use super::{activate, Real};
use crate::nn::Act;

/// Per-feature statistics used to normalise: x̂ = (x − mean) / √(var + eps).
#[derive(Clone, Debug, PartialEq)]
pub struct NormStats {
    pub mean: Vec<f64>,
    /// Biased (divide by m) in training mode; the running variance in eval mode.
    pub var: Vec<f64>,
    pub eps: f64,
}

impl NormStats {
    fn inv_std(&self, j: usize) -> f64 {
        1.0 / (self.var[j] + self.eps).sqrt()
    }

    /// Eval mode: the running statistics.
    pub fn running(running_mean: &[f32], running_var: &[f32], eps: f64) -> NormStats {
        NormStats {
            mean: running_mean.iter().map(|&v| v as f64).collect(),
            var: running_var.iter().map(|&v| v as f64).collect(),
            eps,
        }
    }
}

/// Training mode: the batch mean and biased variance of each column, by two passes in f64.
pub fn batchnorm_stats<T: Real>(x: &[T], m: usize, n: usize, eps: f64) -> NormStats {
    let mut mean = vec![0.0f64; n];
    let mut var = vec![0.0f64; n];
    for j in 0..n {
        let mu = (0..m).map(|i| x[i * n + j].to_f64()).sum::<f64>() / m as f64;
        var[j] = (0..m).map(|i| (x[i * n + j].to_f64() - mu).powi(2)).sum::<f64>() / m as f64;
        mean[j] = mu;
    }
    NormStats { mean, var, eps }
}

/// y = act(γ·x̂ + β).
pub fn batchnorm_forward<T: Real>(
    x: &[T],
    m: usize,
    n: usize,
    gamma: &[T],
    beta: &[T],
    stats: &NormStats,
    act: Act,
) -> Vec<T> {
    let mut y = vec![T::of(0.0); m * n];
    for i in 0..m {
        for j in 0..n {
            let xhat = (x[i * n + j].to_f64() - stats.mean[j]) * stats.inv_std(j);
            y[i * n + j] = T::of(activate(gamma[j].to_f64() * xhat + beta[j].to_f64(), act));
        }
    }
    y
}

/// Gradients of `batchnorm_forward` in training mode (the statistics depend on x), given dL/dy:
/// with du = dy ⊙ act'(γx̂ + β), dβ = Σdu, dγ = Σ du·x̂ and
/// dx = γ / (m·√(σ² + ε)) · (m·du − Σdu − x̂·Σ(du·x̂)). Returns (dx, dγ, dβ).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward<T: Real>(
    x: &[T],
    dy: &[T],
    m: usize,
    n: usize,
    gamma: &[T],
    beta: &[T],
    stats: &NormStats,
    act: Act,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dx = vec![T::of(0.0); m * n];
    let mut dgamma = vec![T::of(0.0); n];
    let mut dbeta = vec![T::of(0.0); n];
    for j in 0..n {
        let inv_std = stats.inv_std(j);
        let g = gamma[j].to_f64();
        let xhat: Vec<f64> = (0..m).map(|i| (x[i * n + j].to_f64() - stats.mean[j]) * inv_std).collect();
        let du: Vec<f64> =
            (0..m).map(|i| dy[i * n + j].to_f64() * activate_grad_f64(g * xhat[i] + beta[j].to_f64(), act)).collect();
        let sum_du: f64 = du.iter().sum();
        let sum_du_xhat: f64 = du.iter().zip(&xhat).map(|(d, h)| d * h).sum();
        for i in 0..m {
            let v = g * inv_std / m as f64 * (m as f64 * du[i] - sum_du - xhat[i] * sum_du_xhat);
            dx[i * n + j] = T::of(v);
        }
        dgamma[j] = T::of(sum_du_xhat);
        dbeta[j] = T::of(sum_du);
    }
    (dx, dgamma, dbeta)
}

/// running ← (1 − f)·running + f·batch, with the unbiased variance var·m/(m − 1), as PyTorch.
/// `factor` is the momentum, or 1/num_batches_tracked for the cumulative average.
pub fn batchnorm_update_running(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    stats: &NormStats,
    m: usize,
    factor: f64,
) {
    let unbias = m as f64 / (m as f64 - 1.0);
    for j in 0..running_mean.len() {
        running_mean[j] = ((1.0 - factor) * running_mean[j] as f64 + factor * stats.mean[j]) as f32;
        running_var[j] = ((1.0 - factor) * running_var[j] as f64 + factor * stats.var[j] * unbias) as f32;
    }
}

/// y = a + b: the end of a residual block (activation.wgsl `residual_add`).
pub fn residual_add<T: Real>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().zip(b).map(|(&p, &q)| T::of(p.to_f64() + q.to_f64())).collect()
}
