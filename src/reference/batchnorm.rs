//! Batch normalisation over the rows of an [m, n] batch, as torch.nn.BatchNorm1d (batchnorm.wgsl).
//! Statistics are kept in f64 so the reference does not round the mean of large-mean features;
//! every output is computed in f64 and rounded once.

use super::activation::activate_grad_f64;
use super::{activate, Real};
use crate::spec::Act;

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
    let sums = batchnorm_backward_reduce(x, dy, m, n, gamma, beta, stats, act);
    let dx = batchnorm_backward_input(x, dy, m, n, gamma, beta, stats, act, &sums);
    let (dbeta, dgamma) = sums.split_at(n);
    (dx, dgamma.iter().map(|&v| T::of(v)).collect(), dbeta.iter().map(|&v| T::of(v)).collect())
}

/// du = dy ⊙ act'(γx̂ + β) per element.
fn du_of<T: Real>(x: T, dy: T, gamma: f64, beta: f64, stats: &NormStats, j: usize, act: Act) -> (f64, f64) {
    let xhat = (x.to_f64() - stats.mean[j]) * stats.inv_std(j);
    (dy.to_f64() * activate_grad_f64(gamma * xhat + beta, act), xhat)
}

/// The backward pass's per-feature sums, [Σdu (n), Σdu·x̂ (n)] (dβ and dγ): what a synchronised
/// batch norm exchanges between ranks before `batchnorm_backward_input`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_reduce<T: Real>(
    x: &[T],
    dy: &[T],
    m: usize,
    n: usize,
    gamma: &[T],
    beta: &[T],
    stats: &NormStats,
    act: Act,
) -> Vec<f64> {
    let mut sums = vec![0.0f64; 2 * n];
    for j in 0..n {
        let (g, b) = (gamma[j].to_f64(), beta[j].to_f64());
        for i in 0..m {
            let (du, xhat) = du_of(x[i * n + j], dy[i * n + j], g, b, stats, j, act);
            sums[j] += du;
            sums[n + j] += du * xhat;
        }
    }
    sums
}

/// dx = γ·inv_std/m · (m·du − Σdu − x̂·Σ(du·x̂)) from `sums` as `batchnorm_backward_reduce` gives
/// them (or their mean over ranks, for a synchronised batch norm).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_input<T: Real>(
    x: &[T],
    dy: &[T],
    m: usize,
    n: usize,
    gamma: &[T],
    beta: &[T],
    stats: &NormStats,
    act: Act,
    sums: &[f64],
) -> Vec<T> {
    let mut dx = vec![T::of(0.0); m * n];
    for j in 0..n {
        let (g, b) = (gamma[j].to_f64(), beta[j].to_f64());
        let scale = g * stats.inv_std(j) / m as f64;
        for i in 0..m {
            let (du, xhat) = du_of(x[i * n + j], dy[i * n + j], g, b, stats, j, act);
            dx[i * n + j] = T::of(scale * (m as f64 * du - sums[j] - xhat * sums[n + j]));
        }
    }
    dx
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
