//! Real-valued targets for regression: k values per row, compared with the network's k outputs
//! by the mean squared error. A regression data set has no classes: its `labels` are all 0 and
//! `num_classes` is 1, only so that code shared with classification keeps its shapes; nothing
//! reports accuracy or a confusion matrix for it.

use super::{row_text, Dataset};
use crate::error::{Error, Result};

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
        match self.names.as_ref().and_then(|n| n.get(j)) {
            Some(name) => name.clone(),
            None => format!("target {}", j + 1),
        }
    }

    /// Every target's name.
    pub fn all_names(&self) -> Vec<String> {
        (0..self.k).map(|j| self.name(j)).collect()
    }

    /// The rows `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Targets {
        let values = idx.iter().flat_map(|&i| self.row(i).iter().copied()).collect();
        Targets { values, k: self.k, names: self.names.clone() }
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
        let rows = if k == 0 { 0 } else { targets.len() / k };
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
