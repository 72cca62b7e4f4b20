//! The command line as clap parses it: one argument struct per command, and the option groups
//! (device, adapter, state-dict loading) that the commands they apply to flatten in.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::train::Placement;

#[derive(Parser)]
#[command(name = "gradflow", version, about = "Train dense networks on any GPU with WGSL compute shaders")]
// `gradflow` alone trains the default run, so it takes the device options, which go after a
// command's name otherwise (`gradflow --cpu check` is refused: check has no --cpu).
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train the model a config describes (the default: configs/digits.toml).
    Train {
        #[command(flatten)]
        args: TrainArgs,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Loss, accuracy and confusion matrix of a saved model on the config's data.
    Eval {
        #[command(flatten)]
        args: EvalArgs,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Writes a saved model's outputs for new inputs: logits to .npy, or class and logits to CSV.
    Predict {
        #[command(flatten)]
        args: PredictArgs,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// The Hessian of the mean training loss at a saved model: its extreme eigenvalues (Lanczos),
    /// its index and spectral density (stochastic Lanczos quadrature).
    Hessian {
        #[command(flatten)]
        args: HessianArgs,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// The loss along the line between two saved models, (1−α)·A + α·B, or over a plane through
    /// three of them or through one and two filter-normalised random directions.
    Landscape {
        #[command(flatten)]
        args: LandscapeArgs,
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Trains the config's model with each of several optimizers (or batching schemes) from the
    /// same initial weights and batch schedule, and overlays their curves.
    Compare {
        #[command(flatten)]
        args: CompareArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Trains a grid of settings (e.g. learning rates × momenta), each from several seeds, and
    /// prints one table of the final numbers' mean and spread.
    Sweep {
        #[command(flatten)]
        args: SweepArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Runs every kernel on this machine's adapter against the CPU reference and prints the
    /// worst error of each; exits non-zero if one is out of bounds.
    Check {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// List the adapters wgpu can see, best first.
    Devices,
    /// Matmul GFLOP/s and training samples/s on the chosen adapter.
    Bench {
        #[command(flatten)]
        args: BenchArgs,
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Serves a folder (the web page, web/) over HTTP on this machine, to open in a browser.
    Serve {
        #[command(flatten)]
        args: ServeArgs,
    },
}

// The option groups that several commands share, each only on the commands it means something
// for: clap refuses them elsewhere.

// Where a command computes: a GPU adapter or the CPU reference (train, eval, predict, hessian,
// compare, sweep, and `gradflow` alone).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DeviceArgs {
    /// Adapter to use: a substring of its name, or a backend (vulkan, metal, dx12, gl). Also $GRADFLOW_ADAPTER.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Run on the CPU reference path instead of a GPU.
    #[arg(long)]
    pub cpu: bool,
}

impl DeviceArgs {
    /// Where the command runs, as `train` takes it.
    pub fn placement(&self) -> Placement {
        Placement { adapter: self.adapter.clone(), cpu: self.cpu, ..Default::default() }
    }
}

// The adapter alone, for the commands that exist to measure one (check, bench).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AdapterArgs {
    /// Adapter to use: a substring of its name, or a backend (vulkan, metal, dx12, gl). Also $GRADFLOW_ADAPTER.
    #[arg(long)]
    pub adapter: Option<String>,
}

impl AdapterArgs {
    /// The adapter's placement (never the CPU reference: these commands measure a GPU).
    pub fn placement(&self) -> Placement {
        Placement { adapter: self.adapter.clone(), ..Default::default() }
    }
}

// How a state dict is loaded, for the commands that load one (train --init, eval, predict, hessian).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LoadArgs {
    /// Load state dicts that have tensors the config's model lacks, ignoring them with a warning
    /// (torch's strict=False); by default such a file is refused. Not for --resume.
    #[arg(long)]
    pub non_strict: bool,
}

// The argument structs carry no doc comments of their own: clap would take one for the
// command's description, which is the `Command` variant's.

// `gradflow train`, and `gradflow` alone (all defaults).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrainArgs {
    /// Your data, with no config: a CSV (features and a label column: one named label, class,
    /// target, y or species, else the last; class numbers or names) or a .npy of features with
    /// --labels. A default MLP is chosen for it and said; --set refines it. A .toml here is taken
    /// as --config.
    #[arg(value_name = "DATA", conflicts_with = "config")]
    pub data: Option<PathBuf>,
    /// The labels (.npy of integers) for .npy DATA.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub labels: Option<PathBuf>,
    /// The run's TOML config (default: the built-in digits run, configs/digits.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override one config field, e.g. --set optimizer.lr=0.01 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start from a state dict (safetensors, nn.Sequential names), e.g. one saved by PyTorch.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Continue a run from a gradflow checkpoint (parameters, optimizer state, position).
    #[arg(long, value_name = "FILE", conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Write a checkpoint here after every epoch and when the run stops (atomically).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Write a checkpoint here (atomically, as --save) after each epoch that improves the
    /// validation loss: the best epoch's model. Needs data.validation_fraction > 0.
    #[arg(long, value_name = "FILE")]
    pub save_best: Option<PathBuf>,
    /// Stop after this many optimizer steps in all (counting those before --resume); 0 with --save
    /// saves the initial weights (e.g. the start of `gradflow landscape`'s path).
    #[arg(long, value_name = "STEPS")]
    pub max_steps: Option<usize>,
    /// Write metrics here: .csv, or .jsonl for JSON lines (one record per epoch).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Also write a metrics record every N steps (each reads the step's loss back).
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// Write the training curves (and, for 2-feature data, the decision regions) as SVG or PNG (by
    /// extension).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Print only warnings, errors and the closing summary (no header, epoch lines or progress bar).
    #[arg(long)]
    pub quiet: bool,
    /// Print every N-th epoch's line (the run's first and last always); --metrics still records all.
    #[arg(long, value_name = "N")]
    pub log_interval: Option<usize>,
    /// Measure the sharpness λ_max (largest eigenvalue of the training loss's Hessian, 20 Lanczos
    /// steps) at step 0 and every K steps: printed beside 2/η, in --metrics' sharpness column and
    /// a third --plot chart. Changes nothing the run computes.
    #[arg(long, value_name = "K")]
    pub track_sharpness: Option<usize>,
}

// `gradflow eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// A config for the checkpoint's model and data (default: the description the checkpoint
    /// carries; needed for a PyTorch state dict). Checked against the checkpoint.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A gradflow checkpoint or a PyTorch state dict (safetensors).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Which part of the data: test (default), train or all.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Override one config field that leaves the model as trained, e.g. --set data.path=other.csv
    /// (repeatable); one that contradicts the checkpoint is refused.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow predict`.
#[derive(clap::Args, Clone, Debug)]
pub struct PredictArgs {
    /// A config for the checkpoint's model and input scaling (default: the description the
    /// checkpoint carries; needed for a PyTorch state dict). Checked against the checkpoint.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A gradflow checkpoint or a PyTorch state dict (safetensors).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Features: .npy (float32/float64 [n, d]) or CSV without a label column.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// .npy (float32 logits [n, classes]) or .csv (predicted class, then the logits); for a regression model the k predicted targets, a CSV headed by the targets' names.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Override one config field that leaves the model as trained (repeatable); one that
    /// contradicts the checkpoint (data.scale, data.standardize, the layers) is refused.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow hessian`.
#[derive(clap::Args, Clone, Debug)]
pub struct HessianArgs {
    /// A config for the checkpoint's model, loss and data (default: the description the
    /// checkpoint carries; needed for a PyTorch state dict). Checked against the checkpoint.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A gradflow checkpoint or a PyTorch state dict (safetensors).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Eigenvalues to print at each end of the spectrum.
    #[arg(long, default_value_t = crate::exec::hessian_summary::DEFAULT_K)]
    pub k: usize,
    /// Lanczos steps (for the extremes, and per probe for the density).
    #[arg(long, default_value_t = crate::exec::hessian_summary::DEFAULT_STEPS)]
    pub steps: usize,
    /// Random probes for the density and the index.
    #[arg(long, default_value_t = crate::exec::hessian_summary::DEFAULT_PROBES)]
    pub probes: usize,
    /// Write the spectral density as SVG or PNG (by extension).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Override one config field that leaves the model as trained, e.g. --set
    /// train.batch_size=64 (the batches batch norm sees; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow landscape`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LandscapeArgs {
    /// The config the checkpoints were trained with (default: the description the first one carries).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The line's start (α = 0): a gradflow checkpoint or a PyTorch state dict.
    #[arg(long, value_name = "A", requires = "to")]
    pub from: Option<PathBuf>,
    /// The line's end (α = 1), a state of the same model.
    #[arg(long, value_name = "B", requires = "from")]
    pub to: Option<PathBuf>,
    /// A plane through three checkpoints A,B,C: A + x·(B − A) + y·(C − A).
    #[arg(long, value_name = "A,B,C", conflicts_with_all = ["from", "to", "around"])]
    pub plane: Option<String>,
    /// A plane through one checkpoint θ: θ + x·d₁ + y·d₂, d₁ and d₂ random (--random-directions).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to"], requires = "random_directions")]
    pub around: Option<PathBuf>,
    /// The seed of --around's two Gaussian directions, each row of a weight matrix scaled to the
    /// norm of θ's row (Li et al. 2018), biases and batch-norm parameters 0.
    #[arg(long, value_name = "SEED", requires = "around")]
    pub random_directions: Option<u64>,
    /// The range of α (of x and y on a plane) as MIN,MAX, e.g. --range=-0.5,1.5 (default: that
    /// for a line or three points, -1,1 around one).
    #[arg(long, value_name = "MIN,MAX", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// Values of α (41 by default), or per side of a plane (21 by default).
    #[arg(long, value_name = "N")]
    pub points: Option<usize>,
    /// Batch norm while measuring: eval (running statistics, combined like the parameters) or
    /// train (each batch of train.batch_size consecutive rows normalised by its own statistics).
    #[arg(long, value_name = "MODE", default_value = "eval")]
    pub bn: String,
    /// Checkpoints along a training run, comma-separated, projected onto the plane and drawn on it.
    #[arg(long, value_name = "A1,A2,...")]
    pub trajectory: Option<String>,
    /// Write the loss along the line (or the plane's level sets) as SVG or PNG (by extension).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Write every point as CSV: alpha (or x,y), train_loss, test_loss, train_acc, test_acc.
    #[arg(long, value_name = "FILE")]
    pub table: Option<PathBuf>,
    /// Override one config field, e.g. --set data.standardize=true (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow compare`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CompareArgs {
    /// The config whose model, data and training settings every run shares (default: the digits run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Comma-separated entries: config (the config's own optimizer) or a preset (sgd, momentum,
    /// nesterov, adagrad, rmsprop, adam, adamw, sgd-reshuffle, sgd-replacement, gd), each with
    /// optional settings; a preset takes the config's lr unless given one. E.g.
    /// "config,adam(lr=0.003, betas=[0.8, 0.99]),sgd(batching=\"replacement\")".
    #[arg(long, default_value = crate::train::compare::DEFAULT_ENTRIES)]
    pub optimizers: String,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Write the overlaid curves as SVG or PNG, by extension (with --seeds, the mean curve of each
    /// entry).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Train each entry from N seeds (initial weights and batch order both moved by 0..N) and
    /// print the mean and standard deviation of the final numbers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seeds: usize,
    /// Train the runs one after another even where they could train side by side (one batch
    /// of models on the GPU, which small models on one batch plan do by default).
    #[arg(long)]
    pub one_by_one: bool,
    /// Print only each run's line (and, with --seeds, the table of means), warnings and errors.
    #[arg(long)]
    pub quiet: bool,
    /// Override one config field, e.g. --set data.standardize=true (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow sweep`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SweepArgs {
    /// The config every point of the grid starts from (default: the digits run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One axis of the grid: a config key and a TOML list of values, e.g.
    /// "optimizer.lr=[0.01, 0.05, 0.1]". Repeat for more axes; every combination is trained.
    #[arg(long, value_name = "KEY=[VALUES]", required = true)]
    pub grid: Vec<String>,
    /// Train each setting from N seeds (initial weights and batch order both moved by 0..N).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seeds: usize,
    /// Train the runs one after another even where they could train side by side (one batch
    /// of models on the GPU, which small models on one batch plan do by default).
    #[arg(long)]
    pub one_by_one: bool,
    /// Print only the table of means, warnings and errors.
    #[arg(long)]
    pub quiet: bool,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Write the mean curves of every setting as SVG or PNG (by extension).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Write the table (mean ± standard deviation per setting) to FILE.
    #[arg(long, value_name = "FILE")]
    pub table: Option<PathBuf>,
    /// Override one config field, e.g. --set data.standardize=true (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

// `gradflow bench`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// Fewer repetitions and sizes (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Also write every figure as JSON to FILE (for scripts/peers.sh and scripts/gpu-report.sh).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

// `gradflow serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// The folder to serve; / is its index.html (build the page into web/ with scripts/build-web.sh).
    #[arg(long, value_name = "DIR", default_value = "web")]
    pub dir: PathBuf,
    /// The TCP port; 0 takes a free one (the printed URL names it).
    #[arg(long, value_name = "N", default_value_t = 8000)]
    pub port: u16,
    /// The address to listen on; 0.0.0.0 opens the page to other machines.
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub host: String,
}
