//! The page's Check view: `gradflow check` on the browser's adapter, every kernel against the
//! CPU reference within its error bound, each read-back awaited.

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{js_error, json, Lab};

#[derive(Serialize)]
struct CheckReport {
    adapter: String,
    ops: Vec<OpLine>,
    passed: usize,
    failed: usize,
}

/// One op (and shape): worst |GPU − reference|, that as a fraction of its bound, within it or not.
#[derive(Serialize)]
struct OpLine {
    op: String,
    worst: f64,
    share: f64,
    pass: bool,
}

#[wasm_bindgen]
impl Lab {
    /// Every kernel on the adapter against the CPU reference (JSON `CheckReport`); an error
    /// when the browser offers no WebGPU adapter.
    pub fn check(&self) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        let why = self.why_no_gpu.clone().unwrap_or_default();
        future_to_promise(async move {
            let gpu = gpu.ok_or_else(|| JsError::new(&format!("check needs a WebGPU adapter: {why}")))?;
            let outcomes = gradflow::check::run_async(&gpu).await.map_err(js_error)?;
            let ops: Vec<OpLine> = outcomes
                .into_iter()
                .map(|o| OpLine { pass: o.pass(), op: o.op, worst: o.worst, share: o.share })
                .collect();
            let passed = ops.iter().filter(|o| o.pass).count();
            let report = CheckReport { adapter: gpu.describe(), failed: ops.len() - passed, passed, ops };
            Ok(JsValue::from_str(&json(&report)?))
        })
    }
}
