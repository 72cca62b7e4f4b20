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
