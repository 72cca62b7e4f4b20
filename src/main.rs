//! The `gradflow` command: parses the arguments and dispatches to `gradflow::cli`, where every
//! command's body is.

use std::process::ExitCode;

use clap::Parser;

use gradflow::cli::{self, Cli, Command, TrainArgs};
use gradflow::train::Placement;

fn main() -> ExitCode {
    // Before any thread exists: it sets an environment variable.
    gradflow::device::quiet_mesa_device_select();
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
