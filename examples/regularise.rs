//! What regularises, on the noisy digits of `examples/width.rs` (300 training rows, 20 % of
//! their labels flipped; 100 more rows, flipped alike, to validate; the clean test split):
//! a 256-wide net trained with no regulariser, with AdamW's decoupled weight decay, and stopped
//! early on the validation loss. Then the sharpness where training ends (spirals, MSE, the
//! setting of configs/spirals_gd.toml) against batch size and learning rate, beside 2/η.
//! Writes a plot (.svg or .png).
//!
//!     cargo run --release --example regularise [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::width::{curves, final_sharpness, first_rows, noisy_labels, one_hidden, relabelled, stop_epoch};
use gradflow::data::{BatchScheme, Dataset};
use gradflow::error::Result;
use gradflow::optim::{AdamW, Optimizer, Sgd};
use gradflow::plot::{svg, Chart, Series};
use gradflow::say;
use gradflow::spec::Loss;
use gradflow::train::Trainer;

const EPOCHS: usize = 100;
const PATIENCE: usize = 10;
const DECAYS: [f64; 2] = [0.1, 1.0];

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("regularise.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(&out, "the output file")?;
    let (loss_chart, error_chart) = decay_against_stopping()?;
    let sharp_chart = sharpness_at_the_end()?;
    gradflow::plot::write(&out, &svg(&[loss_chart, error_chart, sharp_chart]))?;
    say!("plot written to {}", out.display());
    Ok(())
}

/// Rows [from, from + n) of `data`.
fn rows(data: &Dataset, from: usize, n: usize) -> Result<Dataset> {
    let x = data.x[from * data.d..(from + n) * data.d].to_vec();
    Dataset::new(x, data.labels[from..from + n].to_vec(), data.d, data.num_classes, "rows")
}

fn decay_against_stopping() -> Result<(Chart, Chart)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits.toml");
    let (all, test) = gradflow::train::load_data(&Config::load(&file)?, &file)?;
    let train = first_rows(&all, 300)?;
    let train = relabelled(&train, noisy_labels(&train.labels, 10, 0.2, 1)?)?;
    let val = rows(&all, 300, 100)?;
    let val = relabelled(&val, noisy_labels(&val.labels, 10, 0.2, 2)?)?;
    say!(
        "noisy digits: {} training and {} validation rows (20 % of labels flipped), {} clean test rows",
        train.n,
        val.n,
        test.n
    );
    say!("64 → 256 (ReLU) → 10, batch 32, lr 0.01, {EPOCHS} epochs, seed 0, CPU\n");
    let adamw =
        |wd| Optimizer::Adamw(AdamW { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: wd, amsgrad: false });
    let mut runs = vec![("none (Adam)".to_string(), adamw(0.0))];
    runs.extend(DECAYS.iter().map(|&wd| (format!("AdamW λ = {wd}"), adamw(wd))));
    let (mut loss_series, mut error_series) = (Vec::new(), Vec::new());
    say!(
        "{:<30} {:>6} {:>10} {:>10} {:>11} {:>10}",
        "regulariser",
        "epoch",
        "test loss",
        "test err",
        "best t.err",
        "(epoch)"
    );
    let report = |name: &str, c: &gradflow::course::width::Curves, stop: usize| {
        let best =
            c.test_error.iter().enumerate().fold((0, f64::MAX), |b, (i, &e)| if e < b.1 { (i + 1, e) } else { b });
        say!(
            "{name:<30} {stop:>6} {:>10.4} {:>10.3} {:>11.3} {:>10}",
            c.test_loss[stop - 1],
            c.test_error[stop - 1],
            best.1,
            best.0
        );
    };
    for (i, (name, opt)) in runs.iter().enumerate() {
        let model = one_hidden(train.d, 256, 10)?;
        let mut trainer = Trainer::new(model)
            .loss(Loss::CrossEntropy)
            .optimizer(opt.clone())
            .batch_size(32)
            .batching(BatchScheme::Shuffle)
            .seed(0);
        let c = curves(&mut trainer, &train, &val, &test, EPOCHS)?;
        report(name, &c, EPOCHS);
        let epochs = |v: &[f64]| v.iter().enumerate().map(|(e, &y)| (e as f64 + 1.0, y)).collect::<Vec<_>>();
        loss_series.push(Series { name: name.clone(), points: epochs(&c.test_loss) });
        error_series.push(Series { name: name.clone(), points: epochs(&c.test_error) });
        if i == 0 {
            // Early stopping is the unregularised run cut where the validation loss stopped falling.
            let stop = stop_epoch(&c.validation_loss, PATIENCE, 0.0);
            report(&format!("early stopping (patience {PATIENCE})"), &c, stop);
            let cut = |v: &[f64]| epochs(&v[..stop]);
            loss_series.push(Series { name: format!("early stop @ {stop}"), points: cut(&c.test_loss) });
            error_series.push(Series { name: format!("early stop @ {stop}"), points: cut(&c.test_error) });
        }
    }
    let chart = |title: &str, y: &str, series, log_y| Chart {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: y.into(),
        series,
        log_y,
        y_range: None,
        scatter: false,
    };
    Ok((
        chart("noisy labels: clean test loss", "cross-entropy (log scale)", loss_series, true),
        chart("noisy labels: clean test error", "test error (fraction)", error_series, false),
    ))
}

/// (learning rate, batch size or None for the full batch) and the optimizer steps of each run.
const STEPS: usize = 480;

fn sharpness_at_the_end() -> Result<Chart> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/spirals_gd.toml");
    let config = Config::load(&file)?;
    let (train, _) = gradflow::train::load_data(&config, &file)?;
    say!(
        "\nspirals ({} rows), 2 → 32 → 32 → 3 (tanh), MSE, plain SGD, {STEPS} steps, then λ_max of the training loss (CPU)",
        train.n
    );
    say!("{:>6} {:>6} {:>7} {:>10} {:>10} {:>11} {:>10}", "η", "batch", "epochs", "λ_max", "2/η", "η·λ_max/2", "loss");
    let mut series = Vec::new();
    let lrs = [0.05, 0.1, 0.25, 0.5];
    for batch in [train.n, 64, 16] {
        let mut points = Vec::new();
        for lr in lrs {
            let per_epoch = train.n.div_ceil(batch);
            let epochs = STEPS.div_ceil(per_epoch);
            let scheme = if batch == train.n { BatchScheme::FullBatch } else { BatchScheme::Shuffle };
            let mut trainer = Trainer::from_config(&config, train.d)?
                .optimizer(Sgd::new(lr))
                .batching(scheme)
                .batch_size(batch)
                .epochs(epochs)
                .seed(0);
            let history = trainer.fit(&train, None)?;
            let params = trainer.network()?.params()?;
            let lambda = final_sharpness(trainer.model(), config.model.loss, &params, &train)?;
            let loss = history.last().map_or(f64::NAN, |e| e.train_loss as f64);
            say!(
                "{lr:>6} {batch:>6} {epochs:>7} {lambda:>10.3} {:>10.3} {:>11.3} {loss:>10.4}",
                2.0 / lr,
                lr * lambda / 2.0
            );
            points.push((lr, lambda));
        }
        let name = if batch == train.n { "full batch (GD)".to_string() } else { format!("batch {batch}") };
        series.push(Series { name, points });
    }
    let fine: Vec<f64> = (0..=40).map(|i| 0.05 + (0.5 - 0.05) * i as f64 / 40.0).collect();
    series.push(Series { name: "2/η".into(), points: fine.iter().map(|&lr| (lr, 2.0 / lr)).collect() });
    Ok(Chart {
        title: "sharpness where training ends".into(),
        x_label: "learning rate η".into(),
        y_label: "λ_max (log scale)".into(),
        series,
        log_y: true,
        y_range: None,
        scatter: false,
    })
}
