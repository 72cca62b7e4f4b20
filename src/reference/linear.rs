//! Dense layers: y = act(x·Wᵀ + b) and its three backward products (matmul.wgsl).
//! x is [m, k], W is [n, k] (torch.nn.Linear's [out, in]), y is [m, n]; all row-major.

use super::activation::activate;
use super::Real;
use crate::spec::Act;

// Each output is one f64 sum over its terms in ascending order, rounded once. The loops run
// the output row (or block) innermost, over contiguous memory, so the compiler vectorises them;
// every output still adds the same terms in the same order as a dot product would, to the bit.

/// Returns (z, y): the pre-activation x·Wᵀ + b and y = act(z).
pub fn linear_forward<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
) -> (Vec<T>, Vec<T>) {
    // Wᵀ in f64, [k, n]: row p holds every output's weight for input p.
    let mut wt = vec![0.0f64; k * n];
    for j in 0..n {
        for p in 0..k {
            wt[p * n + j] = w[j * k + p].to_f64();
        }
    }
    let mut z = vec![T::of(0.0); m * n];
    let mut s = vec![0.0f64; n];
    for i in 0..m {
        s.fill(0.0);
        for p in 0..k {
            let xv = x[i * k + p].to_f64();
            for (sj, wv) in s.iter_mut().zip(&wt[p * n..(p + 1) * n]) {
                *sj += xv * wv;
            }
        }
        if let Some(b) = b {
            for (sj, bj) in s.iter_mut().zip(b) {
                *sj += bj.to_f64();
            }
        }
        for (zj, sj) in z[i * n..(i + 1) * n].iter_mut().zip(&s) {
            *zj = T::of(*sj);
        }
    }
    let y = z.iter().map(|&v| activate(v, act)).collect();
    (z, y)
}

/// `linear_forward` for `models` models side by side: model i's x, W, b, z and y are the i-th
/// of `models` equal slices of each.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_models<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    m: usize,
    k: usize,
    n: usize,
    act: Act,
    models: usize,
) -> (Vec<T>, Vec<T>) {
    let (mut z, mut y) = (Vec::with_capacity(models * m * n), Vec::with_capacity(models * m * n));
    for i in 0..models {
        let b = b.map(|b| &b[i * n..(i + 1) * n]);
        let (zi, yi) = linear_forward(&x[i * m * k..(i + 1) * m * k], &w[i * n * k..(i + 1) * n * k], b, m, k, n, act);
        z.extend(zi);
        y.extend(yi);
    }
    (z, y)
}

/// dx = dz·W: [m, n]·[n, k] → [m, k].
pub fn linear_backward_input<T: Real>(dz: &[T], w: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut dx = vec![T::of(0.0); m * k];
    let mut s = vec![0.0f64; k];
    for i in 0..m {
        s.fill(0.0);
        for j in 0..n {
            let d = dz[i * n + j].to_f64();
            for (sp, wv) in s.iter_mut().zip(&w[j * k..(j + 1) * k]) {
                *sp += d * wv.to_f64();
            }
        }
        for (dxp, sp) in dx[i * k..(i + 1) * k].iter_mut().zip(&s) {
            *dxp = T::of(*sp);
        }
    }
    dx
}

/// dW = dzᵀ·x: [n, m]·[m, k] → [n, k].
pub fn linear_backward_weight<T: Real>(dz: &[T], x: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut s = vec![0.0f64; n * k];
    for i in 0..m {
        let xi = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let d = dz[i * n + j].to_f64();
            for (sp, xv) in s[j * k..(j + 1) * k].iter_mut().zip(xi) {
                *sp += d * xv.to_f64();
            }
        }
    }
    s.into_iter().map(T::of).collect()
}

/// db = Σ_rows dz: [m, n] → [n].
pub fn bias_grad<T: Real>(dz: &[T], m: usize, n: usize) -> Vec<T> {
    (0..n).map(|j| T::of((0..m).map(|i| dz[i * n + j].to_f64()).sum::<f64>())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The products as dot products, one output at a time: the definition the loops above
    /// reorder. Same terms, same order, one rounding: equal to the bit, signed zeros included.
    fn dot(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f64 {
        a.zip(b).fold(0.0f64, |s, (u, v)| s + u as f64 * v as f64)
    }

    fn random(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                // Exact zeros of both signs now and then: their sums keep their sign rules.
                match i % 23 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (state as f32 / u32::MAX as f32 - 0.5) * 4.0,
                }
            })
            .collect()
    }

    #[test]
    fn products_equal_their_dot_product_definition_to_the_bit() {
        for (m, k, n) in [(1, 1, 1), (1, 7, 3), (5, 1, 2), (3, 13, 17), (32, 64, 128), (33, 65, 10)] {
            let (x, w, b, dz) = (random(m * k, 1), random(n * k, 2), random(n, 3), random(m * n, 4));
            let (z, _) = linear_forward(&x, &w, Some(&b), m, k, n, Act::IDENTITY);
            let dx = linear_backward_input(&dz, &w, m, k, n);
            let dw = linear_backward_weight(&dz, &x, m, k, n);
            for i in 0..m {
                for j in 0..n {
                    let s = dot(x[i * k..][..k].iter().copied(), w[j * k..][..k].iter().copied()) + b[j] as f64;
                    assert_eq!(z[i * n + j].to_bits(), (s as f32).to_bits(), "z[{i},{j}] of {m}×{k}×{n}");
                }
                for p in 0..k {
                    let s = dot((0..n).map(|j| dz[i * n + j]), (0..n).map(|j| w[j * k + p]));
                    assert_eq!(dx[i * k + p].to_bits(), (s as f32).to_bits(), "dx[{i},{p}] of {m}×{k}×{n}");
                }
            }
            for j in 0..n {
                for p in 0..k {
                    let s = dot((0..m).map(|i| dz[i * n + j]), (0..m).map(|i| x[i * k + p]));
                    assert_eq!(dw[j * k + p].to_bits(), (s as f32).to_bits(), "dw[{j},{p}] of {m}×{k}×{n}");
                }
            }
        }
    }
}
