//! Depth sweeps at a fixed horizon T: a residual network lift → L blocks → head, each block
//! x + V_k·tanh(W_k x + b_k) with V_k started at h·I (h = T/L, the Euler step of
//! `resnet_ode`), trained on the CPU network; then the size of each block's step ‖x_{k+1} − x_k‖
//! on the data, read from the engine by running the network's first k blocks.

use crate::data::{BatchScheme, Batcher, Dataset};
use crate::error::Result;
use crate::exec::{CpuNetwork, Network};
use crate::optim::Adam;
use crate::spec::{LayerSpec, Loss, Model};

/// Linear(width) lift, `blocks` residual blocks [Linear(width), Tanh, Linear(width, no bias)],
/// then `head` (a Linear to the classes), or none for the hidden state after the blocks.
pub fn depth_model(inputs: usize, width: usize, blocks: usize, head: Option<usize>) -> Result<Model> {
    let block = super::resnet_ode::euler_block(width);
    let mut layers = vec![LayerSpec::Linear { out: width, bias: true }];
    layers.extend(std::iter::repeat_n(block, blocks));
    layers.extend(head.map(|out| LayerSpec::Linear { out, bias: true }));
    Model::new(inputs, layers)
}

/// PyTorch's default draw, with each block's last Linear replaced by h·I.
pub fn euler_init(model: &Model, blocks: usize, horizon: f64, seed: u64) -> Vec<f32> {
    let mut flat = model.init_params(seed);
    let h = horizon / blocks as f64;
    // Tensors: lift weight, lift bias, then (W, b, V) per block.
    for k in 0..blocks {
        let v = &model.params[2 + 3 * k + 2];
        let width = v.shape[0];
        for (i, slot) in flat[v.offset..v.offset + v.len].iter_mut().enumerate() {
            *slot = if i % (width + 1) == 0 { h as f32 } else { 0.0 };
        }
    }
    flat
}

/// What one trained depth gives: the training loss per epoch, the final parameters, and the
/// mean over the data of ‖x_{k+1} − x_k‖ for each block k.
#[derive(Clone, Debug)]
pub struct DepthRun {
    pub blocks: usize,
    pub losses: Vec<f64>,
    pub params: Vec<f32>,
    pub steps: Vec<f64>,
    /// The same at initialisation, where each step is h·‖tanh(·)‖.
    pub init_steps: Vec<f64>,
}

/// Trains the L-block network with Adam(lr) for `epochs` (batches of 32, shuffled with `seed`).
pub fn train_depth(
    data: &Dataset,
    width: usize,
    blocks: usize,
    horizon: f64,
    epochs: usize,
    lr: f64,
) -> Result<DepthRun> {
    let model = depth_model(data.d, width, blocks, Some(data.num_classes))?;
    let params = euler_init(&model, blocks, horizon, 0);
    let init_steps = block_steps(data, width, blocks, &params)?;
    let adam = Adam { lr, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, amsgrad: false, decoupled: false };
    let mut net = CpuNetwork::new(model, Loss::CrossEntropy, adam, params)?;
    net.set_train_data(data)?;
    let mut batcher = Batcher::new(BatchScheme::Shuffle, data.n, 32, false, 0)?;
    let mut losses = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        losses.push(crate::train::train_epoch(&mut net, &mut batcher, epoch, |_| {})?.train_loss as f64);
    }
    let params = net.params()?;
    let steps = block_steps(data, width, blocks, &params)?;
    Ok(DepthRun { blocks, losses, params, steps, init_steps })
}

/// Hidden states after 0 … L blocks, through the engine: the model of the first k blocks has
/// the same parameter layout as the full one's prefix, so it runs on a prefix of `params`.
pub fn hidden_states(data: &Dataset, width: usize, blocks: usize, params: &[f32]) -> Result<Vec<Vec<f32>>> {
    (0..=blocks)
        .map(|k| {
            let model = depth_model(data.d, width, k, None)?;
            let prefix = params[..model.param_len].to_vec();
            CpuNetwork::new(model, Loss::Mse, crate::optim::Sgd::new(0.0), prefix)?.predict(&data.x, data.n)
        })
        .collect()
}

/// Mean over the rows of ‖x_{k+1} − x_k‖ for each block k.
pub fn block_steps(data: &Dataset, width: usize, blocks: usize, params: &[f32]) -> Result<Vec<f64>> {
    let states = hidden_states(data, width, blocks, params)?;
    Ok(states
        .windows(2)
        .map(|w| {
            let norms = w[0]
                .chunks(width)
                .zip(w[1].chunks(width))
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| ((y - x) as f64).powi(2)).sum::<f64>().sqrt());
            norms.sum::<f64>() / data.n as f64
        })
        .collect())
}
