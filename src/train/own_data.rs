//! `gradflow train DATA` with no config: the run a config would describe, chosen from the data.
//! The choices are a config's TOML (so `--set` refines any of them, and the checkpoint saves
//! them as it saves any run's), read in two passes: the first finds the features and classes,
//! the second sizes the last layer to the classes.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::data::LabelColumn;
use crate::error::{Error, Result};

/// Hidden widths of the default MLP: enough for the course's 2-D sets and the digits, cheap on
/// any device; `--set model.layers=[…]` replaces it.
const HIDDEN: [usize; 2] = [64, 64];
/// Optimizer steps the default run aims at, spread over 10 to 100 epochs.
const TARGET_STEPS: usize = 2000;
const BATCH: usize = 32;

/// The config for training on `data` (CSV, or `.npy` features with `labels`), with `overrides`
/// applied; the file name errors use; and a line saying what was chosen.
pub fn config_for_data(data: &Path, labels: Option<&Path>, overrides: &[String]) -> Result<(Config, PathBuf, String)> {
    let file = PathBuf::from(format!("{} (chosen for the data)", data.display()));
    let is_npy = data.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy && labels.is_none() {
        return Err(Error::Usage(format!(
            "{} is a .npy array of features: give its labels too, --labels FILE.npy",
            data.display()
        )));
    }
    if !is_npy && labels.is_some() {
        return Err(Error::Usage(format!(
            "--labels is for .npy features; {} holds its own label column",
            data.display()
        )));
    }
    if data.is_dir() {
        return Err(Error::Io { file: data.to_path_buf(), message: "is a folder; give the data file".into() });
    }
    if !data.is_file() {
        return Err(Error::Io { file: data.to_path_buf(), message: "no such file".into() });
    }
    let label_column = if is_npy { LabelColumn::Last } else { crate::data::csv::guess_label_column(data)? };
    // Regression when the overrides name targets: the MSE loss, and a last layer one per target.
    let regression = overrides.iter().any(|o| o.trim_start().starts_with("data.targets"));
    let shape = |width: usize| Head { width, regression };
    // Pass 1: the data as the overrides read it, through a model whose width does not matter yet.
    let probe =
        Config::parse_in(&toml(data, labels, &label_column, shape(1), 1, BATCH), &file, Path::new(""), overrides)?;
    let (train, _) = super::load_data(&probe, &file)?;
    // A batch no larger than the training rows (a small file trains full-batch).
    let batch = if probe.train.batch_size == BATCH { BATCH.min(train.n.max(1)) } else { probe.train.batch_size };
    let steps_per_epoch = train.n.div_ceil(batch).max(1);
    let epochs = TARGET_STEPS.div_ceil(steps_per_epoch).clamp(10, 100);
    let width = train.targets.as_ref().map_or(train.num_classes, |t| t.k);
    let text = toml(data, labels, &label_column, shape(width), epochs, batch);
    let config = Config::parse_in(&text, &file, Path::new(""), overrides)?;
    let column = match (&label_column, is_npy) {
        _ if train.is_regression() => "real targets".to_string(),
        (_, true) => "labels from --labels".to_string(),
        (LabelColumn::Name(n), _) => format!("label column '{n}'"),
        _ => "the last column as the label".to_string(),
    };
    let names = match &train.class_names {
        Some(n) if n.len() <= 12 => format!(": {}", crate::data::listed(n)),
        _ => String::new(),
    };
    let standardised = if config.data.standardize { "standardised inputs" } else { "raw inputs" };
    let test = match &config.data.test_path {
        Some(p) => format!("the test rows from {}", p.display()),
        None => format!("{:.0}% held out for testing", 100.0 * config.data.test_fraction()),
    };
    let classes = match (&train.targets, train.num_classes) {
        (Some(t), _) => format!("{}: {}, mse", t.k, crate::data::listed(&t.all_names())),
        (None, 1) => format!("1 class{names}"),
        (None, n) => format!("{n} classes{names}"),
    };
    let said = format!(
        "no config: for {} chose {column} ({classes}), the model below, {}, batch {}, {} epoch{}, \
         {standardised}, {test}; --set changes any of it (e.g. --set train.epochs=20)",
        data.display(),
        config.optimizer,
        config.train.batch_size,
        config.train.epochs,
        if config.train.epochs == 1 { "" } else { "s" },
    );
    Ok((config, file, said))
}

/// The default run's last layer: its width, and whether it regresses (MSE) or classifies.
#[derive(Clone, Copy)]
struct Head {
    width: usize,
    regression: bool,
}

/// The default run's TOML for a last layer `head`.
fn toml(
    data: &Path,
    labels: Option<&Path>,
    label_column: &LabelColumn,
    head: Head,
    epochs: usize,
    batch: usize,
) -> String {
    let quoted = crate::config::absolute;
    let mut text = format!("[data]\npath = {}\n", quoted(data));
    if let Some(l) = labels {
        text += &format!("labels = {}\n", quoted(l));
    }
    if let LabelColumn::Name(n) = label_column {
        text += &format!("label_column = {}\n", toml::Value::String(n.clone()));
    }
    // No test_fraction: its default (0.2, or 0 with a --set data.test_path) holds out the test set.
    text += "standardize = true\n\n[model]\nlayers = [\n";
    for width in HIDDEN {
        text += &format!("  {{ type = \"linear\", out = {width} }}, {{ type = \"relu\" }},\n");
    }
    text += &format!("  {{ type = \"linear\", out = {} }},\n]\n", head.width);
    text += if head.regression { "loss = \"mse\"\n\n" } else { "\n" };
    text += "[optimizer]\ntype = \"adam\"\nlr = 0.01\n\n";
    text += &format!("[train]\nepochs = {epochs}\nbatch_size = {batch}\n");
    text
}
