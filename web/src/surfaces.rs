//! The Surfaces view: an optimizer's iterates on one of the course's 2-D surfaces, stepped by
//! the same fused update a network trains with (`course::descent`), on the GPU or the CPU.

use gradflow::course::descent::{run_optimizer_async, Backend};
use gradflow::course::surfaces::Surface;
use gradflow::error::{Error, Result};
use gradflow::optim::{Optimizer, OptimizerSetup};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{js_error, Lab};

/// An iterate this far from the origin has left the picture for good (the saddle's escape).
const ESCAPE_RADIUS: f64 = 1e3;

#[derive(Serialize)]
struct SurfaceRun {
    surface: String,
    /// x from, x to, y from, y to: the box the course draws the surface in.
    bounds: [f64; 4],
    path: Vec<[f64; 2]>,
    values: Vec<f64>,
    device: String,
}

/// The course's surfaces by the names the page uses.
fn surface_named(name: &str) -> Result<Surface> {
    Ok(match name {
        "quadratic" => Surface::Quadratic { kappa: 100.0 },
        "rosenbrock" => Surface::Rosenbrock,
        "saddle" => Surface::Saddle,
        "monkey-saddle" => Surface::MonkeySaddle,
        other => {
            return Err(Error::Usage(format!(
                "surface \"{other}\": expected quadratic, rosenbrock, saddle or monkey-saddle"
            )))
        }
    })
}

/// An `[optimizer]` table's body (`type = "sgd"`, `lr = 0.01`, …), checked as the config checks it.
fn optimizer_of(text: &str) -> Result<OptimizerSetup> {
    let optimizer: Optimizer =
        toml::from_str(text).map_err(|e| Error::Usage(format!("[optimizer]: {}", e.message())))?;
    let setup = OptimizerSetup::from(optimizer);
    setup.validate().map_err(|m| Error::Usage(format!("[optimizer]: {m}")))?;
    Ok(setup)
}

#[wasm_bindgen]
impl Lab {
    /// `steps` steps of the optimizer `optimizer_toml` (an `[optimizer]` table's body) from the
    /// surface's course start, on `executor` ("gpu" or "cpu"); JSON `SurfaceRun`.
    pub fn surface(&self, name: &str, optimizer_toml: &str, steps: usize, executor: &str) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        let (name, text, executor) = (name.to_string(), optimizer_toml.to_string(), executor.to_string());
        future_to_promise(async move {
            let run = async {
                let surface = surface_named(&name)?;
                let setup = optimizer_of(&text)?;
                let backend = match (executor.as_str(), &gpu) {
                    ("cpu", _) => Backend::Cpu,
                    ("gpu", Some(g)) => Backend::Gpu(g),
                    ("gpu", None) => return Err(Error::NoAdapter(" in this browser".into())),
                    (other, _) => {
                        return Err(Error::Usage(format!("executor \"{other}\": expected \"gpu\" or \"cpu\"")))
                    }
                };
                let device = backend.name();
                let start = surface.start();
                let grad = |x: &[f64]| surface.gradient(x[0], x[1]).to_vec();
                let path =
                    run_optimizer_async(backend, &setup, &start, steps.min(100_000), ESCAPE_RADIUS, grad).await?;
                let (x0, x1, y0, y1) = surface.bounds();
                Ok(SurfaceRun {
                    surface: surface.name(),
                    bounds: [x0, x1, y0, y1],
                    values: path.iter().map(|p| surface.value(p[0], p[1])).collect(),
                    path: path.iter().map(|p| [p[0], p[1]]).collect(),
                    device,
                })
            };
            let out = run.await.map_err(js_error)?;
            Ok(crate::json(&out)?.into())
        })
    }
}
