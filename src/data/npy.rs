//! NumPy `.npy` files (format 1.0–3.0): float32/float64 inputs [n, d] and integer labels [n].

use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::DataFile { file: path.to_path_buf(), message: message.into() }
}

/// The value of `'key': value` in the header dictionary.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated or unreadable .npy header"))?;
    let descr = header_field(header, "descr").ok_or_else(|| bad(path, "header has no 'descr'"))?.trim_matches(['\'', '"']);
    if header_field(header, "fortran_order") == Some("True") {
        return Err(bad(path, "fortran_order=True is not supported; save with np.ascontiguousarray"));
    }
    let shape_text = header_field(header, "shape").ok_or_else(|| bad(path, "header has no 'shape'"))?;
    let shape = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(path, format!("bad shape {shape_text}"))))
        .collect::<Result<Vec<usize>>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    if descr.starts_with('>') {
        return Err(bad(path, format!("big-endian dtype {descr} is not supported")));
    }
    let width = match &descr[1..] {
        "f4" | "i4" => 4,
        "f8" | "i8" => 8,
        "u1" | "i1" | "b1" => 1,
        other => return Err(bad(path, format!("dtype {other} is not supported (use float32, float64 or an integer type)"))),
    };
    if body.len() != count * width {
        return Err(bad(path, format!("shape {shape:?} needs {} bytes of data, the file has {}", count * width, body.len())));
    }
    let data = match &descr[1..] {
        "f4" => NpyData::F32(body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        "f8" => NpyData::F64(body.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()),
        "i8" => NpyData::I64(body.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()),
        "i4" => NpyData::I32(body.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        _ => NpyData::U8(body.to_vec()),
    };
    Ok(NpyArray { shape, data })
}

/// Inputs `x_path` ([n, d] float) and labels `y_path` ([n] integer).
pub fn load_npy_pair(x_path: &Path, y_path: &Path, num_classes: Option<usize>) -> Result<Dataset> {
    let xa = read_npy(x_path)?;
    if xa.shape.len() != 2 {
        return Err(bad(x_path, format!("inputs must be 2-D [rows, features], got shape {:?}", xa.shape)));
    }
    let (n, d) = (xa.shape[0], xa.shape[1]);
    let x: Vec<f32> = match xa.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.into_iter().map(|v| v as f32).collect(),
        _ => return Err(bad(x_path, "inputs must be float32 or float64")),
    };
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(bad(x_path, format!("row {}, feature {}: {} in data (NaN and Inf are not allowed)", i / d.max(1), i % d.max(1), x[i])));
    }
    let ya = read_npy(y_path)?;
    if ya.shape != [n] {
        return Err(bad(y_path, format!("labels must have shape [{n}] to match the inputs, got {:?}", ya.shape)));
    }
    let raw: Vec<i64> = match ya.data {
        NpyData::I64(v) => v,
        NpyData::I32(v) => v.into_iter().map(i64::from).collect(),
        NpyData::U8(v) => v.into_iter().map(i64::from).collect(),
        _ => return Err(bad(y_path, "labels must be integers")),
    };
    if let Some(i) = raw.iter().position(|&l| l < 0 || l > u32::MAX as i64) {
        return Err(bad(y_path, format!("row {i}: label {} is not a non-negative integer", raw[i])));
    }
    let labels: Vec<u32> = raw.into_iter().map(|l| l as u32).collect();
    let classes = num_classes.unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(bad(y_path, format!("row {i}: label {} is out of range for {classes} classes", labels[i])));
    }
    Dataset::new(x, labels, d, classes, &x_path.display().to_string())
}
