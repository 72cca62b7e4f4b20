//! Momentum methods as discretisations of an ODE (Kovachki & Stuart, "Continuous time analysis
//! of momentum methods", JMLR 2021). On Φ(u) = ½uᵀQu with Q = diag(q), heavy ball and Nesterov
//! with fixed momentum λ and step h follow, as h → 0, the rescaled gradient flow
//!     (1 − λ)·u̇ = −∇Φ(u),  u(t) = exp(−Qt/(1 − λ))·u₀,
//! with an O(h) error at t = nh, and more closely the modified equation
//!     h·α·ü + (1 − λ)·u̇ + ∇Φ(u) = 0,
//! α = (1 + λ)/2 for heavy ball and (1 − λ + 2λ²)/2 for Nesterov (both derived in the docs of
//! `Method::alpha`), started where the iterations start, with the velocity that reproduces their
//! first step to second order (`initial_velocity`).

use super::descent::{run_optimizer, Backend};
use crate::error::Result;
use crate::optim::{MomentumForm, Sgd};

/// Which momentum method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    HeavyBall,
    Nesterov,
}

impl Method {
    pub fn form(self) -> MomentumForm {
        match self {
            Method::HeavyBall => MomentumForm::HeavyBall,
            Method::Nesterov => MomentumForm::NesterovLookahead,
        }
    }

    /// The modified equation's α. Heavy ball, x_{n+1} − x_n − λ(x_n − x_{n−1}) = −h∇Φ(x_n):
    /// Taylor-expanding both differences to second order gives h·(1 + λ)/2·ü + (1 − λ)u̇ = −∇Φ.
    /// Nesterov takes the gradient at x_n + λ(x_n − x_{n−1}) ≈ u + λhu̇, adding λh·Qu̇, and
    /// Qu̇ = −(1 − λ)ü to leading order, so α = (1 + λ)/2 − λ(1 − λ) = (1 − λ + 2λ²)/2.
    pub fn alpha(self, lambda: f64) -> f64 {
        match self {
            Method::HeavyBall => (1.0 + lambda) / 2.0,
            Method::Nesterov => (1.0 - lambda + 2.0 * lambda * lambda) / 2.0,
        }
    }
}

/// The rescaled gradient flow's component with curvature q at time t.
pub fn gradient_flow(q: f64, lambda: f64, u0: f64, t: f64) -> f64 {
    (-q * t / (1.0 - lambda)).exp() * u0
}

/// u̇(0) for the modified equation. Both methods start at rest (x₋₁ = x₀), so their first step
/// is x₁ − x₀ = −h∇Φ(x₀). Matching x₁ − x₀ = h·u̇ + ½h²·ü to second order, with ü(0) from the
/// equation itself (hα·ü = −(1 − λ)u̇ − ∇Φ), gives u̇(0) = −∇Φ(u₀)·(2α − 1)/(2α − 1 + λ):
/// −∇Φ/2 for heavy ball, and 0 for Nesterov at λ = ½.
pub fn initial_velocity(q: f64, lambda: f64, alpha: f64, u0: f64) -> f64 {
    -q * u0 * (2.0 * alpha - 1.0) / (2.0 * alpha - 1.0 + lambda)
}

/// The modified equation a·ü + b·u̇ + q·u = 0 (a = hα, b = 1 − λ), u(0) = u0, u̇(0) from
/// `initial_velocity`, at t.
pub fn modified_equation(q: f64, lambda: f64, alpha: f64, h: f64, u0: f64, t: f64) -> f64 {
    let v0 = initial_velocity(q, lambda, alpha, u0);
    let (a, b) = (h * alpha, 1.0 - lambda);
    let disc = b * b - 4.0 * a * q;
    if disc > 0.0 {
        let s = disc.sqrt();
        let (rp, rm) = ((-b + s) / (2.0 * a), (-b - s) / (2.0 * a));
        // A + B = u0, A·r₊ + B·r₋ = v0.
        let (ca, cb) = ((v0 - u0 * rm) / (rp - rm), (u0 * rp - v0) / (rp - rm));
        ca * (rp * t).exp() + cb * (rm * t).exp()
    } else {
        let (sigma, omega) = (-b / (2.0 * a), (-disc).sqrt() / (2.0 * a));
        (sigma * t).exp()
            * (u0 * (omega * t).cos() + (v0 - sigma * u0) / omega.max(f64::MIN_POSITIVE) * (omega * t).sin())
    }
}

/// The iterates x_n of `method` (n = 0 … steps) on ½uᵀdiag(q)u from u0. Nesterov's optimizer
/// holds the look-ahead point y_n = x_n + λ(x_n − x_{n−1}); x_n = (y_n + λ·x_{n−1})/(1 + λ).
pub fn iterates(
    backend: Backend,
    method: Method,
    lambda: f64,
    h: f64,
    q: &[f64],
    u0: &[f32],
    steps: usize,
) -> Result<Vec<Vec<f64>>> {
    let sgd = Sgd::with_form(h, lambda, method.form());
    let held = run_optimizer(backend, &crate::optim::Optimizer::Sgd(sgd).into(), u0, steps, |u| {
        u.iter().zip(q).map(|(x, qi)| qi * x).collect()
    })?;
    if method == Method::HeavyBall {
        return Ok(held);
    }
    let mut x = vec![held[0].clone()];
    for y in &held[1..] {
        let prev = x.last().cloned().unwrap_or_default();
        x.push(y.iter().zip(&prev).map(|(yi, pi)| (yi + lambda * pi) / (1.0 + lambda)).collect());
    }
    Ok(x)
}

/// (|x_N − flow(T)|, |x_N − modified(T)|) at the horizon T = N·h, in the Euclidean norm.
pub fn errors(
    backend: Backend,
    method: Method,
    lambda: f64,
    h: f64,
    q: &[f64],
    u0: &[f32],
    horizon: f64,
) -> Result<(f64, f64)> {
    let steps = (horizon / h).round() as usize;
    let xs = iterates(backend, method, lambda, h, q, u0, steps)?;
    let alpha = method.alpha(lambda);
    let (x, t) = (&xs[steps], steps as f64 * h);
    let dist = |f: &dyn Fn(f64, f64) -> f64| {
        x.iter().zip(q).zip(u0).map(|((xi, &qi), &ui)| (xi - f(qi, ui as f64)).powi(2)).sum::<f64>().sqrt()
    };
    let flow = dist(&|qi, ui| gradient_flow(qi, lambda, ui, t));
    let modified = dist(&|qi, ui| modified_equation(qi, lambda, alpha, h, ui, t));
    Ok((flow, modified))
}
