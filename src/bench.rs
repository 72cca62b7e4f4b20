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
        net.train_step(&idx)?;
    }
    net.gpu().wait()
}

/// Repeats `f(batch_of_reps)` with a doubling batch until `budget` seconds have passed (at least
/// `min_reps` reps); returns (reps, seconds).
fn run_for(budget: f64, min_reps: usize, f: &mut impl FnMut(usize) -> Result<()>) -> Result<(usize, f64)> {
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
        let (reps, secs) = run_for(budget, 2, &mut |r| bench.run(&gpu, r))?;
        println!(
            "matmul n={n:>5}: {:8.2} GFLOP/s  ({reps} reps, {:.1} ms each)",
            bench.flops() * reps as f64 / secs / 1e9,
            1e3 * secs / reps as f64
        );
    }
    for &batch in &[256usize, 1024] {
        let (mut net, rows) = bench_mlp(gpu.clone(), batch)?;
        train_steps(&mut net, rows, batch, 2)?; // warm-up
        let (steps, secs) = run_for(budget, 3, &mut |s| train_steps(&mut net, rows, batch, s))?;
        let sps = (steps * batch) as f64 / secs;
        let flops = 3.0 * net.model().forward_flops_per_sample() as f64 * sps;
        println!(
            "train MLP 784-512-512-10, batch {batch:>5}: {sps:10.0} samples/s  ({:.2} GFLOP/s, {steps} steps)",
            flops / 1e9
        );
    }
    let (m, n) = if quick { (1024, 256) } else { (4096, 1024) };
    let (fwd, bwd) = batchnorm_throughput(&gpu, m, n, budget)?;
    println!(
        "batch norm {m}×{n} + relu, training: forward {fwd:7.2} GB/s (16 B/value), backward {bwd:7.2} GB/s (20 B/value)"
    );
    let n = 1 << 22;
    let t = |s: &str| -> Result<crate::optim::Optimizer> {
        toml::from_str(s).map_err(|e| crate::error::Error::Usage(format!("benchmark optimizer: {e}")))
    };
    let optimizers = [
        ("sgd", t("type='sgd'\nlr=0.01")?),
        ("sgd momentum", t("type='sgd'\nlr=0.01\nmomentum=0.9")?),
        ("adagrad", t("type='adagrad'")?),
        ("rmsprop", t("type='rmsprop'")?),
        ("rmsprop centered+momentum", t("type='rmsprop'\ncentered=true\nmomentum=0.9")?),
        ("adam", t("type='adam'")?),
        ("adamw amsgrad", t("type='adamw'\namsgrad=true")?),
    ];
    for (name, opt) in &optimizers {
        let (update, copy) = optimizer_throughput(&gpu, opt, n, budget)?;
        println!(
            "optimizer {name:<26} {update:7.2} GB/s ({} B/param), copy kernel {copy:7.2} GB/s: {:.0}% of copy",
            optimizer_bytes_per_param(opt),
            100.0 * update / copy
        );
    }
    Ok(())
}

/// Bytes one update reads and writes per parameter (f32 everything; the group table's u32 per
/// 64 parameters is left out): parameter and gradient in, parameter out, plus each state
/// slot the configuration touches, in and out.
pub fn optimizer_bytes_per_param(opt: &crate::optim::Optimizer) -> usize {
    use crate::optim::Optimizer;
    let slots_touched = match opt.normalized() {
        Optimizer::Sgd(s) if s.momentum.value() == 0.0 => 0,
        Optimizer::Sgd(_) | Optimizer::Adagrad(_) => 1,
        Optimizer::Rmsprop(r) => 1 + usize::from(r.centered) + usize::from(r.momentum > 0.0),
        Optimizer::Adam(a) => 2 + usize::from(a.amsgrad),
        Optimizer::Adamw(_) => 2,
    };
    4 * (3 + 2 * slots_touched)
}

/// (GB/s of the update, GB/s of a plain copy) over `n` parameters on `gpu`.
pub fn optimizer_throughput(gpu: &Gpu, opt: &crate::optim::Optimizer, n: usize, budget: f64) -> Result<(f64, f64)> {
    use crate::gpu::optimizer::GpuOptimizer;
    use crate::optim::ParamGroups;
    let param = gpu.upload("bench parameters", &random(n, 4))?;
    let grad = gpu.upload("bench gradients", &random(n, 5))?;
    let groups = ParamGroups {
        groups: vec![(opt.lr(), opt.weight_decay())],
        block_group: vec![0; n.div_ceil(crate::nn::PARAM_ALIGN)],
    };
    let mut o = GpuOptimizer::new(gpu, &param, &grad, opt, groups, None)?;
    let mut step = 0u32;
    let mut run = |reps: usize| -> Result<()> {
        for _ in 0..reps {
            step += 1;
            o.prepare(gpu, step, 1.0);
            let launches: Vec<&Dispatch> = o.dispatches().collect();
            submit(gpu, "bench optimizer", &launches)?;
        }
        gpu.wait()
    };
    run(1)?;
    let (reps, secs) = run_for(budget, 3, &mut run)?;
    let update = (optimizer_bytes_per_param(opt) * n * reps) as f64 / secs / 1e9;
    let dst = gpu.storage("bench copy", n)?;
    let copy = gpu.copy_f32(&param, &dst, n)?;
    let mut run_copy = |reps: usize| -> Result<()> {
        for _ in 0..reps {
            submit(gpu, "bench copy", &[&copy])?;
        }
        gpu.wait()
    };
    run_copy(1)?;
    let (reps, secs) = run_for(budget, 3, &mut run_copy)?;
    Ok((update, (8 * n * reps) as f64 / secs / 1e9))
}

/// (forward GB/s, backward GB/s) of a training-mode batch norm with fused ReLU on an [m, n] batch.
/// Bytes per value: forward reads x three times (two statistics passes, then normalise) and writes
/// y (16 B); backward reads x and dy twice (reduction, then dx) and writes dx (20 B).
pub fn batchnorm_throughput(gpu: &Gpu, m: usize, n: usize, budget: f64) -> Result<(f64, f64)> {
    use crate::gpu::kernels::{BnParams, BN_TRAIN};
    let x = gpu.upload("bench x", &random(m * n, 6))?;
    let dy = gpu.upload("bench dy", &random(m * n, 7))?;
    let params = gpu.upload("bench gamma, beta", &[vec![1.0f32; n], vec![0.0; n]].concat())?;
    let running = gpu.upload("bench running", &[vec![0.0f32; n], vec![1.0; n]].concat())?;
    let stats = gpu.storage("bench stats", 3 * n)?;
    let grads = gpu.storage("bench grads", 2 * n)?;
    let y = gpu.storage("bench y", m * n)?;
    let dx = gpu.storage("bench dx", m * n)?;
    let p = BnParams {
        rows: m as u32,
        cols: n as u32,
        beta_offset: n as u32,
        var_offset: n as u32,
        flags: BN_TRAIN,
        act: crate::nn::Activation::Relu.code(),
        eps: 1e-5,
        keep: 0.9,
        take: 0.1,
        ..Default::default()
    };
    let d = |entry, dy_buf: Option<&GpuBuffer>, out: &GpuBuffer| {
        gpu.batchnorm(entry, &x, dy_buf, &params, &running, &stats, Some(out), &grads, p)
    };
    let forward = [d("batchnorm_stats", None, &y)?, d("batchnorm_forward", None, &y)?];
    let backward = [d("batchnorm_backward_reduce", Some(&dy), &dx)?, d("batchnorm_backward_input", Some(&dy), &dx)?];
    let time = |launches: &[Dispatch]| -> Result<f64> {
        let refs: Vec<&Dispatch> = launches.iter().collect();
        let mut run = |reps: usize| -> Result<()> {
            for _ in 0..reps {
                submit(gpu, "bench batch norm", &refs)?;
            }
            gpu.wait()
        };
        run(1)?;
        let (reps, secs) = run_for(budget, 3, &mut run)?;
        Ok(reps as f64 / secs)
    };
    let values = (m * n) as f64;
    let fwd = time(&forward)? * 16.0 * values / 1e9;
    let bwd = time(&backward)? * 20.0 * values / 1e9;
    Ok((fwd, bwd))
}
