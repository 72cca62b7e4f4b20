//! The `gradflow` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use gradflow::config::{Config, DEFAULT_CONFIG_PATH};
use gradflow::error::Result;
use gradflow::nn::Model;
use gradflow::train::{self, Placement};

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
    let cli = Cli::parse();
    let placement = Placement { adapter: cli.adapter.clone(), cpu: cli.cpu };
    let result = match cli.command {
        None => train_cmd(TrainArgs::default(), &placement),
        Some(Command::Train(args)) => train_cmd(args, &placement),
        Some(Command::Eval { config, checkpoint, split, set }) => {
            eval_cmd(config, &checkpoint, &split, &set, &placement)
        }
        Some(Command::Predict { config, checkpoint, input, output, set }) => {
            predict_cmd(config, &checkpoint, &input, &output, &set, &placement)
        }
        Some(Command::Hessian { config, checkpoint, k, steps, probes, plot, set }) => {
            let budget = gradflow::spectrum::report::Budget { k, steps, probes, seed: 0 };
            hessian_cmd(config, &checkpoint, &budget, plot.as_deref(), &set, &placement)
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

fn devices() -> Result<()> {
    let adapters = gradflow::gpu::list_adapters();
    if adapters.is_empty() {
        println!("no adapters{}", gradflow::gpu::context::NO_ADAPTER_HINT);
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let schedule = gradflow::gpu::autotune::cached(&info)
            .map_or("not autotuned yet (the first run that opens it times the candidates)".to_string(), |s| s.name());
        println!(
            "{i}: {}\n   max storage binding {} MiB, max workgroups/dim {}, max invocations/workgroup {}\n   matmul schedule: {schedule}",
            gradflow::gpu::describe_adapter(&info),
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup
        );
    }
    Ok(())
}

fn describe_model(model: &Model) -> String {
    model.summary()
}

fn train_cmd(args: TrainArgs, placement: &Placement) -> Result<()> {
    use gradflow::checkpoint::{self, Checkpoint, Progress};
    let (mut config, file) = match &args.config {
        Some(p) => (Config::load_with(p, &args.set)?, p.clone()),
        None => {
            let file = PathBuf::from(DEFAULT_CONFIG_PATH);
            (Config::parse_with(gradflow::config::DEFAULT_CONFIG, &file, &args.set)?, file)
        }
    };
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    let (train_set, test_set, fitted) = train::run::load_data_with_stats(&config, &file)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    if model.outputs() < train_set.num_classes {
        return Err(gradflow::error::Error::Model(format!(
            "the last layer has {} outputs but the data has {} classes",
            model.outputs(),
            train_set.num_classes
        )));
    }
    println!("config: {}", file.display());
    println!(
        "data: {} ({} train / {} test rows, {} features, {} classes)",
        config.data.path.display(),
        train_set.n,
        test_set.n,
        train_set.d,
        train_set.num_classes
    );
    println!("model: {}", describe_model(&model));
    let max_rows = train::max_rows(&config, train_set.n);
    train::check_batches(&model, &train::batcher(&config, train_set.n)?)?;
    // Checkpoints are read before the device is opened: a bad file fails fast.
    let mut progress = Progress::default();
    let start_state = match (&args.init, &args.resume) {
        (Some(path), _) => {
            let (params, norm) = checkpoint::load_state_dict(path, &model)?;
            println!("init: {}", path.display());
            Some(Checkpoint {
                params,
                norm,
                optimizer_state: None,
                progress,
                standardize: None,
                schedule: String::new(),
            })
        }
        (None, Some(path)) => {
            let ck = checkpoint::load(path, &model, &config.optimizer)?;
            progress = ck.progress;
            println!(
                "resume: {} (step {}, epoch {}, batch {})",
                path.display(),
                progress.steps,
                progress.epoch,
                progress.batch
            );
            Some(ck)
        }
        (None, None) => None,
    };
    let mut net = train::build_network(&config, model.clone(), placement, max_rows)?;
    if let Some(ck) = &start_state {
        net.set_params(&ck.params)?;
        net.set_norm_state(&ck.norm)?;
        if let Some(state) = &ck.optimizer_state {
            net.set_optimizer_state(state)?;
        }
        net.set_steps(ck.progress.steps);
    }
    println!("device: {}", net.describe());
    println!("optimizer: {:?}", config.optimizer);
    if let Some(stream) = config.data.stream {
        net.set_streaming(stream);
    }
    net.set_train_data(&train_set)?;
    let mut batcher = train::batcher(&config, train_set.n)?;
    // The batch schedule's RNG state is its seed and the epochs drawn so far: replay them.
    for _ in 0..progress.epoch {
        batcher.next_epoch();
    }
    // What the batch position refers to: a resume with another schedule would replay other batches.
    let t = &config.train;
    let schedule = format!(
        "{} batch_size={} drop_last={} seed={} rows={}",
        t.batching, t.batch_size, t.drop_last, t.seed, train_set.n
    );
    if let Some(ck) = start_state.as_ref().filter(|ck| ck.optimizer_state.is_some()) {
        if ck.schedule != schedule {
            return Err(gradflow::error::Error::Checkpoint {
                file: args.resume.clone().unwrap_or_default(),
                message: format!("saved for the batch schedule '{}', but the config gives '{schedule}'", ck.schedule),
            });
        }
    }
    let standardize = match start_state.as_ref().and_then(|ck| ck.standardize.clone()) {
        Some(saved) => Some(saved),
        None => fitted.map(|s| (s.mean, s.std)),
    };
    let save = |net: &mut dyn gradflow::nn::Network, progress: Progress| -> Result<()> {
        if let Some(path) = &args.save {
            let ck = Checkpoint {
                params: net.params()?,
                norm: net.norm_state()?,
                optimizer_state: Some(net.optimizer_state()?),
                progress,
                standardize: standardize.clone(),
                schedule: schedule.clone(),
            };
            checkpoint::save(path, net.model(), &config.optimizer, &ck)?;
        }
        Ok(())
    };
    let epochs = config.train.epochs;
    let mut total_samples_per_sec = 0.0;
    let mut epochs_run = 0;
    let clock = std::time::Instant::now();
    let mut metrics = match &args.metrics {
        Some(p) => Some(train::metrics::MetricsWriter::create(p, args.resume.is_some())?),
        None => None,
    };
    let mut curves: Vec<Curve> = Vec::new();
    for epoch in progress.epoch + 1..=epochs {
        let batches = batcher.next_epoch();
        let first = if epoch == progress.epoch + 1 { progress.batch } else { 0 };
        if first > batches.len() {
            return Err(gradflow::error::Error::Usage(format!(
                "the checkpoint is at batch {first} of epoch {epoch}, which has only {} batches",
                batches.len()
            )));
        }
        let left = args.max_steps.map_or(usize::MAX, |m| m.saturating_sub(net.steps()));
        let last = batches.len().min(first.saturating_add(left));
        // indicatif draws nothing when stderr is not a terminal (logs, pipes, CI).
        let run = &batches[first..last];
        let bar = ProgressBar::new(run.iter().map(Vec::len).sum::<usize>() as u64);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} samples {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        if let Some(c) = curves.last() {
            bar.set_message(format!("last epoch's loss {:.4}", c.1));
        }
        let lr = net.lr();
        let report = train::train_batches(net.as_mut(), run, epoch, |net, i| {
            bar.inc(run[i - 1].len() as u64);
            if let (Some(every), Some(m)) = (args.log_every, metrics.as_mut()) {
                if every > 0 && net.steps() % every == 0 {
                    let loss = net.last_loss()? as f64;
                    bar.set_message(format!("loss {loss:.4}"));
                    m.write(&train::metrics::Record {
                        step: net.steps(),
                        epoch,
                        loss: Some(loss),
                        lr: net.lr() as f64,
                        grad_norm: Some(train::metrics::grad_norm(&net.grads()?)),
                        wall_s: clock.elapsed().as_secs_f64(),
                        ..Default::default()
                    })?;
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        if last < batches.len() {
            let at = Progress { steps: net.steps(), epoch: epoch - 1, batch: last };
            save(net.as_mut(), at)?;
            println!("stopped after step {} (--max-steps), in epoch {epoch} after batch {last}", net.steps());
            return Ok(());
        }
        let at = Progress { steps: net.steps(), epoch, batch: 0 };
        save(net.as_mut(), at)?;
        let (test_loss, test_acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
        if let Some(m) = metrics.as_mut() {
            m.write(&train::metrics::Record {
                step: net.steps(),
                epoch,
                loss: Some(report.train_loss as f64),
                accuracy: Some(report.train_accuracy as f64),
                test_loss: Some(test_loss as f64),
                test_accuracy: Some(test_acc as f64),
                lr: lr as f64,
                grad_norm: Some(train::metrics::grad_norm(&net.grads()?)),
                wall_s: clock.elapsed().as_secs_f64(),
            })?;
        }
        curves.push((
            epoch as f64,
            report.train_loss as f64,
            report.train_accuracy as f64,
            test_loss as f64,
            test_acc as f64,
        ));
        total_samples_per_sec += report.samples_per_sec;
        epochs_run += 1;
        println!(
            "epoch {epoch:>3}/{epochs}  lr {lr:.3e}  loss {:.4}  train acc {:5.1}%  test acc {:5.1}%  {:>9.0} samples/s",
            report.train_loss,
            100.0 * report.train_accuracy,
            100.0 * test_acc,
            report.samples_per_sec
        );
    }
    if let Some(path) = &args.plot {
        write_plot(path, &curves, net.as_mut(), &train_set, &test_set)?;
        println!("plot: {}", path.display());
    }
    let (test_loss, test_acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
    println!(
        "test accuracy {:.1}% (loss {:.4}); training throughput {:.0} samples/s (mean over epochs)",
        100.0 * test_acc,
        test_loss,
        total_samples_per_sec / epochs_run.max(1) as f64
    );
    Ok(())
}

fn load_config(path: Option<PathBuf>, set: &[String]) -> Result<(Config, PathBuf)> {
    match path {
        Some(p) => Ok((Config::load_with(&p, set)?, p)),
        None => {
            let file = PathBuf::from(DEFAULT_CONFIG_PATH);
            Ok((Config::parse_with(gradflow::config::DEFAULT_CONFIG, &file, set)?, file))
        }
    }
}

/// The config's model with a checkpoint's (or PyTorch state dict's) parameters, on `placement`.
fn saved_network(
    config: &Config,
    d: usize,
    checkpoint: &std::path::Path,
    placement: &Placement,
    max_rows: usize,
) -> Result<Box<dyn gradflow::nn::Network>> {
    let model = Model::new(d, config.model.layers.clone())?;
    let (params, norm) = gradflow::checkpoint::load_state_dict(checkpoint, &model)?;
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
    budget: &gradflow::spectrum::report::Budget,
    plot: Option<&std::path::Path>,
    set: &[String],
    placement: &Placement,
) -> Result<()> {
    use gradflow::spectrum::report;
    let (config, file) = load_config(config, set)?;
    let (train_set, _) = data_for_checkpoint(&config, &file, checkpoint)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    let (params, _) = gradflow::checkpoint::load_state_dict(checkpoint, &model)?;
    // Without batch norm the batching does not change the loss: as few batches as memory allows.
    let (batch, norm) = if model.has_batch_norm() {
        let b = config.train.batch_size;
        (b, format!("batch norm in training mode, statistics of each batch of {b} consecutive rows"))
    } else {
        (train_set.n.clamp(1, 4096), "no batch norm".to_string())
    };
    let mut h = gradflow::nn::hessian::Hessian::new(model, config.model.loss, &params, &train_set, batch)?;
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
    let mut net = saved_network(&config, data.d, checkpoint, placement, 1024.min(data.n))?;
    let classes = net.model().outputs();
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(gradflow::error::Error::Model(format!(
            "the data has label {bad} but the model has {classes} outputs"
        )));
    }
    let logits = net.predict(&data.x, data.n)?;
    let out = match config.model.loss {
        gradflow::nn::Loss::CrossEntropy => gradflow::cpu::cross_entropy(&logits, &data.labels, data.n, classes),
        gradflow::nn::Loss::Mse => gradflow::cpu::mse(&logits, None, &data.labels, data.n, classes),
    };
    println!("{} rows ({split}) on {}", data.n, net.describe());
    println!("loss {:.4}  accuracy {:.2}%", out.loss, 100.0 * out.correct as f64 / data.n as f64);
    // Rows: true class; columns: predicted class (argmax, first maximum as torch.argmax).
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (r, &label) in data.labels.iter().enumerate() {
        let row = &logits[r * classes..(r + 1) * classes];
        let pred = gradflow::cpu::argmax(row);
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
) -> Result<()> {
    use gradflow::error::Error;
    let (config, file) = load_config(config, set)?;
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
            return Err(Error::Shape {
                what: format!("{} features", input.display()),
                expected: s.mean.len().to_string(),
                got: d.to_string(),
            });
        }
        s.apply(&mut x);
    }
    let mut net = saved_network(&config, d, checkpoint, placement, 1024.min(n.max(1)))?;
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
            let pred = gradflow::cpu::argmax(row);
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

/// (epoch, train loss, train accuracy, test loss, test accuracy) of each epoch.
type Curve = (f64, f64, f64, f64, f64);

/// Training curves, and for 2-feature data the decision regions with the points.
fn write_plot(
    path: &std::path::Path,
    curves: &[Curve],
    net: &mut dyn gradflow::nn::Network,
    train_set: &gradflow::data::Dataset,
    test_set: &gradflow::data::Dataset,
) -> Result<()> {
    use gradflow::plot::{svg_with_regions, Chart, Regions, Series};
    let series = |name: &str, f: &dyn Fn(&Curve) -> f64| Series {
        name: name.into(),
        points: curves.iter().map(|c| (c.0, f(c))).filter(|p| p.1.is_finite()).collect(),
    };
    let charts = [
        Chart {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss (log scale)".into(),
            series: vec![series("train", &|c| c.1), series("test", &|c| c.3)],
            log_y: true,
            y_range: None,
            scatter: false,
        },
        Chart {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy (%)".into(),
            series: vec![series("train", &|c| 100.0 * c.2), series("test", &|c| 100.0 * c.4)],
            log_y: false,
            y_range: Some((0.0, 100.0)),
            scatter: false,
        },
    ];
    let regions = if train_set.d == 2 {
        let all: Vec<&[f32]> = train_set.x.chunks(2).chain(test_set.x.chunks(2)).collect();
        let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &all {
            (xlo, xhi) = (xlo.min(p[0] as f64), xhi.max(p[0] as f64));
            (ylo, yhi) = (ylo.min(p[1] as f64), yhi.max(p[1] as f64));
        }
        let (mx, my) = (0.05 * (xhi - xlo).max(1e-6), 0.05 * (yhi - ylo).max(1e-6));
        let bounds = (xlo - mx, xhi + mx, ylo - my, yhi + my);
        let n = 120;
        let mut grid = Vec::with_capacity(2 * n * n);
        for row in 0..n {
            for col in 0..n {
                grid.push((bounds.0 + (col as f64 + 0.5) / n as f64 * (bounds.1 - bounds.0)) as f32);
                grid.push((bounds.2 + (row as f64 + 0.5) / n as f64 * (bounds.3 - bounds.2)) as f32);
            }
        }
        let logits = net.predict(&grid, n * n)?;
        let c = net.model().outputs();
        let classes = logits.chunks(c).map(gradflow::cpu::argmax).collect();
        let labels = train_set.labels.iter().chain(&test_set.labels);
        let points = all.iter().zip(labels).map(|(p, &l)| (p[0] as f64, p[1] as f64, l as usize)).collect();
        Some(Regions { title: "decision regions".into(), bounds, resolution: n, classes, points })
    } else {
        None
    };
    gradflow::checkpoint::write_atomic(path, svg_with_regions(&charts, regions.as_ref()).as_bytes())
}
