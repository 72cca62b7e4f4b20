//! Criterion benchmarks: matmul GFLOP/s (throughput in FLOPs) and training samples/s on the
//! best adapter. `cargo bench` runs them; `gradflow bench` prints the same figures plainly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gradflow::bench::{bench_mlp, train_steps, MatmulBench};
use gradflow::kernels::Gpu;

fn open() -> Arc<Gpu> {
    let gpu = Gpu::new(None).unwrap_or_else(|e| panic!("benchmarks need an adapter: {e}"));
    eprintln!("adapter: {}", gpu.describe());
    Arc::new(gpu)
}

fn matmul(c: &mut Criterion) {
    let gpu = open();
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for n in [256usize, 512, 1024, 2048] {
        let bench = MatmulBench::new(&gpu, n).expect("matmul buffers");
        group.throughput(Throughput::Elements(bench.flops() as u64));
        group.bench_function(format!("n={n} (elements = FLOPs)"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                bench.run(&gpu, iters as usize).expect("matmul");
                t.elapsed()
            })
        });
    }
    group.finish();
}

fn training(c: &mut Criterion) {
    let gpu = open();
    let mut group = c.benchmark_group("train_mlp_784_512_512_10");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    for batch in [256usize, 1024] {
        let (mut net, rows) = bench_mlp(gpu.clone(), batch).expect("benchmark network");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch={batch} (elements = samples)"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                train_steps(&mut net, rows, batch, iters as usize).expect("training steps");
                t.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, training);
criterion_main!(benches);
