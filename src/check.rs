//! `gradflow check`: every kernel on this machine's adapter against the CPU reference (run in
//! f64 on the same f32 inputs) on random shapes, with each op's worst error and its share of a
//! forward-error bound. The first thing to run on a new GPU or driver. The bounds are the ones
//! the tests hold the kernels to, one function per op in `reference::bounds` (u = 2^-24, a
//! length-K sum within γ_K·Σ|terms|, built-ins within Vulkan's precision); the optimizers' come
//! from `kernels::optim`.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::Result;
use crate::exec::ops;
use crate::kernels::optim::{
    clip_coefficient_rel_error, grad_norm_rel_error, update_step_error_bound, GpuOptimizer, NORM_CHUNK, NORM_THREADS,
};
use crate::kernels::Gpu;
use crate::optim::{Optimizer, OptimizerSetup, ParamGroups, CLIP_EPS};
use crate::reference as cpu;
use crate::reference::bounds;
use crate::spec::Act;
use crate::train::Placement;

fn random(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// One op's result: worst |gpu − reference| and the largest error/bound ratio.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The op and its shape, as the table prints it.
    pub op: String,
    pub worst: f64,
    /// The worst error as a fraction of its bound: the op passes at ≤ 1.
    pub share: f64,
}

impl Outcome {
    /// Whether every error is within its bound.
    pub fn pass(&self) -> bool {
        self.share <= 1.0
    }
}

fn compare(op: String, got: &[f32], want: &[f64], bound: &[f64]) -> Outcome {
    let mut o = Outcome { op, worst: 0.0, share: 0.0 };
    if got.len() != want.len() {
        o.share = f64::INFINITY;
        return o;
    }
    for ((g, w), b) in got.iter().zip(want).zip(bound) {
        let e = (*g as f64 - w).abs();
        o.worst = o.worst.max(e);
        // f32's smallest normal: GPUs may flush subnormals.
        let share = if e <= f32::MIN_POSITIVE as f64 { 0.0 } else { e / b.max(1e-300) };
        o.share = if share.is_nan() { f64::INFINITY } else { o.share.max(share) };
    }
    o
}

async fn linear(gpu: &Gpu, rng: &mut StdRng, m: usize, k: usize, n: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let (x, w, b, dz) = (
        random(rng, m * k, -1.0, 1.0),
        random(rng, n * k, -1.0, 1.0),
        random(rng, n, -1.0, 1.0),
        random(rng, m * n, -1.0, 1.0),
    );
    let shape = format!("{m}×{k}×{n}");
    let (z, y_ref) = cpu::linear_forward(&wide(&x), &wide(&w), Some(&wide(&b)), m, k, n, Act::IDENTITY);
    let (_, bound) = bounds::linear_forward_bound(&x, &w, Some(&b), m, k, n, Act::IDENTITY, &z, &y_ref);
    let (_, y) = ops::linear_forward_async(gpu, &x, &w, Some(&b), m, k, n, Act::IDENTITY).await?;
    out.push(compare(format!("linear_forward {shape}"), &y, &y_ref, &bound));
    let dx = cpu::linear_backward_input(&wide(&dz), &wide(&w), m, k, n);
    let bound = bounds::linear_backward_input_bound(&dz, &w, m, k, n, &dx);
    out.push(compare(
        format!("linear_backward_input {shape}"),
        &ops::linear_backward_input_async(gpu, &dz, &w, m, k, n, None).await?,
        &dx,
        &bound,
    ));
    let dw = cpu::linear_backward_weight(&wide(&dz), &wide(&x), m, k, n);
    let bound = bounds::linear_backward_weight_bound(&dz, &x, m, k, n, &dw);
    out.push(compare(
        format!("linear_backward_weight {shape}"),
        &ops::linear_backward_weight_async(gpu, &dz, &x, m, k, n).await?,
        &dw,
        &bound,
    ));
    let (dw_fused, db_fused) = ops::linear_backward_weight_and_bias_async(gpu, &dz, &x, m, k, n).await?;
    out.push(compare(format!("linear_backward_weight (with bias) {shape}"), &dw_fused, &dw, &bound));
    let db = cpu::bias_grad(&wide(&dz), m, n);
    let bound = bounds::bias_grad_bound(&dz, m, n);
    out.push(compare(format!("bias_grad {m}×{n} (fused into dW)"), &db_fused, &db, &bound));
    Ok(())
}

async fn activations(gpu: &Gpu, rng: &mut StdRng, len: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let x = random(rng, len, -9.0, 9.0);
    let dy = random(rng, len, -1.0, 1.0);
    for act in ops::all_activations() {
        let name = act.kind.name();
        let want: Vec<f64> = x.iter().map(|&v| cpu::activate(v as f64, act)).collect();
        let bound = bounds::activation_forward_bound(act, &x, &want);
        out.push(compare(
            format!("activation_forward {name} ×{len}"),
            &ops::activation_forward_async(gpu, &x, act).await?,
            &want,
            &bound,
        ));
        let want: Vec<f64> = cpu::activation_backward(&wide(&x), &wide(&dy), act);
        let bound = bounds::activation_backward_bound(act, &x, &dy, &want);
        out.push(compare(
            format!("activation_backward {name} ×{len}"),
            &ops::activation_backward_async(gpu, &x, &dy, act).await?,
            &want,
            &bound,
        ));
    }
    Ok(())
}

async fn losses(gpu: &Gpu, rng: &mut StdRng, rows: usize, cols: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let logits = random(rng, rows * cols, -20.0, 20.0);
    let labels: Vec<u32> = (0..rows).map(|_| rng.random_range(0..cols as u32)).collect();
    // The references here are f64, the exact values the loss bounds are stated against.
    let want = cpu::cross_entropy(&wide(&logits), &labels, rows, cols);
    let got = ops::cross_entropy_async(gpu, &logits, &labels, rows, cols).await?;
    let (loss_bound, bound) = bounds::cross_entropy_bounds(&logits, &labels, rows, cols);
    out.push(compare(format!("cross_entropy loss {rows}×{cols}"), &[got.loss], &[want.loss], &[loss_bound]));
    out.push(compare(format!("cross_entropy grad {rows}×{cols}"), &got.grad, &want.grad, &bound));
    let targets = random(rng, rows * cols, -1.0, 1.0);
    let want = cpu::mse(&wide(&logits), Some(&wide(&targets)), &labels, rows, cols);
    let got = ops::mse_async(gpu, &logits, Some(&targets), &labels, rows, cols).await?;
    let (loss_bound, bound) = bounds::mse_bounds(&logits, &wide(&targets), rows, cols);
    out.push(compare(format!("mse loss {rows}×{cols}"), &[got.loss], &[want.loss], &[loss_bound]));
    out.push(compare(format!("mse grad {rows}×{cols}"), &got.grad, &want.grad, &bound));
    Ok(())
}

async fn batchnorm(gpu: &Gpu, rng: &mut StdRng, m: usize, n: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let centres = random(rng, n, -50.0, 50.0);
    let x: Vec<f32> = (0..m * n).map(|i| centres[i % n] + rng.random_range(-2.0f32..2.0)).collect();
    let (gamma_v, beta_v, dy) = (random(rng, n, 0.5, 2.0), random(rng, n, -1.0, 1.0), random(rng, m * n, -1.0, 1.0));
    let eps = 1e-5;
    let stats = cpu::batchnorm_stats(&wide(&x), m, n, eps);
    let y = cpu::batchnorm_forward(&wide(&x), m, n, &wide(&gamma_v), &wide(&beta_v), &stats, Act::IDENTITY);
    let (dx, dg, db) =
        cpu::batchnorm_backward(&wide(&x), &wide(&dy), m, n, &wide(&gamma_v), &wide(&beta_v), &stats, Act::IDENTITY);
    let gb = bounds::BatchNormBounds::new(&x, m, n, &gamma_v, &beta_v, eps);
    let ones = vec![1.0f32; n];
    let (gy, _, _) =
        ops::batchnorm_forward_async(gpu, &x, m, n, &gamma_v, &beta_v, &ones, &ones, eps, Some(0.1), Act::IDENTITY)
            .await?;
    out.push(compare(format!("batchnorm_forward {m}×{n}"), &gy, &y, &gb.y));
    let (gdx, gdg, gdb) =
        ops::batchnorm_backward_async(gpu, &x, &dy, m, n, &gamma_v, &beta_v, eps, Act::IDENTITY).await?;
    let (bdx, bdg, bdb) = gb.backward(&x, &dy, m, n, &gamma_v, eps);
    out.push(compare(format!("batchnorm_backward dx {m}×{n}"), &gdx, &dx, &bdx));
    out.push(compare(format!("batchnorm_backward dgamma {m}×{n}"), &gdg, &dg, &bdg));
    out.push(compare(format!("batchnorm_backward dbeta {m}×{n}"), &gdb, &db, &bdb));
    let (a, b) = (random(rng, m * n, -5.0, 5.0), random(rng, m * n, -5.0, 5.0));
    let want = cpu::residual_add(&wide(&a), &wide(&b));
    let bound = bounds::residual_add_bound(&want);
    out.push(compare(format!("residual_add ×{}", m * n), &ops::residual_add_async(gpu, &a, &b).await?, &want, &bound));
    Ok(())
}

async fn optimizers(gpu: &Gpu, rng: &mut StdRng, len: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let t = |s: &str| -> Result<Optimizer> {
        toml::from_str(s).map_err(|e| crate::error::Error::Usage(format!("check optimizer: {e}")))
    };
    let all = [
        t("type='sgd'\nlr=0.1\nmomentum=0.9\nnesterov=true\nweight_decay=0.01")?,
        t("type='adagrad'\nlr=0.1")?,
        t("type='rmsprop'\nlr=0.01\ncentered=true\nmomentum=0.5")?,
        t("type='adam'\nlr=0.01\namsgrad=true")?,
        t("type='adamw'\nlr=0.01")?,
    ];
    let p0 = random(rng, len, -1.0, 1.0);
    let grads: Vec<Vec<f32>> = (0..5).map(|_| random(rng, len, -1.0, 1.0)).collect();
    for opt in all {
        let setup = OptimizerSetup::from(opt.clone());
        let groups = ParamGroups::flat(&opt, len);
        let (iterates, _) = ops::optimizer_update_async(gpu, &p0, &grads, &setup, groups.clone()).await?;
        // The f64 reference run, and per step the update kernels' bound (tests/optimizers.rs).
        let mut p = wide(&p0);
        let mut state: Vec<f64> = opt.initial_state(len).iter().map(|&v| v as f64).collect();
        let mut bound = vec![0.0f64; len];
        for (s, g) in grads.iter().enumerate() {
            let before = p.clone();
            let step = crate::optim::OptimizerStep {
                optimizer: &opt,
                step: s as u32 + 1,
                lr_factor: 1.0,
                groups: &groups,
                max_norm: None,
            };
            cpu::optimizer_update(&mut p, &wide(g), &mut state, &step, 1.0);
            for i in 0..len {
                bound[i] += update_step_error_bound(p[i], p[i] - before[i], s as u32 + 1);
            }
        }
        let last = iterates.last().map(Vec::as_slice).unwrap_or(&[]);
        out.push(compare(format!("{}_update 5 steps ×{len}", opt.name()), last, &p, &bound));
    }
    Ok(())
}

/// clip_grad_norm's gradient norm and coefficient (grad_norm_partial, grad_norm_finish) against
/// the f64 ones, within the bounds of the kernels' fixed summation order.
async fn gradient_norm(gpu: &Gpu, rng: &mut StdRng, len: usize, out: &mut Vec<Outcome>) -> Result<()> {
    let grad = random(rng, len, -1.0, 1.0);
    let norm64 = grad.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt();
    let opt = Optimizer::Sgd(crate::optim::Sgd::new(0.1));
    let (param, g) = (gpu.upload("param", &vec![0.0f32; len])?, gpu.upload("grad", &grad)?);
    let mut clip = GpuOptimizer::new(gpu, &param, &g, &opt, ParamGroups::flat(&opt, len), Some(1.0))?;
    clip.prepare(gpu, 1, 1.0);
    crate::device::submit(gpu, "gradient norm", &clip.dispatches().collect::<Vec<_>>())?;
    let (coef, norm) = clip.clip_stats_async(gpu).await?;
    // The f64 reference's own error (γ_{len+1} in f64) joins both bounds.
    let reference = (len + 1) as f64 * f64::EPSILON;
    let bound = (grad_norm_rel_error(len) + reference) * norm64;
    out.push(compare(format!("grad_norm ×{len}"), &[norm], &[norm64], &[bound]));
    let want = (1.0 / (norm64 + CLIP_EPS as f64)).min(1.0);
    let bound = (clip_coefficient_rel_error(len) + reference) * want;
    out.push(compare(format!("clip_grad_norm coefficient ×{len}"), &[coef], &[want], &[bound]));
    Ok(())
}

/// H·v by the GPU's R-operator against the CPU reference's (f64) on a small model with every
/// layer type, batch norm in training mode over two batches.
async fn hessian_vector_products(
    gpu: &Gpu,
    rng: &mut StdRng,
    loss: crate::spec::Loss,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    use crate::exec::hessian::{gpu_hvp_error_bound, Hessian};
    use crate::spec::LayerSpec;
    let l = |out| LayerSpec::Linear { out, bias: true };
    let layers = vec![
        l(7),
        LayerSpec::Tanh,
        LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        LayerSpec::Gelu,
        LayerSpec::Residual { layers: vec![l(7), LayerSpec::Sigmoid, l(7)], projection: false },
        LayerSpec::LeakyRelu { negative_slope: 0.1 },
        l(3),
    ];
    let model = crate::spec::Model::new(5, layers)?;
    let rows = 20;
    let labels = (0..rows).map(|_| rng.random_range(0..3u32)).collect();
    let data = crate::data::Dataset::new(random(rng, rows * 5, -2.0, 2.0), labels, 5, 3, "check data")?;
    let params = model.init_params(rng.random());
    let mut reference = Hessian::new(model.clone(), loss, &params, &data, 10)?;
    let mut device = Hessian::new(model.clone(), loss, &params, &data, 10)?;
    device.use_gpu(std::sync::Arc::new(gpu.clone()))?;
    let v: Vec<f64> = (0..reference.dim()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let want = reference.hv_async(&v).await?;
    let got: Vec<f32> = device.hv_async(&v).await?.iter().map(|&x| x as f32).collect();
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let bound = vec![gpu_hvp_error_bound(&model, 10, scale); want.len()];
    out.push(compare(format!("hessian_vector_product {} ({} params)", loss.name(), want.len()), &got, &want, &bound));
    Ok(())
}

/// Every check on `gpu`, each op's outcome in the order `gradflow check` prints them; every
/// read-back awaited (the form a browser page uses).
pub async fn run_async(gpu: &Gpu) -> Result<Vec<Outcome>> {
    let mut rng = StdRng::seed_from_u64(0x6772_6164);
    let mut out = Vec::new();
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (65, 67, 63), (257, 129, 131)] {
        linear(gpu, &mut rng, m, k, n, &mut out).await?;
    }
    activations(gpu, &mut rng, 4099, &mut out).await?;
    for (rows, cols) in [(1, 2), (67, 10), (300, 257)] {
        losses(gpu, &mut rng, rows, cols, &mut out).await?;
    }
    for (m, n) in [(2, 3), (17, 33), (1000, 70)] {
        batchnorm(gpu, &mut rng, m, n, &mut out).await?;
    }
    optimizers(gpu, &mut rng, 10_007, &mut out).await?;
    for loss in [crate::spec::Loss::CrossEntropy, crate::spec::Loss::Mse] {
        hessian_vector_products(gpu, &mut rng, loss, &mut out).await?;
    }
    // Past 256 chunks, where each invocation of grad_norm_finish adds a second partial.
    gradient_norm(gpu, &mut rng, NORM_CHUNK * NORM_THREADS + 1031, &mut out).await?;
    Ok(out)
}

/// Runs every check and prints one line per op; `Ok(true)` when all are within their bounds.
pub fn run(placement: &Placement) -> Result<bool> {
    let gpu = Gpu::new(placement.adapter.as_deref())?;
    crate::say!("adapter: {}", gpu.describe());
    let out = crate::device::wait("gradflow check", run_async(&gpu))?;
    let mut ok = true;
    crate::say!("{:<52} {:>12} {:>10}", "op (shape)", "worst error", "of bound");
    for o in &out {
        let pass = o.pass();
        ok &= pass;
        crate::say!("{:<52} {:>12.3e} {:>9.1}% {}", o.op, o.worst, 100.0 * o.share, if pass { "ok" } else { "FAIL" });
    }
    crate::say!("{} ops checked: {}", out.len(), if ok { "all within bounds" } else { "FAILURES above" });
    Ok(ok)
}
