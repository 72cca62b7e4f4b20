//! The training loop, the same for both executors: batches from a `Batcher`, one `train_step`
//! each, and a read-back only at the end of an epoch (or when a caller asks for a step's loss).

use std::time::Instant;

use crate::data::{Batcher, Dataset};
use crate::error::{Error, Result};
use crate::nn::{Loss, Network};

#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub samples_per_sec: f64,
}

/// Whether the training loop goes on after a step (a signal or a step budget can stop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Runs one epoch of `batcher` on `net`, calling `on_step` after each step (for a progress bar).
pub fn train_epoch(
    net: &mut dyn Network,
    batcher: &mut Batcher,
    epoch: usize,
    on_step: impl FnMut(usize),
) -> Result<EpochReport> {
    run::check_batches(net.model(), batcher)?;
    let batches = batcher.next_epoch();
    let mut on_step = on_step;
    train_batches(net, &batches, epoch, |_, i| {
        on_step(i);
        Ok(Flow::Continue)
    })
}

/// Runs `batches` (an epoch, or the part of one a resumed run has left) on `net`; `on_step`
/// sees the network after each step (a progress bar, a metrics line) and may stop the loop, in
/// which case the report's `steps` says how many ran. A step whose loss or parameters went
/// NaN or ±Inf, found by the executor at that step, is an error naming it.
pub fn train_batches(
    net: &mut dyn Network,
    batches: &[Vec<usize>],
    epoch: usize,
    mut on_step: impl FnMut(&mut dyn Network, usize) -> Result<Flow>,
) -> Result<EpochReport> {
    let start = Instant::now();
    let mut idx: Vec<u32> = Vec::new();
    let mut steps = 0;
    for (i, batch) in batches.iter().enumerate() {
        idx.clear();
        idx.extend(batch.iter().map(|&r| r as u32));
        net.train_step(&idx)?;
        steps = i + 1;
        if on_step(net, steps)? == Flow::Stop {
            break;
        }
    }
    let totals = net.take_totals()?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(bad) = totals.first_bad {
        let what = match bad.loss {
            Some(v) => format!("the loss is {v}"),
            None => "the update wrote NaN or ±Inf into the parameters".to_string(),
        };
        return Err(Error::Diverged { step: bad.step, epoch, what });
    }
    Ok(EpochReport {
        epoch,
        steps,
        train_loss: totals.mean_loss,
        train_accuracy: totals.accuracy,
        samples_per_sec: totals.samples as f64 / secs.max(1e-9),
    })
}

/// Mean loss and accuracy of `net` on `data` (computed on the host from the predicted logits).
pub fn evaluate(net: &mut dyn Network, data: &Dataset, loss: Loss) -> Result<(f32, f32)> {
    if data.n == 0 {
        return Ok((f32::NAN, f32::NAN));
    }
    let logits = net.predict(&data.x, data.n)?;
    let classes = net.model().outputs();
    let out = match loss {
        Loss::CrossEntropy => crate::cpu::cross_entropy(&logits, &data.labels, data.n, classes),
        Loss::Mse => crate::cpu::mse(&logits, None, &data.labels, data.n, classes),
    };
    Ok((out.loss, out.correct as f32 / data.n as f32))
}

pub mod compare;
pub mod metrics;
pub mod plot;
pub mod run;
pub mod session;
pub use run::{batcher, build_network, check_batches, load_data, max_rows, open_gpu, Placement, Standardize};
