//! `gradflow hessian`: the extreme eigenvalues, the index and the spectral density of a trained
//! model's Hessian, and the density's picture.

use crate::plot::{Chart, Series};
use crate::spectrum::SpectralDensity;

pub use crate::exec::hessian_summary::{summarize, Budget, HessianSummary, EXACT_LIMIT};

/// The density smoothed by a Gaussian of 1 % of the spectrum's width, on a log axis (the bulk
/// near 0 and the few large outliers differ by decades).
pub fn density_chart(density: &SpectralDensity, title: &str) -> Chart {
    let (xs, ys, sigma) = density.curve(400);
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
