//! Built-in 2-D toy sets (spirals, XOR, circles, Gaussian blobs), seeded, for the browser page
//! and the CLI alike (`[data] generate = "circles"`).
//!
//! The same spec gives the same rows bit for bit on every platform, wasm32 included: the draws
//! come from `StdRng` (ChaCha12, platform-independent), the maths is f64 with `libm` for
//! ln/sin/cos/sqrt (std's may differ between platforms), and only the finished row is rounded
//! to f32.
//!
//! Rows are interleaved, not shuffled: row `i` has class `i % classes`, so the labels are
//! balanced (counts differ by at most one) and any prefix of the rows is too.

use std::f64::consts::TAU;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Deserialize;

use super::Dataset;
use crate::error::{Error, Result};

/// Which toy set to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToyKind {
    /// K arms winding once round the origin: arm k, at t ∈ (0, 1), is radius t at angle
    /// 2π(k/K + t).
    Spirals,
    /// Four Gaussian blobs centred at (±½, ±½); class 1 where the signs of x and y differ.
    Xor,
    /// Two concentric rings: class 0 the inner (radius ½), class 1 the outer (radius 1).
    Circles,
    /// K Gaussian blobs centred on the unit circle at angles 2πk/K.
    Blobs,
}

impl ToyKind {
    pub const ALL: [ToyKind; 4] = [ToyKind::Spirals, ToyKind::Xor, ToyKind::Circles, ToyKind::Blobs];

    pub fn name(self) -> &'static str {
        match self {
            ToyKind::Spirals => "spirals",
            ToyKind::Xor => "xor",
            ToyKind::Circles => "circles",
            ToyKind::Blobs => "blobs",
        }
    }

    /// Std of the added noise unless given: small beside each set's gap between classes (arms
    /// ⅓ apart radially, XOR's centres ½ from the axes, rings ½ apart, blob centres √3 apart at K = 3).
    pub fn default_noise(self) -> f64 {
        match self {
            ToyKind::Spirals => 0.03,
            ToyKind::Xor => 0.15,
            ToyKind::Circles => 0.08,
            ToyKind::Blobs => 0.25,
        }
    }

    /// Whether the number of classes is a parameter (spirals, blobs) or fixed at 2 (xor, circles).
    pub fn takes_classes(self) -> bool {
        matches!(self, ToyKind::Spirals | ToyKind::Blobs)
    }

    pub fn default_classes(self) -> usize {
        if self.takes_classes() {
            3
        } else {
            2
        }
    }

    /// The four names, for messages.
    pub fn names() -> String {
        ToyKind::ALL.map(ToyKind::name).join(", ")
    }
}

impl std::str::FromStr for ToyKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ToyKind> {
        ToyKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::Usage(format!("unknown toy data set '{s}': use one of {}", ToyKind::names())))
    }
}

impl std::fmt::Display for ToyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Default row count: enough for a clear picture, few enough to train in a second on the CPU.
pub const DEFAULT_POINTS: usize = 400;

/// The most rows a generated set may have: far past any 2-D lesson, and small enough (160 MB
/// of features and copies) that a browser tab can hold it.
pub const MAX_POINTS: usize = 10_000_000;

/// A toy set's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToySpec {
    pub kind: ToyKind,
    /// Total rows.
    pub points: usize,
    /// Std of the Gaussian noise added to each coordinate.
    pub noise: f64,
    /// Classes (spirals' arms, blobs); 2 for xor and circles.
    pub classes: usize,
    pub seed: u64,
}

impl ToySpec {
    /// `kind` with its defaults and seed 0.
    pub fn new(kind: ToyKind) -> ToySpec {
        ToySpec { kind, points: DEFAULT_POINTS, noise: kind.default_noise(), classes: kind.default_classes(), seed: 0 }
    }

    /// Why these parameters cannot make a set, naming the parameter as `data.<name>`.
    pub fn check(&self) -> std::result::Result<(), String> {
        let kind = self.kind;
        if !self.kind.takes_classes() && self.classes != 2 {
            return Err(format!(
                "data.classes: {kind} has 2 classes, got {}; only spirals and blobs take it",
                self.classes
            ));
        }
        if self.classes < 2 {
            return Err(format!("data.classes must be at least 2, got {}", self.classes));
        }
        if self.points < self.classes {
            return Err(format!(
                "data.points must be at least the {} classes (a row each), got {}",
                self.classes, self.points
            ));
        }
        if self.points > MAX_POINTS {
            return Err(format!("data.points must be at most {MAX_POINTS}, got {}", self.points));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(format!("data.noise must be a finite standard deviation ≥ 0, got {}", self.noise));
        }
        Ok(())
    }
}

/// The rows `spec` describes: 2 features ("x", "y"), class labels with names, interleaved.
pub fn generate(spec: &ToySpec) -> Result<Dataset> {
    spec.check().map_err(|m| Error::Usage(format!("generated {} data: {m}", spec.kind)))?;
    let (n, k) = (spec.points, spec.classes);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut x = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % k;
        // Row i is number j of its class's m rows.
        let (j, m) = (i / k, (n - class).div_ceil(k));
        let (cx, cy) = point(spec.kind, class, k, j, m, &mut rng);
        let (zx, zy) = normal_pair(&mut rng);
        x.push((cx + spec.noise * zx) as f32);
        x.push((cy + spec.noise * zy) as f32);
        labels.push(class as u32);
    }
    let mut set = Dataset::new(x, labels, 2, k, &format!("generated {} data", spec.kind))?;
    set.class_names = Some(class_names(spec.kind, k));
    set.feature_names = Some(vec!["x".into(), "y".into()]);
    Ok(set)
}

/// The noiseless position of row `j` of `m` in `class` (of `k`).
fn point(kind: ToyKind, class: usize, k: usize, j: usize, m: usize, rng: &mut StdRng) -> (f64, f64) {
    match kind {
        ToyKind::Spirals => {
            let t = (j as f64 + 0.5) / m as f64;
            on_circle(t, TAU * (class as f64 / k as f64 + t))
        }
        ToyKind::Xor => {
            // Rows alternate classes, and each class alternates its two quadrants.
            let (sx, sy) = match (class, j % 2) {
                (0, 0) => (1.0, 1.0),
                (0, _) => (-1.0, -1.0),
                (_, 0) => (1.0, -1.0),
                _ => (-1.0, 1.0),
            };
            (0.5 * sx, 0.5 * sy)
        }
        ToyKind::Circles => {
            let angle = TAU * rng.random::<f64>();
            on_circle(if class == 0 { 0.5 } else { 1.0 }, angle)
        }
        ToyKind::Blobs => on_circle(1.0, TAU * class as f64 / k as f64),
    }
}

fn on_circle(radius: f64, angle: f64) -> (f64, f64) {
    (radius * libm::cos(angle), radius * libm::sin(angle))
}

/// Two independent standard normal draws (Box–Muller), with libm's functions.
fn normal_pair(rng: &mut StdRng) -> (f64, f64) {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: the log is finite
    let u2: f64 = rng.random();
    let r = libm::sqrt(-2.0 * libm::log(u1));
    (r * libm::cos(TAU * u2), r * libm::sin(TAU * u2))
}

fn class_names(kind: ToyKind, k: usize) -> Vec<String> {
    match kind {
        ToyKind::Spirals => (1..=k).map(|a| format!("arm {a}")).collect(),
        ToyKind::Blobs => (1..=k).map(|b| format!("blob {b}")).collect(),
        ToyKind::Xor => vec!["same signs".into(), "opposite signs".into()],
        ToyKind::Circles => vec!["inner".into(), "outer".into()],
    }
}
