//! The many-steps kernel (exec::small_mlp) against the CPU reference replaying the same step
//! schedule: Higham & Higham's 2-2-3-2 sigmoid network with MSE and single-sample SGD, and a
//! cross-entropy model with momentum, dampening and batches of 4; then the limits it refuses.
//!
//! Tolerance, as the training-run tests (tests/networks.rs): each step's gradient entries are f32
//! sums along a chain of L layers of at most K = max(batch, width) terms, each within γ_K of exact
//! relative to Σ|terms|, so over s steps of a trajectory that does not amplify errors the
//! parameters agree to s·L·K·u relative (the measured share is printed).

mod common;

use common::gpu;
use gradflow::data::{BatchScheme, Batcher, Dataset};
use gradflow::exec::small_mlp::{check_supported, train_small_mlp};
use gradflow::exec::{CpuNetwork, Network};
use gradflow::optim::{MomentumSpec, Sgd};
use gradflow::spec::{LayerSpec, Loss, Model};
use rand::{rngs::StdRng, Rng, SeedableRng};

const U: f64 = f32::EPSILON as f64 / 2.0;

fn schedule(n: usize, batch: usize, steps: usize, seed: u64) -> Vec<u32> {
    let mut b = Batcher::new(BatchScheme::Replacement, n, batch, false, seed).unwrap();
    let mut out = Vec::with_capacity(steps * batch);
    while out.len() < steps * batch {
        for step in b.next_epoch() {
            out.extend(step.iter().map(|&i| i as u32));
        }
    }
    out.truncate(steps * batch);
    out
}

/// Runs both paths and checks parameters and the recorded costs; returns the worst share.
#[allow(clippy::too_many_arguments)]
fn agree(
    model: &Model,
    loss: Loss,
    sgd: Sgd,
    data: &Dataset,
    batch: usize,
    steps: usize,
    every: usize,
    seed: u64,
) -> f64 {
    let p0 = model.init_params(seed);
    let plan = schedule(data.n, batch, steps, seed + 1);
    let run = train_small_mlp(gpu(), model, loss, &sgd, &p0, data, &plan, batch, every).unwrap();
    let mut cpu = CpuNetwork::new(model.clone(), loss, sgd, p0).unwrap();
    cpu.set_train_data(data).unwrap();
    let mut cpu_costs = Vec::new();
    for (k, step) in plan.chunks(batch).enumerate() {
        cpu.train_step(step).unwrap();
        if (k + 1) % every == 0 {
            cpu_costs.push(gradflow::train::evaluate(&mut cpu, data, loss).unwrap().0);
        }
    }
    let layers = model.stages.len() as f64;
    let widest = (0..=model.stages.len()).map(|v| model.width_of(v)).max().unwrap();
    let tol = steps as f64 * layers * batch.max(widest) as f64 * U;
    let want = cpu.params().unwrap();
    let mut worst: f64 = 0.0;
    for t in &model.params {
        let (got, exp) = (&run.params[t.offset..t.offset + t.len], &want[t.offset..t.offset + t.len]);
        for (i, (g, w)) in got.iter().zip(exp).enumerate() {
            let err = (g - w).abs() as f64;
            let bound = tol * (w.abs() as f64 + 1.0);
            assert!(err <= bound, "{}[{i}]: gpu {g} cpu {w} (bound {bound:e})", t.name);
            worst = worst.max(err / bound);
        }
    }
    assert_eq!(run.costs.len(), cpu_costs.len());
    for (k, (g, c)) in run.costs.iter().zip(&cpu_costs).enumerate() {
        let bound = tol * (c.abs() as f64 + 1.0);
        assert!(((g - c).abs() as f64) <= bound, "cost {k}: gpu {g} cpu {c}");
        worst = worst.max((g - c).abs() as f64 / bound);
    }
    worst
}

fn higham_data() -> Dataset {
    let x1 = [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7f32];
    let x2 = [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6f32];
    let x = (0..10).flat_map(|i| [x1[i], x2[i]]).collect();
    Dataset::new(x, (0..10).map(|i| u32::from(i >= 5)).collect(), 2, 2, "Higham's points").unwrap()
}

#[test]
fn higham_network_matches_the_cpu_reference_step_for_step() {
    common::require_gpu!();
    let l = |out| LayerSpec::Linear { out, bias: true };
    let model =
        Model::new(2, vec![l(2), LayerSpec::Sigmoid, l(3), LayerSpec::Sigmoid, l(2), LayerSpec::Sigmoid]).unwrap();
    let worst = agree(&model, Loss::Mse, Sgd::new(0.05), &higham_data(), 1, 3000, 500, 7);
    eprintln!("2-2-3-2, 3000 single-sample steps: worst {:.1}% of the bound", 100.0 * worst);
}

#[test]
fn cross_entropy_with_momentum_and_batches_matches_the_cpu_reference() {
    common::require_gpu!();
    let mut r = StdRng::seed_from_u64(3);
    let n = 37;
    let x = (0..n * 5).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let data = Dataset::new(x, (0..n).map(|_| r.random_range(0..4u32)).collect(), 5, 4, "random").unwrap();
    let l = |out| LayerSpec::Linear { out, bias: true };
    let model = Model::new(
        5,
        vec![l(16), LayerSpec::Tanh, l(7), LayerSpec::Gelu, l(11), LayerSpec::LeakyRelu { negative_slope: 0.2 }, l(4)],
    )
    .unwrap();
    let sgd = Sgd { momentum: MomentumSpec::Value(0.9), dampening: 0.1, ..Sgd::new(0.02) };
    let worst = agree(&model, Loss::CrossEntropy, sgd, &data, 4, 1200, 300, 11);
    eprintln!("5-16-7-11-4, 1200 steps of 4 rows: worst {:.1}% of the bound", 100.0 * worst);
}

#[test]
fn models_outside_the_kernels_limits_are_refused_with_the_reason() {
    let l = |out| LayerSpec::Linear { out, bias: true };
    let sgd = Sgd::new(0.1);
    let wide = Model::new(2, vec![l(17), l(2)]).unwrap();
    let bn =
        Model::new(2, vec![l(4), LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false }, l(2)])
            .unwrap();
    let small = Model::new(2, vec![l(4), l(2)]).unwrap();
    let cases = [
        (check_supported(&wide, 1, &sgd), "width 17"),
        (check_supported(&bn, 1, &sgd), "chain of Linear layers"),
        (check_supported(&small, 9, &sgd), "batches of 9 rows"),
        (check_supported(&small, 1, &Sgd { weight_decay: 0.1, ..sgd.clone() }), "weight decay"),
    ];
    for (result, why) in cases {
        let e = result.expect_err(why).to_string();
        assert!(e.contains(why), "{e}");
    }
    assert!(check_supported(&small, 8, &sgd).is_ok());
}
