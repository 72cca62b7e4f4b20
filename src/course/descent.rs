//! Any optimizer on an explicit function: each step the host evaluates ∇f at the current
//! parameters and the optimizer applies it, on the GPU through the training path's fused update
//! (`gpu::optimizer`) or on the CPU reference (`reference::optimizer_update`, f32), so an experiment on
//! a 2-D surface runs the exact update code a network is trained with.

use crate::device::{submit, Dispatch};
use crate::error::{Error, Result};
use crate::kernels::optim::GpuOptimizer;
use crate::kernels::Gpu;
use crate::optim::{OptimizerSetup, OptimizerStep, ParamGroups};

/// Where the update runs.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    Cpu,
    Gpu(&'a Gpu),
}

impl Backend<'_> {
    pub fn name(&self) -> String {
        match self {
            Backend::Cpu => "CPU reference".into(),
            Backend::Gpu(g) => format!("GPU ({})", g.info.name),
        }
    }
}

/// `steps` steps of `setup` from `x0` with the gradient `grad`; every iterate, x0 first.
pub fn run_optimizer(
    backend: Backend,
    setup: &OptimizerSetup,
    x0: &[f32],
    steps: usize,
    grad: impl FnMut(&[f64]) -> Vec<f64>,
) -> Result<Vec<Vec<f64>>> {
    run_optimizer_within(backend, setup, x0, steps, f64::INFINITY, grad)
}

/// As `run_optimizer`, stopping early once an iterate's norm exceeds `radius` (a run escaping
/// down an unbounded surface, such as the monkey saddle's valleys).
pub fn run_optimizer_within(
    backend: Backend,
    setup: &OptimizerSetup,
    x0: &[f32],
    steps: usize,
    radius: f64,
    grad: impl FnMut(&[f64]) -> Vec<f64>,
) -> Result<Vec<Vec<f64>>> {
    crate::device::wait("an optimizer on a surface", run_optimizer_async(backend, setup, x0, steps, radius, grad))
}

/// `run_optimizer_within` as a future, each GPU iterate's read-back awaited: the form a browser
/// page uses.
pub async fn run_optimizer_async(
    backend: Backend<'_>,
    setup: &OptimizerSetup,
    x0: &[f32],
    steps: usize,
    radius: f64,
    mut grad: impl FnMut(&[f64]) -> Vec<f64>,
) -> Result<Vec<Vec<f64>>> {
    setup.optimizer.validate().map_err(|m| Error::Usage(format!("optimizer ({}): {m}", setup.optimizer.name())))?;
    let escaped = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt() > radius;
    if x0.is_empty() || x0.iter().any(|v| !v.is_finite()) {
        return Err(Error::Usage("the starting point must be non-empty and finite".into()));
    }
    let n = x0.len();
    let groups = ParamGroups::flat(&setup.optimizer, n);
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut out = vec![wide(x0)];
    let mut gradient = |x: &[f64]| -> Result<Vec<f32>> {
        let g = grad(x);
        if g.len() != n || g.iter().any(|v| !v.is_finite()) {
            return Err(Error::Usage(format!("the gradient at {x:?} is not {n} finite numbers: {g:?}")));
        }
        Ok(g.iter().map(|&v| v as f32).collect())
    };
    match backend {
        Backend::Cpu => {
            let mut x = x0.to_vec();
            let mut state = setup.optimizer.initial_state(n);
            for k in 0..steps {
                if escaped(&out[k]) {
                    break;
                }
                let g = gradient(&out[k])?;
                let step = OptimizerStep {
                    optimizer: &setup.optimizer,
                    step: k as u32 + 1,
                    lr_factor: setup.schedule.factor(k as u32),
                    groups: &groups,
                    max_norm: setup.clip_grad_norm,
                };
                let coef = crate::reference::clip_coefficient(&g, setup.clip_grad_norm);
                crate::reference::optimizer_update(&mut x, &g, &mut state, &step, coef);
                out.push(wide(&x));
            }
        }
        Backend::Gpu(gpu) => {
            let params = gpu.upload("surface parameters", x0)?;
            let grads = gpu.storage("surface gradient", n)?;
            let mut opt = GpuOptimizer::new(gpu, &params, &grads, &setup.optimizer, groups, setup.clip_grad_norm)?;
            for k in 0..steps {
                if escaped(&out[k]) {
                    break;
                }
                let g = gradient(&out[k])?;
                gpu.write(&grads, &g);
                opt.prepare(gpu, k as u32 + 1, setup.schedule.factor(k as u32));
                let launches: Vec<&Dispatch> = opt.dispatches().collect();
                submit(gpu, "optimizer on a surface", &launches)?;
                out.push(wide(&gpu.read_async(&params, 0, n).await?));
            }
        }
    }
    Ok(out)
}
