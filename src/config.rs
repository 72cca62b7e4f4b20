//! The TOML run description: data, model, optimizer, training. Unknown fields are errors.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::{BatchScheme, CsvOptions, LabelColumn, ToyKind, ToySpec};
use crate::error::{Error, Result};
use crate::optim::{GroupSpec, Optimizer, OptimizerSetup, Schedule};
use crate::spec::{LayerSpec, Loss};

pub(crate) mod messages;

/// The built-in default run (configs/digits.toml), used when `gradflow` gets no arguments.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/digits.toml");
pub const DEFAULT_CONFIG_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");
/// Its data, built in too: a copied or installed binary runs without the source tree.
pub const DEFAULT_DATA: &str = include_str!("../data/digits.csv");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optimizer: Optimizer,
    pub train: TrainConfig,
    /// The built-in digits run: when its data file is not where the source tree had it, the
    /// built-in copy (`DEFAULT_DATA`) is read instead.
    #[serde(skip)]
    pub builtin: bool,
    /// The classes by name of the model this config describes, from its checkpoint: labels of
    /// data read for it map through these (see `CsvOptions::class_names`).
    #[serde(skip)]
    pub class_names: Option<Vec<String>>,
    /// The run as TOML after `--set`, data paths resolved: what a checkpoint saves so that the
    /// model it holds describes itself (`Config::from_saved`).
    #[serde(skip)]
    pub table: toml::Table,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A CSV file (features and a label column) or a `.npy` of inputs (then `labels` is required).
    /// Exactly one of `path` and `generate` is given.
    pub path: Option<PathBuf>,
    /// A built-in 2-D toy set instead of a file: "spirals", "xor", "circles" or "blobs".
    pub generate: Option<ToyKind>,
    /// With `generate`: total rows (default 400).
    pub points: Option<usize>,
    /// With `generate`: std of the Gaussian noise added to each coordinate (default per set).
    pub noise: Option<f64>,
    /// With `generate = "spirals"` or `"blobs"`: the number of classes (default 3).
    pub classes: Option<usize>,
    /// With `generate`: the generator's seed (default 0).
    pub seed: Option<u64>,
    /// `.npy` of integer labels, for `.npy` inputs.
    pub labels: Option<PathBuf>,
    /// "last" (default), "first", a header name or a 0-based column index.
    pub label_column: Option<toml::Value>,
    pub num_classes: Option<usize>,
    /// Whether the CSV's first line is a header (default: detected, a header has a non-number).
    pub header: Option<bool>,
    /// Keep the training set on the host and upload each batch as it is used, instead of
    /// resident in GPU memory. Unset: streamed on a CPU adapter (lavapipe), where the upload is a
    /// memcpy and the gather dispatch it saves costs tens of µs; resident elsewhere. A set larger
    /// than one GPU buffer streams anyway.
    #[serde(default)]
    pub stream: Option<bool>,
    /// "error" (default): NaN or Inf in a feature is an error naming the row; "drop-row": such
    /// rows are skipped.
    #[serde(default)]
    pub non_finite: NonFinite,
    /// Every feature is multiplied by this.
    #[serde(default = "one")]
    pub scale: f32,
    /// Standardise each feature with the training split's mean and standard deviation; the
    /// statistics are saved in checkpoints and applied by `predict`.
    #[serde(default)]
    pub standardize: bool,
    /// Held-out share of `path`, split by a seeded shuffle (default 0.2; 0 when `test_path` is
    /// given). With 0 and no `test_path` there is no test set, and no test column is printed.
    pub test_fraction: Option<f64>,
    /// A separate test file (CSV, or `.npy` with `test_labels`), read with the same options and
    /// transformed with the training data's scale and standardisation; `path` is then all training.
    pub test_path: Option<PathBuf>,
    /// `.npy` of integer labels for a `.npy` `test_path`.
    pub test_labels: Option<PathBuf>,
    #[serde(default)]
    pub split_seed: u64,
    /// Share of the training rows (after the test split) held out for validation, by a shuffle
    /// seeded with `split_seed`: evaluated every epoch, never trained on, and not in the
    /// standardisation statistics. Default 0: no validation set.
    #[serde(default)]
    pub validation_fraction: f64,
    /// Regression: the CSV columns that are real targets, by header name (`["price"]`) or by
    /// number from 1 (`[5, 6]`); the other columns are the features. Needs `loss = "mse"` and
    /// a last layer as wide as the list.
    pub targets: Option<Vec<toml::Value>>,
    /// Regression with `.npy` inputs: a float `.npy` of targets, shape [n] or [n, k] (instead
    /// of `labels`).
    pub targets_path: Option<PathBuf>,
    /// Real targets of a `.npy` `test_path` (with `targets_path`).
    pub test_targets: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonFinite {
    #[default]
    Error,
    DropRow,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub loss: Loss,
    #[serde(default)]
    pub init_seed: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default = "default_batching")]
    pub batching: BatchScheme,
    #[serde(default)]
    pub drop_last: bool,
    #[serde(default)]
    pub seed: u64,
    /// Learning-rate schedule over optimizer steps (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// torch.nn.utils.clip_grad_norm_ threshold on the global gradient norm (default: none).
    pub clip_grad_norm: Option<f32>,
    /// Parameter groups with their own lr / weight_decay; first match wins.
    #[serde(default)]
    pub param_groups: Vec<GroupSpec>,
    /// Data-parallel runs: MiB of gradient per all-reduce call, as DDP's `bucket_cap_mb`; the
    /// GPU sends each bucket as soon as the backward pass has finished it.
    #[serde(default = "default_bucket_cap_mb")]
    pub bucket_cap_mb: f64,
    /// GPU training steps recorded into one submit (default 32; 1: a submit per step). Fewer
    /// make a stop request wait less and keep one submit short where a driver has a watchdog.
    #[serde(default = "default_steps_per_submit")]
    pub steps_per_submit: usize,
    /// Stop when the validation loss has not improved for `patience` epochs (needs
    /// `data.validation_fraction` > 0).
    pub early_stopping: Option<EarlyStopping>,
}

/// Keras' `EarlyStopping(monitor="val_loss", patience, min_delta)`: an epoch improves when its
/// validation loss is below the best so far by more than `min_delta`; the run stops after
/// `patience` epochs in a row without one. The weights are the last epoch's (Keras'
/// `restore_best_weights=False`); `train --save-best` keeps the best epoch's.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
}

impl TrainConfig {
    /// The all-reduce bucket in bytes.
    pub fn bucket_bytes(&self) -> usize {
        (self.bucket_cap_mb * (1u64 << 20) as f64) as usize
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !(self.bucket_cap_mb.is_finite() && self.bucket_cap_mb > 0.0) {
            return Err(format!("train.bucket_cap_mb must be a positive number of MiB, got {}", self.bucket_cap_mb));
        }
        if self.steps_per_submit == 0 {
            return Err("train.steps_per_submit must be at least 1".into());
        }
        if let Some(stop) = &self.early_stopping {
            if stop.patience == 0 {
                return Err("train.early_stopping.patience must be at least 1 (epochs without improvement)".into());
            }
            if !(stop.min_delta.is_finite() && stop.min_delta >= 0.0) {
                return Err(format!(
                    "train.early_stopping.min_delta must be a finite number ≥ 0, got {}",
                    stop.min_delta
                ));
            }
        }
        Ok(())
    }
}

/// GPU training steps per submit unless the config says: enough that the host's cost of a submit
/// is spread thin, few enough that a stop request waits for little.
pub const DEFAULT_STEPS_PER_SUBMIT: usize = 32;

fn default_steps_per_submit() -> usize {
    DEFAULT_STEPS_PER_SUBMIT
}

fn default_bucket_cap_mb() -> f64 {
    25.0
}

fn one() -> f32 {
    1.0
}
fn default_batching() -> BatchScheme {
    BatchScheme::Shuffle
}

impl DataConfig {
    /// The held-out share of `path` (see `test_fraction`).
    pub fn test_fraction(&self) -> f64 {
        self.test_fraction.unwrap_or(if self.test_path.is_some() { 0.0 } else { 0.2 })
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.check_source()?;
        if !(self.scale.is_finite() && self.scale != 0.0) {
            return Err(format!("data.scale must be a finite non-zero factor, got {}", self.scale));
        }
        let f = self.test_fraction();
        if !(0.0..1.0).contains(&f) {
            return Err(format!("data.test_fraction must be in [0, 1), got {f}"));
        }
        if self.test_path.is_some() && f > 0.0 {
            return Err(format!(
                "data.test_path and data.test_fraction = {f} both give a test set; use one (test_fraction = 0 with a test file)"
            ));
        }
        if self.test_labels.is_some() && self.test_path.is_none() {
            return Err("data.test_labels needs data.test_path (the test inputs)".into());
        }
        if self.num_classes == Some(0) {
            return Err("data.num_classes must be at least 1".into());
        }
        let v = self.validation_fraction;
        if !(0.0..1.0).contains(&v) {
            return Err(format!("data.validation_fraction must be in [0, 1), got {v}"));
        }
        self.target_columns()?;
        if self.test_targets.is_some() && (self.targets_path.is_none() || self.test_path.is_none()) {
            return Err("data.test_targets (.npy) needs data.targets_path and data.test_path (the test inputs)".into());
        }
        if self.is_regression() {
            // Options the regression readers do not take: refused rather than ignored.
            if self.non_finite == NonFinite::DropRow {
                return Err(
                    "data.non_finite = \"drop-row\" is for class labels; with data.targets every value must be finite"
                        .into(),
                );
            }
            if self.header == Some(false) && self.targets.is_some() {
                return Err("data.header = false with data.targets: the regression reader detects the header (a line with a non-number); give column numbers to name headerless columns".into());
            }
            if self.test_labels.is_some() {
                return Err("data.test_labels gives class labels but data.targets makes this a regression; use data.test_targets".into());
            }
        }
        match (&self.targets, &self.targets_path, &self.labels) {
            (Some(_), Some(_), _) => {
                Err("data.targets (CSV columns) and data.targets_path (.npy) both give targets; use one".into())
            }
            (_, Some(_), Some(_)) => Err("data.targets_path and data.labels both give what to learn; use one".into()),
            (Some(_), None, Some(_)) => {
                Err("data.targets names CSV columns but data.labels gives a .npy of labels; use one".into())
            }
            _ => Ok(()),
        }
    }

    /// `path` or `generate`, one of them; the generator's keys only with `generate`, and no
    /// file-reading key with it.
    fn check_source(&self) -> std::result::Result<(), String> {
        let kinds = ToyKind::names();
        match (&self.path, self.generate) {
            (Some(_), Some(_)) => {
                return Err("data.path and data.generate both give the data; use one (a file, or a built-in set)".into())
            }
            (None, None) => {
                return Err(format!(
                    "data: give data.path (a CSV or .npy file) or data.generate (a built-in set: {kinds})"
                ))
            }
            (Some(_), None) => {
                let generator_keys = [
                    ("points", self.points.is_some()),
                    ("noise", self.noise.is_some()),
                    ("classes", self.classes.is_some()),
                    ("seed", self.seed.is_some()),
                ];
                if let Some((key, _)) = generator_keys.iter().find(|(_, set)| *set) {
                    return Err(format!("data.{key} is for data.generate (a built-in set), not a data file"));
                }
                return Ok(());
            }
            (None, Some(_)) => {}
        }
        let file_keys = [
            ("labels", self.labels.is_some()),
            ("label_column", self.label_column.is_some()),
            ("num_classes", self.num_classes.is_some()),
            ("header", self.header.is_some()),
            ("non_finite", self.non_finite != NonFinite::Error),
            ("test_path", self.test_path.is_some()),
            ("test_labels", self.test_labels.is_some()),
            ("targets", self.targets.is_some()),
            ("targets_path", self.targets_path.is_some()),
            ("test_targets", self.test_targets.is_some()),
        ];
        if let Some((key, _)) = file_keys.iter().find(|(_, set)| *set) {
            let instead =
                if *key == "num_classes" { " (data.classes sets the classes of spirals and blobs)" } else { "" };
            return Err(format!("data.{key} is for a data file and does not apply to data.generate{instead}"));
        }
        self.toy_spec().map_or(Ok(()), |spec| spec.check())
    }

    /// The generator's parameters, when the data is generated.
    pub fn toy_spec(&self) -> Option<ToySpec> {
        let kind = self.generate?;
        let defaults = ToySpec::new(kind);
        Some(ToySpec {
            kind,
            points: self.points.unwrap_or(defaults.points),
            noise: self.noise.unwrap_or(defaults.noise),
            classes: self.classes.unwrap_or(defaults.classes),
            seed: self.seed.unwrap_or(defaults.seed),
        })
    }

    /// Where the rows come from, for messages: the file, or "the generated circles set".
    pub fn source(&self) -> String {
        match (&self.path, self.generate) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(kind)) => format!("the generated {kind} set"),
            (None, None) => "no data".into(),
        }
    }

    /// Whether the data has real targets (regression) rather than class labels.
    pub fn is_regression(&self) -> bool {
        self.targets.is_some() || self.targets_path.is_some()
    }

    /// `data.targets` read: names (strings) or column numbers from 1 (integers).
    pub fn target_columns(&self) -> std::result::Result<Vec<crate::data::TargetColumn>, String> {
        use crate::data::TargetColumn;
        let Some(list) = &self.targets else { return Ok(Vec::new()) };
        if list.is_empty() {
            return Err("data.targets is empty: name at least one target column".into());
        }
        list.iter()
            .map(|v| match v {
                toml::Value::String(s) if !s.is_empty() => Ok(TargetColumn::Name(s.clone())),
                toml::Value::Integer(i) if *i >= 1 => usize::try_from(*i)
                    .map(TargetColumn::Number)
                    .map_err(|_| format!("data.targets: column {i} is too large")),
                other => {
                    Err(format!("data.targets takes header names (\"price\") or column numbers from 1, got {other}"))
                }
            })
            .collect()
    }
}

impl Config {
    /// Parses `text`; relative data paths are resolved against `base` (the config's folder).
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        Config::parse_with(text, file, &[])
    }

    /// Parses `text`, then applies `overrides` ("section.field=value", value in TOML syntax or a
    /// bare string), as `--set` does. Errors in the file name its line; errors an override
    /// causes name the override.
    pub fn parse_with(text: &str, file: &Path, overrides: &[String]) -> Result<Config> {
        Config::parse_in(text, file, file.parent().unwrap_or(Path::new(".")), overrides)
    }

    /// `parse_with`, with relative data paths resolved against `base` instead of the file's
    /// folder: for a config that is no file of the user's (a checkpoint's, one chosen for the
    /// data), where a path in `--set` is relative to the working directory as the shell's are.
    pub fn parse_in(text: &str, file: &Path, base: &Path, overrides: &[String]) -> Result<Config> {
        let config_err = |message: String| Error::Config { file: file.to_path_buf(), message };
        // The file alone first, so its own mistakes are reported with their line.
        let described = |text: &str, e: &toml::de::Error, lines: bool| {
            messages::plain(&tagged::locate(text, lines).unwrap_or_else(|| messages::describe(text, e, lines)))
        };
        let mut config: Config = toml::from_str(text).map_err(|e| config_err(described(text, &e, true)))?;
        let mut table: toml::Table = toml::from_str(text).map_err(|e| config_err(described(text, &e, true)))?;
        if !overrides.is_empty() {
            for o in overrides {
                apply_override(&mut table, o).map_err(|m| config_err(format!("--set {o}: {m}")))?;
            }
            let joined = overrides.join(" --set ");
            let merged = toml::to_string(&table).unwrap_or_default();
            // Parsed from text, not converted from the table, so the error has a span to name the field by.
            config = toml::from_str(&merged).map_err(|e: toml::de::Error| {
                config_err(format!("after --set {joined}: {}", described(&merged, &e, false)))
            })?;
        }
        config.optimizer_setup().validate().map_err(config_err)?;
        config.data.validate().map_err(config_err)?;
        if config.data.is_regression() && config.model.loss != Loss::Mse {
            return Err(config_err(format!(
                "data.targets / data.targets_path give real targets, which need model.loss = \"mse\" (got {:?})",
                config.model.loss
            )));
        }
        config.train.validate().map_err(config_err)?;
        if config.train.early_stopping.is_some() && config.data.validation_fraction == 0.0 {
            return Err(config_err(
                "train.early_stopping watches the validation loss: set data.validation_fraction > 0 (e.g. 0.1)".into(),
            ));
        }
        config.data.path = config.data.path.map(|p| base.join(p));
        config.data.labels = config.data.labels.map(|p| base.join(p));
        config.data.test_path = config.data.test_path.map(|p| base.join(p));
        config.data.test_labels = config.data.test_labels.map(|p| base.join(p));
        config.data.targets_path = config.data.targets_path.map(|p| base.join(p));
        config.data.test_targets = config.data.test_targets.map(|p| base.join(p));
        config.table = resolved_paths(table, &config.data);
        Ok(config)
    }

    /// The config a checkpoint saved (`Config::table` as TOML) with `--set` overrides; `file`
    /// (the checkpoint) names it in errors.
    pub fn from_saved(text: &str, file: &Path, builtin: bool, overrides: &[String]) -> Result<Config> {
        let mut config = Config::parse_in(text, file, Path::new(""), overrides)?;
        config.builtin = builtin;
        Ok(config)
    }

    pub fn load(file: &Path) -> Result<Config> {
        Config::load_with(file, &[])
    }

    /// `load` with `--set` overrides.
    pub fn load_with(file: &Path, overrides: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Io { file: file.to_path_buf(), message: e.to_string() })?;
        Config::parse_with(&text, file, overrides)
    }

    /// The built-in digits run.
    pub fn default_run() -> Result<Config> {
        Config::default_run_with(&[])
    }

    /// The built-in digits run with `--set` overrides.
    pub fn default_run_with(overrides: &[String]) -> Result<Config> {
        let mut config = Config::parse_with(DEFAULT_CONFIG, Path::new(DEFAULT_CONFIG_PATH), overrides)?;
        config.builtin = true;
        Ok(config)
    }

    /// The optimizer with the training section's groups, schedule and clipping.
    pub fn optimizer_setup(&self) -> OptimizerSetup {
        OptimizerSetup {
            optimizer: self.optimizer.clone(),
            groups: self.train.param_groups.clone(),
            schedule: self.train.schedule.clone(),
            clip_grad_norm: self.train.clip_grad_norm,
        }
    }

    pub fn csv_options(&self, file: &Path) -> Result<CsvOptions> {
        let last = toml::Value::String("last".into());
        let label_column = match self.data.label_column.as_ref().unwrap_or(&last) {
            toml::Value::String(s) if s == "last" => LabelColumn::Last,
            toml::Value::String(s) if s == "first" => LabelColumn::First,
            toml::Value::Integer(i) if *i >= 0 => LabelColumn::Index(*i as usize),
            toml::Value::String(s) if !s.is_empty() => LabelColumn::Name(s.clone()),
            other => {
                return Err(Error::Config {
                    file: file.to_path_buf(),
                    message: format!(
                        "data.label_column: expected \"last\", \"first\", a header name or a column index ≥ 0, found {other}"
                    ),
                })
            }
        };
        Ok(CsvOptions {
            label_column,
            has_header: self.data.header,
            num_classes: self.data.num_classes,
            drop_non_finite: self.data.non_finite == NonFinite::DropRow,
            class_names: self.class_names.clone(),
        })
    }
}

/// `p` from the working directory, as a TOML string: a path that means the same from anywhere.
pub(crate) fn absolute(p: &Path) -> toml::Value {
    toml::Value::String(std::path::absolute(p).unwrap_or(p.to_path_buf()).display().to_string())
}

/// `table` with the data paths as `data` resolved them, made absolute, so that the saved config
/// finds its data from any working directory.
fn resolved_paths(mut table: toml::Table, data: &DataConfig) -> toml::Table {
    if let Some(t) = table.get_mut("data").and_then(|d| d.as_table_mut()) {
        for (key, path) in [
            ("path", &data.path),
            ("labels", &data.labels),
            ("test_path", &data.test_path),
            ("test_labels", &data.test_labels),
            ("targets_path", &data.targets_path),
            ("test_targets", &data.test_targets),
        ] {
            if let Some(p) = path {
                t.insert(key.into(), absolute(p));
            }
        }
    }
    table
}

/// Whether `raw` starts as a TOML value other than a bare string would: a number, sign, array,
/// inline table or quote.
fn looks_like_toml(raw: &str) -> bool {
    let mut chars = raw.chars();
    match chars.next() {
        Some('[' | '{' | '"' | '\'' | '+' | '-') => true,
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Sets `a.b.c = value` in a TOML table, creating missing tables on the way.
fn apply_override(table: &mut toml::Table, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) = assignment.split_once('=').ok_or("expected KEY=VALUE, e.g. optimizer.lr=0.01")?;
    let (key, raw) = (key.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
        // A bare word (`adam`, `../data/x.csv`) is a string; what starts like a TOML number,
        // array, table or quoted string was meant as one, and its syntax error is reported.
        Err(e) if looks_like_toml(raw) => {
            let message = messages::plain(e.message().trim());
            if message.contains("is too large") {
                return Err(format!("{key}: {message}"));
            }
            return Err(format!(
                "'{raw}' is not a valid TOML value ({message}); write strings in quotes, e.g. {key}='text'"
            ));
        }
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("'{key}' is not a dotted field name"));
    }
    let mut t = table;
    for part in &parts[..parts.len() - 1] {
        let entry = t.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| format!("'{part}' is not a table"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// serde reports an error inside an internally tagged table (`[optimizer]`, each entry of
/// `model.layers`, `train.schedule`) at the table, without the field. This finds the field, the
/// layer's index and the field's line, by deserializing the table one field at a time.
mod tagged {
    use std::collections::BTreeMap;

    use serde::de::DeserializeOwned;
    use serde::Deserialize;
    use toml::Spanned;

    type Fields = BTreeMap<String, Spanned<toml::Value>>;

    #[derive(Deserialize)]
    struct Outline {
        optimizer: Option<Spanned<Fields>>,
        model: Option<ModelOutline>,
        train: Option<TrainOutline>,
    }

    #[derive(Deserialize)]
    struct ModelOutline {
        layers: Option<Vec<Spanned<Fields>>>,
    }

    #[derive(Deserialize)]
    struct TrainOutline {
        schedule: Option<Spanned<Fields>>,
    }

    /// The first error in a tagged table of `text`, as "line L: what.field: message" (no line
    /// when `lines` is false: the text is a re-serialised table after `--set`).
    pub(super) fn locate(text: &str, lines: bool) -> Option<String> {
        let outline: Outline = toml::from_str(text).ok()?;
        let line = |span: std::ops::Range<usize>| {
            if lines {
                format!("line {}: ", text[..span.start.min(text.len())].matches('\n').count() + 1)
            } else {
                String::new()
            }
        };
        if let Some(t) = &outline.optimizer {
            if let Some(m) = first_error::<crate::optim::Optimizer>("[optimizer]", t, &line) {
                return Some(m);
            }
        }
        for (i, layer) in outline.model.iter().flat_map(|m| m.layers.iter().flatten()).enumerate() {
            let kind = layer.get_ref().get("type").and_then(|t| t.get_ref().as_str()).unwrap_or("?");
            if let Some(m) = first_error::<crate::spec::LayerSpec>(&format!("model.layers[{i}] ({kind})"), layer, &line)
            {
                return Some(m);
            }
        }
        if let Some(t) = outline.train.as_ref().and_then(|t| t.schedule.as_ref()) {
            if let Some(m) = first_error::<crate::optim::Schedule>("train.schedule", t, &line) {
                return Some(m);
            }
        }
        None
    }

    fn table(fields: &Fields, keep: impl Fn(&str) -> bool) -> toml::Table {
        fields.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.get_ref().clone())).collect()
    }

    /// None if `T` takes the table; else the field to blame: `type` alone first (an unknown
    /// variant), then each field beside `type` (an error other than a missing required field).
    fn first_error<T: DeserializeOwned>(
        what: &str,
        fields: &Spanned<Fields>,
        line: &dyn Fn(std::ops::Range<usize>) -> String,
    ) -> Option<String> {
        let whole = T::deserialize(table(fields.get_ref(), |_| true)).err()?;
        let blames = |e: &toml::de::Error| !e.message().starts_with("missing field");
        if let Err(e) = T::deserialize(table(fields.get_ref(), |k| k == "type")) {
            if blames(&e) {
                let span = fields.get_ref().get("type").map_or(fields.span(), |v| v.span());
                return Some(format!("{}{what}: type: {}", line(span), e.message().trim()));
            }
        }
        for (key, value) in fields.get_ref().iter().filter(|(k, _)| k.as_str() != "type") {
            if let Err(e) = T::deserialize(table(fields.get_ref(), |k| k == "type" || k == key)) {
                if blames(&e) {
                    let message = e.message().trim().trim_end_matches(&format!("in `{key}`")).trim();
                    return Some(format!("{}{what}: {key}: {message}", line(value.span())));
                }
            }
        }
        Some(format!("{}{what}: {}", line(fields.span()), whole.message().trim()))
    }
}
