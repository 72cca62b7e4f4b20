//! Real-valued targets for regression: k values per row, compared with the network's k outputs
//! by the mean squared error. A regression data set has no classes: its `labels` are all 0 and
//! `num_classes` is 1, only so that code shared with classification keeps its shapes; nothing
//! reports accuracy or a confusion matrix for it.

use std::path::Path;

use super::{row_text, Dataset};
use crate::error::{Error, Result};

/// A target column of a CSV: its header name, or its number counting from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetColumn {
    Name(String),
    Number(usize),
}

impl std::fmt::Display for TargetColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetColumn::Name(n) => write!(f, "'{n}'"),
            TargetColumn::Number(c) => write!(f, "column {c}"),
        }
    }
}

/// A CSV of numbers whose `columns` are the targets and the rest the features (in file order).
/// A column named that the header lacks, or numbered past the row, is an error listing what the
/// file has; a NaN or ±Inf names its line and column.
pub fn load_csv_targets(path: &Path, columns: &[TargetColumn]) -> Result<Dataset> {
    let (values, n, width, names) = super::csv::load_table(path)?;
    let bad = |message: String| Error::DataFile { file: path.to_path_buf(), message };
    let mut at = Vec::with_capacity(columns.len());
    for c in columns {
        let i = match (c, &names) {
            (TargetColumn::Name(name), Some(names)) => names.iter().position(|n| n == name).ok_or_else(|| {
                bad(format!("no column named '{name}' for data.targets; the header has {}", super::listed(names)))
            })?,
            (TargetColumn::Name(name), None) => {
                return Err(bad(format!(
                    "data.targets names '{name}' but the file has no header: give column numbers (from 1)"
                )))
            }
            (TargetColumn::Number(k), _) if (1..=width).contains(k) => k - 1,
            (TargetColumn::Number(k), _) => {
                return Err(bad(format!("data.targets: column {k} is not among the file's {width} columns (from 1)")))
            }
        };
        if at.contains(&i) {
            return Err(bad(format!("data.targets names column {c} twice")));
        }
        at.push(i);
    }
    if at.is_empty() || at.len() >= width {
        return Err(bad(format!(
            "data.targets takes {} of the file's {width} columns; at least one must be a target and one a feature",
            at.len()
        )));
    }
    let features: Vec<usize> = (0..width).filter(|i| !at.contains(i)).collect();
    let (mut x, mut y) = (Vec::with_capacity(n * features.len()), Vec::with_capacity(n * at.len()));
    for row in values.chunks(width) {
        x.extend(features.iter().map(|&i| row[i]));
        y.extend(at.iter().map(|&i| row[i]));
    }
    let what = path.display().to_string();
    let mut targets = Targets::new(y, at.len(), n, &what)?;
    targets.names = Some(at.iter().map(|&i| column_name(&names, i)).collect());
    let mut data = Dataset::regression(x, features.len(), targets, &what)?;
    data.feature_names = names.is_some().then(|| features.iter().map(|&i| column_name(&names, i)).collect());
    Ok(data)
}

/// Column `i`'s header name, or "column I" from 1.
fn column_name(names: &Option<Vec<String>>, i: usize) -> String {
    names.as_ref().and_then(|n| n.get(i)).cloned().unwrap_or_else(|| format!("column {}", i + 1))
}

/// Inputs `x_path` (2-D, float or integer) and real targets `y_path` (float, shape [n] or [n, k]).
pub fn load_npy_targets(x_path: &Path, y_path: &Path) -> Result<Dataset> {
    let (x, n, d) = super::npy::load_npy_inputs(x_path)?;
    // The inputs' own NaN/Inf is named against their file, before the targets'.
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::DataFile {
            file: x_path.to_path_buf(),
            message: format!(
                "{}: {} in data",
                super::row_feature_text(i, d),
                if x[i].is_nan() { "NaN" } else { "Inf" }
            ),
        });
    }
    let ya = super::read_npy(y_path)?;
    let bad = |message: String| Error::DataFile { file: y_path.to_path_buf(), message };
    let k = match ya.shape[..] {
        [m] if m == n => 1,
        [m, k] if m == n => k,
        _ => {
            return Err(bad(format!(
                "targets must be [{n}] or [{n}, k] (as the inputs' rows), got shape {:?}",
                ya.shape
            )))
        }
    };
    let y: Vec<f32> = match ya.data {
        super::NpyData::F32(v) => v,
        super::NpyData::F64(v) => v.into_iter().map(|v| v as f32).collect(),
        other => return Err(bad(format!("targets must be float32 or float64, got {}", other.dtype_name()))),
    };
    let what = y_path.display().to_string();
    Dataset::regression(x, d, Targets::new(y, k, n, &what)?, &what)
}

/// The targets of a data set: `k` values per row, row-major, and their names (a CSV header's).
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    pub values: Vec<f32>,
    pub k: usize,
    pub names: Option<Vec<String>>,
}

impl Targets {
    /// Checks `values` holds `rows` rows of `k` finite values; `what` names the data in errors.
    pub fn new(values: Vec<f32>, k: usize, rows: usize, what: &str) -> Result<Targets> {
        if k == 0 || rows.checked_mul(k) != Some(values.len()) {
            return Err(Error::Shape {
                what: format!("{what} targets"),
                expected: format!("{rows} rows × {k} targets (k ≥ 1) = {} values", rows.saturating_mul(k)),
                got: format!("{} values", values.len()),
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let bad = if values[i].is_nan() { "NaN" } else { "Inf" };
            return Err(Error::Usage(format!(
                "{what}: {}, target {} (counting from 1): {bad} in targets",
                row_text(i / k),
                i % k + 1
            )));
        }
        Ok(Targets { values, k, names: None })
    }

    /// Row `i`'s k targets.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.k..(i + 1) * self.k]
    }

    /// Target `j`'s name: from the header, or "target J" counting from 1.
    pub fn name(&self, j: usize) -> String {
        Targets::name_in(self.names.as_deref(), j)
    }

    /// Target `j`'s name among `names` (a header's, a checkpoint's), or "target J" from 1: the
    /// one rule for every place that names a target.
    pub fn name_in(names: Option<&[String]>, j: usize) -> String {
        names.and_then(|n| n.get(j)).cloned().unwrap_or_else(|| format!("target {}", j + 1))
    }

    /// Every target's name.
    pub fn all_names(&self) -> Vec<String> {
        (0..self.k).map(|j| self.name(j)).collect()
    }

    /// The rows `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Targets {
        Targets { values: self.rows_of(idx.iter().copied()), k: self.k, names: self.names.clone() }
    }

    /// The rows `idx` (a batch's), one after another: k values each.
    pub fn rows_of(&self, idx: impl IntoIterator<Item = usize>) -> Vec<f32> {
        idx.into_iter().flat_map(|i| self.row(i).iter().copied()).collect()
    }
}

impl Dataset {
    /// A regression data set: `targets.len() / k` rows of `d` features (`x` row-major) with `k`
    /// real targets each (row-major). Errors name the shape, or the row and target/feature
    /// holding a NaN or ±Inf.
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// let data = Dataset::from_rows_with_targets(&[0.0, 1.0, 2.0], 1, &[1.0, 3.0, 5.0], 1).unwrap();
    /// assert_eq!((data.n, data.d, data.targets.as_ref().unwrap().k), (3, 1, 1));
    /// let nan = Dataset::from_rows_with_targets(&[0.0, 1.0], 1, &[1.0, f32::NAN], 1).unwrap_err();
    /// assert_eq!(nan.to_string(), "data: row 2 (counting from 1), target 1 (counting from 1): NaN in targets");
    /// ```
    pub fn from_rows_with_targets(x: &[f32], d: usize, targets: &[f32], k: usize) -> Result<Dataset> {
        let rows = targets.len().checked_div(k).unwrap_or(0);
        let targets = Targets::new(targets.to_vec(), k, rows, "data")?;
        Dataset::regression(x.to_vec(), d, targets, "data")
    }

    /// A regression data set from checked targets: labels all 0, one "class".
    pub fn regression(x: Vec<f32>, d: usize, targets: Targets, what: &str) -> Result<Dataset> {
        let n = targets.values.len() / targets.k.max(1);
        let mut data = Dataset::new(x, vec![0; n], d, 1, what)?;
        data.targets = Some(targets);
        Ok(data)
    }

    /// Whether the rows carry real targets (regression) rather than class labels.
    pub fn is_regression(&self) -> bool {
        self.targets.is_some()
    }
}
