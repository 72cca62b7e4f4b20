//! The fused step (kernels/small_net.rs): a small dense network's gather, forward, loss and
//! backward as one launch instead of ~10, the optimizer's update unchanged after it. Chosen when
//! the network is built if the model fits and its step is small enough that the launches would
//! cost more than the arithmetic (`Gpu::small_net_max_step_macs`); `set_small_net` overrides.

use super::*;
use crate::kernels::{SmallNet, SmallNetBuffers};

/// The fused launch and what it needs besides the network's own buffers.
pub(super) struct SmallNetStep {
    pub(super) layout: SmallNet,
    /// Every layer's values and the backward pass's scratch.
    pub(super) values: GpuBuffer,
    /// Built once the training data is set (it binds the data).
    pub(super) launch: Option<Dispatch>,
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
    ) -> Result<Option<SmallNetStep>> {
        match Self::small_net_layout(model, loss, max_rows) {
            Ok(layout)
                if layout.step_macs(max_rows) <= gpu.small_net_max_step_macs() && Self::loops_fit(gpu, &layout) =>
            {
                Ok(Some(Self::small_net_step(gpu, layout)?))
            }
            _ => Ok(None),
        }
    }

    /// The fused step's layout for this network, or why it does not take the model. A lone
    /// network keeps batch norms on the per-op path, whose running statistics live in the
    /// network's own buffer (`BatchedNetworks` runs them fused, the statistics in its values).
    fn small_net_layout(model: &Model, loss: Loss, max_rows: usize) -> std::result::Result<SmallNet, String> {
        let layout = SmallNet::new(model, loss, max_rows)?;
        if layout.has_norms() {
            return Err("a lone network runs batch norms through the per-op launches".into());
        }
        Ok(layout)
    }

    fn loops_fit(gpu: &Gpu, layout: &SmallNet) -> bool {
        gpu.check_small_net_loops(&layout.params).is_ok()
    }

    fn small_net_step(gpu: &Gpu, layout: SmallNet) -> Result<SmallNetStep> {
        let values = gpu.storage("fused-step values", layout.values_len)?;
        Ok(SmallNetStep { layout, values, launch: None })
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
        if self.small_net.is_none() {
            let layout = Self::small_net_layout(&self.model, self.loss, self.max_rows)
                .map_err(|why| Error::Usage(format!("the fused small-network step does not take this model: {why}")))?;
            self.gpu.check_small_net_loops(&layout.params)?;
            self.small_net = Some(Self::small_net_step(&self.gpu, layout)?);
        }
        self.build_small_net_launch()
    }

    /// (Re)binds the fused launch to the training data and the current batch size.
    pub(super) fn build_small_net_launch(&mut self) -> Result<()> {
        let Some(step) = &self.small_net else { return Ok(()) };
        let rows = self.rows as usize;
        // The resident training set read through the batch's indices, or the streamed batch;
        // no launch before the training data is set.
        let source = match (&self.train_data, &self.streamed) {
            (Some((x, labels)), _) if self.gather.is_some() => Some((x, labels, Some(&self.indices), self.train_rows)),
            (_, Some(_)) => Some((&self.batch_x, &self.batch_labels, None, rows)),
            _ => None,
        };
        let launch = match source {
            Some((x, labels, indices, src_rows)) => {
                let p = step.layout.params.for_batch(rows, src_rows, indices.is_some());
                let b = SmallNetBuffers {
                    params: &self.params,
                    grads: &self.grads,
                    values: &step.values,
                    totals: &self.totals,
                    x,
                    labels,
                    indices,
                };
                Some(self.gpu.small_net_step(&b, &p)?)
            }
            None => None,
        };
        if let Some(step) = &mut self.small_net {
            step.launch = launch;
        }
        Ok(())
    }

    /// The fused launch's batch size follows the network's.
    pub(super) fn resize_small_net(&mut self) -> Result<()> {
        let rows = self.rows as usize;
        let src_rows = if self.streamed.is_some() { rows } else { self.train_rows };
        let resident = self.streamed.is_none();
        if let Some(SmallNetStep { layout, launch: Some(d), .. }) = &mut self.small_net {
            let p = layout.params.for_batch(rows, src_rows, resident);
            d.update(&self.gpu, &p, self.gpu.small_net_launch(&p).2)?;
        }
        Ok(())
    }

    /// The launches of one training step before the update: the fused one, or gather, forward,
    /// loss and backward.
    pub(super) fn step_launches(&self) -> Vec<&Dispatch> {
        if let Some(SmallNetStep { launch: Some(d), .. }) = &self.small_net {
            return vec![d];
        }
        let mut launches: Vec<&Dispatch> = self.gather.iter().map(|l| &l.dispatch).collect();
        launches.extend(self.forward.iter().filter(|l| l.when != When::Eval).map(|l| &l.dispatch));
        launches.extend(self.backward.iter().map(|l| &l.dispatch));
        launches
    }

    /// The header's line on how a step runs.
    pub(super) fn describe_step(&self) -> String {
        match &self.small_net {
            Some(s) => format!(
                "step: fused small-network kernel (forward, loss and backward in one launch, {} multiply-adds), then the update",
                s.layout.step_macs(self.max_rows)
            ),
            None => "step: one launch per op".to_string(),
        }
    }
}
