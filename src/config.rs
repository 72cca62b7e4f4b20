//! The TOML run description: data, model, optimizer, training. Unknown fields are errors.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::{BatchScheme, CsvOptions, LabelColumn};
use crate::error::{Error, Result};
use crate::nn::{LayerSpec, Loss};
use crate::optim::{GroupSpec, Optimizer, OptimizerSetup, Schedule};

/// The built-in default run (configs/digits.toml), used when `gradflow` gets no arguments.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/digits.toml");
pub const DEFAULT_CONFIG_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optimizer: Optimizer,
    pub train: TrainConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A CSV file (features and a label column) or a `.npy` of inputs (then `labels` is required).
    pub path: PathBuf,
    /// `.npy` of integer labels, for `.npy` inputs.
    pub labels: Option<PathBuf>,
    /// "last", "first" or a 0-based column index.
    #[serde(default = "default_label_column")]
    pub label_column: toml::Value,
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
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    #[serde(default)]
    pub split_seed: u64,
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
}

fn default_label_column() -> toml::Value {
    toml::Value::String("last".into())
}
fn one() -> f32 {
    1.0
}
fn default_test_fraction() -> f64 {
    0.2
}
fn default_batching() -> BatchScheme {
    BatchScheme::Shuffle
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
        let config_err = |message: String| Error::Config { file: file.to_path_buf(), message };
        // The file alone first, so its own mistakes are reported with their line.
        let mut config: Config = toml::from_str(text).map_err(|e| config_err(e.to_string()))?;
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(text).map_err(|e| config_err(e.to_string()))?;
            for o in overrides {
                apply_override(&mut table, o).map_err(|m| config_err(format!("--set {o}: {m}")))?;
            }
            let joined = overrides.join(" --set ");
            config = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| config_err(format!("after --set {joined}: {}", e.message())))?;
        }
        config.optimizer.validate().map_err(|m| config_err(format!("[optimizer] {m}")))?;
        let base = file.parent().unwrap_or(Path::new("."));
        config.data.path = base.join(&config.data.path);
        config.data.labels = config.data.labels.map(|p| base.join(p));
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
        Config::parse(DEFAULT_CONFIG, Path::new(DEFAULT_CONFIG_PATH))
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
        let label_column = match &self.data.label_column {
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
        })
    }
}

/// Sets `a.b.c = value` in a TOML table, creating missing tables on the way.
fn apply_override(table: &mut toml::Table, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) = assignment.split_once('=').ok_or("expected KEY=VALUE, e.g. optimizer.lr=0.01")?;
    let (key, raw) = (key.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
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
