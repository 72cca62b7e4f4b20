//! `train --track-sharpness K`: the sharpness λ_max, the largest eigenvalue of the Hessian of
//! the mean training loss, at step 0 and every K optimizer steps (Cohen et al. 2021, "Gradient
//! descent on neural networks typically occurs at the edge of stability"). Gradient descent on
//! a quadratic is stable only while η·λ_max < 2, so each value is shown beside 2/η.
//!
//! The Hessian is `gradflow hessian`'s: over the whole training split, batch norm in training
//! mode with the run's batch, products on the device the network trains on. The estimate is the
//! largest Ritz value of `STEPS` Lanczos steps (full reorthogonalisation) from one fixed
//! Rademacher vector: by Cauchy interlacing it never exceeds λ_max (up to the products'
//! rounding) and climbs towards it with each step, quickly for a top eigenvalue set apart from
//! the rest, as a network's is. A measurement reads the parameters back and changes nothing.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::Config;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::exec::hessian::Hessian;
use crate::exec::Network;
use crate::spectrum::{lanczos, SymmetricOperator};

/// Lanczos steps per measurement: 20 Hessian-vector products, enough for the top eigenvalue of
/// the models this engine trains, few enough to measure often.
pub const STEPS: usize = 20;

/// The start vector's seed (fixed: every measurement starts from the same vector).
const SEED: u64 = 0x5eed;

/// One measurement: the optimizer step, λ_max there (NaN when it could not be measured) and
/// 2/η for the next step's learning rate η.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub step: usize,
    pub lambda_max: f64,
    pub two_over_lr: f64,
}

pub struct Sharpness {
    every: usize,
    hessian: Hessian,
    start: Vec<f64>,
    /// Every measurement so far, for the plot and the epoch lines.
    pub measured: Vec<Measured>,
}

impl Sharpness {
    /// A tracker measuring every `every` steps the Hessian of `net`'s loss over `train_set`.
    pub fn new(every: usize, config: &Config, net: &mut dyn Network, train_set: &Dataset) -> Result<Sharpness> {
        if every == 0 {
            return Err(Error::Usage("--track-sharpness must be at least 1 (measure every K steps)".into()));
        }
        let model = net.model().clone();
        // As `gradflow hessian`: batch norm sees the run's batches; without it batching is moot.
        let batch =
            if model.has_batch_norm() { super::max_rows(config, train_set.n) } else { train_set.n.clamp(1, 4096) };
        let mut hessian = Hessian::new(model, config.model.loss, &net.params()?, train_set, batch)?;
        if let Some(gpu) = net.shared_gpu() {
            hessian.use_gpu(gpu)?;
        }
        let mut rng = StdRng::seed_from_u64(SEED);
        let start = (0..hessian.dim()).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
        Ok(Sharpness { every, hessian, start, measured: Vec::new() })
    }

    /// Steps between measurements.
    pub fn every(&self) -> usize {
        self.every
    }

    /// Whether step `step` is measured.
    pub fn due(&self, step: usize) -> bool {
        step.is_multiple_of(self.every)
    }

    /// λ_max at `net`'s parameters now, recorded. NaN (said in a warning) when the parameters or
    /// the products are not finite: the training loop names that divergence itself.
    pub fn measure(&mut self, net: &mut dyn Network) -> Result<Measured> {
        let params = net.params()?;
        let lambda_max = if params.iter().all(|p| p.is_finite()) {
            let flat: Vec<f64> = params.iter().map(|&v| v as f64).collect();
            self.hessian.set_point(&self.hessian.pack(&flat))?;
            largest_eigenvalue(&mut self.hessian, &self.start).unwrap_or_else(|e| {
                crate::warn!("warning: sharpness at step {} not measured: {e}", net.steps());
                f64::NAN
            })
        } else {
            f64::NAN
        };
        let m = Measured { step: net.steps(), lambda_max, two_over_lr: 2.0 / net.lr() as f64 };
        self.measured.push(m);
        Ok(m)
    }

    /// The latest measurement, for the epoch line.
    pub fn latest(&self) -> Option<Measured> {
        self.measured.last().copied()
    }
}

/// The largest Ritz value of `STEPS` Lanczos steps of `op` from `start`: a lower bound on the
/// largest eigenvalue, exact once the Krylov space is invariant.
pub fn largest_eigenvalue(op: &mut dyn SymmetricOperator, start: &[f64]) -> Result<f64> {
    let (_, top) = lanczos(op, start, STEPS)?.extremes(1);
    top.last().copied().ok_or_else(|| Error::Usage("Lanczos made no step (an operator of dimension 0)".into()))
}

/// Why 2/η is not this optimizer's threshold, when it is not: it is that of plain gradient
/// descent (SGD without momentum) on a quadratic.
pub fn threshold_caveat(optimizer: &crate::optim::Optimizer) -> Option<&'static str> {
    match optimizer {
        crate::optim::Optimizer::Sgd(s) if s.momentum.value() == 0.0 => None,
        crate::optim::Optimizer::Sgd(_) => {
            Some("2/η is plain gradient descent's threshold; heavy-ball momentum β is stable up to (2 + 2β)/η")
        }
        _ => Some(
            "2/η is plain gradient descent's threshold; an adaptive optimizer's concerns its preconditioned Hessian",
        ),
    }
}

/// A measurement as the epoch line says it: `λmax 12.34 (2/η 20.00)`.
pub fn describe(m: &Measured) -> String {
    format!("λmax {} (2/η {})", fmt_value(m.lambda_max), fmt_value(m.two_over_lr))
}

/// Four decimals in the usual range, else scientific.
fn fmt_value(x: f64) -> String {
    if x == 0.0 || (1e-2..1e5).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}
