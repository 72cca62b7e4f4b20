//! The course's experiments on explicit functions: momentum against its continuous-time limits
//! (Kovachki & Stuart), on the GPU's fused update and the CPU reference.

mod common;

use gradflow::course::continuous::{errors, initial_velocity, modified_equation, Method};
use gradflow::course::descent::Backend;

const Q: [f64; 2] = [1.0, 10.0];
const U0: [f32; 2] = [1.0, 1.0];
const LAMBDA: f64 = 0.5;

/// The modified equation's closed form satisfies a·ü + b·u̇ + q·u = 0 and its initial conditions,
/// over- and underdamped. Checked by central differences: u̇(0) with step 1e-7 (the fast mode's
/// rate reaches (1 − λ)/(hα) ≈ 170, so truncation d²·|u⁽³⁾|/6 ≲ 3e-11 and rounding u/d ≈ 1e-9:
/// tolerance 1e-6), the equation at t ≥ 0.1 (fast mode gone) with step 1e-4 (truncation
/// ~1e-8·|u⁽⁴⁾| and rounding 4u/d² ≈ 1e-8: tolerance 1e-5·q).
#[test]
fn the_modified_equations_solution_solves_it() {
    for (h, q) in [(0.5f64.powi(8), 1.0), (0.5f64.powi(3), 10.0), (0.5, 10.0)] {
        for method in [Method::HeavyBall, Method::Nesterov] {
            let alpha = method.alpha(LAMBDA);
            let u = |t: f64| modified_equation(q, LAMBDA, alpha, h, 1.0, t);
            let d = 1e-4;
            assert!((u(0.0) - 1.0).abs() < 1e-12);
            let v0 = (u(1e-7) - u(-1e-7)) / 2e-7;
            assert!((v0 - initial_velocity(q, LAMBDA, alpha, 1.0)).abs() < 1e-6, "{method:?} h {h}: u̇(0) = {v0}");
            for t in [0.1, 0.4, 0.9] {
                let (du, ddu) = ((u(t + d) - u(t - d)) / (2.0 * d), (u(t + d) - 2.0 * u(t) + u(t - d)) / (d * d));
                let residual = h * alpha * ddu + (1.0 - LAMBDA) * du + q * u(t);
                assert!(residual.abs() < 1e-5 * q, "{method:?} h {h} q {q} t {t}: residual {residual:e}");
            }
        }
    }
}

/// Heavy ball and Nesterov at fixed λ approach the rescaled gradient flow as O(h): the slope of
/// log error against log h over h = 2⁻⁶ … 2⁻¹⁰ is 1 up to the next term of the expansion
/// (E = C·h + D·h² gives a slope within 1 ± 2⁻⁶·|D/C|, so [0.95, 1.1] allows |D/C| up to 3); and
/// the modified equation is closer than the flow at every step size. On both backends.
#[test]
fn momentum_tracks_the_gradient_flow_to_first_order_and_the_modified_equation_closer() {
    let gpu = common::gpu();
    for backend in [Backend::Cpu, Backend::Gpu(gpu)] {
        for method in [Method::HeavyBall, Method::Nesterov] {
            let mut rows = Vec::new();
            for e in 6..=10 {
                let h = 0.5f64.powi(e);
                let (flow, modified) = errors(backend, method, LAMBDA, h, &Q, &U0, 1.0).unwrap();
                assert!(modified < flow, "{method:?} on the {} at h = 2^-{e}: {modified:e} ≥ {flow:e}", backend.name());
                rows.push((h.log2(), flow.log2()));
            }
            let n = rows.len() as f64;
            let (mx, my) = (rows.iter().map(|r| r.0).sum::<f64>() / n, rows.iter().map(|r| r.1).sum::<f64>() / n);
            let slope = rows.iter().map(|r| (r.0 - mx) * (r.1 - my)).sum::<f64>()
                / rows.iter().map(|r| (r.0 - mx).powi(2)).sum::<f64>();
            eprintln!("{method:?} on the {}: error ∝ h^{slope:.4}", backend.name());
            assert!((0.95..=1.1).contains(&slope), "{method:?}: slope {slope}");
        }
    }
}
