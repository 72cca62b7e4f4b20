//! The `gradflow` command: parses the arguments and dispatches to `gradflow::cli`, where every
//! command's body is.

use std::process::ExitCode;

use clap::Parser;

use gradflow::cli::{self, Cli, Command, TrainArgs};

fn main() -> ExitCode {
    // Before any thread exists: it sets an environment variable.
    gradflow::device::quiet_mesa_device_select();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let hint = moved_option(std::env::args().skip(1));
        let _ = e.print();
        if let (Some(hint), true) = (hint, e.use_stderr()) {
            eprintln!("{hint}");
        }
        std::process::exit(e.exit_code())
    });
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
        Some(Command::Serve { args }) => cli::serve::serve(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// For an option given before the command name that only commands take now (`gradflow --cpu
/// train`, valid before device options moved to the commands), the line saying where it goes.
fn moved_option(args: impl Iterator<Item = String>) -> Option<String> {
    let args: Vec<String> = args.collect();
    // The first word that is neither an option nor --adapter's value.
    let command = (0..args.len()).find(|&i| !args[i].starts_with('-') && (i == 0 || args[i - 1] != "--adapter"))?;
    let moved = args[..command]
        .iter()
        .find(|a| ["--cpu", "--adapter", "--non-strict"].contains(&a.split('=').next().unwrap_or("")))?;
    // Only where the command takes it: `devices` takes none of them.
    let takes = |name: &str, flag: &str| {
        use clap::CommandFactory;
        let flag = flag.split('=').next().unwrap_or("").trim_start_matches('-').to_string();
        Cli::command()
            .find_subcommand(name)
            .is_some_and(|c| c.get_arguments().any(|a| a.get_long() == Some(flag.as_str())))
    };
    if !takes(&args[command], moved) {
        return None;
    }
    Some(format!("hint: {moved} belongs after the command's name now: gradflow {} {moved} …", args[command]))
}
