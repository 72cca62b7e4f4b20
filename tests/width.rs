//! `course::width`: the label-noise function, the spread statistic, the sweep's model sizes and
//! the early-stopping rule, each against what follows from its definition.

use gradflow::course::width::{noisy_labels, one_hidden, one_hidden_params, spread, stop_epoch, trained_params};

fn labels(n: usize, classes: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7) % classes).collect()
}

#[test]
fn label_noise_flips_exactly_round_q_n_labels_always_to_another_class() {
    for (n, q) in [(300, 0.2), (101, 0.33), (10, 0.05), (7, 1.0), (50, 0.0)] {
        let clean = labels(n, 10);
        let noisy = noisy_labels(&clean, 10, q, 3).unwrap();
        let changed = clean.iter().zip(&noisy).filter(|(a, b)| a != b).count();
        // Every chosen label changes (never to itself), so the count is the number chosen.
        assert_eq!(changed, (q * n as f64).round() as usize, "n {n}, q {q}");
        assert!(noisy.iter().all(|&l| l < 10), "labels stay among the classes");
    }
}

#[test]
fn label_noise_is_deterministic_per_seed_and_differs_between_seeds() {
    let clean = labels(200, 10);
    let a = noisy_labels(&clean, 10, 0.3, 5).unwrap();
    assert_eq!(a, noisy_labels(&clean, 10, 0.3, 5).unwrap());
    assert_ne!(a, noisy_labels(&clean, 10, 0.3, 6).unwrap());
}

#[test]
fn label_noise_with_two_classes_swaps_them() {
    // With two classes the only other class is 1 − label: every flipped label is its complement.
    let clean = labels(40, 2);
    let noisy = noisy_labels(&clean, 2, 0.5, 0).unwrap();
    for (a, b) in clean.iter().zip(&noisy) {
        assert!(a == b || *b == 1 - a);
    }
}

#[test]
fn label_noise_reaches_every_other_class_about_equally() {
    // Every label 0 flipped 9000 times (q = 1): each of the 9 other classes is a binomial
    // count with mean 1000 and std √(9000·(1/9)(8/9)) ≈ 29.8; 6 std (±179) is never crossed
    // by a fair draw in practice.
    let noisy = noisy_labels(&vec![0; 9000], 10, 1.0, 1).unwrap();
    let mut counts = [0usize; 10];
    noisy.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts[0], 0);
    for &c in &counts[1..] {
        assert!((1000i64 - c as i64).abs() < 179, "{counts:?}");
    }
}

#[test]
fn label_noise_refuses_bad_fractions_classes_and_labels() {
    assert!(noisy_labels(&[0, 1], 2, 1.5, 0).is_err());
    assert!(noisy_labels(&[0, 1], 2, -0.1, 0).is_err());
    assert!(noisy_labels(&[0, 0], 1, 0.5, 0).is_err());
    assert!(noisy_labels(&[0, 3], 3, 0.5, 0).is_err());
}

#[test]
fn spread_on_hand_cases() {
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squares about it sum to 32, sample variance 32/7.
    let s = spread(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!((s.mean, s.min, s.max), (5.0, 2.0, 9.0));
    // A few ulps of the exact √(32/7) (sums of small integers are exact in f64).
    assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    let one = spread(&[3.5]);
    assert_eq!((one.mean, one.std, one.min, one.max), (3.5, 0.0, 3.5, 3.5));
    let constant = spread(&[1.25; 6]);
    assert_eq!(constant.std, 0.0);
    assert!(spread(&[]).mean.is_nan());
}

#[test]
fn the_sweep_models_have_d_w_plus_w_plus_w_c_plus_c_parameters() {
    for w in [2, 4, 8, 16, 32, 64, 128, 256] {
        let model = one_hidden(64, w, 10).unwrap();
        assert_eq!(trained_params(&model), 64 * w + w + w * 10 + 10, "width {w}");
        assert_eq!(trained_params(&model), one_hidden_params(64, w, 10));
    }
}

#[test]
fn early_stopping_stops_patience_epochs_after_the_best() {
    // Best at epoch 3 (0.5); epochs 4 and 5 do not beat it: patience 2 stops after epoch 5.
    assert_eq!(stop_epoch(&[1.0, 0.8, 0.5, 0.6, 0.55, 0.4], 2, 0.0), 5);
    // min_delta 0.3: 0.8 is not below 1.0 − 0.3, so the best stays at epoch 1 until epoch 3.
    assert_eq!(stop_epoch(&[1.0, 0.8, 0.9, 0.1], 2, 0.3), 3);
    // Always improving: runs to the end.
    assert_eq!(stop_epoch(&[3.0, 2.0, 1.0], 1, 0.0), 3);
    // A NaN never improves.
    assert_eq!(stop_epoch(&[1.0, f64::NAN, f64::NAN, 0.5], 2, 0.0), 3);
}

#[test]
fn final_sharpness_of_a_linear_layer_under_mse_is_the_data_s_top_eigenvalue() {
    use gradflow::data::Dataset;
    use gradflow::spec::{LayerSpec, Loss, Model};
    // One Linear layer d → k under the MSE (mean over rows and outputs): the Hessian is the
    // constant G ⊗ I_k with G = 2/(n·k) Σ x̃x̃ᵀ, x̃ = (x, 1), whatever the parameters.
    let (n, d, k) = (12, 3, 3);
    let rows: Vec<[f64; 3]> = (0..n)
        .map(|i| [((i * 5) % 7) as f64 / 4.0, ((i * 3) % 5) as f64 / 4.0 - 0.5, ((i * i) % 11) as f64 / 4.0])
        .collect();
    let x: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    let data = Dataset::new(x, (0..n as u32).map(|i| i % k as u32).collect(), d, k, "test").unwrap();
    let m = d + 1;
    let mut g = vec![0.0; m * m];
    for r in &rows {
        let xt = [r[0], r[1], r[2], 1.0];
        for a in 0..m {
            for b in 0..m {
                g[a * m + b] += 2.0 / (n * k) as f64 * xt[a] * xt[b];
            }
        }
    }
    let exact = gradflow::spectrum::symmetric_eigen(&g, m).0.into_iter().fold(f64::MIN, f64::max);
    let model = Model::new(d, vec![LayerSpec::Linear { out: k, bias: true }]).unwrap();
    let params = model.init_params(4);
    let got = gradflow::course::width::final_sharpness(&model, Loss::Mse, &params, &data).unwrap();
    // G ⊗ I has at most 4 distinct eigenvalues, so Lanczos is exact after 4 steps; what is left
    // is the f32 rounding of the Hessian-vector products (relative ~1e-6, 1e-4 leaves room).
    assert!((got - exact).abs() <= 1e-4 * exact, "Lanczos {got}, exact {exact}");
}
