//! A model description: the layer list a config gives, resolved into widths, execution stages and
//! the flat parameter layout. Both executors (GPU and CPU) are built from one `Model`.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Deserialize;

use super::{Act, Activation};
use crate::error::{Error, Result};

/// One entry of `model.layers` in a config; its position is its `nn.Sequential` index.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LayerSpec {
    Linear {
        out: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Identity,
    Relu,
    Sigmoid,
    Tanh,
    Gelu,
    LeakyRelu {
        #[serde(default = "default_slope")]
        negative_slope: f32,
    },
}

fn yes() -> bool {
    true
}

fn default_slope() -> f32 {
    0.01
}

impl LayerSpec {
    pub fn activation(&self) -> Option<Act> {
        let kind = match self {
            LayerSpec::Linear { .. } => return None,
            LayerSpec::Identity => Activation::Identity,
            LayerSpec::Relu => Activation::Relu,
            LayerSpec::Sigmoid => Activation::Sigmoid,
            LayerSpec::Tanh => Activation::Tanh,
            LayerSpec::Gelu => Activation::Gelu,
            LayerSpec::LeakyRelu { negative_slope } => {
                return Some(Act { kind: Activation::LeakyRelu, slope: *negative_slope })
            }
        };
        Some(Act::new(kind))
    }
}

/// A named tensor inside the flat parameter buffer, with PyTorch's state-dict name and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Tensors start on 64-element (256-byte) boundaries, the usual storage-buffer offset alignment,
/// so a later kernel can bind one tensor alone.
pub const PARAM_ALIGN: usize = 64;

/// What the executors run: a dense layer with its activation fused into the matmul epilogue, or
/// an activation on its own (one that follows something other than a Linear).
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Dense { index: usize, inputs: usize, outputs: usize, weight: usize, bias: Option<usize>, act: Act },
    Activation { index: usize, width: usize, act: Act },
}

impl Stage {
    pub fn outputs(&self) -> usize {
        match self {
            Stage::Dense { outputs, .. } => *outputs,
            Stage::Activation { width, .. } => *width,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub inputs: usize,
    pub layers: Vec<LayerSpec>,
    pub stages: Vec<Stage>,
    pub params: Vec<ParamTensor>,
    /// Elements in the flat parameter buffer, padding included.
    pub param_len: usize,
}

impl Model {
    /// Resolves widths, fuses each Linear with the activation after it, and lays out parameters.
    pub fn new(inputs: usize, layers: Vec<LayerSpec>) -> Result<Model> {
        if inputs == 0 {
            return Err(Error::Model("the input width is 0".into()));
        }
        if layers.is_empty() {
            return Err(Error::Model("model.layers is empty: give at least one layer".into()));
        }
        let mut stages = Vec::new();
        let mut params = Vec::new();
        let mut offset = 0usize;
        let mut width = inputs;
        let mut push = |name: String, shape: Vec<usize>, offset: &mut usize| {
            let len: usize = shape.iter().product();
            let t = ParamTensor { name, shape, offset: *offset, len };
            *offset += len.div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
            params.push(t);
            params.last().map(|t| t.offset).unwrap_or(0)
        };
        let mut i = 0;
        while i < layers.len() {
            match &layers[i] {
                LayerSpec::Linear { out, bias } => {
                    if *out == 0 {
                        return Err(Error::Model(format!("layer {i} (linear): out must be at least 1")));
                    }
                    let w = push(format!("{i}.weight"), vec![*out, width], &mut offset);
                    let b = bias.then(|| push(format!("{i}.bias"), vec![*out], &mut offset));
                    let act = match layers.get(i + 1).and_then(LayerSpec::activation) {
                        Some(act) => {
                            i += 1;
                            act
                        }
                        None => Act::IDENTITY,
                    };
                    stages.push(Stage::Dense { index: i, inputs: width, outputs: *out, weight: w, bias: b, act });
                    width = *out;
                }
                other => {
                    let act =
                        other.activation().ok_or_else(|| Error::Model(format!("layer {i}: not an activation")))?;
                    stages.push(Stage::Activation { index: i, width, act });
                }
            }
            i += 1;
        }
        Ok(Model { inputs, layers, stages, params, param_len: offset.max(1) })
    }

    pub fn outputs(&self) -> usize {
        self.stages.last().map_or(self.inputs, Stage::outputs)
    }

    /// Parameters drawn as torch.nn.Linear's defaults: weight and bias ~ U(−1/√in, 1/√in).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut flat = vec![0.0f32; self.param_len];
        for t in &self.params {
            let fan_in = if t.shape.len() == 2 { t.shape[1] } else { self.fan_in_of_bias(t) };
            let bound = 1.0 / (fan_in as f32).sqrt();
            for v in &mut flat[t.offset..t.offset + t.len] {
                *v = rng.random_range(-bound..=bound);
            }
        }
        flat
    }

    fn fan_in_of_bias(&self, bias: &ParamTensor) -> usize {
        self.params
            .iter()
            .find(|t| t.shape.len() == 2 && t.name.split('.').next() == bias.name.split('.').next())
            .map_or(1, |w| w.shape[1])
    }

    /// Floating-point operations of one forward pass per sample (2·in·out per Linear).
    pub fn forward_flops_per_sample(&self) -> u64 {
        self.stages
            .iter()
            .map(|s| match s {
                Stage::Dense { inputs, outputs, .. } => 2 * (*inputs as u64) * (*outputs as u64),
                Stage::Activation { .. } => 0,
            })
            .sum()
    }

    /// Whether `name` belongs to a normalisation layer (none exist yet; batch norm will).
    pub fn is_norm_param(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// The flat vector as named tensors, in state-dict order.
    pub fn named<'a>(&'a self, flat: &'a [f32]) -> impl Iterator<Item = (&'a ParamTensor, &'a [f32])> + 'a {
        self.params.iter().map(move |t| (t, &flat[t.offset..t.offset + t.len]))
    }
}
