//! Data sets from memory: a flat row-major buffer (what `ndarray`'s `as_slice`, a NumPy array's
//! buffer or a `Vec<f32>` hold) or a list of rows, with labels of any integer type. The same
//! checks as a file's rows: shapes, NaN/Inf, labels in range, each an error naming the row.

use super::{check_inferred_classes, row_text, Dataset};
use crate::error::{Error, Result};

/// What the in-memory constructors call the data in their errors.
const WHAT: &str = "data";

impl Dataset {
    /// A data set of `labels.len()` rows of `n_features` values each, `x` row-major; the class
    /// count is the largest label + 1.
    ///
    /// Labels may be any integer type (`u8`, `i32`, `i64`, `usize`, …); a negative one is an
    /// error. So are `x.len() != labels.len() · n_features`, NaN or ±Inf in `x`, and no rows.
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// // XOR: four rows of two features.
    /// let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    /// let data = Dataset::from_rows(&x, 2, &[0, 1, 1, 0])?;
    /// assert_eq!((data.n, data.d, data.num_classes), (4, 2, 2));
    /// assert_eq!(data.row(2), [1.0, 0.0]);
    ///
    /// // Mistakes are errors that say what is wrong, never panics.
    /// let short = Dataset::from_rows(&x[..7], 2, &[0, 1, 1, 0]).unwrap_err();
    /// assert!(short.to_string().contains("8 values"), "{short}");
    /// let nan = Dataset::from_rows(&[0.0, f32::NAN], 2, &[0]).unwrap_err();
    /// assert_eq!(nan.to_string(), "data: row 1, feature 2 (counting from 1): NaN in data");
    /// assert!(Dataset::from_rows(&x, 2, &[0, 1, -1, 0]).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_rows<L>(x: &[f32], n_features: usize, labels: &[L]) -> Result<Dataset>
    where
        L: Copy + TryInto<u32> + std::fmt::Display,
    {
        let labels = convert_labels(labels)?;
        let classes = labels.iter().max().map_or(0, |&l| l as usize + 1);
        check_inferred_classes(classes, labels.len()).map_err(|m| Error::Usage(format!("{WHAT}: {m}")))?;
        Dataset::from_vecs(x.to_vec(), n_features, labels, classes)
    }

    /// [`from_rows`](Self::from_rows) with the class count given: labels must be below
    /// `num_classes` (a class absent from this set, e.g. a test split, still counts).
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// let data = Dataset::from_rows_with_classes(&[0.5, 1.5], 1, &[0u8, 1], 3).unwrap();
    /// assert_eq!(data.num_classes, 3);
    /// let err = Dataset::from_rows_with_classes(&[0.5, 1.5], 1, &[0u8, 3], 3).unwrap_err();
    /// assert_eq!(err.to_string(), "data: row 2 (counting from 1) has label 3 but there are 3 classes");
    /// ```
    pub fn from_rows_with_classes<L>(x: &[f32], n_features: usize, labels: &[L], num_classes: usize) -> Result<Dataset>
    where
        L: Copy + TryInto<u32> + std::fmt::Display,
    {
        Dataset::from_vecs(x.to_vec(), n_features, convert_labels(labels)?, num_classes)
    }

    /// A data set from a list of rows (`&[[f32; D]]`, `&[Vec<f32>]`, …), all of one length;
    /// the class count is the largest label + 1. A row of another length is an error naming it.
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// let data = Dataset::from_nested(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], &[0, 1, 1, 0])?;
    /// assert_eq!((data.n, data.d), (4, 2));
    /// let ragged = Dataset::from_nested(&[vec![0.0, 0.0], vec![1.0]], &[0, 1]).unwrap_err();
    /// assert!(ragged.to_string().contains("row 2"), "{ragged}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_nested<R, L>(rows: &[R], labels: &[L]) -> Result<Dataset>
    where
        R: AsRef<[f32]>,
        L: Copy + TryInto<u32> + std::fmt::Display,
    {
        let d = rows.first().map_or(0, |r| r.as_ref().len());
        if let Some(i) = rows.iter().position(|r| r.as_ref().len() != d) {
            return Err(Error::Shape {
                what: format!("{WHAT}: {}", row_text(i)),
                expected: format!("{d} features (as row 1)"),
                got: rows[i].as_ref().len().to_string(),
            });
        }
        if rows.len() != labels.len() {
            return Err(Error::Shape {
                what: format!("{WHAT}: labels"),
                expected: format!("one per row, {}", rows.len()),
                got: labels.len().to_string(),
            });
        }
        let x: Vec<f32> = rows.iter().flat_map(|r| r.as_ref().iter().copied()).collect();
        Dataset::from_rows(&x, d, labels)
    }

    /// The checks every in-memory constructor shares; `Dataset::new` does the rest.
    fn from_vecs(x: Vec<f32>, d: usize, labels: Vec<u32>, num_classes: usize) -> Result<Dataset> {
        if labels.is_empty() {
            return Err(Error::Usage(format!("{WHAT}: no rows (no labels given)")));
        }
        if d == 0 {
            return Err(Error::Usage(format!("{WHAT}: n_features must be at least 1")));
        }
        Dataset::new(x, labels, d, num_classes, WHAT)
    }
}

/// Labels as the u32 class indices the executors use; a negative or too large one is an error.
fn convert_labels<L>(labels: &[L]) -> Result<Vec<u32>>
where
    L: Copy + TryInto<u32> + std::fmt::Display,
{
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            l.try_into().map_err(|_| {
                Error::Usage(format!("{WHAT}: {} has label {l}, not a class index (0, 1, 2, …)", row_text(i)))
            })
        })
        .collect()
}
