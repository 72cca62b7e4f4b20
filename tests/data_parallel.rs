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
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::optim::{OptimizerSetup, Sgd};
use gradflow::spec::{LayerSpec, Loss, Model};
use gradflow::train::{train_batches_on, Flow, Observe};

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

/// The course's H = max(0, γẐ + β) between two Linears, with the batch norm synchronised or not.
fn batch_norm_model(sync: bool) -> Model {
    let bn = LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync };
    Model::new(
        8,
        vec![LayerSpec::Linear { out: 16, bias: true }, bn, LayerSpec::Relu, LayerSpec::Linear { out: 3, bias: true }],
    )
    .unwrap()
}

/// What a run leaves on one rank: parameters, each epoch's global mean loss, running statistics.
type RankEnd = (Vec<f32>, Vec<f32>, Vec<f32>);

fn network(gpu: bool, model: Model, setup: OptimizerSetup, rows: usize) -> Box<dyn Network> {
    let params = model.init_params(3);
    if gpu {
        let g = Arc::new(common::gpu().clone());
        Box::new(GpuNetwork::new(g, model, Loss::CrossEntropy, setup, &params, rows).unwrap())
    } else {
        Box::new(CpuNetwork::new(model, Loss::CrossEntropy, setup, params).unwrap())
    }
}

/// One data-parallel run: `epochs` epochs of `batch`-row shuffled batches of `rows` synthetic
/// rows on `ranks` ranks (threads) of `model`.
#[derive(Clone, Copy)]
struct Case {
    gpu: bool,
    ranks: usize,
    epochs: usize,
    /// Rank 0 alone asks to stop once this many steps are done.
    stop_after: Option<usize>,
    model: fn() -> Model,
    /// The gradient's all-reduce in buckets of this many bytes (else the default).
    bucket_bytes: Option<usize>,
    rows: usize,
    batch: usize,
}

impl Case {
    fn new(gpu: bool, ranks: usize, model: fn() -> Model) -> Case {
        Case { gpu, ranks, epochs: 3, stop_after: None, model, bucket_bytes: None, rows: 256, batch: 32 }
    }
}

/// `Case::new(..)` for 3 epochs (or until `stop_after`): what each rank ends with.
fn run(gpu: bool, ranks: usize, epochs: usize, stop_after: Option<usize>, model: fn() -> Model) -> Vec<RankEnd> {
    run_case(Case { epochs, stop_after, ..Case::new(gpu, ranks, model) })
}

fn run_case(case: Case) -> Vec<RankEnd> {
    let Case { gpu, ranks, epochs, stop_after, model, bucket_bytes, rows, batch } = case;
    let data = Arc::new(synthetic(rows, 8, 3, 5));
    let handles: Vec<_> = Threads::group(ranks)
        .into_iter()
        .map(|comm| {
            let data = Arc::clone(&data);
            std::thread::spawn(move || {
                let setup: OptimizerSetup = Sgd::with_momentum(0.05, 0.9).into();
                let mut net = network(gpu, model(), setup, batch / comm.size());
                net.set_train_data(&data).unwrap();
                if let Some(bytes) = bucket_bytes {
                    net.set_bucket_cap(bytes);
                }
                let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, batch, false, 9).unwrap();
                let mut losses = Vec::new();
                // Only rank 0 "receives" the signal; every rank must stop at the same step.
                let steps = std::sync::atomic::AtomicUsize::new(0);
                let stop = || {
                    comm.rank() == 0 && stop_after.is_some_and(|s| steps.load(std::sync::atomic::Ordering::SeqCst) >= s)
                };
                for epoch in 1..=epochs {
                    let batches = batcher.next_epoch();
                    let report =
                        train_batches_on(net.as_mut(), &batches, epoch, &comm, &stop, Observe::EveryStep, |_, _| {
                            steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok(Flow::Continue)
                        })
                        .unwrap();
                    losses.push(report.train_loss);
                    if report.steps < batches.len() {
                        break;
                    }
                }
                let end: RankEnd = (net.params().unwrap(), losses, net.norm_state().unwrap().running);
                (end, net.steps())
            })
        })
        .collect();
    let out: Vec<(RankEnd, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let steps = out[0].1;
    assert!(out.iter().all(|o| o.1 == steps), "every rank stops at the same step");
    out.into_iter().map(|(end, _)| end).collect()
}

/// The largest difference between `a` and `b`, relative to max |a| (at least 1).
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
}

/// 2 and 4 ranks of `case` end where one process on the whole batch does, within `REL_TOL`
/// (parameters, epoch losses, running statistics), with identical state on every rank.
fn ranks_match_one_process(case: Case) {
    let gpu = case.gpu;
    let one = run_case(Case { ranks: 1, ..case });
    for ranks in [2, 4] {
        let many = run_case(Case { ranks, ..case });
        for (r, end) in many.iter().enumerate() {
            assert!(end.0 == many[0].0, "gpu={gpu}: rank {r}'s parameters differ from rank 0's");
            assert!(end.2 == many[0].2, "gpu={gpu}: rank {r}'s running statistics differ from rank 0's");
        }
        let what = |part: &str| format!("gpu={gpu}, {ranks} ranks: {part}");
        let (p, l, r) =
            (rel_diff(&one[0].0, &many[0].0), rel_diff(&one[0].1, &many[0].1), rel_diff(&one[0].2, &many[0].2));
        assert!(p <= REL_TOL, "{} differ by {p:e} of max |p|", what("parameters"));
        assert!(l <= REL_TOL, "{} differ by {l:e}: {:?} vs {:?}", what("epoch losses"), one[0].1, many[0].1);
        assert!(r <= REL_TOL, "{} differ by {r:e}", what("running statistics"));
    }
}

#[test]
fn two_and_four_ranks_end_where_one_process_does_with_identical_parameters_on_every_rank() {
    for gpu in [false, true] {
        if gpu && !gpu_part!() {
            continue;
        }
        ranks_match_one_process(Case::new(gpu, 1, model));
    }
}

/// SyncBatchNorm: the statistics and backward sums of the whole global batch, so N ranks are one
/// process on the global batch (running statistics included) within the same bound: the ranks'
/// statistics combine in f64 (mean of means, mean of variance plus squared mean offset), and
/// the backward sums' mean differs from one sum only in rounding, as the gradient's does. 232
/// rows end each epoch on a short batch of 8 (shares of 4 and 2 rows: the launches resized).
#[test]
fn synchronised_batch_norm_on_two_and_four_ranks_is_one_process_on_the_global_batch() {
    for gpu in [false, true] {
        if gpu && !gpu_part!() {
            continue;
        }
        for rows in [256, 232] {
            ranks_match_one_process(Case { rows, ..Case::new(gpu, 1, || batch_norm_model(true)) });
        }
    }
}

/// A residual block with a per-rank batch norm inside, between two synchronised ones.
fn mixed_norm_model() -> Model {
    let bn = |sync| LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync };
    let block = LayerSpec::Residual {
        layers: vec![LayerSpec::Linear { out: 16, bias: false }, bn(false), LayerSpec::Relu],
        projection: false,
    };
    let layers = vec![
        LayerSpec::Linear { out: 16, bias: true },
        bn(true),
        LayerSpec::Tanh,
        block,
        bn(true),
        LayerSpec::Linear { out: 3, bias: true },
    ];
    Model::new(8, layers).unwrap()
}

/// Synchronised and per-rank batch norms in one model, around a residual sum: the GPU's 2-rank
/// run (in buckets or not, bit for bit) is the CPU reference's within the GPU-against-CPU bound.
#[test]
fn mixed_synchronised_and_per_rank_norms_agree_across_executors_and_buckets() {
    require_gpu!();
    let case = Case { epochs: 2, ..Case::new(true, 2, mixed_norm_model) };
    let gpu = run_case(case);
    let cut = run_case(Case { bucket_bytes: Some(4), ..case });
    assert!(gpu[0] == cut[0], "bucketed run differs");
    let cpu = run_case(Case { gpu: false, ..case });
    let (p, r) = (rel_diff(&cpu[0].0, &gpu[0].0), rel_diff(&cpu[0].2, &gpu[0].2));
    assert!(p <= REL_TOL && r <= REL_TOL, "GPU against CPU on 2 ranks: parameters {p:e}, running {r:e}");
}

/// A synchronised batch norm needs two rows in the whole global batch, not in each share (as
/// torch.nn.SyncBatchNorm): 2-row batches on 2 ranks train, and end where one process does.
#[test]
fn synchronised_batch_norm_trains_on_one_row_per_rank() {
    for gpu in [false, true] {
        if gpu && !gpu_part!() {
            continue;
        }
        let case = Case { rows: 32, batch: 2, epochs: 1, ..Case::new(gpu, 1, || batch_norm_model(true)) };
        let one = run_case(case);
        let two = run_case(Case { ranks: 2, ..case });
        let d = rel_diff(&one[0].0, &two[0].0);
        assert!(d <= REL_TOL, "gpu={gpu}: one row per rank against one process: {d:e}");
    }
}

/// A `StepSync` that says there are `.0` ranks and exchanges nothing: for the row checks.
struct Ranks(usize);

impl gradflow::exec::StepSync for Ranks {
    fn ranks(&self) -> usize {
        self.0
    }
    fn norm_stats(&mut self, _: &mut [f64], _: &mut [f64]) -> gradflow::error::Result<()> {
        Ok(())
    }
    fn norm_sums(&mut self, _: &mut [f64]) -> gradflow::error::Result<()> {
        Ok(())
    }
    fn gradient(&mut self, _: &mut Vec<f32>) -> gradflow::error::Result<()> {
        Ok(())
    }
}

/// One row per rank: refused for a per-rank batch norm, and for a synchronised one only when
/// the whole global batch is one row; each message names the layer and whose rows are short.
#[test]
fn one_row_shares_are_refused_where_a_batch_norm_would_normalise_one_row() {
    let data = synthetic(8, 8, 3, 5);
    for gpu in [false, true] {
        if gpu && !gpu_part!() {
            continue;
        }
        let setup = || -> OptimizerSetup { Sgd::new(0.05).into() };
        let mut per_rank = network(gpu, batch_norm_model(false), setup(), 4);
        per_rank.set_train_data(&data).unwrap();
        let e = per_rank.train_step_reduced(&[0], &mut Ranks(2)).unwrap_err().to_string();
        assert!(e.contains("more than 1 row in each batch, got 1 (layer 1)"), "gpu={gpu}: {e}");
        let mut synced = network(gpu, batch_norm_model(true), setup(), 4);
        synced.set_train_data(&data).unwrap();
        let e = synced.train_step_reduced(&[0], &mut Ranks(1)).unwrap_err().to_string();
        assert!(e.contains("more than 1 row in the global batch, got 1 (layer 1)"), "gpu={gpu}: {e}");
        synced.train_step_reduced(&[0], &mut Ranks(2)).unwrap();
    }
}

/// The GPU's host copy of the synchronised layers' running statistics stays right when reduced
/// steps (the host updates them) alternate with ordinary ones (the kernels do), a `predict`
/// and a `set_norm_state`: the same network stepped only the ordinary way ends at the same
/// state within rounding (the host rounds the statistics once in f64 where the kernel uses f32).
#[test]
fn reduced_and_ordinary_steps_interleave_on_the_gpu() {
    require_gpu!();
    let data = synthetic(64, 8, 3, 5);
    let setup = || -> OptimizerSetup { Sgd::with_momentum(0.05, 0.9).into() };
    let (mut mixed, mut plain) =
        (network(true, mixed_norm_model(), setup(), 16), network(true, mixed_norm_model(), setup(), 16));
    for net in [&mut mixed, &mut plain] {
        net.set_train_data(&data).unwrap();
    }
    let batches: Vec<Vec<u32>> = (0..12).map(|i| ((i * 5 % 4) * 16..(i * 5 % 4 + 1) * 16).collect()).collect();
    for (i, b) in batches.iter().enumerate() {
        if i % 3 == 0 {
            mixed.train_step_reduced(b, &mut Ranks(1)).unwrap();
        } else {
            mixed.train_step(b).unwrap();
        }
        plain.train_step(b).unwrap();
        if i == 5 {
            let state = plain.norm_state().unwrap();
            mixed.set_norm_state(&state).unwrap();
            let _ = mixed.predict(&data.x[..8 * 4], 4).unwrap();
        }
    }
    let (p, r) = (
        rel_diff(&plain.params().unwrap(), &mixed.params().unwrap()),
        rel_diff(&plain.norm_state().unwrap().running, &mixed.norm_state().unwrap().running),
    );
    assert!(p <= REL_TOL && r <= REL_TOL, "interleaved steps: parameters {p:e}, running statistics {r:e}");
}

/// Per-rank batch norm (DDP's default) normalises each share by its own statistics, so it is not
/// the single process's run: this is what makes the test above a test of the synchronisation.
#[test]
fn per_rank_batch_norm_differs_from_one_process_on_the_global_batch() {
    let one = run(false, 1, 3, None, || batch_norm_model(false));
    let two = run(false, 2, 3, None, || batch_norm_model(false));
    let d = rel_diff(&one[0].0, &two[0].0);
    assert!(d > 100.0 * REL_TOL, "per-rank statistics moved the parameters by only {d:e}");
}

/// The GPU's gradient buckets (each read back and all-reduced as soon as the backward pass has
/// finished it, while the device runs the rest): cut after every layer, the run is bit for bit
/// the one-bucket run, since each element is summed over the ranks in the same order either way;
/// a bucket read before its gradients were final would change it. With synchronised batch norm,
/// whose dγ and dβ are rewritten between the launches (read early, they would give the same
/// mean up to rounding, which the bit comparison sees only by chance), and with a stop riding in
/// the first bucket.
#[test]
fn gradient_buckets_cut_after_every_layer_change_nothing() {
    require_gpu!();
    for model in [model as fn() -> Model, || batch_norm_model(true)] {
        let case = Case { epochs: 2, ..Case::new(true, 2, model) };
        let whole = run_case(case);
        let cut = run_case(Case { bucket_bytes: Some(4), ..case });
        assert!(whole[0] == cut[0] && cut[0] == cut[1], "bucketed run differs");
        let stopped = run_case(Case { stop_after: Some(3), bucket_bytes: Some(4), ..case });
        assert!(stopped[0].0 == stopped[1].0);
        assert_eq!(stopped[0].1.len(), 1, "stopped inside the first epoch");
    }
}

#[test]
fn a_stop_seen_by_one_rank_stops_every_rank_after_the_same_step() {
    // Rank 0 alone asks to stop once 5 steps are done; `run` asserts every rank stopped at the
    // same step, and the parameters agree.
    let ranks = run(false, 2, 3, Some(5), model);
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

/// A dropout model is refused on several ranks before any work: each rank would draw the same
/// masks over its own rows, which is not the one-process run over the global batch.
#[test]
fn dropout_on_several_ranks_is_refused() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits-dropout.toml");
    let config = gradflow::config::Config::load(&file).unwrap();
    let opts = gradflow::train::session::TrainOptions { quiet: true, ..Default::default() };
    let placement = gradflow::train::run::Placement { cpu: true, data_parallel: true, ..Default::default() };
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|comm| {
                let (config, file, opts, placement) = (&config, &file, &opts, &placement);
                s.spawn(move || {
                    let signal = std::sync::atomic::AtomicUsize::new(0);
                    gradflow::train::session::train(config, file, opts, placement, &signal, &comm)
                        .map(|_| ())
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Rank 0 says why; every other rank that it could not start (the ranks agree to stop).
    assert!(errors[0].contains("dropout is not supported in a data-parallel run"), "{errors:?}");
    assert!(
        errors[1..].iter().all(|e| e.contains("dropout is not supported") || e.contains("could not start")),
        "{errors:?}"
    );
}
