//! Training in code: a [`Trainer`] holds a model and its settings, builds the network on the
//! chosen executor, runs epochs with `train_batches_on` (the loop `gradflow train` runs) and
//! returns what each epoch did as a [`History`].

use web_time::Instant;

mod many;
pub use many::RunSpec;

use super::{evaluate, Flow};
use crate::config::Config;
use crate::data::{BatchScheme, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::exec::{CpuNetwork, GpuNetwork, Network};
use crate::kernels::Gpu;
use crate::optim::{OptimizerSetup, Sgd};
use crate::spec::{Loss, Model};

/// Where a [`Trainer`] runs its network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The plain-Rust CPU reference executor (PyTorch's default device too).
    #[default]
    Cpu,
    /// The best GPU adapter (or the one `$GRADFLOW_ADAPTER` names); no adapter is an error,
    /// [`Error::NoAdapter`].
    Gpu,
    /// The first adapter whose name, backend or driver contains this text.
    Adapter(String),
    /// The best GPU adapter, or the CPU executor with a one-line warning on stderr where there
    /// is none (what `gradflow train` does).
    Auto,
}

impl Device {
    /// The adapter this device names, or None for the CPU executor (and for `Auto` where there
    /// is no adapter, with its warning).
    pub(crate) fn open_gpu(&self) -> Result<Option<Gpu>> {
        Ok(match self {
            Device::Cpu => None,
            Device::Gpu => Some(Gpu::new(None)?),
            Device::Adapter(name) => Some(Gpu::new(Some(name))?),
            Device::Auto => super::open_gpu(&super::Placement::default(), "training")?,
        })
    }
}

/// What one epoch did: the training set's mean loss and accuracy over the epoch's steps (as
/// they were taken, batch norm in training mode), and the test set's after the epoch (eval mode).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// 1-based, counted over every `fit` of the trainer.
    pub epoch: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    /// None without a test set.
    pub test_loss: Option<f32>,
    pub test_accuracy: Option<f32>,
    /// Optimizer steps in the epoch.
    pub steps: usize,
    /// The learning rate (of the first parameter group) at the epoch's first step.
    pub lr: f32,
    /// Wall time of the epoch's training steps (evaluation not included).
    pub seconds: f64,
}

/// The epochs one `fit` ran, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub epochs: Vec<EpochStats>,
    /// Whether the per-epoch callback stopped training before the last epoch.
    pub stopped_early: bool,
    /// The executor that ran them: "CPU reference" or "GPU: " and the adapter.
    pub device: String,
}

impl History {
    /// Epochs run.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// The last epoch run.
    pub fn last(&self) -> Option<&EpochStats> {
        self.epochs.last()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, EpochStats> {
        self.epochs.iter()
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a EpochStats;
    type IntoIter = std::slice::Iter<'a, EpochStats>;
    fn into_iter(self) -> Self::IntoIter {
        self.epochs.iter()
    }
}

/// Mean loss and accuracy on a data set, batch norm in eval mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f32,
    pub accuracy: f32,
}

/// Trains a [`Model`]: settings by chained calls (each with PyTorch's usual default), then
/// [`fit`](Self::fit) runs the epochs and returns their [`History`].
///
/// Defaults: cross-entropy loss, SGD with learning rate 0.01 and no momentum, 10 epochs,
/// batches of 32 rows reshuffled every epoch, seed 0 (initial parameters and shuffling), the
/// CPU executor. A batch size above the training set's row count is one batch of every row
/// (a `DataLoader` would give the same).
///
/// The network is built at the first `fit` (or `evaluate`, `predict`) from the model's own
/// initialisation with the seed, and kept: a second `fit` continues training from where the
/// first ended, as PyTorch's loop would on the same module and optimizer. Changing the loss,
/// optimizer or device between fits moves the trained parameters and batch-norm statistics to
/// a network built with the new settings (the optimizer's state too, unless the optimizer changed).
///
/// ```
/// use gradflow::prelude::*;
///
/// # fn main() -> Result<()> {
/// // XOR, each corner repeated so a batch of 8 sees all four.
/// let corners = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// let rows: Vec<[f32; 2]> = corners.iter().cycle().take(32).copied().collect();
/// let labels: Vec<u32> = [0, 1, 1, 0].iter().cycle().take(32).copied().collect();
/// let data = Dataset::from_nested(&rows, &labels)?;
///
/// let model = Model::mlp(2, &[16], 2, Activation::Tanh)?;
/// let mut trainer = Trainer::new(model)
///     .optimizer(Sgd::with_momentum(0.1, 0.9))
///     .batch_size(8)
///     .epochs(40)
///     .device(Device::Cpu)
///     .seed(1);
/// let history = trainer.fit(&data, Some(&data))?;
/// assert_eq!(history.len(), 40);
/// let last = history.last().unwrap();
/// assert_eq!(last.test_accuracy, Some(1.0));
/// assert!(last.train_loss < history.epochs[0].train_loss);
///
/// assert_eq!(trainer.classify(&[0.0, 1.0, 1.0, 1.0])?, [1, 0]);
/// assert_eq!(trainer.evaluate(&data)?.accuracy, 1.0);
/// # Ok(())
/// # }
/// ```
pub struct Trainer {
    model: Model,
    loss: Loss,
    setup: OptimizerSetup,
    device: Device,
    epochs: usize,
    batch_size: usize,
    batching: BatchScheme,
    drop_last: bool,
    init_seed: u64,
    shuffle_seed: u64,
    built: Option<Built>,
    /// Epochs run by earlier fits: the next one's number, and the batch order's position.
    epochs_done: usize,
}

/// The network and the settings it was built with.
struct Built {
    net: Box<dyn Network>,
    /// The most rows in one training batch it holds.
    rows: usize,
    device: Device,
    loss: Loss,
    setup: OptimizerSetup,
}

impl Trainer {
    /// A trainer for `model` with the defaults above.
    pub fn new(model: Model) -> Trainer {
        Trainer {
            model,
            loss: Loss::CrossEntropy,
            setup: Sgd::new(0.01).into(),
            device: Device::Cpu,
            epochs: 10,
            batch_size: 32,
            batching: BatchScheme::Shuffle,
            drop_last: false,
            init_seed: 0,
            shuffle_seed: 0,
            built: None,
            epochs_done: 0,
        }
    }

    /// The settings a config's `[model]`, `[optimizer]` and `[train]` give, for rows of
    /// `inputs` features: the same initial parameters, batches and updates as `gradflow train`
    /// on the same data, with the history returned. (`train.param_groups`, `schedule` and
    /// `clip_grad_norm` are part of the optimizer setup; `data.*` is the caller's to load, e.g.
    /// with `train::load_data`.)
    ///
    /// ```
    /// use gradflow::prelude::*;
    /// use gradflow::{config::Config, train};
    ///
    /// # fn main() -> Result<()> {
    /// // The built-in digits run (configs/digits.toml), two of its epochs.
    /// let config = Config::default_run()?;
    /// let file = std::path::Path::new(gradflow::config::DEFAULT_CONFIG_PATH);
    /// let (train_set, test_set) = train::load_data(&config, file)?;
    /// let mut trainer = Trainer::from_config(&config, train_set.d)?.epochs(2);
    /// let history = trainer.fit(&train_set, Some(&test_set))?;
    /// assert_eq!(history.len(), 2);
    /// assert!(history.epochs[1].train_loss < history.epochs[0].train_loss);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_config(config: &Config, inputs: usize) -> Result<Trainer> {
        let t = &config.train;
        let model = Model::new(inputs, config.model.layers.clone())?;
        let mut trainer = Trainer::new(model)
            .loss(config.model.loss)
            .optimizer(config.optimizer_setup())
            .epochs(t.epochs)
            .batch_size(t.batch_size)
            .batching(t.batching)
            .drop_last(t.drop_last);
        trainer.init_seed = config.model.init_seed;
        trainer.shuffle_seed = t.seed;
        Ok(trainer)
    }

    /// The training objective (default cross-entropy).
    pub fn loss(mut self, loss: Loss) -> Trainer {
        self.loss = loss;
        self
    }

    /// The optimizer: an [`Sgd`], an [`Adam`](crate::optim::Adam), any
    /// [`Optimizer`](crate::optim::Optimizer), or an [`OptimizerSetup`] with parameter groups,
    /// a learning-rate schedule and gradient clipping. Checked (as torch.optim checks) at `fit`.
    pub fn optimizer(mut self, optimizer: impl Into<OptimizerSetup>) -> Trainer {
        self.setup = optimizer.into();
        self
    }

    /// Where to run (default [`Device::Cpu`]).
    pub fn device(mut self, device: Device) -> Trainer {
        self.device = device;
        self
    }

    /// Epochs each `fit` runs (default 10).
    pub fn epochs(mut self, epochs: usize) -> Trainer {
        self.epochs = epochs;
        self
    }

    /// Rows per batch (default 32).
    pub fn batch_size(mut self, batch_size: usize) -> Trainer {
        self.batch_size = batch_size;
        self
    }

    /// How batches are drawn (default [`BatchScheme::Shuffle`]).
    pub fn batching(mut self, batching: BatchScheme) -> Trainer {
        self.batching = batching;
        self
    }

    /// Skip each epoch's last batch when it is short (default false).
    pub fn drop_last(mut self, drop_last: bool) -> Trainer {
        self.drop_last = drop_last;
        self
    }

    /// The seed of the initial parameters and of the batch order (default 0). Only the batch
    /// order follows a change once the network is built.
    pub fn seed(mut self, seed: u64) -> Trainer {
        self.init_seed = seed;
        self.shuffle_seed = seed;
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Rows in a full batch over `n` training rows.
    fn batch_rows(&self, n: usize) -> usize {
        match self.batching {
            BatchScheme::FullBatch => n,
            _ => self.batch_size.min(n),
        }
    }

    /// Runs the epochs on `train`, evaluating on `test` after each when given, and returns
    /// their history.
    pub fn fit(&mut self, train: &Dataset, test: Option<&Dataset>) -> Result<History> {
        self.fit_with(train, test, |_| Flow::Continue)
    }

    /// [`fit`](Self::fit), calling `on_epoch` after each epoch (a progress line, early
    /// stopping): returning [`Flow::Stop`] ends training after that epoch.
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// let x: Vec<f32> = (0..64).map(|i| i as f32 / 32.0 - 1.0).collect();
    /// let labels: Vec<u32> = x.iter().map(|&v| u32::from(v > 0.0)).collect();
    /// let data = Dataset::from_rows(&x, 1, &labels)?;
    /// let model = Model::builder(1).dense(2, Activation::Identity).build()?;
    /// let mut trainer = Trainer::new(model).optimizer(Sgd::new(0.5)).batch_size(16).epochs(100);
    ///
    /// // Stop as soon as every training row is classified right.
    /// let history = trainer.fit_with(&data, None, |epoch| {
    ///     println!("epoch {}: loss {:.4}", epoch.epoch, epoch.train_loss);
    ///     if epoch.train_accuracy == 1.0 { Flow::Stop } else { Flow::Continue }
    /// })?;
    /// assert!(history.stopped_early && history.len() < 100);
    /// assert_eq!(history.last().unwrap().test_accuracy, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fit_with(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        mut on_epoch: impl FnMut(&EpochStats) -> Flow,
    ) -> Result<History> {
        check_data(&self.model, train, "training data")?;
        let test = test.filter(|t| t.n > 0);
        if let Some(test) = test {
            check_data(&self.model, test, "test data")?;
            if test.is_regression() != train.is_regression() {
                let kind = |d: &Dataset| if d.is_regression() { "real targets" } else { "class labels" };
                return Err(Error::Usage(format!(
                    "the training data has {} but the test data {}: both must be scored the same way",
                    kind(train),
                    kind(test)
                )));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::Usage("batch_size must be at least 1".into()));
        }
        let rows = self.batch_rows(train.n);
        let mut batcher = Batcher::new(self.batching, train.n, rows, self.drop_last, self.shuffle_seed)?;
        super::check_batches(&self.model, &batcher)?;
        // The batch order goes on from the epochs earlier fits drew, as one longer run's would.
        for _ in 0..self.epochs_done {
            batcher.next_epoch();
        }
        let (loss, epochs) = (self.loss, self.epochs);
        let net = self.network_for(rows)?;
        net.set_train_data(train)?;
        let mut history = History { device: first_line(&net.describe()), ..History::default() };
        for _ in 0..epochs {
            let epoch = self.epochs_done + 1;
            let net = self.network_for(rows)?;
            let lr = net.lr();
            let start = Instant::now();
            let batches = batcher.next_epoch();
            let report = super::train_batches_on(
                net,
                &batches,
                epoch,
                &crate::dist::Single,
                &|| false,
                super::Observe::Submits,
                |_, _| Ok(Flow::Continue),
            )?;
            let seconds = start.elapsed().as_secs_f64();
            let (test_loss, test_accuracy) = match test {
                Some(test) => {
                    let (l, a) = evaluate(net, test, loss)?;
                    (Some(l), Some(a))
                }
                None => (None, None),
            };
            self.epochs_done = epoch;
            let stats = EpochStats {
                epoch,
                train_loss: report.train_loss,
                train_accuracy: report.train_accuracy,
                test_loss,
                test_accuracy,
                steps: report.steps,
                lr,
                seconds,
            };
            let flow = on_epoch(&stats);
            history.epochs.push(stats);
            if flow == Flow::Stop {
                history.stopped_early = history.len() < epochs;
                break;
            }
        }
        Ok(history)
    }

    /// Mean loss and accuracy on `data` (batch norm in eval mode).
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        check_data(&self.model, data, "evaluation data")?;
        if data.n == 0 {
            return Err(Error::Usage("evaluation data: no rows".into()));
        }
        let loss = self.loss;
        let (loss, accuracy) = evaluate(self.network()?, data, loss)?;
        Ok(Evaluation { loss, accuracy })
    }

    /// The network's outputs (logits) for rows of `x`, row-major: one row of
    /// `model().outputs()` values per input row.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = rows_of(&self.model, x)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        self.network()?.predict(x, rows)
    }

    /// The predicted class (the largest output) of each row of `x`.
    pub fn classify(&mut self, x: &[f32]) -> Result<Vec<u32>> {
        let outputs = self.model.outputs().max(1);
        let logits = self.predict(x)?;
        Ok(logits
            .chunks(outputs)
            .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32))
            .collect())
    }

    /// The network itself, built if no `fit` has yet: parameters, gradients, optimizer and
    /// batch-norm state for checkpoints (`checkpoint::save`) or inspection.
    pub fn network(&mut self) -> Result<&mut dyn Network> {
        let rows = self.built.as_ref().map_or(self.batch_size.max(1), |b| b.rows);
        self.network_for(rows)
    }

    /// The network for batches of up to `rows` rows with the current settings: the one built
    /// already when it serves them, else a new one carrying over the trained state (the old one
    /// is kept if that fails).
    fn network_for(&mut self, rows: usize) -> Result<&mut dyn Network> {
        let built = match self.built.take() {
            Some(b) if b.rows >= rows && b.device == self.device && b.loss == self.loss && b.setup == self.setup => b,
            mut old => match self.rebuild(rows, old.as_mut()) {
                Ok(new) => new,
                Err(e) => {
                    self.built = old;
                    return Err(e);
                }
            },
        };
        Ok(self.built.insert(built).net.as_mut())
    }

    /// A network for the current settings, with `old`'s parameters and batch-norm state when
    /// there is one (and its optimizer state and step count when the optimizer is the same).
    fn rebuild(&self, rows: usize, old: Option<&mut Built>) -> Result<Built> {
        let mut net = self.build(rows)?;
        if let Some(old) = old {
            net.set_params(&old.net.params()?)?;
            net.set_norm_state(&old.net.norm_state()?)?;
            if old.setup == self.setup {
                net.set_optimizer_state(&old.net.optimizer_state()?)?;
                net.set_steps(old.net.steps());
            }
        }
        Ok(Built { net, rows, device: self.device.clone(), loss: self.loss, setup: self.setup.clone() })
    }

    /// A network with fresh parameters from the model's initialisation, as `build_network` makes one.
    fn build(&self, rows: usize) -> Result<Box<dyn Network>> {
        let setup = self.setup.clone();
        // Before a GPU is opened: torch.optim's refusals, with its wording.
        setup.validate().map_err(Error::Usage)?;
        let gpu = self.device.open_gpu()?;
        let model = self.model.clone();
        match gpu {
            Some(gpu) => {
                // Before the parameters are drawn: a model too large for the device fails at once.
                GpuNetwork::check_fits(&gpu, &model, rows)?;
                let params = model.init_params(self.init_seed);
                let mut net = GpuNetwork::new(std::sync::Arc::new(gpu), model, self.loss, setup, &params, rows)?;
                net.set_dropout_seed(self.init_seed);
                Ok(Box::new(net))
            }
            None => {
                CpuNetwork::check_fits(&model, rows, setup.optimizer.state_slots())?;
                let params = model.init_params(self.init_seed);
                let mut net = CpuNetwork::new(model, self.loss, setup, params)?;
                net.set_dropout_seed(self.init_seed);
                Ok(Box::new(net))
            }
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Rows in `x` for the model's input width.
fn rows_of(model: &Model, x: &[f32]) -> Result<usize> {
    if model.inputs == 0 || !x.len().is_multiple_of(model.inputs) {
        return Err(Error::Shape {
            what: "prediction input".into(),
            expected: format!("a multiple of the model's {} inputs", model.inputs),
            got: format!("{} values", x.len()),
        });
    }
    Ok(x.len() / model.inputs)
}

/// A data set the model can take: its width, consistent lengths, finite values, and labels
/// the output layer has a unit for (checked here because a `Dataset`'s fields are public, so
/// one may not have come through `Dataset::new`).
fn check_data(model: &Model, data: &Dataset, what: &str) -> Result<()> {
    if data.d != model.inputs {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("{} features (the model's inputs)", model.inputs),
            got: data.d.to_string(),
        });
    }
    if data.labels.len() != data.n || data.n.checked_mul(data.d) != Some(data.x.len()) {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("{} rows: {} labels and {} values", data.n, data.n, data.n.saturating_mul(data.d)),
            got: format!("{} labels and {} values", data.labels.len(), data.x.len()),
        });
    }
    if let Some(i) = data.x.iter().position(|v| !v.is_finite()) {
        let bad = if data.x[i].is_nan() { "NaN" } else { "Inf" };
        return Err(Error::Usage(format!("{what}: {}: {bad}", crate::data::row_feature_text(i, data.d))));
    }
    crate::exec::network::check_targets(model, data)?;
    let outputs = model.outputs();
    if let Some(i) = data.labels.iter().position(|&l| l as usize >= outputs) {
        return Err(Error::Model(format!(
            "{what}: {} has label {} but the model's last layer has {outputs} outputs",
            crate::data::row_text(i),
            data.labels[i]
        )));
    }
    Ok(())
}
