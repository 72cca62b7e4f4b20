//! `gradflow hessian`: the extreme eigenvalues, the index and the spectral density of a trained
//! model's Hessian, and the density's picture.

use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::Result;
use crate::exec::hessian::Hessian;
use crate::plot::{Chart, Series};
use crate::spectrum::{lanczos, stochastic_lanczos_quadrature, SpectralDensity, SymmetricOperator};

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

pub fn summarize(h: &mut Hessian, budget: &Budget) -> Result<HessianSummary> {
    let start = Instant::now();
    let dim = h.dim();
    let at = h.evaluate(&vec![0.0; dim])?;
    // Lanczos from a Rademacher vector for the extremes (its own stream, apart from the probes').
    let mut rng = StdRng::seed_from_u64(budget.seed ^ 0x5eed);
    let v: Vec<f64> = (0..dim).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
    let (smallest, largest) = lanczos(h, &v, budget.steps)?.extremes(budget.k);
    let density = stochastic_lanczos_quadrature(h, budget.probes, budget.steps, budget.seed)?;
    let width = largest.last().copied().unwrap_or(0.0) - smallest.first().copied().unwrap_or(0.0);
    let resolution = width / budget.steps as f64;
    let index = density.fraction_below(-resolution);
    let (products, seconds) = (h.products, start.elapsed().as_secs_f64());
    // The exact decomposition's columns come from the CPU reference in f64 (`Hessian::dense`).
    let exact = if dim <= EXACT_LIMIT { Some(crate::spectrum::symmetric_eigen(&h.dense()?, dim).0) } else { None };
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

/// The density smoothed by a Gaussian of 1 % of the spectrum's width, on a log axis (the bulk
/// near 0 and the few large outliers differ by decades).
pub fn density_chart(density: &SpectralDensity, title: &str) -> Chart {
    let lo = density.nodes.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = density.nodes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = (hi - lo).max(1e-12);
    let sigma = 0.01 * width;
    let xs: Vec<f64> = (0..=400).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / 400.0).collect();
    let ys = density.smoothed(&xs, sigma);
    Chart {
        title: title.into(),
        x_label: "eigenvalue".into(),
        y_label: "density".into(),
        series: vec![Series {
            name: format!("SLQ, σ = {sigma:.2e}"),
            points: xs.into_iter().zip(ys.into_iter().map(|y| y.max(1e-8))).collect(),
        }],
        log_y: true,
        y_range: None,
        scatter: false,
    }
}
