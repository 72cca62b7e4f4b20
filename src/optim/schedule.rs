//! Learning-rate schedules as a factor on every group's base rate, by optimizer step (0-based):
//! the factor goes to the kernel through its uniform, so nothing is rebuilt per step.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Constant,
    /// × gamma every `every` steps (torch StepLR, counted in steps).
    Step { every: u32, gamma: f64 },
    /// × gamma every step (torch ExponentialLR).
    Exponential { gamma: f64 },
    /// Linear warm-up from 0 over `warmup` steps, then cosine from 1 down to `min_factor` at `total` steps.
    Cosine {
        #[serde(default)]
        warmup: u32,
        total: u32,
        #[serde(default)]
        min_factor: f64,
    },
    /// Goodfellow et al. (2016, §8.3.1): ε_k = (1 − k/τ)·ε_0 + (k/τ)·ε_τ for k ≤ τ, then ε_τ;
    /// `final_factor` is ε_τ / ε_0.
    LinearDecay { tau: u32, final_factor: f64 },
}

impl Schedule {
    /// Refuses schedules that would stop, reverse or explode the learning rate: a zero period,
    /// a non-positive or non-finite gamma, warm-up past the end, factors outside [0, 1] (torch's
    /// LinearLR wording where it has one). Messages name the `train.schedule` field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive_steps = |field: &str, v: u32| {
            if v >= 1 {
                Ok(())
            } else {
                Err(format!("{field} must be a positive number of steps, got {v}"))
            }
        };
        let gamma_ok = |g: f64| {
            if g > 0.0 && g.is_finite() {
                Ok(())
            } else {
                Err(format!("gamma must be a positive finite factor, got {g}"))
            }
        };
        let unit = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{field}: Ending multiplicative factor expected to be between 0 and 1, got {v}"))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, gamma } => {
                positive_steps("every", every)?;
                gamma_ok(gamma)
            }
            Schedule::Exponential { gamma } => gamma_ok(gamma),
            Schedule::Cosine { warmup, total, min_factor } => {
                positive_steps("total", total)?;
                if warmup > total {
                    return Err(format!("warmup ({warmup} steps) must not exceed total ({total} steps)"));
                }
                unit("min_factor", min_factor)
            }
            Schedule::LinearDecay { tau, final_factor } => {
                positive_steps("tau", tau)?;
                unit("final_factor", final_factor)
            }
        }
    }

    /// The config's `type` of this schedule.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Exponential { .. } => "exponential",
            Schedule::Cosine { .. } => "cosine",
            Schedule::LinearDecay { .. } => "linear-decay",
        }
    }

    /// The factor at optimizer step `k` (0 for the first step).
    pub fn factor(&self, k: u32) -> f64 {
        let k = k as f64;

        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => gamma.powi((k as u32 / every.max(1)) as i32),
            Schedule::Exponential { gamma } => gamma.powf(k),
            Schedule::Cosine { warmup, total, min_factor } => {
                let (w, t, m) = (warmup as f64, total.max(1) as f64, min_factor);
                if k < w {
                    (k + 1.0) / w
                } else {
                    let progress = ((k - w) / (t - w).max(1.0)).min(1.0);
                    m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            Schedule::LinearDecay { tau, final_factor } => {
                let a = (k / tau.max(1) as f64).min(1.0);
                (1.0 - a) + a * final_factor
            }
        }
    }
}
