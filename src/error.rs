//! One error type for the whole crate: every failure a user can cause names what was wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    /// `from` says where the name came from when not from `--adapter` (`$GRADFLOW_ADAPTER`).
    #[error("no adapter matches '{wanted}'{from}; available: {available}")]
    AdapterNotFound { wanted: String, from: &'static str, available: String },
    #[error("could not open a device on adapter '{adapter}': {source}")]
    RequestDevice { adapter: String, source: wgpu::RequestDeviceError },
    #[error("GPU validation error in {context}: {message}")]
    GpuValidation { context: String, message: String },
    #[error("GPU out of memory in {context}: {message}")]
    GpuOutOfMemory { context: String, message: String },
    #[error("GPU read-back failed: {0}")]
    Readback(String),
    #[error("{what} needs {bytes} bytes in one buffer but this device allows at most {limit} (max_storage_buffer_binding_size / max_buffer_size); use a smaller batch or narrower layer")]
    TooLargeForDevice { what: String, bytes: u64, limit: u64 },

    #[error(
        "{what} needs {iterations} loop iterations in one shader invocation, but {adapter} ends every \
         loop of an invocation after {limit} in all (Mesa's LP_MAX_TGSI_LOOP_ITERATIONS) and would \
         silently return a wrong result; use a smaller size or another adapter"
    )]
    LoopLimit { what: String, iterations: usize, limit: usize, adapter: String },

    #[error(
        "launch of {kernel} refused: binding {binding} would be read or written up to element {needed}, \
         but its buffer holds {available}"
    )]
    LaunchOutOfBounds { kernel: &'static str, binding: usize, needed: u64, available: u64 },
    #[error("launch of {kernel} refused: {why}")]
    LaunchParams { kernel: &'static str, why: String },

    #[error("{file}: {message}")]
    Io { file: PathBuf, message: String },
    #[error("{file}, line {line}: {message}")]
    Data { file: PathBuf, line: usize, message: String },
    #[error("{file}: {message}")]
    DataFile { file: PathBuf, message: String },

    #[error("config {file}: {message}")]
    Config { file: PathBuf, message: String },
    #[error("model: {0}")]
    Model(String),
    /// A broken assumption while planning the GPU step: a bug in gradflow, not in the input.
    #[error("internal error planning the GPU step: {0} (a gradflow bug: please report it with the model config)")]
    Plan(String),
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape { what: String, expected: String, got: String },
    #[error(
        "training diverged at step {step} (epoch {epoch}): {what}; lower the learning rate, or check the data's scale"
    )]
    Diverged { step: usize, epoch: usize, what: String },
    #[error("checkpoint {file}: {message}")]
    Checkpoint { file: PathBuf, message: String },
    #[error("fixture {file}: {message}")]
    Fixture { file: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    /// A gradflow environment variable set to a value it does not take.
    #[error("${var}={value:?} is not a value it takes; expected {expected}")]
    Env { var: &'static str, value: String, expected: &'static str },
    /// A data-parallel run's ranks disagree or cannot all start, a collective used wrongly, or
    /// MPI refusing to start.
    #[error("data-parallel run: {0}")]
    Dist(String),
}

/// `$var`'s value, None when unset or empty (both mean "the default"); a value that is not
/// UTF-8 is refused rather than read as unset.
pub fn env_value(var: &'static str, expected: &'static str) -> Result<Option<String>> {
    match std::env::var(var) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(Error::Env { var, value: v.to_string_lossy().into_owned(), expected })
        }
    }
}

/// `Result<T>` is `Result<T, gradflow::error::Error>`; the second parameter defaults, so the
/// prelude's glob import still lets `Result<T, E>` name any other error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
