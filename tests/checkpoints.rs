//! Checkpoints through the CLI: PyTorch's golden BN training runs reproduced from `--init` and a
//! config alone, a run stopped at step k and resumed ending bit-identical to an unbroken one,
//! and damaged or mismatched files refused with a clear message.

mod common;

use std::path::{Path, PathBuf};

use common::golden::{cases_of, load, Case};
use common::{checkpoint_tensors as tensors, EPS};
use gradflow::checkpoint;
use gradflow::spec::{LayerSpec, Model};
use safetensors::tensor::{Dtype, TensorView};

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("ck", name)
}

fn gradflow(args: &[&str]) -> (bool, String, String) {
    common::run_gradflow(args)
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(bytes);
    std::fs::write(path, out).unwrap();
}

const GOLDEN_LAYERS: &str = "[{ type = 'linear', out = 64 }, { type = 'batch-norm' }, { type = 'relu' },
  { type = 'linear', out = 64 }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 5 }]";

fn golden_model() -> Model {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    Model::new(20, toml::from_str::<L>(&format!("layers = {GOLDEN_LAYERS}")).unwrap().layers).unwrap()
}

fn optimizer_toml(c: &Case) -> String {
    let mut s = format!("type = '{}'\n", c.params["optimizer"].as_str().unwrap().to_lowercase());
    for key in ["lr", "momentum", "weight_decay"] {
        if let Some(v) = c.params.get(key).and_then(|v| v.as_f64()) {
            s += &format!("{key} = {v:?}\n");
        }
    }
    if c.flag("nesterov") {
        s += "nesterov = true\n";
    }
    s
}

/// The `init.*` tensors of a golden case as a state dict file with plain names, as PyTorch's
/// `safetensors.torch.save_file(model.state_dict(), path)` writes it.
fn write_init(c: &Case, path: &Path) {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, (shape, values)) in &c.tensors {
        if let Some(plain) = name.strip_prefix("init.") {
            if plain.ends_with("num_batches_tracked") {
                owned.push((plain.into(), Dtype::I64, shape.clone(), (values[0] as i64).to_le_bytes().to_vec()));
            } else {
                let bytes = values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
                owned.push((plain.into(), Dtype::F32, shape.clone(), bytes));
            }
        }
    }
    let views: Vec<(String, TensorView<'_>)> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn golden_bn_training_runs_through_the_cli_alone() {
    let model = golden_model();
    // Biases that only batch norm reads: their gradient is exactly zero and what is left is
    // rounding noise, which adaptive optimizers turn into steps of about lr (tests/networks.rs
    // explains; there they are also held to that bound).
    let noisy = ["0.bias", "1.running_mean", "3.bias", "4.running_mean"];
    for name in cases_of("training_run") {
        let c = load(&name);
        let d = dir(&name);
        let x: Vec<u8> = c.t("x").iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        write_npy(&d.join("x.npy"), "<f4", &[512, 20], &x);
        let y: Vec<u8> = c.t("y").iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
        write_npy(&d.join("y.npy"), "<i8", &[512], &y);
        write_init(&c, &d.join("init.safetensors"));
        let config = format!(
            "[data]\npath = 'x.npy'\nlabels = 'y.npy'\nnum_classes = 5\ntest_fraction = 0.0\n\n\
             [model]\nlayers = {GOLDEN_LAYERS}\n\n[optimizer]\n{}\n\
             [train]\nepochs = 2\nbatch_size = 64\nbatching = 'in-order'\n",
            optimizer_toml(&c)
        );
        std::fs::write(d.join("run.toml"), config).unwrap();
        let (ok, out, err) = gradflow(&[
            "train",
            "--config",
            d.join("run.toml").to_str().unwrap(),
            "--init",
            d.join("init.safetensors").to_str().unwrap(),
            "--save",
            d.join("final.safetensors").to_str().unwrap(),
        ]);
        assert!(ok, "{name}: {out}\n{err}");
        let (params, norm) = checkpoint::load_state_dict(&d.join("final.safetensors"), &model).unwrap();
        // Same tolerance and reasoning as tests/networks.rs: steps·K·u relative, floor 0.1.
        let tol = 16.0 * 64.0 * EPS;
        let adaptive = !c.params["optimizer"].as_str().unwrap().eq_ignore_ascii_case("sgd");
        let lr = c.param("lr");
        let tensors = model.params.iter().map(|t| (t, &params)).chain(model.running.iter().map(|t| (t, &norm.running)));
        for (t, flat) in tensors {
            let want = c.t(&format!("final.{}", t.name));
            // Adam's and RMSprop's largest step is ~3.2·lr and 10·lr (networks.rs), AdaGrad's lr.
            let extra = if adaptive && noisy.contains(&t.name.as_str()) { 16.0 * 10.0 * lr } else { 0.0 };
            for (g, w) in flat[t.offset..t.offset + t.len].iter().zip(want) {
                let bound = tol * (w.abs() + 0.1) + extra;
                assert!((*g as f64 - w).abs() <= bound, "{name} {}: got {g}, want {w}", t.name);
            }
        }
        for (k, layer) in model.norms.iter().enumerate() {
            assert_eq!(norm.batches_tracked[k] as f64, c.t(&format!("final.{}.num_batches_tracked", layer.name))[0]);
        }
    }
}

/// configs/digits.toml with batch norm, Adam and 2 epochs of 64-row batches (23 steps each).
fn bn_digits_config(d: &Path, width: usize) -> PathBuf {
    let text = gradflow::config::DEFAULT_CONFIG
        .replace("../data/digits.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))
        .replace("epochs = 30", "epochs = 2")
        .replace("batch_size = 32", "batch_size = 64")
        .replace("type = \"sgd\"\nlr = 0.05\nmomentum = 0.9", "type = \"adam\"\nlr = 0.003");
    let start = text.find("layers = [").unwrap();
    let end = start + text[start..].find("\n]\n").unwrap() + 3;
    let layers = format!(
        "layers = [{{ type = 'linear', out = {width}, bias = false }}, {{ type = 'batch-norm', momentum = 'none' }}, {{ type = 'relu' }}, {{ type = 'residual', layers = [{{ type = 'linear', out = {width} }}, {{ type = 'tanh' }}] }}, {{ type = 'linear', out = 10 }}]\n"
    );
    let path = d.join(format!("bn{width}.toml"));
    std::fs::write(&path, format!("{}{layers}{}", &text[..start], &text[end..])).unwrap();
    assert!(text.contains("adam"), "the digits config changed: update this test");
    path
}

#[test]
fn a_run_stopped_at_step_k_and_resumed_ends_bit_identical() {
    let d = dir("resume");
    let config = bn_digits_config(&d, 32);
    let cfg = config.to_str().unwrap();
    let whole = d.join("whole.safetensors");
    let part = d.join("part.safetensors");
    let (ok, out, err) = gradflow(&["train", "--config", cfg, "--save", whole.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    // Stop mid-way through epoch 2 (23 steps an epoch), then resume into the same file.
    let (ok, out, err) = gradflow(&["train", "--config", cfg, "--max-steps", "30", "--save", part.to_str().unwrap()]);
    assert!(ok && out.contains("stopped after step 30"), "{out}\n{err}");
    let (ok, out, err) =
        gradflow(&["train", "--config", cfg, "--resume", part.to_str().unwrap(), "--save", part.to_str().unwrap()]);
    assert!(ok && out.contains("resume:") && out.contains("step 30"), "{out}\n{err}");
    let (a, b) = (tensors(&whole), tensors(&part));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|(n, _)| n == "optimizer.exp_avg_sq.0.weight"), "optimizer state is saved");
    assert!(a.iter().any(|(n, _)| n == "1.num_batches_tracked"));
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "tensor {na} differs between the unbroken and the resumed run");
    }
}

#[test]
fn damaged_or_mismatched_checkpoints_are_refused_with_a_clear_message() {
    let d = dir("damaged");
    let config = bn_digits_config(&d, 16);
    let cfg = config.to_str().unwrap();
    let good = d.join("good.safetensors");
    let (ok, out, err) = gradflow(&["train", "--config", cfg, "--max-steps", "3", "--save", good.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let bytes = std::fs::read(&good).unwrap();

    // One byte altered in the tensor data (past the JSON header).
    let mut altered = bytes.clone();
    let at = altered.len() - 17;
    altered[at] ^= 0x40;
    let p = d.join("altered.safetensors");
    std::fs::write(&p, &altered).unwrap();
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--resume", p.to_str().unwrap()]);
    assert!(!ok && err.contains("altered.safetensors") && err.contains("checksum mismatch"), "{err}");

    // Truncated.
    let p = d.join("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--resume", p.to_str().unwrap()]);
    assert!(!ok && err.contains("truncated.safetensors") && err.contains("truncated or altered"), "{err}");

    // A header byte altered (the JSON no longer parses).
    let mut header = bytes.clone();
    header[9] = b'#';
    let p = d.join("header.safetensors");
    std::fs::write(&p, &header).unwrap();
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--resume", p.to_str().unwrap()]);
    assert!(!ok && err.contains("header.safetensors"), "{err}");

    // Metadata that steers the resume is covered by the checksum too.
    let text_at = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle).expect("metadata present");
    let mut moved = bytes.clone();
    let at = text_at(b"\"gradflow.steps\":\"3\"");
    moved[at + 18] = b'4';
    let p = d.join("moved.safetensors");
    std::fs::write(&p, &moved).unwrap();
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--resume", p.to_str().unwrap()]);
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
    // --init verifies gradflow files too.
    let p = d.join("altered.safetensors");
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--init", p.to_str().unwrap()]);
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
    // Another batch schedule than the one the position refers to.
    let (ok, _, err) =
        gradflow(&["train", "--config", cfg, "--set", "train.batch_size=32", "--resume", good.to_str().unwrap()]);
    assert!(!ok && err.contains("batch_size=64") && err.contains("batch_size=32"), "{err}");
    // The same optimizer with state that means something else (AMSGrad keeps a third slot in use).
    let (ok, _, err) =
        gradflow(&["train", "--config", cfg, "--set", "optimizer.amsgrad=true", "--resume", good.to_str().unwrap()]);
    assert!(!ok && err.contains("amsgrad=false") && err.contains("amsgrad=true"), "{err}");

    // Shapes that do not fit the config: width 16 saved, width 32 configured.
    let wider = bn_digits_config(&d, 32);
    let (ok, _, err) = gradflow(&["train", "--config", wider.to_str().unwrap(), "--resume", good.to_str().unwrap()]);
    assert!(!ok && err.contains("'0.weight'") && err.contains("[16, 64]") && err.contains("[32, 64]"), "{err}");
    let (ok, _, err) = gradflow(&["train", "--config", wider.to_str().unwrap(), "--init", good.to_str().unwrap()]);
    assert!(!ok && err.contains("'0.weight'") && err.contains("[32, 64]"), "{err}");

    // A missing file, and a checkpoint from another optimizer.
    let (ok, _, err) = gradflow(&["train", "--config", cfg, "--resume", "/nonexistent/ck.safetensors"]);
    assert!(!ok && err.contains("/nonexistent/ck.safetensors"), "{err}");
    let (ok, _, err) =
        gradflow(&["train", "--config", cfg, "--set", "optimizer.type='sgd'", "--resume", good.to_str().unwrap()]);
    assert!(!ok && err.contains("adam") && err.contains("sgd"), "{err}");

    // No temporary file is left beside the checkpoint.
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn set_overrides_single_fields_and_names_bad_ones() {
    let d = dir("set");
    let config = bn_digits_config(&d, 16);
    let cfg = config.to_str().unwrap();
    let (ok, out, err) = gradflow(&[
        "train",
        "--cpu",
        "--config",
        cfg,
        "--set",
        "optimizer.lr=0.01",
        "--set",
        "train.epochs=1",
        "--max-steps",
        "1",
    ]);
    assert!(ok && out.contains("(lr=0.01"), "{out}\n{err}");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", cfg, "--set", "optimizer.lrr=0.01"]);
    assert!(!ok && err.contains("--set optimizer.lrr=0.01") && err.contains("lrr"), "{err}");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", cfg, "--set", "optimizer.lr"]);
    assert!(!ok && err.contains("KEY=VALUE"), "{err}");
}

/// A save killed between writing its temporary file and renaming it leaves `.NAME.tmp-PID`
/// beside the file; the next save to that path removes it, and leaves another path's alone.
#[test]
fn the_next_save_removes_what_an_interrupted_save_left() {
    let d = std::env::temp_dir().join(format!("gradflow-stale-save-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    // A process id no system hands out (Linux's pid_max is at most 2^22), written two hours ago
    // (where no /proc tells whether a writer is alive, an hour's silence does).
    let (stale, other) = (d.join(".m.safetensors.tmp-4294967295"), d.join(".o.safetensors.tmp-4294967295"));
    for f in [&stale, &other] {
        std::fs::write(f, b"half a file").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options().write(true).open(f).unwrap().set_modified(two_hours_ago).unwrap();
    }
    gradflow::checkpoint::write_atomic(&d.join("m.safetensors"), b"whole").unwrap();
    assert!(!stale.exists(), "the interrupted save's file is gone");
    assert!(other.exists(), "another path's is not touched");
    assert_eq!(std::fs::read(d.join("m.safetensors")).unwrap(), b"whole");
    std::fs::remove_dir_all(&d).unwrap();
}
