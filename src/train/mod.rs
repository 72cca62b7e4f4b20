//! The training loop, the same for both executors: batches from a `Batcher`, one `train_step`
//! each, and a read-back only at the end of an epoch (or when a caller asks for a step's loss).

use web_time::Instant;

use crate::data::{Batcher, Dataset};
use crate::error::{Error, Result};
use crate::exec::Network;
use crate::spec::{Loss, Model};

#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub samples_per_sec: f64,
    /// Seconds spent in the step's all-reduces: gradient and synchronised batch norms (0 for one process).
    pub reduce_secs: f64,
}

/// After which steps the caller's `on_step` must see the network as that step left it; between
/// them the loop hands the executor several steps per submit (`Network::train_steps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observe {
    /// Every step: one submit per step, as a per-step loss or a step counter needs.
    EveryStep,
    /// Steps whose global number (`Network::steps`) is a multiple of this (a log interval).
    Every(usize),
    /// Only the end of the batches (and whatever submit boundaries the executor chooses).
    Submits,
}

impl Observe {
    /// Steps of `batches[from..]` the next submit may take, for a network `steps` steps in that
    /// prefers `per_submit`.
    pub fn chunk(self, batches: &[Vec<usize>], from: usize, steps: usize, per_submit: usize) -> usize {
        let mut n = match self {
            Observe::EveryStep => 1,
            // The chunk ends at the next multiple of `every`.
            Observe::Every(every) if every > 0 => per_submit.min(every - steps % every),
            _ => per_submit,
        };
        n = n.clamp(1, batches.len() - from);
        // One submit runs batches of one size (an epoch's last batch may be shorter).
        let size = batches[from].len();
        batches[from..from + n].iter().take_while(|b| b.len() == size).count().max(1)
    }
}

/// Whether the training loop goes on after a step (a signal or a step budget can stop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Runs one epoch of `batcher` on `net`, calling `on_step` after each submit with the number of
/// steps done (for a progress bar).
pub fn train_epoch(
    net: &mut dyn Network,
    batcher: &mut Batcher,
    epoch: usize,
    on_step: impl FnMut(usize),
) -> Result<EpochReport> {
    run::check_batches(net.model(), batcher)?;
    let batches = batcher.next_epoch();
    let mut on_step = on_step;
    train_batches(net, &batches, epoch, Observe::Submits, |_, i| {
        on_step(i);
        Ok(Flow::Continue)
    })
}

/// Runs `batches` (an epoch, or the part of one a resumed run has left) on `net`; `on_step`
/// sees the network after each submit, with the number of `batches` done (a progress bar, a
/// metrics line), and may stop the loop, in which case the report's `steps` says how many ran.
/// `observe` says after which steps a submit must end so `on_step` sees them. A step whose
/// loss or parameters went NaN or ±Inf, found by the executor at that step, is an error naming
/// it.
pub fn train_batches(
    net: &mut dyn Network,
    batches: &[Vec<usize>],
    epoch: usize,
    observe: Observe,
    on_step: impl FnMut(&mut dyn Network, usize) -> Result<Flow>,
) -> Result<EpochReport> {
    train_batches_on(net, batches, epoch, &crate::dist::Single, &|| false, observe, on_step)
}

/// `train_batches` as one rank of a data-parallel run: each global batch is split into `comm`'s
/// ranks' contiguous shares, each rank steps on its share, and the gradient is summed across
/// ranks and scaled to the global batch's mean before the (identical) update. `stop` is asked
/// at every step and travels with the gradient, so every rank stops after the same step; a
/// `Flow::Stop` from `on_step` is this rank's alone, so with several ranks it must be decided
/// alike on every rank (`train::session` never returns it). The epoch's totals and its first
/// bad step are those of the whole global batch. With one rank, steps go to the executor
/// several per submit as `observe` allows (a stop is then seen at the submit's end); with
/// several, one per submit.
pub fn train_batches_on(
    net: &mut dyn Network,
    batches: &[Vec<usize>],
    epoch: usize,
    comm: &dyn crate::dist::Collective,
    stop: &dyn Fn() -> bool,
    observe: Observe,
    mut on_step: impl FnMut(&mut dyn Network, usize) -> Result<Flow>,
) -> Result<EpochReport> {
    let start = Instant::now();
    let (rank, ranks) = (comm.rank(), comm.size());
    let mut idx: Vec<Vec<u32>> = Vec::new();
    let mut steps = 0;
    let mut reduce_secs = 0.0;
    while steps < batches.len() {
        let (n, stop_all) = if ranks == 1 {
            (submit_steps(net, batches, steps, observe, &mut idx)?, stop())
        } else {
            idx.resize(1, Vec::new());
            idx[0].clear();
            idx[0].extend(share_of(&batches[steps], rank, ranks)?.iter().map(|&r| r as u32));
            let mut sync = RankSync { comm, stop, stop_all: None, secs: 0.0 };
            net.train_step_reduced(&idx[0], &mut sync)?;
            reduce_secs += sync.secs;
            (1, sync.stop_all.unwrap_or(false))
        };
        steps += n;
        let flow = on_step(net, steps)?;
        // After the epoch's last step the epoch ends normally (evaluated, saved).
        if flow == Flow::Stop || (stop_all && steps < batches.len()) {
            break;
        }
    }
    let mut totals = global_totals(net.take_totals()?, epoch, comm)?;
    if net.trains_regression() {
        totals.accuracy = f32::NAN; // the loss kernel counts no hits against real targets
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(EpochReport {
        epoch,
        steps,
        train_loss: totals.mean_loss,
        train_accuracy: totals.accuracy,
        samples_per_sec: totals.samples as f64 / secs.max(1e-9),
        reduce_secs,
    })
}

/// Submits the next steps of an epoch's `batches`, from step `done`, to `net` in one go: as
/// many as `observe` and the executor allow per submit (`Observe::chunk`). Returns how many.
/// `idx` is scratch for the row indices, kept by the caller between calls. The one place a
/// single process's training steps are cut into submits: `train_batches_on` and the web page.
pub fn submit_steps(
    net: &mut dyn Network,
    batches: &[Vec<usize>],
    done: usize,
    observe: Observe,
    idx: &mut Vec<Vec<u32>>,
) -> Result<usize> {
    let n = observe.chunk(batches, done, net.steps(), net.steps_per_submit());
    idx.resize(n, Vec::new());
    for (ids, batch) in idx.iter_mut().zip(&batches[done..done + n]) {
        ids.clear();
        ids.extend(batch.iter().map(|&r| r as u32));
    }
    let chunk: Vec<&[u32]> = idx.iter().map(|v| v.as_slice()).collect();
    net.train_steps(&chunk)?;
    Ok(n)
}

/// One rank's side of a data-parallel step's exchanges, over `comm`.
struct RankSync<'a> {
    comm: &'a dyn crate::dist::Collective,
    /// Whether this rank asks to stop; the request rides with the gradient.
    stop: &'a dyn Fn() -> bool,
    /// Whether any rank asked, known once the step's first gradient bucket is reduced.
    stop_all: Option<bool>,
    /// Seconds spent in the step's collectives.
    secs: f64,
}

impl RankSync<'_> {
    /// Element-wise mean over the ranks, in f64, timed.
    fn mean_f64(&mut self, values: &mut [f64]) -> Result<()> {
        let t = Instant::now();
        self.comm.allreduce_sum_f64(values)?;
        self.secs += t.elapsed().as_secs_f64();
        let n = self.comm.size() as f64;
        values.iter_mut().for_each(|v| *v /= n);
        Ok(())
    }
}

impl crate::exec::StepSync for RankSync<'_> {
    fn ranks(&self) -> usize {
        self.comm.size()
    }

    /// Equal shares: the global mean is the mean of the ranks' means, and the global variance
    /// the mean of each rank's variance plus its mean's squared distance from the global one
    /// (Chan et al.'s pairwise combination), so no rank forms Σx² and loses it to cancellation.
    fn norm_stats(&mut self, mean: &mut [f64], var: &mut [f64]) -> Result<()> {
        let local = mean.to_vec();
        self.mean_f64(mean)?;
        var.iter_mut().zip(local.iter().zip(mean.iter())).for_each(|(v, (l, g))| *v += (l - g) * (l - g));
        self.mean_f64(var)
    }

    fn norm_sums(&mut self, sums: &mut [f64]) -> Result<()> {
        self.mean_f64(sums)
    }

    /// The stop request rides as one more element of the step's first bucket.
    fn gradient(&mut self, grads: &mut Vec<f32>) -> Result<()> {
        let first = self.stop_all.is_none();
        if first {
            grads.push(if (self.stop)() { 1.0 } else { 0.0 });
        }
        let t = Instant::now();
        self.comm.allreduce_sum_f32(grads)?;
        self.secs += t.elapsed().as_secs_f64();
        if first {
            self.stop_all = Some(grads.pop().is_some_and(|s| s > 0.0));
        }
        let scale = 1.0 / self.comm.size() as f32;
        grads.iter_mut().for_each(|g| *g *= scale);
        Ok(())
    }
}

/// What went bad at a divergence's first step: the loss (its value), or else the update.
pub fn bad_step_what(loss: Option<f32>) -> String {
    match loss {
        Some(v) => format!("the loss is {v}"),
        None => "the update wrote NaN or ±Inf into the parameters".to_string(),
    }
}

/// This rank's totals made the global batch's (loss and accuracy summed over every rank's
/// samples), or the divergence error naming the first bad step any rank saw.
fn global_totals(
    local: crate::exec::Totals,
    epoch: usize,
    comm: &dyn crate::dist::Collective,
) -> Result<crate::exec::Totals> {
    let n = local.samples as f64;
    let mut sums = [local.mean_loss as f64 * n, local.accuracy as f64 * n, n];
    let mut first_bad = [local.first_bad.map_or(u64::MAX, |b| b.step as u64)];
    comm.allreduce_sum_f64(&mut sums)?;
    comm.allreduce_min_u64(&mut first_bad)?;
    if first_bad[0] != u64::MAX {
        let step = first_bad[0] as usize;
        let what = match local.first_bad.filter(|b| b.step == step) {
            Some(b) => bad_step_what(b.loss),
            None => "another rank's loss or parameters went NaN or ±Inf".to_string(),
        };
        return Err(Error::Diverged { step, epoch, what });
    }
    let samples = sums[2].max(1.0);
    Ok(crate::exec::Totals {
        mean_loss: (sums[0] / samples) as f32,
        accuracy: (sums[1] / samples) as f32,
        samples: sums[2] as usize,
        first_bad: None,
    })
}

/// Rank `rank`'s contiguous share of a global batch; a batch that does not split evenly is
/// an error (equal shares make the mean of the ranks' mean gradients the global mean).
pub fn share_of(batch: &[usize], rank: usize, ranks: usize) -> Result<&[usize]> {
    if let Some(problem) = split_problem(batch.len(), ranks) {
        return Err(Error::Usage(problem));
    }
    let each = batch.len() / ranks;
    Ok(&batch[rank * each..(rank + 1) * each])
}

/// Why a batch of `size` rows cannot be shared equally by `ranks` ranks, if it cannot: the
/// session's start-up check and `share_of` say it in the same words.
pub fn split_problem(size: usize, ranks: usize) -> Option<String> {
    (!size.is_multiple_of(ranks)).then(|| {
        format!(
            "a batch of {size} rows does not split over {ranks} ranks: make train.batch_size a multiple of \
             {ranks} (and the last batch too, or set train.drop_last = true)"
        )
    })
}

/// Mean loss and accuracy of `net` on `data` (computed on the host from the predicted logits).
pub fn evaluate(net: &mut dyn Network, data: &Dataset, loss: Loss) -> Result<(f32, f32)> {
    if data.n == 0 {
        return Ok((f32::NAN, f32::NAN));
    }
    crate::exec::network::check_targets(net.model(), data)?;
    // Cross-entropy would score real targets against the placeholder labels.
    crate::exec::network::check_loss_targets(loss, data)?;
    let logits = net.predict(&data.x, data.n)?;
    Ok(score(net.model(), data, loss, &logits))
}

/// `evaluate` from the network's outputs on `data` (a page awaits them, then scores them here).
pub fn score(model: &Model, data: &Dataset, loss: Loss, logits: &[f32]) -> (f32, f32) {
    if data.n == 0 {
        return (f32::NAN, f32::NAN);
    }
    let classes = model.outputs();
    let targets = data.targets.as_ref().map(|t| t.values.as_slice());
    let out = crate::reference::loss_of(loss, logits, targets, &data.labels, data.n, classes);
    // Regression has no accuracy: NaN, so no column reads as if it meant something.
    let accuracy = if data.is_regression() { f32::NAN } else { out.correct as f32 / data.n as f32 };
    (out.loss, accuracy)
}

pub mod compare;
pub mod landscape;
pub mod metrics;
pub mod own_data;
pub mod plot;
pub mod regression;
pub mod run;
pub mod session;
pub mod sharpness;
pub mod side_by_side;
pub mod sweep;
pub mod trainer;
pub use run::{
    batcher, build_network, check_batches, check_labels, cpu_network, gpu_network, load_all, load_data, load_split,
    max_rows, open_gpu, split_rows, Placement, Split, Standardize,
};
pub use trainer::{Device, EpochStats, Evaluation, History, RunSpec, Trainer};
