//! `gradflow sweep`: a grid of settings, each trained from several seeds; one table (mean and
//! spread of the final numbers per setting) and one plot (the mean curves).

use super::SweepArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::train::{self, compare, sweep, Placement};

pub fn sweep(args: &SweepArgs, placement: &Placement) -> Result<()> {
    let set = super::with_epochs(&args.set, args.epochs);
    let (base, file) = super::load_config(args.config.clone(), &set)?;
    let outputs: Vec<(&std::path::Path, &str)> = [(&args.plot, "--plot"), (&args.table, "--table")]
        .into_iter()
        .filter_map(|(p, what)| p.as_deref().map(|p| (p, what)))
        .collect();
    train::session::check_outputs_apart(&outputs, &train::session::config_inputs(&base, &file))?;
    if let Some(p) = &args.plot {
        crate::plot::format_of(p, "--plot")?;
    }
    if args.seeds == 0 {
        return Err(Error::Usage("--seeds must be at least 1".into()));
    }
    let axes = args.grid.iter().map(|g| sweep::Axis::parse(g)).collect::<Result<Vec<_>>>()?;
    if let Some(a) = axes.iter().find(|a| a.key == "data" || a.key.starts_with("data.")) {
        return Err(Error::Usage(format!("--grid {}: a sweep shares one data set; data.* cannot vary", a.key)));
    }
    if let Some(a) = axes.iter().find(|a| a.key == "model.init_seed" || a.key == "train.seed") {
        return Err(Error::Usage(format!("--grid {}: the seeds vary with --seeds N (both together)", a.key)));
    }
    if let Some((i, a)) = axes.iter().enumerate().find(|(i, a)| axes[..*i].iter().any(|b| b.key == a.key)) {
        return Err(Error::Usage(format!("--grid {}: given twice (axis {})", a.key, i + 1)));
    }
    let settings = sweep::settings(&axes);
    // Every run's config is read before any trains, so a bad value fails at once.
    let configs = settings
        .iter()
        .map(|s| {
            (0..args.seeds)
                .map(|seed| {
                    let mut o = set.clone();
                    o.extend(s.overrides.iter().cloned());
                    o.extend(sweep::seed_overrides(&base, seed));
                    match &args.config {
                        Some(p) => Config::load_with(p, &o),
                        None => Config::default_run_with(&o),
                    }
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let (train_set, test_set) = train::load_data(&base, &file)?;
    let epochs = if axes.iter().any(|a| a.key == "train.epochs") {
        "epochs per setting".to_string()
    } else {
        format!("{} epochs", base.train.epochs)
    };
    if !args.quiet {
        crate::say!(
            "{} ({} train / {} test rows), {epochs}; {} settings × {} seeds = {} runs",
            file.display(),
            train_set.n,
            test_set.n,
            settings.len(),
            args.seeds,
            settings.len() * args.seeds
        );
    }
    let runs_of = settings
        .iter()
        .zip(configs)
        .flat_map(|(setting, configs)| {
            configs.into_iter().enumerate().map(move |(seed, config)| compare::Contender {
                label: format!("{} seed {seed}", setting.label),
                config,
            })
        })
        .collect();
    use super::compare::{train_all, RunLines};
    let lines = if args.quiet { RunLines::None } else { RunLines::All };
    let all = train_all(runs_of, &train_set, &test_set, placement, args.one_by_one, lines)?;
    let (mut means, mut summaries) = (Vec::new(), Vec::new());
    for (setting, runs) in settings.iter().zip(all.chunks(args.seeds)) {
        summaries.push(sweep::Summary::of(&setting.label, runs));
        means.push(sweep::mean_run(&setting.label, runs));
    }
    let table = sweep::table(&summaries);
    if args.quiet {
        crate::say!("{}", table.trim_end());
    } else {
        crate::say!("\nmean ± standard deviation over {} seeds:\n{table}", args.seeds);
        crate::say!("{}", sweep::throughput_line(&all));
    }
    if let Some(path) = &args.table {
        std::fs::write(path, &table).map_err(|e| Error::Io { file: path.clone(), message: e.to_string() })?;
        if !args.quiet {
            crate::say!("table: {}", path.display());
        }
    }
    if let Some(path) = &args.plot {
        crate::plot::write(path, &crate::plot::svg(&compare::charts(&means)))?;
        if !args.quiet {
            crate::say!("plot: {} (means over seeds)", path.display());
        }
    }
    Ok(())
}
