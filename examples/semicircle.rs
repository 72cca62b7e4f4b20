//! The random-matrix baseline of the course's saddle-point picture: the eigenvalues of a
//! symmetric Gaussian matrix (A + Aᵀ)/√(2n), estimated by stochastic Lanczos quadrature (the same
//! code `gradflow` uses for Hessians), against Wigner's semicircle √(4 − x²)/(2π). Half of the
//! eigenvalues are negative: a "random critical point" is a saddle of index ½.
//!
//! cargo run --release --example semicircle -- [n = 2000] [out = docs/semicircle.svg]

use gradflow::plot::{svg, Chart, Series};
use gradflow::spectrum::{gaussian_symmetric, lanczos, semicircle_density, stochastic_lanczos_quadrature};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let out = args.next().unwrap_or_else(|| "docs/semicircle.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let (probes, steps, sigma) = (20, 80, 0.1);
    let start = std::time::Instant::now();
    let mut h = gaussian_symmetric(n, 1);
    let density = stochastic_lanczos_quadrature(&mut h, probes, steps, 2)?;
    let (low, high) = lanczos(&mut h, &vec![1.0; n], steps)?.extremes(1);
    println!(
        "(A + Aᵀ)/√(2n), n = {n}: SLQ with {probes} probes × {steps} Lanczos steps in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("  second moment {:.4} (semicircle: 1)", density.moment(2));
    println!("  fourth moment {:.4} (semicircle: 2)", density.moment(4));
    println!("  index (fraction of negative eigenvalues) {:.3} (semicircle: 0.5)", density.fraction_below(0.0));
    println!("  extreme eigenvalues {:.4}, {:.4} (semicircle: ±2)", low[0], high[0]);

    let xs: Vec<f64> = (0..=300).map(|i| -2.6 + 5.2 * i as f64 / 300.0).collect();
    let estimate = density.smoothed(&xs, sigma);
    let chart = Chart {
        title: format!("Eigenvalue density, n = {n}"),
        x_label: "eigenvalue".into(),
        y_label: "density".into(),
        series: vec![
            Series {
                name: "semicircle √(4−x²)/2π".into(),
                points: xs.iter().map(|&x| (x, semicircle_density(x))).collect(),
            },
            Series {
                name: format!("SLQ ({probes} probes, σ = {sigma})"),
                points: xs.iter().copied().zip(estimate).collect(),
            },
        ],
        log_y: false,
        y_range: Some((0.0, 0.4)),
        scatter: false,
    };
    gradflow::plot::write(std::path::Path::new(&out), &svg(&[chart]))?;
    println!("wrote {out}");
    Ok(())
}
