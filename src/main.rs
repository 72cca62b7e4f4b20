//! The `gradflow` command: parses the arguments and dispatches to `gradflow::cli`, where every
//! command's body is.

use std::process::ExitCode;

use clap::Parser;

use gradflow::cli::{self, Cli, Command, TrainArgs};

fn main() -> ExitCode {
    // Before any thread exists: it sets an environment variable.
    gradflow::device::quiet_mesa_device_select();
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
        Some(Command::Landscape { args, device, load }) => {
            cli::landscape::landscape(&args, &device.placement(), load.non_strict)
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
