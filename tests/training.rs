//! Whole training steps: the GPU executor against the CPU executor from the same initial
//! weights, and the default run's accuracy.

mod common;

use std::sync::Arc;

use common::*;
use gradflow::data::{BatchScheme, Batcher, Dataset};
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::kernels::Gpu;
use gradflow::optim::{Optimizer, OptimizerSetup, Sgd};
use gradflow::spec::{LayerSpec, Loss, Model};

fn shared_gpu() -> Arc<Gpu> {
    // Each test opens its own device: GpuNetwork owns an Arc<Gpu>.
    Arc::new(gpu_or_panic())
}

/// Tolerance for step losses and parameters, GPU against CPU (its derivation is beside it).
const REL_TOL: f64 = gradflow::reference::bounds::TRAINING_REL_TOL;

fn run_both(
    model: Model,
    loss: Loss,
    opt: impl Into<OptimizerSetup>,
    scheme: BatchScheme,
    batch: usize,
    steps: usize,
    data: &Dataset,
) {
    let sgd: OptimizerSetup = opt.into();
    let params = model.init_params(7);
    let mut cpu = CpuNetwork::new(model.clone(), loss, sgd.clone(), params.clone()).unwrap();
    let mut gpu = GpuNetwork::new(shared_gpu(), model, loss, sgd.clone(), &params, batch.max(data.n)).unwrap();
    cpu.set_train_data(data).unwrap();
    gpu.set_train_data(data).unwrap();
    let mut batcher = Batcher::new(scheme, data.n, batch, false, 3).unwrap();
    let mut done = 0;
    let mut worst = 0.0f64;
    'outer: loop {
        for b in batcher.next_epoch() {
            let idx: Vec<u32> = b.iter().map(|&i| i as u32).collect();
            cpu.train_step(&idx).unwrap();
            gpu.train_step(&idx).unwrap();
            let (lc, lg) = (cpu.last_loss().unwrap() as f64, gpu.last_loss().unwrap() as f64);
            let err = (lc - lg).abs() / lc.abs().max(1.0);
            worst = worst.max(err);
            assert!(
                err <= REL_TOL,
                "{scheme:?} step {done}: CPU loss {lc}, GPU loss {lg} (rel. error {err:e} > {REL_TOL:e})"
            );
            done += 1;
            if done == steps {
                break 'outer;
            }
        }
    }
    let (pc, pg) = (cpu.params().unwrap(), gpu.params().unwrap());
    let scale = pc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    for (i, (a, b)) in pc.iter().zip(&pg).enumerate() {
        let err = (*a as f64 - *b as f64).abs();
        assert!(err <= REL_TOL * scale, "{scheme:?}: parameter {i} CPU {a} GPU {b}");
    }
    let (tc, tg) = (cpu.take_totals().unwrap(), gpu.take_totals().unwrap());
    assert_eq!(tc.samples, tg.samples);
    assert!((tc.mean_loss - tg.mean_loss).abs() as f64 <= REL_TOL * tc.mean_loss.abs().max(1.0) as f64);
    eprintln!(
        "{scheme:?} {}: {steps} steps, worst relative step-loss difference GPU vs CPU {worst:.2e}",
        sgd.optimizer.name()
    );
}

fn mlp(inputs: usize) -> Model {
    Model::new(
        inputs,
        vec![
            LayerSpec::Linear { out: 48, bias: true },
            LayerSpec::Tanh,
            LayerSpec::Linear { out: 33, bias: true },
            LayerSpec::Relu,
            LayerSpec::Gelu,
            LayerSpec::Linear { out: 7, bias: false },
        ],
    )
    .unwrap()
}

#[test]
fn twenty_steps_gpu_and_cpu_agree_for_every_batching_scheme() {
    require_gpu!();
    let data = synthetic(203, 20, 7, 1);
    for scheme in [BatchScheme::Shuffle, BatchScheme::Replacement, BatchScheme::InOrder] {
        run_both(mlp(20), Loss::CrossEntropy, Sgd::with_momentum(0.05, 0.9), scheme, 32, 20, &data);
    }
    run_both(mlp(20), Loss::CrossEntropy, Sgd::new(0.1), BatchScheme::FullBatch, 203, 20, &data);
}

#[test]
fn twenty_steps_agree_for_every_optimizer() {
    require_gpu!();
    let data = synthetic(203, 20, 7, 5);
    let adam = Optimizer::adam(0.01);
    for opt in [
        Optimizer::Sgd(Sgd { nesterov: true, weight_decay: 1e-3, ..Sgd::with_momentum(0.05, 0.9) }),
        Optimizer::Sgd(Sgd::with_form(0.05, 0.9, gradflow::optim::MomentumForm::HeavyBall)),
        toml_optimizer("type = 'adagrad'\nlr = 0.05\nlr_decay = 0.01"),
        toml_optimizer("type = 'rmsprop'\nlr = 0.001\ncentered = true\nmomentum = 0.5"),
        Optimizer::Adam(gradflow::optim::Adam { amsgrad: true, weight_decay: 1e-3, ..adam.clone() }),
        toml_optimizer("type = 'adamw'\nlr = 0.01"),
    ] {
        run_both(mlp(20), Loss::CrossEntropy, opt, BatchScheme::Shuffle, 32, 20, &data);
    }
}

fn toml_optimizer(text: &str) -> Optimizer {
    toml::from_str(text).unwrap()
}

#[test]
fn twenty_steps_with_mse_and_a_sigmoid_output_agree() {
    require_gpu!();
    let data = synthetic(64, 2, 2, 2);
    // The Higham & Higham (2018) shape: 2 → 2 → 3 → 2, sigmoid everywhere, MSE, plain SGD.
    let model = Model::new(
        2,
        vec![
            LayerSpec::Linear { out: 2, bias: true },
            LayerSpec::Sigmoid,
            LayerSpec::Linear { out: 3, bias: true },
            LayerSpec::Sigmoid,
            LayerSpec::Linear { out: 2, bias: true },
            LayerSpec::Sigmoid,
        ],
    )
    .unwrap();
    run_both(model, Loss::Mse, Sgd::new(0.05), BatchScheme::Replacement, 1, 20, &data);
}

#[test]
fn gradients_of_one_step_agree() {
    require_gpu!();
    let data = synthetic(50, 20, 7, 4);
    let model = mlp(20);
    let params = model.init_params(1);
    let sgd = Sgd::new(0.0);
    let mut cpu = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let mut gpu = GpuNetwork::new(shared_gpu(), model, Loss::CrossEntropy, sgd, &params, 50).unwrap();
    cpu.set_train_data(&data).unwrap();
    gpu.set_train_data(&data).unwrap();
    let idx: Vec<u32> = (0..50).collect();
    cpu.train_step(&idx).unwrap();
    gpu.train_step(&idx).unwrap();
    let (gc, gg) = (cpu.grads().unwrap(), gpu.grads().unwrap());
    let scale = gc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    // Back-propagated through three layers of length ≤ 48 dot products: ≲ 3·64·u relative to the largest gradient.
    let tol = 200.0 * EPS * scale;
    let mut worst = 0.0f64;
    for (i, (a, b)) in gc.iter().zip(&gg).enumerate() {
        let err = (*a as f64 - *b as f64).abs();
        worst = worst.max(err);
        assert!(err <= tol, "gradient {i}: CPU {a} GPU {b} (tolerance {tol:e})");
    }
    eprintln!("one-step gradients: worst |GPU − CPU| {worst:.2e} (largest gradient {scale:.2e})");
}

#[test]
fn default_digits_run_reaches_95_percent_test_accuracy_on_the_gpu() {
    require_gpu!();
    let config = gradflow::config::Config::default_run().unwrap();
    let file = std::path::PathBuf::from(gradflow::config::DEFAULT_CONFIG_PATH);
    let (train, test) = gradflow::train::load_data(&config, &file).unwrap();
    let model = Model::new(train.d, config.model.layers.clone()).unwrap();
    let placement = gradflow::train::Placement::default();
    let mut net = gradflow::train::build_network(&config, model, &placement, config.train.batch_size).unwrap();
    assert!(net.describe().starts_with("GPU"), "runs on {}", net.describe());
    net.set_train_data(&train).unwrap();
    let mut batcher = gradflow::train::batcher(&config, train.n).unwrap();
    for epoch in 1..=config.train.epochs {
        gradflow::train::train_epoch(net.as_mut(), &mut batcher, epoch, |_| {}).unwrap();
    }
    let (loss, acc) = gradflow::train::evaluate(net.as_mut(), &test, config.model.loss).unwrap();
    eprintln!("default run: test accuracy {:.1}%, loss {loss:.4}", 100.0 * acc);
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn optimizer_state_reads_back_and_moves_between_executors() {
    require_gpu!();
    // Adam for 5 steps on the GPU, then its parameters, state and step count continue on the
    // CPU: the sixth step matches a GPU that kept going (same tolerance as above).
    let data = synthetic(64, 20, 7, 6);
    let model = mlp(20);
    let params = model.init_params(2);
    let opt: OptimizerSetup = Optimizer::Adam(Optimizer::adam(0.01)).into();
    let mut gpu = GpuNetwork::new(shared_gpu(), model.clone(), Loss::CrossEntropy, opt.clone(), &params, 64).unwrap();
    gpu.set_train_data(&data).unwrap();
    let idx: Vec<u32> = (0..64).collect();
    for _ in 0..5 {
        gpu.train_step(&idx).unwrap();
    }
    let state = gpu.optimizer_state().unwrap();
    assert_eq!(state.len(), 3 * model.param_len, "Adam keeps exp_avg, exp_avg_sq, max_exp_avg_sq");
    assert!(state[..model.param_len].iter().any(|&m| m != 0.0), "exp_avg has moved");
    let mut cpu = CpuNetwork::new(model.clone(), Loss::CrossEntropy, opt, gpu.params().unwrap()).unwrap();
    cpu.set_train_data(&data).unwrap();
    cpu.set_optimizer_state(&state).unwrap();
    assert!(cpu.set_optimizer_state(&state[1..]).is_err());
    cpu.set_steps(gpu.steps());
    assert_eq!(cpu.steps(), 5);
    gpu.train_step(&idx).unwrap();
    cpu.train_step(&idx).unwrap();
    let (lg, lc) = (gpu.last_loss().unwrap() as f64, cpu.last_loss().unwrap() as f64);
    assert!((lg - lc).abs() <= REL_TOL * lc.abs().max(1.0), "GPU {lg} CPU {lc}");
    // And the sixth update (bias correction at step 6) lands in the same place.
    let (pg, pc) = (gpu.params().unwrap(), cpu.params().unwrap());
    let scale = pc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    for (i, (a, b)) in pc.iter().zip(&pg).enumerate() {
        assert!((*a as f64 - *b as f64).abs() <= REL_TOL * scale, "parameter {i}: CPU {a} GPU {b}");
    }
}
