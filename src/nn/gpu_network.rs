//! The GPU executor. Every buffer and bind group is made once, when the network is built; a
//! training step writes the batch's row indices (and the learning rate when it changes), records
//! gather → forward → loss → backward → update into one compute pass, and submits once.

use std::sync::Arc;

use super::{Act, Activation, Loss, Model, Network, NormState, Op, Totals};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::kernels::{
    submit, ActParams, BnParams, Dispatch, GatherParams, LossParams, MatmulParams, ACT_ACCUMULATE, BN_ACCUMULATE,
    BN_TRAIN, FLAG_ACCUMULATE, FLAG_ACT_GRAD, FLAG_BIAS, FLAG_STORE_PREACT, TOTALS_LEN, TOTAL_CORRECT, TOTAL_COUNT,
    TOTAL_LOSS_SUM, TOTAL_STEP_LOSS,
};
use crate::gpu::optimizer::GpuOptimizer;
use crate::gpu::{Gpu, GpuBuffer};
use crate::optim::{OptimizerSetup, ParamGroups};

/// How a launch's parameters depend on the number of rows in the batch.
enum Shape {
    /// Matmul whose m is the batch (forward, dX).
    MatmulRowsM(MatmulParams),
    /// Matmul whose k is the batch (dW = dZᵀ·X).
    MatmulRowsK(MatmulParams),
    Act(ActParams, usize),
    Loss(LossParams),
    Reduce(LossParams),
    Gather(GatherParams),
    BatchNorm(BnParams, &'static str),
}

/// Which pass a forward launch belongs to: batch norm differs between training and eval.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    Train,
    Eval,
}

struct Launch {
    dispatch: Dispatch,
    shape: Shape,
    when: When,
}

impl Launch {
    fn new(dispatch: Dispatch, shape: Shape) -> Launch {
        Launch { dispatch, shape, when: When::Always }
    }

    fn resize(&mut self, gpu: &Gpu, rows: u32) {
        match &mut self.shape {
            Shape::MatmulRowsM(p) => {
                p.m = rows;
                self.dispatch.update_matmul(gpu, *p);
            }
            Shape::MatmulRowsK(p) => {
                p.k = rows;
                self.dispatch.update_matmul(gpu, *p);
            }
            Shape::Act(p, width) => {
                p.len = rows * *width as u32;
                self.dispatch.update(gpu, p, Gpu::elementwise_grid(p.len as usize));
            }
            Shape::Loss(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, Gpu::loss_grid(rows as usize));
            }
            Shape::Reduce(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, [1, 1, 1]);
            }
            Shape::Gather(p) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, Gpu::gather_grid(p));
            }
            Shape::BatchNorm(p, entry) => {
                p.rows = rows;
                self.dispatch.update(gpu, p, Gpu::batchnorm_grid(entry, p));
            }
        }
    }
}

/// The buffers of one stage's output value, each sized for the largest batch.
struct StageBuffers {
    out: GpuBuffer,
    /// Pre-activation z of a Dense stage with an activation, kept for the backward pass.
    preact: Option<GpuBuffer>,
    /// dL/dz of a Dense stage (dL/d out when the activation is the identity).
    dz: Option<GpuBuffer>,
    /// dL/d out, where the readers of this value cannot write dz directly.
    grad: Option<GpuBuffer>,
    /// Batch norm's per-feature shift, shifted mean and 1/σ (batchnorm.wgsl).
    stats: Option<GpuBuffer>,
}

/// Where the readers of a value write its gradient, and the activation derivative they must
/// apply on the way (a Dense producer's act', fused into the writer).
struct Target<'a> {
    buf: &'a GpuBuffer,
    fused: Option<(&'a GpuBuffer, Act)>,
}

pub struct GpuNetwork {
    gpu: Arc<Gpu>,
    model: Model,
    max_rows: usize,
    rows: u32,
    params: GpuBuffer,
    grads: GpuBuffer,
    running: GpuBuffer,
    batches_tracked: Vec<u64>,
    batch_x: GpuBuffer,
    batch_labels: GpuBuffer,
    indices: GpuBuffer,
    totals: GpuBuffer,
    /// Forward launches (stage order); `predict` runs those for eval.
    forward: Vec<Launch>,
    /// (index in `forward` of a training-statistics launch, its layer in `Model::norms`).
    norm_launches: Vec<(usize, usize)>,
    /// Loss, reduction, backward and the update, in order.
    backward: Vec<Launch>,
    gather: Option<Launch>,
    train_rows: usize,
    optimizer: GpuOptimizer,
    setup: OptimizerSetup,
    steps: usize,
    stage_buffers: Vec<StageBuffers>,
    /// The resident training set (inputs, labels) the gather kernel reads.
    train_data: Option<(GpuBuffer, GpuBuffer)>,
    /// The training set kept on the host instead, each batch uploaded as it is used: for data
    /// larger than one GPU buffer, or when asked (`set_streaming`).
    streamed: Option<Dataset>,
    stream: bool,
}

fn act_params(act: Act, len: usize, accumulate: bool) -> ActParams {
    ActParams {
        len: len as u32,
        act: act.kind.code(),
        slope: act.slope,
        flags: if accumulate { ACT_ACCUMULATE } else { 0 },
    }
}

/// One batch-norm layer's kernel parameters (no running-statistics blend: keep 1, take 0).
fn bn_params(model: &Model, norm: usize, rows: u32, width: usize, gamma: usize, beta: usize, act: Act) -> BnParams {
    let layer = &model.norms[norm];
    BnParams {
        rows,
        cols: width as u32,
        gamma_offset: gamma as u32,
        beta_offset: beta as u32,
        mean_offset: layer.running_mean as u32,
        var_offset: layer.running_var as u32,
        flags: 0,
        act: act.kind.code(),
        slope: act.slope,
        eps: layer.eps as f32,
        keep: 1.0,
        take: 0.0,
    }
}

/// running ← keep·running + take·batch, with keep = 1 − take formed in f64 and rounded once.
fn blend(factor: f64) -> (f32, f32) {
    ((1.0 - factor) as f32, factor as f32)
}

impl GpuNetwork {
    /// Builds every buffer and launch for batches of up to `max_rows` rows.
    pub fn new(
        gpu: Arc<Gpu>,
        model: Model,
        loss: Loss,
        setup: impl Into<OptimizerSetup>,
        params: &[f32],
        max_rows: usize,
    ) -> Result<GpuNetwork> {
        Self::check_fits(&gpu, &model, max_rows)?;
        super::cpu_network::check_params(&model, params)?;
        let g = &*gpu;
        let stages = &model.stages;
        let last = stages.len();
        let params_buf = g.upload("parameters", params)?;
        let grads = g.storage("gradients", model.param_len)?;
        let norm_state = model.init_norm_state();
        let running = g.upload("batch-norm running statistics", &norm_state.running)?;
        let setup = setup.into();
        let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
        let optimizer = GpuOptimizer::new(g, &params_buf, &grads, &setup.optimizer, groups, setup.clip_grad_norm)?;
        let batch_x = g.storage("batch input", max_rows * model.inputs)?;
        let batch_labels = g.storage("batch labels", max_rows)?;
        let indices = g.storage("batch indices", max_rows)?;
        let row_stats = g.storage("per-row loss", 2 * max_rows)?;
        let totals = g.storage("loss totals", TOTALS_LEN)?;

        // Who reads each value; a Dense producer's act' can be fused into its readers' kernels
        // only if every reader is a matmul (dX) or a residual sum (activation_backward).
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); last + 1];
        for (s, stage) in stages.iter().enumerate() {
            for v in stage.reads() {
                readers[v].push(s);
            }
        }
        let fusable: Vec<bool> = (0..=last)
            .map(|v| {
                v > 0
                    && v < last
                    && matches!(stages[v - 1].op, Op::Dense { act, .. } if act.kind != Activation::Identity)
                    && readers[v].iter().all(|&r| matches!(stages[r].op, Op::Dense { .. } | Op::Add { .. }))
            })
            .collect();

        let mut bufs = Vec::with_capacity(stages.len());
        for (s, stage) in stages.iter().enumerate() {
            let width = stage.outputs();
            let name = |what: &str| format!("stage {s} ({}) {what} ({max_rows} × {width})", stage.name);
            let values = max_rows * width;
            let b = match stage.op {
                Op::Dense { act, .. } => {
                    let has_act = act.kind != Activation::Identity;
                    StageBuffers {
                        out: g.storage(&name("output"), values)?,
                        preact: if has_act { Some(g.storage(&name("pre-activation"), values)?) } else { None },
                        dz: Some(g.storage(&name("gradient dz"), values)?),
                        grad: if has_act && !fusable[s + 1] {
                            Some(g.storage(&name("output gradient"), values)?)
                        } else {
                            None
                        },
                        stats: None,
                    }
                }
                Op::BatchNorm { width, .. } => StageBuffers {
                    out: g.storage(&name("output"), values)?,
                    preact: None,
                    dz: None,
                    grad: Some(g.storage(&name("output gradient"), values)?),
                    stats: Some(g.storage(&name("statistics"), 3 * width)?),
                },
                Op::Activation { .. } | Op::Add { .. } => StageBuffers {
                    out: g.storage(&name("output"), values)?,
                    preact: None,
                    dz: None,
                    grad: Some(g.storage(&name("output gradient"), values)?),
                    stats: None,
                },
            };
            bufs.push(b);
        }
        let out = |v: usize| if v == 0 { &batch_x } else { &bufs[v - 1].out };
        let target = |v: usize| -> Target<'_> {
            let b = &bufs[v - 1];
            match (&stages[v - 1].op, &b.dz, &b.grad) {
                (Op::Dense { act, .. }, Some(dz), _) if act.kind == Activation::Identity => {
                    Target { buf: dz, fused: None }
                }
                (Op::Dense { act, .. }, Some(dz), None) => {
                    Target { buf: dz, fused: b.preact.as_ref().map(|p| (p, *act)) }
                }
                (_, _, Some(grad)) => Target { buf: grad, fused: None },
                _ => Target { buf: &b.out, fused: None }, // unreachable by construction
            }
        };
        // The gradient a stage's backward reads: what its readers wrote.
        let grad_in = |s: usize| -> &GpuBuffer {
            let b = &bufs[s];
            b.grad.as_ref().or(b.dz.as_ref()).unwrap_or(&b.out)
        };
        let rows = max_rows as u32;

        let mut forward = Vec::new();
        let mut norm_launches = Vec::new();
        for (s, stage) in stages.iter().enumerate() {
            let b = &bufs[s];
            let x = out(stage.input);
            match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => {
                    let p = MatmulParams {
                        b_offset: weight as u32,
                        bias_offset: bias.unwrap_or(0) as u32,
                        flags: if bias.is_some() { FLAG_BIAS } else { 0 }
                            | if b.preact.is_some() { FLAG_STORE_PREACT } else { 0 },
                        act: act.kind.code(),
                        slope: act.slope,
                        ..MatmulParams::linear_forward(max_rows, inputs, outputs)
                    };
                    let bias_buf = bias.map(|_| &params_buf);
                    let d = g.matmul(x, &params_buf, bias_buf, &b.out, b.preact.as_ref(), p)?;
                    forward.push(Launch::new(d, Shape::MatmulRowsM(p)));
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => {
                    let (keep, take) = blend(model.norms[norm].momentum.factor(1));
                    let p = BnParams { keep, take, ..bn_params(&model, norm, rows, width, gamma, beta, act) };
                    let stats = b.stats.as_ref().unwrap_or(&b.out);
                    for (when, flags) in [(When::Train, BN_TRAIN), (When::Eval, 0)] {
                        let p = BnParams { flags, ..p };
                        let d =
                            g.batchnorm("batchnorm_stats", x, None, &params_buf, &running, stats, None, &grads, p)?;
                        if when == When::Train {
                            norm_launches.push((forward.len(), norm));
                        }
                        forward.push(Launch { dispatch: d, shape: Shape::BatchNorm(p, "batchnorm_stats"), when });
                    }
                    let d = g.batchnorm(
                        "batchnorm_forward",
                        x,
                        None,
                        &params_buf,
                        &running,
                        stats,
                        Some(&b.out),
                        &grads,
                        p,
                    )?;
                    forward.push(Launch::new(d, Shape::BatchNorm(p, "batchnorm_forward")));
                }
                Op::Activation { width, act } => {
                    let p = act_params(act, max_rows * width, false);
                    let d = g.activation(true, x, None, &b.out, p)?;
                    forward.push(Launch::new(d, Shape::Act(p, width)));
                }
                Op::Add { width, skip } => {
                    let p = act_params(Act::IDENTITY, max_rows * width, false);
                    let d = g.residual_add(x, out(skip), &b.out, p)?;
                    forward.push(Launch::new(d, Shape::Act(p, width)));
                }
            }
        }

        let mut backward = Vec::new();
        // Whether some reader already wrote a value's gradient (later readers then add to it).
        let mut written = vec![false; last + 1];
        let classes = model.outputs() as u32;
        let lp = LossParams { rows, cols: classes, use_targets: 0, _pad: 0 };
        let loss_grad = target(last).buf;
        written[last] = true;
        let d = g.loss(loss.entry(), out(last), &batch_labels, None, loss_grad, &row_stats, &totals, lp)?;
        backward.push(Launch::new(d, Shape::Loss(lp)));
        let d = g.loss_reduce(&row_stats, &totals, lp)?;
        backward.push(Launch::new(d, Shape::Reduce(lp)));

        for (s, stage) in stages.iter().enumerate().rev() {
            let b = &bufs[s];
            let x = out(stage.input);
            let g_out = grad_in(s);
            match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => {
                    let dz = b.dz.as_ref().unwrap_or(&b.out);
                    if let (Some(grad), Some(preact)) = (&b.grad, &b.preact) {
                        let p = act_params(act, max_rows * outputs, false);
                        let d = g.activation(false, preact, Some(grad), dz, p)?;
                        backward.push(Launch::new(d, Shape::Act(p, outputs)));
                    }
                    // dW = dZᵀ·X: [outputs, rows]·[rows, inputs], and db = Σ_rows dZ in the same launch.
                    let p = MatmulParams {
                        c_offset: weight as u32,
                        ..match bias {
                            Some(bias) => {
                                MatmulParams::linear_backward_weight_and_bias(max_rows, inputs, outputs, bias)
                            }
                            None => MatmulParams::linear_backward_weight(max_rows, inputs, outputs),
                        }
                    };
                    let d = g.matmul(dz, x, None, &grads, None, p)?;
                    backward.push(Launch::new(d, Shape::MatmulRowsK(p)));
                    if stage.input > 0 {
                        // dX = dZ·W: [rows, outputs]·[outputs, inputs], the producer's act' fused.
                        let t = target(stage.input);
                        let accumulate = std::mem::replace(&mut written[stage.input], true);
                        let (aux, prev_act) = match t.fused {
                            Some((preact, a)) => (Some(preact), a),
                            None => (None, Act::IDENTITY),
                        };
                        let p = MatmulParams {
                            b_offset: weight as u32,
                            flags: if aux.is_some() { FLAG_ACT_GRAD } else { 0 }
                                | if accumulate { FLAG_ACCUMULATE } else { 0 },
                            act: prev_act.kind.code(),
                            slope: prev_act.slope,
                            ..MatmulParams::linear_backward_input(max_rows, inputs, outputs)
                        };
                        let d = g.matmul(dz, &params_buf, None, t.buf, aux, p)?;
                        backward.push(Launch::new(d, Shape::MatmulRowsM(p)));
                    }
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => {
                    let stats = b.stats.as_ref().unwrap_or(&b.out);
                    let mut p = bn_params(&model, norm, rows, width, gamma, beta, act);
                    let entry = "batchnorm_backward_reduce";
                    let d = g.batchnorm(entry, x, Some(g_out), &params_buf, &running, stats, None, &grads, p)?;
                    backward.push(Launch::new(d, Shape::BatchNorm(p, entry)));
                    if stage.input > 0 {
                        let t = target(stage.input);
                        if std::mem::replace(&mut written[stage.input], true) {
                            p.flags |= BN_ACCUMULATE;
                        }
                        let entry = "batchnorm_backward_input";
                        let d =
                            g.batchnorm(entry, x, Some(g_out), &params_buf, &running, stats, Some(t.buf), &grads, p)?;
                        backward.push(Launch::new(d, Shape::BatchNorm(p, entry)));
                    }
                }
                Op::Activation { width, act } => {
                    if stage.input > 0 {
                        let t = target(stage.input);
                        let accumulate = std::mem::replace(&mut written[stage.input], true);
                        let p = act_params(act, max_rows * width, accumulate);
                        let d = g.activation(false, x, Some(g_out), t.buf, p)?;
                        backward.push(Launch::new(d, Shape::Act(p, width)));
                    }
                }
                Op::Add { width, skip } => {
                    // Both summands receive the sum's gradient (times their producer's act').
                    for v in [stage.input, skip] {
                        if v == 0 {
                            continue;
                        }
                        let t = target(v);
                        let accumulate = std::mem::replace(&mut written[v], true);
                        let (z, act) = t.fused.unwrap_or((g_out, Act::IDENTITY));
                        let p = act_params(act, max_rows * width, accumulate);
                        let d = g.activation(false, z, Some(g_out), t.buf, p)?;
                        backward.push(Launch::new(d, Shape::Act(p, width)));
                    }
                }
            }
        }

        Ok(GpuNetwork {
            gpu,
            batches_tracked: norm_state.batches_tracked,
            model,
            max_rows,
            rows,
            params: params_buf,
            grads,
            running,
            batch_x,
            batch_labels,
            indices,
            totals,
            forward,
            norm_launches,
            backward,
            gather: None,
            train_rows: 0,
            optimizer,
            setup,
            steps: 0,
            stage_buffers: bufs,
            train_data: None,
            streamed: None,
            stream: false,
        })
    }

    /// Sets each batch norm's blend factor for the coming training batch (it changes every step
    /// for the cumulative average, momentum "none": 1/num_batches_tracked after this batch).
    /// The counters themselves move only once the step has been submitted.
    fn prepare_norms(&mut self) {
        for &(launch, k) in &self.norm_launches {
            let factor = self.model.norms[k].momentum.factor(self.batches_tracked[k] + 1);
            let l = &mut self.forward[launch];
            if let Shape::BatchNorm(p, entry) = &mut l.shape {
                let (keep, take) = blend(factor);
                if (keep, take) != (p.keep, p.take) {
                    (p.keep, p.take) = (keep, take);
                    l.dispatch.update(&self.gpu, p, Gpu::batchnorm_grid(entry, p));
                }
            }
        }
    }

    /// Whether every buffer this model needs fits the device's per-buffer limit, checked before
    /// anything is allocated (on the host or the device).
    pub fn check_fits(gpu: &Gpu, model: &Model, max_rows: usize) -> Result<()> {
        if max_rows == 0 {
            return Err(Error::Usage("batch size must be at least 1".into()));
        }
        let limit = gpu.max_storage_bytes();
        let too_large = |what: String, values: usize| {
            let bytes = (values as u64).saturating_mul(4);
            if bytes > limit {
                Err(Error::TooLargeForDevice { what, bytes, limit })
            } else {
                Ok(())
            }
        };
        let largest = model.params.iter().max_by_key(|t| t.len);
        too_large(
            format!(
                "the parameters ({} values; the largest tensor, '{}' {:?}, has {})",
                model.param_len,
                largest.map_or("", |t| &t.name),
                largest.map_or(&[][..], |t| &t.shape),
                largest.map_or(0, |t| t.len)
            ),
            model.param_len,
        )?;
        too_large(
            format!("the batch input ({max_rows} rows × {} features)", model.inputs),
            max_rows.saturating_mul(model.inputs),
        )?;
        for (s, stage) in model.stages.iter().enumerate() {
            too_large(
                format!("the activations of stage {s} ({max_rows} rows × {} outputs)", stage.outputs()),
                max_rows.saturating_mul(stage.outputs()),
            )?;
        }
        Ok(())
    }

    fn resize(&mut self, rows: usize) {
        let rows = rows as u32;
        if rows == self.rows {
            return;
        }
        for l in self.forward.iter_mut().chain(self.backward.iter_mut()).chain(self.gather.iter_mut()) {
            l.resize(&self.gpu, rows);
        }
        self.rows = rows;
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// (coefficient, global gradient norm) of the last step when clipping is on.
    pub fn clip_stats(&self) -> Result<(f32, f32)> {
        self.optimizer.clip_stats(&self.gpu)
    }
}

impl Network for GpuNetwork {
    fn describe(&self) -> String {
        format!("GPU: {}", self.gpu.describe())
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn set_train_data(&mut self, data: &Dataset) -> Result<()> {
        super::network::check_features(&self.model, data)?;
        let g = &*self.gpu;
        let too_large = (data.x.len() as u64).saturating_mul(4) > g.max_storage_bytes();
        if self.stream || too_large {
            // Streamed: the rows stay on the host and each batch is written before its step.
            self.gather = None;
            self.train_data = None;
            self.train_rows = data.n;
            self.streamed = Some(data.clone());
            return Ok(());
        }
        let x = g.upload("training inputs", &data.x)?;
        let labels = g.upload("training labels", &data.labels)?;
        let p = GatherParams { rows: self.rows, cols: self.model.inputs as u32, _pad: [0; 2] };
        let d = g.gather_batch(&x, &labels, &self.indices, &self.batch_x, &self.batch_labels, p)?;
        self.gather = Some(Launch::new(d, Shape::Gather(p)));
        self.train_data = Some((x, labels));
        self.streamed = None;
        self.train_rows = data.n;
        Ok(())
    }

    fn set_streaming(&mut self, on: bool) {
        self.stream = on;
    }

    fn train_step(&mut self, batch: &[u32]) -> Result<()> {
        if self.gather.is_none() && self.streamed.is_none() {
            return Err(Error::Usage("train_step before set_train_data".into()));
        }
        super::network::check_batch(batch, self.train_rows, self.max_rows)?;
        super::network::check_batch_norm_rows(&self.model, batch.len())?;
        self.resize(batch.len());
        self.prepare_norms();
        if let Some(data) = &self.streamed {
            let (mut x, mut labels) = (Vec::with_capacity(batch.len() * data.d), Vec::with_capacity(batch.len()));
            for &i in batch {
                x.extend_from_slice(data.row(i as usize));
                labels.push(data.labels[i as usize]);
            }
            self.gpu.write(&self.batch_x, &x);
            self.gpu.write(&self.batch_labels, &labels);
        } else {
            self.gpu.write(&self.indices, batch);
        }
        let k = self.steps as u32;
        self.optimizer.prepare(&self.gpu, k + 1, self.setup.schedule.factor(k));
        let mut launches: Vec<&Dispatch> = Vec::with_capacity(4 + self.forward.len() + self.backward.len());
        launches.extend(self.gather.iter().map(|l| &l.dispatch));
        launches.extend(self.forward.iter().filter(|l| l.when != When::Eval).map(|l| &l.dispatch));
        launches.extend(self.backward.iter().map(|l| &l.dispatch));
        launches.extend(self.optimizer.dispatches());
        submit(&self.gpu, "training step", &launches)?;
        self.steps += 1;
        self.batches_tracked.iter_mut().for_each(|n| *n += 1);
        Ok(())
    }

    fn last_loss(&mut self) -> Result<f32> {
        Ok(self.gpu.read::<f32>(&self.totals, TOTAL_STEP_LOSS, 1)?[0])
    }

    fn take_totals(&mut self) -> Result<Totals> {
        let t = self.gpu.read::<f32>(&self.totals, 0, TOTALS_LEN)?;
        let count = t[TOTAL_COUNT];
        self.gpu.write(&self.totals, &[t[TOTAL_STEP_LOSS], 0.0, 0.0, 0.0]);
        Ok(Totals {
            mean_loss: t[TOTAL_LOSS_SUM] / count.max(1.0),
            accuracy: t[TOTAL_CORRECT] / count.max(1.0),
            samples: count as usize,
        })
    }

    fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        super::network::check_rows(&self.model, x, rows)?;
        let d = self.model.inputs;
        let classes = self.model.outputs();
        let mut out = Vec::with_capacity(rows * classes);
        let last = self.stage_buffers.len() - 1;
        for start in (0..rows).step_by(self.max_rows) {
            let n = (rows - start).min(self.max_rows);
            self.resize(n);
            self.gpu.write(&self.batch_x, &x[start * d..(start + n) * d]);
            let launches: Vec<&Dispatch> =
                self.forward.iter().filter(|l| l.when != When::Train).map(|l| &l.dispatch).collect();
            submit(&self.gpu, "forward", &launches)?;
            out.extend(self.gpu.read::<f32>(&self.stage_buffers[last].out, 0, n * classes)?);
        }
        Ok(out)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        self.gpu.read_all(&self.params)
    }

    fn set_params(&mut self, flat: &[f32]) -> Result<()> {
        super::cpu_network::check_params(&self.model, flat)?;
        self.gpu.write(&self.params, flat);
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        self.gpu.read_all(&self.grads)
    }

    fn optimizer_state(&mut self) -> Result<Vec<f32>> {
        self.optimizer.state(&self.gpu)
    }

    fn set_optimizer_state(&mut self, state: &[f32]) -> Result<()> {
        self.optimizer.set_state(&self.gpu, state)
    }

    fn norm_state(&mut self) -> Result<NormState> {
        Ok(NormState { running: self.gpu.read_all(&self.running)?, batches_tracked: self.batches_tracked.clone() })
    }

    fn set_norm_state(&mut self, state: &NormState) -> Result<()> {
        super::network::check_norm_state(&self.model, state)?;
        self.gpu.write(&self.running, &state.running);
        self.batches_tracked = state.batches_tracked.clone();
        Ok(())
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn set_steps(&mut self, steps: usize) {
        self.steps = steps;
    }

    fn lr(&self) -> f32 {
        self.setup.lr_at(self.steps as u32) as f32
    }
}
