//! `index.html?selftest`: trains `web/selftest.toml` on WebGPU and on the wasm CPU reference and
//! holds both to what the native CLI computed (`web/selftest-expected.json`, itself held to the
//! CLI by tests/web_selftest.rs) and to each other, within the library's bounds.

use gradflow::reference::bounds::{SAME_CODE_REL_TOL, TRAINING_REL_TOL};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::run::{EpochLine, Inner};
use crate::Lab;

const CONFIG: &str = include_str!("../selftest.toml");
const DATA: &str = include_str!("../../data/spirals.csv");
const EXPECTED: &str = include_str!("../selftest-expected.json");
/// The split sizes of spirals.csv (600 rows, a fifth for testing): an accuracy may differ by one row.
const TRAIN_ROWS: f64 = 480.0;
const TEST_ROWS: f64 = 120.0;

#[derive(Deserialize)]
struct Record {
    epochs: Vec<RecordEpoch>,
}

#[derive(Deserialize)]
struct RecordEpoch {
    epoch: usize,
    loss: f64,
    accuracy: f64,
    test_loss: f64,
    test_accuracy: f64,
}

#[derive(Serialize)]
struct Outcome {
    pass: bool,
    summary: String,
    lines: Vec<String>,
}

/// Compares one executor's epochs with the record (or another executor's), adding a line per
/// epoch; returns the worst relative loss error, infinite on a mismatch of accuracy or count.
fn compare(
    who: &str,
    against: &str,
    got: &[EpochLine],
    want: &[RecordEpoch],
    rel: f64,
    lines: &mut Vec<String>,
) -> f64 {
    if got.len() != want.len() {
        lines.push(format!("FAIL {who}: {} epochs, {against} has {}", got.len(), want.len()));
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        let rel_err = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
        let loss = rel_err(g.train_loss as f64, w.loss);
        let test_loss = g.test_loss.map_or(f64::INFINITY, |t| rel_err(t as f64, w.test_loss));
        let acc_ok = g.train_accuracy.is_some_and(|a| (a as f64 - w.accuracy).abs() <= 1.01 / TRAIN_ROWS)
            && g.test_accuracy.is_some_and(|a| (a as f64 - w.test_accuracy).abs() <= 1.01 / TEST_ROWS);
        let e = loss.max(test_loss);
        let ok = e <= rel && acc_ok && g.epoch == w.epoch;
        worst = worst.max(if ok { e } else { f64::INFINITY });
        lines.push(format!(
            "{} {who} epoch {}: loss {:.7} ({against} {:.7}), test loss {:.7} ({:.7}), test accuracy {:.1}% ({:.1}%); rel. error {e:.1e} (bound {rel:.0e})",
            if ok { "ok  " } else { "FAIL" },
            g.epoch,
            g.train_loss,
            w.loss,
            g.test_loss.unwrap_or(f32::NAN),
            w.test_loss,
            100.0 * g.test_accuracy.unwrap_or(f32::NAN),
            100.0 * w.test_accuracy,
        ));
    }
    worst
}

/// As the record's epochs, to compare two executors with each other.
fn as_record(lines: &[EpochLine]) -> Vec<RecordEpoch> {
    lines
        .iter()
        .map(|l| RecordEpoch {
            epoch: l.epoch,
            loss: l.train_loss as f64,
            accuracy: l.train_accuracy.unwrap_or(f32::NAN) as f64,
            test_loss: l.test_loss.unwrap_or(f32::NAN) as f64,
            test_accuracy: l.test_accuracy.unwrap_or(f32::NAN) as f64,
        })
        .collect()
}

async fn train(lab: &Lab, executor: &str) -> gradflow::error::Result<Vec<EpochLine>> {
    let mut inner = Inner::new(lab, CONFIG, Some(DATA), executor)?;
    let mut out = Vec::new();
    for _ in 0..inner.config.train.epochs {
        out.push(inner.epoch().await?);
    }
    Ok(out)
}

async fn selftest(lab: &Lab) -> Outcome {
    let record: Record = match serde_json::from_str(EXPECTED) {
        Ok(r) => r,
        Err(e) => return Outcome { pass: false, summary: format!("the record does not parse: {e}"), lines: vec![] },
    };
    let mut lines = Vec::new();
    let mut pass = true;
    let cpu = match train(lab, "cpu").await {
        Ok(l) => l,
        Err(e) => return Outcome { pass: false, summary: format!("CPU reference: {e}"), lines },
    };
    let cpu_worst = compare("wasm CPU", "native", &cpu, &record.epochs, SAME_CODE_REL_TOL, &mut lines);
    pass &= cpu_worst.is_finite();
    let gpu_part = if lab.gpu.is_some() {
        match train(lab, "gpu").await {
            Ok(gpu) => {
                let native = compare("WebGPU", "native", &gpu, &record.epochs, TRAINING_REL_TOL, &mut lines);
                let wasm = compare("WebGPU", "wasm CPU", &gpu, &as_record(&cpu), TRAINING_REL_TOL, &mut lines);
                pass &= native.is_finite() && wasm.is_finite();
                format!("WebGPU within {:.1e} of the native CLI (bound {TRAINING_REL_TOL:.0e})", native)
            }
            Err(e) => {
                pass = false;
                format!("WebGPU failed: {e}")
            }
        }
    } else {
        pass = false;
        "no WebGPU adapter".to_string()
    };
    let late = gradflow::device::late_errors();
    if !late.is_empty() {
        pass = false;
        lines.extend(late.iter().map(|e| format!("FAIL GPU error: {e}")));
    }
    let summary = format!(
        "{} epochs of web/selftest.toml: wasm CPU within {:.1e} of the native CLI (bound {SAME_CODE_REL_TOL:.0e}); {gpu_part}{}",
        record.epochs.len(),
        cpu_worst,
        if late.is_empty() { String::new() } else { format!("; {} GPU error(s)", late.len()) }
    );
    Outcome { pass, summary, lines }
}

#[wasm_bindgen]
impl Lab {
    /// The self-test: JSON `{ pass, summary, lines }`.
    pub fn selftest(&self) -> js_sys::Promise {
        let lab = Lab { gpu: self.gpu.clone(), why_no_gpu: None };
        future_to_promise(async move {
            let outcome = selftest(&lab).await;
            Ok(crate::json(&outcome)?.into())
        })
    }
}

/// The self-test's config (`web/selftest.toml`), for the browser tests that compare a model saved
/// in the page with the CLI's.
#[wasm_bindgen]
pub fn selftest_config() -> String {
    CONFIG.to_string()
}

/// The self-test's data (`data/spirals.csv`).
#[wasm_bindgen]
pub fn selftest_data() -> String {
    DATA.to_string()
}
