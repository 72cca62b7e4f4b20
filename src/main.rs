//! The `gradflow` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gradflow::config::{Config, DEFAULT_CONFIG_PATH};
use gradflow::error::{Error, Result};
use gradflow::spec::Model;
use gradflow::train::{self, session::Ending, Placement};

#[derive(Parser)]
#[command(name = "gradflow", version, about = "Train dense networks on any GPU with WGSL compute shaders")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Adapter to use: a substring of its name, or a backend (vulkan, metal, dx12, gl). Also $GRADFLOW_ADAPTER.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Run on the CPU reference path instead of a GPU.
    #[arg(long, global = true)]
    cpu: bool,
    /// Load state dicts that have tensors the config's model lacks, ignoring them with a warning
    /// (torch's strict=False); by default such a file is refused. Not for --resume.
    #[arg(long, global = true)]
    non_strict: bool,
}

#[derive(clap::Args, Default)]
struct TrainArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override train.epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override one config field, e.g. --set optimizer.lr=0.01 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Start from a state dict (safetensors, nn.Sequential names), e.g. one saved by PyTorch.
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Continue a run from a gradflow checkpoint (parameters, optimizer state, position).
    #[arg(long, value_name = "FILE", conflicts_with = "init")]
    resume: Option<PathBuf>,
    /// Write a checkpoint here after every epoch and when the run stops (atomically).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Stop after this many optimizer steps in all (counting those before --resume).
    #[arg(long, value_name = "STEPS")]
    max_steps: Option<usize>,
    /// Write metrics here: .csv, or .jsonl for JSON lines (one record per epoch).
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Also write a metrics record every N steps (each reads the step's loss back).
    #[arg(long, value_name = "N")]
    log_every: Option<usize>,
    /// Write an SVG of the training curves (and, for 2-feature data, the decision regions).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Train the model a config describes (the default: configs/digits.toml).
    Train(TrainArgs),
    /// Loss, accuracy and confusion matrix of a saved model on the config's data.
    Eval {
        #[arg(long)]
        config: Option<PathBuf>,
        /// A gradflow checkpoint or a PyTorch state dict (safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// Which part of the data: test (default), train or all.
        #[arg(long, default_value = "test")]
        split: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Writes a saved model's outputs for new inputs: logits to .npy, or class and logits to CSV.
    Predict {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// Features: .npy (float32/float64 [n, d]) or CSV without a label column.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// .npy (float32 logits [n, classes]) or .csv (predicted class, then the logits).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// The Hessian of the mean training loss at a saved model: its extreme eigenvalues (Lanczos),
    /// its index and spectral density (stochastic Lanczos quadrature).
    Hessian {
        #[arg(long)]
        config: Option<PathBuf>,
        /// A gradflow checkpoint or a PyTorch state dict (safetensors).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// Eigenvalues to print at each end of the spectrum.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Lanczos steps (for the extremes, and per probe for the density).
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Random probes for the density and the index.
        #[arg(long, default_value_t = 5)]
        probes: usize,
        /// Write the spectral density as an SVG.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Trains the config's model with each of several optimizers (or batching schemes) from the
    /// same initial weights and batch schedule, and overlays their curves.
    Compare {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Comma-separated entries, each a preset with optional settings: sgd, momentum, nesterov,
        /// adagrad, rmsprop, adam, adamw, sgd-reshuffle, sgd-replacement, gd; e.g.
        /// "sgd,adam(lr=0.003),sgd(batching=\"replacement\")".
        #[arg(long, default_value = "sgd,momentum,nesterov,adagrad,rmsprop,adam")]
        optimizers: String,
        /// Override train.epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Write the overlaid curves as an SVG.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Runs every kernel on this machine's adapter against the CPU reference and prints the
    /// worst error of each; exits non-zero if one is out of bounds.
    Check,
    /// List the adapters wgpu can see, best first.
    Devices,
    /// Matmul GFLOP/s and training samples/s on the chosen adapter.
    Bench {
        /// Fewer repetitions and sizes (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Also write every figure as JSON to FILE (for scripts/peers.sh and scripts/gpu-report.sh).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    quiet_device_select();
    let cli = Cli::parse();
    let placement = Placement { adapter: cli.adapter.clone(), cpu: cli.cpu, ..Default::default() };
    let train = |args| {
        let comm = match collective() {
            Ok(comm) => comm,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(1);
            }
        };
        let placement =
            Placement { rank_on_host: comm.local_rank(), data_parallel: comm.size() > 1, ..placement.clone() };
        let ended = match train_cmd(args, &placement, cli.non_strict, comm.as_ref()) {
            Ok(Ending::NothingToDo(reason)) => {
                gradflow::say!("nothing to do: {reason}");
                Ok(())
            }
            // Every rank stopped at the same step: a normal exit, MPI finalised.
            Ok(Ending::Signalled { signal }) => Err((128 + signal, true)),
            Ok(_) => Ok(()),
            Err(e) => {
                // Reached by every rank alike (through a collective): rank 0 says it, all exit.
                let agreed = matches!(e, Error::Diverged { .. } | Error::Dist(_));
                if !gradflow::dist::quiet() {
                    eprintln!("error: {e}");
                } else if !agreed {
                    eprintln!("rank {}: error: {e}", comm.rank());
                }
                Err((1, agreed))
            }
        };
        // A failure on some ranks only would leave the others waiting: it ends them all.
        if let (Err((code, false)), true) = (ended, comm.size() > 1) {
            comm.abort(code as i32);
        }
        ended.map_err(|(code, _)| code)
    };
    let result = match cli.command {
        None => return exit(train(TrainArgs::default())),
        Some(Command::Train(args)) => return exit(train(args)),
        Some(Command::Eval { config, checkpoint, split, set }) => {
            eval_cmd(config, &checkpoint, &split, &set, &placement, cli.non_strict)
        }
        Some(Command::Predict { config, checkpoint, input, output, set }) => {
            predict_cmd(config, &checkpoint, &input, &output, &set, &placement, cli.non_strict)
        }
        Some(Command::Hessian { config, checkpoint, k, steps, probes, plot, set }) => {
            let budget = gradflow::cli::hessian::Budget { k, steps, probes, seed: 0 };
            hessian_cmd(config, &checkpoint, &budget, plot.as_deref(), &set, &placement, cli.non_strict)
        }
        Some(Command::Compare { config, optimizers, epochs, plot, set }) => {
            compare_cmd(config, &optimizers, epochs, plot.as_deref(), &set, &placement)
        }
        Some(Command::Check) => gradflow::check::run(&placement).and_then(|ok| {
            if ok {
                Ok(())
            } else {
                Err(gradflow::error::Error::Usage("check: some kernels are outside their error bounds".into()))
            }
        }),
        Some(Command::Devices) => devices(),
        Some(Command::Bench { quick, json }) => gradflow::bench::run(&placement, quick, json.as_deref()),
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

/// The process's exit status: 0, or `code` (1 for an error, 128 + n after signal n).
fn exit(result: std::result::Result<(), usize>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code.min(255) as u8),
    }
}

fn devices() -> Result<()> {
    let adapters = gradflow::device::list_adapters();
    if adapters.is_empty() {
        println!("no adapters{}", gradflow::device::context::NO_ADAPTER_HINT);
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let schedule = gradflow::kernels::autotune::cached(&info)
            .map_or("not autotuned yet (the first run that opens it times the candidates)".to_string(), |s| s.name());
        println!(
            "{i}: {}\n   max storage binding {} MiB, max workgroups/dim {}, max invocations/workgroup {}\n   matmul schedule: {schedule}",
            gradflow::device::describe_adapter(&info),
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup
        );
    }
    Ok(())
}

fn train_cmd(
    args: TrainArgs,
    placement: &Placement,
    non_strict: bool,
    comm: &dyn gradflow::dist::Collective,
) -> Result<Ending> {
    let mut set = args.set.clone();
    if let Some(e) = args.epochs {
        set.push(format!("train.epochs={e}"));
    }
    let (config, file) = load_config(args.config, &set)?;
    let opts = train::session::TrainOptions {
        init: args.init,
        resume: args.resume,
        save: args.save,
        max_steps: args.max_steps,
        metrics: args.metrics,
        log_every: args.log_every,
        plot: args.plot,
        non_strict,
    };
    let signal = stop_on_signals()?;
    train::session::train(&config, &file, &opts, placement, &signal, comm)
}

/// The process group this `train` runs in: MPI's world under `mpirun`/`srun` with the `mpi`
/// feature (ranks other than 0 then stay quiet), else this process alone.
fn collective() -> Result<Box<dyn gradflow::dist::Collective>> {
    #[cfg(feature = "mpi")]
    let comm = {
        let mpi = gradflow::dist::Mpi::init()?;
        gradflow::dist::set_quiet(gradflow::dist::Collective::rank(&mpi) != 0);
        Box::new(mpi)
    };
    #[cfg(not(feature = "mpi"))]
    let comm = Box::new(gradflow::dist::Single);
    Ok(comm)
}

/// SIGINT/SIGTERM (Ctrl-C, `kill`, a scheduler's stop) set a flag the training loop reads after
/// each step: it finishes the step, saves and exits. A second signal exits at once (128 + signal).
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    use signal_hook::consts::TERM_SIGNALS;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    let received = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    let err = |e: std::io::Error| gradflow::error::Error::Usage(format!("could not install the signal handler: {e}"));
    for &sig in TERM_SIGNALS {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&received)).map_err(err)?;
        signal_hook::flag::register(sig, Arc::clone(&received)).map_err(err)?;
        signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize).map_err(err)?;
    }
    Ok(which)
}

fn load_config(path: Option<PathBuf>, set: &[String]) -> Result<(Config, PathBuf)> {
    match path {
        Some(p) => Ok((Config::load_with(&p, set)?, p)),
        None => Ok((Config::default_run_with(set)?, PathBuf::from(DEFAULT_CONFIG_PATH))),
    }
}

/// An input file with the wrong number of columns is the input's fault, not the checkpoint's:
/// the model's first tensor ([out, in] or a norm's [in]) says how many features it takes.
fn check_input_width(config: &Config, checkpoint: &std::path::Path, input: &std::path::Path, d: usize) -> Result<()> {
    let probe = Model::new(d, config.model.layers.clone())?;
    let Some(first) = probe.params.first() else { return Ok(()) };
    let saved = gradflow::checkpoint::tensor_shape(checkpoint, &first.name)?;
    match saved.as_deref().and_then(|s| s.last()) {
        Some(&want) if want != d => Err(gradflow::error::Error::DataFile {
            file: input.to_path_buf(),
            message: format!(
                "has {d} features per row, but the model in {} takes {want} (tensor '{}' {:?})",
                checkpoint.display(),
                first.name,
                saved.unwrap_or_default()
            ),
        }),
        _ => Ok(()),
    }
}

/// A state dict for `model`, strict unless `--non-strict` (which names what it ignores).
fn state_dict(
    path: &std::path::Path,
    model: &Model,
    non_strict: bool,
) -> Result<(Vec<f32>, gradflow::spec::NormState)> {
    if !non_strict {
        return gradflow::checkpoint::load_state_dict(path, model);
    }
    let (params, norm, ignored) = gradflow::checkpoint::load_state_dict_lenient(path, model)?;
    train::session::warn_ignored(path, &ignored);
    Ok((params, norm))
}

/// The config's model with a checkpoint's (or PyTorch state dict's) parameters, on `placement`.
fn saved_network(
    config: &Config,
    d: usize,
    checkpoint: &std::path::Path,
    placement: &Placement,
    max_rows: usize,
    non_strict: bool,
) -> Result<Box<dyn gradflow::exec::Network>> {
    let model = Model::new(d, config.model.layers.clone())?;
    let (params, norm) = state_dict(checkpoint, &model, non_strict)?;
    let mut net = train::build_network(config, model, placement, max_rows)?;
    net.set_params(&params)?;
    net.set_norm_state(&norm)?;
    Ok(net)
}

/// The config's (training, test) splits, standardised as the checkpoint's model was trained: with
/// the statistics saved in it, if any, rather than ones recomputed from the data.
fn data_for_checkpoint(
    config: &Config,
    file: &std::path::Path,
    checkpoint: &std::path::Path,
) -> Result<(gradflow::data::Dataset, gradflow::data::Dataset)> {
    let saved = gradflow::checkpoint::load_input_transform(checkpoint)?;
    let mut raw = config.clone();
    if saved.is_some() {
        raw.data.standardize = false;
    }
    let (mut train_set, mut test_set) = train::load_data(&raw, file)?;
    if let Some((mean, std)) = saved {
        let s = train::Standardize { mean, std };
        if s.mean.len() != train_set.d {
            return Err(gradflow::error::Error::Shape {
                what: format!("{} standardisation", checkpoint.display()),
                expected: format!("{} features", train_set.d),
                got: s.mean.len().to_string(),
            });
        }
        s.apply(&mut train_set.x);
        s.apply(&mut test_set.x);
    }
    Ok((train_set, test_set))
}

fn compare_cmd(
    config: Option<PathBuf>,
    optimizers: &str,
    epochs: Option<usize>,
    plot: Option<&std::path::Path>,
    set: &[String],
    placement: &Placement,
) -> Result<()> {
    use gradflow::train::compare;
    let mut set = set.to_vec();
    if let Some(e) = epochs {
        set.push(format!("train.epochs={e}"));
    }
    let (config, file) = load_config(config, &set)?;
    if let Some(p) = plot {
        train::session::check_writable(p, "--plot")?;
    }
    let (train_set, test_set) = train::load_data(&config, &file)?;
    let contenders = compare::parse_contenders(&config, optimizers)?;
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
        std::fs::write(path, gradflow::plot::svg(&compare::charts(&runs)))
            .map_err(|e| gradflow::error::Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

fn hessian_cmd(
    config: Option<PathBuf>,
    checkpoint: &std::path::Path,
    budget: &gradflow::cli::hessian::Budget,
    plot: Option<&std::path::Path>,
    set: &[String],
    placement: &Placement,
    non_strict: bool,
) -> Result<()> {
    use gradflow::cli::hessian as report;
    let (config, file) = load_config(config, set)?;
    if let Some(p) = plot {
        train::session::check_writable(p, "--plot")?;
    }
    let (train_set, _) = data_for_checkpoint(&config, &file, checkpoint)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    let (params, _) = state_dict(checkpoint, &model, non_strict)?;
    // Without batch norm the batching does not change the loss: as few batches as memory allows.
    let (batch, norm) = if model.has_batch_norm() {
        let b = config.train.batch_size;
        (b, format!("batch norm in training mode, statistics of each batch of {b} consecutive rows"))
    } else {
        (train_set.n.clamp(1, 4096), "no batch norm".to_string())
    };
    let mut h = gradflow::exec::hessian::Hessian::new(model, config.model.loss, &params, &train_set, batch)?;
    if let Some(gpu) = train::open_gpu(placement, "Hessian-vector products")? {
        println!("device: {}", gpu.describe());
        h.use_gpu(std::sync::Arc::new(gpu))?;
    }
    println!(
        "Hessian of the mean {} loss over the training split ({} rows; {norm}) at {}: {} parameters",
        config.model.loss.name(),
        train_set.n,
        checkpoint.display(),
        gradflow::spectrum::SymmetricOperator::dim(&h)
    );
    let s = report::summarize(&mut h, budget)?;
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.4e}")).collect::<Vec<_>>().join("  ");
    println!("loss {:.6}, gradient norm {:.3e}", s.loss, s.grad_norm);
    println!("smallest eigenvalues ({} Lanczos steps): {}", budget.steps, list(&s.smallest));
    println!("largest eigenvalues:  {}", list(&s.largest));
    println!(
        "index (fraction of eigenvalues below −δ, SLQ with {} probes × {} steps): {:.4}; within ±δ: {:.4} \
         (δ = width/steps = {:.2e}: the quadrature cannot tell these signs apart)",
        budget.probes, budget.steps, s.index, s.unresolved, s.resolution
    );
    if let Some(all) = &s.exact {
        // Eigenvalues within rounding of 0 (n·u·max|λ| of the f64 decomposition) count as zero.
        let tol = all.len() as f64 * f64::EPSILON * all.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let negative = all.iter().filter(|&&x| x < -tol).count();
        let zero = all.iter().filter(|&&x| x.abs() <= tol).count();
        println!(
            "exact (all {} eigenvalues, Jacobi): index {:.4} ({negative} negative, {zero} zero within {tol:.1e}); \
             extremes {:.4e} … {:.4e}",
            all.len(),
            negative as f64 / all.len() as f64,
            all[0],
            all[all.len() - 1]
        );
    }
    println!("{} Hessian-vector products in {:.1} s on {}", s.products, s.seconds, h.device());
    if let Some(path) = plot {
        let title = format!("Hessian spectral density, {} parameters", s.dim);
        let svg = gradflow::plot::svg(&[report::density_chart(&s.density, &title)]);
        std::fs::write(path, svg)
            .map_err(|e| gradflow::error::Error::Io { file: path.to_path_buf(), message: e.to_string() })?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn eval_cmd(
    config: Option<PathBuf>,
    checkpoint: &std::path::Path,
    split: &str,
    set: &[String],
    placement: &Placement,
    non_strict: bool,
) -> Result<()> {
    let (config, file) = load_config(config, set)?;
    let (train_set, test_set) = data_for_checkpoint(&config, &file, checkpoint)?;
    let data = match split {
        "test" => test_set,
        "train" => train_set,
        "all" => {
            let mut all = train_set;
            all.x.extend(&test_set.x);
            all.labels.extend(&test_set.labels);
            all.n += test_set.n;
            all
        }
        other => return Err(gradflow::error::Error::Usage(format!("--split {other}: use test, train or all"))),
    };
    if data.n == 0 {
        return Err(gradflow::error::Error::Usage(format!("the {split} split is empty (data.test_fraction?)")));
    }
    let mut net = saved_network(&config, data.d, checkpoint, placement, 1024.min(data.n), non_strict)?;
    let classes = net.model().outputs();
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(gradflow::error::Error::Model(format!(
            "the data has label {bad} but the model has {classes} outputs"
        )));
    }
    let logits = net.predict(&data.x, data.n)?;
    let out = match config.model.loss {
        gradflow::spec::Loss::CrossEntropy => {
            gradflow::reference::cross_entropy(&logits, &data.labels, data.n, classes)
        }
        gradflow::spec::Loss::Mse => gradflow::reference::mse(&logits, None, &data.labels, data.n, classes),
    };
    println!("{} rows ({split}) on {}", data.n, net.describe());
    println!("loss {:.4}  accuracy {:.2}%", out.loss, 100.0 * out.correct as f64 / data.n as f64);
    // Rows: true class; columns: predicted class (argmax, first maximum as torch.argmax).
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (r, &label) in data.labels.iter().enumerate() {
        let row = &logits[r * classes..(r + 1) * classes];
        let pred = gradflow::reference::argmax(row);
        if (label as usize) < classes {
            confusion[label as usize][pred] += 1;
        }
    }
    println!("confusion matrix (rows: true class, columns: predicted)");
    print!("{:>6}", "");
    for c in 0..classes {
        print!("{c:>6}");
    }
    println!();
    for (t, row) in confusion.iter().enumerate() {
        print!("{t:>6}");
        for v in row {
            print!("{v:>6}");
        }
        println!();
    }
    Ok(())
}

fn predict_cmd(
    config: Option<PathBuf>,
    checkpoint: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    set: &[String],
    placement: &Placement,
    non_strict: bool,
) -> Result<()> {
    use gradflow::error::Error;
    let (config, file) = load_config(config, set)?;
    train::session::check_writable(output, "--output")?;
    let is = |p: &std::path::Path, ext: &str| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
    let (mut x, n, d) = if is(input, "npy") {
        let a = gradflow::data::read_npy(input)?;
        if a.shape.len() != 2 {
            return Err(Error::DataFile {
                file: input.into(),
                message: format!("expected a 2-D array [rows, features], got shape {:?}", a.shape),
            });
        }
        let x: Vec<f32> = match a.data {
            gradflow::data::NpyData::F32(v) => v,
            gradflow::data::NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            // Integers as training takes them: exact in f32 up to 2^24.
            gradflow::data::NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            gradflow::data::NpyData::I32(v) if v.iter().all(|x| x.unsigned_abs() <= 1 << 24) => {
                v.iter().map(|&x| x as f32).collect()
            }
            gradflow::data::NpyData::I64(v) if v.iter().all(|x| x.unsigned_abs() <= 1 << 24) => {
                v.iter().map(|&x| x as f32).collect()
            }
            other => {
                return Err(Error::DataFile {
                    file: input.into(),
                    message: format!(
                        "features must be float32, float64 or integers exact in float32, got {}",
                        other.dtype_name()
                    ),
                })
            }
        };
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::DataFile {
                file: input.into(),
                message: format!("{}: {} in data", gradflow::data::row_feature_text(i, a.shape[1]), x[i]),
            });
        }
        (x, a.shape[0], a.shape[1])
    } else {
        gradflow::data::load_features(input)?
    };
    // The same transforms as training: the config's scale, then the saved standardisation.
    if config.data.scale != 1.0 {
        x.iter_mut().for_each(|v| *v *= config.data.scale);
    }
    let saved = gradflow::checkpoint::load_input_transform(checkpoint)?;
    let standardize = match saved {
        Some((mean, std)) => Some(train::Standardize { mean, std }),
        None => train::Standardize::of_config(&config, &file)?,
    };
    if let Some(s) = &standardize {
        if s.mean.len() != d {
            return Err(Error::DataFile {
                file: input.to_path_buf(),
                message: format!(
                    "has {d} features per row, but the model in {} was trained on {} (its saved standardisation)",
                    checkpoint.display(),
                    s.mean.len()
                ),
            });
        }
        s.apply(&mut x);
    }
    check_input_width(&config, checkpoint, input, d)?;
    let mut net = saved_network(&config, d, checkpoint, placement, 1024.min(n.max(1)), non_strict)?;
    let logits = net.predict(&x, n)?;
    let classes = net.model().outputs();
    if is(output, "npy") {
        gradflow::data::write_npy_f32(output, &[n, classes], &logits)?;
    } else {
        let mut text = String::from("predicted");
        for c in 0..classes {
            text += &format!(",logit_{c}");
        }
        text.push('\n');
        for row in logits.chunks(classes) {
            let pred = gradflow::reference::argmax(row);
            text += &pred.to_string();
            for v in row {
                text += &format!(",{v}");
            }
            text.push('\n');
        }
        gradflow::checkpoint::write_atomic(output, text.as_bytes())?;
    }
    println!("{n} rows → {} ({classes} outputs each)", output.display());
    Ok(())
}
