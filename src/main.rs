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

#[derive(Subcommand)]
enum Command {
    /// Train the model a config describes (the default: configs/digits.toml).
    Train {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override train.epochs.
        #[arg(long)]
        epochs: Option<usize>,
    },
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
        None => train_cmd(None, None, &placement),
        Some(Command::Train { config, epochs }) => train_cmd(config, epochs, &placement),
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

fn train_cmd(config_path: Option<PathBuf>, epochs: Option<usize>, placement: &Placement) -> Result<()> {
    let (mut config, file) = match config_path {
        Some(p) => (Config::load(&p)?, p),
        None => (Config::default_run()?, PathBuf::from(DEFAULT_CONFIG_PATH)),
    };
    if let Some(e) = epochs {
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
    let mut net = train::build_network(&config, model, placement, max_rows)?;
    println!("device: {}", net.describe());
    println!("optimizer: {:?}", config.optimizer);
    net.set_train_data(&train_set)?;
    let mut batcher = train::batcher(&config, train_set.n)?;
    let epochs = config.train.epochs;
    let mut total_samples_per_sec = 0.0;
    for epoch in 1..=epochs {
        let bar = ProgressBar::new(batcher.steps_per_epoch() as u64);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        let lr = net.lr();
        let report = train::train_epoch(net.as_mut(), &mut batcher, epoch, |_| bar.inc(1))?;
        bar.finish_and_clear();
        let (_, test_acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
        total_samples_per_sec += report.samples_per_sec;
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
        total_samples_per_sec / epochs.max(1) as f64
    );
    Ok(())
}
