//! `gradflow sweep` and `gradflow compare --seeds`: the grid, the seeds, and the table's numbers
//! against runs made independently through `compare::run_contender` and summarised here.

mod common;

use std::path::PathBuf;

use common::require_gpu;
use gradflow::cli::{CompareArgs, SweepArgs};
use gradflow::config::{Config, DEFAULT_CONFIG_PATH};
use gradflow::train::compare::{run_contender, Contender};
use gradflow::train::sweep::{settings, Axis, Spread, Summary};
use gradflow::train::{load_data, Placement};

fn cpu() -> Placement {
    Placement { cpu: true, ..Placement::default() }
}

#[test]
fn a_grid_axis_reads_a_toml_list_and_refuses_what_is_not_one() {
    let a = Axis::parse("optimizer.lr=[0.01, 0.1]").unwrap();
    assert_eq!((a.key.as_str(), a.values.clone()), ("optimizer.lr", vec!["0.01".to_string(), "0.1".to_string()]));
    assert_eq!(Axis::parse("train.batching = 'shuffle'").unwrap().values, vec!["\"shuffle\"".to_string()]);
    for (bad, says) in [
        ("optimizer.lr", "no '='"),
        ("=[1]", "no key"),
        ("optimizer.lr=[]", "empty list"),
        ("optimizer.lr=[0.1,", "KEY=[v1, v2, …]"),
    ] {
        let e = Axis::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("--grid"), "{bad}: {e}");
    }
}

#[test]
fn settings_are_every_combination_first_axis_slowest() {
    let axes =
        [Axis::parse("optimizer.lr=[1, 2]").unwrap(), Axis::parse("optimizer.momentum=[0.0, 0.5, 0.9]").unwrap()];
    let s = settings(&axes);
    let labels: Vec<&str> = s.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "lr=1 momentum=0.0",
            "lr=1 momentum=0.5",
            "lr=1 momentum=0.9",
            "lr=2 momentum=0.0",
            "lr=2 momentum=0.5",
            "lr=2 momentum=0.9"
        ]
    );
    assert_eq!(s[4].overrides, ["optimizer.lr=2", "optimizer.momentum=0.5"]);
    // Keys whose last parts clash keep their full names.
    let clash = settings(&[Axis::parse("optimizer.lr=[1]").unwrap(), Axis::parse("other.lr=[2]").unwrap()]);
    assert_eq!(clash[0].label, "optimizer.lr=1 other.lr=2");
}

#[test]
fn spread_is_the_mean_and_sample_standard_deviation_of_finite_values() {
    let s = Spread::of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!(s.mean, 5.0);
    assert!((s.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
    assert_eq!(Spread::of([3.0, f64::NAN]), Spread { mean: 3.0, sd: 0.0 });
    assert!(Spread::of([f64::INFINITY]).mean.is_nan());
}

/// Two seeds of two learning rates on the CPU reference, three epochs of the digits: the table
/// the command writes holds, per setting, the mean ± sd of runs made here one by one.
#[test]
fn the_sweep_table_is_the_mean_and_spread_of_its_runs() {
    let table = std::env::temp_dir().join(format!("gradflow-sweep-table-{}.txt", std::process::id()));
    let set = vec!["train.epochs=2".to_string()];
    let args = SweepArgs {
        grid: vec!["optimizer.lr=[0.02, 0.08]".into()],
        seeds: 2,
        table: Some(table.clone()),
        set: set.clone(),
        ..SweepArgs::default()
    };
    gradflow::cli::sweep::sweep(&args, &cpu()).unwrap();
    let written = std::fs::read_to_string(&table).unwrap();
    std::fs::remove_file(&table).unwrap();

    let file = PathBuf::from(DEFAULT_CONFIG_PATH);
    let base = Config::default_run_with(&set).unwrap();
    let (train, test) = load_data(&base, &file).unwrap();
    let mut rows = vec![written.lines().next().unwrap().to_string()];
    for lr in ["0.02", "0.08"] {
        let runs: Vec<_> = (0..2u64)
            .map(|seed| {
                let mut config = base.clone();
                config.optimizer = Config::default_run_with(&[format!("optimizer.lr={lr}")]).unwrap().optimizer;
                config.model.init_seed += seed;
                config.train.seed += seed;
                run_contender(&Contender { label: String::new(), config }, &train, &test, &cpu()).unwrap()
            })
            .collect();
        assert_ne!(runs[0].last(), runs[1].last(), "the seeds must differ");
        let line = gradflow::train::sweep::table(&[Summary::of(&format!("lr={lr}"), &runs)]);
        rows.push(line.lines().nth(1).unwrap().to_string());
    }
    // The same columns: realign the independent rows to the written table's label width.
    let ours: Vec<Vec<&str>> = rows.iter().map(|r| r.split_whitespace().collect()).collect();
    let theirs: Vec<Vec<&str>> = written.lines().map(|r| r.split_whitespace().collect()).collect();
    assert_eq!(theirs, ours, "written:\n{written}");
}

/// A learning rate that blows the weights up is a result of the sweep, not its failure: the
/// setting's row says none of its runs finished and the other settings are summarised as usual.
#[test]
fn a_diverging_setting_is_reported_and_the_sweep_goes_on() {
    let table = std::env::temp_dir().join(format!("gradflow-sweep-diverged-{}.txt", std::process::id()));
    let args = SweepArgs {
        grid: vec!["optimizer.lr=[0.05, 1e30]".into()],
        seeds: 2,
        table: Some(table.clone()),
        set: vec!["train.epochs=2".into()],
        ..SweepArgs::default()
    };
    gradflow::cli::sweep::sweep(&args, &cpu()).unwrap();
    let written = std::fs::read_to_string(&table).unwrap();
    std::fs::remove_file(&table).unwrap();
    let rows: Vec<Vec<&str>> = written.lines().skip(1).map(|r| r.split_whitespace().collect()).collect();
    assert_eq!((rows[0][0], rows[0][1]), ("lr=0.05", "2"), "{written}");
    assert!(rows[0][2].parse::<f64>().unwrap().is_finite(), "{written}");
    assert_eq!((rows[1][0], rows[1][1], rows[1][2]), ("lr=1e30", "0/2", "NaN"), "{written}");
}

#[test]
fn sweep_and_compare_refuse_bad_arguments_before_training() {
    let e = |args: SweepArgs| gradflow::cli::sweep::sweep(&args, &cpu()).unwrap_err().to_string();
    let grid = |g: &str| SweepArgs { grid: vec![g.into()], seeds: 1, ..SweepArgs::default() };
    assert!(e(grid("data.scale=[1.0, 2.0]")).contains("data.* cannot vary"));
    assert!(e(grid("model.init_seed=[0, 1]")).contains("--seeds"));
    assert!(e(grid("train.seed=[0, 1]")).contains("--seeds"));
    let twice = SweepArgs { grid: vec!["optimizer.lr=[0.1]".into(), "optimizer.lr=[0.2]".into()], ..grid("x=[1]") };
    assert!(e(twice).contains("given twice"));
    let msg = e(grid("optimizer.lr=[0.1, -1.0]"));
    assert!(msg.contains("learning rate: -1"), "a bad value in the grid is refused as --set would refuse it: {msg}");
    assert!(e(SweepArgs { seeds: 0, ..grid("optimizer.lr=[0.1]") }).contains("--seeds"));
    let c = CompareArgs { optimizers: "sgd".into(), seeds: 0, ..CompareArgs::default() };
    assert!(gradflow::cli::compare::compare(&c, &cpu()).unwrap_err().to_string().contains("--seeds"));
}

/// Runs that can train side by side (one small model, one batch plan) do, and each gives what it
/// gives alone through the ordinary path (the per-op step there, the fused one here: the same
/// maths summed in the same order up to the matmul schedule's lanes, so within the trajectory
/// bound steps·K·u, K the batch rows plus the widest layer); a diverging run is flagged in both.
#[test]
fn runs_side_by_side_give_what_they_give_one_by_one() {
    require_gpu!();
    let set = |extra: &[&str]| {
        let mut s = vec![
            "model.layers=[{type='linear',out=8},{type='tanh'},{type='linear',out=3}]".to_string(),
            "train.epochs=3".to_string(),
        ];
        s.extend(extra.iter().map(|e| e.to_string()));
        s
    };
    let file = PathBuf::from("configs/spirals_small.toml");
    let load = |extra: &[&str]| Config::load_with(&file, &set(extra)).unwrap();
    let base = load(&[]);
    let (train, test) = load_data(&base, &file).unwrap();
    let contenders: Vec<Contender> = [
        ("adam", &["optimizer.lr=0.01"][..]),
        ("adam seed 1", &["optimizer.lr=0.01", "model.init_seed=1", "train.seed=1"][..]),
        ("sgd momentum", &["optimizer={type='sgd',lr=0.1,momentum=0.9}"][..]),
        ("diverging", &["optimizer={type='sgd',lr=1e37}"][..]),
    ]
    .iter()
    .map(|(label, extra)| Contender { label: label.to_string(), config: load(extra) })
    .collect();
    let gpu = Placement::default();
    let together = gradflow::train::side_by_side::run_side_by_side(&contenders, &train, &test, &gpu)
        .unwrap()
        .trained()
        .expect("a 2-8-3 net on one batch plan trains side by side");
    assert!(together[0].device.contains("4 runs side by side"), "{}", together[0].device);
    let steps = 3 * train.n.div_ceil(32);
    let tol = (steps * (32 + 8)) as f64 * common::EPS;
    for (c, t) in contenders.iter().zip(&together) {
        let alone = run_contender(c, &train, &test, &gpu).unwrap();
        assert_eq!(
            t.diverged.is_some(),
            alone.diverged.is_some(),
            "{}: {:?} / {:?}",
            c.label,
            t.diverged,
            alone.diverged
        );
        assert_eq!(t.diverged.is_some(), c.label == "diverging", "{}", c.label);
        assert_eq!(t.points.len(), alone.points.len(), "{}", c.label);
        if t.diverged.is_some() {
            continue;
        }
        for (p, q) in t.points.iter().zip(&alone.points) {
            for (what, a, b) in [("train loss", p.train_loss, q.train_loss), ("test loss", p.test_loss, q.test_loss)] {
                assert!((a - b).abs() <= tol * b.abs(), "{} epoch {}: {what} {a} vs {b}", c.label, p.epoch);
            }
            assert!((p.test_accuracy - q.test_accuracy).abs() <= 1.5 / test.n as f64, "{} epoch {}", c.label, p.epoch);
        }
    }
    // Different batch plans train one by one.
    let mut other = contenders[1].clone();
    other.config.train.batch_size = 16;
    let mixed = [contenders[0].clone(), other];
    match gradflow::train::side_by_side::run_side_by_side(&mixed, &train, &test, &gpu).unwrap() {
        gradflow::train::side_by_side::SideBySide::OneByOne(why) => {
            assert!(why.contains("differs in model, loss, epochs or batching"), "{why}")
        }
        other => panic!("different batch plans trained side by side: {other:?}"),
    }
    // Batch norm and residual blocks train side by side too (each run's running statistics its
    // own, the test points in evaluation mode), as each run alone within the same bound.
    let layers = |text: &str| toml::from_str::<toml::Table>(text).map(|t| t["l"].clone().try_into().unwrap()).unwrap();
    let mut bn = contenders[..3].to_vec();
    for c in &mut bn {
        c.config.model.layers = layers(
            "l = [{type='linear',out=8,bias=false},{type='batch-norm'},{type='tanh'},\
             {type='residual',layers=[{type='linear',out=8},{type='tanh'}]},{type='linear',out=3}]",
        );
    }
    let together = gradflow::train::side_by_side::run_side_by_side(&bn, &train, &test, &gpu)
        .unwrap()
        .trained()
        .expect("a model with batch norm and a residual block trains side by side");
    for (c, t) in bn.iter().zip(&together) {
        let alone = run_contender(c, &train, &test, &gpu).unwrap();
        assert!(t.diverged.is_none() && alone.diverged.is_none(), "{}", c.label);
        assert_eq!((t.points.len(), alone.points.len()), (4, 4), "{}: the start and three epochs", c.label);
        for (p, q) in t.points.iter().zip(&alone.points) {
            for (what, a, b) in [("train loss", p.train_loss, q.train_loss), ("test loss", p.test_loss, q.test_loss)] {
                assert!((a - b).abs() <= tol * b.abs(), "{} epoch {}: {what} {a} vs {b}", c.label, p.epoch);
            }
        }
    }
    // Past the kernel's table of stages the runs say why they train one after another.
    let mut deep = contenders[..2].to_vec();
    for c in &mut deep {
        c.config.model.layers = layers(&format!("l = [{}]", ["{type='linear',out=3}"; 33].join(",")));
    }
    match gradflow::train::side_by_side::run_side_by_side(&deep, &train, &test, &gpu).unwrap() {
        gradflow::train::side_by_side::SideBySide::OneByOne(why) => assert!(why.contains("33 stages"), "{why}"),
        other => panic!("a 33-stage model trained side by side: {other:?}"),
    }
}

/// With `--cpu`, runs go one per core, each on its own network: the same numbers to the bit as
/// one by one, in the same order, a diverging run included.
#[test]
fn cpu_runs_one_per_core_give_what_they_give_one_by_one() {
    let set = ["train.epochs=2".to_string()];
    let base = Config::default_run_with(&set).unwrap();
    let (train, test) = load_data(&base, &PathBuf::from(DEFAULT_CONFIG_PATH)).unwrap();
    let contenders: Vec<Contender> = ["optimizer.lr=0.02", "optimizer.lr=0.08", "optimizer.lr=1e30"]
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let mut s = set.to_vec();
            s.extend([o.to_string(), format!("model.init_seed={k}")]);
            Contender { label: o.to_string(), config: Config::default_run_with(&s).unwrap() }
        })
        .collect();
    let together = gradflow::train::side_by_side::run_on_cpu_threads(&contenders, &train, &test, &cpu()).unwrap();
    assert_eq!(together.len(), 3);
    for (c, t) in contenders.iter().zip(&together) {
        let alone = run_contender(c, &train, &test, &cpu()).unwrap();
        assert_eq!(t.label, alone.label);
        assert_eq!(format!("{:?}", t.points), format!("{:?}", alone.points), "{}", c.label);
        assert_eq!(t.diverged, alone.diverged, "{}", c.label);
        assert!(t.device.contains("at a time"), "{}", t.device);
    }
    assert!(together[2].diverged.is_some());
}

/// The same with batch norm (its running statistics, evaluation mode for the test points), every
/// kind of optimizer, a schedule and clipping: runs one per core give, to the bit, what each
/// gives alone.
#[test]
fn cpu_runs_with_batch_norm_every_optimizer_schedule_and_clipping_give_what_they_give_alone() {
    let file = PathBuf::from("configs/spirals_small.toml");
    let common = [
        "model.layers=[{type='linear',out=8,bias=false},{type='batch-norm'},{type='tanh'},{type='linear',out=3}]",
        "train.epochs=2",
    ];
    let runs: [&[&str]; 6] = [
        &["optimizer={type='adam',lr=0.01}", "train.clip_grad_norm=0.5"],
        &[
            "optimizer={type='sgd',lr=0.1,momentum=0.9,nesterov=true}",
            "train.schedule={type='cosine',warmup=5,total=40}",
        ],
        &["optimizer={type='rmsprop',lr=0.005,centered=true,momentum=0.5}"],
        &["optimizer={type='adagrad',lr=0.05}", "model.init_seed=3"],
        &["optimizer={type='adamw',lr=0.01,weight_decay=0.1,amsgrad=true}", "train.seed=4"],
        &["optimizer={type='sgd',lr=0.05,momentum={value=0.9,form='heavy-ball'}}"],
    ];
    let load = |extra: &[&str]| {
        let set: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        Config::load_with(&file, &set).unwrap()
    };
    let (train, test) = load_data(&load(&[]), &file).unwrap();
    let contenders: Vec<Contender> =
        runs.iter().map(|extra| Contender { label: extra.join(" "), config: load(extra) }).collect();
    let together = gradflow::train::side_by_side::run_on_cpu_threads(&contenders, &train, &test, &cpu()).unwrap();
    for (c, t) in contenders.iter().zip(&together) {
        let alone = run_contender(c, &train, &test, &cpu()).unwrap();
        assert_eq!(format!("{:?}", t.points), format!("{:?}", alone.points), "{}", c.label);
        assert!(t.diverged.is_none() && alone.diverged.is_none(), "{}", c.label);
        assert_eq!(t.points.len(), 3, "{}: the start and two epochs", c.label);
    }
}
