//! The noise ball of SGD on least squares (issue 22 §7): the exact stationary equation of
//! `course::noise_ball` against a case solvable by hand, its first-order limit, and a direct
//! simulation of SGD with replacement in f64 that shares no code with the solver.

use gradflow::course::noise_ball::{stationary_covariance, LeastSquares};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Rows x_j = ±1 and residuals ±s orthogonal to them, no bias: z⁴ = z² = 1 makes F(c) = c and
/// ACA = c, so the stationary equation reads c·(1 − (1 − 2η)²) = 4η²s²/B, i.e.
/// c = η s² / (B (1 − η)), the excess loss (A = 1).
#[test]
fn plus_minus_one_rows_give_the_closed_form() {
    let (w, s) = (0.7f32, 0.5f32);
    let x = [1.0, -1.0, 1.0, -1.0];
    let r = [s, s, -s, -s];
    let y: Vec<f32> = x.iter().zip(&r).map(|(x, r)| w * x + r).collect();
    let problem = LeastSquares::new(&x, 1, &y, false).unwrap();
    let theta = problem.minimiser().unwrap();
    assert!((theta[0] - f64::from(w)).abs() < 1e-7, "θ* = {theta:?}");
    // y is rounded to f32, so the residuals at θ* are ±s only to ~1e-7; the closed form holds
    // for whatever S = mean r² they have (x = ±1 and Σ x r = 0 are all it needs).
    let noise = problem.noise_moment(&theta)[0];
    assert!((noise - f64::from(s * s)).abs() < 1e-6, "S = {noise}");
    for (eta, batch) in [(0.01, 1), (0.1, 1), (0.3, 4), (0.45, 2)] {
        let ball = stationary_covariance(&problem, eta, batch).unwrap();
        let exact = eta * noise / (batch as f64 * (1.0 - eta));
        // The solver is Gaussian elimination on a 1×1 system: rounding only.
        assert!(
            (ball.excess_loss - exact).abs() <= 1e-12 * exact,
            "η {eta} B {batch}: {} vs {exact}",
            ball.excess_loss
        );
        assert!((ball.first_order - eta * noise / batch as f64).abs() < 1e-12 * ball.first_order);
    }
}

/// Gaussian rows of 3 features, targets linear in them plus noise of s.d. 0.4.
fn gaussian_data(rows: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = || gradflow::spectrum::random_matrix::standard_normal(&mut rng);
    let x: Vec<f32> = (0..rows * 3).map(|_| normal() as f32).collect();
    let y: Vec<f32> = x.chunks(3).map(|r| (0.5 * r[0] - r[1] + 0.25 * r[2]) + 0.3 + 0.4 * normal() as f32).collect();
    (x, y)
}

/// The model has a bias: p = 4 coordinates.
fn gaussian_problem(rows: usize, seed: u64) -> LeastSquares {
    let (x, y) = gaussian_data(rows, seed);
    LeastSquares::new(&x, 3, &y, true).unwrap()
}

#[test]
fn the_minimiser_zeroes_the_gradient() {
    let problem = gaussian_problem(200, 1);
    let theta = problem.minimiser().unwrap();
    // ∇L(θ*) = −(2/n) Σ r_j z_j: check via the loss's directional derivative along each axis,
    // L(θ* ± h e_i) − L* = h² A_ii exactly, so the first-order part must vanish.
    let a = problem.second_moment();
    let base = problem.loss(&theta);
    for i in 0..problem.p {
        let h = 1e-3;
        let mut up = theta.clone();
        up[i] += h;
        let mut down = theta.clone();
        down[i] -= h;
        let odd = problem.loss(&up) - problem.loss(&down);
        let even = problem.loss(&up) + problem.loss(&down) - 2.0 * base;
        // f64 rounding of losses of size ~0.2 over 200 rows: ~1e-15 each.
        assert!(odd.abs() < 1e-12, "coordinate {i}: first-order change {odd}");
        assert!((even - 2.0 * h * h * a[i * problem.p + i]).abs() < 1e-12, "coordinate {i}: curvature");
    }
}

/// The excess loss is η·tr(S)/B·(1 + O(η)): halving η halves the relative correction.
#[test]
fn the_first_order_term_is_the_small_step_limit() {
    let problem = gaussian_problem(300, 2);
    let deviation = |eta: f64| {
        let ball = stationary_covariance(&problem, eta, 3).unwrap();
        ball.excess_loss / ball.first_order - 1.0
    };
    let (d1, d2, d4) = (deviation(4e-3), deviation(2e-3), deviation(1e-3));
    // A correction linear in η with an O(η²) remainder: successive ratios approach 2 as
    // 2 + O(η); at η ≤ 4e-3 with ‖A‖ ≈ 1 and row kurtosis ≈ 3(d+1) the O(η) part is ≲ 0.05.
    assert!(d1 > 0.0, "the exact ball is larger than the first-order one ({d1})");
    assert!((d1 / d2 - 2.0).abs() < 0.1 && (d2 / d4 - 2.0).abs() < 0.1, "deviations {d1} {d2} {d4}");
}

/// Runs SGD with replacement in f64 and compares its time-averaged excess loss with the solver's
/// prediction, within five standard errors estimated from batch means.
#[test]
fn a_direct_simulation_lands_in_the_predicted_ball() {
    let rows = 40;
    let (x, y) = gaussian_data(rows, 3);
    let problem = LeastSquares::new(&x, 3, &y, true).unwrap();
    let (eta, batch) = (0.08, 2);
    let predicted = stationary_covariance(&problem, eta, batch).unwrap();
    let theta_star = problem.minimiser().unwrap();
    let base = problem.loss(&theta_star);

    // The simulation's own rows (x, 1) and targets.
    let p = problem.p;
    let z: Vec<Vec<f64>> = x.chunks(3).map(|r| r.iter().map(|&v| f64::from(v)).chain([1.0]).collect()).collect();
    let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();

    let mut rng = StdRng::seed_from_u64(4);
    let mut theta = theta_star.clone();
    let (burn_in, blocks, per_block) = (5_000, 50, 8_000);
    let mut block_means = Vec::with_capacity(blocks);
    for step in 0..burn_in + blocks * per_block {
        let mut grad = vec![0.0; p];
        for _ in 0..batch {
            let j = rng.random_range(0..rows);
            let err: f64 = z[j].iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() - y[j];
            for (g, zi) in grad.iter_mut().zip(&z[j]) {
                *g += 2.0 * err * zi / batch as f64;
            }
        }
        theta.iter_mut().zip(&grad).for_each(|(t, g)| *t -= eta * g);
        if step >= burn_in {
            let k = (step - burn_in) / per_block;
            if block_means.len() <= k {
                block_means.push(0.0);
            }
            block_means[k] += (problem.loss(&theta) - base) / per_block as f64;
        }
    }
    let mean = block_means.iter().sum::<f64>() / blocks as f64;
    let var = block_means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (blocks - 1) as f64;
    let standard_error = (var / blocks as f64).sqrt();
    // Blocks of 8,000 steps are ≫ the relaxation time 1/(2η·λ_min(A)) ≈ 10 steps, so the block
    // means are nearly independent and the batch-means standard error is honest.
    assert!(
        (mean - predicted.excess_loss).abs() < 5.0 * standard_error,
        "simulated {mean:.5} ± {standard_error:.5}, predicted {:.5} (first order {:.5})",
        predicted.excess_loss,
        predicted.first_order
    );
}

#[test]
fn a_step_past_stability_is_an_error() {
    let problem = gaussian_problem(100, 5);
    let err = stationary_covariance(&problem, 5.0, 1).unwrap_err().to_string();
    assert!(err.contains("does not settle"), "{err}");
    assert!(stationary_covariance(&problem, 0.0, 1).is_err());
    assert!(stationary_covariance(&problem, 0.1, 0).is_err());
}

/// The engine's own training (CPU reference, f32, batches drawn with replacement) settles where
/// the exact equation says: data/linear_noise.csv, η = 0.1, B = 4, the plateau of L(θ) after
/// each epoch over epochs 201–1000, within five batch-means standard errors.
#[test]
fn the_engine_settles_in_the_predicted_ball() {
    use gradflow::config::Config;
    use gradflow::course::noise_ball::plateau;
    use gradflow::data::BatchScheme;
    use gradflow::optim::Sgd;
    use gradflow::train::{Device, Trainer};

    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/linear_noise.toml");
    let config = Config::load_with(&file, &["data.test_fraction=0".into()]).unwrap();
    let (data, _) = gradflow::train::load_data(&config, &file).unwrap();
    let targets = &data.targets.as_ref().unwrap().values;
    let problem = LeastSquares::new(&data.x, data.d, targets, true).unwrap();
    let best = problem.loss(&problem.minimiser().unwrap());
    let (eta, batch) = (0.1, 4);
    let predicted = stationary_covariance(&problem, eta, batch).unwrap();
    let mut trainer = Trainer::from_config(&config, data.d)
        .unwrap()
        .optimizer(Sgd::new(eta))
        .batch_size(batch)
        .batching(BatchScheme::Replacement)
        .epochs(1000)
        .device(Device::Cpu)
        .seed(11);
    let history = trainer.fit(&data, Some(&data)).unwrap();
    let measured = plateau(&history, best, 200).unwrap();
    assert!(
        (measured.mean - predicted.excess_loss).abs() < 5.0 * measured.standard_error,
        "engine {:.4e} ± {:.1e}, predicted {:.4e}",
        measured.mean,
        measured.standard_error,
        predicted.excess_loss
    );
}
