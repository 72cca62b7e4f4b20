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
}

#[derive(Subcommand)]
enum Command {
    /// Train the model a config describes (the default: configs/digits.toml).
    Train(TrainArgs),
    /// List the adapters wgpu can see, best first.
    Devices,
    /// Matmul GFLOP/s and training samples/s on the chosen adapter.
    Bench {
        /// Fewer repetitions and sizes (a smoke run).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let placement = Placement { adapter: cli.adapter.clone(), cpu: cli.cpu };
    let result = match cli.command {
        None => train_cmd(TrainArgs::default(), &placement),
        Some(Command::Train(args)) => train_cmd(args, &placement),
        Some(Command::Devices) => devices(),
        Some(Command::Bench { quick }) => gradflow::bench::run(&placement, quick),
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
        println!(
            "{i}: {}\n   max storage binding {} MiB, max workgroups/dim {}, max invocations/workgroup {}",
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
    let (train_set, test_set) = train::load_data(&config, &file)?;
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
            Some(Checkpoint { params, norm, optimizer_state: None, progress })
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
    net.set_train_data(&train_set)?;
    let mut batcher = train::batcher(&config, train_set.n)?;
    // The batch schedule's RNG state is its seed and the epochs drawn so far: replay them.
    for _ in 0..progress.epoch {
        batcher.next_epoch();
    }
    let save = |net: &mut dyn gradflow::nn::Network, progress: Progress| -> Result<()> {
        if let Some(path) = &args.save {
            let ck = Checkpoint {
                params: net.params()?,
                norm: net.norm_state()?,
                optimizer_state: Some(net.optimizer_state()?),
                progress,
            };
            checkpoint::save(path, net.model(), &config.optimizer, &ck)?;
        }
        Ok(())
    };
    let epochs = config.train.epochs;
    let mut total_samples_per_sec = 0.0;
    let mut epochs_run = 0;
    for epoch in progress.epoch + 1..=epochs {
        let batches = batcher.next_epoch();
        let first = if epoch == progress.epoch + 1 { progress.batch.min(batches.len()) } else { 0 };
        let left = args.max_steps.map_or(usize::MAX, |m| m.saturating_sub(net.steps()));
        let last = batches.len().min(first.saturating_add(left));
        let bar = ProgressBar::new((last - first) as u64);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        let lr = net.lr();
        let report = train::train_batches(net.as_mut(), &batches[first..last], epoch, |_| bar.inc(1))?;
        bar.finish_and_clear();
        if last < batches.len() {
            let at = Progress { steps: net.steps(), epoch: epoch - 1, batch: last };
            save(net.as_mut(), at)?;
            println!("stopped after step {} (--max-steps), in epoch {epoch} after batch {last}", net.steps());
            return Ok(());
        }
        let at = Progress { steps: net.steps(), epoch, batch: 0 };
        save(net.as_mut(), at)?;
        let (_, test_acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
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
    let (test_loss, test_acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
    println!(
        "test accuracy {:.1}% (loss {:.4}); training throughput {:.0} samples/s (mean over epochs)",
        100.0 * test_acc,
        test_loss,
        total_samples_per_sec / epochs_run.max(1) as f64
    );
    Ok(())
}
