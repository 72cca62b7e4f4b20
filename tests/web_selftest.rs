//! The browser page's self-test compares WebGPU and the wasm CPU reference with what the native
//! CLI computes for `web/selftest.toml`, recorded in `web/selftest-expected.json`. This holds that
//! record to the CLI on both native executors, so the page is checked against the CLI's numbers
//! and not against a file that drifted. `GRADFLOW_BLESS=1` rewrites the record from the CPU run.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gradflow::reference::bounds::{SAME_CODE_REL_TOL, TRAINING_REL_TOL};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Per-epoch (loss, accuracy, test loss, test accuracy) of `gradflow train` on the self-test config.
fn cli_epochs(extra: &[&str], name: &str) -> Vec<serde_json::Value> {
    let metrics = scratch_dir("web_selftest", name).join("metrics.jsonl");
    let config = repo("web/selftest.toml");
    let mut args =
        vec!["train", "--config", config.to_str().unwrap(), "--quiet", "--metrics", metrics.to_str().unwrap()];
    args.extend(extra);
    let (ok, out, err) = run_gradflow(&args);
    assert!(ok, "gradflow train failed:\n{out}\n{err}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo("web/selftest-expected.json")).unwrap()).unwrap()
}

/// Losses within `rel` (relative to max(1, |loss|)); accuracies within one row of their split.
fn assert_close(who: &str, got: &[serde_json::Value], want: &serde_json::Value, rel: f64) {
    let want = want["epochs"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{who}: epochs");
    // spirals.csv: 600 rows, a fifth for the test split; 480 training rows.
    let row = [("accuracy", 1.0 / 480.0), ("test_accuracy", 1.0 / 120.0)];
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["epoch"], w["epoch"], "{who}");
        assert_eq!(g["step"], w["step"], "{who}");
        for key in ["loss", "test_loss"] {
            let (a, b) = (g[key].as_f64().unwrap(), w[key].as_f64().unwrap());
            let err = (a - b).abs() / b.abs().max(1.0);
            assert!(
                err <= rel,
                "{who} epoch {}: {key} {a} against the record's {b} (rel. {err:e} > {rel:e})",
                w["epoch"]
            );
        }
        for (key, one_row) in row {
            let (a, b) = (g[key].as_f64().unwrap(), w[key].as_f64().unwrap());
            assert!((a - b).abs() <= one_row * 1.01, "{who} epoch {}: {key} {a} against {b}", w["epoch"]);
        }
    }
}

#[test]
fn the_record_is_what_the_cli_computes_on_the_cpu() {
    let got = cli_epochs(&["--cpu"], "cpu");
    if std::env::var_os("GRADFLOW_BLESS").is_some() {
        let mut record = expected();
        let keys = ["epoch", "step", "loss", "accuracy", "test_loss", "test_accuracy"];
        let epochs: Vec<serde_json::Map<String, serde_json::Value>> =
            got.iter().map(|e| keys.iter().map(|k| (k.to_string(), e[*k].clone())).collect()).collect();
        record["epochs"] = serde_json::json!(epochs);
        let text = serde_json::to_string_pretty(&record).unwrap() + "\n";
        std::fs::write(repo("web/selftest-expected.json"), text).unwrap();
    }
    assert_close("CPU reference", &got, &expected(), SAME_CODE_REL_TOL);
}

#[test]
fn the_gpu_matches_the_record_within_the_training_bound() {
    require_gpu!();
    assert_close("GPU", &cli_epochs(&[], "gpu"), &expected(), TRAINING_REL_TOL);
}

/// TRAINING_REL_TOL's derivation holds for ≤ 30 steps at lr ≤ 0.05, momentum ≤ 0.9 and layers
/// ≤ 64 wide: the self-test config must stay inside it.
#[test]
fn the_selftest_config_stays_where_the_bound_holds() {
    let config = gradflow::config::Config::load(&repo("web/selftest.toml")).unwrap();
    let (train, _) = gradflow::train::load_data(&config, &repo("web/selftest.toml")).unwrap();
    let steps = config.train.epochs * (train.n / config.train.batch_size);
    assert!(steps <= 30, "{steps} steps");
    let text = std::fs::read_to_string(repo("web/selftest.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let opt = table["optimizer"].as_table().unwrap();
    assert!(opt["lr"].as_float().unwrap() <= 0.05);
    assert!(opt.get("momentum").and_then(|m| m.as_float()).unwrap_or(0.0) <= 0.9);
    let model = gradflow::spec::Model::new(train.d, config.model.layers.clone()).unwrap();
    assert!(model.params.iter().all(|p| p.shape.iter().all(|&d| d <= 64)));
}
