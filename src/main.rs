//! The `gradflow` command: parses the arguments and dispatches to `gradflow::cli`, where every
//! command's body is.

use std::process::ExitCode;

use clap::Parser;

use gradflow::cli::{self, Cli, Command, TrainArgs};
use gradflow::train::Placement;

fn main() -> ExitCode {
    quiet_device_select();
    let cli = Cli::parse();
    let placement = Placement { adapter: cli.adapter.clone(), cpu: cli.cpu, ..Default::default() };
    let non_strict = cli.non_strict;
    let result = match cli.command {
        // `train` sets its own exit status (a signal's, a data-parallel run's ranks).
        None => return ExitCode::from(cli::train::run(TrainArgs::default(), &placement, non_strict)),
        Some(Command::Train(args)) => return ExitCode::from(cli::train::run(args, &placement, non_strict)),
        Some(Command::Eval(args)) => cli::eval::eval(&args, &placement, non_strict),
        Some(Command::Predict(args)) => cli::predict::predict(&args, &placement, non_strict),
        Some(Command::Hessian(args)) => cli::analyse::hessian(&args, &placement, non_strict),
        Some(Command::Compare(args)) => cli::compare::compare(&args, &placement),
        Some(Command::Sweep(args)) => cli::sweep::sweep(&args, &placement),
        Some(Command::Check) => cli::devices::check(&placement),
        Some(Command::Devices) => cli::devices::devices(),
        Some(Command::Bench(args)) => cli::devices::bench(&args, &placement),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan device-select layer connects to Wayland while adapters are enumerated and, on a
/// headless machine without XDG_RUNTIME_DIR, prints "error: XDG_RUNTIME_DIR is invalid or not set"
/// twice, which reads as gradflow's own error. The layer only reorders adapters for programs that
/// take the first one; gradflow ranks them itself (`--adapter`), so without a runtime folder (and
/// so without a display to select for) the layer is turned off through its own switch. Runs
/// first in `main`, before any thread exists.
fn quiet_device_select() {
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !runtime_dir_ok && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}
