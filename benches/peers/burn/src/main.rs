//! Burn peer for gradflow's `gradflow bench`: the same matmul and MLP-training workloads,
//! written the way a Burn user would write them, on Burn's default wgpu device. It prints a
//! table and writes the JSON schema shared with `gradflow bench --json`, so
//! `scripts/peers.sh` can put the two side by side.

use std::time::{Duration, Instant};

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::{Distribution, activation::relu};

/// Kept in step with the exact pin in Cargo.toml, so the JSON says what was measured.
const BURN_VERSION: &str = "0.22.1";

/// The reference MLP of gradflow's bench: 784→512→BN→ReLU→512→BN→ReLU→10.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    bn1: BatchNorm,
    fc2: Linear,
    bn2: BatchNorm,
    fc3: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(784, 512).init(device),
            bn1: BatchNormConfig::new(512).init(device),
            fc2: LinearConfig::new(512, 512).init(device),
            bn2: BatchNormConfig::new(512).init(device),
            fc3: LinearConfig::new(512, 10).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.fc1.forward(x)));
        let x = relu(self.bn2.forward(self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}

/// Burn is lazy and asynchronous (and fuses ops), so a wall clock means nothing until the
/// queue is drained; every timed region ends here.
fn sync(device: &Device) {
    device.sync().expect("device sync failed");
}

/// How many repetitions fill `target`, from one measured repetition; at least `min`.
fn reps_for(one: Duration, target: Duration, min: usize) -> usize {
    let one = one.as_secs_f64().max(1e-6);
    ((target.as_secs_f64() / one).ceil() as usize).max(min)
}

/// Returns (GFLOP/s, first_run_s).
fn bench_matmul(device: &Device, n: usize, target: Duration) -> (f64, f64) {
    let a = Tensor::<2>::random([n, n], Distribution::Default, device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, device);
    sync(device);

    // The first product of a shape pays for shader compilation and matmul autotuning; that
    // is a real cost to a user but not throughput, so it is reported on its own.
    let t = Instant::now();
    let c = a.clone().matmul(b.clone());
    sync(device);
    let first = t.elapsed().as_secs_f64();
    drop(c);

    // Two more untimed products so any lazily chosen kernel is settled, then one timed
    // product to size the timed loop.
    for _ in 0..2 {
        let _ = a.clone().matmul(b.clone());
    }
    sync(device);
    let t = Instant::now();
    let _ = a.clone().matmul(b.clone());
    sync(device);
    let reps = reps_for(t.elapsed(), target, 2);

    // Products are queued back to back and drained once, as a training loop would. Earlier
    // results are dropped unread; the last is read back so the region ends on a real result.
    // (That the dropped ones still run shows in GFLOP/s staying flat as reps grow.)
    let t = Instant::now();
    let mut last = None;
    for _ in 0..reps {
        last = Some(a.clone().matmul(b.clone()));
    }
    let corner: f32 = last.unwrap().slice(s![0..1, 0..1]).into_scalar();
    sync(device);
    let secs = t.elapsed().as_secs_f64();
    assert!(corner.is_finite());
    (2.0 * (n as f64).powi(3) * reps as f64 / secs / 1e9, first)
}

/// Returns (samples/s, first_step_s).
fn bench_mlp(device: &Device, batch: usize, target: Duration) -> (f64, f64) {
    const ROWS: usize = 8192;
    // The data lives on the device for the whole run, like gradflow's bench: this measures
    // the training step, not host-to-device copies.
    let xs = Tensor::<2>::random([ROWS, 784], Distribution::Default, device);
    let ys = Tensor::<1, Int>::arange(0..ROWS as i64, device).remainder_scalar(10);
    let mut model = Mlp::new(device);
    let mut optim = AdamConfig::new().init();
    let loss_fn: CrossEntropyLoss = CrossEntropyLossConfig::new().init(device);
    sync(device);

    let mut cursor = 0;
    let mut step = |model: Mlp| -> Mlp {
        let start = cursor * batch % ROWS;
        cursor += 1;
        let x = xs.clone().narrow(0, start, batch);
        let y = ys.clone().narrow(0, start, batch);
        let loss = loss_fn.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };

    let t = Instant::now();
    model = step(model);
    sync(device);
    let first = t.elapsed().as_secs_f64();

    // Warm-up: backward and Adam shapes get tuned/compiled in the first steps, and the
    // fusion backend needs a few repeats of a stream before it reuses its fused kernels.
    for _ in 0..5 {
        model = step(model);
    }
    sync(device);
    let t = Instant::now();
    model = step(model);
    sync(device);
    let steps = reps_for(t.elapsed(), target, 5);

    let t = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    sync(device);
    let secs = t.elapsed().as_secs_f64();
    drop(model);
    ((steps * batch) as f64 / secs, first)
}

fn main() {
    let mut quick = false;
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json_path = Some(args.next().expect("--json needs a file")),
            _ => {
                eprintln!("usage: burn-peer [--quick] [--json FILE]");
                std::process::exit(2);
            }
        }
    }

    // Explicit init (rather than the lazy `Device::default()`) hands back the wgpu setup, whose
    // adapter info names what the numbers were measured on.
    let (device, setup) = Device::wgpu_options().init_with_setup().expect("no wgpu adapter");
    let info = setup.adapter.get_info();
    let adapter = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
    println!("burn {BURN_VERSION} on {adapter}");

    let target = Duration::from_secs_f64(if quick { 1.0 } else { 2.0 });
    let sizes: &[usize] = if quick { &[256, 512] } else { &[256, 512, 1024, 2048] };
    let mut rows = Vec::new();
    println!("{:<8} {:>6} {:>14} {:>10}", "bench", "size", "throughput", "first_s");
    for &n in sizes {
        // Progress on stderr: on a software adapter a cold start can take minutes.
        eprintln!("matmul n={n}: compiling/autotuning, then timing...");
        let (gflops, first) = bench_matmul(&device, n, target);
        println!("{:<8} {n:>6} {gflops:>8.2} GFLOP/s {first:>10.3}", "matmul");
        rows.push(format!(r#"{{"bench":"matmul","n":{n},"gflops":{gflops:.4},"first_run_s":{first:.4}}}"#));
    }
    // Training needs the autodiff decorator over the same wgpu runtime.
    let train_device = device.clone().autodiff();
    for batch in [256, 1024] {
        eprintln!("mlp batch={batch}: compiling/autotuning, then timing...");
        let (sps, first) = bench_mlp(&train_device, batch, target);
        println!("{:<8} {batch:>6} {sps:>10.1} smp/s {first:>10.3}", "mlp");
        rows.push(format!(r#"{{"bench":"mlp","batch":{batch},"samples_per_s":{sps:.4},"first_step_s":{first:.4}}}"#));
    }

    if let Some(path) = json_path {
        let json = format!(
            r#"{{"tool":"burn","version":"{}","adapter":"{}","results":[{}]}}"#,
            BURN_VERSION,
            adapter.replace('\\', "\\\\").replace('"', "\\\""),
            rows.join(",")
        );
        std::fs::write(&path, json + "\n").expect("cannot write --json file");
    }
}
