//! Do deep nets need to be deep? (Ba & Caruana 2014). On the digits and on a data set labelled
//! by a random deep tanh network: a deep ReLU teacher (64 → 128 → 128 → 128 → 10 on the digits),
//! a one-hidden-layer net with the same parameter count trained on the labels, and the same
//! shallow net trained to mimic the teacher's logits (mean squared error on them), over seeds:
//! test accuracy and test cross-entropy. Writes a plot (.svg or .png).
//!
//!     cargo run --release --example mimic [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::mimic::{compare, deep_teacher_data, gaussian, matching_shallow, MimicSetup, SeedScores};
use gradflow::course::width::{spread, trained_params};
use gradflow::error::Result;
use gradflow::optim::Optimizer;
use gradflow::plot::{svg_grid, Chart, Panel, Series};
use gradflow::say;
use gradflow::spec::{Activation, Model};

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];
const UNLABELLED: usize = 20_000;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("mimic.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(&out, "the output file")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits.toml");
    let (train, test) = gradflow::train::load_data(&Config::load(&file)?, &file)?;
    let setup = MimicSetup { epochs: 60, batch_size: 32, optimizer: Optimizer::adam(0.001).into() };
    let teacher = Model::mlp(64, &[128, 128, 128], 10, Activation::Relu)?;
    say!("digits: {} training rows, {} test rows", train.n, test.n);
    let digits = experiment(&teacher, &train, &[], &test, &setup)?;

    let (all, _) = deep_teacher_data(12_000, 16, &[64, 64, 64, 64], 10, 2.0, 7)?;
    let (test, train) = all.split(10_000.0 / 12_000.0, 0)?;
    let mut counts = [0usize; 10];
    all.labels.iter().for_each(|&l| counts[l as usize] += 1);
    say!(
        "\ndeep-teacher data: 16 Gaussian features, labels = argmax of a random 16 → 64×4 (tanh) → 10 net \
         (gain 2); {} training rows, {} test rows; class counts {counts:?}",
        train.n,
        test.n
    );
    let teacher = Model::mlp(16, &[128, 128, 128], 10, Activation::Relu)?;
    let setup = MimicSetup { epochs: 20, batch_size: 64, optimizer: Optimizer::adam(0.001).into() };
    // The paper's transfer set: inputs the teacher labels but no label was drawn for, here more
    // draws of the same Gaussian (another seed).
    let unlabelled = gaussian(UNLABELLED * 16, 8);
    say!("the fourth net, 'mimic+', regresses the teacher's logits on the training inputs and {UNLABELLED} unlabelled ones");
    let made = experiment(&teacher, &train, &unlabelled, &test, &setup)?;
    // Two panels a row: the digits above, the deep-teacher set below.
    let panels: Vec<Panel> = charts(&digits, &made).into_iter().map(Panel::Chart).collect();
    gradflow::plot::write(&out, &svg_grid(&panels, 2))?;
    say!("plot written to {}", out.display());
    Ok(())
}

fn experiment(
    teacher: &Model,
    train: &gradflow::data::Dataset,
    unlabelled: &[f32],
    test: &gradflow::data::Dataset,
    setup: &MimicSetup,
) -> Result<Vec<SeedScores>> {
    let shallow = matching_shallow(teacher)?;
    say!(
        "teacher {} → {:?} (ReLU): {} parameters; shallow {} → {:?} (ReLU): {} parameters",
        teacher.inputs,
        teacher.stages.iter().map(|s| s.outputs()).collect::<Vec<_>>(),
        trained_params(teacher),
        shallow.inputs,
        shallow.stages.iter().map(|s| s.outputs()).collect::<Vec<_>>(),
        trained_params(&shallow)
    );
    say!(
        "Adam lr {}, batch {}, {} epochs, seeds {SEEDS:?}, CPU; the mimic regresses the trained teacher's \
         training-set logits (mse)",
        0.001,
        setup.batch_size,
        setup.epochs
    );
    let runs = compare(teacher, train, unlabelled, test, setup, &SEEDS)?;
    say!(
        "{:>4} {:>18} {:>18} {:>18} {:>12}",
        "seed",
        "teacher acc / CE",
        "shallow acc / CE",
        "mimic acc / CE",
        "mimic mse"
    );
    for r in &runs {
        say!(
            "{:>4} {:>8.4} / {:<7.4} {:>8.4} / {:<7.4} {:>8.4} / {:<7.4} {:>12.5} {}",
            r.seed,
            r.teacher.accuracy,
            r.teacher.cross_entropy,
            r.shallow.accuracy,
            r.shallow.cross_entropy,
            r.mimic.accuracy,
            r.mimic.cross_entropy,
            r.mimic_train_mse,
            r.mimic_more.map_or(String::new(), |m| format!("{:>8.4} / {:<7.4}", m.accuracy, m.cross_entropy))
        );
    }
    for (name, f) in models(runs.iter().all(|r| r.mimic_more.is_some())) {
        let acc = spread(&runs.iter().map(|r| f(r).accuracy).collect::<Vec<_>>());
        let ce = spread(&runs.iter().map(|r| f(r).cross_entropy).collect::<Vec<_>>());
        say!(
            "{name:>8}: test accuracy {:.4} ± {:.4} [{:.4}, {:.4}]   test cross-entropy {:.4} ± {:.4} [{:.4}, {:.4}]",
            acc.mean,
            acc.std,
            acc.min,
            acc.max,
            ce.mean,
            ce.std,
            ce.min,
            ce.max
        );
    }
    Ok(runs)
}

type Pick = fn(&SeedScores) -> gradflow::course::mimic::Scores;

/// The nets to report: the three, and the mimic with unlabelled inputs when every run has one.
fn models(more: bool) -> Vec<(&'static str, Pick)> {
    let mut out: Vec<(&'static str, Pick)> =
        vec![("teacher", |r| r.teacher), ("shallow", |r| r.shallow), ("mimic", |r| r.mimic)];
    if more {
        out.push(("mimic+", |r| r.mimic_more.unwrap_or(r.mimic)));
    }
    out
}

fn charts(digits: &[SeedScores], made: &[SeedScores]) -> Vec<Chart> {
    let chart =
        |title: &str, runs: &[SeedScores], metric: fn(&gradflow::course::mimic::Scores) -> f64, y: &str| Chart {
            title: title.into(),
            x_label: "seed".into(),
            y_label: y.into(),
            series: models(runs.iter().all(|r| r.mimic_more.is_some()))
                .iter()
                .map(|(name, f)| Series {
                    name: (*name).into(),
                    points: runs.iter().map(|r| (r.seed as f64, metric(&f(r)))).collect(),
                })
                .collect(),
            log_y: false,
            y_range: None,
            scatter: true,
        };
    vec![
        chart("digits: test accuracy per seed", digits, |s| s.accuracy, "test accuracy"),
        chart("digits: test cross-entropy per seed", digits, |s| s.cross_entropy, "test cross-entropy"),
        chart("deep-teacher data: test accuracy per seed", made, |s| s.accuracy, "test accuracy"),
        chart("deep-teacher data: test cross-entropy per seed", made, |s| s.cross_entropy, "test cross-entropy"),
    ]
}
