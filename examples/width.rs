//! Width over many seeds: one-hidden-layer ReLU nets of width 2 … 256 on 300 training rows of
//! the digits, 8 seeds each (one `fit_many` batch per width), final training and test loss with
//! their spread; then the same with 20 % of the training labels flipped to another class (test
//! labels clean): test error against width. Writes a plot (.svg or .png).
//!
//!     cargo run --release --example width [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::width::{first_rows, noisy_labels, relabelled, width_sweep, SweepSetup, WidthPoint};
use gradflow::error::Result;
use gradflow::optim::Optimizer;
use gradflow::plot::{svg, Chart, Series};
use gradflow::say;

const WIDTHS: [usize; 8] = [2, 4, 8, 16, 32, 64, 128, 256];
const TRAIN_ROWS: usize = 300;
const NOISE: f64 = 0.2;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("width.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(&out, "the output file")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits.toml");
    let (all_train, test) = gradflow::train::load_data(&Config::load(&file)?, &file)?;
    let train = first_rows(&all_train, TRAIN_ROWS)?;
    let setup =
        SweepSetup { epochs: 100, batch_size: 32, optimizer: Optimizer::adam(0.01).into(), seeds: (0..8).collect() };
    say!(
        "digits: {} training rows, {} test rows; 64 → w (ReLU) → 10, Adam lr 0.01, batch 32, {} epochs, {} seeds, CPU",
        train.n,
        test.n,
        setup.epochs,
        setup.seeds.len()
    );
    say!("\nclean labels");
    let clean = width_sweep(&train, &test, &WIDTHS, &setup)?;
    table(&clean);
    let noisy_train = relabelled(&train, noisy_labels(&train.labels, train.num_classes, NOISE, 1)?)?;
    let flipped = train.labels.iter().zip(&noisy_train.labels).filter(|(a, b)| a != b).count();
    say!(
        "\n{flipped} of {} training labels flipped to another class ({:.0} %), test labels clean",
        train.n,
        NOISE * 100.0
    );
    let noisy = width_sweep(&noisy_train, &test, &WIDTHS, &setup)?;
    table(&noisy);
    gradflow::plot::write(&out, &svg(&charts(&clean, &noisy)))?;
    say!("plot written to {}", out.display());
    Ok(())
}

fn table(points: &[WidthPoint]) {
    say!(
        "{:>5} {:>7} {:>22} {:>22} {:>9} {:>22}",
        "width",
        "params",
        "train loss mean ± std",
        "test loss mean ± std",
        "min–max",
        "test error mean [min, max]"
    );
    for p in points {
        say!(
            "{:>5} {:>7} {:>13.4} ± {:<6.4} {:>13.4} ± {:<6.4} {:>9.4} {:>10.3} [{:.3}, {:.3}]",
            p.width,
            p.params,
            p.train_loss.mean,
            p.train_loss.std,
            p.test_loss.mean,
            p.test_loss.std,
            p.test_loss.max - p.test_loss.min,
            p.test_error.mean,
            p.test_error.min,
            p.test_error.max
        );
    }
}

/// Mean, minimum and maximum over the seeds of one statistic, against log₂ width.
fn band(name: &str, points: &[WidthPoint], f: impl Fn(&WidthPoint) -> gradflow::course::width::Spread) -> Vec<Series> {
    let at = |g: &dyn Fn(&WidthPoint) -> f64| points.iter().map(|p| ((p.width as f64).log2(), g(p))).collect();
    vec![
        Series { name: format!("{name} mean"), points: at(&|p| f(p).mean) },
        Series { name: format!("{name} min"), points: at(&|p| f(p).min) },
        Series { name: format!("{name} max"), points: at(&|p| f(p).max) },
    ]
}

fn charts(clean: &[WidthPoint], noisy: &[WidthPoint]) -> Vec<Chart> {
    let chart = |title: &str, y: &str, series, log_y| Chart {
        title: title.into(),
        x_label: "log₂ width".into(),
        y_label: y.into(),
        series,
        log_y,
        y_range: None,
        scatter: false,
    };
    let mut losses = band("train", clean, |p| p.train_loss);
    losses.extend(band("test", clean, |p| p.test_loss));
    let mut errors = band("clean", clean, |p| p.test_error);
    errors.extend(band("20 % noise", noisy, |p| p.test_error));
    let std = |name: &str, points: &[WidthPoint]| Series {
        name: name.into(),
        points: points.iter().map(|p| ((p.width as f64).log2(), p.test_loss.std)).collect(),
    };
    vec![
        chart("clean labels: final loss over 8 seeds", "cross-entropy (log scale)", losses, true),
        chart("test error against width", "test error (fraction)", errors, false),
        chart(
            "spread of the final test loss",
            "std over seeds (log scale)",
            vec![std("clean", clean), std("20 % noise", noisy)],
            true,
        ),
    ]
}
