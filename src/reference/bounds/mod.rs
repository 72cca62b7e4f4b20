//! The crate's error model: how far an f32 GPU kernel may be from the CPU reference, element by
//! element, derived by forward error analysis. One function (or, for batch norm, one type) per
//! op gives the bound from the op's inputs; the tests and `gradflow check` both hold the kernels
//! to these, and a tolerance is never loosened to make a kernel pass.
//!
//! The model:
//! - u = 2^-24 ([`EPS`]), the unit round-off of f32: a correctly rounded +, −, × returns
//!   x·(1 + δ) with |δ| ≤ u, and also x/(1 + δ), so its error is within u·|result| too. One ulp
//!   of a value is at most 2u of it.
//! - γ_n = n·u/(1 − n·u) ([`gamma`]): a chain of n roundings moves a value by at most γ_n of
//!   it. An f32 sum of K products in any order, with or without fma, is within γ_K·Σ|a·b| of
//!   the exact sum (Higham, Accuracy and Stability of Numerical Algorithms, §3.1); [`dot_bound`]
//!   adds one rounding of the result.
//! - Built-in functions hold the precision Vulkan requires (and WGSL allows): exp within
//!   (3 + 2|x|) ulp ([`exp_rel`]), division 2.5 ulp, log 3 ulp (absolute 2^-21 on [0.5, 2]),
//!   inverseSqrt 2 ulp (sqrt, as 1/inverseSqrt, 4.5 ulp). GELU's erf is an approximation
//!   ([`ERF_APPROX`]).
//! - The reference (`crate::reference`) runs the op in f64 on the same f32 inputs. Its f32 path
//!   is that f64 value rounded once (within u·|reference|, [`cpu_bound`]). Most per-op bounds
//!   below carry that u·|reference| term, so they hold against the f32 path and, a fortiori,
//!   against the exact value; where a bound is stated against the exact value only, its doc says
//!   so.
//! - GPUs may flush subnormal results to zero: comparisons allow f32's smallest normal on top.

pub mod running;

use super::activation::activate_grad;
use super::Real;
use crate::spec::{Act, Activation};

/// Unit round-off of f32.
pub const EPS: f64 = f32::EPSILON as f64 / 2.0;

/// γ_n = n·u/(1 − n·u): the relative error of a chain of n roundings.
pub fn gamma(n: usize) -> f64 {
    let n = n as f64;
    n * EPS / (1.0 - n * EPS)
}

/// Forward error bound of an f32 sum of `terms` products (any order, fma or not): γ_n·Σ|a·b| with
/// γ_n = n·u/(1 − n·u), plus one rounding of the result.
pub fn dot_bound(terms: usize, sum_abs: f64) -> f64 {
    gamma(terms + 1) * sum_abs
}

/// Bound for a value the CPU reference computes in f64 and rounds once to f32.
pub fn cpu_bound(want: &[f64]) -> Vec<f64> {
    want.iter().map(|w| EPS * w.abs() + 1e-12).collect()
}

/// Σ_p |a[i, p]·b[p, j]| for the product of a (rows × inner, via `a_at`) and b (inner × cols,
/// via `b_at`): the scale of each element's dot-product bound, row-major [rows, cols].
pub fn abs_products(
    rows: usize,
    cols: usize,
    inner: usize,
    a_at: impl Fn(usize, usize) -> f32,
    b_at: impl Fn(usize, usize) -> f32,
) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            out[i * cols + j] = (0..inner).map(|p| (a_at(i, p) as f64 * b_at(p, j) as f64).abs()).sum();
        }
    }
    out
}

// ---- Built-in functions and activations ----------------------------------------------------------

/// Relative error bound of the GPU's exp(x).
pub fn exp_rel(x: f64) -> f64 {
    (3.0 + 2.0 * x.abs()) * 2.0 * EPS
}

/// Bound on the error of the erf approximation in common.wgsl: A&S 7.1.26's 1.5e-7 plus the f32
/// evaluation (exp(−a²) and a degree-5 polynomial).
pub const ERF_APPROX: f64 = 1.5e-7 + 16.0 * EPS;

/// |GPU act(z) − act(z)| for an exactly known z (y = act(z)).
pub fn act_eval_bound(act: Act, z: f64, y: f64) -> f64 {
    match act.kind {
        Activation::Identity | Activation::Relu => 0.0,
        Activation::LeakyRelu => EPS * y.abs(),
        Activation::Sigmoid => y.abs() * (exp_rel(z) + 8.0 * EPS),
        Activation::Tanh => 0.5 * exp_rel(2.0 * z.abs().min(15.0)) + 8.0 * EPS * y.abs() + 1e-30,
        Activation::Gelu => 0.5 * z.abs() * ERF_APPROX + 4.0 * EPS * y.abs(),
    }
}

/// Largest |act'| (how an error in z reaches act(z)).
pub fn act_lipschitz(act: Act) -> f64 {
    match act.kind {
        Activation::Gelu => 1.13,
        Activation::Sigmoid => 0.25,
        _ => 1.0,
    }
}

/// |GPU act'(z) − act'(z)| for an exactly known z (g = act'(z)).
pub fn act_grad_eval_bound(act: Act, z: f64, g: f64) -> f64 {
    let s = 1.0 / (1.0 + (-z).exp());
    match act.kind {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu => 0.0,
        Activation::Sigmoid => s * (exp_rel(z) + 8.0 * EPS) + 3.0 * EPS * g.abs(),
        Activation::Tanh => 2.0 * (0.5 * exp_rel(2.0 * z.abs().min(15.0)) + 8.0 * EPS) + 2.0 * EPS,
        Activation::Gelu => {
            let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * ERF_APPROX + z.abs() * pdf * (exp_rel(0.5 * z * z) + 4.0 * EPS) + 4.0 * EPS * g.abs()
        }
    }
}

/// activation_forward: y = act(x) element-wise, against the reference `y_ref`: the evaluation
/// bound of act at x plus the reference's rounding.
pub fn activation_forward_bound<T: Real>(act: Act, x: &[f32], y_ref: &[T]) -> Vec<f64> {
    x.iter().zip(y_ref).map(|(&z, &y)| act_eval_bound(act, z as f64, y.to_f64()) + EPS * y.to_f64().abs()).collect()
}

/// activation_backward: dx = dy ⊙ act'(x), against the reference `dx_ref`: |dy| times act''s
/// evaluation bound, the product's rounding and the reference's (2u·|dx|).
pub fn activation_backward_bound<T: Real>(act: Act, x: &[f32], dy: &[f32], dx_ref: &[T]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let g = activate_grad(x[i], act) as f64;
            (dy[i] as f64).abs() * act_grad_eval_bound(act, x[i] as f64, g) + 2.0 * EPS * dx_ref[i].to_f64().abs()
        })
        .collect()
}

// ---- Dense layers (matmul.wgsl) ------------------------------------------------------------------

/// linear_forward: z = x·Wᵀ + b and y = act(z) (x [m, k], W [n, k]), against the reference's
/// (`z_ref`, `y_ref`); returns the bounds for (z, y). z is a sum of k products and the bias:
/// `dot_bound` over k + 1 terms (k without a bias) of Σ|x·w| + |b|, plus the reference's rounding
/// u·|z|. y: act's Lipschitz constant times z's bound, act's evaluation bound and u·|y|; without
/// an activation y is z on both sides (the kernel writes one buffer, the reference copies z), so
/// y's bound is z's.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_bound<T: Real>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
    z_ref: &[T],
    y_ref: &[T],
) -> (Vec<f64>, Vec<f64>) {
    let z = product_bound(x, w, bias, m, k, n, z_ref);
    if act.kind == Activation::Identity {
        return (z.clone(), z);
    }
    let y = (0..m * n)
        .map(|i| {
            let (zr, yr) = (z_ref[i].to_f64(), y_ref[i].to_f64());
            act_lipschitz(act) * z[i] + act_eval_bound(act, zr, yr) + EPS * yr.abs()
        })
        .collect();
    (z, y)
}

/// linear_forward_residual: y = x·Wᵀ + b + skip (the sum fused into the product's epilogue),
/// against the reference's product `z_ref` and sum `y_ref`: the product's bound
/// ([`linear_forward_bound`]'s z), plus the rounding of the sum on each side (2u·|y|).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_residual_bound<T: Real>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    z_ref: &[T],
    y_ref: &[T],
) -> Vec<f64> {
    let z = product_bound(x, w, bias, m, k, n, z_ref);
    z.iter().zip(y_ref).map(|(b, y)| b + 2.0 * EPS * y.to_f64().abs()).collect()
}

/// x·Wᵀ (+ b): `dot_bound` over k products (and the bias) plus the reference's rounding.
fn product_bound<T: Real>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    z_ref: &[T],
) -> Vec<f64> {
    let scale = abs_products(m, n, k, |i, p| x[i * k + p], |p, j| w[j * k + p]);
    let terms = k + usize::from(bias.is_some());
    (0..m * n)
        .map(|i| {
            let b_abs = bias.map_or(0.0, |b| b[i % n].abs() as f64);
            dot_bound(terms, scale[i] + b_abs) + EPS * z_ref[i].to_f64().abs()
        })
        .collect()
}

/// linear_backward_input: dx = dz·W ([m, n]·[n, k]), against the reference `dx_ref`: a sum of n
/// products, `dot_bound(n, Σ|dz·w|)`, plus the reference's rounding.
pub fn linear_backward_input_bound<T: Real>(
    dz: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    dx_ref: &[T],
) -> Vec<f64> {
    let scale = abs_products(m, k, n, |i, j| dz[i * n + j], |j, p| w[j * k + p]);
    (0..m * k).map(|i| dot_bound(n, scale[i]) + EPS * dx_ref[i].to_f64().abs()).collect()
}

/// The act' epilogue of linear_backward_input: dz_prev = dx ⊙ act'(z_prev), against the
/// reference `want`, given dx's bound `dx_bound` ([`linear_backward_input_bound`]) and the
/// reference's dx `dx_ref`: |act'|·(dx's bound) + |dx|·(act''s evaluation bound), plus the
/// product's rounding and the reference's (2u·|want|).
pub fn act_grad_epilogue_bound<T: Real>(
    act: Act,
    z_prev: &[f32],
    dx_bound: &[f64],
    dx_ref: &[T],
    want: &[T],
) -> Vec<f64> {
    (0..z_prev.len())
        .map(|i| {
            let g = activate_grad(z_prev[i], act) as f64;
            g.abs() * dx_bound[i]
                + dx_ref[i].to_f64().abs() * act_grad_eval_bound(act, z_prev[i] as f64, g)
                + 2.0 * EPS * want[i].to_f64().abs()
        })
        .collect()
}

/// linear_backward_weight: dW = dzᵀ·x ([n, m]·[m, k]), against the reference `dw_ref`: a sum of m
/// products, `dot_bound(m, Σ|dz·x|)`, plus the reference's rounding.
pub fn linear_backward_weight_bound<T: Real>(
    dz: &[f32],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    dw_ref: &[T],
) -> Vec<f64> {
    let scale = abs_products(n, k, m, |j, i| dz[i * n + j], |i, p| x[i * k + p]);
    (0..n * k).map(|i| dot_bound(m, scale[i]) + EPS * dw_ref[i].to_f64().abs()).collect()
}

/// bias_grad (alone, or fused into dW as the row sums of dzᵀ): db_j = Σ_i dz[i, j], against the
/// reference, exact or rounded once. The kernels sum the m values in order from 0, m − 1
/// roundings: γ_{m−1}·Σ|dz|. The reference's rounding is within u·|db| ≤ u·Σ|dz|, and
/// γ_{m+1} − γ_{m−1} ≥ 2u, so `dot_bound(m, Σ|dz|)` = γ_{m+1}·Σ|dz| covers both.
pub fn bias_grad_bound(dz: &[f32], m: usize, n: usize) -> Vec<f64> {
    (0..n).map(|j| dot_bound(m, (0..m).map(|i| dz[i * n + j].abs() as f64).sum())).collect()
}

// ---- Losses (loss.wgsl) --------------------------------------------------------------------------

/// Softmax cross-entropy on the GPU (loss.wgsl), error bounds per element of the gradient and for
/// the mean loss, from the precisions above, against the exact values (add u·|reference| to
/// compare with the reference's f32 path).
pub fn cross_entropy_bounds(logits: &[f32], labels: &[u32], rows: usize, cols: usize) -> (f64, Vec<f64>) {
    let u = EPS;
    let mut loss_err = 0.0;
    let mut sum_abs_loss = 0.0;
    let mut grad_b = vec![0.0; rows * cols];
    for r in 0..rows {
        let z: Vec<f64> = logits[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|&v| (v - zmax).exp()).collect();
        let rel: Vec<f64> = z.iter().map(|&v| exp_rel(v - zmax) + u * (v - zmax).abs()).collect();
        let s: f64 = e.iter().sum();
        let rel_s = e.iter().zip(&rel).map(|(a, b)| a * b).sum::<f64>() / s + cols as f64 * u;
        let lse = zmax + s.ln();
        let loss_r = lse - z[labels[r] as usize];
        let log_err = 2f64.powi(-21) + 6.0 * u * s.ln().abs() + rel_s;
        loss_err += log_err + u * lse.abs() + u * loss_r.abs();
        sum_abs_loss += loss_r.abs();
        for c in 0..cols {
            let p = e[c] / s;
            let onehot = if c == labels[r] as usize { 1.0 } else { 0.0 };
            grad_b[r * cols + c] = (p * (rel[c] + rel_s + 5.0 * u) + 3.0 * u * (p - onehot).abs()) / rows as f64;
        }
    }
    let mean_abs = sum_abs_loss / rows as f64;
    (loss_err / rows as f64 + rows as f64 * u * mean_abs + u * mean_abs + 1e-30, grad_b)
}

/// MSE on the GPU: bounds for the mean loss and the gradient (values of d = pred − target exact),
/// against the exact values (add u·|reference| to compare with the reference's f32 path).
pub fn mse_bounds(pred: &[f32], target: &[f64], rows: usize, cols: usize) -> (f64, Vec<f64>) {
    let u = EPS;
    let n = (rows * cols) as f64;
    let sq: f64 = pred.iter().zip(target).map(|(&p, &t)| (p as f64 - t).powi(2)).sum();
    let loss = sq / n;
    let loss_b = (cols as f64 + rows as f64 + 10.0) * u * loss + 1e-30;
    let grad_b = pred.iter().zip(target).map(|(&p, &t)| 6.0 * u * (2.0 * (p as f64 - t) / n).abs() + 1e-30).collect();
    (loss_b, grad_b)
}

// ---- Batch norm (batchnorm.wgsl) and the residual add --------------------------------------------

/// Per-element GPU error bounds for one batch-norm layer in training mode, against the reference
/// run in f64 (`crate::reference::batchnorm_*` on f64 copies of the inputs). The bound follows
/// the kernels' arithmetic step by step (L = ⌈m/16⌉ + 4 terms per lane plus tree levels):
///   shifted sum   S = Σ fl(x − K):          |δS| ≤ γ_L·Σ|x − K| + u·Σ|x − K|,  δd = |δS|/m + u|d|
///   centred value c = fl(fl(x − K) − d̃):   e_i ≤ u|x − K| + δd + u(|x − μ| + δd)
///   variance      Σc²/m:                   δvar ≤ (Σ 2|x − μ|e_i + e_i² + γ_{L+1}(|x − μ| + e_i)²)/m + u·var
///   1/√(var + ε)  (sqrt 4.5 ulp, division 2.5 ulp, as WGSL/Vulkan allow): rel ≤ ½(δvar/(var+ε) + u) + 16u
///   x̂ = c·inv:   δx̂ ≤ e_i·inv + |x̂|(rel + u);   y = γx̂ + β: δy ≤ |γ|δx̂ + u|γx̂| + u|y|
/// and the backward sums and dx formula likewise ([`BatchNormBounds::backward`]). K is each
/// feature's first row.
pub struct BatchNormBounds {
    /// Per element: the bound on y = γx̂ + β (identity activation).
    pub y: Vec<f64>,
    /// Per column: δd (error of the shifted mean), δvar, relative error of 1/√(var + ε).
    pub d_err: Vec<f64>,
    pub var_err: Vec<f64>,
    pub inv_rel: Vec<f64>,
    /// Per element: error of x̂.
    pub xhat_err: Vec<f64>,
}

impl BatchNormBounds {
    /// The forward bounds for x [m, n] with γ, β and ε (identity activation).
    pub fn new(x: &[f32], m: usize, n: usize, gamma_v: &[f32], beta: &[f32], eps: f64) -> BatchNormBounds {
        let u = EPS;
        let lanes = m.div_ceil(16) + 4;
        let (gl, gl1) = (gamma(lanes), gamma(lanes + 1));
        let mut b = BatchNormBounds {
            y: vec![0.0; m * n],
            d_err: vec![0.0; n],
            var_err: vec![0.0; n],
            inv_rel: vec![0.0; n],
            xhat_err: vec![0.0; m * n],
        };
        for j in 0..n {
            let col: Vec<f64> = (0..m).map(|i| x[i * n + j] as f64).collect();
            let k = col[0];
            let mu = col.iter().sum::<f64>() / m as f64;
            let var = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m as f64;
            let inv = 1.0 / (var + eps).sqrt();
            let a: f64 = col.iter().map(|v| (v - k).abs()).sum();
            let dd = (gl * a + u * a) / m as f64 + u * (mu - k).abs();
            let e: Vec<f64> = col.iter().map(|v| u * (v - k).abs() + dd + u * ((v - mu).abs() + dd)).collect();
            let q_err: f64 = col
                .iter()
                .zip(&e)
                .map(|(v, ei)| 2.0 * (v - mu).abs() * ei + ei * ei + gl1 * ((v - mu).abs() + ei).powi(2))
                .sum();
            let dvar = q_err / m as f64 + u * var;
            let rel = 0.5 * (dvar / (var + eps) + u) + 16.0 * u;
            b.d_err[j] = dd;
            b.var_err[j] = dvar;
            b.inv_rel[j] = rel;
            for i in 0..m {
                let xh = (col[i] - mu) * inv;
                let dxh = e[i] * inv + xh.abs() * (rel + u);
                let g = gamma_v[j] as f64;
                let y = g * xh + beta[j] as f64;
                b.xhat_err[i * n + j] = dxh;
                b.y[i * n + j] = 1.001 * (g.abs() * dxh + u * (g * xh).abs() + u * y.abs()) + 1e-30;
            }
        }
        b
    }

    /// With a fused activation, act(γx̂ + β) against the reference `want` = act(`pre`), `pre` the
    /// reference's γx̂ + β: act's Lipschitz constant times y's bound, act's evaluation bound and
    /// the reference's rounding.
    pub fn activation_forward(&self, act: Act, pre: &[f64], want: &[f64]) -> Vec<f64> {
        (0..self.y.len())
            .map(|i| act_lipschitz(act) * self.y[i] + act_eval_bound(act, pre[i], want[i]) + EPS * want[i].abs())
            .collect()
    }

    /// Bounds for (dx, dγ, dβ) given dy (identity activation).
    pub fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        m: usize,
        n: usize,
        gamma_v: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let du: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        self.backward_with(x, &du, &vec![0.0; m * n], m, n, gamma_v, eps)
    }

    /// Bounds for (dx, dγ, dβ) through a fused activation: dy ⊙ act'(γx̂ + β), `pre` the
    /// reference's γx̂ + β. The GPU evaluates act' at a γx̂ + β that is off by at most the forward
    /// bound δ, so du = dy·act' is off by |dy|·(act' evaluation bound + δ·max|act''|) plus the
    /// product's rounding; max|act''| ≤ 0.8 for tanh, sigmoid and GELU, 1 is used. (ReLU's kink
    /// would make act' flip under any rounding of γx̂ + β: this holds for the smooth ones.)
    #[allow(clippy::too_many_arguments)]
    pub fn activation_backward(
        &self,
        act: Act,
        x: &[f32],
        dy: &[f32],
        pre: &[f64],
        m: usize,
        n: usize,
        gamma_v: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let du: Vec<f64> = (0..m * n).map(|i| dy[i] as f64 * activate_grad(pre[i], act)).collect();
        let du_err: Vec<f64> = (0..m * n)
            .map(|i| {
                let g = activate_grad(pre[i], act);
                (dy[i] as f64).abs() * (act_grad_eval_bound(act, pre[i], g) + self.y[i]) + 2.0 * EPS * du[i].abs()
            })
            .collect();
        self.backward_with(x, &du, &du_err, m, n, gamma_v, eps)
    }

    /// As `backward`, for du = dy ⊙ act'(γx̂ + β) known exactly and computed by the GPU within
    /// `du_err` (a fused activation).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with(
        &self,
        x: &[f32],
        du_all: &[f64],
        du_err: &[f64],
        m: usize,
        n: usize,
        gamma_v: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let u = EPS;
        let lanes = m.div_ceil(16) + 4;
        let (gl, gl1) = (gamma(lanes), gamma(lanes + 1));
        let (mut bdx, mut bdg, mut bdb) = (vec![0.0; m * n], vec![0.0; n], vec![0.0; n]);
        for j in 0..n {
            let col: Vec<f64> = (0..m).map(|i| x[i * n + j] as f64).collect();
            let du: Vec<f64> = (0..m).map(|i| du_all[i * n + j]).collect();
            let de: Vec<f64> = (0..m).map(|i| du_err[i * n + j]).collect();
            let mu = col.iter().sum::<f64>() / m as f64;
            let var = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m as f64;
            let inv = 1.0 / (var + eps).sqrt();
            let xh: Vec<f64> = col.iter().map(|v| (v - mu) * inv).collect();
            let sdu: f64 = du.iter().sum();
            let sdx: f64 = du.iter().zip(&xh).map(|(a, b)| a * b).sum();
            let d_sdu = gl * du.iter().map(|v| v.abs()).sum::<f64>() + de.iter().sum::<f64>();
            let d_sdx = (0..m)
                .map(|i| du[i].abs() * self.xhat_err[i * n + j] + de[i] * (xh[i].abs() + self.xhat_err[i * n + j]))
                .sum::<f64>()
                + gl1 * (0..m).map(|i| (du[i] * xh[i]).abs()).sum::<f64>();
            bdb[j] = d_sdu + u * sdu.abs() + 1e-30;
            bdg[j] = d_sdx + u * sdx.abs() + 1e-30;
            let g = gamma_v[j] as f64;
            let c = g * inv / m as f64;
            let dc = c.abs() * (self.inv_rel[j] + 3.0 * u);
            for i in 0..m {
                let t = m as f64 * du[i] - sdu - xh[i] * sdx;
                let terms = m as f64 * du[i].abs() + sdu.abs() + (xh[i] * sdx).abs();
                let dt = 3.0 * u * terms
                    + m as f64 * de[i]
                    + d_sdu
                    + xh[i].abs() * d_sdx
                    + self.xhat_err[i * n + j] * sdx.abs();
                bdx[i * n + j] = 1.001 * (c.abs() * dt + t.abs() * dc + u * (c * t).abs()) + 1e-30;
            }
        }
        (bdx, bdg, bdb)
    }

    /// Bounds on the running statistics after one blend with `factor`.
    pub fn running(&self, x: &[f32], m: usize, n: usize, rm: &[f32], rv: &[f32], factor: f64) -> (Vec<f64>, Vec<f64>) {
        let u = EPS;
        let keep = 1.0 - factor;
        let (mut bm, mut bv) = (vec![0.0; n], vec![0.0; n]);
        for j in 0..n {
            let col: Vec<f64> = (0..m).map(|i| x[i * n + j] as f64).collect();
            let mu = col.iter().sum::<f64>() / m as f64;
            let var = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m as f64;
            let unb = var * m as f64 / (m as f64 - 1.0);
            let dmean = self.d_err[j] + u * mu.abs();
            let new_m = keep * rm[j] as f64 + factor * mu;
            let new_v = keep * rv[j] as f64 + factor * unb;
            bm[j] =
                factor * dmean + 3.0 * u * (keep * (rm[j] as f64).abs() + factor * mu.abs()) + u * new_m.abs() + 1e-30;
            bv[j] = factor * (self.var_err[j] * m as f64 / (m as f64 - 1.0) + 4.0 * u * unb)
                + 3.0 * u * (keep * rv[j] as f64 + factor * unb)
                + u * new_v
                + 1e-30;
        }
        (bm, bv)
    }
}

/// Batch norm in eval mode: the GPU's y = γ(x − rm)/√(rv + ε) + β from running statistics
/// (rm, rv) that carry errors (brm, brv), against the reference from (rm, rv). The centred value
/// takes rm's error and two roundings; 1/√(rv + ε) the relative ½(δrv + u(rv + ε))/(rv + ε) + 16u
/// (sqrt and division as in [`BatchNormBounds`]); then y as in training mode.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_eval_bound(
    x: &[f32],
    m: usize,
    n: usize,
    gamma_v: &[f32],
    beta: &[f32],
    rm: &[f64],
    rv: &[f64],
    brm: &[f64],
    brv: &[f64],
    eps: f64,
) -> Vec<f64> {
    let u = EPS;
    let mut b = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let inv = 1.0 / (rv[j] + eps).sqrt();
            let c = x[i * n + j] as f64 - rm[j];
            let xh = c * inv;
            let rel = 0.5 * (brv[j] + u * (rv[j] + eps)) / (rv[j] + eps) + 16.0 * u;
            let dxh = (brm[j] + 2.0 * u * c.abs()) * inv + xh.abs() * (rel + u);
            let g = gamma_v[j] as f64;
            let y = g * xh + beta[j] as f64;
            b[i * n + j] = 1.001 * (g.abs() * dxh + u * (g * xh).abs() + u * y.abs()) + 1e-30;
        }
    }
    b
}

/// residual_add: one correctly rounded addition, within u·|a + b| of the exact sum `want` (the
/// reference's f32 path is the same rounding): [`cpu_bound`].
pub fn residual_add_bound(want: &[f64]) -> Vec<f64> {
    cpu_bound(want)
}

/// Relative tolerance for a short training run's step losses, totals and parameters, GPU
/// executor against the CPU reference from the same initial weights and batches (tests/
/// training.rs, the browser self-test, tests/web_selftest.rs). One step's forward error is a
/// handful of dot products of length ≤ 64 with |terms| ≲ 1, i.e. ≲ 64·u ≈ 4e-6 relative; the
/// update map (lr ≤ 0.05, momentum 0.9) amplifies a perturbation by at most ~(1 + lr·‖H‖)/(1 − μ)
/// over the run, with ‖H‖ ≲ 1 there; 30 steps of that stay below 50× the one-step error: 2e-4.
/// Valid for runs within those conditions only.
pub const TRAINING_REL_TOL: f64 = 2e-4;

/// Relative tolerance between two builds of the same CPU reference code (native and wasm32):
/// the f32/f64 arithmetic is IEEE and identical; only the f64 transcendental functions (exp,
/// ln, tanh from each platform's libm) may differ, by an ulp of f64 (1e-16), which flips an f32
/// rounding (6e-8) rarely and, amplified as in `TRAINING_REL_TOL` (50×), stays below 1e-6.
pub const SAME_CODE_REL_TOL: f64 = 1e-6;
