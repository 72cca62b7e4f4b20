//! The world's simplest ML problem (issue 22 §7): linear regression with noise
//! (data/linear_noise.csv, configs/linear_noise.toml) learned by SGD with a constant step. The
//! loss stops falling at L* + the noise ball's excess, which `course::noise_ball` predicts
//! exactly for batches drawn with replacement and to first order as η·tr(S)/B. This trains the
//! engine's own Linear layer (CPU reference) over a grid of steps and batch sizes, measures the
//! plateau, and compares; then shows a decaying step shrinking the ball. Writes a plot.
//!
//!     cargo run --release --example noise_ball [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::noise_ball::{plateau, stationary_covariance, LeastSquares};
use gradflow::data::{BatchScheme, Dataset};
use gradflow::error::Result;
use gradflow::optim::{OptimizerSetup, Schedule, Sgd};
use gradflow::plot::{svg, Chart, Series};
use gradflow::say;
use gradflow::train::{Device, History, Trainer};

const EPOCHS: usize = 1000;
/// Epochs left out of the plateau's average while the iterates reach the ball: at η = 0.01, B = 16
/// the loss relaxes as e^(−4ηλ_min·t) with t steps (13 an epoch), ~1/20 per 100 epochs.
const BURN_IN: usize = 200;
const STEPS: [f64; 4] = [0.01, 0.03, 0.1, 0.3];
const BATCHES: [usize; 3] = [1, 4, 16];

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("noise_ball.svg"), PathBuf::from);
    gradflow::plot::format_of(&out, "the output file")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/linear_noise.toml");
    // Every row trains: the ball is a statement about the training loss.
    let config = Config::load_with(&file, &["data.test_fraction=0".into()])?;
    let (data, _) = gradflow::train::load_data(&config, &file)?;
    let targets = data.targets.as_ref().expect("configs/linear_noise.toml names a target column");
    let problem = LeastSquares::new(&data.x, data.d, &targets.values, true)?;
    let best = problem.loss(&problem.minimiser()?);
    say!("{} rows, {} features and a bias; least squares L* = {best:.6} (torch's mse, mean)", data.n, data.d);
    say!("plateau = mean over epochs {}..{EPOCHS} of L(θ) on every row after the epoch, minus L*", BURN_IN + 1);
    say!("{:>6} {:>3} {:>11} {:>11} {:>19} {:>19}", "η", "B", "exact", "first order", "with replacement", "reshuffled");

    let mut ratio: Vec<Series> = BATCHES.iter().map(|b| series(&format!("B = {b}, with replacement"))).collect();
    let mut shuffled: Vec<Series> = BATCHES.iter().map(|b| series(&format!("B = {b}"))).collect();
    for &eta in &STEPS {
        for (k, &batch) in BATCHES.iter().enumerate() {
            let ball = stationary_covariance(&problem, eta, batch)?;
            let with = plateau(
                &fit(&config, &data, eta, batch, BatchScheme::Replacement, Schedule::Constant)?,
                best,
                BURN_IN,
            )?;
            let re =
                plateau(&fit(&config, &data, eta, batch, BatchScheme::Shuffle, Schedule::Constant)?, best, BURN_IN)?;
            say!(
                "{eta:>6} {batch:>3} {:>11.3e} {:>11.3e} {:>10.3e} ± {:.0e} {:>10.3e} ± {:.0e}",
                ball.excess_loss,
                ball.first_order,
                with.mean,
                with.standard_error,
                re.mean,
                re.standard_error
            );
            ratio[k].points.push((eta.log10(), with.mean / ball.excess_loss));
            shuffled[k].points.push((eta.log10(), re.mean / with.mean));
        }
    }

    // A step decaying linearly from 0.3 to 0.003 over the first half (Goodfellow et al. §8.3.1).
    let decay = Schedule::LinearDecay { tau: (EPOCHS / 2 * data.n) as u32, final_factor: 0.01 };
    let constant = fit(&config, &data, 0.3, 1, BatchScheme::Replacement, Schedule::Constant)?;
    let decaying = fit(&config, &data, 0.3, 1, BatchScheme::Replacement, decay)?;
    let tail = plateau(&decaying, best, EPOCHS - 20)?;
    let small = stationary_covariance(&problem, 0.003, 1)?;
    say!(
        "decaying 0.3 → 0.003 (B = 1): last 20 epochs' excess {:.2e} ± {:.0e}; the ball of η = 0.003 is {:.2e}",
        tail.mean,
        tail.standard_error,
        small.excess_loss
    );
    let big = stationary_covariance(&problem, 0.3, 1)?;
    let curve = |name: &str, h: &History| Series {
        name: name.into(),
        points: h.iter().filter_map(|e| Some((e.epoch as f64, f64::from(e.test_loss?) - best))).collect(),
    };
    let level = |name: &str, v: f64| Series { name: name.into(), points: vec![(1.0, v), (EPOCHS as f64, v)] };
    let charts = [
        Chart {
            log_y: true,
            ..chart(
                "L(θ) − L* after each epoch, B = 1",
                "epoch",
                "excess training loss",
                vec![
                    curve("η = 0.3", &constant),
                    curve("η 0.3 → 0.003", &decaying),
                    level("ball of η = 0.3", big.excess_loss),
                    level("ball of η = 0.003", small.excess_loss),
                ],
            )
        },
        Chart { y_range: Some((0.0, 2.0)), ..chart("measured plateau / exact ball", "log₁₀ η", "ratio", ratio) },
        Chart {
            y_range: Some((0.0, 1.4)),
            ..chart("reshuffled plateau / with replacement", "log₁₀ η", "ratio", shuffled)
        },
    ];
    gradflow::plot::write(&out, &svg(&charts))?;
    say!("plot written to {}", out.display());
    Ok(())
}

/// SGD on the config's Linear layer, evaluated on the training rows after every epoch.
fn fit(
    config: &Config,
    data: &Dataset,
    eta: f64,
    batch: usize,
    scheme: BatchScheme,
    schedule: Schedule,
) -> Result<History> {
    let sgd = OptimizerSetup { schedule, ..Sgd::new(eta).into() };
    let mut trainer = Trainer::from_config(config, data.d)?
        .optimizer(sgd)
        .batch_size(batch)
        .batching(scheme)
        .epochs(EPOCHS)
        .device(Device::Cpu)
        .seed(7);
    trainer.fit(data, Some(data))
}

fn series(name: &str) -> Series {
    Series { name: name.into(), points: Vec::new() }
}

fn chart(title: &str, x: &str, y: &str, series: Vec<Series>) -> Chart {
    Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        log_y: false,
        y_range: None,
        scatter: false,
    }
}
