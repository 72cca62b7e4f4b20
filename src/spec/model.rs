//! A model description: the layer list a config gives, resolved into widths, execution stages and
//! the flat parameter layout. Both executors (GPU and CPU) are built from one `Model`.
//!
//! Stages form a small graph over *values*: value 0 is the network input and stage `s` writes
//! value `s + 1`. Every stage reads the value named by `input`; a residual `Add` also reads `skip`.

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
    /// torch.nn.BatchNorm1d over the current width (affine, tracking running statistics).
    BatchNorm {
        #[serde(default = "default_bn_eps")]
        eps: f64,
        /// Running-statistics momentum, or "none" for the cumulative average (PyTorch's None).
        #[serde(default)]
        momentum: BnMomentum,
        /// SyncBatchNorm: in a data-parallel run the statistics (and their backward sums) are
        /// those of the whole global batch, all-reduced across ranks; per-rank otherwise, as
        /// DDP's plain BatchNorm1d. The same layer on one process.
        #[serde(default)]
        sync: bool,
    },
    /// y = skip(x) + body(x): `layers` is the body; `projection` adds a bias-free Linear on the
    /// skip path (needed when the body changes the width).
    Residual {
        layers: Vec<LayerSpec>,
        #[serde(default)]
        projection: bool,
    },
    /// torch.nn.Dropout: in training each element is zeroed with probability `p` and the rest
    /// scaled by 1/(1 − p); the identity in evaluation. No parameters, the width kept.
    Dropout {
        #[serde(default = "default_dropout_p")]
        p: f32,
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

/// torch.nn.Dropout's default.
fn default_dropout_p() -> f32 {
    0.5
}

fn default_bn_eps() -> f64 {
    1e-5
}

/// BatchNorm1d's `momentum`: `Some(m)` blends running ← (1 − m)·running + m·batch; `None` keeps
/// the cumulative average (factor 1 / num_batches_tracked). Written `momentum = 0.1` or
/// `momentum = "none"` in a config.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "MomentumValue")]
pub struct BnMomentum(pub Option<f64>);

impl Default for BnMomentum {
    fn default() -> Self {
        BnMomentum(Some(0.1))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MomentumValue {
    Number(f64),
    Word(String),
}

impl TryFrom<MomentumValue> for BnMomentum {
    type Error = String;
    fn try_from(v: MomentumValue) -> std::result::Result<Self, String> {
        match v {
            MomentumValue::Number(m) if (0.0..=1.0).contains(&m) => Ok(BnMomentum(Some(m))),
            MomentumValue::Number(m) => Err(format!("batch-norm momentum {m} is outside [0, 1]")),
            MomentumValue::Word(w) if w == "none" => Ok(BnMomentum(None)),
            MomentumValue::Word(w) => Err(format!("batch-norm momentum \"{w}\": give a number or \"none\"")),
        }
    }
}

impl BnMomentum {
    /// The running-statistics blend factor for the update that makes `batches_tracked` batches.
    pub fn factor(self, batches_tracked: u64) -> f64 {
        match self.0 {
            Some(m) => m,
            None => 1.0 / batches_tracked.max(1) as f64,
        }
    }
}

impl LayerSpec {
    pub fn activation(&self) -> Option<Act> {
        let kind = match self {
            LayerSpec::Linear { .. }
            | LayerSpec::BatchNorm { .. }
            | LayerSpec::Residual { .. }
            | LayerSpec::Dropout { .. } => return None,
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

/// How a tensor is initialised, as PyTorch's module defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−bound, bound): nn.Linear's weight and bias, bound = 1/√fan_in.
    Uniform(f32),
    Constant(f32),
}

/// A named tensor inside a flat buffer, with PyTorch's state-dict name and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    pub init: Init,
    /// Belongs to a normalisation layer (the `norm` pattern of parameter groups).
    pub norm: bool,
}

/// Tensors start on 64-element (256-byte) boundaries, the usual storage-buffer offset alignment,
/// so a later kernel can bind one tensor alone.
pub const PARAM_ALIGN: usize = 64;

/// One batch-norm layer's place in the model: its running statistics live in the model's flat
/// running buffer (`Model::running`) and its batch counter in `NormState::batches_tracked`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormLayer {
    /// State-dict prefix, e.g. "1" or "3.body.1".
    pub name: String,
    pub running_mean: usize,
    pub running_var: usize,
    pub eps: f64,
    pub momentum: BnMomentum,
    /// Statistics over every rank's rows in a data-parallel run (SyncBatchNorm).
    pub sync: bool,
}

/// What the executors run.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A Linear with the activation after it fused into the matmul epilogue.
    Dense { inputs: usize, outputs: usize, weight: usize, bias: Option<usize>, act: Act },
    /// BatchNorm1d (γ at `gamma`, β at `beta`) with the activation after it fused: act(γ·x̂ + β).
    BatchNorm { width: usize, gamma: usize, beta: usize, norm: usize, act: Act },
    /// An activation on its own (one that follows neither a Linear nor a batch norm).
    Activation { width: usize, act: Act },
    /// y = input + value `skip`: the end of a residual block.
    Add { width: usize, skip: usize },
    /// Dropout with probability `p` in training (the identity in evaluation); `layer` (the
    /// stage's index) is the third word of its Philox counter, so each layer draws its own mask.
    Dropout { width: usize, p: f32, layer: usize },
}

impl Op {
    /// The op as evaluation runs it: a dropout is then the identity activation (what the Hessian,
    /// landscape and sharpness code, which evaluate, see).
    pub fn for_eval(&self) -> Op {
        match *self {
            Op::Dropout { width, .. } => Op::Activation { width, act: Act::IDENTITY },
            ref op => op.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The layer's state-dict prefix ("3", "2.body.0", "2.projection").
    pub name: String,
    /// The value this stage reads (0 is the network input, s + 1 the output of stage s).
    pub input: usize,
    pub op: Op,
}

impl Stage {
    pub fn outputs(&self) -> usize {
        match self.op {
            Op::Dense { outputs, .. } => outputs,
            Op::BatchNorm { width, .. }
            | Op::Activation { width, .. }
            | Op::Add { width, .. }
            | Op::Dropout { width, .. } => width,
        }
    }

    /// The values this stage reads.
    pub fn reads(&self) -> Vec<usize> {
        match self.op {
            Op::Add { skip, .. } => vec![self.input, skip],
            _ => vec![self.input],
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
    /// Batch-norm running means and variances (state-dict buffers, not trained).
    pub running: Vec<ParamTensor>,
    pub running_len: usize,
    pub norms: Vec<NormLayer>,
}

/// The most elements one tensor may have: the kernels index with u32.
pub const MAX_TENSOR_ELEMENTS: usize = u32::MAX as usize;

/// A flat buffer being laid out: tensors on PARAM_ALIGN boundaries.
#[derive(Default)]
struct Layout {
    tensors: Vec<ParamTensor>,
    len: usize,
}

impl Layout {
    /// Adds a tensor; one of more than `MAX_TENSOR_ELEMENTS` elements (or a total that
    /// overflows) is refused, before anything is allocated.
    fn push(&mut self, name: String, shape: Vec<usize>, init: Init, norm: bool) -> Result<usize> {
        // On wasm32 the bound is usize::MAX, which checked_mul already enforces.
        #[allow(clippy::absurd_extreme_comparisons)]
        let len = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).filter(|&n| n <= MAX_TENSOR_ELEMENTS);
        let Some(len) = len else {
            return Err(Error::Model(format!(
                "tensor '{name}' of shape {shape:?} has more than {MAX_TENSOR_ELEMENTS} elements (the kernels index \
                 with 32 bits; narrow the layer)"
            )));
        };
        let offset = self.len;
        self.len = len
            .div_ceil(PARAM_ALIGN)
            .checked_mul(PARAM_ALIGN)
            .and_then(|padded| offset.checked_add(padded))
            .ok_or_else(|| Error::Model("the model's parameters overflow this machine's address space".into()))?;
        self.tensors.push(ParamTensor { name, shape, offset, len, init, norm });
        Ok(offset)
    }
}

struct Builder {
    stages: Vec<Stage>,
    params: Layout,
    running: Layout,
    norms: Vec<NormLayer>,
}

impl Builder {
    fn push(&mut self, name: String, input: usize, op: Op) -> usize {
        self.stages.push(Stage { name, input, op });
        self.stages.len()
    }

    /// Adds `layers` reading value `value` of width `width`; returns the final (value, width).
    /// `prefix` is the state-dict prefix of the list ("" at the top, "3.body." inside a block).
    fn layers(
        &mut self,
        layers: &[LayerSpec],
        prefix: &str,
        mut value: usize,
        mut width: usize,
    ) -> Result<(usize, usize)> {
        let mut i = 0;
        while i < layers.len() {
            let name = format!("{prefix}{i}");
            // An activation right after a Linear or a batch norm runs in that layer's kernel.
            let fused = |i: &mut usize| match layers.get(*i + 1).and_then(LayerSpec::activation) {
                Some(act) => {
                    *i += 1;
                    act
                }
                None => Act::IDENTITY,
            };
            match &layers[i] {
                LayerSpec::Linear { out, bias } => {
                    if *out == 0 {
                        return Err(Error::Model(format!("layer {name} (linear): out must be at least 1")));
                    }
                    let bound = 1.0 / (width as f32).sqrt();
                    let weight =
                        self.params.push(format!("{name}.weight"), vec![*out, width], Init::Uniform(bound), false)?;
                    let bias = bias
                        .then(|| self.params.push(format!("{name}.bias"), vec![*out], Init::Uniform(bound), false))
                        .transpose()?;
                    let act = fused(&mut i);
                    value = self.push(name, value, Op::Dense { inputs: width, outputs: *out, weight, bias, act });
                    width = *out;
                }
                LayerSpec::BatchNorm { eps, momentum, sync } => {
                    // Both paths must see the same positive eps: the GPU holds it in f32.
                    if !(eps.is_finite() && (*eps as f32) >= f32::MIN_POSITIVE) {
                        return Err(Error::Model(format!(
                            "layer {name} (batch-norm): eps must be a positive, finite f32 (at least {:e}), got {eps}",
                            f32::MIN_POSITIVE
                        )));
                    }
                    let gamma = self.params.push(format!("{name}.weight"), vec![width], Init::Constant(1.0), true)?;
                    let beta = self.params.push(format!("{name}.bias"), vec![width], Init::Constant(0.0), true)?;
                    let running_mean =
                        self.running.push(format!("{name}.running_mean"), vec![width], Init::Constant(0.0), true)?;
                    let running_var =
                        self.running.push(format!("{name}.running_var"), vec![width], Init::Constant(1.0), true)?;
                    let norm = self.norms.len();
                    self.norms.push(NormLayer {
                        name: name.clone(),
                        running_mean,
                        running_var,
                        eps: *eps,
                        momentum: *momentum,
                        sync: *sync,
                    });
                    let act = fused(&mut i);
                    value = self.push(name, value, Op::BatchNorm { width, gamma, beta, norm, act });
                }
                LayerSpec::Residual { layers: body, projection } => {
                    if body.is_empty() {
                        return Err(Error::Model(format!("layer {name} (residual): `layers` is empty")));
                    }
                    let block_input = value;
                    let (body_out, body_width) = self.layers(body, &format!("{name}.body."), value, width)?;
                    let skip = if *projection {
                        let bound = 1.0 / (width as f32).sqrt();
                        let weight = self.params.push(
                            format!("{name}.projection.weight"),
                            vec![body_width, width],
                            Init::Uniform(bound),
                            false,
                        )?;
                        let op =
                            Op::Dense { inputs: width, outputs: body_width, weight, bias: None, act: Act::IDENTITY };
                        self.push(format!("{name}.projection"), block_input, op)
                    } else if body_width != width {
                        return Err(Error::Model(format!(
                            "layer {name} (residual): the block's input has width {width} but its layers end \
                             with width {body_width}; make them equal or set `projection = true`"
                        )));
                    } else {
                        block_input
                    };
                    value = self.push(name, body_out, Op::Add { width: body_width, skip });
                    width = body_width;
                }
                LayerSpec::Dropout { p } => {
                    // torch allows p = 1 (everything zeroed); beyond [0, 1] is no probability.
                    if !(0.0..=1.0).contains(p) {
                        return Err(Error::Model(format!(
                            "layer {name} (dropout): p must be a probability in [0, 1], got {p}"
                        )));
                    }
                    let layer = self.stages.len();
                    value = self.push(name, value, Op::Dropout { width, p: *p, layer });
                }
                other => {
                    let act =
                        other.activation().ok_or_else(|| Error::Model(format!("layer {name}: not an activation")))?;
                    value = self.push(name, value, Op::Activation { width, act });
                }
            }
            i += 1;
        }
        Ok((value, width))
    }
}

impl Model {
    /// Resolves widths, fuses each Linear or batch norm with the activation after it, and lays
    /// out parameters and running statistics.
    pub fn new(inputs: usize, layers: Vec<LayerSpec>) -> Result<Model> {
        if inputs == 0 {
            return Err(Error::Model("the input width is 0".into()));
        }
        if layers.is_empty() {
            return Err(Error::Model("model.layers is empty: give at least one layer".into()));
        }
        let mut b =
            Builder { stages: Vec::new(), params: Layout::default(), running: Layout::default(), norms: Vec::new() };
        b.layers(&layers, "", 0, inputs)?;
        Ok(Model {
            inputs,
            layers,
            stages: b.stages,
            params: b.params.tensors,
            param_len: b.params.len.max(1),
            running: b.running.tensors,
            running_len: b.running.len.max(1),
            norms: b.norms,
        })
    }

    pub fn outputs(&self) -> usize {
        self.stages.last().map_or(self.inputs, Stage::outputs)
    }

    /// Width of value `v` (0 is the input).
    pub fn width_of(&self, v: usize) -> usize {
        if v == 0 {
            self.inputs
        } else {
            self.stages[v - 1].outputs()
        }
    }

    /// Parameters drawn as PyTorch's defaults: Linear weight and bias ~ U(−1/√in, 1/√in),
    /// batch-norm γ = 1 and β = 0.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut flat = vec![0.0f32; self.param_len];
        for t in &self.params {
            for v in &mut flat[t.offset..t.offset + t.len] {
                *v = match t.init {
                    Init::Uniform(bound) => rng.random_range(-bound..=bound),
                    Init::Constant(c) => c,
                };
            }
        }
        flat
    }

    /// Fresh batch-norm state: running mean 0, running variance 1, no batches tracked.
    pub fn init_norm_state(&self) -> NormState {
        let mut running = vec![0.0f32; self.running_len];
        for t in &self.running {
            if let Init::Constant(c) = t.init {
                running[t.offset..t.offset + t.len].fill(c);
            }
        }
        NormState { running, batches_tracked: vec![0; self.norms.len()] }
    }

    /// Floating-point operations of one forward pass per sample (2·in·out per Linear).
    pub fn forward_flops_per_sample(&self) -> u64 {
        self.stages
            .iter()
            .map(|s| match s.op {
                Op::Dense { inputs, outputs, .. } => 2 * (inputs as u64) * (outputs as u64),
                _ => 0,
            })
            .sum()
    }

    /// Whether `name` belongs to a normalisation layer (the parameter-group pattern `norm`).
    pub fn is_norm_param(&self, name: &str) -> bool {
        self.params.iter().any(|t| t.norm && t.name == name)
    }

    /// Whether any stage is a batch norm (training then needs at least two rows per batch).
    pub fn has_batch_norm(&self) -> bool {
        !self.norms.is_empty()
    }

    /// Whether any stage is a dropout (training then draws masks; evaluation is unchanged).
    pub fn has_dropout(&self) -> bool {
        self.stages.iter().any(|s| matches!(s.op, Op::Dropout { .. }))
    }

    /// The flat vector as named tensors, in state-dict order.
    pub fn named<'a>(&'a self, flat: &'a [f32]) -> impl Iterator<Item = (&'a ParamTensor, &'a [f32])> + 'a {
        self.params.iter().map(move |t| (t, &flat[t.offset..t.offset + t.len]))
    }

    /// A one-line summary: "64 → Linear(128)+relu → BatchNorm+relu → …; N parameters".
    pub fn summary(&self) -> String {
        let with_act = |name: String, act: &Act| {
            if act.kind == Activation::Identity {
                name
            } else {
                format!("{name}+{}", act.kind.name())
            }
        };
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|stage| match &stage.op {
                Op::Dense { outputs, act, .. } => with_act(format!("Linear({outputs})"), act),
                Op::BatchNorm { act, norm, .. } => {
                    with_act(if self.norms[*norm].sync { "SyncBatchNorm" } else { "BatchNorm" }.into(), act)
                }
                Op::Activation { act, .. } => act.kind.name().to_string(),
                Op::Add { .. } => format!("Add[{}]", stage.name),
                Op::Dropout { p, .. } => format!("Dropout({p})"),
            })
            .collect();
        let n: usize = self.params.iter().map(|t| t.len).sum();
        format!("{} → {}; {n} parameters", self.inputs, collapse_repeats(&stages).join(" → "))
    }
}

/// Runs of a repeated block of up to 4 stages written once with a count (`Linear(64)+ReLU ×2998`),
/// so a deep model's summary stays one readable line; past 40 items the middle is elided.
fn collapse_repeats(parts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let (mut len, mut reps) = (1, 1);
        for l in 1..=4.min(parts.len() - i) {
            let mut k = 1;
            while i + (k + 1) * l <= parts.len() && parts[i + k * l..i + (k + 1) * l] == parts[i..i + l] {
                k += 1;
            }
            if k > 1 && l * k > len * reps {
                (len, reps) = (l, k);
            }
        }
        out.push(match (len, reps) {
            (_, 1) => parts[i].clone(),
            (1, k) => format!("{} ×{k}", parts[i]),
            (l, k) => format!("[{}] ×{k}", parts[i..i + l].join(" → ")),
        });
        i += len * reps;
    }
    if out.len() > 40 {
        let skipped = out.len() - 30;
        out.splice(20..out.len() - 10, [format!("… {skipped} more …")]);
    }
    out
}

/// Batch-norm state that is not a parameter: running statistics (flat, laid out by
/// `Model::running`) and each layer's `num_batches_tracked`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormState {
    pub running: Vec<f32>,
    pub batches_tracked: Vec<u64>,
}
