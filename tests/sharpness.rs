//! `train --track-sharpness K` against the quadratic case, where everything is known exactly: a
//! single Linear layer under the mean squared error has a constant Hessian whose λ_max follows
//! from the data alone; gradient descent on it converges below 2/λ_max and diverges above; and
//! tracking changes nothing the run computes.

mod common;

use std::path::{Path, PathBuf};

use common::checkpoint_tensors as tensors;

use gradflow::spectrum::symmetric_eigen;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-sharpness-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gradflow(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow")).args(args).output().expect("run gradflow");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}\n{stdout}\n{stderr}");
    stdout.into()
}

/// Rows, features and classes of the quadratic case.
const N: usize = 12;
const D: usize = 3;
const K: usize = 3;

/// Features as quarters (exact in f32, so the CSV holds the very numbers the model sees), not
/// collinear, and labels cycling through the K classes.
fn features() -> Vec<[f64; D]> {
    (0..N)
        .map(|i| [((i * 5) % 7) as f64 / 4.0, ((i * 3) % 5) as f64 / 4.0 - 0.5, ((i * i) % 11) as f64 / 4.0])
        .collect()
}

/// A CSV of `features` and a config training one Linear layer (no activation) under MSE by
/// full-batch SGD at `lr`, every row in the training split, unstandardised.
fn quadratic_config(d: &Path, lr: f64, epochs: usize) -> PathBuf {
    let mut csv = String::from("a,b,c,label\n");
    for (i, x) in features().iter().enumerate() {
        csv.push_str(&format!("{},{},{},{}\n", x[0], x[1], x[2], i % K));
    }
    std::fs::write(d.join("quadratic.csv"), csv).unwrap();
    let toml = format!(
        "[data]\npath = \"quadratic.csv\"\ntest_fraction = 0.0\n\n\
         [model]\nlayers = [{{ type = \"linear\", out = {K} }}]\nloss = \"mse\"\n\n\
         [optimizer]\ntype = \"sgd\"\nlr = {lr:e}\n\n\
         [train]\nepochs = {epochs}\nbatch_size = {N}\nbatching = \"full-batch\"\n"
    );
    let p = d.join(format!("quadratic-{lr:e}.toml"));
    std::fs::write(&p, toml).unwrap();
    p
}

/// The Hessian's eigenvalues, derived by hand. With x̃ = (x, 1) and torch's mse_loss 'mean' over
/// all N·K outputs, L = 1/(N·K) Σᵢ Σ_c (w_c·x̃ᵢ − y_ic)², so ∂²L/∂w_c∂w_c' = δ_cc' · 2/(N·K) ·
/// Σᵢ x̃ᵢx̃ᵢᵀ: the block-diagonal H = I_K ⊗ (2/(N·K)) X̃ᵀX̃, whose eigenvalues are those of the
/// (D+1)×(D+1) block, each K times. Ascending.
fn exact_eigenvalues() -> Vec<f64> {
    let m = D + 1;
    let mut g = vec![0.0; m * m];
    for x in features() {
        let xt = [x[0], x[1], x[2], 1.0];
        for a in 0..m {
            for b in 0..m {
                g[a * m + b] += 2.0 / (N * K) as f64 * xt[a] * xt[b];
            }
        }
    }
    symmetric_eigen(&g, m).0
}

/// The metrics file's column `name`, over the rows where `keep` holds.
/// Whether a metrics row holds a sharpness measurement: the 10th column (the metrics file's
/// order; columns added later, such as val_loss, come after it).
fn measured_row(r: &[&str]) -> bool {
    r.get(9).is_some_and(|s| !s.is_empty())
}

fn column(csv: &str, name: &str, keep: &dyn Fn(&[&str]) -> bool) -> Vec<f64> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}: {header:?}"));
    lines.map(|l| l.split(',').collect::<Vec<_>>()).filter(|r| keep(r)).map(|r| r[i].parse().unwrap()).collect()
}

/// (sharpness of every measured step, loss of every step) of a CPU run of the quadratic case.
fn run_quadratic(d: &Path, lr: f64, epochs: usize) -> (Vec<f64>, Vec<f64>) {
    let cfg = quadratic_config(d, lr, epochs);
    let metrics = d.join(format!("quadratic-{lr:e}.csv"));
    let (cfg, m) = (cfg.to_str().unwrap(), metrics.to_str().unwrap());
    gradflow(&["train", "--cpu", "--config", cfg, "--metrics", m, "--log-every", "1", "--track-sharpness", "1"]);
    let csv = std::fs::read_to_string(&metrics).unwrap();
    // Columns: step, epoch, loss, accuracy, …, sharpness; step records have no accuracy.
    let sharp = column(&csv, "sharpness", &measured_row);
    let losses = column(&csv, "loss", &|r| r[3].is_empty() && !r[2].is_empty());
    (sharp, losses)
}

#[test]
fn the_tracked_sharpness_of_a_linear_mse_model_is_the_exact_lambda_max_throughout() {
    let d = dir("exact");
    let lambda = *exact_eigenvalues().last().unwrap();
    let epochs = 30;
    let (sharp, _) = run_quadratic(&d, 0.5 / lambda, epochs);
    assert_eq!(sharp.len(), epochs + 1, "step 0 and every step after");
    // H has D+1 distinct eigenvalues, so Lanczos (20 steps, full reorthogonalisation) finds an
    // invariant Krylov space by step D+1 and its top Ritz value is λ_max itself, up to f64
    // rounding: each product sums N·(D+1) terms (N·u relative), and Paige's analysis bounds the
    // Ritz value's error by about steps·u·‖H‖ — together (N + 20)·u·λ_max; twice that for room.
    let tol = 2.0 * (N + 20) as f64 * f64::EPSILON * lambda;
    for (step, s) in sharp.iter().enumerate() {
        assert!((s - lambda).abs() <= tol, "step {step}: tracked {s}, exact {lambda} (tolerance {tol:e})");
    }
}

#[test]
fn gradient_descent_on_the_quadratic_converges_below_two_over_lambda_max_and_diverges_above() {
    let d = dir("threshold");
    let eig = exact_eigenvalues();
    let (lambda, second) = (eig[D], eig[D - 1]);
    let steps = 120;
    // Along eigenvector i the error is multiplied by (1 − ηλᵢ) at every step. Below 2/λ_max all
    // |1 − ηλᵢ| < 1, so every mode's share of L − L* shrinks: the loss never rises.
    let below = 0.9 * 2.0 / lambda;
    let (_, losses) = run_quadratic(&d, below, steps);
    assert_eq!(losses.len(), steps);
    // f32 losses and updates: the loss of N·K squares is within N·K·u (u = 2⁻²⁴) of itself
    // relative, and so is each step's change; twice that for the two losses compared.
    let u = f32::EPSILON as f64 / 2.0;
    for t in 1..steps {
        let slack = 2.0 * (N * K) as f64 * u * losses[t - 1];
        assert!(losses[t] <= losses[t - 1] + slack, "η below 2/λmax: step {t} rose {} → {}", losses[t - 1], losses[t]);
    }
    assert!(losses[steps - 1] < losses[0], "{losses:?}");
    // Above 2/λ_max the top mode grows by |1 − ηλ_max| = 1.2 a step while every other shrinks
    // relative to it (by ρ = max |1 − ηλᵢ|/1.2 < 1), so the loss ratio tends to (1 − ηλ_max)².
    let above = 1.1 * 2.0 / lambda;
    let (sharp, losses) = run_quadratic(&d, above, steps);
    let rate = (1.0 - above * lambda).powi(2);
    let rho = (1.0 - above * second).abs().max(1.0 - above * eig[0]) / (above * lambda - 1.0);
    // The other modes' share after `steps` steps is ρ^(2·steps) times their initial one: so
    // small here that the ratio must match to a percent (initial mode ratios up to 10⁴ allowed).
    assert!(rho.powi(2 * steps as i32) < 1e-6, "the data's modes are too close to tell apart: ρ = {rho}");
    let last = losses[steps - 1] / losses[steps - 2];
    assert!((last / rate - 1.0).abs() < 1e-2, "loss ratio {last}, (1 − ηλmax)² = {rate}");
    assert!(losses[steps - 1] > 1e6 * losses[0], "diverged: {} → {}", losses[0], losses[steps - 1]);
    // The Hessian does not depend on the parameters: the same λ_max however far they go.
    let tol = 2.0 * (N + 20) as f64 * f64::EPSILON * lambda;
    assert!(sharp.iter().all(|s| (s - lambda).abs() <= tol), "{sharp:?} vs {lambda}");
}

/// The spirals' small tanh MLP with `epochs` epochs.
fn spirals_config(d: &Path, epochs: usize) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals_small.toml"))
        .unwrap()
        .replace("../data/spirals.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/spirals.csv"))
        .replace("epochs = 60", &format!("epochs = {epochs}"));
    let p = d.join("spirals.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Measuring reads the parameters back and nothing else: with and without `--track-sharpness`
/// (alone, and with a `--log-every` that is not its multiple, so submits end at every step) the
/// checkpoints are bit-identical, on the CPU path and on the GPU. The measurements appear in the
/// epoch lines, the metrics' last column (step 0 and every K-th step) and the plot's third chart.
#[test]
fn tracking_the_sharpness_changes_nothing_the_run_computes() {
    let d = dir("bits");
    let epochs = 3;
    let cfg = spirals_config(&d, epochs);
    let cfg = cfg.to_str().unwrap();
    // 480 training rows in batches of 32: 15 steps an epoch.
    let steps = epochs * 15;
    for cpu in [true, false] {
        if !cpu && !common::gpu_part!() {
            continue;
        }
        let tag = if cpu { "cpu" } else { "gpu" };
        let train = |name: &str, extra: &[&str]| {
            let save = d.join(format!("{tag}-{name}.safetensors"));
            let mut args = vec!["train", "--config", cfg, "--save", save.to_str().unwrap()];
            args.extend(cpu.then_some("--cpu"));
            args.extend(extra);
            let out = gradflow(&args);
            (tensors(&save), out)
        };
        let (plain, _) = train("plain", &[]);
        let metrics = d.join(format!("{tag}.csv"));
        let plot = d.join(format!("{tag}.svg"));
        let (m, p) = (metrics.to_str().unwrap(), plot.to_str().unwrap());
        let (tracked, out) = train("tracked", &["--track-sharpness", "7", "--metrics", m, "--plot", p]);
        assert!(plain == tracked, "{tag}: --track-sharpness changed the checkpoint");
        assert_eq!(out.lines().filter(|l| l.starts_with("epoch ") && l.contains("λmax ")).count(), epochs, "{out}");
        assert!(out.contains("sharpness at step 0: λmax "), "{out}");
        let csv = std::fs::read_to_string(&metrics).unwrap();
        assert!(csv.starts_with(
            "step,epoch,loss,accuracy,test_loss,test_accuracy,lr,grad_norm,wall_s,sharpness,val_loss,val_accuracy\n"
        ));
        let measured = column(&csv, "step", &measured_row);
        let want: Vec<f64> = (0..=steps).step_by(7).map(|s| s as f64).collect();
        assert_eq!(measured, want, "{csv}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(svg.contains(">sharpness<") && svg.contains("2/η"), "the third chart");
        let (both, _) = train("both", &["--track-sharpness", "4", "--metrics", m, "--log-every", "3"]);
        assert!(plain == both, "{tag}: --track-sharpness with --log-every changed the checkpoint");
        let csv = std::fs::read_to_string(&metrics).unwrap();
        let measured = column(&csv, "step", &measured_row);
        assert_eq!(measured, (0..=steps).step_by(4).map(|s| s as f64).collect::<Vec<_>>(), "{csv}");
    }
}

#[test]
fn a_zero_interval_is_refused_before_any_work() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow"))
        .args(["train", "--cpu", "--track-sharpness", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--track-sharpness must be at least 1"), "{err}");
}
