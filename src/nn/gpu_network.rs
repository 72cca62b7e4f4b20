//! The GPU executor. Every buffer and bind group is made once, when the network is built; a
//! training step writes the batch's row indices (and the learning rate when it changes), records
//! gather → forward → loss → backward → update into one compute pass, and submits once.

use std::sync::Arc;

use super::{Act, Activation, Loss, Model, Network, Stage, Totals};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::kernels::{
    submit, ActParams, Dispatch, GatherParams, LossParams, MatmulParams, FLAG_ACT_GRAD, FLAG_BIAS, FLAG_STORE_PREACT,
    TOTALS_LEN, TOTAL_CORRECT, TOTAL_COUNT, TOTAL_LOSS_SUM, TOTAL_STEP_LOSS,
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
    BiasGrad(MatmulParams),
    Act(ActParams, usize),
    Loss(LossParams),
    Reduce(LossParams),
    Gather(GatherParams),
}

struct Launch {
    dispatch: Dispatch,
    shape: Shape,
}

impl Launch {
    fn resize(&mut self, gpu: &Gpu, rows: u32) {
        match &mut self.shape {
            Shape::MatmulRowsM(p) => {
                p.m = rows;
                let (p, g) = p.tiled();
                self.dispatch.update(gpu, &p, g);
            }
            Shape::MatmulRowsK(p) => {
                p.k = rows;
                let (p, g) = p.tiled();
                self.dispatch.update(gpu, &p, g);
            }
            Shape::BiasGrad(p) => {
                p.m = rows;
                self.dispatch.update(gpu, p, Gpu::bias_grad_grid(p));
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
        }
    }
}

/// Per-stage activations and gradients, each sized for the largest batch.
struct StageBuffers {
    out: GpuBuffer,
    /// Pre-activation z, kept for the backward pass when the activation is not the identity.
    preact: Option<GpuBuffer>,
    /// dL/dz of a Dense stage (dL/d out when the activation is the identity).
    dz: Option<GpuBuffer>,
    /// dL/d out when it cannot be fused into dz (before a standalone activation or the loss).
    grad_out: Option<GpuBuffer>,
}

pub struct GpuNetwork {
    gpu: Arc<Gpu>,
    model: Model,
    max_rows: usize,
    rows: u32,
    params: GpuBuffer,
    grads: GpuBuffer,
    batch_x: GpuBuffer,
    batch_labels: GpuBuffer,
    indices: GpuBuffer,
    totals: GpuBuffer,
    /// Forward launches (stage order); `predict` runs these alone.
    forward: Vec<Launch>,
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
}

fn act_params(act: Act, len: usize) -> ActParams {
    ActParams { len: len as u32, act: act.kind.code(), slope: act.slope, _pad: 0 }
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
        let last = stages.len() - 1;
        let params_buf = g.upload("parameters", params)?;
        let grads = g.storage("gradients", model.param_len)?;
        let setup = setup.into();
        let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
        let optimizer = GpuOptimizer::new(g, &params_buf, &grads, &setup.optimizer, groups, setup.clip_grad_norm)?;
        let batch_x = g.storage("batch input", max_rows * model.inputs)?;
        let batch_labels = g.storage("batch labels", max_rows)?;
        let indices = g.storage("batch indices", max_rows)?;
        let row_stats = g.storage("per-row loss", 2 * max_rows)?;
        let totals = g.storage("loss totals", TOTALS_LEN)?;

        // Buffers per stage.
        let mut bufs = Vec::with_capacity(stages.len());
        for (s, stage) in stages.iter().enumerate() {
            let width = stage.outputs();
            let name = |what: &str| format!("stage {s} {what} ({} × {width})", max_rows);
            let next_is_dense = matches!(stages.get(s + 1), Some(Stage::Dense { .. }));
            let b = match stage {
                Stage::Dense { act, .. } => {
                    let has_act = act.kind != Activation::Identity;
                    StageBuffers {
                        out: g.storage(&name("output"), max_rows * width)?,
                        preact: if has_act {
                            Some(g.storage(&name("pre-activation"), max_rows * width)?)
                        } else {
                            None
                        },
                        dz: Some(g.storage(&name("gradient dz"), max_rows * width)?),
                        grad_out: if has_act && !next_is_dense {
                            Some(g.storage(&name("output gradient"), max_rows * width)?)
                        } else {
                            None
                        },
                    }
                }
                Stage::Activation { .. } => StageBuffers {
                    out: g.storage(&name("output"), max_rows * width)?,
                    preact: None,
                    dz: None,
                    grad_out: Some(g.storage(&name("output gradient"), max_rows * width)?),
                },
            };
            bufs.push(b);
        }
        // Where whoever computes dL/d out_s writes it: dz_s directly when the activation is the
        // identity or the writer is a matmul that can apply act' in its epilogue; else grad_out_s.
        let target = |s: usize, writer_is_matmul: bool| -> (&GpuBuffer, Option<(&GpuBuffer, Act)>) {
            let b = &bufs[s];
            match &stages[s] {
                Stage::Dense { act, .. } if act.kind == Activation::Identity => (b.dz.as_ref().unwrap_or(&b.out), None),
                Stage::Dense { act, .. } if writer_is_matmul => {
                    (b.dz.as_ref().unwrap_or(&b.out), b.preact.as_ref().map(|p| (p, *act)))
                }
                _ => (b.grad_out.as_ref().unwrap_or(&b.out), None),
            }
        };
        let input = |s: usize| if s == 0 { &batch_x } else { &bufs[s - 1].out };
        let rows = max_rows as u32;

        let mut forward = Vec::new();
        for (s, stage) in stages.iter().enumerate() {
            let b = &bufs[s];
            match *stage {
                Stage::Dense { inputs, outputs, weight, bias, act, .. } => {
                    let p = MatmulParams {
                        m: rows,
                        n: outputs as u32,
                        k: inputs as u32,
                        a_stride_m: inputs as u32,
                        a_stride_k: 1,
                        b_offset: weight as u32,
                        b_stride_k: 1,
                        b_stride_n: inputs as u32,
                        bias_offset: bias.unwrap_or(0) as u32,
                        flags: if bias.is_some() { FLAG_BIAS } else { 0 }
                            | if b.preact.is_some() { FLAG_STORE_PREACT } else { 0 },
                        act: act.kind.code(),
                        slope: act.slope,
                        ..Default::default()
                    };
                    let bias_buf = bias.map(|_| &params_buf);
                    let d = g.matmul(input(s), &params_buf, bias_buf, &b.out, b.preact.as_ref(), p)?;
                    forward.push(Launch { dispatch: d, shape: Shape::MatmulRowsM(p) });
                }
                Stage::Activation { width, act, .. } => {
                    let p = act_params(act, max_rows * width);
                    let d = g.activation(true, input(s), None, &b.out, p)?;
                    forward.push(Launch { dispatch: d, shape: Shape::Act(p, width) });
                }
            }
        }

        let mut backward = Vec::new();
        let classes = model.outputs() as u32;
        let lp = LossParams { rows, cols: classes, use_targets: 0, _pad: 0 };
        let (loss_grad, _) = target(last, false);
        let d = g.loss(loss.entry(), &bufs[last].out, &batch_labels, None, loss_grad, &row_stats, &totals, lp)?;
        backward.push(Launch { dispatch: d, shape: Shape::Loss(lp) });
        let d = g.loss_reduce(&row_stats, &totals, lp)?;
        backward.push(Launch { dispatch: d, shape: Shape::Reduce(lp) });

        for (s, stage) in stages.iter().enumerate().rev() {
            let b = &bufs[s];
            match *stage {
                Stage::Dense { inputs, outputs, weight, bias, act, .. } => {
                    let dz = b.dz.as_ref().unwrap_or(&b.out);
                    if let (Some(grad_out), Some(preact)) = (&b.grad_out, &b.preact) {
                        let p = act_params(act, max_rows * outputs);
                        let d = g.activation(false, preact, Some(grad_out), dz, p)?;
                        backward.push(Launch { dispatch: d, shape: Shape::Act(p, outputs) });
                    }
                    // dW = dZᵀ·X: [outputs, rows]·[rows, inputs]
                    let p = MatmulParams {
                        m: outputs as u32,
                        n: inputs as u32,
                        k: rows,
                        a_stride_m: 1,
                        a_stride_k: outputs as u32,
                        b_stride_k: inputs as u32,
                        b_stride_n: 1,
                        c_offset: weight as u32,
                        ..Default::default()
                    };
                    let d = g.matmul(dz, input(s), None, &grads, None, p)?;
                    backward.push(Launch { dispatch: d, shape: Shape::MatmulRowsK(p) });
                    if let Some(bias) = bias {
                        let p =
                            MatmulParams { m: rows, n: outputs as u32, c_offset: bias as u32, ..Default::default() };
                        let d = g.bias_grad(dz, &grads, p)?;
                        backward.push(Launch { dispatch: d, shape: Shape::BiasGrad(p) });
                    }
                    if s > 0 {
                        // dX = dZ·W: [rows, outputs]·[outputs, inputs], with act' of the previous stage fused.
                        let (dst, fused) = target(s - 1, true);
                        let (aux, flags, prev_act) = match fused {
                            Some((preact, a)) => (Some(preact), FLAG_ACT_GRAD, a),
                            None => (None, 0, Act::IDENTITY),
                        };
                        let p = MatmulParams {
                            m: rows,
                            n: inputs as u32,
                            k: outputs as u32,
                            a_stride_m: outputs as u32,
                            a_stride_k: 1,
                            b_offset: weight as u32,
                            b_stride_k: inputs as u32,
                            b_stride_n: 1,
                            flags,
                            act: prev_act.kind.code(),
                            slope: prev_act.slope,
                            ..Default::default()
                        };
                        let d = g.matmul(dz, &params_buf, None, dst, aux, p)?;
                        backward.push(Launch { dispatch: d, shape: Shape::MatmulRowsM(p) });
                    }
                }
                Stage::Activation { width, act, .. } => {
                    if s > 0 {
                        let (dst, _) = target(s - 1, false);
                        let grad_out = b.grad_out.as_ref().unwrap_or(&b.out);
                        let p = act_params(act, max_rows * width);
                        let d = g.activation(false, input(s), Some(grad_out), dst, p)?;
                        backward.push(Launch { dispatch: d, shape: Shape::Act(p, width) });
                    }
                }
            }
        }

        Ok(GpuNetwork {
            gpu,
            model,
            max_rows,
            rows,
            params: params_buf,
            grads,
            batch_x,
            batch_labels,
            indices,
            totals,
            forward,
            backward,
            gather: None,
            train_rows: 0,
            optimizer,
            setup,
            steps: 0,
            stage_buffers: bufs,
            train_data: None,
        })
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
        let x = g.upload("training inputs", &data.x)?;
        let labels = g.upload("training labels", &data.labels)?;
        let p = GatherParams { rows: self.rows, cols: self.model.inputs as u32, _pad: [0; 2] };
        let d = g.gather_batch(&x, &labels, &self.indices, &self.batch_x, &self.batch_labels, p)?;
        self.gather = Some(Launch { dispatch: d, shape: Shape::Gather(p) });
        self.train_data = Some((x, labels));
        self.train_rows = data.n;
        Ok(())
    }

    fn train_step(&mut self, batch: &[u32]) -> Result<()> {
        if self.gather.is_none() {
            return Err(Error::Usage("train_step before set_train_data".into()));
        }
        super::network::check_batch(batch, self.train_rows, self.max_rows)?;
        self.resize(batch.len());
        self.gpu.write(&self.indices, batch);
        let k = self.steps as u32;
        self.optimizer.prepare(&self.gpu, k + 1, self.setup.schedule.factor(k));
        let mut launches: Vec<&Dispatch> = Vec::with_capacity(4 + self.forward.len() + self.backward.len());
        launches.extend(self.gather.iter().map(|l| &l.dispatch));
        launches.extend(self.forward.iter().map(|l| &l.dispatch));
        launches.extend(self.backward.iter().map(|l| &l.dispatch));
        launches.extend(self.optimizer.dispatches());
        submit(&self.gpu, "training step", &launches)?;
        self.steps += 1;
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
            let launches: Vec<&Dispatch> = self.forward.iter().map(|l| &l.dispatch).collect();
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
