//! Many training steps in one submit. The steps' batches (indices into the resident set, or the
//! rows themselves when the set is streamed) and the parameters that change from step to step
//! (the optimizer's step number and learning rate, a batch norm's blend over its first batches)
//! are uploaded once; before each step's pass, copies in the same command buffer put that
//! step's share where the launches read it. A queue write could not do this: it lands before
//! the whole submit. The launches themselves are the ones `step` records.

use super::small_net::SmallNetStep;
use super::*;
use crate::device::{submit_steps, StepCopy, StepRecord};
use crate::kernels::{BnParams, OptParams, SmallNetParams};

/// Words of a `P` (every parameter struct is a whole number of 4-byte words).
fn words_of<P: bytemuck::Pod>(p: &P) -> &[u32] {
    bytemuck::cast_slice(bytemuck::bytes_of(p))
}

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
        // The staging buffer holds every step's share: split a submit that would not fit in one
        // buffer, and take the steps one by one where not even two fit.
        let input_words = if self.streamed.is_some() { rows * (self.model.inputs + 1) } else { rows };
        let param_words = (std::mem::size_of::<OptParams>()
            + self.norm_launches.len() * std::mem::size_of::<BnParams>()
            + std::mem::size_of::<SmallNetParams>())
            / 4;
        let fit = (self.gpu.max_storage_bytes() / 4) as usize / (input_words + param_words);
        if fit < batches.len() {
            if fit < 2 {
                return batches.iter().try_for_each(|b| self.step(b, None));
            }
            return batches.chunks(fit).try_for_each(|chunk| self.steps_in_one_submit(chunk));
        }
        self.resize(rows)?;

        // Everything the steps need, in one upload: inputs, then per step its optimizer and
        // batch-norm parameters.
        let mut words: Vec<u32> = Vec::new();
        let inputs = self.stage_inputs(batches, &mut words);
        let (first, count) = (self.steps, batches.len());
        let opt_at = words.len();
        let mut last_opt = OptParams::default();
        for j in 0..count {
            let k = first + j;
            last_opt = self.optimizer.step_params(k as u32 + 1, self.setup.schedule.factor(k as u32));
            words.extend_from_slice(words_of(&last_opt));
        }
        // The per-op batch norms' blends, when those launches run (the fused step keeps its own).
        let norm_launches = if self.fused_step_runs() { Vec::new() } else { self.norm_launches.clone() };
        let norm_at = words.len();
        let mut last_norm: Vec<BnParams> = Vec::new();
        for j in 0..count {
            last_norm.clear();
            for &(launch, k) in &norm_launches {
                let l = &self.forward[launch];
                let Shape::BatchNorm(p, _) = &l.shape else {
                    return Err(Error::Plan("a batch-norm statistics launch without batch-norm parameters".into()));
                };
                let blended = p.training(self.model.norms[k].momentum.factor(self.batches_tracked[k] + j as u64 + 1));
                // Only the blend differs from what the launch was checked with; check anyway.
                l.dispatch.check(&blended)?;
                words.extend_from_slice(words_of(&blended));
                last_norm.push(blended);
            }
        }
        // The fused step's parameters per step, when a batch norm's blend changes every step.
        let fused_at = words.len();
        let fused_blend = self.small_net.as_ref().filter(|s| s.blend_changes && s.launch.is_some());
        if let Some(step) = fused_blend {
            for j in 0..count {
                let p = self.small_net_params(&step.layout, j as u64);
                step.launch.as_ref().expect("filtered above").check(&p)?;
                words.extend_from_slice(words_of(&p));
            }
        }
        let staging = self.gpu.reuse_or_grow(self.step_staging.take(), "many-steps staging", words.len())?;
        self.gpu.write(&staging, &words);

        let opt_size = std::mem::size_of::<OptParams>() as u64;
        let norm_size = std::mem::size_of::<BnParams>() as u64;
        let records: Vec<StepRecord> = (0..count)
            .map(|j| {
                let mut copies = inputs.copies(self, &staging, j);
                let opt_offset = (opt_at * 4) as u64 + j as u64 * opt_size;
                copies.push(self.optimizer.update_launch().params_copy::<OptParams>(&staging, opt_offset));
                for (n, &(launch, _)) in norm_launches.iter().enumerate() {
                    let offset = (norm_at * 4) as u64 + (j * norm_launches.len() + n) as u64 * norm_size;
                    copies.push(self.forward[launch].dispatch.params_copy::<BnParams>(&staging, offset));
                }
                if let Some(SmallNetStep { launch: Some(d), .. }) = fused_blend {
                    let offset = (fused_at * 4) as u64 + (j * std::mem::size_of::<SmallNetParams>()) as u64;
                    copies.push(d.params_copy::<SmallNetParams>(&staging, offset));
                }
                let mut dispatches = self.step_launches();
                dispatches.extend(self.optimizer.dispatches());
                StepRecord { copies, dispatches }
            })
            .collect();
        submit_steps(&self.gpu, "training steps", &records)?;
        drop(records);
        self.step_staging = Some(staging);

        // The uniforms now hold the last step's parameters: the host's copies say so.
        self.optimizer.mark_written(last_opt);
        for (&(launch, _), p) in norm_launches.iter().zip(last_norm) {
            if let Shape::BatchNorm(shape, _) = &mut self.forward[launch].shape {
                *shape = p;
            }
        }
        if !self.synced.is_empty() {
            self.running_host = None;
        }
        for _ in 0..count {
            self.stepped()?;
        }
        Ok(())
    }

    /// Appends the steps' inputs to `words` and says where each step's share goes.
    fn stage_inputs(&self, batches: &[&[u32]], words: &mut Vec<u32>) -> StagedInputs {
        let rows = batches.first().map_or(0, |b| b.len());
        match &self.streamed {
            Some(data) => {
                let x_at = words.len();
                for &i in batches.iter().flat_map(|b| b.iter()) {
                    words.extend(data.row(i as usize).iter().map(|v| v.to_bits()));
                }
                let labels_at = words.len();
                words.extend(batches.iter().flat_map(|b| b.iter()).map(|&i| data.labels[i as usize]));
                StagedInputs::Rows { x_at, labels_at, x_len: rows * self.model.inputs, labels_len: rows }
            }
            None => {
                let at = words.len();
                words.extend(batches.iter().flat_map(|b| b.iter().copied()));
                StagedInputs::Indices { at, len: rows }
            }
        }
    }
}

/// Where the steps' inputs sit in the staging buffer (in words).
enum StagedInputs {
    /// Batch indices for the gather launch, `len` per step.
    Indices { at: usize, len: usize },
    /// The batch rows and labels themselves (a streamed set), per step.
    Rows { x_at: usize, labels_at: usize, x_len: usize, labels_len: usize },
}

impl StagedInputs {
    /// Step `j`'s copies of its inputs into the buffers its launches read.
    fn copies<'a>(&self, net: &'a GpuNetwork, staging: &'a GpuBuffer, j: usize) -> Vec<StepCopy<'a>> {
        let copy = |src_word: usize, dst: &'a GpuBuffer, len: usize| StepCopy {
            src: staging,
            src_offset: (src_word * 4) as u64,
            dst: &dst.buffer,
            dst_offset: dst.offset,
            size: (len * 4) as u64,
        };
        match *self {
            StagedInputs::Indices { at, len } => vec![copy(at + j * len, &net.indices, len)],
            StagedInputs::Rows { x_at, labels_at, x_len, labels_len } => vec![
                copy(x_at + j * x_len, &net.batch_x, x_len),
                copy(labels_at + j * labels_len, &net.batch_labels, labels_len),
            ],
        }
    }
}
