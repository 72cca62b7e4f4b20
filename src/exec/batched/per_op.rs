//! The per-op step of a batch of models: the launches a lone `GpuNetwork` records
//! (`exec::launch`), each built once over every model of the batch (`Net::models`): the products,
//! batch norms and losses take a model index (workgroup z) and each buffer's model stride; the
//! element-wise launches and the gather run over every model's slice in one go. For models whose
//! step is past what the fused step takes side by side (`Gpu::side_by_side_max_step_macs`).

use super::super::launch::{self, Context, Launch, Net, Shape, When};
use crate::data::Dataset;
use crate::device::{Dispatch, GpuBuffer};
use crate::error::{Error, Result};
use crate::kernels::{BnParams, GatherParams, Gpu};
use crate::spec::plan::{ForwardOp, Plan};
use crate::spec::{Loss, Model};

/// The buffers and launches of the per-op step over `models` models.
pub(super) struct PerOpBatch {
    models: usize,
    max_rows: usize,
    /// Each model's running statistics, `running.per_model` apart.
    running: GpuBuffer,
    batch_x: GpuBuffer,
    batch_labels: GpuBuffer,
    _row_stats: GpuBuffer,
    _stage: Vec<GpuBuffer>,
    /// Forward launches (stage order), eval ones included (never recorded here).
    forward: Vec<Launch>,
    /// (index in `forward` of a training-statistics launch, its layer in `Model::norms`).
    norm_launches: Vec<(usize, usize)>,
    backward: Vec<Launch>,
    /// Built once the training data is set (it binds the data).
    gather: Option<Launch>,
}

/// The per-op batch's view of the batch's shared buffers (each `per_model` apart).
pub(super) struct Shared<'a> {
    pub params: &'a GpuBuffer,
    pub grads: &'a GpuBuffer,
    pub totals: &'a GpuBuffer,
}

impl PerOpBatch {
    /// Buffers and launches for `models` models of `model` at batches of up to `max_rows` rows,
    /// each model's running statistics starting as a fresh module's.
    pub fn new(gpu: &Gpu, model: &Model, loss: Loss, models: usize, max_rows: usize, s: Shared) -> Result<PerOpBatch> {
        let plan = Plan::new(model, max_rows)?;
        let per = |what: &str, len: usize| -> Result<GpuBuffer> {
            let total =
                len.checked_mul(models).ok_or_else(|| Error::Usage(format!("{models} models of {what} overflow")))?;
            Ok(gpu.storage(what, total)?.side_by_side(len))
        };
        let running = if model.running_len == 0 {
            gpu.storage("batched running statistics", 1)?
        } else {
            per("batched running statistics", model.running_len)?; // refuses the overflow `repeat` would panic on
            let one = model.init_norm_state().running;
            gpu.upload("batched running statistics", &one.repeat(models))?.side_by_side(model.running_len)
        };
        let batch_x = per("batched batch input", max_rows * model.inputs)?;
        let batch_labels = per("batched batch labels", max_rows)?;
        let row_stats = per("batched per-row loss", 2 * max_rows)?;
        let stage = plan.buffers.iter().map(|b| per(&b.name, b.len)).collect::<Result<Vec<_>>>()?;
        let c = Context {
            net: Net {
                gpu,
                model,
                loss,
                rows: max_rows,
                models,
                params: s.params,
                grads: s.grads,
                running: &running,
                labels: &batch_labels,
                targets: None,
                row_stats: &row_stats,
                totals: s.totals,
            },
            input: &batch_x,
            stage: &stage,
        };
        let (mut forward, mut norm_launches) = (Vec::new(), Vec::new());
        for op in &plan.forward {
            for l in launch::forward(&c, op)? {
                if let (&ForwardOp::BatchNorm { norm, .. }, When::Train) = (op, l.when) {
                    norm_launches.push((forward.len(), norm));
                }
                forward.push(l);
            }
        }
        let mut backward = Vec::new();
        for op in &plan.backward {
            backward.extend(launch::backward(&c, op)?);
        }
        Ok(PerOpBatch {
            models,
            max_rows,
            running,
            batch_x,
            batch_labels,
            _row_stats: row_stats,
            _stage: stage,
            forward,
            norm_launches,
            backward,
            gather: None,
        })
    }

    /// Binds the gather to the resident training set and every model's slot of `indices` (a
    /// step ring of the models' rows, `max_rows` apart), at batches of `rows` rows.
    pub fn set_train_data(
        &mut self,
        gpu: &Gpu,
        x: &GpuBuffer,
        labels: &GpuBuffer,
        indices: &GpuBuffer,
        data: &Dataset,
    ) -> Result<()> {
        let before = (self.models - 1) * self.max_rows;
        let p = GatherParams::new(before + self.max_rows, data.d, data.n);
        let d = gpu.gather_batch(x, labels, indices, &self.batch_x, &self.batch_labels, p)?;
        self.gather = Some(Launch::new(d, Shape::Gather(p, before as u32)));
        Ok(())
    }

    /// Every launch resized to batches of `rows` rows.
    pub fn resize(&mut self, gpu: &Gpu, rows: u32) -> Result<()> {
        let mut all = self.forward.iter_mut().chain(self.backward.iter_mut()).chain(self.gather.iter_mut());
        all.try_for_each(|l| l.resize(gpu, rows))
    }

    /// Writes each batch norm's blend for steps `first_step + j` (j < `count`) into step slots
    /// `base + j` of its statistics launch: the blend changes over the first batches when the
    /// momentum is "none" (every model has tracked as many batches as the batch has taken steps).
    pub fn write_blends(&self, gpu: &Gpu, model: &Model, base: usize, first_step: usize, count: usize) -> Result<()> {
        for &(launch, n) in &self.norm_launches {
            let l = &self.forward[launch];
            let Shape::BatchNorm(p, _) = &l.shape else {
                return Err(Error::Plan("a batch-norm statistics launch without batch-norm parameters".into()));
            };
            let momentum = model.norms[n].momentum;
            let blends: Vec<BnParams> =
                (0..count).map(|j| p.training(momentum.factor((first_step + j) as u64 + 1))).collect();
            blends.iter().try_for_each(|b| l.dispatch.check(b))?;
            l.dispatch.write_slots(gpu, base, &blends, 1)?;
        }
        Ok(())
    }

    /// The launches of one step before the updates: gather, forward (training), loss, backward.
    pub fn launches(&self) -> Result<Vec<&Dispatch>> {
        let Some(gather) = &self.gather else {
            return Err(Error::Usage("train_step before set_train_data".into()));
        };
        let mut launches = vec![&gather.dispatch];
        launches.extend(self.forward.iter().filter(|l| l.when != When::Eval).map(|l| &l.dispatch));
        launches.extend(self.backward.iter().map(|l| &l.dispatch));
        Ok(launches)
    }

    /// Model k's running statistics.
    pub fn running_of(&self, gpu: &Gpu, k: usize, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        gpu.read(&self.running, k * self.running.per_model, len)
    }
}
