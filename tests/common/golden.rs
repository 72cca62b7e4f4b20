//! Reading the PyTorch golden cases (tests/fixtures/golden, copied from ../shared/golden).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
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
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("golden manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

/// Names of every case of `kind` in the manifest.
pub fn cases_of(kind: &str) -> Vec<String> {
    manifest()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

pub fn load(name: &str) -> Case {
    let m = manifest();
    let entry =
        m["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no case {name}"));
    let bytes = std::fs::read(dir().join(entry["file"].as_str().unwrap())).expect("golden file");
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
