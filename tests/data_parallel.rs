//! Data-parallel training's logic, with threads of this process as ranks (`dist::Threads`), on
//! both executors: the same run on one process and on 2 and 4 ranks ends at the same parameters,
//! every rank holds identical parameters, a stop travels with the gradient, divergence is named
//! by every rank, and a batch that does not split is an error. MPI itself is exercised under
//! `mpirun` in `tests/mpi.rs` (feature `mpi`).

mod common;

use std::sync::Arc;

use common::*;
use gradflow::data::{BatchScheme, Batcher};
use gradflow::dist::{Collective, Threads};
use gradflow::nn::{CpuNetwork, GpuNetwork, LayerSpec, Loss, Model, Network};
use gradflow::optim::{OptimizerSetup, Sgd};
use gradflow::train::{train_batches_on, Flow};

/// Tolerance, data-parallel against one process, relative to max |p|: the two differ only in
/// how the batch's gradient is summed (one sum of b rows, or N sums of b/N rows each scaled and
/// added), each within γ_b·Σ|terms| ≲ 32·u ≈ 2e-6 relative of exact here; SGD with momentum 0.9
/// and lr 0.05 amplifies a perturbation by at most ~(1 + lr·‖H‖)/(1 − μ) per step with ‖H‖ ≲ 1,
/// and over the 3 × 8 = 24 steps of these runs that stays below 100× the one-step error: 2e-4,
/// the bound tests/training.rs derives the same way for GPU against CPU.
const REL_TOL: f64 = 2e-4;

fn model() -> Model {
    Model::new(
        8,
        vec![LayerSpec::Linear { out: 16, bias: true }, LayerSpec::Tanh, LayerSpec::Linear { out: 3, bias: true }],
    )
    .unwrap()
}

fn network(gpu: bool, model: Model, setup: OptimizerSetup, rows: usize) -> Box<dyn Network> {
    let params = model.init_params(3);
    if gpu {
        let g = Arc::new(common::gpu().clone());
        Box::new(GpuNetwork::new(g, model, Loss::CrossEntropy, setup, &params, rows).unwrap())
    } else {
        Box::new(CpuNetwork::new(model, Loss::CrossEntropy, setup, params).unwrap())
    }
}

/// `epochs` epochs of 32-row shuffled batches on `ranks` ranks (threads); every rank's final
/// parameters and each epoch's global mean loss.
fn run(gpu: bool, ranks: usize, epochs: usize, stop_after: Option<usize>) -> Vec<(Vec<f32>, Vec<f32>)> {
    let data = Arc::new(synthetic(256, 8, 3, 5));
    let handles: Vec<_> = Threads::group(ranks)
        .into_iter()
        .map(|comm| {
            let data = Arc::clone(&data);
            std::thread::spawn(move || {
                let setup: OptimizerSetup = Sgd::with_momentum(0.05, 0.9).into();
                let mut net = network(gpu, model(), setup, 32 / comm.size());
                net.set_train_data(&data).unwrap();
                let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, 32, false, 9).unwrap();
                let mut losses = Vec::new();
                // Only rank 0 "receives" the signal; every rank must stop at the same step.
                let steps = std::sync::atomic::AtomicUsize::new(0);
                let stop = || {
                    comm.rank() == 0 && stop_after.is_some_and(|s| steps.load(std::sync::atomic::Ordering::SeqCst) >= s)
                };
                for epoch in 1..=epochs {
                    let batches = batcher.next_epoch();
                    let report = train_batches_on(net.as_mut(), &batches, epoch, &comm, &stop, |_, _| {
                        steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(Flow::Continue)
                    })
                    .unwrap();
                    losses.push(report.train_loss);
                    if report.steps < batches.len() {
                        break;
                    }
                }
                (net.params().unwrap(), losses, net.steps())
            })
        })
        .collect();
    let out: Vec<(Vec<f32>, Vec<f32>, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let steps = out[0].2;
    assert!(out.iter().all(|o| o.2 == steps), "every rank stops at the same step");
    out.into_iter().map(|(p, l, _)| (p, l)).collect()
}

#[test]
fn two_and_four_ranks_end_where_one_process_does_with_identical_parameters_on_every_rank() {
    for gpu in [false, true] {
        if gpu && !gpu_part!() {
            continue;
        }
        let one = run(gpu, 1, 3, None);
        for ranks in [2, 4] {
            let many = run(gpu, ranks, 3, None);
            for (r, (p, _)) in many.iter().enumerate() {
                assert!(p == &many[0].0, "gpu={gpu}: rank {r}'s parameters differ from rank 0's");
            }
            let scale = one[0].0.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
            for (i, (a, b)) in one[0].0.iter().zip(&many[0].0).enumerate() {
                let err = (*a as f64 - *b as f64).abs();
                assert!(err <= REL_TOL * scale, "gpu={gpu}, {ranks} ranks: parameter {i}: {a} vs {b}");
            }
            for (e, (a, b)) in one[0].1.iter().zip(&many[0].1).enumerate() {
                let err = (*a as f64 - *b as f64).abs();
                assert!(
                    err <= REL_TOL * a.abs().max(1.0) as f64,
                    "gpu={gpu}, {ranks} ranks: epoch {} loss {a} vs {b}",
                    e + 1
                );
            }
        }
    }
}

#[test]
fn a_stop_seen_by_one_rank_stops_every_rank_after_the_same_step() {
    // Rank 0 alone asks to stop once 5 steps are done; `run` asserts every rank stopped at the
    // same step, and the parameters agree.
    let ranks = run(false, 2, 3, Some(5));
    assert!(ranks[0].0 == ranks[1].0);
    assert_eq!(ranks[0].1.len(), 1, "stopped inside the first epoch");
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_an_error() {
    let comm = &Threads::group(1)[0];
    let e = gradflow::train::share_of(&[0, 1, 2, 3, 4], 0, 2).unwrap_err().to_string();
    assert!(e.contains("5 rows does not split over 2 ranks"), "{e}");
    assert_eq!(gradflow::train::share_of(&[0, 1, 2, 3], 1, 2).unwrap(), &[2, 3]);
    assert_eq!(comm.size(), 1);
}

#[test]
fn the_in_process_group_reduces_exactly() {
    let handles: Vec<_> = Threads::group(3)
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let r = c.rank();
                let mut f = vec![r as f32, 1.0, 0.5 * r as f32];
                c.allreduce_sum_f32(&mut f).unwrap();
                let mut m = vec![10 - r as u64, u64::MAX - r as u64];
                c.allreduce_min_u64(&mut m).unwrap();
                let mut b = vec![r as f32; 2];
                c.broadcast_f32(2, &mut b).unwrap();
                let same = c.all_equal(42).unwrap();
                let differ = c.all_equal(r as u64).unwrap();
                (f, m, b, same, differ)
            })
        })
        .collect();
    for h in handles {
        let (f, m, b, same, differ) = h.join().unwrap();
        assert_eq!(f, vec![3.0, 3.0, 1.5]);
        assert_eq!(m, vec![8, u64::MAX - 2]);
        assert_eq!(b, vec![2.0, 2.0]);
        assert!(same && !differ);
    }
}

#[test]
fn the_ring_all_reduce_model_moves_2_n_minus_1_over_n_of_the_gradient() {
    use gradflow::dist::cost::{ring_bytes, ring_seconds, step_cost, Link};
    // 1,000 f32 over 4 ranks: reduce-scatter and all-gather each move 3/4 of 4,000 bytes.
    assert_eq!(ring_bytes(1000, 4), 6000.0);
    assert_eq!(ring_bytes(1000, 1), 0.0);
    let link = Link { bits_per_sec: 8e9, latency_s: 1e-6, pcie_bytes_per_sec: 1e9 };
    // 6,000 bytes at 1 GB/s, plus 6 messages of 1 µs.
    assert!((ring_seconds(1000, 4, &link) - (6e-6 + 6e-6)).abs() < 1e-15);
    let c = step_cost(1000, 4, 4e-3, &link);
    assert_eq!((c.compute_s, c.staging_s), (1e-3, 8e-6));
    assert!((c.efficiency(4e-3, 4) - 1e-3 / c.total()).abs() < 1e-12);
}
