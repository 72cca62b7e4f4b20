//! Many training steps in one submit. What changes from step to step (the batch's indices
//! into the resident set, the optimizer's step number and learning rate, a batch norm's blend
//! over its first batches) is written before the submit into step slots 1, 2, … of the
//! launches' step rings (`Context::step_ring`, per-step parameters), which each step binds at
//! its own dynamic offset: the steps follow one another in one compute pass, nothing copied
//! between them. Slot 0 stays what a lone step (`step`) writes and reads. A streamed set's
//! rows, which no ring holds, are copied in before each step's pass instead. The launches
//! themselves are the ones `step` records.

use super::small_net::{FusedLaunch, SmallNetStep};
use super::*;
use crate::device::{submit_steps, StepCopy, StepRecord};
use crate::kernels::{BnParams, SmallNetParams};

impl GpuNetwork {
    /// `batches`, all of one size, as `step` would run them one by one, in one submit.
    pub(super) fn steps_in_one_submit(&mut self, batches: &[&[u32]]) -> Result<()> {
        let rows = batches.first().map_or(0, |b| b.len());
        for b in batches {
            if b.len() != rows {
                return Err(Error::Usage(format!("steps of one submit share a batch size ({rows}, not {})", b.len())));
            }
            super::super::network::check_batch(b, self.train_rows, self.max_rows)?;
        }
        super::super::network::check_batch_norm_rows(&self.model, rows, 1)?;
        self.resize(rows)?;
        // Slots 1.. hold the steps (slot 0 is a lone step's): split a submit that would not fit,
        // and take the steps one by one where not even two fit.
        let fit = self.step_slots() - 1;
        if fit < batches.len() {
            if fit < 2 {
                return batches.iter().try_for_each(|b| self.step(b, None));
            }
            return batches.chunks(fit).try_for_each(|chunk| self.steps_in_one_submit(chunk));
        }
        // A streamed set's rows go through a staging buffer, copied in before each step.
        let mut words: Vec<u32> = Vec::new();
        let inputs = self.stage_inputs(batches, &mut words);
        let staging = match inputs {
            Some(_) => Some(self.gpu.reuse_or_grow(self.step_staging.take(), "many-steps staging", words.len())?),
            None => None,
        };
        if let Some(staging) = &staging {
            self.gpu.write(staging, &words);
        }
        let first = self.steps;
        // Each step's numbers, gathered per launch and written in one go.
        if inputs.is_none() {
            let indices: Vec<u32> = batches.iter().flat_map(|b| b.iter().copied()).collect();
            self.gpu.write_slots(&self.indices, 1, &indices, rows)?;
        }
        let opt = self.update_params(first, batches.len());
        match &self.small_net {
            Some(SmallNetStep { launch: Some(FusedLaunch::WithUpdate(t)), .. }) => {
                t.launch.write_slots(&self.gpu, 1, &opt, 1)?
            }
            _ => self.optimizer.update_launch().write_slots(&self.gpu, 1, &opt, 1)?,
        }
        // The per-op batch norms' blends, when those launches run (the fused step keeps its own).
        if !self.fused_step_runs() {
            for &(launch, n) in &self.norm_launches {
                let l = &self.forward[launch];
                let Shape::BatchNorm(p, _) = &l.shape else {
                    return Err(Error::Plan("a batch-norm statistics launch without batch-norm parameters".into()));
                };
                let momentum = self.model.norms[n].momentum;
                let blends: Vec<BnParams> = (0..batches.len() as u64)
                    .map(|j| p.training(momentum.factor(self.batches_tracked[n] + j + 1)))
                    .collect();
                // Only the blend differs from what the launch was checked with; check anyway.
                blends.iter().try_for_each(|b| l.dispatch.check(b))?;
                l.dispatch.write_slots(&self.gpu, 1, &blends, 1)?;
            }
        }
        // Each dropout launch's mask per step: its step count, as `step` would set it.
        for l in self.forward.iter().chain(self.backward.iter()) {
            let draws: Vec<_> =
                (0..batches.len() as u64).filter_map(|j| l.draw_at(self.dropout_seed, first as u64 + j)).collect();
            if !draws.is_empty() {
                draws.iter().try_for_each(|d| l.dispatch.check(d))?;
                l.dispatch.write_slots(&self.gpu, 1, &draws, 1)?;
            }
        }
        if let Some(SmallNetStep { layout, launch: Some(launch), .. }) = &self.small_net {
            // The same each step unless a batch norm's blend changes.
            let params: Vec<SmallNetParams> =
                (0..batches.len() as u64).map(|j| self.small_net_params(layout, j)).collect();
            match launch {
                FusedLaunch::Apart(d) => {
                    params.iter().try_for_each(|p| d.check(p))?;
                    d.write_slots(&self.gpu, 1, &params, 1)?;
                }
                FusedLaunch::WithUpdate(t) => t.write_net(&self.gpu, 1, &params)?,
            }
        }

        let records: Vec<StepRecord> = (0..batches.len())
            .map(|j| {
                let copies = match (&inputs, &staging) {
                    (Some(rows), Some(staging)) => rows.copies(self, staging, j),
                    _ => Vec::new(),
                };
                let mut dispatches = self.step_launches();
                dispatches.extend(self.update_launches());
                StepRecord { copies, slot: j + 1, dispatches }
            })
            .collect();
        submit_steps(&self.gpu, "training steps", &records)?;
        drop(records);
        self.step_staging = staging;
        if !self.synced.is_empty() {
            self.running_host = None;
        }
        for _ in 0..batches.len() {
            self.stepped()?;
        }
        Ok(())
    }

    /// Step slots every launch of a step holds: the fewest of its launches' rings.
    fn step_slots(&self) -> usize {
        let mut launches = self.step_launches();
        launches.extend(self.update_launches());
        crate::device::step_slots(&launches)
    }

    /// Appends a streamed set's rows and labels for the steps to `words` and says where each
    /// step's share goes (None for the resident set: its indices go to the ring).
    fn stage_inputs(&self, batches: &[&[u32]], words: &mut Vec<u32>) -> Option<StagedRows> {
        let data = self.streamed.as_ref()?;
        let rows = batches.first().map_or(0, |b| b.len());
        let x_at = words.len();
        for &i in batches.iter().flat_map(|b| b.iter()) {
            words.extend(data.row(i as usize).iter().map(|v| v.to_bits()));
        }
        let labels_at = words.len();
        words.extend(batches.iter().flat_map(|b| b.iter()).map(|&i| data.labels[i as usize]));
        Some(StagedRows { x_at, labels_at, x_len: rows * self.model.inputs, labels_len: rows })
    }
}

/// Where a streamed set's rows and labels sit in the staging buffer (in words), per step.
struct StagedRows {
    x_at: usize,
    labels_at: usize,
    x_len: usize,
    labels_len: usize,
}

impl StagedRows {
    /// Step `j`'s copies of its rows and labels into the batch buffers its launches read.
    fn copies<'a>(&self, net: &'a GpuNetwork, staging: &'a GpuBuffer, j: usize) -> Vec<StepCopy<'a>> {
        let copy = |src_word: usize, dst: &'a GpuBuffer, len: usize| StepCopy {
            src: staging,
            src_offset: (src_word * 4) as u64,
            dst: &dst.buffer,
            dst_offset: dst.offset,
            size: (len * 4) as u64,
        };
        vec![
            copy(self.x_at + j * self.x_len, &net.batch_x, self.x_len),
            copy(self.labels_at + j * self.labels_len, &net.batch_labels, self.labels_len),
        ]
    }
}
