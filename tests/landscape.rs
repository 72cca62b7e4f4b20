//! `gradflow landscape`: the path's ends are the checkpoints' own losses (as `gradflow eval`
//! gives them), a model linear in its parameters under MSE gives an exact parabola, the plane
//! through A, B, C passes through their losses, filter-normalised directions have θ's row
//! norms, a trajectory of the anchors projects onto them, and bad options are named.

use std::path::{Path, PathBuf};

use gradflow::cli::eval::evaluate;
use gradflow::cli::landscape::{measure, Landscape, Row};
use gradflow::cli::{EvalArgs, LandscapeArgs};
use gradflow::spec::Model;
use gradflow::train::landscape::{random_directions, State};
use gradflow::train::Placement;

/// f32's unit roundoff.
const U32: f64 = f32::EPSILON as f64 / 2.0;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-landscape-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gradflow(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow")).args(args).output().expect("run gradflow");
    assert!(out.status.success(), "gradflow {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// 40 rows of 3 features in [−2, 2] (a fixed LCG), 3 classes, and a config for `layers` and `loss`.
fn setup(d: &Path, layers: &str, loss: &str) -> PathBuf {
    let mut s: u64 = 12345;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0
    };
    let mut csv = String::from("a,b,c,label\n");
    for r in 0..40 {
        csv += &format!("{:.4},{:.4},{:.4},{}\n", next(), next(), next(), r % 3);
    }
    std::fs::write(d.join("data.csv"), csv).unwrap();
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\npath = \"data.csv\"\nlabel_column = \"label\"\ntest_fraction = 0.25\n\n[model]\nloss = \"{loss}\"\n\
             layers = {layers}\n\n[optimizer]\ntype = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n\n[train]\nepochs = 5\n\
             batch_size = 8\n"
        ),
    )
    .unwrap();
    cfg
}

/// Trains `cfg` (with `extra` options) and saves to `name` in `d`.
fn save(d: &Path, cfg: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = d.join(name);
    let mut args =
        vec!["train", "--cpu", "--quiet", "--config", cfg.to_str().unwrap(), "--save", out.to_str().unwrap()];
    args.extend(extra);
    gradflow(&args);
    out
}

fn cpu() -> Placement {
    Placement { cpu: true, ..Default::default() }
}

fn eval(cfg: &Path, ck: &Path, split: &str) -> (f32, f64) {
    let args = EvalArgs {
        config: Some(cfg.to_path_buf()),
        checkpoint: ck.to_path_buf(),
        split: split.into(),
        set: Vec::new(),
    };
    let e = evaluate(&args, &cpu(), false).unwrap();
    (e.loss, e.accuracy())
}

fn at<'a>(l: &'a Landscape, coords: &[f64]) -> &'a Row {
    l.rows.iter().find(|r| r.coords == coords).unwrap_or_else(|| panic!("no point at {coords:?}"))
}

const BN_LAYERS: &str =
    "[{ type = 'linear', out = 8 }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 3 }]";

/// (1−α)·A + α·B is A at α = 0 and B at α = 1 bit for bit (weights 1 and 0, summed in f64 and
/// rounded once), running statistics included, and the loss is computed as `eval` computes it
/// (predict on the same network, the reference loss): so the losses are equal, not close.
#[test]
fn the_paths_ends_are_the_checkpoints_losses() {
    let d = dir("ends");
    let cfg = setup(&d, BN_LAYERS, "cross-entropy");
    let a = save(&d, &cfg, "init.safetensors", &["--max-steps", "0"]);
    let b = save(&d, &cfg, "final.safetensors", &[]);
    let args = LandscapeArgs {
        config: Some(cfg.clone()),
        from: Some(a.clone()),
        to: Some(b.clone()),
        points: Some(7),
        bn: "eval".into(),
        ..Default::default()
    };
    let l = measure(&args, &cpu(), false).unwrap();
    for (alpha, ck) in [(0.0, &a), (1.0, &b)] {
        let row = at(&l, &[alpha]);
        for (split, m) in [("train", row.train), ("test", row.test)] {
            let (loss, acc) = eval(&cfg, ck, split);
            assert_eq!(m.loss, loss as f64, "{split} loss at α = {alpha}");
            assert_eq!(m.accuracy, acc, "{split} accuracy at α = {alpha}");
        }
    }
    // The initial checkpoint holds the config's initial weights: `--max-steps 0 --save`.
    let model = Model::new(3, gradflow::config::Config::load(&cfg).unwrap().model.layers).unwrap();
    let (params, _) = gradflow::checkpoint::load_state_dict(&a, &model).unwrap();
    assert_eq!(params, model.init_params(0), "train --max-steps 0 --save writes the initial weights");
}

/// One Linear layer under MSE: the outputs are linear in θ, so J((1−α)A + αB) is a quadratic in
/// α. Three points (α = 0, ½, 1) determine it; every other point fits it to rounding.
#[test]
fn a_model_linear_in_its_parameters_gives_an_exact_parabola() {
    let d = dir("parabola");
    let cfg = setup(&d, "[{ type = 'linear', out = 3 }]", "mse");
    let a = save(&d, &cfg, "a.safetensors", &["--max-steps", "0"]);
    let b = save(&d, &cfg, "b.safetensors", &[]);
    let args = LandscapeArgs {
        config: Some(cfg.clone()),
        from: Some(a.clone()),
        to: Some(b.clone()),
        points: Some(41),
        bn: "eval".into(),
        ..Default::default()
    };
    let l = measure(&args, &cpu(), false).unwrap();
    let j = |alpha: f64| at(&l, &[alpha]).train.loss;
    let (j0, jh, j1) = (j(0.0), j(0.5), j(1.0));
    // Lagrange's parabola through (0, j0), (½, jh), (1, j1).
    let p = |x: f64| j0 * (x - 0.5) * (x - 1.0) / 0.5 + jh * x * (x - 1.0) / -0.25 + j1 * x * (x - 0.5) / 0.5;
    // Rounding bound. |outputs| ≤ M = Σ|w|·max|x| + |b| with |θ(α)| ≤ 1.5·(|A| + |B|) on
    // [−½, 3/2]; θ(α) rounded to f32 and the f32 dot product of d = 3 terms err by ≤ (d + 2)·u·M,
    // so J = mean (o − t)² (t ∈ {0, 1}) errs by ≤ 2·(M + 1)·(d + 2)·u·M plus u·J for its own
    // rounding; the parabola through three such values errs by ≤ 7× that on [−½, 3/2] (the sum
    // of |Lagrange basis| there), so 8× in all.
    let model = Model::new(3, vec![gradflow::spec::LayerSpec::Linear { out: 3, bias: true }]).unwrap();
    let (pa, _) = gradflow::checkpoint::load_state_dict(&a, &model).unwrap();
    let (pb, _) = gradflow::checkpoint::load_state_dict(&b, &model).unwrap();
    let big = |i: usize| 1.5 * (pa[i].abs() + pb[i].abs()) as f64;
    let (w, bias) = (&model.params[0], &model.params[1]);
    let m = (0..3)
        .map(|r| (0..3).map(|k| big(w.offset + r * 3 + k) * 2.0).sum::<f64>() + big(bias.offset + r))
        .fold(0.0, f64::max);
    let jmax = l.rows.iter().map(|r| r.train.loss).fold(0.0, f64::max);
    let tol = 8.0 * (2.0 * (m + 1.0) * 5.0 * U32 * m + U32 * jmax);
    for r in &l.rows {
        let x = r.coords[0];
        assert!(
            (r.train.loss - p(x)).abs() <= tol,
            "α = {x}: J = {} but the parabola gives {} (tol {tol:.2e})",
            r.train.loss,
            p(x)
        );
    }
    // Not a line: the curvature is there to fit (J(½) is below the chord between the ends).
    assert!(jh < (j0 + j1) / 2.0 - tol, "J(½) = {jh}, chord {}", (j0 + j1) / 2.0);
}

/// The plane A + x(B − A) + y(C − A) holds A, B and C at (0,0), (1,0), (0,1) bit for bit; their
/// losses are eval's, and the three checkpoints as a trajectory project onto those points.
#[test]
fn the_plane_through_three_points_has_their_losses_and_projects_them_back() {
    let d = dir("plane");
    let cfg = setup(&d, BN_LAYERS, "cross-entropy");
    let a = save(&d, &cfg, "a.safetensors", &["--max-steps", "0"]);
    let b = save(&d, &cfg, "b.safetensors", &[]);
    let c = save(&d, &cfg, "c.safetensors", &["--set", "model.init_seed=1", "--set", "train.seed=1"]);
    let list = |v: &[&PathBuf]| v.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>().join(",");
    let args = LandscapeArgs {
        config: Some(cfg.clone()),
        plane: Some(list(&[&a, &b, &c])),
        range: Some("-0.5,1.5".into()),
        points: Some(5),
        bn: "eval".into(),
        trajectory: Some(list(&[&a, &b, &c])),
        ..Default::default()
    };
    let l = measure(&args, &cpu(), false).unwrap();
    assert_eq!(l.rows.len(), 25);
    for (xy, ck) in [([0.0, 0.0], &a), ([1.0, 0.0], &b), ([0.0, 1.0], &c)] {
        let (loss, _) = eval(&cfg, ck, "train");
        assert_eq!(at(&l, &xy).train.loss, loss as f64, "train loss at {xy:?}");
    }
    // Least squares in f64 on f32 differences: the coordinates are exact to a few ulps of f64
    // times the condition of the 2×2 system, far below 1e-6.
    for (p, (x, y)) in l.trajectory.iter().zip([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]) {
        assert!((p.x - x).abs() < 1e-6 && (p.y - y).abs() < 1e-6, "{} at ({}, {})", p.file.display(), p.x, p.y);
        assert!(p.off_plane < 1e-6, "{} is {} off the plane", p.file.display(), p.off_plane);
    }
}

/// Li et al.'s normalisation: each row of a direction's weight matrices has the norm of θ's row
/// (each entry rounded to f32 once: relative error ≤ u per entry, so ≤ u in the norm, doubled
/// for the f64 sums); biases and batch-norm parameters are 0.
#[test]
fn filter_normalised_directions_have_the_rows_norms_of_theta() {
    let layers = vec![
        gradflow::spec::LayerSpec::Linear { out: 6, bias: true },
        gradflow::spec::LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        gradflow::spec::LayerSpec::Relu,
        gradflow::spec::LayerSpec::Linear { out: 3, bias: true },
    ];
    let model = Model::new(4, layers).unwrap();
    let theta = State { params: model.init_params(7), norm: model.init_norm_state() };
    let (d1, d2) = random_directions(&model, &theta, 3);
    assert_ne!(d1.params, d2.params, "two directions, not one twice");
    for d in [&d1, &d2] {
        for t in &model.params {
            let got = &d.params[t.offset..t.offset + t.len];
            if t.norm || t.shape.len() < 2 {
                assert!(got.iter().all(|&v| v == 0.0), "{} is not zeroed", t.name);
                continue;
            }
            let cols = t.len / t.shape[0];
            for r in 0..t.shape[0] {
                let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                let want = norm(&theta.params[t.offset + r * cols..t.offset + (r + 1) * cols]);
                let have = norm(&got[r * cols..(r + 1) * cols]);
                assert!((have - want).abs() <= 2.0 * U32 * want, "{} row {r}: {have} vs θ's {want}", t.name);
            }
        }
    }
}

/// Each bad option is refused before any work, naming itself.
#[test]
fn bad_options_are_named() {
    let d = dir("errors");
    let cfg = setup(&d, BN_LAYERS, "cross-entropy");
    let a = save(&d, &cfg, "a.safetensors", &["--max-steps", "0"]);
    let other_cfg = d.join("other.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("out = 8", "out = 5");
    std::fs::write(&other_cfg, text).unwrap();
    let other = save(&d, &other_cfg, "other.safetensors", &["--max-steps", "0"]);
    let base = LandscapeArgs { from: Some(a.clone()), to: Some(a.clone()), bn: "eval".into(), ..Default::default() };
    let cases = [
        (LandscapeArgs { range: Some("1,1".into()), ..base.clone() }, "--range"),
        (LandscapeArgs { range: Some("2,-1".into()), ..base.clone() }, "--range"),
        (LandscapeArgs { range: Some("0;1".into()), ..base.clone() }, "--range"),
        (LandscapeArgs { points: Some(1), ..base.clone() }, "--points"),
        (LandscapeArgs { bn: "both".into(), ..base.clone() }, "--bn"),
        (LandscapeArgs { to: Some(other.clone()), ..base.clone() }, "--to"),
        (LandscapeArgs { from: None, to: None, plane: Some("x,y".into()), ..base.clone() }, "--plane"),
        (LandscapeArgs { from: None, to: None, ..base.clone() }, "--from"),
        (LandscapeArgs { trajectory: Some(a.to_str().unwrap().into()), ..base.clone() }, "--trajectory"),
    ];
    for (args, flag) in cases {
        let e = measure(&args, &cpu(), false).expect_err(flag).to_string();
        assert!(e.contains(flag), "expected {flag} in: {e}");
    }
}
