//! The fused small-network step (small_net.wgsl: forward, loss and backward in one launch)
//! against the per-op step it replaces on the same device, and against the CPU reference; many
//! steps per submit on it; the automatic choice and its refusals.
//!
//! Tolerances: each gradient element is a sum over the batch's rows of products that passed
//! through L layers of dot products of at most `widest` terms; every path is within
//! L·(rows + widest)·u of the exact value relative to the tensor's largest gradient (the house
//! convention of tests/networks.rs), so two paths are within twice that. The fused kernel sums
//! in the per-op kernels' order; they differ only where a matmul schedule splits k into lanes.

mod common;

use std::sync::Arc;

use common::*;
use gradflow::data::Dataset;
use gradflow::error::Error;
use gradflow::exec::{CpuNetwork, GpuNetwork, Network, StepKind};
use gradflow::kernels::Gpu;
use gradflow::optim::{Optimizer, OptimizerSetup, Schedule};
use gradflow::spec::{LayerSpec, Loss, Model};

fn model(inputs: usize, layers: &str) -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    Model::new(inputs, toml::from_str::<L>(&format!("layers = [{layers}]")).unwrap().layers).unwrap()
}

fn data(n: usize, d: usize, classes: usize, seed: u64) -> Dataset {
    let mut r = rng(seed);
    let x = uniform(&mut r, n * d, -2.0, 2.0);
    let labels = (0..n).map(|i| ((x[i * d] * 1.3 + x[i * d + d - 1]).abs() * 2.1) as u32 % classes as u32).collect();
    Dataset::new(x, labels, d, classes, "fused-step data").unwrap()
}

/// (what, model, loss, batch rows): every activation, a Linear without bias, one layer, the
/// 64-row limit, one row, primes.
fn cases() -> Vec<(&'static str, Model, Loss, usize)> {
    vec![
        ("2-16-2 tanh (XOR size)", model(2, "{ type = 'linear', out = 16 }, { type = 'tanh' }, { type = 'linear', out = 2 }"), Loss::CrossEntropy, 32),
        (
            "2-2-3-2 sigmoid (Higham), MSE",
            model(2, "{ type = 'linear', out = 2 }, { type = 'sigmoid' }, { type = 'linear', out = 3 }, { type = 'sigmoid' }, { type = 'linear', out = 2 }, { type = 'sigmoid' }"),
            Loss::Mse,
            1,
        ),
        (
            "3-17-5-4 gelu, no-bias leaky relu",
            model(3, "{ type = 'linear', out = 17 }, { type = 'gelu' }, { type = 'linear', out = 5, bias = false }, { type = 'leaky-relu', negative_slope = 0.2 }, { type = 'linear', out = 4 }"),
            Loss::CrossEntropy,
            7,
        ),
        (
            "5-23-3 relu, MSE, 64 rows",
            model(5, "{ type = 'linear', out = 23 }, { type = 'relu' }, { type = 'linear', out = 3 }"),
            Loss::Mse,
            64,
        ),
        ("one 9-3 layer", model(9, "{ type = 'linear', out = 3 }"), Loss::CrossEntropy, 13),
        (
            "4-9-BN-relu-6-BN(cumulative)-tanh-3, no biases before the norms",
            model(4, "{ type = 'linear', out = 9, bias = false }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 6, bias = false }, { type = 'batch-norm', momentum = 'none', eps = 1e-3 }, { type = 'tanh' }, { type = 'linear', out = 3 }"),
            Loss::CrossEntropy,
            16,
        ),
        (
            "2-8 tanh, a residual block (8-8 tanh), relu on its own, 8-3: a value read twice",
            model(2, "{ type = 'linear', out = 8 }, { type = 'tanh' }, { type = 'residual', layers = [{ type = 'linear', out = 8 }, { type = 'tanh' }] }, { type = 'relu' }, { type = 'linear', out = 3 }"),
            Loss::CrossEntropy,
            12,
        ),
        (
            "a projected residual block on the input (3-6 relu, 3-6 projection), then 6-2, MSE",
            model(3, "{ type = 'residual', projection = true, layers = [{ type = 'linear', out = 6 }, { type = 'relu' }] }, { type = 'linear', out = 2 }"),
            Loss::Mse,
            9,
        ),
        (
            "4-5, a residual block with a batch norm (5-5, BN, tanh), 5-3",
            model(4, "{ type = 'linear', out = 5 }, { type = 'residual', layers = [{ type = 'linear', out = 5, bias = false }, { type = 'batch-norm' }, { type = 'tanh' }] }, { type = 'linear', out = 3 }"),
            Loss::CrossEntropy,
            10,
        ),
        (
            "2-4 tanh, ten residual blocks (4-4 tanh), 4-2: 22 stages",
            model(2, &format!(
                "{{ type = 'linear', out = 4 }}, {{ type = 'tanh' }}, {}, {{ type = 'linear', out = 2 }}",
                ["{ type = 'residual', layers = [{ type = 'linear', out = 4 }, { type = 'tanh' }] }"; 10].join(", ")
            )),
            Loss::CrossEntropy,
            8,
        ),
        (
            "3-7-2 tanh, 300 rows: the loss in 256 strided parts",
            model(3, "{ type = 'linear', out = 7 }, { type = 'tanh' }, { type = 'linear', out = 2 }"),
            Loss::CrossEntropy,
            300,
        ),
        (
            "4-BN-relu-3, MSE, 100 rows",
            model(4, "{ type = 'linear', out = 6, bias = false }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 3 }"),
            Loss::Mse,
            100,
        ),
        (
            "BN-gelu on the input, then 5-2, MSE, 5 rows",
            model(5, "{ type = 'batch-norm' }, { type = 'gelu' }, { type = 'linear', out = 2 }"),
            Loss::Mse,
            5,
        ),
    ]
}

/// The device with the fused step's workgroup at `lanes` invocations (1: the CPU adapters'
/// choice, 64: the GPUs'), so both forms run on every adapter.
fn with_lanes(lanes: u32) -> Arc<Gpu> {
    Arc::new(Gpu { small_net_lanes: lanes, ..gpu().clone() })
}

/// The lane counts this adapter allows (only one on the GL backend: `kernels::small_net::max_lanes`).
fn lanes() -> Vec<u32> {
    [1, 64].into_iter().filter(|&l| l <= gradflow::kernels::small_net::max_lanes(&gpu().info)).collect()
}

#[allow(clippy::too_many_arguments)]
fn gpu_net(
    g: &Arc<Gpu>,
    m: &Model,
    loss: Loss,
    setup: OptimizerSetup,
    rows: usize,
    fused: bool,
    streamed: bool,
    d: &Dataset,
) -> GpuNetwork {
    let p0 = m.init_params(11);
    let mut n = GpuNetwork::new(g.clone(), m.clone(), loss, setup, &p0, rows).unwrap();
    n.set_small_net(fused).unwrap();
    n.set_streaming(streamed);
    n.set_train_data(d).unwrap();
    n
}

/// L·(rows + widest)·u: one path's gradient error relative to the tensor's largest gradient.
fn sum_bound(m: &Model, rows: usize) -> f64 {
    let widest = m.stages.iter().map(|s| s.outputs()).chain([m.inputs]).max().unwrap();
    (m.stages.len() * (rows + widest)) as f64 * EPS
}

fn assert_grads_close(what: &str, m: &Model, got: &[f32], want: &[f32], rel: f64) {
    for t in &m.params {
        let (g, w) = (&got[t.offset..t.offset + t.len], &want[t.offset..t.offset + t.len]);
        let scale = w.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
        for (a, b) in g.iter().zip(w) {
            let err = (*a as f64 - *b as f64).abs();
            assert!(err <= rel * scale + 1e-30, "{what} {}: {a} vs {b}, |error| {err:e} > {:e}", t.name, rel * scale);
        }
    }
}

#[test]
fn one_fused_step_gives_the_per_op_step_and_the_cpu_reference_gradient_and_loss() {
    require_gpu!();
    for (what, m, loss, rows) in cases() {
        let d = data(rows * 3 + 2, m.inputs, m.outputs(), 4);
        let batch: Vec<u32> = (0..rows as u32).map(|i| (i * 7 + 3) % d.n as u32).collect();
        let setup = || OptimizerSetup::from(Optimizer::from(Optimizer::adam(0.01)));
        let mut cpu = CpuNetwork::new(m.clone(), loss, setup(), m.init_params(11)).unwrap();
        cpu.set_train_data(&d).unwrap();
        cpu.train_step(&batch).unwrap();
        let (cpu_grads, cpu_totals) = (cpu.grads().unwrap(), cpu.take_totals().unwrap());
        let bound = sum_bound(&m, rows);
        for (lanes, streamed) in lanes().into_iter().flat_map(|l| [(l, false), (l, true)]) {
            let label = format!("{what} ({lanes} lanes, {})", if streamed { "streamed" } else { "resident" });
            let g = with_lanes(lanes);
            let mut fused = gpu_net(&g, &m, loss, setup(), rows, true, streamed, &d);
            let mut per_op = gpu_net(&g, &m, loss, setup(), rows, false, streamed, &d);
            assert_eq!((fused.step_kind(), per_op.step_kind()), (StepKind::SmallNet, StepKind::PerOp));
            fused.train_step(&batch).unwrap();
            per_op.train_step(&batch).unwrap();
            let g = fused.grads().unwrap();
            assert_grads_close(&format!("{label} fused vs cpu"), &m, &g, &cpu_grads, bound);
            assert_grads_close(&format!("{label} fused vs per-op"), &m, &g, &per_op.grads().unwrap(), 2.0 * bound);
            let (t, tp) = (fused.take_totals().unwrap(), per_op.take_totals().unwrap());
            assert_eq!(
                (t.samples, t.accuracy, t.first_bad),
                (cpu_totals.samples, cpu_totals.accuracy, None),
                "{label}"
            );
            assert_eq!((t.samples, t.accuracy), (tp.samples, tp.accuracy), "{label}");
            let loss_err = (t.mean_loss as f64 - cpu_totals.mean_loss as f64).abs();
            assert!(
                loss_err <= bound * cpu_totals.mean_loss.abs() as f64 + 1e-30,
                "{label}: loss {} vs {}",
                t.mean_loss,
                cpu_totals.mean_loss
            );
        }
    }
}

/// The seven optimizers, with clipping and a schedule on some, 40 steps of shuffled batches with
/// a shorter last one: the fused trajectory stays within `trajectory_tol` of the per-op one.
#[test]
fn the_fused_step_trains_as_the_per_op_step_with_every_optimizer() {
    require_gpu!();
    let m = model(4, "{ type = 'linear', out = 12 }, { type = 'tanh' }, { type = 'linear', out = 6 }, { type = 'relu' }, { type = 'linear', out = 3 }");
    let d = data(90, 4, 3, 8);
    let t = |s: &str| -> Optimizer { toml::from_str(s).unwrap() };
    let optimizers: Vec<(&str, OptimizerSetup)> = vec![
        ("sgd", t("type='sgd'\nlr=0.05").into()),
        (
            "momentum + clip",
            OptimizerSetup { clip_grad_norm: Some(0.3), ..t("type='sgd'\nlr=0.05\nmomentum=0.9").into() },
        ),
        (
            "nesterov + schedule",
            OptimizerSetup::from(t("type='sgd'\nlr=0.05\nmomentum=0.9\nnesterov=true"))
                .with_schedule(Schedule::Exponential { gamma: 0.95 }),
        ),
        ("adagrad", t("type='adagrad'\nlr=0.05").into()),
        ("rmsprop", t("type='rmsprop'\nlr=0.005").into()),
        ("adam", t("type='adam'\nlr=0.01").into()),
        ("adamw + clip", OptimizerSetup { clip_grad_norm: Some(0.5), ..t("type='adamw'\nlr=0.01").into() }),
    ];
    let steps = 40;
    let batches: Vec<Vec<u32>> = (0..steps)
        .map(|s| {
            let rows = if s % 10 == 9 { 11 } else { 16 };
            (0..rows).map(|i| ((i * 13 + s * 29) % 90) as u32).collect()
        })
        .collect();
    for ((name, setup), lanes) in optimizers.into_iter().zip(lanes().into_iter().cycle()) {
        let (g, name) = (with_lanes(lanes), format!("{name}, {lanes} lanes"));
        let mut fused = gpu_net(&g, &m, Loss::CrossEntropy, setup.clone(), 16, true, false, &d);
        let mut per_op = gpu_net(&g, &m, Loss::CrossEntropy, setup, 16, false, false, &d);
        for b in &batches {
            fused.train_step(b).unwrap();
            per_op.train_step(b).unwrap();
        }
        // tests/common/golden.rs's trajectory_tol: steps·K·u with K the rows plus the widest layer.
        let tol = (steps * (16 + 12)) as f64 * EPS;
        let (pf, pp) = (fused.params().unwrap(), per_op.params().unwrap());
        let want: Vec<f64> = widen(&pp);
        let bound: Vec<f64> = want.iter().map(|w| tol * (w.abs() + 0.1)).collect();
        assert_within(&format!("{name}: parameters"), &pf, &want, &bound);
        let (sf, sp) = (fused.optimizer_state().unwrap(), per_op.optimizer_state().unwrap());
        let scale = sp.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
        let bound: Vec<f64> = sp.iter().map(|_| tol * (scale + 1e-6)).collect();
        assert_within(&format!("{name}: optimizer state"), &sf, &widen(&sp), &bound);
        let (tf, tp) = (fused.take_totals().unwrap(), per_op.take_totals().unwrap());
        assert_eq!(tf.samples, tp.samples, "{name}");
        assert!(((tf.mean_loss - tp.mean_loss) as f64).abs() <= tol * tp.mean_loss as f64, "{name}: {tf:?} vs {tp:?}");
    }
}

/// On the fused step, many steps per submit run the same launches as one submit per step: the
/// same bits, and a divergence in the middle of a submit is reported at its step.
#[test]
fn many_steps_per_submit_on_the_fused_step_give_the_same_bits_and_the_divergent_step() {
    require_gpu!();
    let xor = model(2, "{ type = 'linear', out = 16 }, { type = 'tanh' }, { type = 'linear', out = 2 }");
    // A batch norm whose blend changes every step: each step of a submit copies in its own.
    let bn = model(2, "{ type = 'linear', out = 6, bias = false }, { type = 'batch-norm', momentum = 'none' }, { type = 'tanh' }, { type = 'linear', out = 2 }");
    let d = data(100, 2, 2, 3);
    let batches: Vec<Vec<u32>> = (0..24).map(|s| (0..32).map(|i| ((i * 3 + s * 11) % 100) as u32).collect()).collect();
    let refs: Vec<&[u32]> = batches.iter().map(|b| b.as_slice()).collect();
    let most = *lanes().last().unwrap();
    let runs = [(0.01, false, 1), (0.01, true, most), (1e37, false, 1), (1e37, true, most)];
    for (m, (lr, streamed, lanes)) in runs.iter().map(|r| (&xor, *r)).chain(runs.iter().map(|r| (&bn, *r))) {
        let g = with_lanes(lanes);
        // Adam's steps are bounded by lr; SGD at 1e37 overflows f32 within a few steps.
        let setup = || match lr > 1.0 {
            true => OptimizerSetup::from(Optimizer::from(gradflow::optim::Sgd::new(lr))),
            false => OptimizerSetup::from(Optimizer::from(Optimizer::adam(lr))),
        };
        let mut one = gpu_net(&g, m, Loss::CrossEntropy, setup(), 32, true, streamed, &d);
        let mut many = gpu_net(&g, m, Loss::CrossEntropy, setup(), 32, true, streamed, &d);
        for b in &refs {
            one.train_step(b).unwrap();
        }
        for chunk in refs.chunks(8) {
            many.train_steps(chunk).unwrap();
        }
        let what = format!("{} stages, lr {lr}, streamed {streamed}, {lanes} lanes", m.stages.len());
        assert_eq!(one.params().unwrap(), many.params().unwrap(), "{what}: parameters");
        assert_eq!(one.norm_state().unwrap(), many.norm_state().unwrap(), "{what}: running statistics");
        assert_eq!(one.optimizer_state().unwrap(), many.optimizer_state().unwrap(), "{what}: state");
        let (a, b) = (one.take_totals().unwrap(), many.take_totals().unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}: totals");
        if lr > 1.0 {
            let bad = a.first_bad.expect("an lr of 1e37 diverges");
            assert!(bad.step >= 1 && bad.step <= 24, "{what}: diverged at {}", bad.step);
        }
    }
}

#[test]
fn the_step_is_chosen_by_the_model_and_a_refusal_says_why() {
    require_gpu!();
    let d = data(200, 2, 2, 2);
    let setup = || OptimizerSetup::from(Optimizer::from(gradflow::optim::Sgd::new(0.1)));
    let make = |m: &Model, rows: usize| {
        GpuNetwork::new(Arc::new(gpu().clone()), m.clone(), Loss::CrossEntropy, setup(), &m.init_params(1), rows)
            .unwrap()
    };
    // Fused by default exactly when the step is at most the adapter's multiply-adds (Higham's net
    // at batch 1 always is; the XOR-sized net at batch 32 is on a GPU, not on lavapipe).
    let limit = gpu().small_net_max_step_macs();
    let higham = model(2, "{ type = 'linear', out = 2 }, { type = 'sigmoid' }, { type = 'linear', out = 3 }, { type = 'sigmoid' }, { type = 'linear', out = 2 }");
    let xor = model(2, "{ type = 'linear', out = 16 }, { type = 'tanh' }, { type = 'linear', out = 2 }");
    for (m, rows, macs) in [(&higham, 1, 3 * (4 + 6 + 6)), (&xor, 32, 3 * 32 * 64)] {
        assert_eq!(gradflow::kernels::SmallNet::new(m, Loss::CrossEntropy, rows).unwrap().step_macs(rows), macs);
        let net = make(m, rows);
        let want = if macs <= limit { StepKind::SmallNet } else { StepKind::PerOp };
        assert_eq!(net.step_kind(), want, "{macs} multiply-adds against {limit}");
        let line =
            if want == StepKind::SmallNet { "step: fused small-network kernel" } else { "step: one launch per op" };
        assert!(net.describe().contains(line), "{}", net.describe());
    }
    // Past the batch limit the layout is refused with the reason (a network that large is not
    // built here: its per-op products pass llvmpipe's loop budget with wgpu's checks on).
    let why = gradflow::kernels::SmallNet::new(&higham, Loss::CrossEntropy, 65_537).unwrap_err();
    assert!(why.contains("batches of 65537 rows"), "{why}");
    // Past the kernel's table of stages: the per-op step, and a forced fused one is refused with
    // the reason.
    let deep = model(2, &["{ type = 'linear', out = 2 }"; 33].join(", "));
    let mut net = make(&deep, 8);
    assert_eq!(net.step_kind(), StepKind::PerOp);
    match net.set_small_net(true) {
        Err(Error::Usage(msg)) => assert!(msg.contains("33 stages"), "{msg}"),
        other => panic!("33 stages: expected a refusal, got {:?}", other.map(|_| ())),
    }
    net.set_train_data(&d).unwrap();
    net.train_step(&(0..8).collect::<Vec<_>>()).unwrap();
    // A batch-norm model past every adapter's fused budget keeps its running statistics in a
    // buffer of their own, so a forced fused step is refused, saying why.
    let wide_bn = model(2, "{ type = 'linear', out = 128, bias = false }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 128 }, { type = 'linear', out = 2 }");
    let mut net = make(&wide_bn, 8);
    match net.set_small_net(true) {
        Err(Error::Usage(msg)) => assert!(msg.contains("running statistics"), "{msg}"),
        other => panic!("a wide batch-norm model: expected a refusal, got {:?}", other.map(|_| ())),
    }
    // The digits network at batch 32 is per-op by default; forced, it runs where its loops fit
    // the adapter's budget and is refused by that budget where not (llvmpipe's one invocation).
    let digits = model(64, "{ type = 'linear', out = 128 }, { type = 'relu' }, { type = 'linear', out = 64 }, { type = 'relu' }, { type = 'linear', out = 10 }");
    let mut net = make(&digits, 32);
    assert_eq!(net.step_kind(), StepKind::PerOp);
    match (net.set_small_net(true), gpu().loop_limit()) {
        (Ok(()), None) => assert_eq!(net.step_kind(), StepKind::SmallNet),
        (Err(Error::LoopLimit { .. }), Some(_)) => assert_eq!(net.step_kind(), StepKind::PerOp),
        (other, limit) => panic!("loop limit {limit:?}: {:?}", other.map(|_| ())),
    }
}

/// Runs side by side on a GPU share one launch whose models' workgroups run at once, so the
/// step budget grows with the runs (to 64 counted); a CPU adapter's is the measured constant.
#[test]
fn the_side_by_side_budget_grows_with_the_runs_on_a_gpu() {
    require_gpu!();
    use gradflow::kernels::small_net::{SIDE_BY_SIDE_MAX_STEP_MACS_CPU, SMALL_NET_MAX_STEP_MACS};
    let as_kind = |kind: wgpu::DeviceType| {
        let mut g = gpu().clone();
        g.ctx.info.device_type = kind;
        g
    };
    let (cpu_adapter, discrete) = (as_kind(wgpu::DeviceType::Cpu), as_kind(wgpu::DeviceType::DiscreteGpu));
    for runs in [1, 2, 16, 64, 65, 1000] {
        assert_eq!(cpu_adapter.side_by_side_max_step_macs(runs), SIDE_BY_SIDE_MAX_STEP_MACS_CPU);
        assert_eq!(discrete.side_by_side_max_step_macs(runs), SMALL_NET_MAX_STEP_MACS * runs.min(64));
    }
    // The digits shape at batch 32 (1,634,304 multiply-adds a step) goes side by side on a GPU
    // from 9 runs.
    let digits = model(64, "{ type = 'linear', out = 128 }, { type = 'relu' }, { type = 'linear', out = 64 }, { type = 'relu' }, { type = 'linear', out = 10 }");
    let macs = gradflow::kernels::SmallNet::new(&digits, Loss::CrossEntropy, 32).unwrap().step_macs(32);
    assert_eq!(macs, 1_634_304);
    assert!(macs > discrete.side_by_side_max_step_macs(8) && macs <= discrete.side_by_side_max_step_macs(9));
    // Below that, on a GPU the runs go side by side on the per-op launches; on a CPU adapter,
    // where those do not pay, one after another, saying why.
    use gradflow::exec::StepKind;
    use gradflow::train::side_by_side::side_by_side_step;
    assert_eq!(side_by_side_step(&discrete, &digits, Loss::CrossEntropy, 32, 9), Ok(StepKind::SmallNet));
    assert_eq!(side_by_side_step(&discrete, &digits, Loss::CrossEntropy, 32, 8), Ok(StepKind::PerOp));
    let why = side_by_side_step(&cpu_adapter, &digits, Loss::CrossEntropy, 32, 16).unwrap_err();
    assert!(why.contains("a step is 1634304 multiply-adds") && why.contains("do not pay on a CPU adapter"), "{why}");
    let deep = model(4, &vec!["{ type = 'linear', out = 4 }"; 33].join(", "));
    assert_eq!(side_by_side_step(&discrete, &deep, Loss::CrossEntropy, 8, 2), Ok(StepKind::PerOp), "33 stages");
    assert!(side_by_side_step(&cpu_adapter, &deep, Loss::CrossEntropy, 8, 2).is_err());
}

/// A batch norm with the cumulative blend, trained 3 steps fused and then 3 per op: the per-op
/// launches (whose blends the fused steps leave alone) take up the blend where the fused ones
/// left it, so the running statistics match 6 steps per op within the trajectory bound.
#[test]
fn switching_from_the_fused_step_to_the_per_op_step_keeps_the_batch_norm_blend() {
    require_gpu!();
    let m = model(2, "{ type = 'linear', out = 6, bias = false }, { type = 'batch-norm', momentum = 'none' }, { type = 'tanh' }, { type = 'linear', out = 2 }");
    let d = data(60, 2, 2, 5);
    let batches: Vec<Vec<u32>> = (0..6).map(|s| (0..16).map(|i| ((i * 7 + s * 5) % 60) as u32).collect()).collect();
    let sgd = || OptimizerSetup::from(Optimizer::from(gradflow::optim::Sgd::new(0.05)));
    let g = Arc::new(gpu().clone());
    let mut switched = gpu_net(&g, &m, Loss::CrossEntropy, sgd(), 16, true, false, &d);
    let mut per_op = gpu_net(&g, &m, Loss::CrossEntropy, sgd(), 16, false, false, &d);
    for (s, b) in batches.iter().enumerate() {
        if s == 3 {
            switched.set_small_net(false).unwrap();
        }
        switched.train_step(b).unwrap();
        per_op.train_step(b).unwrap();
    }
    let (a, b) = (switched.norm_state().unwrap(), per_op.norm_state().unwrap());
    assert_eq!(a.batches_tracked, b.batches_tracked);
    let tol = (6 * (16 + 6)) as f64 * EPS;
    let bound: Vec<f64> = b.running.iter().map(|w| tol * (w.abs() as f64 + 0.1)).collect();
    assert_within("running statistics", &a.running, &widen(&b.running), &bound);
}

/// Where the adapter binds its 11 storage buffers, the fused step takes the optimizer's update
/// into its own launch (small_net_train.wgsl, one launch a step): the same functions as the
/// update's own launch, so the same bits, for every update form, weight decay, a schedule, a
/// batch norm whose blend changes every step, a shorter batch, lone steps and many-steps submits,
/// and a run that diverges (reported at the same step). Clipping keeps the update apart.
#[test]
fn the_update_in_the_fused_launch_gives_the_bits_of_the_update_apart() {
    require_gpu!();
    let xor = model(2, "{ type = 'linear', out = 16 }, { type = 'tanh' }, { type = 'linear', out = 2 }");
    let bn = model(3, "{ type = 'linear', out = 6, bias = false }, { type = 'batch-norm', momentum = 'none' }, { type = 'tanh' }, { type = 'residual', layers = [{ type = 'linear', out = 6 }, { type = 'relu' }] }, { type = 'linear', out = 2 }");
    let t = |s: &str| -> OptimizerSetup { toml::from_str::<Optimizer>(s).unwrap().into() };
    let setups: Vec<(&str, OptimizerSetup)> = vec![
        ("sgd + weight decay", t("type='sgd'\nlr=0.05\nweight_decay=0.01")),
        ("momentum, dampening", t("type='sgd'\nlr=0.05\nmomentum=0.9\ndampening=0.1")),
        (
            "nesterov + schedule",
            t("type='sgd'\nlr=0.05\nmomentum=0.9\nnesterov=true").with_schedule(Schedule::Exponential { gamma: 0.9 }),
        ),
        ("heavy ball", t("type='sgd'\nlr=0.05\nmomentum={ value = 0.9, form = 'heavy-ball' }")),
        ("look-ahead nesterov", t("type='sgd'\nlr=0.05\nmomentum={ value = 0.9, form = 'nesterov-lookahead' }")),
        ("adagrad", t("type='adagrad'\nlr=0.05\nlr_decay=0.01")),
        ("rmsprop centered + momentum", t("type='rmsprop'\nlr=0.005\ncentered=true\nmomentum=0.5")),
        ("adam", t("type='adam'\nlr=0.01")),
        ("adamw amsgrad", t("type='adamw'\nlr=0.01\namsgrad=true")),
        ("sgd at lr 1e37 (diverges)", t("type='sgd'\nlr=1e37")),
    ];
    let d = data(60, 3, 2, 5);
    let x2 =
        Dataset::new(d.x.chunks(3).flat_map(|r| r[..2].to_vec()).collect(), d.labels.clone(), 2, 2, "xor").unwrap();
    // 12 lone steps, then 12 in submits of 5, one batch of 7 rows among 12.
    let batches: Vec<Vec<u32>> =
        (0..24).map(|s| (0..if s == 17 { 7 } else { 12 }).map(|i| ((i * 7 + s * 13) % 60) as u32).collect()).collect();
    let runs = setups.iter().zip(lanes().into_iter().cycle()).flat_map(|(s, l)| [(&xor, &x2, s, l), (&bn, &d, s, l)]);
    for (m, data, (name, setup), lanes) in runs {
        let g = with_lanes(lanes);
        let what = format!("{name}, {} stages, {lanes} lanes", m.stages.len());
        let mut nets: Vec<GpuNetwork> = [true, false]
            .into_iter()
            .map(|with_update| {
                let mut n = gpu_net(&g, m, Loss::CrossEntropy, setup.clone(), 12, true, false, data);
                match n.set_fused_update(with_update) {
                    Ok(()) => assert_eq!(n.fused_update_runs(), with_update, "{what}"),
                    Err(e) => assert!(with_update && !g.small_net_trains(), "{what}: {e}"),
                }
                n
            })
            .collect();
        for n in &mut nets {
            batches[..12].iter().for_each(|b| n.train_step(b).unwrap());
            for chunk in batches[12..].chunks(5) {
                let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
                n.train_steps(&refs).unwrap();
            }
        }
        let [a, b] = &mut nets[..] else { unreachable!() };
        // By the bits: a diverged run's NaNs are never equal as floats.
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
        assert_eq!(bits(a.params().unwrap()), bits(b.params().unwrap()), "{what}: parameters");
        assert_eq!(bits(a.optimizer_state().unwrap()), bits(b.optimizer_state().unwrap()), "{what}: state");
        let (na, nb) = (a.norm_state().unwrap(), b.norm_state().unwrap());
        assert_eq!(bits(na.running), bits(nb.running), "{what}: running statistics");
        assert_eq!(na.batches_tracked, nb.batches_tracked, "{what}: batches tracked");
        let (ta, tb) = (a.take_totals().unwrap(), b.take_totals().unwrap());
        assert_eq!(format!("{ta:?}"), format!("{tb:?}"), "{what}: totals");
        assert_eq!(ta.first_bad.is_some(), name.contains("diverges"), "{what}: {ta:?}");
    }
    // Clipping's norm is launches of its own: the update stays apart, and the header says so.
    let clipped = OptimizerSetup { clip_grad_norm: Some(0.5), ..t("type='adam'\nlr=0.01") };
    let mut n = gpu_net(&with_lanes(1), &xor, Loss::CrossEntropy, clipped, 12, true, false, &x2);
    assert!(!n.fused_update_runs());
    assert!(n.describe().contains("then the update"), "{}", n.describe());
    if gpu().small_net_trains() {
        match n.set_fused_update(true) {
            Err(Error::Usage(why)) => assert!(why.contains("gradient clipping"), "{why}"),
            other => panic!("clipping in the fused launch: {other:?}"),
        }
        let mut n = gpu_net(&with_lanes(1), &xor, Loss::CrossEntropy, t("type='adam'\nlr=0.01"), 12, true, false, &x2);
        n.set_fused_update(true).unwrap();
        assert!(n.describe().contains("backward and update in one launch"), "{}", n.describe());
    }
    // By default on a GPU, apart on a CPU adapter (measured slower there).
    let n =
        gpu_net(&Arc::new(gpu().clone()), &xor, Loss::CrossEntropy, t("type='adam'\nlr=0.01"), 12, true, false, &x2);
    let on_gpu = gpu().info.device_type != wgpu::DeviceType::Cpu;
    assert_eq!(n.fused_update_runs(), on_gpu && gpu().small_net_trains());
}
