//! Activation functions: the names a config uses, and the codes the kernels switch on.

use serde::Deserialize;

/// Declares `Activation` from one table: each line is a variant, the code `common.wgsl`
/// switches on (its `ACT_*` constant, checked by tests/shader_layout.rs) and the name a config
/// uses. A new activation is a line here, its WGSL in common.wgsl and its reference in
/// `reference::activation` (whose exhaustive matches, and the error model's, then fail to
/// compile until it has one).
macro_rules! activations {
    ($($(#[$meta:meta])* $variant:ident = $code:literal, $name:literal;)+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
        pub enum Activation {
            $($(#[$meta])* #[serde(rename = $name)] $variant,)+
        }

        impl Activation {
            /// Every activation, in code order.
            pub const ALL: &'static [Activation] = &[$(Activation::$variant),+];

            /// The code `common.wgsl` switches on (`ACT_*`).
            pub fn code(self) -> u32 {
                match self { $(Activation::$variant => $code),+ }
            }

            /// As a config names it.
            pub fn name(self) -> &'static str {
                match self { $(Activation::$variant => $name),+ }
            }
        }
    };
}

activations! {
    Identity = 0, "identity";
    Relu = 1, "relu";
    Sigmoid = 2, "sigmoid";
    Tanh = 3, "tanh";
    /// The exact (erf) form, PyTorch's default.
    Gelu = 4, "gelu";
    LeakyRelu = 5, "leaky-relu";
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
