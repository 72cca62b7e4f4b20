//! Many SGD steps per dispatch for small MLPs (shaders/small_mlp.wgsl): one invocation holds the
//! whole model in workgroup memory and runs thousands of steps, so a million steps of Higham &
//! Higham's 2-2-3-2 network cost seconds instead of the ~10 launches per step of the training
//! path. For Dense-only models up to `MAX_LAYERS` layers of `MAX_WIDTH` units and `MAX_PARAMS`
//! parameters, batches up to `MAX_BATCH` rows, and torch.optim.SGD without weight decay or
//! Nesterov; `check_supported` says which limit a model breaks.

use crate::data::Dataset;
use crate::device::{submit, Dispatch};
use crate::error::{Error, Result};
use crate::kernels::small_mlp::{SmallMlpParams, LOSS_CROSS_ENTROPY, LOSS_MSE, NO_BIAS};
pub use crate::kernels::small_mlp::{MAX_BATCH, MAX_LAYERS, MAX_PARAMS, MAX_WIDTH};
use crate::kernels::Gpu;
use crate::optim::{MomentumForm, Sgd};
use crate::spec::{Loss, Model, Op};

/// Loop iterations one invocation may run: llvmpipe silently ends every loop of an invocation
/// after 65,535 iterations of all its loops together (Mesa's LP_MAX_TGSI_LOOP_ITERATIONS), so
/// each dispatch is sized to stay under this, with a quarter to spare. (It also keeps a
/// dispatch to milliseconds, well inside any GPU watchdog.)
pub const LOOP_BUDGET: usize = 50_000;

/// small_mlp.wgsl's loop count for one step of `batch` rows and for one cost evaluation over
/// `rows` rows: every execution of a loop body plus one per loop entry (the test that ends it),
/// which is how the count the limit applies to grows (the first kernel, without the entries,
/// stopped 8 % before its estimate said it would).
pub fn loop_iterations(model: &Model, loss: Loss, batch: usize, rows: usize) -> (usize, usize) {
    let dense: Vec<(usize, usize, bool)> = model
        .stages
        .iter()
        .filter_map(|s| match s.op {
            Op::Dense { inputs, outputs, bias, .. } => Some((inputs, outputs, bias.is_some())),
            _ => None,
        })
        .collect();
    let (l, m) = (dense.len(), batch);
    let slots: usize = dense.iter().map(|&(i, o, b)| i * o + if b { o } else { 0 }).sum();
    let sum = |f: &dyn Fn(usize, usize, usize) -> usize| {
        dense.iter().enumerate().map(|(k, &(i, o, _))| f(k, i, o)).sum::<usize>()
    };
    // Bodies and entries: the slot loops of zero_grads and of the update (a layer loop, a weight
    // and a bias loop per layer).
    let slot_pass = slots + (1 + l) + (1 + 2 * l);
    // forward_row: the input copy, the layer loop, the unit loops and their inner sums.
    let forward_row = (model.inputs + 1) + (l + 1) + sum(&|_, i, o| o + 1 + o * (i + 1));
    let loss_row = match loss {
        Loss::Mse => model.outputs() + 1,
        Loss::CrossEntropy => 3 * (model.outputs() + 1),
    };
    // backward: per layer and row, the unit loop with its weight loop, and (past the first layer)
    // the back-propagation loop with its sum.
    let backward = (l + 1)
        + sum(&|k, i, o| (m + 1) + m * (o + 1 + o * (i + 1)) + if k > 0 { m * (i + 1 + i * (o + 1)) } else { 0 });
    let step = 1 + 2 * slot_pass + (m + 1) + m * (forward_row + loss_row) + backward;
    let cost = (rows + 1) + rows * (forward_row + loss_row);
    (step, cost)
}

/// Ok when `model` with batches of `batch` rows and `sgd` fits the kernel; else what does not.
pub fn check_supported(model: &Model, batch: usize, sgd: &Sgd) -> Result<()> {
    let refuse = |why: String| Err(Error::Usage(format!("the many-steps kernel cannot run this: {why}")));
    let dense = model.stages.iter().filter(|s| matches!(s.op, Op::Dense { .. })).count();
    if dense != model.stages.len() || model.stages.iter().enumerate().any(|(s, st)| st.input != s) {
        return refuse("only a chain of Linear layers (with their activations) is supported".into());
    }
    if dense == 0 || dense > MAX_LAYERS {
        return refuse(format!("{dense} Linear layers (1 to {MAX_LAYERS})"));
    }
    let widest = (0..=model.stages.len()).map(|v| model.width_of(v)).max().unwrap_or(0);
    if widest > MAX_WIDTH {
        return refuse(format!("a layer of width {widest} (at most {MAX_WIDTH})"));
    }
    let values: usize = model.params.iter().map(|t| t.len).sum();
    if values > MAX_PARAMS {
        return refuse(format!("{values} parameters (at most {MAX_PARAMS})"));
    }
    if batch == 0 || batch > MAX_BATCH {
        return refuse(format!("batches of {batch} rows (1 to {MAX_BATCH})"));
    }
    if sgd.weight_decay != 0.0 || sgd.nesterov || sgd.momentum.form() != MomentumForm::Pytorch {
        return refuse("SGD with weight decay, Nesterov or the course's momentum forms".into());
    }
    Ok(())
}

/// A run's result: the parameters after the last step and the mean loss over all rows after
/// every `every`-th step.
pub struct SmallMlpRun {
    pub params: Vec<f32>,
    pub costs: Vec<f32>,
}

/// Trains `model` from `params` on `data` by the steps of `schedule` (`batch` row indices per
/// step), recording the cost every `every` steps (0: never).
#[allow(clippy::too_many_arguments)]
pub fn train_small_mlp(
    gpu: &Gpu,
    model: &Model,
    loss: Loss,
    sgd: &Sgd,
    params: &[f32],
    data: &Dataset,
    schedule: &[u32],
    batch: usize,
    every: usize,
) -> Result<SmallMlpRun> {
    check_supported(model, batch, sgd)?;
    crate::optim::Optimizer::Sgd(sgd.clone()).validate().map_err(|m| Error::Usage(format!("optimizer (sgd): {m}")))?;
    crate::exec::cpu_network::check_params(model, params)?;
    if data.d != model.inputs || data.n == 0 {
        return Err(Error::Shape {
            what: "many-steps training data".into(),
            expected: format!("rows of {} features", model.inputs),
            got: format!("{} rows of {}", data.n, data.d),
        });
    }
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= model.outputs()) {
        return Err(Error::Usage(format!("label {bad} is not below the model's {} outputs", model.outputs())));
    }
    if !schedule.len().is_multiple_of(batch) || schedule.iter().any(|&i| i as usize >= data.n) {
        return Err(Error::Usage(format!("the step schedule must hold {batch} row indices below {} per step", data.n)));
    }
    let steps = schedule.len() / batch;
    if steps > u32::MAX as usize / batch.max(1) {
        return Err(Error::Usage(format!("{steps} steps is too many for one run")));
    }
    let recorded = steps.checked_div(every).unwrap_or(0);
    let mut p = SmallMlpParams {
        layers: model.stages.len() as u32,
        rows: data.n as u32,
        batch: batch as u32,
        every: every as u32,
        loss: match loss {
            Loss::Mse => LOSS_MSE,
            Loss::CrossEntropy => LOSS_CROSS_ENTROPY,
        },
        lr: sgd.lr as f32,
        momentum: sgd.momentum.value() as f32,
        one_minus_dampening: (1.0 - sgd.dampening) as f32,
        ..Default::default()
    };
    // The kernel holds the parameters packed, without the flat buffer's alignment padding.
    let mut packed_at = vec![0usize; model.param_len];
    let mut packed = Vec::new();
    for t in &model.params {
        packed_at[t.offset] = packed.len();
        packed.extend_from_slice(&params[t.offset..t.offset + t.len]);
    }
    p.param_len = packed.len() as u32;
    for (l, stage) in model.stages.iter().enumerate() {
        if let Op::Dense { inputs, outputs, weight, bias, act } = stage.op {
            let bias_at = bias.map_or(NO_BIAS, |b| packed_at[b] as u32);
            p.shape[l] = [inputs as u32, outputs as u32, packed_at[weight] as u32, bias_at];
            p.act[l] = [act.kind.code(), act.slope.to_bits(), 0, 0];
        }
    }
    let params_buf = gpu.upload("small MLP parameters", &packed)?;
    let velocity = gpu.storage("small MLP momentum", packed.len())?;
    let x = gpu.upload("small MLP data", &data.x)?;
    let labels = gpu.upload("small MLP labels", &data.labels)?;
    let schedule_buf = gpu.upload("small MLP schedule", schedule)?;
    let costs = gpu.storage("small MLP costs", recorded.max(1))?;
    let (per_step, per_cost) = loop_iterations(model, loss, batch, data.n);
    let fixed = 2 * (packed.len() + 1) + per_cost;
    if fixed + per_step > LOOP_BUDGET {
        return Err(Error::Usage(format!(
            "one step and one cost evaluation of this model over {} rows take {} loop iterations, more \
             than the {LOOP_BUDGET} one invocation may run",
            data.n,
            fixed + per_step
        )));
    }
    // Steps per dispatch: S steps and at most S/every + 1 cost evaluations within the budget.
    let per_step_with_costs = per_step + if every == 0 { 0 } else { per_cost.div_ceil(every) };
    let chunk_steps = ((LOOP_BUDGET - fixed) / per_step_with_costs).max(1);
    let mut launches: Vec<Dispatch> = Vec::new();
    for first in (0..steps).step_by(chunk_steps) {
        let chunk = SmallMlpParams {
            first_step: first as u32,
            steps: (steps - first).min(chunk_steps) as u32,
            first_momentum_step: u32::from(first == 0),
            ..p
        };
        launches.push(gpu.small_mlp_kernel(&[&params_buf, &velocity, &x, &labels, &schedule_buf, &costs], &chunk)?);
    }
    // A hundred dispatches per submit: the queue stays busy without one submit holding the device long.
    for group in launches.chunks(100) {
        let refs: Vec<&Dispatch> = group.iter().collect();
        submit(gpu, "many SGD steps", &refs)?;
    }
    let trained = gpu.read_all(&params_buf)?;
    let mut params = params.to_vec();
    let mut at = 0;
    for t in &model.params {
        params[t.offset..t.offset + t.len].copy_from_slice(&trained[at..at + t.len]);
        at += t.len;
    }
    let costs = if recorded == 0 { Vec::new() } else { gpu.read(&costs, 0, recorded)? };
    Ok(SmallMlpRun { params, costs })
}
