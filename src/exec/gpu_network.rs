//! The GPU executor. Every buffer and bind group is made once, when the network is built; a
//! training step writes the batch's row indices (and the learning rate when it changes), records
//! gather → forward → loss → backward → update into one compute pass, and submits once.

use std::sync::Arc;

use super::gpu_sync::{self, GradBucket, SyncedNorm};
use super::launch::{self, Context, Launch, Net, Shape, When};
use super::network::{BadStep, StepSync};
use super::{Network, Totals};
use crate::data::Dataset;
use crate::device::{submit, Dispatch};
use crate::device::{wait, GpuBuffer};
use crate::error::{Error, Result};
use crate::kernels::optim::GpuOptimizer;
use crate::kernels::Gpu;
use crate::kernels::{
    GatherParams, TOTALS_LEN, TOTAL_BAD_LOSS, TOTAL_CORRECT, TOTAL_COUNT, TOTAL_FIRST_BAD, TOTAL_LOSS_SUM,
    TOTAL_STEP_LOSS,
};
use crate::optim::{OptimizerSetup, ParamGroups};
use crate::spec::plan::{BackwardOp, Buf, ForwardOp, Plan};
use crate::spec::{Loss, Model, NormState};

mod many_steps;
mod small_net;

use small_net::SmallNetStep;
pub use small_net::StepKind;

pub struct GpuNetwork {
    gpu: Arc<Gpu>,
    model: Model,
    loss: Loss,
    max_rows: usize,
    rows: u32,
    params: GpuBuffer,
    grads: GpuBuffer,
    running: GpuBuffer,
    batches_tracked: Vec<u64>,
    batch_x: GpuBuffer,
    batch_labels: GpuBuffer,
    /// The batch's real targets (MSE only; else None), read by the loss launch when the
    /// training set has targets.
    batch_targets: Option<GpuBuffer>,
    /// The training set's targets on the device and the gather of the batch's rows of them (a
    /// second `gather_batch` launch, whose label copy rewrites the same labels): None without
    /// targets or when streamed.
    gather_targets: Option<(GpuBuffer, Launch)>,
    /// Whether the training set has real targets (regression).
    regression: bool,
    indices: GpuBuffer,
    totals: GpuBuffer,
    /// Forward launches (stage order); `predict` runs those for eval.
    forward: Vec<Launch>,
    /// (index in `forward` of a training-statistics launch, its layer in `Model::norms`).
    norm_launches: Vec<(usize, usize)>,
    /// The synchronised batch norms, in stage order.
    synced: Vec<SyncedNorm>,
    /// After each backward launch, where the gradient's finished tail starts.
    grad_tails: Vec<usize>,
    /// Where a data-parallel step cuts the gradient for the all-reduce (`set_bucket_cap`).
    buckets: Vec<GradBucket>,
    /// One host-readable buffer per bucket, made at the first data-parallel step and reused.
    bucket_staging: Vec<wgpu::Buffer>,
    /// The host's copy of the running statistics, current only in the synchronised layers'
    /// windows (a data-parallel step updates those on the host; the other layers' move on the
    /// device); None when the kernels have moved the synchronised ones too (an ordinary step),
    /// to be read again.
    running_host: Option<Vec<f32>>,
    /// Loss, reduction, backward and the update, in order.
    backward: Vec<Launch>,
    gather: Option<Launch>,
    train_rows: usize,
    optimizer: GpuOptimizer,
    setup: OptimizerSetup,
    steps: usize,
    /// Key of the dropout masks (`Network::set_dropout_seed`).
    dropout_seed: u64,
    /// `steps` when the totals were last cleared (the loss kernel counts from there).
    totals_from_step: usize,
    /// The plan's buffers, one per `BufferSpec`.
    stage_buffers: Vec<GpuBuffer>,
    /// The buffer `predict` reads the logits from.
    logits: crate::spec::plan::Buf,
    /// The resident training set (inputs, labels) the gather kernel reads.
    train_data: Option<(GpuBuffer, GpuBuffer)>,
    /// The training set kept on the host instead, each batch gathered there and uploaded as it is
    /// used: for data larger than one GPU buffer, on a CPU adapter (`Gpu::gathers_on_host`), or
    /// when asked (`set_streaming`).
    streamed: Option<Dataset>,
    /// Stream the training set: asked for (`set_streaming`), or else the adapter's default
    /// (`Gpu::gathers_on_host`), which the fused step overrides since it gathers by itself.
    stream: Option<bool>,
    /// The streamed batch's rows and labels, reused from step to step.
    staged: (Vec<f32>, Vec<u32>),
    /// Steps the training loop hands `train_steps` at once (`set_steps_per_submit`).
    steps_per_submit: usize,
    /// Inputs and per-step parameters of a many-steps submit (`many_steps`), kept for the next.
    step_staging: Option<GpuBuffer>,
    /// The fused forward-and-backward launch that replaces the per-op ones (None: those run).
    small_net: Option<SmallNetStep>,
    /// The fused step's values buffer for a model with batch norm, whose running statistics are
    /// `running` (a view of it), so that both steps and the eval launches share them.
    fused_values: Option<GpuBuffer>,
}

/// Steps per submit unless set (`train.steps_per_submit`'s default).
pub use crate::config::DEFAULT_STEPS_PER_SUBMIT;

impl GpuNetwork {
    /// One training step; with `sync`, one rank's share of a data-parallel step, submitted in
    /// pieces: the gradient goes to the host bucket by bucket between the backward pass and the
    /// update (the price of an all-reduce without GPU-direct), and each synchronised batch norm
    /// splits the step once more on the way forward and once on the way back.
    fn step(&mut self, batch: &[u32], sync: Option<&mut dyn StepSync>) -> Result<()> {
        if self.gather.is_none() && self.streamed.is_none() {
            return Err(Error::Usage("train_step before set_train_data".into()));
        }
        super::network::check_batch(batch, self.train_rows, self.max_rows)?;
        let ranks = sync.as_ref().map_or(1, |s| s.ranks());
        super::network::check_batch_norm_rows(&self.model, batch.len(), ranks)?;
        self.resize(batch.len())?;
        // The blends of whichever batch norms this step runs: the fused step's or the per-op
        // launches' (a data-parallel step takes the per-op ones).
        if sync.is_none() && self.fused_step_runs() {
            self.prepare_small_net_blend()?;
        } else {
            self.prepare_norms()?;
        }
        if let Some(data) = &self.streamed {
            let (x, labels) = &mut self.staged;
            x.clear();
            labels.clear();
            for &i in batch {
                x.extend_from_slice(data.row(i as usize));
                labels.push(data.labels[i as usize]);
            }
            self.gpu.write(&self.batch_x, x);
            self.gpu.write(&self.batch_labels, labels);
            if let (Some(t), Some(buf)) = (&data.targets, &self.batch_targets) {
                self.gpu.write(buf, &t.rows_of(batch.iter().map(|&i| i as usize)));
            }
        } else {
            self.gpu.write(&self.indices, batch);
        }
        self.prepare_update(sync.is_none())?;
        self.prepare_dropout()?;
        let Some(sync) = sync else {
            let mut launches = self.step_launches();
            launches.extend(self.update_launches());
            submit(&self.gpu, "training step", &launches)?;
            if !self.synced.is_empty() {
                self.running_host = None; // the kernels moved the synchronised layers' too
            }
            return self.stepped();
        };
        self.forward_backward_synced(batch.len(), sync)?;
        let launches: Vec<&Dispatch> = self.optimizer.dispatches().collect();
        submit(&self.gpu, "training step (update)", &launches)?;
        self.stepped()
    }

    /// Forward and backward of a data-parallel step, submitted in pieces split at each
    /// synchronised batch norm's statistics and backward sums, which the ranks exchange, and at
    /// each gradient bucket's end, whose read-back starts at once; the buckets are then reduced
    /// in order, each while the device still runs the backward launches after it.
    fn forward_backward_synced(&mut self, rows: usize, sync: &mut dyn StepSync) -> Result<()> {
        if self.running_host.is_none() && !self.synced.is_empty() {
            self.running_host = Some(self.gpu.read_all(&self.running)?);
        }
        if self.bucket_staging.len() != self.buckets.len() {
            let lens = self.buckets.iter().map(|b| b.range.len());
            self.bucket_staging = lens.map(|len| self.gpu.staging(len)).collect::<Result<_>>()?;
        }
        let gpu = &*self.gpu;
        let buffer = |b: Buf| match b {
            Buf::Stage(i) => &self.stage_buffers[i],
            Buf::Input => &self.batch_x,
        };
        let mut pending: Vec<&Dispatch> = self.gather.iter().map(|l| &l.dispatch).collect();
        pending.extend(self.gather_targets.iter().map(|(_, l)| &l.dispatch));
        for (i, l) in self.forward.iter().enumerate() {
            match self.synced.iter().find(|s| s.train_stats == i) {
                Some(s) => {
                    pending.push(&s.share_stats.dispatch);
                    submit(gpu, "training step (forward)", &pending)?;
                    pending.clear();
                    let layer = &self.model.norms[s.norm];
                    let factor = layer.momentum.factor(self.batches_tracked[s.norm] + 1);
                    let running_host = self.running_host.as_mut().expect("read above");
                    s.sync_stats(gpu, layer, buffer(s.stats), &self.running, running_host, factor, rows, sync)?;
                }
                None if l.when != When::Eval => pending.push(&l.dispatch),
                None => {}
            }
        }
        let mut reads = Vec::with_capacity(self.buckets.len());
        for (i, l) in self.backward.iter().enumerate() {
            pending.push(&l.dispatch);
            let synced = self.synced.iter().find(|s| s.reduce == Some(i));
            let bucket = self.buckets.iter().zip(&self.bucket_staging).find(|(b, _)| b.after == i);
            if synced.is_some() || bucket.is_some() {
                submit(gpu, "training step (backward)", &pending)?;
                pending.clear();
            }
            if let Some(s) = synced {
                s.sync_sums(gpu, &self.grads, sync)?;
            }
            if let Some((b, staging)) = bucket {
                reads.push((b.range.start, gpu.start_read_via(&self.grads, b.range.start, b.range.len(), staging)?));
            }
        }
        if !pending.is_empty() {
            submit(gpu, "training step (backward)", &pending)?;
        }
        for (start, read) in reads {
            let mut part = read.finish(gpu)?;
            sync.gradient(&mut part)?;
            gpu.write_at(&self.grads, start, &part);
        }
        Ok(())
    }

    /// Counts a submitted step.
    fn stepped(&mut self) -> Result<()> {
        self.steps += 1;
        self.batches_tracked.iter_mut().for_each(|n| *n += 1);
        Ok(())
    }

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
        let plan = Plan::new(&model, max_rows)?;
        let g = &*gpu;
        let params_buf = g.upload("parameters", params)?;
        let grads = g.storage("gradients", model.param_len)?;
        let norm_state = model.init_norm_state();
        let (running, fused_values) = Self::running_buffers(g, &model, loss, max_rows, &norm_state.running)?;
        let setup = setup.into();
        setup.validate().map_err(Error::Usage)?;
        let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
        let optimizer = GpuOptimizer::new(g, &params_buf, &grads, &setup.optimizer, groups, setup.clip_grad_norm)?;
        let batch_x = g.storage("batch input", max_rows * model.inputs)?;
        let batch_labels = g.storage("batch labels", max_rows)?;
        let batch_targets = match loss {
            Loss::Mse => Some(g.storage("batch targets", max_rows * model.outputs())?),
            Loss::CrossEntropy => None,
        };
        let indices = g.step_ring("batch indices", max_rows)?;
        let row_stats = g.storage("per-row loss", 2 * max_rows)?;
        let totals = g.storage("loss totals", TOTALS_LEN)?;
        let stage_buffers =
            plan.buffers.iter().map(|b| g.storage(&b.name, b.len)).collect::<Result<Vec<GpuBuffer>>>()?;

        let c = Context {
            net: Net {
                gpu: g,
                model: &model,
                loss,
                rows: max_rows,
                models: 1,
                params: &params_buf,
                grads: &grads,
                running: &running,
                labels: &batch_labels,
                targets: batch_targets.as_ref(),
                row_stats: &row_stats,
                totals: &totals,
            },
            input: &batch_x,
            stage: &stage_buffers,
        };
        let mut forward = Vec::new();
        let mut norm_launches = Vec::new();
        let mut synced = Vec::new();
        for op in &plan.forward {
            for l in launch::forward(&c, op)? {
                if let (&ForwardOp::BatchNorm { norm, stats, width, gamma, beta, .. }, When::Train) = (op, l.when) {
                    norm_launches.push((forward.len(), norm));
                    if let Some(share_stats) = launch::share_stats(&c, op)? {
                        let train_stats = forward.len();
                        synced.push(SyncedNorm {
                            norm,
                            width,
                            gamma,
                            beta,
                            stats,
                            train_stats,
                            share_stats,
                            reduce: None,
                        });
                    }
                }
                forward.push(l);
            }
        }
        let mut backward = Vec::new();
        // The tensors whose gradients each backward launch writes (on its op's last launch).
        let mut writes: Vec<Vec<usize>> = Vec::new();
        for op in &plan.backward {
            if let &BackwardOp::BatchNormReduce { norm, .. } = op {
                if let Some(s) = synced.iter_mut().find(|s| s.norm == norm) {
                    s.reduce = Some(backward.len());
                }
            }
            let before = backward.len();
            backward.extend(launch::backward(&c, op)?);
            writes.resize(backward.len(), Vec::new());
            if let (Some(last), true) = (writes.last_mut(), backward.len() > before) {
                *last = match *op {
                    BackwardOp::DenseWeight { weight, bias, .. } => std::iter::once(weight).chain(bias).collect(),
                    BackwardOp::BatchNormReduce { gamma, beta, .. } => vec![gamma, beta],
                    _ => Vec::new(),
                };
            }
        }
        if let Some(s) = synced.iter().find(|s| s.reduce.is_none()) {
            return Err(Error::Plan(format!("synchronised batch norm {} has no backward reduction", s.norm)));
        }
        let grad_tails = gpu_sync::finished_tails(&model, &writes);
        let buckets = gpu_sync::buckets(&grad_tails, model.param_len, gpu_sync::DEFAULT_BUCKET_BYTES / 4);
        let rows = max_rows as u32;
        let small_net = Self::auto_small_net(&gpu, &model, loss, max_rows, fused_values.as_ref())?;

        Ok(GpuNetwork {
            gpu,
            batches_tracked: norm_state.batches_tracked,
            model,
            loss,
            max_rows,
            rows,
            params: params_buf,
            grads,
            running,
            batch_x,
            batch_labels,
            batch_targets,
            gather_targets: None,
            regression: false,
            indices,
            totals,
            forward,
            norm_launches,
            synced,
            grad_tails,
            buckets,
            bucket_staging: Vec::new(),
            running_host: Some(norm_state.running.clone()),
            backward,
            gather: None,
            train_rows: 0,
            optimizer,
            setup,
            steps: 0,
            dropout_seed: 0,
            totals_from_step: 0,
            stage_buffers,
            logits: plan.logits,
            train_data: None,
            streamed: None,
            stream: None,
            staged: (Vec::new(), Vec::new()),
            steps_per_submit: DEFAULT_STEPS_PER_SUBMIT,
            step_staging: None,
            small_net,
            fused_values,
        })
    }

    /// Sets each batch norm's blend factor for the coming training batch (it changes every step
    /// for the cumulative average, momentum "none": 1/num_batches_tracked after this batch).
    /// The counters themselves move only once the step has been submitted.
    fn prepare_norms(&mut self) -> Result<()> {
        for &(launch, k) in &self.norm_launches {
            let factor = self.model.norms[k].momentum.factor(self.batches_tracked[k] + 1);
            let l = &mut self.forward[launch];
            if let Shape::BatchNorm(p, entry) = &mut l.shape {
                let blended = p.training(factor);
                if (blended.keep, blended.take) != (p.keep, p.take) {
                    *p = blended;
                    l.dispatch.update(&self.gpu, p, p.grid(*entry))?;
                }
            }
        }
        Ok(())
    }

    /// Points each training dropout launch at this step's mask (the step count, as the CPU's).
    fn prepare_dropout(&mut self) -> Result<()> {
        let (seed, step) = (self.dropout_seed, self.steps as u64);
        for l in self.forward.iter_mut().chain(self.backward.iter_mut()) {
            if let Some(p) = l.draw_at(seed, step) {
                l.dispatch.update(&self.gpu, &p, p.grid())?;
                l.shape = Shape::Dropout(p, if let Shape::Dropout(_, w) = l.shape { w } else { 0 });
            }
        }
        Ok(())
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

    fn resize(&mut self, rows: usize) -> Result<()> {
        let rows = rows as u32;
        if rows == self.rows {
            return Ok(());
        }
        let synced = self.synced.iter_mut().map(|s| &mut s.share_stats);
        let targets = self.gather_targets.iter_mut().map(|(_, l)| l);
        let launches = self.forward.iter_mut().chain(self.backward.iter_mut()).chain(self.gather.iter_mut());
        for l in launches.chain(targets).chain(synced) {
            l.resize(&self.gpu, rows)?;
        }
        self.rows = rows;
        self.update_small_net_launch()
    }

    /// Points the loss launches at real targets or back at labels. The fused small-net kernels
    /// compare with one-hot labels only, so a regression run takes the per-op launches (never
    /// training silently on one-hot).
    fn set_regression(&mut self, on: bool) -> Result<()> {
        if on == self.regression {
            return Ok(());
        }
        if on {
            self.small_net = None;
        }
        for l in self.backward.iter_mut() {
            l.set_use_targets(&self.gpu, on)?;
        }
        self.regression = on;
        Ok(())
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// (coefficient, global gradient norm) of the last step when clipping is on.
    pub fn clip_stats(&self) -> Result<(f32, f32)> {
        self.optimizer.clip_stats(&self.gpu)
    }
}

/// The read-backs as futures: the forms a browser page awaits (the `Network` methods block on
/// these natively).
impl GpuNetwork {
    /// `Network::last_loss` as a future.
    pub async fn last_loss_async(&mut self) -> Result<f32> {
        Ok(self.gpu.read_async::<f32>(&self.totals, TOTAL_STEP_LOSS, 1).await?[0])
    }

    /// `Network::take_totals` as a future.
    pub async fn take_totals_async(&mut self) -> Result<Totals> {
        let t = self.gpu.read_async::<f32>(&self.totals, 0, TOTALS_LEN).await?;
        let count = t[TOTAL_COUNT];
        let mut cleared = [0.0f32; TOTALS_LEN];
        cleared[TOTAL_STEP_LOSS] = t[TOTAL_STEP_LOSS];
        self.gpu.write(&self.totals, &cleared);
        // The loss kernel counts steps since the last clear; the optimizer records run steps.
        let loss_bad = (t[TOTAL_FIRST_BAD] > 0.0)
            .then(|| (self.totals_from_step + t[TOTAL_FIRST_BAD] as usize, t[TOTAL_BAD_LOSS]));
        let first_bad = BadStep::first(loss_bad, self.optimizer.take_bad_step_async(&self.gpu).await?);
        self.totals_from_step = self.steps;
        Ok(Totals {
            mean_loss: t[TOTAL_LOSS_SUM] / count.max(1.0),
            accuracy: t[TOTAL_CORRECT] / count.max(1.0),
            samples: count as usize,
            first_bad,
        })
    }

    /// `Network::predict` as a future.
    pub async fn predict_async(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        super::network::check_rows(&self.model, x, rows)?;
        let d = self.model.inputs;
        let classes = self.model.outputs();
        let mut out = Vec::with_capacity(rows * classes);
        for start in (0..rows).step_by(self.max_rows) {
            let n = (rows - start).min(self.max_rows);
            self.resize(n)?;
            self.gpu.write(&self.batch_x, &x[start * d..(start + n) * d]);
            let launches: Vec<&Dispatch> =
                self.forward.iter().filter(|l| l.when != When::Train).map(|l| &l.dispatch).collect();
            submit(&self.gpu, "forward", &launches)?;
            let logits = match self.logits {
                Buf::Stage(i) => &self.stage_buffers[i],
                Buf::Input => &self.batch_x,
            };
            out.extend(self.gpu.read_async::<f32>(logits, 0, n * classes).await?);
        }
        Ok(out)
    }

    /// `Network::params` as a future.
    pub async fn params_async(&mut self) -> Result<Vec<f32>> {
        self.gpu.read_async(&self.params, 0, self.params.len).await
    }

    /// `Network::norm_state` as a future.
    pub async fn norm_state_async(&mut self) -> Result<NormState> {
        let running = self.gpu.read_async(&self.running, 0, self.running.len).await?;
        Ok(NormState { running, batches_tracked: self.batches_tracked.clone() })
    }

    /// `Network::optimizer_state` as a future.
    pub async fn optimizer_state_async(&mut self) -> Result<Vec<f32>> {
        self.optimizer.state_of_async(&self.gpu, 0).await
    }
}

impl Network for GpuNetwork {
    fn shared_gpu(&self) -> Option<Arc<Gpu>> {
        Some(Arc::clone(&self.gpu))
    }

    fn describe(&self) -> String {
        match &self.gpu.tuning {
            Some(t) => {
                format!("GPU: {}\n        {}\n        {}", self.gpu.describe(), t.describe(), self.describe_step())
            }
            None => format!("GPU: {}\n        {}", self.gpu.describe(), self.describe_step()),
        }
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn set_train_data(&mut self, data: &Dataset) -> Result<()> {
        super::network::check_features(&self.model, data)?;
        super::network::check_loss_targets(self.loss, data)?;
        self.set_regression(data.is_regression())?;
        self.gather_targets = None;
        let g = &*self.gpu;
        // Either resident buffer past one binding's limit streams the set (targets may be wider
        // than the inputs).
        let widest = data.x.len().max(data.targets.as_ref().map_or(0, |t| t.values.len()));
        let too_large = (widest as u64).saturating_mul(4) > g.max_storage_bytes();
        // The per-op step on a CPU adapter saves its gather launch by gathering on the host; the
        // fused step reads rows through the batch's indices at no extra launch.
        let stream = self.stream.unwrap_or(self.gpu.gathers_on_host() && self.small_net.is_none());
        if stream || too_large {
            // Streamed: the rows stay on the host and each batch is written before its step.
            self.gather = None;
            self.train_data = None;
            self.train_rows = data.n;
            self.streamed = Some(data.clone());
            return self.build_small_net_launch();
        }
        let x = g.upload("training inputs", &data.x)?;
        let labels = g.upload("training labels", &data.labels)?;
        let p = GatherParams::new(self.rows as usize, self.model.inputs, data.n);
        let d = g.gather_batch(&x, &labels, &self.indices, &self.batch_x, &self.batch_labels, p)?;
        self.gather = Some(Launch::new(d, Shape::Gather(p, 0)));
        if let (Some(t), Some(dst)) = (&data.targets, &self.batch_targets) {
            let values = g.upload("training targets", &t.values)?;
            let pt = GatherParams::new(self.rows as usize, t.k, data.n);
            let d = g.gather_batch(&values, &labels, &self.indices, dst, &self.batch_labels, pt)?;
            self.gather_targets = Some((values, Launch::new(d, Shape::Gather(pt, 0))));
        }
        self.train_data = Some((x, labels));
        self.streamed = None;
        self.train_rows = data.n;
        self.build_small_net_launch()
    }

    fn trains_regression(&self) -> bool {
        self.regression
    }

    fn set_streaming(&mut self, on: bool) {
        self.stream = Some(on);
    }

    fn set_bucket_cap(&mut self, bytes: usize) {
        self.buckets = gpu_sync::buckets(&self.grad_tails, self.model.param_len, bytes / 4);
        self.bucket_staging.clear();
    }

    fn train_step(&mut self, batch: &[u32]) -> Result<()> {
        self.step(batch, None)
    }

    fn train_step_reduced(&mut self, batch: &[u32], sync: &mut dyn StepSync) -> Result<()> {
        self.step(batch, Some(sync))
    }

    fn train_steps(&mut self, batches: &[&[u32]]) -> Result<()> {
        let ready = self.gather.is_some() || self.streamed.is_some();
        let same_size = batches.windows(2).all(|w| w[0].len() == w[1].len());
        // The many-steps submit stages labels but not targets: a regression run steps one by one.
        if batches.len() > 1 && ready && same_size && !self.regression {
            return self.steps_in_one_submit(batches);
        }
        batches.iter().try_for_each(|b| self.step(b, None))
    }

    fn steps_per_submit(&self) -> usize {
        self.steps_per_submit
    }

    fn set_steps_per_submit(&mut self, steps: usize) {
        self.steps_per_submit = steps.max(1);
    }

    fn last_loss(&mut self) -> Result<f32> {
        wait("reading the last loss", self.last_loss_async())
    }

    fn take_totals(&mut self) -> Result<Totals> {
        wait("reading the epoch's totals", self.take_totals_async())
    }

    fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        wait("reading predictions", self.predict_async(x, rows))
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        wait("reading the parameters", self.params_async())
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
        wait("reading the optimizer state", self.optimizer_state_async())
    }

    fn set_optimizer_state(&mut self, state: &[f32]) -> Result<()> {
        self.optimizer.set_state(&self.gpu, state)
    }

    fn norm_state(&mut self) -> Result<NormState> {
        wait("reading the batch-norm state", self.norm_state_async())
    }

    fn set_norm_state(&mut self, state: &NormState) -> Result<()> {
        super::network::check_norm_state(&self.model, state)?;
        self.gpu.write(&self.running, &state.running);
        self.running_host = Some(state.running.clone());
        self.batches_tracked = state.batches_tracked.clone();
        Ok(())
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn set_steps(&mut self, steps: usize) {
        self.steps = steps;
        self.totals_from_step = steps;
    }

    fn set_dropout_seed(&mut self, seed: u64) {
        self.dropout_seed = seed;
    }

    fn lr(&self) -> f32 {
        self.setup.lr_at(self.steps as u32) as f32
    }
}
