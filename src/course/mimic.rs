//! Do deep nets need to be deep? (Ba & Caruana 2014): a deep ReLU teacher, a one-hidden-layer
//! net with the same parameter count trained on the labels, and the same shallow net trained to
//! mimic the teacher's logits (mean squared error on them, an ordinary regression run of the
//! engine), compared by test accuracy and test cross-entropy over seeds; and a seeded data set
//! labelled by a random deep tanh network, on which depth is known to be enough.

use rand::{rngs::StdRng, SeedableRng};

use crate::data::{BatchScheme, Dataset, Targets};
use crate::error::{Error, Result};
use crate::optim::OptimizerSetup;
use crate::spec::{Activation, Loss, Model};
use crate::train::Trainer;

use super::width::{one_hidden, one_hidden_params, trained_params};

/// The hidden width w ≥ 1 whose d → w → c net's parameter count, (d + 1 + c)·w + c, is nearest
/// `params` (the smaller w on a tie).
pub fn matching_width(inputs: usize, classes: usize, params: usize) -> usize {
    let per_unit = inputs + 1 + classes;
    let below = (params.saturating_sub(classes) / per_unit).max(1);
    let gap = |w: usize| one_hidden_params(inputs, w, classes).abs_diff(params);
    if gap(below + 1) < gap(below) {
        below + 1
    } else {
        below
    }
}

/// The shallow d → w (ReLU) → c net whose parameter count is nearest the `teacher`'s.
pub fn matching_shallow(teacher: &Model) -> Result<Model> {
    let (d, c) = (teacher.inputs, teacher.outputs());
    one_hidden(d, matching_width(d, c, trained_params(teacher)), c)
}

/// `data`'s inputs with `logits` (k per row, row-major) as real targets: what the mimic trains on.
pub fn mimic_data(data: &Dataset, logits: Vec<f32>, k: usize) -> Result<Dataset> {
    let targets = Targets::new(logits, k, data.n, "teacher logits")?;
    Dataset::regression(data.x.clone(), data.d, targets, "mimic data")
}

/// `data`'s inputs labelled by the trained `teacher`'s logits on them.
pub fn teacher_targets(teacher: &mut Trainer, data: &Dataset) -> Result<Dataset> {
    let logits = teacher.predict(&data.x)?;
    mimic_data(data, logits, teacher.model().outputs())
}

/// Accuracy of argmax and mean softmax cross-entropy of logits against class labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub accuracy: f64,
    pub cross_entropy: f64,
}

/// The [`Scores`] of `logits` (`classes` per row) against `labels`; the cross-entropy is
/// log Σ exp z − z_label per row in f64 (shifted by the row's maximum, so no overflow).
pub fn scores(logits: &[f32], labels: &[u32], classes: usize) -> Result<Scores> {
    if classes == 0 || logits.len() != labels.len() * classes || labels.is_empty() {
        return Err(Error::Shape {
            what: "logits to score".into(),
            expected: format!("{} rows × {classes} classes", labels.len()),
            got: format!("{} values", logits.len()),
        });
    }
    let (mut right, mut ce) = (0usize, 0.0f64);
    for (row, &label) in logits.chunks(classes).zip(labels) {
        let top = argmax(row);
        right += usize::from(top == label as usize);
        let m = row[top] as f64;
        let lse = m + row.iter().map(|&z| (z as f64 - m).exp()).sum::<f64>().ln();
        ce += lse - row[label as usize] as f64;
    }
    let n = labels.len() as f64;
    Ok(Scores { accuracy: right as f64 / n, cross_entropy: ce / n })
}

/// The index of the largest value (the first on a tie): the reference's.
pub use crate::reference::argmax;

/// A data set the project makes: `n` rows of `d` standard Gaussian features, each labelled by
/// the argmax of a random `d → hidden… (tanh) → classes` network (its initial parameters from
/// `seed`, their scale multiplied by `gain`). Returns the data and that network's parameters.
pub fn deep_teacher_data(
    n: usize,
    d: usize,
    hidden: &[usize],
    classes: usize,
    gain: f32,
    seed: u64,
) -> Result<(Dataset, Vec<f32>)> {
    let model = Model::mlp(d, hidden, classes, Activation::Tanh)?;
    let params: Vec<f32> = model.init_params(seed).iter().map(|p| p * gain).collect();
    let x = gaussian(n * d, seed);
    let mut net = Trainer::new(model);
    net.network()?.set_params(&params)?;
    let labels = net.classify(&x)?;
    Ok((Dataset::new(x, labels, d, classes, "deep-teacher data")?, params))
}

/// `len` standard normal draws (Box–Muller on a seeded generator).
pub fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6761_7573_7369_616e);
    (0..len).map(|_| crate::spectrum::random_matrix::standard_normal(&mut rng) as f32).collect()
}

/// How every net is trained: epochs, batch size, optimizer (seed per run).
#[derive(Clone, Debug)]
pub struct MimicSetup {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSetup,
}

/// One seed's test scores: the teacher, the shallow net on the labels, the shallow mimic.
#[derive(Clone, Copy, Debug)]
pub struct SeedScores {
    pub seed: u64,
    pub teacher: Scores,
    pub shallow: Scores,
    pub mimic: Scores,
    /// The mimic's final mean squared error on the teacher's training logits.
    pub mimic_train_mse: f64,
    /// The same mimic trained on the teacher's logits for the training inputs and extra
    /// unlabelled ones (the paper's transfer set); None without extra inputs.
    pub mimic_more: Option<Scores>,
}

fn trainer(model: Model, loss: Loss, setup: &MimicSetup, seed: u64) -> Trainer {
    Trainer::new(model)
        .loss(loss)
        .optimizer(setup.optimizer.clone())
        .epochs(setup.epochs)
        .batch_size(setup.batch_size)
        .batching(BatchScheme::Shuffle)
        .seed(seed)
}

/// Trains the three nets for one seed (the shallow net and the mimic start from the same
/// initial parameters) and scores their logits on `test`; with `unlabelled` inputs (row-major,
/// `train.d` per row) a fourth, the mimic on the training and the unlabelled inputs.
pub fn compare_seed(
    teacher: &Model,
    train: &Dataset,
    unlabelled: &[f32],
    test: &Dataset,
    setup: &MimicSetup,
    seed: u64,
) -> Result<SeedScores> {
    let shallow_model = matching_shallow(teacher)?;
    let c = teacher.outputs();
    let mut deep = trainer(teacher.clone(), Loss::CrossEntropy, setup, seed);
    deep.fit(train, None)?;
    let mut shallow = trainer(shallow_model.clone(), Loss::CrossEntropy, setup, seed);
    shallow.fit(train, None)?;
    let mut mimic = trainer(shallow_model.clone(), Loss::Mse, setup, seed);
    let history = mimic.fit(&teacher_targets(&mut deep, train)?, None)?;
    let mimic_train_mse = history.last().map_or(f64::NAN, |e| e.train_loss as f64);
    let mimic_more = if unlabelled.is_empty() {
        None
    } else {
        let x = [&train.x[..], unlabelled].concat();
        let rows = x.len() / train.d;
        // Dataset::new checks the rows are whole: the labels are unused by a regression run.
        let inputs = Dataset::new(x, vec![0; rows], train.d, 1, "training and unlabelled inputs")?;
        let mut more = trainer(shallow_model.clone(), Loss::Mse, setup, seed);
        more.fit(&teacher_targets(&mut deep, &inputs)?, None)?;
        Some(scores(&more.predict(&test.x)?, &test.labels, c)?)
    };
    Ok(SeedScores {
        seed,
        teacher: scores(&deep.predict(&test.x)?, &test.labels, c)?,
        shallow: scores(&shallow.predict(&test.x)?, &test.labels, c)?,
        mimic: scores(&mimic.predict(&test.x)?, &test.labels, c)?,
        mimic_train_mse,
        mimic_more,
    })
}

/// [`compare_seed`] for every seed, two at a time on their own threads (the CPU executor runs
/// one run per core).
pub fn compare(
    teacher: &Model,
    train: &Dataset,
    unlabelled: &[f32],
    test: &Dataset,
    setup: &MimicSetup,
    seeds: &[u64],
) -> Result<Vec<SeedScores>> {
    let mut out = Vec::with_capacity(seeds.len());
    for pair in seeds.chunks(2) {
        let runs: Vec<Result<SeedScores>> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|&seed| s.spawn(move || compare_seed(teacher, train, unlabelled, test, setup, seed)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Usage("a run panicked".into()))))
                .collect()
        });
        for r in runs {
            out.push(r?);
        }
    }
    Ok(out)
}
