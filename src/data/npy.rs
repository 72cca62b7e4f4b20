//! NumPy `.npy` files (format 1.0–3.0, little-endian, C order): float32/float64 inputs [n, d] and
//! integer labels [n]. Errors name rows and features counting from 1 (so `x[0]` is row 1).

use std::path::Path;

use super::{check_inferred_classes, row_feature_text, row_text, Dataset};
use crate::error::{Error, Result};

/// The values of an array. Narrow integer dtypes are widened on reading: int8/int16/uint16 →
/// `I32`, uint32/uint64 → `I64` (uint64 above i64::MAX is an error); bool and uint8 → `U8`.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl NpyData {
    /// A short name of the element type, for messages.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::I64(_) => "int64",
            NpyData::I32(_) => "int32",
            NpyData::U8(_) => "uint8",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::DataFile { file: path.to_path_buf(), message: message.into() }
}

/// The text of the value of `'key': value` in the header dictionary.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let end = match rest.chars().next()? {
        '(' => rest.find(')')? + 1,
        '[' => rest.find(']')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim())
}

fn chunks<const W: usize>(body: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
    body.chunks_exact(W).map(|b| {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        a
    })
}

/// Reads one array. Refuses Fortran order, big-endian data, and dtypes other than float32,
/// float64, (u)int8–64 and bool, each with a message naming the file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    if bytes.is_empty() {
        return Err(bad(path, "the file is empty"));
    }
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated or unreadable .npy header"))?;
    let descr =
        header_field(header, "descr").ok_or_else(|| bad(path, "the header has no 'descr'"))?.trim_matches(['\'', '"']);
    match header_field(header, "fortran_order") {
        Some("False") => {}
        Some("True") => {
            return Err(bad(path, "fortran_order=True is not supported; save a C-order array (np.ascontiguousarray)"))
        }
        _ => return Err(bad(path, "the header has no valid 'fortran_order'")),
    }
    let shape_text = header_field(header, "shape").ok_or_else(|| bad(path, "the header has no 'shape'"))?;
    let shape = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(path, format!("bad shape {shape_text}")))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().map_err(|_| bad(path, format!("bad shape {shape_text}"))))
        .collect::<Result<Vec<usize>>>()?;

    let (order, kind) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => {
            return Err(bad(
                path,
                format!("dtype '{descr}' is not supported (use float32, float64 or an integer type)"),
            ))
        }
    };
    let width = match kind {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "i2" | "u2" => 2,
        "i1" | "u1" | "b1" => 1,
        _ => {
            return Err(bad(
                path,
                format!("dtype '{descr}' is not supported (use float32, float64 or an integer type)"),
            ))
        }
    };
    if order == '>' && width > 1 {
        return Err(bad(
            path,
            format!(
                "big-endian dtype '{descr}' is not supported; save with a little-endian dtype (e.g. astype('<{kind}'))"
            ),
        ));
    }
    if order == '=' && cfg!(target_endian = "big") && width > 1 {
        return Err(bad(path, format!("native-order dtype '{descr}' on a big-endian machine is not supported")));
    }
    let count = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
    let needed = count.and_then(|c| c.checked_mul(width));
    let body = &bytes[start + header_len..];
    let count = match needed {
        Some(bytes_needed) if bytes_needed == body.len() => count.unwrap_or(0),
        Some(bytes_needed) => {
            return Err(bad(
                path,
                format!("shape {shape:?} of '{descr}' needs {bytes_needed} bytes of data, the file has {}", body.len()),
            ))
        }
        None => return Err(bad(path, format!("shape {shape:?} is too large"))),
    };
    debug_assert_eq!(count * width, body.len());
    let data = match kind {
        "f4" => NpyData::F32(chunks::<4>(body).map(f32::from_le_bytes).collect()),
        "f8" => NpyData::F64(chunks::<8>(body).map(f64::from_le_bytes).collect()),
        "i8" => NpyData::I64(chunks::<8>(body).map(i64::from_le_bytes).collect()),
        "u8" => {
            let v: Vec<u64> = chunks::<8>(body).map(u64::from_le_bytes).collect();
            if let Some(i) = v.iter().position(|&x| x > i64::MAX as u64) {
                return Err(bad(path, format!("{}: {} does not fit in int64", position_text(&shape, i), v[i])));
            }
            NpyData::I64(v.into_iter().map(|x| x as i64).collect())
        }
        "u4" => NpyData::I64(chunks::<4>(body).map(|b| i64::from(u32::from_le_bytes(b))).collect()),
        "i4" => NpyData::I32(chunks::<4>(body).map(i32::from_le_bytes).collect()),
        "i2" => NpyData::I32(chunks::<2>(body).map(|b| i32::from(i16::from_le_bytes(b))).collect()),
        "u2" => NpyData::I32(chunks::<2>(body).map(|b| i32::from(u16::from_le_bytes(b))).collect()),
        "i1" => NpyData::I32(body.iter().map(|&b| i32::from(b as i8)).collect()),
        _ => NpyData::U8(body.to_vec()), // u1, b1
    };
    Ok(NpyArray { shape, data })
}

/// Inputs `x_path` (float32/float64, shape [n, d]) and labels `y_path` (integers, shape [n]).
pub fn load_npy_pair(x_path: &Path, y_path: &Path, num_classes: Option<usize>) -> Result<Dataset> {
    load_npy_pair_with(x_path, y_path, num_classes, false)
}

/// `load_npy_pair`, skipping rows with a NaN or infinite feature when `drop_non_finite`.
pub fn load_npy_pair_with(
    x_path: &Path,
    y_path: &Path,
    num_classes: Option<usize>,
    drop_non_finite: bool,
) -> Result<Dataset> {
    if num_classes == Some(0) {
        return Err(Error::Usage("num_classes must be at least 1".into()));
    }
    let (x, n, d) = load_npy_inputs(x_path)?;
    let keep: Vec<bool> = x.chunks(d).map(|row| row.iter().all(|v| v.is_finite())).collect();
    if !drop_non_finite {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            let what = if x[i].is_nan() { "NaN" } else { "Inf" };
            return Err(bad(
                x_path,
                format!(
                    "{}: {what} in data (set data.non_finite = \"drop-row\" to skip such rows)",
                    row_feature_text(i, d)
                ),
            ));
        }
    }
    let ya = read_npy(y_path)?;
    if ya.shape.len() != 1 {
        return Err(bad(y_path, format!("labels must be 1-D [rows], got shape {:?}", ya.shape)));
    }
    if ya.shape[0] != n {
        return Err(bad(
            y_path,
            format!("row count mismatch: {} labels here but {} rows in {}", ya.shape[0], n, x_path.display()),
        ));
    }
    let raw: Vec<i64> = match ya.data {
        NpyData::I64(v) => v,
        NpyData::I32(v) => v.into_iter().map(i64::from).collect(),
        NpyData::U8(v) => v.into_iter().map(i64::from).collect(),
        other => {
            return Err(bad(
                y_path,
                format!("labels must be integers, found {} (use y.astype('int64'))", other.dtype_name()),
            ))
        }
    };
    if let Some(i) = raw.iter().position(|&l| l < 0) {
        return Err(bad(y_path, format!("{}: label {} is not a non-negative integer", row_text(i), raw[i])));
    }
    if let Some(i) = raw.iter().position(|&l| l > u32::MAX as i64) {
        return Err(bad(
            y_path,
            format!("{}: label {} is larger than {}, the largest label", row_text(i), raw[i], u32::MAX),
        ));
    }
    let labels: Vec<u32> = raw.into_iter().map(|l| l as u32).collect();
    let classes = match num_classes {
        Some(k) => k,
        None => {
            let k = labels.iter().max().map_or(1, |&m| m as usize + 1);
            check_inferred_classes(k, labels.len()).map_err(|m| bad(y_path, m))?;
            k
        }
    };
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(bad(
            y_path,
            format!("{}: label {} is out of range for {classes} classes (0..={})", row_text(i), labels[i], classes - 1),
        ));
    }
    if !keep.contains(&true) {
        return Err(bad(
            x_path,
            format!("all {n} rows have a NaN or Inf feature and were dropped (data.non_finite = \"drop-row\")"),
        ));
    }
    let (x, labels): (Vec<f32>, Vec<u32>) = if keep.iter().all(|&k| k) {
        (x, labels)
    } else {
        let rows = x.chunks(d).zip(&labels).zip(&keep).filter(|(_, &k)| k).map(|((r, &l), _)| (r, l));
        let (mut xs, mut ls) = (Vec::new(), Vec::new());
        for (r, l) in rows {
            xs.extend_from_slice(r);
            ls.push(l);
        }
        (xs, ls)
    };
    Dataset::new(x, labels, d, classes, &x_path.display().to_string())
}

fn ints_to_f32(path: &Path, d: usize, v: impl Iterator<Item = i64>) -> Result<Vec<f32>> {
    const EXACT: i64 = 1 << 24;
    v.enumerate()
        .map(|(i, x)| {
            if x.unsigned_abs() > EXACT as u64 {
                Err(bad(path, format!("{}: integer {x} is not exact in float32 (|x| > 2^24)", row_feature_text(i, d))))
            } else {
                Ok(x as f32)
            }
        })
        .collect()
}

/// Where flat element `i` of an array of `shape` is, counting from 1: rows (and features) for the
/// 1-D and 2-D arrays gradflow reads, the element in C order otherwise.
fn position_text(shape: &[usize], i: usize) -> String {
    match shape {
        [_] => row_text(i),
        [_, d] => row_feature_text(i, *d),
        _ => format!("element {} in C order (counting from 1)", i + 1),
    }
}

/// Writes a little-endian float32 array of `shape` (format 1.0), e.g. `predict`'s logits.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    crate::checkpoint::write_atomic(path, &out)
}

/// A 2-D `.npy` of inputs (float32/float64, or integers exact in f32): (values row-major,
/// rows, features).
pub(crate) fn load_npy_inputs(x_path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let xa = read_npy(x_path)?;
    if xa.shape.len() != 2 {
        return Err(bad(x_path, format!("inputs must be 2-D [rows, features], got shape {:?}", xa.shape)));
    }
    let (n, d) = (xa.shape[0], xa.shape[1]);
    if d == 0 {
        return Err(bad(x_path, format!("inputs have no features (shape {:?})", xa.shape)));
    }
    if n == 0 {
        return Err(bad(x_path, format!("inputs have no rows (shape {:?})", xa.shape)));
    }
    let x: Vec<f32> = match xa.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => {
            if let Some(i) = v.iter().position(|v| v.is_finite() && !(*v as f32).is_finite()) {
                return Err(bad(x_path, format!("{}: {} is too large for float32", row_feature_text(i, d), v[i])));
            }
            v.into_iter().map(|v| v as f32).collect()
        }
        // Integer inputs (pixel values, counts) are exact in f32 up to 2^24; beyond that refused.
        NpyData::I64(v) => ints_to_f32(x_path, d, v.into_iter())?,
        NpyData::I32(v) => ints_to_f32(x_path, d, v.into_iter().map(i64::from))?,
        NpyData::U8(v) => v.into_iter().map(f32::from).collect(),
    };
    Ok((x, n, d))
}
