//! One short launch function per planned op (`spec::plan`): each turns a forward or backward op
//! into the kernel launches that run it, from the same parameter builders `exec::ops` (and so the
//! kernel tests), `bench` and `check` use. `GpuNetwork` calls them in plan order, once, when it
//! is built; a training step only records the launches.

use crate::device::Dispatch;
use crate::device::GpuBuffer;
use crate::error::Result;
use crate::kernels::Gpu;
use crate::kernels::{
    ActEntry, ActParams, BnEntry, BnParams, Epilogue, LossEntry, LossParams, MatmulParams, ACT_ACCUMULATE,
    BN_ACCUMULATE,
};
use crate::spec::plan::{BackwardOp, Buf, ForwardOp, GradTarget};
use crate::spec::{Act, Loss, Model};

/// How a launch's parameters depend on the number of rows in the batch.
pub(crate) enum Shape {
    /// Matmul whose m is the batch (forward, dX).
    MatmulRowsM(MatmulParams),
    /// Matmul whose k is the batch (dW = dZᵀ·X).
    MatmulRowsK(MatmulParams),
    Act(ActParams, usize),
    Loss(LossParams),
    Reduce(LossParams),
    Gather(crate::kernels::GatherParams),
    BatchNorm(BnParams, BnEntry),
}

/// Which pass a forward launch belongs to: batch norm differs between training and eval.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    Train,
    Eval,
}

pub(crate) struct Launch {
    pub dispatch: Dispatch,
    pub shape: Shape,
    pub when: When,
}

impl Launch {
    pub fn new(dispatch: Dispatch, shape: Shape) -> Launch {
        Launch { dispatch, shape, when: When::Always }
    }

    /// Rewrites the launch's parameters and grid for a batch of `rows` rows (never more than
    /// it was built for: the launch's bounds check refuses that).
    pub fn resize(&mut self, gpu: &Gpu, rows: u32) -> Result<()> {
        match &mut self.shape {
            Shape::MatmulRowsM(p) => {
                p.m = rows;
                self.dispatch.update_matmul(gpu, *p)
            }
            Shape::MatmulRowsK(p) => {
                p.k = rows;
                self.dispatch.update_matmul(gpu, *p)
            }
            Shape::Act(p, width) => {
                p.len = rows * *width as u32;
                self.dispatch.update(gpu, p, p.grid())
            }
            Shape::Loss(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, p.grid(LossEntry::CrossEntropy))
            }
            Shape::Reduce(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, [1, 1, 1])
            }
            Shape::Gather(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, p.grid())
            }
            Shape::BatchNorm(p, entry) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, p.grid(*entry))
            }
        }
    }
}

/// Every buffer a launch can bind: the plan's, and the network's own.
pub(crate) struct Buffers<'a> {
    pub input: &'a GpuBuffer,
    pub stage: &'a [GpuBuffer],
    pub params: &'a GpuBuffer,
    pub grads: &'a GpuBuffer,
    pub running: &'a GpuBuffer,
    pub labels: &'a GpuBuffer,
    pub row_stats: &'a GpuBuffer,
    pub totals: &'a GpuBuffer,
}

impl Buffers<'_> {
    fn get(&self, b: Buf) -> &GpuBuffer {
        match b {
            Buf::Input => self.input,
            // The stage buffers are allocated from the same plan, one per `BufferSpec`.
            Buf::Stage(i) => &self.stage[i],
        }
    }
}

/// What every launch of one network shares.
pub(crate) struct Context<'a> {
    pub gpu: &'a Gpu,
    pub buffers: Buffers<'a>,
    pub model: &'a Model,
    pub loss: Loss,
    pub max_rows: usize,
}

fn act_params(act: Act, len: usize, accumulate: bool) -> ActParams {
    ActParams {
        len: len as u32,
        act: act.kind.code(),
        slope: act.slope,
        flags: if accumulate { ACT_ACCUMULATE } else { 0 },
    }
}

/// One batch-norm layer's parameters, blended for the first training batch.
fn bn_params(c: &Context, norm: usize, width: usize, gamma: usize, beta: usize, act: Act) -> BnParams {
    let layer = &c.model.norms[norm];
    BnParams::layer(c.max_rows, width, gamma, beta, layer.running_mean, layer.running_var, layer.eps, act)
}

pub(crate) fn forward(c: &Context, op: &ForwardOp) -> Result<Vec<Launch>> {
    match *op {
        ForwardOp::Dense { x, out, preact, skip, inputs, outputs, weight, bias, act, .. } => {
            dense_forward(c, x, out, preact, skip, inputs, outputs, weight, bias, act).map(|l| vec![l])
        }
        ForwardOp::BatchNorm { x, out, stats, width, gamma, beta, norm, act, .. } => {
            batchnorm_forward(c, x, out, stats, width, gamma, beta, norm, act)
        }
        ForwardOp::Activation { x, out, width, act, .. } => activation_forward(c, x, out, width, act).map(|l| vec![l]),
        ForwardOp::Add { x, skip, out, width, .. } => residual_add(c, x, skip, out, width).map(|l| vec![l]),
    }
}

pub(crate) fn backward(c: &Context, op: &BackwardOp) -> Result<Vec<Launch>> {
    match *op {
        BackwardOp::Loss { logits, grad } => loss(c, logits, grad),
        BackwardOp::ActivationGrad { z, dy, out, width, act, accumulate } => {
            activation_backward(c, z, dy, out, width, act, accumulate).map(|l| vec![l])
        }
        BackwardOp::DenseWeight { dz, x, inputs, outputs, weight, bias } => {
            dense_backward_weight(c, dz, x, inputs, outputs, weight, bias).map(|l| vec![l])
        }
        BackwardOp::DenseInput { dz, target, accumulate, inputs, outputs, weight } => {
            dense_backward_input(c, dz, target, accumulate, inputs, outputs, weight).map(|l| vec![l])
        }
        BackwardOp::BatchNormReduce { x, dy, stats, width, gamma, beta, norm, act } => {
            let p = bn_params(c, norm, width, gamma, beta, act);
            batchnorm_launch(c, BnEntry::BackwardReduce, x, Some(dy), stats, None, p).map(|l| vec![l])
        }
        BackwardOp::BatchNormInput { x, dy, stats, target, accumulate, width, gamma, beta, norm, act } => {
            let mut p = bn_params(c, norm, width, gamma, beta, act);
            if accumulate {
                p.flags |= BN_ACCUMULATE;
            }
            batchnorm_launch(c, BnEntry::BackwardInput, x, Some(dy), stats, Some(target), p).map(|l| vec![l])
        }
    }
}

/// out = act(x·Wᵀ + b), z kept for the backward pass when there is an activation; plus `skip`
/// when the Linear ends a residual block (its aux binding then carries the skip value).
#[allow(clippy::too_many_arguments)]
fn dense_forward(
    c: &Context,
    x: Buf,
    out: Buf,
    preact: Option<Buf>,
    skip: Option<Buf>,
    inputs: usize,
    outputs: usize,
    weight: usize,
    bias: Option<usize>,
    act: Act,
) -> Result<Launch> {
    let b = &c.buffers;
    let epilogue = Epilogue { keep_z: preact.is_some(), add_skip: skip.is_some(), ..Epilogue::dense(bias, act) };
    let p = MatmulParams::dense_forward(c.max_rows, inputs, outputs, weight, epilogue);
    let bias_buf = bias.map(|_| b.params);
    let aux = match (preact, skip) {
        (Some(_), Some(_)) => {
            return Err(crate::error::Error::Plan("a Linear with an activation cannot absorb a residual sum".into()));
        }
        (z, s) => z.or(s).map(|a| b.get(a)),
    };
    let d = c.gpu.matmul(b.get(x), b.params, bias_buf, b.get(out), aux, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsM(p)))
}

/// The batch statistics (training) or the running ones (eval), then out = act(γ·x̂ + β).
#[allow(clippy::too_many_arguments)]
fn batchnorm_forward(
    c: &Context,
    x: Buf,
    out: Buf,
    stats: Buf,
    width: usize,
    gamma: usize,
    beta: usize,
    norm: usize,
    act: Act,
) -> Result<Vec<Launch>> {
    let p = bn_params(c, norm, width, gamma, beta, act).training(c.model.norms[norm].momentum.factor(1));
    let mut launches = Vec::with_capacity(3);
    for (when, p) in [(When::Train, p), (When::Eval, BnParams { flags: 0, ..p })] {
        let l = batchnorm_launch(c, BnEntry::Stats, x, None, stats, None, p)?;
        launches.push(Launch { when, ..l });
    }
    launches.push(batchnorm_launch(c, BnEntry::Forward, x, None, stats, Some(out), BnParams { flags: 0, ..p })?);
    Ok(launches)
}

/// A synchronised batch norm's training statistics as one rank's share (`BnParams::synced`):
/// the host combines the ranks' before `batchnorm_forward` runs. None for any other op.
pub(crate) fn share_stats(c: &Context, op: &ForwardOp) -> Result<Option<Launch>> {
    match *op {
        ForwardOp::BatchNorm { x, stats, width, gamma, beta, norm, act, .. } if c.model.norms[norm].sync => {
            let p = bn_params(c, norm, width, gamma, beta, act).synced();
            let l = batchnorm_launch(c, BnEntry::Stats, x, None, stats, None, p)?;
            Ok(Some(Launch { when: When::Train, ..l }))
        }
        _ => Ok(None),
    }
}

fn batchnorm_launch(
    c: &Context,
    entry: BnEntry,
    x: Buf,
    dy: Option<Buf>,
    stats: Buf,
    out: Option<Buf>,
    p: BnParams,
) -> Result<Launch> {
    let b = &c.buffers;
    let (dy, out) = (dy.map(|d| b.get(d)), out.map(|o| b.get(o)));
    let d = c.gpu.batchnorm(entry, b.get(x), dy, b.params, b.running, b.get(stats), out, b.grads, p)?;
    Ok(Launch::new(d, Shape::BatchNorm(p, entry)))
}

fn activation_forward(c: &Context, x: Buf, out: Buf, width: usize, act: Act) -> Result<Launch> {
    let p = act_params(act, c.max_rows * width, false);
    let d = c.gpu.activation(ActEntry::Forward, c.buffers.get(x), None, c.buffers.get(out), p)?;
    Ok(Launch::new(d, Shape::Act(p, width)))
}

fn residual_add(c: &Context, x: Buf, skip: Buf, out: Buf, width: usize) -> Result<Launch> {
    let b = &c.buffers;
    let p = act_params(Act::IDENTITY, c.max_rows * width, false);
    let d = c.gpu.residual_add(b.get(x), b.get(skip), b.get(out), p)?;
    Ok(Launch::new(d, Shape::Act(p, width)))
}

/// The loss and its gradient per row, then the reduction into the step's loss and the totals (one
/// dispatch for batches of up to 64 rows).
fn loss(c: &Context, logits: Buf, grad: Buf) -> Result<Vec<Launch>> {
    let b = &c.buffers;
    let p = LossParams { rows: c.max_rows as u32, cols: c.model.outputs() as u32, use_targets: 0, _pad: 0 };
    let (logits, grad) = (b.get(logits), b.get(grad));
    let step = c.gpu.loss_step(c.loss, logits, b.labels, None, grad, b.row_stats, b.totals, p, c.max_rows)?;
    let last = step.len() - 1;
    // The per-row kernel's grid follows the rows; a reduction (or the one-workgroup form) is 1.
    let shape = |i: usize| if i < last { Shape::Loss(p) } else { Shape::Reduce(p) };
    Ok(step.into_iter().enumerate().map(|(i, d)| Launch::new(d, shape(i))).collect())
}

/// out (+)= dy ⊙ act'(z).
fn activation_backward(
    c: &Context,
    z: Buf,
    dy: Buf,
    out: Buf,
    width: usize,
    act: Act,
    accumulate: bool,
) -> Result<Launch> {
    let b = &c.buffers;
    let p = act_params(act, c.max_rows * width, accumulate);
    let d = c.gpu.activation(ActEntry::Backward, b.get(z), Some(b.get(dy)), b.get(out), p)?;
    Ok(Launch::new(d, Shape::Act(p, width)))
}

/// dW = dZᵀ·X: [outputs, rows]·[rows, inputs], and db = Σ_rows dZ in the same launch.
fn dense_backward_weight(
    c: &Context,
    dz: Buf,
    x: Buf,
    inputs: usize,
    outputs: usize,
    weight: usize,
    bias: Option<usize>,
) -> Result<Launch> {
    let b = &c.buffers;
    let p = MatmulParams::dense_backward_params(c.max_rows, inputs, outputs, weight, bias, false);
    let d = c.gpu.matmul(b.get(dz), b.get(x), None, b.grads, None, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsK(p)))
}

/// dX = dZ·W: [rows, outputs]·[outputs, inputs], the producer's act' fused when the plan says so.
fn dense_backward_input(
    c: &Context,
    dz: Buf,
    target: GradTarget,
    accumulate: bool,
    inputs: usize,
    outputs: usize,
    weight: usize,
) -> Result<Launch> {
    let b = &c.buffers;
    let (aux, prev_act) = match target.fused {
        Some((z, act)) => (Some(b.get(z)), act),
        None => (None, Act::IDENTITY),
    };
    let act_grad = aux.is_some().then_some(prev_act);
    let p = MatmulParams::dense_backward_input(c.max_rows, inputs, outputs, weight, act_grad, accumulate);
    let d = c.gpu.matmul(b.get(dz), b.params, None, b.get(target.buf), aux, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsM(p)))
}
