//! `gradflow train` from start to end, in the order it happens: refuse what cannot work before
//! anything is written, load, build, run the epochs, and stop cleanly on a signal, a step budget
//! or divergence. The CLI parses arguments and installs the signal handler; this does the rest.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::metrics::{Curve, MetricsWriter, Record};
use super::{Flow, Placement};
use crate::checkpoint::{self, Checkpoint, Fnv, Progress};
use crate::config::Config;
use crate::data::Dataset;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::nn::{Model, Network};

/// What `gradflow train` was asked to do besides the config.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub init: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub save: Option<PathBuf>,
    pub max_steps: Option<usize>,
    pub metrics: Option<PathBuf>,
    pub log_every: Option<usize>,
    pub plot: Option<PathBuf>,
    /// Take a state dict with tensors the model does not have (torch's `strict=False`), naming them.
    pub non_strict: bool,
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
    let Start { net, train_set, test_set, batcher, progress, saved } = match started {
        Started::Run(start) => *start,
        Started::NothingToDo(reason) => return Ok(Ending::NothingToDo(reason)),
    };
    let metrics = match (&opts.metrics, lead) {
        (Some(p), true) => Some(MetricsWriter::create(p, opts.resume.is_some())?),
        _ => None,
    };
    let mut run = Run {
        config,
        opts,
        net,
        train_set: &train_set,
        test_set: &test_set,
        metrics,
        curves: Vec::new(),
        clock: Instant::now(),
        signal,
        saved,
        comm,
        reduce_secs: 0.0,
        steps_run: 0,
        saved_once: false,
    };
    run.epochs(batcher, progress)
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
    let (train_set, test_set, fitted) = super::run::load_data_with_stats(config, config_file)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    check_labels(&model, &train_set, &test_set, config)?;
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
    print_header(config, config_file, &train_set, &test_set, &model);
    if comm.size() > 1 {
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
    crate::say!("device: {}", net.describe());
    crate::say!("optimizer: {}", config.optimizer);
    if let Some(stream) = config.data.stream {
        net.set_streaming(stream);
    }
    net.set_bucket_cap(config.train.bucket_bytes());
    net.set_train_data(&train_set)?;
    let standardize = match start.as_ref().and_then(|ck| ck.standardize.clone()) {
        Some(saved) => Some(saved),
        None => fitted.map(|s| (s.mean, s.std)),
    };
    let saved = Saved { standardize, schedule, train_rows };
    Ok((Started::Run(Box::new(Start { net, train_set, test_set, batcher, progress, saved })), run))
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
    let share = batcher.smallest_batch() / ranks;
    crate::nn::network::check_batch_norm_rows(model, share, ranks)
        .map_err(|e| Error::Dist(format!("each of the {ranks} ranks would train on {share} row(s): {e}")))
}

/// What every checkpoint of this run carries besides the network's state.
struct Saved {
    standardize: Option<(Vec<f32>, Vec<f32>)>,
    schedule: String,
    train_rows: String,
}

struct Run<'a> {
    config: &'a Config,
    opts: &'a TrainOptions,
    net: Box<dyn Network>,
    train_set: &'a Dataset,
    test_set: &'a Dataset,
    metrics: Option<MetricsWriter>,
    curves: Vec<Curve>,
    clock: Instant,
    signal: &'a AtomicUsize,
    saved: Saved,
    comm: &'a dyn Collective,
    /// Seconds in the step's all-reduces so far, and the steps they were spent over.
    reduce_secs: f64,
    steps_run: usize,
    /// Whether this run has written its checkpoint yet.
    saved_once: bool,
}

impl Run<'_> {
    fn epochs(&mut self, mut batcher: crate::data::Batcher, progress: Progress) -> Result<Ending> {
        let epochs = self.config.train.epochs;
        // The batch schedule's RNG state is its seed and the epochs drawn so far: replay them.
        for _ in 0..progress.epoch {
            batcher.next_epoch();
        }
        let mut throughput = Vec::new();
        for epoch in progress.epoch + 1..=epochs {
            if let Some(signal) = self.signalled()? {
                let saved = self.opts.save.as_ref().map_or(String::new(), |p| format!("; {} has its end", p.display()));
                crate::say!("stopped by signal {signal} after epoch {}{saved}", epoch - 1);
                return Ok(Ending::Signalled { signal });
            }
            let batches = batcher.next_epoch();
            let first = if epoch == progress.epoch + 1 { progress.batch } else { 0 };
            if first > batches.len() {
                return Err(Error::Usage(format!(
                    "the checkpoint is at batch {first} of epoch {epoch}, which has only {} batches",
                    batches.len()
                )));
            }
            let left = self.opts.max_steps.map_or(usize::MAX, |m| m.saturating_sub(self.net.steps()));
            if left == 0 {
                // The budget ended with the last epoch, which is saved and recorded already.
                crate::say!("stopped after step {} (--max-steps), after epoch {}", self.net.steps(), epoch - 1);
                return Ok(Ending::StepBudget);
            }
            let last = batches.len().min(first.saturating_add(left));
            let report = self.run_batches(&batches[first..last], epoch)?;
            let done = first + report.steps;
            if done < batches.len() {
                let at = Progress { steps: self.net.steps(), epoch: epoch - 1, batch: done };
                self.save(at)?;
                self.write_step_record(epoch)?;
                let saved = self.opts.save.as_ref().map_or(String::new(), |p| format!("; saved {}", p.display()));
                return Ok(match self.signalled()? {
                    Some(signal) => {
                        crate::say!(
                            "stopped by signal {signal} after step {} (epoch {epoch}, batch {done}){saved}",
                            self.net.steps()
                        );
                        Ending::Signalled { signal }
                    }
                    None => {
                        crate::say!(
                            "stopped after step {} (--max-steps), in epoch {epoch} after batch {done}{saved}",
                            self.net.steps()
                        );
                        Ending::StepBudget
                    }
                });
            }
            self.save(Progress { steps: self.net.steps(), epoch, batch: 0 })?;
            self.end_epoch(epoch, &report)?;
            throughput.push(report.samples_per_sec);
        }
        if self.comm.rank() != 0 {
            return Ok(Ending::Finished);
        }
        if let Some(path) = &self.opts.plot {
            super::plot::write(path, &self.curves, self.net.as_mut(), self.train_set, self.test_set)?;
            crate::say!("plot: {}", path.display());
        }
        if self.comm.size() > 1 {
            let (wall, steps) = (self.clock.elapsed().as_secs_f64(), self.steps_run.max(1) as f64);
            crate::say!(
                "data-parallel over {} ranks: {:.3} ms a step on rank 0, {:.3} ms of it in all-reduces \
                 (waiting for the slowest rank included; a bucket's overlaps the backward pass on a GPU)",
                self.comm.size(),
                1e3 * wall / steps,
                1e3 * self.reduce_secs / steps
            );
        }
        let mean = throughput.iter().sum::<f64>() / throughput.len().max(1) as f64;
        if self.test_set.n > 0 {
            let (loss, acc) = super::evaluate(self.net.as_mut(), self.test_set, self.config.model.loss)?;
            crate::say!(
                "test accuracy {:.1}% (loss {}); training throughput {mean:.0} samples/s (mean over epochs)",
                100.0 * acc,
                fmt_loss(loss)
            );
        } else {
            crate::say!("no test set; training throughput {mean:.0} samples/s (mean over epochs)");
        }
        Ok(Ending::Finished)
    }

    /// The signal this run received, agreed by every rank (the largest number any rank saw),
    /// so that all stop at the same point.
    fn signalled(&self) -> Result<Option<usize>> {
        let local = self.signal.load(Ordering::SeqCst) as u64;
        let mut inverted = [u64::MAX - local];
        self.comm.allreduce_min_u64(&mut inverted)?;
        Ok(Some((u64::MAX - inverted[0]) as usize).filter(|&s| s != 0))
    }

    /// One epoch's batches (or what is left of it) with a progress bar; stops early on a signal,
    /// except after the epoch's last step (that epoch then ends normally).
    fn run_batches(&mut self, run: &[Vec<usize>], epoch: usize) -> Result<super::EpochReport> {
        let epochs = self.config.train.epochs;
        // indicatif draws nothing when stderr is not a terminal (logs, pipes, CI).
        let bar = ProgressBar::new(run.iter().map(Vec::len).sum::<usize>() as u64);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} samples {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        if let Some(c) = self.curves.last() {
            bar.set_message(format!("last epoch's loss {}", fmt_loss(c.1 as f32)));
        }
        let (log_every, clock, signal) = (self.opts.log_every, self.clock, self.signal);
        let metrics = &mut self.metrics;
        let stop = || signal.load(Ordering::SeqCst) != 0;
        let report = super::train_batches_on(self.net.as_mut(), run, epoch, self.comm, &stop, |net, i| {
            bar.inc(run[i - 1].len() as u64);
            if let (Some(every), Some(m)) = (log_every, metrics.as_mut()) {
                if every > 0 && net.steps() % every == 0 {
                    let loss = net.last_loss()? as f64;
                    bar.set_message(format!("loss {}", fmt_loss(loss as f32)));
                    m.write(&Record {
                        step: net.steps(),
                        epoch,
                        loss: Some(loss),
                        lr: net.lr() as f64,
                        grad_norm: Some(super::metrics::grad_norm(&net.grads()?)),
                        wall_s: clock.elapsed().as_secs_f64(),
                        ..Default::default()
                    })?;
                }
            }
            // A signal stops every rank at the same step: it travels with the gradient.
            Ok(Flow::Continue)
        });
        bar.finish_and_clear();
        let report = report.map_err(|e| self.explain_divergence(e))?;
        self.reduce_secs += report.reduce_secs;
        self.steps_run += report.steps;
        Ok(report)
    }

    /// A divergence message says which checkpoint is still good.
    fn explain_divergence(&self, e: Error) -> Error {
        match (e, &self.opts.save) {
            (Error::Diverged { step, epoch, what }, Some(path)) if path.exists() => {
                // This run's own save, or the checkpoint it resumed from: a good state.
                let good = self.saved_once || self.opts.resume.as_ref() == Some(path);
                let kept = if good { "keeps the last good state (not overwritten)" } else { "was not overwritten" };
                Error::Diverged { step, epoch, what: format!("{what}; {} {kept}", path.display()) }
            }
            (e, _) => e,
        }
    }

    fn end_epoch(&mut self, epoch: usize, report: &super::EpochReport) -> Result<()> {
        self.share_running_statistics()?;
        if self.comm.rank() != 0 {
            return Ok(());
        }
        let has_test = self.test_set.n > 0;
        let (test_loss, test_acc) = if has_test {
            super::evaluate(self.net.as_mut(), self.test_set, self.config.model.loss)?
        } else {
            (f32::NAN, f32::NAN)
        };
        let lr = self.net.lr();
        if let Some(m) = self.metrics.as_mut() {
            m.write(&Record {
                step: self.net.steps(),
                epoch,
                loss: Some(report.train_loss as f64),
                accuracy: Some(report.train_accuracy as f64),
                test_loss: has_test.then_some(test_loss as f64),
                test_accuracy: has_test.then_some(test_acc as f64),
                lr: lr as f64,
                grad_norm: Some(super::metrics::grad_norm(&self.net.grads()?)),
                wall_s: self.clock.elapsed().as_secs_f64(),
            })?;
        }
        self.curves.push((
            epoch as f64,
            report.train_loss as f64,
            report.train_accuracy as f64,
            test_loss as f64,
            test_acc as f64,
        ));
        let test = if has_test { format!("  test acc {:5.1}%", 100.0 * test_acc) } else { String::new() };
        crate::say!(
            "epoch {epoch:>3}/{}  lr {lr:.3e}  loss {}  train acc {:5.1}%{test}  {:>9.0} samples/s",
            self.config.train.epochs,
            fmt_loss(report.train_loss),
            100.0 * report.train_accuracy,
            report.samples_per_sec
        );
        Ok(())
    }

    /// Batch norm's running statistics as rank 0 has them, on every rank: each rank normalises
    /// its own share, and, as PyTorch DDP broadcasts rank 0's buffers, rank 0's are the run's.
    fn share_running_statistics(&mut self) -> Result<()> {
        if self.comm.size() == 1 || !self.net.model().has_batch_norm() {
            return Ok(());
        }
        let mut norm = self.net.norm_state()?;
        self.comm.broadcast_f32(0, &mut norm.running)?;
        self.net.set_norm_state(&norm)
    }

    /// The last step's loss as a metrics record, when a run stops inside an epoch.
    fn write_step_record(&mut self, epoch: usize) -> Result<()> {
        if let Some(m) = self.metrics.as_mut() {
            let steps = self.net.steps();
            m.write(&Record {
                step: steps,
                epoch,
                loss: Some(self.net.last_loss()? as f64),
                lr: self.net.lr() as f64,
                grad_norm: Some(super::metrics::grad_norm(&self.net.grads()?)),
                wall_s: self.clock.elapsed().as_secs_f64(),
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Writes the checkpoint (with `--save`); parameters that are not finite are never written
    /// over a good file.
    fn save(&mut self, progress: Progress) -> Result<()> {
        let Some(path) = self.opts.save.as_ref().filter(|_| self.comm.rank() == 0) else { return Ok(()) };
        let params = self.net.params()?;
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(Error::Diverged {
                step: progress.steps,
                // The epoch the parameters went bad in (1-based; `progress.epoch` counts finished ones).
                epoch: if progress.batch > 0 { progress.epoch + 1 } else { progress.epoch },
                what: format!("parameter {i} is {}; {} was not overwritten", params[i], path.display()),
            });
        }
        let ck = Checkpoint {
            params,
            norm: self.net.norm_state()?,
            optimizer_state: Some(self.net.optimizer_state()?),
            progress,
            standardize: self.saved.standardize.clone(),
            schedule: self.saved.schedule.clone(),
            train_rows: self.saved.train_rows.clone(),
        };
        checkpoint::save(path, self.net.model(), &self.config.optimizer, &ck)?;
        self.saved_once = true;
        Ok(())
    }
}

/// A loss as a person reads it: four decimals in the usual range, else scientific
/// (`9.4830e26`, not 27 digits).
pub fn fmt_loss(x: f32) -> String {
    if x == 0.0 || (1e-4..1e5).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.4e}")
    }
}

/// Every file the run will write can be written, before any training: a typo in a folder name
/// must not cost an hour of training.
/// The outputs must also be three different files, none of them one the run reads (the config,
/// its data; `--save` may be `--resume`'s file, which it continues).
fn check_outputs(opts: &TrainOptions, config: &Config, config_file: &Path) -> Result<()> {
    let outputs = [(&opts.save, "--save"), (&opts.metrics, "--metrics"), (&opts.plot, "--plot")];
    let outputs: Vec<(&PathBuf, &str)> = outputs.iter().filter_map(|(p, f)| p.as_ref().map(|p| (p, *f))).collect();
    let inputs = [Some(config_file), Some(config.data.path.as_path()), config.data.labels.as_deref()]
        .into_iter()
        .chain([config.data.test_path.as_deref(), config.data.test_labels.as_deref(), opts.init.as_deref()])
        .flatten();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    for input in inputs {
        if let Some((path, flag)) = outputs.iter().find(|(p, _)| same(p, input)) {
            return Err(Error::Io {
                file: path.to_path_buf(),
                message: format!("{flag}: would overwrite an input of the run"),
            });
        }
    }
    for (i, (a, fa)) in outputs.iter().enumerate() {
        if let Some((_, fb)) = outputs[i + 1..].iter().find(|(b, _)| same(a, b)) {
            return Err(Error::Io { file: a.to_path_buf(), message: format!("{fa} and {fb} name the same file") });
        }
        check_writable(a, fa)?;
    }
    Ok(())
}

/// `path` is not a folder, its folder exists and takes a new file, and an existing file can be
/// opened for writing (nothing is changed).
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    let err = |message: String| Error::Io { file: path.to_path_buf(), message };
    if path.is_dir() {
        return Err(err(format!("{flag}: is a folder; give a file name")));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(err(format!("{flag}: the folder {} does not exist", dir.display())));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let probe = dir.join(format!(".{name}.probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| err(format!("{flag}: cannot write in {}: {e}", dir.display())))?;
    if path.exists() {
        std::fs::OpenOptions::new().append(true).open(path).map_err(|e| err(format!("{flag}: {e}")))?;
    }
    Ok(())
}

/// Labels every split has must fit the model's outputs; one-class data gets a warning.
fn check_labels(model: &Model, train: &Dataset, test: &Dataset, config: &Config) -> Result<()> {
    let outputs = model.outputs();
    if outputs < train.num_classes {
        return Err(Error::Model(format!(
            "the last layer has {outputs} outputs but the data has {} classes",
            train.num_classes
        )));
    }
    if let Some(&bad) = test.labels.iter().find(|&&l| l as usize >= outputs) {
        let file = config.data.test_path.as_ref().unwrap_or(&config.data.path);
        return Err(Error::Model(format!(
            "{}: the test data has label {bad} but the model has {outputs} outputs",
            file.display()
        )));
    }
    Ok(())
}

fn print_header(config: &Config, config_file: &Path, train: &Dataset, test: &Dataset, model: &Model) {
    let builtin = config.builtin && !config_file.exists();
    crate::say!("config: {}{}", config_file.display(), if builtin { " (the built-in copy)" } else { "" });
    let classes = match train.num_classes {
        1 => "1 class".to_string(),
        n => format!("{n} classes"),
    };
    let test_rows = match &config.data.test_path {
        Some(p) => format!("{} test rows from {}", test.n, p.display()),
        None => format!("{} test", test.n),
    };
    let builtin_data = if config.builtin && !config.data.path.exists() { " (the built-in copy)" } else { "" };
    crate::say!(
        "data: {}{builtin_data} ({} train / {test_rows} rows, {} features, {classes})",
        config.data.path.display(),
        train.n,
        train.d
    );
    if train.num_classes == 1 {
        crate::warn!(
            "warning: the training data has only one class: every prediction will be that class \
             (wrong label column? set data.label_column or data.num_classes)"
        );
    }
    if test.n == 0 {
        crate::say!("no test set (data.test_fraction = 0 and no data.test_path): no test column");
    }
    crate::say!("model: {}", model.summary());
}

/// The checkpoint a run starts from: `--init`'s state dict or `--resume`'s checkpoint.
/// Read before the device is opened, so a bad file fails fast.
fn read_start(config: &Config, opts: &TrainOptions, model: &Model) -> Result<Option<Checkpoint>> {
    if let Some(path) = &opts.init {
        let (params, norm) = if opts.non_strict {
            let (params, norm, ignored) = checkpoint::load_state_dict_lenient(path, model)?;
            warn_ignored(path, &ignored);
            (params, norm)
        } else {
            checkpoint::load_state_dict(path, model)?
        };
        crate::say!("init: {}", path.display());
        return Ok(Some(Checkpoint {
            params,
            norm,
            optimizer_state: None,
            progress: Progress::default(),
            standardize: None,
            schedule: String::new(),
            train_rows: String::new(),
        }));
    }
    let Some(path) = &opts.resume else { return Ok(None) };
    let ck = checkpoint::load(path, model, &config.optimizer)?;
    let p = ck.progress;
    let at = match p.batch {
        0 => format!("after epoch {}", p.epoch),
        b => format!("epoch {} after batch {b}", p.epoch + 1),
    };
    crate::say!("resume: {} (step {}, {at})", path.display(), p.steps);
    Ok(Some(ck))
}

/// `--non-strict`'s loud line: which tensors of `path` were dropped.
pub fn warn_ignored(path: &Path, ignored: &[String]) {
    if !ignored.is_empty() {
        crate::warn!(
            "warning: --non-strict: ignoring {} tensor(s) of {} the model does not have: {}",
            ignored.len(),
            path.display(),
            ignored.join(", ")
        );
    }
}

/// Why there is nothing to train from `progress`, if so.
fn finished(config: &Config, opts: &TrainOptions, progress: &Progress) -> Option<String> {
    let epochs = config.train.epochs;
    if opts.resume.is_some() && progress.epoch >= epochs {
        return Some(format!(
            "the checkpoint has finished epoch {} of train.epochs = {epochs} (raise --epochs to train on)",
            progress.epoch
        ));
    }
    match opts.max_steps {
        Some(m) if m <= progress.steps => Some(format!("--max-steps {m}, and the run is at step {}", progress.steps)),
        _ => None,
    }
}

/// What a saved batch position refers to: a resume with another schedule would replay other batches.
fn schedule_of(config: &Config, rows: usize) -> String {
    let t = &config.train;
    format!("{} batch_size={} drop_last={} seed={} rows={rows}", t.batching, t.batch_size, t.drop_last, t.seed)
}

/// Which rows are training rows, and their values: a resume on other rows (another split,
/// file, scale or standardisation) would not continue the same run.
pub fn fingerprint(train: &Dataset) -> String {
    let mut h = Fnv::default();
    h.f32s(&train.x);
    for l in &train.labels {
        h.bytes(&l.to_le_bytes());
    }
    format!("rows={} features={} fnv={:016x}", train.n, train.d, h.0)
}

/// A checkpoint resumes only the run it came from: the same batch schedule and training rows.
fn check_resume(opts: &TrainOptions, ck: &Checkpoint, schedule: &str, train_rows: &str) -> Result<()> {
    let file = opts.resume.clone().unwrap_or_default();
    // Checkpoints from before the fingerprint was saved have none to compare.
    if !ck.train_rows.is_empty() && ck.train_rows != train_rows {
        return Err(Error::Checkpoint {
            file,
            message: format!(
                "saved for the training rows '{}', but the config's data gives '{train_rows}' (a changed data \
                 file, test_fraction, split_seed, scale or standardisation?)",
                ck.train_rows
            ),
        });
    }
    if ck.schedule != schedule {
        return Err(Error::Checkpoint {
            file,
            message: format!("saved for the batch schedule '{}', but the config gives '{schedule}'", ck.schedule),
        });
    }
    Ok(())
}
