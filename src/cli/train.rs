//! `gradflow train` (and `gradflow` alone): one process, or one rank of an MPI run.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::TrainArgs;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::train::session::{self, Ending, TrainOptions};
use crate::train::Placement;

/// The whole command: trains as `args` asks, says how it ended, and returns the process's exit
/// status: 0, 1 for an error, 128 + n after signal n. A failure on some ranks of a
/// data-parallel run only would leave the others waiting: it aborts them all.
pub fn run(args: TrainArgs, placement: &Placement, non_strict: bool) -> u8 {
    let comm = match collective() {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let placement = Placement { rank_on_host: comm.local_rank(), data_parallel: comm.size() > 1, ..placement.clone() };
    let ended = match train(args, &placement, non_strict, comm.as_ref()) {
        Ok(Ending::NothingToDo(reason)) => {
            crate::say!("nothing to do: {reason}");
            Ok(())
        }
        // Every rank stopped at the same step: a normal exit, MPI finalised.
        Ok(Ending::Signalled { signal }) => Err((128 + signal, true)),
        Ok(_) => Ok(()),
        Err(e) => {
            // Reached by every rank alike (through a collective): rank 0 says it, all exit.
            let agreed = matches!(e, Error::Diverged { .. } | Error::Dist(_));
            if !crate::dist::quiet() {
                eprintln!("error: {e}");
            } else if !agreed {
                eprintln!("rank {}: error: {e}", comm.rank());
            }
            Err((1, agreed))
        }
    };
    if let (Err((code, false)), true) = (ended, comm.size() > 1) {
        comm.abort(code as i32);
    }
    match ended {
        Ok(()) => 0,
        Err((code, _)) => code.min(255) as u8,
    }
}

/// Trains as `args` asks, as one rank of `comm`, stopping cleanly on SIGINT/SIGTERM (the
/// handler is installed once the config has loaded).
pub fn train(args: TrainArgs, placement: &Placement, non_strict: bool, comm: &dyn Collective) -> Result<Ending> {
    let (config, file, opts) = options(args, non_strict)?;
    let signal = stop_on_signals()?;
    session::train(&config, &file, &opts, placement, &signal, comm)
}

/// `train` without a signal handler: the run stops after the step in which `signal` is set
/// (to a signal's number) instead. For callers that own the process's signals, and tests.
pub fn train_until(
    args: TrainArgs,
    placement: &Placement,
    non_strict: bool,
    comm: &dyn Collective,
    signal: &AtomicUsize,
) -> Result<Ending> {
    let (config, file, opts) = options(args, non_strict)?;
    session::train(&config, &file, &opts, placement, signal, comm)
}

/// The config (with `--set` and `--epochs`), its file, and the session's options.
fn options(args: TrainArgs, non_strict: bool) -> Result<(crate::config::Config, std::path::PathBuf, TrainOptions)> {
    if args.log_interval == Some(0) {
        return Err(Error::Usage("--log-interval must be at least 1 (print every N-th epoch)".into()));
    }
    if args.track_sharpness == Some(0) {
        return Err(Error::Usage("--track-sharpness must be at least 1 (measure every K steps)".into()));
    }
    let set = super::with_epochs(&args.set, args.epochs);
    // `gradflow train run.toml` means the config: a TOML file is never data.
    let (data, config_file) = match args.data {
        Some(path) if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) => {
            // (DATA and --config conflict in clap: a second config never gets here.)
            if args.labels.is_some() {
                return Err(Error::Usage(format!(
                    "--labels is for .npy data, and {} is a config (its data.labels names the labels)",
                    path.display()
                )));
            }
            (None, Some(path))
        }
        data => (data, args.config),
    };
    let (config, file) = match &data {
        Some(data) => {
            let (config, file, said) = crate::train::own_data::config_for_data(data, args.labels.as_deref(), &set)?;
            if !args.quiet {
                crate::say!("{said}");
            }
            (config, file)
        }
        // A run continued with no config is the run its checkpoint describes, not the digits run.
        None => match (&config_file, &args.resume) {
            (None, Some(ck)) if crate::checkpoint::load_description(ck)?.is_some() => {
                super::saved::config_for(None, &set, ck, non_strict)?
            }
            _ => super::load_config(config_file, &set)?,
        },
    };
    let opts = TrainOptions {
        init: args.init,
        resume: args.resume,
        save: args.save,
        save_best: args.save_best,
        max_steps: args.max_steps,
        metrics: args.metrics,
        log_every: args.log_every,
        plot: args.plot,
        non_strict,
        quiet: args.quiet,
        log_interval: args.log_interval,
        track_sharpness: args.track_sharpness,
    };
    Ok((config, file, opts))
}

/// The process group this `train` runs in: MPI's world under `mpirun`/`srun` with the `mpi`
/// feature (ranks other than 0 then stay quiet), else this process alone.
pub fn collective() -> Result<Box<dyn Collective>> {
    #[cfg(feature = "mpi")]
    let comm = {
        let mpi = crate::dist::Mpi::init()?;
        crate::dist::set_quiet(Collective::rank(&mpi) != 0);
        Box::new(mpi)
    };
    #[cfg(not(feature = "mpi"))]
    let comm = Box::new(crate::dist::Single);
    Ok(comm)
}

/// SIGINT/SIGTERM (Ctrl-C, `kill`, a scheduler's stop) set a flag the training loop reads after
/// each step: it finishes the step, saves and exits. A second signal exits at once (128 + signal).
pub fn stop_on_signals() -> Result<Arc<AtomicUsize>> {
    use signal_hook::consts::TERM_SIGNALS;
    use std::sync::atomic::AtomicBool;
    let received = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    let err = |e: std::io::Error| Error::Usage(format!("could not install the signal handler: {e}"));
    for &sig in TERM_SIGNALS {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&received)).map_err(err)?;
        signal_hook::flag::register(sig, Arc::clone(&received)).map_err(err)?;
        signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize).map_err(err)?;
    }
    Ok(which)
}
