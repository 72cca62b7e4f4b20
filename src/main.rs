//! The `gradflow` command: parses the arguments and dispatches to `gradflow::cli`, where every
//! command's body is.

use std::process::ExitCode;

use clap::Parser;

use gradflow::cli::{self, Cli, Command, TrainArgs};

fn main() -> ExitCode {
    quiet_device_select();
    let cli = Cli::parse();
    let result = match cli.command {
        // `train` sets its own exit status (a signal's, a data-parallel run's ranks).
        None => return ExitCode::from(cli::train::run(TrainArgs::default(), &cli.device.placement(), false)),
        Some(Command::Train { args, device, load }) => {
            return ExitCode::from(cli::train::run(args, &device.placement(), load.non_strict))
        }
        Some(Command::Eval { args, device, load }) => cli::eval::eval(&args, &device.placement(), load.non_strict),
        Some(Command::Predict { args, device, load }) => {
            cli::predict::predict(&args, &device.placement(), load.non_strict)
        }
        Some(Command::Hessian { args, device, load }) => {
            cli::analyse::hessian(&args, &device.placement(), load.non_strict)
        }
        Some(Command::Compare { args, device }) => cli::compare::compare(&args, &device.placement()),
        Some(Command::Sweep { args, device }) => cli::sweep::sweep(&args, &device.placement()),
        Some(Command::Check { adapter }) => cli::devices::check(&adapter.placement()),
        Some(Command::Devices) => cli::devices::devices(),
        Some(Command::Bench { args, adapter }) => cli::devices::bench(&args, &adapter.placement()),
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
