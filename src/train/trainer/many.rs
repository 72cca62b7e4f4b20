//! Many runs of one trainer's model at once (`Trainer::fit_many`): each run its own optimizer
//! and seed, trained side by side on a GPU where the model is small enough
//! (`exec::BatchedNetworks`), one run per core on the CPU executor, else one after another.
//! Each run's history is what `fit` gives it alone: to the bit on the CPU and one by one; on
//! the GPU side by side, the fused step's numbers (within the usual bounds of the per-op step's).

use std::sync::Arc;

use super::{first_line, EpochStats, History, Trainer};
use crate::data::{BatchScheme, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::exec::{BatchedNetworks, GpuNetwork, Network};
use crate::kernels::Gpu;
use crate::optim::OptimizerSetup;
use crate::train::Device;

/// One run of [`Trainer::fit_many`]: its optimizer (with groups, schedule and clipping) and the
/// seed of its initial parameters and batch order.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub optimizer: OptimizerSetup,
    pub seed: u64,
}

impl RunSpec {
    pub fn new(optimizer: impl Into<OptimizerSetup>, seed: u64) -> RunSpec {
        RunSpec { optimizer: optimizer.into(), seed }
    }
}

impl Trainer {
    /// Trains one run per entry of `runs` (this trainer's model, loss, epochs and batching; the
    /// run's optimizer and seed) and returns each run's history, or the error it met alone
    /// (a diverging run does not stop the others). Where the runs train is chosen here: side
    /// by side on the GPU when the fused step takes the model (`exec::BatchedNetworks`), one
    /// run per core on [`Device::Cpu`], otherwise one after another.
    ///
    /// Adam at three learning rates on XOR, one run per core:
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// let corners = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    /// let rows: Vec<[f32; 2]> = corners.iter().cycle().take(64).copied().collect();
    /// let labels: Vec<u32> = [0, 1, 1, 0].iter().cycle().take(64).copied().collect();
    /// let data = Dataset::from_nested(&rows, &labels)?;
    /// let model = Model::mlp(2, &[8], 2, Activation::Tanh)?;
    /// let trainer = Trainer::new(model).batch_size(16).epochs(40);
    /// let runs: Vec<RunSpec> = [0.001, 0.01, 0.1].iter().map(|&lr| RunSpec::new(Optimizer::adam(lr), 0)).collect();
    /// let mut last = Vec::new(); // each run's final training loss
    /// for history in trainer.fit_many(&runs, &data, None)? {
    ///     last.push(history?.last().map_or(f32::NAN, |e| e.train_loss));
    /// }
    /// assert!(last[2] < last[0], "lr 0.1 ends lower than lr 0.001: {last:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn fit_many(&self, runs: &[RunSpec], train: &Dataset, test: Option<&Dataset>) -> Result<Vec<Result<History>>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        super::check_data(&self.model, train, "training data")?;
        if let Some(t) = test.filter(|t| t.n > 0) {
            super::check_data(&self.model, t, "test data")?;
        }
        let Some(gpu) = self.device.open_gpu()? else {
            // The CPU executor (chosen, or `Auto` with no adapter): one run per core.
            let cpu = Settings { device: Device::Cpu, ..self.settings() };
            return Ok(fit_on_threads(&cpu, runs, train, test));
        };
        if let Some(histories) = self.fit_side_by_side(Arc::new(gpu), runs, train, test)? {
            return Ok(histories);
        }
        Ok(runs.iter().map(|r| self.for_run(r).fit(train, test)).collect())
    }

    /// A fresh trainer with this one's settings and `run`'s optimizer and seed.
    fn for_run(&self, run: &RunSpec) -> Trainer {
        self.settings().for_run(run)
    }

    fn settings(&self) -> Settings {
        Settings {
            model: self.model.clone(),
            loss: self.loss,
            device: self.device.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            batching: self.batching,
            drop_last: self.drop_last,
        }
    }

    /// Every run at once on the GPU, or None when they cannot share a batch of models here
    /// (no adapter, a single run, a model too large for the fused step on a CPU adapter, too
    /// many runs for the adapter's buffers).
    fn fit_side_by_side(
        &self,
        gpu: Arc<Gpu>,
        runs: &[RunSpec],
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<Option<Vec<Result<History>>>> {
        let rows = self.batch_rows(train.n);
        // Real targets: each run trains alone (the batched kernels compare with labels only).
        if runs.len() < 2 || rows == 0 || train.is_regression() {
            return Ok(None);
        }
        let Ok(step) = crate::train::side_by_side::side_by_side_step(&gpu, &self.model, self.loss, rows, runs.len())
        else {
            return Ok(None);
        };
        let inits: Vec<Vec<f32>> = runs.iter().map(|r| self.model.init_params(r.seed)).collect();
        let setups: Vec<OptimizerSetup> = runs.iter().map(|r| r.optimizer.clone()).collect();
        if runs.len() > BatchedNetworks::max_models(&gpu, &self.model, self.loss, rows)? {
            return Ok(None);
        }
        // Refusals (an invalid optimizer setup among them) send every run to train alone,
        // where each meets its own error.
        let mut nets =
            match BatchedNetworks::with_step(gpu.clone(), self.model.clone(), self.loss, setups, &inits, rows, step) {
                Ok(n) => n,
                Err(Error::Usage(_) | Error::LoopLimit { .. } | Error::TooLargeForDevice { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
        nets.set_train_data(train)?;
        let mut batchers = runs
            .iter()
            .map(|r| Batcher::new(self.batching, train.n, rows, self.drop_last, r.seed))
            .collect::<Result<Vec<_>>>()?;
        crate::train::check_batches(&self.model, &batchers[0])?;
        let mut eval = GpuNetwork::new(gpu, self.model.clone(), self.loss, runs[0].optimizer.clone(), &inits[0], rows)?;
        let device = format!("{} ({} runs side by side)", first_line(&eval.describe()), runs.len());
        let mut histories: Vec<Result<History>> =
            runs.iter().map(|_| Ok(History { device: device.clone(), ..History::default() })).collect();
        let test = test.filter(|t| t.n > 0);
        crate::train::side_by_side::train_epochs(&mut nets, &mut batchers, self.epochs, |nets, e| {
            let k = e.model;
            if let Some(bad) = e.totals.first_bad {
                let what = crate::train::bad_step_what(bad.loss);
                histories[k] = Err(Error::Diverged { step: bad.step, epoch: e.epoch, what });
                return Ok(());
            }
            let (test_loss, test_accuracy) = match test {
                Some(test) => {
                    crate::train::side_by_side::load_model(&mut eval, nets, k)?;
                    let (l, a) = crate::train::evaluate(&mut eval, test, self.loss)?;
                    (Some(l), Some(a))
                }
                None => (None, None),
            };
            if let Ok(history) = &mut histories[k] {
                history.epochs.push(EpochStats {
                    epoch: e.epoch,
                    train_loss: e.totals.mean_loss,
                    train_accuracy: e.totals.accuracy,
                    test_loss,
                    test_accuracy,
                    steps: e.steps,
                    lr: runs[k].optimizer.lr_at(e.steps_before as u32) as f32,
                    // The runs trained together: each is charged its share of the time.
                    seconds: e.seconds / runs.len() as f64,
                });
            }
            Ok(())
        })?;
        Ok(Some(histories))
    }
}

/// Each run alone on its own thread, as many at a time as the machine has cores; a run that
/// panics is reported as its error, the others keep theirs.
fn fit_on_threads(
    settings: &Settings,
    runs: &[RunSpec],
    train: &Dataset,
    test: Option<&Dataset>,
) -> Vec<Result<History>> {
    let (done, _) = crate::dist::threads::one_per_core(runs.len(), |k| settings.for_run(&runs[k]).fit(train, test));
    done.into_iter()
        .enumerate()
        .map(|(k, h)| h.unwrap_or_else(|| Err(Error::Usage(format!("run {k} panicked while training")))))
        .collect()
}

/// What a run's trainer shares with the trainer of `fit_many` (everything but the network).
struct Settings {
    model: crate::spec::Model,
    loss: crate::spec::Loss,
    device: Device,
    epochs: usize,
    batch_size: usize,
    batching: BatchScheme,
    drop_last: bool,
}

impl Settings {
    fn for_run(&self, run: &RunSpec) -> Trainer {
        Trainer::new(self.model.clone())
            .loss(self.loss)
            .optimizer(run.optimizer.clone())
            .device(self.device.clone())
            .epochs(self.epochs)
            .batch_size(self.batch_size)
            .batching(self.batching)
            .drop_last(self.drop_last)
            .seed(run.seed)
    }
}
