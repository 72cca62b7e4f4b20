//! Saxe, McClelland & Ganguli (2013), "Exact solutions to the nonlinear dynamics of learning in
//! deep linear neural networks": from small weights, a deep linear network learns the modes of
//! its input-output map one at a time, the strongest first, each after a plateau (a saddle).

use crate::data::Dataset;
use crate::error::Result;
use crate::exec::Network;
use crate::spec::{LayerSpec, Loss, Model};

/// Inputs sᶜ·eᶜ, each its own class: with one-hot targets the input-output correlation is
/// diag(sᶜ)/n, so mode c has strength sᶜ.
pub fn modes_dataset(strengths: &[f32]) -> Result<Dataset> {
    let d = strengths.len();
    let x = (0..d).flat_map(|c| (0..d).map(move |i| if i == c { strengths[c] } else { 0.0 })).collect();
    Dataset::new(x, (0..d as u32).collect(), d, d, "input-output modes")
}

/// `layers` bias-free Linear layers of width d, nothing between them.
pub fn deep_linear_model(d: usize, layers: usize) -> Result<Model> {
    Model::new(d, vec![LayerSpec::Linear { out: d, bias: false }; layers])
}

/// Full-batch steps of `net` on `data` (already set as its training data) for `steps` steps:
/// the step at which each mode's output first passes ½, and the loss before every step and
/// after the last.
pub fn learning_times(net: &mut dyn Network, data: &Dataset, steps: usize) -> Result<(Vec<Option<usize>>, Vec<f64>)> {
    let d = data.d;
    let all: Vec<u32> = (0..data.n as u32).collect();
    let mut learned = vec![None; d];
    let mut losses = Vec::with_capacity(steps + 1);
    for step in 0..=steps {
        losses.push(crate::train::evaluate(net, data, Loss::Mse)?.0 as f64);
        let outputs = net.predict(&data.x, data.n)?;
        for (c, when) in learned.iter_mut().enumerate() {
            if when.is_none() && outputs[c * d + c] > 0.5 {
                *when = Some(step);
            }
        }
        if step < steps {
            net.train_step(&all)?;
        }
    }
    Ok((learned, losses))
}
