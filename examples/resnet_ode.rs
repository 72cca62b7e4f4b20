//! ResNets as forward Euler. (1) L residual blocks x + h·tanh(W(t)x + b(t)), h = T/L, built in
//! the engine, against the ODE's RK4 solution: the error and its log-log slope. (2) Residual nets
//! of L = 4, 16, 64 blocks at the same T, trained on the spirals (CPU): final loss and the size of
//! each block's step ‖x_{k+1} − x_k‖. Writes a plot (.svg or .png).
//!
//!     cargo run --release --example resnet_ode [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::resnet_depth::train_depth;
use gradflow::course::resnet_ode::{convergence, loglog_slope, Field};
use gradflow::error::Result;
use gradflow::plot::{svg, Chart, Series};
use gradflow::say;

const HORIZON: f64 = 2.0;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("resnet_ode.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(&out, "the output file")?;
    let (error_chart, slope) = error_table()?;
    say!("fitted log-log slope over L = 32..256: {slope:.4}");
    let (steps_chart, loss_chart) = depth_sweep()?;
    gradflow::plot::write(&out, &svg(&[error_chart, steps_chart, loss_chart]))?;
    say!("plot written to {}", out.display());
    Ok(())
}

/// The convergence table on a seeded 4-D field from three starting points.
fn error_table() -> Result<(Chart, f64)> {
    let field = Field::seeded(4, 7);
    let x0 = [1.0, -0.5, 0.3, 0.8, -1.2, 0.4, 0.9, -0.1, 0.2, 0.7, -0.6, -1.0];
    let rows = convergence(&field, &x0, HORIZON, &[4, 8, 16, 32, 64, 128, 256])?;
    say!(
        "Euler through L residual blocks vs RK4 ({} steps), T = {HORIZON}",
        gradflow::course::resnet_ode::REFERENCE_STEPS
    );
    say!("{:>5} {:>9} {:>12} {:>16}", "L", "h", "‖x_L − x(T)‖", "ratio to 2L");
    for (i, r) in rows.iter().enumerate() {
        let ratio = rows.get(i + 1).map_or(String::new(), |n| format!("{:.3}", r.error / n.error));
        say!("{:>5} {:>9.5} {:>12.4e} {:>16}", r.blocks, r.h, r.error, ratio);
    }
    let slope = loglog_slope(&rows[3..]);
    let last = rows[rows.len() - 1];
    let points = |f: &dyn Fn(f64) -> f64| rows.iter().map(|r| ((r.blocks as f64).log2(), f(r.h))).collect();
    let chart = Chart {
        title: "error of L Euler blocks vs the ODE".into(),
        x_label: "log₂ L (h = T/L)".into(),
        y_label: "‖x_L − x(T)‖ (log scale)".into(),
        series: vec![
            Series {
                name: "engine ResNet".into(),
                points: points(&|h| rows.iter().find(|r| r.h == h).map_or(0.0, |r| r.error)),
            },
            Series { name: "slope 1 through L=256".into(), points: points(&|h| last.error * h / last.h) },
        ],
        log_y: true,
        y_range: None,
        scatter: false,
    };
    Ok((chart, slope))
}

/// Trains L = 4, 16, 64 blocks at T = HORIZON on the spirals' training split.
fn depth_sweep() -> Result<(Chart, Chart)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/spirals_small.toml");
    let config = Config::load(&file)?;
    let (train_set, _) = gradflow::train::load_data(&config, &file)?;
    let (width, epochs, lr) = (8, 40, 0.01);
    say!(
        "\nspirals ({} rows), lift to {width}, L blocks at T = {HORIZON}, Adam lr {lr}, {epochs} epochs, CPU",
        train_set.n
    );
    say!(
        "{:>4} {:>8} {:>10} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "L",
        "h",
        "init step",
        "loss ep 1",
        "final loss",
        "mean step",
        "max step",
        "max/h",
        "Σ step"
    );
    let (mut steps, mut losses) = (Vec::new(), Vec::new());
    for blocks in [4, 16, 64] {
        let run = train_depth(&train_set, width, blocks, HORIZON, epochs, lr)?;
        let h = HORIZON / blocks as f64;
        let mean = run.steps.iter().sum::<f64>() / blocks as f64;
        let max = run.steps.iter().cloned().fold(0.0, f64::max);
        say!(
            "{blocks:>4} {h:>8.4} {:>10.4} {:>11.4} {:>11.4} {mean:>11.4} {max:>11.4} {:>9.2} {:>9.2}",
            run.init_steps.iter().sum::<f64>() / blocks as f64,
            run.losses[0],
            run.losses[epochs - 1],
            max / h,
            // The hidden path's length: an ODE limit would hold it fixed as L grows.
            mean * blocks as f64
        );
        let name = format!("L = {blocks}");
        // Block k sits at depth time t_k = k·h, so the three depths share an axis.
        steps.push(Series {
            name: name.clone(),
            points: run.steps.iter().enumerate().map(|(k, &s)| (k as f64 * h, s)).collect(),
        });
        losses
            .push(Series { name, points: run.losses.iter().enumerate().map(|(e, &l)| (e as f64 + 1.0, l)).collect() });
    }
    let chart = |title: &str, x: &str, y: &str, series| Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        log_y: true,
        y_range: None,
        scatter: false,
    };
    Ok((
        chart("trained: per-block step", "depth time t_k = k·T/L", "mean ‖x_{k+1} − x_k‖ (log scale)", steps),
        chart("trained: training loss", "epoch", "cross-entropy (log scale)", losses),
    ))
}
