//! Reading the PyTorch golden cases (tests/fixtures/golden, copied from ../shared/golden; and
//! tests/fixtures/ddp, made by scripts/golden_ddp.py in the same format), and what the tests of
//! the golden training runs share: their model, their state dicts, their element-wise check.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gradflow::optim::Optimizer;
use gradflow::spec::{LayerSpec, Model, NormState};
use safetensors::{Dtype, SafeTensors};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// The golden data-parallel runs (scripts/golden_ddp.py).
pub fn ddp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ddp")
}

/// One case: its manifest entry and its tensors, widened to f64 (shape kept).
pub struct Case {
    pub name: String,
    pub params: serde_json::Value,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Case {
    pub fn t(&self, name: &str) -> &[f64] {
        &self.tensors.get(name).unwrap_or_else(|| panic!("{}: no tensor {name}", self.name)).1
    }
    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.t(name).iter().map(|&v| v as f32).collect()
    }
    pub fn shape(&self, name: &str) -> &[usize] {
        &self.tensors[name].0
    }
    pub fn param(&self, key: &str) -> f64 {
        self.params.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0)
    }
    pub fn flag(&self, key: &str) -> bool {
        self.params.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
    }
}

pub fn manifest() -> serde_json::Value {
    manifest_in(&dir())
}

pub fn manifest_in(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("golden manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

/// Names of every case of `kind` in the manifest.
pub fn cases_of(kind: &str) -> Vec<String> {
    cases_in(&dir(), kind)
}

/// Names of every case of `kind` in `dir`'s manifest.
pub fn cases_in(dir: &Path, kind: &str) -> Vec<String> {
    manifest_in(dir)["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

pub fn load(name: &str) -> Case {
    load_in(&dir(), name)
}

pub fn load_in(dir: &Path, name: &str) -> Case {
    let m = manifest_in(dir);
    let entry =
        m["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no case {name}"));
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).expect("golden file");
    let st = SafeTensors::deserialize(&bytes).expect("golden file is safetensors");
    let mut tensors = HashMap::new();
    for (tname, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
            other => panic!("{name}/{tname}: unexpected dtype {other:?}"),
        };
        tensors.insert(tname.to_string(), (view.shape().to_vec(), values));
    }
    Case { name: name.to_string(), params: entry["params"].clone(), tensors }
}

/// The golden runs' model: Linear(20,64) BN ReLU Linear(64,64) BN ReLU Linear(64,5).
pub fn mlp_bn_model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let layers = toml::from_str::<L>(
        "layers = [{ type = 'linear', out = 64 }, { type = 'batch-norm' }, { type = 'relu' },
                   { type = 'linear', out = 64 }, { type = 'batch-norm' }, { type = 'relu' },
                   { type = 'linear', out = 5 }]",
    )
    .unwrap()
    .layers;
    Model::new(20, layers).unwrap()
}

/// Flat parameters and batch-norm state from `prefix.*` tensors of a golden case.
pub fn state_of(model: &Model, c: &Case, prefix: &str) -> (Vec<f32>, NormState) {
    let mut flat = vec![0.0f32; model.param_len];
    for t in &model.params {
        let v = c.t(&format!("{prefix}.{}", t.name));
        assert_eq!(v.len(), t.len, "{}", t.name);
        for (dst, &src) in flat[t.offset..t.offset + t.len].iter_mut().zip(v) {
            *dst = src as f32;
        }
    }
    (flat, norm_of(model, c, prefix))
}

/// Batch-norm state (running statistics, num_batches_tracked) from `prefix.*` tensors.
pub fn norm_of(model: &Model, c: &Case, prefix: &str) -> NormState {
    let mut norm = model.init_norm_state();
    for t in &model.running {
        let v = c.t(&format!("{prefix}.{}", t.name));
        for (dst, &src) in norm.running[t.offset..t.offset + t.len].iter_mut().zip(v) {
            *dst = src as f32;
        }
    }
    for (k, layer) in model.norms.iter().enumerate() {
        norm.batches_tracked[k] = c.t(&format!("{prefix}.{}.num_batches_tracked", layer.name))[0] as u64;
    }
    norm
}

/// |got − want| ≤ rel·(|want| + floor) + extra, element-wise; returns the worst share of the bound.
pub fn check(what: &str, got: &[f32], want: &[f64], rel: f64, floor: f64, extra: f64) -> f64 {
    let bound: Vec<f64> = want.iter().map(|w| rel * (w.abs() + floor) + extra).collect();
    super::assert_within(what, got, want, &bound).1
}

/// The case's optimizer from its manifest parameters (optimizer, lr, momentum, weight_decay,
/// nesterov).
pub fn golden_optimizer(c: &Case) -> Optimizer {
    let mut t = toml::Table::new();
    t.insert("type".into(), toml::Value::String(c.params["optimizer"].as_str().unwrap().to_lowercase()));
    for key in ["lr", "momentum", "weight_decay"] {
        if let Some(v) = c.params.get(key).and_then(|v| v.as_f64()) {
            t.insert(key.into(), toml::Value::Float(v));
        }
    }
    if c.flag("nesterov") {
        t.insert("nesterov".into(), toml::Value::Boolean(true));
    }
    toml::Value::Table(t).try_into().unwrap_or_else(|e| panic!("{}: {e}", c.name))
}

/// Relative tolerance of a golden training run's results after `steps` steps, where every f32
/// sum of a step (forward dot products, batch statistics, gradient sums over the rows) has at
/// most `k` terms: each is within γ_k of exact relative to Σ|terms|, and over `steps` steps of a
/// trajectory that does not amplify errors that is steps·k·u.
pub fn trajectory_tol(steps: usize, k: usize) -> f64 {
    (steps * k) as f64 * super::EPS
}
