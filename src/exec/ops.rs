//! Each op run once on host data: upload, one dispatch, read back. Same names and signatures as
//! the CPU reference in `crate::reference`, so a test (or `gradflow check`) holds one against the other.
//! Training does not use these: `GpuNetwork` builds its launches once and reuses them.

use crate::device::submit;
use crate::device::GpuBuffer;
use crate::error::Result;
use crate::kernels::Gpu;
use crate::kernels::GpuOptimizer;
use crate::kernels::{
    ActEntry, ActParams, BnEntry, BnParams, Epilogue, LossParams, MatmulParams, TOTALS_LEN, TOTAL_STEP_LOSS,
};
use crate::optim::{OptimizerSetup, ParamGroups};
use crate::reference::LossOutput;
use crate::spec::Loss;
use crate::spec::{Act, Activation};

/// (z, y): z = x·Wᵀ + b and y = act(z); x [m, k], W [n, k].
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>)> {
    crate::device::wait("linear_forward", linear_forward_async(gpu, x, w, b, m, k, n, act))
}

/// `linear_forward` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn linear_forward_async(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>)> {
    linear_forward_models_async(gpu, x, w, b, m, k, n, act, 1).await
}

/// `linear_forward` for `models` models side by side in one launch (workgroup z is the model):
/// model i's x [m, k], W [n, k], b [n], z and y are the i-th of `models` equal slices of each.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_models(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
    models: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    crate::device::wait("linear_forward_models", linear_forward_models_async(gpu, x, w, b, m, k, n, act, models))
}

/// `linear_forward_models` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn linear_forward_models_async(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
    models: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let gx = gpu.upload("x", x)?;
    let gw = gpu.upload("weight", w)?;
    let gb = b.map(|b| gpu.upload("bias", b)).transpose()?;
    let gy = gpu.storage("y", models * m * n)?;
    let epilogue = Epilogue::dense(b.map(|_| 0), act);
    let gz = if epilogue.keep_z { Some(gpu.storage("z", models * m * n)?) } else { None };
    let p = MatmulParams::dense_forward(m, k, n, 0, epilogue).for_models(models, [m * k, n * k, m * n, m * n, n]);
    let d = gpu.matmul(&gx, &gw, gb.as_ref(), &gy, gz.as_ref(), p)?;
    submit(gpu, "linear_forward_models", &[&d])?;
    let y = gpu.read_all_async(&gy).await?;
    // Without an activation z is y: training keeps no separate copy (the bias-only epilogue).
    let z = match &gz {
        Some(gz) => gpu.read_all_async(gz).await?,
        None => y.clone(),
    };
    Ok((z, y))
}

/// y = x·Wᵀ + b + skip: a Linear with no activation whose output ends a residual block, the sum
/// fused into the product's epilogue as training runs it.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_residual(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    skip: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<f32>> {
    crate::device::wait("linear_forward_residual", linear_forward_residual_async(gpu, x, w, b, skip, m, k, n))
}

/// `linear_forward_residual` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn linear_forward_residual_async(
    gpu: &Gpu,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    skip: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<f32>> {
    let gx = gpu.upload("x", x)?;
    let gw = gpu.upload("weight", w)?;
    let gb = b.map(|b| gpu.upload("bias", b)).transpose()?;
    let gskip = gpu.upload("skip", skip)?;
    let gy = gpu.storage("y", m * n)?;
    let epilogue = Epilogue { add_skip: true, ..Epilogue::dense(b.map(|_| 0), Act::IDENTITY) };
    let p = MatmulParams::dense_forward(m, k, n, 0, epilogue);
    let d = gpu.matmul(&gx, &gw, gb.as_ref(), &gy, Some(&gskip), p)?;
    submit(gpu, "linear_forward_residual", &[&d])?;
    gpu.read_all_async(&gy).await
}

/// dx = dz·W: [m, n]·[n, k]; with `prev` = (z_prev, act) the epilogue multiplies by act'(z_prev),
/// as the training step does to produce the previous layer's dz directly.
pub fn linear_backward_input(
    gpu: &Gpu,
    dz: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    prev: Option<(&[f32], Act)>,
) -> Result<Vec<f32>> {
    crate::device::wait("linear_backward_input", linear_backward_input_async(gpu, dz, w, m, k, n, prev))
}

/// `linear_backward_input` as a future: the form a browser page awaits.
pub async fn linear_backward_input_async(
    gpu: &Gpu,
    dz: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    prev: Option<(&[f32], Act)>,
) -> Result<Vec<f32>> {
    let gdz = gpu.upload("dz", dz)?;
    let gw = gpu.upload("weight", w)?;
    let gdx = gpu.storage("dx", m * k)?;
    let gaux = prev.map(|(z, _)| gpu.upload("z_prev", z)).transpose()?;
    let p = MatmulParams::dense_backward_input(m, k, n, 0, prev.map(|(_, a)| a), false);
    let d = gpu.matmul(&gdz, &gw, None, &gdx, gaux.as_ref(), p)?;
    submit(gpu, "linear_backward_input", &[&d])?;
    gpu.read_all_async(&gdx).await
}

/// dW = dzᵀ·x: [n, m]·[m, k] (a layer without bias).
pub fn linear_backward_weight(gpu: &Gpu, dz: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    crate::device::wait("linear_backward_weight", linear_backward_weight_async(gpu, dz, x, m, k, n))
}

/// `linear_backward_weight` as a future: the form a browser page awaits.
pub async fn linear_backward_weight_async(
    gpu: &Gpu,
    dz: &[f32],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<f32>> {
    backward_weight(gpu, dz, x, m, k, n, false).await.map(|(dw, _)| dw)
}

/// (dW, db): dW = dzᵀ·x and db = Σ_rows dz from the one launch a layer with bias trains with.
pub fn linear_backward_weight_and_bias(
    gpu: &Gpu,
    dz: &[f32],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    crate::device::wait("linear_backward_weight_and_bias", linear_backward_weight_and_bias_async(gpu, dz, x, m, k, n))
}

/// `linear_backward_weight_and_bias` as a future: the form a browser page awaits.
pub async fn linear_backward_weight_and_bias_async(
    gpu: &Gpu,
    dz: &[f32],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    backward_weight(gpu, dz, x, m, k, n, true).await
}

/// The weight-gradient launch into one buffer laid out as training's gradient buffer: dW, then
/// db when `with_bias` (empty otherwise).
async fn backward_weight(
    gpu: &Gpu,
    dz: &[f32],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    with_bias: bool,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let gdz = gpu.upload("dz", dz)?;
    let gx = gpu.upload("x", x)?;
    let bias_len = if with_bias { n } else { 0 };
    let grads = gpu.storage("dweight and dbias", n * k + bias_len)?;
    let p = MatmulParams::dense_backward_params(m, k, n, 0, with_bias.then_some(n * k), false);
    let d = gpu.matmul(&gdz, &gx, None, &grads, None, p)?;
    submit(gpu, "linear_backward_weight", &[&d])?;
    let mut dw = gpu.read_all_async(&grads).await?;
    let db = dw.split_off(n * k);
    Ok((dw, db))
}

fn act_params(act: Act, len: usize) -> ActParams {
    ActParams { len: len as u32, act: act.kind.code(), slope: act.slope, flags: 0 }
}

pub fn activation_forward(gpu: &Gpu, x: &[f32], act: Act) -> Result<Vec<f32>> {
    crate::device::wait("activation_forward", activation_forward_async(gpu, x, act))
}

/// `activation_forward` as a future: the form a browser page awaits.
pub async fn activation_forward_async(gpu: &Gpu, x: &[f32], act: Act) -> Result<Vec<f32>> {
    let gx = gpu.upload("x", x)?;
    let gy = gpu.storage("y", x.len())?;
    let d = gpu.activation(ActEntry::Forward, &gx, None, &gy, act_params(act, x.len()))?;
    submit(gpu, "activation_forward", &[&d])?;
    gpu.read_all_async(&gy).await
}

pub fn activation_backward(gpu: &Gpu, x: &[f32], dy: &[f32], act: Act) -> Result<Vec<f32>> {
    crate::device::wait("activation_backward", activation_backward_async(gpu, x, dy, act))
}

/// `activation_backward` as a future: the form a browser page awaits.
pub async fn activation_backward_async(gpu: &Gpu, x: &[f32], dy: &[f32], act: Act) -> Result<Vec<f32>> {
    let gx = gpu.upload("x", x)?;
    let gdy = gpu.upload("dy", dy)?;
    let gdx = gpu.storage("dx", x.len())?;
    let d = gpu.activation(ActEntry::Backward, &gx, Some(&gdy), &gdx, act_params(act, x.len()))?;
    submit(gpu, "activation_backward", &[&d])?;
    gpu.read_all_async(&gdx).await
}

/// `loss` over `models` models side by side in one launch (workgroup z is the model): model i's
/// logits, labels and targets are the i-th of `models` equal slices of each.
#[allow(clippy::too_many_arguments)]
pub fn loss_models(
    gpu: &Gpu,
    loss: Loss,
    logits: &[f32],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
    models: usize,
) -> Result<Vec<LossOutput>> {
    crate::device::wait("loss_models", loss_models_async(gpu, loss, logits, targets, labels, rows, cols, models))
}

/// `loss_models` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn loss_models_async(
    gpu: &Gpu,
    loss: Loss,
    logits: &[f32],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
    models: usize,
) -> Result<Vec<LossOutput>> {
    let gl = gpu.upload("logits", logits)?;
    let glab = gpu.upload("labels", labels)?;
    let gt = targets.map(|t| gpu.upload("targets", t)).transpose()?;
    let grad = gpu.storage("grad", models * rows * cols)?;
    let stats = gpu.storage("row stats", models * 2 * rows)?;
    let totals = gpu.storage("totals", models * TOTALS_LEN)?;
    let matrix = rows * cols;
    let p = LossParams::new(rows, cols, targets.is_some())
        .for_models(models, [matrix, rows, matrix, matrix, 2 * rows, TOTALS_LEN]);
    let step = gpu.loss_step(loss, &gl, &glab, gt.as_ref(), &grad, &stats, &totals, p, rows)?;
    submit(gpu, loss.name(), &step.iter().collect::<Vec<_>>())?;
    let (stats, totals, grad) =
        (gpu.read_all_async(&stats).await?, gpu.read_all_async(&totals).await?, gpu.read_all_async(&grad).await?);
    Ok((0..models)
        .map(|i| LossOutput {
            loss: totals[i * TOTALS_LEN + TOTAL_STEP_LOSS],
            grad: grad[i * matrix..(i + 1) * matrix].to_vec(),
            correct: stats[i * 2 * rows..(i + 1) * 2 * rows].chunks(2).filter(|c| c[1] != 0.0).count(),
        })
        .collect())
}

async fn loss_launch(
    gpu: &Gpu,
    loss: Loss,
    logits: &[f32],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<LossOutput> {
    let mut one = loss_models_async(gpu, loss, logits, targets, labels, rows, cols, 1).await?;
    Ok(one.remove(0))
}

pub fn cross_entropy(gpu: &Gpu, logits: &[f32], labels: &[u32], rows: usize, cols: usize) -> Result<LossOutput> {
    crate::device::wait("cross_entropy", cross_entropy_async(gpu, logits, labels, rows, cols))
}

/// `cross_entropy` as a future: the form a browser page awaits.
pub async fn cross_entropy_async(
    gpu: &Gpu,
    logits: &[f32],
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<LossOutput> {
    loss_launch(gpu, Loss::CrossEntropy, logits, None, labels, rows, cols).await
}

pub fn mse(
    gpu: &Gpu,
    pred: &[f32],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<LossOutput> {
    crate::device::wait("mse", mse_async(gpu, pred, targets, labels, rows, cols))
}

/// `mse` as a future: the form a browser page awaits.
pub async fn mse_async(
    gpu: &Gpu,
    pred: &[f32],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<LossOutput> {
    let labels: Vec<u32> = if labels.is_empty() { vec![0; rows] } else { labels.to_vec() };
    loss_launch(gpu, Loss::Mse, pred, targets, &labels, rows, cols).await
}

/// y = a + b: the end of a residual block.
pub fn residual_add(gpu: &Gpu, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    crate::device::wait("residual_add", residual_add_async(gpu, a, b))
}

/// `residual_add` as a future: the form a browser page awaits.
pub async fn residual_add_async(gpu: &Gpu, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    let ga = gpu.upload("a", a)?;
    let gb = gpu.upload("b", b)?;
    let gy = gpu.storage("y", a.len())?;
    let d = gpu.residual_add(&ga, &gb, &gy, act_params(Act::IDENTITY, a.len()))?;
    submit(gpu, "residual_add", &[&d])?;
    gpu.read_all_async(&gy).await
}

/// One batch-norm layer's buffers, laid out as the network lays them out: γ then β in a
/// parameter buffer, running mean then variance in a running buffer, dγ and dβ in a gradient one.
struct BatchNormBuffers {
    x: GpuBuffer,
    params: GpuBuffer,
    running: GpuBuffer,
    stats: GpuBuffer,
    grads: GpuBuffer,
    p: BnParams,
}

#[allow(clippy::too_many_arguments)]
fn batchnorm_buffers(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
    act: Act,
) -> Result<BatchNormBuffers> {
    let p = BnParams::layer(m, n, 0, n, 0, n, eps, act);
    Ok(BatchNormBuffers {
        x: gpu.upload("x", x)?,
        params: gpu.upload("gamma, beta", &[gamma, beta].concat())?,
        running: gpu.upload("running mean, running var", &[running_mean, running_var].concat())?,
        stats: gpu.storage("batch-norm statistics", 3 * n)?,
        grads: gpu.storage("dgamma, dbeta", 2 * n)?,
        p,
    })
}

/// y = act(γ·x̂ + β) for an [m, n] batch: with `train = Some(factor)` from the batch's statistics,
/// updating the running ones with that blend factor (the momentum); with `None` (eval mode) from
/// the running statistics. Returns (y, running_mean, running_var) as they are afterwards.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
    train: Option<f64>,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    crate::device::wait(
        "batchnorm_forward",
        batchnorm_forward_async(gpu, x, m, n, gamma, beta, running_mean, running_var, eps, train, act),
    )
}

/// `batchnorm_forward` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn batchnorm_forward_async(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
    train: Option<f64>,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    if train.is_some() && m < 2 {
        return Err(crate::error::Error::Usage(format!(
            "batchnorm_forward in training mode needs more than 1 row per batch, got {m}"
        )));
    }
    let b = batchnorm_buffers(gpu, x, m, n, gamma, beta, running_mean, running_var, eps, act)?;
    let gy = gpu.storage("y", m * n)?;
    let p = match train {
        Some(factor) => b.p.training(factor),
        None => b.p,
    };
    let stats = gpu.batchnorm(BnEntry::Stats, &b.x, None, &b.params, &b.running, &b.stats, None, &b.grads, p)?;
    let fwd = gpu.batchnorm(BnEntry::Forward, &b.x, None, &b.params, &b.running, &b.stats, Some(&gy), &b.grads, p)?;
    submit(gpu, "batchnorm_forward", &[&stats, &fwd])?;
    let running = gpu.read_all_async(&b.running).await?;
    Ok((gpu.read_all_async(&gy).await?, running[..n].to_vec(), running[n..].to_vec()))
}

/// One rank's share of a synchronised batch norm's training statistics (`BnParams::synced`,
/// the launch a data-parallel step uses): per feature (shift, d, biased variance) with the
/// share's mean = shift + d, and the running statistics, returned to show they are untouched.
#[allow(clippy::type_complexity)]
pub fn batchnorm_share_stats(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    n: usize,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    crate::device::wait(
        "batchnorm_share_stats",
        batchnorm_share_stats_async(gpu, x, m, n, running_mean, running_var, eps),
    )
}

/// `batchnorm_share_stats` as a future: the form a browser page awaits.
#[allow(clippy::type_complexity)]
pub async fn batchnorm_share_stats_async(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    n: usize,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    if m < 2 {
        return Err(crate::error::Error::Usage(format!(
            "batchnorm_share_stats (training mode) needs more than 1 row per batch, got {m}"
        )));
    }
    let ones = vec![1.0f32; n];
    let zeros = vec![0.0f32; n];
    let b = batchnorm_buffers(gpu, x, m, n, &ones, &zeros, running_mean, running_var, eps, Act::IDENTITY)?;
    let p = b.p.training(0.5).synced();
    let stats = gpu.batchnorm(BnEntry::Stats, &b.x, None, &b.params, &b.running, &b.stats, None, &b.grads, p)?;
    submit(gpu, "batchnorm_share_stats", &[&stats])?;
    let s = gpu.read_all_async(&b.stats).await?;
    let running = gpu.read_all_async(&b.running).await?;
    Ok((s[..n].to_vec(), s[n..2 * n].to_vec(), s[2 * n..].to_vec(), running))
}

/// Training-mode gradients of `batchnorm_forward` given dL/dy: (dx, dγ, dβ), as
/// `reference::batchnorm_backward`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    gpu: &Gpu,
    x: &[f32],
    dy: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    crate::device::wait("batchnorm_backward", batchnorm_backward_async(gpu, x, dy, m, n, gamma, beta, eps, act))
}

/// `batchnorm_backward` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn batchnorm_backward_async(
    gpu: &Gpu,
    x: &[f32],
    dy: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Act,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    if m < 2 {
        return Err(crate::error::Error::Usage(format!(
            "batchnorm_backward (training mode) needs more than 1 row per batch, got {m}"
        )));
    }
    let ones = vec![1.0f32; n];
    let b = batchnorm_buffers(gpu, x, m, n, gamma, beta, &ones, &ones, eps, act)?;
    let gdy = gpu.upload("dy", dy)?;
    let gdx = gpu.storage("dx", m * n)?;
    let p = b.p.training(0.0); // batch statistics, running ones left as they are
    let (bx, bp, br, bs, bg) = (&b.x, &b.params, &b.running, &b.stats, &b.grads);
    let stats = gpu.batchnorm(BnEntry::Stats, bx, None, bp, br, bs, None, bg, p)?;
    let reduce = gpu.batchnorm(BnEntry::BackwardReduce, bx, Some(&gdy), bp, br, bs, None, bg, p)?;
    let input = gpu.batchnorm(BnEntry::BackwardInput, bx, Some(&gdy), bp, br, bs, Some(&gdx), bg, p)?;
    submit(gpu, "batchnorm_backward", &[&stats, &reduce, &input])?;
    let grads = gpu.read_all_async(&b.grads).await?;
    Ok((gpu.read_all_async(&gdx).await?, grads[..n].to_vec(), grads[n..].to_vec()))
}

/// Runs one optimizer step per gradient in `grads` from `param` (the group layout of
/// `groups`); returns every iterate and the final state.
pub fn optimizer_update(
    gpu: &Gpu,
    param: &[f32],
    grads: &[Vec<f32>],
    setup: &OptimizerSetup,
    groups: ParamGroups,
) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    crate::device::wait("optimizer_update", optimizer_update_async(gpu, param, grads, setup, groups))
}

/// `optimizer_update` as a future: the form a browser page awaits.
pub async fn optimizer_update_async(
    gpu: &Gpu,
    param: &[f32],
    grads: &[Vec<f32>],
    setup: &OptimizerSetup,
    groups: ParamGroups,
) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    let gp = gpu.upload("param", param)?;
    let gg = gpu.storage("grad", param.len())?;
    let mut opt = GpuOptimizer::new(gpu, &gp, &gg, &setup.optimizer, groups, setup.clip_grad_norm)?;
    let mut out = Vec::with_capacity(grads.len());
    for (t, g) in grads.iter().enumerate() {
        opt.prepare(gpu, t as u32 + 1, setup.schedule.factor(t as u32));
        gpu.write(&gg, g);
        let launches: Vec<&crate::device::Dispatch> = opt.dispatches().collect();
        submit(gpu, "optimizer_update", &launches)?;
        out.push(gpu.read_all_async(&gp).await?);
    }
    Ok((out, opt.state_of_async(gpu, 0).await?))
}

/// Every activation the kernels know, for sweeping tests.
pub fn all_activations() -> Vec<Act> {
    Activation::ALL.iter().map(|&k| Act::new(k)).collect()
}
