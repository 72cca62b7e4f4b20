//! The course's coin-flip picture made exact: a symmetric matrix of independent Gaussians,
//! (A + Aᵀ)/√(2n), has off-diagonal entries of variance 1/n, and its eigenvalue density tends to
//! Wigner's semicircle √(4 − x²)/(2π) on [−2, 2] (moments: 1, 2, 5, … the Catalan numbers).

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::SymmetricOperator;
use crate::error::Result;

/// A dense symmetric matrix as an operator (row-major n×n).
pub struct DenseSymmetric {
    pub n: usize,
    pub a: Vec<f64>,
}

impl SymmetricOperator for DenseSymmetric {
    fn dim(&self) -> usize {
        self.n
    }

    fn apply(&mut self, x: &[f64], y: &mut [f64]) -> Result<()> {
        for (row, yi) in self.a.chunks_exact(self.n).zip(y.iter_mut()) {
            *yi = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
        Ok(())
    }
}

/// One standard normal draw (Box–Muller).
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: the log is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// (A + Aᵀ)/√(2n) with A's entries independent N(0, 1).
pub fn gaussian_symmetric(n: usize, seed: u64) -> DenseSymmetric {
    let mut rng = StdRng::seed_from_u64(seed);
    let raw: Vec<f64> = (0..n * n).map(|_| standard_normal(&mut rng)).collect();
    let s = 1.0 / (2.0 * n as f64).sqrt();
    let a = (0..n * n).map(|k| s * (raw[k] + raw[(k % n) * n + k / n])).collect();
    DenseSymmetric { n, a }
}

/// √(4 − x²)/(2π) on [−2, 2], 0 outside.
pub fn semicircle_density(x: f64) -> f64 {
    if x.abs() >= 2.0 {
        0.0
    } else {
        (4.0 - x * x).sqrt() / (2.0 * std::f64::consts::PI)
    }
}
