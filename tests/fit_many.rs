//! `Trainer::fit_many` against `Trainer::fit` run by run: on the CPU (one run per core) each
//! history is the one the run gives alone, to the bit, a diverging run's error included; on a
//! GPU side by side (`exec::BatchedNetworks`), a model the fused step takes alone too gives the
//! same bits (the same kernels on the same values); one with batch norm whose lone run takes the
//! per-op step, the same numbers within rounding.

mod common;

use common::*;
use gradflow::prelude::*;

/// Two interleaved classes in 2-D (the XOR corners with noise), 96 rows, and 32 for testing.
fn data(n: usize, seed: u64) -> Dataset {
    let mut r = rng(seed);
    let x = uniform(&mut r, n * 2, -1.0, 1.0);
    let labels: Vec<u32> = (0..n).map(|i| u32::from((x[2 * i] > 0.0) != (x[2 * i + 1] > 0.0))).collect();
    Dataset::from_rows(&x, 2, &labels).unwrap()
}

fn runs() -> Vec<RunSpec> {
    let t = |s: &str| -> Optimizer { toml::from_str(s).unwrap() };
    vec![
        RunSpec::new(t("type='adam'\nlr=0.02"), 0),
        RunSpec::new(t("type='adam'\nlr=0.02"), 1),
        RunSpec::new(t("type='sgd'\nlr=0.2\nmomentum=0.9\nnesterov=true"), 2),
        RunSpec::new(
            OptimizerSetup { clip_grad_norm: Some(0.5), ..t("type='rmsprop'\nlr=0.01").into() }
                .with_schedule(Schedule::Exponential { gamma: 0.95 }),
            3,
        ),
        RunSpec::new(t("type='sgd'\nlr=1e38\nmomentum=0.9"), 4),
    ]
}

/// Everything an epoch reports but its time.
fn numbers(h: &Result<History>) -> String {
    match h {
        Ok(h) => h
            .epochs
            .iter()
            .map(|e| {
                format!(
                    "{} {:?} {:?} {:?} {:?} {} {:?}",
                    e.epoch, e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy, e.steps, e.lr
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e}"),
    }
}

fn check_against_alone(trainer: &Trainer, alone: impl Fn(&RunSpec) -> Trainer, what: &str) -> Vec<Result<History>> {
    let (train, test) = (data(96, 5), data(32, 6));
    let runs = runs();
    let many = trainer.fit_many(&runs, &train, Some(&test)).unwrap();
    assert_eq!(many.len(), runs.len());
    for (k, (run, h)) in runs.iter().zip(&many).enumerate() {
        let one = alone(run).fit(&train, Some(&test));
        assert_eq!(numbers(h), numbers(&one), "{what}: run {k}");
    }
    assert!(
        matches!(many[4], Err(Error::Diverged { .. })),
        "{what}: SGD at lr 1e38 with momentum diverges (the output bias overflows f32 within the 36 steps)"
    );
    assert!(many[..4].iter().all(|h| h.as_ref().is_ok_and(|h| h.len() == 6)), "{what}: the others run 6 epochs");
    many
}

#[test]
fn cpu_runs_give_what_each_gives_alone() {
    let model = Model::mlp(2, &[6], 2, Activation::Tanh).unwrap();
    let trainer = Trainer::new(model.clone()).batch_size(16).epochs(6);
    let alone =
        |r: &RunSpec| Trainer::new(model.clone()).batch_size(16).epochs(6).optimizer(r.optimizer.clone()).seed(r.seed);
    check_against_alone(&trainer, alone, "CPU");
    assert!(trainer.fit_many(&[], &data(8, 1), None).unwrap().is_empty());
}

#[test]
fn gpu_runs_side_by_side_give_what_each_gives_alone() {
    require_gpu!();
    // A 2-4-2 net at batch 16: 3·16·(8 + 8) = 768 multiply-adds a step, under a CPU adapter's
    // 1,024 for the fused step, which it takes alone too.
    let model = Model::mlp(2, &[4], 2, Activation::Tanh).unwrap();
    let trainer = Trainer::new(model.clone()).batch_size(16).epochs(6).device(Device::Gpu);
    let alone = |r: &RunSpec| {
        Trainer::new(model.clone())
            .batch_size(16)
            .epochs(6)
            .device(Device::Gpu)
            .optimizer(r.optimizer.clone())
            .seed(r.seed)
    };
    let many = check_against_alone(&trainer, alone, "GPU");
    let device = &many[0].as_ref().unwrap().device;
    assert!(device.contains("5 runs side by side"), "{device}");
}

/// With batch norm the runs still go side by side (the fused step runs the norm, its running
/// statistics kept per run for the test evaluation), while a lone run of this size takes the
/// per-op path on a CPU adapter (1,728 multiply-adds a step, past its 1,024), whose products
/// split their sums into lanes (on a GPU the fused step): each epoch's losses agree within the trajectory
/// bound steps·(rows + widest)·u (tests/small_net.rs), and the diverging run fails alone too.
#[test]
fn gpu_runs_with_batch_norm_side_by_side_train_as_each_alone() {
    require_gpu!();
    let layers = vec![
        LayerSpec::Linear { out: 6, bias: false },
        LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        LayerSpec::Tanh,
        LayerSpec::Linear { out: 2, bias: true },
    ];
    let model = Model::new(2, layers).unwrap();
    let trainer = Trainer::new(model.clone()).batch_size(16).epochs(6).device(Device::Gpu);
    let (train, test) = (data(96, 5), data(32, 6));
    let runs = runs();
    let many = trainer.fit_many(&runs, &train, Some(&test)).unwrap();
    let tol = (36 * (16 + 6)) as f64 * EPS;
    for (k, (run, h)) in runs.iter().zip(&many).enumerate() {
        let alone = Trainer::new(model.clone())
            .batch_size(16)
            .epochs(6)
            .device(Device::Gpu)
            .optimizer(run.optimizer.clone())
            .seed(run.seed)
            .fit(&train, Some(&test));
        match (h, &alone) {
            (Ok(h), Ok(a)) => {
                assert!(h.device.contains("5 runs side by side"), "{}", h.device);
                assert_eq!(h.len(), a.len(), "run {k}");
                for (e, f) in h.epochs.iter().zip(&a.epochs) {
                    let (tl, al) = (e.test_loss.unwrap() as f64, f.test_loss.unwrap() as f64);
                    let close = |x: f64, y: f64| (x - y).abs() <= tol * y.abs();
                    assert!(
                        close(e.train_loss as f64, f.train_loss as f64),
                        "run {k} epoch {}: {e:?} vs {f:?}",
                        e.epoch
                    );
                    assert!(close(tl, al), "run {k} epoch {}: test loss {tl} vs {al}", e.epoch);
                }
            }
            (Err(Error::Diverged { .. }), Err(Error::Diverged { .. })) => assert_eq!(k, 4, "only run 4 diverges"),
            (h, a) => panic!("run {k}: {:?} side by side, {:?} alone", h.as_ref().map(|_| ()), a.as_ref().map(|_| ())),
        }
    }
}
