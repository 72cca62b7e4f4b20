//! The fused step (kernels/small_net.rs): a small network's gather, forward, loss and
//! backward as one launch instead of ~10, and the optimizer's update in the same launch where
//! the adapter binds enough buffers and the optimizer does not clip (small_net_train.wgsl), else
//! in a launch of its own after it. Chosen when the network is built if the model fits and its
//! step is small enough that the launches would cost more than the arithmetic
//! (`Gpu::small_net_max_step_macs`); `set_small_net` and `set_fused_update` override.

use super::*;
use crate::kernels::small_net::SMALL_NET_MAX_STEP_MACS;
use crate::kernels::{OptParams, SmallNet, SmallNetBuffers, SmallNetParams, TrainStep};

/// The fused launch and what it needs besides the network's own buffers.
pub(super) struct SmallNetStep {
    pub(super) layout: SmallNet,
    /// Every layer's values and the backward pass's scratch (and a batch norm's running
    /// statistics, which the network's `running` is a view of).
    pub(super) values: GpuBuffer,
    /// A batch norm's blend changes every step (momentum "none"): each step writes its own.
    pub(super) blend_changes: bool,
    /// Take the update into the launch where the adapter and optimizer allow (the default).
    pub(super) with_update: bool,
    /// Built once the training data is set (it binds the data).
    pub(super) launch: Option<FusedLaunch>,
}

/// The fused launch, without the update or with it.
pub(super) enum FusedLaunch {
    /// small_net.wgsl: the optimizer's launches follow.
    Apart(Dispatch),
    /// small_net_train.wgsl: the update is in the launch.
    WithUpdate(TrainStep),
}

impl FusedLaunch {
    pub(super) fn dispatch(&self) -> &Dispatch {
        match self {
            FusedLaunch::Apart(d) => d,
            FusedLaunch::WithUpdate(t) => &t.launch,
        }
    }
}

/// Which step a network runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// One launch per planned op.
    PerOp,
    /// small_net.wgsl's one launch for forward, loss and backward, then the update.
    SmallNet,
}

impl GpuNetwork {
    /// The fused step when the model fits it and its step is small (None otherwise).
    pub(super) fn auto_small_net(
        gpu: &Gpu,
        model: &Model,
        loss: Loss,
        max_rows: usize,
        fused_values: Option<&GpuBuffer>,
    ) -> Result<Option<SmallNetStep>> {
        match SmallNet::new(model, loss, max_rows) {
            Ok(layout)
                if layout.step_macs(max_rows) <= gpu.small_net_max_step_macs() && Self::loops_fit(gpu, &layout) =>
            {
                Ok(Some(Self::small_net_step(gpu, layout, model, fused_values)?))
            }
            _ => Ok(None),
        }
    }

    /// The running statistics' buffer and, for a model with batch norm that the fused step
    /// takes, the fused step's values buffer they are a view of (small_net.wgsl keeps them in
    /// its values: its 8 storage bindings are WebGPU's default limit), so both steps, the eval
    /// launches, `norm_state` and `set_norm_state` all see one copy. Only for a step small
    /// enough that some adapter would take the fused step (`SMALL_NET_MAX_STEP_MACS`): a larger
    /// model keeps a buffer of its own and spends no memory on values it would never use.
    pub(super) fn running_buffers(
        gpu: &Gpu,
        model: &Model,
        loss: Loss,
        max_rows: usize,
        running: &[f32],
    ) -> Result<(GpuBuffer, Option<GpuBuffer>)> {
        match SmallNet::new(model, loss, max_rows) {
            Ok(layout) if model.running_len > 0 && layout.step_macs(max_rows) <= SMALL_NET_MAX_STEP_MACS => {
                let values = gpu.upload("fused-step values", &layout.initial_values(running))?;
                Ok((values.view(layout.running_at, model.running_len)?, Some(values)))
            }
            _ => Ok((gpu.upload("batch-norm running statistics", running)?, None)),
        }
    }

    fn loops_fit(gpu: &Gpu, layout: &SmallNet) -> bool {
        gpu.check_small_net_loops(&layout.params).is_ok()
    }

    fn small_net_step(
        gpu: &Gpu,
        layout: SmallNet,
        model: &Model,
        fused_values: Option<&GpuBuffer>,
    ) -> Result<SmallNetStep> {
        let values = match fused_values {
            Some(v) => v.clone(),
            None if layout.has_norms() => {
                return Err(Error::Usage(format!(
                    "the fused small-network step does not take this batch-norm model: its step of {} multiply-adds \
                     is past the {SMALL_NET_MAX_STEP_MACS} for which a network keeps its running statistics where \
                     the fused step reads them",
                    layout.step_macs(layout.params.rows as usize)
                )))
            }
            None => gpu.storage("fused-step values", layout.values_len)?,
        };
        let blend_changes = layout.blend_changes(model);
        // On lavapipe the update in the launch measured 2x slower than in a launch of its own
        // (2-2-3-2 net, 32 steps a submit: 172-187 against 73-83 µs a step, one thread); on a
        // GPU it saves a launch a step (not yet measured: no GPU was lent).
        let with_update = gpu.info.device_type != wgpu::DeviceType::Cpu;
        Ok(SmallNetStep { layout, values, launch: None, blend_changes, with_update })
    }

    /// The fused launch's parameters at the current batch size for the step `ahead` steps after
    /// the coming one (a batch norm's blend follows the batches tracked): rows from the resident
    /// set through the batch's indices, or the streamed batch itself (`set_train_data` keeps one
    /// of the two).
    pub(super) fn small_net_params(&self, layout: &SmallNet, ahead: u64) -> SmallNetParams {
        let rows = Self::fused_rows(layout, self.rows);
        let (src_rows, resident) =
            if self.streamed.is_some() { (rows, false) } else { (self.train_rows, self.gather.is_some()) };
        let tracked = self.batches_tracked.first().copied().unwrap_or(0) + ahead;
        layout.with_blend(&self.model, tracked).params.for_batch(rows, src_rows, resident)
    }

    /// The fused launch's batch size at the network's: at least 2 with a batch norm, whose
    /// training step refuses a batch of 1 before it runs (a 1-row prediction resizes the per-op
    /// launches only), so that the launch stays one the kernel can run.
    fn fused_rows(layout: &SmallNet, rows: u32) -> usize {
        if layout.has_norms() {
            rows.max(2) as usize
        } else {
            rows as usize
        }
    }

    /// Writes the coming step's blend into the fused launch when it changes every step.
    pub(super) fn prepare_small_net_blend(&mut self) -> Result<()> {
        match &self.small_net {
            Some(step) if step.blend_changes => self.update_small_net_launch(),
            _ => Ok(()),
        }
    }

    /// Rewrites the fused launch's parameters (if it is built) for the coming step at the
    /// network's batch size: after a resize, and before a step whose blend changes.
    pub(super) fn update_small_net_launch(&mut self) -> Result<()> {
        let Some(SmallNetStep { layout, launch: Some(_), .. }) = &self.small_net else { return Ok(()) };
        let p = self.small_net_params(layout, 0);
        match &mut self.small_net {
            Some(SmallNetStep { launch: Some(FusedLaunch::Apart(d)), .. }) => {
                d.update(&self.gpu, &p, self.gpu.small_net_launch(&p).2)
            }
            Some(SmallNetStep { launch: Some(FusedLaunch::WithUpdate(t)), .. }) => {
                t.write_net(&self.gpu, 0, std::slice::from_ref(&p))
            }
            _ => Ok(()),
        }
    }

    /// The optimizer's numbers for the steps `from..from + n` (0-based), as the update reads them.
    pub(super) fn update_params(&self, from: usize, n: usize) -> Vec<OptParams> {
        (from..from + n)
            .map(|k| self.optimizer.step_params(k as u32 + 1, self.setup.schedule.factor(k as u32)))
            .collect()
    }

    /// Writes the coming step's optimizer numbers where its update reads them: the fused launch
    /// when the update is in it, else the optimizer's own launch.
    pub(super) fn prepare_update(&mut self, fused_runs: bool) -> Result<()> {
        let k = self.steps as u32;
        match &mut self.small_net {
            Some(SmallNetStep { launch: Some(FusedLaunch::WithUpdate(t)), .. }) if fused_runs => {
                let opt = self.optimizer.step_params(k + 1, self.setup.schedule.factor(k));
                let groups = t.launch.groups();
                t.launch.update(&self.gpu, &opt, groups)
            }
            _ => {
                self.optimizer.prepare(&self.gpu, k + 1, self.setup.schedule.factor(k));
                Ok(())
            }
        }
    }

    /// The optimizer's launches a step runs after `step_launches`: none when the fused launch
    /// holds the update.
    pub(super) fn update_launches(&self) -> Vec<&Dispatch> {
        match &self.small_net {
            Some(SmallNetStep { launch: Some(FusedLaunch::WithUpdate(_)), .. }) => Vec::new(),
            _ => self.optimizer.dispatches().collect(),
        }
    }

    /// Whether the fused launch holds the update.
    pub fn fused_update_runs(&self) -> bool {
        matches!(&self.small_net, Some(SmallNetStep { launch: Some(FusedLaunch::WithUpdate(_)), .. }))
    }

    /// Takes the optimizer's update into the fused launch (`true`) or leaves it a launch of its
    /// own (`false`), whatever the default was (in the launch on a GPU, apart on a CPU adapter,
    /// where that measured faster). The same bits either way; no effect on the per-op step. An
    /// error saying why where the update cannot join the launch: the adapter binds too few
    /// storage buffers, or the optimizer clips (its norm is launches of its own).
    pub fn set_fused_update(&mut self, on: bool) -> Result<()> {
        if on && !self.gpu.small_net_trains() {
            return Err(Error::Usage(format!(
                "the fused step's update needs {} storage buffers per shader stage; this adapter binds {}",
                crate::kernels::small_net::SMALL_NET_TRAIN_STORAGE_BINDINGS,
                self.gpu.limits.max_storage_buffers_per_shader_stage
            )));
        }
        if on && self.optimizer.fused_update().is_none() {
            return Err(Error::Usage(
                "with gradient clipping the update stays a launch of its own (its norm is two launches before it)"
                    .into(),
            ));
        }
        match &mut self.small_net {
            Some(step) if step.with_update != on => {
                step.with_update = on;
                self.build_small_net_launch()
            }
            _ => Ok(()),
        }
    }

    /// Which step `train_step` runs.
    pub fn step_kind(&self) -> StepKind {
        if self.small_net.is_some() {
            StepKind::SmallNet
        } else {
            StepKind::PerOp
        }
    }

    /// Runs the fused step (`true`; an error saying why when the model does not fit it) or the
    /// per-op launches (`false`), whatever the automatic choice was.
    pub fn set_small_net(&mut self, on: bool) -> Result<()> {
        if !on {
            self.small_net = None;
            return Ok(());
        }
        if self.regression {
            // The fused kernel compares with one-hot labels only.
            return Err(Error::Usage(
                "the fused small-network step does not take real targets (regression): it compares with class labels"
                    .into(),
            ));
        }
        if self.small_net.is_none() {
            let layout = SmallNet::new(&self.model, self.loss, self.max_rows)
                .map_err(|why| Error::Usage(format!("the fused small-network step does not take this model: {why}")))?;
            // Whether this network can keep its batch-norm statistics where the kernel reads them
            // is a reason on every adapter; the loop budget one on llvmpipe only.
            let step = Self::small_net_step(&self.gpu, layout, &self.model, self.fused_values.as_ref())?;
            self.gpu.check_small_net_loops(&step.layout.params)?;
            self.small_net = Some(step);
        }
        self.build_small_net_launch()
    }

    /// (Re)binds the fused launch to the training data and the current batch size.
    pub(super) fn build_small_net_launch(&mut self) -> Result<()> {
        let Some(step) = &self.small_net else { return Ok(()) };
        // The resident training set read through the batch's indices, or the streamed batch;
        // no launch before the training data is set.
        let source = match (&self.train_data, &self.streamed) {
            (Some((x, labels)), _) if self.gather.is_some() => Some((x, labels, Some(&self.indices))),
            (_, Some(_)) => Some((&self.batch_x, &self.batch_labels, None)),
            _ => None,
        };
        let launch = match source {
            Some((x, labels, indices)) => {
                let p = self.small_net_params(&step.layout, 0);
                let b = SmallNetBuffers {
                    params: &self.params,
                    grads: &self.grads,
                    values: &step.values,
                    totals: &self.totals,
                    x,
                    labels,
                    indices,
                };
                match self.optimizer.fused_update() {
                    Some(u) if step.with_update && self.gpu.small_net_trains() => {
                        let opt = self.update_params(self.steps, 1);
                        Some(FusedLaunch::WithUpdate(self.gpu.small_net_train_step(&b, &p, &u, &opt[0])?))
                    }
                    _ => Some(FusedLaunch::Apart(self.gpu.small_net_step(&b, &p)?)),
                }
            }
            None => None,
        };
        if let Some(step) = &mut self.small_net {
            step.launch = launch;
        }
        Ok(())
    }

    /// Whether a training step runs the fused launch (built once the training data is set).
    pub(super) fn fused_step_runs(&self) -> bool {
        self.small_net.as_ref().is_some_and(|s| s.launch.is_some())
    }

    /// The launches of one training step before the update: the fused one, or gather, forward,
    /// loss and backward.
    pub(super) fn step_launches(&self) -> Vec<&Dispatch> {
        if let Some(SmallNetStep { launch: Some(l), .. }) = &self.small_net {
            return vec![l.dispatch()];
        }
        let mut launches: Vec<&Dispatch> = self.gather.iter().map(|l| &l.dispatch).collect();
        launches.extend(self.gather_targets.iter().map(|(_, l)| &l.dispatch));
        launches.extend(self.forward.iter().filter(|l| l.when != When::Eval).map(|l| &l.dispatch));
        launches.extend(self.backward.iter().map(|l| &l.dispatch));
        launches
    }

    /// The header's line on how a step runs.
    pub(super) fn describe_step(&self) -> String {
        match &self.small_net {
            Some(s) if self.fused_update_runs() => format!(
                "step: fused small-network kernel (forward, loss, backward and update in one launch, {} multiply-adds)",
                s.layout.step_macs(self.max_rows)
            ),
            Some(s) => format!(
                "step: fused small-network kernel (forward, loss and backward in one launch, {} multiply-adds), then the update",
                s.layout.step_macs(self.max_rows)
            ),
            None => "step: one launch per op".to_string(),
        }
    }
}
