//! The world's simplest ML problem (the lecture's "do first, then understand"): least squares
//! y ≈ θ·z, z = (x, 1), learned by SGD with a constant step. The iterates do not converge; they
//! settle into a *noise ball* around the minimiser θ* whose size this module predicts.
//!
//! With torch's mean squared error L(θ) = (1/n) Σ (z_j·θ − y_j)², write e = θ − θ*,
//! A = (1/n) Σ z_j z_jᵀ, r_j = y_j − z_j·θ* and S = (1/n) Σ r_j² z_j z_jᵀ. Then
//! L(θ) = L* + eᵀAe exactly, so the excess loss of the ball is tr(A C) with C = E[e eᵀ].
//! For a batch of B rows drawn *with replacement* (the engine's `replacement` scheme) the step
//! e ← e − η·(2/B) Σ_b (z_b z_bᵀ e − r_b z_b) has conditional mean (I − 2ηA)e and, since
//! Σ r_j z_j = 0, a noise whose covariance gives the exact stationary equation
//!
//!   C = (I − 2ηA) C (I − 2ηA) + (4η²/B) · [F(C) − A C A + S],   F(C) = (1/n) Σ (z_jᵀ C z_j) z_j z_jᵀ,
//!
//! (the stationary mean of e is 0). It is linear in C; `stationary_covariance` solves it. To
//! first order in η, 2η(AC + CA) = (4η²/B) S, so tr(AC) ≈ η·tr(S)/B: the ball's excess loss is
//! proportional to the step and inversely to the batch. With homoscedastic noise of variance
//! s², S ≈ s²A and that is η·s²·tr(A)/B; for standardised features and a bias, tr(A) = d + 1.

use crate::error::{Error, Result};
use crate::train::History;

/// A least-squares problem over rows z_j (features, then 1 when the model has a bias).
#[derive(Clone, Debug)]
pub struct LeastSquares {
    /// Coordinates: features plus the bias's.
    pub p: usize,
    /// Rows z_j, row-major n × p.
    z: Vec<f64>,
    y: Vec<f64>,
}

impl LeastSquares {
    /// From `n = y.len()` rows of `d` features (`x` row-major), with a bias coordinate if `bias`.
    pub fn new(x: &[f32], d: usize, y: &[f32], bias: bool) -> Result<LeastSquares> {
        let n = y.len();
        if n == 0 || x.len() != n * d {
            return Err(Error::Shape {
                what: "least-squares data".into(),
                expected: format!("{n} rows of {d} features ({} values), at least one row", n * d),
                got: format!("{} values", x.len()),
            });
        }
        let p = d + usize::from(bias);
        let mut z = Vec::with_capacity(n * p);
        for row in x.chunks(d.max(1)).take(n) {
            z.extend(row.iter().map(|&v| f64::from(v)));
            if bias {
                z.push(1.0);
            }
        }
        Ok(LeastSquares { p, z, y: y.iter().map(|&v| f64::from(v)).collect() })
    }

    pub fn rows(&self) -> usize {
        self.y.len()
    }

    fn row(&self, j: usize) -> &[f64] {
        &self.z[j * self.p..(j + 1) * self.p]
    }

    /// A = (1/n) Σ z zᵀ, row-major p × p: half the loss's Hessian.
    pub fn second_moment(&self) -> Vec<f64> {
        self.weighted_moment(|_| 1.0)
    }

    /// (1/n) Σ w_j z_j z_jᵀ.
    fn weighted_moment(&self, weight: impl Fn(usize) -> f64) -> Vec<f64> {
        let p = self.p;
        let mut m = vec![0.0; p * p];
        for j in 0..self.rows() {
            let (z, w) = (self.row(j), weight(j));
            for a in 0..p {
                for b in 0..p {
                    m[a * p + b] += w * z[a] * z[b];
                }
            }
        }
        m.iter_mut().for_each(|v| *v /= self.rows() as f64);
        m
    }

    /// θ* from the normal equations A θ = (1/n) Σ z_j y_j; an error when A is singular (a
    /// constant feature, fewer rows than coordinates).
    pub fn minimiser(&self) -> Result<Vec<f64>> {
        let mut zy = vec![0.0; self.p];
        for j in 0..self.rows() {
            for (s, z) in zy.iter_mut().zip(self.row(j)) {
                *s += z * self.y[j] / self.rows() as f64;
            }
        }
        solve(self.second_moment(), zy, self.p)
            .ok_or_else(|| Error::Usage("least squares: the features are linearly dependent (A is singular)".into()))
    }

    /// Residuals r_j = y_j − z_j·θ.
    pub fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        (0..self.rows()).map(|j| self.y[j] - dot(self.row(j), theta)).collect()
    }

    /// torch's mse_loss (mean) of the linear model θ.
    pub fn loss(&self, theta: &[f64]) -> f64 {
        self.residuals(theta).iter().map(|r| r * r).sum::<f64>() / self.rows() as f64
    }

    /// S = (1/n) Σ r_j² z_j z_jᵀ at θ: the covariance of one row's gradient noise, over 4.
    pub fn noise_moment(&self, theta: &[f64]) -> Vec<f64> {
        let r = self.residuals(theta);
        self.weighted_moment(|j| r[j] * r[j])
    }

    /// F(C) = (1/n) Σ (z_jᵀ C z_j) z_j z_jᵀ.
    fn fourth_moment(&self, c: &[f64]) -> Vec<f64> {
        let p = self.p;
        self.weighted_moment(|j| {
            let z = self.row(j);
            (0..p).map(|a| z[a] * dot(&c[a * p..(a + 1) * p], z)).sum()
        })
    }
}

/// The noise ball of SGD with step η and batch B (with replacement) on a least-squares problem.
#[derive(Clone, Debug)]
pub struct NoiseBall {
    /// E[(θ − θ*)(θ − θ*)ᵀ] at stationarity, p × p.
    pub covariance: Vec<f64>,
    /// E[L(θ)] − L* = tr(A C), exact for the model above.
    pub excess_loss: f64,
    /// η·tr(S)/B, its first-order approximation.
    pub first_order: f64,
}

/// Solves the stationary equation of the module's comment for step `eta` and batch `batch`.
/// An error when SGD at this step does not settle (the second moment diverges): the linear map
/// then has no positive semi-definite fixed point.
pub fn stationary_covariance(problem: &LeastSquares, eta: f64, batch: usize) -> Result<NoiseBall> {
    if !(eta > 0.0 && eta.is_finite()) || batch == 0 {
        return Err(Error::Usage(format!("noise ball: need a step > 0 and a batch ≥ 1 (got {eta}, {batch})")));
    }
    let p = problem.p;
    let a = problem.second_moment();
    let theta = problem.minimiser()?;
    let s = problem.noise_moment(&theta);
    let k = 4.0 * eta * eta / batch as f64;
    // T(C) = C − (I − 2ηA)C(I − 2ηA) − k·(F(C) − ACA), applied to each basis matrix E_ab.
    let mut lhs = vec![0.0; p * p * p * p];
    let contract = identity(p).iter().zip(&a).map(|(i, a)| i - 2.0 * eta * a).collect::<Vec<f64>>();
    for col in 0..p * p {
        let mut e = vec![0.0; p * p];
        e[col] = 1.0;
        let kept = matmul(&matmul(&contract, &e, p), &contract, p);
        let fourth = problem.fourth_moment(&e);
        let aea = matmul(&matmul(&a, &e, p), &a, p);
        for row in 0..p * p {
            lhs[row * p * p + col] = e[row] - kept[row] - k * (fourth[row] - aea[row]);
        }
    }
    let rhs: Vec<f64> = s.iter().map(|v| k * v).collect();
    let diverges = || {
        Error::Usage(format!(
            "noise ball: SGD with step {eta} and batch {batch} does not settle (its second moment diverges)"
        ))
    };
    let c = solve(lhs, rhs, p * p).ok_or_else(diverges)?;
    let (values, _) = crate::spectrum::jacobi::symmetric_eigen(&c, p);
    let scale = c.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if values.iter().any(|&v| v < -1e-9 * scale) {
        return Err(diverges());
    }
    let excess_loss = trace_product(&a, &c, p);
    let first_order = eta * (0..p).map(|i| s[i * p + i]).sum::<f64>() / batch as f64;
    Ok(NoiseBall { covariance: c, excess_loss, first_order })
}

/// A measured plateau: the mean excess loss and its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plateau {
    pub mean: f64,
    pub standard_error: f64,
}

/// The mean of L(θ) − L* over the epochs after `burn_in`, from each epoch's evaluation (the
/// `test_loss` of a fit given its training set as the test set). The standard error is by batch
/// means over ten blocks of epochs, which the iterates' correlation from epoch to epoch does not
/// bias as it would the plain one.
pub fn plateau(history: &History, best: f64, burn_in: usize) -> Result<Plateau> {
    let excess: Vec<f64> =
        history.iter().skip(burn_in).filter_map(|e| e.test_loss).map(|l| f64::from(l) - best).collect();
    let blocks = 10;
    if excess.len() < blocks {
        return Err(Error::Usage(format!(
            "noise ball: {} evaluated epochs after the burn-in of {burn_in}; need at least {blocks} (was the training set passed as the test set?)",
            excess.len()
        )));
    }
    let size = excess.len() / blocks;
    let means: Vec<f64> = excess.chunks_exact(size).take(blocks).map(|c| c.iter().sum::<f64>() / size as f64).collect();
    let mean = means.iter().sum::<f64>() / blocks as f64;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (blocks - 1) as f64;
    Ok(Plateau { mean, standard_error: (var / blocks as f64).sqrt() })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn identity(p: usize) -> Vec<f64> {
    (0..p * p).map(|k| if k / p == k % p { 1.0 } else { 0.0 }).collect()
}

fn matmul(a: &[f64], b: &[f64], p: usize) -> Vec<f64> {
    (0..p * p).map(|k| (0..p).map(|m| a[(k / p) * p + m] * b[m * p + k % p]).sum()).collect()
}

/// tr(A B) for p × p matrices.
fn trace_product(a: &[f64], b: &[f64], p: usize) -> f64 {
    (0..p).flat_map(|i| (0..p).map(move |m| (i, m))).map(|(i, m)| a[i * p + m] * b[m * p + i]).sum()
}

/// x with M x = rhs by Gaussian elimination with partial pivoting; None when M is singular to
/// working precision.
fn solve(mut m: Vec<f64>, mut rhs: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    let scale = m.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))?;
        if m[pivot * n + col].abs() <= 1e-13 * scale {
            return None;
        }
        for k in 0..n {
            m.swap(col * n + k, pivot * n + k);
        }
        rhs.swap(col, pivot);
        for row in col + 1..n {
            let f = m[row * n + col] / m[col * n + col];
            for k in col..n {
                m[row * n + k] -= f * m[col * n + k];
            }
            rhs[row] -= f * rhs[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| m[row * n + k] * x[k]).sum();
        x[row] = (rhs[row] - tail) / m[row * n + row];
    }
    Some(x)
}
