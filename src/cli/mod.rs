//! The commands' bodies, callable without spawning the binary; `main.rs` only parses and
//! dispatches.

pub mod hessian;
