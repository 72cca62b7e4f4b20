//! The Lanczos process with full reorthogonalisation: m steps from a start vector give an m×m
//! tridiagonal T whose eigenvalues (Ritz values) approximate A's extremes first, and whose
//! eigenvectors' first components squared are the Gauss quadrature weights of the start vector's
//! spectral measure (used by `slq`). Every new vector is orthogonalised against all earlier ones
//! twice ("twice is enough", Parlett): without it, lost orthogonality makes converged Ritz
//! values reappear as spurious copies.

use super::{dot, norm, SymmetricOperator};
use crate::error::{Error, Result};

pub struct Lanczos {
    /// T's diagonal.
    pub alpha: Vec<f64>,
    /// T's off-diagonal (one shorter than `alpha`).
    pub beta: Vec<f64>,
    /// The orthonormal Lanczos vectors q₀ … q_{m−1}.
    pub basis: Vec<Vec<f64>>,
}

/// Up to `steps` Lanczos steps of `op` from `start` (any non-zero vector). Stops early, with
/// an exact result, when the Krylov space is invariant.
pub fn lanczos(op: &mut dyn SymmetricOperator, start: &[f64], steps: usize) -> Result<Lanczos> {
    let n = op.dim();
    if start.len() != n {
        return Err(Error::Usage(format!("Lanczos start vector has {} entries, the operator {n}", start.len())));
    }
    let s = norm(start);
    if !(s > 0.0 && s.is_finite()) {
        return Err(Error::Usage("Lanczos start vector must be non-zero and finite".into()));
    }
    let mut basis = vec![start.iter().map(|x| x / s).collect::<Vec<f64>>()];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    let mut w = vec![0.0; n];
    for j in 0..steps.min(n) {
        op.apply(&basis[j], &mut w)?;
        if w.iter().any(|x| !x.is_finite()) {
            return Err(Error::Usage(format!("the operator returned a non-finite value at Lanczos step {j}")));
        }
        let a = dot(&basis[j], &w);
        alpha.push(a);
        for _ in 0..2 {
            for q in &basis {
                let c = dot(q, &w);
                w.iter_mut().zip(q).for_each(|(wi, qi)| *wi -= c * qi);
            }
        }
        let b = norm(&w);
        // An invariant subspace: T's eigenvalues are exact eigenvalues of A.
        let scale = alpha.iter().chain(&beta).fold(0.0f64, |m, x| m.max(x.abs()));
        if j + 1 == steps.min(n) || b <= 1e-12 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        beta.push(b);
        basis.push(w.iter().map(|x| x / b).collect());
    }
    Ok(Lanczos { alpha, beta, basis })
}

impl Lanczos {
    pub fn steps(&self) -> usize {
        self.alpha.len()
    }

    /// (Ritz values ascending, the first component of each one's unit eigenvector of T).
    pub fn ritz(&self) -> (Vec<f64>, Vec<f64>) {
        let (values, vectors) = self.ritz_pairs();
        let first = vectors.iter().map(|v| v[0]).collect();
        (values, first)
    }

    /// (Ritz values ascending, T's unit eigenvector of each, in the Lanczos basis).
    pub fn ritz_pairs(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let m = self.steps();
        let mut t = vec![0.0; m * m];
        for i in 0..m {
            t[i * m + i] = self.alpha[i];
            if i + 1 < m {
                t[i * m + i + 1] = self.beta[i];
                t[(i + 1) * m + i] = self.beta[i];
            }
        }
        super::symmetric_eigen(&t, m)
    }

    /// The k smallest and k largest Ritz values (each ascending; fewer when m < k).
    pub fn extremes(&self, k: usize) -> (Vec<f64>, Vec<f64>) {
        let (values, _) = self.ritz();
        let k = k.min(values.len());
        (values[..k].to_vec(), values[values.len() - k..].to_vec())
    }
}
