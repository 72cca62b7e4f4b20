//! Hessian-vector products of the reference network by Pearlmutter's R-operator (1994): the
//! forward pass carries R{·}, the directional derivative of every value along a parameter
//! direction v, and the backward pass is differentiated the same way, so R{∇L} = H·v comes out
//! beside ∇L in one forward and one backward pass, exactly (no finite differences). In f64:
//! this is the oracle the GPU's products are held against, and the exact Hessian of small
//! models (`hessian_dense`, column by column).
//!
//! Batch norm is differentiated in training mode: the batch statistics depend on x, and so on
//! the parameters, and their R-values are carried too.
//!
//! Written as the GPU runs it (`exec::gpu_hessian`): the six terms with no training counterpart
//! are one function each, named as its hvp.wgsl kernel and computing what that kernel computes
//! (in f64, from flat slices, with its `stats` layout and its `out` writes); the plain values and
//! gradients are the training kernels' references (`linear_*`, `activation_*`, `batchnorm_*`,
//! the losses); and `loss_grad_hvp` calls them stage by stage, forward then backward.

use super::activation::{activate_grad_f64, activation_backward, activation_forward};
use super::batchnorm::{batchnorm_backward_input, batchnorm_backward_reduce, batchnorm_forward, batchnorm_stats};
use super::batchnorm::{residual_add, NormStats};
use super::linear::{bias_grad, linear_backward_input, linear_backward_weight, linear_forward};
use super::loss::{cross_entropy, mse};
use crate::spec::{Act, Activation, Loss, Model, Op, Stage};

/// act''(z).
pub fn activate_second(z: f64, act: Act) -> f64 {
    match act.kind {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu => 0.0,
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s) * (1.0 - 2.0 * s)
        }
        Activation::Tanh => {
            let t = z.tanh();
            -2.0 * t * (1.0 - t * t)
        }
        // d/dz (Φ + zφ) = 2φ + zφ' = φ·(2 − z²).
        Activation::Gelu => (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt() * (2.0 - z * z),
    }
}

/// `out[i] = value`, or `out[i] += value` with `accumulate` (hvp.wgsl's `store`, HVP_ACCUMULATE).
fn store(out: &mut [f64], i: usize, value: f64, accumulate: bool) {
    out[i] = if accumulate { out[i] + value } else { value };
}

// ---- hvp.wgsl, kernel by kernel ----------------------------------------------------------------

/// activation_r_backward: R{act'(z)·g} = act''(z)·R{z}·g + act'(z)·R{g} element-wise, into
/// `out` (all four inputs and `out` of one length), added to it with `accumulate`.
pub fn activation_r_backward(
    z: &[f64],
    rz: &[f64],
    g: &[f64],
    rg: &[f64],
    act: Act,
    out: &mut [f64],
    accumulate: bool,
) {
    for i in 0..z.len() {
        let value = activate_second(z[i], act) * rz[i] * g[i] + activate_grad_f64(z[i], act) * rg[i];
        store(out, i, value, accumulate);
    }
}

/// cross_entropy_r: R{∂L/∂o} of softmax cross-entropy averaged over `rows` rows of `cols` logits,
/// p ⊙ (R{o} − p·R{o}) / rows with p = softmax(o), into `out` (the kernel always overwrites).
/// As the kernel forms it: p·R{o} = Σ e^{o − max}·R{o} / Σ e^{o − max}, then times 1/rows.
pub fn cross_entropy_r(o: &[f64], ro: &[f64], rows: usize, cols: usize, out: &mut [f64]) {
    let inv_rows = 1.0 / rows as f64;
    for r in 0..rows {
        let (row, rrow) = (&o[r * cols..(r + 1) * cols], &ro[r * cols..(r + 1) * cols]);
        let zmax = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let (mut s, mut p_ro) = (0.0, 0.0);
        for c in 0..cols {
            let e = (row[c] - zmax).exp();
            s += e;
            p_ro += e * rrow[c];
        }
        let p_ro = p_ro / s;
        for c in 0..cols {
            let prob = (row[c] - zmax).exp() / s;
            out[r * cols + c] = prob * (rrow[c] - p_ro) * inv_rows;
        }
    }
}

/// mse_r: R{2(o − t)/len} = 2·R{o}/len over all `len = ro.len()` elements, into `out` (the kernel
/// always overwrites; it reads no o and no target, which R{} removes).
pub fn mse_r(ro: &[f64], out: &mut [f64]) {
    let len = ro.len() as f64;
    for (o, &r) in out.iter_mut().zip(ro) {
        *o = 2.0 * r / len;
    }
}

/// hvp.wgsl's per-feature blocks of `stats` (each `cols` long): 0 K, 1 d, 2 inv_std (the batch
/// statistics: mean = K + d, x̂ = ((x − K) − d)·inv_std); 3 R{μ}, 4 ρ = mean(x̂·R{x}) (written by
/// `batchnorm_r_forward`); 5 Σdu, 6 Σdu·x̂, 7 ΣR{du}, 8 Σ(R{du}·x̂ + du·R{x̂}) (written by
/// `batchnorm_r_backward_reduce`), with u = γx̂ + β and du = act'(u)·g.
pub const NORM_STATS_BLOCKS: usize = 9;

/// A batch norm as its three R-kernels see it: an [rows, cols] batch, γ and β at these offsets of
/// the flat parameters θ, of the direction v and (their H·v entries) of the product, and the
/// activation after the norm (hvp.wgsl's `HvpParams` for these kernels).
#[derive(Clone, Copy, Debug)]
pub struct NormLayout {
    pub rows: usize,
    pub cols: usize,
    pub gamma: usize,
    pub beta: usize,
    pub act: Act,
}

/// One feature's numbers as the batch-norm kernels read them, and their per-element formulas.
struct Feature {
    shift: f64,
    d: f64,
    inv_std: f64,
    rmu: f64,
    rho: f64,
    gamma: f64,
    beta: f64,
    vgamma: f64,
    vbeta: f64,
}

impl Feature {
    fn load(l: &NormLayout, stats: &[f64], theta: &[f64], v: &[f64], j: usize) -> Feature {
        let stat = |block: usize| stats[block * l.cols + j];
        Feature {
            shift: stat(0),
            d: stat(1),
            inv_std: stat(2),
            rmu: stat(3),
            rho: stat(4),
            gamma: theta[l.gamma + j],
            beta: theta[l.beta + j],
            vgamma: v[l.gamma + j],
            vbeta: v[l.beta + j],
        }
    }

    fn xhat(&self, x: f64) -> f64 {
        ((x - self.shift) - self.d) * self.inv_std
    }

    /// R{x̂} = (R{x} − R{μ} − x̂·ρ)·inv_std.
    fn rxhat(&self, rx: f64, xh: f64) -> f64 {
        (rx - self.rmu - xh * self.rho) * self.inv_std
    }

    /// R{u} = v_γ·x̂ + γ·R{x̂} + v_β.
    fn ru(&self, xh: f64, rxh: f64) -> f64 {
        self.vgamma * xh + self.gamma * rxh + self.vbeta
    }

    /// (du, R{du}) = (act'(u)·g, act''(u)·R{u}·g + act'(u)·R{g}).
    fn du_pair(&self, act: Act, xh: f64, rxh: f64, g: f64, rg: f64) -> (f64, f64) {
        let u = self.gamma * xh + self.beta;
        let d1 = activate_grad_f64(u, act);
        (d1 * g, activate_second(u, act) * self.ru(xh, rxh) * g + d1 * rg)
    }
}

/// batchnorm_r_forward: from stats blocks 0–2, R{μ} = mean(R{x}) and ρ = mean(x̂·R{x}) into
/// blocks 3 and 4, then R{y} = act'(u)·R{u} for every element of the [rows, cols] batch into `out`.
pub fn batchnorm_r_forward(
    l: &NormLayout,
    x: &[f64],
    rx: &[f64],
    theta: &[f64],
    v: &[f64],
    stats: &mut [f64],
    out: &mut [f64],
) {
    let (m, n) = (l.rows, l.cols);
    for j in 0..n {
        let f = Feature::load(l, stats, theta, v, j);
        let col = |i: usize| i * n + j;
        stats[3 * n + j] = (0..m).map(|i| rx[col(i)]).sum::<f64>() / m as f64;
        stats[4 * n + j] = (0..m).map(|i| f.xhat(x[col(i)]) * rx[col(i)]).sum::<f64>() / m as f64;
        let f = Feature::load(l, stats, theta, v, j);
        for i in 0..m {
            let xh = f.xhat(x[col(i)]);
            let ru = f.ru(xh, f.rxhat(rx[col(i)], xh));
            out[col(i)] = activate_grad_f64(f.gamma * xh + f.beta, l.act) * ru;
        }
    }
}

/// batchnorm_r_backward_reduce: per feature Σdu, Σdu·x̂, ΣR{du}, Σ(R{du}·x̂ + du·R{x̂}) into stats
/// blocks 5–8 (from blocks 0–4), and the product's entries R{dβ} = ΣR{du} and
/// R{dγ} = Σ(R{du}·x̂ + du·R{x̂}) into `out` (the flat H·v) at β's and γ's offsets; nothing else
/// of `out` is written.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_r_backward_reduce(
    l: &NormLayout,
    x: &[f64],
    rx: &[f64],
    g: &[f64],
    rg: &[f64],
    theta: &[f64],
    v: &[f64],
    stats: &mut [f64],
    out: &mut [f64],
) {
    let n = l.cols;
    for j in 0..n {
        let f = Feature::load(l, stats, theta, v, j);
        let mut s = [0.0f64; 4];
        for i in (0..l.rows).map(|r| r * n + j) {
            let xh = f.xhat(x[i]);
            let rxh = f.rxhat(rx[i], xh);
            let (du, rdu) = f.du_pair(l.act, xh, rxh, g[i], rg[i]);
            s[0] += du;
            s[1] += du * xh;
            s[2] += rdu;
            s[3] += rdu * xh + du * rxh;
        }
        for (b, sum) in s.iter().enumerate() {
            stats[(5 + b) * n + j] = *sum;
        }
        out[l.beta + j] = s[2];
        out[l.gamma + j] = s[3];
    }
}

/// batchnorm_r_backward_input: R{dx} from stats blocks 0–8, with dx = (dx̂ − A − x̂·B)·inv_std,
/// dx̂ = γ·du, A = mean(dx̂), B = mean(dx̂·x̂):
/// R{dx} = −ρ·inv_std·dx + (R{dx̂} − R{A} − R{x̂}·B − x̂·R{B})·inv_std, into `out` ([rows, cols])
/// or added to it with `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_r_backward_input(
    l: &NormLayout,
    x: &[f64],
    rx: &[f64],
    g: &[f64],
    rg: &[f64],
    theta: &[f64],
    v: &[f64],
    stats: &[f64],
    out: &mut [f64],
    accumulate: bool,
) {
    let (n, m) = (l.cols, l.rows as f64);
    for j in 0..n {
        let f = Feature::load(l, stats, theta, v, j);
        let stat = |block: usize| stats[block * n + j];
        let a = f.gamma * stat(5) / m;
        let b = f.gamma * stat(6) / m;
        let ra = (f.gamma * stat(7) + f.vgamma * stat(5)) / m;
        let rb = (f.gamma * stat(8) + f.vgamma * stat(6)) / m;
        for i in (0..l.rows).map(|r| r * n + j) {
            let xh = f.xhat(x[i]);
            let rxh = f.rxhat(rx[i], xh);
            let (du, rdu) = f.du_pair(l.act, xh, rxh, g[i], rg[i]);
            let dx = (f.gamma * du - a - xh * b) * f.inv_std;
            let rdxh = f.gamma * rdu + f.vgamma * du;
            let value = -f.rho * f.inv_std * dx + (rdxh - ra - rxh * b - xh * rb) * f.inv_std;
            store(out, i, value, accumulate);
        }
    }
}

// ---- A dense layer's R-terms (matmul.wgsl launches on the GPU) ---------------------------------

/// R{z} = R{a}·Wᵀ + a·Vᵀ + v_b for z = a·Wᵀ + b: a, R{a} [m, k]; W, V [n, k].
#[allow(clippy::too_many_arguments)]
fn dense_r_forward(
    a: &[f64],
    ra: &[f64],
    w: &[f64],
    vw: &[f64],
    vb: Option<&[f64]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let mut rz = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut r = 0.0;
            for p in 0..k {
                r += ra[i * k + p] * w[j * k + p] + a[i * k + p] * vw[j * k + p];
            }
            if let Some(vb) = vb {
                r += vb[j];
            }
            rz[i * n + j] = r;
        }
    }
    rz
}

/// The product's weight entries R{dW} = R{dz}ᵀ·a + dzᵀ·R{a}: [n, k].
fn dense_r_backward_weight(dz: &[f64], rdz: &[f64], a: &[f64], ra: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut rdw = vec![0.0; n * k];
    for j in 0..n {
        for p in 0..k {
            let mut r = 0.0;
            for i in 0..m {
                r += rdz[i * n + j] * a[i * k + p] + dz[i * n + j] * ra[i * k + p];
            }
            rdw[j * k + p] = r;
        }
    }
    rdw
}

/// R{dx} = R{dz}·W + dz·V: [m, k].
fn dense_r_backward_input(dz: &[f64], rdz: &[f64], w: &[f64], vw: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut rdx = vec![0.0; m * k];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                rdx[i * k + p] += rdz[i * n + j] * w[j * k + p] + dz[i * n + j] * vw[j * k + p];
            }
        }
    }
    rdx
}

// ---- The network, stage by stage ----------------------------------------------------------------

/// The batch's mean loss, its gradient and H·v (all flat like `params`).
pub struct HvpOutput {
    pub loss: f64,
    pub grad: Vec<f64>,
    pub hv: Vec<f64>,
}

/// What a stage keeps for the backward pass, with its R-values.
enum Kept {
    /// Dense: the pre-activation z and R{z}.
    Dense {
        z: Vec<f64>,
        rz: Vec<f64>,
    },
    /// Batch norm: the batch statistics (the training references') and hvp.wgsl's `stats`.
    Norm {
        stats: NormStats,
        r_stats: Vec<f64>,
    },
    Other,
}

/// What every stage of one product reads: the model, the flat parameters and direction, the rows.
struct Pass<'a> {
    model: &'a Model,
    params: &'a [f64],
    v: &'a [f64],
    rows: usize,
}

impl Pass<'_> {
    /// One stage forward: (y, R{y}) and what its backward pass keeps.
    fn forward(&self, stage: &Stage, values: &[Vec<f64>], rvalues: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, Kept) {
        let (m, params, v) = (self.rows, self.params, self.v);
        let (a, ra) = (&values[stage.input], &rvalues[stage.input]);
        // The Hessian is of the evaluation-mode loss: a dropout is the identity there.
        match stage.op.for_eval() {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let (w, vw) = (&params[weight..weight + n * k], &v[weight..weight + n * k]);
                let (b, vb) = (bias.map(|b| &params[b..b + n]), bias.map(|b| &v[b..b + n]));
                let (z, y) = linear_forward(a, w, b, m, k, n, act);
                let rz = dense_r_forward(a, ra, w, vw, vb, m, k, n);
                let ry = activation_backward(&z, &rz, act);
                (y, ry, Kept::Dense { z, rz })
            }
            Op::BatchNorm { width: n, gamma, beta, norm, act } => {
                let stats = batchnorm_stats(a, m, n, self.model.norms[norm].eps);
                let y = batchnorm_forward(a, m, n, &params[gamma..gamma + n], &params[beta..beta + n], &stats, act);
                // K = 0 and d = the mean: x̂ = (x − mean)·inv_std, as the training reference forms it.
                let mut r_stats = vec![0.0; NORM_STATS_BLOCKS * n];
                r_stats[n..2 * n].copy_from_slice(&stats.mean);
                for j in 0..n {
                    r_stats[2 * n + j] = 1.0 / (stats.var[j] + stats.eps).sqrt();
                }
                let mut ry = vec![0.0; m * n];
                let l = NormLayout { rows: m, cols: n, gamma, beta, act };
                batchnorm_r_forward(&l, a, ra, params, v, &mut r_stats, &mut ry);
                (y, ry, Kept::Norm { stats, r_stats })
            }
            Op::Activation { act, .. } => (activation_forward(a, act), activation_backward(a, ra, act), Kept::Other),
            Op::Add { skip, .. } => (residual_add(a, &values[skip]), residual_add(ra, &rvalues[skip]), Kept::Other),
            Op::Dropout { .. } => unreachable!("for_eval makes a dropout the identity activation"),
        }
    }

    /// One stage backward from (g, R{g}) at its output: its parameters' gradient and H·v entries
    /// into `grad` and `hv`, and what reaches earlier values as (value, gradient, R-gradient).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        stage: &Stage,
        keep: Kept,
        a: &[f64],
        ra: &[f64],
        (g, rg): (Vec<f64>, Vec<f64>),
        grad: &mut [f64],
        hv: &mut [f64],
    ) -> Vec<(usize, Vec<f64>, Vec<f64>)> {
        let (m, params, v, input) = (self.rows, self.params, self.v, stage.input);
        match (&stage.op.for_eval(), keep) {
            (&Op::Dense { inputs: k, outputs: n, weight, bias, act }, Kept::Dense { z, rz }) => {
                let dz = activation_backward(&z, &g, act);
                let mut rdz = vec![0.0; m * n];
                activation_r_backward(&z, &rz, &g, &rg, act, &mut rdz, false);
                grad[weight..weight + n * k].copy_from_slice(&linear_backward_weight(&dz, a, m, k, n));
                hv[weight..weight + n * k].copy_from_slice(&dense_r_backward_weight(&dz, &rdz, a, ra, m, k, n));
                if let Some(b) = bias {
                    grad[b..b + n].copy_from_slice(&bias_grad(&dz, m, n));
                    hv[b..b + n].copy_from_slice(&bias_grad(&rdz, m, n));
                }
                if input == 0 {
                    return Vec::new();
                }
                let (w, vw) = (&params[weight..weight + n * k], &v[weight..weight + n * k]);
                vec![(input, linear_backward_input(&dz, w, m, k, n), dense_r_backward_input(&dz, &rdz, w, vw, m, k, n))]
            }
            (&Op::BatchNorm { width: n, gamma, beta, act, .. }, Kept::Norm { stats, mut r_stats }) => {
                let (gm, bt) = (&params[gamma..gamma + n], &params[beta..beta + n]);
                let sums = batchnorm_backward_reduce(a, &g, m, n, gm, bt, &stats, act);
                grad[beta..beta + n].copy_from_slice(&sums[..n]);
                grad[gamma..gamma + n].copy_from_slice(&sums[n..]);
                let l = NormLayout { rows: m, cols: n, gamma, beta, act };
                batchnorm_r_backward_reduce(&l, a, ra, &g, &rg, params, v, &mut r_stats, hv);
                if input == 0 {
                    return Vec::new();
                }
                let dx = batchnorm_backward_input(a, &g, m, n, gm, bt, &stats, act, &sums);
                let mut rdx = vec![0.0; m * n];
                batchnorm_r_backward_input(&l, a, ra, &g, &rg, params, v, &r_stats, &mut rdx, false);
                vec![(input, dx, rdx)]
            }
            (&Op::Activation { act, .. }, _) => {
                let dx = activation_backward(a, &g, act);
                let mut rdx = vec![0.0; a.len()];
                activation_r_backward(a, ra, &g, &rg, act, &mut rdx, false);
                vec![(input, dx, rdx)]
            }
            // The gradient goes on unchanged to both summands.
            (&Op::Add { skip, .. }, _) => vec![(skip, g.clone(), rg.clone()), (input, g, rg)],
            _ => unreachable!("every stage keeps what its op needs"),
        }
    }
}

/// The loss, its gradient g with respect to the output o, and R{g}.
fn loss_r(loss: Loss, o: &[f64], ro: &[f64], labels: &[u32], m: usize, classes: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let mut rg = vec![0.0; m * classes];
    let out = match loss {
        Loss::CrossEntropy => {
            cross_entropy_r(o, ro, m, classes, &mut rg);
            cross_entropy(o, labels, m, classes)
        }
        Loss::Mse => {
            mse_r(ro, &mut rg);
            mse(o, None, labels, m, classes)
        }
    };
    (out.loss, out.grad, rg)
}

/// Loss, gradient and Hessian-vector product of the mean loss of one batch (training-mode
/// batch norm). Shapes are the caller's to check (`exec::hessian` does).
pub fn loss_grad_hvp(
    model: &Model,
    loss: Loss,
    params: &[f64],
    v: &[f64],
    x: &[f64],
    labels: &[u32],
    rows: usize,
) -> HvpOutput {
    let pass = Pass { model, params, v, rows };
    let mut values: Vec<Vec<f64>> = vec![x.to_vec()];
    let mut rvalues: Vec<Vec<f64>> = vec![vec![0.0; x.len()]];
    let mut kept = Vec::with_capacity(model.stages.len());
    for stage in &model.stages {
        let (y, ry, keep) = pass.forward(stage, &values, &rvalues);
        values.push(y);
        rvalues.push(ry);
        kept.push(keep);
    }

    let last = model.stages.len();
    let (total, g, rg) = loss_r(loss, &values[last], &rvalues[last], labels, rows, model.outputs());

    let (mut grad, mut hv) = (vec![0.0; params.len()], vec![0.0; params.len()]);
    // The gradient reaching each value and its R-value, summed over the value's consumers.
    let mut grads: Vec<Option<(Vec<f64>, Vec<f64>)>> = vec![None; last + 1];
    grads[last] = Some((g, rg));
    for ((s, stage), keep) in model.stages.iter().enumerate().rev().zip(kept.into_iter().rev()) {
        let width = stage.outputs();
        let gy = grads[s + 1].take().unwrap_or_else(|| (vec![0.0; rows * width], vec![0.0; rows * width]));
        let (a, ra) = (&values[stage.input], &rvalues[stage.input]);
        for (to, d, rd) in pass.backward(stage, keep, a, ra, gy, &mut grad, &mut hv) {
            match &mut grads[to] {
                _ if to == 0 => {}
                slot @ None => *slot = Some((d, rd)),
                Some((sum, rsum)) => {
                    sum.iter_mut().zip(&d).for_each(|(p, q)| *p += q);
                    rsum.iter_mut().zip(&rd).for_each(|(p, q)| *p += q);
                }
            }
        }
    }
    HvpOutput { loss: total, grad, hv }
}
