//! Data-parallel training across processes: the collectives a run needs, behind one trait, so
//! the training loop is the same for one process (`Single`) and for N ranks under `mpirun`
//! (`Mpi`, with the `mpi` cargo feature).
//!
//! Every rank holds the whole model; the global batch is split across ranks from one shared
//! schedule; one in-place all-reduce per step sums the flat gradient; every rank applies the same
//! update, so the parameters stay identical. Rank 0 alone prints and writes files.

pub mod cost;
pub mod threads;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Result;

/// Set on every rank but 0 of a data-parallel run: the library's own lines (`say!`, `warn!`)
/// are then left to rank 0.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether this process leaves printing to another rank.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Makes this process quiet (a rank other than 0) or not.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// `println!` on rank 0 only (every process when not data-parallel), through `print_line`: a
/// closed standard output (`gradflow train | head`) never stops the work it reports on.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::dist::quiet() {
            $crate::dist::print_line(format_args!($($arg)*));
        }
    };
}

/// Set once standard output has gone away (its reader closed it): later lines are dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line to standard output. Where the reader has closed it (a broken pipe) the line
/// and every later one are dropped, as `head` expects; another write error is said once on
/// standard error. Either way the caller goes on: printing never ends a run or loses its save.
pub fn print_line(args: std::fmt::Arguments) {
    use std::io::Write;
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("gradflow: standard output: {e}; no more lines go there, the run goes on");
        }
    }
}

/// `eprintln!` on rank 0 only.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        if !$crate::dist::quiet() {
            eprintln!($($arg)*);
        }
    };
}

pub use threads::Threads;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

/// What data-parallel training needs from the process group.
pub trait Collective {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// Processes in the group.
    fn size(&self) -> usize;
    /// Rank among the processes on this host (picks the adapter on multi-GPU hosts).
    fn local_rank(&self) -> usize;
    /// Element-wise sum over every rank, in place, on every rank.
    fn allreduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;
    /// Element-wise sum in f64 (epoch totals: loss sums, counts).
    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Element-wise minimum (the first bad step seen by any rank).
    fn allreduce_min_u64(&self, values: &mut [u64]) -> Result<()>;
    /// Rank `root`'s values, on every rank.
    fn broadcast_f32(&self, root: usize, values: &mut [f32]) -> Result<()>;
    /// Whether every rank passed the same value (config hashes at start-up).
    fn all_equal(&self, value: u64) -> Result<bool>;
    /// Ends every rank of the run with `code` (after rank 0 has said why): never a hang.
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn allreduce_sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn allreduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn allreduce_min_u64(&self, _: &mut [u64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _: usize, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_equal(&self, _: u64) -> Result<bool> {
        Ok(true)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
