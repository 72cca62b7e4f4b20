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

mod common;

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

// ---- `gradflow train` under mpirun ------------------------------------------------------------

const GRADFLOW: &str = env!("CARGO_BIN_EXE_gradflow");

/// `mpirun` over app contexts (`-np 1 gradflow <args> : -np 1 gradflow <args'> …`): one rank
/// each, so ranks can be given different arguments or environments (`-x VAR=value`).
fn mpirun_gradflow(name: &str, contexts: &[Vec<String>]) -> Run {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mpirun = launcher();
    let mut full: Vec<String> = Vec::new();
    let mut envs: Vec<(&str, &str)> = Vec::new();
    if open_mpi(&mpirun) {
        full.push("--oversubscribe".into());
        if is_root() {
            envs.extend([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")]);
        }
    }
    for (i, context) in contexts.iter().enumerate() {
        if i > 0 {
            full.push(":".into());
        }
        full.extend(["-np".to_string(), "1".to_string()]);
        full.extend(context.iter().cloned());
    }
    let args: Vec<&str> = full.iter().map(String::as_str).collect();
    launch(name, &mpirun, &args, &envs)
}

/// The same `gradflow` arguments on `ranks` ranks.
fn ranks_of(ranks: usize, args: &[&str]) -> Vec<Vec<String>> {
    let one: Vec<String> = std::iter::once(GRADFLOW).chain(args.iter().copied()).map(String::from).collect();
    vec![one; ranks]
}

fn single(name: &str, args: &[&str]) -> Run {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    launch(name, GRADFLOW, args, &[])
}

fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-mpi-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The spirals data with a small MLP without batch norm, SGD with momentum, 32-row batches.
fn spirals(d: &std::path::Path, epochs: usize) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = format!(
        "[data]\npath = '{root}/data/spirals.csv'\nlabel_column = 'arm'\nstandardize = true\n\n[model]\n\
         layers = [{{ type = 'linear', out = 32 }}, {{ type = 'tanh' }}, {{ type = 'linear', out = 3 }}]\n\n\
         [optimizer]\ntype = 'sgd'\nlr = 0.05\nmomentum = 0.9\n\n[train]\nepochs = {epochs}\nbatch_size = 32\n\
         drop_last = true\n"
    );
    let p = d.join("spirals.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The spirals run with a synchronised batch norm between the layers (`sync = true`).
fn spirals_sync_bn(d: &std::path::Path, epochs: usize) -> String {
    let path = spirals(d, epochs);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{ type = 'tanh' }", "{ type = 'batch-norm', sync = true }, { type = 'relu' }");
    let p = d.join("spirals_sync_bn.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Parameters, then batch-norm running statistics, of a checkpoint of `config`'s model.
fn state_of(config: &str, checkpoint: &std::path::Path) -> Vec<f32> {
    let config = gradflow::config::Config::load(std::path::Path::new(config)).unwrap();
    let model = gradflow::spec::Model::new(2, config.model.layers.clone()).unwrap();
    let (params, norm) = gradflow::checkpoint::load_state_dict(checkpoint, &model).unwrap();
    [params, norm.running].concat()
}

fn params_of(config: &str, checkpoint: &std::path::Path) -> Vec<f32> {
    let config = gradflow::config::Config::load(std::path::Path::new(config)).unwrap();
    let model = gradflow::spec::Model::new(2, config.model.layers.clone()).unwrap();
    gradflow::checkpoint::load_state_dict(checkpoint, &model).unwrap().0
}

/// Data-parallel against one process, relative to max |p|: the runs differ only in how each
/// batch's gradient is summed (one sum of 32 rows, or two of 16 added), each within γ_32·Σ|terms|
/// ≈ 2e-6 relative; momentum 0.9 at lr 0.05 amplifies a perturbation by at most ~(1 + lr·‖H‖)/(1 − μ)
/// per step, and over these 45 steps that stays within 100× the one-step error: 2e-4 (the bound
/// tests/training.rs derives for GPU against CPU, and tests/data_parallel.rs uses).
const REL_TOL: f64 = 2e-4;

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((*x as f64 - *y as f64).abs() <= REL_TOL * scale, "{what}: parameter {i}: {x} vs {y}");
    }
}

#[test]
fn two_ranks_train_to_where_one_process_does() {
    let d = work_dir("match");
    let cfg = spirals(&d, 3);
    let (one, two) = (d.join("one.safetensors"), d.join("two.safetensors"));
    let run = single("match-one", &["train", "--cpu", "--config", &cfg, "--save", one.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let run = mpirun_gradflow(
        "match-two",
        &ranks_of(2, &["train", "--cpu", "--config", &cfg, "--save", two.to_str().unwrap()]),
    );
    run.assert_no_panic();
    assert_eq!(run.code, Some(0), "{}", run.text());
    // Rank 0 alone prints.
    assert_eq!(
        run.stdout.matches("data-parallel: 2 ranks, 16 rows of each batch per rank").count(),
        1,
        "{}",
        run.text()
    );
    assert_eq!(run.stdout.matches("epoch   3/3").count(), 1, "{}", run.text());
    assert!(run.stdout.contains("ms of it in all-reduces"), "{}", run.text());
    assert_close("2 ranks against 1", &params_of(&cfg, &one), &params_of(&cfg, &two));
}

/// SyncBatchNorm: two ranks normalise by the statistics of the whole 32-row batch, so they end
/// where one process does (running statistics included), on the CPU reference and on the GPU,
/// within the same bound (the ranks' statistics are combined in f64; see tests/data_parallel.rs).
#[test]
fn two_ranks_with_synchronised_batch_norm_train_to_where_one_process_does() {
    for gpu in [false, true] {
        if gpu && !common::gpu_part!() {
            continue;
        }
        let d = work_dir(if gpu { "sync-gpu" } else { "sync-cpu" });
        let cfg = spirals_sync_bn(&d, 3);
        let (one, two) = (d.join("one.safetensors"), d.join("two.safetensors"));
        let exec: &[&str] = if gpu { &[] } else { &["--cpu"] };
        let args = |out: &std::path::Path| -> Vec<String> {
            let tail = ["--config", &cfg, "--save", out.to_str().unwrap()];
            std::iter::once(&"train").chain(exec).chain(tail.iter()).map(|s| s.to_string()).collect()
        };
        let one_args = args(&one);
        let run = single("sync-one", &one_args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(run.code, Some(0), "{}", run.text());
        let two_args = args(&two);
        let run = mpirun_gradflow("sync-two", &ranks_of(2, &two_args.iter().map(String::as_str).collect::<Vec<_>>()));
        run.assert_no_panic();
        assert_eq!(run.code, Some(0), "{}", run.text());
        assert!(run.stdout.contains("SyncBatchNorm+relu"), "{}", run.text());
        assert_close(&format!("gpu={gpu}: 2 ranks against 1"), &state_of(&cfg, &one), &state_of(&cfg, &two));
    }
}

#[test]
fn a_run_stopped_under_two_ranks_resumes_under_one() {
    let d = work_dir("resume");
    let cfg = spirals(&d, 3);
    let (whole, part) = (d.join("whole.safetensors"), d.join("part.safetensors"));
    let run = single("resume-whole", &["train", "--cpu", "--config", &cfg, "--save", whole.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let part_s = part.to_str().unwrap();
    let args = ["train", "--cpu", "--config", &cfg, "--save", part_s, "--max-steps", "20"];
    let run = mpirun_gradflow("resume-two", &ranks_of(2, &args));
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(run.stdout.contains("stopped after step 20 (--max-steps), in epoch 2 after batch 5"), "{}", run.text());
    let run = single("resume-one", &["train", "--cpu", "--config", &cfg, "--resume", part_s, "--save", part_s]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(
        run.stdout.contains("resume: ") && run.stdout.contains("(step 20, epoch 2 after batch 5)"),
        "{}",
        run.text()
    );
    assert_close("2 ranks then 1 against 1 throughout", &params_of(&cfg, &whole), &params_of(&cfg, &part));
}

/// One clear message from rank 0 and every rank exiting, never a hang: `launch` fails the test on a timeout.
fn assert_refused(run: &Run, message: &str) {
    run.assert_no_panic();
    assert!(matches!(run.code, Some(c) if c != 0), "{}", run.text());
    assert_eq!(run.stderr.matches(message).count(), 1, "expected {message:?} once\n{}", run.text());
    assert!(run.elapsed < Duration::from_secs(60), "took {:.1?}\n{}", run.elapsed, run.text());
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_one_message_and_a_clean_exit() {
    let d = work_dir("split");
    let cfg = spirals(&d, 1);
    let run =
        mpirun_gradflow("split", &ranks_of(2, &["train", "--cpu", "--config", &cfg, "--set", "train.batch_size=31"]));
    assert_refused(&run, "a batch of 31 rows does not split over 2 ranks");
}

#[test]
fn ranks_started_with_different_configs_are_one_message_and_a_clean_exit() {
    let d = work_dir("configs");
    let cfg = spirals(&d, 1);
    let mut contexts = ranks_of(2, &["train", "--cpu", "--config", &cfg]);
    contexts[1].extend(["--set".to_string(), "optimizer.lr=0.5".to_string()]);
    let run = mpirun_gradflow("configs", &contexts);
    assert_refused(&run, "the ranks were started with different configs");
}

#[test]
fn a_rank_without_an_adapter_is_named_and_every_rank_exits() {
    let d = work_dir("adapter");
    let cfg = spirals(&d, 1);
    let mut contexts = ranks_of(2, &["train", "--config", &cfg]);
    // Rank 1 sees no adapter: Vulkan only, and a loader pointed at no driver.
    let hide =
        ["WGPU_BACKEND=vulkan", "VK_ICD_FILENAMES=/nonexistent/icd.json", "VK_DRIVER_FILES=/nonexistent/icd.json"];
    let mut with_env: Vec<String> = hide.iter().flat_map(|e| ["-x".to_string(), e.to_string()]).collect();
    with_env.append(&mut contexts[1]);
    contexts[1] = with_env;
    let run = mpirun_gradflow("adapter", &contexts);
    run.assert_no_panic();
    assert!(matches!(run.code, Some(c) if c != 0), "{}", run.text());
    assert!(run.stderr.contains("no GPU adapter found on this rank of a data-parallel run"), "{}", run.text());
    assert!(run.elapsed < Duration::from_secs(60), "{}", run.text());
}

#[test]
fn ranks_given_different_options_or_epochs_are_one_message_and_never_a_hang() {
    let d = work_dir("options");
    let cfg = spirals(&d, 2);
    // --max-steps on rank 0 only: the ranks would wait in different collectives.
    let mut contexts = ranks_of(2, &["train", "--cpu", "--config", &cfg]);
    contexts[0].extend(["--max-steps".to_string(), "5".to_string()]);
    let run = mpirun_gradflow("options-steps", &contexts);
    assert_refused(&run, "the ranks differ in their options");
    // --epochs 0 on rank 1 only: it must not leave alone while rank 0 waits.
    let mut contexts = ranks_of(2, &["train", "--cpu", "--config", &cfg]);
    contexts[1].extend(["--epochs".to_string(), "0".to_string()]);
    let run = mpirun_gradflow("options-epochs", &contexts);
    assert_refused(&run, "the ranks were started with different configs");
}
