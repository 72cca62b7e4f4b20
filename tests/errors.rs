//! Bad input gives a clear error that names what is wrong, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gradflow::config::Config;
use gradflow::error::Error;
use gradflow::exec::GpuNetwork;
use gradflow::kernels::Gpu;
use gradflow::optim::Sgd;
use gradflow::spec::{LayerSpec, Loss, Model};

fn temp(name: &str, contents: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gradflow-errors-{}-{name}", std::process::id()));
    std::fs::write(&p, contents).unwrap();
    p
}

const GOOD: &str = r#"
[data]
path = "x.csv"

[model]
layers = [{ type = "linear", out = 4 }, { type = "relu" }, { type = "linear", out = 3 }]

[optimizer]
type = "sgd"
lr = 0.1

[train]
epochs = 1
batch_size = 2
"#;

#[test]
fn a_good_config_parses() {
    let c = Config::parse(GOOD, Path::new("/tmp/run.toml")).unwrap();
    assert_eq!(c.model.layers.len(), 3);
    assert_eq!(c.data.path.as_deref(), Some(Path::new("/tmp/x.csv")));
}

#[test]
fn unknown_layer_type_names_the_type_the_choices_and_the_line() {
    let text = GOOD.replace(r#"{ type = "relu" }"#, r#"{ type = "convolution" }"#);
    let e = Config::parse(&text, Path::new("run.toml")).unwrap_err().to_string();
    assert!(e.contains("run.toml"), "{e}");
    assert!(e.contains("convolution"), "{e}");
    assert!(e.contains("linear") && e.contains("relu"), "lists the known layers: {e}");
    assert!(e.contains("line 6"), "names the line: {e}");
}

#[test]
fn misspelt_field_is_an_error() {
    let text = GOOD.replace("batch_size = 2", "batchsize = 2");
    let e = Config::parse(&text, Path::new("run.toml")).unwrap_err().to_string();
    assert!(e.contains("batchsize"), "{e}");
    let text = GOOD.replace("lr = 0.1", "lr = 0.1\nmomentun = 0.9");
    let e = Config::parse(&text, Path::new("run.toml")).unwrap_err().to_string();
    assert!(e.contains("momentun"), "{e}");
}

#[test]
fn zero_width_layer_is_an_error() {
    let e = Model::new(4, vec![LayerSpec::Linear { out: 0, bias: true }]).unwrap_err().to_string();
    assert!(e.contains("layer 0") && e.contains("out"), "{e}");
}

fn gpu() -> Arc<Gpu> {
    Arc::new(common::gpu_or_panic())
}

#[test]
fn a_layer_wider_than_the_device_allows_is_an_error_not_an_abort() {
    common::require_gpu!();
    let g = gpu();
    let limit = g.max_storage_bytes();
    // A weight matrix of more bytes than one storage binding may hold.
    let width = ((limit / 4) as f64).sqrt() as usize + 1024;
    let model = Model::new(width, vec![LayerSpec::Linear { out: width, bias: true }]).unwrap();
    // The size check comes before the parameters are looked at (or, in the CLI, drawn).
    let e = GpuNetwork::new(g, model, Loss::CrossEntropy, Sgd::new(0.1), &[], 8).err().expect("too large");
    let msg = e.to_string();
    assert!(matches!(e, Error::TooLargeForDevice { .. }), "{msg}");
    assert!(msg.contains("0.weight") && msg.contains(&limit.to_string()) && msg.contains("device allows"), "{msg}");
}

#[test]
fn a_batch_wider_than_the_device_allows_is_an_error() {
    common::require_gpu!();
    let g = gpu();
    let limit = g.max_storage_bytes() as usize;
    let model = Model::new(1024, vec![LayerSpec::Linear { out: 2, bias: true }]).unwrap();
    let params = model.init_params(0);
    let rows = limit / (4 * 1024) + 1;
    let e = GpuNetwork::new(g, model, Loss::CrossEntropy, Sgd::new(0.1), &params, rows).err().expect("too large");
    let msg = e.to_string();
    assert!(msg.contains("batch input") && msg.contains(&rows.to_string()) && msg.contains("device allows"), "{msg}");
}

#[test]
fn wgpu_validation_errors_are_returned() {
    common::require_gpu!();
    let g = gpu();
    // Copying past the end of a buffer is a validation error in WebGPU.
    let small = g.storage("small", 4).unwrap();
    let e = g
        .scoped("bad copy", || {
            let mut enc = g.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&small.buffer, 0, &small.buffer, 0, 1024);
            g.queue.submit([enc.finish()]);
        })
        .unwrap_err();
    assert!(matches!(e, Error::GpuValidation { .. }), "{e}");
    assert!(e.to_string().contains("bad copy"), "{e}");
    // The device still works afterwards.
    assert_eq!(g.read::<f32>(&small, 0, 4).unwrap(), vec![0.0; 4]);
}

/// An epilogue asked to add a skip value through `aux` while also using `aux` as z is refused
/// before anything is dispatched.
#[test]
fn a_matmul_epilogue_with_conflicting_uses_of_aux_is_an_error() {
    common::require_gpu!();
    use gradflow::kernels::{MatmulParams, FLAG_ADD_SKIP, FLAG_STORE_PREACT};
    let g = gpu();
    let (a, b, c, aux) = (
        g.storage("a", 4).unwrap(),
        g.storage("b", 4).unwrap(),
        g.storage("c", 4).unwrap(),
        g.storage("aux", 4).unwrap(),
    );
    let p = MatmulParams { flags: FLAG_ADD_SKIP | FLAG_STORE_PREACT, ..MatmulParams::linear_forward(2, 2, 2) };
    let e = g.matmul(&a, &b, None, &c, Some(&aux), p).err().expect("conflicting flags refused").to_string();
    assert!(e.contains("skip value") && e.contains("aux"), "{e}");
}

#[test]
fn a_diverging_run_reports_its_first_bad_step_on_both_executors() {
    use gradflow::data::{BatchScheme, Batcher, Dataset};
    use gradflow::exec::{CpuNetwork, Network};
    let x: Vec<f32> = (0..64).map(|i| (i % 7) as f32 * 100.0).collect();
    let labels: Vec<u32> = (0..32).map(|i| i % 2).collect();
    let data = Dataset::new(x, labels, 2, 2, "toy").unwrap();
    let model = Model::new(
        2,
        vec![LayerSpec::Linear { out: 8, bias: true }, LayerSpec::Relu, LayerSpec::Linear { out: 2, bias: true }],
    )
    .unwrap();
    let params = model.init_params(0);
    let batches = || Batcher::new(BatchScheme::InOrder, 32, 8, false, 0).unwrap();
    // The first bad step found independently: the CPU reference stepped by hand, its loss and
    // parameters read after every step.
    let mut probe = CpuNetwork::new(model.clone(), Loss::CrossEntropy, Sgd::new(1e30), params.clone()).unwrap();
    probe.set_train_data(&data).unwrap();
    let mut batcher = batches();
    let mut want = None;
    'epochs: for _ in 0..3 {
        for batch in batcher.next_epoch() {
            let idx: Vec<u32> = batch.iter().map(|&r| r as u32).collect();
            probe.train_step(&idx).unwrap();
            let bad_params = probe.params().unwrap().iter().any(|p| !p.is_finite());
            if !probe.last_loss().unwrap().is_finite() || bad_params {
                want = Some(probe.steps());
                break 'epochs;
            }
        }
    }
    let want = want.expect("lr 1e30 diverges within 3 epochs");
    let mut nets: Vec<Box<dyn Network>> =
        vec![Box::new(CpuNetwork::new(model.clone(), Loss::CrossEntropy, Sgd::new(1e30), params.clone()).unwrap())];
    if common::gpu_part!() {
        nets.push(Box::new(GpuNetwork::new(gpu(), model, Loss::CrossEntropy, Sgd::new(1e30), &params, 8).unwrap()));
    }
    for mut net in nets {
        net.set_train_data(&data).unwrap();
        let mut batcher = batches();
        let mut result = Ok(());
        for epoch in 1..=3 {
            if let Err(e) = gradflow::train::train_epoch(net.as_mut(), &mut batcher, epoch, |_| {}) {
                result = Err(e);
                break;
            }
        }
        let e = result.expect_err("lr 1e30 diverges");
        let Error::Diverged { step, .. } = e else { panic!("{}: expected Diverged, got {e}", net.describe()) };
        assert_eq!(step, want, "{}: {e}", net.describe());
        assert!(e.to_string().contains("lower the learning rate"), "{e}");
    }
}

fn run_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow")).args(args).output().expect("run gradflow");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn with_no_adapter_at_all_the_cli_falls_back_to_the_cpu_with_one_warning() {
    // Only Vulkan, and a Vulkan loader pointed at no driver: wgpu sees no adapter.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow"))
        .args(["train", "--epochs", "1"])
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .expect("run gradflow");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("CPU reference") && warnings[0].contains("mesa-vulkan-drivers"), "{stderr}");
    assert!(stdout.contains("device: CPU reference") && stdout.contains("test accuracy"), "{stdout}");
}

/// This test binary rerun without an adapter (as above): every other test passes, its GPU tests
/// after one SKIPPED line with the install command; under GRADFLOW_REQUIRE_GPU=1 exactly the
/// tests that line counts fail, each naming the command.
#[test]
fn without_an_adapter_gpu_tests_skip_in_one_line_and_fail_when_one_is_required() {
    const THIS: &str = "without_an_adapter_gpu_tests_skip_in_one_line_and_fail_when_one_is_required";
    let rerun = |require: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--skip", THIS])
            .env("WGPU_BACKEND", "vulkan")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env_remove("GRADFLOW_ADAPTER")
            .env(common::REQUIRE_GPU_ENV, require)
            .output()
            .expect("rerun this test binary");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, stdout, stderr) = rerun("0");
    assert!(ok && stdout.contains(" 0 failed"), "{stdout}\n{stderr}");
    let skips: Vec<&str> = stderr.lines().filter(|l| l.starts_with("SKIPPED")).collect();
    assert_eq!(skips.len(), 1, "one line per test binary: {stderr}");
    assert!(skips[0].contains("tests/errors.rs") && skips[0].contains(common::INSTALL_LAVAPIPE), "{}", skips[0]);
    // "SKIPPED 6 GPU tests of tests/errors.rs and the GPU part of 1 more: …" counts 7.
    let counted: usize = skips[0].split(':').next().unwrap().split(' ').filter_map(|w| w.parse::<usize>().ok()).sum();
    let (ok, stdout, _) = rerun("1");
    let failed = stdout.matches("GRADFLOW_REQUIRE_GPU=1 and wgpu finds no GPU adapter").count();
    assert!(!ok && counted > 0 && failed == counted, "{counted} counted, {failed} failed:\n{stdout}");
    assert!(stdout.contains(&format!(" {counted} failed")) && stdout.contains(common::INSTALL_LAVAPIPE), "{stdout}");
}

#[test]
fn cli_reports_bad_data_files_by_line() {
    let ragged = temp("ragged.csv", "1,2,0\n3,4,1\n5,1\n");
    let config = temp("ragged.toml", &GOOD.replace("x.csv", ragged.to_str().unwrap()));
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("ragged.csv") && err.contains("line 3") && err.contains("expected 3 fields"), "{err}");

    let nan = temp("nan.csv", "1,2,0\nNaN,4,1\n");
    let config = temp("nan.toml", &GOOD.replace("x.csv", nan.to_str().unwrap()));
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nan.csv") && err.contains("line 2") && err.contains("NaN"), "{err}");

    let label = temp("label.csv", "1,2,0\n3,4,7\n");
    let text = GOOD.replace("x.csv", label.to_str().unwrap()).replace("path = ", "num_classes = 3\npath = ");
    let config = temp("label.toml", &text);
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("label.csv") && err.contains("line 2") && err.contains("label 7"), "{err}");
}

#[test]
fn cli_reports_an_unknown_layer_and_a_missing_config() {
    // (the wide-layer case through the CLI is the library test above: same check, same message)
    let config = temp("layer.toml", &GOOD.replace(r#"type = "relu""#, r#"type = "softmaxx""#));
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("softmaxx") && err.contains("layer.toml"), "{err}");
    let (ok, err) = run_cli(&["train", "--config", "/nonexistent/run.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/run.toml"), "{err}");
}

#[test]
fn cli_reports_an_unknown_adapter() {
    // With no adapter at all the CLI falls back to the CPU (tested above): no list to refuse from.
    common::require_gpu!();
    let (ok, err) = run_cli(&["train", "--adapter", "no-such-gpu-anywhere", "--epochs", "1"]);
    assert!(!ok);
    assert!(err.contains("no-such-gpu-anywhere") && err.contains("available"), "{err}");
}

#[test]
fn batch_indices_past_the_training_set_are_errors_on_both_executors() {
    use gradflow::data::Dataset;
    use gradflow::exec::{CpuNetwork, Network};
    let data = Dataset::new(vec![0.5; 20], vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1], 2, 2, "toy").unwrap();
    let model = Model::new(2, vec![LayerSpec::Linear { out: 2, bias: true }]).unwrap();
    let params = model.init_params(0);
    let mut gpu_net = common::gpu_part!()
        .then(|| GpuNetwork::new(gpu(), model.clone(), Loss::CrossEntropy, Sgd::new(0.1), &params, 4).unwrap());
    let mut cpu_net = CpuNetwork::new(model, Loss::CrossEntropy, Sgd::new(0.1), params).unwrap();
    let mut nets: Vec<&mut dyn Network> = vec![&mut cpu_net];
    nets.extend(gpu_net.as_mut().map(|n| n as &mut dyn Network));
    for net in nets {
        net.set_train_data(&data).unwrap();
        let e = net.train_step(&[0, 10]).unwrap_err().to_string();
        assert!(e.contains("row index 10") && e.contains("10 training rows"), "{}: {e}", net.describe());
        let e = net.train_step(&[]).unwrap_err().to_string();
        assert!(e.contains("a batch of 0 rows"), "{}: {e}", net.describe());
    }
    if let Some(gpu_net) = &mut gpu_net {
        let e = gpu_net.train_step(&[0, 1, 2, 3, 4]).unwrap_err().to_string();
        assert!(e.contains("1 to 4"), "{e}");
    }
}

/// configs/digits.toml with its data path made absolute and `layers` and `batch_size` replaced.
fn digits_config(name: &str, layers: &str, batch_size: usize) -> PathBuf {
    let text = gradflow::config::DEFAULT_CONFIG
        .replace("../data/digits.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))
        .replace("batch_size = 32", &format!("batch_size = {batch_size}"));
    let start = text.find("layers = [").unwrap();
    let end = start + text[start..].find("\n]\n").unwrap() + 3;
    temp(name, &format!("{}layers = {layers}\n{}", &text[..start], &text[end..]))
}

#[test]
fn cli_refuses_batch_norm_batches_of_one_row_before_training() {
    // 1,438 training rows in batches of 3 leave a last batch of 1.
    let layers =
        "[{ type = 'linear', out = 16 }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 10 }]";
    let config = digits_config("bn1.toml", layers, 3);
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("1 row") && err.contains("batch norm (layer 1)") && err.contains("drop_last"), "{err}");
    assert!(!err.contains("epoch"), "the error comes before any training: {err}");
}

#[test]
fn cli_reports_a_residual_width_mismatch_before_training() {
    let layers = "[{ type = 'linear', out = 16 }, { type = 'residual', layers = [{ type = 'linear', out = 12 }] }, { type = 'linear', out = 10 }]";
    let config = digits_config("res.toml", layers, 32);
    let (ok, err) = run_cli(&["train", "--cpu", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("layer 1 (residual)") && err.contains("width 16") && err.contains("width 12"), "{err}");
}

/// Optimizer settings torch.optim refuses are refused with its wording (numbers as Python prints
/// them: `nan`, `1.0`, `-1e-08`), naming the config file,
/// before anything trains; `--set` overrides and library callers (`ParamGroups::new`, which both
/// networks build) get the same checks.
#[test]
fn optimizer_settings_torch_refuses_are_refused_with_its_wording() {
    let cases: &[(&str, &str)] = &[
        ("type = \"sgd\"\nlr = -0.05", "Invalid learning rate: -0.05"),
        ("type = \"sgd\"\nlr = nan", "Invalid learning rate: nan"),
        ("type = \"sgd\"\nlr = 0.1\nmomentum = -0.9", "Invalid momentum value: -0.9"),
        ("type = \"sgd\"\nlr = 0.1\nweight_decay = -1e-4", "Invalid weight_decay value: -0.0001"),
        ("type = \"sgd\"\nlr = 0.1\nnesterov = true", "Nesterov momentum requires a momentum and zero dampening"),
        (
            "type = \"sgd\"\nlr = 0.1\nmomentum = 0.9\ndampening = 0.1\nnesterov = true",
            "Nesterov momentum requires a momentum and zero dampening",
        ),
        ("type = \"adam\"\nbetas = [1.5, 0.999]", "Invalid beta parameter at index 0: 1.5"),
        ("type = \"adam\"\nbetas = [-0.1, 0.999]", "Invalid beta parameter at index 0: -0.1"),
        ("type = \"adam\"\nbetas = [0.9, 1.0]", "Invalid beta parameter at index 1: 1.0"),
        ("type = \"adamw\"\neps = -1e-8", "Invalid epsilon value: -1e-08"),
        ("type = \"adagrad\"\nlr_decay = -0.1", "Invalid lr_decay value: -0.1"),
        ("type = \"adagrad\"\ninitial_accumulator_value = -1", "Invalid initial_accumulator_value value: -1.0"),
        ("type = \"rmsprop\"\nalpha = -0.5", "Invalid alpha value: -0.5"),
    ];
    for (optimizer, message) in cases {
        let text = GOOD.replace("type = \"sgd\"\nlr = 0.1", optimizer);
        let e = Config::parse(&text, Path::new("/tmp/run.toml")).expect_err(optimizer).to_string();
        assert!(e.contains("/tmp/run.toml") && e.contains("[optimizer]") && e.contains(message), "{optimizer}: {e}");
    }
    // The same through --set, and from the library.
    let path = temp("good.toml", GOOD);
    let e = Config::load_with(&path, &["optimizer.lr=-0.05".into()]).unwrap_err().to_string();
    assert!(e.contains("Invalid learning rate: -0.05"), "{e}");
    let model = Model::new(2, vec![LayerSpec::Linear { out: 2, bias: true }]).unwrap();
    let sgd = gradflow::optim::Optimizer::Sgd(Sgd::new(-1.0));
    let e = gradflow::optim::ParamGroups::new(&model, &sgd, &[]).unwrap_err().to_string();
    assert!(e.contains("optimizer (sgd): Invalid learning rate: -1"), "{e}");
}
