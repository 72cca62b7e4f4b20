//! CSV of numbers with one integer label column. Errors name the file, line and column.
//!
//! Deliberately simple: comma-separated, no quoting, blank lines skipped, surrounding spaces and
//! `\r` trimmed, an optional UTF-8 byte-order mark ignored.

use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

/// Which field of each row holds the class label. `Index` counts from 0.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum LabelColumn {
    #[default]
    Last,
    First,
    Index(usize),
    /// The column with this header name (the file needs a header).
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CsvOptions {
    pub label_column: LabelColumn,
    /// None: the first line is a header if any of its fields is not a number.
    pub has_header: Option<bool>,
    /// None: the largest label + 1.
    pub num_classes: Option<usize>,
    /// Skip rows with a NaN or infinite feature instead of refusing the file.
    pub drop_non_finite: bool,
}

/// Reads a CSV file whose rows are features plus one integer label column.
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::DataFile {
        file: path.to_path_buf(),
        message: format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
    })?;
    parse_csv(&text, path, opts)
}

fn err(path: &Path, line: usize, message: String) -> Error {
    Error::Data { file: path.to_path_buf(), line, message }
}

/// Parses CSV text; `path` is only used to name the source in errors.
pub fn parse_csv(text: &str, path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    if opts.num_classes == Some(0) {
        return Err(Error::Usage("num_classes must be at least 1".into()));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).peekable();
    let Some(&(first_line, first)) = lines.peek() else {
        return Err(Error::DataFile { file: path.to_path_buf(), message: "the file is empty".into() });
    };
    let header = opts.has_header.unwrap_or_else(|| first.split(',').any(|f| f.trim().parse::<f64>().is_err()));
    // Column names from the header, for error messages; the header also fixes the field count.
    let mut names: Vec<String> = Vec::new();
    let mut expected: Option<(usize, usize)> = None; // (fields, line that set it)
    if header {
        names = first.split(',').map(|f| f.trim().to_string()).collect();
        expected = Some((names.len(), first_line));
        lines.next();
    }
    let column = |col: usize| match names.get(col).filter(|s| !s.is_empty()) {
        Some(name) => format!("column {} ('{name}')", col + 1),
        None => format!("column {}", col + 1),
    };

    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let mut d = 0;
    for (line, text) in lines {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let (want, set_by) = *expected.get_or_insert((fields.len(), line));
        if fields.len() != want {
            let origin = if header && set_by == first_line { "the header on line" } else { "line" };
            return Err(err(
                path,
                line,
                format!("expected {want} fields, found {} ({origin} {set_by} has {want})", fields.len()),
            ));
        }
        if want < 2 {
            return Err(err(path, line, format!("found {want} field; a row needs at least one feature and a label")));
        }
        let label_at = match &opts.label_column {
            LabelColumn::Last => want - 1,
            LabelColumn::First => 0,
            LabelColumn::Index(i) if *i < want => *i,
            LabelColumn::Index(i) => {
                return Err(err(
                    path,
                    line,
                    format!("label column index {i} (counting from 0) is past the {want} fields"),
                ))
            }
            LabelColumn::Name(name) => match names.iter().position(|n| n == name) {
                Some(i) => i,
                None if !header => {
                    return Err(err(path, line, format!("label column '{name}' is named, but the file has no header")))
                }
                None => {
                    return Err(err(
                        path,
                        first_line,
                        format!("no column named '{name}' in the header (columns: {})", names.join(", ")),
                    ))
                }
            },
        };
        d = want - 1;
        let row_start = (x.len(), labels.len());
        let mut drop_row = false;
        for (col, field) in fields.iter().enumerate() {
            if field.is_empty() {
                return Err(err(path, line, format!("{}: empty field", column(col))));
            }
            let value: f64 =
                field.parse().map_err(|_| err(path, line, format!("{}: '{field}' is not a number", column(col))))?;
            if col == label_at {
                if !(value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64) {
                    return Err(err(
                        path,
                        line,
                        format!("{} (label): '{field}' is not a non-negative integer", column(col)),
                    ));
                }
                let label = value as u32;
                if let Some(k) = opts.num_classes {
                    if label as usize >= k {
                        return Err(err(
                            path,
                            line,
                            format!(
                                "{} (label): label {label} is out of range for {k} classes (0..={})",
                                column(col),
                                k - 1
                            ),
                        ));
                    }
                }
                labels.push(label);
            } else {
                if !value.is_finite() && opts.drop_non_finite {
                    drop_row = true;
                    continue;
                }
                if value.is_nan() {
                    return Err(err(
                        path,
                        line,
                        format!("{}: NaN in data (set data.non_finite = \"drop-row\" to skip such rows)", column(col)),
                    ));
                }
                if value.is_infinite() {
                    return Err(err(path, line, format!("{}: Inf in data ('{field}')", column(col))));
                }
                let v = value as f32;
                if !v.is_finite() {
                    return Err(err(path, line, format!("{}: {field} is too large for float32", column(col))));
                }
                x.push(v);
            }
        }
        if drop_row {
            x.truncate(row_start.0);
            labels.truncate(row_start.1);
        }
    }
    if labels.is_empty() {
        return Err(Error::DataFile { file: path.to_path_buf(), message: "no data rows (only a header)".into() });
    }
    let classes = opts.num_classes.unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
    Dataset::new(x, labels, d, classes, &path.display().to_string())
}

/// A CSV of features only (no label column), e.g. `predict`'s input: (values row-major, rows,
/// features). The header is detected as in `parse_csv`; a bad field names its line and column.
pub fn load_features(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rows = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).peekable();
    if let Some(&(_, first)) = rows.peek() {
        if first.split(',').any(|f| f.trim().parse::<f64>().is_err()) {
            rows.next();
        }
    }
    let (mut x, mut n, mut d) = (Vec::new(), 0, None);
    for (line, text) in rows {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let want = *d.get_or_insert(fields.len());
        if fields.len() != want {
            return Err(err(path, line, format!("expected {want} fields, found {}", fields.len())));
        }
        for (col, f) in fields.iter().enumerate() {
            let v: f32 =
                f.parse().map_err(|_| err(path, line, format!("column {}: '{f}' is not a number", col + 1)))?;
            if !v.is_finite() {
                return Err(err(path, line, format!("column {}: {v} in data", col + 1)));
            }
            x.push(v);
        }
        n += 1;
    }
    match d {
        Some(d) => Ok((x, n, d)),
        None => Err(Error::DataFile { file: path.to_path_buf(), message: "the file has no rows".into() }),
    }
}
