//! Optimizers. SGD with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sgd {
    pub lr: f32,
    #[serde(default)]
    pub momentum: f32,
    #[serde(default)]
    pub dampening: f32,
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default)]
    pub nesterov: bool,
}

impl Sgd {
    pub fn new(lr: f32) -> Sgd {
        Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }

    pub fn with_momentum(lr: f32, momentum: f32) -> Sgd {
        Sgd { momentum, ..Sgd::new(lr) }
    }

    /// Whether the update keeps a velocity buffer.
    pub fn has_state(&self) -> bool {
        self.momentum != 0.0
    }
}
