//! Data sets: loading (CSV, .npy), validation, train/test split, and minibatch schedules.
//!
//! Errors that point into data count from 1: a CSV error names the file's line as an editor
//! numbers it, every other error names "row R, feature F (counting from 1)".

pub mod batches;
pub mod csv;
mod memory;
pub mod npy;
pub mod targets;
pub mod toy;

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

pub use batches::{BatchScheme, Batcher};
pub use csv::{load_csv, load_features, CsvOptions, LabelColumn};
pub use npy::{load_npy_pair, load_npy_pair_with, read_npy, write_npy_f32, NpyArray, NpyData};
pub use targets::{load_csv_targets, load_npy_targets, TargetColumn, Targets};
pub use toy::{generate as generate_toy, ToyKind, ToySpec};

use crate::error::{Error, Result};

/// "row R (counting from 1)" for the 0-based row index `i`.
pub fn row_text(i: usize) -> String {
    format!("row {} (counting from 1)", i + 1)
}

/// "row R, feature F (counting from 1)" for the 0-based flat index `i` into rows of `d` values.
pub fn row_feature_text(i: usize, d: usize) -> String {
    let d = d.max(1);
    format!("row {}, feature {} (counting from 1)", i / d + 1, i % d + 1)
}

/// An inferred class count (largest label + 1) above this must not exceed the row count: past
/// it a stray label (-1 stored unsigned, an ID column taken for the label) is likelier than a
/// real class, and the count would size the model's output layer.
const MAX_CLASSES_BEYOND_ROWS: usize = 1 << 16;

/// Refuses a class count inferred from `rows` rows whose largest label is implausibly large;
/// the message says how to insist (an explicit num_classes).
pub(crate) fn check_inferred_classes(classes: usize, rows: usize) -> std::result::Result<(), String> {
    if classes > MAX_CLASSES_BEYOND_ROWS && classes > rows {
        return Err(format!(
            "label {} implies {classes} classes but there are only {rows} rows; a label this large is \
             likely a mistake (set data.num_classes = {classes} if it is meant)",
            classes - 1
        ));
    }
    Ok(())
}

/// Names as one line can hold them: the first eight, then how many more; a name holding a
/// comma is quoted so that the list reads unambiguously.
pub fn listed(names: &[String]) -> String {
    let shown: Vec<String> =
        names.iter().take(8).map(|n| if n.contains(',') { format!("\"{n}\"") } else { n.clone() }).collect();
    match names.len() {
        0..=8 => shown.join(", "),
        n => format!("{}, … ({} more)", shown.join(", "), n - 8),
    }
}

/// Class `label` as people read it: its name among `names`, or its number.
pub fn class_name(names: Option<&[String]>, label: usize) -> String {
    match names.and_then(|n| n.get(label)) {
        Some(name) => name.clone(),
        None => label.to_string(),
    }
}

/// Rows of features with integer class labels, features row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    pub n: usize,
    pub d: usize,
    pub num_classes: usize,
    /// The name of each class when the file labels rows by name (label `i` is `class_names[i]`).
    pub class_names: Option<Vec<String>>,
    /// The features' names from a CSV header, for messages and plots.
    pub feature_names: Option<Vec<String>>,
    /// Real-valued targets (regression, `loss = "mse"`); None for class labels.
    pub targets: Option<Targets>,
}

impl Dataset {
    /// Checks shapes, finiteness and label range; `what` names the data in errors.
    pub fn new(x: Vec<f32>, labels: Vec<u32>, d: usize, num_classes: usize, what: &str) -> Result<Dataset> {
        let n = labels.len();
        if d == 0 || n.checked_mul(d) != Some(x.len()) {
            return Err(Error::Shape {
                what: what.to_string(),
                expected: format!("{n} rows × {d} features (d ≥ 1) = {} values", n.saturating_mul(d)),
                got: format!("{} values", x.len()),
            });
        }
        if num_classes == 0 {
            return Err(Error::Usage(format!("{what}: num_classes must be at least 1")));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            let bad = if x[i].is_nan() { "NaN" } else { "Inf" };
            return Err(Error::Usage(format!("{what}: {}: {bad} in data", row_feature_text(i, d))));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
            return Err(Error::Usage(format!(
                "{what}: {} has label {} but there are {num_classes} classes",
                row_text(i),
                labels[i]
            )));
        }
        Ok(Dataset { x, labels, n, d, num_classes, class_names: None, feature_names: None, targets: None })
    }

    /// Class `label` as people read it: its name, or its number.
    pub fn class_name(&self, label: usize) -> String {
        class_name(self.class_names.as_deref(), label)
    }

    /// The same description (widths, names) with no rows.
    fn clone_empty(&self) -> Dataset {
        Dataset {
            x: Vec::new(),
            labels: Vec::new(),
            n: 0,
            d: self.d,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            feature_names: self.feature_names.clone(),
            targets: self.targets.as_ref().map(|t| Targets { values: Vec::new(), k: t.k, names: t.names.clone() }),
        }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// A seeded shuffle of the rows; the first round(n·test_fraction) become the test set.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&test_fraction) {
            return Err(Error::Usage(format!("test_fraction must be in [0, 1), got {test_fraction}")));
        }
        let mut idx: Vec<usize> = (0..self.n).collect();
        if test_fraction > 0.0 {
            // With no test set the rows keep their file order (what in-order batching promises).
            idx.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        let n_test = (self.n as f64 * test_fraction).round() as usize;
        let (test, train) = idx.split_at(n_test);
        Ok((self.subset(train), self.subset(test)))
    }

    fn subset(&self, idx: &[usize]) -> Dataset {
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        self.gather(idx, &mut x, &mut labels);
        let targets = self.targets.as_ref().map(|t| t.subset(idx));
        Dataset { x, labels, n: idx.len(), targets, ..self.clone_empty() }
    }

    /// Copies rows `idx` into `x_out` and their labels into `y_out`.
    pub fn gather(&self, idx: &[usize], x_out: &mut Vec<f32>, y_out: &mut Vec<u32>) {
        x_out.clear();
        y_out.clear();
        for &i in idx {
            x_out.extend_from_slice(self.row(i));
            y_out.push(self.labels[i]);
        }
    }

    /// Multiplies every feature by `factor`.
    pub fn scale(&mut self, factor: f32) {
        self.x.iter_mut().for_each(|v| *v *= factor);
    }
}
