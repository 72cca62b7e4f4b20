//! Critical points of a training loss and the methods drawn to or away from saddles (Dauphin et
//! al., "Identifying and attacking the saddle point problem", NIPS 2014), for models small
//! enough to decompose the Hessian exactly (`exec::hessian`, f64):
//! - a critical point near a point, by Levenberg–Marquardt on ½‖∇L‖² (its gradient is H·∇L and
//!   its Gauss–Newton matrix H²);
//! - Newton's step −H⁻¹∇L, which a nearby saddle attracts;
//! - the saddle-free Newton step −|H|⁻¹∇L on a Lanczos subspace, which a saddle repels.

use crate::error::Result;
use crate::exec::hessian::Hessian;
use crate::spectrum::{lanczos, symmetric_eigen};

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A point where the gradient (nearly) vanishes, with its loss, gradient norm and index.
#[derive(Clone, Debug)]
pub struct CriticalPoint {
    pub point: Vec<f64>,
    pub loss: f64,
    pub grad_norm: f64,
    /// Fraction of the eigenvalues below −n·ε·max|λ|.
    pub index: f64,
}

/// Eigenvalues (ascending) and eigenvectors of the Hessian at the current point.
pub fn spectrum(h: &mut Hessian) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let n = h.dim();
    Ok(symmetric_eigen(&h.dense()?, n))
}

/// The fraction of `values` below −n·ε·max|λ| (what rounding cannot make negative).
pub fn index_of(values: &[f64]) -> f64 {
    let tol = values.len() as f64 * f64::EPSILON * values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    values.iter().filter(|&&v| v < -tol).count() as f64 / values.len().max(1) as f64
}

/// The fraction of `values` below −`rel`·max|λ|: an index that ignores directions flat to within
/// `rel` of the largest curvature (a network's symmetries give many eigenvalues that are zero up
/// to rounding, whose signs are noise).
pub fn index_below(values: &[f64], rel: f64) -> f64 {
    let tol = rel * values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    values.iter().filter(|&&v| v < -tol).count() as f64 / values.len().max(1) as f64
}

/// ‖∇L‖ and the loss at the current point.
pub fn grad_norm_and_loss(h: &mut Hessian) -> Result<(f64, f64)> {
    let at = h.evaluate(&vec![0.0; h.dim()])?;
    Ok((norm(&at.grad), at.loss))
}

/// Levenberg–Marquardt on ½‖∇L‖² from the current point: δ = −(H² + μI)⁻¹·H·∇L in H's
/// eigenbasis, μ shrunk after a step that lowers ‖∇L‖ and grown until one does. Stops at
/// ‖∇L‖ ≤ `tol` or after `iterations`; the Hessian is left at the point found.
pub fn find_critical_point(h: &mut Hessian, iterations: usize, tol: f64) -> Result<CriticalPoint> {
    let n = h.dim();
    let zero = vec![0.0; n];
    let mut x = h.point();
    let mut at = h.evaluate(&zero)?;
    let mut mu = 1e-4;
    for _ in 0..iterations {
        if norm(&at.grad) <= tol {
            break;
        }
        let (values, vectors) = spectrum(h)?;
        let mut improved = false;
        for _ in 0..30 {
            let mut trial = x.clone();
            for (l, v) in values.iter().zip(&vectors) {
                let c = l * dot(v, &at.grad) / (l * l + mu);
                trial.iter_mut().zip(v).for_each(|(t, vi)| *t -= c * vi);
            }
            h.set_point(&trial)?;
            let next = h.evaluate(&zero)?;
            if norm(&next.grad) < norm(&at.grad) {
                (x, at, improved) = (trial, next, true);
                mu = (mu / 3.0).max(1e-15);
                break;
            }
            mu *= 4.0;
        }
        if !improved {
            h.set_point(&x)?;
            break;
        }
    }
    let (values, _) = spectrum(h)?;
    Ok(CriticalPoint { point: x, loss: at.loss, grad_norm: norm(&at.grad), index: index_of(&values) })
}

/// From the gradient `g` and the Hessian's eigenpairs: Newton's step −Σ (vᵢ·g)/λᵢ·vᵢ, or with
/// `saddle_free` Dauphin's −Σ (vᵢ·g)/|λᵢ|·vᵢ, over the eigenvalues above `rel`·max|λ| in size.
pub fn eigen_step(g: &[f64], values: &[f64], vectors: &[Vec<f64>], rel: f64, saddle_free: bool) -> Vec<f64> {
    let floor = rel * values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut step = vec![0.0; g.len()];
    for (l, v) in values.iter().zip(vectors) {
        if l.abs() > floor {
            let c = dot(v, g) / if saddle_free { l.abs() } else { *l };
            step.iter_mut().zip(v).for_each(|(s, vi)| *s -= c * vi);
        }
    }
    step
}

/// Newton's step −H⁻¹∇L from the current point, leaving out eigenvalues below `rel`·max|λ|.
pub fn newton_step(h: &mut Hessian, rel: f64) -> Result<Vec<f64>> {
    let g = h.evaluate(&vec![0.0; h.dim()])?.grad;
    let (values, vectors) = spectrum(h)?;
    Ok(eigen_step(&g, &values, &vectors, rel, false))
}

/// Dauphin's saddle-free Newton step −|H|⁻¹∇L on the k-dimensional Krylov subspace of ∇L
/// (Lanczos), each |θ| floored at `rel`·max|θ|.
pub fn saddle_free_newton_step(h: &mut Hessian, k: usize, rel: f64) -> Result<Vec<f64>> {
    let n = h.dim();
    let g = h.evaluate(&vec![0.0; n])?.grad;
    let gn = norm(&g);
    if gn == 0.0 {
        return Ok(vec![0.0; n]);
    }
    let run = lanczos(h, &g, k)?;
    let (theta, s) = run.ritz_pairs();
    let m = run.steps();
    let floor = rel * theta.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    // Qᵀg = ‖g‖·e₁, so the step is −Q·S·diag(1/|θ|)·Sᵀ·‖g‖e₁.
    let mut coeff = vec![0.0; m];
    for (th, sv) in theta.iter().zip(&s) {
        let c = sv[0] * gn / th.abs().max(floor);
        coeff.iter_mut().zip(sv).for_each(|(a, b)| *a += c * b);
    }
    let mut step = vec![0.0; n];
    for (q, c) in run.basis.iter().zip(&coeff) {
        step.iter_mut().zip(q).for_each(|(s, qi)| *s -= c * qi);
    }
    Ok(step)
}

/// Moves the Hessian's point by `step`.
pub fn take_step(h: &mut Hessian, step: &[f64]) -> Result<()> {
    let x: Vec<f64> = h.point().iter().zip(step).map(|(a, b)| a + b).collect();
    h.set_point(&x)
}
