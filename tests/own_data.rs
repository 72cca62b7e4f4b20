//! Training on one's own data with no config, and checkpoints that describe their model: the
//! user's view (`gradflow train data.csv`, then eval, predict and hessian with only
//! `--checkpoint`), read from what the commands print and write.

mod common;

use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("own", name)
}

fn gradflow(args: &[&str]) -> (bool, String, String) {
    common::run_gradflow(args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// XOR in the plane with named classes: "same" where the signs agree, "diff" elsewhere; a
/// deterministic grid, so the file needs no random generator.
fn xor_csv(d: &Path) -> PathBuf {
    let mut text = String::from("x1,x2,label\n");
    for i in 0..20 {
        for j in 0..20 {
            let (a, b) = (i as f32 / 9.5 - 1.0, j as f32 / 9.5 - 1.0);
            text += &format!("{a},{b},{}\n", if a * b > 0.0 { "same" } else { "diff" });
        }
    }
    let p = d.join("xor.csv");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_csv_alone_trains_and_the_checkpoint_alone_evaluates_predicts_and_gives_a_hessian() {
    let d = dir("flow");
    let (data, ck) = (xor_csv(&d), d.join("xor.safetensors"));
    let (ok, out, err) = gradflow(&["train", "--cpu", s(&data), "--epochs", "40", "--save", s(&ck)]);
    assert!(ok, "{out}\n{err}");
    // The header says what was chosen: the label column by its name, the classes by theirs
    // (sorted), the features by the header's names, a last layer as wide as the classes.
    assert!(
        out.contains("no config: for") && out.contains("chose label column 'label' (2 classes: diff, same)"),
        "{out}"
    );
    assert!(out.contains("2 features (x1, x2), 2 classes: diff, same"), "{out}");
    assert!(out.contains("model: 2 → Linear(64)+relu ×2 → Linear(2)"), "{out}");
    let accuracy = |text: &str| -> f64 {
        let at = text.find("accuracy ").unwrap() + "accuracy ".len();
        text[at..].split('%').next().unwrap().parse().unwrap()
    };
    assert!(accuracy(out.lines().last().unwrap().split("test ").nth(1).unwrap()) > 85.0, "{out}");

    // eval with only the checkpoint: the same data and split, the classes by name.
    let (ok, eval, err) = gradflow(&["eval", "--cpu", "--checkpoint", s(&ck)]);
    assert!(ok, "{eval}\n{err}");
    assert!(eval.starts_with("80 rows (test)"), "{eval}");
    let header = eval.lines().find(|l| l.contains("diff") && l.contains("same")).unwrap();
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["diff", "same"], "{eval}");

    // predict with only the checkpoint: standardised as in training, classes by name.
    let (rows, out_csv) = (d.join("rows.csv"), d.join("out.csv"));
    std::fs::write(&rows, "x1,x2\n0.8,0.7\n-0.8,0.7\n-0.6,-0.9\n").unwrap();
    let (ok, said, err) =
        gradflow(&["predict", "--cpu", "--checkpoint", s(&ck), "--input", s(&rows), "--output", s(&out_csv)]);
    assert!(ok, "{said}\n{err}");
    let text = std::fs::read_to_string(&out_csv).unwrap();
    let predicted: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(text.lines().next().unwrap(), "predicted,logit_diff,logit_same");
    assert_eq!(predicted, ["same", "diff", "same"], "{text}");

    // hessian with only the checkpoint: the training split of the same data.
    let (ok, h, err) =
        gradflow(&["hessian", "--cpu", "--checkpoint", s(&ck), "--k", "2", "--steps", "10", "--probes", "1"]);
    assert!(ok, "{h}\n{err}");
    assert!(h.contains("320 rows") && h.contains("4482 parameters"), "{h}");
}

#[test]
fn settings_that_contradict_the_checkpoint_are_refused() {
    let d = dir("contradict");
    let (data, ck) = (xor_csv(&d), d.join("xor.safetensors"));
    let (ok, out, err) = gradflow(&["train", "--cpu", s(&data), "--epochs", "1", "--save", s(&ck)]);
    assert!(ok, "{out}\n{err}");
    let (ok, _, err) = gradflow(&["eval", "--cpu", "--checkpoint", s(&ck), "--set", "data.standardize=false"]);
    assert!(!ok);
    assert!(
        err.contains("--set data.standardize=false contradicts")
            && err.contains("data.standardize is true in the checkpoint, false here"),
        "{err}"
    );
    let (ok, _, err) = gradflow(&[
        "predict",
        "--cpu",
        "--checkpoint",
        s(&ck),
        "--set",
        "data.scale=2",
        "--input",
        s(&data),
        "--output",
        s(&d.join("o.npy")),
    ]);
    assert!(!ok && err.contains("data.scale is 1 in the checkpoint, 2 here"), "{err}");
    let digits = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");
    let (ok, _, err) = gradflow(&["eval", "--cpu", "--checkpoint", s(&ck), "--config", digits]);
    assert!(!ok && err.contains("contradicts") && err.contains("model.layers[0] is { out = 64, type = \"linear\" } in the checkpoint, { out = 128, type = \"linear\" } here"), "{err}");
    // A setting that does not change what the model is may be given: another split.
    let (ok, out, err) = gradflow(&["eval", "--cpu", "--checkpoint", s(&ck), "--split", "train"]);
    assert!(ok && out.starts_with("320 rows (train)"), "{out}\n{err}");
}

#[test]
fn a_state_dict_without_a_description_needs_its_config() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden/train_mlp_bn_adamw.safetensors");
    let (ok, _, err) = gradflow(&["eval", "--cpu", "--checkpoint", golden]);
    assert!(!ok);
    assert!(err.contains("does not say which model it holds") && err.contains("--config FILE"), "{err}");
}

#[test]
fn a_model_whose_last_layer_is_not_the_data_s_classes_is_refused() {
    let d = dir("width");
    let data = xor_csv(&d);
    // The digits run's 10 outputs on XOR's two classes trained silently to chance before.
    let set = format!("data.path={}", s(&data));
    let (ok, _, err) =
        gradflow(&["train", "--cpu", "--set", &set, "--set", "data.label_column=label", "--epochs", "1"]);
    assert!(!ok);
    assert!(
        err.contains("the model's last layer has 10 outputs but the data has 2 classes (the class names in")
            && err.contains("set the last layer's out = 2"),
        "{err}"
    );
    // Numbered classes: the hint names data.num_classes for classes that never occur.
    let nums = d.join("nums.csv");
    std::fs::write(&nums, "a,b,c\n1,2,0\n2,3,1\n3,1,0\n1,1,1\n2,2,0\n").unwrap();
    let (ok, _, err) =
        gradflow(&["train", "--cpu", s(&nums), "--epochs", "1", "--set", "model.layers=[{type=\"linear\",out=3}]"]);
    assert!(!ok);
    assert!(err.contains("has 3 outputs but the data has 2 classes (labels 0 to 1 in"), "{err}");
    assert!(err.contains("set data.num_classes = 3 if the data has 3 classes of which some never occur"), "{err}");
    let (ok, out, err) = gradflow(&[
        "train",
        "--cpu",
        s(&nums),
        "--epochs",
        "1",
        "--set",
        "model.layers=[{type=\"linear\",out=3}]",
        "--set",
        "data.num_classes=3",
    ]);
    assert!(ok, "{out}\n{err}");
}

#[test]
fn npy_features_with_labels_train_alone_and_the_wrong_combinations_are_explained() {
    let d = dir("npy");
    let (x, y) = (d.join("x.npy"), d.join("y.npy"));
    let rows: Vec<f32> = (0..60).flat_map(|i| [i as f32 / 60.0, 1.0 - i as f32 / 30.0]).collect();
    gradflow::data::write_npy_f32(&x, &[60, 2], &rows).unwrap();
    // Integer labels as numpy writes them (int64): three classes by thirds.
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<i8', 'fortran_order': False, 'shape': (60,), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend((0..60i64).flat_map(|i| (i / 20).to_le_bytes()));
    std::fs::write(&y, npy).unwrap();
    let (ok, out, err) = gradflow(&["train", "--cpu", s(&x), "--labels", s(&y), "--epochs", "2"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("chose labels from --labels (3 classes)") && out.contains("→ Linear(3)"), "{out}");
    let (ok, _, err) = gradflow(&["train", "--cpu", s(&x)]);
    assert!(!ok && err.contains("is a .npy array of features: give its labels too, --labels FILE.npy"), "{err}");
    let csv = xor_csv(&d);
    let (ok, _, err) = gradflow(&["train", "--cpu", s(&csv), "--labels", s(&y)]);
    assert!(!ok && err.contains("--labels is for .npy features"), "{err}");
    let (ok, _, err) =
        gradflow(&["train", "--cpu", s(&csv), "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml")]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

/// Labels numbered from 1 leave class 0 an output nothing trains: said, not silent; an explicit
/// data.num_classes says it is meant.
#[test]
fn classes_that_never_occur_are_said() {
    let d = dir("missing");
    let data = d.join("from_one.csv");
    std::fs::write(&data, "a,b,label\n1,2,1\n2,3,2\n3,1,1\n1,1,2\n2,2,1\n").unwrap();
    let (ok, out, err) = gradflow(&["train", "--cpu", s(&data), "--epochs", "1", "--set", "data.test_fraction=0"]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("warning: class 0 never occurs in the training data"), "{err}");
    let (ok, out, err) = gradflow(&[
        "train",
        "--cpu",
        s(&data),
        "--epochs",
        "1",
        "--set",
        "data.test_fraction=0",
        "--set",
        "data.num_classes=3",
    ]);
    assert!(ok && !err.contains("never occur"), "{out}\n{err}");
}

/// `gradflow train run.toml` is the config's run, the same as `--config run.toml`; --labels with
/// it is refused, since a config names its own labels.
#[test]
fn a_toml_given_as_data_is_the_config() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/linear_noise.toml");
    let (ok, as_data, err) = gradflow(&["train", config, "--cpu", "--epochs", "1"]);
    assert!(ok, "{err}");
    let (ok, as_config, err) = gradflow(&["train", "--config", config, "--cpu", "--epochs", "1"]);
    assert!(ok, "{err}");
    // The closing line holds the run's numbers; throughput differs from run to run.
    let closing = |out: &str| out.lines().last().unwrap_or("").split(';').next().unwrap_or("").to_string();
    assert!(closing(&as_data).starts_with("test RMSE"), "{as_data}");
    assert_eq!(closing(&as_data), closing(&as_config));
    let (ok, _, err) = gradflow(&["train", config, "--labels", "y.npy", "--cpu"]);
    assert!(!ok && err.contains("--labels is for .npy data"), "{err}");
}
