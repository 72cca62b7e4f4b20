//! Checks every `Collective` of `gradflow::dist::Mpi` across real MPI ranks, with exact expected
//! values; built with the `mpi` feature only.
//!
//! ```sh
//! mpirun -np 4 target/release/gradflow-mpi-selftest           # every collective; exit 0 or 1
//! mpirun -np 2 target/release/gradflow-mpi-selftest --abort   # rank 1 aborts: mpirun ends, non-zero
//! ```
//!
//! `--inject-mismatch` makes the last rank send a wrong value into one sum, to show that a
//! mismatch is reported (on every rank) and fails the run.
//!
//! Run on its own (no `mpirun`) it is an MPI singleton and checks the size-1 case. A bin rather
//! than an example so that `cargo test --features mpi --test mpi` builds it and finds it through
//! `CARGO_BIN_EXE_gradflow-mpi-selftest`, never running a stale copy.

use std::io::Write;
use std::process::ExitCode;

use gradflow::dist::{Collective, Mpi};

const USAGE: &str = "usage: mpirun -np N gradflow-mpi-selftest [--abort | --inject-mismatch]";
/// The `--abort` mode's exit code, which `mpirun` passes on.
const ABORT_CODE: i32 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.as_slice() {
        [] => Mode::Check { inject_mismatch: false },
        [a] if a == "--abort" => Mode::Abort,
        [a] if a == "--inject-mismatch" => Mode::Check { inject_mismatch: true },
        [a] if a == "--help" || a == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("gradflow-mpi-selftest: unexpected arguments {args:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mpi = match Mpi::init() {
        Ok(mpi) => mpi,
        Err(e) => {
            eprintln!("gradflow-mpi-selftest: {e}");
            return ExitCode::from(2);
        }
    };
    // `mpi` drops at the end of this function: MPI_Finalize before the process exits.
    match mode {
        Mode::Abort => abort_run(&mpi),
        Mode::Check { inject_mismatch } => check_all(&mpi, inject_mismatch),
    }
}

enum Mode {
    Check { inject_mismatch: bool },
    Abort,
}

/// Rank 0 says why the run stops, then rank 1 aborts while rank 0 (and any others) wait in a
/// collective rank 1 never joins: only MPI_Abort can end that, and it must end it promptly.
fn abort_run(mpi: &Mpi) -> ExitCode {
    if mpi.size() < 2 {
        if mpi.rank() == 0 {
            eprintln!("gradflow-mpi-selftest: --abort needs at least 2 ranks (mpirun -np 2); got {}", mpi.size());
        }
        return ExitCode::from(2);
    }
    if mpi.rank() == 0 {
        println!("rank 0: stopping the run: rank 1 aborts with code {ABORT_CODE} (selftest --abort)");
        let _ = std::io::stdout().flush();
    }
    // Rank 1 leaves this only after rank 0 has printed.
    if let Err(e) = mpi.allreduce_sum_f64(&mut [1.0]) {
        eprintln!("rank {}: {e}", mpi.rank());
        return ExitCode::FAILURE;
    }
    if mpi.rank() == 1 {
        mpi.abort(ABORT_CODE);
    }
    // Never completes: rank 1 does not join.
    let _ = mpi.allreduce_sum_f64(&mut [1.0]);
    eprintln!("rank {}: a collective completed without rank 1: MPI_Abort did not end the run", mpi.rank());
    ExitCode::FAILURE
}

struct Checks {
    rank: usize,
    run: u64,
    failed: u64,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.run += 1;
        if !ok {
            self.failed += 1;
            // One write per line: unbuffered stderr would otherwise interleave with other ranks'.
            let line = format!("rank {}: FAILED {what}: {}\n", self.rank, detail());
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// Compares element by element, bit for bit; reports the first few mismatches.
    fn check_bits<T: Copy + PartialEq + std::fmt::Debug>(&mut self, what: &str, got: &[T], want: &[T]) {
        let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
        self.check(what, got.len() == want.len() && bad.is_empty(), || {
            let first: Vec<String> =
                bad.iter().take(4).map(|&i| format!("[{i}] = {:?}, expected {:?}", got[i], want[i])).collect();
            format!("{} of {} elements wrong: {}", bad.len(), got.len(), first.join("; "))
        });
    }

    fn check_ok<T>(&mut self, what: &str, result: gradflow::error::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.check(what, false, || format!("returned an error: {e}"));
                None
            }
        }
    }
}

/// f32 values whose sum over any number of ranks (up to thousands) is exact in any order: quarters
/// well below 2^24, so the reduction tree the MPI library picks cannot change a bit.
fn f32_term(rank: usize, i: usize) -> f32 {
    let sign = if i.is_multiple_of(2) { 1.0 } else { -1.0 };
    sign * ((rank + 1) as f32 * (i % 97) as f32 + 0.25 * rank as f32)
}

/// f64 values that f32 cannot hold (2^30 + halves) and whose sums stay exact.
fn f64_term(rank: usize, i: usize) -> f64 {
    (rank + 1) as f64 * 1_073_741_824.0 + i as f64 * 0.5 - rank as f64
}

/// u64 values past 2^53 too, so a reduction through floating point would show.
fn u64_terms(rank: usize) -> [u64; 5] {
    let r = rank as u64;
    [1000 + r, u64::MAX - r, (r * 7919) % 13, (1 << 63) | (r ^ 5), 1000u64.saturating_sub(r)]
}

fn broadcast_pattern(root: usize, len: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| root as f32 * 1000.0 + i as f32 * 0.5).collect();
    // Bits that an arithmetic path would change: -0.0, a subnormal, a NaN with a payload.
    for (slot, x) in v.iter_mut().zip([-0.0, f32::MIN_POSITIVE / 4.0, f32::from_bits(0x7fc0_1234)]) {
        *slot = x;
    }
    v
}

fn check_all(mpi: &Mpi, inject_mismatch: bool) -> ExitCode {
    let (rank, size) = (mpi.rank(), mpi.size());
    println!("rank {rank} of {size}: local rank {}", mpi.local_rank());
    let mut c = Checks { rank, run: 0, failed: 0 };

    c.check("rank < size", rank < size, || format!("rank {rank}, size {size}"));
    // Split by host in world-rank order: never above the world rank.
    c.check("local_rank <= rank", mpi.local_rank() <= rank, || format!("local rank {}", mpi.local_rank()));
    c.check("a second Mpi::init is refused", Mpi::init().is_err(), || "it succeeded".into());

    // The group agrees on its size and ranks.
    let mut counts = [1.0, rank as f64, if mpi.local_rank() == 0 { 1.0 } else { 0.0 }];
    if c.check_ok("allreduce_sum_f64 (ranks)", mpi.allreduce_sum_f64(&mut counts)).is_some() {
        c.check("sum of 1 over ranks == size", counts[0] == size as f64, || format!("{}", counts[0]));
        let want = (size * (size - 1) / 2) as f64;
        c.check("sum of ranks == size(size-1)/2", counts[1] == want, || format!("{}, expected {want}", counts[1]));
        c.check("some rank has local rank 0 (one per host)", counts[2] >= 1.0, || format!("{}", counts[2]));
    }

    // Sums: a short buffer, one of odd length past a megabyte (several MPI segments), and an empty one.
    for len in [7, (1 << 20) + 3, 0] {
        let mut v: Vec<f32> = (0..len).map(|i| f32_term(rank, i)).collect();
        if inject_mismatch && rank == size - 1 && len > 0 {
            v[len - 1] += 1.0;
        }
        let want: Vec<f32> = (0..len).map(|i| (0..size).map(|r| f32_term(r, i)).sum()).collect();
        if c.check_ok("allreduce_sum_f32", mpi.allreduce_sum_f32(&mut v)).is_some() {
            c.check_bits(&format!("allreduce_sum_f32 of {len}"), &v, &want);
        }
        let mut v: Vec<f64> = (0..len).map(|i| f64_term(rank, i)).collect();
        let want: Vec<f64> = (0..len).map(|i| (0..size).map(|r| f64_term(r, i)).sum()).collect();
        if c.check_ok("allreduce_sum_f64", mpi.allreduce_sum_f64(&mut v)).is_some() {
            c.check_bits(&format!("allreduce_sum_f64 of {len}"), &v, &want);
        }
    }

    let mut v = u64_terms(rank);
    let want: Vec<u64> = (0..5).map(|i| (0..size).map(|r| u64_terms(r)[i]).min().unwrap_or(0)).collect();
    if c.check_ok("allreduce_min_u64", mpi.allreduce_min_u64(&mut v)).is_some() {
        c.check_bits("allreduce_min_u64", &v, &want);
    }

    // Broadcast from the first and the last rank, compared bit for bit.
    let mut roots = vec![0, size - 1];
    roots.dedup();
    for root in roots {
        for len in [5, (1 << 20) + 3] {
            let want = broadcast_pattern(root, len);
            let mut v = if rank == root { want.clone() } else { vec![f32::from_bits(0xdead_beef); len] };
            if c.check_ok("broadcast_f32", mpi.broadcast_f32(root, &mut v)).is_some() {
                let (got, want): (Vec<u32>, Vec<u32>) =
                    v.iter().zip(&want).map(|(g, w)| (g.to_bits(), w.to_bits())).unzip();
                c.check_bits(&format!("broadcast_f32 of {len} from rank {root} (bits)"), &got, &want);
            }
        }
    }
    let refused = mpi.broadcast_f32(size, &mut [0.0]);
    c.check("broadcast from a rank past the group is an error", refused.is_err(), || "it succeeded".into());

    // all_equal: equal values, one rank differing by one, the extremes.
    let cases: [(&str, u64, bool); 5] = [
        ("the same hash on every rank", 0xdead_beef_cafe_f00d, true),
        ("0 on every rank", 0, true),
        ("u64::MAX on every rank", u64::MAX, true),
        ("the last rank off by one", 42 + u64::from(rank == size - 1), size == 1),
        ("0 on rank 0, u64::MAX elsewhere", if rank == 0 { 0 } else { u64::MAX }, size == 1),
    ];
    for (what, value, want) in cases {
        if let Some(got) = c.check_ok("all_equal", mpi.all_equal(value)) {
            c.check(&format!("all_equal: {what}"), got == want, || format!("{got}, expected {want}"));
        }
    }

    // Every rank ran the same checks; rank 0 reports the total.
    let mut totals = [c.failed as f64, c.run as f64];
    if let Err(e) = mpi.allreduce_sum_f64(&mut totals) {
        eprintln!("rank {rank}: the final tally failed: {e}");
        return ExitCode::FAILURE;
    }
    if totals[0] == 0.0 {
        if rank == 0 {
            println!("gradflow-mpi-selftest: all {} checks passed on {size} rank(s)", totals[1]);
        }
        ExitCode::SUCCESS
    } else {
        if rank == 0 {
            eprintln!(
                "gradflow-mpi-selftest: {} of {} checks FAILED on {size} rank(s) (see above)",
                totals[0], totals[1]
            );
        }
        ExitCode::FAILURE
    }
}
