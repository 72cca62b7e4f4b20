//! Losses with their gradients, mean-reduced as PyTorch (loss.wgsl).

use super::Real;
use crate::spec::Loss;

/// A batch's mean loss, the gradient with respect to the network's output, and how many rows'
/// argmax matched the label.
pub struct LossOutput<T = f32> {
    pub loss: T,
    pub grad: Vec<T>,
    pub correct: usize,
}

/// Index of the first maximum, as torch.argmax.
pub fn argmax<T: Real>(row: &[T]) -> usize {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = c;
        }
    }
    best
}

/// Softmax cross-entropy over `rows` rows of `cols` logits: mean of logsumexp(z) − z[label].
pub fn cross_entropy<T: Real>(logits: &[T], labels: &[u32], rows: usize, cols: usize) -> LossOutput<T> {
    let mut total = 0.0f64;
    let mut grad = vec![T::of(0.0); rows * cols];
    let mut correct = 0;
    for r in 0..rows {
        let z = &logits[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        let zmax = z.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v.to_f64()));
        let sum: f64 = z.iter().map(|&v| (v.to_f64() - zmax).exp()).sum();
        let lse = zmax + sum.ln();
        total += lse - z[label].to_f64();
        for c in 0..cols {
            let p = (z[c].to_f64() - zmax).exp() / sum;
            let onehot = if c == label { 1.0 } else { 0.0 };
            grad[r * cols + c] = T::of((p - onehot) / rows as f64);
        }
        correct += usize::from(argmax(z) == label);
    }
    LossOutput { loss: T::of(total / rows as f64), grad, correct }
}

/// Mean squared error over all elements against `targets`, or against one-hot `labels`.
pub fn mse<T: Real>(pred: &[T], targets: Option<&[T]>, labels: &[u32], rows: usize, cols: usize) -> LossOutput<T> {
    let n = (rows * cols) as f64;
    let mut total = 0.0f64;
    let mut grad = vec![T::of(0.0); rows * cols];
    let mut correct = 0;
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let t = match targets {
                Some(t) => t[i].to_f64(),
                None => f64::from(u8::from(labels[r] as usize == c)),
            };
            let d = pred[i].to_f64() - t;
            total += d * d;
            grad[i] = T::of(2.0 * d / n);
        }
        if targets.is_none() {
            correct += usize::from(argmax(&pred[r * cols..(r + 1) * cols]) == labels[r] as usize);
        }
    }
    LossOutput { loss: T::of(total / n), grad, correct }
}

/// The config's `loss` of `output`: against real `targets` (MSE; rows × cols, row-major) when
/// given, else against the class `labels` (one-hot for MSE). Every host-side loss goes through
/// here, so training, evaluation and the landscape score alike.
pub fn loss_of<T: Real>(
    loss: Loss,
    output: &[T],
    targets: Option<&[f32]>,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> LossOutput<T> {
    match (loss, targets) {
        (Loss::CrossEntropy, _) => cross_entropy(output, labels, rows, cols),
        (Loss::Mse, None) => mse(output, None, labels, rows, cols),
        (Loss::Mse, Some(t)) => {
            let t: Vec<T> = t.iter().map(|&v| T::of(v as f64)).collect();
            mse(output, Some(&t), labels, rows, cols)
        }
    }
}
