//! Higham & Higham, "Deep learning: an introduction for applied mathematicians" (SIAM Review,
//! 2019; arXiv 2018), as their MATLAB code has it: ten points in the unit square, the first five
//! class A and the rest class B; a 2-2-3-2 network with a sigmoid on every layer; weights and
//! biases drawn as 0.5·N(0, 1); a million steps of single-sample SGD (a point drawn uniformly
//! with replacement each step, η = 0.05) on ½‖y − F(x)‖²; the cost Σᵢ‖yᵢ − F(xᵢ)‖² every 10⁴
//! steps; and the decision regions on [0, 1]².
//!
//! A million steps of the training path's ~10 launches each would take over 8 minutes on
//! lavapipe; here they run through `exec::small_mlp`, thousands of steps per dispatch. The CPU
//! reference replays the same million steps for comparison.
//!
//!     cargo run --release --example higham [-- OUT.svg]      (default docs/higham.svg)

use std::time::Instant;

use gradflow::data::{BatchScheme, Batcher, Dataset};
use gradflow::error::Result;
use gradflow::exec::small_mlp::train_small_mlp;
use gradflow::exec::{CpuNetwork, Network};
use gradflow::optim::Sgd;
use gradflow::plot::{svg_with_regions, Chart, Regions, Series};
use gradflow::spec::{LayerSpec, Loss, Model};
use gradflow::spectrum::random_matrix::standard_normal;
use rand::{rngs::StdRng, SeedableRng};

const STEPS: usize = 1_000_000;
const EVERY: usize = 10_000;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "docs/higham.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let x1 = [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7f32];
    let x2 = [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6f32];
    let x: Vec<f32> = (0..10).flat_map(|i| [x1[i], x2[i]]).collect();
    let data = Dataset::new(x, (0..10).map(|i| u32::from(i >= 5)).collect(), 2, 2, "Higham's ten points")?;

    let l = |out| LayerSpec::Linear { out, bias: true };
    let model = Model::new(2, vec![l(2), LayerSpec::Sigmoid, l(3), LayerSpec::Sigmoid, l(2), LayerSpec::Sigmoid])?;
    // 0.5·N(0, 1) for every weight and bias (their rng(5000) is MATLAB's; this stream is ours).
    let mut rng = StdRng::seed_from_u64(5000);
    let mut p0 = vec![0.0f32; model.param_len];
    for t in &model.params {
        for v in &mut p0[t.offset..t.offset + t.len] {
            *v = (0.5 * standard_normal(&mut rng)) as f32;
        }
    }
    // With batch 1 and 2 outputs, gradflow's MSE, mean over the 2 outputs, is ½‖y − F(x)‖².
    let sgd = Sgd::new(0.05);
    let mut draws = Batcher::new(BatchScheme::Replacement, 10, 1, false, 5000)?;
    let mut schedule = Vec::with_capacity(STEPS);
    while schedule.len() < STEPS {
        schedule.extend(draws.next_epoch().into_iter().flatten().map(|i| i as u32));
    }
    schedule.truncate(STEPS);

    let gpu = gradflow::kernels::Gpu::new(None)?;
    let start = Instant::now();
    let run = train_small_mlp(&gpu, &model, Loss::Mse, &sgd, &p0, &data, &schedule, 1, EVERY)?;
    let gpu_secs = start.elapsed().as_secs_f64();
    // Their cost, Σᵢ‖yᵢ − F(xᵢ)‖², is 10 rows × 2 outputs × the mean squared error.
    let costs: Vec<f64> = run.costs.iter().map(|&c| 20.0 * c as f64).collect();

    let start = Instant::now();
    let mut cpu = CpuNetwork::new(model.clone(), Loss::Mse, sgd, p0.clone())?;
    cpu.set_train_data(&data)?;
    for i in &schedule {
        cpu.train_step(std::slice::from_ref(i))?;
    }
    let cpu_secs = start.elapsed().as_secs_f64();
    let cpu_cost = 20.0 * gradflow::train::evaluate(&mut cpu, &data, Loss::Mse)?.0 as f64;
    let cpu_params = cpu.params()?;
    let differ = run.params.iter().zip(&cpu_params).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);

    println!("Higham & Higham's 2-2-3-2 sigmoid network, {STEPS} single-sample SGD steps, η = 0.05");
    println!("{:>9}  {:>12}", "step", "cost");
    for (k, c) in costs.iter().enumerate() {
        if (k + 1) % 10 == 0 || k == 0 {
            println!("{:>9}  {c:>12.4e}", (k + 1) * EVERY);
        }
    }
    println!("GPU ({}): {gpu_secs:.1} s, through the many-steps kernel", gpu.info.name);
    println!("CPU reference, same steps: {cpu_secs:.1} s, final cost {cpu_cost:.4e}; largest parameter difference {differ:.2e}");

    // Classify the points and the unit square with the trained network.
    let mut net = CpuNetwork::new(model.clone(), Loss::Mse, Sgd::new(0.05), run.params.clone())?;
    let logits = net.predict(&data.x, 10)?;
    let predicted: Vec<usize> = logits.chunks(2).map(|o| usize::from(o[1] > o[0])).collect();
    let right = predicted.iter().zip(&data.labels).filter(|(p, l)| **p == **l as usize).count();
    println!("points classified correctly: {right} of 10");
    let n = 120;
    let grid: Vec<f32> =
        (0..n * n).flat_map(|i| [((i % n) as f32 + 0.5) / n as f32, ((i / n) as f32 + 0.5) / n as f32]).collect();
    let regions = net.predict(&grid, n * n)?.chunks(2).map(|o| usize::from(o[1] > o[0])).collect();
    let chart = Chart {
        title: "Cost Σ‖yᵢ − F(xᵢ)‖²".into(),
        x_label: "SGD step".into(),
        y_label: "cost".into(),
        series: vec![Series {
            name: "every 10⁴ steps".into(),
            points: costs.iter().enumerate().map(|(k, &c)| (((k + 1) * EVERY) as f64, c)).collect(),
        }],
        log_y: true,
        y_range: None,
        scatter: false,
    };
    let regions = Regions {
        title: "Decision regions".into(),
        bounds: (0.0, 1.0, 0.0, 1.0),
        resolution: n,
        classes: regions,
        points: (0..10).map(|i| (x1[i] as f64, x2[i] as f64, data.labels[i] as usize)).collect(),
        // The first five points (label 0) are class A.
        class_names: vec!["A".into(), "B".into()],
        axis_names: (String::new(), String::new()),
    };
    gradflow::plot::write(std::path::Path::new(&out), &svg_with_regions(&[chart], Some(&regions)))?;
    println!("wrote {out}");
    Ok(())
}
