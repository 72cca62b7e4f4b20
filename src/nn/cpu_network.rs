//! The CPU executor: the reference functions of `crate::cpu`, stage by stage. It is the oracle
//! the GPU executor is tested against, and the fallback where no adapter exists.

use super::{Loss, Model, Network, Stage, Totals};
use crate::cpu;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::optim::{OptimizerSetup, OptimizerStep, ParamGroups};

pub struct CpuNetwork {
    model: Model,
    loss: Loss,
    setup: OptimizerSetup,
    groups: ParamGroups,
    params: Vec<f32>,
    grads: Vec<f32>,
    state: Vec<f32>,
    steps: usize,
    train_x: Vec<f32>,
    train_labels: Vec<u32>,
    last_loss: f32,
    loss_sum: f64,
    correct: usize,
    count: usize,
}

/// What the forward pass keeps for the backward pass, per stage.
struct Trace {
    /// Input of each stage (the batch for stage 0).
    inputs: Vec<Vec<f32>>,
    /// Pre-activation of each stage.
    preacts: Vec<Vec<f32>>,
    output: Vec<f32>,
}

impl CpuNetwork {
    pub fn new(model: Model, loss: Loss, setup: impl Into<OptimizerSetup>, params: Vec<f32>) -> Result<CpuNetwork> {
        check_params(&model, &params)?;
        let setup = setup.into();
        let groups = ParamGroups::new(&model, &setup.optimizer, &setup.groups)?;
        let n = model.param_len;
        Ok(CpuNetwork {
            state: setup.optimizer.initial_state(n),
            groups,
            setup,
            model,
            loss,
            params,
            grads: vec![0.0; n],
            steps: 0,
            train_x: Vec::new(),
            train_labels: Vec::new(),
            last_loss: f32::NAN,
            loss_sum: 0.0,
            correct: 0,
            count: 0,
        })
    }

    fn forward(&self, x: &[f32], rows: usize) -> Trace {
        let mut inputs = Vec::with_capacity(self.model.stages.len());
        let mut preacts = Vec::with_capacity(self.model.stages.len());
        let mut h = x.to_vec();
        for stage in &self.model.stages {
            let (z, y) = match *stage {
                Stage::Dense { inputs: k, outputs: n, weight, bias, act, .. } => {
                    let w = &self.params[weight..weight + n * k];
                    let b = bias.map(|b| &self.params[b..b + n]);
                    cpu::linear_forward(&h, w, b, rows, k, n, act)
                }
                Stage::Activation { act, .. } => (h.clone(), cpu::activation_forward(&h, act)),
            };
            inputs.push(std::mem::replace(&mut h, y));
            preacts.push(z);
        }
        Trace { inputs, preacts, output: h }
    }

    /// Fills `self.grads` from the gradient with respect to the network's output.
    fn backward(&mut self, trace: &Trace, mut grad: Vec<f32>, rows: usize) {
        for (s, stage) in self.model.stages.iter().enumerate().rev() {
            grad = match *stage {
                Stage::Dense { inputs: k, outputs: n, weight, bias, act, .. } => {
                    let dz = cpu::activation_backward(&trace.preacts[s], &grad, act);
                    let dw = cpu::linear_backward_weight(&dz, &trace.inputs[s], rows, k, n);
                    self.grads[weight..weight + n * k].copy_from_slice(&dw);
                    if let Some(b) = bias {
                        self.grads[b..b + n].copy_from_slice(&cpu::bias_grad(&dz, rows, n));
                    }
                    if s == 0 {
                        break;
                    }
                    cpu::linear_backward_input(&dz, &self.params[weight..weight + n * k], rows, k, n)
                }
                Stage::Activation { act, .. } => cpu::activation_backward(&trace.inputs[s], &grad, act),
            };
        }
    }
}

pub(crate) fn check_params(model: &Model, params: &[f32]) -> Result<()> {
    if params.len() != model.param_len {
        return Err(Error::Shape {
            what: "flat parameter vector".into(),
            expected: format!("{} elements", model.param_len),
            got: format!("{}", params.len()),
        });
    }
    Ok(())
}

impl Network for CpuNetwork {
    fn describe(&self) -> String {
        "CPU reference".into()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn set_train_data(&mut self, data: &Dataset) -> Result<()> {
        super::network::check_features(&self.model, data)?;
        self.train_x = data.x.clone();
        self.train_labels = data.labels.clone();
        Ok(())
    }

    fn train_step(&mut self, batch: &[u32]) -> Result<()> {
        super::network::check_batch(batch, self.train_labels.len(), usize::MAX)?;
        let d = self.model.inputs;
        let rows = batch.len();
        let mut x = Vec::with_capacity(rows * d);
        let mut labels = Vec::with_capacity(rows);
        for &i in batch {
            let i = i as usize;
            x.extend_from_slice(&self.train_x[i * d..(i + 1) * d]);
            labels.push(self.train_labels[i]);
        }
        let trace = self.forward(&x, rows);
        let c = self.model.outputs();
        let out = match self.loss {
            Loss::CrossEntropy => cpu::cross_entropy(&trace.output, &labels, rows, c),
            Loss::Mse => cpu::mse(&trace.output, None, &labels, rows, c),
        };
        self.backward(&trace, out.grad, rows);
        let step = OptimizerStep {
            optimizer: &self.setup.optimizer,
            step: self.steps as u32 + 1,
            lr_factor: self.setup.schedule.factor(self.steps as u32),
            groups: &self.groups,
            max_norm: self.setup.clip_grad_norm,
        };
        let coef = cpu::clip_coefficient(&self.grads, self.setup.clip_grad_norm);
        cpu::optimizer_update(&mut self.params, &self.grads, &mut self.state, &step, coef);
        self.steps += 1;
        self.last_loss = out.loss;
        self.loss_sum += out.loss as f64 * rows as f64;
        self.correct += out.correct;
        self.count += rows;
        Ok(())
    }

    fn last_loss(&mut self) -> Result<f32> {
        Ok(self.last_loss)
    }

    fn take_totals(&mut self) -> Result<Totals> {
        let t = Totals {
            mean_loss: (self.loss_sum / self.count.max(1) as f64) as f32,
            accuracy: self.correct as f32 / self.count.max(1) as f32,
            samples: self.count,
        };
        (self.loss_sum, self.correct, self.count) = (0.0, 0, 0);
        Ok(t)
    }

    fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        super::network::check_rows(&self.model, x, rows)?;
        Ok(self.forward(x, rows).output)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn set_params(&mut self, flat: &[f32]) -> Result<()> {
        check_params(&self.model, flat)?;
        self.params.copy_from_slice(flat);
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        Ok(self.grads.clone())
    }

    fn optimizer_state(&mut self) -> Result<Vec<f32>> {
        Ok(self.state.clone())
    }

    fn set_optimizer_state(&mut self, state: &[f32]) -> Result<()> {
        if state.len() != self.state.len() {
            return Err(Error::Shape {
                what: "optimizer state".into(),
                expected: format!("{} values", self.state.len()),
                got: state.len().to_string(),
            });
        }
        self.state.copy_from_slice(state);
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
