//! gradflow: dense networks trained with WGSL compute shaders through wgpu, every kernel held
//! against a plain-Rust CPU reference.

pub mod error;
pub mod cpu;
pub mod gpu;
pub mod nn;
pub mod optim;
pub mod train;
pub mod config;
pub mod bench;
pub mod data;
