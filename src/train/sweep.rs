//! Many runs of one configuration: a grid of settings, each trained from several seeds
//! (`gradflow sweep`, `gradflow compare --seeds`), and per setting the mean and spread of the
//! final numbers and the mean curves.
//!
//! A setting is a list of `--set` overrides (`optimizer.lr=0.01`), so each run's config is
//! read and checked exactly as `gradflow train --set …` would read it. Seed `s` (from 0) adds
//! `s` to both the initial-weight seed and the batch-order seed. The runs go one after another
//! through the ordinary training path.

use crate::config::Config;
use crate::error::{Error, Result};

use super::compare::{Point, Run};

/// One `--grid KEY=[v1, v2, …]`: a config key and its values as TOML text.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// Reads `KEY=[v1, v2, …]` (a TOML array; a single value is an axis of one).
    pub fn parse(spec: &str) -> Result<Axis> {
        let bad = |why: &str| Error::Usage(format!("--grid '{spec}': {why}; write KEY=[v1, v2, …]"));
        let (key, values) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad("no key before '='"));
        }
        let table: toml::Table =
            toml::from_str(&format!("v = {}", values.trim())).map_err(|e| bad(e.message().trim()))?;
        // Floats as Rust's shortest round-trip form (1e30, not thirty-one digits).
        let text = |v: &toml::Value| match v {
            toml::Value::Float(f) => format!("{f:?}"),
            other => other.to_string(),
        };
        let values = match &table["v"] {
            toml::Value::Array(a) if a.is_empty() => return Err(bad("an empty list")),
            toml::Value::Array(a) => a.iter().map(text).collect(),
            one => vec![text(one)],
        };
        Ok(Axis { key: key.to_string(), values })
    }
}

/// One point of a grid: its label and its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub label: String,
    pub overrides: Vec<String>,
}

/// Every combination of the axes' values, the first axis varying slowest. Labels name each key
/// by its last part (`lr=0.01 momentum=0.9`) where that is unambiguous.
pub fn settings(axes: &[Axis]) -> Vec<Setting> {
    let short = |key: &str| key.rsplit('.').next().unwrap_or(key).to_string();
    let unique = axes.iter().all(|a| axes.iter().filter(|b| short(&b.key) == short(&a.key)).count() == 1);
    let mut out = vec![Setting { label: String::new(), overrides: Vec::new() }];
    for axis in axes {
        let name = if unique { short(&axis.key) } else { axis.key.clone() };
        out = out
            .into_iter()
            .flat_map(|s| {
                let name = name.clone();
                axis.values.iter().map(move |v| {
                    let o = format!("{}={v}", axis.key);
                    let l = format!("{name}={v}");
                    let label = if s.label.is_empty() { l } else { format!("{} {l}", s.label) };
                    let mut overrides = s.overrides.clone();
                    overrides.push(o);
                    Setting { label, overrides }
                })
            })
            .collect();
    }
    out
}

/// The overrides that make seed `seed` of `base`: both seeds moved by `seed`.
pub fn seed_overrides(base: &Config, seed: usize) -> Vec<String> {
    vec![
        format!("model.init_seed={}", base.model.init_seed + seed as u64),
        format!("train.seed={}", base.train.seed + seed as u64),
    ]
}

/// Mean and sample standard deviation (0 for one value) of finite values; NaN when none are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let n = v.len() as f64;
        if v.is_empty() {
            return Spread { mean: f64::NAN, sd: f64::NAN };
        }
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        Spread { mean, sd }
    }
}

/// One setting's runs, summarised.
#[derive(Clone, Debug)]
pub struct Summary {
    pub label: String,
    pub runs: usize,
    /// Runs that diverged (left out of the spreads).
    pub diverged: usize,
    pub train_loss: Spread,
    pub train_accuracy: Spread,
    pub test_loss: Spread,
    pub test_accuracy: Spread,
}

impl Summary {
    pub fn of(label: &str, runs: &[Run]) -> Summary {
        let last: Vec<Point> = runs.iter().filter(|r| r.diverged.is_none()).map(Run::last).collect();
        let spread = |f: fn(&Point) -> f64| Spread::of(last.iter().map(f));
        Summary {
            label: label.to_string(),
            runs: runs.len(),
            diverged: runs.iter().filter(|r| r.diverged.is_some()).count(),
            train_loss: spread(|p| p.train_loss),
            train_accuracy: spread(|p| p.train_accuracy),
            test_loss: spread(|p| p.test_loss),
            test_accuracy: spread(|p| p.test_accuracy),
        }
    }
}

/// The summaries as a text table: mean ± standard deviation over each setting's seeds.
pub fn table(summaries: &[Summary]) -> String {
    let width = summaries.iter().map(|s| s.label.len()).max().unwrap_or(0).max(7);
    let mut out = format!(
        "{:<width$}  runs  {:>17}  {:>15}  {:>17}  {:>15}\n",
        "setting", "train loss", "train acc %", "test loss", "test acc %"
    );
    let loss = |s: Spread| format!("{:.4} ± {:.4}", s.mean, s.sd);
    // Real targets (regression) have no accuracy.
    let acc = |s: Spread| {
        if s.mean.is_nan() {
            "—".into()
        } else {
            format!("{:.1} ± {:.1}", 100.0 * s.mean, 100.0 * s.sd)
        }
    };
    for s in summaries {
        let runs = if s.diverged > 0 { format!("{}/{}", s.runs - s.diverged, s.runs) } else { s.runs.to_string() };
        out += &format!(
            "{:<width$}  {runs:>4}  {:>17}  {:>15}  {:>17}  {:>15}\n",
            s.label,
            loss(s.train_loss),
            acc(s.train_accuracy),
            loss(s.test_loss),
            acc(s.test_accuracy)
        );
    }
    out
}

/// A run whose every point is the mean of `runs`' points at that epoch (their curves averaged),
/// over the runs that did not diverge (over all when every one did).
pub fn mean_run(label: &str, runs: &[Run]) -> Run {
    let finished: Vec<&Run> = runs.iter().filter(|r| r.diverged.is_none()).collect();
    let kept: Vec<&Run> = if finished.is_empty() { runs.iter().collect() } else { finished };
    let epochs = kept.iter().map(|r| r.points.len()).min().unwrap_or(0);
    let mean = |i: usize, f: fn(&Point) -> f64| Spread::of(kept.iter().map(|r| f(&r.points[i]))).mean;
    let points = (0..epochs)
        .map(|i| Point {
            epoch: kept[0].points[i].epoch,
            train_loss: mean(i, |p| p.train_loss),
            train_accuracy: mean(i, |p| p.train_accuracy),
            test_loss: mean(i, |p| p.test_loss),
            test_accuracy: mean(i, |p| p.test_accuracy),
        })
        .collect();
    Run {
        label: label.to_string(),
        device: runs.first().map_or_else(String::new, |r| r.device.clone()),
        points,
        seconds: runs.iter().map(|r| r.seconds).sum(),
        samples: runs.iter().map(|r| r.samples).sum(),
        diverged: None,
    }
}

/// "N runs, … samples/s in all": every run's training rows over the runs' training time
/// (evaluations not counted).
pub fn throughput_line(runs: &[Run]) -> String {
    let samples: usize = runs.iter().map(|r| r.samples).sum();
    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    format!(
        "{} runs, {:.0} samples/s in all ({samples} samples in {seconds:.2} s of training)",
        runs.len(),
        samples as f64 / seconds.max(1e-9)
    )
}
