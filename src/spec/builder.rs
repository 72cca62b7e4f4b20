//! Models written in code: a chain of layer calls that makes the same `LayerSpec` list a
//! config's `model.layers` gives, so a model built here and one read from TOML are the same
//! `Model` (same stages, same state-dict names, same parameter layout and initialisation).

use super::{Activation, LayerSpec, Model};
use crate::error::Result;

/// Builds a [`Model`] layer by layer, as `torch.nn.Sequential` lists its modules.
///
/// Each call appends entries to the layer list: [`dense`](Self::dense) is a Linear followed by
/// its activation (none for [`Activation::Identity`]), [`batch_norm`](Self::batch_norm) a
/// BatchNorm1d with PyTorch's defaults. [`build`](Self::build) resolves the widths and checks
/// the list; nothing is checked before it, so a mistake is one error there.
///
/// ```
/// use gradflow::prelude::*;
///
/// # fn main() -> Result<()> {
/// let model = ModelBuilder::new(64)
///     .dense(128, Activation::Relu)
///     .batch_norm()
///     .dense(10, Activation::Identity)
///     .build()?;
/// assert_eq!((model.inputs, model.outputs()), (64, 10));
/// // The state-dict names are nn.Sequential's: 0 = Linear, 1 = ReLU, 2 = BatchNorm1d, 3 = Linear.
/// let names: Vec<&str> = model.params.iter().map(|t| t.name.as_str()).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]);
///
/// // A mistake is an error from `build`, not a panic.
/// assert!(ModelBuilder::new(4).dense(0, Activation::Relu).build().is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBuilder {
    inputs: usize,
    layers: Vec<LayerSpec>,
}

impl ModelBuilder {
    /// A model taking rows of `inputs` features, with no layers yet.
    pub fn new(inputs: usize) -> ModelBuilder {
        ModelBuilder { inputs, layers: Vec::new() }
    }

    /// A Linear layer (with bias) of `outputs` units, then `activation` (nothing for
    /// `Identity`; leaky ReLU with PyTorch's slope 0.01). The activation runs fused in the
    /// Linear's kernel.
    pub fn dense(mut self, outputs: usize, activation: Activation) -> ModelBuilder {
        self.layers.push(LayerSpec::Linear { out: outputs, bias: true });
        self.activation(activation)
    }

    /// An activation on its own (after a batch norm, a residual block, …); `Identity` adds nothing.
    pub fn activation(mut self, activation: Activation) -> ModelBuilder {
        if let Some(layer) = activation_layer(activation) {
            self.layers.push(layer);
        }
        self
    }

    /// BatchNorm1d over the current width with PyTorch's defaults (eps 1e-5, momentum 0.1,
    /// affine, tracking running statistics). Training then needs batches of two rows or more.
    pub fn batch_norm(mut self) -> ModelBuilder {
        self.layers.push(LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false });
        self
    }

    /// torch.nn.Dropout(p): in training each element zeroed with probability `p` and the rest
    /// scaled by 1/(1 − p); the identity in evaluation. `p` outside [0, 1] is refused by `build`.
    pub fn dropout(mut self, p: f32) -> ModelBuilder {
        self.layers.push(LayerSpec::Dropout { p });
        self
    }

    /// A residual block, y = x + body(x): `body` gets an empty builder and adds the block's
    /// layers, which must end at the width they start from (else see
    /// [`residual_projected`](Self::residual_projected)).
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// let model = Model::builder(32)
    ///     .dense(64, Activation::Relu)
    ///     .residual(|block| block.dense(64, Activation::Relu).dense(64, Activation::Identity))
    ///     .dense(10, Activation::Identity)
    ///     .build()?;
    /// assert_eq!(model.outputs(), 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn residual(self, body: impl FnOnce(ModelBuilder) -> ModelBuilder) -> ModelBuilder {
        self.residual_block(body, false)
    }

    /// A residual block whose skip path is a bias-free Linear, y = P·x + body(x), for a body
    /// that changes the width.
    pub fn residual_projected(self, body: impl FnOnce(ModelBuilder) -> ModelBuilder) -> ModelBuilder {
        self.residual_block(body, true)
    }

    fn residual_block(mut self, body: impl FnOnce(ModelBuilder) -> ModelBuilder, projection: bool) -> ModelBuilder {
        let layers = body(ModelBuilder::new(0)).layers;
        self.layers.push(LayerSpec::Residual { layers, projection });
        self
    }

    /// Any layer a config can name, e.g. a Linear without bias or a leaky ReLU with another slope.
    pub fn layer(mut self, layer: LayerSpec) -> ModelBuilder {
        self.layers.push(layer);
        self
    }

    /// The layer list so far, as `model.layers` in a config would give it.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// Resolves widths and lays out the parameters ([`Model::new`]); an empty list, a zero
    /// width or a residual block that changes the width without a projection is an error.
    pub fn build(self) -> Result<Model> {
        Model::new(self.inputs, self.layers)
    }
}

/// The layer for an activation; none for the identity.
fn activation_layer(activation: Activation) -> Option<LayerSpec> {
    Some(match activation {
        Activation::Identity => return None,
        Activation::Relu => LayerSpec::Relu,
        Activation::Sigmoid => LayerSpec::Sigmoid,
        Activation::Tanh => LayerSpec::Tanh,
        Activation::Gelu => LayerSpec::Gelu,
        Activation::LeakyRelu => LayerSpec::LeakyRelu { negative_slope: 0.01 },
    })
}

impl Model {
    /// A [`ModelBuilder`] for rows of `inputs` features.
    pub fn builder(inputs: usize) -> ModelBuilder {
        ModelBuilder::new(inputs)
    }

    /// A multilayer perceptron: a Linear and `activation` for each width in `hidden`, then a
    /// Linear of `outputs` units with no activation (the logits).
    ///
    /// ```
    /// use gradflow::prelude::*;
    ///
    /// # fn main() -> Result<()> {
    /// let model = Model::mlp(2, &[16], 2, Activation::Tanh)?;
    /// assert_eq!(model.summary(), "2 → Linear(16)+tanh → Linear(2); 82 parameters");
    /// // Initial parameters are PyTorch's defaults, drawn from a seed.
    /// assert_eq!(model.init_params(7), model.init_params(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn mlp(inputs: usize, hidden: &[usize], outputs: usize, activation: Activation) -> Result<Model> {
        hidden
            .iter()
            .fold(ModelBuilder::new(inputs), |b, &width| b.dense(width, activation))
            .dense(outputs, Activation::Identity)
            .build()
    }
}
