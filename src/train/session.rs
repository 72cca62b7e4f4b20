//! `gradflow train` from start to end, in the order it happens: refuse what cannot work before
//! anything is written, load, build, run the epochs, and stop cleanly on a signal, a step budget
//! or divergence. The CLI parses arguments and installs the signal handler; this does the rest.
//! Start-up and the ranks' agreement are here; what is checked and read before the first step
//! is in `preflight`, the epochs themselves (progress bar, records, checkpoints) in `epochs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use super::Placement;
use crate::checkpoint::{Checkpoint, Fnv, Progress};
use crate::config::Config;
use crate::data::Dataset;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::exec::Network;
use crate::spec::Model;

mod epochs;
mod preflight;
mod watch;

pub use epochs::fmt_loss;
use preflight::{check_outputs, check_resume, finished, print_header, read_start};
pub use preflight::{check_outputs_apart, check_writable, config_inputs, fingerprint, schedule_of, warn_ignored};

/// What `gradflow train` was asked to do besides the config.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub init: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub save: Option<PathBuf>,
    /// Write a checkpoint here whenever the validation loss improves (needs a validation split).
    pub save_best: Option<PathBuf>,
    pub max_steps: Option<usize>,
    pub metrics: Option<PathBuf>,
    pub log_every: Option<usize>,
    pub plot: Option<PathBuf>,
    /// Take a state dict with tensors the model does not have (torch's `strict=False`), naming them.
    pub non_strict: bool,
    /// Print only warnings, errors and the closing summary. Printing never changes what is computed.
    pub quiet: bool,
    /// Print every N-th epoch's line (the run's first and last always).
    pub log_interval: Option<usize>,
    /// Measure λ_max of the training loss's Hessian at step 0 and every K steps (`sharpness`).
    pub track_sharpness: Option<usize>,
}

/// How a run that did not fail ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Finished,
    /// `--max-steps` reached inside an epoch (the position is saved with `--save`).
    StepBudget,
    /// Stopped by signal `signal` after finishing the step it was in.
    Signalled {
        signal: usize,
    },
    /// Nothing to train: the reason.
    NothingToDo(String),
    /// `train.early_stopping`: no better validation loss in the epochs after `best_epoch`, up
    /// to `epoch`, where the run stopped.
    EarlyStopped {
        epoch: usize,
        best_epoch: usize,
    },
}

/// Trains `config` (read from `config_file`) as `opts` asks, on `placement`, as one rank of
/// `comm` (`dist::Single` for one process). `signal` is set (to the signal's number) by the
/// CLI's handler: the step in flight finishes, the position is saved and the run ends with
/// `Ending::Signalled`.
pub fn train(
    config: &Config,
    config_file: &Path,
    opts: &TrainOptions,
    placement: &Placement,
    signal: &AtomicUsize,
    comm: &dyn Collective,
) -> Result<Ending> {
    // Every rank must run the same config: a hash, compared before anything is loaded (and
    // before any rank can decide alone that there is nothing to do).
    if !comm.all_equal(Fnv::of(format!("{config:?}").as_bytes()))? {
        return Err(Error::Dist(
            "the ranks were started with different configs (or --set values); every rank must get the same".into(),
        ));
    }
    if config.train.epochs == 0 {
        return Ok(Ending::NothingToDo("train.epochs = 0".into()));
    }
    let lead = comm.rank() == 0;
    let (started, run) = agree(comm, start(config, config_file, opts, placement, comm, lead))?;
    // The same options, training rows and starting state on every rank, or the replicas would
    // part ways (or wait in different collectives).
    if !comm.all_equal(run)? {
        return Err(Error::Dist(
            "the ranks differ in their options (--init, --resume, --max-steps, --cpu), their training rows or the \
             checkpoint they start from; every rank must get the same"
                .into(),
        ));
    }
    let start = match started {
        Started::Run(start) => *start,
        Started::NothingToDo(reason) => return Ok(Ending::NothingToDo(reason)),
    };
    epochs::run(config, opts, start, signal, comm)
}

/// What start-up found: a run to make, or nothing to train.
enum Started {
    Run(Box<Start>),
    NothingToDo(String),
}

/// Everything a run needs before its first step.
struct Start {
    net: Box<dyn Network>,
    train_set: Dataset,
    validation_set: Dataset,
    test_set: Dataset,
    batcher: crate::data::Batcher,
    progress: Progress,
    saved: Saved,
}

/// Loads, checks and builds, unless there is nothing to train. Rank 0 checks the outputs
/// (only it writes) and prints; every rank builds its network on its own adapter.
fn start(
    config: &Config,
    config_file: &Path,
    opts: &TrainOptions,
    placement: &Placement,
    comm: &dyn Collective,
    lead: bool,
) -> Result<(Started, u64)> {
    if lead {
        check_outputs(opts, config, config_file)?;
    }
    let super::run::Split { train: train_set, validation: validation_set, test: test_set, standardize: fitted } =
        super::run::load_split(config, config_file)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    super::run::check_labels(&model, &train_set, &test_set, config)?;
    super::run::check_labels(&model, &train_set, &validation_set, config)?;
    let batcher = super::batcher(config, train_set.n)?;
    super::check_batches(&model, &batcher)?;
    check_split(&model, &batcher, comm.size())?;
    let start = read_start(config, opts, &model)?;
    let progress = start.as_ref().map_or(Progress::default(), |ck| ck.progress);
    let train_rows = fingerprint(&train_set);
    let run = run_hash(opts, placement, &train_rows, start.as_ref());
    if let Some(reason) = finished(config, opts, &progress) {
        return Ok((Started::NothingToDo(reason), run));
    }
    let schedule = schedule_of(config, train_set.n);
    if let Some(ck) = start.as_ref().filter(|ck| ck.optimizer_state.is_some()) {
        check_resume(opts, ck, &schedule, &train_rows)?;
    }
    print_header(config, config_file, [&train_set, &validation_set, &test_set], &model, opts.quiet);
    if comm.size() > 1 && !opts.quiet {
        crate::say!(
            "data-parallel: {} ranks, {} rows of each batch per rank",
            comm.size(),
            batcher.largest_batch() / comm.size()
        );
    }
    // Each rank holds its share of a batch.
    let max_rows = super::max_rows(config, train_set.n).div_ceil(comm.size());
    let mut net = super::build_network(config, model, placement, max_rows)?;
    if let Some(ck) = &start {
        net.set_params(&ck.params)?;
        net.set_norm_state(&ck.norm)?;
        if let Some(state) = &ck.optimizer_state {
            net.set_optimizer_state(state)?;
        }
        net.set_steps(ck.progress.steps);
    }
    if let Some(stream) = config.data.stream {
        net.set_streaming(stream);
    }
    net.set_bucket_cap(config.train.bucket_bytes());
    net.set_train_data(&train_set)?;
    if !opts.quiet {
        // After the data is set: a regression set moves the GPU step off the fused kernel.
        crate::say!("device: {}", net.describe());
        // A constant rate is said here once instead of in every epoch's line.
        let constant = if config.train.schedule == crate::optim::Schedule::Constant { "; lr constant" } else { "" };
        crate::say!("optimizer: {}{constant}", config.optimizer);
    }
    let standardize = match start.as_ref().and_then(|ck| ck.standardize.clone()) {
        Some(saved) => Some(saved),
        None => fitted.map(|s| (s.mean, s.std)),
    };
    let description = description(config, &train_set)?;
    let saved = Saved { standardize, schedule, train_rows, description };
    Ok((Started::Run(Box::new(Start { net, train_set, validation_set, test_set, batcher, progress, saved })), run))
}

/// What must be the same on every rank besides the config: the options that steer the run, the
/// training rows, and the starting state (parameters, batch-norm and optimizer state, position).
fn run_hash(opts: &TrainOptions, placement: &Placement, train_rows: &str, start: Option<&Checkpoint>) -> u64 {
    let mut h = Fnv::default();
    let steering = format!(
        "{:?} {} {} {} {}",
        opts.max_steps,
        opts.init.is_some(),
        opts.resume.is_some(),
        opts.non_strict,
        placement.cpu
    );
    h.bytes(steering.as_bytes());
    h.bytes(train_rows.as_bytes());
    if let Some(ck) = start {
        h.f32s(&ck.params);
        h.f32s(&ck.norm.running);
        h.f32s(ck.optimizer_state.as_deref().unwrap_or(&[]));
        h.bytes(format!("{:?} {:?}", ck.progress, ck.norm.batches_tracked).as_bytes());
    }
    h.0
}

/// The start-up agreement of a data-parallel run: every rank learns whether every rank is
/// ready, so a failure on one rank is one message and a clean exit of all, never a hang in the
/// first all-reduce. A rank that failed while rank 0 did not says why itself (rank 0 cannot).
fn agree<T>(comm: &dyn Collective, result: Result<T>) -> Result<T> {
    if comm.size() == 1 {
        return result;
    }
    // The lowest rank that failed, or u64::MAX when every rank is ready.
    let mut failed = [if result.is_ok() { u64::MAX } else { comm.rank() as u64 }];
    comm.allreduce_min_u64(&mut failed)?;
    match (result, failed[0]) {
        (result, u64::MAX) => result,
        // Rank 0 failed too: its message is the one shown (the same checks ran on every rank).
        (Err(e), 0) if comm.rank() == 0 => Err(e),
        (_, 0) => Err(Error::Dist("rank 0 could not start".into())),
        // Every rank returns an error alike and exits normally (no abort, nothing cut short).
        (Err(e), _) if comm.rank() != 0 => {
            eprintln!("rank {}: error: {e}", comm.rank());
            Err(Error::Dist(format!("rank {} could not start", comm.rank())))
        }
        (_, rank) => Err(Error::Dist(format!("rank {rank} could not start (see its own message)"))),
    }
}

/// Every batch must split evenly over the ranks, and a batch norm needs two rows to normalise:
/// in each rank's share (each rank normalises its own, as PyTorch's DDP does), or in the whole
/// global batch for a synchronised one.
fn check_split(model: &Model, batcher: &crate::data::Batcher, ranks: usize) -> Result<()> {
    if ranks == 1 {
        return Ok(());
    }
    for size in [batcher.largest_batch(), batcher.smallest_batch()] {
        if let Some(problem) = super::split_problem(size, ranks) {
            return Err(Error::Dist(problem));
        }
    }
    // The mask's counter is the element's index in the rank's own rows: every rank would draw
    // the same masks, which is not the one-process run over the global batch.
    if model.stages.iter().any(|s| matches!(s.op, crate::spec::Op::Dropout { .. })) {
        return Err(Error::Dist(format!(
            "dropout is not supported in a data-parallel run yet: the {ranks} ranks would draw identical \
             masks over their own rows; train on one process or remove the dropout layers"
        )));
    }
    let share = batcher.smallest_batch() / ranks;
    crate::exec::network::check_batch_norm_rows(model, share, ranks)
        .map_err(|e| Error::Dist(format!("each of the {ranks} ranks would train on {share} row(s): {e}")))
}

/// What a checkpoint says the model is: the run's config and its classes' or targets' names.
pub fn description(config: &Config, train_set: &Dataset) -> Result<crate::checkpoint::Description> {
    Ok(crate::checkpoint::Description {
        config: toml::to_string(&config.table).map_err(|e| Error::Usage(format!("the config as TOML: {e}")))?,
        builtin: config.builtin,
        class_names: train_set.class_names.clone(),
        target_names: train_set.targets.as_ref().map(|t| t.all_names()),
    })
}

/// What every checkpoint of a run carries besides the network's state: how to standardise new
/// rows, the config it came from, and what a resume must match (the schedule, the rows).
pub struct Saved {
    pub standardize: Option<(Vec<f32>, Vec<f32>)>,
    pub description: crate::checkpoint::Description,
    pub schedule: String,
    pub train_rows: String,
}

impl Saved {
    /// For a run of `config` from its first step on `train_set`, standardised by `standardize`.
    pub fn fresh(config: &Config, train_set: &Dataset, standardize: Option<(Vec<f32>, Vec<f32>)>) -> Result<Saved> {
        Ok(Saved {
            standardize,
            description: description(config, train_set)?,
            schedule: schedule_of(config, train_set.n),
            train_rows: fingerprint(train_set),
        })
    }

    /// The checkpoint of a network's state at `progress`. Parameters that are not finite are
    /// refused, never saved; `kept` says what that left alone (e.g. "x.safetensors was not
    /// overwritten").
    pub fn checkpoint(
        &self,
        params: Vec<f32>,
        norm: crate::spec::NormState,
        optimizer_state: Vec<f32>,
        progress: Progress,
        kept: &str,
    ) -> Result<Checkpoint> {
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(Error::Diverged {
                step: progress.steps,
                // The epoch the parameters went bad in (1-based; `progress.epoch` counts finished ones).
                epoch: if progress.batch > 0 { progress.epoch + 1 } else { progress.epoch },
                what: format!("parameter {i} is {}; {kept}", params[i]),
            });
        }
        Ok(Checkpoint {
            params,
            norm,
            optimizer_state: Some(optimizer_state),
            progress,
            standardize: self.standardize.clone(),
            schedule: self.schedule.clone(),
            train_rows: self.train_rows.clone(),
            description: Some(self.description.clone()),
        })
    }
}
