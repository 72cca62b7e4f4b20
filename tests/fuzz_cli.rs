//! Property test of the command line: random argument vectors built from the real option names
//! of every command (read from clap's tree, so a new option is fuzzed without an edit here) and
//! values from a pool of awkward ones (huge, negative, empty, decimals, missing files, paths
//! that are the wrong kind of file). Each vector is parsed as `gradflow` parses it; a vector
//! that parses runs its command body through the library on the CPU with a tiny config. No case
//! may panic, an error must be a message in words (no Rust type names), and no single allocation
//! may pass `ALLOWANCE`.
//!
//! `check` (the GPU kernels), `bench` (minutes) and `serve` (runs until stopped) are only
//! parsed. Counts that set a run's length (`--epochs`, `--seeds`, hessian's `--k`, `--steps`,
//! `--probes`, landscape's `--points`) are capped at 2 after parsing, so the file stays within a
//! minute; their huge values still go through clap's checks.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::LazyLock;

use clap::{CommandFactory, Parser};
use gradflow::cli::{self, Cli, Command};
use gradflow::train::Placement;
use proptest::prelude::*;

// ------------------------------------------------------------ the largest allocation

#[path = "common/largest_alloc.rs"]
mod largest_alloc;

use largest_alloc::largest_allocation;

/// A tiny run allocates a few MiB at most; an allocation sized by a huge argument is far more.
const ALLOWANCE: usize = 256 << 20;

// ------------------------------------------------------------ the files the values point at

struct Files {
    dir: PathBuf,
    config: String,
    csv: String,
    checkpoint: String,
    features: String,
}

/// A 20-row, 2-feature CSV, a one-epoch config on it, and a checkpoint trained from that config.
static FILES: LazyLock<Files> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("gradflow-fuzz-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rows: String = (0..20).map(|i| format!("{},{},{}\n", i % 5, i / 5, i % 2)).collect();
    let csv = dir.join("rows.csv");
    std::fs::write(&csv, rows).unwrap();
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        "[data]\npath = 'rows.csv'\ntest_fraction = 0.25\n[model]\nlayers = [{ type = 'linear', out = 4 }, \
         { type = 'relu' }, { type = 'linear', out = 2 }]\n[optimizer]\ntype = 'sgd'\nlr = 0.1\n\
         [train]\nepochs = 1\nbatch_size = 8\n",
    )
    .unwrap();
    let features = dir.join("features.csv");
    std::fs::write(&features, "0.5,1\n2,3\n").unwrap();
    let checkpoint = dir.join("tiny.safetensors");
    let args =
        ["gradflow", "train", "--cpu", "--config", config.to_str().unwrap(), "--save", checkpoint.to_str().unwrap()];
    run(Cli::try_parse_from(args).unwrap()).expect("the tiny run trains");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    Files { config: s(&config), csv: s(&csv), checkpoint: s(&checkpoint), features: s(&features), dir }
});

/// A command's options by long name (global ones too): those taking a value, the flags, and
/// the required ones.
struct Options {
    name: String,
    with_values: Vec<String>,
    flags: Vec<String>,
    required: Vec<String>,
}

fn options() -> Vec<Options> {
    let cli = Cli::command();
    cli.get_subcommands()
        .map(|c| {
            let longs = |keep: &dyn Fn(&clap::Arg) -> bool| {
                c.get_arguments()
                    .chain(cli.get_arguments())
                    .filter(|a| keep(a))
                    .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                    .filter(|l| l != "--help" && l != "--cpu")
                    .collect::<Vec<_>>()
            };
            Options {
                name: c.get_name().to_string(),
                with_values: longs(&|a| a.get_action().takes_values()),
                flags: longs(&|a| !a.get_action().takes_values()),
                required: longs(&|a| a.is_required_set()),
            }
        })
        .collect()
}

/// A value `option` takes, so that half the cases get past clap into the command body.
fn good(option: &str, case_dir: &Path) -> String {
    let f = &*FILES;
    let out = |name: &str| case_dir.join(name).to_str().unwrap().to_string();
    match option {
        "--config" => f.config.clone(),
        "--checkpoint" | "--resume" | "--init" => f.checkpoint.clone(),
        "--input" => f.features.clone(),
        "--output" => out("out.csv"),
        "--save" => out("out.safetensors"),
        "--save-best" => out("best.safetensors"),
        "--metrics" => out("metrics.csv"),
        "--plot" => out("plot.svg"),
        "--table" => out("table.txt"),
        "--json" => out("bench.json"),
        "--set" => "optimizer.lr=0.05".into(),
        "--grid" => "optimizer.lr=[0.1,0.2]".into(),
        "--optimizers" => "sgd,adam".into(),
        "--split" => "all".into(),
        "--adapter" => "llvmpipe".into(),
        _ => "2".into(),
    }
}

/// Options that write a file.
const OUTPUTS: [&str; 7] = ["--plot", "--table", "--output", "--save", "--save-best", "--metrics", "--json"];

/// An output option's relative value (`2.5`, `train.epochs=1`) as a path in the case's folder:
/// the test must not write into the working directory, which is the repository.
fn inside(option: &str, value: String, case_dir: &Path) -> String {
    if OUTPUTS.contains(&option) && !Path::new(&value).is_absolute() {
        case_dir.join(value).to_str().unwrap().to_string()
    } else {
        value
    }
}

/// A value from the pool, for any option: numbers out of every range, text where numbers go,
/// files of the wrong kind, paths that do not exist, and a few good ones.
fn value(pick: usize, case_dir: &Path) -> String {
    let f = &*FILES;
    let out = |name: &str| case_dir.join(name).to_str().unwrap().to_string();
    let pool = [
        "0".to_string(),
        "1".into(),
        "2".into(),
        "-1".into(),
        "99999999999999999999".into(),
        "1e9".into(),
        "2.5".into(),
        "".into(),
        "abc".into(),
        "/nonexistent/x.csv".into(),
        f.config.clone(),
        f.csv.clone(),
        f.checkpoint.clone(),
        out("out.csv"),
        out("out.npy"),
        out("out.safetensors"),
        out("plot.svg"),
        out("metrics.jsonl"),
        "train.epochs=1".into(),
        "train.epochs=99999999999999999999".into(),
        "train.batch_size=0".into(),
        "optimizer.lr=-1".into(),
        "optimizer.lr=abc".into(),
        "model.layers=[{type='linear',out=100000000000}]".into(),
        "optimizer.lr=[0.1,0.2]".into(),
        "train.batch_size=[]".into(),
        "sgd,adam".into(),
        "nope".into(),
        "test".into(),
        "all".into(),
        "f32".into(),
    ];
    pool[pick % pool.len()].clone()
}

/// `gradflow`'s dispatch (src/main.rs) for a parsed command line, on the CPU.
fn run(cli: Cli) -> gradflow::error::Result<()> {
    // Always on the CPU reference, whatever --cpu/--adapter said: the fuzz is about the commands.
    let on_cpu = |adapter: Option<String>| Placement { adapter, cpu: true, ..Default::default() };
    match cli.command {
        None => Ok(()),
        Some(Command::Train { args, device, load }) => cli::train::train_until(
            args,
            &on_cpu(device.adapter),
            load.non_strict,
            &gradflow::dist::Single,
            &AtomicUsize::new(0),
        )
        .map(drop),
        Some(Command::Eval { args, device, load }) => cli::eval::eval(&args, &on_cpu(device.adapter), load.non_strict),
        Some(Command::Predict { args, device, load }) => {
            cli::predict::predict(&args, &on_cpu(device.adapter), load.non_strict)
        }
        Some(Command::Hessian { args, device, load }) => {
            cli::analyse::hessian(&args, &on_cpu(device.adapter), load.non_strict)
        }
        Some(Command::Landscape { args, device, load }) => {
            cli::landscape::landscape(&args, &on_cpu(device.adapter), load.non_strict)
        }
        Some(Command::Compare { args, device }) => cli::compare::compare(&args, &on_cpu(device.adapter)),
        Some(Command::Sweep { args, device }) => cli::sweep::sweep(&args, &on_cpu(device.adapter)),
        Some(Command::Devices) => cli::devices::devices(),
        Some(Command::Check { .. } | Command::Bench { .. } | Command::Serve { .. }) => Ok(()),
    }
}

/// Caps the counts that set a run's length (see the file's comment).
fn bounded(mut cli: Cli) -> Cli {
    let cap = |n: &mut usize| *n = (*n).min(2);
    match &mut cli.command {
        Some(Command::Train { args: a, .. }) => a.epochs.iter_mut().for_each(cap),
        Some(Command::Hessian { args: a, .. }) => [&mut a.k, &mut a.steps, &mut a.probes].into_iter().for_each(cap),
        Some(Command::Landscape { args: a, .. }) => a.points.iter_mut().for_each(cap),
        Some(Command::Compare { args: a, .. }) => {
            a.epochs.iter_mut().for_each(cap);
            cap(&mut a.seeds);
        }
        Some(Command::Sweep { args: a, .. }) => {
            a.epochs.iter_mut().for_each(cap);
            cap(&mut a.seeds);
        }
        _ => {}
    }
    cli
}

/// No Rust type name as a word, and no serde phrasing.
fn in_words(message: &str) -> Result<(), TestCaseError> {
    let words: Vec<&str> = message.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    for name in ["usize", "u64", "u32", "i64", "i128", "f32", "f64"] {
        prop_assert!(!words.contains(&name), "{name:?} in {message}");
    }
    prop_assert!(!message.contains("invalid type") && !message.contains("invalid value:"), "{message}");
    prop_assert!(!message.trim().is_empty());
    Ok(())
}

static CASE: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(21), ..ProptestConfig::default() })]

    #[test]
    fn no_argument_combination_panics_aborts_or_speaks_in_rust_types(
        command in 0usize..64,
        picks in proptest::collection::vec((0usize..64, 0usize..64, 0usize..4), 0..5),
        keep_required in proptest::bool::weighted(0.9),
    ) {
        let all = options();
        let Options { name, with_values, flags, required } = &all[command % all.len()];
        let case_dir = FILES.dir.join(format!("case{}", CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::create_dir_all(&case_dir).unwrap();
        let mut argv = vec!["gradflow".to_string(), name.clone()];
        // On the CPU reference wherever the command runs on a device (check and bench take no --cpu).
        let takes_cpu = Cli::command().find_subcommand(name).is_some_and(|c| c.get_arguments().any(|a| a.get_long() == Some("cpu")));
        if takes_cpu {
            argv.push("--cpu".into());
        }
        let mut given: Vec<String> = Vec::new();
        // Each option at most once but for a rare repeat (clap's own error), half with a good value.
        for (option, v, kind) in picks {
            let option = match kind {
                0 if !flags.is_empty() => flags[option % flags.len()].clone(),
                _ if !with_values.is_empty() => with_values[option % with_values.len()].clone(),
                _ => continue,
            };
            if given.contains(&option) && v % 8 != 0 {
                continue;
            }
            given.push(option.clone());
            argv.push(option.clone());
            if with_values.contains(&option) {
                let value = if kind >= 2 { good(&option, &case_dir) } else { value(v, &case_dir) };
                argv.push(inside(&option, value, &case_dir));
            }
        }
        // Without --config a command reads the built-in digits run, minutes of training here.
        let config = with_values.iter().filter(|o| *o == "--config");
        let needed = required.iter().filter(|_| keep_required).chain(config);
        for option in needed.filter(|o| !given.contains(o)).cloned().collect::<Vec<_>>() {
            argv.extend([option.clone(), good(&option, &case_dir)]);
        }
        let (outcome, largest) = largest_allocation(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| match Cli::try_parse_from(&argv) {
                Err(e) => Err(e.to_string()),
                Ok(cli) => run(bounded(cli)).map_err(|e| e.to_string()),
            }))
        });
        let Ok(result) = outcome else {
            return Err(TestCaseError::fail(format!("{argv:?} panicked")));
        };
        prop_assert!(largest <= ALLOWANCE, "{argv:?}: one allocation of {largest} bytes");
        if let Err(message) = result {
            in_words(&message).map_err(|e| TestCaseError::fail(format!("{argv:?}: {e}")))?;
        }
    }
}
