//! Momentum as an ODE (Kovachki & Stuart 2021): heavy ball and Nesterov with fixed momentum λ
//! and step h on Φ = ½uᵀQu, Q = diag(1, κ), run through the training path's fused update, against
//! the rescaled gradient flow u(t) = exp(−Qt/(1 − λ))u₀ and the modified equation
//! hα·ü + (1 − λ)u̇ + ∇Φ = 0. Prints the errors at t = 1 for h = 2⁻⁶ … 2⁻¹⁰ and their slope,
//! and plots them with one trajectory at a large step.
//!
//!     cargo run --release --example continuous_time [-- OUT.svg] [--cpu]   (default docs/continuous-time.svg)

use gradflow::course::continuous::{errors, gradient_flow, iterates, modified_equation, Method};
use gradflow::course::descent::Backend;
use gradflow::error::Result;
use gradflow::plot::{svg, Chart, Series};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "docs/continuous-time.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let gpu = if args.iter().any(|a| a == "--cpu") { None } else { Some(gradflow::kernels::Gpu::new(None)?) };
    let backend = gpu.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    let (lambda, kappa, horizon) = (0.5, 10.0, 1.0);
    let q = [1.0, kappa];
    let u0 = [1.0f32, 1.0];
    println!("Φ = ½uᵀdiag(1, {kappa})u, u₀ = (1, 1), λ = {lambda}, errors at t = {horizon}, on the {}", backend.name());
    println!("{:<10} {:>8} {:>14} {:>18}", "method", "h", "vs flow", "vs modified eq.");
    let mut error_series = Vec::new();
    for method in [Method::HeavyBall, Method::Nesterov] {
        let (mut flow, mut modified) = (Vec::new(), Vec::new());
        for e in 6..=10 {
            let h = 0.5f64.powi(e);
            let (f, m) = errors(backend, method, lambda, h, &q, &u0, horizon)?;
            println!("{:<10} {:>8} {f:>14.3e} {m:>18.3e}", format!("{method:?}"), format!("2^-{e}"),);
            flow.push((-(e as f64), f.log10()));
            modified.push((-(e as f64), m.log10()));
        }
        let slope = (flow[0].1 - flow[4].1) / (flow[0].0 - flow[4].0) / 2f64.log10();
        println!("{method:?}: error against the flow falls as h^{slope:.3}");
        error_series.push(Series { name: format!("{method:?} vs flow"), points: flow });
        error_series.push(Series { name: format!("{method:?} vs modified"), points: modified });
    }
    // One trajectory at a large step, where the flow is visibly off and the modified equation is not.
    let h = 0.125;
    let steps = (horizon / h) as usize * 2;
    let xs = iterates(backend, Method::HeavyBall, lambda, h, &q, &u0, steps)?;
    let fine: Vec<f64> = (0..=200).map(|i| i as f64 * steps as f64 * h / 200.0).collect();
    let alpha = Method::HeavyBall.alpha(lambda);
    let trajectory = Chart {
        title: format!("Heavy ball, h = {h}: u₁(t)"),
        x_label: "t".into(),
        y_label: "u₁".into(),
        series: vec![
            Series {
                name: "iterates".into(),
                points: xs.iter().enumerate().map(|(n, x)| (n as f64 * h, x[0])).collect(),
            },
            Series {
                name: "gradient flow".into(),
                points: fine.iter().map(|&t| (t, gradient_flow(1.0, lambda, 1.0, t))).collect(),
            },
            Series {
                name: "modified equation".into(),
                points: fine.iter().map(|&t| (t, modified_equation(1.0, lambda, alpha, h, 1.0, t))).collect(),
            },
        ],
        log_y: false,
        y_range: None,
        scatter: false,
    };
    let chart = Chart {
        title: format!("Error at t = {horizon} (log₁₀)"),
        x_label: "log₂ h".into(),
        y_label: "log₁₀ error".into(),
        series: error_series,
        log_y: false,
        y_range: None,
        scatter: false,
    };
    gradflow::plot::write(std::path::Path::new(&out), &svg(&[chart, trajectory]))?;
    println!("wrote {out}");
    Ok(())
}
