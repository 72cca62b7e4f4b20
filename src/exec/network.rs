//! What both executors offer, so tests and the trainer compare like with like.

use crate::data::Dataset;
use crate::error::{Error, Result};

use crate::spec::{Model, NormState};

/// Loss and accuracy summed on the device since the last `take_totals`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Totals {
    pub mean_loss: f32,
    pub accuracy: f32,
    pub samples: usize,
    /// The first step since the last `take_totals` that went bad, checked at every step on the
    /// executor itself (no read-back per step).
    pub first_bad: Option<BadStep>,
}

/// A step whose loss was NaN or ±Inf, or whose update wrote a NaN or ±Inf parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BadStep {
    /// The optimizer step, 1-based over the whole run.
    pub step: usize,
    /// The step's mean loss when that was the first sign; None when a parameter went first.
    pub loss: Option<f32>,
}

impl BadStep {
    /// The earlier of a loss record (`loss_step`, with its loss) and a parameter record.
    pub fn first(loss: Option<(usize, f32)>, param_step: Option<usize>) -> Option<BadStep> {
        match (loss, param_step) {
            (Some((l, v)), Some(p)) if l <= p => Some(BadStep { step: l, loss: Some(v) }),
            (Some((l, v)), None) => Some(BadStep { step: l, loss: Some(v) }),
            (_, Some(p)) => Some(BadStep { step: p, loss: None }),
            (None, None) => None,
        }
    }
}

/// What a data-parallel step exchanges with the other ranks: a synchronised batch norm's
/// statistics on the way forward and its sums on the way back, and the flat gradient between the
/// backward pass and the update. Every rank steps on an equal share of the global batch.
pub trait StepSync {
    /// Ranks sharing the global batch.
    fn ranks(&self) -> usize;
    /// Turns this rank's per-feature batch mean and biased variance (over its share) into the
    /// global batch's, identical on every rank.
    fn norm_stats(&mut self, mean: &mut [f64], var: &mut [f64]) -> Result<()>;
    /// Turns this rank's per-feature backward sums (Σdu, Σdu·x̂ over its share) into their mean
    /// over the ranks: with equal shares of m rows, dx = γ·inv_std/m·(m·du − mean Σdu − x̂·mean
    /// Σdu·x̂) is then the global batch's, and dγ, dβ pass the gradient's mean unchanged.
    fn norm_sums(&mut self, sums: &mut [f64]) -> Result<()>;
    /// Turns a piece of the flat gradient into the global one (an all-reduce, scaled to the
    /// global mean): called once per bucket, in the same order on every rank, the whole
    /// gradient being one bucket or several consecutive ones.
    fn gradient(&mut self, grads: &mut Vec<f32>) -> Result<()>;
}

pub trait Network {
    /// "GPU: <adapter>" or "CPU reference".
    fn describe(&self) -> String;
    fn model(&self) -> &Model;
    /// Makes `data` the training set that `train_step`'s indices refer to (resident on the GPU).
    fn set_train_data(&mut self, data: &Dataset) -> Result<()>;
    /// Keep the training set on the host and upload each batch as it is used (the GPU executor
    /// does this by itself when the set is larger than one buffer); the CPU has nothing to do.
    fn set_streaming(&mut self, _on: bool) {}
    /// Whether the training set has real targets (regression: no accuracy to count).
    fn trains_regression(&self) -> bool {
        false
    }
    /// Bytes of gradient per all-reduce call in a data-parallel step (DDP's `bucket_cap_mb`): the
    /// GPU executor sends each bucket as soon as the backward pass has finished it, overlapping
    /// the all-reduce with the rest of the pass; the CPU reference computes and reduces on one
    /// thread and sends the whole gradient at once.
    fn set_bucket_cap(&mut self, _bytes: usize) {}
    /// One step on the rows `batch` of the training set: forward, loss, backward, update, at
    /// the learning rate the schedule gives for this step. Nothing is read back.
    fn train_step(&mut self, batch: &[u32]) -> Result<()>;
    /// A data-parallel step: forward and backward on `batch` (this rank's share of the global
    /// batch), synchronised batch norms exchanging their statistics and sums through `sync` as
    /// they go, then `sync` turns the flat gradient into the global one, then the same update as
    /// `train_step`.
    fn train_step_reduced(&mut self, batch: &[u32], sync: &mut dyn StepSync) -> Result<()>;
    /// `batches` in order, each as `train_step` would run it, in as few submits as the executor
    /// can (the GPU executor: one, when the batches are of one size). Nothing is read back.
    fn train_steps(&mut self, batches: &[&[u32]]) -> Result<()> {
        batches.iter().try_for_each(|b| self.train_step(b))
    }
    /// How many steps the training loop hands `train_steps` at once (1 where that gains nothing).
    fn steps_per_submit(&self) -> usize {
        1
    }
    /// Sets `steps_per_submit` (1: a submit per step, as before); the CPU reference ignores it.
    fn set_steps_per_submit(&mut self, _steps: usize) {}
    /// The last step's mean loss (a read-back on the GPU).
    fn last_loss(&mut self) -> Result<f32>;
    /// Loss and accuracy over the steps since the last call, then starts counting afresh.
    fn take_totals(&mut self) -> Result<Totals>;
    /// Network outputs (logits) for `rows` rows of `x`.
    fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>>;
    /// The flat parameter vector (layout in `Model::params`).
    fn params(&mut self) -> Result<Vec<f32>>;
    fn set_params(&mut self, flat: &[f32]) -> Result<()>;
    /// The last step's gradients, flat like the parameters.
    fn grads(&mut self) -> Result<Vec<f32>>;
    /// The optimizer's state, slot-major (`Optimizer::state_slots` vectors of the parameter length).
    fn optimizer_state(&mut self) -> Result<Vec<f32>>;
    /// Replaces the optimizer's state (same layout as `optimizer_state`), e.g. from a checkpoint.
    fn set_optimizer_state(&mut self, state: &[f32]) -> Result<()>;
    /// Batch-norm running statistics and batch counters (empty without batch norm).
    fn norm_state(&mut self) -> Result<NormState>;
    /// Replaces the batch-norm state (layout of `Model::init_norm_state`), e.g. from a checkpoint.
    fn set_norm_state(&mut self, state: &NormState) -> Result<()>;
    /// Optimizer steps taken (the schedule's position, and Adam's bias-correction step).
    fn steps(&self) -> usize;
    /// Continues counting from `steps`, e.g. after loading a checkpoint.
    fn set_steps(&mut self, steps: usize);
    /// Keys the dropout masks (the run's seed; 0 until set). With the step count it fixes every
    /// mask, so a resumed run draws what an uninterrupted one would.
    fn set_dropout_seed(&mut self, seed: u64);
    /// Group 0's learning rate for the next step.
    fn lr(&self) -> f32;
    /// The device this network trains on, for other work on the same placement (the Hessian
    /// of `train --track-sharpness`); None on the CPU reference.
    fn shared_gpu(&self) -> Option<std::sync::Arc<crate::kernels::Gpu>> {
        None
    }
}

/// The data's width matches the model's input.
pub(crate) fn check_features(model: &Model, data: &Dataset) -> Result<()> {
    if data.d != model.inputs {
        return Err(Error::Shape {
            what: "training data".into(),
            expected: format!("{} features", model.inputs),
            got: format!("{}", data.d),
        });
    }
    check_targets(model, data)
}

/// Refuses real targets where `what` compares outputs with class labels only (the batched
/// kernels, the Hessian, the loss landscape): never a silent fit to one-hot labels.
pub(crate) fn refuse_targets(data: &Dataset, what: &str) -> Result<()> {
    if data.is_regression() {
        return Err(Error::Usage(format!(
            "{what} compares with class labels only; data with real targets (regression) trains through \
             `gradflow train` or `Trainer::fit`"
        )));
    }
    Ok(())
}

/// Real targets need the MSE loss (cross-entropy compares with class labels).
pub(crate) fn check_loss_targets(loss: crate::spec::Loss, data: &Dataset) -> Result<()> {
    if data.is_regression() && loss != crate::spec::Loss::Mse {
        return Err(Error::Usage(format!(
            "the data has real targets, which need model.loss = \"mse\" (got \"{}\")",
            loss.name()
        )));
    }
    Ok(())
}

/// A regression set's targets, one per output of the model's last layer.
pub(crate) fn check_targets(model: &Model, data: &Dataset) -> Result<()> {
    match &data.targets {
        Some(t) if t.k != model.outputs() => Err(Error::Model(format!(
            "the data has {} target(s) ({}) but the model's last layer has {} outputs; make it {} wide",
            t.k,
            crate::data::listed(&t.all_names()),
            model.outputs(),
            t.k
        ))),
        Some(t) if t.values.len() != data.n * t.k => Err(Error::Shape {
            what: "training targets".into(),
            expected: format!("{} rows × {} targets", data.n, t.k),
            got: format!("{} values", t.values.len()),
        }),
        _ => Ok(()),
    }
}

/// `x` holds `rows` rows of the model's input width.
pub(crate) fn check_rows(model: &Model, x: &[f32], rows: usize) -> Result<()> {
    if Some(x.len()) != rows.checked_mul(model.inputs) {
        return Err(Error::Shape {
            what: "prediction input".into(),
            expected: format!("{rows} × {} values", model.inputs),
            got: format!("{}", x.len()),
        });
    }
    Ok(())
}

/// A batch has 1 to `max_rows` rows, each an index into the `train_rows` training rows.
pub(crate) fn check_batch(batch: &[u32], train_rows: usize, max_rows: usize) -> Result<()> {
    if batch.is_empty() || batch.len() > max_rows {
        return Err(Error::Usage(format!("a batch of {} rows; this network takes 1 to {max_rows}", batch.len())));
    }
    if let Some(&bad) = batch.iter().find(|&&i| i as usize >= train_rows) {
        return Err(Error::Usage(format!("row index {bad} is past the {train_rows} training rows")));
    }
    Ok(())
}

/// A batch-norm state has the model's running-buffer length and one counter per layer.
pub(crate) fn check_norm_state(model: &Model, state: &NormState) -> Result<()> {
    if state.running.len() != model.running_len || state.batches_tracked.len() != model.norms.len() {
        return Err(Error::Shape {
            what: "batch-norm state".into(),
            expected: format!("{} running values and {} counters", model.running_len, model.norms.len()),
            got: format!("{} and {}", state.running.len(), state.batches_tracked.len()),
        });
    }
    Ok(())
}

/// A batch-norm model cannot train on one row: its variance is 0/0 (PyTorch refuses it too).
/// With `ranks` ranks sharing the batch, a synchronised layer normalises all their `rows`-row
/// shares together, so it only needs two rows in all (as torch.nn.SyncBatchNorm).
pub(crate) fn check_batch_norm_rows(model: &Model, rows: usize, ranks: usize) -> Result<()> {
    let short = model.norms.iter().find(|n| if n.sync { rows * ranks < 2 } else { rows < 2 });
    if let Some(layer) = short {
        let (count, whose) = if layer.sync { (rows * ranks, "the global batch") } else { (rows, "each batch") };
        return Err(Error::Usage(format!(
            "batch norm in training mode needs more than 1 row in {whose}, got {count} (layer {}); \
             use a larger batch_size or drop_last = true",
            layer.name
        )));
    }
    Ok(())
}
