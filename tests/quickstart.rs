//! The README's program, `examples/quickstart.rs`, compiled here as a module and run, and the
//! front-door API it stands on (`gradflow::prelude`): errors for bad input rather than panics,
//! and a trainer whose second `fit` continues the first.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)] // its `main`: the test calls the function `main` runs.
mod quickstart;

use gradflow::prelude::*;

const EPOCHS: usize = 15;

/// What the quickstart must reach: the history has every epoch, the loss fell, and the test
/// accuracy is far above chance (0.5 on XOR).
fn check_learned(history: &History, device: &str) {
    assert_eq!(history.len(), EPOCHS, "{device}: {history:?}");
    assert!(!history.stopped_early);
    assert!(history.device.starts_with(device), "ran on {}, not {device}", history.device);
    let (first, last) = (&history.epochs[0], history.last().unwrap());
    assert_eq!((first.epoch, last.epoch), (1, EPOCHS));
    assert!(last.train_loss < 0.5 * first.train_loss, "{device}: loss {} → {}", first.train_loss, last.train_loss);
    let accuracy = last.test_accuracy.expect("the quickstart has a test set");
    assert!(accuracy >= 0.9, "{device}: test accuracy {accuracy} after {EPOCHS} epochs");
    assert!(history.iter().all(|e| e.steps == 19 && e.test_loss.is_some_and(f32::is_finite)), "{history:?}");
}

#[test]
fn quickstart_learns_xor_on_the_cpu() {
    let history = quickstart::quickstart(Device::Cpu, EPOCHS).unwrap();
    check_learned(&history, "CPU reference");
}

#[test]
fn quickstart_learns_xor_on_the_gpu() {
    common::require_gpu!();
    let history = quickstart::quickstart(Device::Gpu, EPOCHS).unwrap();
    check_learned(&history, "GPU");
}

/// XOR corners, eight times over.
fn xor() -> Dataset {
    let corners = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let rows: Vec<[f32; 2]> = corners.iter().cycle().take(32).copied().collect();
    let labels: Vec<u8> = [0, 1, 1, 0].iter().cycle().take(32).copied().collect();
    Dataset::from_nested(&rows, &labels).unwrap()
}

fn trainer(epochs: usize) -> Trainer {
    let model = Model::builder(2).dense(8, Activation::Relu).batch_norm().dense(2, Activation::Identity).build();
    Trainer::new(model.unwrap()).optimizer(Optimizer::adam(0.01)).batch_size(8).epochs(epochs).seed(3)
}

/// fit(3) then fit(2) is fit(5): the same batches, steps, optimizer and batch-norm state.
#[test]
fn a_second_fit_continues_the_first() {
    let data = xor();
    let mut whole = trainer(5);
    let five = whole.fit(&data, Some(&data)).unwrap();
    let mut split = trainer(3);
    let three = split.fit(&data, Some(&data)).unwrap();
    split = split.epochs(2);
    let two = split.fit(&data, Some(&data)).unwrap();
    let joined: Vec<EpochStats> = three.epochs.into_iter().chain(two.epochs).collect();
    let strip = |e: &EpochStats| EpochStats { seconds: 0.0, ..e.clone() };
    assert_eq!(joined.iter().map(strip).collect::<Vec<_>>(), five.epochs.iter().map(strip).collect::<Vec<_>>());
    let (a, b) = (whole.network().unwrap(), split.network().unwrap());
    assert_eq!((a.params().unwrap(), a.norm_state().unwrap()), (b.params().unwrap(), b.norm_state().unwrap()));
    assert_eq!(a.steps(), 20);
}

/// A changed optimizer builds a new network that starts from the trained parameters.
#[test]
fn a_changed_setting_keeps_the_trained_parameters() {
    let data = xor();
    let mut t = trainer(2);
    t.fit(&data, None).unwrap();
    let trained = t.network().unwrap().params().unwrap();
    t = t.optimizer(Sgd::new(0.0)).epochs(1);
    t.fit(&data, None).unwrap();
    let net = t.network().unwrap();
    assert_eq!(net.params().unwrap(), trained, "lr 0 must leave the carried-over parameters as they were");
    assert_eq!(net.steps(), 4, "a new optimizer starts counting again");
}

fn message<T: std::fmt::Debug>(result: Result<T>) -> String {
    result.expect_err("expected an error").to_string()
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    // Data.
    assert!(message(Dataset::from_rows(&[1.0; 5], 2, &[0, 1, 0])).contains("6 values"));
    assert!(message(Dataset::from_rows(&[1.0, f32::INFINITY], 1, &[0, 1])).contains("row 2, feature 1"));
    assert!(message(Dataset::from_rows(&[1.0, 2.0], 1, &[0i64, -3])).contains("label -3"));
    assert!(message(Dataset::from_rows_with_classes(&[1.0, 2.0], 1, &[0, 2], 2)).contains("label 2"));
    assert!(message(Dataset::from_rows(&[1.0, 2.0], 0, &[0, 1])).contains("n_features"));
    assert!(message(Dataset::from_rows::<u32>(&[], 2, &[])).contains("no rows"));
    assert!(message(Dataset::from_nested(&[[1.0, 2.0]], &[0, 1])).contains("labels"));

    // The model.
    assert!(message(ModelBuilder::new(2).build()).contains("empty"));
    assert!(message(ModelBuilder::new(0).dense(2, Activation::Relu).build()).contains("input width"));
    let narrowing = Model::builder(4).residual(|b| b.dense(2, Activation::Relu)).build();
    assert!(message(narrowing).contains("projection"));
    assert!(Model::builder(4).residual_projected(|b| b.dense(2, Activation::Relu)).build().is_ok());

    // Training: data the model cannot take, settings torch would refuse.
    let data = xor();
    let mut t = Trainer::new(Model::mlp(3, &[4], 2, Activation::Relu).unwrap());
    assert!(message(t.fit(&data, None)).contains("3 features"));
    let mut t = Trainer::new(Model::mlp(2, &[4], 1, Activation::Relu).unwrap());
    assert!(message(t.fit(&data, None)).contains("has label 1 but the model's last layer has 1 outputs"));
    let mut t = trainer(1).batch_size(0);
    assert!(message(t.fit(&data, None)).contains("batch_size"));
    let mut t = trainer(1).optimizer(Sgd::new(-1.0));
    assert!(message(t.fit(&data, None)).contains("Invalid learning rate: -1.0"));
    let mut t = trainer(1).drop_last(false).batch_size(31);
    assert!(message(t.fit(&data, None)).contains("batch norm"), "a last batch of one row");
    let mut tampered = xor();
    tampered.x[5] = f32::NAN;
    assert!(message(trainer(1).fit(&tampered, None)).contains("row 3, feature 2"));
    assert!(message(trainer(1).predict(&[1.0, 2.0, 3.0])).contains("multiple of the model's 2 inputs"));
    let (_, empty) = data.split(0.0, 0).unwrap();
    assert!(message(trainer(1).evaluate(&empty)).contains("no rows"));
}

/// A batch size above the row count is one batch of every row, as a DataLoader gives.
#[test]
fn a_large_batch_size_takes_every_row() {
    let history = trainer(2).batch_size(1000).fit(&xor(), None).unwrap();
    assert!(history.iter().all(|e| e.steps == 1), "{history:?}");
}

/// The README's "Use from Rust" program is `examples/quickstart.rs` word for word, so the
/// program the tests above compile and run is the one a reader copies.
#[test]
fn the_readme_shows_the_quickstart_word_for_word() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/quickstart.rs")).unwrap();
    let section = readme.split("## Use from Rust").nth(1).expect("README has a 'Use from Rust' section");
    let block = section.split("```rust\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a rust block");
    assert_eq!(block.trim_end(), example.trim_end(), "README's quickstart differs from examples/quickstart.rs");
}
