//! What the environment can do to a run, through the real binary (environment variables are
//! process-wide, so each case sets them on a child process): a cache that cannot be written is
//! said once, an invalid value of a gradflow variable is refused naming it, and Mesa's
//! XDG_RUNTIME_DIR complaint never shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-env-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// The spirals run for one epoch, its data by absolute path.
fn spirals(d: &Path) -> String {
    let text = std::fs::read_to_string(manifest("configs/spirals.toml"))
        .unwrap()
        .replace("../data/spirals.csv", &manifest("data/spirals.csv"))
        .replace("epochs = 60", "epochs = 1");
    let p = d.join("spirals.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn gradflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gradflow"));
    c.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run gradflow")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_autotune_cache_that_cannot_be_written_is_said_once_and_in_the_schedule_line() {
    common::require_gpu!();
    let d = dir("cache");
    let file = d.join("a-file");
    std::fs::write(&file, "").unwrap();
    let cache = file.join("autotune.txt");
    let out = gradflow(&["train", "--config", &spirals(&d)], &[("GRADFLOW_AUTOTUNE_CACHE", cache.to_str().unwrap())]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let why = format!("{} is a file, not a folder", file.display());
    assert!(stdout.contains(&format!("; not cached: {why})")), "{stdout}");
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("autotune cache")).collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains(&why) && said[0].contains("set $GRADFLOW_AUTOTUNE_CACHE to a writable file"), "{stderr}");
    std::fs::remove_dir_all(&d).unwrap();
}
