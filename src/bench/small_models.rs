//! The small models the course trains many times over, on the GPU path (as training runs it,
//! several steps per submit) and on the CPU reference, in the same run: their ratio is what
//! decides which executor a small model should use on this machine.

use std::sync::Arc;
use std::time::Instant;

use super::random;
use crate::data::Dataset;
use crate::error::Result;
use crate::exec::{CpuNetwork, GpuNetwork, Network};
use crate::kernels::Gpu;
use crate::optim::{MomentumSpec, Optimizer, OptimizerSetup, Sgd};
use crate::spec::{LayerSpec, Loss, Model};

/// One small model: its architecture, data size, batch and optimizer.
pub struct SmallCase {
    pub name: &'static str,
    pub inputs: usize,
    pub layers: Vec<LayerSpec>,
    pub classes: usize,
    pub rows: usize,
    pub batch: usize,
    pub loss: Loss,
    pub setup: OptimizerSetup,
}

/// The digits model, an XOR-sized net and Higham & Higham's 2-2-3-2 net.
pub fn cases() -> Vec<SmallCase> {
    let linear = |out| LayerSpec::Linear { out, bias: true };
    vec![
        SmallCase {
            name: "64-128-64-10 (digits shape, SGD momentum)",
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

/// (GPU samples/s, CPU reference samples/s) for `case`, each timed for about `budget` seconds.
pub fn measure(gpu: &Arc<Gpu>, case: &SmallCase, budget: f64) -> Result<(f64, f64)> {
    let model = Model::new(case.inputs, case.layers.clone())?;
    let params = model.init_params(0);
    let labels: Vec<u32> = (0..case.rows as u32).map(|i| i % case.classes as u32).collect();
    let data = Dataset::new(random(case.rows * case.inputs, 3), labels, case.inputs, case.classes, "small model data")?;
    let mut on_gpu = GpuNetwork::new(gpu.clone(), model.clone(), case.loss, case.setup.clone(), &params, case.batch)?;
    let mut on_cpu = CpuNetwork::new(model, case.loss, case.setup.clone(), params)?;
    let mut rates = [0.0; 2];
    for (rate, net) in rates.iter_mut().zip([&mut on_gpu as &mut dyn Network, &mut on_cpu]) {
        net.set_train_data(&data)?;
        *rate = samples_per_sec(net, case, budget)?;
    }
    Ok((rates[0], rates[1]))
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
