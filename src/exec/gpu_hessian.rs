//! Hessian-vector products on the GPU: the R-operator of `reference::hvp`, stage by stage. Each
//! stage's plain value and gradient come from the training launches themselves (`exec::launch`:
//! the fused Linear, batch norm, activation, loss and dW/dX launches); its R-values from
//! products against the direction and hvp.wgsl's own terms (act'', the losses' and batch norm's
//! R-values). One batch per submit; `exec::hessian`
//! sums the batches' products on the host in f64.
//!
//! Every value v has a buffer, its R-value, its gradient and the gradient's R-value; a Dense
//! stage also keeps z, R{z}, dz and R{dz}, a batch norm its statistics (hvp.wgsl's layout).

use std::sync::Arc;

use super::launch::{self, Aux, Net};
use crate::device::GpuBuffer;
use crate::device::{submit, Dispatch};
use crate::error::{Error, Result};
use crate::kernels::Gpu;
use crate::kernels::{BnEntry, Epilogue, HvpBuffers, HvpEntry, HvpParams, MatmulParams, HVP_ACCUMULATE};
use crate::spec::{Act, Loss, Model, Op};

struct DenseBuffers {
    z: GpuBuffer,
    rz: GpuBuffer,
    dz: GpuBuffer,
    rdz: GpuBuffer,
}

pub struct GpuHvp {
    gpu: Arc<Gpu>,
    model: Model,
    loss: Loss,
    max_rows: usize,
    params: GpuBuffer,
    v: GpuBuffer,
    grads: GpuBuffer,
    hv: GpuBuffer,
    running: GpuBuffer,
    labels: GpuBuffer,
    row_stats: GpuBuffer,
    totals: GpuBuffer,
    /// values[0] is the batch input; rvalues[0] stays zero.
    values: Vec<GpuBuffer>,
    rvalues: Vec<GpuBuffer>,
    /// Gradient and its R-value per value (index 0, the input, has none: a placeholder).
    gvalues: Vec<GpuBuffer>,
    rgvalues: Vec<GpuBuffer>,
    dense: Vec<Option<DenseBuffers>>,
    norm_stats: Vec<Option<GpuBuffer>>,
    /// The launches of one product for batches of `.0` rows.
    recorded: Option<(usize, Vec<Dispatch>)>,
    /// The caller's id of the batch now in `values[0]` and `labels`: a product over the same batch
    /// uploads only the direction.
    loaded: Option<usize>,
}

impl GpuHvp {
    /// Buffers for batches of up to `max_rows` rows of `model` at the flat `params`.
    pub fn new(gpu: Arc<Gpu>, model: Model, loss: Loss, params: &[f32], max_rows: usize) -> Result<GpuHvp> {
        super::gpu_network::GpuNetwork::check_fits(&gpu, &model, max_rows)?;
        super::cpu_network::check_params(&model, params)?;
        let g = &*gpu;
        let width = |v: usize| max_rows * model.width_of(v);
        let values = (0..=model.stages.len()).map(|v| g.storage("value", width(v))).collect::<Result<Vec<_>>>()?;
        let rvalues = (0..=model.stages.len()).map(|v| g.storage("R-value", width(v))).collect::<Result<Vec<_>>>()?;
        let gvalues = (0..=model.stages.len())
            .map(|v| g.storage("value gradient", if v == 0 { 1 } else { width(v) }))
            .collect::<Result<Vec<_>>>()?;
        let rgvalues = (0..=model.stages.len())
            .map(|v| g.storage("R-value of the gradient", if v == 0 { 1 } else { width(v) }))
            .collect::<Result<Vec<_>>>()?;
        let mut dense = Vec::new();
        let mut norm_stats = Vec::new();
        for stage in &model.stages {
            let len = max_rows * stage.outputs();
            dense.push(match stage.op {
                Op::Dense { .. } => Some(DenseBuffers {
                    z: g.storage("z", len)?,
                    rz: g.storage("R{z}", len)?,
                    dz: g.storage("dz", len)?,
                    rdz: g.storage("R{dz}", len)?,
                }),
                _ => None,
            });
            norm_stats.push(match stage.op {
                Op::BatchNorm { width, .. } => Some(g.storage("batch-norm statistics and R-sums", 9 * width)?),
                _ => None,
            });
        }
        Ok(GpuHvp {
            params: g.upload("parameters", params)?,
            v: g.storage("direction", model.param_len)?,
            grads: g.storage("gradient", model.param_len)?,
            hv: g.storage("Hessian-vector product", model.param_len)?,
            running: g.upload("running statistics", &model.init_norm_state().running)?,
            labels: g.storage("labels", max_rows)?,
            row_stats: g.storage("per-row loss", 2 * max_rows)?,
            totals: g.storage("loss totals", crate::kernels::TOTALS_LEN)?,
            values,
            rvalues,
            gvalues,
            rgvalues,
            dense,
            norm_stats,
            recorded: None,
            loaded: None,
            gpu,
            model,
            loss,
            max_rows,
        })
    }

    /// Takes the products at new parameters (flat, as `new` took them).
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        super::cpu_network::check_params(&self.model, params)?;
        self.gpu.write(&self.params, params);
        Ok(())
    }

    /// H·v of one batch's mean loss, v and the result flat (padding included). `id` is the
    /// caller's number for the batch: its rows are uploaded only when the last product was over
    /// another one.
    pub fn batch_hvp(&mut self, id: usize, x: &[f32], labels: &[u32], rows: usize, v: &[f32]) -> Result<Vec<f32>> {
        crate::device::wait("a Hessian-vector product", self.batch_hvp_async(id, x, labels, rows, v))
    }

    /// `batch_hvp` with its read-back awaited: the form a browser page uses.
    pub async fn batch_hvp_async(
        &mut self,
        id: usize,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        v: &[f32],
    ) -> Result<Vec<f32>> {
        if rows == 0 || rows > self.max_rows {
            return Err(crate::error::Error::Usage(format!(
                "a Hessian batch of {rows} rows (at most {})",
                self.max_rows
            )));
        }
        super::network::check_batch_norm_rows(&self.model, rows, 1)?;
        let shape = |what: &str, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(crate::error::Error::Shape {
                    what: what.into(),
                    expected: format!("{expected} values"),
                    got: got.to_string(),
                })
            }
        };
        shape("Hessian batch input", rows * self.model.inputs, x.len())?;
        shape("Hessian batch labels", rows, labels.len())?;
        shape("Hessian-vector direction", self.model.param_len, v.len())?;
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= self.model.outputs()) {
            return Err(crate::error::Error::Usage(format!(
                "label {bad} is not below the model's {} outputs",
                self.model.outputs()
            )));
        }
        if self.recorded.as_ref().map(|r| r.0) != Some(rows) {
            self.recorded = Some((rows, self.record(rows)?));
        }
        if self.loaded != Some(id) {
            self.gpu.write(&self.values[0], x);
            self.gpu.write(&self.labels, labels);
            self.loaded = Some(id);
        }
        self.gpu.write(&self.v, v);
        let launches: Vec<&Dispatch> = self.recorded.iter().flat_map(|(_, l)| l.iter()).collect();
        submit(&self.gpu, "Hessian-vector product", &launches)?;
        self.gpu.read_async(&self.hv, 0, self.model.param_len).await
    }

    /// Every launch of one product, in order, for batches of `rows` rows.
    fn record(&self, rows: usize) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        for (s, stage) in self.model.stages.iter().enumerate() {
            self.forward(rows, s, stage.input, &mut out)?;
        }
        self.loss_and_r(rows, &mut out)?;
        let mut written = vec![false; self.model.stages.len() + 1];
        for s in (0..self.model.stages.len()).rev() {
            self.backward(rows, s, &mut written, &mut out)?;
        }
        Ok(out)
    }

    /// The network the training launches see: this product's parameters, gradient and loss
    /// buffers, for batches of `rows` rows.
    fn net(&self, rows: usize) -> Net<'_> {
        Net {
            gpu: &self.gpu,
            model: &self.model,
            loss: self.loss,
            rows,
            models: 1,
            params: &self.params,
            grads: &self.grads,
            running: &self.running,
            labels: &self.labels,
            targets: None,
            row_stats: &self.row_stats,
            totals: &self.totals,
        }
    }

    /// Stage `s` forward: its value by the training launch, its R-value by the R-terms.
    fn forward(&self, rows: usize, s: usize, input: usize, out: &mut Vec<Dispatch>) -> Result<()> {
        let (g, net) = (&*self.gpu, self.net(rows));
        let (a, ra, y, ry) = (&self.values[input], &self.rvalues[input], &self.values[s + 1], &self.rvalues[s + 1]);
        // Evaluation mode: a dropout is the identity activation.
        match self.model.stages[s].op.for_eval() {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let d = self.dense(s)?;
                // z = a·Wᵀ + b, y = act(z); R{z} = a·Vᵀ + v_b (+ R{a}·Wᵀ); R{y} = act'(z)·R{z}.
                out.push(launch::dense_forward(&net, a, y, Aux::Preact(&d.z), k, n, weight, bias, act)?.dispatch);
                let fwd = |bias_at, accumulate| {
                    MatmulParams::dense_forward(rows, k, n, weight, Epilogue::linear(bias_at, accumulate))
                };
                out.push(g.matmul(a, &self.v, bias.map(|_| &self.v), &d.rz, None, fwd(bias, false))?);
                if input != 0 {
                    out.push(g.matmul(ra, &self.params, None, &d.rz, None, fwd(None, true))?);
                }
                out.push(launch::activation_backward(&net, &d.z, &d.rz, ry, n, act, false)?.dispatch);
            }
            Op::BatchNorm { width, gamma, beta, norm, act } => {
                let stats = self.norm_stats(s)?;
                // Training-mode statistics that leave this product's running statistics alone.
                let p = launch::bn_params(&net, norm, width, gamma, beta, act);
                out.push(launch::batchnorm(&net, BnEntry::Stats, a, None, stats, None, p.training(0.0))?.dispatch);
                out.push(launch::batchnorm(&net, BnEntry::Forward, a, None, stats, Some(y), p)?.dispatch);
                let hp = self.hvp_params(rows, width, act, false, gamma, beta);
                let b = HvpBuffers {
                    x: a,
                    rx: ra,
                    g: None,
                    rg: None,
                    theta: Some(&self.params),
                    v: Some(&self.v),
                    stats: Some(stats),
                    out: ry,
                };
                out.push(g.hvp_kernel(HvpEntry::BatchnormRForward, &b, hp)?);
            }
            Op::Activation { width, act } => {
                out.push(launch::activation_forward(&net, a, y, width, act)?.dispatch);
                out.push(launch::activation_backward(&net, a, ra, ry, width, act, false)?.dispatch);
            }
            Op::Add { width, skip } => {
                out.push(launch::residual_add(&net, a, &self.values[skip], y, width)?.dispatch);
                out.push(launch::residual_add(&net, ra, &self.rvalues[skip], ry, width)?.dispatch);
            }
            Op::Dropout { .. } => return Err(Error::Plan("a dropout left after for_eval".into())),
        }
        Ok(())
    }

    /// The training loss launches (gradient at the output), then R{gradient}.
    fn loss_and_r(&self, rows: usize, out: &mut Vec<Dispatch>) -> Result<()> {
        let g = &*self.gpu;
        let last = self.model.stages.len();
        let classes = self.model.outputs();
        let (o, ro, grad, rgrad) = (&self.values[last], &self.rvalues[last], &self.gvalues[last], &self.rgvalues[last]);
        out.extend(launch::loss(&self.net(rows), o, grad)?.into_iter().map(|l| l.dispatch));
        let entry = match self.loss {
            Loss::CrossEntropy => HvpEntry::CrossEntropyR,
            Loss::Mse => HvpEntry::MseR,
        };
        let hp =
            HvpParams { len: (rows * classes) as u32, rows: rows as u32, cols: classes as u32, ..Default::default() };
        let b = HvpBuffers { x: o, rx: ro, g: None, rg: None, theta: None, v: None, stats: None, out: rgrad };
        out.push(g.hvp_kernel(entry, &b, hp)?);
        Ok(())
    }

    /// Stage `s` backward: its gradients by the training launches, their R-values by the R-terms.
    fn backward(&self, rows: usize, s: usize, written: &mut [bool], out: &mut Vec<Dispatch>) -> Result<()> {
        let (g, net) = (&*self.gpu, self.net(rows));
        let stage = &self.model.stages[s];
        let input = stage.input;
        let (gy, rgy) = (&self.gvalues[s + 1], &self.rgvalues[s + 1]);
        let (a, ra) = (&self.values[input], &self.rvalues[input]);
        // The first gradient reaching a value writes it, later ones add (reverse stage order).
        let accumulate = written[input];
        if input != 0 {
            written[input] = true;
        }
        match stage.op.for_eval() {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let d = self.dense(s)?;
                // dz = act'(z)·g, R{dz} = act''(z)·R{z}·g + act'(z)·R{g}.
                out.push(launch::activation_backward(&net, &d.z, gy, &d.dz, n, act, false)?.dispatch);
                let hp =
                    HvpParams { len: (rows * n) as u32, act: act.kind.code(), slope: act.slope, ..Default::default() };
                let b = HvpBuffers {
                    x: &d.z,
                    rx: &d.rz,
                    g: Some(gy),
                    rg: Some(rgy),
                    theta: None,
                    v: None,
                    stats: None,
                    out: &d.rdz,
                };
                out.push(g.hvp_kernel(HvpEntry::ActivationRBackward, &b, hp)?);
                // ∇W = dzᵀ·a (+ ∇b); H·v for W = R{dz}ᵀ·a + dzᵀ·R{a} (+ ΣR{dz} for b).
                out.push(launch::dense_backward_weight(&net, &d.dz, a, k, n, weight, bias)?.dispatch);
                let dw = |bias_at: Option<usize>, accumulate| {
                    MatmulParams::dense_backward_params(rows, k, n, weight, bias_at, accumulate)
                };
                out.push(g.matmul(&d.rdz, a, None, &self.hv, None, dw(bias, false))?);
                if input != 0 {
                    out.push(g.matmul(&d.dz, ra, None, &self.hv, None, dw(None, true))?);
                    // ∇a (+)= dz·W; R{∇a} (+)= R{dz}·W + dz·V.
                    let ga = &self.gvalues[input];
                    out.push(launch::dense_backward_input(&net, &d.dz, ga, None, accumulate, k, n, weight)?.dispatch);
                    let dx = |accumulate| MatmulParams::dense_backward_input(rows, k, n, weight, None, accumulate);
                    out.push(g.matmul(&d.rdz, &self.params, None, &self.rgvalues[input], None, dx(accumulate))?);
                    out.push(g.matmul(&d.dz, &self.v, None, &self.rgvalues[input], None, dx(true))?);
                }
            }
            Op::BatchNorm { width, gamma, beta, norm, act } => {
                let stats = self.norm_stats(s)?;
                let p = launch::bn_params(&net, norm, width, gamma, beta, act);
                out.push(launch::batchnorm(&net, BnEntry::BackwardReduce, a, Some(gy), stats, None, p)?.dispatch);
                let hp = self.hvp_params(rows, width, act, false, gamma, beta);
                let b = HvpBuffers {
                    x: a,
                    rx: ra,
                    g: Some(gy),
                    rg: Some(rgy),
                    theta: Some(&self.params),
                    v: Some(&self.v),
                    stats: Some(stats),
                    out: &self.hv,
                };
                out.push(g.hvp_kernel(HvpEntry::BatchnormRBackwardReduce, &b, hp)?);
                if input != 0 {
                    let (pi, ga) = (launch::bn_input_params(p, accumulate), &self.gvalues[input]);
                    out.push(
                        launch::batchnorm(&net, BnEntry::BackwardInput, a, Some(gy), stats, Some(ga), pi)?.dispatch,
                    );
                    let hp = self.hvp_params(rows, width, act, accumulate, gamma, beta);
                    let b = HvpBuffers { out: &self.rgvalues[input], ..b };
                    out.push(g.hvp_kernel(HvpEntry::BatchnormRBackwardInput, &b, hp)?);
                }
            }
            Op::Activation { width, act } => {
                if input != 0 {
                    let ga = &self.gvalues[input];
                    out.push(launch::activation_backward(&net, a, gy, ga, width, act, accumulate)?.dispatch);
                    let hp = HvpParams {
                        len: (rows * width) as u32,
                        act: act.kind.code(),
                        slope: act.slope,
                        flags: if accumulate { HVP_ACCUMULATE } else { 0 },
                        ..Default::default()
                    };
                    let b = HvpBuffers {
                        x: a,
                        rx: ra,
                        g: Some(gy),
                        rg: Some(rgy),
                        theta: None,
                        v: None,
                        stats: None,
                        out: &self.rgvalues[input],
                    };
                    out.push(g.hvp_kernel(HvpEntry::ActivationRBackward, &b, hp)?);
                }
            }
            Op::Add { width, skip } => {
                // The gradient goes on unchanged to both summands: identity act' = 1 (as training's plan).
                for (target, acc) in [(input, accumulate), (skip, written[skip])] {
                    if target == 0 {
                        continue;
                    }
                    let (gt, rgt) = (&self.gvalues[target], &self.rgvalues[target]);
                    out.push(launch::activation_backward(&net, gy, gy, gt, width, Act::IDENTITY, acc)?.dispatch);
                    out.push(launch::activation_backward(&net, rgy, rgy, rgt, width, Act::IDENTITY, acc)?.dispatch);
                    written[target] = true;
                }
            }
            Op::Dropout { .. } => return Err(Error::Plan("a dropout left after for_eval".into())),
        }
        Ok(())
    }

    fn dense(&self, s: usize) -> Result<&DenseBuffers> {
        self.dense[s].as_ref().ok_or_else(|| crate::error::Error::Plan("Dense without buffers".into()))
    }

    fn norm_stats(&self, s: usize) -> Result<&GpuBuffer> {
        self.norm_stats[s].as_ref().ok_or_else(|| crate::error::Error::Plan("norm stats".into()))
    }

    fn hvp_params(
        &self,
        rows: usize,
        width: usize,
        act: Act,
        accumulate: bool,
        gamma: usize,
        beta: usize,
    ) -> HvpParams {
        HvpParams {
            len: (rows * width) as u32,
            rows: rows as u32,
            cols: width as u32,
            act: act.kind.code(),
            slope: act.slope,
            flags: if accumulate { HVP_ACCUMULATE } else { 0 },
            gamma_offset: gamma as u32,
            beta_offset: beta as u32,
        }
    }
}
