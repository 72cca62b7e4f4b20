//! What building, training and evaluating a model needs, in one import:
//!
//! ```
//! use gradflow::prelude::*;
//! ```

pub use crate::data::{BatchScheme, Dataset};
pub use crate::error::{Error, Result};
pub use crate::nn::{Activation, LayerSpec, Loss, Model, ModelBuilder, Network};
pub use crate::optim::{Adam, AdamW, Optimizer, OptimizerSetup, Schedule, Sgd};
pub use crate::train::Flow;
