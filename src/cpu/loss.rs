//! Losses with their gradients, mean-reduced as PyTorch (loss.wgsl).

/// A batch's mean loss, the gradient with respect to the network's output, and how many rows'
/// argmax matched the label.
pub struct LossOutput {
    pub loss: f32,
    pub grad: Vec<f32>,
    pub correct: usize,
}

/// Index of the first maximum, as torch.argmax.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = c;
        }
    }
    best
}

/// Softmax cross-entropy over `rows` rows of `cols` logits: mean of logsumexp(z) − z[label].
pub fn cross_entropy(logits: &[f32], labels: &[u32], rows: usize, cols: usize) -> LossOutput {
    let mut total = 0.0f64;
    let mut grad = vec![0.0f32; rows * cols];
    let mut correct = 0;
    for r in 0..rows {
        let z = &logits[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        let zmax = z.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let sum: f64 = z.iter().map(|&v| (v as f64 - zmax).exp()).sum();
        let lse = zmax + sum.ln();
        total += lse - z[label] as f64;
        for c in 0..cols {
            let p = (z[c] as f64 - zmax).exp() / sum;
            let onehot = if c == label { 1.0 } else { 0.0 };
            grad[r * cols + c] = ((p - onehot) / rows as f64) as f32;
        }
        correct += usize::from(argmax(z) == label);
    }
    LossOutput { loss: (total / rows as f64) as f32, grad, correct }
}

/// Mean squared error over all elements against `targets`, or against one-hot `labels`.
pub fn mse(pred: &[f32], targets: Option<&[f32]>, labels: &[u32], rows: usize, cols: usize) -> LossOutput {
    let n = (rows * cols) as f64;
    let mut total = 0.0f64;
    let mut grad = vec![0.0f32; rows * cols];
    let mut correct = 0;
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let t = match targets {
                Some(t) => t[i] as f64,
                None => f64::from(u8::from(labels[r] as usize == c)),
            };
            let d = pred[i] as f64 - t;
            total += d * d;
            grad[i] = (2.0 * d / n) as f32;
        }
        if targets.is_none() {
            correct += usize::from(argmax(&pred[r * cols..(r + 1) * cols]) == labels[r] as usize);
        }
    }
    LossOutput { loss: (total / n) as f32, grad, correct }
}
