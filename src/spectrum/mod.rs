//! Spectra of symmetric operators, for the course's questions about Hessians: Lanczos with full
//! reorthogonalisation (the extreme eigenvalues), stochastic Lanczos quadrature (the spectral
//! density and the index, the fraction of negative eigenvalues), a dense Jacobi eigensolver
//! (the exact answer for small matrices and for Lanczos' tridiagonal), and the random-matrix
//! baseline, symmetric Gaussian matrices, whose density is Wigner's semicircle.
//!
//! Everything here is f64 on the host: an operator is a function x ↦ A·x, so the same code
//! serves a dense matrix and a Hessian-vector product computed elsewhere.

pub mod jacobi;
pub mod lanczos;
pub mod random_matrix;
pub mod slq;

pub use jacobi::symmetric_eigen;
pub use lanczos::{lanczos, lanczos_async, Lanczos, LanczosSteps};
pub use random_matrix::{gaussian_symmetric, semicircle_density, DenseSymmetric};
pub use slq::{stochastic_lanczos_quadrature, stochastic_lanczos_quadrature_async, SpectralDensity};

use crate::error::Result;

/// A symmetric linear operator on ℝⁿ.
pub trait SymmetricOperator {
    fn dim(&self) -> usize;
    /// y = A·x (x and y both of length `dim`).
    fn apply(&mut self, x: &[f64], y: &mut [f64]) -> Result<()>;
}

/// A symmetric linear operator whose products are awaited (a GPU's read-back in a browser),
/// for `lanczos_async` and `stochastic_lanczos_quadrature_async`.
// Its futures need not be Send: a page's event loop and pollster both poll on one thread.
#[allow(async_fn_in_trait)]
pub trait AsyncSymmetricOperator {
    fn dim(&self) -> usize;
    /// A·x (x of length `dim`).
    async fn apply_async(&mut self, x: &[f64]) -> Result<Vec<f64>>;
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
