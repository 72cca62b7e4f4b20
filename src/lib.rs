//! gradflow: dense networks trained with WGSL compute shaders through wgpu, every kernel held
//! against a plain-Rust CPU reference.

pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod course;
pub mod cpu;
pub mod data;
pub mod dist;
pub mod error;
pub mod gpu;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod prelude;
pub mod spectrum;
pub mod train;
