//! Throughput measurements shared by `gradflow bench` and `benches/` (criterion): matmul GFLOP/s
//! and training samples/s, timed around whole submits with the queue drained.

use std::sync::Arc;
use web_time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::data::Dataset;
use crate::device::GpuBuffer;
use crate::device::{submit, Dispatch};
use crate::error::{Error, Result};
use crate::exec::{GpuNetwork, Network};
use crate::kernels::Gpu;
use crate::kernels::{BnEntry, MatmulParams};
use crate::optim::{Adam, Sgd};
use crate::spec::{LayerSpec, Loss, Model};

use crate::train::Placement;

pub mod small_models;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Which of a Linear layer's three products a benchmark runs (their operand layouts differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// y = x·Wᵀ: x [m, k], W [n, k].
    Forward,
    /// dx = dz·W: dz [m, k], W [k, n].
    BackwardInput,
    /// dW = dzᵀ·x: dz [k, m], x [k, n].
    BackwardWeight,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Forward, Product::BackwardInput, Product::BackwardWeight];

    pub fn name(self) -> &'static str {
        match self {
            Product::Forward => "matmul",
            Product::BackwardInput => "matmul_backward_input",
            Product::BackwardWeight => "matmul_backward_weight",
        }
    }

    /// The launch parameters of an m×k·k×n product in this layout (the builders training uses).
    pub fn params(self, m: usize, k: usize, n: usize) -> MatmulParams {
        match self {
            Product::Forward => MatmulParams::linear_forward(m, k, n),
            Product::BackwardInput => MatmulParams::linear_backward_input(m, n, k),
            Product::BackwardWeight => MatmulParams::linear_backward_weight(k, n, m),
        }
    }
}

/// An m×k by k×n product ready to launch, with its buffers.
pub struct MatmulBench {
    pub shape: (usize, usize, usize),
    pub dispatch: Dispatch,
    _buffers: [GpuBuffer; 3],
}

impl MatmulBench {
    /// The n×n forward product.
    pub fn new(gpu: &Gpu, n: usize) -> Result<MatmulBench> {
        MatmulBench::product(gpu, Product::Forward, n, n, n)
    }

    pub fn product(gpu: &Gpu, product: Product, m: usize, k: usize, n: usize) -> Result<MatmulBench> {
        let a = gpu.upload("bench a", &random(m * k, 1))?;
        let b = gpu.upload("bench b", &random(k * n, 2))?;
        let c = gpu.storage("bench c", m * n)?;
        let dispatch = gpu.matmul(&a, &b, None, &c, None, product.params(m, k, n))?;
        Ok(MatmulBench { shape: (m, k, n), dispatch, _buffers: [a, b, c] })
    }

    pub fn flops(&self) -> f64 {
        let (m, k, n) = self.shape;
        2.0 * m as f64 * k as f64 * n as f64
    }

    /// Runs `reps` products (one submit each) and waits for the queue to drain.
    pub fn run(&self, gpu: &Gpu, reps: usize) -> Result<()> {
        for _ in 0..reps {
            submit(gpu, "bench matmul", &[&self.dispatch])?;
        }
        gpu.wait()
    }
}

/// The reference MLP of the peer comparison: 784→Linear(512)→BatchNorm→ReLU→Linear(512)→
/// BatchNorm→ReLU→Linear(10), cross-entropy, Adam (lr 1e-3), on random data resident on the device.
pub fn bench_mlp(gpu: Arc<Gpu>, batch: usize) -> Result<(GpuNetwork, usize)> {
    let bn = || LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false };
    let layers = vec![
        LayerSpec::Linear { out: 512, bias: true },
        bn(),
        LayerSpec::Relu,
        LayerSpec::Linear { out: 512, bias: true },
        bn(),
        LayerSpec::Relu,
        LayerSpec::Linear { out: 10, bias: true },
    ];
    let adam = Adam { lr: 1e-3, ..toml::from_str("").map_err(|e| Error::Usage(format!("adam defaults: {e}")))? };
    classifier_on_random_data(gpu, 784, layers, 8192, 3, adam, batch)
}

/// A 10-class cross-entropy model on `rows` random rows resident on the device.
fn classifier_on_random_data(
    gpu: Arc<Gpu>,
    inputs: usize,
    layers: Vec<LayerSpec>,
    rows: usize,
    seed: u64,
    setup: impl Into<crate::optim::OptimizerSetup>,
    batch: usize,
) -> Result<(GpuNetwork, usize)> {
    let model = Model::new(inputs, layers)?;
    let params = model.init_params(0);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 10).collect();
    let data = Dataset::new(random(rows * inputs, seed), labels, inputs, 10, "benchmark data")?;
    let mut net = GpuNetwork::new(gpu, model, Loss::CrossEntropy, setup, &params, batch)?;
    net.set_train_data(&data)?;
    Ok((net, rows))
}

/// Higham & Higham's 2-2-3-2 sigmoid network (sigmoid on every layer, MSE), SGD, batch 1: a step
/// with almost no arithmetic, so its cost is the per-step overhead.
pub fn bench_higham(gpu: Arc<Gpu>) -> Result<(GpuNetwork, usize)> {
    let layers = vec![
        LayerSpec::Linear { out: 2, bias: true },
        LayerSpec::Sigmoid,
        LayerSpec::Linear { out: 3, bias: true },
        LayerSpec::Sigmoid,
        LayerSpec::Linear { out: 2, bias: true },
        LayerSpec::Sigmoid,
    ];
    let model = Model::new(2, layers)?;
    let params = model.init_params(0);
    let rows = 10;
    let data = Dataset::new(random(rows * 2, 8), (0..rows as u32).map(|i| i % 2).collect(), 2, 2, "Higham data")?;
    let mut net = GpuNetwork::new(gpu, model, Loss::Mse, Sgd::new(0.05), &params, 1)?;
    net.set_train_data(&data)?;
    Ok((net, rows))
}

/// Runs `steps` training steps of `batch` rows as training does (`Network::train_steps`, the
/// network's steps per submit at a time) and waits for the queue to drain.
pub fn train_steps(net: &mut GpuNetwork, rows: usize, batch: usize, steps: usize) -> Result<()> {
    let batches: Vec<Vec<u32>> =
        (0..steps).map(|s| (0..batch).map(|i| ((s * batch + i) % rows) as u32).collect()).collect();
    for chunk in batches.chunks(net.steps_per_submit()) {
        let chunk: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        net.train_steps(&chunk)?;
    }
    net.gpu().wait()
}

/// `f` with one step per submit: the device's timestamps are taken per submit.
fn one_per_submit<T>(net: &mut GpuNetwork, f: impl FnOnce(&mut GpuNetwork) -> Result<T>) -> Result<T> {
    let per = net.steps_per_submit();
    net.set_steps_per_submit(1);
    let out = f(net);
    net.set_steps_per_submit(per);
    out
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

/// The figures of one `gradflow bench` run: printed as they come, and written as JSON for
/// `scripts/peers.sh` and `scripts/gpu-report.sh`.
pub struct Report {
    pub adapter: String,
    pub schedule: String,
    pub results: Vec<serde_json::Value>,
}

impl Report {
    fn add(&mut self, line: String, row: serde_json::Value) {
        crate::say!("{line}");
        self.results.push(row);
    }

    pub fn to_json(&self) -> String {
        let doc = serde_json::json!({
            "tool": "gradflow",
            "adapter": self.adapter,
            "matmul_schedule": self.schedule,
            "results": self.results,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

/// `gradflow bench`: every figure on the chosen adapter, and `json` (a path) if given.
pub fn run(placement: &Placement, quick: bool, json: Option<&std::path::Path>) -> Result<()> {
    use serde_json::json;
    let opened = Instant::now();
    let gpu = Arc::new(Gpu::new(placement.adapter.as_deref())?);
    let open_s = opened.elapsed().as_secs_f64();
    let schedule = gpu.tuning.as_ref().map_or(String::new(), |t| t.describe());
    crate::say!("adapter: {}", gpu.describe());
    crate::say!("{schedule} (device opened in {open_s:.2} s)");
    let mut report = Report { adapter: gpu.describe(), schedule, results: Vec::new() };
    let sizes: &[usize] = if quick { &[256, 512] } else { &[256, 512, 1024, 2048] };
    // Seconds of measurement per figure (after a warm-up run); each figure takes at least 2 runs.
    let budget = if quick { 0.5 } else { 2.0 };
    let time_product = |product: Product, (m, k, n): (usize, usize, usize)| -> Result<(f64, f64)> {
        let bench = MatmulBench::product(&gpu, product, m, k, n)?;
        let first = Instant::now();
        bench.run(&gpu, 1)?; // warm-up: pipeline compilation and memory first touch
        let first_s = first.elapsed().as_secs_f64();
        let (reps, secs) = run_for(budget, 2, &mut |r| bench.run(&gpu, r))?;
        Ok((bench.flops() * reps as f64 / secs / 1e9, first_s))
    };
    for product in Product::ALL {
        for &n in sizes {
            let (gflops, first_s) = time_product(product, (n, n, n))?;
            report.add(
                format!("{:<23} n={n:>5}: {gflops:8.2} GFLOP/s", product.name()),
                json!({"bench": product.name(), "n": n, "gflops": gflops, "first_run_s": first_s}),
            );
        }
    }
    // The reference MLP's own products at batch 256: its first layer's three.
    for product in Product::ALL {
        let shape = match product {
            Product::Forward => (256, 784, 512),
            Product::BackwardInput => (256, 512, 784),
            Product::BackwardWeight => (512, 256, 784),
        };
        let (gflops, _) = time_product(product, shape)?;
        let (m, k, n) = shape;
        report.add(
            format!("{:<23} {m}×{k}·{k}×{n}: {gflops:8.2} GFLOP/s (reference MLP, layer 1)", product.name()),
            json!({"bench": format!("{}_mlp_shape", product.name()), "m": m, "k": k, "n": n, "gflops": gflops}),
        );
    }
    type Build = fn(Arc<Gpu>, usize) -> Result<(GpuNetwork, usize)>;
    let mlps: [(&str, usize, Build); 3] = [
        ("784-512-BN-512-BN-10 (Adam)", 256, bench_mlp),
        ("784-512-BN-512-BN-10 (Adam)", 1024, bench_mlp),
        ("64-128-64-10 (SGD momentum)", 32, |gpu, _| bench_small(gpu)),
    ];
    for &(name, batch, build) in &mlps {
        let first = Instant::now();
        let (mut net, rows) = build(gpu.clone(), batch)?;
        train_steps(&mut net, rows, batch, 1)?; // warm-up, timed: time to the first result
        let first_s = first.elapsed().as_secs_f64();
        let (steps, secs) = run_for(budget, 3, &mut |s| train_steps(&mut net, rows, batch, s))?;
        let sps = (steps * batch) as f64 / secs;
        let device = one_per_submit(&mut net, |net| {
            device_seconds_per_step(&gpu, 20, &mut |s| train_steps(net, rows, batch, s))
        })?;
        let device_text = device.map_or(String::new(), |d| format!(", {:.0} µs/step on the device", d * 1e6));
        report.add(
            format!(
                "train MLP {name}, batch {batch:>5}: {sps:10.0} samples/s  (first step {first_s:.2} s{device_text})"
            ),
            json!({"bench": "mlp", "model": name, "batch": batch, "samples_per_s": sps, "first_step_s": first_s,
                   "device_s_per_step": device, "wall_s_per_step": secs / steps as f64}),
        );
    }
    for case in small_models::cases() {
        let r = small_models::measure(&gpu, &case, budget)?;
        let best = r.fused.unwrap_or(0.0).max(r.per_op);
        let fused_text = r.fused.map_or("does not fit".to_string(), |f| format!("{f:9.0}"));
        let chosen = if r.auto_fused { "fused" } else { "per-op" };
        report.add(
            format!(
                "small model {:<42} batch {:>2}: GPU per-op {:9.0}, fused {fused_text} (chosen: {chosen}), CPU reference {:9.0} samples/s; best GPU / CPU {:.2}×",
                case.name,
                case.batch,
                r.per_op,
                r.cpu,
                best / r.cpu
            ),
            json!({"bench": "small_model", "model": case.name, "batch": case.batch, "gpu_per_op_samples_per_s": r.per_op,
                   "gpu_fused_samples_per_s": r.fused, "auto_fused": r.auto_fused, "cpu_samples_per_s": r.cpu}),
        );
        // The peers' schema (scripts/peers.sh): the GPU path on the step it chooses by itself.
        let chosen_rate = if r.auto_fused { r.fused.unwrap_or(r.per_op) } else { r.per_op };
        report.results.push(json!({"bench": "small", "model": case.key, "samples_per_s": chosen_rate,
                                   "us_per_step": case.batch as f64 / chosen_rate * 1e6,
                                   "cpu_reference_samples_per_s": r.cpu}));
        let models = 16;
        if let Some(all) = small_models::measure_batched(&gpu, &case, models, budget)? {
            report.add(
                format!(
                    "  {models} models side by side: {models} runs, {all:9.0} samples/s in all ({:.2}× one model's best GPU rate, {:.2}× the CPU reference's)",
                    all / best,
                    all / r.cpu
                ),
                json!({"bench": "small_model_batched", "model": case.name, "batch": case.batch, "models": models,
                       "samples_per_s": all}),
            );
        }
    }
    let digits = &small_models::cases()[0];
    let epochs = if quick { 3 } else { 30 };
    let (on_gpu, on_cpu) = small_models::measure_sweep(&gpu, digits, epochs)?;
    report.add(
        format!(
            "sweep of 16 digits-shape runs (4 optimizers × 4 seeds, {epochs} epochs): GPU one after another {on_gpu:9.0}, CPU reference one per core {on_cpu:9.0} samples/s in all"
        ),
        json!({"bench": "small_sweep", "model": "digits x16", "epochs": epochs, "samples_per_s": on_gpu.max(on_cpu),
               "gpu_samples_per_s": on_gpu, "cpu_threads_samples_per_s": on_cpu}),
    );
    // The per-op step, the fused one with the update in a launch of its own, and the fused one
    // as training runs it (the update in the same launch where the adapter allows).
    let forms = [("per-op", false, false), ("fused, update apart", true, false), ("fused with update", true, true)];
    for (step, fused, with_update) in forms {
        if with_update && !gpu.small_net_trains() {
            continue;
        }
        for per_submit in [1, crate::exec::DEFAULT_STEPS_PER_SUBMIT] {
            let (host_us, submit_us, wall_us, device_us) =
                step_overhead(&gpu, budget, per_submit, fused.then_some(with_update))?;
            let device_text = device_us.map_or(String::new(), |d| format!(", {d:7.1} µs on the device"));
            report.add(
                format!(
                    "step of the 2-2-3-2 sigmoid net, batch 1, {step:<19}, {per_submit:>2} per submit: {host_us:7.1} µs host, {submit_us:7.1} µs in queue.submit, {wall_us:7.1} µs wall{device_text}"
                ),
                json!({"bench": "step_overhead", "model": "2-2-3-2", "fused": fused, "update_in_launch": with_update, "steps_per_submit": per_submit,
                       "host_us": host_us, "submit_us": submit_us, "wall_us": wall_us, "device_us": device_us}),
            );
        }
    }
    let (m, n) = if quick { (1024, 256) } else { (4096, 1024) };
    let copy = copy_throughput(&gpu, m * n, budget)?;
    report.add(
        format!("copy kernel {:>26} {copy:7.2} GB/s (8 B/value)", format!("{m}×{n}:")),
        json!({"bench": "bandwidth", "kernel": "copy", "gbps": copy}),
    );
    let (fwd, bwd) = batchnorm_throughput(&gpu, m, n, budget)?;
    for (kernel, gbps, bytes) in [("batchnorm_forward", fwd, 16), ("batchnorm_backward", bwd, 20)] {
        report.add(
            format!(
                "{kernel:<18} {m}×{n} + relu: {gbps:7.2} GB/s ({bytes} B/value), {:.0}% of copy",
                100.0 * gbps / copy
            ),
            json!({"bench": "bandwidth", "kernel": kernel, "gbps": gbps, "copy_gbps": copy}),
        );
    }
    let n = 1 << 22;
    let t = |s: &str| -> Result<crate::optim::Optimizer> {
        toml::from_str(s).map_err(|e| Error::Usage(format!("benchmark optimizer: {e}")))
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
        report.add(
            format!(
                "optimizer {name:<26} {update:7.2} GB/s ({} B/param), copy kernel {copy:7.2} GB/s: {:.0}% of copy",
                optimizer_bytes_per_param(opt),
                100.0 * update / copy
            ),
            json!({"bench": "bandwidth", "kernel": format!("optimizer {name}"), "gbps": update, "copy_gbps": copy}),
        );
    }
    if let Some(path) = json {
        std::fs::write(path, report.to_json())
            .map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
        crate::say!("wrote {}", path.display());
    }
    Ok(())
}

/// Mean device seconds per step of `run(steps)` from timestamp queries around each step's pass,
/// or None where the adapter has no timestamps.
pub fn device_seconds_per_step(
    gpu: &Gpu,
    steps: usize,
    run: &mut impl FnMut(usize) -> Result<()>,
) -> Result<Option<f64>> {
    if !gpu.start_pass_timer(steps as u32) {
        return Ok(None);
    }
    let ran = run(steps);
    let times = gpu.finish_pass_timer()?;
    ran?;
    Ok((!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64))
}

/// The default digits run's model on random data: 64→Linear(128)→ReLU→Linear(64)→ReLU→Linear(10),
/// cross-entropy, SGD with momentum 0.9, batch 32: a small model whose step is mostly overhead.
pub fn bench_small(gpu: Arc<Gpu>) -> Result<(GpuNetwork, usize)> {
    let layers = vec![
        LayerSpec::Linear { out: 128, bias: true },
        LayerSpec::Relu,
        LayerSpec::Linear { out: 64, bias: true },
        LayerSpec::Relu,
        LayerSpec::Linear { out: 10, bias: true },
    ];
    let sgd = Sgd { momentum: crate::optim::MomentumSpec::Value(0.9), ..Sgd::new(0.05) };
    classifier_on_random_data(gpu, 64, layers, 1440, 4, sgd, 32)
}

/// Per-step cost of the 2-2-3-2 net at batch 1 on the per-op step (`fused` None) or the fused
/// one (Some(with the update in its launch)) with `per_submit` steps per submit, in µs: (host time outside `queue.submit`, time inside it, wall
/// time with the queue drained at the end, device time from timestamps, taken one step per
/// submit and only for `per_submit` 1).
pub fn step_overhead(
    gpu: &Arc<Gpu>,
    budget: f64,
    per_submit: usize,
    fused: Option<bool>,
) -> Result<(f64, f64, f64, Option<f64>)> {
    use std::sync::atomic::Ordering;
    let (mut net, rows) = bench_higham(gpu.clone())?;
    net.set_small_net(fused.is_some())?;
    net.set_fused_update(fused == Some(true))?;
    net.set_steps_per_submit(per_submit);
    train_steps(&mut net, rows, 1, 10)?;
    let submit_before = crate::device::SUBMIT_NANOS.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut steps = 0;
    let mut host = 0.0;
    let batches: Vec<[u32; 1]> = (0..rows as u32).map(|r| [r]).collect();
    while steps < 100 || start.elapsed().as_secs_f64() < budget.min(1.0) {
        let t = Instant::now();
        for s in (0..96).step_by(per_submit) {
            let chunk: Vec<&[u32]> = (s..(s + per_submit).min(96)).map(|i| &batches[(steps + i) % rows][..]).collect();
            net.train_steps(&chunk)?;
        }
        host += t.elapsed().as_secs_f64();
        steps += 96;
    }
    gpu.wait()?;
    if per_submit > 1 {
        let wall = start.elapsed().as_secs_f64();
        let submit = (crate::device::SUBMIT_NANOS.load(Ordering::Relaxed) - submit_before) as f64 * 1e-9;
        let per = |s: f64| s / steps as f64 * 1e6;
        return Ok((per(host - submit), per(submit), per(wall), None));
    }
    let wall = start.elapsed().as_secs_f64();
    let submit = (crate::device::SUBMIT_NANOS.load(Ordering::Relaxed) - submit_before) as f64 * 1e-9;
    let per = |s: f64| s / steps as f64 * 1e6;
    let mut step = 0;
    let device = device_seconds_per_step(gpu, 100, &mut |n| {
        for _ in 0..n {
            net.train_step(&[(step % rows) as u32])?;
            step += 1;
        }
        gpu.wait()
    })?;
    Ok((per(host - submit), per(submit), per(wall), device.map(|d| d * 1e6)))
}

/// GB/s of the plain copy kernel over `n` values (read 4 B, write 4 B each).
pub fn copy_throughput(gpu: &Gpu, n: usize, budget: f64) -> Result<f64> {
    let src = gpu.upload("bench copy source", &random(n, 9))?;
    let dst = gpu.storage("bench copy", n)?;
    let copy = gpu.copy_f32(&src, &dst, n)?;
    let mut run = |reps: usize| -> Result<()> {
        for _ in 0..reps {
            submit(gpu, "bench copy", &[&copy])?;
        }
        gpu.wait()
    };
    run(1)?;
    let (reps, secs) = run_for(budget, 3, &mut run)?;
    Ok((8 * n * reps) as f64 / secs / 1e9)
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
    use crate::kernels::optim::GpuOptimizer;
    use crate::optim::ParamGroups;
    let param = gpu.upload("bench parameters", &random(n, 4))?;
    let grad = gpu.upload("bench gradients", &random(n, 5))?;
    let groups = ParamGroups::flat(opt, n);
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
    Ok((update, copy_throughput(gpu, n, budget)?))
}

/// (forward GB/s, backward GB/s) of a training-mode batch norm with fused ReLU on an [m, n] batch.
/// Bytes per value: forward reads x three times (two statistics passes, then normalise) and writes
/// y (16 B); backward reads x and dy twice (reduction, then dx) and writes dx (20 B).
pub fn batchnorm_throughput(gpu: &Gpu, m: usize, n: usize, budget: f64) -> Result<(f64, f64)> {
    use crate::kernels::BnParams;
    let x = gpu.upload("bench x", &random(m * n, 6))?;
    let dy = gpu.upload("bench dy", &random(m * n, 7))?;
    let params = gpu.upload("bench gamma, beta", &[vec![1.0f32; n], vec![0.0; n]].concat())?;
    let running = gpu.upload("bench running", &[vec![0.0f32; n], vec![1.0; n]].concat())?;
    let stats = gpu.storage("bench stats", 3 * n)?;
    let grads = gpu.storage("bench grads", 2 * n)?;
    let y = gpu.storage("bench y", m * n)?;
    let dx = gpu.storage("bench dx", m * n)?;
    let p = BnParams::layer(m, n, 0, n, 0, n, 1e-5, crate::spec::Act::new(crate::spec::Activation::Relu)).training(0.1);
    let d = |entry, dy_buf: Option<&GpuBuffer>, out: &GpuBuffer| {
        gpu.batchnorm(entry, &x, dy_buf, &params, &running, &stats, Some(out), &grads, p)
    };
    let forward = [d(BnEntry::Stats, None, &y)?, d(BnEntry::Forward, None, &y)?];
    let backward = [d(BnEntry::BackwardReduce, Some(&dy), &dx)?, d(BnEntry::BackwardInput, Some(&dy), &dx)?];
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
