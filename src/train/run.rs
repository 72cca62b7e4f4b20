//! A whole run from a config: load and split the data, build the model on the chosen executor,
//! train, evaluate. The CLI is a thin layer over this.

use std::sync::Arc;

use crate::config::Config;
use crate::data::{self, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::exec::{CpuNetwork, GpuNetwork, Network};
use crate::kernels::Gpu;
use crate::spec::Model;

/// Where to run: a named (or the best) GPU adapter, or the CPU reference.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub adapter: Option<String>,
    pub cpu: bool,
    /// This process's rank among the data-parallel ranks on its host: with several adapters of
    /// the best kind and no `adapter` named, rank r takes the r-th (modulo their number).
    pub rank_on_host: usize,
    /// One rank of several: a missing adapter is an error rather than a fall-back to the CPU
    /// reference, whose rounding would make this rank's parameters drift from the others'.
    pub data_parallel: bool,
}

/// The model's outputs must be the data's classes, one for one: a last layer wider than the
/// classes found is a model meant for other data (the digits' 10 outputs on XOR's 2 classes
/// trained silently to chance), unless `data.num_classes` says that some classes never occur.
/// The test split's labels must fit too.
pub fn check_labels(model: &Model, train: &Dataset, test: &Dataset, config: &Config) -> Result<()> {
    if train.is_regression() {
        // One output per target, as the classes' case below; the message names the config.
        let file = config.data.source();
        return crate::exec::network::check_targets(model, train)
            .and_then(|()| crate::exec::network::check_targets(model, test))
            .map_err(|e| Error::Model(format!("{file}: {e}")));
    }
    let (outputs, classes) = (model.outputs(), train.num_classes);
    let file = config.data.source();
    if outputs != classes {
        let source = match (&train.class_names, config.data.num_classes) {
            (Some(names), _) if config.data.generate.is_some() => {
                format!("the classes of {file}: {}", crate::data::listed(names))
            }
            (Some(names), _) => format!("the class names in {file}: {}", crate::data::listed(names)),
            (None, Some(k)) => format!("data.num_classes = {k}"),
            (None, None) => format!("labels 0 to {} in {file}", classes - 1),
        };
        let hint = match (&train.class_names, config.data.num_classes) {
            (None, None) if outputs > classes => format!(
                ", or set data.num_classes = {outputs} if the data has {outputs} classes of which some never occur"
            ),
            _ => String::new(),
        };
        let classes_word = if classes == 1 { "class" } else { "classes" };
        return Err(Error::Model(format!(
            "the model's last layer has {outputs} outputs but the data has {classes} {classes_word} ({source}); \
             set the last layer's out = {classes}{hint}"
        )));
    }
    if let Some(&bad) = test.labels.iter().find(|&&l| l as usize >= outputs) {
        let file = config.data.test_path.as_ref().map_or(config.data.source(), |p| p.display().to_string());
        return Err(Error::Model(format!("{file}: the test data has label {bad} but the model has {outputs} outputs")));
    }
    Ok(())
}

/// Loads the data a config names, scaled, as (train, test).
pub fn load_data(config: &Config, config_file: &std::path::Path) -> Result<(Dataset, Dataset)> {
    load_data_with_stats(config, config_file).map(|(train, test, _)| (train, test))
}

/// `load_data`, also returning the standardisation it applied (when `data.standardize`). The
/// training rows are those left after the validation split (`load_split`).
pub fn load_data_with_stats(
    config: &Config,
    config_file: &std::path::Path,
) -> Result<(Dataset, Dataset, Option<Standardize>)> {
    load_split(config, config_file).map(|s| (s.train, s.test, s.standardize))
}

/// The data a config names, in its three disjoint parts.
pub struct Split {
    pub train: Dataset,
    /// `data.validation_fraction` of the rows left after the test split (empty when 0).
    pub validation: Dataset,
    pub test: Dataset,
    /// Fitted on `train` alone, applied to all three.
    pub standardize: Option<Standardize>,
}

/// Loads the data a config names, scaled, split into training, validation and test rows.
pub fn load_split(config: &Config, config_file: &std::path::Path) -> Result<Split> {
    let all = load_all(config, config_file)?;
    split_with(all, config, config_file, |train| match &config.data.test_path {
        Some(test_path) => load_test_rows(config, config_file, test_path, train).map(Some),
        None => Ok(None),
    })
}

/// All the rows the config's data names, before any split: its file, or its generated set.
pub fn load_all(config: &Config, config_file: &std::path::Path) -> Result<Dataset> {
    match (&config.data.path, config.data.toy_spec()) {
        (Some(path), _) => load_rows(config, config_file, path, config.data.labels.as_deref()),
        (None, Some(spec)) => data::generate_toy(&spec),
        // Config::parse refuses a [data] with neither.
        (None, None) => Err(Error::Config {
            file: config_file.to_path_buf(),
            message: "data: give data.path or data.generate".into(),
        }),
    }
}

/// Rows already in hand (parsed from CSV text, generated) split as the config says: scaled,
/// the test split, the validation split, standardised with the training rows' statistics. A
/// config with `data.test_path` names a file, which only `load_split` reads.
pub fn split_rows(all: Dataset, config: &Config, config_file: &std::path::Path) -> Result<Split> {
    if let Some(test_path) = &config.data.test_path {
        return Err(Error::Config {
            file: config_file.to_path_buf(),
            message: format!(
                "data.test_path = {}: split_rows takes only the rows handed to it; use test_fraction (or load_split)",
                test_path.display()
            ),
        });
    }
    split_with(all, config, config_file, |_| Ok(None))
}

/// The split, with the test rows from `test_file` (given the training rows) when it has any.
fn split_with(
    mut all: Dataset,
    config: &Config,
    config_file: &std::path::Path,
    test_file: impl FnOnce(&Dataset) -> Result<Option<Dataset>>,
) -> Result<Split> {
    if config.data.scale != 1.0 {
        all.scale(config.data.scale);
    }
    let (train, mut test) = all.split(config.data.test_fraction(), config.data.split_seed)?;
    let (mut train, mut validation) = split_validation(train, config, config_file)?;
    if let Some(mut rows) = test_file(&train)? {
        if config.data.scale != 1.0 {
            rows.scale(config.data.scale);
        }
        test = rows;
    }
    let standardize = config.data.standardize.then(|| Standardize::fit(&train));
    if let Some(s) = &standardize {
        s.apply(&mut train.x);
        s.apply(&mut validation.x);
        s.apply(&mut test.x);
    }
    Ok(Split { train, validation, test, standardize })
}

/// The rows of `data.test_path`, unscaled, checked against the training rows' width.
fn load_test_rows(
    config: &Config,
    config_file: &std::path::Path,
    test_path: &std::path::Path,
    train: &Dataset,
) -> Result<Dataset> {
    // Class names number as the training file's do.
    let mut named = config.clone();
    named.class_names = named.class_names.or(train.class_names.clone());
    let test = load_rows(&named, config_file, test_path, config.data.test_labels.as_deref())?;
    if test.d != train.d {
        return Err(Error::Shape {
            what: format!("{} (data.test_path) features", test_path.display()),
            expected: format!("{} (as {})", train.d, config.data.source()),
            got: test.d.to_string(),
        });
    }
    Ok(test)
}

/// (training rows, validation rows): `data.validation_fraction` of `train` by a shuffle seeded
/// with `data.split_seed`; both must keep a row.
fn split_validation(train: Dataset, config: &Config, config_file: &std::path::Path) -> Result<(Dataset, Dataset)> {
    let fraction = config.data.validation_fraction;
    if fraction == 0.0 {
        // All the rows, in order, and none.
        return train.split(0.0, 0);
    }
    let n = train.n;
    let (rest, validation) = train.split(fraction, config.data.split_seed)?;
    if rest.n == 0 || validation.n == 0 {
        let (left, what) = if rest.n == 0 { ("no training row", "smaller") } else { ("no validation row", "larger") };
        return Err(Error::Config {
            file: config_file.to_path_buf(),
            message: format!(
                "data.validation_fraction = {fraction} of the {n} training rows leaves {left}; choose a {what} fraction"
            ),
        });
    }
    Ok((rest, validation))
}

/// The rows of one data file (`path`, with `labels` for `.npy` inputs) with the config's options.
fn load_rows(
    config: &Config,
    config_file: &std::path::Path,
    path: &std::path::Path,
    labels: Option<&std::path::Path>,
) -> Result<Dataset> {
    let drop_non_finite = config.data.non_finite == crate::config::NonFinite::DropRow;
    if config.data.is_regression() {
        return load_regression_rows(config, config_file, path);
    }
    match labels {
        Some(labels) => data::load_npy_pair_with(path, labels, config.data.num_classes, drop_non_finite),
        None if path.extension().is_some_and(|e| e == "npy") => Err(Error::Config {
            file: config_file.to_path_buf(),
            message: format!("{} is a .npy file: give its labels too (data.labels / data.test_labels)", path.display()),
        }),
        None if config.builtin && !path.exists() => {
            data::csv::parse_csv(crate::config::DEFAULT_DATA, path, &config.csv_options(config_file)?)
        }
        None => data::load_csv(path, &config.csv_options(config_file)?),
    }
}

/// A regression file's rows: CSV target columns (`data.targets`), or a `.npy` pair with float
/// targets (`data.targets_path`, and `data.test_targets` for a `.npy` test file).
fn load_regression_rows(config: &Config, config_file: &std::path::Path, path: &std::path::Path) -> Result<Dataset> {
    let config_err = |message: String| Error::Config { file: config_file.to_path_buf(), message };
    let is_test = config.data.test_path.as_deref() == Some(path);
    let npy_targets = if is_test { &config.data.test_targets } else { &config.data.targets_path };
    match npy_targets {
        Some(y) => data::load_npy_targets(path, y),
        None if path.extension().is_some_and(|e| e == "npy") => Err(config_err(format!(
            "{} is a .npy file: give its targets as a .npy too (data.targets_path / data.test_targets)",
            path.display()
        ))),
        None => data::load_csv_targets(path, &config.data.target_columns().map_err(config_err)?),
    }
}

/// Per-feature standardisation (x − mean) / std with the training split's statistics (std of a
/// constant feature taken as 1). Saved in checkpoints so `predict` applies the same transform.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardize {
    pub fn fit(train: &Dataset) -> Standardize {
        let (n, d) = (train.n.max(1) as f64, train.d);
        let mut mean = vec![0.0f64; d];
        for row in train.x.chunks(d) {
            row.iter().zip(&mut mean).for_each(|(x, m)| *m += *x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; d];
        for row in train.x.chunks(d) {
            row.iter().zip(&mean).zip(&mut var).for_each(|((x, m), v)| *v += (*x as f64 - m).powi(2));
        }
        let std = var.iter().map(|v| (v / n).sqrt()).map(|s| if s > 0.0 { s as f32 } else { 1.0 }).collect();
        Standardize { mean: mean.iter().map(|&m| m as f32).collect(), std }
    }

    /// Standardises rows of `x` in place (row width = the number of features).
    pub fn apply(&self, x: &mut [f32]) {
        let d = self.mean.len().max(1);
        for row in x.chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = ((*v as f64 - *m as f64) / *s as f64) as f32;
            }
        }
    }

    /// Undoes `apply`: rows back in the data's own units (a page plots them so).
    pub fn invert(&self, x: &mut [f32]) {
        let d = self.mean.len();
        for row in x.chunks_exact_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = *v * s + m;
            }
        }
    }

    /// The statistics a config's data gives (None unless `data.standardize`): recomputed from
    /// the training split, which is deterministic.
    pub fn of_config(config: &Config, config_file: &std::path::Path) -> Result<Option<Standardize>> {
        if !config.data.standardize {
            return Ok(None);
        }
        Ok(load_data_with_stats(config, config_file)?.2)
    }
}

/// The placement's GPU, or None for `--cpu` and (with a one-line warning saying what will `work`
/// on the CPU reference instead) where no adapter exists.
pub fn open_gpu(placement: &Placement, work: &str) -> Result<Option<Gpu>> {
    if placement.cpu {
        return Ok(None);
    }
    match Gpu::for_rank(placement.adapter.as_deref(), placement.rank_on_host) {
        Ok(gpu) => Ok(Some(gpu)),
        Err(Error::NoAdapter(hint)) if placement.data_parallel => Err(Error::NoAdapter(format!(
            " on this rank of a data-parallel run (every rank needs one, or pass --cpu to all){hint}"
        ))),
        Err(Error::NoAdapter(hint)) => {
            crate::warn!("warning: no GPU adapter found, {work} on the CPU reference path{hint}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens the GPU (or falls back to the CPU with a one-line warning when no adapter exists) and
/// builds the network with parameters initialised from the config's seed.
pub fn build_network(
    config: &Config,
    model: Model,
    placement: &Placement,
    max_rows: usize,
) -> Result<Box<dyn Network>> {
    Ok(match open_gpu(placement, "training")? {
        Some(gpu) => Box::new(gpu_network(config, model, Arc::new(gpu), max_rows)?),
        None => Box::new(cpu_network(config, model, max_rows)?),
    })
}

/// The config's network on `gpu`: parameters from `model.init_seed`, the config's steps per
/// submit and dropout key (what `gradflow train` and the browser page build).
pub fn gpu_network(config: &Config, model: Model, gpu: Arc<Gpu>, max_rows: usize) -> Result<GpuNetwork> {
    // Before the parameters are drawn: a model too large for the device fails at once.
    GpuNetwork::check_fits(&gpu, &model, max_rows)?;
    let params = model.init_params(config.model.init_seed);
    let mut net = GpuNetwork::new(gpu, model, config.model.loss, config.optimizer_setup(), &params, max_rows)?;
    net.set_steps_per_submit(config.train.steps_per_submit);
    net.set_dropout_seed(config.model.init_seed);
    Ok(net)
}

/// The config's network on the CPU reference executor, initialised as `gpu_network`.
pub fn cpu_network(config: &Config, model: Model, max_rows: usize) -> Result<CpuNetwork> {
    let setup = config.optimizer_setup();
    CpuNetwork::check_fits(&model, max_rows, setup.optimizer.state_slots())?;
    let params = model.init_params(config.model.init_seed);
    let mut net = CpuNetwork::new(model, config.model.loss, setup, params)?;
    net.set_dropout_seed(config.model.init_seed);
    Ok(net)
}

/// Batch norm cannot train on a batch of one row (PyTorch refuses it too): found before the first
/// step, not at the end of the first epoch when a short last batch arrives.
pub fn check_batches(model: &Model, batcher: &Batcher) -> Result<()> {
    let smallest = batcher.smallest_batch();
    if model.has_batch_norm() && smallest < 2 {
        return Err(Error::Usage(format!(
            "train: some batches would have {smallest} row, and batch norm (layer {}) needs at least 2 in \
             training mode; change train.batch_size or set train.drop_last = true",
            model.norms[0].name
        )));
    }
    Ok(())
}

/// The batcher a config asks for.
pub fn batcher(config: &Config, n: usize) -> Result<Batcher> {
    let t = &config.train;
    Batcher::new(t.batching, n, t.batch_size, t.drop_last, t.seed)
}

/// Largest batch the network must hold: the batch size, or the whole set for full-batch descent.
pub fn max_rows(config: &Config, n: usize) -> usize {
    match config.train.batching {
        crate::data::BatchScheme::FullBatch => n.max(1),
        // No batch holds more rows than the data has.
        _ => config.train.batch_size.clamp(1, n.max(1)),
    }
}
