//! The optimizer suite: PyTorch's golden iterates on both paths, GPU against CPU (parameters and
//! state) for 1,000 steps on 10,007 parameters, the course's momentum forms, parameter groups,
//! schedules, clipping and its gradient norm.
//!
//! Error bound for an f32 run against the exact trajectory (derived, not tuned): every line of an
//! update rounds each operation once (≤ 4 roundings of |p| per step reach the parameter), and
//! every state variable (momentum buffer, EMAs, sums) is a recurrence with ≤ 8 roundings per step
//! and contraction ≤ 1, so after s steps its error is ≤ 8·s·u of the same recurrence run on |g|.
//! That recurrence's update magnitude U_s is an f64 replay on absolute gradients. So
//!     |p_t(f32) − p_t(exact)| ≤ Σ_{s≤t} (4u·|p_s| + 8u·s·U_s)
//! (for centered RMSprop the |g| replay's smaller sq − ga² makes U_s the cancellation-amplified
//! size). Both the CPU (f32) and the GPU are held to it; the CPU in f64 must match PyTorch to 1e-12.
//! The state, by the same argument, is within 8u·t·|S_t| of the exact one, S_t being the |g|
//! replay's state. Both live in the library (`gpu::optimizer::{update_step_error_bound,
//! state_error_bound}`), as does the bound of the GPU's gradient norm, from its summation order.

mod common;

use common::golden::{cases_of, load};
use common::*;
use gradflow::device::submit_with;
use gradflow::exec::ops;
use gradflow::kernels::optim::{
    clip_coefficient_rel_error, grad_norm_rel_error, state_error_bound, update_step_error_bound, GpuOptimizer,
    NORM_CHUNK, NORM_THREADS,
};
use gradflow::optim::{MomentumForm, Optimizer, OptimizerSetup, OptimizerStep, ParamGroups, Schedule, Sgd, CLIP_EPS};
use gradflow::reference as cpu;
use gradflow::reference::optimizer_update;
use gradflow::spec::{LayerSpec, Model};

/// One group spanning `len` parameters.
fn flat_groups(opt: &Optimizer, len: usize) -> ParamGroups {
    ParamGroups::flat(opt, len)
}

/// Runs `setup` over `grads` in the float type T from `p0`; returns every iterate.
fn run<T: cpu::Real>(setup: &OptimizerSetup, groups: &ParamGroups, p0: &[f64], grads: &[Vec<f64>]) -> Vec<Vec<f64>> {
    run_with_state::<T>(setup, groups, p0, grads).0
}

/// As `run`, with the state after the last step too.
fn run_with_state<T: cpu::Real>(
    setup: &OptimizerSetup,
    groups: &ParamGroups,
    p0: &[f64],
    grads: &[Vec<f64>],
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut p: Vec<T> = p0.iter().map(|&v| T::of(v)).collect();
    let mut state: Vec<T> = setup.optimizer.initial_state(p.len()).iter().map(|&v| T::of(v as f64)).collect();
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        let g: Vec<T> = g.iter().map(|&v| T::of(v)).collect();
        let step = OptimizerStep {
            optimizer: &setup.optimizer,
            step: t as u32 + 1,
            lr_factor: setup.schedule.factor(t as u32),
            groups,
            max_norm: None,
        };
        optimizer_update(&mut p, &g, &mut state, &step, T::of(1.0));
        out.push(p.iter().map(|v| v.to_f64()).collect());
    }
    (out, state.iter().map(|v| v.to_f64()).collect())
}

/// The running bound described at the top, per step and element.
fn bounds(
    setup: &OptimizerSetup,
    groups: &ParamGroups,
    p0: &[f64],
    grads: &[Vec<f64>],
    exact: &[Vec<f64>],
) -> Vec<Vec<f64>> {
    let abs: Vec<Vec<f64>> = grads.iter().map(|g| g.iter().map(|v| v.abs()).collect()).collect();
    let replay = run::<f64>(setup, groups, p0, &abs);
    let mut acc = vec![0.0f64; p0.len()];
    let mut out = Vec::new();
    for s in 0..grads.len() {
        let prev = if s == 0 { p0 } else { &replay[s - 1][..] };
        for i in 0..p0.len() {
            let update = (replay[s][i] - prev[i]).abs();
            acc[i] += update_step_error_bound(exact[s][i], update, s as u32 + 1);
        }
        out.push(acc.iter().map(|a| a + 1e-30).collect());
    }
    out
}

/// The bound of the state after the last of `grads`, from the |g| replay's state.
fn state_bounds(setup: &OptimizerSetup, groups: &ParamGroups, p0: &[f64], grads: &[Vec<f64>]) -> Vec<f64> {
    let abs: Vec<Vec<f64>> = grads.iter().map(|g| g.iter().map(|v| v.abs()).collect()).collect();
    let (_, replay) = run_with_state::<f64>(setup, groups, p0, &abs);
    replay.iter().map(|&s| state_error_bound(s, grads.len() as u32)).collect()
}

fn optimizer_of_case(c: &common::golden::Case) -> Optimizer {
    let mut table = toml::Table::new();
    let kind = c.params["optimizer"].as_str().unwrap().to_lowercase();
    table.insert("type".into(), toml::Value::String(kind));
    for (k, v) in c.params.as_object().unwrap() {
        let value = match v {
            serde_json::Value::Number(n) => toml::Value::Float(n.as_f64().unwrap()),
            serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
            serde_json::Value::Array(a) => {
                toml::Value::Array(a.iter().map(|x| toml::Value::Float(x.as_f64().unwrap())).collect())
            }
            _ => continue,
        };
        if k != "steps" {
            table.insert(k.clone(), value);
        }
    }
    // The manifest's "momentum"/"nesterov" keys are SGD's and RMSprop's own; the rest too.
    toml::Value::Table(table).try_into().unwrap_or_else(|e| panic!("{}: {e}", c.name))
}

#[test]
fn golden_optimizers_every_step_on_both_paths() {
    let names = cases_of("optimizer");
    assert_eq!(names.len(), 10, "optimizer cases in the manifest");
    for name in names {
        let c = load(&name);
        let opt = optimizer_of_case(&c);
        let setup: OptimizerSetup = opt.clone().into();
        let n = c.shape("p0")[0];
        let p0 = c.t("p0").to_vec();
        let grads: Vec<Vec<f64>> = c.t("grads").chunks(n).map(<[f64]>::to_vec).collect();
        let expected: Vec<Vec<f64>> = c.t("expected").chunks(n).map(<[f64]>::to_vec).collect();
        let groups = flat_groups(&opt, n);

        // The formulas themselves: f64 against PyTorch's f64, to 1e-12 relative.
        let exact = run::<f64>(&setup, &groups, &p0, &grads);
        for (t, (a, b)) in exact.iter().zip(&expected).enumerate() {
            let tight: Vec<f64> = b.iter().map(|v| 1e-12 * v.abs().max(1.0)).collect();
            let got: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            // (compared in f64 below; the f32 view only feeds the message)
            for i in 0..n {
                assert!(
                    (a[i] - b[i]).abs() <= tight[i],
                    "{name} f64 step {t} [{i}]: {} vs {} ({})",
                    a[i],
                    b[i],
                    got[i]
                );
            }
        }
        let bound = bounds(&setup, &groups, &p0, &grads, &expected);
        let cpu32 = run::<f32>(&setup, &groups, &p0, &grads);
        let grads32: Vec<Vec<f32>> = grads.iter().map(|g| g.iter().map(|&v| v as f32).collect()).collect();
        let p0_32: Vec<f32> = p0.iter().map(|&v| v as f32).collect();
        let gpu =
            gpu_part!().then(|| ops::optimizer_update(gpu(), &p0_32, &grads32, &setup, groups.clone()).unwrap().0);
        let (mut worst_cpu, mut worst_gpu, mut worst_ratio) = (0.0f64, 0.0f64, 0.0f64);
        for t in 0..grads.len() {
            let c32: Vec<f32> = cpu32[t].iter().map(|&v| v as f32).collect();
            worst_cpu = worst_cpu.max(assert_within(&format!("{name} cpu step {t}"), &c32, &expected[t], &bound[t]).0);
            if let Some(gpu) = &gpu {
                let (e, r) = assert_within(&format!("{name} gpu step {t}"), &gpu[t], &expected[t], &bound[t]);
                worst_gpu = worst_gpu.max(e);
                worst_ratio = worst_ratio.max(r);
            }
        }
        eprintln!(
            "{name}: worst error CPU {worst_cpu:.2e}, GPU {worst_gpu:.2e} (≤ {:.0}% of its bound)",
            100.0 * worst_ratio
        );
    }
}

/// The update works on quads of four elements: lengths of 1, primes and one past a quad or a
/// 64-element block must update every element (the last, partial quad too) and nothing else,
/// and the state must read back in the host's layout. Same bound as the golden test.
#[test]
fn every_optimizer_updates_lengths_off_the_quad_grid() {
    require_gpu!();
    let mut r = rng(29);
    for n in [1usize, 3, 5, 65, 97, 1009] {
        let p0: Vec<f64> = uniform(&mut r, n, -1.0, 1.0).iter().map(|&v| v as f64).collect();
        let grads: Vec<Vec<f64>> =
            (0..12).map(|_| uniform(&mut r, n, -1.0, 1.0).iter().map(|&v| v as f64).collect()).collect();
        for (name, setup) in every_optimizer() {
            let groups = flat_groups(&setup.optimizer, n);
            // |g| ≤ 1 and n ≤ 1009 keep the global norm (≤ √1009 < 32) under the clipped setup's
            // max_norm of 40, so the unclipped reference applies to it too.
            let exact = run::<f64>(&setup, &groups, &p0, &grads);
            let bound = bounds(&setup, &groups, &p0, &grads, &exact);
            let p32: Vec<f32> = p0.iter().map(|&v| v as f32).collect();
            let g32: Vec<Vec<f32>> = grads.iter().map(|g| g.iter().map(|&v| v as f32).collect()).collect();
            let (gpu_it, state) = ops::optimizer_update(gpu(), &p32, &g32, &setup, groups.clone()).unwrap();
            for t in 0..grads.len() {
                assert_within(&format!("{name}, n = {n}, step {t}"), &gpu_it[t], &exact[t], &bound[t]);
            }
            assert_eq!(state.len(), n * setup.optimizer.state_slots(), "{name}, n = {n}: state length");
            assert!(state.iter().all(|v| v.is_finite()), "{name}, n = {n}: state");
        }
    }
}

/// The seven optimizers, with their options spread over them; clipping and a schedule ride on
/// AdamW, its max_norm of 40 between the norms of ≤ 1009 and of 10,007 gradients in [−1, 1)
/// (≤ 32 and ≈ 58). (The course's forms are checked on the GPU in their own test.)
fn every_optimizer() -> Vec<(&'static str, OptimizerSetup)> {
    let t = |s: &str| -> Optimizer { toml::from_str(s).unwrap() };
    vec![
        ("sgd", Sgd::new(0.01).into()),
        ("sgd momentum dampening wd", t("type='sgd'\nlr=0.01\nmomentum=0.9\ndampening=0.1\nweight_decay=0.01").into()),
        ("sgd nesterov", Sgd { nesterov: true, ..Sgd::with_momentum(0.01, 0.9) }.into()),
        (
            "adagrad",
            t("type='adagrad'\nlr=0.01\nlr_decay=0.001\ninitial_accumulator_value=0.1\nweight_decay=0.001").into(),
        ),
        (
            "rmsprop centered momentum",
            t("type='rmsprop'\nlr=0.001\ncentered=true\nmomentum=0.9\nweight_decay=0.001").into(),
        ),
        ("adam amsgrad l2", t("type='adam'\nlr=0.001\namsgrad=true\nweight_decay=0.01").into()),
        (
            "adamw cosine clipped",
            OptimizerSetup {
                clip_grad_norm: Some(40.0),
                ..OptimizerSetup::from(t("type='adamw'\nlr=0.001")).with_schedule(Schedule::Cosine {
                    warmup: 100,
                    total: 1000,
                    min_factor: 0.1,
                })
            },
        ),
    ]
}

/// 1,000 steps of every optimizer, GPU against the CPU's f32 reference, parameters and every
/// state slot by value. 10,007 parameters (a prime) end in a partial quad, 64-element block and
/// workgroup; four gradient vectors are cycled.
#[test]
fn gpu_and_cpu_agree_on_parameters_and_state_for_1000_steps_of_every_optimizer_on_10007_parameters() {
    require_gpu!();
    const N: usize = 10_007;
    const STEPS: usize = 1000;
    let g = gpu();
    let mut r = rng(11);
    let p0 = uniform(&mut r, N, -1.0, 1.0);
    // Four gradient vectors, cycled: uploaded once, copied on the device each step.
    let cycle: Vec<Vec<f32>> = (0..4).map(|_| uniform(&mut r, N, -1.0, 1.0)).collect();
    let abs_cycle: Vec<Vec<f32>> = cycle.iter().map(|c| c.iter().map(|v| v.abs()).collect()).collect();
    let all: Vec<f32> = cycle.concat();
    let grads_dev = g.upload("gradient cycle", &all).unwrap();
    for (name, setup) in every_optimizer() {
        let groups = flat_groups(&setup.optimizer, N);
        let gp = g.upload("param", &p0).unwrap();
        let gg = g.storage("grad", N).unwrap();
        let mut opt = GpuOptimizer::new(g, &gp, &gg, &setup.optimizer, groups.clone(), setup.clip_grad_norm).unwrap();
        // CPU, alongside: the f32 reference and the |g| replay for the bound.
        let mut p = p0.clone();
        let mut state = setup.optimizer.initial_state(N);
        let mut p_abs = p0.clone();
        let mut state_abs = setup.optimizer.initial_state(N);
        // The coefficients' relative difference: the GPU's (f32 norm in its fixed order) and the
        // CPU's (f64 norm), each against the exact one.
        let clip_rel = if setup.clip_grad_norm.is_some() {
            clip_coefficient_rel_error(N) + cpu::clip_coefficient_rel_error(N)
        } else {
            0.0
        };
        let mut bound = vec![0.0f64; N];
        let mut before = vec![0.0f32; N];
        let mut coef = 1.0;
        for s in 0..STEPS {
            let k = s % 4;
            opt.prepare(g, s as u32 + 1, setup.schedule.factor(s as u32));
            let launches: Vec<_> = opt.dispatches().collect();
            submit_with(
                g,
                "optimizer step",
                |enc| enc.copy_buffer_to_buffer(&grads_dev.buffer, (k * N * 4) as u64, &gg.buffer, 0, (N * 4) as u64),
                &launches,
            )
            .unwrap();
            let step = OptimizerStep {
                optimizer: &setup.optimizer,
                step: s as u32 + 1,
                lr_factor: setup.schedule.factor(s as u32),
                groups: &groups,
                max_norm: setup.clip_grad_norm,
            };
            coef = cpu::clip_coefficient(&cycle[k], setup.clip_grad_norm);
            optimizer_update(&mut p, &cycle[k], &mut state, &step, coef);
            before.copy_from_slice(&p_abs);
            optimizer_update(&mut p_abs, &abs_cycle[k], &mut state_abs, &step, coef);
            for i in 0..N {
                let update = (p_abs[i] - before[i]).abs() as f64;
                // Both sides carry the bound's error (GPU vs exact, CPU vs exact), hence 2×; the
                // coefficients' difference δ moves the update by ≤ 2δ (AdamW: g over √(g²)).
                bound[i] += 2.0 * update_step_error_bound(p[i] as f64, update, s as u32 + 1) + 2.0 * clip_rel * update;
            }
        }
        let got = g.read_all(&gp).unwrap();
        let (worst, ratio) =
            assert_within(&format!("{name}: parameters after {STEPS} steps"), &got, &widen(&p), &bound);
        // The state by the same argument: 2× its bound, plus the coefficients' 2δ of the |g|
        // replay's state (δ for the first moments, 2δ for sums of squares).
        let state_bound: Vec<f64> = state_abs
            .iter()
            .map(|&v| 2.0 * state_error_bound(v as f64, STEPS as u32) + 2.0 * clip_rel * v.abs() as f64)
            .collect();
        let state_gpu = opt.state(g).unwrap();
        assert_eq!(state_gpu.len(), N * setup.optimizer.state_slots(), "{name}: state length");
        let (worst_state, ratio_state) =
            assert_within(&format!("{name}: state after {STEPS} steps"), &state_gpu, &widen(&state), &state_bound);
        if let Some(max_norm) = setup.clip_grad_norm {
            let (gpu_coef, _) = opt.clip_stats(g).unwrap();
            assert!(coef < 1.0, "{name}: max_norm {max_norm} clips these gradients");
            // Each within its share of the exact c ≤ coef/(1 − clip_rel).
            let diff = (gpu_coef as f64 - coef as f64).abs();
            assert!(
                diff <= clip_rel * coef as f64 / (1.0 - clip_rel),
                "{name}: coefficient {gpu_coef} vs the CPU's {coef}"
            );
        }
        eprintln!(
            "{name}: {STEPS} steps × {N} parameters, worst |GPU − CPU| {worst:.2e} ({:.1}% of the bound), \
             state {worst_state:.2e} ({:.1}%)",
            100.0 * ratio,
            100.0 * ratio_state
        );
    }
}

#[test]
fn course_forms_equal_pytorch_at_constant_lr_and_differ_when_it_changes() {
    let n = 257;
    let mut r = rng(12);
    let p0: Vec<f64> = uniform(&mut r, n, -1.0, 1.0).iter().map(|&v| v as f64).collect();
    let grads: Vec<Vec<f64>> =
        (0..30).map(|_| uniform(&mut r, n, -1.0, 1.0).iter().map(|&v| v as f64).collect()).collect();
    let pairs = [
        (Sgd::with_momentum(0.1, 0.9), Sgd::with_form(0.1, 0.9, MomentumForm::HeavyBall)),
        (
            Sgd { nesterov: true, ..Sgd::with_momentum(0.1, 0.9) },
            Sgd::with_form(0.1, 0.9, MomentumForm::NesterovLookahead),
        ),
    ];
    for (torch, course) in pairs {
        let groups = flat_groups(&Optimizer::Sgd(torch.clone()), n);
        // Constant lr: the same iterates (in exact arithmetic: compare in f64 to 1e-12).
        let a = run::<f64>(&torch.clone().into(), &groups, &p0, &grads);
        let b = run::<f64>(&course.clone().into(), &groups, &p0, &grads);
        let diff = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-12, "{:?}: constant lr differs by {diff}", course.momentum.form());
        // A step schedule halves lr every 10 steps: torch rescales the whole buffer by the new rate,
        // the course's velocity keeps the old steps at their old rate.
        let halving = Schedule::Step { every: 10, gamma: 0.5 };
        let a = run::<f64>(&OptimizerSetup::from(torch.clone()).with_schedule(halving.clone()), &groups, &p0, &grads);
        let b = run::<f64>(&OptimizerSetup::from(course.clone()).with_schedule(halving.clone()), &groups, &p0, &grads);
        let same_until = (0..30).find(|&t| a[t].iter().zip(&b[t]).any(|(x, y)| (x - y).abs() > 1e-12)).unwrap();
        assert_eq!(same_until, 10, "the forms part at the first lr change");
        // The first differing step, by hand: torch's step is lr₁·buf, the course's μ·v − lr₁·g with
        // v = −lr₀·buf_prev, i.e. it differs by μ·(lr₀ − lr₁)·buf_prev = 0.9·0.05·buf_prev.
        eprintln!("{:?}: equal for 10 steps at lr 0.1, then differ once lr halves", course.momentum.form());
        // And the GPU follows the course's form too.
        if !gpu_part!() {
            continue;
        }
        let p32: Vec<f32> = p0.iter().map(|&v| v as f32).collect();
        let g32: Vec<Vec<f32>> = grads.iter().map(|g| g.iter().map(|&v| v as f32).collect()).collect();
        let setup = OptimizerSetup::from(course.clone()).with_schedule(halving);
        let (gpu_it, _) = ops::optimizer_update(gpu(), &p32, &g32, &setup, groups.clone()).unwrap();
        let bound = bounds(&setup, &groups, &p0, &grads, &b);
        for t in 0..30 {
            assert_within(&format!("{:?} gpu step {t}", course.momentum.form()), &gpu_it[t], &b[t], &bound[t]);
        }
    }
}

#[test]
fn schedules_give_the_rates_their_formulas_define() {
    // Values worked out by hand from each definition.
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(Schedule::Constant.factor(123), 1.0);
    let s = Schedule::Step { every: 10, gamma: 0.1 };
    close(s.factor(9), 1.0);
    close(s.factor(10), 0.1);
    close(s.factor(25), 0.01);
    close(Schedule::Exponential { gamma: 0.5 }.factor(3), 0.125);
    let c = Schedule::Cosine { warmup: 10, total: 110, min_factor: 0.0 };
    close(c.factor(0), 0.1); // warm-up: (k + 1) / warmup
    close(c.factor(9), 1.0);
    close(c.factor(10), 1.0); // cosine starts at 1
    close(c.factor(60), 0.5); // half way: (1 + cos(π/2)) / 2
    close(c.factor(110), 0.0);
    close(c.factor(500), 0.0);
    // Goodfellow: ε_k = (1 − k/τ)ε_0 + (k/τ)ε_τ, then ε_τ; ε_τ = 1% of ε_0 at τ = 100.
    let l = Schedule::LinearDecay { tau: 100, final_factor: 0.01 };
    close(l.factor(0), 1.0);
    close(l.factor(50), 0.505);
    close(l.factor(100), 0.01);
    close(l.factor(1000), 0.01);
    // Through the config.
    let parsed: gradflow::config::TrainConfig =
        toml::from_str("epochs = 1\nbatch_size = 1\nschedule = { type = 'cosine', warmup = 5, total = 50 }").unwrap();
    assert_eq!(parsed.schedule, Schedule::Cosine { warmup: 5, total: 50, min_factor: 0.0 });
}

fn small_model() -> Model {
    Model::new(
        5,
        vec![
            LayerSpec::Linear { out: 7, bias: true },
            LayerSpec::Relu,
            LayerSpec::Linear { out: 70, bias: true },
            LayerSpec::Tanh,
            LayerSpec::Linear { out: 3, bias: true },
        ],
    )
    .unwrap()
}

#[test]
fn no_decay_on_biases_is_one_line_and_holds_on_both_paths() {
    let parsed: gradflow::config::TrainConfig =
        toml::from_str("epochs = 1\nbatch_size = 1\nparam_groups = [{ match = ['bias', 'norm'], weight_decay = 0.0 }]")
            .unwrap();
    let model = small_model();
    let opt: Optimizer = toml::from_str("type = 'adamw'\nlr = 0.1\nweight_decay = 0.5").unwrap();
    let groups = ParamGroups::new(&model, &opt, &parsed.param_groups).unwrap();
    assert_eq!(groups.groups, vec![(0.1, 0.5), (0.1, 0.0)]);
    // Zero gradients: AdamW only decays, so weights shrink by (1 − lr·wd) and biases stay.
    let p0 = model.init_params(3);
    let zeros = vec![vec![0.0f32; model.param_len]; 3];
    let setup = OptimizerSetup { groups: parsed.param_groups.clone(), ..OptimizerSetup::from(opt.clone()) };
    let gpu_it = gpu_part!().then(|| ops::optimizer_update(gpu(), &p0, &zeros, &setup, groups.clone()).unwrap().0);
    let mut cpu_p = p0.clone();
    let mut state = opt.initial_state(model.param_len);
    for t in 0..3 {
        let step = OptimizerStep { optimizer: &opt, step: t + 1, lr_factor: 1.0, groups: &groups, max_norm: None };
        optimizer_update(&mut cpu_p, &zeros[0], &mut state, &step, 1.0f32);
    }
    for t in &model.params {
        let decayed = t.name.ends_with(".weight");
        for i in t.offset..t.offset + t.len {
            let want = if decayed { p0[i] * 0.95f32 * 0.95 * 0.95 } else { p0[i] };
            let gpu_got = gpu_it.as_ref().map(|g| ("gpu", g[2][i]));
            for (who, got) in gpu_got.into_iter().chain([("cpu", cpu_p[i])]) {
                assert!(
                    (got - want).abs() <= 8.0 * f32::EPSILON * want.abs(),
                    "{who} {} [{i}]: {got} vs {want}",
                    t.name
                );
            }
        }
    }
    // Groups by name with wildcards, and a pattern that matches nothing is an error naming it.
    let specs: Vec<gradflow::optim::GroupSpec> =
        toml::from_str::<toml::Table>("g = [{ match = ['2.*'], lr = 0.5 }]").unwrap()["g"].clone().try_into().unwrap();
    let gr = ParamGroups::new(&model, &opt, &specs).unwrap();
    let w2 = model.params.iter().find(|t| t.name == "2.weight").unwrap();
    assert_eq!(gr.group_of(w2.offset), 1);
    assert_eq!(gr.group_of(0), 0);
    let bad: Vec<gradflow::optim::GroupSpec> =
        toml::from_str::<toml::Table>("g = [{ match = ['9.*'] }]").unwrap()["g"].clone().try_into().unwrap();
    let e = ParamGroups::new(&model, &opt, &bad).unwrap_err().to_string();
    assert!(e.contains("9.*") && e.contains("names no parameter"), "{e}");
}

/// One clipped SGD step of the GPU (`p`, with its clip stats `coef` and `norm`) from `p0` over
/// `grad`, against the exact step: the norm and coefficient within the bounds of the kernels'
/// fixed summation order, the parameters within one step's bound plus the coefficient's share.
/// The bound must be tight enough that a chunk missing from the sum would fail it.
#[allow(clippy::too_many_arguments)]
fn check_clipped_sgd_step(
    what: &str,
    p0: &[f32],
    grad: &[f32],
    lr: f64,
    max_norm: f32,
    p: &[f32],
    coef: f32,
    norm: f32,
) {
    let n = grad.len();
    let squares: Vec<f64> = grad.iter().map(|&v| v as f64 * v as f64).collect();
    let norm64 = squares.iter().sum::<f64>().sqrt();
    // The f64 reference's own error (γ_{n+1} in f64, far below the f32 bounds) joins them.
    let reference_rel = (n + 1) as f64 * f64::EPSILON;
    let norm_bound = (grad_norm_rel_error(n) + reference_rel) * norm64;
    let err = (norm as f64 - norm64).abs();
    assert!(err <= norm_bound, "{what}: norm {norm} vs {norm64}, |error| {err:e} > bound {norm_bound:e}");
    // Without its smallest chunk the norm drops by more than twice the bound: the GPU's norm of
    // the rest, within the bound of it, would still fail the check above.
    let smallest_chunk = squares.chunks(NORM_CHUNK).map(|c| c.iter().sum::<f64>()).fold(f64::INFINITY, f64::min);
    let drop = norm64 - (norm64 * norm64 - smallest_chunk).sqrt();
    assert!(drop > 2.0 * norm_bound, "{what}: a dropped chunk moves the norm by {drop:e}, within 2 × {norm_bound:e}");
    let want = (max_norm as f64 / (norm64 + CLIP_EPS as f64)).min(1.0);
    let coef_rel = clip_coefficient_rel_error(n) + reference_rel;
    assert!((coef as f64 - want).abs() <= coef_rel * want, "{what}: coefficient {coef} vs {want}");
    let (mut exact, mut bound) = (vec![0.0; n], vec![0.0; n]);
    for i in 0..n {
        let update = lr * want * grad[i] as f64;
        exact[i] = p0[i] as f64 - update;
        bound[i] = update_step_error_bound(exact[i], update, 1) + coef_rel * update.abs();
    }
    let (_, ratio) = assert_within(&format!("{what}: parameters"), p, &exact, &bound);
    eprintln!(
        "{what}: norm within {:.1}% of its bound {norm_bound:.2e} (a dropped chunk: {drop:.2e}), \
         coefficient {:.1}%, parameters {:.1}%",
        100.0 * err / norm_bound,
        100.0 * (coef as f64 - want).abs() / (coef_rel * want),
        100.0 * ratio
    );
}

#[test]
fn gradient_clipping_matches_torch_semantics_and_is_deterministic() {
    require_gpu!();
    let n = 300_001;
    let mut r = rng(13);
    let p0 = uniform(&mut r, n, -1.0, 1.0);
    let grads = vec![uniform(&mut r, n, -1.0, 1.0)];
    let opt = Optimizer::Sgd(Sgd::new(1.0));
    for max_norm in [1.0f32, 1e6] {
        let setup = OptimizerSetup { clip_grad_norm: Some(max_norm), ..OptimizerSetup::from(opt.clone()) };
        let groups = flat_groups(&opt, n);
        let g = gpu();
        let gp = g.upload("p", &p0).unwrap();
        let gg = g.upload("g", &grads[0]).unwrap();
        let mut o = GpuOptimizer::new(g, &gp, &gg, &opt, groups.clone(), Some(max_norm)).unwrap();
        o.prepare(g, 1, 1.0);
        let launches: Vec<_> = o.dispatches().collect();
        assert_eq!(launches.len(), 3, "norm partials, norm and coefficient, update");
        gradflow::device::submit(g, "clip", &launches).unwrap();
        let (coef, norm) = o.clip_stats(g).unwrap();
        let p = g.read_all(&gp).unwrap();
        check_clipped_sgd_step(&format!("max_norm {max_norm}"), &p0, &grads[0], 1.0, max_norm, &p, coef, norm);
        // Same bits on a second run.
        let (_, second) = {
            let gp2 = g.upload("p", &p0).unwrap();
            let o2 = GpuOptimizer::new(g, &gp2, &gg, &opt, groups.clone(), Some(max_norm)).unwrap();
            gradflow::device::submit(g, "clip", &o2.dispatches().collect::<Vec<_>>()).unwrap();
            o2.clip_stats(g).unwrap()
        };
        assert_eq!(norm.to_bits(), second.to_bits(), "the reduction order is fixed");
        let (gpu_it, _) = ops::optimizer_update(g, &p0, &grads, &setup, groups).unwrap();
        assert_eq!(p, gpu_it[0]);
    }
}

/// Past 256 chunks (256·4096 = 2^20 elements) each invocation of `grad_norm_finish` adds a
/// second chunk's partial: 2^20 + 1031 gradients (the last chunk partial), one clipped step.
#[test]
fn clipping_a_gradient_of_more_than_256_chunks_matches_the_exact_step() {
    require_gpu!();
    let n = NORM_CHUNK * NORM_THREADS + 1031;
    let mut r = rng(14);
    let p0 = uniform(&mut r, n, -1.0, 1.0);
    let grad = uniform(&mut r, n, -1.0, 1.0);
    let (lr, max_norm) = (0.1, 1.0f32);
    let opt = Optimizer::Sgd(Sgd::new(lr));
    let g = gpu();
    let gp = g.upload("p", &p0).unwrap();
    let gg = g.upload("g", &grad).unwrap();
    let mut o = GpuOptimizer::new(g, &gp, &gg, &opt, flat_groups(&opt, n), Some(max_norm)).unwrap();
    o.prepare(g, 1, 1.0);
    gradflow::device::submit(g, "clip", &o.dispatches().collect::<Vec<_>>()).unwrap();
    let (coef, norm) = o.clip_stats(g).unwrap();
    let p = g.read_all(&gp).unwrap();
    check_clipped_sgd_step("2^20 + 1031 gradients", &p0, &grad, lr, max_norm, &p, coef, norm);
}

/// A model of 80 tensors (padding between them) in two parameter groups: each step is one
/// launch, and it leaves the CPU reference's parameters and state, within their bounds.
#[test]
fn one_dispatch_updates_a_model_of_many_tensors() {
    require_gpu!();
    let layers: Vec<LayerSpec> =
        (0..40).flat_map(|_| [LayerSpec::Linear { out: 9, bias: true }, LayerSpec::Tanh]).collect();
    let model = Model::new(9, layers).unwrap();
    assert_eq!(model.params.len(), 80);
    let opt: Optimizer = toml::from_str("type = 'adamw'\nlr = 0.001\nweight_decay = 0.1\namsgrad = true").unwrap();
    // Biases in their own group, so a wrong block-to-group lookup shows in the result.
    let specs: Vec<gradflow::optim::GroupSpec> =
        toml::from_str::<toml::Table>("g = [{ match = ['bias'], lr = 0.01, weight_decay = 0.0 }]").unwrap()["g"]
            .clone()
            .try_into()
            .unwrap();
    let groups = ParamGroups::new(&model, &opt, &specs).unwrap();
    let setup = OptimizerSetup { groups: specs, ..OptimizerSetup::from(opt.clone()) };
    let p0 = model.init_params(0);
    // Gradients on every tensor and none in the padding, as the backward pass leaves them.
    let mut r = rng(31);
    let grads: Vec<Vec<f32>> = (0..3)
        .map(|_| {
            let mut g = vec![0.0f32; model.param_len];
            for t in &model.params {
                g[t.offset..t.offset + t.len].copy_from_slice(&uniform(&mut r, t.len, -1.0, 1.0));
            }
            g
        })
        .collect();
    let (p0_64, grads_64): (Vec<f64>, Vec<Vec<f64>>) = (widen(&p0), grads.iter().map(|g| widen(g)).collect());
    let (exact, exact_state) = run_with_state::<f64>(&setup, &groups, &p0_64, &grads_64);
    let bound = bounds(&setup, &groups, &p0_64, &grads_64, &exact);
    let g = gpu();
    let p = g.upload("p", &p0).unwrap();
    let grad = g.storage("g", model.param_len).unwrap();
    let mut o = GpuOptimizer::new(g, &p, &grad, &opt, groups.clone(), None).unwrap();
    for (t, step_grad) in grads.iter().enumerate() {
        o.prepare(g, t as u32 + 1, 1.0);
        g.write(&grad, step_grad);
        let launches: Vec<_> = o.dispatches().collect();
        assert_eq!(launches.len(), 1, "one launch updates all 80 tensors");
        gradflow::device::submit(g, "update", &launches).unwrap();
        assert_within(&format!("parameters after step {}", t + 1), &g.read_all(&p).unwrap(), &exact[t], &bound[t]);
    }
    let state = o.state(g).unwrap();
    let state_bound = state_bounds(&setup, &groups, &p0_64, &grads_64);
    assert_within("state (m, v, max v) after 3 steps", &state, &exact_state, &state_bound);
}
