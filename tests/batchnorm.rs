//! Batch norm (batchnorm.wgsl, cpu::batchnorm_*): PyTorch's golden cases on both paths, the GPU
//! against the reference over batch sizes around the kernels' tiles, large-mean features, and
//! bit-for-bit determinism.
//!
//! Error bounds. The reference is `cpu::batchnorm_*` run in f64 on the same f32 inputs; the f32
//! CPU path rounds that once (u·|value|). The GPU's bound follows its arithmetic step by step:
//! `gradflow::reference::bounds::BatchNormBounds` (its doc has the derivation) and
//! `batchnorm_eval_bound`, the bounds `gradflow check` uses too.

mod common;

use common::golden::{cases_of, load};
use common::*;
use gradflow::exec::ops;
use gradflow::reference as cpu;
use gradflow::reference::NormStats;
use gradflow::spec::Act;

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
        let eb = batchnorm_eval_bound(&x, m, n, &gamma, &beta, rm_after, rv_after, &brm, &brv, eps);
        assert_within(&format!("{name} cpu y_eval_after"), &y_eval, c.t("y_eval_after"), &eb);

        // The GPU.
        if !gpu_part!() {
            continue;
        }
        let gb = BatchNormBounds::new(&x, m, n, &gamma, &beta, eps);
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
        let eb = batchnorm_eval_bound(&x, m, n, &gamma, &beta, rm_after, rv_after, &brm, &brv, eps);
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
    let gb = BatchNormBounds::new(x, m, n, gamma, beta, eps);
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
    let eb = batchnorm_eval_bound(x, m, n, gamma, beta, &want_rm, &want_rv, &brm, &brv, eps);
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
    // act(γx̂ + β) in one kernel, against the reference; the bound (`activation_forward`) adds
    // act's Lipschitz constant times the pre-activation bound and the evaluation error of act.
    let (m, n) = (300, 19);
    let (x, gamma, beta, _) = random_case(3, m, n, 1.0, 2.0);
    let eps = 1e-5;
    let gb = BatchNormBounds::new(&x, m, n, &gamma, &beta, eps);
    let stats = cpu::batchnorm_stats(&f64s(&x), m, n, eps);
    let ones = vec![1.0f32; n];
    for act in ops::all_activations() {
        let u = cpu::batchnorm_forward(&f64s(&x), m, n, &f64s(&gamma), &f64s(&beta), &stats, Act::IDENTITY);
        let want: Vec<f64> = u.iter().map(|&z| cpu::activate(z, act)).collect();
        let bound = gb.activation_forward(act, &u, &want);
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
        // One correctly rounded addition on either path.
        let bound = residual_add_bound(&want);
        assert_within("cpu residual_add", &cpu::residual_add(&a, &b), &want, &bound);
        if with_gpu {
            assert_within("gpu residual_add", &ops::residual_add(gpu(), &a, &b).unwrap(), &want, &bound);
        }
    }
}

#[test]
fn fused_activation_backward_matches_the_reference() {
    // dx, dγ, dβ through act(γx̂ + β) for the smooth activations (ReLU's kink would make act'
    // flip under any rounding of γx̂ + β); the bound is `BatchNormBounds::activation_backward`.
    use gradflow::spec::Activation;
    let (m, n) = (257, 21);
    let (x, gamma, beta, dy) = random_case(13, m, n, 2.0, 1.5);
    let eps = 1e-5;
    let gb = BatchNormBounds::new(&x, m, n, &gamma, &beta, eps);
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
        let (bdx, bdg, bdb) = gb.activation_backward(act, &x, &dy, &pre, m, n, &gamma, eps);
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

/// Every batch-norm kernel of a training step (statistics with a running blend, the normalised
/// output with an activation, the γ/β reduction and dx accumulated into what is there) over 3
/// models in one launch each, every binding's slice padded apart, against each model launched
/// alone: the same kernels in the same order, so the same bits.
#[test]
fn a_batch_of_models_equals_each_model_alone_to_the_bit() {
    use gradflow::kernels::{BnEntry, BnParams};
    use gradflow::spec::Activation;
    require_gpu!();
    let g = gpu();
    let mut r = rng(31);
    let act = Act::new(Activation::Relu);
    for &(m, n) in &[(2usize, 1usize), (17, 5), (70, 33)] {
        let models = 3;
        // Per model: x and dy [m, n] (+3), γ β at 2 of params (+5), running mean, var at 1 (+2),
        // stats (+4), out (+1), grads like params.
        let (xs, ps, rs, ss, os) = (m * n + 3, 2 * n + 7, 2 * n + 3, 3 * n + 4, m * n + 1);
        let x = uniform(&mut r, models * xs, -3.0, 3.0);
        let dy = uniform(&mut r, models * xs, -1.0, 1.0);
        let params = uniform(&mut r, models * ps, 0.5, 1.5);
        let running = uniform(&mut r, models * rs, 0.5, 1.5);
        let out0 = uniform(&mut r, models * os, -1.0, 1.0);
        let run = |x: &[f32], dy: &[f32], params: &[f32], running: &[f32], out0: &[f32], count: usize| {
            let p = BnParams::layer(m, n, 2, 2 + n, 1, 1 + n, 1e-5, act)
                .training(0.1)
                .for_models(count, [xs, xs, ps, rs, ss, os, ps]);
            let (gx, gdy, gp) =
                (g.upload("x", x).unwrap(), g.upload("dy", dy).unwrap(), g.upload("p", params).unwrap());
            let (gr, gs) = (g.upload("running", running).unwrap(), g.storage("stats", count * ss).unwrap());
            let (fwd_out, dx) = (g.storage("y", count * os).unwrap(), g.upload("dx", out0).unwrap());
            let grads = g.storage("grads", count * ps).unwrap();
            let launch = |entry, dy: Option<&_>, out: Option<&_>, p| {
                g.batchnorm(entry, &gx, dy, &gp, &gr, &gs, out, &grads, p).unwrap()
            };
            let launches = [
                launch(BnEntry::Stats, None, None, p),
                launch(BnEntry::Forward, None, Some(&fwd_out), p),
                launch(BnEntry::BackwardReduce, Some(&gdy), None, p),
                launch(
                    BnEntry::BackwardInput,
                    Some(&gdy),
                    Some(&dx),
                    BnParams { flags: p.flags | gradflow::kernels::BN_ACCUMULATE, ..p },
                ),
            ];
            gradflow::device::submit(g, "batch norm", &launches.iter().collect::<Vec<_>>()).unwrap();
            [&gr, &gs, &fwd_out, &dx, &grads]
                .map(|b| g.read_all(b).unwrap().into_iter().map(f32::to_bits).collect::<Vec<_>>())
        };
        let batched = run(&x, &dy, &params, &running, &out0, models);
        for i in 0..models {
            let s = |v: &[f32], len: usize| v[i * len..(i + 1) * len].to_vec();
            let alone = run(&s(&x, xs), &s(&dy, xs), &s(&params, ps), &s(&running, rs), &s(&out0, os), 1);
            for (b, (what, len)) in
                [("running", rs), ("stats", ss), ("y", os), ("dx", os), ("grads", ps)].into_iter().enumerate()
            {
                // Compare what a model writes; its padding is what the buffer held.
                let written = match what {
                    "y" | "dx" => m * n,
                    "grads" => 2 + 2 * n,
                    _ => len,
                };
                assert_eq!(batched[b][i * len..i * len + written], alone[b][..written], "{m}x{n}: model {i}'s {what}");
            }
        }
    }
}
