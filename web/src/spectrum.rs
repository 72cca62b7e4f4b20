//! The page's Spectrum view: the Hessian of the run's mean training loss at its current
//! weights, as `gradflow hessian` computes it (the same rows per batch, probes and seed), with
//! each GPU product's read-back awaited.

use std::sync::Arc;

use gradflow::error::Result;
use gradflow::exec::hessian::Hessian;
use gradflow::exec::hessian_summary::{batch_rows, exact_index, summarize_async, Budget, DEFAULT_PROBES};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::run::{promise, yield_each_frame, Executor, Inner, Run};

/// Points of the smoothed density the page draws.
const DENSITY_POINTS: usize = 200;

/// What the Spectrum view shows (camelCase for JavaScript; NaN and ±∞ become null).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpectrumReport {
    /// The run's device and where the products ran.
    device: String,
    /// Coordinates of the Hessian: the parameters without the flat buffer's padding.
    params: usize,
    /// Training rows the loss is the mean over.
    rows: usize,
    /// How the rows are batched (batch norm's statistics depend on it).
    batch: String,
    /// The k largest Ritz values, largest first.
    top: Vec<f64>,
    /// The k smallest Ritz values, smallest first.
    bottom: Vec<f64>,
    /// Estimated fraction of negative eigenvalues.
    index: f64,
    /// How `index` was estimated.
    method: String,
    /// SLQ's mass within ±δ, whose sign the quadrature cannot tell.
    unresolved: f64,
    /// δ: the spectrum's width over the Lanczos steps.
    resolution: f64,
    /// The index counted from every eigenvalue, for models small enough to decompose exactly.
    exact_index: Option<f64>,
    density: Density,
    loss: f64,
    grad_norm: f64,
    products: usize,
    seconds: f64,
}

/// The SLQ density smoothed by a Gaussian of 1 % of the spectrum's width (`SpectralDensity::curve`).
#[derive(Serialize)]
struct Density {
    x: Vec<f64>,
    y: Vec<f64>,
    sigma: f64,
}

#[wasm_bindgen]
impl Run {
    /// The Hessian's `k` extreme eigenvalues at each end from `steps` Lanczos steps, its index
    /// and its spectral density (SLQ, `gradflow hessian`'s probes and seed), at the current
    /// weights on the training rows; on the GPU when the run is (JSON `SpectrumReport`).
    pub fn spectrum(&self, k: usize, steps: usize) -> js_sys::Promise {
        let run_device = self.device();
        promise(&self.inner, move |inner| Box::pin(async move { spectrum(inner, run_device, k, steps).await }))
    }
}

async fn spectrum(inner: &mut Inner, run_device: String, k: usize, steps: usize) -> Result<String> {
    let budget = Budget { k, steps, probes: DEFAULT_PROBES, seed: 0 };
    budget.check()?;
    let params = inner.exec.params().await?;
    let model = inner.exec.net().model().clone();
    let (batch, how) = batch_rows(&model, inner.config.train.batch_size, inner.train.n);
    let mut h = Hessian::new(model, inner.config.model.loss, &params, &inner.train, batch)?;
    if let Executor::Gpu(net) = &inner.exec {
        // Cloning a Gpu shares its device.
        h.use_gpu(Arc::new(net.gpu().clone()))?;
    }
    // What runs on the CPU (every product of a CPU run; a small model's exact Hessian on either)
    // runs on the page's thread: let the page draw about once a frame.
    h.set_pause(yield_each_frame());
    let s = summarize_async(&mut h, &budget).await?;
    let (x, y, sigma) = s.density.curve(DENSITY_POINTS);
    // As `gradflow hessian`: within rounding of 0 counts as zero, not negative.
    let exact_index = s.exact.as_deref().map(|all| exact_index(all).0);
    let report = SpectrumReport {
        device: format!("{run_device}; products on {}", h.device()),
        params: s.dim,
        rows: inner.train.n,
        batch: how,
        top: s.largest.iter().rev().copied().collect(),
        bottom: s.smallest.clone(),
        index: s.index,
        method: format!(
            "extremes: Lanczos, {} steps; density and index: SLQ, {} Rademacher probes × {} steps, \
             δ = spectrum width / steps",
            budget.steps, budget.probes, budget.steps
        ),
        unresolved: s.unresolved,
        resolution: s.resolution,
        exact_index,
        density: Density { x, y, sigma },
        loss: s.loss,
        grad_norm: s.grad_norm,
        products: s.products,
        seconds: s.seconds,
    };
    serde_json::to_string(&report).map_err(|e| gradflow::error::Error::Usage(format!("spectrum as JSON: {e}")))
}
