//! What the commands on a saved model (`eval`, `predict`, `hessian`) share: its state dict, the
//! network built from it, and the data standardised as it was trained.

use std::path::{Path, PathBuf};

use crate::checkpoint::Description;
use crate::config::Config;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::exec::Network;
use crate::spec::{Model, NormState};
use crate::train::{self, Placement};

/// The config for a command on a saved model, and the file it came from: `--config` (checked
/// against the checkpoint's own description, when it has one) or else the description the
/// checkpoint carries, with `--set` overrides either way. An override or a config that
/// contradicts how the model was trained (its layers, loss, input scale or standardisation) is
/// refused, never applied; `non_strict` (a state dict loaded into another model) lets the layers
/// differ.
pub(crate) fn config_for(
    config: Option<PathBuf>,
    set: &[String],
    checkpoint: &Path,
    non_strict: bool,
) -> Result<(Config, PathBuf)> {
    let described = crate::checkpoint::load_description(checkpoint)?;
    let Some(description) = described else {
        return match config {
            Some(path) => Ok((Config::load_with(&path, set)?, path)),
            None => Err(Error::Usage(format!(
                "{} does not say which model it holds (a PyTorch state dict, or a checkpoint saved before gradflow \
                 wrote descriptions): give the config it was trained with, --config FILE (the built-in digits run is \
                 configs/digits.toml)",
                checkpoint.display()
            ))),
        };
    };
    let trained = saved_config(&description, checkpoint, &[])?;
    let (mut chosen, file, how) = match config {
        Some(path) => (Config::load_with(&path, set)?, path.clone(), format!("--config {}", path.display())),
        None => {
            let how = set.iter().map(|s| format!("--set {s}")).collect::<Vec<_>>().join(" ");
            (saved_config(&description, checkpoint, set)?, checkpoint.to_path_buf(), how)
        }
    };
    if let Some(field) = contradiction(&trained, &chosen, non_strict) {
        let or_non_strict = if field.starts_with("model.layers") {
            " (or, to load the tensors another model shares with it, --non-strict)"
        } else {
            ""
        };
        return Err(Error::Usage(format!(
            "{how} contradicts {}: {field}. Leave it out: the checkpoint says how its model was trained{or_non_strict}",
            checkpoint.display()
        )));
    }
    chosen.class_names = description.class_names.clone();
    Ok((chosen, file))
}

/// The config a checkpoint's description holds, with `set` applied.
fn saved_config(description: &Description, checkpoint: &Path, set: &[String]) -> Result<Config> {
    let mut config = Config::from_saved(&description.config, checkpoint, description.builtin, set)?;
    config.class_names = description.class_names.clone();
    Ok(config)
}

/// The first setting in which `chosen` differs from how the model was `trained`, as
/// "field = trained value in the checkpoint, chosen value here".
fn contradiction(trained: &Config, chosen: &Config, non_strict: bool) -> Option<String> {
    let differ =
        |field: &str, t: String, c: String| (t != c).then(|| format!("{field} is {t} in the checkpoint, {c} here"));
    let layers_differ = !non_strict && trained.model.layers != chosen.model.layers;
    layers_differ
        .then(|| first_layer_difference(trained, chosen))
        .or_else(|| differ("model.loss", trained.model.loss.name().into(), chosen.model.loss.name().into()))
        .or_else(|| differ("data.scale", trained.data.scale.to_string(), chosen.data.scale.to_string()))
        .or_else(|| {
            differ("data.standardize", trained.data.standardize.to_string(), chosen.data.standardize.to_string())
        })
}

/// "model.layers[i] is A in the checkpoint, B here" for the first layer that differs, each as
/// the TOML of its config ("none" past the end of the shorter list).
fn first_layer_difference(trained: &Config, chosen: &Config) -> String {
    let (t, c) = (&trained.model.layers, &chosen.model.layers);
    let i = (0..t.len().max(c.len())).find(|&i| t.get(i) != c.get(i)).unwrap_or(0);
    let toml_of = |config: &Config| {
        let layer = config.table.get("model").and_then(|m| m.get("layers")).and_then(|l| l.get(i));
        layer.map_or("none".to_string(), |l| l.to_string())
    };
    format!("model.layers[{i}] is {} in the checkpoint, {} here", toml_of(trained), toml_of(chosen))
}

/// A state dict for `model`, strict unless `--non-strict` (which names what it ignores).
pub(crate) fn state_dict(path: &Path, model: &Model, non_strict: bool) -> Result<(Vec<f32>, NormState)> {
    if !non_strict {
        return crate::checkpoint::load_state_dict(path, model);
    }
    let (params, norm, ignored) = crate::checkpoint::load_state_dict_lenient(path, model)?;
    train::session::warn_ignored(path, &ignored);
    Ok((params, norm))
}

/// The config's model with a checkpoint's (or PyTorch state dict's) parameters, on `placement`.
pub(crate) fn saved_network(
    config: &Config,
    d: usize,
    checkpoint: &Path,
    placement: &Placement,
    max_rows: usize,
    non_strict: bool,
) -> Result<Box<dyn Network>> {
    let model = Model::new(d, config.model.layers.clone())?;
    let (params, norm) = state_dict(checkpoint, &model, non_strict)?;
    let mut net = train::build_network(config, model, placement, max_rows)?;
    net.set_params(&params)?;
    net.set_norm_state(&norm)?;
    Ok(net)
}

/// The config's (training, test) splits, standardised as the checkpoint's model was trained: with
/// the statistics saved in it, if any, rather than ones recomputed from the data.
pub(crate) fn data_for_checkpoint(config: &Config, file: &Path, checkpoint: &Path) -> Result<(Dataset, Dataset)> {
    let saved = crate::checkpoint::load_input_transform(checkpoint)?;
    let mut raw = config.clone();
    if saved.is_some() {
        raw.data.standardize = false;
    }
    let missing = config.data.path.as_ref().filter(|p| !p.exists());
    if let (false, Some(path)) = (config.builtin, missing) {
        return Err(Error::Io {
            file: path.clone(),
            message: format!(
                "no such file: the data {} was trained on (moved?); give it with --set data.path=FILE",
                checkpoint.display()
            ),
        });
    }
    let (mut train_set, mut test_set) = train::load_data(&raw, file)?;
    let source = std::path::PathBuf::from(config.data.source());
    check_input_width(config, checkpoint, config.data.path.as_ref().unwrap_or(&source), train_set.d)?;
    if let Some((mean, std)) = saved {
        let s = train::Standardize { mean, std };
        if s.mean.len() != train_set.d {
            return Err(Error::Shape {
                what: format!("{} standardisation", checkpoint.display()),
                expected: format!("{} features", train_set.d),
                got: s.mean.len().to_string(),
            });
        }
        s.apply(&mut train_set.x);
        s.apply(&mut test_set.x);
    }
    Ok((train_set, test_set))
}

/// Data with the wrong number of features is the data's fault, not the checkpoint's: the
/// model's first tensor ([out, in] or a norm's [in]) says how many features it takes.
pub(crate) fn check_input_width(config: &Config, checkpoint: &Path, input: &Path, d: usize) -> Result<()> {
    let probe = Model::new(d, config.model.layers.clone())?;
    let Some(first) = probe.params.first() else { return Ok(()) };
    let saved = crate::checkpoint::tensor_shape(checkpoint, &first.name)?;
    match saved.as_deref().and_then(|s| s.last()) {
        Some(&want) if want != d => Err(Error::DataFile {
            file: input.to_path_buf(),
            message: format!(
                "has {d} features per row, but the model in {} takes {want} (tensor '{}' {:?})",
                checkpoint.display(),
                first.name,
                saved.unwrap_or_default()
            ),
        }),
        _ => Ok(()),
    }
}
