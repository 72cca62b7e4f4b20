//! The runs of `compare` and `sweep` trained at once (`exec::BatchedNetworks`) when they can be
//! and it pays: one model, one loss, and one batch plan (epochs, batch size, scheme, drop_last),
//! differing only in optimizer, schedule, clipping, groups and seeds; on the fused step when the
//! model is small enough (`Gpu::side_by_side_max_step_macs`), else on a GPU on the per-op
//! launches over every model. Each run's numbers are those it gets alone on the same step
//! (tests/batched.rs), and within rounding of the other step (tests/sweep.rs).

use web_time::Instant;

use super::compare::{Contender, Point, Run};
use super::Placement;
use crate::data::Batcher;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::exec::{BatchedNetworks, GpuNetwork, Network, StepKind, Totals};
use crate::kernels::{Gpu, SmallNet};
use crate::spec::{Loss, Model};

/// Why the contenders cannot train side by side, or None when they can.
fn obstacle(contenders: &[Contender]) -> Option<String> {
    let plan = |c: &Contender| {
        let (m, t) = (&c.config.model, &c.config.train);
        format!("{:?} {:?} {} {} {:?} {}", m.layers, m.loss, t.epochs, t.batch_size, t.batching, t.drop_last)
    };
    let first = contenders.first().map(plan)?;
    if contenders.len() < 2 {
        return Some("a single run".into());
    }
    contenders
        .iter()
        .find(|c| plan(c) != first)
        .map(|c| format!("{} differs in model, loss, epochs or batching", c.label))
}

/// What `run_side_by_side` did: the runs, trained together, or why they must train one after
/// another (said in the command's header).
#[derive(Debug)]
pub enum SideBySide {
    Trained(Vec<Run>),
    OneByOne(String),
}

impl SideBySide {
    /// The runs, or None when they did not train side by side.
    pub fn trained(self) -> Option<Vec<Run>> {
        match self {
            SideBySide::Trained(runs) => Some(runs),
            SideBySide::OneByOne(_) => None,
        }
    }
}

/// How `runs` runs of `model` train side by side on `gpu` at batches of `rows` rows: on the
/// fused step where it takes the model and the step is small enough for it to pay
/// (`Gpu::side_by_side_max_step_macs`), else on a GPU on the per-op launches, each over every
/// model. On a CPU adapter those do not pay (16 digits-shape runs, 2 epochs, lavapipe: 13,046
/// samples/s side by side per op against 20,156 one after another), so there the reason to
/// train one after another.
pub fn side_by_side_step(
    gpu: &Gpu,
    model: &Model,
    loss: Loss,
    rows: usize,
    runs: usize,
) -> std::result::Result<StepKind, String> {
    let budget = gpu.side_by_side_max_step_macs(runs);
    let on_cpu_adapter = gpu.info.device_type == wgpu::DeviceType::Cpu;
    match SmallNet::new(model, loss, rows) {
        Ok(layout) if layout.step_macs(rows) <= budget => Ok(StepKind::SmallNet),
        _ if !on_cpu_adapter => Ok(StepKind::PerOp),
        Ok(layout) => Err(format!(
            "a step is {} multiply-adds, past the {budget} this adapter trains side by side on the fused step; \
             per-op launches side by side do not pay on a CPU adapter",
            layout.step_macs(rows)
        )),
        Err(why) => Err(format!(
            "the fused step does not take the model ({why}); per-op launches side by side do not pay on a CPU adapter"
        )),
    }
}

/// Trains every contender at once and returns their runs, or why they cannot share one batch
/// of models (then they train one after another, as before).
pub fn run_side_by_side(
    contenders: &[Contender],
    train_set: &Dataset,
    test_set: &Dataset,
    placement: &Placement,
) -> Result<SideBySide> {
    use SideBySide::OneByOne;
    if let Some(why) = obstacle(contenders) {
        return Ok(OneByOne(why));
    }
    if train_set.is_regression() {
        // The batched kernels compare with class labels only.
        return Ok(OneByOne("real targets (regression)".into()));
    }
    let Some(gpu) = super::open_gpu(placement, "training")? else { return Ok(OneByOne("no GPU adapter".into())) };
    // On a software adapter the CPU reference trains small models faster (docs/benchmarks.md).
    let on_cpu_adapter = gpu.info.device_type == wgpu::DeviceType::Cpu;
    let one_by_one = |why: String| {
        if on_cpu_adapter {
            SideBySide::OneByOne(format!("{why}; on a CPU adapter such as this one, `--cpu` is usually faster for small models (one run per core on the CPU reference)"))
        } else {
            SideBySide::OneByOne(why)
        }
    };
    let gpu = std::sync::Arc::new(gpu);
    let config = &contenders[0].config;
    let model = crate::spec::Model::new(train_set.d, config.model.layers.clone())?;
    super::run::check_labels(&model, train_set, test_set, config)?;
    let loss = config.model.loss;
    let max_rows = super::max_rows(config, train_set.n);
    let step = match side_by_side_step(&gpu, &model, loss, max_rows, contenders.len()) {
        Ok(step) => step,
        Err(why) => return Ok(one_by_one(why)),
    };
    let inits: Vec<Vec<f32>> = contenders.iter().map(|c| model.init_params(c.config.model.init_seed)).collect();
    let setups = contenders.iter().map(|c| c.config.optimizer_setup()).collect();
    let mut nets = match BatchedNetworks::with_step(gpu.clone(), model.clone(), loss, setups, &inits, max_rows, step) {
        Ok(n) => n,
        // Loops past the adapter's budget, or too many runs for the adapter's buffers.
        Err(e @ (Error::Usage(_) | Error::LoopLimit { .. } | Error::TooLargeForDevice { .. })) => {
            return Ok(one_by_one(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    nets.set_train_data(train_set)?;
    let mut batchers = contenders.iter().map(|c| super::batcher(&c.config, train_set.n)).collect::<Result<Vec<_>>>()?;
    super::check_batches(&model, &batchers[0])?;
    // One network evaluates every model in turn (its parameters set to the model's).
    let mut eval = GpuNetwork::new(gpu, model, loss, config.optimizer_setup(), &inits[0], max_rows.max(1))?;
    let point = Point::new;
    let mut points = Vec::with_capacity(contenders.len());
    // Every run's start, from the host's copy (fresh batch-norm statistics for all).
    let start_norms = nets.model().init_norm_state();
    for init in &inits {
        eval.set_params(init)?;
        eval.set_norm_state(&start_norms)?;
        let (train, test) = (super::evaluate(&mut eval, train_set, loss)?, super::evaluate(&mut eval, test_set, loss)?);
        points.push(vec![point(0, train, test)]);
    }
    let mut diverged: Vec<Option<String>> = vec![None; contenders.len()];
    let epochs = config.train.epochs;
    let (samples, seconds) = train_epochs(&mut nets, &mut batchers, epochs, |nets, e| {
        let k = e.model;
        if let Some(bad) = e.totals.first_bad {
            let nan = (f32::NAN, f32::NAN);
            points[k].push(point(e.epoch, nan, nan));
            let what = bad.loss.map_or("a parameter".to_string(), |l| format!("the loss ({l})"));
            diverged[k] = Some(format!("{what} went NaN or infinite at step {} (epoch {})", bad.step, e.epoch));
            return Ok(());
        }
        load_model(&mut eval, nets, k)?;
        let test = super::evaluate(&mut eval, test_set, loss)?;
        points[k].push(point(e.epoch, (e.totals.mean_loss, e.totals.accuracy), test));
        Ok(())
    })?;
    let most = BatchedNetworks::max_models(eval.gpu(), nets.model(), loss, max_rows)?;
    let device = format!(
        "{} ({} runs side by side; up to {most} fit this adapter)",
        first_line(&eval.describe()),
        contenders.len()
    );
    let share = seconds / contenders.len() as f64;
    Ok(SideBySide::Trained(
        contenders
            .iter()
            .zip(points.into_iter().zip(diverged))
            .map(|(c, (points, diverged))| Run {
                label: c.label.clone(),
                device: device.clone(),
                points,
                // The runs trained together: each is charged its share of the time.
                seconds: share,
                samples,
                diverged,
            })
            .collect(),
    ))
}

/// The runs on the CPU executor, as many at a time as the machine has cores (each run's own
/// network on its own thread, so each gives exactly what it gives alone). Each run is charged
/// the wall time of the whole (evaluations included) over the number of runs, so the aggregate
/// throughput is all the runs' samples over that wall time.
pub fn run_on_cpu_threads(
    contenders: &[Contender],
    train_set: &Dataset,
    test_set: &Dataset,
    placement: &Placement,
) -> Result<Vec<Run>> {
    let start = Instant::now();
    let (done, threads) = crate::dist::threads::one_per_core(contenders.len(), |k| {
        super::compare::run_contender(&contenders[k], train_set, test_set, placement)
    });
    let share = start.elapsed().as_secs_f64() / contenders.len().max(1) as f64;
    let mut runs = Vec::with_capacity(contenders.len());
    for run in done {
        let mut run = run.ok_or_else(|| Error::Usage("a run did not finish".into()))??;
        run.device = format!("{} ({threads} runs at a time, one per core)", run.device);
        run.seconds = share;
        runs.push(run);
    }
    Ok(runs)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// What one epoch gave one model of a batch (`train_epochs`).
pub(crate) struct EpochOf<'a> {
    pub epoch: usize,
    pub model: usize,
    pub totals: &'a Totals,
    /// The model's steps in the epoch, and before it.
    pub steps: usize,
    pub steps_before: usize,
    /// The epoch's training wall time, every model's together.
    pub seconds: f64,
}

/// The epoch loop `compare`/`sweep` side by side and `Trainer::fit_many` share: `epochs` epochs
/// of every model, model k's batches from `batchers[k]`, many steps per submit; after each,
/// `each` sees every model that had not diverged before it (a model that diverges is shown the
/// epoch it diverged in, then no more). Returns the samples one model trained on and the
/// training wall time of all (evaluations in `each` not counted).
pub(crate) fn train_epochs(
    nets: &mut BatchedNetworks,
    batchers: &mut [Batcher],
    epochs: usize,
    mut each: impl FnMut(&mut BatchedNetworks, EpochOf) -> Result<()>,
) -> Result<(usize, f64)> {
    let mut diverged = vec![false; batchers.len()];
    let (mut samples, mut seconds, mut steps_before) = (0, 0.0, 0);
    for epoch in 1..=epochs {
        let plans: Vec<Vec<Vec<u32>>> = batchers
            .iter_mut()
            .map(|b| b.next_epoch().into_iter().map(|v| v.into_iter().map(|i| i as u32).collect()).collect())
            .collect();
        let start = Instant::now();
        train_epoch(nets, &plans)?;
        let totals = nets.take_totals()?;
        let epoch_seconds = start.elapsed().as_secs_f64();
        seconds += epoch_seconds;
        samples += plans.first().map_or(0, |p| p.iter().map(Vec::len).sum::<usize>());
        for (k, t) in totals.iter().enumerate() {
            if diverged[k] {
                continue;
            }
            diverged[k] = t.first_bad.is_some();
            let steps = plans[k].len();
            each(nets, EpochOf { epoch, model: k, totals: t, steps, steps_before, seconds: epoch_seconds })?;
        }
        steps_before += plans.first().map_or(0, Vec::len);
    }
    Ok((samples, seconds))
}

/// Sets `eval` to model k of `nets` (parameters and batch-norm statistics), to evaluate it.
pub(crate) fn load_model(eval: &mut GpuNetwork, nets: &mut BatchedNetworks, k: usize) -> Result<()> {
    eval.set_params(&nets.params(k)?)?;
    eval.set_norm_state(&nets.norm_state(k)?)
}

/// One epoch of every model, model k's batches `epochs[k]` (every model the same number of
/// steps), many steps per submit: runs of steps whose batches share a size (a short last batch
/// goes on its own), `DEFAULT_STEPS_PER_SUBMIT` at a time.
pub(crate) fn train_epoch(nets: &mut BatchedNetworks, epochs: &[Vec<Vec<u32>>]) -> Result<()> {
    let Some(first) = epochs.first() else { return Ok(()) };
    let steps: Vec<Vec<&[u32]>> = (0..first.len()).map(|j| epochs.iter().map(|e| e[j].as_slice()).collect()).collect();
    let mut start = 0;
    while start < steps.len() {
        let rows = steps[start][0].len();
        let end = (start..steps.len())
            .take(crate::exec::DEFAULT_STEPS_PER_SUBMIT)
            .take_while(|&j| steps[j][0].len() == rows)
            .last()
            .map_or(start + 1, |j| j + 1);
        let chunk: Vec<&[&[u32]]> = steps[start..end].iter().map(Vec::as_slice).collect();
        nets.train_steps(&chunk)?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_differ_in_their_batch_plan_do_not_train_side_by_side() {
        let base = crate::config::Config::default_run_with(&[]).unwrap();
        let c = |label: &str, config: &crate::config::Config| Contender { label: label.into(), config: config.clone() };
        let mut other = base.clone();
        other.train.batch_size += 1;
        assert_eq!(obstacle(&[c("a", &base), c("b", &base)]), None);
        assert!(obstacle(&[c("a", &base)]).is_some());
        assert!(obstacle(&[c("a", &base), c("b", &other)]).unwrap().contains("b differs"));
    }
}
