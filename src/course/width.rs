//! Width, label noise and what regularises: one-hidden-layer ReLU nets of growing width trained
//! over many seeds (`Trainer::fit_many`, one batch of runs per width: runs must share a shape),
//! the spread of their final losses, training labels corrupted at a known rate, weight decay
//! against early stopping, and the sharpness λ_max where training ends against 2/η.

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use crate::data::{BatchScheme, Dataset};
use crate::error::{Error, Result};
use crate::exec::hessian::Hessian;
use crate::optim::OptimizerSetup;
use crate::spec::{Activation, Loss, Model};
use crate::train::{RunSpec, Trainer};

/// d → w (ReLU) → c: the model of the width sweep.
pub fn one_hidden(inputs: usize, width: usize, classes: usize) -> Result<Model> {
    Model::mlp(inputs, &[width], classes, Activation::Relu)
}

/// Parameters of [`one_hidden`]: two weight matrices and two bias vectors.
pub fn one_hidden_params(inputs: usize, width: usize, classes: usize) -> usize {
    inputs * width + width + width * classes + classes
}

/// The model's trained parameters (`param_len` counts the flat buffer's alignment padding too).
pub fn trained_params(model: &Model) -> usize {
    model.params.iter().map(|p| p.len).sum()
}

/// `labels` with round(q·n) of them, chosen by a seeded shuffle, replaced by a uniformly drawn
/// class other than their own (symmetric label noise that always changes the label).
pub fn noisy_labels(labels: &[u32], classes: usize, q: f64, seed: u64) -> Result<Vec<u32>> {
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::Usage(format!("label noise: the fraction must be in [0, 1], got {q}")));
    }
    if classes < 2 {
        return Err(Error::Usage(format!("label noise: needs at least 2 classes to flip between, got {classes}")));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(Error::Usage(format!("label noise: label {bad} is not below the {classes} classes")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..labels.len()).collect();
    idx.shuffle(&mut rng);
    let flips = (q * labels.len() as f64).round() as usize;
    let mut out = labels.to_vec();
    for &i in &idx[..flips] {
        // One of the classes − 1 others, each equally likely: skip over the label itself.
        let other = rng.random_range(0..classes as u32 - 1);
        out[i] = if other >= labels[i] { other + 1 } else { other };
    }
    Ok(out)
}

/// `data` with its labels replaced.
pub fn relabelled(data: &Dataset, labels: Vec<u32>) -> Result<Dataset> {
    let mut out = Dataset::new(data.x.clone(), labels, data.d, data.num_classes, "relabelled data")?;
    out.class_names = data.class_names.clone();
    Ok(out)
}

/// The first `n` rows of `data` (all of them when it has fewer).
pub fn first_rows(data: &Dataset, n: usize) -> Result<Dataset> {
    let n = n.min(data.n);
    let mut out =
        Dataset::new(data.x[..n * data.d].to_vec(), data.labels[..n].to_vec(), data.d, data.num_classes, "subset")?;
    out.class_names = data.class_names.clone();
    Ok(out)
}

/// Mean, sample standard deviation (n − 1; 0 for one value), minimum and maximum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// The [`Spread`] of `values` (NaN throughout for none).
pub fn spread(values: &[f64]) -> Spread {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ss = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    let std = if values.len() > 1 {
        (ss / (n - 1.0)).sqrt()
    } else if values.is_empty() {
        f64::NAN
    } else {
        0.0
    };
    let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if values.is_empty() {
        return Spread { mean: f64::NAN, std, min: f64::NAN, max: f64::NAN };
    }
    Spread { mean, std, min, max }
}

/// One width's runs: parameters, and over the seeds the final training loss, test loss and
/// test error (fraction misclassified).
#[derive(Clone, Debug)]
pub struct WidthPoint {
    pub width: usize,
    pub params: usize,
    pub train_loss: Spread,
    pub test_loss: Spread,
    pub test_error: Spread,
}

/// How each width is trained: epochs, batch size, optimizer, seeds.
#[derive(Clone, Debug)]
pub struct SweepSetup {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSetup,
    pub seeds: Vec<u64>,
}

/// Trains every width over every seed (one `fit_many` batch per width, on the CPU executor:
/// one run per core) and summarises the final epoch's numbers.
pub fn width_sweep(train: &Dataset, test: &Dataset, widths: &[usize], setup: &SweepSetup) -> Result<Vec<WidthPoint>> {
    widths
        .iter()
        .map(|&width| {
            let model = one_hidden(train.d, width, train.num_classes)?;
            let params = trained_params(&model);
            let trainer = Trainer::new(model)
                .loss(Loss::CrossEntropy)
                .epochs(setup.epochs)
                .batch_size(setup.batch_size)
                .batching(BatchScheme::Shuffle);
            let runs: Vec<RunSpec> = setup.seeds.iter().map(|&s| RunSpec::new(setup.optimizer.clone(), s)).collect();
            let (mut tl, mut vl, mut ve) = (Vec::new(), Vec::new(), Vec::new());
            for history in trainer.fit_many(&runs, train, Some(test))? {
                let last = history?.last().cloned().ok_or_else(|| Error::Usage("a run trained no epoch".into()))?;
                tl.push(last.train_loss as f64);
                vl.push(last.test_loss.unwrap_or(f32::NAN) as f64);
                ve.push(1.0 - last.test_accuracy.unwrap_or(f32::NAN) as f64);
            }
            Ok(WidthPoint { width, params, train_loss: spread(&tl), test_loss: spread(&vl), test_error: spread(&ve) })
        })
        .collect()
}

/// Per epoch: test loss and error, and the validation loss early stopping watches.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    pub test_loss: Vec<f64>,
    pub test_error: Vec<f64>,
    pub validation_loss: Vec<f64>,
}

/// Trains `trainer` one epoch at a time for `epochs`, reading the test and validation sets
/// after each (the same run an `epochs`-long fit is: the batch order carries on).
pub fn curves(
    trainer: &mut Trainer,
    train: &Dataset,
    validation: &Dataset,
    test: &Dataset,
    epochs: usize,
) -> Result<Curves> {
    let mut out = Curves::default();
    let mut one = std::mem::replace(trainer, Trainer::new(trainer.model().clone())).epochs(1);
    for _ in 0..epochs {
        one.fit(train, None)?;
        let t = one.evaluate(test)?;
        out.test_loss.push(t.loss as f64);
        out.test_error.push(1.0 - t.accuracy as f64);
        out.validation_loss.push(one.evaluate(validation)?.loss as f64);
    }
    *trainer = one;
    Ok(out)
}

/// The epoch (1-based) early stopping ends at: the first after which `patience` epochs have
/// passed without the validation loss falling below its best by more than `min_delta` (Keras'
/// `EarlyStopping`, as `train.early_stopping` counts), else the last.
pub fn stop_epoch(validation_loss: &[f64], patience: usize, min_delta: f64) -> usize {
    let (mut best, mut best_epoch) = (f64::INFINITY, 0);
    for (i, &l) in validation_loss.iter().enumerate() {
        let epoch = i + 1;
        if l < best - min_delta {
            (best, best_epoch) = (l, epoch);
        }
        if epoch - best_epoch >= patience {
            return epoch;
        }
    }
    validation_loss.len()
}

/// λ_max of the Hessian of the mean training loss at `params` (`train --track-sharpness`'s
/// estimate: Lanczos from its fixed Rademacher start).
pub fn final_sharpness(model: &Model, loss: Loss, params: &[f32], train: &Dataset) -> Result<f64> {
    let mut hessian = Hessian::new(model.clone(), loss, params, train, train.n.clamp(1, 4096))?;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let dim = crate::spectrum::SymmetricOperator::dim(&hessian);
    let start: Vec<f64> = (0..dim).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
    crate::train::sharpness::largest_eigenvalue(&mut hessian, &start)
}
