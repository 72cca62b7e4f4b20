//! Throughput measurements shared by `gradflow bench` and `benches/` (criterion): matmul GFLOP/s
//! and training samples/s, timed around whole submits with the queue drained.

use std::sync::Arc;
use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::kernels::{submit, Dispatch, MatmulParams};
use crate::gpu::{Gpu, GpuBuffer};
use crate::nn::{GpuNetwork, LayerSpec, Loss, Model, Network};
use crate::optim::Sgd;
use crate::train::Placement;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// An n×n by n×n product ready to launch, with its buffers.
pub struct MatmulBench {
    pub n: usize,
    pub dispatch: Dispatch,
    _buffers: [GpuBuffer; 3],
}

impl MatmulBench {
    pub fn new(gpu: &Gpu, n: usize) -> Result<MatmulBench> {
        let a = gpu.upload("bench a", &random(n * n, 1))?;
        let b = gpu.upload("bench b", &random(n * n, 2))?;
        let c = gpu.storage("bench c", n * n)?;
        let p = MatmulParams {
            m: n as u32,
            n: n as u32,
            k: n as u32,
            a_stride_m: n as u32,
            a_stride_k: 1,
            b_stride_k: n as u32,
            b_stride_n: 1,
            ..Default::default()
        };
        let dispatch = gpu.matmul(&a, &b, None, &c, None, p)?;
        Ok(MatmulBench { n, dispatch, _buffers: [a, b, c] })
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.n as f64).powi(3)
    }

    /// Runs `reps` products (one submit each) and waits for the queue to drain.
    pub fn run(&self, gpu: &Gpu, reps: usize) -> Result<()> {
        for _ in 0..reps {
            submit(gpu, "bench matmul", &[&self.dispatch])?;
        }
        gpu.wait()
    }
}

/// The benchmark MLP: Linear(784,512)-ReLU-Linear(512,512)-ReLU-Linear(512,10), cross-entropy,
/// SGD with momentum 0.9, trained on random data resident on the device.
pub fn bench_mlp(gpu: Arc<Gpu>, batch: usize) -> Result<(GpuNetwork, usize)> {
    let layers = vec![
        LayerSpec::Linear { out: 512, bias: true },
        LayerSpec::Relu,
        LayerSpec::Linear { out: 512, bias: true },
        LayerSpec::Relu,
        LayerSpec::Linear { out: 10, bias: true },
    ];
    let model = Model::new(784, layers)?;
    let params = model.init_params(0);
    let rows = 8192;
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 10).collect();
    let data = Dataset::new(random(rows * 784, 3), labels, 784, 10, "benchmark data")?;
    let mut net = GpuNetwork::new(gpu, model, Loss::CrossEntropy, Sgd::with_momentum(0.01, 0.9), &params, batch)?;
    net.set_train_data(&data)?;
    Ok((net, rows))
}

/// Runs `steps` training steps of `batch` rows and waits for the queue to drain.
pub fn train_steps(net: &mut GpuNetwork, rows: usize, batch: usize, steps: usize) -> Result<()> {
    let mut idx: Vec<u32> = Vec::with_capacity(batch);
    for s in 0..steps {
        idx.clear();
        idx.extend((0..batch).map(|i| ((s * batch + i) % rows) as u32));
        net.train_step(&idx, 0.01)?;
    }
    net.gpu().wait()
}

/// Repeats `f(batch_of_reps)` with a doubling batch until `budget` seconds have passed (at least
/// `min_reps` reps); returns (reps, seconds).
fn run_for(budget: f64, min_reps: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<(usize, f64)> {
    let start = Instant::now();
    let (mut reps, mut chunk) = (0, min_reps.max(1));
    while reps < min_reps || start.elapsed().as_secs_f64() < budget {
        f(chunk)?;
        reps += chunk;
        chunk = (chunk * 2).min(64);
    }
    Ok((reps, start.elapsed().as_secs_f64()))
}

/// `gradflow bench`.
pub fn run(placement: &Placement, quick: bool) -> Result<()> {
    let gpu = Arc::new(Gpu::new(placement.adapter.as_deref())?);
    println!("adapter: {}", gpu.describe());
    let sizes: &[usize] = if quick { &[256, 512] } else { &[256, 512, 1024, 2048] };
    // Seconds of measurement per figure (after a warm-up run); each figure takes at least 2 runs.
    let budget = if quick { 0.5 } else { 3.0 };
    for &n in sizes {
        let bench = MatmulBench::new(&gpu, n)?;
        bench.run(&gpu, 1)?; // warm-up: pipeline and memory first touch
        let (reps, secs) = run_for(budget, 2, |r| bench.run(&gpu, r))?;
        println!(
            "matmul n={n:>5}: {:8.2} GFLOP/s  ({reps} reps, {:.1} ms each)",
            bench.flops() * reps as f64 / secs / 1e9,
            1e3 * secs / reps as f64
        );
    }
    for &batch in &[256usize, 1024] {
        let (mut net, rows) = bench_mlp(gpu.clone(), batch)?;
        train_steps(&mut net, rows, batch, 2)?; // warm-up
        let (steps, secs) = run_for(budget, 3, |s| train_steps(&mut net, rows, batch, s))?;
        let sps = (steps * batch) as f64 / secs;
        let flops = 3.0 * net.model().forward_flops_per_sample() as f64 * sps;
        println!(
            "train MLP 784-512-512-10, batch {batch:>5}: {sps:10.0} samples/s  ({:.2} GFLOP/s, {steps} steps)",
            flops / 1e9
        );
    }
    Ok(())
}
