//! CSV of numbers with one integer label column. Errors name the file, line and column.

use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum LabelColumn {
    #[default]
    Last,
    First,
    Index(usize),
}

#[derive(Clone, Debug, Default)]
pub struct CsvOptions {
    pub label_column: LabelColumn,
    /// None: a first line with a non-numeric field is a header.
    pub has_header: Option<bool>,
    /// None: the largest label + 1.
    pub num_classes: Option<usize>,
}

pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    parse_csv(&text, path, opts)
}

fn err(path: &Path, line: usize, message: String) -> Error {
    Error::Data { file: path.to_path_buf(), line, message }
}

pub fn parse_csv(text: &str, path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).peekable();
    let first = lines.peek().map(|(_, l)| *l).ok_or_else(|| Error::DataFile { file: path.to_path_buf(), message: "the file is empty".into() })?;
    let header = opts.has_header.unwrap_or_else(|| first.split(',').any(|f| f.trim().parse::<f64>().is_err()));
    if header {
        lines.next();
    }
    let mut fields_per_row = None;
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let mut d = 0;
    for (line, text) in lines {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let expected = *fields_per_row.get_or_insert(fields.len());
        if fields.len() != expected {
            return Err(err(path, line, format!("expected {expected} fields, found {}", fields.len())));
        }
        if expected < 2 {
            return Err(err(path, line, "a row needs at least one feature and a label".into()));
        }
        let label_at = match opts.label_column {
            LabelColumn::Last => expected - 1,
            LabelColumn::First => 0,
            LabelColumn::Index(i) if i < expected => i,
            LabelColumn::Index(i) => return Err(err(path, line, format!("label column {i} is past the {expected} fields"))),
        };
        d = expected - 1;
        for (col, field) in fields.iter().enumerate() {
            let value: f64 = field
                .parse()
                .map_err(|_| err(path, line, format!("column {}: '{field}' is not a number", col + 1)))?;
            if col == label_at {
                if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
                    return Err(err(path, line, format!("column {} (label): '{field}' is not a non-negative integer", col + 1)));
                }
                labels.push(value as u32);
            } else {
                if !value.is_finite() {
                    return Err(err(path, line, format!("column {}: {field} in data (NaN and Inf are not allowed)", col + 1)));
                }
                x.push(value as f32);
            }
        }
        if let Some(k) = opts.num_classes {
            if let Some(&l) = labels.last() {
                if l as usize >= k {
                    return Err(err(path, line, format!("label {l} is out of range for {k} classes (0..{})", k - 1)));
                }
            }
        }
    }
    if labels.is_empty() {
        return Err(Error::DataFile { file: path.to_path_buf(), message: "no data rows".into() });
    }
    let classes = opts.num_classes.unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
    Dataset::new(x, labels, d, classes, &path.display().to_string())
}
