//! `gradflow compare`: the config's model trained with each of several optimizers (or batching
//! schemes) from the same start, one line each, and their curves overlaid.

use super::CompareArgs;
use crate::error::{Error, Result};
use crate::train::{self, compare, Placement};

/// The command: trains each contender in turn, printing a line for each, then the plot.
pub fn compare(args: &CompareArgs, placement: &Placement) -> Result<()> {
    let plot = args.plot.as_deref();
    let set = super::with_epochs(&args.set, args.epochs);
    let (config, file) = super::load_config(args.config.clone(), &set)?;
    if let Some(p) = plot {
        train::session::check_writable(p, "--plot")?;
    }
    let (train_set, test_set) = train::load_data(&config, &file)?;
    let contenders = compare::parse_contenders(&config, &args.optimizers)?;
    println!(
        "{} ({} train / {} test rows), {} epochs, init seed {}, batch seed {}",
        file.display(),
        train_set.n,
        test_set.n,
        config.train.epochs,
        config.model.init_seed,
        config.train.seed
    );
    let mut runs = Vec::new();
    for c in &contenders {
        let run = compare::run_contender(c, &train_set, &test_set, placement)?;
        if runs.is_empty() {
            println!("device: {}", run.device);
        }
        let (first, last) = (run.points[0], run.points[run.points.len() - 1]);
        println!(
            "{:<32} start loss {:.4}  final train loss {:.4}  test loss {:.4}  test acc {:5.1}%  {:6.2} s",
            run.label,
            first.1,
            last.1,
            last.2,
            100.0 * last.3,
            run.seconds
        );
        runs.push(run);
    }
    if let Some(path) = plot {
        std::fs::write(path, crate::plot::svg(&compare::charts(&runs)))
            .map_err(|e| Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
        println!("plot: {}", path.display());
    }
    Ok(())
}
