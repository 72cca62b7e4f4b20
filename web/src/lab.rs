//! The page's handle on its devices: the WebGPU adapter (if the browser offers one) and the CPU
//! reference, and what the adapter can do.

use std::sync::Arc;

use gradflow::kernels::Gpu;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::json;

/// The devices the page trains on.
#[wasm_bindgen]
pub struct Lab {
    pub(crate) gpu: Option<Arc<Gpu>>,
    /// Why there is no GPU, when there is none.
    pub(crate) why_no_gpu: Option<String>,
}

/// Opens the browser's WebGPU adapter and compiles every kernel family on it. A browser without
/// WebGPU still gets a lab: the CPU reference alone, and the reason in `adapter()`.
#[wasm_bindgen]
pub async fn open_lab() -> Lab {
    match Gpu::open().await {
        Ok(gpu) => Lab { gpu: Some(Arc::new(gpu)), why_no_gpu: None },
        Err(e) => Lab { gpu: None, why_no_gpu: Some(e.to_string()) },
    }
}

/// What the page shows of the adapter (camelCase for JavaScript).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterReport {
    available: bool,
    /// Why there is no adapter.
    why_not: Option<String>,
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    /// The limits gradflow's kernels depend on.
    limits: Vec<(String, u64)>,
    /// Optional features and whether the adapter has them.
    features: Vec<(String, bool)>,
    /// What the page does without the missing ones.
    notes: Vec<String>,
    matmul: String,
}

#[wasm_bindgen]
impl Lab {
    /// Whether a WebGPU adapter is open.
    #[wasm_bindgen(js_name = hasGpu)]
    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The adapter's name, limits and features as JSON (see `AdapterReport`).
    pub fn adapter(&self) -> Result<String, JsError> {
        let Some(gpu) = &self.gpu else {
            return json(&AdapterReport {
                available: false,
                why_not: self.why_no_gpu.clone(),
                name: String::new(),
                backend: String::new(),
                device_type: String::new(),
                driver: String::new(),
                limits: Vec::new(),
                features: Vec::new(),
                notes: vec!["everything runs on the CPU reference (wasm) instead".into()],
                matmul: String::new(),
            });
        };
        let l = &gpu.limits;
        let limits = [
            ("maxStorageBufferBindingSize", l.max_storage_buffer_binding_size),
            ("maxBufferSize", l.max_buffer_size),
            ("maxComputeInvocationsPerWorkgroup", l.max_compute_invocations_per_workgroup as u64),
            ("maxComputeWorkgroupSizeX", l.max_compute_workgroup_size_x as u64),
            ("maxComputeWorkgroupStorageSize", l.max_compute_workgroup_storage_size as u64),
            ("maxComputeWorkgroupsPerDimension", l.max_compute_workgroups_per_dimension as u64),
            ("maxStorageBuffersPerShaderStage", l.max_storage_buffers_per_shader_stage as u64),
        ];
        let features = gpu.device.features();
        let has = |f: wgpu::Features| features.contains(f);
        let mut notes = Vec::new();
        if !has(wgpu::Features::TIMESTAMP_QUERY) {
            notes.push("no timestamp queries: the page times steps by the wall clock".to_string());
        }
        notes.push("the matmul schedule is fixed (tiled): a page cannot block on the autotuner's timings".into());
        json(&AdapterReport {
            available: true,
            why_not: None,
            name: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            device_type: format!("{:?}", gpu.info.device_type),
            driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info).trim().to_string(),
            limits: limits.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            features: vec![
                ("timestamp-query".into(), has(wgpu::Features::TIMESTAMP_QUERY)),
                ("subgroups".into(), has(wgpu::Features::SUBGROUP)),
                ("shader-f16".into(), has(wgpu::Features::SHADER_F16)),
            ],
            notes,
            matmul: gpu.tuning.as_ref().map(|t| t.describe()).unwrap_or_default(),
        })
    }

    /// GPU errors reported since the last call (validation, out of memory), one per line; the
    /// self-test fails on any.
    #[wasm_bindgen(js_name = lateErrors)]
    pub fn late_errors(&self) -> Vec<String> {
        gradflow::device::late_errors()
    }
}
