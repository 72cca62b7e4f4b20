//! The built-in 2-D toy sets (`data::toy`, `[data] generate = ...`): reproducible to the bit,
//! balanced, on their curves when noiseless, learnable by a small net, and named in config
//! errors.

mod common;

use std::f64::consts::TAU;
use std::path::Path;

use gradflow::config::Config;
use gradflow::data::{generate_toy, ToyKind, ToySpec};
use gradflow::prelude::*;

fn spec(kind: ToyKind, noise: f64, seed: u64) -> ToySpec {
    ToySpec { noise, seed, ..ToySpec::new(kind) }
}

fn bits(set: &Dataset) -> Vec<u32> {
    set.x.iter().map(|v| v.to_bits()).collect()
}

/// A coordinate is an f64 rounded once to f32: off by at most half an ulp, 2⁻²⁴·|c| ≤ 6e-8
/// for |c| ≤ 1; a radius from two such coordinates by at most √2 times that, < 1e-7. Twice it
/// leaves room for the test's own f64 rounding (1e-16).
const ON_CURVE: f64 = 2e-7;

#[test]
fn the_same_seed_gives_the_same_bits_and_another_seed_other_rows() {
    for kind in ToyKind::ALL {
        let a = generate_toy(&spec(kind, kind.default_noise(), 7)).unwrap();
        let b = generate_toy(&spec(kind, kind.default_noise(), 7)).unwrap();
        let c = generate_toy(&spec(kind, kind.default_noise(), 8)).unwrap();
        assert_eq!(bits(&a), bits(&b), "{kind}");
        assert_eq!(a.labels, b.labels, "{kind}");
        assert_ne!(bits(&a), bits(&c), "{kind}: seeds 7 and 8 gave the same rows");
    }
}

#[test]
fn the_first_rows_are_pinned() {
    // Recorded from this generator (ChaCha12 draws, libm maths): a change here changes every
    // number published from a generated set, in the browser page and the CLI alike.
    let set = generate_toy(&ToySpec::new(ToyKind::Circles)).unwrap();
    let first: Vec<u32> = set.x[..4].iter().map(|v| v.to_bits()).collect();
    assert_eq!(first, PINNED_CIRCLES, "{:?}", &set.x[..4]);
}

const PINNED_CIRCLES: [u32; 4] = [1033725258, 3203582382, 3210401286, 3205560199];

#[test]
fn shapes_balance_and_names() {
    for (kind, classes, points) in [
        (ToyKind::Spirals, 3, 400),
        (ToyKind::Spirals, 5, 101),
        (ToyKind::Xor, 2, 401),
        (ToyKind::Circles, 2, 400),
        (ToyKind::Blobs, 4, 402),
    ] {
        let set = generate_toy(&ToySpec { points, classes, ..ToySpec::new(kind) }).unwrap();
        assert_eq!((set.n, set.d, set.num_classes, set.x.len()), (points, 2, classes, 2 * points), "{kind}");
        let mut counts = vec![0usize; classes];
        set.labels.iter().for_each(|&l| counts[l as usize] += 1);
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{kind}: class counts {counts:?}");
        // Interleaved: row i is class i mod K.
        assert!(set.labels.iter().enumerate().all(|(i, &l)| l as usize == i % classes), "{kind}");
        let names = set.class_names.as_ref().unwrap();
        assert_eq!(names.len(), classes, "{kind}");
        assert_eq!(set.feature_names.as_deref(), Some(&["x".to_string(), "y".to_string()][..]));
    }
    let names = |kind| generate_toy(&ToySpec::new(kind)).unwrap().class_names.unwrap();
    assert_eq!(names(ToyKind::Circles), ["inner", "outer"]);
    assert_eq!(names(ToyKind::Spirals), ["arm 1", "arm 2", "arm 3"]);
    assert_eq!(names(ToyKind::Xor), ["same signs", "opposite signs"]);
    assert_eq!(names(ToyKind::Blobs), ["blob 1", "blob 2", "blob 3"]);
}

#[test]
fn noiseless_circles_lie_on_their_radii() {
    let set = generate_toy(&spec(ToyKind::Circles, 0.0, 3)).unwrap();
    for i in 0..set.n {
        let (x, y) = (set.row(i)[0] as f64, set.row(i)[1] as f64);
        let want = if set.labels[i] == 0 { 0.5 } else { 1.0 };
        assert!((x.hypot(y) - want).abs() <= ON_CURVE, "row {i}: radius {} for class {}", x.hypot(y), set.labels[i]);
    }
}

#[test]
fn noiseless_spirals_lie_on_their_arms() {
    // Arm k of K at t ∈ (0, 1) is t·(cos θ, sin θ) with θ = 2π(k/K + t), and its m rows sit at
    // t = (j + ½)/m: so the radius gives t, and t the angle. A point's position error is its
    // radius error plus 2π·t times it through the angle: ≤ (1 + 2π)·ON_CURVE.
    let (k_arms, n) = (4, 203);
    let set =
        generate_toy(&ToySpec { points: n, classes: k_arms, noise: 0.0, ..ToySpec::new(ToyKind::Spirals) }).unwrap();
    for i in 0..n {
        let (x, y) = (set.row(i)[0] as f64, set.row(i)[1] as f64);
        let (k, j) = (i % k_arms, i / k_arms);
        let m = (n - k).div_ceil(k_arms);
        let t = (j as f64 + 0.5) / m as f64;
        assert!((x.hypot(y) - t).abs() <= ON_CURVE, "row {i}: radius {} for t = {t}", x.hypot(y));
        let theta = TAU * (k as f64 / k_arms as f64 + x.hypot(y));
        let r = x.hypot(y);
        let off = (x - r * theta.cos()).hypot(y - r * theta.sin());
        assert!(off <= (1.0 + TAU) * ON_CURVE, "row {i} (arm {k}): {off} off its arm");
        assert_eq!(set.labels[i] as usize, k);
    }
}

#[test]
fn noiseless_xor_and_blobs_sit_on_their_centres() {
    let xor = generate_toy(&spec(ToyKind::Xor, 0.0, 1)).unwrap();
    for i in 0..xor.n {
        let (x, y) = (xor.row(i)[0], xor.row(i)[1]);
        assert_eq!((x.abs(), y.abs()), (0.5, 0.5), "row {i}");
        assert_eq!(xor.labels[i], u32::from((x > 0.0) != (y > 0.0)), "row {i}");
    }
    let blobs = generate_toy(&spec(ToyKind::Blobs, 0.0, 1)).unwrap();
    for i in 0..blobs.n {
        let angle = TAU * blobs.labels[i] as f64 / 3.0;
        let (x, y) = (blobs.row(i)[0] as f64, blobs.row(i)[1] as f64);
        assert!((x - angle.cos()).hypot(y - angle.sin()) <= ON_CURVE, "row {i}");
    }
}

#[test]
fn bad_parameters_are_refused_by_name() {
    let err = |s: ToySpec| generate_toy(&s).unwrap_err().to_string();
    assert!(err(ToySpec { points: 0, ..ToySpec::new(ToyKind::Circles) }).contains("data.points"));
    // Refused before anything is allocated (a browser tab would abort on it).
    let huge = err(ToySpec { points: usize::MAX, ..ToySpec::new(ToyKind::Blobs) });
    assert!(huge.contains("data.points must be at most"), "{huge}");
    assert!(err(spec(ToyKind::Xor, -0.1, 0)).contains("data.noise"));
    assert!(err(spec(ToyKind::Blobs, f64::NAN, 0)).contains("data.noise"));
    assert!(err(ToySpec { classes: 3, ..ToySpec::new(ToyKind::Circles) }).contains("data.classes"));
    assert!(err(ToySpec { classes: 1, ..ToySpec::new(ToyKind::Spirals) }).contains("data.classes"));
    let unknown = "moons".parse::<ToyKind>().unwrap_err().to_string();
    assert!(unknown.contains("spirals, xor, circles, blobs"), "{unknown}");
}

/// Test accuracy of a 2→16→16→K tanh net trained on the CPU on `kind`'s default set.
fn learned_accuracy(kind: ToyKind, epochs: usize) -> f32 {
    let set = generate_toy(&ToySpec::new(kind)).unwrap();
    let (train, test) = set.split(0.25, 0).unwrap();
    let model = Model::builder(2)
        .dense(16, Activation::Tanh)
        .dense(16, Activation::Tanh)
        .dense(set.num_classes, Activation::Identity)
        .build()
        .unwrap();
    let mut trainer = Trainer::new(model)
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::with_momentum(0.1, 0.9))
        .batch_size(16)
        .epochs(epochs)
        .device(Device::Cpu);
    trainer.fit(&train, None).unwrap();
    trainer.evaluate(&test).unwrap().accuracy
}

#[test]
fn a_small_net_separates_each_set() {
    // Each default set's classes are ≥ 3 noise stds from the boundary between them (circles:
    // radius gap ¼ = 3.1σ at σ 0.08; xor: ½ = 3.3σ at 0.15; blobs: √3/2 = 3.5σ at 0.25), so the
    // best possible accuracy is ≥ 99.8 %; 0.95 allows an imperfect learned boundary and a few of
    // the 100 test rows. Spirals' arms meet at the centre, where no boundary separates them:
    // 0.85 (the CLI's run reaches 0.96).
    for (kind, epochs, threshold) in [
        (ToyKind::Circles, 40, 0.95),
        (ToyKind::Xor, 20, 0.95),
        (ToyKind::Blobs, 20, 0.95),
        (ToyKind::Spirals, 150, 0.85),
    ] {
        let accuracy = learned_accuracy(kind, epochs);
        assert!(accuracy >= threshold, "{kind}: test accuracy {accuracy} < {threshold}");
    }
}

const BODY: &str = "[model]\nlayers = [{ type = \"linear\", out = 2 }]\n[optimizer]\ntype = \"sgd\"\nlr = 0.1\n[train]\nepochs = 1\nbatch_size = 8\n";

fn parse(data: &str) -> Result<Config> {
    Config::parse(&format!("[data]\n{data}\n{BODY}"), Path::new("/tmp/toy.toml"))
}

fn config_error(data: &str) -> String {
    match parse(data) {
        Ok(_) => panic!("[data] {data} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_field() {
    let both = config_error("path = \"x.csv\"\ngenerate = \"circles\"");
    assert!(both.contains("data.path and data.generate") && both.contains("/tmp/toy.toml"), "{both}");
    let neither = config_error("test_fraction = 0.2");
    assert!(neither.contains("data.path") && neither.contains("data.generate"), "{neither}");
    let unknown = config_error("generate = \"moons\"");
    assert!(unknown.contains("data.generate") && unknown.contains("`spirals`, `xor`, `circles`, `blobs`"), "{unknown}");
    let zero = config_error("generate = \"circles\"\npoints = 0");
    assert!(zero.contains("data.points"), "{zero}");
    let huge = config_error("generate = \"circles\"\npoints = 100000000000");
    assert!(huge.contains("data.points") && huge.contains("at most"), "{huge}");
    let negative = config_error("generate = \"circles\"\nnoise = -0.5");
    assert!(negative.contains("data.noise") && negative.contains("-0.5"), "{negative}");
    let wrong_type = config_error("generate = \"circles\"\npoints = \"many\"");
    assert!(wrong_type.contains("data.points") && wrong_type.contains("whole number"), "{wrong_type}");
    for key in ["targets = [\"y\"]", "label_column = \"y\"", "num_classes = 2", "test_path = \"t.csv\""] {
        let e = config_error(&format!("generate = \"xor\"\n{key}"));
        let field = key.split(' ').next().unwrap();
        assert!(e.contains(&format!("data.{field}")) && e.contains("data.generate"), "{e}");
    }
    let stray = config_error("path = \"x.csv\"\nnoise = 0.1");
    assert!(stray.contains("data.noise") && stray.contains("data.generate"), "{stray}");
}

#[test]
fn a_generated_config_splits_as_a_file_would() {
    let config = parse("generate = \"blobs\"\npoints = 90\nclasses = 3\ntest_fraction = 0.2\nvalidation_fraction = 0.25\nstandardize = true").unwrap();
    let file = Path::new("/tmp/toy.toml");
    let split = gradflow::train::load_split(&config, file).unwrap();
    assert_eq!((split.train.n, split.validation.n, split.test.n), (54, 18, 18));
    // The same rows handed to split_rows (as the browser does with its own) split the same way.
    let by_hand =
        gradflow::train::split_rows(generate_toy(&config.data.toy_spec().unwrap()).unwrap(), &config, file).unwrap();
    assert_eq!((bits(&by_hand.train), bits(&by_hand.test)), (bits(&split.train), bits(&split.test)));
    assert_eq!(by_hand.standardize, split.standardize);
    // Standardised with the training rows' statistics: their mean is 0.
    let mean_x: f64 = split.train.x.iter().step_by(2).map(|&v| v as f64).sum::<f64>() / split.train.n as f64;
    assert!(mean_x.abs() < 1e-6, "{mean_x}");
}

#[test]
fn the_cli_trains_the_circles_config() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/circles.toml");
    let (ok, out, err) = common::run_gradflow(&["train", "--config", config, "--cpu", "--quiet"]);
    assert!(ok, "{err}");
    let accuracy: f64 = out
        .split("test accuracy ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in: {out}"));
    // The config's promise (its header): > 95 % on the 100 test rows (see a_small_net_separates_each_set).
    assert!(accuracy > 95.0, "{out}");
}
