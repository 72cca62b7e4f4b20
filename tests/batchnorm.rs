//! Batch norm (batchnorm.wgsl, cpu::batchnorm_*): PyTorch's golden cases on both paths, the GPU
//! against the reference over batch sizes around the kernels' tiles, large-mean features, and
//! bit-for-bit determinism.
//!
//! Error bounds. The reference is `cpu::batchnorm_*` run in f64 on the same f32 inputs; the f32
//! CPU path rounds that once (u·|value|). The GPU's bound follows its arithmetic step by step
//! (`GpuBounds::new`, u = 2^-24, L = ⌈m/16⌉ + 4 terms per lane plus tree levels):
//!   shifted sum   S = Σ fl(x − K):          |δS| ≤ γ_L·Σ|x − K| + u·Σ|x − K|,  δd = |δS|/m + u|d|
//!   centred value c = fl(fl(x − K) − d̃):   e_i ≤ u|x − K| + δd + u(|x − μ| + δd)
//!   variance      Σc²/m:                   δvar ≤ (Σ 2|x − μ|e_i + e_i² + γ_{L+1}(|x − μ| + e_i)²)/m + u·var
//!   1/√(var + ε)  (sqrt 4.5 ulp, division 2.5 ulp, as WGSL/Vulkan allow): rel ≤ ½(δvar/(var+ε) + u) + 16u
//!   x̂ = c·inv:   δx̂ ≤ e_i·inv + |x̂|(rel + u);   y = γx̂ + β: δy ≤ |γ|δx̂ + u|γx̂| + u|y|
//! and the backward sums and dx formula likewise (`GpuBounds::backward`).

mod common;

use common::golden::{cases_of, load};
use common::*;
use gradflow::exec::ops;
use gradflow::reference as cpu;
use gradflow::reference::NormStats;
use gradflow::spec::Act;

fn gamma_l(terms: usize) -> f64 {
    let n = terms as f64;
    n * EPS / (1.0 - n * EPS)
}

/// Per-element GPU error bounds for one batch-norm layer (identity activation).
struct GpuBounds {
    y: Vec<f64>,
    /// Per column: δd (error of the shifted mean), δvar, relative error of 1/√(var + ε).
    d_err: Vec<f64>,
    var_err: Vec<f64>,
    inv_rel: Vec<f64>,
    /// Per element: error of x̂.
    xhat_err: Vec<f64>,
}

impl GpuBounds {
    fn new(x: &[f32], m: usize, n: usize, gamma: &[f32], beta: &[f32], eps: f64) -> GpuBounds {
        let u = EPS;
        let lanes = m.div_ceil(16) + 4;
        let (gl, gl1) = (gamma_l(lanes), gamma_l(lanes + 1));
        let mut b = GpuBounds {
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
                let g = gamma[j] as f64;
                let y = g * xh + beta[j] as f64;
                b.xhat_err[i * n + j] = dxh;
                b.y[i * n + j] = 1.001 * (g.abs() * dxh + u * (g * xh).abs() + u * y.abs()) + 1e-30;
            }
        }
        b
    }

    /// Bounds for (dx, dγ, dβ) given dy (identity activation).
    fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        m: usize,
        n: usize,
        gamma: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let du: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        self.backward_with(x, &du, &vec![0.0; m * n], m, n, gamma, eps)
    }

    /// As `backward`, for du = dy ⊙ act'(γx̂ + β) known exactly and computed by the GPU within
    /// `du_err` (a fused activation).
    #[allow(clippy::too_many_arguments)]
    fn backward_with(
        &self,
        x: &[f32],
        du_all: &[f64],
        du_err: &[f64],
        m: usize,
        n: usize,
        gamma: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let u = EPS;
        let lanes = m.div_ceil(16) + 4;
        let (gl, gl1) = (gamma_l(lanes), gamma_l(lanes + 1));
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
            let g = gamma[j] as f64;
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
    fn running(&self, x: &[f32], m: usize, n: usize, rm: &[f32], rv: &[f32], factor: f64) -> (Vec<f64>, Vec<f64>) {
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

#[allow(clippy::too_many_arguments)]
/// GPU bound of eval-mode output computed from running statistics carrying errors (brm, brv).
fn eval_bound(
    x: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
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
            let g = gamma[j] as f64;
            let y = g * xh + beta[j] as f64;
            b[i * n + j] = 1.001 * (g.abs() * dxh + u * (g * xh).abs() + u * y.abs()) + 1e-30;
        }
    }
    b
}

fn f64s(v: &[f32]) -> Vec<f64> {
    widen(v)
}

/// The reference in f64: (y, dx, dγ, dβ, running mean, running var, stats).
#[allow(clippy::type_complexity)]
fn reference(
    x: &[f32],
    dy: &[f32],
    m: usize,
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, NormStats) {
    let (x64, dy64, g64, b64) = (f64s(x), f64s(dy), f64s(gamma), f64s(beta));
    let stats = cpu::batchnorm_stats(&x64, m, n, eps);
    let y = cpu::batchnorm_forward(&x64, m, n, &g64, &b64, &stats, Act::IDENTITY);
    let (dx, dg, db) = cpu::batchnorm_backward(&x64, &dy64, m, n, &g64, &b64, &stats, Act::IDENTITY);
    (y, dx, dg, db, stats)
}

#[test]
fn golden_batchnorm_both_paths() {
    let cases = cases_of("batchnorm");
    assert_eq!(cases.len(), 3, "batchnorm cases in the manifest");
    for name in cases {
        let c = load(&name);
        let (m, n) = (c.shape("x")[0], c.shape("x")[1]);
        let eps = c.param("eps");
        let momentum = c.param("momentum");
        let (x, gamma, beta, dy) = (c.f32("x"), c.f32("gamma"), c.f32("beta"), c.f32("dy"));
        let (rm, rv) = (c.f32("running_mean"), c.f32("running_var"));

        // The CPU reference, f32 in and out.
        let stats = cpu::batchnorm_stats(&x, m, n, eps);
        let y = cpu::batchnorm_forward(&x, m, n, &gamma, &beta, &stats, Act::IDENTITY);
        let (dx, dg, db) = cpu::batchnorm_backward(&x, &dy, m, n, &gamma, &beta, &stats, Act::IDENTITY);
        let (mut crm, mut crv) = (rm.clone(), rv.clone());
        cpu::batchnorm_update_running(&mut crm, &mut crv, &stats, m, momentum);
        let eval_stats = NormStats::running(&crm, &crv, eps);
        let y_eval = cpu::batchnorm_forward(&x, m, n, &gamma, &beta, &eval_stats, Act::IDENTITY);
        for (what, got, key) in [
            ("y", &y, "y"),
            ("dx", &dx, "dx"),
            ("dgamma", &dg, "dgamma"),
            ("dbeta", &db, "dbeta"),
            ("running_mean", &crm, "running_mean_after"),
            ("running_var", &crv, "running_var_after"),
        ] {
            assert_within(&format!("{name} cpu {what}"), got, c.t(key), &cpu_bound(c.t(key)));
        }
        // Eval output from the f32-rounded running statistics: their rounding (u each) carries through.
        let rm_after = c.t("running_mean_after");
        let rv_after = c.t("running_var_after");
        let brm: Vec<f64> = rm_after.iter().map(|v| EPS * v.abs()).collect();
        let brv: Vec<f64> = rv_after.iter().map(|v| EPS * v.abs()).collect();
        let eb = eval_bound(&x, m, n, &gamma, &beta, rm_after, rv_after, &brm, &brv, eps);
        assert_within(&format!("{name} cpu y_eval_after"), &y_eval, c.t("y_eval_after"), &eb);

        // The GPU.
        if !gpu_part!() {
            continue;
        }
        let gb = GpuBounds::new(&x, m, n, &gamma, &beta, eps);
        let (bdx, bdg, bdb) = gb.backward(&x, &dy, m, n, &gamma, eps);
        let (brm, brv) = gb.running(&x, m, n, &rm, &rv, momentum);
        let g = gpu();
        let (gy, grm, grv) =
            ops::batchnorm_forward(g, &x, m, n, &gamma, &beta, &rm, &rv, eps, Some(momentum), Act::IDENTITY).unwrap();
        let (gdx, gdg, gdb) = ops::batchnorm_backward(g, &x, &dy, m, n, &gamma, &beta, eps, Act::IDENTITY).unwrap();
        let (gy_eval, _, _) =
            ops::batchnorm_forward(g, &x, m, n, &gamma, &beta, &grm, &grv, eps, None, Act::IDENTITY).unwrap();
        let r = [
            ("y", assert_within(&format!("{name} gpu y"), &gy, c.t("y"), &gb.y)),
            ("dx", assert_within(&format!("{name} gpu dx"), &gdx, c.t("dx"), &bdx)),
            ("dgamma", assert_within(&format!("{name} gpu dgamma"), &gdg, c.t("dgamma"), &bdg)),
            ("dbeta", assert_within(&format!("{name} gpu dbeta"), &gdb, c.t("dbeta"), &bdb)),
            ("running_mean", assert_within(&format!("{name} gpu running_mean"), &grm, rm_after, &brm)),
            ("running_var", assert_within(&format!("{name} gpu running_var"), &grv, rv_after, &brv)),
        ];
        let eb = eval_bound(&x, m, n, &gamma, &beta, rm_after, rv_after, &brm, &brv, eps);
        let re = assert_within(&format!("{name} gpu y_eval_after"), &gy_eval, c.t("y_eval_after"), &eb);
        eprintln!("{name}: gpu worst (error, share of bound): {r:?} eval {re:?}");
    }
}

/// Random [m, n] data with per-column means and spreads, γ, β and dy.
fn random_case(seed: u64, m: usize, n: usize, mean: f32, spread: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let centres = uniform(&mut r, n, -mean.abs() - 1.0, mean.abs() + 1.0);
    let x: Vec<f32> = (0..m * n).map(|i| centres[i % n] + spread * uniform(&mut r, 1, -1.0, 1.0)[0]).collect();
    let gamma = uniform(&mut r, n, 0.5, 2.0);
    let beta = uniform(&mut r, n, -1.0, 1.0);
    let dy = uniform(&mut r, m * n, -1.0, 1.0);
    (x, gamma, beta, dy)
}

/// The f32 CPU path against the f64 reference, then (with `with_gpu`) the GPU; returns the GPU's
/// worst (error, share of bound) for y, dx, dγ, dβ.
#[allow(clippy::too_many_arguments)]
fn check_against_reference(
    label: &str,
    m: usize,
    n: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    with_gpu: bool,
) -> Option<[(f64, f64); 4]> {
    let eps = 1e-5;
    let (y, dx, dg, db, _) = reference(x, dy, m, n, gamma, beta, eps);
    // The f32 CPU path: one rounding of the f64 value.
    let stats = cpu::batchnorm_stats(x, m, n, eps);
    let cy = cpu::batchnorm_forward(x, m, n, gamma, beta, &stats, Act::IDENTITY);
    let (cdx, cdg, cdb) = cpu::batchnorm_backward(x, dy, m, n, gamma, beta, &stats, Act::IDENTITY);
    assert_within(&format!("{label} cpu y"), &cy, &y, &cpu_bound(&y));
    assert_within(&format!("{label} cpu dx"), &cdx, &dx, &cpu_bound(&dx));
    assert_within(&format!("{label} cpu dgamma"), &cdg, &dg, &cpu_bound(&dg));
    assert_within(&format!("{label} cpu dbeta"), &cdb, &db, &cpu_bound(&db));
    // Running statistics after one blend, and eval mode from them, against the reference.
    let (rm, rv) = (vec![0.5f32; n], vec![2.0f32; n]);
    let (mut crm, mut crv) = (rm.clone(), rv.clone());
    let stats64 = cpu::batchnorm_stats(&f64s(x), m, n, eps);
    let want_rm: Vec<f64> = (0..n).map(|j| 0.9 * rm[j] as f64 + 0.1 * stats64.mean[j]).collect();
    let want_rv: Vec<f64> =
        (0..n).map(|j| 0.9 * rv[j] as f64 + 0.1 * stats64.var[j] * m as f64 / (m as f64 - 1.0)).collect();
    cpu::batchnorm_update_running(&mut crm, &mut crv, &stats, m, 0.1);
    assert_within(&format!("{label} cpu running_mean"), &crm, &want_rm, &cpu_bound(&want_rm));
    assert_within(&format!("{label} cpu running_var"), &crv, &want_rv, &cpu_bound(&want_rv));
    if !with_gpu {
        return None;
    }
    // The GPU.
    let gb = GpuBounds::new(x, m, n, gamma, beta, eps);
    let (bdx, bdg, bdb) = gb.backward(x, dy, m, n, gamma, eps);
    let (gy, grm, grv) =
        ops::batchnorm_forward(gpu(), x, m, n, gamma, beta, &rm, &rv, eps, Some(0.1), Act::IDENTITY).unwrap();
    let (gdx, gdg, gdb) = ops::batchnorm_backward(gpu(), x, dy, m, n, gamma, beta, eps, Act::IDENTITY).unwrap();
    let (brm, brv) = gb.running(x, m, n, &rm, &rv, 0.1);
    assert_within(&format!("{label} gpu running_mean"), &grm, &want_rm, &brm);
    assert_within(&format!("{label} gpu running_var"), &grv, &want_rv, &brv);
    let eval_stats = NormStats { mean: want_rm.clone(), var: want_rv.clone(), eps };
    let want_eval = cpu::batchnorm_forward(&f64s(x), m, n, &f64s(gamma), &f64s(beta), &eval_stats, Act::IDENTITY);
    let (g_eval, _, _) =
        ops::batchnorm_forward(gpu(), x, m, n, gamma, beta, &grm, &grv, eps, None, Act::IDENTITY).unwrap();
    let eb = eval_bound(x, m, n, gamma, beta, &want_rm, &want_rv, &brm, &brv, eps);
    assert_within(&format!("{label} gpu eval y"), &g_eval, &want_eval, &eb);
    // A synchronised batch norm's share (BN_SYNC): the same shift and shifted mean, the biased
    // variance itself in place of inv_std (bounds δd, δvar above), running statistics untouched.
    let (shift, d, var, running) = ops::batchnorm_share_stats(gpu(), x, m, n, &rm, &rv, eps).unwrap();
    assert_eq!(shift, x[..n], "{label}: the shift is each feature's first row");
    let want_d: Vec<f64> = (0..n).map(|j| stats64.mean[j] - x[j] as f64).collect();
    assert_within(&format!("{label} gpu share d"), &d, &want_d, &gb.d_err);
    assert_within(&format!("{label} gpu share variance"), &var, &stats64.var, &gb.var_err);
    assert_eq!(running, [rm.clone(), rv.clone()].concat(), "{label}: a share leaves the running statistics");
    Some([
        assert_within(&format!("{label} gpu y"), &gy, &y, &gb.y),
        assert_within(&format!("{label} gpu dx"), &gdx, &dx, &bdx),
        assert_within(&format!("{label} gpu dgamma"), &gdg, &dg, &bdg),
        assert_within(&format!("{label} gpu dbeta"), &gdb, &db, &bdb),
    ])
}

#[test]
fn gpu_matches_reference_for_batch_sizes_around_the_tiles() {
    // 37 features: two full 16-feature workgroups and a partial one; rows around the 16 lanes
    // and 256, as the issue asks (2, 3, 255, 256, 257, 4096) and one past a lane's row stride.
    let with_gpu = gpu_part!();
    for m in [2usize, 3, 15, 16, 17, 255, 256, 257, 4096] {
        let n = 37;
        let (x, gamma, beta, dy) = random_case(m as u64, m, n, 3.0, 2.0);
        if let Some(r) = check_against_reference(&format!("m={m}"), m, n, &x, &gamma, &beta, &dy, with_gpu) {
            eprintln!("m = {m}: worst (error, share of bound) y/dx/dgamma/dbeta {r:?}");
        }
    }
}

#[test]
fn features_with_mean_1e4_and_spread_1_normalise_correctly() {
    // E[x²] − E[x]² would lose everything here (10⁸ − 10⁸ in f32); the shifted two-pass form keeps
    // x̂ to a few ulp. The assertion is the bound above, which needs the shift: without it the
    // mean's own rounding (u·10⁴ ≈ 6e-4) would exceed it.
    let (m, n) = (1000, 20);
    let (mut x, gamma, beta, dy) = random_case(7, m, n, 0.0, 1.0);
    for v in &mut x {
        *v += 1.0e4;
    }
    if let Some(r) = check_against_reference("mean 1e4", m, n, &x, &gamma, &beta, &dy, gpu_part!()) {
        assert!(r[0].0 < 1e-5, "y error {} with mean 1e4", r[0].0);
        eprintln!("mean 1e4: worst y error {:e}", r[0].0);
    }
}

#[test]
fn batch_statistics_are_bit_identical_across_runs() {
    require_gpu!();
    let (m, n) = (4099, 33);
    let (x, gamma, beta, dy) = random_case(11, m, n, 5.0, 3.0);
    let ones = vec![1.0f32; n];
    let run = || {
        let f = ops::batchnorm_forward(
            gpu(),
            &x,
            m,
            n,
            &gamma,
            &beta,
            &ones,
            &ones,
            1e-5,
            Some(0.1),
            Act::new(gradflow::spec::Activation::Relu),
        )
        .unwrap();
        let b = ops::batchnorm_backward(
            gpu(),
            &x,
            &dy,
            m,
            n,
            &gamma,
            &beta,
            1e-5,
            Act::new(gradflow::spec::Activation::Relu),
        )
        .unwrap();
        (f, b)
    };
    let first = run();
    for _ in 0..3 {
        assert!(run() == first, "batch norm gave different bits on a second run");
    }
}

#[test]
fn fused_activation_matches_the_reference() {
    require_gpu!();
    // act(γx̂ + β) in one kernel, against the reference; the bound adds act's Lipschitz constant
    // times the pre-activation bound and the evaluation error of act.
    let (m, n) = (300, 19);
    let (x, gamma, beta, _) = random_case(3, m, n, 1.0, 2.0);
    let eps = 1e-5;
    let gb = GpuBounds::new(&x, m, n, &gamma, &beta, eps);
    let stats = cpu::batchnorm_stats(&f64s(&x), m, n, eps);
    let ones = vec![1.0f32; n];
    for act in ops::all_activations() {
        let u = cpu::batchnorm_forward(&f64s(&x), m, n, &f64s(&gamma), &f64s(&beta), &stats, Act::IDENTITY);
        let want: Vec<f64> = u.iter().map(|&z| cpu::activate(z, act)).collect();
        let bound: Vec<f64> = (0..m * n)
            .map(|i| act_lipschitz(act) * gb.y[i] + act_eval_bound(act, u[i], want[i]) + EPS * want[i].abs())
            .collect();
        let (gy, _, _) =
            ops::batchnorm_forward(gpu(), &x, m, n, &gamma, &beta, &ones, &ones, eps, Some(0.1), act).unwrap();
        let r = assert_within(&format!("batchnorm+{}", act.kind.name()), &gy, &want, &bound);
        eprintln!("batchnorm+{}: {r:?}", act.kind.name());
    }
}

#[test]
fn residual_add_is_exact_to_one_rounding() {
    let with_gpu = gpu_part!();
    let mut r = rng(5);
    for len in [1usize, 255, 257, 65_537] {
        let a = uniform(&mut r, len, -3.0, 3.0);
        let b = uniform(&mut r, len, -3.0, 3.0);
        let want: Vec<f64> = a.iter().zip(&b).map(|(p, q)| *p as f64 + *q as f64).collect();
        let bound = cpu_bound(&want);
        assert_within("cpu residual_add", &cpu::residual_add(&a, &b), &want, &bound);
        if with_gpu {
            assert_within("gpu residual_add", &ops::residual_add(gpu(), &a, &b).unwrap(), &want, &bound);
        }
    }
}

#[test]
fn fused_activation_backward_matches_the_reference() {
    // dx, dγ, dβ through act(γx̂ + β) for the smooth activations (ReLU's kink would make act'
    // flip under any rounding of γx̂ + β). The GPU evaluates act' at a γx̂ + β that is off by at
    // most the forward bound δ, so du = dy·act' is off by |dy|·(act' evaluation bound + δ·max|act''|)
    // plus the product's rounding; max|act''| ≤ 0.8 for tanh, sigmoid and GELU, 1 is used.
    use gradflow::spec::Activation;
    let (m, n) = (257, 21);
    let (x, gamma, beta, dy) = random_case(13, m, n, 2.0, 1.5);
    let eps = 1e-5;
    let gb = GpuBounds::new(&x, m, n, &gamma, &beta, eps);
    let (x64, dy64, g64, b64) = (f64s(&x), f64s(&dy), f64s(&gamma), f64s(&beta));
    let stats = cpu::batchnorm_stats(&x64, m, n, eps);
    let pre = cpu::batchnorm_forward(&x64, m, n, &g64, &b64, &stats, Act::IDENTITY);
    for kind in [Activation::Tanh, Activation::Sigmoid, Activation::Gelu] {
        let act = Act::new(kind);
        let (dx, dg, db) = cpu::batchnorm_backward(&x64, &dy64, m, n, &g64, &b64, &stats, act);
        // The f32 CPU path: one rounding of the same f64 computation.
        let (cdx, _, _) =
            cpu::batchnorm_backward(&x, &dy, m, n, &gamma, &beta, &cpu::batchnorm_stats(&x, m, n, eps), act);
        assert_within(&format!("batchnorm+{} cpu dx", kind.name()), &cdx, &dx, &cpu_bound(&dx));
        if !gpu_part!() {
            continue;
        }
        let du: Vec<f64> = (0..m * n).map(|i| dy64[i] * cpu::activate_grad(pre[i], act)).collect();
        let du_err: Vec<f64> = (0..m * n)
            .map(|i| {
                let g = cpu::activate_grad(pre[i], act);
                dy64[i].abs() * (act_grad_eval_bound(act, pre[i], g) + gb.y[i]) + 2.0 * EPS * du[i].abs()
            })
            .collect();
        let (bdx, bdg, bdb) = gb.backward_with(&x, &du, &du_err, m, n, &gamma, eps);
        let (gdx, gdg, gdb) = ops::batchnorm_backward(gpu(), &x, &dy, m, n, &gamma, &beta, eps, act).unwrap();
        let name = kind.name();
        let r = [
            assert_within(&format!("batchnorm+{name} gpu dx"), &gdx, &dx, &bdx),
            assert_within(&format!("batchnorm+{name} gpu dgamma"), &gdg, &dg, &bdg),
            assert_within(&format!("batchnorm+{name} gpu dbeta"), &gdb, &db, &bdb),
        ];
        eprintln!("batchnorm+{name} backward: worst (error, share of bound) dx/dgamma/dbeta {r:?}");
    }
}

/// Training-mode statistics over more rows than one invocation may loop over on llvmpipe (each
/// of 16 lanes sums every 16th row, twice): refused there with the reason rather than cut short
/// silently; elsewhere they run.
#[test]
fn statistics_past_llvmpipes_loop_budget_are_refused_not_truncated() {
    require_gpu!();
    let g = gpu();
    let m = 16 * 32_000;
    let x = vec![1.0f32; m];
    let got = ops::batchnorm_forward(g, &x, m, 1, &[1.0], &[0.0], &[0.0], &[1.0], 1e-5, Some(0.1), Act::IDENTITY);
    match g.loop_limit() {
        Some(_) => {
            let e = got.expect_err("llvmpipe must refuse").to_string();
            assert!(e.contains("batchnorm_stats over 512000 rows") && e.contains("loop iterations"), "{e}");
        }
        None => assert!(got.is_ok(), "{:?}", got.err()),
    }
}
