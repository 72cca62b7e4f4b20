//! Sharpness and the step size (Cohen et al. 2021, "edge of stability"): full-batch gradient
//! descent on the spirals (configs/spirals_gd.toml) at two learning rates, and SGD with batches
//! of 16 at the larger one (17 epochs of 30 steps: about as many steps), each tracking λ_max of the training loss's Hessian with
//! `train --track-sharpness`. One figure: λ_max against the step with each run's 2/η, and the
//! training loss.
//!
//! cargo run --release --example sharpness -- [out = docs/sharpness.svg]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use gradflow::cli::{self, TrainArgs};
use gradflow::plot::{svg, Chart, Series};

/// (label, --set overrides, epochs, K) of each run.
const RUNS: [(&str, &[&str], usize, usize); 3] = [
    ("GD, η = 0.25", &["optimizer.lr=0.25"], 500, 5),
    ("GD, η = 0.5", &["optimizer.lr=0.5"], 500, 5),
    ("SGD (batch 16), η = 0.5", &["optimizer.lr=0.5", "train.batching=\"shuffle\"", "train.batch_size=16"], 17, 10),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "docs/sharpness.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(Path::new(&out), "the output file")?;
    let config = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals_gd.toml"));
    let dir = std::env::temp_dir().join(format!("gradflow-sharpness-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cpu = gradflow::train::Placement { cpu: true, ..Default::default() };
    let (mut sharp, mut loss, mut thresholds) = (Vec::new(), Vec::new(), Vec::<(f64, f64)>::new());
    for (i, (label, set, epochs, every)) in RUNS.iter().enumerate() {
        let metrics = dir.join(format!("run{i}.csv"));
        let args = TrainArgs {
            config: Some(config.clone()),
            set: set.iter().map(|s| s.to_string()).collect(),
            epochs: Some(*epochs),
            metrics: Some(metrics.clone()),
            track_sharpness: Some(*every),
            log_interval: Some(epochs / 5),
            ..Default::default()
        };
        println!("== {label}: --track-sharpness {every}");
        cli::train::train_until(args, &cpu, false, &gradflow::dist::Single, &AtomicUsize::new(0))?;
        let rows = read(&metrics)?;
        let measured: Vec<&Row> = rows.iter().filter(|r| r.sharpness.is_some()).collect();
        let lambda = |r: &&Row| r.sharpness.unwrap_or(f64::NAN);
        let two_over_lr = 2.0 / measured[0].lr;
        let late = &measured[measured.len() / 2..];
        let (lo, hi) = late.iter().map(lambda).fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let peak = measured.iter().map(lambda).fold(f64::MIN, f64::max);
        println!(
            "   λmax: {:.3} at step 0, peak {peak:.3}, second half of the run {lo:.3} … {hi:.3}; 2/η = {two_over_lr:.3}",
            lambda(&measured[0])
        );
        sharp.push(Series {
            name: format!("{label}: λmax"),
            points: measured.iter().map(|r| (r.step, lambda(r))).collect(),
        });
        // One threshold line per distinct η, after every run's λmax: each run keeps its colour in
        // both charts, and runs sharing an η share its line.
        let last = measured[measured.len() - 1].step;
        thresholds.push((two_over_lr, last));
        // Epoch records (with an accuracy): the epoch's mean training loss at its last step.
        let epochs: Vec<(f64, f64)> =
            rows.iter().filter(|r| r.epoch_record).filter_map(|r| r.loss.map(|l| (r.step, l))).collect();
        loss.push(Series { name: label.to_string(), points: epochs });
    }
    thresholds.sort_by(|a, b| b.0.total_cmp(&a.0));
    thresholds.dedup_by(|a, b| a.0 == b.0);
    for (two_over_lr, last) in thresholds {
        let name = format!("2/η = {two_over_lr} (η = {})", 2.0 / two_over_lr);
        sharp.push(Series { name, points: vec![(0.0, two_over_lr), (last, two_over_lr)] });
    }
    let charts = [
        Chart {
            title: "sharpness against 2/η".into(),
            x_label: "step".into(),
            y_label: "λmax of the training loss's Hessian".into(),
            series: sharp,
            log_y: false,
            y_range: None,
            scatter: false,
        },
        Chart {
            title: "training loss".into(),
            x_label: "step".into(),
            y_label: "MSE (epoch mean, log scale)".into(),
            series: loss,
            log_y: true,
            y_range: None,
            scatter: false,
        },
    ];
    gradflow::plot::write(Path::new(&out), &svg(&charts))?;
    println!("wrote {out}");
    Ok(())
}

/// One line of a metrics CSV, in the fields used here.
struct Row {
    step: f64,
    lr: f64,
    loss: Option<f64>,
    sharpness: Option<f64>,
    epoch_record: bool,
}

fn read(path: &Path) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let num = |s: &str| -> Result<Option<f64>, std::num::ParseFloatError> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some)
        }
    };
    // Columns: step, epoch, loss, accuracy, test_loss, test_accuracy, lr, grad_norm, wall_s, sharpness.
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Ok(Row {
                step: f[0].parse()?,
                lr: f[6].parse()?,
                loss: num(f[2])?,
                sharpness: num(f[9])?,
                epoch_record: !f[3].is_empty(),
            })
        })
        .collect()
}
