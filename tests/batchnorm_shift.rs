//! The batch-norm course experiment's derived facts: what batch norm makes of a unit's
//! statistics before and after a step, the histogram's bookkeeping, and that nothing moves at lr 0.

use std::path::Path;

use gradflow::config::Config;
use gradflow::course::batchnorm_shift::{
    column, column_stats, final_loss, full_loss, histogram, preactivations, range_of, sgd_net, shift_over_training, Net,
};
use gradflow::data::Dataset;
use gradflow::exec::Network;

fn digits() -> Dataset {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits.toml");
    gradflow::train::load_data(&Config::load(&file).unwrap(), &file).unwrap().0
}

fn small(data: &Dataset) -> Net {
    Net { inputs: data.d, width: 8, depth: 3, classes: data.num_classes }
}

const EPS: f64 = 1e-5;

/// Training-mode batch norm: unit j of γx̂ + β has batch mean β_j and biased variance
/// γ_j²·σ_j²/(σ_j² + ε), σ_j² the variance of its input — γ = 1, β = 0 (mean 0, variance ≈ 1)
/// at initialisation and whatever γ, β the step made after it.
#[test]
fn normalised_units_have_mean_beta_and_variance_gamma_squared() {
    let data = digits();
    let net = small(&data);
    let model = net.model(true).unwrap();
    let params = net.init(0).unwrap()[1].clone();
    let rows = 64;
    let mut sgd = sgd_net(&model, params.clone(), 0.5, &data).unwrap();
    sgd.train_step(&(0..rows as u32).collect::<Vec<_>>()).unwrap();
    let after = sgd.params().unwrap();
    let norms: Vec<_> = model.params.iter().filter(|t| t.norm).collect();
    for (p, fresh) in [(&params, true), (&after, false)] {
        let layers = preactivations(&model, p, &data.x[..rows * data.d], rows).unwrap();
        assert_eq!(layers.len(), net.depth);
        for (l, layer) in layers.iter().enumerate() {
            let (gamma, beta) = (norms[2 * l], norms[2 * l + 1]);
            let inputs = column_stats(&layer.linear, net.width);
            let outputs = column_stats(layer.normalised.as_ref().unwrap(), net.width);
            for j in 0..net.width {
                let (g, b) = (p[gamma.offset + j] as f64, p[beta.offset + j] as f64);
                if fresh {
                    assert_eq!((g, b), (1.0, 0.0));
                }
                let var = g * g * inputs[j].1 / (inputs[j].1 + EPS);
                // Outputs are f32 of size ≤ ~√rows·|γ| + |β|: each carries a relative rounding
                // of 2⁻²⁴, so the f64 mean and variance agree to ~1e-6; 1e-5 leaves room.
                assert!((outputs[j].0 - b).abs() < 1e-5, "layer {l} unit {j}: mean {} vs β {b}", outputs[j].0);
                assert!((outputs[j].1 - var).abs() < 1e-5 * (1.0 + var), "layer {l} unit {j}: var {}", outputs[j].1);
            }
        }
    }
}

#[test]
fn the_batch_norm_net_starts_from_the_plain_nets_weight_matrices() {
    let data = digits();
    let net = small(&data);
    let [plain, bn] = net.init(3).unwrap();
    let (mp, mb) = (net.model(false).unwrap(), net.model(true).unwrap());
    let mats = |m: &gradflow::spec::Model, p: &[f32]| -> Vec<Vec<f32>> {
        m.params.iter().filter(|t| t.shape.len() == 2).map(|t| p[t.offset..t.offset + t.len].to_vec()).collect()
    };
    assert_eq!(mats(&mp, &plain), mats(&mb, &bn));
}

#[test]
fn histogram_counts_every_row_within_edges_covering_the_data() {
    let data = digits();
    let net = small(&data);
    let model = net.model(false).unwrap();
    let rows = 64;
    let layers = preactivations(&model, &net.init(0).unwrap()[0], &data.x[..rows * data.d], rows).unwrap();
    let unit = column(&layers[2].linear, net.width, 0);
    let (lo, hi) = range_of(&[&unit]);
    for bins in [1, 7, 16] {
        let h = histogram(&unit, lo, hi, bins).unwrap();
        assert_eq!(h.counts.iter().sum::<usize>(), rows);
        assert_eq!(h.edges.len(), bins + 1);
        assert!(h.edges[0] <= lo && h.edges[bins] >= hi);
    }
    assert!(histogram(&unit, lo, hi, 0).is_err());
    assert!(histogram(&unit, lo + 0.25 * (hi - lo), hi, 4).is_err(), "values below lo are refused");
}

/// At lr 0 the parameters never change, so every statistic on the probe batch is the one at
/// step 0 (the same deterministic forward pass): the shift is exactly zero.
#[test]
fn shift_is_zero_at_lr_zero() {
    let data = digits();
    let net = small(&data);
    for (k, bn) in [false, true].into_iter().enumerate() {
        let model = net.model(bn).unwrap();
        let trace =
            shift_over_training(&model, net.init(0).unwrap()[k].clone(), &data, 128, 0.0, 32, 20, 5, 0).unwrap();
        assert_eq!(trace.steps, [0, 5, 10, 15, 20]);
        assert_eq!(trace.linear.len(), net.depth);
        assert_eq!(trace.normalised.len(), if bn { net.depth } else { 0 });
        for v in trace.linear.iter().chain(&trace.normalised) {
            assert!(v.iter().all(|&s| s == (0.0, 0.0)), "{v:?}");
        }
        assert!(trace.probe_loss.iter().all(|&l| l == trace.probe_loss[0]));
    }
}

/// lr 0 ends where it started; a positive lr moves the loss.
#[test]
fn lr_zero_final_loss_is_the_initial_loss() {
    let data = digits();
    let net = small(&data);
    for (k, bn) in [false, true].into_iter().enumerate() {
        let model = net.model(bn).unwrap();
        let params = net.init(1).unwrap()[k].clone();
        let init = full_loss(&model, &params, &data).unwrap();
        assert_eq!(final_loss(&model, params.clone(), &data, 0.0, 32, 10, 1).unwrap(), init);
        assert_ne!(final_loss(&model, params, &data, 0.1, 32, 10, 1).unwrap(), init);
    }
}
