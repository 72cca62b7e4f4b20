//! `gradflow::dist::Mpi` across real processes: `gradflow-mpi-selftest` under `mpirun`, checking
//! exit statuses and output. Only with the `mpi` feature (`cargo test --release --features mpi
//! --test mpi`), which also builds the self-test binary; needs `mpirun` (openmpi-bin or MPICH's;
//! `GRADFLOW_MPIRUN` names another launcher).
//!
//! Every launch runs under coreutils' `timeout`, so a hang fails its test instead of holding CI;
//! output goes to files, not pipes, so a rank left behind by a killed `mpirun` cannot block the
//! test on reading. The launches run one at a time: each spins up to three ranks on what may be a
//! two-core machine.
#![cfg(feature = "mpi")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SELFTEST: &str = env!("CARGO_BIN_EXE_gradflow-mpi-selftest");
/// Seconds before a launch counts as hung; `timeout` then sends SIGTERM, SIGKILL 10 s later.
const LIMIT_S: u64 = 120;
/// `timeout`'s status when the limit ran out.
const TIMED_OUT: i32 = 124;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "status {:?} after {:.1?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    fn assert_no_panic(&self) {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(!self.stdout.contains(bad) && !self.stderr.contains(bad), "{bad:?} in\n{}", self.text());
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn launcher() -> String {
    std::env::var("GRADFLOW_MPIRUN").unwrap_or_else(|_| "mpirun".into())
}

/// Whether the launcher is Open MPI's, which wants flags MPICH's would refuse.
fn open_mpi(mpirun: &str) -> bool {
    let out = Command::new(mpirun).arg("--version").output().unwrap_or_else(|e| {
        panic!("cannot run '{mpirun} --version' ({e}): install openmpi-bin (or set GRADFLOW_MPIRUN)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.contains("Open MPI") || text.contains("OpenRTE")
}

/// Runs `program args` under `timeout`, output to files, and returns what happened.
fn launch(name: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let dir = std::env::temp_dir().join(format!("gradflow-mpi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path): (PathBuf, PathBuf) = (dir.join("stdout"), dir.join("stderr"));
    let start = Instant::now();
    let status = Command::new("timeout")
        .args(["--kill-after=10", &LIMIT_S.to_string(), program])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("cannot run coreutils' timeout ({e})"));
    let elapsed = start.elapsed();
    let run = Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed,
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(run.code, Some(TIMED_OUT), "{program} {args:?} hung: killed after {LIMIT_S} s\n{}", run.text());
    run
}

/// `mpirun -np <ranks> gradflow-mpi-selftest <args>`, with what CI needs: Open MPI refuses root
/// unless told twice, and counts physical cores as slots (`--oversubscribe` lifts that).
fn mpirun(name: &str, ranks: usize, args: &[&str]) -> Run {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mpirun = launcher();
    let np = ranks.to_string();
    let mut full: Vec<&str> = vec!["-np", &np];
    let mut envs: Vec<(&str, &str)> = Vec::new();
    if open_mpi(&mpirun) {
        full.push("--oversubscribe");
        if is_root() {
            envs.extend([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")]);
        }
    }
    full.push(SELFTEST);
    full.extend_from_slice(args);
    launch(name, &mpirun, &full, &envs)
}

fn assert_all_passed(run: &Run, ranks: usize) {
    run.assert_no_panic();
    assert_eq!(run.code, Some(0), "{}", run.text());
    let summary = format!("checks passed on {ranks} rank(s)");
    assert_eq!(run.stdout.matches(&summary).count(), 1, "expected {summary:?} once (from rank 0)\n{}", run.text());
    assert!(!run.stderr.contains("FAILED"), "{}", run.text());
    // All ranks on this one host: the shared-memory split numbers them like the world ranks.
    for rank in 0..ranks {
        let line = format!("rank {rank} of {ranks}: local rank {rank}\n");
        assert!(run.stdout.contains(&line), "expected {line:?}\n{}", run.text());
    }
}

#[test]
fn every_collective_is_exact_on_two_ranks() {
    let run = mpirun("two", 2, &[]);
    assert_all_passed(&run, 2);
}

/// An odd group size: MPI libraries switch reduction algorithms away from powers of two.
#[test]
fn every_collective_is_exact_on_three_ranks() {
    let run = mpirun("three", 3, &[]);
    assert_all_passed(&run, 3);
}

/// Started without `mpirun`: an MPI singleton, a group of one.
#[test]
fn a_process_on_its_own_is_a_group_of_one() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let run = launch("singleton", SELFTEST, &[], &[]);
    assert_all_passed(&run, 1);
}

/// The self-test is not vacuous: one wrong value on one rank fails the run, named on every rank.
#[test]
fn a_wrong_value_fails_the_run() {
    let run = mpirun("mismatch", 2, &["--inject-mismatch"]);
    run.assert_no_panic();
    assert_eq!(run.code, Some(1), "{}", run.text());
    for rank in 0..2 {
        let line = format!("rank {rank}: FAILED allreduce_sum_f32 of 7: 1 of 7 elements wrong");
        assert!(run.stderr.contains(&line), "expected {line:?}\n{}", run.text());
    }
    assert!(run.stderr.contains("checks FAILED on 2 rank(s)"), "{}", run.text());
    assert!(!run.stdout.contains("checks passed"), "{}", run.text());
}

/// Rank 1 aborts while rank 0 waits in a collective it never joins: mpirun must end promptly,
/// non-zero, with rank 0's message out first.
#[test]
fn abort_on_one_rank_ends_the_run() {
    let run = mpirun("abort", 2, &["--abort"]);
    run.assert_no_panic();
    let message = "rank 0: stopping the run: rank 1 aborts with code 3";
    assert_eq!(run.stdout.matches(message).count(), 1, "expected {message:?} once\n{}", run.text());
    if open_mpi(&launcher()) {
        // Open MPI's mpirun exits with the code given to MPI_Abort.
        assert_eq!(run.code, Some(3), "{}", run.text());
    } else {
        assert!(matches!(run.code, Some(c) if c != 0), "{}", run.text());
    }
    assert!(run.elapsed < Duration::from_secs(60), "the abort took {:.1?}\n{}", run.elapsed, run.text());
    assert!(!run.stderr.contains("completed without rank 1"), "{}", run.text());
}

#[test]
fn the_abort_mode_needs_two_ranks() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let run = launch("abort-alone", SELFTEST, &["--abort"], &[]);
    run.assert_no_panic();
    assert_eq!(run.code, Some(2), "{}", run.text());
    assert!(run.stderr.contains("--abort needs at least 2 ranks"), "{}", run.text());
}
