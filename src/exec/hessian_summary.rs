//! The summary `gradflow hessian` prints and the page shows: a trained model's Hessian's
//! extreme eigenvalues (Lanczos), index and spectral density (SLQ), and every eigenvalue of a
//! small one; with the rows per batch both take.

use rand::{rngs::StdRng, Rng, SeedableRng};
use web_time::Instant;

use super::hessian::Hessian;
use crate::error::{Error, Result};
use crate::spec::Model;
use crate::spectrum::{lanczos_async, stochastic_lanczos_quadrature_async, SpectralDensity};

/// Rows per batch of the Hessian's loss for `model` over `rows` training rows whose config
/// trains with `batch_size`, and the words that say why. Without batch norm the batching does
/// not change the loss: as few batches as memory allows. With it, the training batches, whose
/// statistics the loss depends on.
pub fn batch_rows(model: &Model, batch_size: usize, rows: usize) -> (usize, String) {
    if model.has_batch_norm() {
        (batch_size, format!("batch norm in training mode, statistics of each batch of {batch_size} consecutive rows"))
    } else {
        (rows.clamp(1, 4096), "no batch norm".to_string())
    }
}

/// `gradflow hessian`'s defaults (`--k`, `--steps`, `--probes`), which the page follows.
pub const DEFAULT_K: usize = 5;
pub const DEFAULT_STEPS: usize = 40;
pub const DEFAULT_PROBES: usize = 5;

/// How much work the estimates get.
pub struct Budget {
    /// Eigenvalues reported at each end.
    pub k: usize,
    /// Lanczos steps for the extremes and per SLQ probe.
    pub steps: usize,
    /// SLQ probes for the density and the index.
    pub probes: usize,
    pub seed: u64,
}

/// The most Lanczos steps a budget may ask for: each keeps a vector of the model's size for
/// reorthogonalisation, and beyond this Ritz values no longer sharpen in f32 products.
pub const MAX_STEPS: usize = 1000;
/// The most probes a budget may ask for (each is a full Lanczos run).
pub const MAX_PROBES: usize = 1000;
/// The most memory Lanczos's basis (min(steps, dim) vectors of dim f64s, kept for
/// reorthogonalisation) may take: a browser tab has a 4 GiB address space at most.
#[cfg(target_arch = "wasm32")]
pub const MAX_BASIS_BYTES: usize = 1 << 30;
#[cfg(not(target_arch = "wasm32"))]
pub const MAX_BASIS_BYTES: usize = 16 << 30;

impl Budget {
    /// Refuses a budget that could not run or would exhaust memory, naming the field.
    pub fn check(&self) -> Result<()> {
        let field = |name: &str, v: usize, hi: usize| {
            if (1..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::Usage(format!("{name} = {v}: expected 1 to {hi}")))
            }
        };
        field("steps (Lanczos steps)", self.steps, MAX_STEPS)?;
        field("k (eigenvalues at each end)", self.k, self.steps)?;
        field("probes", self.probes, MAX_PROBES)
    }

    /// `check`, and that Lanczos's basis for a Hessian of `dim` coordinates fits in
    /// `MAX_BASIS_BYTES`, naming the most steps that would.
    pub fn check_for(&self, dim: usize) -> Result<()> {
        self.check()?;
        let bytes = self.steps.min(dim).saturating_mul(dim).saturating_mul(8);
        if bytes > MAX_BASIS_BYTES {
            let most = MAX_BASIS_BYTES / (8 * dim.max(1));
            return Err(Error::Usage(format!(
                "steps (Lanczos steps) = {}: its basis of {} vectors of {dim} coordinates would take {:.1} GiB, past the \
                 {:.0} GiB allowed here; at most {most} steps fit",
                self.steps,
                self.steps.min(dim),
                bytes as f64 / (1u64 << 30) as f64,
                MAX_BASIS_BYTES as f64 / (1u64 << 30) as f64,
            )));
        }
        Ok(())
    }
}

/// The fraction of `eigenvalues` below zero, counting those within rounding of 0 (n·u·max|λ| of
/// an f64 decomposition) as zero: (index, negatives, zeros, that tolerance).
pub fn exact_index(eigenvalues: &[f64]) -> (f64, usize, usize, f64) {
    let n = eigenvalues.len();
    let tol = n as f64 * f64::EPSILON * eigenvalues.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let negative = eigenvalues.iter().filter(|&&x| x < -tol).count();
    let zero = eigenvalues.iter().filter(|&&x| x.abs() <= tol).count();
    (negative as f64 / n.max(1) as f64, negative, zero, tol)
}

pub struct HessianSummary {
    pub dim: usize,
    pub loss: f64,
    pub grad_norm: f64,
    /// The k smallest and k largest Ritz values, ascending.
    pub smallest: Vec<f64>,
    pub largest: Vec<f64>,
    pub density: SpectralDensity,
    /// SLQ's fraction of eigenvalues below −resolution: the index, of the resolved part.
    pub index: f64,
    /// SLQ's fraction within ±resolution, whose sign the quadrature cannot tell.
    pub unresolved: f64,
    /// The spectrum's width over the Lanczos steps: an m-point Gauss quadrature cannot place
    /// mass inside the spectrum more finely than about this.
    pub resolution: f64,
    /// Every eigenvalue (ascending), for models of at most `EXACT_LIMIT` parameters.
    pub exact: Option<Vec<f64>>,
    /// Products (and seconds) of Lanczos and SLQ, not counting the exact decomposition's.
    pub products: usize,
    pub seconds: f64,
}

/// Parameters up to which `summarize` also decomposes the whole Hessian (built column by column
/// on the CPU reference in f64, then Jacobi: seconds at this size).
pub const EXACT_LIMIT: usize = 400;

/// Lanczos for the extremes, SLQ for the density and the index, at the Hessian's point.
pub fn summarize(h: &mut Hessian, budget: &Budget) -> Result<HessianSummary> {
    crate::device::wait("the Hessian's spectrum", summarize_async(h, budget))
}

/// `summarize` with the GPU's products awaited: the form a browser page uses.
pub async fn summarize_async(h: &mut Hessian, budget: &Budget) -> Result<HessianSummary> {
    let dim = h.dim();
    budget.check_for(dim)?;
    let start = Instant::now();
    let at = h.evaluate(&vec![0.0; dim])?;
    // Lanczos from a Rademacher vector for the extremes (its own stream, apart from the probes').
    let mut rng = StdRng::seed_from_u64(budget.seed ^ 0x5eed);
    let v: Vec<f64> = (0..dim).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
    let (smallest, largest) = lanczos_async(h, &v, budget.steps).await?.extremes(budget.k);
    let density = stochastic_lanczos_quadrature_async(h, budget.probes, budget.steps, budget.seed).await?;
    let width = largest.last().copied().unwrap_or(0.0) - smallest.first().copied().unwrap_or(0.0);
    let resolution = width / budget.steps as f64;
    let index = density.fraction_below(-resolution);
    let (products, seconds) = (h.products, start.elapsed().as_secs_f64());
    // The exact decomposition's columns come from the CPU reference in f64 (`Hessian::dense`).
    let exact =
        if dim <= EXACT_LIMIT { Some(crate::spectrum::symmetric_eigen(&h.dense_async().await?, dim).0) } else { None };
    Ok(HessianSummary {
        dim,
        loss: at.loss,
        grad_norm: at.grad.iter().map(|g| g * g).sum::<f64>().sqrt(),
        smallest,
        largest,
        index,
        unresolved: density.fraction_below(resolution) - index,
        resolution,
        density,
        exact,
        products,
        seconds,
    })
}
