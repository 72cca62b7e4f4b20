//! Issue 11's bad inputs, one case each, run through the real binary: the exit status, a message
//! that names the problem, no panic or abort text, and no file written or changed. Also the
//! principles: outputs checked before training, checkpoint/config disagreements shown with both
//! values, training rows fixed across --resume. Most cases run on the CPU reference (`--cpu`),
//! whose checks are the GPU path's too; the divergence and signal cases run on both.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// The spirals run (600 rows, a BN-MLP, Adam) with absolute data paths and `epochs` epochs.
fn spirals(d: &Path, epochs: usize) -> String {
    let text = std::fs::read_to_string(manifest("configs/spirals.toml"))
        .unwrap()
        .replace("../data/spirals.csv", &manifest("data/spirals.csv"))
        .replace("epochs = 60", &format!("epochs = {epochs}"));
    let p = d.join("spirals.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradflow")).args(args).output().expect("run gradflow")
}

/// Every file in `d` with its bytes: what a case may not change.
fn snapshot(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `args` in a folder whose files must come out unchanged; the status must be `code` and
/// the output (stdout and stderr) must contain every one of `needles`. Returns the output.
fn refused(d: &Path, args: &[&str], code: i32, needles: &[&str]) -> String {
    let before = snapshot(d);
    let out = run(args);
    // Long arguments (a 3,000-layer model) shortened in messages.
    let args: Vec<String> = args.iter().map(|a| a.chars().take(100).collect()).collect();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{args:?}: status\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "{args:?}: expected {needle:?} in\n{text}");
    }
    for panic_text in ["panicked", "RUST_BACKTRACE", "memory allocation of", "stack backtrace"] {
        assert!(!text.contains(panic_text), "{args:?}: {panic_text:?} in\n{text}");
    }
    let after = snapshot(d);
    let names = |s: &[(PathBuf, Vec<u8>)]| s.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&before), names(&after), "{args:?}: files written or removed");
    assert!(before == after, "{args:?}: a file changed");
    text
}

#[test]
fn nan_or_zero_data_scale_is_refused_before_training() {
    let d = dir("scale");
    let cfg = spirals(&d, 2);
    let save = d.join("out.safetensors");
    for value in ["nan", "0.0", "inf"] {
        let set = format!("data.scale={value}");
        let args = ["train", "--cpu", "--config", &cfg, "--set", &set, "--save", save.to_str().unwrap()];
        refused(&d, &args, 1, &["data.scale must be a finite non-zero factor"]);
    }
}

#[test]
fn a_bucket_cap_that_is_not_a_positive_size_is_refused() {
    let d = dir("bucket");
    let cfg = spirals(&d, 2);
    for value in ["0", "-1.5", "nan", "inf"] {
        let set = format!("train.bucket_cap_mb={value}");
        refused(
            &d,
            &["train", "--cpu", "--config", &cfg, "--set", &set],
            1,
            &["train.bucket_cap_mb must be a positive"],
        );
    }
}

#[test]
fn a_checkpoint_of_a_bigger_model_is_refused_unless_non_strict() {
    let d = dir("strict");
    let cfg = spirals(&d, 1);
    let big = d.join("big.safetensors");
    let bigger = "model.layers=[{type='linear',out=16},{type='relu'},{type='linear',out=16},{type='relu'},{type='linear',out=3}]";
    let smaller = "model.layers=[{type='linear',out=16},{type='relu'},{type='linear',out=16}]";
    let out = run(&["train", "--cpu", "--config", &cfg, "--set", bigger, "--save", big.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let big = big.to_str().unwrap();
    let expect = ["big.safetensors", "does not have", "4.weight", "4.bias", "--non-strict"];
    // The checkpoint describes its model, so eval names the layers that differ.
    let differ =
        ["big.safetensors", "model.layers[3] is { type = \"relu\" } in the checkpoint, none here", "--non-strict"];
    refused(&d, &["eval", "--cpu", "--config", &cfg, "--set", smaller, "--checkpoint", big], 1, &differ);
    // The smaller model's 16 outputs must be the data's classes to get as far as the state dict.
    let sixteen = "data.num_classes=16";
    refused(&d, &["train", "--cpu", "--config", &cfg, "--set", smaller, "--set", sixteen, "--init", big], 1, &expect);
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", smaller, "--set", sixteen, "--resume", big],
        1,
        &expect[..4],
    );
    // The opt-out works, and says loudly what it dropped.
    let out = run(&["eval", "--cpu", "--non-strict", "--config", &cfg, "--set", smaller, "--checkpoint", big]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("--non-strict: ignoring") && err.contains("4.weight"), "{err}");
}

#[test]
fn optimizer_schedule_clipping_and_group_settings_torch_would_refuse_are_refused() {
    let d = dir("optim");
    let cfg = spirals(&d, 1);
    let cases: &[(&str, &str)] = &[
        ("optimizer.lr=-0.05", "Invalid learning rate: -0.05"),
        ("optimizer.betas=[1.5, 0.999]", "Invalid beta parameter at index 0: 1.5"),
        ("optimizer.betas=[-0.1, 0.999]", "Invalid beta parameter at index 0: -0.1"),
        ("optimizer.betas=[0.9, 1.0]", "Invalid beta parameter at index 1: 1.0"),
        ("optimizer.eps=-1e-8", "Invalid epsilon value: -1e-08"),
        ("optimizer.weight_decay=-0.1", "Invalid weight_decay value: -0.1"),
        ("train.schedule={type='step', every=0, gamma=0.5}", "every must be a positive number of steps, got 0"),
        ("train.schedule={type='step', every=10, gamma=-0.5}", "gamma must be a positive finite factor"),
        ("train.schedule={type='exponential', gamma=nan}", "gamma must be a positive finite factor, got NaN"),
        ("train.schedule={type='cosine', total=0}", "total must be a positive number of steps"),
        ("train.schedule={type='cosine', total=10, warmup=20}", "warmup (20 steps) must not exceed total (10 steps)"),
        (
            "train.schedule={type='cosine', total=10, min_factor=2.0}",
            "Ending multiplicative factor expected to be between 0 and 1",
        ),
        ("train.schedule={type='linear-decay', tau=100, final_factor=-1.0}", "final_factor"),
        ("train.clip_grad_norm=-1.0", "clip_grad_norm must be a positive finite number, got -1"),
        ("train.clip_grad_norm=nan", "clip_grad_norm must be a positive finite number, got NaN"),
        ("train.param_groups=[{match=['bias'], lr=-1.0}]", "train.param_groups[0].lr: Invalid learning rate: -1.0"),
        ("train.param_groups=[{match=['bias'], weight_decay=nan}]", "weight_decay: Invalid weight_decay value: nan"),
    ];
    for (set, message) in cases {
        refused(&d, &["train", "--cpu", "--config", &cfg, "--set", set], 1, &[&cfg, message]);
    }
    // SGD's own: Nesterov needs momentum and no dampening.
    let sgd = [
        "optimizer={type='sgd', lr=0.1, nesterov=true}",
        "optimizer={type='sgd', lr=0.1, momentum=0.9, dampening=0.1, nesterov=true}",
    ];
    for set in sgd {
        refused(
            &d,
            &["train", "--cpu", "--config", &cfg, "--set", set],
            1,
            &["Nesterov momentum requires a momentum and zero dampening"],
        );
    }
}

#[test]
fn a_layer_too_large_for_the_host_is_an_error_on_the_cpu_path_not_an_abort() {
    let d = dir("alloc");
    let cfg = spirals(&d, 1);
    let wide = "model.layers=[{type='linear',out=1000000000},{type='relu'},{type='linear',out=3}]";
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", wide],
        1,
        &["the CPU reference path needs about", "GiB"],
    );
    let huge = "model.layers=[{type='linear',out=1000000000000000000},{type='linear',out=3}]";
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", huge],
        1,
        &["'0.weight'", "more than 4294967295 elements"],
    );
    // Each tensor in range, but a full batch of 480 rows × 6·10^7 activations (~345 GB) is not.
    let batch = "model.layers=[{type='linear',out=60000000},{type='relu'},{type='linear',out=3}]";
    let full = "train.batching='full-batch'";
    let args = ["train", "--cpu", "--config", &cfg, "--set", batch, "--set", full];
    refused(&d, &args, 1, &["the CPU reference path needs about", "GiB"]);
}

#[test]
fn divergence_is_reported_at_its_step_and_the_last_good_checkpoint_is_kept() {
    let d = dir("diverge");
    let cfg = spirals(&d, 1);
    let layers = "model.layers=[{type='linear',out=32},{type='relu'},{type='linear',out=3}]";
    let sgd = "optimizer={type='sgd',lr=0.05,momentum=0.9}";
    let ck = d.join("good.safetensors");
    let ck = ck.to_str().unwrap();
    let out = run(&["train", "--cpu", "--config", &cfg, "--set", layers, "--set", sgd, "--save", ck]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut steps = Vec::new();
    for cpu in [true, false] {
        if !cpu && !common::gpu_part!() {
            continue;
        }
        let mut args = if cpu { vec!["train", "--cpu"] } else { vec!["train"] };
        args.extend(["--config", &cfg, "--set", layers, "--set", sgd, "--epochs", "3"]);
        args.extend(["--resume", ck, "--save", ck, "--set", "optimizer.lr=1e30"]);
        let text = refused(&d, &args, 1, &["training diverged at step", "good.safetensors keeps the last good state"]);
        let step: usize =
            text.split("diverged at step ").nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
        // Epoch 2 has 15 steps (16..=30): the first bad step is named, not the epoch's last.
        assert!((16..30).contains(&step), "{text}");
        steps.push(step);
    }
    assert!(steps.windows(2).all(|w| w[0] == w[1]), "both executors name the same step: {steps:?}");
}

#[test]
fn zero_epochs_and_a_finished_resume_have_nothing_to_do() {
    let d = dir("nothing");
    let cfg = spirals(&d, 1);
    let save = d.join("never.safetensors");
    let save = save.to_str().unwrap();
    let metrics = d.join("never.csv");
    let metrics = metrics.to_str().unwrap();
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--epochs", "0", "--save", save, "--metrics", metrics],
        0,
        &["nothing to do: train.epochs = 0"],
    );
    let done = d.join("done.safetensors");
    let out = run(&["train", "--cpu", "--config", &cfg, "--save", done.to_str().unwrap()]);
    assert!(out.status.success());
    let done = done.to_str().unwrap();
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--resume", done, "--save", done],
        0,
        &["nothing to do", "finished epoch 1 of train.epochs = 1"],
    );
}

#[test]
fn a_headless_run_prints_no_mesa_runtime_dir_error() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_gradflow")).arg("devices").env_remove("XDG_RUNTIME_DIR").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn the_first_run_reads_well() {
    let d = dir("looks");
    let cfg = spirals(&d, 2);
    // The optimizer as torch prints it, not Rust's Debug text.
    let text = refused(&d, &["train", "--cpu", "--config", &cfg], 0, &["optimizer: Adam(lr=0.01)"]);
    assert!(!text.contains("Adam {"), "{text}");
    // No test set: no test column and no NaN.
    let text =
        refused(&d, &["train", "--cpu", "--config", &cfg, "--set", "data.test_fraction=0.0"], 0, &["no test set"]);
    assert!(!text.contains("NaN") && !text.contains("test acc"), "{text}");
    // A huge loss in scientific notation, not 27 digits.
    let text = refused(&d, &["train", "--cpu", "--config", &cfg, "--set", "optimizer.lr=1e4"], 0, &["loss"]);
    let longest_digits = text.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    assert!(longest_digits < 12, "{text}");
    // A 3,000-layer model's summary is one short line.
    let deep = format!("model.layers=[{}{{type='linear',out=3}}]", "{type='linear',out=4},{type='relu'},".repeat(1500));
    let text = refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", &deep, "--max-steps", "1"],
        0,
        &["model: 2 → Linear(4)+relu ×1500 → Linear(3)"],
    );
    let summary = text.lines().find(|l| l.starts_with("model:")).unwrap();
    assert!(summary.len() < 200, "{summary}");
    // One class: "1 class", and a warning (the model's one output matches it, or it is refused).
    std::fs::write(d.join("one.csv"), "a,b,label\n0.1,0.2,0\n0.3,0.4,0\n0.5,0.6,0\n0.7,0.8,0\n").unwrap();
    let one = d.join("one.toml");
    let one_text = format!(
        "[data]\npath = '{}'\ntest_fraction = 0.0\n[model]\nlayers = [{{ type = 'linear', out = 1 }}]\n[optimizer]\ntype = 'sgd'\nlr = 0.1\n[train]\nepochs = 1\nbatch_size = 2\n",
        d.join("one.csv").display()
    );
    std::fs::write(&one, one_text).unwrap();
    let text = refused(
        &d,
        &["train", "--cpu", "--config", one.to_str().unwrap()],
        0,
        &["1 class)", "warning: the training data has only one class"],
    );
    assert!(!text.contains("1 classes"), "{text}");
}

#[test]
fn a_separate_test_file_gets_the_training_standardisation() {
    use gradflow::config::Config;
    let d = dir("testpath");
    let cfg = spirals(&d, 1);
    // The training file as its own test file: standardised with the training statistics, the
    // test rows must equal the training rows bit for bit.
    let with_test = Config::load_with(
        Path::new(&cfg),
        &[format!("data.test_path='{}'", manifest("data/spirals.csv")), "data.test_fraction=0.0".into()],
    )
    .unwrap();
    let (train, test) = gradflow::train::load_data(&with_test, Path::new(&cfg)).unwrap();
    assert_eq!((train.n, test.n), (600, 600));
    assert!(train.x == test.x && train.labels == test.labels);
    let mean: f64 = test.x.iter().step_by(2).map(|&v| v as f64).sum::<f64>() / 600.0;
    assert!(mean.abs() < 1e-5, "standardised: mean {mean}");
    // Both ways of giving a test set at once is refused, naming the fields.
    let both = Config::load_with(Path::new(&cfg), &[format!("data.test_path='{}'", manifest("data/spirals.csv"))]);
    let e = both.unwrap_err().to_string();
    assert!(e.contains("data.test_path") && e.contains("test_fraction"), "{e}");
    // Through the CLI: the test rows are named with their file.
    let set = format!("data.test_path='{}'", manifest("data/spirals.csv"));
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", &set, "--set", "data.test_fraction=0.0"],
        0,
        &["600 test rows from", "test acc"],
    );
}

#[test]
fn the_built_in_run_reads_its_built_in_data_when_the_file_is_gone() {
    let mut config = gradflow::config::Config::default_run().unwrap();
    config.data.path = Some(std::env::temp_dir().join("gradflow-nowhere/digits.csv"));
    let (train, test) = gradflow::train::load_data(&config, Path::new("digits.toml")).unwrap();
    assert_eq!((train.n + test.n, train.d), (1797, 64));
    // Any other config with a missing file is an error naming it.
    config.builtin = false;
    let e = gradflow::train::load_data(&config, Path::new("digits.toml")).unwrap_err().to_string();
    assert!(e.contains("gradflow-nowhere/digits.csv"), "{e}");
}

#[test]
fn messages_point_at_the_field_the_layer_and_the_line() {
    let d = dir("messages");
    let cfg = spirals(&d, 1);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let bad_lr = d.join("lr.toml");
    std::fs::write(&bad_lr, text.replace("lr = 0.01", "lr = \"fast\"")).unwrap();
    let line = text.lines().position(|l| l.starts_with("lr = 0.01")).unwrap() + 1;
    let args = ["train", "--cpu", "--config", bad_lr.to_str().unwrap()];
    refused(&d, &args, 1, &[&format!("line {line}: [optimizer]: lr: expected a number, found the string \"fast\"")]);
    let bad_layer = d.join("layer.toml");
    std::fs::write(&bad_layer, text.replace("{ type = \"linear\", out = 3 }", "{ type = \"linear\", out = \"3\" }"))
        .unwrap();
    let line = text.lines().position(|l| l.contains("{ type = \"linear\", out = 3 }")).unwrap() + 1;
    let args = ["train", "--cpu", "--config", bad_layer.to_str().unwrap()];
    refused(
        &d,
        &args,
        1,
        &[&format!("line {line}: model.layers[6] (linear): out: expected a whole number ≥ 0, found the string \"3\"")],
    );
    // A TOML syntax error in a --set value is reported as one.
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--set", "optimizer.lr=[1"],
        1,
        &["'[1' is not a valid TOML value"],
    );
    // predict with the wrong number of columns blames the input.
    let ck = d.join("m.safetensors");
    assert!(run(&["train", "--cpu", "--config", &cfg, "--save", ck.to_str().unwrap()]).status.success());
    std::fs::write(d.join("three.csv"), "1,2,3\n4,5,6\n").unwrap();
    let (input, output) = (d.join("three.csv"), d.join("out.csv"));
    let args = [
        "predict",
        "--cpu",
        "--config",
        &cfg,
        "--checkpoint",
        ck.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    refused(&d, &args, 1, &["three.csv", "3 feature", "2"]);
}

/// Numbers out of a field's range and values of the wrong type, in the file and through --set:
/// each message names the field and what it takes in words, never a Rust type name.
#[test]
fn wrong_types_and_numbers_too_large_name_the_field_and_the_form_in_words() {
    let d = dir("types");
    let cfg = spirals(&d, 1);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line_of = |start: &str| text.lines().position(|l| l.starts_with(start)).unwrap() + 1;
    let file_cases = [
        (
            "batch_size = 32",
            "batch_size = \"32\"",
            "train.batch_size: expected a whole number ≥ 0, found the string \"32\"",
        ),
        ("batch_size = 32", "batch_size = -1", "train.batch_size: expected a whole number ≥ 0, found -1"),
        ("epochs = 1", "epochs = 1e20", "train.epochs: expected a whole number ≥ 0, found 1e20"),
        (
            "epochs = 1",
            "epochs = 99999999999999999999",
            "train.epochs: 99999999999999999999 is too large (at most 9223372036854775807)",
        ),
        ("lr = 0.01", "lr = 1e400", "optimizer.lr: the number is too large (at most about 1.8e308)"),
        ("drop_last = true", "drop_last = 1", "train.drop_last: expected true or false, found 1"),
    ];
    for (i, (good, bad, message)) in file_cases.into_iter().enumerate() {
        let p = d.join(format!("case{i}.toml"));
        std::fs::write(&p, text.replacen(good, bad, 1)).unwrap();
        let out = refused(
            &d,
            &["train", "--cpu", "--config", p.to_str().unwrap()],
            1,
            &[&format!("line {}: {message}", line_of(good))],
        );
        no_type_names(&out);
    }
    let set_cases = [
        ("train.epochs=1e20", "after --set train.epochs=1e20: train.epochs: expected a whole number ≥ 0, found 1e20"),
        ("train.epochs=2.5", "train.epochs: expected a whole number ≥ 0, found 2.5"),
        ("train.epochs=99999999999999999999", "--set train.epochs=99999999999999999999: train.epochs: 99999999999999999999 is too large (at most 9223372036854775807)"),
        ("train.batch_size=-1", "train.batch_size: expected a whole number ≥ 0, found -1"),
        ("optimizer.lr=abc", "[optimizer]: lr: expected a number, found the string \"abc\""),
        ("data.num_classes=1e9", "data.num_classes: expected a whole number ≥ 0, found 1000000000.0"),
        ("train.steps_per_submit=1e12", "train.steps_per_submit: expected a whole number ≥ 0, found 1000000000000.0"),
    ];
    for (set, message) in set_cases {
        no_type_names(&refused(&d, &["train", "--cpu", "--config", &cfg, "--set", set], 1, &[message]));
    }
    // clap's own range check names the option.
    let out = refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--epochs", "99999999999999999999999"],
        2,
        &["--epochs", "too large"],
    );
    no_type_names(&out);
}

/// No Rust type name as a word, and no serde phrasing, in `text`.
fn no_type_names(text: &str) {
    let words: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    for name in ["usize", "u64", "u32", "i64", "i128", "f32", "f64"] {
        assert!(!words.contains(&name), "{name:?} in {text}");
    }
    assert!(!text.contains("invalid type") && !text.contains("invalid value:"), "{text}");
}

#[test]
fn outputs_are_checked_before_training_and_disagreements_show_both_values() {
    let d = dir("principles");
    let cfg = spirals(&d, 1);
    let missing = d.join("no/such/folder/m.csv");
    let args = ["train", "--cpu", "--config", &cfg, "--metrics", missing.to_str().unwrap()];
    let text = refused(&d, &args, 1, &["--metrics", "does not exist"]);
    assert!(!text.contains("epoch "), "refused before training: {text}");
    refused(&d, &["train", "--cpu", "--config", &cfg, "--plot", d.to_str().unwrap()], 1, &["--plot", "is a folder"]);
    // bench's JSON too, before its first measurement (no "matmul" line, no adapter opened).
    let text =
        refused(&d, &["bench", "--quick", "--json", missing.to_str().unwrap()], 1, &["--json", "does not exist"]);
    assert!(!text.contains("GFLOP/s") && !text.contains("adapter:"), "refused before measuring: {text}");
    // Two outputs in one file, or an output over an input, are refused before anything is loaded.
    let same = d.join("out.txt");
    let same = same.to_str().unwrap();
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--save", same, "--metrics", same],
        1,
        &["--save and --metrics name the same file"],
    );
    let data = manifest("data/spirals.csv");
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--metrics", &data],
        1,
        &["--metrics: would overwrite an input of the command"],
    );
    // A checkpoint and a config that disagree: both values shown.
    let ck = d.join("adam.safetensors");
    assert!(run(&["train", "--cpu", "--config", &cfg, "--save", ck.to_str().unwrap()]).status.success());
    let ck = ck.to_str().unwrap();
    // No command writes onto one of its inputs: its checkpoint, its rows, its config, its data.
    let rows = d.join("rows.csv");
    std::fs::write(&rows, "0.1,0.2\n0.3,0.4\n").unwrap();
    let rows = rows.to_str().unwrap();
    let predict = |output: &str| {
        ["predict", "--cpu", "--config", &cfg, "--checkpoint", ck, "--input", rows, "--output", output]
            .map(String::from)
    };
    for (args, flag) in [
        (predict(ck).to_vec(), "--output"),
        (predict(rows).to_vec(), "--output"),
        (["hessian", "--cpu", "--config", &cfg, "--checkpoint", ck, "--plot", ck].map(String::from).to_vec(), "--plot"),
        (["compare", "--cpu", "--config", &cfg, "--plot", &cfg].map(String::from).to_vec(), "--plot"),
        (
            ["sweep", "--cpu", "--config", &cfg, "--grid", "optimizer.lr=[0.1]", "--table", &data]
                .map(String::from)
                .to_vec(),
            "--table",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&d, &args, 1, &[&format!("{flag}: would overwrite an input of the command")]);
    }
    refused(
        &d,
        &[
            "train",
            "--cpu",
            "--config",
            &cfg,
            "--epochs",
            "2",
            "--resume",
            ck,
            "--set",
            "optimizer={type='sgd', lr=0.1}",
        ],
        1,
        &["'adam'", "'sgd'"],
    );
    refused(
        &d,
        &["train", "--cpu", "--config", &cfg, "--epochs", "2", "--resume", ck, "--set", "train.batch_size=16"],
        1,
        &["batch_size=32", "batch_size=16"],
    );
    // Anything that changes which rows are training rows is refused on --resume.
    for set in ["data.split_seed=7", "data.test_fraction=0.25", "data.standardize=false"] {
        refused(
            &d,
            &["train", "--cpu", "--config", &cfg, "--epochs", "2", "--resume", ck, "--set", set],
            1,
            &["training rows", "fnv="],
        );
    }
}

/// SIGINT mid-epoch: the step in flight finishes, the position is saved, the metrics record it,
/// the exit status is 128 + 2, and --resume continues from there.
#[cfg(unix)]
#[test]
fn sigint_saves_the_position_and_resume_continues() {
    let d = dir("signal");
    let cfg = spirals(&d, 1000);
    let (ck, metrics) = (d.join("s.safetensors"), d.join("m.csv"));
    let child = Command::new(env!("CARGO_BIN_EXE_gradflow"))
        .args([
            "train",
            "--cpu",
            "--config",
            &cfg,
            "--save",
            ck.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is training (the first epoch's record), then interrupt it.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 3 {
        assert!(start.elapsed().as_secs() < 120, "the run never started training");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Mid-epoch the step in flight finishes and the position is saved; a signal during an
    // epoch's last step lets that epoch end (evaluated and saved) and stops before the next.
    let stopped = stdout.lines().find(|l| l.starts_with("stopped by signal 2 ")).expect("stop line");
    let last = std::fs::read_to_string(&metrics).unwrap();
    let step: usize = last.lines().last().unwrap().split(',').next().unwrap().parse().unwrap();
    if stopped.contains("after step") {
        assert!(stopped.contains(&format!("after step {step} ")) && stopped.contains("saved"), "{stopped}\n{last}");
    } else {
        assert!(
            stopped.contains(&format!("after epoch {}", step / 15)) && step.is_multiple_of(15),
            "{stopped}\n{last}"
        );
    }
    // The checkpoint loads, and --resume continues from that step.
    let resumed = run(&[
        "train",
        "--cpu",
        "--config",
        &cfg,
        "--resume",
        ck.to_str().unwrap(),
        "--max-steps",
        &(step + 20).to_string(),
    ]);
    let text = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success() && text.contains(&format!("resume: {} (step {step},", ck.display())), "{text}");
    assert!(text.contains(&format!("stopped after step {}", step + 20)), "{text}");
}
