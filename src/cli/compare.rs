//! `gradflow compare`: the config's model trained with each of several optimizers (or batching
//! schemes) from the same start, one line each, and their curves overlaid; with `--seeds N`,
//! each from N seeds, with the mean and spread.

use super::CompareArgs;
use crate::error::{Error, Result};
use crate::train::{self, compare, sweep, Placement};

/// The command: trains each contender in turn, printing a line for each, then the plot.
pub fn compare(args: &CompareArgs, placement: &Placement) -> Result<()> {
    let plot = args.plot.as_deref();
    let set = super::with_epochs(&args.set, args.epochs);
    let (config, file) = super::load_config(args.config.clone(), &set)?;
    if let Some(p) = plot {
        train::session::check_outputs_apart(&[(p, "--plot")], &train::session::config_inputs(&config, &file))?;
        crate::plot::format_of(p, "--plot")?;
    }
    if args.seeds == 0 {
        return Err(Error::Usage("--seeds must be at least 1".into()));
    }
    let (train_set, test_set) = train::load_data(&config, &file)?;
    let contenders = compare::parse_contenders(&config, &args.optimizers)?;
    let seeds = if args.seeds > 1 {
        format!(", seeds {}..{} (init and batch seeds moved together)", 0, args.seeds - 1)
    } else {
        String::new()
    };
    if !args.quiet {
        crate::say!(
            "{} ({} train / {} test rows), {} epochs, batch size {}, batching {}, init seed {}, batch seed {}{seeds}",
            file.display(),
            train_set.n,
            test_set.n,
            config.train.epochs,
            config.train.batch_size,
            config.train.batching,
            config.model.init_seed,
            config.train.seed
        );
        print_settings(&config, &contenders);
    }
    let mut runs_of = Vec::new();
    for c in &contenders {
        for seed in 0..args.seeds {
            let mut config = c.config.clone();
            config.model.init_seed += seed as u64;
            config.train.seed += seed as u64;
            let label = if args.seeds > 1 { format!("{} seed {seed}", c.label) } else { c.label.clone() };
            runs_of.push(compare::Contender { label, config });
        }
    }
    let lines = if args.quiet { RunLines::RunsOnly } else { RunLines::All };
    let all = train_all(runs_of, &train_set, &test_set, placement, args.one_by_one, lines)?;
    let (mut means, mut summaries) = (Vec::new(), Vec::new());
    for (c, runs) in contenders.iter().zip(all.chunks(args.seeds)) {
        summaries.push(sweep::Summary::of(&c.label, runs));
        means.push(sweep::mean_run(&c.label, runs));
    }
    if args.seeds > 1 {
        crate::say!("\nmean ± standard deviation over {} seeds:\n{}", args.seeds, sweep::table(&summaries));
    }
    if !args.quiet {
        crate::say!("{}", sweep::throughput_line(&all));
    }
    if let Some(path) = plot {
        crate::plot::write(path, &crate::plot::svg(&compare::charts(&means)))?;
        let what = if args.seeds > 1 { " (means over seeds)" } else { "" };
        if !args.quiet {
            crate::say!("plot: {}{what}", path.display());
        }
    }
    Ok(())
}

/// Every run's full settings, each as an `--optimizers` entry that trains it again.
fn print_settings(base: &crate::config::Config, contenders: &[compare::Contender]) {
    let width = contenders.iter().map(|c| c.label.chars().count()).max().unwrap_or(0);
    crate::say!("settings (each can be pasted back into --optimizers):");
    for c in contenders {
        crate::say!("  {:<width$}  {}", c.label, compare::settings(base, &c.config));
    }
}

/// What `train_all` prints as it goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RunLines {
    /// The device, how the runs train, and each run's line.
    All,
    /// Each run's line only (`compare --quiet`).
    RunsOnly,
    /// Nothing (`sweep --quiet`: its table says it all).
    None,
}

/// Trains `runs` side by side where they can unless `one_by_one` (on the GPU as one batch of
/// models, `train::side_by_side`; with `--cpu`, one run per core), else one after another,
/// printing what `lines` asks for.
pub(super) fn train_all(
    runs: Vec<compare::Contender>,
    train_set: &crate::data::Dataset,
    test_set: &crate::data::Dataset,
    placement: &Placement,
    one_by_one: bool,
    lines: RunLines,
) -> Result<Vec<compare::Run>> {
    use train::side_by_side::SideBySide;
    let together = if one_by_one {
        SideBySide::OneByOne("--one-by-one".into())
    } else if runs.len() < 2 {
        SideBySide::OneByOne("a single run".into())
    } else if placement.cpu {
        SideBySide::Trained(train::side_by_side::run_on_cpu_threads(&runs, train_set, test_set, placement)?)
    } else {
        train::side_by_side::run_side_by_side(&runs, train_set, test_set, placement)?
    };
    let width = runs.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).max(LABEL_WIDTH);
    let (all, runs_too) = (lines == RunLines::All, lines != RunLines::None);
    match together {
        SideBySide::Trained(done) => {
            if all {
                crate::say!("device: {}", done[0].device);
            }
            if runs_too {
                done.iter().for_each(|r| print_run(r, width));
            }
            return Ok(done);
        }
        SideBySide::OneByOne(why) if runs.len() > 1 && all => crate::say!("runs: one after another ({why})"),
        SideBySide::OneByOne(_) => {}
    }
    let mut done = Vec::with_capacity(runs.len());
    for c in &runs {
        let run = compare::run_contender(c, train_set, test_set, placement)?;
        if done.is_empty() && all {
            crate::say!("device: {}", run.device);
        }
        if runs_too {
            print_run(&run, width);
        }
        done.push(run);
    }
    Ok(done)
}

/// The narrowest label column, so that short labels still line up as they always have.
const LABEL_WIDTH: usize = 32;

/// One run's line: where it started and ended, and its training time; the label padded to `width`.
pub(super) fn print_run(run: &compare::Run, width: usize) {
    if let Some(why) = &run.diverged {
        crate::say!("{:<width$} diverged: {why}", run.label);
        return;
    }
    let (first, last) = (run.points[0], run.last());
    // Real targets have no accuracy, even in training: their score is the RMSE, √ of the MSE.
    let score = if last.train_accuracy.is_nan() {
        format!("test rmse {:.4}", last.test_loss.sqrt())
    } else {
        format!("test acc {:5.1}%", 100.0 * last.test_accuracy)
    };
    crate::say!(
        "{:<width$} start loss {:.4}  final train loss {:.4}  test loss {:.4}  {score}  {:6.2} s",
        run.label,
        first.train_loss,
        last.train_loss,
        last.test_loss,
        run.seconds
    );
}
