//! ResNets as forward Euler (the lecture's "continuous time perspective"). A residual block with
//! step h, x_{k+1} = x_k + h·f(x_k, t_k), is one Euler step of dx/dt = f(x, t); with
//! f(x, t) = tanh(W(t)x + b(t)) and weights smooth in t, L blocks with h = T/L reach x(T) with a
//! global error C·h + O(h²). The network is the engine's own: each block is
//! `residual [Linear(d), Tanh, Linear(d, no bias)]` with the last Linear set to h·I (the spec has
//! no step-size field, so h is folded into that weight), run by the CPU network's `predict`.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::exec::{CpuNetwork, Network};
use crate::optim::Sgd;
use crate::spec::{LayerSpec, Loss, Model};

/// The time-dependent field f(x, t) = tanh((A + sin t·B)x + a + cos t·c), in f64.
#[derive(Clone, Debug)]
pub struct Field {
    pub d: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    bias_a: Vec<f64>,
    bias_c: Vec<f64>,
}

impl Field {
    /// Entries of A and B uniform in ±1.5/√d (so W x is O(1) and tanh is in its curved part),
    /// biases uniform in ±0.5, all from `seed`.
    pub fn seeded(d: usize, seed: u64) -> Field {
        let mut rng = StdRng::seed_from_u64(seed);
        let bound = 1.5 / (d as f64).sqrt();
        let mut draw = |n: usize, r: f64| (0..n).map(|_| rng.random_range(-r..=r)).collect::<Vec<f64>>();
        let (a, b) = (draw(d * d, bound), draw(d * d, bound));
        let (bias_a, bias_c) = (draw(d, 0.5), draw(d, 0.5));
        Field { d, a, b, bias_a, bias_c }
    }

    /// W(t), row-major [out, in] as a Linear weight.
    pub fn weight(&self, t: f64) -> Vec<f64> {
        self.a.iter().zip(&self.b).map(|(a, b)| a + t.sin() * b).collect()
    }

    /// b(t).
    pub fn bias(&self, t: f64) -> Vec<f64> {
        self.bias_a.iter().zip(&self.bias_c).map(|(a, c)| a + t.cos() * c).collect()
    }

    /// f(x, t).
    pub fn eval(&self, x: &[f64], t: f64) -> Vec<f64> {
        let (w, b) = (self.weight(t), self.bias(t));
        (0..self.d).map(|i| (b[i] + (0..self.d).map(|j| w[i * self.d + j] * x[j]).sum::<f64>()).tanh()).collect()
    }
}

fn axpy(x: &[f64], h: f64, v: &[f64]) -> Vec<f64> {
    x.iter().zip(v).map(|(a, b)| a + h * b).collect()
}

/// The states x_0 … x_L of forward Euler with h = T/L, t_k = k·h (the residual recursion).
pub fn euler(field: &Field, x0: &[f64], horizon: f64, blocks: usize) -> Vec<Vec<f64>> {
    let h = horizon / blocks as f64;
    let mut xs = vec![x0.to_vec()];
    for k in 0..blocks {
        let x = &xs[k];
        xs.push(axpy(x, h, &field.eval(x, k as f64 * h)));
    }
    xs
}

/// x(T) by classical RK4 with `steps` steps: global error O(h⁴), the reference.
pub fn rk4(field: &Field, x0: &[f64], horizon: f64, steps: usize) -> Vec<f64> {
    let h = horizon / steps as f64;
    let mut x = x0.to_vec();
    for n in 0..steps {
        let t = n as f64 * h;
        let k1 = field.eval(&x, t);
        let k2 = field.eval(&axpy(&x, h / 2.0, &k1), t + h / 2.0);
        let k3 = field.eval(&axpy(&x, h / 2.0, &k2), t + h / 2.0);
        let k4 = field.eval(&axpy(&x, h, &k3), t + h);
        x = (0..x.len()).map(|i| x[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])).collect();
    }
    x
}

/// One Euler block of width d: [Linear(d), Tanh, Linear(d, no bias)] on a skip, the last Linear
/// holding the step h.
pub fn euler_block(d: usize) -> LayerSpec {
    LayerSpec::Residual {
        layers: vec![
            LayerSpec::Linear { out: d, bias: true },
            LayerSpec::Tanh,
            LayerSpec::Linear { out: d, bias: false },
        ],
        projection: false,
    }
}

/// L residual blocks of width d, each an `euler_block`.
pub fn residual_model(d: usize, blocks: usize) -> Result<Model> {
    Model::new(d, vec![euler_block(d); blocks])
}

/// The flat parameters that make `residual_model(d, L)` the Euler recursion: block k holds
/// W(t_k), b(t_k) and h·I.
pub fn euler_params(model: &Model, field: &Field, horizon: f64, blocks: usize) -> Result<Vec<f32>> {
    let (d, h) = (field.d, horizon / blocks as f64);
    if model.params.len() != 3 * blocks {
        return Err(Error::Model(format!(
            "the Euler network needs {} tensors (W, b, h·I per block), the model has {}",
            3 * blocks,
            model.params.len()
        )));
    }
    let mut flat = vec![0.0f32; model.param_len];
    for k in 0..blocks {
        let t = k as f64 * h;
        let step: Vec<f64> = (0..d * d).map(|i| if i % (d + 1) == 0 { h } else { 0.0 }).collect();
        for (tensor, values) in model.params[3 * k..3 * k + 3].iter().zip([field.weight(t), field.bias(t), step]) {
            for (slot, v) in flat[tensor.offset..tensor.offset + tensor.len].iter_mut().zip(values) {
                *slot = v as f32;
            }
        }
    }
    Ok(flat)
}

/// x_L for each row of `x0` (rows × d) through the engine's CPU network.
pub fn engine_forward(field: &Field, x0: &[f64], horizon: f64, blocks: usize) -> Result<Vec<f64>> {
    let model = residual_model(field.d, blocks)?;
    let params = euler_params(&model, field, horizon, blocks)?;
    let mut net = CpuNetwork::new(model, Loss::Mse, Sgd::new(0.0), params)?;
    let x: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
    Ok(net.predict(&x, x0.len() / field.d)?.into_iter().map(f64::from).collect())
}

/// One row of the convergence table: L, h and ‖x_L − x(T)‖ (Euclidean over all rows).
#[derive(Clone, Copy, Debug)]
pub struct Convergence {
    pub blocks: usize,
    pub h: f64,
    pub error: f64,
}

/// RK4 steps for the reference: its error, ~(T/steps)⁴, is far below Euler's at L = 256.
pub const REFERENCE_STEPS: usize = 4096;

/// The engine network's error against the RK4 solution for each L, for each row of `x0`.
pub fn convergence(field: &Field, x0: &[f64], horizon: f64, depths: &[usize]) -> Result<Vec<Convergence>> {
    let reference: Vec<f64> = x0.chunks(field.d).flat_map(|x| rk4(field, x, horizon, REFERENCE_STEPS)).collect();
    depths
        .iter()
        .map(|&blocks| {
            let out = engine_forward(field, x0, horizon, blocks)?;
            let error = out.iter().zip(&reference).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            Ok(Convergence { blocks, h: horizon / blocks as f64, error })
        })
        .collect()
}

/// The least-squares slope of log(error) against log(h).
pub fn loglog_slope(rows: &[Convergence]) -> f64 {
    let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.h.ln(), r.error.ln())).collect();
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    sxy / sxx
}
