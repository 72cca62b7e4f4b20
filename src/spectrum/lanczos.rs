//! The Lanczos process with full reorthogonalisation: m steps from a start vector give an m×m
//! tridiagonal T whose eigenvalues (Ritz values) approximate A's extremes first, and whose
//! eigenvectors' first components squared are the Gauss quadrature weights of the start vector's
//! spectral measure (used by `slq`). Every new vector is orthogonalised against all earlier ones
//! twice ("twice is enough", Parlett): without it, lost orthogonality makes converged Ritz
//! values reappear as spurious copies.

use super::{dot, norm, AsyncSymmetricOperator, SymmetricOperator};
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
    let mut run = LanczosSteps::start(n, start, steps)?;
    let mut w = vec![0.0; n];
    while let Some(q) = run.wanted() {
        op.apply(q, &mut w)?;
        run.step(&w)?;
    }
    Ok(run.finish())
}

/// `lanczos` with an operator whose products are awaited (a GPU's read-backs in a browser):
/// the same recurrence (`LanczosSteps`), so the same numbers.
pub async fn lanczos_async<O: AsyncSymmetricOperator>(op: &mut O, start: &[f64], steps: usize) -> Result<Lanczos> {
    let mut run = LanczosSteps::start(op.dim(), start, steps)?;
    while let Some(q) = run.wanted() {
        let w = op.apply_async(q).await?;
        run.step(&w)?;
    }
    Ok(run.finish())
}

/// The Lanczos process one product at a time, for drivers that block on the product and drivers
/// that await it: `wanted` is the vector whose product the next step needs (None once done),
/// `step` takes that product.
pub struct LanczosSteps {
    /// The most steps this run takes (`steps` capped at the dimension).
    limit: usize,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    basis: Vec<Vec<f64>>,
    done: bool,
}

impl LanczosSteps {
    /// Up to `steps` steps on an operator of dimension `dim` from `start` (any non-zero vector).
    pub fn start(dim: usize, start: &[f64], steps: usize) -> Result<LanczosSteps> {
        if start.len() != dim {
            return Err(Error::Usage(format!("Lanczos start vector has {} entries, the operator {dim}", start.len())));
        }
        let s = norm(start);
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::Usage("Lanczos start vector must be non-zero and finite".into()));
        }
        let limit = steps.min(dim);
        Ok(LanczosSteps {
            limit,
            alpha: Vec::new(),
            beta: Vec::new(),
            basis: vec![start.iter().map(|x| x / s).collect()],
            done: limit == 0,
        })
    }

    /// The Lanczos vector q_j whose product A·q_j the next step needs; None when finished.
    pub fn wanted(&self) -> Option<&[f64]> {
        if self.done {
            None
        } else {
            self.basis.last().map(Vec::as_slice)
        }
    }

    /// One step from `aq` = A·q_j (q_j from `wanted`): T's next diagonal and off-diagonal
    /// entries and the next vector, orthogonalised twice against every earlier one.
    pub fn step(&mut self, aq: &[f64]) -> Result<()> {
        let j = self.alpha.len();
        if self.done {
            return Err(Error::Usage(format!("Lanczos was given a product after its last step ({j})")));
        }
        let q = &self.basis[j];
        if aq.len() != q.len() {
            return Err(Error::Shape {
                what: format!("the operator's product at Lanczos step {j}"),
                expected: format!("{} values", q.len()),
                got: aq.len().to_string(),
            });
        }
        if aq.iter().any(|x| !x.is_finite()) {
            return Err(Error::Usage(format!("the operator returned a non-finite value at Lanczos step {j}")));
        }
        let mut w = aq.to_vec();
        let a = dot(q, &w);
        self.alpha.push(a);
        for _ in 0..2 {
            for q in &self.basis {
                let c = dot(q, &w);
                w.iter_mut().zip(q).for_each(|(wi, qi)| *wi -= c * qi);
            }
        }
        let b = norm(&w);
        // An invariant subspace: T's eigenvalues are exact eigenvalues of A.
        let scale = self.alpha.iter().chain(&self.beta).fold(0.0f64, |m, x| m.max(x.abs()));
        if j + 1 == self.limit || b <= 1e-12 * scale.max(f64::MIN_POSITIVE) {
            self.done = true;
            return Ok(());
        }
        self.beta.push(b);
        self.basis.push(w.iter().map(|x| x / b).collect());
        Ok(())
    }

    /// T and the basis of the steps taken.
    pub fn finish(self) -> Lanczos {
        Lanczos { alpha: self.alpha, beta: self.beta, basis: self.basis }
    }
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
