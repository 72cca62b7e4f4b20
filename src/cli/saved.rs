//! What the commands on a saved model (`eval`, `predict`, `hessian`) share: its state dict, the
//! network built from it, and the data standardised as it was trained.

use std::path::Path;

use crate::config::Config;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::exec::Network;
use crate::spec::{Model, NormState};
use crate::train::{self, Placement};

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
    let (mut train_set, mut test_set) = train::load_data(&raw, file)?;
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
