//! Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019 for
//! neural-network Hessians): for a Rademacher probe v, m Lanczos steps from v give the m-point
//! Gauss quadrature of v's spectral measure Σᵢ (uᵢ·v)²/‖v‖² δ(x − λᵢ): nodes at the Ritz values,
//! weights the squared first components. It integrates polynomials of degree ≤ 2m − 1 exactly,
//! and E[(uᵢ·v)²]/‖v‖² = 1/n, so the average over probes estimates the density (1/n) Σᵢ δ(x − λᵢ).

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{lanczos, lanczos_async, AsyncSymmetricOperator, Lanczos, SymmetricOperator};
use crate::error::{Error, Result};

/// A discrete spectral measure: nodes with weights summing to 1.
#[derive(Clone, Debug)]
pub struct SpectralDensity {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
}

/// The density of `op`'s eigenvalues from `probes` Rademacher probes of `steps` Lanczos steps each.
pub fn stochastic_lanczos_quadrature(
    op: &mut dyn SymmetricOperator,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Result<SpectralDensity> {
    let mut q = Quadrature::new(op.dim(), probes, steps, seed)?;
    while let Some(v) = q.next_probe() {
        q.add(&lanczos(op, &v, steps)?);
    }
    Ok(q.density)
}

/// `stochastic_lanczos_quadrature` with an awaited operator: the same probes and recurrence.
pub async fn stochastic_lanczos_quadrature_async<O: AsyncSymmetricOperator>(
    op: &mut O,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Result<SpectralDensity> {
    let mut q = Quadrature::new(op.dim(), probes, steps, seed)?;
    while let Some(v) = q.next_probe() {
        q.add(&lanczos_async(op, &v, steps).await?);
    }
    Ok(q.density)
}

/// The probes and the running measure both drivers share.
struct Quadrature {
    dim: usize,
    probes: usize,
    drawn: usize,
    rng: StdRng,
    density: SpectralDensity,
}

impl Quadrature {
    fn new(dim: usize, probes: usize, steps: usize, seed: u64) -> Result<Quadrature> {
        if probes == 0 || steps == 0 {
            return Err(Error::Usage("stochastic Lanczos quadrature needs at least one probe and one step".into()));
        }
        let density = SpectralDensity { nodes: Vec::new(), weights: Vec::new() };
        Ok(Quadrature { dim, probes, drawn: 0, rng: StdRng::seed_from_u64(seed), density })
    }

    /// The next Rademacher probe; None after the last.
    fn next_probe(&mut self) -> Option<Vec<f64>> {
        if self.drawn == self.probes {
            return None;
        }
        self.drawn += 1;
        Some((0..self.dim).map(|_| if self.rng.random::<bool>() { 1.0 } else { -1.0 }).collect())
    }

    /// One probe's Gauss quadrature: nodes at the Ritz values, weights the squared first components.
    fn add(&mut self, run: &Lanczos) {
        let (values, first) = run.ritz();
        self.density.nodes.extend(values);
        self.density.weights.extend(first.iter().map(|c| c * c / self.probes as f64));
    }
}

impl SpectralDensity {
    /// ∫ xᵖ dμ: the estimate of tr(Aᵖ)/n.
    pub fn moment(&self, p: i32) -> f64 {
        self.nodes.iter().zip(&self.weights).map(|(x, w)| w * x.powi(p)).sum()
    }

    /// The mass below `x`: at 0, the estimated index (fraction of negative eigenvalues).
    pub fn fraction_below(&self, x: f64) -> f64 {
        // (+ 0.0: an empty f64 sum is −0.0)
        self.nodes.iter().zip(&self.weights).filter(|(v, _)| **v < x).map(|(_, w)| w).sum::<f64>() + 0.0
    }

    /// The measure convolved with a Gaussian of width `sigma`, at each of `xs`: a density to plot.
    pub fn smoothed(&self, xs: &[f64], sigma: f64) -> Vec<f64> {
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        xs.iter()
            .map(|x| {
                self.nodes
                    .iter()
                    .zip(&self.weights)
                    .map(|(v, w)| w * c * (-0.5 * ((x - v) / sigma).powi(2)).exp())
                    .sum()
            })
            .collect()
    }

    /// (xs, density at each, σ): the measure smoothed by a Gaussian of 1 % of its nodes' span,
    /// on `points` + 1 even steps from 5 % below the lowest node to 5 % above the highest: the
    /// curve `gradflow hessian` plots and the page draws.
    pub fn curve(&self, points: usize) -> (Vec<f64>, Vec<f64>, f64) {
        let lo = self.nodes.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.nodes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let width = (hi - lo).max(1e-12);
        let sigma = 0.01 * width;
        let points = points.max(1);
        let xs: Vec<f64> = (0..=points).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / points as f64).collect();
        let ys = self.smoothed(&xs, sigma);
        (xs, ys, sigma)
    }
}
