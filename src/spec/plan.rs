//! What one GPU training step does, decided from the model alone: the buffers it needs, where
//! each value's gradient is written (and which activation derivative is fused into the writer),
//! and the forward and backward ops in order. Pure data, so it is tested without a device;
//! `GpuNetwork` allocates the buffers and turns each op into launches (`exec::launch`).

use super::{Act, Activation, Model, Op};
use crate::error::{Error, Result};

/// A buffer the step reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// The gathered batch: value 0.
    Input,
    /// A buffer of `Plan::buffers`, by index.
    Stage(usize),
}

/// One buffer to allocate: its name (for errors and debuggers) and its length in f32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferSpec {
    pub name: String,
    pub len: usize,
}

/// Where a value's readers write its gradient, with the activation derivative they apply on the
/// way when the value is a Dense stage's act(z): (z, act).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradTarget {
    pub buf: Buf,
    pub fused: Option<(Buf, Act)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ForwardOp {
    /// out = act(x·Wᵀ + b), z kept in `preact` when there is an activation; with `skip` (a Linear
    /// ending a residual block) out = x·Wᵀ + b + skip, the sum stage fused into the product.
    Dense {
        stage: usize,
        x: Buf,
        out: Buf,
        preact: Option<Buf>,
        skip: Option<Buf>,
        inputs: usize,
        outputs: usize,
        weight: usize,
        bias: Option<usize>,
        act: Act,
    },
    /// Statistics (training or running), then out = act(γ·x̂ + β).
    BatchNorm {
        stage: usize,
        x: Buf,
        out: Buf,
        stats: Buf,
        width: usize,
        gamma: usize,
        beta: usize,
        norm: usize,
        act: Act,
    },
    Activation {
        stage: usize,
        x: Buf,
        out: Buf,
        width: usize,
        act: Act,
    },
    /// out = x + skip.
    Add {
        stage: usize,
        x: Buf,
        skip: Buf,
        out: Buf,
        width: usize,
    },
    /// out = mask ⊙ x / (1 − p) in training, out = x in evaluation.
    Dropout {
        stage: usize,
        x: Buf,
        out: Buf,
        width: usize,
        p: f32,
        layer: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackwardOp {
    /// The loss of the logits, its gradient written to `grad`; then the per-row statistics reduced.
    Loss { logits: Buf, grad: Buf },
    /// out (+)= dy ⊙ act'(z): a Dense's act' its readers could not fuse, an activation stage, or
    /// one summand of a residual sum (act' fused from its producer, or the identity).
    ActivationGrad { z: Buf, dy: Buf, out: Buf, width: usize, act: Act, accumulate: bool },
    /// dW = dzᵀ·x, and db = Σ_rows dz in the same launch when the layer has a bias.
    DenseWeight { dz: Buf, x: Buf, inputs: usize, outputs: usize, weight: usize, bias: Option<usize> },
    /// target (+)= (dz·W) ⊙ act'(z_prev) with the producer's act' fused when `fused`.
    DenseInput { dz: Buf, target: GradTarget, accumulate: bool, inputs: usize, outputs: usize, weight: usize },
    /// dγ, dβ and the per-feature sums dx needs.
    BatchNormReduce { x: Buf, dy: Buf, stats: Buf, width: usize, gamma: usize, beta: usize, norm: usize, act: Act },
    /// out (+)= mask ⊙ dy / (1 − p): the forward pass's mask, redrawn from its counter.
    DropoutGrad { dy: Buf, out: Buf, width: usize, p: f32, layer: usize, accumulate: bool },
    BatchNormInput {
        x: Buf,
        dy: Buf,
        stats: Buf,
        target: Buf,
        accumulate: bool,
        width: usize,
        gamma: usize,
        beta: usize,
        norm: usize,
        act: Act,
    },
}

/// The buffers of one stage's output value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct StageBufs {
    out: Option<Buf>,
    /// Pre-activation z of a Dense stage with an activation.
    preact: Option<Buf>,
    /// dL/dz of a Dense stage (dL/d out when the activation is the identity).
    dz: Option<Buf>,
    /// dL/d out, where the readers of this value cannot write dz directly.
    grad: Option<Buf>,
    /// Batch norm's per-feature shift, shifted mean and 1/σ.
    stats: Option<Buf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub buffers: Vec<BufferSpec>,
    /// The buffer holding each value (0 is the input, s + 1 the output of stage s); None for a
    /// Linear's output that only a residual sum reads, fused into that sum.
    pub values: Vec<Option<Buf>>,
    /// The buffer holding the logits: the last stage's output.
    pub logits: Buf,
    pub forward: Vec<ForwardOp>,
    pub backward: Vec<BackwardOp>,
}

fn bug(message: String) -> Error {
    Error::Plan(message)
}

impl Plan {
    /// The plan of `model` for batches of up to `max_rows` rows.
    pub fn new(model: &Model, max_rows: usize) -> Result<Plan> {
        let stages = &model.stages;
        let last = stages.len();
        if last == 0 {
            return Err(bug("a model with no stages".into()));
        }
        // A Dense producer's act' is fused into its readers only if every reader is a matmul (dX)
        // or a residual sum (activation_backward).
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); last + 1];
        for (s, stage) in stages.iter().enumerate() {
            for v in stage.reads() {
                if v > s {
                    return Err(bug(format!("stage {s} reads value {v}, which is not computed before it")));
                }
                readers[v].push(s);
            }
        }
        let fusable = |v: usize| {
            v > 0
                && v < last
                && matches!(stages[v - 1].op, Op::Dense { act, .. } if act.kind != Activation::Identity)
                && readers[v].iter().all(|&r| matches!(stages[r].op, Op::Dense { .. } | Op::Add { .. }))
        };

        // A residual sum whose summand is a Linear with no activation read by nothing else is
        // computed in that Linear's epilogue: its output is never stored, the sum's is.
        // Not when the Linear reads the skip value itself (a block of one Linear): the product
        // would bind one buffer as its read-only input and as the writable aux it adds from.
        let fused_sum = |s: usize| match stages[s].op {
            Op::Add { skip, .. } => {
                let v = stages[s].input;
                v > 0
                    && matches!(stages[v - 1].op, Op::Dense { act, .. } if act.kind == Activation::Identity)
                    && stages[v - 1].input != skip
                    && readers[v] == [s]
            }
            _ => false,
        };
        // The Linear stages whose output a sum absorbs.
        let mut absorbed = vec![false; last];
        for s in (0..last).filter(|&s| fused_sum(s)) {
            absorbed[stages[s].input - 1] = true;
        }

        let mut buffers = Vec::new();
        let mut alloc = |name: String, len: usize| {
            buffers.push(BufferSpec { name, len });
            Some(Buf::Stage(buffers.len() - 1))
        };
        let mut bufs = Vec::with_capacity(last);
        for (s, stage) in stages.iter().enumerate() {
            let width = stage.outputs();
            let name = |what: &str| format!("stage {s} ({}) {what} ({max_rows} × {width})", stage.name);
            let values = max_rows * width;
            let mut b = StageBufs::default();
            if !absorbed[s] {
                b.out = alloc(name("output"), values);
            }
            match stage.op {
                Op::Dense { act, .. } => {
                    let has_act = act.kind != Activation::Identity;
                    if has_act {
                        b.preact = alloc(name("pre-activation"), values);
                    }
                    b.dz = alloc(name("gradient dz"), values);
                    if has_act && !fusable(s + 1) {
                        b.grad = alloc(name("output gradient"), values);
                    }
                }
                Op::BatchNorm { width, .. } => {
                    b.grad = alloc(name("output gradient"), values);
                    b.stats = alloc(format!("stage {s} ({}) statistics (3 × {width})", stage.name), 3 * width);
                }
                Op::Activation { .. } | Op::Add { .. } | Op::Dropout { .. } => {
                    b.grad = alloc(name("output gradient"), values)
                }
            }
            bufs.push(b);
        }
        let need = |b: Option<Buf>, s: usize, what: &str| {
            b.ok_or_else(|| bug(format!("stage {s} ({}) has no {what} buffer", stages[s].name)))
        };
        let values: Vec<Option<Buf>> = std::iter::once(Some(Buf::Input)).chain(bufs.iter().map(|b| b.out)).collect();
        let value = |v: usize| {
            values[v].ok_or_else(|| bug(format!("value {v} is fused into a residual sum and has no buffer")))
        };
        let target = |v: usize| -> Result<GradTarget> {
            let (s, b) = (v - 1, &bufs[v - 1]);
            match (&stages[s].op, b.dz, b.grad) {
                (Op::Dense { act, .. }, Some(dz), _) if act.kind == Activation::Identity => {
                    Ok(GradTarget { buf: dz, fused: None })
                }
                (Op::Dense { act, .. }, Some(dz), None) => {
                    Ok(GradTarget { buf: dz, fused: Some((need(b.preact, s, "pre-activation")?, *act)) })
                }
                (_, _, Some(grad)) => Ok(GradTarget { buf: grad, fused: None }),
                _ => Err(bug(format!("value {v} (stage {s}, {}) has nowhere to write its gradient", stages[s].name))),
            }
        };
        // The gradient a stage's backward reads: what its readers wrote.
        let grad_in = |s: usize| need(bufs[s].grad.or(bufs[s].dz), s, "gradient");

        let mut forward = Vec::with_capacity(last);
        for (s, stage) in stages.iter().enumerate() {
            if absorbed[s] {
                continue; // launched with its sum, below
            }
            let out = value(s + 1)?;
            forward.push(match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => {
                    let (x, preact) = (value(stage.input)?, bufs[s].preact);
                    ForwardOp::Dense { stage: s, x, out, preact, skip: None, inputs, outputs, weight, bias, act }
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => {
                    let stats = need(bufs[s].stats, s, "statistics")?;
                    ForwardOp::BatchNorm { stage: s, x: value(stage.input)?, out, stats, width, gamma, beta, norm, act }
                }
                Op::Activation { width, act } => {
                    ForwardOp::Activation { stage: s, x: value(stage.input)?, out, width, act }
                }
                Op::Add { skip, .. } if fused_sum(s) => {
                    let d = stage.input - 1;
                    let Op::Dense { inputs, outputs, weight, bias, act } = stages[d].op else {
                        return Err(bug(format!("stage {s} sums stage {d}, which is not a Linear")));
                    };
                    let x = value(stages[d].input)?;
                    let skip = Some(value(skip)?);
                    ForwardOp::Dense { stage: d, x, out, preact: None, skip, inputs, outputs, weight, bias, act }
                }
                Op::Dropout { width, p, layer } => {
                    ForwardOp::Dropout { stage: s, x: value(stage.input)?, out, width, p, layer }
                }
                Op::Add { width, skip } => {
                    ForwardOp::Add { stage: s, x: value(stage.input)?, skip: value(skip)?, out, width }
                }
            });
        }

        let mut backward = Vec::new();
        // Whether some reader already wrote a value's gradient (later readers then add to it).
        let mut written = vec![false; last + 1];
        let mut write = |v: usize| std::mem::replace(&mut written[v], true);
        let loss_grad = target(last)?;
        if loss_grad.fused.is_some() {
            return Err(bug("the loss gradient would need an activation derivative fused into it".into()));
        }
        write(last);
        backward.push(BackwardOp::Loss { logits: value(last)?, grad: loss_grad.buf });
        for (s, stage) in stages.iter().enumerate().rev() {
            let b = &bufs[s];
            let x = || value(stage.input);
            let dy = grad_in(s)?;
            match stage.op {
                Op::Dense { inputs, outputs, weight, bias, act } => {
                    let dz = need(b.dz, s, "gradient dz")?;
                    if let Some(grad) = b.grad {
                        let z = need(b.preact, s, "pre-activation")?;
                        let width = outputs;
                        backward.push(BackwardOp::ActivationGrad {
                            z,
                            dy: grad,
                            out: dz,
                            width,
                            act,
                            accumulate: false,
                        });
                    }
                    backward.push(BackwardOp::DenseWeight { dz, x: x()?, inputs, outputs, weight, bias });
                    if stage.input > 0 {
                        let target = target(stage.input)?;
                        let accumulate = write(stage.input);
                        backward.push(BackwardOp::DenseInput { dz, target, accumulate, inputs, outputs, weight });
                    }
                }
                Op::BatchNorm { width, gamma, beta, norm, act } => {
                    let stats = need(b.stats, s, "statistics")?;
                    let x = x()?;
                    backward.push(BackwardOp::BatchNormReduce { x, dy, stats, width, gamma, beta, norm, act });
                    if stage.input > 0 {
                        let t = target(stage.input)?;
                        if t.fused.is_some() {
                            return Err(bug(format!("batch norm {s} cannot apply its producer's act'")));
                        }
                        let accumulate = write(stage.input);
                        backward.push(BackwardOp::BatchNormInput {
                            x,
                            dy,
                            stats,
                            target: t.buf,
                            accumulate,
                            width,
                            gamma,
                            beta,
                            norm,
                            act,
                        });
                    }
                }
                Op::Activation { width, act } => {
                    if stage.input > 0 {
                        let t = target(stage.input)?;
                        if t.fused.is_some() {
                            return Err(bug(format!("activation {s} cannot apply its producer's act'")));
                        }
                        let accumulate = write(stage.input);
                        backward.push(BackwardOp::ActivationGrad { z: x()?, dy, out: t.buf, width, act, accumulate });
                    }
                }
                Op::Dropout { width, p, layer } => {
                    if stage.input > 0 {
                        let t = target(stage.input)?;
                        if t.fused.is_some() {
                            return Err(bug(format!("dropout {s} cannot apply its producer's act'")));
                        }
                        let accumulate = write(stage.input);
                        backward.push(BackwardOp::DropoutGrad { dy, out: t.buf, width, p, layer, accumulate });
                    }
                }
                Op::Add { width, skip } => {
                    // Both summands receive the sum's gradient (times their producer's act').
                    for v in [stage.input, skip] {
                        if v == 0 {
                            continue;
                        }
                        let t = target(v)?;
                        let accumulate = write(v);
                        let (z, act) = t.fused.unwrap_or((dy, Act::IDENTITY));
                        backward.push(BackwardOp::ActivationGrad { z, dy, out: t.buf, width, act, accumulate });
                    }
                }
            }
        }
        let logits = value(last)?;
        Ok(Plan { buffers, values, logits, forward, backward })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LayerSpec;

    fn model(inputs: usize, layers: Vec<LayerSpec>) -> Model {
        Model::new(inputs, layers).expect("valid model")
    }

    #[test]
    fn relu_mlp_fuses_every_act_prime_into_the_next_products_dx() {
        // 64-128-64-10 with ReLU: the digits model.
        let m = model(
            64,
            vec![
                LayerSpec::Linear { out: 128, bias: true },
                LayerSpec::Relu,
                LayerSpec::Linear { out: 64, bias: true },
                LayerSpec::Relu,
                LayerSpec::Linear { out: 10, bias: true },
            ],
        );
        let plan = Plan::new(&m, 32).unwrap();
        assert_eq!(plan.forward.len(), 3);
        // Per hidden Dense: out, preact, dz (no separate output gradient); the last: out, dz.
        assert_eq!(plan.buffers.len(), 3 + 3 + 2);
        assert!(plan.buffers.iter().all(|b| b.len % 32 == 0));
        // Loss, then per layer dW (+db), and dX for the two layers with a producer.
        let kinds: Vec<&str> = plan
            .backward
            .iter()
            .map(|op| match op {
                BackwardOp::Loss { .. } => "loss",
                BackwardOp::DenseWeight { .. } => "dW",
                BackwardOp::DenseInput { .. } => "dX",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["loss", "dW", "dX", "dW", "dX", "dW"]);
        for op in &plan.backward {
            if let BackwardOp::DenseInput { target, accumulate, .. } = op {
                let (_, act) = target.fused.expect("ReLU' fused into dX");
                assert_eq!(act.kind, Activation::Relu);
                assert!(!accumulate);
            }
            if let BackwardOp::DenseWeight { bias, .. } = op {
                assert!(bias.is_some(), "db fused into every dW");
            }
        }
    }

    #[test]
    fn residual_sum_accumulates_into_the_value_read_twice() {
        let m = model(
            8,
            vec![
                LayerSpec::Linear { out: 8, bias: true },
                LayerSpec::Tanh,
                LayerSpec::Residual {
                    layers: vec![LayerSpec::Linear { out: 8, bias: false }, LayerSpec::Tanh],
                    projection: false,
                },
                LayerSpec::Linear { out: 3, bias: true },
            ],
        );
        let plan = Plan::new(&m, 4).unwrap();
        // The value entering the block (stage 0's tanh output) is read by the body's Linear and by
        // the sum: both write its dz with tanh' fused, one overwriting and the other adding.
        let dz0 = plan.buffers.iter().position(|b| b.name.starts_with("stage 0 ") && b.name.contains("gradient dz"));
        let dz0 = Buf::Stage(dz0.expect("stage 0's dz"));
        let writes: Vec<bool> = plan
            .backward
            .iter()
            .filter_map(|op| match op {
                BackwardOp::DenseInput { target, accumulate, .. } if target.buf == dz0 => Some(*accumulate),
                BackwardOp::ActivationGrad { out, accumulate, .. } if *out == dz0 => Some(*accumulate),
                _ => None,
            })
            .collect();
        assert_eq!(writes.len(), 2, "two writers of value 1's gradient: {:?}", plan.backward);
        assert_eq!(writes.iter().filter(|a| **a).count(), 1);
    }

    #[test]
    fn a_linear_ending_a_residual_block_absorbs_the_sum() {
        let block = |projection| LayerSpec::Residual {
            layers: vec![
                LayerSpec::Linear { out: 6, bias: false },
                LayerSpec::Gelu,
                LayerSpec::Linear { out: 6, bias: true },
            ],
            projection,
        };
        for projection in [false, true] {
            let width = if projection { 4 } else { 6 };
            let m = model(width, vec![block(projection), LayerSpec::Linear { out: 2, bias: true }]);
            let plan = Plan::new(&m, 8).unwrap();
            assert!(!plan.forward.iter().any(|op| matches!(op, ForwardOp::Add { .. })), "{:?}", plan.forward);
            let fused: Vec<&ForwardOp> =
                plan.forward.iter().filter(|op| matches!(op, ForwardOp::Dense { skip: Some(_), .. })).collect();
            assert_eq!(fused.len(), 1);
            let ForwardOp::Dense { stage, out, skip: Some(skip), .. } = fused[0] else { unreachable!() };
            // Its own output has no buffer; it writes the sum's, reading the block's input (or
            // the projection's output), and runs after the projection.
            assert_eq!(plan.values[stage + 1], None);
            let add = m.stages.iter().position(|st| matches!(st.op, Op::Add { .. })).unwrap();
            assert_eq!(Some(*out), plan.values[add + 1]);
            let Op::Add { skip: skip_value, .. } = m.stages[add].op else { unreachable!() };
            assert_eq!(Some(*skip), plan.values[skip_value]);
            let position = |s: usize| plan.forward.iter().position(|op| op_stage(op) == s);
            if projection {
                assert!(position(*stage) > position(skip_value - 1), "the sum runs after the projection");
            }
            // Backward is unchanged: the sum's gradient reaches the Linear's dz and the skip path.
            assert!(plan.backward.iter().any(|op| matches!(op, BackwardOp::ActivationGrad { .. })));
        }
    }

    fn op_stage(op: &ForwardOp) -> usize {
        match *op {
            ForwardOp::Dense { stage, .. }
            | ForwardOp::BatchNorm { stage, .. }
            | ForwardOp::Activation { stage, .. }
            | ForwardOp::Add { stage, .. }
            | ForwardOp::Dropout { stage, .. } => stage,
        }
    }

    #[test]
    fn batch_norm_gets_statistics_and_an_output_gradient() {
        let m = model(
            6,
            vec![
                LayerSpec::Linear { out: 5, bias: true },
                LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
                LayerSpec::Relu,
                LayerSpec::Linear { out: 2, bias: true },
            ],
        );
        let plan = Plan::new(&m, 16).unwrap();
        let stats = plan.buffers.iter().find(|b| b.name.contains("statistics")).expect("statistics buffer");
        assert_eq!(stats.len, 3 * 5);
        assert!(plan.backward.iter().any(|op| matches!(op, BackwardOp::BatchNormReduce { .. })));
        assert!(plan.backward.iter().any(|op| matches!(op, BackwardOp::BatchNormInput { accumulate: false, .. })));
    }

    #[test]
    fn dropout_gets_an_output_gradient_and_stops_act_prime_fusion() {
        let m = model(
            6,
            vec![
                LayerSpec::Linear { out: 5, bias: true },
                LayerSpec::Relu,
                LayerSpec::Dropout { p: 0.25 },
                LayerSpec::Linear { out: 2, bias: true },
            ],
        );
        let plan = Plan::new(&m, 8).unwrap();
        assert!(plan.forward.iter().any(|op| matches!(op, ForwardOp::Dropout { p, layer: 1, .. } if *p == 0.25)));
        // The ReLU's derivative cannot ride on the dropout's backward: the Linear keeps an output
        // gradient and applies it itself.
        assert!(plan.backward.iter().any(|op| matches!(op, BackwardOp::DropoutGrad { accumulate: false, .. })));
        assert!(plan.backward.iter().any(|op| matches!(op, BackwardOp::ActivationGrad { .. })));
    }
}
