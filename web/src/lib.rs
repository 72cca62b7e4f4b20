//! gradflow in a browser page (issue 23): the library's kernels on the reader's GPU through
//! WebGPU, beside the same CPU reference compiled to wasm. The page (`web/index.html`,
//! `web/app.js`) calls what this crate exports; every number comes from the library, as
//! `gradflow train` computes it, with each GPU read-back awaited instead of blocked on.
//!
//! Wasm only: elsewhere the crate is empty, so a native workspace build skips it.
#![cfg(target_arch = "wasm32")]
// wgpu's handles are neither Send nor Sync in a browser; the library's API takes Arc<Gpu>.
#![allow(clippy::arc_with_non_send_sync)]

mod check;
mod lab;
mod run;
mod selftest;
mod spectrum;
mod surfaces;

pub use lab::{open_lab, Lab};
pub use run::Run;

use wasm_bindgen::prelude::*;

/// The library's error as a JavaScript `Error` carrying its message.
pub(crate) fn js_error(e: gradflow::error::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A value as the JSON text the page parses.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(|e| JsError::new(&format!("as JSON: {e}")))
}

/// The built-in digits (`data/digits.csv`: 8×8 images, 10 classes), for the page's data menu.
#[wasm_bindgen]
pub fn digits_csv() -> String {
    gradflow::config::DEFAULT_DATA.to_string()
}

/// The built-in digits run's config (`configs/digits.toml`).
#[wasm_bindgen]
pub fn digits_config() -> String {
    gradflow::config::DEFAULT_CONFIG.to_string()
}

/// The library's default noise for a generated 2-D set ("spirals", "xor", "circles", "blobs"),
/// undefined for any other name.
#[wasm_bindgen]
pub fn toy_noise(kind: &str) -> Option<f64> {
    kind.parse::<gradflow::data::ToyKind>().ok().map(|k| k.default_noise())
}

/// The classes a CSV's label column holds, as `gradflow train` reads the file (numbers: the
/// largest + 1; names: how many), for the last layer's width. `label_column` as the page's
/// field holds it (`LabelColumn::from_text`: "last", "first", a 0-based index or a header name).
#[wasm_bindgen]
pub fn csv_classes(text: &str, label_column: &str) -> Result<usize, JsError> {
    use gradflow::data::csv::{parse_csv, CsvOptions, LabelColumn};
    let opts = CsvOptions { label_column: LabelColumn::from_text(label_column), ..CsvOptions::default() };
    let set = parse_csv(text, std::path::Path::new("data.csv"), &opts).map_err(js_error)?;
    Ok(set.num_classes)
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}
