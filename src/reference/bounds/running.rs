//! Running error analysis (Wilkinson's): a kernel's arithmetic transcribed operation by
//! operation on values that carry their error bound. Where a closed-form per-op bound would be
//! loose or long (the Hessian-vector kernels' chains of products, quotients and exps), a test
//! writes the kernel's formula once over [`Ev`] and gets the bound of exactly that formula.
//!
//! Each rounding counts u = 2^-24 plus 2^-53, the f64 reference's own rounding of the same
//! operation, so a bound holds against the reference rather than the exact value. Sums are taken
//! in any order and grouping ([`sum`]): SPIR-V lets a driver regroup additions, and lavapipe
//! does (Mesa moves a trailing addition into an FMA chain).

use std::ops::{Div, Mul, Neg};

use super::{act_eval_bound, act_grad_eval_bound, exp_rel, EPS};
use crate::reference::activation::{activate, activate_grad};
use crate::spec::{Act, Activation};

/// One rounding, f32's and the f64 reference's of the same operation.
pub const U: f64 = EPS + f64::EPSILON / 2.0;
/// A division: 2.5 ulp of f32 (at most 5u relative) and the reference's rounding.
pub const DIV: f64 = 5.0 * EPS + f64::EPSILON / 2.0;

/// A value the kernel computes: `v` exactly (in f64), and `e` bounding |kernel's f32 − v|.
#[derive(Clone, Copy, Debug)]
pub struct Ev {
    pub v: f64,
    pub e: f64,
}

/// A value the kernel holds exactly (a constant it is given).
pub fn exact(v: f64) -> Ev {
    Ev { v, e: 0.0 }
}

/// An f32 input, exact as given.
pub fn input(v: f32) -> Ev {
    exact(v as f64)
}

impl Ev {
    /// A value the kernel forms within `e` of `v` and then rounds once.
    pub fn rounded(v: f64, e: f64) -> Ev {
        Ev { v, e: e + U * (v.abs() + e) }
    }

    /// e^x on the GPU.
    pub fn exp(self) -> Ev {
        let v = self.v.exp();
        let moved = self.e.exp_m1();
        Ev { v, e: v * (moved + (1.0 + moved) * (exp_rel(self.v.abs() + self.e) + f64::EPSILON)) }
    }
}

impl Neg for Ev {
    type Output = Ev;
    fn neg(self) -> Ev {
        Ev { v: -self.v, e: self.e }
    }
}

/// γ_k with u = [`U`]: the relative error of k roundings, against the f64 reference.
pub fn gamma_vs_reference(k: usize) -> f64 {
    let k = k as f64;
    k * U / (1.0 - k * U)
}

/// A sum of `terms` in any order and grouping, fma or not: each term goes through at most
/// N − 1 additions, so |fl(Σ) − Σ| ≤ γ_{N−1}·Σ|term| (the terms as computed), plus their errors.
pub fn sum(terms: &[Ev]) -> Ev {
    let roundings = gamma_vs_reference(terms.len().saturating_sub(1));
    let (v, e) = terms.iter().fold((0.0, 0.0), |(v, e), t| (v + t.v, e + t.e));
    Ev { v, e: e + roundings * terms.iter().map(|t| t.v.abs() + t.e).sum::<f64>() }
}

impl Mul for Ev {
    type Output = Ev;
    fn mul(self, o: Ev) -> Ev {
        Ev::rounded(self.v * o.v, self.v.abs() * o.e + o.v.abs() * self.e + self.e * o.e)
    }
}

impl Div for Ev {
    type Output = Ev;
    fn div(self, o: Ev) -> Ev {
        assert!(o.e < o.v.abs(), "a divisor within its error of 0: {o:?}");
        let v = self.v / o.v;
        let e = (self.e + v.abs() * o.e) / (o.v.abs() - o.e);
        Ev { v, e: e + DIV * (v.abs() + e) }
    }
}

/// A batch-norm kernel's reduction over rows: row r's additive terms go to lane r mod 16, each
/// lane sums its terms (any order: `sums += vec4(…)` may be regrouped with the terms' own sums),
/// then `reduce_lanes` adds lane l + half into lane l for half = 8, 4, 2, 1, in that order
/// (workgroup memory between barriers, which no compiler regroups).
pub fn lane_tree_sum(rows: impl Iterator<Item = Vec<Ev>>) -> Ev {
    let mut lanes: Vec<Vec<Ev>> = vec![Vec::new(); 16];
    for (r, terms) in rows.enumerate() {
        lanes[r % 16].extend(terms);
    }
    let mut part: Vec<Ev> = lanes.iter().map(|l| sum(l)).collect();
    let mut half = 8;
    while half > 0 {
        for l in 0..half {
            part[l] = sum(&[part[l], part[l + half]]);
        }
        half /= 2;
    }
    part[0]
}

/// max|act''|: how far act' moves when its argument does (1/(6√3) for sigmoid, 4/(3√3) for
/// tanh, 2φ(0) for GELU, rounded up); 0 for the piecewise-linear ones away from their kink.
pub fn act_second_max(act: Act) -> f64 {
    match act.kind {
        Activation::Sigmoid => 0.0963,
        Activation::Tanh => 0.770,
        Activation::Gelu => 0.798,
        _ => 0.0,
    }
}

/// An evaluation bound `at(z)` for an exact argument, taken at the worse end of [v − e, v + e].
pub fn worst_over(z: Ev, at: impl Fn(f64) -> f64) -> f64 {
    at(z.v).max(at(z.v - z.e)).max(at(z.v + z.e))
}

/// The GPU's act'(z) (common.wgsl `activate_grad`).
pub fn act_grad(act: Act, z: Ev) -> Ev {
    let v = activate_grad(z.v, act);
    let kinked = matches!(act.kind, Activation::Relu | Activation::LeakyRelu);
    if kinked && z.e > 0.0 && z.v.abs() <= z.e {
        // act' is 1 on one side of 0 and the slope on the other: either may come out.
        return Ev { v, e: (1.0 - act.slope as f64).abs() };
    }
    let eval = worst_over(z, |t| act_grad_eval_bound(act, t, activate_grad(t, act)));
    Ev { v, e: act_second_max(act) * z.e + eval }
}

/// The GPU's sigmoid(z) or tanh(z), each 1-Lipschitz at most (sigmoid 1/4).
pub fn squash(kind: Activation, z: Ev) -> Ev {
    let act = Act::new(kind);
    let lipschitz = if kind == Activation::Sigmoid { 0.25 } else { 1.0 };
    let f = |t: f64| activate(t, act);
    Ev { v: f(z.v), e: lipschitz * z.e + worst_over(z, |t| act_eval_bound(act, t, f(t))) }
}

/// The GPU's act''(z), transcribing common.wgsl `activate_second`.
pub fn act_second(act: Act, z: Ev) -> Ev {
    let (one, two) = (exact(1.0), exact(2.0));
    match act.kind {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu => exact(0.0),
        Activation::Sigmoid => {
            let s = squash(Activation::Sigmoid, z);
            s * sum(&[one, -s]) * sum(&[one, -(two * s)])
        }
        Activation::Tanh => {
            let t = squash(Activation::Tanh, z);
            exact(-2.0) * t * sum(&[one, -(t * t)])
        }
        Activation::Gelu => {
            // 0.39894228040143268 as an f32 constant: within u of 1/√(2π).
            let c = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
            Ev { v: c, e: EPS * c } * (exact(-0.5) * z * z).exp() * sum(&[two, -(z * z)])
        }
    }
}
