//! Optimizers side by side on the course's classic surfaces, through the same fused update code
//! as training (`course::descent`): ill-conditioned quadratics (κ = 10, 100), Rosenbrock from
//! (−1.2, 1), the saddle 5x² − y² started near its stable manifold, the monkey saddle, and the
//! least-squares line fit with online, minibatch and full-batch gradients. Prints where each run
//! ends and draws the trajectories over the level sets, with the loss curves.
//!
//!     cargo run --release --example surfaces [-- OUT.svg] [--cpu]     (default docs/surfaces.svg)

use gradflow::course::descent::{run_optimizer, run_optimizer_within, Backend};
use gradflow::course::surfaces::{LineFit, Surface};
use gradflow::error::Result;
use gradflow::optim::{Optimizer, OptimizerSetup};
use gradflow::plot::{svg_grid, Chart, Field, Panel, Series};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The six optimizers with their step sizes for a surface whose largest curvature is about `l`.
fn optimizers(l: f64) -> Vec<(&'static str, Optimizer)> {
    let t = |s: String| -> Optimizer { toml::from_str(&s).expect("a valid optimizer") };
    let h = 1.0 / l;
    vec![
        ("SGD", t(format!("type='sgd'\nlr={h}"))),
        ("heavy ball", t(format!("type='sgd'\nlr={h}\nmomentum={{ value = 0.9, form = 'heavy-ball' }}"))),
        ("Nesterov", t(format!("type='sgd'\nlr={h}\nmomentum={{ value = 0.9, form = 'nesterov-lookahead' }}"))),
        ("AdaGrad", t("type='adagrad'\nlr=0.3".into())),
        ("RMSprop", t("type='rmsprop'\nlr=0.01".into())),
        ("Adam", t("type='adam'\nlr=0.05".into())),
    ]
}

fn field(
    title: String,
    bounds: (f64, f64, f64, f64),
    log: bool,
    f: impl Fn(f64, f64) -> f64,
    paths: Vec<Series>,
) -> Panel {
    let n = 80;
    let (xlo, xhi, ylo, yhi) = bounds;
    let values = (0..n * n)
        .map(|i| {
            let (c, r) = ((i % n) as f64 + 0.5, (i / n) as f64 + 0.5);
            f(xlo + (xhi - xlo) * c / n as f64, ylo + (yhi - ylo) * r / n as f64)
        })
        .collect();
    Panel::Field(Field { title, bounds, resolution: n, values, measure: "f".into(), log, paths })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "docs/surfaces.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let gpu = if args.iter().any(|a| a == "--cpu") { None } else { Some(gradflow::kernels::Gpu::new(None)?) };
    let backend = gpu.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    println!("on the {}", backend.name());
    println!("{:<36} {:<22} {:>6} {:>24} {:>12}", "surface", "optimizer", "steps", "end", "f(end)");
    let cases = [
        (Surface::Quadratic { kappa: 10.0 }, 10.0, 100),
        (Surface::Quadratic { kappa: 100.0 }, 100.0, 300),
        (Surface::Rosenbrock, 1000.0, 3000),
        (Surface::Saddle, 20.0, 60),
        (Surface::MonkeySaddle, 20.0, 100),
    ];
    let mut panels = Vec::new();
    for (surface, l, steps) in cases {
        let (mut paths, mut curves) = (Vec::new(), Vec::new());
        for (name, opt) in optimizers(l) {
            let setup: OptimizerSetup = opt.into();
            // Runs that leave far past the drawn box (down the saddles' unbounded valleys) stop.
            let xs = run_optimizer_within(backend, &setup, &surface.start(), steps, 10.0, |p| {
                surface.gradient(p[0], p[1]).to_vec()
            })?;
            let steps = xs.len() - 1;
            let end = xs.last().cloned().unwrap_or_default();
            println!(
                "{:<36} {name:<22} {steps:>6} {:>24} {:>12.4e}",
                surface.name(),
                format!("({:.4}, {:.4})", end[0], end[1]),
                surface.value(end[0], end[1])
            );
            paths.push(Series { name: name.into(), points: xs.iter().map(|p| (p[0], p[1])).collect() });
            curves.push(Series {
                name: name.into(),
                points: xs.iter().enumerate().map(|(k, p)| (k as f64, surface.value(p[0], p[1]))).collect(),
            });
        }
        let nonnegative = matches!(surface, Surface::Quadratic { .. } | Surface::Rosenbrock);
        panels.push(field(
            surface.name(),
            surface.bounds(),
            surface == Surface::Rosenbrock,
            |x, y| surface.value(x, y),
            paths,
        ));
        panels.push(Panel::Chart(Chart {
            title: format!("f along the runs: {}", surface.name()),
            x_label: "step".into(),
            y_label: "f".into(),
            series: curves,
            log_y: nonnegative,
            y_range: None,
            scatter: false,
        }));
    }

    // The least-squares line: SGD on one point drawn with replacement, on batches of 10, and on
    // all 50 (gradient descent), all with step 0.1, from (a, b) = (0, 0).
    let fit = LineFit::new(50, 0.1, 3);
    let all: Vec<usize> = (0..50).collect();
    let (mut paths, mut curves) = (Vec::new(), Vec::new());
    for (name, batch) in [("online SGD (1 point)", 1usize), ("minibatch SGD (10)", 10), ("full-batch GD (50)", 50)] {
        let mut rng = StdRng::seed_from_u64(7);
        let setup: OptimizerSetup = Optimizer::Sgd(gradflow::optim::Sgd::new(0.1)).into();
        let xs = run_optimizer(backend, &setup, &[0.0, 0.0], 500, |p| {
            let rows: Vec<usize> =
                if batch == 50 { all.clone() } else { (0..batch).map(|_| rng.random_range(0..50)).collect() };
            fit.gradient(p[0], p[1], &rows).to_vec()
        })?;
        let end = xs.last().cloned().unwrap_or_default();
        println!(
            "{:<36} {name:<22} {:>6} {:>24} {:>12.4e}",
            "least-squares line, 50 points",
            500,
            format!("({:.4}, {:.4})", end[0], end[1]),
            fit.loss(end[0], end[1], &all)
        );
        paths.push(Series { name: name.into(), points: xs.iter().map(|p| (p[0], p[1])).collect() });
        curves.push(Series {
            name: name.into(),
            points: xs.iter().enumerate().map(|(k, p)| (k as f64, fit.loss(p[0], p[1], &all))).collect(),
        });
    }
    let (a, b) = fit.solution();
    println!("least-squares solution (normal equations): ({a:.4}, {b:.4}), loss {:.4e}", fit.loss(a, b, &all));
    panels.push(field(
        "least squares: slope a, intercept b".into(),
        (-0.5, 3.5, -0.5, 2.5),
        false,
        |x, y| fit.loss(x, y, &all),
        paths,
    ));
    panels.push(Panel::Chart(Chart {
        title: "mean squared residual".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: curves,
        log_y: true,
        y_range: None,
        scatter: false,
    }));
    gradflow::plot::write(std::path::Path::new(&out), &svg_grid(&panels, 2))?;
    println!("wrote {out}");
    Ok(())
}
