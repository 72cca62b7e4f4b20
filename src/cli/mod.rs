//! The `gradflow` command's bodies, as library functions: `src/main.rs` parses the arguments
//! (`Cli`) and dispatches here, so a command can be called, and tested, without spawning the
//! binary. Each prints what the command prints and returns `error::Result`; `main` turns an error
//! into `error: …` on stderr and exit status 1. `train::run` decides its own exit status
//! (a signal's, and a data-parallel run's ranks).

mod args;
mod saved;

pub mod analyse;
pub mod compare;
pub mod devices;
pub mod eval;
pub mod hessian;
pub mod landscape;
pub mod predict;
pub mod serve;
pub mod sweep;
pub mod train;

use std::path::PathBuf;

pub use args::{
    AdapterArgs, BenchArgs, Cli, Command, CompareArgs, DeviceArgs, EvalArgs, HessianArgs, LandscapeArgs, LoadArgs,
    PredictArgs, ServeArgs, SweepArgs, TrainArgs,
};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::error::Result;

/// The config at `path` (the default run's without one) with `--set` overrides, and the file it
/// names.
pub fn load_config(path: Option<PathBuf>, set: &[String]) -> Result<(Config, PathBuf)> {
    match path {
        Some(p) => Ok((Config::load_with(&p, set)?, p)),
        None => Ok((Config::default_run_with(set)?, PathBuf::from(DEFAULT_CONFIG_PATH))),
    }
}

/// `--set` with `--epochs` added as `train.epochs=…` (last, so it wins).
fn with_epochs(set: &[String], epochs: Option<usize>) -> Vec<String> {
    let mut set = set.to_vec();
    if let Some(e) = epochs {
        set.push(format!("train.epochs={e}"));
    }
    set
}
