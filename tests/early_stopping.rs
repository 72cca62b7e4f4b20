//! Early stopping on a validation split: the split's rows are apart from the training and test
//! rows and standardised with the training rows' statistics; a run stops at the first epoch
//! `patience` epochs after its best, recomputed from its own metrics file; `--save-best` holds
//! exactly the best epoch's state; and the options that cannot work are refused by name.

use std::path::{Path, PathBuf};
use std::process::Output;

use gradflow::config::Config;
use gradflow::train::{load_split, Standardize};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-early-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gradflow(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gradflow")).args(args).output().expect("run gradflow")
}

fn ok(args: &[&str]) -> String {
    let out = gradflow(args);
    assert!(out.status.success(), "gradflow {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(args: &[&str]) -> String {
    let out = gradflow(args);
    assert!(!out.status.success(), "gradflow {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rows` rows: feature `id` is the row's number (so a row is known wherever it lands), `x` a
/// fixed LCG draw in [−2, 2], and a label drawn independently of both (3 classes): nothing
/// generalises, so a model that fits the training rows does worse on the validation rows.
fn setup(d: &Path, rows: usize, extra: &str) -> PathBuf {
    let mut s: u64 = 2024;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut csv = String::from("id,x,label\n");
    for r in 0..rows {
        let x = next() * 4.0 - 2.0;
        csv += &format!("{r},{x:.4},{}\n", (next() * 3.0) as usize);
    }
    std::fs::write(d.join("data.csv"), csv).unwrap();
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\npath = \"data.csv\"\nlabel_column = \"label\"\ntest_fraction = 0.2\nsplit_seed = 7\n{extra}\n\
             [model]\nlayers = [{{ type = 'linear', out = 32 }}, {{ type = 'relu' }}, {{ type = 'linear', out = 3 }}]\n\n\
             [optimizer]\ntype = \"adam\"\nlr = 0.01\n\n[train]\nepochs = 300\nbatch_size = 8\n"
        ),
    )
    .unwrap();
    cfg
}

fn ids(x: &[f32], d: usize) -> Vec<usize> {
    x.chunks(d).map(|row| row[0] as usize).collect()
}

#[test]
fn validation_rows_are_apart_from_training_and_test_rows() {
    let d = dir("apart");
    let cfg = setup(&d, 101, "validation_fraction = 0.25\n");
    let config = Config::load(&cfg).unwrap();
    let split = load_split(&config, &cfg).unwrap();
    let (train, val, test) = (ids(&split.train.x, 2), ids(&split.validation.x, 2), ids(&split.test.x, 2));
    // round(101·0.2) = 20 test rows; round(81·0.25) = 20 of the other 81 validate.
    assert_eq!((train.len(), val.len(), test.len()), (61, 20, 20));
    let mut all: Vec<usize> = train.iter().chain(&val).chain(&test).copied().collect();
    all.sort();
    assert_eq!(all, (0..101).collect::<Vec<_>>(), "each row in exactly one part");
    // The test rows are those of a run without validation: validation comes out of training only.
    let plain =
        Config::parse_with(&std::fs::read_to_string(&cfg).unwrap(), &cfg, &["data.validation_fraction=0".into()]);
    let plain = load_split(&plain.unwrap(), &cfg).unwrap();
    assert_eq!(ids(&plain.test.x, 2), test);
    assert_eq!(plain.validation.n, 0);

    // Standardised, the statistics are the 61 training rows' alone (computed the same way on
    // the same rows, so equal exactly).
    let std_cfg = Config::parse_with(&std::fs::read_to_string(&cfg).unwrap(), &cfg, &["data.standardize=true".into()]);
    let standardized = load_split(&std_cfg.unwrap(), &cfg).unwrap();
    assert_eq!(standardized.standardize, Some(Standardize::fit(&split.train)));
}

/// The epoch records of a metrics CSV: (epoch, val_loss), by column name.
fn val_losses(csv: &str) -> Vec<(usize, f64)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (epoch, val) = (col("epoch"), col("val_loss"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| !f[val].is_empty())
        .map(|f| (f[epoch].parse().unwrap(), f[val].parse().unwrap()))
        .collect()
}

/// Keras' rule recomputed from the recorded losses: (the first epoch e with e − best(e) ≥
/// patience, best(e)), where best(e) is the last epoch up to e whose loss was below every earlier
/// best by more than min_delta. The file holds each f32 loss in full, so the comparisons are the run's.
fn expected_stop(losses: &[(usize, f64)], patience: usize, min_delta: f64) -> Option<(usize, usize)> {
    let (mut best, mut best_epoch) = (f64::INFINITY, 0);
    for &(epoch, loss) in losses {
        if loss < best - min_delta {
            (best, best_epoch) = (loss, epoch);
        }
        if epoch - best_epoch >= patience {
            return Some((epoch, best_epoch));
        }
    }
    None
}

fn stops_where_the_recorded_losses_say(name: &str, patience: usize, min_delta: f64) {
    let d = dir(name);
    let cfg = setup(&d, 120, "validation_fraction = 0.25\n");
    let (metrics, best) = (d.join("m.csv"), d.join("best.safetensors"));
    let stdout = ok(&[
        "train",
        "--cpu",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        &format!("train.early_stopping.patience={patience}"),
        "--set",
        &format!("train.early_stopping.min_delta={min_delta}"),
        "--metrics",
        metrics.to_str().unwrap(),
        "--save-best",
        best.to_str().unwrap(),
    ]);
    let losses = val_losses(&std::fs::read_to_string(&metrics).unwrap());
    // Random labels: the validation loss cannot keep improving for 300 epochs.
    let (stop, best_epoch) = expected_stop(&losses, patience, min_delta).expect("the rule stops this run");
    assert_eq!(losses.last().unwrap().0, stop, "the run's last epoch is the rule's");
    assert_eq!(stop, best_epoch + patience);
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains(&format!("stopped after epoch {stop} of 300"))
            && last.contains(&format!("best epoch {best_epoch} ")),
        "{last}"
    );

    // The best epoch's state, trained again to exactly that epoch: every tensor (parameters and
    // optimizer state) equal bit for bit, as the CPU path is deterministic.
    let again = d.join("again.safetensors");
    let epochs = best_epoch.to_string();
    ok(&[
        "train",
        "--cpu",
        "--quiet",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        &epochs,
        "--save",
        again.to_str().unwrap(),
    ]);
    let (a, b) = (std::fs::read(&best).unwrap(), std::fs::read(&again).unwrap());
    let (a, b) =
        (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = a.names();
    names.sort();
    let mut other = b.names();
    other.sort();
    assert_eq!(names, other);
    for name in names {
        assert_eq!(a.tensor(name).unwrap().data(), b.tensor(name).unwrap().data(), "{name}");
    }
}

#[test]
fn stops_patience_epochs_after_the_best_and_save_best_holds_it() {
    stops_where_the_recorded_losses_say("plain", 3, 0.0);
}

#[test]
fn min_delta_counts_only_larger_improvements() {
    stops_where_the_recorded_losses_say("delta", 2, 0.01);
}

#[test]
fn what_cannot_work_is_refused_by_name() {
    let d = dir("errors");
    let cfg = setup(&d, 10, "");
    let cfg = cfg.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--cpu", "--config", cfg];
        args.extend(extra);
        refused(&args)
    };
    let e = train(&["--set", "train.early_stopping.patience=2"]);
    assert!(e.contains("train.early_stopping") && e.contains("data.validation_fraction"), "{e}");
    let best = d.join("best.safetensors");
    let e = train(&["--save-best", best.to_str().unwrap()]);
    assert!(e.contains("--save-best") && e.contains("data.validation_fraction"), "{e}");
    for bad in ["1.0", "-0.1", "1.5"] {
        let e = train(&["--set", &format!("data.validation_fraction={bad}")]);
        assert!(e.contains("data.validation_fraction must be in [0, 1)"), "{e}");
    }
    // 10 rows, 2 test; round(8·0.99) = 8 would validate, leaving none to train on.
    let e = train(&["--set", "data.validation_fraction=0.99"]);
    assert!(e.contains("data.validation_fraction = 0.99") && e.contains("no training row"), "{e}");
    let e = train(&["--set", "data.validation_fraction=0.5", "--set", "train.early_stopping.patience=0"]);
    assert!(e.contains("train.early_stopping.patience must be at least 1"), "{e}");
    assert!(!best.exists(), "nothing written by a refused run");
}
