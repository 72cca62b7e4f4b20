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

#[test]
fn invalid_values_of_gradflow_variables_are_refused_naming_the_variable_value_and_choices() {
    use gradflow::device::parse_shader_checks;
    use gradflow::kernels::autotune::parse_cache_env;
    use gradflow::kernels::MatmulVariant;
    let message = |e: gradflow::error::Error| e.to_string();
    assert_eq!(MatmulVariant::parse_env("packed").unwrap(), MatmulVariant::Packed);
    assert_eq!(
        message(MatmulVariant::parse_env("fast").unwrap_err()),
        "$GRADFLOW_MATMUL=\"fast\" is not a value it takes; expected one of tiled, direct, packed, uniform (or unset, to autotune)"
    );
    assert!(parse_shader_checks("1").unwrap() && !parse_shader_checks("0").unwrap());
    assert_eq!(
        message(parse_shader_checks("true").unwrap_err()),
        "$GRADFLOW_SHADER_CHECKS=\"true\" is not a value it takes; expected 1 (checks on) or 0 (off, the default)"
    );
    assert_eq!(parse_cache_env("off".as_ref()).unwrap(), None);
    assert_eq!(parse_cache_env("/tmp/c.txt".as_ref()).unwrap(), Some(PathBuf::from("/tmp/c.txt")));
    for switch in ["OFF", "0", "false", "none", "Disabled"] {
        let e = message(parse_cache_env(switch.as_ref()).unwrap_err());
        assert_eq!(
            e,
            format!(
                "$GRADFLOW_AUTOTUNE_CACHE=\"{switch}\" is not a value it takes; expected a file path for the cache, or off to turn it off"
            )
        );
    }
}

#[test]
fn the_commands_refuse_an_invalid_variable_instead_of_ignoring_it() {
    // `devices` reads every GPU variable without opening a device, so this runs anywhere.
    for (var, value) in
        [("GRADFLOW_MATMUL", "fast"), ("GRADFLOW_SHADER_CHECKS", "yes"), ("GRADFLOW_AUTOTUNE_CACHE", "OFF")]
    {
        let out = gradflow(&["devices"], &[(var, value)]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stdout}{stderr}");
        assert!(
            stderr.starts_with(&format!("error: ${var}=\"{value}\" is not a value it takes; expected ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_adapter_named_by_the_environment_that_matches_none_says_where_the_name_came_from() {
    common::require_gpu!();
    let out = gradflow(&["check"], &[("GRADFLOW_ADAPTER", "no-such-gpu")]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("error: no adapter matches 'no-such-gpu' (from $GRADFLOW_ADAPTER); available: "),
        "{stderr}"
    );
}

#[test]
fn an_example_run_without_xdg_runtime_dir_prints_no_mesa_error() {
    // `cargo test` builds the examples beside the test binaries' folder (target/<profile>/examples).
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("quickstart");
    assert!(example.is_file(), "{} not built", example.display());
    let out = Command::new(&example).env_remove("XDG_RUNTIME_DIR").env_remove("NODEVICE_SELECT").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR") && !stdout.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
