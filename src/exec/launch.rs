//! One short launch function per layer pass (a Linear's forward, its dW and dX, a batch norm's
//! kernels, an activation, the loss), from the same parameter builders `exec::ops` (and so the
//! kernel tests), `bench` and `check` use. `GpuNetwork` calls them through `forward`/`backward`
//! for each planned op (`spec::plan`), once, when it is built, and a training step only records
//! them; the Hessian-vector product (`exec::gpu_hessian`) calls the same functions for its plain
//! values and gradients and adds only the R-terms.

use crate::device::Dispatch;
use crate::device::GpuBuffer;
use crate::error::{Error, Result};
use crate::kernels::Gpu;
use crate::kernels::{
    ActEntry, ActParams, BnEntry, BnParams, DropEntry, DropoutParams, Epilogue, LossEntry, LossParams, MatmulParams,
    ACT_ACCUMULATE, BN_ACCUMULATE,
};
use crate::spec::plan::{BackwardOp, Buf, ForwardOp};
use crate::spec::{Act, Loss, Model};

/// How a launch's parameters depend on the number of rows in the batch.
pub(crate) enum Shape {
    /// Matmul whose m is the batch (forward, dX).
    MatmulRowsM(MatmulParams),
    /// Matmul whose k is the batch (dW = dZᵀ·X).
    MatmulRowsK(MatmulParams),
    /// Element-wise over `width` per row; for a batch of models the elements before the last
    /// model's slice come first (the kernel runs over the models' padding too: harmless).
    Act(ActParams, usize, u32),
    Loss(LossParams),
    Reduce(LossParams),
    /// A gather; for a batch of models, the rows before the last model's slice come first.
    Gather(crate::kernels::GatherParams, u32),
    BatchNorm(BnParams, BnEntry),
    /// Element-wise over `width` per row (one model only); a training launch's step and key
    /// are rewritten every step (`Launch::draw_at`).
    Dropout(DropoutParams, usize),
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
    /// Points a loss launch at the batch's real targets (`on`) or at one-hot labels; other
    /// launches are left alone.
    pub fn set_use_targets(&mut self, gpu: &Gpu, on: bool) -> Result<()> {
        match &mut self.shape {
            Shape::Loss(p) | Shape::Reduce(p) => {
                p.use_targets = u32::from(on);
                let rows = p.rows;
                self.resize(gpu, rows)
            }
            _ => Ok(()),
        }
    }

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
            Shape::Act(p, width, before) => {
                p.len = *before + rows * *width as u32;
                self.dispatch.update(gpu, p, p.grid())
            }
            Shape::Loss(p) => {
                p.rows = rows;
                // The loss kernel's grid is the same for every loss (rows / 64).
                self.dispatch.update(gpu, p, p.grid(LossEntry::CrossEntropy))
            }
            Shape::Reduce(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, p.grid(LossEntry::Reduce))
            }
            Shape::Gather(p, before) => {
                p.rows = *before + rows;
                self.dispatch.update(gpu, p, p.grid())
            }
            Shape::BatchNorm(p, entry) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, p.grid(*entry))
            }
            Shape::Dropout(p, width) => {
                p.len = rows * *width as u32;
                self.dispatch.update(gpu, p, p.grid())
            }
        }
    }

    /// A training dropout launch's parameters for optimizer step `step` of a run seeded `seed`
    /// (None for any other launch, and for an evaluation one, which stays the identity).
    pub fn draw_at(&self, seed: u64, step: u64) -> Option<DropoutParams> {
        match (&self.shape, self.when) {
            (Shape::Dropout(p, _), When::Train | When::Always) => Some(p.at(seed, step)),
            _ => None,
        }
    }
}

/// What every launch of one network shares: the device, the model, the rows the launches are
/// built for (a training network's largest batch, which `Launch::resize` may shrink; a Hessian
/// product's batch), and the buffers that are not per value. With `models` > 1, a batch of
/// models side by side: every buffer holds each model's slice `GpuBuffer::per_model` apart and
/// each launch covers them all (workgroup z, or an element-wise run over every slice).
pub(crate) struct Net<'a> {
    pub gpu: &'a Gpu,
    pub model: &'a Model,
    pub loss: Loss,
    pub rows: usize,
    pub models: usize,
    pub params: &'a GpuBuffer,
    pub grads: &'a GpuBuffer,
    pub running: &'a GpuBuffer,
    pub labels: &'a GpuBuffer,
    /// The batch's real targets for MSE (regression), bound to the loss launch; its
    /// `use_targets` flag says whether they are read (`GpuNetwork::set_train_data` sets it).
    pub targets: Option<&'a GpuBuffer>,
    pub row_stats: &'a GpuBuffer,
    pub totals: &'a GpuBuffer,
}

/// A training plan's ops with their `Buf`s resolved: the network, its batch input and the plan's
/// stage buffers (allocated from the same plan, one per `BufferSpec`).
pub(crate) struct Context<'a> {
    pub net: Net<'a>,
    pub input: &'a GpuBuffer,
    pub stage: &'a [GpuBuffer],
}

impl Context<'_> {
    fn get(&self, b: Buf) -> &GpuBuffer {
        match b {
            Buf::Input => self.input,
            Buf::Stage(i) => &self.stage[i],
        }
    }
}

/// What a dense forward launch writes besides its output.
pub(crate) enum Aux<'a> {
    None,
    /// z = x·Wᵀ + b before the activation, for the backward pass.
    Preact(&'a GpuBuffer),
    /// The skip value of the residual block the Linear ends, added in the epilogue.
    Skip(&'a GpuBuffer),
}

/// Elements of `b` before the last model's slice: where an element-wise launch over a batch of
/// models starts its last model (0 for one model).
fn before_last(n: &Net, b: &GpuBuffer) -> usize {
    (n.models - 1) * b.per_model
}

/// An element-wise launch's buffers must lay the models out alike.
fn same_layout(n: &Net, buffers: &[&GpuBuffer]) -> Result<()> {
    match buffers.windows(2).find(|w| w[0].per_model != w[1].per_model) {
        Some(w) if n.models > 1 => Err(crate::error::Error::Plan(format!(
            "an element-wise launch over {} models on buffers {} and {} elements per model apart",
            n.models, w[0].per_model, w[1].per_model
        ))),
        _ => Ok(()),
    }
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
pub(crate) fn bn_params(n: &Net, norm: usize, width: usize, gamma: usize, beta: usize, act: Act) -> BnParams {
    let layer = &n.model.norms[norm];
    BnParams::layer(n.rows, width, gamma, beta, layer.running_mean, layer.running_var, layer.eps, act)
}

// ---- A plan's ops -------------------------------------------------------------------------------

pub(crate) fn forward(c: &Context, op: &ForwardOp) -> Result<Vec<Launch>> {
    let n = &c.net;
    match *op {
        ForwardOp::Dense { x, out, preact, skip, inputs, outputs, weight, bias, act, .. } => {
            let aux = match (preact, skip) {
                (Some(_), Some(_)) => {
                    return Err(crate::error::Error::Plan(
                        "a Linear with an activation cannot absorb a residual sum".into(),
                    ));
                }
                (Some(z), None) => Aux::Preact(c.get(z)),
                (None, Some(s)) => Aux::Skip(c.get(s)),
                (None, None) => Aux::None,
            };
            dense_forward(n, c.get(x), c.get(out), aux, inputs, outputs, weight, bias, act).map(|l| vec![l])
        }
        ForwardOp::BatchNorm { x, out, stats, width, gamma, beta, norm, act, .. } => {
            batchnorm_forward(n, c.get(x), c.get(out), c.get(stats), width, gamma, beta, norm, act)
        }
        ForwardOp::Activation { x, out, width, act, .. } => {
            activation_forward(n, c.get(x), c.get(out), width, act).map(|l| vec![l])
        }
        ForwardOp::Add { x, skip, out, width, .. } => {
            residual_add(n, c.get(x), c.get(skip), c.get(out), width).map(|l| vec![l])
        }
        ForwardOp::Dropout { x, out, width, p, layer, .. } => {
            let (x, out) = (c.get(x), c.get(out));
            let train = dropout(n, x, out, width, p, layer, false)?;
            let eval = dropout_launch(n, x, out, width, DropoutParams::identity(n.rows * width))?;
            Ok(vec![Launch { when: When::Train, ..train }, Launch { when: When::Eval, ..eval }])
        }
    }
}

pub(crate) fn backward(c: &Context, op: &BackwardOp) -> Result<Vec<Launch>> {
    let n = &c.net;
    match *op {
        BackwardOp::Loss { logits, grad } => loss(n, c.get(logits), c.get(grad)),
        BackwardOp::ActivationGrad { z, dy, out, width, act, accumulate } => {
            activation_backward(n, c.get(z), c.get(dy), c.get(out), width, act, accumulate).map(|l| vec![l])
        }
        BackwardOp::DenseWeight { dz, x, inputs, outputs, weight, bias } => {
            dense_backward_weight(n, c.get(dz), c.get(x), inputs, outputs, weight, bias).map(|l| vec![l])
        }
        BackwardOp::DenseInput { dz, target, accumulate, inputs, outputs, weight } => {
            let fused = target.fused.map(|(z, act)| (c.get(z), act));
            dense_backward_input(n, c.get(dz), c.get(target.buf), fused, accumulate, inputs, outputs, weight)
                .map(|l| vec![l])
        }
        BackwardOp::DropoutGrad { dy, out, width, p, layer, accumulate } => {
            dropout(n, c.get(dy), c.get(out), width, p, layer, accumulate).map(|l| vec![l])
        }
        BackwardOp::BatchNormReduce { x, dy, stats, width, gamma, beta, norm, act } => {
            let p = bn_params(n, norm, width, gamma, beta, act);
            batchnorm(n, BnEntry::BackwardReduce, c.get(x), Some(c.get(dy)), c.get(stats), None, p).map(|l| vec![l])
        }
        BackwardOp::BatchNormInput { x, dy, stats, target, accumulate, width, gamma, beta, norm, act } => {
            let p = bn_input_params(bn_params(n, norm, width, gamma, beta, act), accumulate);
            let (x, dy, stats, target) = (c.get(x), c.get(dy), c.get(stats), c.get(target));
            batchnorm(n, BnEntry::BackwardInput, x, Some(dy), stats, Some(target), p).map(|l| vec![l])
        }
    }
}

/// The batch statistics (training) or the running ones (eval), then out = act(γ·x̂ + β).
#[allow(clippy::too_many_arguments)]
fn batchnorm_forward(
    n: &Net,
    x: &GpuBuffer,
    out: &GpuBuffer,
    stats: &GpuBuffer,
    width: usize,
    gamma: usize,
    beta: usize,
    norm: usize,
    act: Act,
) -> Result<Vec<Launch>> {
    let p = bn_params(n, norm, width, gamma, beta, act).training(n.model.norms[norm].momentum.factor(1));
    let mut launches = Vec::with_capacity(3);
    for (when, p) in [(When::Train, p), (When::Eval, BnParams { flags: 0, ..p })] {
        let l = batchnorm(n, BnEntry::Stats, x, None, stats, None, p)?;
        launches.push(Launch { when, ..l });
    }
    launches.push(batchnorm(n, BnEntry::Forward, x, None, stats, Some(out), BnParams { flags: 0, ..p })?);
    Ok(launches)
}

/// A synchronised batch norm's training statistics as one rank's share (`BnParams::synced`):
/// the host combines the ranks' before `batchnorm_forward` runs. None for any other op.
pub(crate) fn share_stats(c: &Context, op: &ForwardOp) -> Result<Option<Launch>> {
    match *op {
        ForwardOp::BatchNorm { x, stats, width, gamma, beta, norm, act, .. } if c.net.model.norms[norm].sync => {
            let p = bn_params(&c.net, norm, width, gamma, beta, act).synced();
            let l = batchnorm(&c.net, BnEntry::Stats, c.get(x), None, c.get(stats), None, p)?;
            Ok(Some(Launch { when: When::Train, ..l }))
        }
        _ => Ok(None),
    }
}

// ---- The layers' launches, on buffers: the training plan's and the Hessian product's -------------

/// out = act(x·Wᵀ + b), with z kept or a skip value added as `aux` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_forward(
    n: &Net,
    x: &GpuBuffer,
    out: &GpuBuffer,
    aux: Aux,
    inputs: usize,
    outputs: usize,
    weight: usize,
    bias: Option<usize>,
    act: Act,
) -> Result<Launch> {
    let (keep_z, add_skip, aux) = match aux {
        Aux::None => (false, false, None),
        Aux::Preact(z) => (true, false, Some(z)),
        Aux::Skip(s) => (false, true, Some(s)),
    };
    let epilogue = Epilogue { keep_z, add_skip, ..Epilogue::dense(bias, act) };
    let strides = [x.per_model, n.params.per_model, out.per_model, aux.map_or(0, |a| a.per_model), n.params.per_model];
    let p = MatmulParams::dense_forward(n.rows, inputs, outputs, weight, epilogue).for_models(n.models, strides);
    let d = n.gpu.matmul(x, n.params, bias.map(|_| n.params), out, aux, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsM(p)))
}

/// One batch-norm kernel on the network's parameters, running statistics and gradient.
pub(crate) fn batchnorm(
    n: &Net,
    entry: BnEntry,
    x: &GpuBuffer,
    dy: Option<&GpuBuffer>,
    stats: &GpuBuffer,
    out: Option<&GpuBuffer>,
    p: BnParams,
) -> Result<Launch> {
    let per = |b: Option<&GpuBuffer>| b.map_or(0, |b| b.per_model);
    let strides = [x, n.params, n.running, stats].map(|b| b.per_model);
    let p =
        p.for_models(n.models, [strides[0], per(dy), strides[1], strides[2], strides[3], per(out), n.grads.per_model]);
    let d = n.gpu.batchnorm(entry, x, dy, n.params, n.running, stats, out, n.grads, p)?;
    Ok(Launch::new(d, Shape::BatchNorm(p, entry)))
}

/// The backward-input launch's parameters: dx written, or added where the value has other readers.
pub(crate) fn bn_input_params(p: BnParams, accumulate: bool) -> BnParams {
    BnParams { flags: if accumulate { p.flags | BN_ACCUMULATE } else { p.flags }, ..p }
}

pub(crate) fn activation_forward(n: &Net, x: &GpuBuffer, out: &GpuBuffer, width: usize, act: Act) -> Result<Launch> {
    same_layout(n, &[x, out])?;
    let before = before_last(n, out);
    let p = act_params(act, before + n.rows * width, false);
    let d = n.gpu.activation(ActEntry::Forward, x, None, out, p)?;
    Ok(Launch::new(d, Shape::Act(p, width, before as u32)))
}

pub(crate) fn residual_add(n: &Net, x: &GpuBuffer, skip: &GpuBuffer, out: &GpuBuffer, width: usize) -> Result<Launch> {
    same_layout(n, &[x, skip, out])?;
    let before = before_last(n, out);
    let p = act_params(Act::IDENTITY, before + n.rows * width, false);
    let d = n.gpu.residual_add(x, skip, out, p)?;
    Ok(Launch::new(d, Shape::Act(p, width, before as u32)))
}

/// out (+)= mask ⊙ x / (1 − p), the mask of step 0 under seed 0 until `Launch::draw_at` moves it.
fn dropout(
    n: &Net,
    x: &GpuBuffer,
    out: &GpuBuffer,
    width: usize,
    p: f32,
    layer: usize,
    accumulate: bool,
) -> Result<Launch> {
    let draw = crate::reference::DropoutDraw::new(p, 0, 0, layer);
    dropout_launch(n, x, out, width, DropoutParams::new(&draw, n.rows * width, accumulate))
}

fn dropout_launch(n: &Net, x: &GpuBuffer, out: &GpuBuffer, width: usize, p: DropoutParams) -> Result<Launch> {
    // A batch of models would need each model's element index to restart at its slice.
    if n.models > 1 {
        return Err(Error::Plan("dropout in a batch of models side by side (train them one by one)".into()));
    }
    let d = n.gpu.dropout(DropEntry::Apply, Some(x), out, p)?;
    Ok(Launch::new(d, Shape::Dropout(p, width)))
}

/// The loss and its gradient per row, then the reduction into the step's loss and the totals (one
/// dispatch for batches of up to 64 rows).
pub(crate) fn loss(n: &Net, logits: &GpuBuffer, grad: &GpuBuffer) -> Result<Vec<Launch>> {
    let strides = [logits, n.labels, logits, grad, n.row_stats, n.totals].map(|b| b.per_model);
    let p = LossParams::new(n.rows, n.model.outputs(), false).for_models(n.models, strides);
    let step = n.gpu.loss_step(n.loss, logits, n.labels, n.targets, grad, n.row_stats, n.totals, p, n.rows)?;
    let last = step.len() - 1;
    // The per-row kernel's grid follows the rows; a reduction (or the one-workgroup form) is 1.
    let shape = |i: usize| if i < last { Shape::Loss(p) } else { Shape::Reduce(p) };
    Ok(step.into_iter().enumerate().map(|(i, d)| Launch::new(d, shape(i))).collect())
}

/// out (+)= dy ⊙ act'(z).
pub(crate) fn activation_backward(
    n: &Net,
    z: &GpuBuffer,
    dy: &GpuBuffer,
    out: &GpuBuffer,
    width: usize,
    act: Act,
    accumulate: bool,
) -> Result<Launch> {
    same_layout(n, &[z, dy, out])?;
    let before = before_last(n, out);
    let p = act_params(act, before + n.rows * width, accumulate);
    let d = n.gpu.activation(ActEntry::Backward, z, Some(dy), out, p)?;
    Ok(Launch::new(d, Shape::Act(p, width, before as u32)))
}

/// dW = dZᵀ·X: [outputs, rows]·[rows, inputs], and db = Σ_rows dZ in the same launch, into the
/// network's gradient.
pub(crate) fn dense_backward_weight(
    n: &Net,
    dz: &GpuBuffer,
    x: &GpuBuffer,
    inputs: usize,
    outputs: usize,
    weight: usize,
    bias: Option<usize>,
) -> Result<Launch> {
    let p = MatmulParams::dense_backward_params(n.rows, inputs, outputs, weight, bias, false)
        .for_models(n.models, [dz.per_model, x.per_model, n.grads.per_model, 0, 0]);
    let d = n.gpu.matmul(dz, x, None, n.grads, None, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsK(p)))
}

/// dX (+)= dZ·W: [rows, outputs]·[outputs, inputs], with the producer's act'(z) fused when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_backward_input(
    n: &Net,
    dz: &GpuBuffer,
    target: &GpuBuffer,
    fused: Option<(&GpuBuffer, Act)>,
    accumulate: bool,
    inputs: usize,
    outputs: usize,
    weight: usize,
) -> Result<Launch> {
    let (aux, act_grad) = (fused.map(|f| f.0), fused.map(|f| f.1));
    let strides = [dz.per_model, n.params.per_model, target.per_model, aux.map_or(0, |a| a.per_model), 0];
    let p = MatmulParams::dense_backward_input(n.rows, inputs, outputs, weight, act_grad, accumulate)
        .for_models(n.models, strides);
    let d = n.gpu.matmul(dz, n.params, None, target, aux, p)?;
    Ok(Launch::new(d, Shape::MatmulRowsM(p)))
}
