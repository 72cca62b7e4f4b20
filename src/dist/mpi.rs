//! `Collective` over MPI (the `mpi` cargo feature), through rsmpi.
//!
//! One `Mpi` per process, made once at start-up by [`Mpi::init`] and kept for the whole run: it
//! owns rsmpi's `Universe`, whose drop calls `MPI_Finalize`. Let it drop before the process ends
//! (return from `main`; do not `std::process::exit` around it): Open MPI's `mpirun` reports a rank
//! that exits without finalizing as a failed job.
//!
//! Threads: MPI is initialized at `MPI_THREAD_FUNNELED` (wgpu, the progress bar and the signal
//! handler run threads of their own, but only the thread that called `init` calls MPI), and
//! `Mpi` is neither `Send` nor `Sync`, so the compiler keeps every call on that thread, with Open
//! MPI and MPICH alike (their handle types differ in whether they are `Send`).
//!
//! Failures inside MPI (a rank that died, a network error, buffers of different lengths on
//! different ranks) are not returned: MPI's default error handler on `MPI_COMM_WORLD`,
//! `MPI_ERRORS_ARE_FATAL`, ends the whole job with MPI's own message, which is what a
//! data-parallel run wants: never one rank left waiting.

use std::io::Write;
use std::marker::PhantomData;

use ::mpi::collective::SystemOperation;
use ::mpi::datatype::Equivalence;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::{Communicator, CommunicatorCollectives, Root};
use ::mpi::Threading;

use super::Collective;
use crate::error::{Error, Result};

/// Elements per MPI call: MPI counts are C `int`s, so a longer buffer goes in pieces (every rank
/// cuts the same pieces, as every rank passes the same length).
const MAX_COUNT: usize = 1 << 30;

/// The MPI process group: `MPI_COMM_WORLD`, with this process's rank on its host.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    /// Keeps MPI initialized for as long as `Mpi` lives; dropped last (fields drop in order),
    /// when it calls `MPI_Finalize`.
    _universe: Universe,
    /// Not `Send`, not `Sync`: MPI was initialized as `FUNNELED`.
    _one_thread: PhantomData<*const ()>,
}

impl Mpi {
    /// Initializes MPI. Under `mpirun`/`srun` the process joins its job; started on its own it is
    /// an MPI singleton, a group of size 1. Fails only when MPI was already initialized in this
    /// process; an MPI that cannot start at all ends the process with MPI's own message.
    pub fn init() -> Result<Mpi> {
        let (universe, _provided) = ::mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Dist("MPI is already initialized in this process (Mpi::init called twice)".into()))?;
        let world = universe.world();
        let rank = usize::try_from(world.rank())
            .map_err(|_| Error::Dist(format!("MPI gave a negative rank {}", world.rank())))?;
        let size = usize::try_from(world.size())
            .map_err(|_| Error::Dist(format!("MPI gave a group size {}", world.size())))?;
        // MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks that share this host's memory, in
        // world-rank order; this process's rank among them picks its adapter. A collective call,
        // made once here; the communicator is freed at the end of the statement.
        let local_rank = usize::try_from(world.split_shared(world.rank()).rank()).unwrap_or(0);
        Ok(Mpi { world, rank, size, local_rank, _universe: universe, _one_thread: PhantomData })
    }

    /// Sums (or takes the minimum of) `values` over every rank, in place.
    ///
    /// rsmpi 0.8 has no in-place all-reduce (no `MPI_IN_PLACE`: it is a pointer-valued macro in
    /// `mpi.h` that its bindings do not carry), so each piece is copied to a scratch buffer and
    /// reduced from there into `values`: one extra copy of at most `MAX_COUNT` elements, small
    /// next to moving the same bytes over the network.
    fn all_reduce_in_place<T: Equivalence + Copy>(&self, values: &mut [T], op: SystemOperation) {
        let mut scratch = Vec::with_capacity(values.len().min(MAX_COUNT));
        for piece in values.chunks_mut(MAX_COUNT) {
            scratch.clear();
            scratch.extend_from_slice(piece);
            self.world.all_reduce_into(&scratch[..], piece, op);
        }
    }
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("local_rank", &self.local_rank)
            .finish()
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn allreduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.all_reduce_in_place(values, SystemOperation::sum());
        Ok(())
    }
    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce_in_place(values, SystemOperation::sum());
        Ok(())
    }
    fn allreduce_min_u64(&self, values: &mut [u64]) -> Result<()> {
        self.all_reduce_in_place(values, SystemOperation::min());
        Ok(())
    }
    fn broadcast_f32(&self, root: usize, values: &mut [f32]) -> Result<()> {
        if root >= self.size {
            return Err(Error::Dist(format!("broadcast from rank {root}, but the group has {} ranks", self.size)));
        }
        // root < size, and size came from an i32.
        let root = self.world.process_at_rank(root as i32);
        for piece in values.chunks_mut(MAX_COUNT) {
            root.broadcast_into(piece);
        }
        Ok(())
    }
    fn all_equal(&self, value: u64) -> Result<bool> {
        // One reduction for both ends: min(v) and min(!v) = !max(v); all equal iff min == max.
        let mut ends = [value, !value];
        self.all_reduce_in_place(&mut ends, SystemOperation::min());
        Ok(ends[0] == !ends[1])
    }
    fn abort(&self, code: i32) -> ! {
        // What rank 0 said must come out before MPI kills the job.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        self.world.abort(code)
    }
}
