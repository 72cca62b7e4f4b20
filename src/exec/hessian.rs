//! The Hessian of the mean training loss as an operator on the model's parameters, for Lanczos
//! and stochastic Lanczos quadrature (`crate::spectrum`).
//!
//! The loss is L(θ) = Σ_b (|b|/N)·L_b(θ) over the data cut into batches of `batch_size`
//! consecutive rows (no shuffling): the mean loss over the set when the model has no batch norm,
//! whatever the batches. With batch norm, each L_b uses its own batch's statistics (training
//! mode, as the model was trained), so the Hessian is that of the training objective at that
//! batch size; a final single-row batch, which batch norm cannot normalise, joins the one before.
//!
//! Coordinates are the parameters themselves, in state-dict order without the flat buffer's
//! alignment padding (padding would add spurious zero eigenvalues).

use std::sync::Arc;

use super::gpu_hessian::GpuHvp;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::reference::hvp::{loss_grad_hvp, HvpOutput};
use crate::spec::{Loss, Model};
use crate::spectrum::{AsyncSymmetricOperator, SymmetricOperator};

/// Bound on |H·v (GPU, f32) − H·v (exact)| for `model` with batches of up to `rows` rows, given
/// max|H·v| = `scale`: each f32 product or reduction of K terms errs by at most K·u·Σ|terms|, and
/// the R-operator traverses every stage twice (forward R, then the R of the backward pass), so
/// 2·stages·K·u·max|Hv| with K the largest inner dimension (rows or any width). Used by the
/// tests and `gradflow check`.
pub fn gpu_hvp_error_bound(model: &Model, rows: usize, scale: f64) -> f64 {
    let widest = (0..=model.stages.len()).map(|v| model.width_of(v)).max().unwrap_or(1);
    let k = rows.max(widest) as f64;
    2.0 * model.stages.len() as f64 * k * crate::reference::bounds::EPS * scale
}

pub struct Hessian {
    model: Model,
    loss: Loss,
    /// Flat parameters (padding included), where the Hessian is taken.
    params: Vec<f64>,
    /// (inputs, labels, rows) of each batch.
    batches: Vec<(Vec<f64>, Vec<u32>, usize)>,
    rows: usize,
    /// Flat offset of each coordinate.
    coords: Vec<usize>,
    /// Hessian-vector products computed so far.
    pub products: usize,
    /// Where `apply` computes its products: the GPU (f32, `exec::gpu_hessian`) or, when None, the
    /// CPU reference in f64.
    gpu: Option<GpuHvp>,
    /// Each batch's inputs in f32, made once for the GPU (empty on the CPU path).
    gpu_inputs: Vec<Vec<f32>>,
    /// Asked before each CPU product in `hv_async`; what it returns is awaited (`set_pause`).
    pause: Option<Pause>,
}

/// A hook that may hand back a future to await before the next CPU product: how a browser page,
/// whose CPU reference runs on its own thread, lets the page draw and take input meanwhile.
pub type Pause = Box<dyn FnMut() -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>>;

impl Hessian {
    /// The Hessian of `model`'s mean `loss` over `data` at `params` (flat, as checkpoints hold them).
    pub fn new(model: Model, loss: Loss, params: &[f32], data: &Dataset, batch_size: usize) -> Result<Hessian> {
        super::network::refuse_targets(data, "the Hessian (sharpness, spectrum)")?;
        super::cpu_network::check_params(&model, params)?;
        super::network::check_features(&model, data)?;
        if data.n == 0 {
            return Err(Error::Usage("the Hessian needs at least one training row".into()));
        }
        if batch_size == 0 {
            return Err(Error::Usage("batch_size must be at least 1".into()));
        }
        if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= model.outputs()) {
            return Err(Error::Usage(format!("label {bad} is not below the model's {} outputs", model.outputs())));
        }
        let mut bounds: Vec<(usize, usize)> =
            (0..data.n).step_by(batch_size).map(|s| (s, (s + batch_size).min(data.n))).collect();
        if model.has_batch_norm() && bounds.len() > 1 && bounds.last().is_some_and(|(s, e)| e - s == 1) {
            let (_, end) = bounds.pop().unwrap_or_default();
            if let Some(last) = bounds.last_mut() {
                last.1 = end;
            }
        }
        if let Some((s, e)) = bounds.first() {
            super::network::check_batch_norm_rows(&model, e - s, 1)?;
        }
        let d = data.d;
        let batches = bounds
            .iter()
            .map(|&(s, e)| {
                let x = data.x[s * d..e * d].iter().map(|&v| v as f64).collect();
                (x, data.labels[s..e].to_vec(), e - s)
            })
            .collect();
        let coords = model.params.iter().flat_map(|t| t.offset..t.offset + t.len).collect();
        Ok(Hessian {
            params: params.iter().map(|&v| v as f64).collect(),
            model,
            loss,
            batches,
            rows: data.n,
            coords,
            products: 0,
            gpu: None,
            gpu_inputs: Vec::new(),
            pause: None,
        })
    }

    /// Computes `apply`'s products on `gpu` from now on (in f32; the batches are summed in f64).
    pub fn use_gpu(&mut self, gpu: Arc<crate::kernels::Gpu>) -> Result<()> {
        let max_rows = self.batches.iter().map(|b| b.2).max().unwrap_or(1);
        let params: Vec<f32> = self.params.iter().map(|&v| v as f32).collect();
        self.gpu = Some(GpuHvp::new(gpu, self.model.clone(), self.loss, &params, max_rows)?);
        self.gpu_inputs = self.batches.iter().map(|(x, _, _)| x.iter().map(|&t| t as f32).collect()).collect();
        Ok(())
    }

    /// Where the products run, for reports.
    pub fn device(&self) -> &'static str {
        if self.gpu.is_some() {
            "the GPU (R-operator kernels, f32)"
        } else {
            "the CPU reference (R-operator, f64)"
        }
    }

    /// H·v (v in coordinates), on the GPU when `use_gpu` was called.
    pub fn hv(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        crate::device::wait("a Hessian-vector product", self.hv_async(v))
    }

    /// `hv` with the GPU's read-backs awaited, and on the CPU reference the pause (`set_pause`),
    /// if any: the form a browser page uses. With a pause set, use only the `_async` forms on
    /// wasm (a blocking form cannot wait for it there).
    pub async fn hv_async(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        if self.gpu.is_none() {
            self.pause().await;
            return Ok(self.evaluate(v)?.hv);
        }
        self.check_direction(v)?;
        let mut flat_v = vec![0.0f32; self.model.param_len];
        self.coords.iter().zip(v).for_each(|(&i, &x)| flat_v[i] = x as f32);
        let mut hv = vec![0.0f64; self.model.param_len];
        let Some(gpu) = self.gpu.as_mut() else {
            return Err(Error::Plan("the GPU Hessian-vector product without a GPU".into()));
        };
        for (b, ((_, labels, rows), x32)) in self.batches.iter().zip(&self.gpu_inputs).enumerate() {
            let part = gpu.batch_hvp_async(b, x32, labels, *rows, &flat_v).await?;
            let share = *rows as f64 / self.rows as f64;
            hv.iter_mut().zip(&part).for_each(|(a, &b)| *a += share * b as f64);
        }
        self.products += 1;
        Ok(self.pack(&hv))
    }

    /// Sets the hook `hv_async` asks before each CPU product (see `Pause`).
    pub fn set_pause(&mut self, pause: Pause) {
        self.pause = Some(pause);
    }

    /// Awaits what the pause hands back, if it is set and hands anything back.
    async fn pause(&mut self) {
        if let Some(wait) = self.pause.as_mut().and_then(|p| p()) {
            wait.await;
        }
    }

    /// Flat vector (padding included) → coordinates.
    pub fn pack(&self, flat: &[f64]) -> Vec<f64> {
        self.coords.iter().map(|&i| flat[i]).collect()
    }

    /// Coordinates → flat vector, zero padding.
    pub fn unpack(&self, v: &[f64]) -> Vec<f64> {
        let mut flat = vec![0.0; self.model.param_len];
        self.coords.iter().zip(v).for_each(|(&i, &x)| flat[i] = x);
        flat
    }

    fn check_direction(&self, v: &[f64]) -> Result<()> {
        if v.len() != self.coords.len() {
            return Err(Error::Shape {
                what: "Hessian-vector direction".into(),
                expected: format!("{} values", self.coords.len()),
                got: v.len().to_string(),
            });
        }
        Ok(())
    }

    /// Loss, gradient and H·v over every batch (v in coordinates).
    pub fn evaluate(&mut self, v: &[f64]) -> Result<HvpOutput> {
        self.check_direction(v)?;
        let flat_v = self.unpack(v);
        let (mut loss, mut grad, mut hv) = (0.0, vec![0.0; self.model.param_len], vec![0.0; self.model.param_len]);
        for (x, labels, rows) in &self.batches {
            let out = loss_grad_hvp(&self.model, self.loss, &self.params, &flat_v, x, labels, *rows);
            let share = *rows as f64 / self.rows as f64;
            loss += share * out.loss;
            grad.iter_mut().zip(&out.grad).for_each(|(a, b)| *a += share * b);
            hv.iter_mut().zip(&out.hv).for_each(|(a, b)| *a += share * b);
        }
        self.products += 1;
        Ok(HvpOutput { loss, grad: self.pack(&grad), hv: self.pack(&hv) })
    }

    /// The whole matrix, column by column (coordinates × coordinates, row-major): for models
    /// small enough to decompose exactly.
    pub fn dense(&mut self) -> Result<Vec<f64>> {
        crate::device::wait("the dense Hessian", self.dense_async())
    }

    /// `dense`, asking the pause (`set_pause`) before each column: always on the CPU reference,
    /// so a page's thread can draw meanwhile.
    pub async fn dense_async(&mut self) -> Result<Vec<f64>> {
        let n = self.dim();
        let mut h = vec![0.0; n * n];
        let mut e = vec![0.0; n];
        for j in 0..n {
            self.pause().await;
            e[j] = 1.0;
            let col = self.evaluate(&e)?.hv;
            e[j] = 0.0;
            for i in 0..n {
                h[i * n + j] = col[i];
            }
        }
        Ok(h)
    }

    /// The point where the Hessian is taken, in coordinates.
    pub fn point(&self) -> Vec<f64> {
        self.pack(&self.params)
    }

    /// Moves the point where the Hessian (and loss and gradient) are taken to `x` (coordinates).
    pub fn set_point(&mut self, x: &[f64]) -> Result<()> {
        if x.len() != self.coords.len() || x.iter().any(|v| !v.is_finite()) {
            return Err(Error::Usage(format!(
                "a point of the Hessian must be {} finite coordinates",
                self.coords.len()
            )));
        }
        self.coords.iter().zip(x).for_each(|(&i, &v)| self.params[i] = v);
        if let Some(gpu) = self.gpu.as_mut() {
            let flat: Vec<f32> = self.params.iter().map(|&v| v as f32).collect();
            gpu.set_params(&flat)?;
        }
        Ok(())
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The number of coordinates (parameters without padding).
    pub fn dim(&self) -> usize {
        self.coords.len()
    }
}

impl AsyncSymmetricOperator for Hessian {
    fn dim(&self) -> usize {
        Hessian::dim(self)
    }

    async fn apply_async(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        self.hv_async(x).await
    }
}

impl SymmetricOperator for Hessian {
    fn dim(&self) -> usize {
        Hessian::dim(self)
    }

    fn apply(&mut self, x: &[f64], y: &mut [f64]) -> Result<()> {
        let hv = self.hv(x)?;
        y.copy_from_slice(&hv);
        Ok(())
    }
}
