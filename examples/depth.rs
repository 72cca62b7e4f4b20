//! Why do some architectures train better? A 30-layer plain MLP, the same depth with residual
//! blocks, and the plain one with batch norm, trained with the same budget (optimizer, epochs,
//! batches, seed) on digits. Prints the curves and the gradient reaching the first layer at
//! initialisation, and writes an SVG plot.
//!
//!     cargo run --release --example depth [-- OUT.svg] [--cpu]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::error::Result;
use gradflow::plot::{svg, Chart, Series};
use gradflow::spec::Model;
use gradflow::train::{self, Placement};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).map_or(PathBuf::from("depth.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let placement = Placement { cpu: args.iter().any(|a| a == "--cpu"), ..Default::default() };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let runs = [
        ("plain", "deep_plain.toml"),
        ("residual", "deep_residual.toml"),
        ("plain + batch norm", "deep_plain_bn.toml"),
    ];
    let (mut loss_curves, mut acc_curves) = (Vec::new(), Vec::new());
    println!("30 Linear layers each, same optimizer, epochs, batches and seed");
    println!("{:<20} {:>14} {:>12} {:>12} {:>10}", "model", "|∇W₀| epoch 1", "train loss", "test acc", "seconds");
    for (name, file) in runs {
        let config = Config::load(&root.join(file))?;
        let (train_set, test_set) = train::load_data(&config, &root.join(file))?;
        let model = Model::new(train_set.d, config.model.layers.clone())?;
        let max_rows = train::max_rows(&config, train_set.n);
        let mut net = train::build_network(&config, model, &placement, max_rows)?;
        net.set_train_data(&train_set)?;
        let mut batcher = train::batcher(&config, train_set.n)?;
        let start = std::time::Instant::now();
        let (mut losses, mut accs) = (Vec::new(), Vec::new());
        let mut first_grad = f64::NAN;
        for epoch in 1..=config.train.epochs {
            let report = train::train_epoch(net.as_mut(), &mut batcher, epoch, |_| {})?;
            if epoch == 1 {
                // The last step of epoch 1 is still near initialisation for the plain net; the
                // first layer's weight gradient shows how much signal reaches it.
                let g = net.grads()?;
                let w0 = &net.model().params[0];
                first_grad = g[w0.offset..w0.offset + w0.len].iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            }
            let (_, acc) = train::evaluate(net.as_mut(), &test_set, config.model.loss)?;
            losses.push((epoch as f64, report.train_loss as f64));
            accs.push((epoch as f64, 100.0 * acc as f64));
        }
        let secs = start.elapsed().as_secs_f64();
        let (last_loss, last_acc) = (losses.last().map_or(f64::NAN, |p| p.1), accs.last().map_or(f64::NAN, |p| p.1));
        println!("{name:<20} {first_grad:>14.3e} {last_loss:>12.4} {last_acc:>11.1}% {secs:>10.1}");
        for (epoch, ((_, l), (_, a))) in losses.iter().zip(&accs).enumerate() {
            if epoch % 5 == 4 || epoch == 0 {
                println!("    epoch {:>2}: train loss {l:.4}, test accuracy {a:.1}%", epoch + 1);
            }
        }
        loss_curves.push(Series { name: name.to_string(), points: losses });
        acc_curves.push(Series { name: name.to_string(), points: accs });
    }
    let charts = [
        Chart {
            title: "training loss".into(),
            x_label: "epoch".into(),
            y_label: "cross-entropy (log scale)".into(),
            series: loss_curves,
            log_y: true,
            y_range: None,
            scatter: false,
        },
        Chart {
            title: "test accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy (%)".into(),
            series: acc_curves,
            log_y: false,
            y_range: Some((0.0, 100.0)),
            scatter: false,
        },
    ];
    gradflow::plot::write(std::path::Path::new(&out), &svg(&charts))?;
    println!("plot written to {}", out.display());
    Ok(())
}
