//! Hessian-vector products of the reference network by Pearlmutter's R-operator (1994): the
//! forward pass carries R{·}, the directional derivative of every value along a parameter
//! direction v, and the backward pass is differentiated the same way, so R{∇L} = H·v comes out
//! beside ∇L in one forward and one backward pass, exactly (no finite differences). In f64:
//! this is the oracle the GPU's products are held against, and the exact Hessian of small
//! models (`hessian_dense`, column by column).
//!
//! Batch norm is differentiated in training mode: the batch statistics depend on x, and so on
//! the parameters, and their R-values are carried too.

use super::activation::activate_grad_f64;
use crate::spec::{Act, Activation, Loss, Model, Op};

/// act''(z).
pub fn activate_second(z: f64, act: Act) -> f64 {
    match act.kind {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu => 0.0,
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s) * (1.0 - 2.0 * s)
        }
        Activation::Tanh => {
            let t = z.tanh();
            -2.0 * t * (1.0 - t * t)
        }
        // d/dz (Φ + zφ) = 2φ + zφ' = φ·(2 − z²).
        Activation::Gelu => (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt() * (2.0 - z * z),
    }
}

fn act_f64(z: f64, act: Act) -> f64 {
    super::activate(z, act)
}

/// The batch's mean loss, its gradient and H·v (all flat like `params`).
pub struct HvpOutput {
    pub loss: f64,
    pub grad: Vec<f64>,
    pub hv: Vec<f64>,
}

/// What a stage keeps for the backward pass, with its R-values.
enum Kept {
    /// Dense: the pre-activation z and R{z}.
    Dense {
        z: Vec<f64>,
        rz: Vec<f64>,
    },
    /// Batch norm, per column-major feature: x̂, R{x̂}, 1/σ, R{σ}/σ, u = γx̂ + β, R{u}.
    Norm {
        xhat: Vec<f64>,
        rxhat: Vec<f64>,
        inv_std: Vec<f64>,
        rsig_over_sig: Vec<f64>,
        u: Vec<f64>,
        ru: Vec<f64>,
    },
    Other,
}

/// Loss, gradient and Hessian-vector product of the mean loss of one batch (training-mode
/// batch norm). Shapes are the caller's to check (`exec::hessian` does).
// Row and column indices address several arrays at once, as in the formulas.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn loss_grad_hvp(
    model: &Model,
    loss: Loss,
    params: &[f64],
    v: &[f64],
    x: &[f64],
    labels: &[u32],
    rows: usize,
) -> HvpOutput {
    let m = rows;
    let mut values: Vec<Vec<f64>> = vec![x.to_vec()];
    let mut rvalues: Vec<Vec<f64>> = vec![vec![0.0; x.len()]];
    let mut kept = Vec::with_capacity(model.stages.len());
    for stage in &model.stages {
        let (a, ra) = (&values[stage.input], &rvalues[stage.input]);
        let (y, ry, keep) = match stage.op {
            Op::Dense { inputs: k, outputs: n, weight, bias, act } => {
                let (w, vw) = (&params[weight..weight + n * k], &v[weight..weight + n * k]);
                let (mut z, mut rz) = (vec![0.0; m * n], vec![0.0; m * n]);
                for i in 0..m {
                    for j in 0..n {
                        let (mut s, mut r) = (0.0, 0.0);
                        for p in 0..k {
                            s += a[i * k + p] * w[j * k + p];
                            r += ra[i * k + p] * w[j * k + p] + a[i * k + p] * vw[j * k + p];
                        }
                        if let Some(b) = bias {
                            s += params[b + j];
                            r += v[b + j];
                        }
                        z[i * n + j] = s;
                        rz[i * n + j] = r;
                    }
                }
                let y = z.iter().map(|&t| act_f64(t, act)).collect();
                let ry = z.iter().zip(&rz).map(|(&t, &r)| activate_grad_f64(t, act) * r).collect();
                (y, ry, Kept::Dense { z, rz })
            }
            Op::BatchNorm { width: n, gamma, beta, norm, act } => {
                let eps = model.norms[norm].eps;
                let mut out = Kept::Norm {
                    xhat: vec![0.0; m * n],
                    rxhat: vec![0.0; m * n],
                    inv_std: vec![0.0; n],
                    rsig_over_sig: vec![0.0; n],
                    u: vec![0.0; m * n],
                    ru: vec![0.0; m * n],
                };
                let Kept::Norm { xhat, rxhat, inv_std, rsig_over_sig, u, ru } = &mut out else { unreachable!() };
                let (mut y, mut ry) = (vec![0.0; m * n], vec![0.0; m * n]);
                for j in 0..n {
                    let col = |t: &[f64], i: usize| t[i * n + j];
                    let mu = (0..m).map(|i| col(a, i)).sum::<f64>() / m as f64;
                    let var = (0..m).map(|i| (col(a, i) - mu).powi(2)).sum::<f64>() / m as f64;
                    let is = 1.0 / (var + eps).sqrt();
                    let rmu = (0..m).map(|i| col(ra, i)).sum::<f64>() / m as f64;
                    // R{σ}/σ = mean(x̂·R{x})/σ, since R{var} = 2·mean((x − μ)·R{x}).
                    let mean_xhat_rx = (0..m).map(|i| (col(a, i) - mu) * is * col(ra, i)).sum::<f64>() / m as f64;
                    inv_std[j] = is;
                    rsig_over_sig[j] = mean_xhat_rx * is;
                    let (g, vg, b, vb) = (params[gamma + j], v[gamma + j], params[beta + j], v[beta + j]);
                    for i in 0..m {
                        let h = (col(a, i) - mu) * is;
                        let rh = (col(ra, i) - rmu - h * mean_xhat_rx) * is;
                        let t = i * n + j;
                        xhat[t] = h;
                        rxhat[t] = rh;
                        u[t] = g * h + b;
                        ru[t] = vg * h + g * rh + vb;
                        y[t] = act_f64(u[t], act);
                        ry[t] = activate_grad_f64(u[t], act) * ru[t];
                    }
                }
                (y, ry, out)
            }
            Op::Activation { act, .. } => {
                let y = a.iter().map(|&t| act_f64(t, act)).collect();
                let ry = a.iter().zip(ra).map(|(&t, &r)| activate_grad_f64(t, act) * r).collect();
                (y, ry, Kept::Other)
            }
            Op::Add { skip, .. } => {
                let y = a.iter().zip(&values[skip]).map(|(p, q)| p + q).collect();
                let ry = ra.iter().zip(&rvalues[skip]).map(|(p, q)| p + q).collect();
                (y, ry, Kept::Other)
            }
        };
        values.push(y);
        rvalues.push(ry);
        kept.push(keep);
    }

    // The loss, its gradient g with respect to the output, and R{g}.
    let classes = model.outputs();
    let (o, ro) = (&values[model.stages.len()], &rvalues[model.stages.len()]);
    let (mut g, mut rg) = (vec![0.0; m * classes], vec![0.0; m * classes]);
    let mut total = 0.0;
    match loss {
        Loss::CrossEntropy => {
            for r in 0..m {
                let row = &o[r * classes..(r + 1) * classes];
                let zmax = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let sum: f64 = row.iter().map(|z| (z - zmax).exp()).sum();
                total += zmax + sum.ln() - row[labels[r] as usize];
                let p: Vec<f64> = row.iter().map(|z| (z - zmax).exp() / sum).collect();
                // R{softmax} = p ⊙ R{o} − p·(p·R{o}).
                let p_ro: f64 = (0..classes).map(|c| p[c] * ro[r * classes + c]).sum();
                for c in 0..classes {
                    let onehot = f64::from(u8::from(labels[r] as usize == c));
                    g[r * classes + c] = (p[c] - onehot) / m as f64;
                    rg[r * classes + c] = p[c] * (ro[r * classes + c] - p_ro) / m as f64;
                }
            }
            total /= m as f64;
        }
        Loss::Mse => {
            let count = (m * classes) as f64;
            for r in 0..m {
                for c in 0..classes {
                    let t = r * classes + c;
                    let d = o[t] - f64::from(u8::from(labels[r] as usize == c));
                    total += d * d;
                    g[t] = 2.0 * d / count;
                    rg[t] = 2.0 * ro[t] / count;
                }
            }
            total /= count;
        }
    }

    let mut grad = vec![0.0; params.len()];
    let mut hv = vec![0.0; params.len()];
    let stages = model.stages.len();
    let mut grads: Vec<Option<(Vec<f64>, Vec<f64>)>> = vec![None; stages + 1];
    grads[stages] = Some((g, rg));
    let add = |slot: &mut Option<(Vec<f64>, Vec<f64>)>, d: Vec<f64>, rd: Vec<f64>| match slot {
        None => *slot = Some((d, rd)),
        Some((a, ra)) => {
            a.iter_mut().zip(&d).for_each(|(p, q)| *p += q);
            ra.iter_mut().zip(&rd).for_each(|(p, q)| *p += q);
        }
    };
    for (s, stage) in model.stages.iter().enumerate().rev() {
        let width = stage.outputs();
        let (g, rg) = grads[s + 1].take().unwrap_or_else(|| (vec![0.0; m * width], vec![0.0; m * width]));
        let (a, ra) = (&values[stage.input], &rvalues[stage.input]);
        let dx = match (&stage.op, &kept[s]) {
            (&Op::Dense { inputs: k, outputs: n, weight, bias, act }, Kept::Dense { z, rz }) => {
                // dz = act'(z)·g; R{dz} = act''(z)·R{z}·g + act'(z)·R{g}.
                let dz: Vec<f64> = (0..m * n).map(|t| activate_grad_f64(z[t], act) * g[t]).collect();
                let rdz: Vec<f64> = (0..m * n)
                    .map(|t| activate_second(z[t], act) * rz[t] * g[t] + activate_grad_f64(z[t], act) * rg[t])
                    .collect();
                for j in 0..n {
                    for p in 0..k {
                        let (mut s, mut r) = (0.0, 0.0);
                        for i in 0..m {
                            s += dz[i * n + j] * a[i * k + p];
                            r += rdz[i * n + j] * a[i * k + p] + dz[i * n + j] * ra[i * k + p];
                        }
                        grad[weight + j * k + p] = s;
                        hv[weight + j * k + p] = r;
                    }
                    if let Some(b) = bias {
                        grad[b + j] = (0..m).map(|i| dz[i * n + j]).sum();
                        hv[b + j] = (0..m).map(|i| rdz[i * n + j]).sum();
                    }
                }
                (stage.input != 0).then(|| {
                    let (w, vw) = (&params[weight..weight + n * k], &v[weight..weight + n * k]);
                    let (mut dx, mut rdx) = (vec![0.0; m * k], vec![0.0; m * k]);
                    for i in 0..m {
                        for p in 0..k {
                            for j in 0..n {
                                dx[i * k + p] += dz[i * n + j] * w[j * k + p];
                                rdx[i * k + p] += rdz[i * n + j] * w[j * k + p] + dz[i * n + j] * vw[j * k + p];
                            }
                        }
                    }
                    (dx, rdx)
                })
            }
            (
                &Op::BatchNorm { width: n, gamma, beta, act, .. },
                Kept::Norm { xhat, rxhat, inv_std, rsig_over_sig, u, ru },
            ) => {
                let (mut dx, mut rdx) = (vec![0.0; m * n], vec![0.0; m * n]);
                for j in 0..n {
                    let (gm, vg) = (params[gamma + j], v[gamma + j]);
                    let idx = |i: usize| i * n + j;
                    let du: Vec<f64> = (0..m).map(|i| activate_grad_f64(u[idx(i)], act) * g[idx(i)]).collect();
                    let rdu: Vec<f64> = (0..m)
                        .map(|i| {
                            let t = idx(i);
                            activate_second(u[t], act) * ru[t] * g[t] + activate_grad_f64(u[t], act) * rg[t]
                        })
                        .collect();
                    grad[gamma + j] = (0..m).map(|i| du[i] * xhat[idx(i)]).sum();
                    hv[gamma + j] = (0..m).map(|i| rdu[i] * xhat[idx(i)] + du[i] * rxhat[idx(i)]).sum();
                    grad[beta + j] = du.iter().sum();
                    hv[beta + j] = rdu.iter().sum();
                    // dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))/σ with dx̂ = γ·du, and its R-value.
                    let dxh: Vec<f64> = du.iter().map(|d| gm * d).collect();
                    let rdxh: Vec<f64> = (0..m).map(|i| gm * rdu[i] + vg * du[i]).collect();
                    let a_mean = dxh.iter().sum::<f64>() / m as f64;
                    let b_mean = (0..m).map(|i| dxh[i] * xhat[idx(i)]).sum::<f64>() / m as f64;
                    let ra_mean = rdxh.iter().sum::<f64>() / m as f64;
                    let rb_mean =
                        (0..m).map(|i| rdxh[i] * xhat[idx(i)] + dxh[i] * rxhat[idx(i)]).sum::<f64>() / m as f64;
                    for i in 0..m {
                        let t = idx(i);
                        let d = (dxh[i] - a_mean - xhat[t] * b_mean) * inv_std[j];
                        dx[t] = d;
                        rdx[t] = -rsig_over_sig[j] * d
                            + (rdxh[i] - ra_mean - rxhat[t] * b_mean - xhat[t] * rb_mean) * inv_std[j];
                    }
                }
                Some((dx, rdx))
            }
            (&Op::Activation { act, .. }, _) => {
                let dx = (0..a.len()).map(|t| activate_grad_f64(a[t], act) * g[t]).collect();
                let rdx = (0..a.len())
                    .map(|t| activate_second(a[t], act) * ra[t] * g[t] + activate_grad_f64(a[t], act) * rg[t])
                    .collect();
                Some((dx, rdx))
            }
            (&Op::Add { skip, .. }, _) => {
                if skip != 0 {
                    add(&mut grads[skip], g.clone(), rg.clone());
                }
                Some((g, rg))
            }
            _ => unreachable!("every stage keeps what its op needs"),
        };
        if let (Some((dx, rdx)), true) = (dx, stage.input != 0) {
            add(&mut grads[stage.input], dx, rdx);
        }
    }
    HvpOutput { loss: total, grad, hv }
}
