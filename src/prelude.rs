//! What building, training and evaluating a model needs, in one import:
//!
//! ```
//! use gradflow::prelude::*;
//! ```
//!
//! The model ([`Model`], [`ModelBuilder`], [`Activation`], [`LayerSpec`]), the data
//! ([`Dataset`], [`BatchScheme`]), the training ([`Trainer`], [`Device`], [`Loss`], the
//! optimizers, [`Flow`], [`History`], [`EpochStats`], [`Evaluation`], and [`RunSpec`] for
//! many runs at once), the [`Network`] trait
//! for what a trained network offers, and the crate's [`Error`] and [`Result`] (whose error
//! type defaults to [`Error`], so `Result<T, E>` still names any other).

pub use crate::data::{BatchScheme, Dataset};
pub use crate::error::{Error, Result};
pub use crate::exec::Network;
pub use crate::optim::{Adam, AdamW, Optimizer, OptimizerSetup, Schedule, Sgd};
pub use crate::spec::ModelBuilder;
pub use crate::spec::{Activation, LayerSpec, Loss, Model};
pub use crate::train::{Device, EpochStats, Evaluation, Flow, History, RunSpec, Trainer};
