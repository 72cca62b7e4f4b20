//! The small models the course trains many times over, on the GPU path (as training runs it,
//! several steps per submit) and on the CPU reference, in the same run: their ratio is what
//! decides which executor a small model should use on this machine.

use std::sync::Arc;
use web_time::Instant;

use super::random;
use crate::data::Dataset;
use crate::error::Result;
use crate::exec::{BatchedNetworks, CpuNetwork, GpuNetwork, Network, StepKind};
use crate::kernels::Gpu;
use crate::optim::{MomentumSpec, Optimizer, OptimizerSetup, Sgd};
use crate::spec::{LayerSpec, Loss, Model};

/// One small model: its architecture, data size, batch and optimizer.
pub struct SmallCase {
    pub name: &'static str,
    /// The name the peer scripts use for the same case (benches/peers/torch_bench.py).
    pub key: &'static str,
    pub inputs: usize,
    pub layers: Vec<LayerSpec>,
    pub classes: usize,
    pub rows: usize,
    pub batch: usize,
    pub loss: Loss,
    pub setup: OptimizerSetup,
}

impl SmallCase {
    /// The case's model and its data: random inputs, labels i % classes.
    fn model_and_data(&self) -> Result<(Model, Dataset)> {
        let model = Model::new(self.inputs, self.layers.clone())?;
        let labels: Vec<u32> = (0..self.rows as u32).map(|i| i % self.classes as u32).collect();
        let x = random(self.rows * self.inputs, 3);
        Ok((model, Dataset::new(x, labels, self.inputs, self.classes, "small model data")?))
    }
}

/// The digits model, an XOR-sized net and Higham & Higham's 2-2-3-2 net.
pub fn cases() -> Vec<SmallCase> {
    let linear = |out| LayerSpec::Linear { out, bias: true };
    vec![
        SmallCase {
            name: "64-128-64-10 (digits shape, SGD momentum)",
            key: "digits",
            inputs: 64,
            layers: vec![linear(128), LayerSpec::Relu, linear(64), LayerSpec::Relu, linear(10)],
            classes: 10,
            rows: 1440,
            batch: 32,
            loss: Loss::CrossEntropy,
            setup: Sgd { momentum: MomentumSpec::Value(0.9), ..Sgd::new(0.05) }.into(),
        },
        SmallCase {
            name: "2-16-2 (XOR size, Adam)",
            key: "xor",
            inputs: 2,
            layers: vec![linear(16), LayerSpec::Tanh, linear(2)],
            classes: 2,
            rows: 400,
            batch: 32,
            loss: Loss::CrossEntropy,
            setup: Optimizer::from(Optimizer::adam(0.01)).into(),
        },
        SmallCase {
            name: "2-2-3-2 (Higham, SGD, MSE)",
            key: "higham",
            inputs: 2,
            layers: vec![linear(2), LayerSpec::Sigmoid, linear(3), LayerSpec::Sigmoid, linear(2), LayerSpec::Sigmoid],
            classes: 2,
            rows: 10,
            batch: 1,
            loss: Loss::Mse,
            setup: Sgd::new(0.05).into(),
        },
    ]
}

/// Samples per second of one small model on each executor, measured in the same run.
#[derive(Clone, Copy, Debug)]
pub struct SmallRates {
    /// The GPU path with one launch per op.
    pub per_op: f64,
    /// The GPU path with the fused small-network step; None when the model does not fit it.
    pub fused: Option<f64>,
    /// Which of the two a network chooses by itself.
    pub auto_fused: bool,
    pub cpu: f64,
}

/// `case` on the GPU's per-op and fused steps and on the CPU reference, each timed for about
/// `budget` seconds.
pub fn measure(gpu: &Arc<Gpu>, case: &SmallCase, budget: f64) -> Result<SmallRates> {
    let (model, data) = case.model_and_data()?;
    let params = model.init_params(0);
    let gpu_net = || GpuNetwork::new(gpu.clone(), model.clone(), case.loss, case.setup.clone(), &params, case.batch);
    let mut per_op = gpu_net()?;
    let auto_fused = per_op.step_kind() == StepKind::SmallNet;
    per_op.set_small_net(false)?;
    let mut fused = gpu_net()?;
    let fits = fused.set_small_net(true).is_ok();
    let mut on_cpu = CpuNetwork::new(model.clone(), case.loss, case.setup.clone(), params.clone())?;
    let rate = |net: &mut dyn Network| -> Result<f64> {
        net.set_train_data(&data)?;
        samples_per_sec(net, case, budget)
    };
    Ok(SmallRates {
        per_op: rate(&mut per_op)?,
        fused: if fits { Some(rate(&mut fused)?) } else { None },
        auto_fused,
        cpu: rate(&mut on_cpu)?,
    })
}

/// Steps in order through the data, `steps_per_submit` at a time as the training loop hands
/// them over, until `budget` seconds have passed; the closing read waits for the device.
fn samples_per_sec(net: &mut dyn Network, case: &SmallCase, budget: f64) -> Result<f64> {
    let per_submit = net.steps_per_submit();
    let batches: Vec<Vec<u32>> = (0..per_submit.max(64))
        .map(|s| (0..case.batch).map(|i| ((s * case.batch + i) % case.rows) as u32).collect())
        .collect();
    let run = |net: &mut dyn Network| -> Result<usize> {
        for chunk in batches.chunks(per_submit) {
            let chunk: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            net.train_steps(&chunk)?;
        }
        net.last_loss()?;
        Ok(batches.len())
    };
    run(net)?; // warm-up: pipelines, first touch
    let start = Instant::now();
    let mut steps = 0;
    while steps == 0 || start.elapsed().as_secs_f64() < budget {
        steps += run(net)?;
    }
    Ok((steps * case.batch) as f64 / start.elapsed().as_secs_f64())
}

/// Aggregate samples per second of `models` copies of `case` trained side by side
/// (`BatchedNetworks`: one launch for all their forward and backward passes, one for their
/// updates, 32 steps per submit), or None when the model does not fit the fused step.
pub fn measure_batched(gpu: &Arc<Gpu>, case: &SmallCase, models: usize, budget: f64) -> Result<Option<f64>> {
    let (model, data) = case.model_and_data()?;
    let inits: Vec<Vec<f32>> = (0..models).map(|k| model.init_params(k as u64)).collect();
    let setups = vec![case.setup.clone(); models];
    let mut nets = match BatchedNetworks::new(gpu.clone(), model, case.loss, setups, &inits, case.batch) {
        Ok(n) => n,
        Err(crate::error::Error::Usage(_) | crate::error::Error::LoopLimit { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    nets.set_train_data(&data)?;
    let batches: Vec<Vec<u32>> =
        (0..models).map(|k| (0..case.batch).map(|i| ((k * 7 + i) % case.rows) as u32).collect()).collect();
    let refs: Vec<&[u32]> = batches.iter().map(Vec::as_slice).collect();
    // As `compare` and `sweep` run them: many steps per submit, totals read once per 32 steps.
    let per_submit = crate::exec::DEFAULT_STEPS_PER_SUBMIT;
    let submit: Vec<&[&[u32]]> = vec![refs.as_slice(); per_submit];
    let mut run = || -> Result<()> {
        nets.train_steps(&submit)?;
        nets.take_totals().map(|_| ())
    };
    run()?; // warm-up
    let start = Instant::now();
    let mut steps = 0;
    while steps == 0 || start.elapsed().as_secs_f64() < budget {
        run()?;
        steps += per_submit;
    }
    Ok(Some((steps * case.batch * models) as f64 / start.elapsed().as_secs_f64()))
}

/// The 16-run digits sweep of the peer benchmark: four optimizers × four seeds, reshuffled
/// batches of 32 over the digits-sized data, `epochs` epochs each.
pub fn sweep_setups() -> Vec<OptimizerSetup> {
    use crate::optim::{Adagrad, Rmsprop};
    let rmsprop = Rmsprop { lr: 0.001, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false };
    let adagrad = Adagrad { lr: 0.01, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10 };
    let opts: [Optimizer; 4] = [
        Sgd { momentum: MomentumSpec::Value(0.9), ..Sgd::new(0.05) }.into(),
        Optimizer::adam(0.01).into(),
        Optimizer::Rmsprop(rmsprop),
        Optimizer::Adagrad(adagrad),
    ];
    opts.into_iter().flat_map(|o| std::iter::repeat_n(OptimizerSetup::from(o), 4)).collect()
}

/// Aggregate samples/s of the 16-run sweep of `case` (`sweep_setups`, seed k for run k):
/// on the GPU one run after another, each on the step it chooses (what `gradflow sweep` does
/// for a model too large to train side by side on this adapter), and on the CPU reference
/// one run per core (`gradflow sweep --cpu`).
pub fn measure_sweep(gpu: &Arc<Gpu>, case: &SmallCase, epochs: usize) -> Result<(f64, f64)> {
    use crate::data::{BatchScheme, Batcher};
    let (model, data) = case.model_and_data()?;
    let setups = sweep_setups();
    // One run: its epochs' batches, handed over as the training loop does, then one read.
    let train = |net: &mut dyn Network, seed: u64| -> Result<usize> {
        net.set_train_data(&data)?;
        let mut batcher = Batcher::new(BatchScheme::Shuffle, case.rows, case.batch, true, seed)?;
        let mut samples = 0;
        for _ in 0..epochs {
            let epoch: Vec<Vec<u32>> =
                batcher.next_epoch().into_iter().map(|b| b.into_iter().map(|i| i as u32).collect()).collect();
            for chunk in epoch.chunks(net.steps_per_submit().max(1)) {
                let chunk: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
                net.train_steps(&chunk)?;
                samples += chunk.iter().map(|b| b.len()).sum::<usize>();
            }
        }
        net.last_loss()?;
        Ok(samples)
    };
    let start = Instant::now();
    let mut samples = 0;
    for (k, setup) in setups.iter().enumerate() {
        let mut net = GpuNetwork::new(
            gpu.clone(),
            model.clone(),
            case.loss,
            setup.clone(),
            &model.init_params(k as u64),
            case.batch,
        )?;
        samples += train(&mut net, k as u64)?;
    }
    let on_gpu = samples as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (done, _) = crate::dist::threads::one_per_core(setups.len(), |k| -> Result<usize> {
        let mut net = CpuNetwork::new(model.clone(), case.loss, setups[k].clone(), model.init_params(k as u64))?;
        train(&mut net, k as u64)
    });
    let total: Result<usize> = done
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(crate::error::Error::Usage("a sweep run panicked".into()))))
        .sum();
    let on_cpu = total? as f64 / start.elapsed().as_secs_f64();
    Ok((on_gpu, on_cpu))
}
