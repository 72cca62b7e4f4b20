//! Saddle points in a small network (Dauphin et al., NIPS 2014), with exact Hessians:
//! 1. Index against loss: along a full-batch gradient-descent run of a 64-3-10 tanh network on
//!    200 digits rows (235 parameters), the loss and the index (fraction of negative Hessian
//!    eigenvalues) at checkpoints, and the critical point Levenberg–Marquardt on ½‖∇L‖² finds
//!    near each, with its loss and index.
//! 2. Newton, gradient descent and saddle-free Newton from 1e-3 off a saddle of a 27-parameter
//!    network: Newton is drawn to it, gradient descent is slow to leave, saddle-free Newton
//!    leaves fastest.
//! 3. The same three on 5x² − y² from (1, 0.01), near the stable manifold.
//!
//!     cargo run --release --example saddles [-- OUT.svg]     (default docs/saddles.svg)

use std::path::Path;

use gradflow::course::critical::{
    eigen_step, find_critical_point, grad_norm_and_loss, index_of, newton_step, saddle_free_newton_step, spectrum,
    take_step,
};
use gradflow::course::surfaces::Surface;
use gradflow::data::Dataset;
use gradflow::error::Result;
use gradflow::exec::hessian::Hessian;
use gradflow::plot::{svg_grid, Chart, Field, Panel, Series};
use gradflow::spec::{LayerSpec, Loss, Model};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn linear(out: usize) -> LayerSpec {
    LayerSpec::Linear { out, bias: true }
}

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "docs/saddles.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;

    // 1. Index against loss along a run on digits.
    let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml"));
    let (full, _) = gradflow::train::load_data(&gradflow::config::Config::load(file)?, file)?;
    let rows = 200;
    let data = Dataset::new(full.x[..rows * 64].to_vec(), full.labels[..rows].to_vec(), 64, 10, "digits subset")?;
    let model = Model::new(64, vec![linear(3), LayerSpec::Tanh, linear(10)])?;
    let mut h = Hessian::new(model.clone(), Loss::CrossEntropy, &model.init_params(1), &data, rows)?;
    let n = h.dim();
    println!("1. a 64-3-10 tanh network ({n} parameters) on {rows} digits rows, full-batch GD with step 0.5");
    println!("{:>6} {:>9} {:>7}   {:>13} {:>9} {:>7}", "step", "loss", "index", "critical loss", "‖∇L‖", "index");
    let (mut run, mut found) = (Vec::new(), Vec::new());
    let mut done = 0;
    for at in [0usize, 3, 10, 30, 100, 300, 1000] {
        while done < at {
            let g = h.evaluate(&vec![0.0; n])?.grad;
            take_step(&mut h, &g.iter().map(|v| -0.5 * v).collect::<Vec<_>>())?;
            done += 1;
        }
        let here = h.point();
        let (_, loss) = grad_norm_and_loss(&mut h)?;
        let index = index_of(&spectrum(&mut h)?.0);
        let c = find_critical_point(&mut h, 60, 1e-9)?;
        println!("{at:>6} {loss:>9.4} {index:>7.4}   {:>13.4} {:>9.1e} {:>7.4}", c.loss, c.grad_norm, c.index);
        run.push((loss, index));
        found.push((c.loss, c.index));
        h.set_point(&here)?;
    }

    // 2. Newton against saddle-free Newton next to a saddle of a 27-parameter network.
    let mut r = StdRng::seed_from_u64(1);
    let m = 30;
    let x: Vec<f32> = (0..m * 4).map(|_| r.random_range(-1.0..1.0)).collect();
    let labels: Vec<u32> = (0..m).map(|_| r.random_range(0..3)).collect();
    let small = Dataset::new(x, labels, 4, 3, "random points")?;
    let tiny = Model::new(4, vec![linear(3), LayerSpec::Tanh, linear(3)])?;
    let mut p = tiny.init_params(3);
    p.iter_mut().for_each(|v| *v *= 3.0);
    let mut h = Hessian::new(tiny, Loss::CrossEntropy, &p, &small, m)?;
    let saddle = find_critical_point(&mut h, 200, 1e-10)?;
    println!(
        "\n2. a saddle of a 4-3-3 tanh network (27 parameters, 30 random points): loss {:.4}, ‖∇L‖ {:.1e}, index {:.3}",
        saddle.loss, saddle.grad_norm, saddle.index
    );
    let start: Vec<f64> =
        saddle.point.iter().enumerate().map(|(i, v)| v + 1e-3 * (((i * 7919) % 13) as f64 / 6.0 - 1.0)).collect();
    let mut curves = Vec::new();
    for method in ["Newton", "gradient descent (0.5)", "saddle-free Newton"] {
        h.set_point(&start)?;
        let mut points = vec![(0.0, grad_norm_and_loss(&mut h)?.1)];
        for k in 1..=30 {
            let step = match method {
                "Newton" => newton_step(&mut h, 1e-6)?,
                "saddle-free Newton" => saddle_free_newton_step(&mut h, 27, 0.1)?,
                _ => h.evaluate(&vec![0.0; 27])?.grad.iter().map(|g| -0.5 * g).collect(),
            };
            take_step(&mut h, &step)?;
            points.push((k as f64, grad_norm_and_loss(&mut h)?.1));
        }
        let (g, loss) = grad_norm_and_loss(&mut h)?;
        println!("   {method:<24} after 30 steps: loss {loss:.4}, ‖∇L‖ {g:.1e}");
        curves.push(Series { name: method.into(), points });
    }

    // 3. On the explicit saddle 5x² − y².
    let surface = Surface::Saddle;
    println!("\n3. 5x² − y² from (1, 0.01):");
    let mut paths = Vec::new();
    for method in ["Newton", "gradient descent (0.05)", "saddle-free Newton"] {
        let mut p = [1.0f64, 0.01];
        let mut path = vec![(p[0], p[1])];
        for _ in 0..8 {
            let g = surface.gradient(p[0], p[1]);
            let d = if method.starts_with("gradient") {
                vec![-0.05 * g[0], -0.05 * g[1]]
            } else {
                let hm = surface.hessian(p[0], p[1]);
                let (values, vectors) =
                    gradflow::spectrum::symmetric_eigen(&[hm[0][0], hm[0][1], hm[1][0], hm[1][1]], 2);
                eigen_step(&g, &values, &vectors, 1e-12, method == "saddle-free Newton")
            };
            p = [p[0] + d[0], p[1] + d[1]];
            path.push((p[0], p[1]));
        }
        println!("   {method:<24} after 8 steps: ({:.4}, {:.4})", p[0], p[1]);
        paths.push(Series { name: method.into(), points: path });
    }
    let n = 80;
    let (xlo, xhi, ylo, yhi) = (-1.2, 1.2, -1.2, 3.0);
    let values = (0..n * n)
        .map(|i| {
            let (c, r) = ((i % n) as f64 + 0.5, (i / n) as f64 + 0.5);
            surface.value(xlo + (xhi - xlo) * c / n as f64, ylo + (yhi - ylo) * r / n as f64)
        })
        .collect();
    let field = Field {
        title: "5x² − y² from (1, 0.01)".into(),
        bounds: (xlo, xhi, ylo, yhi),
        resolution: n,
        values,
        measure: "f".into(),
        log: false,
        paths,
    };

    let scatter = Chart {
        title: "Index against loss (64-3-10 on digits)".into(),
        x_label: "loss".into(),
        y_label: "index".into(),
        series: vec![
            Series { name: "points of the GD run".into(), points: run },
            Series { name: "critical points found".into(), points: found },
        ],
        log_y: false,
        y_range: None,
        scatter: true,
    };
    let escape = Chart {
        title: "Leaving a saddle (4-3-3)".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: curves,
        log_y: false,
        y_range: None,
        scatter: false,
    };
    gradflow::plot::write(
        std::path::Path::new(&out),
        &svg_grid(&[Panel::Chart(scatter), Panel::Chart(escape), Panel::Field(field)], 3),
    )?;
    println!("wrote {out}");
    Ok(())
}
