//! The command-line tool end to end: train with metrics and a plot, eval, predict (npy and CSV,
//! with the saved standardisation), check, and the data options' errors; and the commands'
//! bodies called from the library (`gradflow::cli`) without spawning the binary.

mod common;

use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("cli", name)
}

fn gradflow(args: &[&str]) -> (bool, String, String) {
    common::run_gradflow(args)
}

fn spirals_config(d: &Path, epochs: usize) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals.toml"))
        .unwrap()
        .replace("../data/spirals.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/spirals.csv"))
        .replace("epochs = 60", &format!("epochs = {epochs}"));
    let p = d.join("spirals.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn train_writes_metrics_and_a_plot_then_eval_and_predict_use_the_checkpoint() {
    let d = dir("flow");
    let cfg = spirals_config(&d, 12);
    let (cfg, ck) = (cfg.to_str().unwrap(), d.join("model.safetensors"));
    let (csv, jsonl, svg) = (d.join("m.csv"), d.join("m.jsonl"), d.join("plot.svg"));
    let (ok, out, err) = gradflow(&[
        "train",
        "--config",
        cfg,
        "--save",
        ck.to_str().unwrap(),
        "--metrics",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    // The progress bar stays quiet when stderr is not a terminal.
    assert!(!err.contains("epoch 1/12 ["), "{err}");

    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "step,epoch,loss,accuracy,test_loss,test_accuracy,lr,grad_norm,wall_s,sharpness,val_loss,val_accuracy"
    );
    assert_eq!(lines.len(), 13, "a header and one record per epoch");
    // The sharpness column is empty without --track-sharpness.
    assert!(lines[12].ends_with(','), "{}", lines[12]);
    let last: Vec<f64> = lines[12].split(',').take(9).map(|v| v.parse().unwrap()).collect();
    assert_eq!((last[0], last[1]), (12.0 * 15.0, 12.0), "step and epoch (15 steps an epoch)");
    assert!(last[5] > 0.8 && last[7] > 0.0 && last[6] == 0.01f32 as f64, "{:?}", last);

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("decision regions") && plot.contains("<polyline"));
    // Every data point, and one marker per class in the legend.
    assert_eq!(plot.matches("<circle").count(), 600 + 3, "every data point is drawn");

    // JSON lines, every 5 steps and every epoch.
    let (ok, out, err) = gradflow(&[
        "train",
        "--config",
        cfg,
        "--set",
        "train.epochs=2",
        "--metrics",
        jsonl.to_str().unwrap(),
        "--log-every",
        "5",
    ]);
    assert!(ok, "{out}\n{err}");
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 6 + 2, "30 steps logged every 5, and 2 epochs");
    assert!(records[0]["accuracy"].is_null() && records[0]["loss"].as_f64().unwrap() > 0.0);
    assert!(records[7]["test_accuracy"].as_f64().is_some() && records[7]["grad_norm"].as_f64().unwrap() > 0.0);

    // eval: loss, accuracy and a 3×3 confusion matrix whose entries add up to the test split.
    let (ok, out, err) = gradflow(&["eval", "--config", cfg, "--checkpoint", ck.to_str().unwrap()]);
    assert!(ok && out.contains("120 rows (test)") && out.contains("confusion matrix"), "{out}\n{err}");
    let matrix: usize = out
        .lines()
        .skip_while(|l| !l.starts_with("confusion"))
        .skip(2)
        .flat_map(|l| l.split_whitespace().skip(1).map(|v| v.parse::<usize>().unwrap()).collect::<Vec<_>>())
        .sum();
    assert_eq!(matrix, 120);

    // predict on the raw features (no label column): the saved standardisation is applied, so
    // the classes match the labels as well as training did.
    let data = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/spirals.csv")).unwrap();
    let features: String = data.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect();
    let labels: Vec<usize> = data.lines().skip(1).map(|l| l.rsplit_once(',').unwrap().1.parse().unwrap()).collect();
    std::fs::write(d.join("features.csv"), features).unwrap();
    let out_csv = d.join("pred.csv");
    // Standardised with the statistics saved in the checkpoint (predict reads no training data;
    // a --set data.standardize=false contradicting them is refused: tests/own_data.rs).
    let (ok, out, err) = gradflow(&[
        "predict",
        "--config",
        cfg,
        "--checkpoint",
        ck.to_str().unwrap(),
        "--input",
        d.join("features.csv").to_str().unwrap(),
        "--output",
        out_csv.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let pred = std::fs::read_to_string(&out_csv).unwrap();
    let classes: Vec<usize> = pred.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(classes.len(), 600);
    let right = classes.iter().zip(&labels).filter(|(a, b)| a == b).count();
    assert!(right > 540, "{right}/600 right: is the standardisation applied?");
    // The same as .npy: float32 logits [600, 3].
    let out_npy = d.join("pred.npy");
    let (ok, _, err) = gradflow(&[
        "predict",
        "--config",
        cfg,
        "--checkpoint",
        ck.to_str().unwrap(),
        "--input",
        d.join("features.csv").to_str().unwrap(),
        "--output",
        out_npy.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let a = gradflow::data::read_npy(&out_npy).unwrap();
    assert_eq!(a.shape, [600, 3]);
    // Wrong width of input.
    std::fs::write(d.join("bad.csv"), "1,2,3\n4,5,6\n").unwrap();
    let (ok, _, err) = gradflow(&[
        "predict",
        "--config",
        cfg,
        "--checkpoint",
        ck.to_str().unwrap(),
        "--input",
        d.join("bad.csv").to_str().unwrap(),
        "--output",
        out_csv.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("bad.csv") && err.contains("features"), "{err}");
}

#[test]
fn check_runs_every_kernel_against_the_reference() {
    common::require_gpu!();
    let (ok, out, err) = gradflow(&["check"]);
    assert!(ok, "{out}\n{err}");
    for op in [
        "linear_forward",
        "linear_backward_weight",
        "activation_backward gelu",
        "cross_entropy grad",
        "batchnorm_backward dx",
        "residual_add",
        "adam_update",
    ] {
        assert!(out.contains(op), "check covers {op}: {out}");
    }
    assert!(out.contains("all within bounds") && !out.contains("FAIL"), "{out}");
}

#[test]
fn data_options_and_their_errors() {
    let d = dir("data");
    let base = |label: &str, extra: &str| {
        format!(
            "[data]\npath = 'd.csv'\nlabel_column = {label}\ntest_fraction = 0.0\n{extra}\n[model]\nlayers = [{{ type = 'linear', out = 2 }}]\n[optimizer]\ntype = 'sgd'\nlr = 0.1\n[train]\nepochs = 1\nbatch_size = 2\n"
        )
    };
    std::fs::write(d.join("d.csv"), "a,kind,b\n0.5,1,2\n1.5,0,3\n2.5,1,4\n").unwrap();
    let run = |name: &str, text: String| {
        std::fs::write(d.join(name), text).unwrap();
        gradflow(&["train", "--cpu", "--config", d.join(name).to_str().unwrap()])
    };
    let (ok, out, err) = run("by_name.toml", base("'kind'", ""));
    assert!(ok && out.contains("3 train / 0 test rows, 2 features (a, b), 2 classes"), "{out}\n{err}");
    let (ok, _, err) = run("missing.toml", base("'type'", ""));
    assert!(
        !ok && err.contains("no column named 'type'") && err.contains("a, kind, b") && err.contains("line 1"),
        "{err}"
    );
    std::fs::write(d.join("d.csv"), "0.5,1,2\n1.5,0,3\n").unwrap();
    let (ok, _, err) = run("no_header.toml", base("'kind'", "header = false"));
    assert!(!ok && err.contains("'kind'") && err.contains("no header"), "{err}");
    // NaN in a feature: an error naming the line, unless the config drops such rows.
    std::fs::write(d.join("d.csv"), "a,kind,b\n0.5,1,2\nnan,0,3\n2.5,1,4\n1.0,0,inf\n").unwrap();
    let (ok, _, err) = run("nan.toml", base("'kind'", ""));
    assert!(!ok && err.contains("d.csv, line 3") && err.contains("NaN") && err.contains("drop-row"), "{err}");
    let (ok, out, err) = run("drop.toml", base("'kind'", "non_finite = 'drop-row'"));
    assert!(ok && out.contains("2 train / 0 test rows"), "{out}\n{err}");
    let (ok, _, err) = run("typo.toml", base("'kind'", "non_finite = 'skip'"));
    assert!(!ok && err.contains("non_finite") && err.contains("drop-row"), "{err}");
    std::fs::write(d.join("d.csv"), "0.5,1,2\n1.5,0,3\n").unwrap();
    // header = true takes the first row as names even when it is numeric.
    // (One row of class 0 is left: num_classes says the model's two outputs are right.)
    let forced = base("1", "header = true\nnum_classes = 2").replace("batch_size = 2", "batch_size = 1");
    let (ok, out, err) = run("forced.toml", forced);
    assert!(ok && out.contains("1 train / 0 test rows"), "{out}\n{err}");
}

/// `gradflow hessian` on a trained digits model: its loss is the model's loss on the training
/// split (the same function eval computes, no batch norm), the extremes are ordered, and the
/// density is drawn.
#[test]
fn hessian_reports_the_spectrum_of_a_saved_model() {
    let d = dir("hessian");
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");
    let (ck, svg) = (d.join("digits.safetensors"), d.join("density.svg"));
    let (ok, out, err) =
        gradflow(&["train", "--cpu", "--config", cfg, "--epochs", "2", "--save", ck.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let ck = ck.to_str().unwrap();
    let (ok, out, err) = gradflow(&[
        "hessian",
        "--config",
        cfg,
        "--checkpoint",
        ck,
        "--steps",
        "8",
        "--probes",
        "1",
        "--k",
        "2",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("17226 parameters") && out.contains("no batch norm"), "{out}");
    let after = |prefix: &str| -> Vec<f64> {
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' in {out}"));
        line[prefix.len()..]
            .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
            .filter_map(|t| t.parse::<f64>().ok())
            .collect()
    };
    let loss = after("loss ")[0];
    let (smallest, largest) = (after("smallest eigenvalues (8 Lanczos steps): "), after("largest eigenvalues: "));
    assert_eq!((smallest.len(), largest.len()), (2, 2), "{out}");
    assert!(smallest[0] <= smallest[1] && smallest[1] <= largest[0] && largest[0] <= largest[1], "{out}");
    // Cross-entropy's Hessian is positive semi-definite in the logits, so the top of the spectrum
    // (the curvature the optimizer sees) is positive.
    assert!(largest[1] > 0.0, "{out}");
    let (ok, eval, err) = gradflow(&["eval", "--config", cfg, "--checkpoint", ck, "--split", "train"]);
    assert!(ok, "{eval}\n{err}");
    let eval_loss: f64 = eval.split("loss ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap();
    // eval runs in f32 and prints 4 decimals; the Hessian's f64 loss must round to it.
    assert!((loss - eval_loss).abs() <= 6e-5, "hessian loss {loss} vs eval {eval_loss}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("<polyline") && plot.contains("spectral density"));
}

/// A model of ≤ 400 parameters is also decomposed exactly: its extremes agree with Lanczos'.
#[test]
fn hessian_of_a_small_model_prints_the_exact_spectrum() {
    let d = dir("hessian-small");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml"))
        .unwrap()
        .replace("../data/digits.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"));
    let start = text.find("layers = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let text = format!(
        "{}layers = [{{ type = \"linear\", out = 4 }}, {{ type = \"tanh\" }}, {{ type = \"linear\", out = 10 }}]{}",
        &text[..start],
        &text[end..]
    );
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, text).unwrap();
    let (cfg, ck) = (cfg.to_str().unwrap(), d.join("tiny.safetensors"));
    let (ok, out, err) =
        gradflow(&["train", "--cpu", "--config", cfg, "--epochs", "3", "--save", ck.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = gradflow(&[
        "hessian",
        "--config",
        cfg,
        "--checkpoint",
        ck.to_str().unwrap(),
        "--steps",
        "60",
        "--probes",
        "2",
        "--k",
        "1",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("310 parameters") && out.contains("exact (all 310 eigenvalues"), "{out}");
    let numbers = |prefix: &str| -> Vec<f64> {
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' in {out}"));
        line.split(|c: char| c.is_whitespace() || c == ';' || c == '…' || c == ':')
            .filter_map(|t| t.parse::<f64>().ok())
            .collect()
    };
    let low = *numbers("smallest eigenvalues").last().unwrap();
    let high = numbers("largest eigenvalues")[0];
    let exact = numbers("exact (all");
    let (e_low, e_high) = (exact[exact.len() - 2], exact[exact.len() - 1]);
    // 60 steps on 310 coordinates converge the extremes; both are printed to 5 significant digits.
    assert!((low - e_low).abs() <= 1e-4 * e_high.abs() && (high - e_high).abs() <= 1e-4 * e_high.abs(), "{out}");
}

/// `gradflow compare`: every entry starts from the same weights (the same loss before any step),
/// an entry equal to the config's own optimizer reproduces `gradflow train` exactly, and bad
/// entries are refused with the reason.
#[test]
fn compare_trains_each_optimizer_from_the_same_start() {
    compare_on(Some("--cpu"));
}

/// The same on the GPU: `compare` and `train` build the same launches, so the numbers agree there too.
#[test]
fn compare_on_the_gpu_matches_train_on_the_gpu() {
    common::require_gpu!();
    compare_on(None);
}

/// The compare test with `placement` ("--cpu", or None for the best adapter).
fn compare_on(placement: Option<&str>) {
    let d = dir(&format!("compare{}", placement.unwrap_or("-gpu")));
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");
    let svg = d.join("compare.svg");
    let spec = "config,adam(lr=0.002, betas=[0.8, 0.99]),sgd(batching=\"replacement\"),gd";
    let mut args = vec!["compare", "--config", cfg, "--epochs", "3", "--optimizers", spec, "--plot"];
    args.extend([svg.to_str().unwrap()].into_iter().chain(placement));
    let (ok, out, err) = gradflow(&args);
    assert!(ok, "{out}\n{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("start loss")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    // Every run's full settings, the presets at the config's lr (0.05) unless the entry sets one.
    for settings in [
        "sgd(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=false)",
        "adam(lr=0.002, betas=[0.8, 0.99], eps=1e-8, weight_decay=0.0, amsgrad=false)",
        "sgd(lr=0.05, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=false, batching=\"replacement\")",
        "sgd(lr=0.05, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=false, batching=\"full-batch\")",
    ] {
        assert!(out.lines().any(|l| l.trim_end().ends_with(settings)), "{settings}\n{out}");
    }
    assert!(rows[0].starts_with("config: sgd(lr=0.05, momentum=0.9) "), "{out}");
    let field = |line: &str, key: &str| -> f64 {
        line.split(key).nth(1).and_then(|t| t.split_whitespace().next()).unwrap().trim_end_matches('%').parse().unwrap()
    };
    let start = field(rows[0], "start loss");
    assert!(rows.iter().all(|r| field(r, "start loss") == start), "{out}");
    // `config` is the digits config's own optimizer (SGD, lr 0.05, momentum 0.9).
    let mut args = vec!["train", "--config", cfg, "--epochs", "3"];
    args.extend(placement);
    let (ok, train, err) = gradflow(&args);
    assert!(ok, "{train}\n{err}");
    let last_epoch = train.lines().find(|l| l.starts_with("epoch   3/3")).unwrap();
    assert_eq!(field(rows[0], "final train loss"), field(last_epoch, "loss"), "{out}\n{train}");
    assert_eq!(field(rows[0], "test acc"), field(last_epoch, "test acc"), "{out}\n{train}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("Training loss") && plot.contains("adam(lr=0.002, betas=[0.8, 0.99])"));
    for (spec, why) in [
        ("sgd,lion", "unknown entry 'lion'"),
        ("adam(lr=0.1", "without its ')'"),
        (
            "adam(betas=3)",
            "entry 'adam(betas=3)': betas=3: expected an array of length 2, found 3; write it as betas=[0.9, 0.999]",
        ),
        ("adam(foo=1)", "entry 'adam(foo=1)': foo=1: unknown field `foo`"),
        ("adam(lr)", "'lr' is not a setting; write name=value"),
        ("adam(lr=0.1, lr=0.2)", "lr is given twice"),
        ("sgd(batching=\"sometimes\")", "unknown batching 'sometimes'"),
    ] {
        let (ok, out, err) = gradflow(&["compare", "--cpu", "--config", cfg, "--epochs", "1", "--optimizers", spec]);
        assert!(!ok && err.contains(why), "{spec}: {out}\n{err}");
        assert!(!out.contains("start loss"), "{spec}: refused before any training\n{out}");
    }
}

/// The command bodies are library functions (`gradflow::cli`): train on the CPU in this process,
/// stopped by the step budget and by a signal, resume to the end, then evaluate the checkpoint;
/// the evaluation prints exactly what `gradflow eval` prints.
#[test]
fn command_bodies_run_from_the_library() {
    use gradflow::checkpoint::Progress;
    use gradflow::cli::{self, EvalArgs, TrainArgs};
    use gradflow::train::session::Ending;
    use std::sync::atomic::AtomicUsize;

    let d = dir("library");
    let cfg = spirals_config(&d, 3);
    let ck = d.join("model.safetensors");
    let cpu = gradflow::train::Placement { cpu: true, ..Default::default() };
    let (config, _) = cli::load_config(Some(cfg.clone()), &[]).unwrap();
    let saved = || {
        let model = gradflow::spec::Model::new(2, config.model.layers.clone()).unwrap();
        gradflow::checkpoint::load(&ck, &model, &config.optimizer).unwrap().progress
    };
    let train = |args: TrainArgs, signal: usize| {
        let args = TrainArgs { config: Some(cfg.clone()), save: Some(ck.clone()), ..args };
        cli::train::train_until(args, &cpu, false, &gradflow::dist::Single, &AtomicUsize::new(signal))
    };

    // 15 steps an epoch: step 40 is batch 10 of epoch 3.
    assert_eq!(train(TrainArgs { max_steps: Some(40), ..Default::default() }, 0).unwrap(), Ending::StepBudget);
    assert_eq!(saved(), Progress { steps: 40, epoch: 2, batch: 10 });
    // A signal already received stops the resumed run before its first step.
    let resume = || TrainArgs { resume: Some(ck.clone()), ..Default::default() };
    assert_eq!(train(resume(), 15).unwrap(), Ending::Signalled { signal: 15 });
    assert_eq!(saved(), Progress { steps: 40, epoch: 2, batch: 10 });
    assert_eq!(train(resume(), 0).unwrap(), Ending::Finished);
    assert_eq!(saved(), Progress { steps: 45, epoch: 3, batch: 0 });
    assert_eq!(
        train(resume(), 0).unwrap(),
        Ending::NothingToDo(
            "the checkpoint has finished epoch 3 of train.epochs = 3 (raise --epochs to train on)".into()
        )
    );

    let args = EvalArgs { config: Some(cfg.clone()), checkpoint: ck.clone(), split: "all".into(), set: vec![] };
    let e = cli::eval::evaluate(&args, &cpu, false).unwrap();
    assert_eq!((e.rows, e.split.as_str(), e.device.as_str()), (600, "all", "CPU reference"));
    assert_eq!(e.confusion.len(), 3, "three arms");
    assert_eq!(e.confusion.iter().flatten().sum::<usize>(), 600, "{:?}", e.confusion);
    assert_eq!((0..3).map(|c| e.confusion[c][c]).sum::<usize>(), e.correct, "{:?}", e.confusion);
    assert!(e.loss.is_finite() && e.loss > 0.0 && e.correct > 0, "{e}");
    let (ok, out, err) = gradflow(&[
        "eval",
        "--cpu",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        ck.to_str().unwrap(),
        "--split",
        "all",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out, e.to_string());

    let bad = cli::eval::evaluate(&EvalArgs { split: "validation".into(), ..args }, &cpu, false).unwrap_err();
    assert_eq!(bad.to_string(), "--split validation: use test, train or all");

    // One entry of three lines per adapter wgpu sees, or the line saying there is none.
    let adapters = gradflow::device::list_adapters().len();
    let listing = cli::devices::listing().unwrap();
    if adapters == 0 {
        assert!(listing.starts_with("no adapters"), "{listing}");
    } else {
        assert!(listing.starts_with("0: ") && listing.lines().count() == 3 * adapters, "{listing}");
    }
}

/// `compare` says in its header when its runs train one after another, and why.
#[test]
fn compare_says_why_its_runs_train_one_after_another() {
    common::require_gpu!();
    let small = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals_small.toml");
    let digits = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml");
    let run = |cfg: &str, extra: &[&str]| {
        let mut args = vec!["compare", "--config", cfg, "--epochs", "1", "--optimizers", "sgd,adam"];
        args.extend(extra);
        let (ok, out, err) = gradflow(&args);
        assert!(ok, "{out}\n{err}");
        out
    };
    let out = run(small, &["--one-by-one"]);
    assert!(out.contains("runs: one after another (--one-by-one)"), "{out}");
    // The digits model: 3·32·(64·128 + 128·64 + 64·10) multiply-adds a step, past any adapter's
    // side-by-side limit for these few runs (12,288 on a CPU adapter, 200,000 a run on a GPU).
    let out = run(digits, &[]);
    assert!(out.contains("runs: one after another (a step is 1634304 multiply-adds, past the"), "{out}");
    let out = run(small, &[]);
    assert!(out.contains("2 runs side by side") && !out.contains("runs: one after another"), "{out}");
}

/// `gradflow train | head`: the reader closes standard output after a few lines. The run goes
/// on to the end without a panic and writes its save; the same for a command that prints a
/// table (eval) and one that prints as it measures (check's first lines).
#[test]
fn a_closed_standard_output_never_panics_or_loses_the_save() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let d = dir("closed-stdout");
    // Enough epochs that most lines come after the pipe is closed.
    let cfg = spirals_config(&d, 300);
    let save = d.join("model.safetensors");
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradflow"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gradflow");
        // Read one line's worth, then close the pipe as `head -1` would.
        let mut first = [0u8; 16];
        let _ = child.stdout.take().unwrap().read(&mut first);
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status}\n{err}");
        for text in ["panicked", "Broken pipe", "RUST_BACKTRACE"] {
            assert!(!err.contains(text), "{args:?}: {text:?} in\n{err}");
        }
    };
    let (cfg, save_s) = (cfg.to_str().unwrap(), save.to_str().unwrap());
    run(&["train", "--cpu", "--config", cfg, "--save", save_s]);
    let loaded = safetensors::SafeTensors::deserialize(&std::fs::read(&save).unwrap()).map(|t| t.len()).unwrap();
    assert!(loaded > 0, "the save holds the model's tensors");
    run(&["eval", "--cpu", "--config", cfg, "--checkpoint", save_s]);
}

/// `--help` explains every option of every command: each argument has its own help text.
#[test]
fn every_option_of_every_command_has_help_text() {
    use clap::CommandFactory;
    let cli = gradflow::cli::Cli::command();
    let mut missing = Vec::new();
    for command in std::iter::once(&cli).chain(cli.get_subcommands()) {
        for arg in command.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() && !matches!(arg.get_id().as_str(), "help" | "version") {
                missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "options without help text: {missing:?}");
}

/// Each command offers only the options that mean something for it: `check` measures a GPU
/// against the CPU reference (no `--cpu`), `devices` lists adapters (neither), and `--non-strict`
/// belongs to the commands that load a state dict. `gradflow` alone still takes the device options.
#[test]
fn options_are_offered_only_by_the_commands_they_apply_to() {
    use clap::Parser;
    use gradflow::cli::{Cli, Command};
    let refused = |args: &[&str], option: &str| {
        let e = Cli::try_parse_from(std::iter::once("gradflow").chain(args.iter().copied())).err();
        let text = e.map(|e| e.to_string()).unwrap_or_else(|| panic!("{args:?} was accepted"));
        assert!(text.contains(&format!("unexpected argument '{option}'")), "{args:?}: {text}");
    };
    refused(&["check", "--cpu"], "--cpu");
    refused(&["devices", "--cpu"], "--cpu");
    refused(&["devices", "--adapter", "x"], "--adapter");
    refused(&["bench", "--cpu"], "--cpu");
    for command in ["compare", "sweep", "check", "bench"] {
        refused(&[command, "--non-strict"], "--non-strict");
    }
    // Before a command's name they were global flags; now that is refused, naming both.
    let e = Cli::try_parse_from(["gradflow", "--cpu", "check"]).err().expect("--cpu check accepted").to_string();
    assert!(e.contains("'check' cannot be used with '--cpu'"), "{e}");
    let parsed = |args: &[&str]| Cli::try_parse_from(std::iter::once("gradflow").chain(args.iter().copied())).unwrap();
    assert!(parsed(&["--cpu"]).device.cpu, "gradflow alone trains the default run, on the CPU with --cpu");
    match parsed(&["check", "--adapter", "lavapipe"]).command {
        Some(Command::Check { adapter }) => assert_eq!(adapter.placement().adapter.as_deref(), Some("lavapipe")),
        _ => panic!("check"),
    }
    match parsed(&["train", "--cpu", "--non-strict", "--init", "a.safetensors"]).command {
        Some(Command::Train { device, load, .. }) => assert!(device.placement().cpu && load.non_strict),
        _ => panic!("train"),
    }
    match parsed(&["eval", "--adapter", "gl", "--checkpoint", "a.safetensors"]).command {
        Some(Command::Eval { device, load, .. }) => {
            assert_eq!((device.adapter.as_deref(), load.non_strict), (Some("gl"), false))
        }
        _ => panic!("eval"),
    }
}

/// `compare`'s default list starts with the config's own optimizer, and that run is `train`'s
/// to the bit on the CPU path: every epoch's numbers equal the metrics `train` writes for the
/// same config (spirals: Adam at lr 0.01, which the old presets silently replaced with 0.001).
#[test]
fn compare_config_entry_is_train_to_the_bit() {
    use gradflow::cli::{self, TrainArgs};
    use gradflow::train::{compare, side_by_side, Placement};
    use std::sync::atomic::AtomicUsize;
    let d = dir("compare-config-bits");
    let cfg = spirals_config(&d, 3);
    let cpu = Placement { cpu: true, ..Default::default() };
    let (config, file) = cli::load_config(Some(cfg.clone()), &[]).unwrap();
    let (train_set, test_set) = gradflow::train::load_data(&config, &file).unwrap();
    let runs = compare::parse_contenders(&config, compare::DEFAULT_ENTRIES).unwrap();
    assert_eq!(runs[0].label, "config: adam(lr=0.01)");
    let adam = runs.iter().find(|r| r.label == "adam").unwrap();
    assert_eq!(
        compare::settings(&config, &adam.config),
        "adam(lr=0.01, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=false)"
    );
    // As `compare --cpu` trains several runs: one per core.
    let done = side_by_side::run_on_cpu_threads(&runs[..2], &train_set, &test_set, &cpu).unwrap();
    let metrics = d.join("train.csv");
    let args = TrainArgs { config: Some(cfg), metrics: Some(metrics.clone()), ..Default::default() };
    cli::train::train_until(args, &cpu, false, &gradflow::dist::Single, &AtomicUsize::new(0)).unwrap();
    let text = std::fs::read_to_string(&metrics).unwrap();
    let epochs: Vec<Vec<f64>> =
        text.lines().skip(1).map(|l| l.split(',').skip(2).take(4).map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(epochs.len(), 3, "{text}");
    for (p, want) in done[0].points[1..].iter().zip(&epochs) {
        assert_eq!(&[p.train_loss, p.train_accuracy, p.test_loss, p.test_accuracy][..], &want[..], "epoch {}", p.epoch);
    }
}

/// Printing never changes computing: `--quiet`, `--log-interval`, `--metrics` with `--log-every`
/// (which reads each logged step's loss back) and `--plot` leave every tensor of the checkpoint
/// bit-identical, on the CPU path and on the GPU; `--metrics` records every epoch whatever prints.
#[test]
fn printing_options_never_change_the_checkpoint() {
    let d = dir("printing");
    let cfg = spirals_config(&d, 4);
    let cfg = cfg.to_str().unwrap();
    let tensors = common::checkpoint_tensors;
    for cpu in [true, false] {
        if !cpu && !common::gpu_part!() {
            continue;
        }
        let tag = if cpu { "cpu" } else { "gpu" };
        let train = |name: &str, extra: &[&str]| {
            let save = d.join(format!("{tag}-{name}.safetensors"));
            let mut args = vec!["train", "--config", cfg, "--save", save.to_str().unwrap()];
            args.extend(cpu.then_some("--cpu"));
            args.extend(extra);
            let (ok, out, err) = gradflow(&args);
            assert!(ok, "{args:?}\n{out}\n{err}");
            (tensors(&save), out)
        };
        let (plain, plain_out) = train("plain", &[]);
        assert_eq!(plain_out.lines().filter(|l| l.starts_with("epoch ")).count(), 4, "{plain_out}");
        // The spirals run's rate is constant: said once, in the optimizer line.
        assert!(
            plain_out.contains("optimizer: Adam(lr=0.01); lr constant") && !plain_out.contains("  lr "),
            "{plain_out}"
        );
        let (quiet, out) = train("quiet", &["--quiet"]);
        assert_eq!(out.lines().collect::<Vec<_>>().len(), 1, "only the summary: {out}");
        assert!(out.starts_with("test accuracy "), "{out}");
        let (sparse, out) = train("interval", &["--log-interval", "3"]);
        let shown: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch ")).map(|l| &l[..9]).collect();
        assert_eq!(shown, ["epoch   1", "epoch   3", "epoch   4"], "first, every 3rd, last: {out}");
        let metrics = d.join(format!("{tag}.csv"));
        let svg = d.join(format!("{tag}.svg"));
        let (logged, _) = train(
            "logged",
            &["--metrics", metrics.to_str().unwrap(), "--log-every", "5", "--plot", svg.to_str().unwrap(), "--quiet"],
        );
        // 15 steps an epoch: step records at 5, 10 and 15, and the epoch's own (after the header).
        let text = std::fs::read_to_string(&metrics).unwrap();
        assert_eq!(text.lines().count(), 1 + 4 * 4, "{text}");
        assert_eq!(text.lines().filter(|l| !l.split(',').nth(3).unwrap_or("").is_empty()).count(), 1 + 4, "{text}");
        for (name, other) in
            [("--quiet", &quiet), ("--log-interval", &sparse), ("--metrics --log-every --plot", &logged)]
        {
            assert!(other == &plain, "{tag}: {name} changed the checkpoint");
        }
    }
}

/// `--quiet`: compare prints each run's line and nothing else; sweep prints its table alone.
#[test]
fn compare_and_sweep_quiet_print_only_their_results() {
    let small = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals_small.toml");
    let (ok, out, err) =
        gradflow(&["compare", "--cpu", "--config", small, "--epochs", "1", "--optimizers", "sgd,adam", "--quiet"]);
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("sgd ") && lines[1].starts_with("adam "), "{out}");
    assert!(lines.iter().all(|l| l.contains("final train loss")), "{out}");
    let grid = "optimizer.lr=[0.01,0.1]";
    let (ok, out, err) = gradflow(&["sweep", "--cpu", "--config", small, "--epochs", "1", "--grid", grid, "--quiet"]);
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and a row per setting:\n{out}");
    assert!(
        lines[0].starts_with("setting") && lines[1].starts_with("lr=0.01") && lines[2].starts_with("lr=0.1"),
        "{out}"
    );
}
