//! CSV of numbers with one label column (class numbers, or class names). Errors name the file, the line (as an editor
//! numbers it, from 1) and the column (from 1).
//!
//! Comma-separated, blank lines skipped, surrounding spaces and `\r` trimmed, an optional UTF-8
//! byte-order mark ignored. A field may be quoted as RFC 4180 writes it (`"1.5"`, `"a ""b"""`):
//! spreadsheets, R's write.csv and pandas' QUOTE_ALL quote fields, and the quotes are removed.
//! A quoted field cannot span lines. Files separated by `;`, tabs or spaces are refused with a
//! message naming the separator.

use std::borrow::Cow;
use std::path::Path;

use super::{check_inferred_classes, Dataset};
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

impl LabelColumn {
    /// The column a person typed in a text field: "last", "first", a 0-based index (digits
    /// only), or a header name; surrounding spaces ignored. (A config's TOML tells an index
    /// from a name by its type instead: `label_column = 3` against `"3"`.)
    pub fn from_text(text: &str) -> LabelColumn {
        match text.trim() {
            "" | "last" => LabelColumn::Last,
            "first" => LabelColumn::First,
            s if s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map(LabelColumn::Index).unwrap_or_else(|_| LabelColumn::Name(s.to_string()))
            }
            s => LabelColumn::Name(s.to_string()),
        }
    }
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
    /// The classes by name, when known (a test file, data for a trained model): every label must
    /// be one of them, and label `i` is `class_names[i]`.
    pub class_names: Option<Vec<String>>,
}

/// Reads a CSV file whose rows are features plus one label column (class numbers or names).
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    parse_csv(&read_text(path)?, path, opts)
}

/// The file as UTF-8 text; a bad byte is reported with its line and offset.
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    text_of(path, bytes)
}

/// `bytes` (all of `path`) as UTF-8; a bad byte is reported with its line and offset.
fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        err(path, line, format!("not UTF-8 text (invalid byte 0x{:02x} at offset {at})", e.as_bytes()[at]))
    })
}

/// The file's first whole lines, about `HEAD_BYTES` of them (all of a smaller file), as UTF-8:
/// what a look at the header needs, without reading a large file whole a second time. A head
/// that is not UTF-8 or holds no line break falls back to `read_text` (and its error).
fn head_text(path: &Path) -> Result<String> {
    use std::io::Read;
    const HEAD_BYTES: u64 = 1 << 20;
    let io = |e: std::io::Error| Error::Io { file: path.to_path_buf(), message: e.to_string() };
    let mut head = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(HEAD_BYTES).read_to_end(&mut head).map_err(io)?;
    if (head.len() as u64) < HEAD_BYTES {
        return text_of(path, head); // the whole file
    }
    // Cut after the last line break, so that no line (or character) is split.
    match head.iter().rposition(|&b| b == b'\n' || b == b'\r') {
        Some(end) => {
            head.truncate(end + 1);
            String::from_utf8(head).or_else(|_| read_text(path))
        }
        None => read_text(path),
    }
}

fn err(path: &Path, line: usize, message: String) -> Error {
    Error::Data { file: path.to_path_buf(), line, message }
}

/// `text` without a leading BOM, lone `\r` line ends (classic Mac, Excel's "CSV (Macintosh)")
/// made `\n` so that lines count as an editor counts them.
fn normalized(text: &str) -> Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\r') && !text.contains('\n') {
        Cow::Owned(text.replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The non-blank lines of `text` as (line number from 1, trimmed text).
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

/// The fields of one line, split at commas outside quotes and trimmed; a quoted field loses its
/// quotes and `""` inside it becomes `"`. Err: what is wrong with the quoting.
fn split_fields(line: &str) -> std::result::Result<Vec<Cow<'_, str>>, String> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let field = rest.trim_start();
        let Some(quoted) = field.strip_prefix('"') else {
            match field.find(',') {
                Some(at) => {
                    fields.push(Cow::Borrowed(field[..at].trim()));
                    rest = &field[at + 1..];
                    continue;
                }
                None => {
                    fields.push(Cow::Borrowed(field.trim()));
                    return Ok(fields);
                }
            }
        };
        let column = fields.len() + 1;
        let (mut value, mut inner) = (String::new(), quoted);
        let after = loop {
            let Some(at) = inner.find('"') else {
                return Err(format!(
                    "column {column}: a quote opens but never closes (a quoted field cannot span lines)"
                ));
            };
            value.push_str(&inner[..at]);
            match inner[at + 1..].strip_prefix('"') {
                Some(more) => {
                    value.push('"');
                    inner = more;
                }
                None => break inner[at + 1..].trim_start(),
            }
        };
        fields.push(Cow::Owned(value.trim().to_string()));
        match after.strip_prefix(',') {
            Some(more) => rest = more,
            None if after.is_empty() => return Ok(fields),
            None => return Err(format!("column {column}: text after the closing quote ('{after}')")),
        }
    }
}

/// Why a line that does not split into numbers at commas may be in another format (spaces
/// count only between numbers: a header name may hold a space).
fn separator_hint(line: &str) -> Option<&'static str> {
    if line.contains(';') {
        Some("the file looks ';'-separated; gradflow reads comma-separated values with '.' as the decimal point")
    } else if line.contains('\t') {
        Some("the file looks tab-separated; gradflow reads comma-separated values")
    } else if !line.contains(',') && line.split_whitespace().nth(1).is_some() && line.split_whitespace().all(is_number)
    {
        Some("the file looks space-separated; gradflow reads comma-separated values")
    } else {
        None
    }
}

/// `message`, followed by the separator hint for `line` when there is one.
fn hinted(message: String, line: &str) -> String {
    match separator_hint(line) {
        Some(hint) => format!("{message}; {hint}"),
        None => message,
    }
}

/// The fields of the first content line, or the error for a file in another format: a single
/// field that looks separated by something else than commas.
fn first_fields<'a>(path: &Path, line: usize, text: &'a str) -> Result<Vec<Cow<'a, str>>> {
    let fields = split_fields(text).map_err(|m| err(path, line, m))?;
    match separator_hint(text) {
        Some(hint) if fields.len() == 1 => Err(err(path, line, hint.to_string())),
        _ => Ok(fields),
    }
}

fn is_number(field: &str) -> bool {
    field.parse::<f64>().is_ok()
}

/// Parses CSV text; `path` is only used to name the source in errors.
pub fn parse_csv(text: &str, path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    if opts.num_classes == Some(0) {
        return Err(Error::Usage("num_classes must be at least 1".into()));
    }
    let text = normalized(text);
    let mut lines = content_lines(&text).peekable();
    let Some(&(first_line, first)) = lines.peek() else {
        return Err(Error::DataFile { file: path.to_path_buf(), message: "the file is empty".into() });
    };
    let first_fields = first_fields(path, first_line, first)?;
    let mut header = opts.has_header.unwrap_or_else(|| detect_header(&first_fields, &opts.label_column));
    // Column names from the header, for error messages; the header also fixes the field count.
    let mut names: Vec<String> = Vec::new();
    let mut expected: Option<(usize, usize)> = None; // (fields, line that set it)
    if header {
        names = first_fields.iter().map(|f| f.to_string()).collect();
        expected = Some((names.len(), first_line));
        lines.next();
    }
    let column = |col: usize| column_text(&names, col);

    let mut x = Vec::new();
    // Each kept row's label field as written, with its line, resolved once every row is read
    // (numbers or names is a property of the whole column).
    let mut raw_labels: Vec<(String, usize)> = Vec::new();
    let (mut d, mut rows, mut label_col) = (0, 0, 0);
    for (line, text) in lines {
        let fields = split_fields(text).map_err(|m| err(path, line, m))?;
        let (want, set_by) = *expected.get_or_insert((fields.len(), line));
        if fields.len() != want {
            let origin = if header && set_by == first_line { "the header on line" } else { "line" };
            let message = format!("expected {want} fields, found {} ({origin} {set_by} has {want})", fields.len());
            return Err(err(path, line, hinted(message, text)));
        }
        if want < 2 {
            let message = format!("found {want} field; a row needs at least one feature and a label");
            return Err(err(path, line, hinted(message, text)));
        }
        let label_at = label_index(path, line, first_line, want, header, &names, &opts.label_column)?;
        label_col = label_at;
        d = want - 1;
        rows += 1;
        let row_start = x.len();
        let mut drop_row = false;
        let mut label = String::new();
        for (col, field) in fields.iter().enumerate() {
            if field.is_empty() {
                return Err(err(path, line, format!("{}: empty field", column(col))));
            }
            if col == label_at {
                label = field.to_string();
                continue;
            }
            let value: f64 = field
                .parse()
                .map_err(|_| err(path, line, hinted(format!("{}: '{field}' is not a number", column(col)), field)))?;
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
        if drop_row {
            x.truncate(row_start);
        } else {
            raw_labels.push((label, line));
        }
    }
    if opts.has_header.is_none() && !header && header_after_all(&raw_labels, first_line) {
        header = true;
        names = first_fields.iter().map(|f| f.to_string()).collect();
        x.drain(..d);
        raw_labels.remove(0);
    }
    if raw_labels.is_empty() {
        let message = if rows == 0 {
            "no data rows (only a header)".to_string()
        } else {
            format!("all {rows} data rows have a NaN or Inf feature and were dropped (data.non_finite = \"drop-row\")")
        };
        return Err(Error::DataFile { file: path.to_path_buf(), message });
    }
    let what = format!("{} (label)", column_text(&names, label_col));
    let (labels, classes, class_names) = resolve_labels(path, &what, &raw_labels, opts)?;
    let mut ds = Dataset::new(x, labels, d, classes, &path.display().to_string())?;
    ds.class_names = class_names;
    if header {
        ds.feature_names =
            Some(names.iter().enumerate().filter(|(i, _)| *i != label_col).map(|(_, n)| n.clone()).collect());
    }
    Ok(ds)
}

/// Header names that mark the label column (any case), most telling first: a CSV with no config
/// takes the first of these it has (`y` only when no other is there: in `x,y,label` it is a
/// feature), and a first line whose label field is one of them is a header.
pub const LABEL_NAMES: [&str; 6] = ["label", "labels", "class", "target", "species", "y"];

/// The label column of a CSV with no config: the header's column named by the first of
/// `LABEL_NAMES` it has, else the last.
pub fn guess_label_column(path: &Path) -> Result<LabelColumn> {
    let text = head_text(path)?;
    let text = normalized(&text);
    let Some((line, first)) = content_lines(&text).next() else { return Ok(LabelColumn::Last) };
    let fields = first_fields(path, line, first)?;
    if !detect_header(&fields, &LabelColumn::Last) {
        return Ok(LabelColumn::Last);
    }
    let named = LABEL_NAMES.iter().find_map(|n| fields.iter().find(|f| f.eq_ignore_ascii_case(n)));
    Ok(named.map_or(LabelColumn::Last, |f| LabelColumn::Name(f.to_string())))
}

/// "column C ('name')" for the 0-based column `col`, with its header name when there is one.
fn column_text(names: &[String], col: usize) -> String {
    match names.get(col).filter(|s| !s.is_empty()) {
        Some(name) => format!("column {} ('{name}')", col + 1),
        None => format!("column {}", col + 1),
    }
}

/// Whether the first line is a header: a field that is not a number where features are, or a
/// label field named like a label column (`0,1,label`, as pandas writes a frame of numbered
/// columns). Other names in the label column are classes; `header_after_all` catches the rest.
fn detect_header(first: &[Cow<'_, str>], label: &LabelColumn) -> bool {
    let at = match label {
        LabelColumn::Last => first.len().checked_sub(1),
        LabelColumn::First => Some(0),
        LabelColumn::Index(i) => Some(*i),
        LabelColumn::Name(_) => return true,
    };
    let label_named =
        at.and_then(|i| first.get(i)).is_some_and(|f| LABEL_NAMES.iter().any(|n| f.eq_ignore_ascii_case(n)));
    label_named || first.iter().enumerate().any(|(i, f)| Some(i) != at && !is_number(f))
}

/// A first line read as data whose label alone is not a number while every later label is: a
/// header of numbered feature columns and a named label column (`0,1,kind`), not a class.
fn header_after_all(raw: &[(String, usize)], first_line: usize) -> bool {
    matches!(raw, [(first, line), rest @ ..] if *line == first_line && !is_number(first) && !rest.is_empty()
        && rest.iter().all(|(f, _)| is_number(f)))
}

/// The 0-based label field of a row of `want` fields.
fn label_index(
    path: &Path,
    line: usize,
    first_line: usize,
    want: usize,
    header: bool,
    names: &[String],
    label: &LabelColumn,
) -> Result<usize> {
    match label {
        LabelColumn::Last => Ok(want - 1),
        LabelColumn::First => Ok(0),
        LabelColumn::Index(i) if *i < want => Ok(*i),
        LabelColumn::Index(i) => {
            Err(err(path, line, format!("label column index {i} (counting from 0) is past the {want} fields")))
        }
        LabelColumn::Name(name) => match names.iter().position(|n| n == name) {
            Some(i) => Ok(i),
            None if !header => {
                Err(err(path, line, format!("label column '{name}' is named, but the file has no header")))
            }
            None => Err(err(
                path,
                first_line,
                format!("no column named '{name}' in the header (columns: {})", names.join(", ")),
            )),
        },
    }
}

/// The label column as class indices, the class count and the class names. Labels are class
/// numbers when every one is a number; otherwise they are names, numbered in sorted order (as
/// scikit-learn's LabelEncoder does), or through `opts.class_names` when the classes are known.
fn resolve_labels(
    path: &Path,
    what: &str,
    raw: &[(String, usize)],
    opts: &CsvOptions,
) -> Result<(Vec<u32>, usize, Option<Vec<String>>)> {
    if let Some(known) = &opts.class_names {
        let labels = raw
            .iter()
            .map(|(name, line)| {
                known.iter().position(|k| k == name).map(|i| i as u32).ok_or_else(|| {
                    err(
                        path,
                        *line,
                        format!("{what}: class '{name}' is not one of the model's classes ({})", known.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        return Ok((labels, known.len(), Some(known.clone())));
    }
    if raw.iter().all(|(f, _)| is_number(f)) {
        let (labels, classes) = number_labels(path, what, raw, opts.num_classes)?;
        return Ok((labels, classes, None));
    }
    // Numbers and names in one column: a stray mark ('?', 'n/a') in class numbers, most likely.
    if let Some((number, line)) = raw.iter().find(|(f, _)| is_number(f)) {
        let (name, name_line) = raw.iter().find(|(f, _)| !is_number(f)).map_or(("", 0), |(f, l)| (f.as_str(), *l));
        return Err(err(
            path,
            name_line.max(*line),
            format!(
                "{what}: the label column mixes class numbers ('{number}' on line {line}) and class names ('{name}' \
                 on line {name_line}); labels are all numbers or all names"
            ),
        ));
    }
    let mut names: Vec<String> = raw.iter().map(|(f, _)| f.clone()).collect();
    names.sort();
    names.dedup();
    if let Some(k) = opts.num_classes.filter(|&k| k != names.len()) {
        let shown = names.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        return Err(Error::DataFile {
            file: path.to_path_buf(),
            message: format!("{what}: data.num_classes = {k} but the column names {} classes ({shown})", names.len()),
        });
    }
    let labels = raw.iter().map(|(f, _)| names.binary_search(f).map_or(0, |i| i as u32)).collect();
    Ok((labels, names.len(), Some(names)))
}

/// Numeric labels: non-negative integers below the class count (given, or the largest + 1).
fn number_labels(
    path: &Path,
    what: &str,
    raw: &[(String, usize)],
    num_classes: Option<usize>,
) -> Result<(Vec<u32>, usize)> {
    let mut labels = Vec::with_capacity(raw.len());
    // The largest label and its line, to name it if the class count it implies is absurd.
    let mut largest: (u32, usize) = (0, raw[0].1);
    for (field, line) in raw {
        let value: f64 = field.parse().unwrap_or(f64::NAN);
        if !(value >= 0.0 && value.fract() == 0.0) {
            return Err(err(path, *line, format!("{what}: '{field}' is not a non-negative integer")));
        }
        if value > u32::MAX as f64 {
            return Err(err(path, *line, format!("{what}: {field} is larger than {}, the largest label", u32::MAX)));
        }
        let label = value as u32;
        if let Some(k) = num_classes {
            if label as usize >= k {
                return Err(err(
                    path,
                    *line,
                    format!("{what}: label {label} is out of range for {k} classes (0..={})", k - 1),
                ));
            }
        }
        if label > largest.0 {
            largest = (label, *line);
        }
        labels.push(label);
    }
    let classes = match num_classes {
        Some(k) => k,
        None => {
            let k = largest.0 as usize + 1;
            check_inferred_classes(k, labels.len()).map_err(|m| err(path, largest.1, m))?;
            k
        }
    };
    Ok((labels, classes))
}

/// A CSV of features only (no label column), e.g. `predict`'s input: (values row-major, rows,
/// features). The header is detected as in `parse_csv`; a bad field names its line and column.
pub fn load_features(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    load_table(path).map(|(x, n, d, _)| (x, n, d))
}

/// A CSV of numbers only: values row-major, rows, columns, and the header's names if it has one.
pub type Table = (Vec<f32>, usize, usize, Option<Vec<String>>);

/// A CSV of numbers only (see `Table`). The header is detected as in `load_features`.
pub fn load_table(path: &Path) -> Result<Table> {
    let text = read_text(path)?;
    let text = normalized(&text);
    let mut rows = content_lines(&text).peekable();
    let mut names = None;
    if let Some(&(line, first)) = rows.peek() {
        let fields = first_fields(path, line, first)?;
        if !fields.iter().all(|f| is_number(f)) {
            names = Some(fields.iter().map(|f| f.to_string()).collect());
            rows.next();
        }
    }
    let (mut x, mut n, mut d) = (Vec::new(), 0, names.as_ref().map(|h: &Vec<String>| h.len()));
    for (line, text) in rows {
        let fields = split_fields(text).map_err(|m| err(path, line, m))?;
        // With a header, every row has its width: a column named there exists in every row.
        let want = *d.get_or_insert(fields.len());
        if fields.len() != want {
            return Err(err(path, line, hinted(format!("expected {want} fields, found {}", fields.len()), text)));
        }
        for (col, f) in fields.iter().enumerate() {
            let column = format!("column {}", col + 1);
            let value: f64 =
                f.parse().map_err(|_| err(path, line, hinted(format!("{column}: '{f}' is not a number"), f)))?;
            // Worded as parse_csv words them: "1e39" is too large, not "inf".
            let v = value as f32;
            if value.is_nan() {
                return Err(err(path, line, format!("{column}: NaN in data")));
            } else if value.is_infinite() {
                return Err(err(path, line, format!("{column}: Inf in data ('{f}')")));
            } else if !v.is_finite() {
                return Err(err(path, line, format!("{column}: {f} is too large for float32")));
            }
            x.push(v);
        }
        n += 1;
    }
    match d {
        Some(d) if n > 0 => Ok((x, n, d, names)),
        _ => Err(Error::DataFile { file: path.to_path_buf(), message: "the file has no rows".into() }),
    }
}
