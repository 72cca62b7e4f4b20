//! Many steps per submit (`Network::train_steps`, `train::Observe`) against one submit per step:
//! the same launches in the same order, each step reading its batch and parameters from its own
//! slot of the step rings (a streamed batch copied in before its pass), so every parameter,
//! optimizer state, running statistic and loss total is the same to the bit. Run over what changes from step to step: Adam's step count, a learning-rate
//! schedule, clipping, a cumulative-average batch norm (its blend changes every step) and a
//! momentum one, a resident and a streamed training set, a shorter last batch, a divergence
//! and a stop request inside a submit.

mod common;

use std::sync::Arc;

use common::*;
use gradflow::data::{BatchScheme, Batcher, Dataset};
use gradflow::exec::{GpuNetwork, Network};
use gradflow::optim::{Optimizer, OptimizerSetup, Schedule};
use gradflow::spec::{LayerSpec, Loss, Model};
use gradflow::train::{train_batches, train_batches_on, Flow, Observe};

fn model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let layers = toml::from_str::<L>(
        "layers = [
           { type = 'linear', out = 12 }, { type = 'batch-norm', momentum = 'none' }, { type = 'relu' },
           { type = 'residual', layers = [ { type = 'linear', out = 12 }, { type = 'tanh' } ] },
           { type = 'batch-norm' }, { type = 'linear', out = 4 } ]",
    )
    .unwrap()
    .layers;
    Model::new(7, layers).unwrap()
}

fn data(n: usize) -> Dataset {
    let mut r = rng(5);
    let x = uniform(&mut r, n * 7, -2.0, 2.0);
    let labels = (0..n).map(|i| ((x[i * 7] + x[i * 7 + 3]).abs() * 1.7) as u32 % 4).collect();
    Dataset::new(x, labels, 7, 4, "many-steps data").unwrap()
}

fn setup(lr: f64) -> OptimizerSetup {
    OptimizerSetup {
        clip_grad_norm: Some(0.5),
        ..OptimizerSetup::from(Optimizer::from(Optimizer::adam(lr)))
            .with_schedule(Schedule::Exponential { gamma: 0.97 })
    }
}

fn network(lr: f64, streamed: bool, per_submit: usize, data: &Dataset) -> GpuNetwork {
    network_on(lr, streamed, per_submit, data, None)
}

/// `network`, on the fused step or the per-op launches where `fused` says which.
fn network_on(lr: f64, streamed: bool, per_submit: usize, data: &Dataset, fused: Option<bool>) -> GpuNetwork {
    let model = model();
    let p0 = model.init_params(3);
    let mut net = GpuNetwork::new(Arc::new(gpu().clone()), model, Loss::CrossEntropy, setup(lr), &p0, 16).unwrap();
    if let Some(on) = fused {
        net.set_small_net(on).unwrap();
    }
    net.set_streaming(streamed);
    net.set_steps_per_submit(per_submit);
    net.set_train_data(data).unwrap();
    net
}

/// Everything a run leaves behind, as bits.
fn state(net: &mut GpuNetwork) -> Vec<Vec<u32>> {
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let totals = net.take_totals().unwrap();
    vec![
        bits(net.params().unwrap()),
        bits(net.optimizer_state().unwrap()),
        bits(net.norm_state().unwrap().running),
        bits(vec![net.last_loss().unwrap(), totals.mean_loss, totals.accuracy]),
        vec![net.steps() as u32, totals.samples as u32],
    ]
}

fn epoch_batches(n: usize, batch: usize, seed: u64) -> Vec<Vec<usize>> {
    Batcher::new(BatchScheme::Shuffle, n, batch, false, seed).unwrap().next_epoch()
}

#[test]
fn one_submit_of_many_steps_equals_a_submit_per_step_to_the_bit() {
    require_gpu!();
    let d = data(150);
    for (streamed, fused) in [(false, false), (false, true), (true, false), (true, true)] {
        let batches = epoch_batches(d.n, 16, 1); // 9 batches of 16, then one of 6
        let as_u32: Vec<Vec<u32>> = batches.iter().map(|b| b.iter().map(|&i| i as u32).collect()).collect();
        let mut one = network_on(0.01, streamed, 1, &d, Some(fused));
        for b in &as_u32 {
            one.train_step(b).unwrap();
        }
        let mut many = network_on(0.01, streamed, 64, &d, Some(fused));
        let full: Vec<&[u32]> = as_u32[..9].iter().map(|b| b.as_slice()).collect();
        many.train_steps(&full).unwrap();
        // A lone step after a many-steps submit reads slot 0, which that submit left alone.
        many.train_steps(&[&as_u32[9]]).unwrap();
        assert_eq!(state(&mut many), state(&mut one), "streamed {streamed}, fused {fused}");
    }
}

#[test]
fn submits_longer_than_the_rings_split_at_their_slots() {
    require_gpu!();
    // 40 steps of one submit: more than the rings' 32 step slots, so two passes in two
    // submits (32 + 8), then lone steps in between, against a submit per step.
    let d = data(150);
    let batches: Vec<Vec<u32>> = (0..40u32).map(|s| (0..16).map(|r| (s * 7 + r * 3) % 150).collect()).collect();
    let refs: Vec<&[u32]> = batches.iter().map(|b| b.as_slice()).collect();
    for fused in [false, true] {
        let mut one = network_on(0.01, false, 1, &d, Some(fused));
        refs.iter().chain(&refs[..3]).for_each(|b| one.train_step(b).unwrap());
        let mut many = network_on(0.01, false, 64, &d, Some(fused));
        many.train_steps(&refs).unwrap();
        refs[..3].iter().for_each(|b| many.train_step(b).unwrap());
        assert_eq!(state(&mut many), state(&mut one), "fused {fused}");
    }
}

#[test]
fn the_training_loop_in_submits_equals_it_step_by_step() {
    require_gpu!();
    let d = data(150);
    let run = |per_submit: usize, observe: Observe| {
        let mut net = network(0.01, false, per_submit, &d);
        let mut seen = Vec::new();
        let mut reports = Vec::new();
        for epoch in 1..=3 {
            let batches = epoch_batches(d.n, 16, epoch);
            let r = train_batches(&mut net, &batches, epoch as usize, observe, |net, i| {
                seen.push((i, net.steps()));
                Ok(Flow::Continue)
            })
            .unwrap();
            reports.push((r.steps, r.train_loss.to_bits(), r.train_accuracy.to_bits()));
        }
        (state(&mut net), reports, seen)
    };
    let (step_state, step_reports, step_seen) = run(1, Observe::EveryStep);
    assert_eq!(step_seen.len(), 30, "one call per step");
    let (sub_state, sub_reports, sub_seen) = run(4, Observe::Submits);
    assert_eq!(sub_state, step_state);
    assert_eq!(sub_reports, step_reports);
    // Submits of 4, cut before the short last batch: steps 4, 8, 9, then the short one (10).
    assert_eq!(&sub_seen[..4], &[(4, 4), (8, 8), (9, 9), (10, 10)]);
    // A log interval of 3 cuts the submits at every third global step.
    let (every_state, _, every_seen) = run(8, Observe::Every(3));
    assert_eq!(every_state, step_state);
    assert!(every_seen.iter().filter(|s| s.1 % 3 == 0).count() == 10, "{every_seen:?}");
}

#[test]
fn a_divergence_inside_a_submit_names_the_step_it_happened_at() {
    require_gpu!();
    let d = data(150);
    let first_bad = |per_submit: usize| {
        // No clipping and a rate that blows the weights up within a few steps.
        let model = model();
        let p0 = model.init_params(3);
        let setup = OptimizerSetup::from(Optimizer::from(gradflow::optim::Sgd::new(1e30)));
        let mut net = GpuNetwork::new(Arc::new(gpu().clone()), model, Loss::CrossEntropy, setup, &p0, 16).unwrap();
        net.set_steps_per_submit(per_submit);
        net.set_train_data(&d).unwrap();
        let batches = epoch_batches(d.n, 16, 1);
        match train_batches(&mut net, &batches, 1, Observe::Submits, |_, _| Ok(Flow::Continue)) {
            Err(gradflow::error::Error::Diverged { step, .. }) => step,
            other => panic!("expected a divergence, got {other:?}"),
        }
    };
    let alone = first_bad(1);
    assert!(alone > 1, "the first step must still be finite ({alone}) for this to test a submit's middle");
    assert_eq!(first_bad(64), alone);
}

#[test]
fn a_stop_request_is_seen_at_the_end_of_the_submit() {
    require_gpu!();
    let d = data(150);
    let mut net = network(0.01, false, 4, &d);
    let batches = epoch_batches(d.n, 16, 1);
    let stop = || true;
    let r = train_batches_on(&mut net, &batches, 1, &gradflow::dist::Single, &stop, Observe::Submits, |_, _| {
        Ok(Flow::Continue)
    })
    .unwrap();
    assert_eq!((r.steps, net.steps()), (4, 4), "the first submit's four steps, then the stop");
}

#[test]
fn steps_per_submit_comes_from_the_config_and_zero_is_refused() {
    let e = gradflow::config::Config::default_run_with(&["train.steps_per_submit=0".into()]).unwrap_err().to_string();
    assert!(e.contains("train.steps_per_submit must be at least 1"), "{e}");
    require_gpu!();
    let config = gradflow::config::Config::default_run_with(&["train.steps_per_submit=5".into()]).unwrap();
    let model = Model::new(64, config.model.layers.clone()).unwrap();
    let net = gradflow::train::build_network(&config, model, &gradflow::train::Placement::default(), 32).unwrap();
    assert_eq!(net.steps_per_submit(), 5);
}
