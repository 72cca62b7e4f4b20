//! Real-valued targets (regression) through the training launch: PyTorch's MSE goldens, GPU
//! against CPU, full-batch gradient descent against the normal equations, the R²/RMSE formulas,
//! and the errors.

mod common;

use std::sync::Arc;

use common::golden::{cases_of, load};
use common::*;
use gradflow::data::{BatchScheme, Batcher, Dataset, Targets};
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::optim::{OptimizerSetup, Sgd};
use gradflow::spec::{LayerSpec, Loss, Model};
use gradflow::train::regression::scores;

/// f32's unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

fn linear(inputs: usize, out: usize, bias: bool) -> Model {
    Model::new(inputs, vec![LayerSpec::Linear { out, bias }]).unwrap()
}

/// The flat parameter vector of `model` holding `tensors` in its order (padding zero).
fn flat(model: &Model, tensors: &[&[f32]]) -> Vec<f32> {
    let mut v = vec![0.0; model.param_len];
    for (t, values) in model.params.iter().zip(tensors) {
        v[t.offset..t.offset + t.len].copy_from_slice(values);
    }
    v
}

/// Every tensor of a flat vector, concatenated (padding dropped).
fn unflat(model: &Model, v: &[f32]) -> Vec<f32> {
    model.params.iter().flat_map(|t| v[t.offset..t.offset + t.len].iter().copied()).collect()
}

/// The networks a test runs: always the CPU reference; with an adapter the GPU executor both
/// streaming its batches and with the training set resident (the device gather).
fn networks(model: &Model, opt: &OptimizerSetup, params: &[f32], rows: usize) -> Vec<(String, Box<dyn Network>)> {
    let mut nets: Vec<(String, Box<dyn Network>)> = vec![(
        "cpu".into(),
        Box::new(CpuNetwork::new(model.clone(), Loss::Mse, opt.clone(), params.to_vec()).unwrap()),
    )];
    if gpu_part!() {
        for stream in [true, false] {
            let gpu = Arc::new(gpu_or_panic());
            let mut net = GpuNetwork::new(gpu, model.clone(), Loss::Mse, opt.clone(), params, rows).unwrap();
            net.set_streaming(stream);
            nets.push((format!("gpu (streamed: {stream})"), Box::new(net)));
        }
    }
    nets
}

/// Each golden MSE case through one training step: a bias-free Linear layer with W = I makes
/// the network's output the case's `pred` exactly (each output is one product by 1 plus
/// products by 0), so the step's loss is the case's loss and dW = dpredᵀ·pred.
#[test]
fn golden_mse_through_the_training_step() {
    let cases = cases_of("mse");
    assert_eq!(cases.len(), 2);
    for name in cases {
        let c = load(&name);
        let (rows, cols) = (c.shape("pred")[0], c.shape("pred")[1]);
        let (pred, target) = (c.f32("pred"), c.f32("target"));
        let data = Dataset::from_rows_with_targets(&pred, cols, &target, cols).unwrap();
        let model = linear(cols, cols, false);
        let eye: Vec<f32> = (0..cols * cols).map(|i| f32::from(u8::from(i % (cols + 1) == 0))).collect();
        let eye = flat(&model, &[&eye]);
        let (want_loss, dpred) = (c.t("loss")[0], c.t("dpred"));
        // dW[i, j] = Σ_r dpred[r, i]·pred[r, j], in f64 from PyTorch's float64 dpred.
        let term = |r: usize, i: usize, j: usize| dpred[r * cols + i] * pred[r * cols + j] as f64;
        let want_dw: Vec<f64> =
            (0..cols * cols).map(|e| (0..rows).map(|r| term(r, e / cols, e % cols)).sum()).collect();
        // Any summation order of n terms in f32 errs by at most γ_n·Σ|terms| (γ_n ≈ n·u); the
        // loss sums rows·cols squares of differences (each difference and square one more u
        // each), dW sums `rows` products of an f32 gradient (itself within 3u of dpred) and pred.
        let loss_bound = (rows * cols + 4) as f64 * U * want_loss.abs() * 1.01;
        let dw_bound: Vec<f64> = (0..cols * cols)
            .map(|e| (rows + 5) as f64 * U * (0..rows).map(|r| term(r, e / cols, e % cols).abs()).sum::<f64>() * 1.01)
            .collect();
        let opt: OptimizerSetup = Sgd::new(0.01).into();
        for (what, mut net) in networks(&model, &opt, &eye, rows) {
            net.set_train_data(&data).unwrap();
            let batch: Vec<u32> = (0..rows as u32).collect();
            net.train_step(&batch).unwrap();
            let loss = net.last_loss().unwrap();
            assert_within(&format!("{name} {what} loss"), &[loss], &[want_loss], &[loss_bound]);
            assert_within(&format!("{name} {what} dW"), &unflat(&model, &net.grads().unwrap()), &want_dw, &dw_bound);
            assert!(net.take_totals().unwrap().samples == rows);
        }
    }
}

/// Seeded regression data: `rows` rows of `d` features in [−1, 1), `k` targets from a fixed
/// smooth rule plus uniform noise.
fn regression_data(rows: usize, d: usize, k: usize, seed: u64) -> Dataset {
    let mut r = rng(seed);
    let x = uniform(&mut r, rows * d, -1.0, 1.0);
    let noise = uniform(&mut r, rows * k, -0.1, 0.1);
    let y: Vec<f32> = (0..rows * k)
        .map(|e| {
            let (i, j) = (e / k, e % k);
            let row = &x[i * d..(i + 1) * d];
            row.iter().enumerate().map(|(f, v)| v * ((f + j) % 3) as f32 - 0.5 * v * v).sum::<f32>() + noise[e]
        })
        .collect();
    Dataset::from_rows_with_targets(&x, d, &y, k).unwrap()
}

/// The same training run on the GPU (streamed and resident) and the CPU: the same step losses
/// and parameters. Tolerance as tests/training.rs argues for its runs (dot products of length
/// ≤ 24 with |terms| ≲ 1 give ≲ 24·u per step; 15 steps of SGD at lr 0.05 with ‖H‖ ≲ 4 amplify
/// it at most (1.2)^15 ≈ 15×): 2e-4 relative to max(1, |value|).
#[test]
fn gpu_and_cpu_train_the_same_regression() {
    require_gpu!();
    const REL_TOL: f64 = 2e-4;
    let data = regression_data(70, 5, 2, 3);
    let model = Model::new(
        5,
        vec![LayerSpec::Linear { out: 24, bias: true }, LayerSpec::Tanh, LayerSpec::Linear { out: 2, bias: true }],
    )
    .unwrap();
    let opt: OptimizerSetup = Sgd::new(0.05).into();
    let params = model.init_params(11);
    let mut nets = networks(&model, &opt, &params, 16);
    for (_, net) in nets.iter_mut() {
        net.set_train_data(&data).unwrap();
    }
    let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, 16, false, 5).unwrap();
    let batches: Vec<Vec<u32>> = batcher
        .next_epoch()
        .into_iter()
        .chain(batcher.next_epoch())
        .map(|b| b.iter().map(|&i| i as u32).collect())
        .collect();
    for b in batches.iter().take(15) {
        let losses: Vec<f32> = nets
            .iter_mut()
            .map(|(_, n)| {
                n.train_step(b).unwrap();
                n.last_loss().unwrap()
            })
            .collect();
        for (l, (what, _)) in losses.iter().zip(&nets).skip(1) {
            let scale = (losses[0].abs() as f64).max(1.0);
            assert!(((l - losses[0]).abs() as f64) <= REL_TOL * scale, "{what}: loss {l} vs cpu {}", losses[0]);
        }
    }
    let want = nets[0].1.params().unwrap();
    for (what, net) in nets.iter_mut().skip(1) {
        let got = net.params().unwrap();
        let bound: Vec<f64> = want.iter().map(|w| REL_TOL * (w.abs() as f64).max(1.0)).collect();
        assert_within(&format!("{what} parameters"), &got, &widen(&want), &bound);
        assert!(net.trains_regression());
        assert!(net.take_totals().unwrap().mean_loss.is_finite());
    }
}

/// Eigenvalues of a small symmetric matrix (cyclic Jacobi; converges quadratically).
// Index loops: each rotation reads and writes two rows of the same matrix, as the textbook writes it.
#[allow(clippy::needless_range_loop)]
fn sym_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    for _ in 0..100 {
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for row in a.iter_mut() {
                    let (x, y) = (row[p], row[q]);
                    row[p] = c * x - s * y;
                    row[q] = s * x + c * y;
                }
                for k in 0..n {
                    let (x, y) = (a[p][k], a[q][k]);
                    a[p][k] = c * x - s * y;
                    a[q][k] = s * x + c * y;
                }
            }
        }
    }
    (0..n).map(|i| a[i][i]).collect()
}

/// Solves A·x = b (A symmetric positive definite, small) by Gaussian elimination in f64.
// Index loops: row r is updated from row i of the same matrix.
#[allow(clippy::needless_range_loop)]
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for i in 0..n {
        for r in i + 1..n {
            let f = a[r][i] / a[i][i];
            for c in i..n {
                a[r][c] -= f * a[i][c];
            }
            b[r] -= f * b[i];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (b[i] - (i + 1..n).map(|c| a[i][c] * x[c]).sum::<f64>()) / a[i][i];
    }
    x
}

/// Full-batch gradient descent on one Linear layer (with bias) under the MSE converges to the
/// least-squares solution, here computed independently from the normal equations in f64.
#[test]
fn full_batch_descent_on_a_linear_model_reaches_least_squares() {
    let (n, d) = (40, 3);
    let data = regression_data(n, d, 1, 9);
    // Augmented rows [x, 1]; the weight layout is [w_1..w_d, b] (weight then bias).
    let row = |i: usize| -> Vec<f64> { data.row(i).iter().map(|&v| v as f64).chain([1.0]).collect() };
    let y: Vec<f64> = widen(&data.targets.as_ref().unwrap().values);
    let gram: Vec<Vec<f64>> =
        (0..=d).map(|a| (0..=d).map(|b| (0..n).map(|i| row(i)[a] * row(i)[b]).sum()).collect()).collect();
    let xty: Vec<f64> = (0..=d).map(|a| (0..n).map(|i| row(i)[a] * y[i]).sum()).collect();
    let theta = solve(gram.clone(), xty);
    // The loss (1/n)‖Xθ − y‖² has Hessian H = (2/n)·XᵀX; with lr = 1/λ_max every step contracts
    // the error by (1 − λ_min/λ_max) at least.
    let eig = sym_eigenvalues(gram.iter().map(|r| r.iter().map(|v| 2.0 * v / n as f64).collect()).collect());
    let (lo, hi) = eig.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &e| (lo.min(e), hi.max(e)));
    let lr = 1.0 / hi;
    let rate = 1.0 - lo / hi;
    let steps = ((1e-7f64).ln() / rate.ln()).ceil() as usize;
    let start = (0..=d).map(|a| theta[a].powi(2)).sum::<f64>().sqrt(); // ‖θ₀ − θ*‖ with θ₀ = 0
                                                                       // What f32 leaves: the gradient at θ* computed with error ≲ (n + 4)·u·(2/n)·Σ|x|(|ŷ| + |y|),
                                                                       // which moves the fixed point by that over λ_min; plus the contraction's 1e-7 of the start.
    let grad_floor = (0..n)
        .map(|i| {
            let r = row(i);
            let yhat: f64 = (0..=d).map(|a| r[a] * theta[a]).sum();
            r.iter().map(|v| v.abs()).fold(0.0, f64::max) * (yhat.abs() + y[i].abs())
        })
        .sum::<f64>()
        * (n + 4) as f64
        * U
        * 2.0
        / n as f64;
    let bound = 1e-7 * start + 2.0 * grad_floor / lo + 4.0 * U * theta.iter().map(|t| t.abs()).fold(0.0, f64::max);
    let model = linear(d, 1, true);
    let zero = vec![0.0; model.param_len];
    let mut net = CpuNetwork::new(model.clone(), Loss::Mse, Sgd::new(lr), zero).unwrap();
    net.set_train_data(&data).unwrap();
    let batch: Vec<u32> = (0..n as u32).collect();
    for _ in 0..steps {
        net.train_step(&batch).unwrap();
    }
    let got = unflat(&model, &net.params().unwrap());
    assert_within("GD vs normal equations", &got, &theta, &vec![bound; d + 1]);
    eprintln!("{steps} steps at lr {lr:.3} (rate {rate:.4}): bound {bound:.2e}");
}

/// R² and RMSE by hand: predicting each target's mean gives R² = 0 and RMSE = its standard
/// deviation (population); predicting the targets gives R² = 1 and RMSE = 0; the uniform
/// average is the mean of the per-target R².
#[test]
fn r2_and_rmse_match_the_hand_derived_cases() {
    // Target 1: 1, 2, 3, 4 (mean 2.5, population variance 1.25); target 2: 0, 0, 2, 2 (mean 1, variance 1).
    let t = Targets::new(vec![1.0, 0.0, 2.0, 0.0, 3.0, 2.0, 4.0, 2.0], 2, 4, "case").unwrap();
    let mean = [2.5f32, 1.0].repeat(4);
    let s = scores(&mean, &t);
    assert_eq!(s.r2, vec![0.0, 0.0]);
    assert_eq!(s.rmse, vec![1.25f64.sqrt(), 1.0]);
    assert_eq!(s.rmse_all, (2.25f64 / 2.0).sqrt()); // (4·1.25 + 4·1)/8
                                                    // Perfect for target 1, mean for target 2: R² 1 and 0, average 0.5.
    let mixed = [1.0f32, 1.0, 2.0, 1.0, 3.0, 1.0, 4.0, 1.0];
    let s = scores(&mixed, &t);
    assert_eq!((s.r2.clone(), s.r2_mean), (vec![1.0, 0.0], 0.5));
    assert_eq!(s.rmse, vec![0.0, 1.0]);
}

#[test]
fn targets_errors_name_what_is_wrong() {
    let nan =
        Dataset::from_rows_with_targets(&[0.0, 1.0, 2.0, 3.0], 1, &[1.0, 2.0, 3.0, f32::NAN, 5.0, 6.0, 7.0, 8.0], 2)
            .unwrap_err();
    assert_eq!(nan.to_string(), "data: row 2 (counting from 1), target 2 (counting from 1): NaN in targets");
    let short = Dataset::from_rows_with_targets(&[0.0, 1.0, 2.0], 1, &[1.0, 2.0], 1).unwrap_err();
    assert!(short.to_string().contains("2 rows"), "{short}");
    let data = regression_data(8, 2, 2, 1);
    // Targets with cross-entropy.
    let two = linear(2, 2, true);
    let mut ce = CpuNetwork::new(two.clone(), Loss::CrossEntropy, Sgd::new(0.1), two.init_params(1)).unwrap();
    let e = ce.set_train_data(&data).unwrap_err().to_string();
    assert!(e.contains("loss = \"mse\""), "{e}");
    // A last layer of the wrong width.
    let three = linear(2, 3, true);
    let mut wide = CpuNetwork::new(three.clone(), Loss::Mse, Sgd::new(0.1), three.init_params(1)).unwrap();
    let e = wide.set_train_data(&data).unwrap_err().to_string();
    assert!(e.contains("2 target(s)") && e.contains("3 outputs"), "{e}");
}

fn gradflow(args: &[&str]) -> (bool, String, String) {
    common::run_gradflow(args)
}

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch_dir("regression", name)
}

/// A CSV with header x1,x2,y1,y2 (targets in the middle would work too; last is the usual place)
/// and a config naming the targets, with `model`/`extra` TOML lines; returns the config's path.
fn regression_run(d: &std::path::Path, model: &str, extra: &str) -> String {
    let data = regression_data(60, 2, 2, 4);
    let t = data.targets.as_ref().unwrap();
    let mut csv = String::from("x1,x2,y1,y2\n");
    for i in 0..data.n {
        let (x, y) = (data.row(i), t.row(i));
        csv += &format!("{},{},{},{}\n", x[0], x[1], y[0], y[1]);
    }
    std::fs::write(d.join("data.csv"), csv).unwrap();
    let cfg = format!(
        "[data]\npath = \"data.csv\"\ntargets = [\"y1\", \"y2\"]\n{extra}\n[model]\n{model}\n\
         [optimizer]\ntype = \"sgd\"\nlr = 0.1\n\n[train]\nepochs = 3\nbatch_size = 8\n"
    );
    let p = d.join("run.toml");
    std::fs::write(&p, cfg).unwrap();
    p.to_str().unwrap().to_string()
}

const LINEAR2: &str = "layers = [{ type = \"linear\", out = 2 }]\nloss = \"mse\"";

/// train → eval → predict on a regression checkpoint, `--checkpoint` alone: eval reports RMSE
/// and R² per target under the targets' names and no accuracy or confusion matrix; its RMSE
/// over all values is √loss (both printed to 4 places); predict writes a column per target.
#[test]
fn train_eval_predict_a_regression_model() {
    let d = scratch("flow");
    let cfg = regression_run(&d, LINEAR2, "");
    let ck = d.join("m.safetensors");
    let ck = ck.to_str().unwrap();
    let (ok, out, err) = gradflow(&["train", "--cpu", "--config", &cfg, "--save", ck]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("train rmse") && !out.contains("acc"), "{out}");
    assert!(out.contains("2 real target(s): y1, y2"), "{out}");
    let (ok, out, err) = gradflow(&["eval", "--cpu", "--checkpoint", ck]);
    assert!(ok, "{out}{err}");
    assert!(!out.contains("confusion") && !out.contains("accuracy"), "{out}");
    let number_after = |key: &str| -> f64 {
        let rest = &out[out.find(key).unwrap_or_else(|| panic!("{key} in {out}")) + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (loss, rmse) = (number_after("loss "), number_after("RMSE "));
    // Both printed to 4 places: √loss within √(loss ± 5e-5) of the printed RMSE ± 5e-5.
    assert!((rmse - loss.sqrt()).abs() <= 5e-5 + 5e-5 / (2.0 * loss.sqrt()), "{out}");
    assert!(out.lines().any(|l| l.starts_with("y1 ")) && out.lines().any(|l| l.starts_with("y2 ")), "{out}");
    std::fs::write(d.join("in.csv"), "x1,x2\n0,0\n0.5,-0.5\n").unwrap();
    let pred = d.join("pred.csv");
    let (ok, out, err) = gradflow(&[
        "predict",
        "--cpu",
        "--checkpoint",
        ck,
        "--input",
        d.join("in.csv").to_str().unwrap(),
        "--output",
        pred.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(&pred).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "y1,y2");
    assert_eq!(lines.len(), 3);
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 2 && l.split(',').all(|v| v.parse::<f32>().is_ok())));
}

#[test]
fn regression_config_errors_name_the_field() {
    let d = scratch("errors");
    // Targets under cross-entropy.
    let cfg = regression_run(&d, "layers = [{ type = \"linear\", out = 2 }]", "");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg]);
    assert!(!ok && err.contains("data.targets") && err.contains("mse"), "{err}");
    // A last layer of another width.
    let cfg = regression_run(&d, "layers = [{ type = \"linear\", out = 3 }]\nloss = \"mse\"", "");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg]);
    assert!(!ok && err.contains("2 target(s) (y1, y2)") && err.contains("make it 2 wide"), "{err}");
    // A name the header lacks: the error lists the header.
    let cfg = regression_run(&d, LINEAR2, "");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg, "--set", "data.targets=[\"y1\", \"z\"]"]);
    assert!(!ok && err.contains("no column named 'z'") && err.contains("x1, x2, y1, y2"), "{err}");
    // Column numbers from 1 work as names do; 5 is past the 4 columns.
    let (ok, out, err) =
        gradflow(&["train", "--cpu", "--config", &cfg, "--set", "data.targets=[3, 4]", "--epochs", "1"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg, "--set", "data.targets=[3, 5]"]);
    assert!(!ok && err.contains("column 5"), "{err}");
    // A NaN target: the error names its line and column.
    let text = std::fs::read_to_string(d.join("data.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let fields: Vec<&str> = lines[3].split(',').collect();
    lines[3] = format!("{},{},{},nan", fields[0], fields[1], fields[2]);
    std::fs::write(d.join("data.csv"), lines.join("\n")).unwrap();
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg]);
    assert!(!ok && err.contains("line 4") && err.contains("column 4") && err.contains("NaN"), "{err}");
}

/// The library API the mimic and linear-regression pieces use: `Trainer::fit` on a regression
/// `Dataset` (CPU, and the GPU when present) reports no accuracy (NaN), its `evaluate` loss is
/// the mean squared error of its own `predict` (recomputed here in f64; f32 sums of 2·40 terms
/// of size ≲ loss err by ≲ 80·u relative, bound 1e-5), CPU and GPU agree as in
/// `gpu_and_cpu_train_the_same_regression`, and a cross-entropy trainer refuses the data.
#[test]
fn trainer_fits_and_evaluates_a_regression_dataset() {
    use gradflow::train::{Device, Trainer};
    let data = regression_data(120, 3, 2, 8);
    let (train, test) = data.split(1.0 / 3.0, 1).unwrap();
    let model = Model::new(
        3,
        vec![LayerSpec::Linear { out: 16, bias: true }, LayerSpec::Tanh, LayerSpec::Linear { out: 2, bias: true }],
    )
    .unwrap();
    let mut devices = vec![Device::Cpu];
    if gpu_part!() {
        devices.push(Device::Gpu);
    }
    let mut finals = Vec::new();
    for device in devices {
        let mut trainer = Trainer::new(model.clone())
            .loss(Loss::Mse)
            .optimizer(Sgd::new(0.05))
            .device(device)
            .epochs(3)
            .batch_size(16);
        let history = trainer.fit(&train, Some(&test)).unwrap();
        let last = history.last().unwrap();
        assert!(last.train_accuracy.is_nan() && last.test_accuracy.is_some_and(f32::is_nan));
        let eval = trainer.evaluate(&test).unwrap();
        let pred = trainer.predict(&test.x).unwrap();
        let t = &test.targets.as_ref().unwrap().values;
        let mse = pred.iter().zip(t).map(|(p, y)| (*p as f64 - *y as f64).powi(2)).sum::<f64>() / t.len() as f64;
        assert!((eval.loss as f64 - mse).abs() <= 1e-5 * mse, "{} vs {mse}", eval.loss);
        assert!(eval.accuracy.is_nan());
        finals.push(last.train_loss as f64);
    }
    if let [cpu, gpu] = finals[..] {
        assert!((cpu - gpu).abs() <= 2e-4 * cpu.max(1.0), "cpu {cpu} vs gpu {gpu}");
    }
    let mut ce = Trainer::new(model).loss(Loss::CrossEntropy).epochs(1);
    let e = ce.fit(&train, None).unwrap_err().to_string();
    assert!(e.contains("mse"), "{e}");
}

/// `.npy` inputs with `data.targets_path` ([n, k] floats): the same rows as the CSV give the
/// same epoch line (the same split, batches and initial weights); with both `data.targets` and
/// `data.targets_path` the config is refused.
#[test]
fn npy_targets_train_as_the_csv_does() {
    let d = scratch("npy");
    let cfg = regression_run(&d, LINEAR2, "");
    let data = regression_data(60, 2, 2, 4);
    // The CSV holds the values as Rust prints them (shortest round trip): the same f32s.
    gradflow::data::write_npy_f32(&d.join("x.npy"), &[60, 2], &data.x).unwrap();
    gradflow::data::write_npy_f32(&d.join("y.npy"), &[60, 2], &data.targets.as_ref().unwrap().values).unwrap();
    let npy_cfg = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("path = \"data.csv\"\ntargets = [\"y1\", \"y2\"]", "path = \"x.npy\"\ntargets_path = \"y.npy\"");
    let npy_cfg_path = d.join("npy.toml");
    std::fs::write(&npy_cfg_path, npy_cfg).unwrap();
    let epoch1 = |cfg: &str| {
        let (ok, out, err) = gradflow(&["train", "--cpu", "--config", cfg, "--epochs", "1"]);
        assert!(ok, "{out}{err}");
        // The line without its throughput (the last two words).
        let words: Vec<&str> = out.lines().find(|l| l.starts_with("epoch")).unwrap().split_whitespace().collect();
        words[..words.len() - 2].join(" ")
    };
    let (csv_line, npy_line) = (epoch1(&cfg), epoch1(npy_cfg_path.to_str().unwrap()));
    assert!(csv_line.contains("rmse"), "{csv_line}");
    assert_eq!(csv_line, npy_line);
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", &cfg, "--set", "data.targets_path=\"y.npy\""]);
    assert!(!ok && err.contains("data.targets") && err.contains("data.targets_path"), "{err}");
}

/// `--track-sharpness` on a regression config is refused before the run says anything: the
/// Hessian code compares with class labels only.
#[test]
fn sharpness_on_real_targets_is_refused_up_front() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/linear_noise.toml");
    let (ok, out, err) = gradflow(&["train", "--cpu", "--config", config, "--track-sharpness", "5"]);
    assert!(!ok && err.contains("--track-sharpness") && err.contains("data.targets"), "{err}");
    assert!(out.is_empty(), "printed before refusing: {out}");
}

/// compare and sweep score regression runs by RMSE (√ of the test loss), never "NaN%".
#[test]
fn compare_and_sweep_score_real_targets_by_rmse() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/linear_noise.toml");
    let (ok, out, err) = gradflow(&["compare", "--cpu", "--config", config, "--epochs", "3"]);
    assert!(ok, "{err}");
    assert!(!out.contains("NaN"), "{out}");
    for line in out.lines().filter(|l| l.contains("test loss")) {
        let field = |name: &str| -> f64 {
            let rest = &line[line.find(name).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        // Both printed to 4 decimals: √ moves a rounding of 5e-5 by at most 5e-5/(2√loss).
        let (loss, rmse) = (field("test loss "), field("test rmse "));
        assert!((rmse - loss.sqrt()).abs() <= 5e-5 + 5e-5 / (2.0 * loss.sqrt()), "{line}");
    }
    let (ok, out, err) =
        gradflow(&["sweep", "--cpu", "--config", config, "--epochs", "2", "--grid", "optimizer.lr=[0.01,0.1]"]);
    assert!(ok, "{err}");
    assert!(!out.contains("NaN") && out.contains('—'), "{out}");
}

/// A header naming more columns than the rows have is an error naming both counts, not a
/// target read past the row.
#[test]
fn a_header_wider_than_its_rows_is_an_error() {
    let d = scratch("wide-header");
    let path = d.join("wide.csv");
    std::fs::write(&path, "a,b,c,y\n1,2,3\n4,5,6\n").unwrap();
    let err = gradflow::data::load_csv_targets(&path, &[gradflow::data::TargetColumn::Name("y".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("wide.csv") && err.contains("expected 4 fields, found 3"), "{err}");
}

/// Real targets are scored only by the mean squared error, and a fit's test set is scored as its
/// training set is: mixing them is an error, not a score against the placeholder labels.
#[test]
fn real_targets_and_class_labels_are_not_mixed() {
    let x: Vec<f32> = (0..16).map(|i| i as f32 / 8.0).collect();
    let regression = Dataset::from_rows_with_targets(&x, 1, &x, 1).unwrap();
    // One class, so that the one-output model takes it and only the kinds differ.
    let classes = Dataset::from_rows_with_classes(&x, 1, &[0u32; 16], 1).unwrap();
    let model = Model::new(1, vec![LayerSpec::Linear { out: 1, bias: true }]).unwrap();
    let mut trainer = gradflow::train::Trainer::new(model.clone()).loss(Loss::Mse).epochs(1);
    let err = trainer.fit(&regression, Some(&classes)).unwrap_err().to_string();
    assert!(err.contains("real targets") && err.contains("class labels"), "{err}");
    let mut ce = gradflow::train::Trainer::new(model);
    let err = ce.evaluate(&regression).unwrap_err().to_string();
    assert!(err.contains("model.loss = \"mse\""), "{err}");
}

/// Data options the regression readers do not take are refused, naming the field, rather than
/// ignored.
#[test]
fn options_a_regression_does_not_take_are_refused() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/linear_noise.toml");
    for (set, field) in [
        ("data.non_finite=\"drop-row\"", "data.non_finite"),
        ("data.header=false", "data.header"),
        ("data.test_targets=\"t.npy\"", "data.test_targets"),
    ] {
        let (ok, _, err) = gradflow(&["train", "--cpu", "--config", config, "--set", set]);
        assert!(!ok && err.contains(field), "{set}: {err}");
    }
}

/// One rule names a target everywhere (eval's lines, predict's header for a state dict without
/// names, error messages): the header's name, else "target J" from 1.
#[test]
fn a_target_without_a_name_is_target_j() {
    use gradflow::data::Targets;
    let names = vec!["y1".to_string()];
    assert_eq!(Targets::name_in(Some(&names), 0), "y1");
    assert_eq!(Targets::name_in(Some(&names), 1), "target 2", "past the names given");
    assert_eq!(Targets::name_in(None, 0), "target 1");
}
