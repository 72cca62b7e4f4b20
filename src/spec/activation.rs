//! Activation functions: the names a config uses, and the codes the kernels switch on.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Identity,
    Relu,
    Sigmoid,
    Tanh,
    /// The exact (erf) form, PyTorch's default.
    Gelu,
    LeakyRelu,
}

impl Activation {
    /// The code `common.wgsl` switches on (`ACT_*`).
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
            Activation::Gelu => 4,
            Activation::LeakyRelu => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::LeakyRelu => "leaky-relu",
        }
    }

    pub const ALL: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::LeakyRelu,
    ];
}

/// An activation with its parameter (leaky ReLU's negative slope; ignored by the others).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    pub kind: Activation,
    pub slope: f32,
}

impl Act {
    pub const IDENTITY: Act = Act { kind: Activation::Identity, slope: 0.0 };

    pub fn new(kind: Activation) -> Act {
        Act { kind, slope: 0.01 }
    }
}
