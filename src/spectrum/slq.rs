//! Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019 for
//! neural-network Hessians): for a Rademacher probe v, m Lanczos steps from v give the m-point
//! Gauss quadrature of v's spectral measure Σᵢ (uᵢ·v)²/‖v‖² δ(x − λᵢ): nodes at the Ritz values,
//! weights the squared first components. It integrates polynomials of degree ≤ 2m − 1 exactly,
//! and E[(uᵢ·v)²]/‖v‖² = 1/n, so the average over probes estimates the density (1/n) Σᵢ δ(x − λᵢ).

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{lanczos, SymmetricOperator};
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
    if probes == 0 || steps == 0 {
        return Err(Error::Usage("stochastic Lanczos quadrature needs at least one probe and one step".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut nodes, mut weights) = (Vec::new(), Vec::new());
    for _ in 0..probes {
        let v: Vec<f64> = (0..op.dim()).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
        let (values, first) = lanczos(op, &v, steps)?.ritz();
        nodes.extend(values);
        weights.extend(first.iter().map(|c| c * c / probes as f64));
    }
    Ok(SpectralDensity { nodes, weights })
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
}
