//! gradflow: dense networks trained with WGSL compute shaders through wgpu, every kernel held
//! against a plain-Rust CPU reference.
//!
//! The modules form layers; each imports only from layers below it (`tests/layering.rs`):
//! - `error`; then `spec` (what a model is), with `optim` (what an optimizer is), `data`,
//!   `checkpoint`, `config`, `plot`, `spectrum` and `dist`;
//! - `reference` (every op in plain Rust) and `device` (adapter, buffers, pipelines, dispatch);
//! - `kernels` (one module per WGSL family: params, entry points, launch builder);
//! - `exec` (the GPU and CPU executors, Hessian products);
//! - `train`, `course`, `check`, `bench`; then `cli`.

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

pub mod cli;
