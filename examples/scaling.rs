//! The data-parallel scaling table of the README ("Many GPUs"), from `dist::cost`: the reference
//! MLP and a 100 M-parameter MLP on 8 and 64 GPUs over 25 and 100 Gb/s links, each GPU keeping
//! its batch (weak scaling; efficiency = compute / step).
//!
//! Assumptions, stated once: compute per global batch from the H200 measurements in the README
//! (the reference MLP at 1,259,271 samples/s at batch 1024; the large MLP's 6·P FLOPs per sample
//! at the 18.4 TFLOP/s gradflow's matmul reached at n = 2048), shared out perfectly; 5 µs per
//! message; the gradient's round trip to the host at 25 GB/s; no overlap.
//!
//! `cargo run --release --example scaling`

use gradflow::dist::cost::{step_cost, Link};
use gradflow::spec::{LayerSpec, Model};

fn mlp(inputs: usize, widths: &[usize], bn: bool) -> Model {
    let mut layers = Vec::new();
    for (i, &w) in widths.iter().enumerate() {
        layers.push(LayerSpec::Linear { out: w, bias: true });
        if i + 1 < widths.len() {
            if bn {
                layers.push(LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false });
            }
            layers.push(LayerSpec::Relu);
        }
    }
    Model::new(inputs, layers).expect("a valid MLP")
}

fn main() {
    let reference = mlp(784, &[512, 512, 10], true);
    let large = mlp(4096, &[4096, 4096, 4096, 4096, 4096, 4096, 10], false);
    let count = |m: &Model| m.params.iter().map(|t| t.len).sum::<usize>();
    let (p_ref, p_large) = (count(&reference), count(&large));
    // Seconds per sample on one H200 (see the assumptions above).
    let per_sample_ref = 1.0 / 1_259_271.0;
    let per_sample_large = 6.0 * p_large as f64 / 18.4e12;
    println!("| model | parameters | batch per GPU | GPUs | link | compute | gradient to host and back | all-reduce | step | efficiency |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, p, per_gpu, per_sample) in
        [("reference MLP", p_ref, 128, per_sample_ref), ("100 M MLP", p_large, 1024, per_sample_large)]
    {
        for ranks in [8, 64] {
            for gbit in [25.0, 100.0] {
                let link = Link { bits_per_sec: gbit * 1e9, latency_s: 5e-6, pcie_bytes_per_sec: 25e9 };
                // The global batch's compute on one GPU, shared out over `ranks`.
                let one = per_sample * (per_gpu * ranks) as f64;
                let c = step_cost(p, ranks, one, &link);
                let ms = |s: f64| format!("{:.2} ms", s * 1e3);
                println!(
                    "| {name} | {p} | {per_gpu} | {ranks} | {gbit} Gb/s | {} | {} | {} | {} | {:.0} % |",
                    ms(c.compute_s),
                    ms(c.staging_s),
                    ms(c.allreduce_s),
                    ms(c.total()),
                    100.0 * c.efficiency(one, ranks)
                );
            }
        }
    }
}
