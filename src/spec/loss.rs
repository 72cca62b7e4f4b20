//! The training objectives.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Softmax cross-entropy against class labels (torch.nn.functional.cross_entropy, mean).
    #[default]
    CrossEntropy,
    /// Mean squared error against one-hot labels (torch.nn.functional.mse_loss, mean).
    Mse,
}

impl Loss {
    /// As a config names it.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross-entropy",
            Loss::Mse => "mse",
        }
    }
}
