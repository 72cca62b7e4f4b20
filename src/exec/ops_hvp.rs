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
fn run(
    gpu: &Gpu,
    entry: HvpEntry,
    reads: Reads,
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
    out.copy_from_slice(&gpu.read_all(&gout)?);
    stats.map(|s| gpu.read_all(&s)).transpose()
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
    let params = HvpParams {
        len: z.len() as u32,
        act: act.kind.code(),
        slope: act.slope,
        flags: flags(accumulate),
        ..Default::default()
    };
    let reads = Reads { x: z, rx: rz, g: Some(g), rg: Some(rg), ..Default::default() };
    run(gpu, HvpEntry::ActivationRBackward, reads, None, out, params).map(drop)
}

/// R{∂L/∂o} of softmax cross-entropy over `rows` rows of `cols` logits into `out`.
pub fn cross_entropy_r(gpu: &Gpu, o: &[f32], ro: &[f32], rows: usize, cols: usize, out: &mut [f32]) -> Result<()> {
    let params = HvpParams { len: (rows * cols) as u32, rows: rows as u32, cols: cols as u32, ..Default::default() };
    let reads = Reads { x: o, rx: ro, ..Default::default() };
    run(gpu, HvpEntry::CrossEntropyR, reads, None, out, params).map(drop)
}

/// R{∂L/∂o} = 2·R{o}/len of the mean squared error into `out`.
pub fn mse_r(gpu: &Gpu, ro: &[f32], out: &mut [f32]) -> Result<()> {
    let params = HvpParams { len: ro.len() as u32, rows: 1, cols: ro.len() as u32, ..Default::default() };
    let reads = Reads { x: &[], rx: ro, ..Default::default() };
    run(gpu, HvpEntry::MseR, reads, None, out, params).map(drop)
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
    let reads = Reads { x, rx, theta: Some(theta), v: Some(v), ..Default::default() };
    if let Some(after) = run(gpu, HvpEntry::BatchnormRForward, reads, Some(stats), out, norm_params(l, false))? {
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
    let reads = Reads { x, rx, g: Some(g), rg: Some(rg), theta: Some(theta), v: Some(v) };
    let params = norm_params(l, false);
    if let Some(after) = run(gpu, HvpEntry::BatchnormRBackwardReduce, reads, Some(stats), out, params)? {
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
    let reads = Reads { x, rx, g: Some(g), rg: Some(rg), theta: Some(theta), v: Some(v) };
    run(gpu, HvpEntry::BatchnormRBackwardInput, reads, Some(stats), out, norm_params(l, accumulate)).map(drop)
}
