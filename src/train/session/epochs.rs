//! The epoch loop of `gradflow train`: the steps of each epoch behind a progress bar, the
//! per-epoch (and `--log-every`) metrics records and evaluation, the checkpoint after every
//! epoch and when the run stops (a signal, `--max-steps`), and the closing summary.

use std::sync::atomic::{AtomicUsize, Ordering};
use web_time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::watch::Watch;
use super::{Ending, Saved, Start, TrainOptions};
use crate::checkpoint::{self, Progress};
use crate::config::Config;
use crate::data::Dataset;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::exec::Network;
use crate::train::metrics::{Curve, MetricsWriter, Record};
use crate::train::sharpness::Sharpness;
use crate::train::{Flow, Observe};

/// Runs the epochs `start` has left, writing metrics on rank 0 (the only rank that writes).
pub(super) fn run(
    config: &Config,
    opts: &TrainOptions,
    start: Start,
    signal: &AtomicUsize,
    comm: &dyn Collective,
) -> Result<Ending> {
    let Start { mut net, train_set, validation_set, test_set, batcher, progress, saved } = start;
    let metrics = match (&opts.metrics, comm.rank() == 0) {
        (Some(p), true) => Some(MetricsWriter::create(p, opts.resume.is_some())?),
        _ => None,
    };
    // Rank 0 measures (it alone writes and prints); the others wait in the next step's all-reduce.
    let sharpness = match (opts.track_sharpness, comm.rank() == 0) {
        (Some(every), true) => Some(Sharpness::new(every, config, net.as_mut(), &train_set)?),
        _ => None,
    };
    let mut run = Run {
        config,
        opts,
        net,
        train_set: &train_set,
        validation_set: &validation_set,
        test_set: &test_set,
        watch: Watch::new(config.train.early_stopping.as_ref(), progress.epoch),
        stopping: false,
        metrics,
        sharpness,
        curves: Vec::new(),
        clock: Instant::now(),
        signal,
        saved,
        comm,
        reduce_secs: 0.0,
        steps_run: 0,
        saved_once: false,
        first_epoch: 1,
    };
    run.epochs(batcher, progress)
}

struct Run<'a> {
    config: &'a Config,
    opts: &'a TrainOptions,
    net: Box<dyn Network>,
    train_set: &'a Dataset,
    validation_set: &'a Dataset,
    test_set: &'a Dataset,
    /// The validation loss's best epoch (rank 0), for `--save-best` and early stopping.
    watch: Watch,
    /// Rank 0's verdict after the last epoch: early stopping ends the run here.
    stopping: bool,
    metrics: Option<MetricsWriter>,
    /// `--track-sharpness`: λ_max of the training loss's Hessian every K steps.
    sharpness: Option<Sharpness>,
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
    /// The first epoch this process trains (after a resume, not 1): its line always prints.
    first_epoch: usize,
}

impl Run<'_> {
    fn epochs(&mut self, mut batcher: crate::data::Batcher, progress: Progress) -> Result<Ending> {
        let epochs = self.config.train.epochs;
        // The batch schedule's RNG state is its seed and the epochs drawn so far: replay them.
        for _ in 0..progress.epoch {
            batcher.next_epoch();
        }
        let mut throughput = Vec::new();
        let mut stopped_at = None;
        self.first_epoch = progress.epoch + 1;
        if self.net.steps() == 0 {
            self.measure_start()?;
        }
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
            if left == 0 && self.steps_run == 0 {
                // `--max-steps 0 --save`: the initial state, as the first step would start from.
                self.save(Progress { steps: self.net.steps(), epoch: epoch - 1, batch: first })?;
                let saved = self.opts.save.as_ref().map_or(String::new(), |p| format!("; saved {}", p.display()));
                crate::say!("stopped before the first step (--max-steps 0){saved}");
                return Ok(Ending::StepBudget);
            }
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
            if self.stops_early()? {
                stopped_at = Some(epoch);
                break;
            }
        }
        if self.comm.rank() != 0 {
            // Only rank 0 evaluates, so only it knows the best epoch (0 here).
            return Ok(stopped_at.map_or(Ending::Finished, |epoch| Ending::EarlyStopped { epoch, best_epoch: 0 }));
        }
        if let Some(path) = &self.opts.plot {
            let measured = self.sharpness.as_ref().map_or(&[][..], |s| &s.measured[..]);
            crate::train::plot::write(
                path,
                &self.curves,
                measured,
                self.net.as_mut(),
                self.train_set,
                self.test_set,
                self.config.data.standardize,
            )?;
            if !self.opts.quiet {
                crate::say!("plot: {}", path.display());
            }
        }
        if self.comm.size() > 1 && !self.opts.quiet {
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
            let (loss, acc) = crate::train::evaluate(self.net.as_mut(), self.test_set, self.config.model.loss)?;
            if self.config.data.is_regression() {
                crate::say!(
                    "test RMSE {:.4} (loss {}); training throughput {mean:.0} samples/s (mean over epochs)",
                    loss.sqrt(),
                    fmt_loss(loss)
                );
            } else {
                crate::say!(
                    "test accuracy {:.1}% (loss {}); training throughput {mean:.0} samples/s (mean over epochs)",
                    100.0 * acc,
                    fmt_loss(loss)
                );
            }
        } else {
            crate::say!("no test set; training throughput {mean:.0} samples/s (mean over epochs)");
        }
        match stopped_at {
            Some(epoch) => Ok(self.say_stopped(epoch)),
            None => Ok(Ending::Finished),
        }
    }

    /// Whether early stopping ends the run now: rank 0's verdict, on every rank.
    fn stops_early(&self) -> Result<bool> {
        if self.config.train.early_stopping.is_none() {
            return Ok(false);
        }
        // Rank 0 alone evaluates: the others take its verdict (the least of rank 0's and MAX).
        let mut verdict = [if self.comm.rank() == 0 { self.stopping as u64 } else { u64::MAX }];
        self.comm.allreduce_min_u64(&mut verdict)?;
        Ok(verdict[0] == 1)
    }

    /// The run's last line after early stopping: where it stopped, and the best epoch.
    fn say_stopped(&self, epoch: usize) -> Ending {
        let w = &self.watch;
        let best_epoch = w.best_epoch;
        let by = if w.min_delta() > 0.0 { format!(" by more than {}", w.min_delta()) } else { String::new() };
        let kept = self.opts.save_best.as_ref().map_or(String::new(), |p| format!("; {} has it", p.display()));
        crate::say!(
            "early stopping: stopped after epoch {epoch} of {}, the validation loss not having improved{by} for {} \
             epochs; best epoch {best_epoch} (val loss {}){kept}",
            self.config.train.epochs,
            w.patience().unwrap_or(0),
            fmt_loss(w.best as f32)
        );
        Ending::EarlyStopped { epoch, best_epoch }
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
    fn run_batches(&mut self, run: &[Vec<usize>], epoch: usize) -> Result<crate::train::EpochReport> {
        let epochs = self.config.train.epochs;
        // indicatif draws nothing when stderr is not a terminal (logs, pipes, CI).
        let bar = ProgressBar::new(run.iter().map(Vec::len).sum::<usize>() as u64);
        bar.set_draw_target(if self.opts.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} samples {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        if let Some(c) = self.curves.last() {
            bar.set_message(format!("last epoch's loss {}", fmt_loss(c.1 as f32)));
        }
        let (clock, signal) = (self.clock, self.signal);
        let metrics = &mut self.metrics;
        let sharpness = &mut self.sharpness;
        let log_every = self.opts.log_every.filter(|&every| every > 0 && metrics.is_some());
        let stop = || signal.load(Ordering::SeqCst) != 0;
        // Per-step metrics and sharpness need the network as each such step left it (submits
        // end at multiples of both intervals); otherwise the steps go several per submit and
        // the bar moves a submit at a time. Where submits end never changes what is computed.
        let observe = match (log_every, sharpness.as_ref().map(Sharpness::every)) {
            (Some(a), Some(b)) => Observe::Every(gcd(a, b)),
            (Some(every), None) | (None, Some(every)) => Observe::Every(every),
            (None, None) => Observe::Submits,
        };
        let mut done = 0;
        let report =
            crate::train::train_batches_on(self.net.as_mut(), run, epoch, self.comm, &stop, observe, |net, i| {
                bar.inc(run[done..i].iter().map(Vec::len).sum::<usize>() as u64);
                done = i;
                let logged = log_every.is_some_and(|every| net.steps().is_multiple_of(every));
                let measured = match sharpness.as_mut() {
                    Some(s) if s.due(net.steps()) => Some(s.measure(net)?.lambda_max),
                    _ => None,
                };
                if let (Some(m), true) = (metrics.as_mut(), logged || measured.is_some()) {
                    let mut record = Record {
                        step: net.steps(),
                        epoch,
                        lr: net.lr() as f64,
                        wall_s: clock.elapsed().as_secs_f64(),
                        sharpness: measured,
                        ..Default::default()
                    };
                    if logged {
                        let loss = net.last_loss()? as f64;
                        bar.set_message(format!("loss {}", fmt_loss(loss as f32)));
                        record.loss = Some(loss);
                        record.grad_norm = Some(crate::train::metrics::grad_norm(&net.grads()?));
                    }
                    m.write(&record)?;
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

    fn end_epoch(&mut self, epoch: usize, report: &crate::train::EpochReport) -> Result<()> {
        self.share_running_statistics()?;
        if self.comm.rank() != 0 {
            return Ok(());
        }
        let has_test = self.test_set.n > 0;
        let (test_loss, test_acc) = if has_test {
            crate::train::evaluate(self.net.as_mut(), self.test_set, self.config.model.loss)?
        } else {
            (f32::NAN, f32::NAN)
        };
        let has_val = self.validation_set.n > 0;
        let (val_loss, val_acc) = if has_val {
            crate::train::evaluate(self.net.as_mut(), self.validation_set, self.config.model.loss)?
        } else {
            (f32::NAN, f32::NAN)
        };
        if has_val && self.watch.record(epoch, val_loss as f64) {
            self.save_best(Progress { steps: self.net.steps(), epoch, batch: 0 })?;
        }
        self.stopping = self.watch.exhausted(epoch);
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
                grad_norm: Some(crate::train::metrics::grad_norm(&self.net.grads()?)),
                wall_s: self.clock.elapsed().as_secs_f64(),
                sharpness: None,
                val_loss: has_val.then_some(val_loss as f64),
                val_accuracy: has_val.then_some(val_acc as f64),
            })?;
        }
        self.curves.push((
            epoch as f64,
            report.train_loss as f64,
            report.train_accuracy as f64,
            test_loss as f64,
            test_acc as f64,
            val_loss as f64,
            val_acc as f64,
        ));
        if !self.prints_epoch(epoch) {
            return Ok(());
        }
        // Regression: RMSE (the square root of the MSE loss over every value) where accuracy would be.
        let regression = self.config.data.is_regression();
        let score = |loss: f32, acc: f32| match regression {
            true => format!("rmse {:.4}", loss.sqrt()),
            false => format!("acc {:5.1}%", 100.0 * acc),
        };
        let test = if has_test { format!("  test {}", score(test_loss, test_acc)) } else { String::new() };
        let val = if has_val {
            format!("  val loss {}  val {}", fmt_loss(val_loss), score(val_loss, val_acc))
        } else {
            String::new()
        };
        // A constant rate is in the header (the optimizer line), not in every epoch's line.
        let lr = if self.config.train.schedule == crate::optim::Schedule::Constant {
            String::new()
        } else {
            format!("  lr {lr:.3e}")
        };
        let sharp = self.sharpness.as_ref().and_then(Sharpness::latest);
        let sharp = sharp.map_or(String::new(), |m| format!("  {}", crate::train::sharpness::describe(&m)));
        crate::say!(
            "epoch {epoch:>3}/{}{lr}  loss {}  train {}{val}{test}  {:>9.0} samples/s{sharp}",
            self.config.train.epochs,
            fmt_loss(report.train_loss),
            score(report.train_loss, report.train_accuracy),
            report.samples_per_sec
        );
        Ok(())
    }

    /// The sharpness before the first step (a fresh run's step 0), recorded and said.
    fn measure_start(&mut self) -> Result<()> {
        let Some(s) = self.sharpness.as_mut() else { return Ok(()) };
        let m = s.measure(self.net.as_mut())?;
        if let Some(w) = self.metrics.as_mut() {
            w.write(&Record {
                step: 0,
                lr: self.net.lr() as f64,
                wall_s: self.clock.elapsed().as_secs_f64(),
                sharpness: Some(m.lambda_max),
                ..Default::default()
            })?;
        }
        if !self.opts.quiet {
            crate::say!(
                "sharpness at step 0: {} ({} Lanczos steps every {} steps: a lower bound on λmax)",
                crate::train::sharpness::describe(&m),
                crate::train::sharpness::STEPS,
                s.every()
            );
            if let Some(caveat) = crate::train::sharpness::threshold_caveat(&self.config.optimizer) {
                crate::say!("note: {caveat}");
            }
        }
        Ok(())
    }

    /// Whether epoch `epoch`'s line prints: not with --quiet; with --log-interval N every N-th,
    /// and the run's first and last always.
    fn prints_epoch(&self, epoch: usize) -> bool {
        let ends = epoch == self.first_epoch || epoch == self.config.train.epochs || self.stopping;
        !self.opts.quiet && (ends || self.opts.log_interval.is_none_or(|n| epoch.is_multiple_of(n)))
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
                grad_norm: Some(crate::train::metrics::grad_norm(&self.net.grads()?)),
                wall_s: self.clock.elapsed().as_secs_f64(),
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Writes the checkpoint (with `--save`).
    fn save(&mut self, progress: Progress) -> Result<()> {
        let Some(path) = self.opts.save.clone().filter(|_| self.comm.rank() == 0) else { return Ok(()) };
        self.save_to(&path, progress)?;
        self.saved_once = true;
        Ok(())
    }

    /// Writes the best epoch's checkpoint (with `--save-best`; rank 0 alone evaluates and calls this).
    fn save_best(&mut self, progress: Progress) -> Result<()> {
        match self.opts.save_best.clone() {
            Some(path) => self.save_to(&path, progress),
            None => Ok(()),
        }
    }

    /// Writes a checkpoint of the network to `path`; parameters that are not finite are never
    /// written over a good file.
    fn save_to(&mut self, path: &std::path::Path, progress: Progress) -> Result<()> {
        let (params, norm, state) = (self.net.params()?, self.net.norm_state()?, self.net.optimizer_state()?);
        let kept = format!("{} was not overwritten", path.display());
        let ck = self.saved.checkpoint(params, norm, state, progress, &kept)?;
        checkpoint::save(path, self.net.model(), &self.config.optimizer, &ck)
    }
}

/// Greatest common divisor (both positive): the interval whose multiples include both's.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
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
