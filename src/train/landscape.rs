//! The loss along a line and over a plane in parameter space (Goodfellow, Vinyals & Saxe 2015;
//! Li et al. 2018): affine combinations of saved states, filter-normalised random directions,
//! a trajectory's coordinates in a plane, and the loss and accuracy at a state.
//!
//! A state is a weighted sum Σ wᵢ·sᵢ of a few states, computed in f64 and rounded once to f32,
//! so weights (0, …, 1, …, 0) give state sᵢ bit for bit: the path's ends are the checkpoints.

use rand::{rngs::StdRng, SeedableRng};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::exec::cpu_network::{forward, Mode};
use crate::exec::Network;
use crate::spec::{Loss, Model, NormState};

/// How batch norm normalises while the loss is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormMode {
    /// With each batch's own statistics (batches of `train.batch_size` consecutive rows), as the
    /// training loss is computed; on the CPU reference.
    Train,
    /// With the running statistics, combined with the same weights as the parameters (as
    /// `gradflow eval` computes).
    Eval,
}

impl NormMode {
    /// `--bn train|eval`.
    pub fn parse(s: &str) -> Result<NormMode> {
        match s {
            "train" => Ok(NormMode::Train),
            "eval" => Ok(NormMode::Eval),
            other => Err(Error::Usage(format!("--bn {other}: use train or eval"))),
        }
    }
}

/// A model's parameters and batch-norm state, as a checkpoint holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub params: Vec<f32>,
    pub norm: NormState,
}

/// Σ wᵢ·sᵢ over parameters and running statistics, in f64 rounded once; running variances that
/// an extrapolation (a weight outside [0, 1]) takes below 0 are floored at 0. The batch counters
/// are the first state's.
pub fn affine(model: &Model, states: &[&State], weights: &[f64]) -> Result<State> {
    let first = states.first().ok_or_else(|| Error::Usage("an affine combination of no states".into()))?;
    if states.len() != weights.len() {
        return Err(Error::Usage(format!("{} states but {} weights", states.len(), weights.len())));
    }
    let combine = |pick: &dyn Fn(&State) -> &[f32]| -> Vec<f32> {
        (0..pick(first).len())
            .map(|i| states.iter().zip(weights).map(|(s, &w)| w * pick(s)[i] as f64).sum::<f64>() as f32)
            .collect()
    };
    let params = combine(&|s| &s.params);
    let mut running = combine(&|s| &s.norm.running);
    for layer in &model.norms {
        let width = model.running.iter().find(|t| t.offset == layer.running_var).map_or(0, |t| t.len);
        running[layer.running_var..layer.running_var + width].iter_mut().for_each(|v| *v = v.max(0.0));
    }
    Ok(State { params, norm: NormState { running, batches_tracked: first.norm.batches_tracked.clone() } })
}

/// The weights of (1 − α)·A + α·B.
pub fn line(alpha: f64) -> [f64; 2] {
    [1.0 - alpha, alpha]
}

/// The weights of A + x·(B − A) + y·(C − A) = (1 − x − y)·A + x·B + y·C.
pub fn through_three(x: f64, y: f64) -> [f64; 3] {
    [1.0 - x - y, x, y]
}

/// The weights of θ + x·d₁ + y·d₂.
pub fn around(x: f64, y: f64) -> [f64; 3] {
    [1.0, x, y]
}

/// `n` ≥ 2 evenly spaced values from `lo` to `hi`, both included.
pub fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| if i + 1 == n { hi } else { lo + (hi - lo) * i as f64 / (n - 1) as f64 }).collect()
}

/// `grid` with 0 and 1 added where they lie inside and are missing: the path's ends are always
/// measured.
pub fn alphas(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let mut a = grid(lo, hi, n);
    for end in [0.0, 1.0] {
        if (lo..=hi).contains(&end) && !a.contains(&end) {
            a.push(end);
        }
    }
    a.sort_by(f64::total_cmp);
    a
}

/// A Gaussian direction normalised filter by filter (Li et al. 2018): each row of a weight
/// matrix (one output unit's incoming weights) scaled to the norm of the same row of `theta`;
/// biases and batch-norm parameters 0, as they do. The running statistics are 0 too, so the
/// plane around θ keeps θ's.
pub fn filter_normalized(model: &Model, theta: &State, rng: &mut StdRng) -> State {
    let mut d = vec![0.0f32; theta.params.len()];
    for t in model.params.iter().filter(|t| !t.norm && t.shape.len() >= 2) {
        let cols = t.len / t.shape[0].max(1);
        for r in 0..t.shape[0] {
            let at = t.offset + r * cols;
            let g: Vec<f64> = (0..cols).map(|_| crate::spectrum::random_matrix::standard_normal(rng)).collect();
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
            let (gn, tn) =
                (norm(&mut g.iter().copied()), norm(&mut theta.params[at..at + cols].iter().map(|&x| x as f64)));
            let s = if gn > 0.0 { tn / gn } else { 0.0 };
            d[at..at + cols].iter_mut().zip(&g).for_each(|(o, &x)| *o = (s * x) as f32);
        }
    }
    let running = vec![0.0; theta.norm.running.len()];
    State { params: d, norm: NormState { running, batches_tracked: theta.norm.batches_tracked.clone() } }
}

/// Two filter-normalised directions from one seeded stream (`filter_normalized`).
pub fn random_directions(model: &Model, theta: &State, seed: u64) -> (State, State) {
    let mut rng = StdRng::seed_from_u64(seed);
    let d1 = filter_normalized(model, theta, &mut rng);
    (d1, filter_normalized(model, theta, &mut rng))
}

/// A state's least-squares coordinates (x, y) in the plane origin + x·u + y·v, and the distance
/// from the plane relative to |p − origin| (0: in the plane; 1: orthogonal to it).
pub fn project(origin: &[f32], u: &[f32], v: &[f32], p: &[f32]) -> Result<(f64, f64, f64)> {
    let dot = |a: &dyn Fn(usize) -> f64, b: &dyn Fn(usize) -> f64| (0..origin.len()).map(|i| a(i) * b(i)).sum::<f64>();
    let (fu, fv) = (|i: usize| u[i] as f64, |i: usize| v[i] as f64);
    let fp = |i: usize| p[i] as f64 - origin[i] as f64;
    let (uu, uv, vv, pu, pv, pp) =
        (dot(&fu, &fu), dot(&fu, &fv), dot(&fv, &fv), dot(&fp, &fu), dot(&fp, &fv), dot(&fp, &fp));
    let det = uu * vv - uv * uv;
    if det <= 1e-12 * uu * vv || uu == 0.0 {
        return Err(Error::Usage(
            "the plane's two directions are parallel (or one is zero): no plane to project on".into(),
        ));
    }
    let (x, y) = ((pu * vv - pv * uv) / det, (pv * uu - pu * uv) / det);
    // |p − proj|² = |p|² − (x·pu + y·pv) for the least-squares solution.
    let residual = (pp - (x * pu + y * pv)).max(0.0).sqrt();
    Ok((x, y, if pp > 0.0 { residual / pp.sqrt() } else { 0.0 }))
}

/// Mean loss and accuracy at one state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measure {
    pub loss: f64,
    pub accuracy: f64,
}

/// Measures states on a dataset: in eval mode through the network's `predict` (the GPU's or
/// the CPU reference's, as `gradflow eval`), in train mode batch by batch on the CPU reference.
pub struct Evaluator {
    pub net: Box<dyn Network>,
    pub loss: Loss,
    pub mode: NormMode,
    /// Rows per batch-norm batch in train mode.
    pub batch: usize,
}

impl Evaluator {
    pub fn measure(&mut self, state: &State, data: &Dataset) -> Result<Measure> {
        crate::exec::network::refuse_targets(data, "the loss landscape")?;
        if data.n == 0 {
            return Ok(Measure { loss: f64::NAN, accuracy: f64::NAN });
        }
        let model = self.net.model().clone();
        if self.mode == NormMode::Eval || !model.has_batch_norm() {
            self.net.set_params(&state.params)?;
            self.net.set_norm_state(&state.norm)?;
            let logits = self.net.predict(&data.x, data.n)?;
            let out = loss_of(self.loss, &logits, &data.labels, data.n, model.outputs());
            return Ok(Measure { loss: out.0 as f64, accuracy: out.1 as f64 / data.n as f64 });
        }
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for (s, e) in batches(data.n, self.batch) {
            let x = &data.x[s * data.d..e * data.d];
            let trace = forward(&model, &state.params, &state.norm.running, x, e - s, Mode::Train, None, None)?;
            let out = loss_of(self.loss, trace.output(), &data.labels[s..e], e - s, model.outputs());
            loss += (e - s) as f64 * out.0 as f64;
            correct += out.1;
        }
        Ok(Measure { loss: loss / data.n as f64, accuracy: correct as f64 / data.n as f64 })
    }
}

/// Mean loss and rows right, as `gradflow eval` computes them from the logits.
fn loss_of(loss: Loss, logits: &[f32], labels: &[u32], rows: usize, classes: usize) -> (f32, usize) {
    let out = crate::reference::loss_of(loss, logits, None, labels, rows, classes);
    (out.loss, out.correct)
}

/// Consecutive batches of `size` rows; a last single row (which batch norm cannot normalise)
/// joins the batch before it, as the Hessian's batches do.
fn batches(n: usize, size: usize) -> Vec<(usize, usize)> {
    let size = size.max(1);
    let mut b: Vec<(usize, usize)> = (0..n).step_by(size).map(|s| (s, (s + size).min(n))).collect();
    if b.len() > 1 && b.last().is_some_and(|(s, e)| e - s == 1) {
        let (_, end) = b.pop().unwrap_or_default();
        if let Some(last) = b.last_mut() {
            last.1 = end;
        }
    }
    b
}
