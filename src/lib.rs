//! gradflow: dense networks trained with WGSL compute shaders through wgpu, every kernel held
//! against a plain-Rust CPU reference.
//!
//! Build a model, give it data, train it, read the history: everything below comes from
//! [`prelude`]. [`Device::Cpu`](train::Device::Cpu) runs the CPU reference executor;
//! `Device::Gpu` the same network as WGSL kernels on the best GPU adapter.
//!
//! ```
//! use gradflow::prelude::*;
//!
//! # fn main() -> Result<()> {
//! // 400 points on a grid over [-1, 1]²; the class is whether x and y have opposite signs (XOR).
//! let (mut x, mut labels) = (Vec::new(), Vec::new());
//! for i in 0..400 {
//!     let (a, b) = ((i % 20) as f32 / 9.5 - 1.0, (i / 20) as f32 / 9.5 - 1.0);
//!     x.extend([a, b]);
//!     labels.push(u32::from((a > 0.0) != (b > 0.0)));
//! }
//! let data = Dataset::from_rows(&x, 2, &labels)?;
//! let (train, test) = data.split(0.25, 0)?;
//!
//! let model = Model::builder(2).dense(16, Activation::Tanh).dense(2, Activation::Identity).build()?;
//! let mut trainer = Trainer::new(model)
//!     .loss(Loss::CrossEntropy)
//!     .optimizer(Sgd::with_momentum(0.1, 0.9))
//!     .batch_size(16)
//!     .epochs(15)
//!     .device(Device::Cpu);
//! let history = trainer.fit(&train, Some(&test))?;
//! for e in &history {
//!     println!("epoch {:2}: train loss {:.4}, test accuracy {:?}", e.epoch, e.train_loss, e.test_accuracy);
//! }
//! assert_eq!(history.len(), 15);
//! assert!(trainer.evaluate(&test)?.accuracy > 0.9);
//! assert_eq!(trainer.classify(&[0.5, -0.5, 0.5, 0.5])?, [1, 0]);
//! # Ok(())
//! # }
//! ```
//!
//! The same runs from a TOML config are `gradflow train` (the CLI) or
//! [`Trainer::from_config`](train::Trainer::from_config); `examples/quickstart.rs` is the
//! program above as a whole, with a GPU run when an adapter is found.
//!
//! The modules form layers; each imports only from layers below it (`tests/layering.rs`):
//! - `error`; then `spec` (what a model is), with `optim` (what an optimizer is), `data`,
//!   `checkpoint`, `config`, `plot`, `spectrum` and `dist`;
//! - `reference` (every op in plain Rust) and `device` (adapter, buffers, pipelines, dispatch);
//! - `kernels` (one module per WGSL family: params, entry points, launch builder);
//! - `exec` (the GPU and CPU executors, Hessian products);
//! - `train`, `course`, `check`, `bench`; then `cli`.

// In a browser wgpu's handles are neither Send nor Sync (one thread); natively the same
// Arc<Gpu> is shared across threads, so the Arc stays.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod error;

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
pub mod optim;
pub mod plot;
pub mod spec;
pub mod spectrum;

pub mod device;
pub mod reference;

pub mod kernels;

pub mod exec;

pub mod bench;
pub mod check;
pub mod course;
pub mod train;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

pub mod prelude;
