//! Many models per dispatch (`exec::BatchedNetworks`) against training each model alone on the
//! fused step (`GpuNetwork`), model by model: the same kernel does the same sums on each model's
//! slice and the same update kernel runs on it, so parameters, optimizer state and loss totals
//! are the same to the bit. Run over every optimizer, a schedule, clipping, different starts and
//! different batch rows per model, both lane counts, and a model that diverges among ones that
//! do not. With batch norm, against the per-op path a lone network takes (batchnorm.wgsl's sums
//! in the same order), running statistics included.

mod common;

use std::sync::Arc;

use common::*;
use gradflow::data::Dataset;
use gradflow::error::Error;
use gradflow::exec::{BatchedNetworks, GpuNetwork, Network};
use gradflow::kernels::Gpu;
use gradflow::optim::{Optimizer, OptimizerSetup, Schedule};
use gradflow::spec::{LayerSpec, Loss, Model};

fn model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let text = "layers = [{ type = 'linear', out = 9 }, { type = 'tanh' }, { type = 'linear', out = 5 }, \
                { type = 'relu' }, { type = 'linear', out = 3 }]";
    Model::new(4, toml::from_str::<L>(text).unwrap().layers).unwrap()
}

fn data() -> Dataset {
    let mut r = rng(21);
    let x = uniform(&mut r, 120 * 4, -2.0, 2.0);
    let labels = (0..120).map(|i| ((x[i * 4] + 2.0 * x[i * 4 + 2]).abs() * 1.9) as u32 % 3).collect();
    Dataset::new(x, labels, 4, 3, "batched data").unwrap()
}

/// Nine runs of six kinds of optimizer (runs of one kind share a launch: their hyper-parameters,
/// schedules, clipping and state differ), a schedule and clipping among them; the last diverges
/// (SGD at 1e37, sharing its launch with two SGD runs that must not be marked).
fn setups() -> Vec<(&'static str, OptimizerSetup)> {
    let t = |s: &str| -> Optimizer { toml::from_str(s).unwrap() };
    vec![
        ("sgd momentum", t("type='sgd'\nlr=0.05\nmomentum=0.9").into()),
        (
            "nesterov + schedule",
            OptimizerSetup::from(t("type='sgd'\nlr=0.05\nmomentum=0.9\nnesterov=true"))
                .with_schedule(Schedule::Exponential { gamma: 0.9 }),
        ),
        ("adam + clip", OptimizerSetup { clip_grad_norm: Some(0.4), ..t("type='adam'\nlr=0.01").into() }),
        (
            "sgd, other momentum + schedule",
            OptimizerSetup::from(t("type='sgd'\nlr=0.02\nmomentum=0.5"))
                .with_schedule(Schedule::Exponential { gamma: 0.8 }),
        ),
        (
            "adam, other clip and betas",
            OptimizerSetup { clip_grad_norm: Some(2.0), ..t("type='adam'\nlr=0.003\nbetas=[0.8, 0.99]").into() },
        ),
        ("adagrad", t("type='adagrad'\nlr=0.05").into()),
        ("rmsprop centered", t("type='rmsprop'\nlr=0.002\ncentered=true").into()),
        ("adamw", t("type='adamw'\nlr=0.01\nweight_decay=0.1").into()),
        ("diverging sgd", t("type='sgd'\nlr=1e37").into()),
    ]
}

/// Model k's batch at step s: each model walks the data its own way.
fn batch(k: usize, s: usize, rows: usize) -> Vec<u32> {
    (0..rows).map(|i| ((i * (2 * k + 1) + s * 13 + k * 7) % 120) as u32).collect()
}

#[test]
fn each_batched_model_is_bit_identical_to_training_it_alone() {
    require_gpu!();
    for m in [model(), residual_model()] {
        each_batched_model_equals_alone(&m);
    }
}

/// 4-6 tanh, a residual block (6-6 relu), tanh on its own, 6-3: a value with two readers.
fn residual_model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let text = "layers = [{ type = 'linear', out = 6 }, { type = 'tanh' }, \
                { type = 'residual', layers = [{ type = 'linear', out = 6 }, { type = 'relu' }] }, \
                { type = 'tanh' }, { type = 'linear', out = 3 }]";
    Model::new(4, toml::from_str::<L>(text).unwrap().layers).unwrap()
}

fn each_batched_model_equals_alone(m: &Model) {
    let (m, d) = (m.clone(), data());
    let setups = setups();
    let inits: Vec<Vec<f32>> = (0..setups.len()).map(|k| m.init_params(100 + k as u64)).collect();
    // 20 steps of 16 rows, then 3 of 7 (a shorter batch resizes the launch).
    let plan: Vec<usize> = (0..23).map(|s| if s < 20 { 16 } else { 7 }).collect();
    let allowed = gradflow::kernels::small_net::max_lanes(&gpu().info);
    for lanes in [1u32, 64].into_iter().filter(|&l| l <= allowed) {
        let g = Arc::new(Gpu { small_net_lanes: lanes, ..gpu().clone() });
        let all: Vec<OptimizerSetup> = setups.iter().map(|(_, s)| s.clone()).collect();
        let mut batched = BatchedNetworks::new(g.clone(), m.clone(), Loss::CrossEntropy, all, &inits, 16).unwrap();
        assert_eq!(batched.optimizer_launches(), 6, "one optimizer launch per kind");
        batched.set_train_data(&d).unwrap();
        for (s, &rows) in plan.iter().enumerate() {
            let batches: Vec<Vec<u32>> = (0..setups.len()).map(|k| batch(k, s, rows)).collect();
            let refs: Vec<&[u32]> = batches.iter().map(Vec::as_slice).collect();
            batched.train_step(&refs).unwrap();
        }
        let totals = batched.take_totals().unwrap();
        for (k, (name, setup)) in setups.iter().enumerate() {
            let what = format!("model {k} ({name}, {lanes} lanes)");
            let mut alone =
                GpuNetwork::new(g.clone(), m.clone(), Loss::CrossEntropy, setup.clone(), &inits[k], 16).unwrap();
            alone.set_small_net(true).unwrap();
            alone.set_streaming(false);
            alone.set_train_data(&d).unwrap();
            for (s, &rows) in plan.iter().enumerate() {
                alone.train_step(&batch(k, s, rows)).unwrap();
            }
            let same = |a: Vec<f32>, b: Vec<f32>| {
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len()
            };
            assert!(same(batched.params(k).unwrap(), alone.params().unwrap()), "{what}: parameters");
            assert!(same(batched.grads(k).unwrap(), alone.grads().unwrap()), "{what}: gradients");
            assert!(same(batched.optimizer_state(k).unwrap(), alone.optimizer_state().unwrap()), "{what}: state");
            let t = alone.take_totals().unwrap();
            assert_eq!(format!("{:?}", totals[k]), format!("{t:?}"), "{what}: totals");
            assert_eq!(totals[k].first_bad.is_some(), *name == "diverging sgd", "{what}: {:?}", totals[k]);
        }
    }
}

#[test]
fn batched_training_refuses_what_it_cannot_train() {
    require_gpu!();
    let g = Arc::new(gpu().clone());
    let m = model();
    let sgd = || OptimizerSetup::from(Optimizer::from(gradflow::optim::Sgd::new(0.1)));
    let init = m.init_params(1);
    let refused = |r: gradflow::error::Result<BatchedNetworks>, want: &str| match r {
        Err(Error::Usage(msg)) => assert!(msg.contains(want), "{msg}"),
        Err(other) => panic!("{want}: {other}"),
        Ok(_) => panic!("{want}: accepted"),
    };
    refused(BatchedNetworks::new(g.clone(), m.clone(), Loss::CrossEntropy, vec![], &[], 8), "1 to");
    refused(BatchedNetworks::new(g.clone(), m.clone(), Loss::CrossEntropy, vec![sgd()], &[vec![0.0; 3]], 8), "model 0");
    let bn = Model::new(
        4,
        vec![
            LayerSpec::Linear { out: 4, bias: true },
            LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
            LayerSpec::Linear { out: 3, bias: true },
        ],
    )
    .unwrap();
    let bn_init = bn.init_params(1);
    refused(
        BatchedNetworks::new(g.clone(), bn.clone(), Loss::CrossEntropy, vec![sgd()], std::slice::from_ref(&bn_init), 1),
        "batch norm",
    );
    BatchedNetworks::new(g.clone(), bn, Loss::CrossEntropy, vec![sgd()], &[bn_init], 2).expect("batch norm at 2 rows");
    // 33 stages, one past the kernel's table: refused by the fused step, taken per op.
    let deep = Model::new(4, vec![LayerSpec::Linear { out: 4, bias: true }; 33]).unwrap();
    let deep_init = deep.init_params(1);
    let fused = gradflow::exec::StepKind::SmallNet;
    let on_fused = BatchedNetworks::with_step(
        g.clone(),
        deep.clone(),
        Loss::CrossEntropy,
        vec![sgd()],
        std::slice::from_ref(&deep_init),
        8,
        fused,
    );
    refused(on_fused, "33 stages");
    BatchedNetworks::new(g.clone(), deep, Loss::CrossEntropy, vec![sgd()], &[deep_init], 8).expect("per op");
    let mut net = BatchedNetworks::new(g, m, Loss::CrossEntropy, vec![sgd(), sgd()], &[init.clone(), init], 8).unwrap();
    assert!(matches!(net.train_step(&[&[0, 1]]), Err(Error::Usage(_))), "train before data");
    net.set_train_data(&data()).unwrap();
    assert!(matches!(net.train_step(&[&[0, 1]]), Err(Error::Usage(_))), "one batch for two models");
    assert!(matches!(net.train_step(&[&[0, 1], &[0]]), Err(Error::Usage(_))), "batches of two sizes");
    assert!(matches!(net.train_step(&[&[0, 1], &[0, 120]]), Err(Error::Usage(_))), "a row past the data");
    assert!(matches!(net.params(2), Err(Error::Usage(_))), "a model past the batch");
    net.train_step(&[&[0, 1], &[2, 3]]).unwrap();
    // As many models as the adapter's largest binding holds of the widest shared buffer.
    let g = gpu();
    let most = BatchedNetworks::max_models(g, &model(), Loss::CrossEntropy, 8).unwrap();
    let stride = model().param_len.next_multiple_of(64);
    let values = gradflow::kernels::SmallNet::new(&model(), Loss::CrossEntropy, 8).unwrap().values_len;
    let widest = stride.max(values);
    assert_eq!(most, ((g.max_storage_bytes() / 4) as usize / widest).min(65_535), "stride {stride}, values {values}");
    assert!(most >= 2);
}

/// Past 64 models of one kind the optimizer takes a second launch (optim.wgsl's uniform array
/// holds 64); the models on either side of the split still train as they would alone.
#[test]
fn models_past_one_optimizer_launch_train_as_alone() {
    require_gpu!();
    let (m, d) = (model(), data());
    let g = Arc::new(gpu().clone());
    let n = 66;
    let t = |s: &str| -> Optimizer { toml::from_str(s).unwrap() };
    let setups: Vec<OptimizerSetup> =
        (0..n).map(|k| t(&format!("type='adam'\nlr={}", 0.001 * (k + 1) as f64)).into()).collect();
    let inits: Vec<Vec<f32>> = (0..n).map(|k| m.init_params(k as u64)).collect();
    let mut batched =
        BatchedNetworks::new(g.clone(), m.clone(), Loss::CrossEntropy, setups.clone(), &inits, 8).unwrap();
    assert_eq!(batched.optimizer_launches(), 2, "64 models in the first launch, 2 in the second");
    batched.set_train_data(&d).unwrap();
    for s in 0..4 {
        let batches: Vec<Vec<u32>> = (0..n).map(|k| batch(k, s, 8)).collect();
        let refs: Vec<&[u32]> = batches.iter().map(Vec::as_slice).collect();
        batched.train_step(&refs).unwrap();
    }
    for k in [0, 63, 64, 65] {
        let mut alone =
            GpuNetwork::new(g.clone(), m.clone(), Loss::CrossEntropy, setups[k].clone(), &inits[k], 8).unwrap();
        alone.set_small_net(true).unwrap();
        alone.set_train_data(&d).unwrap();
        for s in 0..4 {
            alone.train_step(&batch(k, s, 8)).unwrap();
        }
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(batched.params(k).unwrap()), bits(alone.params().unwrap()), "model {k}: parameters");
        assert_eq!(
            bits(batched.optimizer_state(k).unwrap()),
            bits(alone.optimizer_state().unwrap()),
            "model {k}: state"
        );
    }
}

/// Many steps per submit (`train_steps`) against one step per submit: the same launches on the
/// same values, so the same bits, whether a submit holds 1, 4 or 10 steps.
#[test]
fn many_steps_per_submit_equal_one_step_per_submit() {
    require_gpu!();
    let (m, d) = (model(), data());
    let g = Arc::new(gpu().clone());
    let setups: Vec<OptimizerSetup> = setups().into_iter().map(|(_, s)| s).collect();
    let n = setups.len();
    let inits: Vec<Vec<f32>> = (0..n).map(|k| m.init_params(7 + k as u64)).collect();
    let plan: Vec<usize> = (0..13).map(|s| if s < 10 { 16 } else { 5 }).collect();
    let all: Vec<Vec<Vec<u32>>> =
        plan.iter().enumerate().map(|(s, &r)| (0..n).map(|k| batch(k, s, r)).collect()).collect();
    let mut runs = Vec::new();
    for per_submit in [1, 4, 10] {
        let mut nets =
            BatchedNetworks::new(g.clone(), m.clone(), Loss::CrossEntropy, setups.clone(), &inits, 16).unwrap();
        nets.set_train_data(&d).unwrap();
        // Steps 0-9 (16 rows) in submits of `per_submit`, then 10-12 (5 rows) together.
        for group in [&all[..10], &all[10..]] {
            for chunk in group.chunks(per_submit) {
                let steps: Vec<Vec<&[u32]>> = chunk.iter().map(|b| b.iter().map(Vec::as_slice).collect()).collect();
                let refs: Vec<&[&[u32]]> = steps.iter().map(Vec::as_slice).collect();
                nets.train_steps(&refs).unwrap();
            }
        }
        assert_eq!(nets.steps(), 13);
        let totals = format!("{:?}", nets.take_totals().unwrap());
        let bits: Vec<Vec<u32>> = (0..n)
            .flat_map(|k| [nets.params(k).unwrap(), nets.optimizer_state(k).unwrap()])
            .map(|v| v.into_iter().map(f32::to_bits).collect())
            .collect();
        runs.push((per_submit, bits, totals));
    }
    let (_, bits, totals) = &runs[0];
    for (per_submit, b, t) in &runs[1..] {
        assert!(b == bits, "{per_submit} steps per submit: parameters or state differ from one per submit");
        assert_eq!(t, totals, "{per_submit} steps per submit: totals");
    }
    // A submit whose steps differ in batch size is refused, naming the model.
    let mut nets = BatchedNetworks::new(g, m, Loss::CrossEntropy, setups, &inits, 16).unwrap();
    nets.set_train_data(&d).unwrap();
    let a: Vec<&[u32]> = all[0].iter().map(Vec::as_slice).collect();
    let b: Vec<&[u32]> = all[12].iter().map(Vec::as_slice).collect();
    match nets.train_steps(&[&a, &b]) {
        Err(Error::Usage(msg)) => assert!(msg.contains("share a batch size"), "{msg}"),
        other => panic!("mixed batch sizes in one submit: {other:?}"),
    }
}

/// 4-9-BN-relu-6-BN(cumulative)-tanh-3: a batch norm with the default momentum and one with the
/// cumulative average, whose blend changes every step; the Linears before them without biases
/// (as one writes them: a batch norm removes a bias) or with.
fn bn_model(bias: bool) -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let text = format!(
        "layers = [{{ type = 'linear', out = 9, bias = {bias} }}, {{ type = 'batch-norm' }}, {{ type = 'relu' }}, \
         {{ type = 'linear', out = 6, bias = {bias} }}, {{ type = 'batch-norm', momentum = 'none', eps = 1e-3 }}, \
         {{ type = 'tanh' }}, {{ type = 'linear', out = 3 }}]"
    );
    Model::new(4, toml::from_str::<L>(&text).unwrap().layers).unwrap()
}

/// Batch-norm models side by side (the fused step: batchnorm.wgsl's sums in its order) against
/// each model trained alone, which runs batch norm per op: the same launches give the same bits
/// whatever the lane count and the steps per submit; against the per-op path, whose products
/// split their sums into lanes, within tests/small_net.rs's bounds. One step's gradient: every
/// path is within L·(rows + widest)·u of the exact gradient relative to the step's largest
/// element (L stages, batch norm's sums over rows counted as a stage's), so two are within twice
/// that. Fourteen steps: the trajectory bound steps·(rows + widest)·u relative to |w| + 0.1, on
/// parameters and running statistics, for the model without biases before its norms (a bias
/// there has an exact gradient of 0, so its computed one is rounding noise that Adam, Adagrad
/// and RMSprop scale up to steps of about lr: it, and the running mean it shifts, walk
/// differently on each path while the network's function does not change).
#[test]
fn batch_norm_models_side_by_side_train_as_each_alone() {
    require_gpu!();
    let d = data();
    let setups = setups();
    let n = setups.len();
    let plan: Vec<usize> = (0..14).map(|s| if s < 11 { 16 } else { 7 }).collect();
    let all: Vec<OptimizerSetup> = setups.iter().map(|(_, s)| s.clone()).collect();
    let allowed = gradflow::kernels::small_net::max_lanes(&gpu().info);
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let steps: Vec<Vec<Vec<u32>>> =
        plan.iter().enumerate().map(|(s, &r)| (0..n).map(|k| batch(k, s, r)).collect()).collect();
    let inits = |m: &Model| -> Vec<Vec<f32>> { (0..n).map(|k| m.init_params(300 + k as u64)).collect() };
    let run = |m: &Model, lanes: u32, per_submit: usize, upto: usize| {
        let g = Arc::new(Gpu { small_net_lanes: lanes, ..gpu().clone() });
        let mut batched = BatchedNetworks::new(g, m.clone(), Loss::CrossEntropy, all.clone(), &inits(m), 16).unwrap();
        batched.set_train_data(&d).unwrap();
        for group in [&steps[..upto.min(11)], &steps[upto.min(11)..upto]] {
            for chunk in group.chunks(per_submit) {
                let c: Vec<Vec<&[u32]>> = chunk.iter().map(|b| b.iter().map(Vec::as_slice).collect()).collect();
                let refs: Vec<&[&[u32]]> = c.iter().map(Vec::as_slice).collect();
                batched.train_steps(&refs).unwrap();
            }
        }
        batched
    };
    let alone = |m: &Model, k: usize, lanes: u32, fused: bool| {
        let g = Arc::new(Gpu { small_net_lanes: lanes, ..gpu().clone() });
        let mut net = GpuNetwork::new(g, m.clone(), Loss::CrossEntropy, setups[k].1.clone(), &inits(m)[k], 16).unwrap();
        net.set_small_net(fused).unwrap();
        net.set_streaming(false);
        net.set_train_data(&d).unwrap();
        net
    };
    // The same bits over lane counts and steps per submit.
    let m = bn_model(false);
    let mut first: Option<Vec<Vec<u32>>> = None;
    for lanes in [1u32, 64].into_iter().filter(|&l| l <= allowed) {
        for per_submit in [1, 5] {
            let mut b = run(&m, lanes, per_submit, plan.len());
            let totals = format!("{:?}", b.take_totals().unwrap());
            let mut got: Vec<Vec<u32>> = (0..n)
                .flat_map(|k| {
                    let norm = b.norm_state(k).unwrap();
                    assert_eq!(norm.batches_tracked, vec![14, 14], "model {k}");
                    [b.params(k).unwrap(), b.grads(k).unwrap(), b.optimizer_state(k).unwrap(), norm.running]
                })
                .map(bits)
                .collect();
            got.push(totals.bytes().map(u32::from).collect());
            // Each model alone on the fused step, its steps in the same submits: the same bits.
            let mut alone_totals = Vec::new();
            for k in 0..n {
                let mut net = alone(&m, k, lanes, true);
                net.set_steps_per_submit(per_submit);
                for group in [&steps[..11], &steps[11..]] {
                    for chunk in group.chunks(per_submit) {
                        let c: Vec<&[u32]> = chunk.iter().map(|b| b[k].as_slice()).collect();
                        net.train_steps(&c).unwrap();
                    }
                }
                let what = format!("model {k} alone, {lanes} lanes, {per_submit} per submit");
                assert_eq!(bits(net.params().unwrap()), got[4 * k], "{what}: parameters");
                assert_eq!(bits(net.grads().unwrap()), got[4 * k + 1], "{what}: gradients");
                assert_eq!(bits(net.optimizer_state().unwrap()), got[4 * k + 2], "{what}: optimizer state");
                assert_eq!(bits(net.norm_state().unwrap().running), got[4 * k + 3], "{what}: running statistics");
                alone_totals.push(net.take_totals().unwrap());
            }
            assert_eq!(format!("{alone_totals:?}"), totals, "{lanes} lanes, {per_submit} per submit: totals alone");
            match &first {
                None => first = Some(got),
                Some(want) => {
                    assert!(&got == want, "{lanes} lanes, {per_submit} steps per submit differ from the first run")
                }
            }
        }
    }
    let widest = 9;
    let sum_bound = (m.stages.len() * (16 + widest)) as f64 * EPS;
    let tol = (plan.len() * (16 + widest)) as f64 * EPS;
    let lanes = allowed.min(64);
    for with_bias in [false, true] {
        let m = bn_model(with_bias);
        let mut one = run(&m, lanes, 1, 1);
        for (k, (name, _)) in setups.iter().enumerate() {
            let mut net = alone(&m, k, lanes, false);
            net.train_step(&batch(k, 0, 16)).unwrap();
            let (got, want) = (one.grads(k).unwrap(), net.grads().unwrap());
            // Relative to the step's largest gradient: a bias before a batch norm has an exact
            // gradient of 0, and both paths give noise of the size of the others' errors.
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
            for t in &m.params {
                let (g, w) = (&got[t.offset..t.offset + t.len], &want[t.offset..t.offset + t.len]);
                let bound = vec![2.0 * sum_bound * scale + 1e-30; w.len()];
                let what = format!("model {k} ({name}, biases {with_bias}) first gradient, {}", t.name);
                assert_within(&what, g, &widen(w), &bound);
            }
        }
    }
    let mut fourteen = run(&m, lanes, 5, plan.len());
    for (k, (name, _)) in setups.iter().enumerate() {
        if *name == "diverging sgd" {
            continue;
        }
        let mut net = alone(&m, k, lanes, false);
        for (s, &rows) in plan.iter().enumerate() {
            net.train_step(&batch(k, s, rows)).unwrap();
        }
        let within = |what: &str, got: Vec<f32>, want: Vec<f32>| {
            let bound: Vec<f64> = want.iter().map(|w| tol * (w.abs() as f64 + 0.1)).collect();
            assert_within(&format!("model {k} ({name}) after 14 steps: {what}"), &got, &widen(&want), &bound);
        };
        within("parameters", fourteen.params(k).unwrap(), net.params().unwrap());
        within("running statistics", fourteen.norm_state(k).unwrap().running, net.norm_state().unwrap().running);
    }
}

/// 4-6, batch norm with the cumulative average (its blend changes every step), relu, 6-5, batch
/// norm, tanh, 5-3.
fn batch_norm_model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let text = "layers = [{ type = 'linear', out = 6 }, { type = 'batch-norm', momentum = 'none' }, { type = 'relu' }, \
                { type = 'linear', out = 5 }, { type = 'batch-norm' }, { type = 'tanh' }, { type = 'linear', out = 3 }]";
    Model::new(4, toml::from_str::<L>(text).unwrap().layers).unwrap()
}

/// The per-op step over a batch (every product, batch norm and loss one launch with a model
/// index; the element-wise launches over every model's slice) against each model trained alone
/// on the per-op step: the same kernels on the same values, so the same bits, parameters,
/// gradients, optimizer state, running statistics and loss totals alike. Many steps per submit,
/// a shorter last batch, every optimizer kind, a diverging model.
#[test]
fn each_model_of_a_per_op_batch_is_bit_identical_to_training_it_alone_per_op() {
    use gradflow::exec::StepKind;
    use gradflow::kernels::{MatmulVariant, Schedule};
    require_gpu!();
    // One schedule for every product: a batch runs matmul.wgsl's tiled or direct kernel, where a
    // lone network might take the packed or uniform-window one and sum in another order.
    let variant =
        if gpu().info.device_type == wgpu::DeviceType::Cpu { MatmulVariant::Direct } else { MatmulVariant::Tiled };
    let g = Arc::new(Gpu { matmul_schedule: Schedule::uniform(variant), ..gpu().clone() });
    let d = data();
    let setups = setups();
    let plan: Vec<usize> = (0..23).map(|s| if s < 20 { 16 } else { 7 }).collect();
    for m in [model(), residual_model(), batch_norm_model()] {
        let inits: Vec<Vec<f32>> = (0..setups.len()).map(|k| m.init_params(100 + k as u64)).collect();
        let all: Vec<OptimizerSetup> = setups.iter().map(|(_, s)| s.clone()).collect();
        let mut batched =
            BatchedNetworks::with_step(g.clone(), m.clone(), Loss::CrossEntropy, all, &inits, 16, StepKind::PerOp)
                .unwrap();
        batched.set_train_data(&d).unwrap();
        let steps: Vec<Vec<Vec<u32>>> =
            plan.iter().enumerate().map(|(s, &rows)| (0..setups.len()).map(|k| batch(k, s, rows)).collect()).collect();
        // Submits of 4 steps, cut where the batch size changes.
        for group in [&steps[..20], &steps[20..]] {
            for chunk in group.chunks(4) {
                let per_step: Vec<Vec<&[u32]>> = chunk.iter().map(|b| b.iter().map(Vec::as_slice).collect()).collect();
                let refs: Vec<&[&[u32]]> = per_step.iter().map(Vec::as_slice).collect();
                batched.train_steps(&refs).unwrap();
            }
        }
        let totals = batched.take_totals().unwrap();
        for (k, (name, setup)) in setups.iter().enumerate() {
            let what = format!("model {k} ({name}) of {:?}", m.stages.len());
            let mut alone =
                GpuNetwork::new(g.clone(), m.clone(), Loss::CrossEntropy, setup.clone(), &inits[k], 16).unwrap();
            alone.set_small_net(false).unwrap();
            alone.set_streaming(false);
            alone.set_train_data(&d).unwrap();
            for (s, &rows) in plan.iter().enumerate() {
                alone.train_step(&batch(k, s, rows)).unwrap();
            }
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(batched.params(k).unwrap()), bits(alone.params().unwrap()), "{what}: parameters");
            assert_eq!(bits(batched.grads(k).unwrap()), bits(alone.grads().unwrap()), "{what}: gradients");
            assert_eq!(
                bits(batched.optimizer_state(k).unwrap()),
                bits(alone.optimizer_state().unwrap()),
                "{what}: state"
            );
            let (bn, an) = (batched.norm_state(k).unwrap(), alone.norm_state().unwrap());
            assert_eq!(
                (bits(bn.running), bn.batches_tracked),
                (bits(an.running), an.batches_tracked),
                "{what}: running"
            );
            let t = alone.take_totals().unwrap();
            assert_eq!(format!("{:?}", totals[k]), format!("{t:?}"), "{what}: totals");
            // Batch norm rescales the blown-up weights: only the plain models diverge.
            if m.running_len == 0 {
                assert_eq!(totals[k].first_bad.is_some(), *name == "diverging sgd", "{what}: {:?}", totals[k]);
            }
        }
    }
}
