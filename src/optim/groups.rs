//! Parameter groups: which tensors take which learning rate and weight decay, as
//! torch.optim's param_groups, and the group of every 64-element block of the flat buffer.

use serde::Deserialize;

use super::{py_float, Optimizer};
use crate::error::{Error, Result};
use crate::spec::model::PARAM_ALIGN;
use crate::spec::Model;

/// A parameter group: the tensors whose names match, with their own lr and weight decay.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Tensor-name patterns: "bias" (every *.bias), "weight" (every *.weight), "norm" (the
    /// parameters of normalisation layers), or a state-dict name with `*` wildcards ("0.*").
    #[serde(rename = "match")]
    pub patterns: Vec<String>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
}

/// At most this many groups (the default group included): they travel in the kernel's uniform.
pub const MAX_GROUPS: usize = 8;

/// `*` matches any run of characters (state-dict names are ASCII).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.find('*') {
        None => pattern == name,
        Some(i) => {
            let (head, rest) = (&pattern[..i], &pattern[i + 1..]);
            name.starts_with(head) && (head.len()..=name.len()).any(|j| glob(rest, &name[j..]))
        }
    }
}

fn matches(pattern: &str, name: &str, is_norm: bool) -> bool {
    match pattern {
        "bias" => name.ends_with(".bias"),
        "weight" => name.ends_with(".weight"),
        "norm" => is_norm,
        p => glob(p, name),
    }
}

/// Per-group learning rate and weight decay, and the group of each 64-element block of the
/// flat parameter buffer (tensors start on 64-element boundaries, so a block has one tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroups {
    /// (lr, weight_decay) per group; group 0 is the optimizer's own.
    pub groups: Vec<(f64, f64)>,
    pub block_group: Vec<u32>,
}

impl ParamGroups {
    /// Groups from `specs` (first match wins); every tensor nobody matches is in group 0.
    pub fn new(model: &Model, opt: &Optimizer, specs: &[GroupSpec]) -> Result<ParamGroups> {
        if specs.len() + 1 > MAX_GROUPS {
            return Err(Error::Usage(format!(
                "train.param_groups: at most {} groups, got {}",
                MAX_GROUPS - 1,
                specs.len()
            )));
        }
        opt.validate().map_err(|m| Error::Usage(format!("optimizer ({}): {m}", opt.name())))?;
        validate_groups(specs).map_err(Error::Usage)?;
        let (lr, wd) = (opt.lr(), opt.weight_decay());
        let mut groups = vec![(lr, wd)];
        groups.extend(specs.iter().map(|s| (s.lr.unwrap_or(lr), s.weight_decay.unwrap_or(wd))));
        let blocks = model.param_len.div_ceil(PARAM_ALIGN);
        let mut block_group = vec![0u32; blocks];
        for t in &model.params {
            let is_norm = model.is_norm_param(&t.name);
            let g =
                specs.iter().position(|s| s.patterns.iter().any(|p| matches(p, &t.name, is_norm))).map_or(0, |i| i + 1);
            let first = t.offset / PARAM_ALIGN;
            let last = (t.offset + t.len).div_ceil(PARAM_ALIGN);
            block_group[first..last].fill(g as u32);
        }
        for (i, s) in specs.iter().enumerate() {
            if !model
                .params
                .iter()
                .any(|t| s.patterns.iter().any(|p| matches(p, &t.name, model.is_norm_param(&t.name))))
            {
                return Err(Error::Usage(format!(
                    "train.param_groups[{i}]: match {:?} names no parameter (parameters: {})",
                    s.patterns,
                    model.params.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(ParamGroups { groups, block_group })
    }

    /// One group for everything.
    pub fn single(model: &Model, opt: &Optimizer) -> ParamGroups {
        ParamGroups::flat(opt, model.param_len)
    }

    /// One group over `len` parameters with no tensor structure (benches, explicit functions).
    pub fn flat(opt: &Optimizer, len: usize) -> ParamGroups {
        ParamGroups { groups: vec![(opt.lr(), opt.weight_decay())], block_group: vec![0; len.div_ceil(PARAM_ALIGN)] }
    }

    /// Group of element `i`.
    pub fn group_of(&self, i: usize) -> usize {
        self.block_group[i / PARAM_ALIGN] as usize
    }
}

/// Each group's lr and weight decay as torch checks the optimizer's own (≥ 0, NaN refused).
pub(crate) fn validate_groups(specs: &[GroupSpec]) -> std::result::Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if s.lr.is_some_and(|v| v.is_nan() || v < 0.0) {
            return Err(format!(
                "train.param_groups[{i}].lr: Invalid learning rate: {}",
                py_float(s.lr.unwrap_or(0.0))
            ));
        }
        if s.weight_decay.is_some_and(|v| v.is_nan() || v < 0.0) {
            let v = s.weight_decay.unwrap_or(0.0);
            return Err(format!("train.param_groups[{i}].weight_decay: Invalid weight_decay value: {}", py_float(v)));
        }
    }
    Ok(())
}
