//! hvp.wgsl's kernels run once on host data, as `ops` runs the training kernels: upload, one
//! launch built by `Gpu::hvp_kernel` (the builder the Hessian product uses), read back. Same
//! names and arguments as the functions of `reference::hvp` that mirror them, in f32, so a test
//! holds one against the other. `out` (and `stats`) go up as the caller holds them and come back
//! as the kernel left them: what a kernel adds to, overwrites or leaves alone shows.

use crate::device::{submit, Entry};
use crate::error::Result;
use crate::kernels::{Gpu, HvpBuffers, HvpEntry, HvpParams, HVP_ACCUMULATE};
use crate::reference::hvp::NormLayout;
use crate::spec::Act;

fn flags(accumulate: bool) -> u32 {
    if accumulate {
        HVP_ACCUMULATE
    } else {
        0
    }
}

fn norm_params(l: &NormLayout, accumulate: bool) -> HvpParams {
    HvpParams {
        len: (l.rows * l.cols) as u32,
        rows: l.rows as u32,
        cols: l.cols as u32,
        act: l.act.kind.code(),
        slope: l.act.slope,
        flags: flags(accumulate),
        gamma_offset: l.gamma as u32,
        beta_offset: l.beta as u32,
    }
}

/// What a launch reads, by hvp.wgsl's binding names (`None`: the kernel does not read it).
#[derive(Default)]
struct Reads<'a> {
    x: &'a [f32],
    rx: &'a [f32],
    g: Option<&'a [f32]>,
    rg: Option<&'a [f32]>,
    theta: Option<&'a [f32]>,
    v: Option<&'a [f32]>,
}

/// Uploads `reads`, `stats` and `out`, runs `entry` once, reads `out` back into place and
/// returns `stats` as the kernel left it.
async fn run(
    gpu: &Gpu,
    entry: HvpEntry,
    reads: Reads<'_>,
    stats: Option<&[f32]>,
    out: &mut [f32],
    params: HvpParams,
) -> Result<Option<Vec<f32>>> {
    let up = |what: &str, data: Option<&[f32]>| data.map(|d| gpu.upload(what, d)).transpose();
    let (x, rx) = (gpu.upload("x", reads.x)?, gpu.upload("R{x}", reads.rx)?);
    let (g, rg) = (up("g", reads.g)?, up("R{g}", reads.rg)?);
    let (theta, v) = (up("parameters", reads.theta)?, up("direction", reads.v)?);
    let stats = up("batch-norm statistics and R-sums", stats)?;
    let gout = gpu.upload("out", out)?;
    let b = HvpBuffers {
        x: &x,
        rx: &rx,
        g: g.as_ref(),
        rg: rg.as_ref(),
        theta: theta.as_ref(),
        v: v.as_ref(),
        stats: stats.as_ref(),
        out: &gout,
    };
    let launch = gpu.hvp_kernel(entry, &b, params)?;
    submit(gpu, entry.name(), &[&launch])?;
    out.copy_from_slice(&gpu.read_all_async(&gout).await?);
    match stats {
        Some(s) => Ok(Some(gpu.read_all_async(&s).await?)),
        None => Ok(None),
    }
}

/// R{act'(z)·g} = act''(z)·R{z}·g + act'(z)·R{g} element-wise into `out`, or added to it with
/// `accumulate` (HVP_ACCUMULATE).
#[allow(clippy::too_many_arguments)]
pub fn activation_r_backward(
    gpu: &Gpu,
    z: &[f32],
    rz: &[f32],
    g: &[f32],
    rg: &[f32],
    act: Act,
    out: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    crate::device::wait("activation_r_backward", activation_r_backward_async(gpu, z, rz, g, rg, act, out, accumulate))
}

/// `activation_r_backward` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn activation_r_backward_async(
    gpu: &Gpu,
    z: &[f32],
    rz: &[f32],
    g: &[f32],
    rg: &[f32],
    act: Act,
    out: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    let params = HvpParams {
        len: z.len() as u32,
        act: act.kind.code(),
        slope: act.slope,
        flags: flags(accumulate),
        ..Default::default()
    };
    let reads = Reads { x: z, rx: rz, g: Some(g), rg: Some(rg), ..Default::default() };
    run(gpu, HvpEntry::ActivationRBackward, reads, None, out, params).await.map(drop)
}

/// R{∂L/∂o} of softmax cross-entropy over `rows` rows of `cols` logits into `out`.
pub fn cross_entropy_r(gpu: &Gpu, o: &[f32], ro: &[f32], rows: usize, cols: usize, out: &mut [f32]) -> Result<()> {
    crate::device::wait("cross_entropy_r", cross_entropy_r_async(gpu, o, ro, rows, cols, out))
}

/// `cross_entropy_r` as a future: the form a browser page awaits.
pub async fn cross_entropy_r_async(
    gpu: &Gpu,
    o: &[f32],
    ro: &[f32],
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> Result<()> {
    let params = HvpParams { len: (rows * cols) as u32, rows: rows as u32, cols: cols as u32, ..Default::default() };
    let reads = Reads { x: o, rx: ro, ..Default::default() };
    run(gpu, HvpEntry::CrossEntropyR, reads, None, out, params).await.map(drop)
}

/// R{∂L/∂o} = 2·R{o}/len of the mean squared error into `out`.
pub fn mse_r(gpu: &Gpu, ro: &[f32], out: &mut [f32]) -> Result<()> {
    crate::device::wait("mse_r", mse_r_async(gpu, ro, out))
}

/// `mse_r` as a future: the form a browser page awaits.
pub async fn mse_r_async(gpu: &Gpu, ro: &[f32], out: &mut [f32]) -> Result<()> {
    let params = HvpParams { len: ro.len() as u32, rows: 1, cols: ro.len() as u32, ..Default::default() };
    let reads = Reads { x: &[], rx: ro, ..Default::default() };
    run(gpu, HvpEntry::MseR, reads, None, out, params).await.map(drop)
}

/// R{μ} and ρ into stats blocks 3 and 4 (from blocks 0–2), R{y} into `out`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_r_forward(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    crate::device::wait("batchnorm_r_forward", batchnorm_r_forward_async(gpu, l, x, rx, theta, v, stats, out))
}

/// `batchnorm_r_forward` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn batchnorm_r_forward_async(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let reads = Reads { x, rx, theta: Some(theta), v: Some(v), ..Default::default() };
    if let Some(after) = run(gpu, HvpEntry::BatchnormRForward, reads, Some(stats), out, norm_params(l, false)).await? {
        stats.copy_from_slice(&after);
    }
    Ok(())
}

/// The four R-sums per feature into stats blocks 5–8 and the product's γ, β entries into `out`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_r_backward_reduce(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    g: &[f32],
    rg: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    crate::device::wait(
        "batchnorm_r_backward_reduce",
        batchnorm_r_backward_reduce_async(gpu, l, x, rx, g, rg, theta, v, stats, out),
    )
}

/// `batchnorm_r_backward_reduce` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn batchnorm_r_backward_reduce_async(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    g: &[f32],
    rg: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let reads = Reads { x, rx, g: Some(g), rg: Some(rg), theta: Some(theta), v: Some(v) };
    let params = norm_params(l, false);
    if let Some(after) = run(gpu, HvpEntry::BatchnormRBackwardReduce, reads, Some(stats), out, params).await? {
        stats.copy_from_slice(&after);
    }
    Ok(())
}

/// R{dx} of a batch norm into `out`, or added to it with `accumulate` (HVP_ACCUMULATE).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_r_backward_input(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    g: &[f32],
    rg: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &[f32],
    out: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    crate::device::wait(
        "batchnorm_r_backward_input",
        batchnorm_r_backward_input_async(gpu, l, x, rx, g, rg, theta, v, stats, out, accumulate),
    )
}

/// `batchnorm_r_backward_input` as a future: the form a browser page awaits.
#[allow(clippy::too_many_arguments)]
pub async fn batchnorm_r_backward_input_async(
    gpu: &Gpu,
    l: &NormLayout,
    x: &[f32],
    rx: &[f32],
    g: &[f32],
    rg: &[f32],
    theta: &[f32],
    v: &[f32],
    stats: &[f32],
    out: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    let reads = Reads { x, rx, g: Some(g), rg: Some(rg), theta: Some(theta), v: Some(v) };
    run(gpu, HvpEntry::BatchnormRBackwardInput, reads, Some(stats), out, norm_params(l, accumulate)).await.map(drop)
}
