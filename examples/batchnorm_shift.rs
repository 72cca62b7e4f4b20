//! Batch norm, before and after an SGD step (Ioffe & Szegedy 2015): an 8-layer tanh MLP on the
//! digits with and without BatchNorm, from the same weight matrices, on the CPU reference.
//! (a) one hidden unit's pre-activations over a batch before and after one SGD step; (b) every
//! layer's shift of its units' mean and variance on a fixed probe batch over training; (c) a
//! learning-rate sweep of both. Writes a plot (.svg or .png).
//!
//!     cargo run --release --example batchnorm_shift [-- OUT.svg]

use std::path::{Path, PathBuf};

use gradflow::config::Config;
use gradflow::course::batchnorm_shift::{
    column, column_stats, final_loss, full_loss, histogram, preactivations, range_of, sgd_net, shift_over_training,
    Histogram, Net,
};
use gradflow::data::Dataset;
use gradflow::error::Result;
use gradflow::exec::Network;
use gradflow::plot::{svg_grid, Chart, Panel, Series};
use gradflow::say;

const BATCH: usize = 64;
/// The learning rate of (a) and (b): one both nets train at (see the sweep).
const LR: f64 = 0.3;
const STEPS: usize = 300;
/// A quarter of the loss of a uniform guess over 10 classes, ln(10)/4: "it trains".
const TRAINED: f64 = std::f64::consts::LN_10 / 4.0;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).map_or(PathBuf::from("batchnorm_shift.svg"), PathBuf::from);
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(&out, "the output file")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/digits.toml");
    let (data, _) = gradflow::train::load_data(&Config::load(&file)?, &file)?;
    let net = Net { inputs: data.d, width: 32, depth: 8, classes: data.num_classes };
    say!(
        "digits ({} training rows), {} tanh layers of {}, plain SGD, batches of {BATCH}, CPU",
        data.n,
        net.depth,
        net.width
    );
    let mut charts = one_step(&net, &data)?;
    charts.extend(covariate_shift(&net, &data)?);
    charts.push(lr_sweep(&net, &data)?);
    // Four panels a row: eleven side by side would be 8,000 px wide.
    let panels: Vec<Panel> = charts.into_iter().map(Panel::Chart).collect();
    gradflow::plot::write(&out, &svg_grid(&panels, 4))?;
    say!("plot written to {}", out.display());
    Ok(())
}

/// A histogram as its outline: up and across each bin.
fn outline(name: &str, h: &Histogram) -> Series {
    let mut points = vec![(h.edges[0], 0.0)];
    for (i, &c) in h.counts.iter().enumerate() {
        points.extend([(h.edges[i], c as f64), (h.edges[i + 1], c as f64)]);
    }
    points.push((h.edges[h.counts.len()], 0.0));
    Series { name: name.into(), points }
}

fn chart(title: &str, x: &str, y: &str, series: Vec<Series>, log_y: bool) -> Chart {
    Chart { title: title.into(), x_label: x.into(), y_label: y.into(), series, log_y, y_range: None, scatter: false }
}

/// (a) Unit 0 of the last hidden layer over the first batch, before and after one SGD step on it.
fn one_step(net: &Net, data: &Dataset) -> Result<Vec<Chart>> {
    let [plain, bn] = net.init(0)?;
    let batch: Vec<u32> = (0..BATCH as u32).collect();
    let x = &data.x[..BATCH * data.d];
    let layer = net.depth - 1;
    say!(
        "\n(a) unit 0 of hidden layer {}, over batch 0 ({BATCH} rows), before and after one SGD step (lr {LR})",
        net.depth
    );
    say!("{:<34} {:>9} {:>10} {:>9} {:>10}", "", "mean", "var", "mean'", "var'");
    let mut charts = Vec::new();
    for (name, params, bn_on) in [("no BN", plain, false), ("BN", bn, true)] {
        let model = net.model(bn_on)?;
        let mut sgd = sgd_net(&model, params.clone(), LR, data)?;
        sgd.train_step(&batch)?;
        let before = &preactivations(&model, &params, x, BATCH)?[layer];
        let after = &preactivations(&model, &sgd.params()?, x, BATCH)?[layer];
        let mut sites = vec![("Linear output", &before.linear, &after.linear)];
        if let (Some(b), Some(a)) = (&before.normalised, &after.normalised) {
            sites.push(("γx̂+β (tanh input)", b, a));
        }
        for (site, b, a) in sites {
            let (b, a) = (column(b, net.width, 0), column(a, net.width, 0));
            let (sb, sa) = (column_stats(&b, 1)[0], column_stats(&a, 1)[0]);
            say!("{:<34} {:>9.4} {:>10.3e} {:>9.4} {:>10.3e}", format!("{name}, {site}"), sb.0, sb.1, sa.0, sa.1);
            let (lo, hi) = range_of(&[&b, &a]);
            let (hb, ha) = (histogram(&b, lo, hi, 16)?, histogram(&a, lo, hi, 16)?);
            let title = format!("{name}: {site}, layer {} unit 0", net.depth);
            charts.push(chart(
                &title,
                "pre-activation",
                "rows",
                vec![outline("before", &hb), outline("after 1 step", &ha)],
                false,
            ));
        }
    }
    Ok(charts)
}

/// (b) Each layer's shift from step 0 on a fixed probe batch of 256 rows, over STEPS steps at LR.
fn covariate_shift(net: &Net, data: &Dataset) -> Result<Vec<Chart>> {
    let [plain, bn] = net.init(0)?;
    say!("\n(b) shift from step 0 on a fixed probe batch (256 rows), lr {LR}, {STEPS} steps; per layer, averaged over units:");
    say!("    mean shift = mean_j |μ_j − μ⁰_j|/σ⁰_j, var shift = mean_j |ln σ²_j/σ⁰²_j|, at the last step");
    let mut charts = Vec::new();
    let mut rows: Vec<String> = (1..=net.depth).map(|l| format!("{l:>5}")).collect();
    let mut header = format!("{:>5}", "layer");
    for (name, params, bn_on) in [("no BN", plain, false), ("BN", bn, true)] {
        let model = net.model(bn_on)?;
        let trace = shift_over_training(&model, params, data, 256, LR, BATCH, STEPS, 10, 0)?;
        say!("{name}: probe loss {:.4} → {:.4}", trace.probe_loss[0], trace.probe_loss[trace.probe_loss.len() - 1]);
        let mut sites = vec![("Linear output", &trace.linear)];
        if !trace.normalised.is_empty() {
            sites.push(("tanh input γx̂+β", &trace.normalised));
        }
        for (site, layers) in sites {
            header += &format!(" {:>22}", format!("{name} {}", if site.starts_with('L') { "Wx" } else { "γx̂+β" }));
            for (l, v) in layers.iter().enumerate() {
                let last = v[v.len() - 1];
                rows[l] += &format!(" {:>10.4} / {:>9.4}", last.0, last.1);
            }
            for (k, what, shift) in [(0, "mean shift (σ⁰ units)", "mean"), (1, "|ln var ratio|", "variance")] {
                let series = layers
                    .iter()
                    .enumerate()
                    .map(|(l, v)| Series {
                        name: format!("layer {}", l + 1),
                        points: trace
                            .steps
                            .iter()
                            .zip(v)
                            .map(|(&s, p)| (s as f64, if k == 0 { p.0 } else { p.1 }))
                            .collect(),
                    })
                    .collect();
                charts.push(chart(&format!("{name}: {site}, {shift} shift"), "step", what, series, false));
            }
        }
    }
    say!("{header}");
    say!("{:>5} {:>22} (each: mean shift / var shift)", "", "");
    rows.iter().for_each(|r| say!("{r}"));
    Ok(charts)
}

/// (c) Final training loss (whole training set, training mode) after STEPS steps, per lr.
fn lr_sweep(net: &Net, data: &Dataset) -> Result<Chart> {
    let lrs = [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];
    let seeds = [0, 1];
    say!("\n(c) final training loss after {STEPS} SGD steps (mean over seeds {seeds:?}); trains = below ln(10)/4 = {TRAINED:.3}");
    say!("{:>8} {:>12} {:>12}", "lr", "no BN", "BN");
    let mut finals = [Vec::new(), Vec::new()];
    for &lr in &lrs {
        for (k, bn_on) in [false, true].into_iter().enumerate() {
            let model = net.model(bn_on)?;
            let mut sum = 0.0;
            for &seed in &seeds {
                let params = net.init(seed)?[k].clone();
                let loss = final_loss(&model, params, data, lr, BATCH, STEPS, seed)?;
                sum += if loss.is_finite() { loss } else { f64::INFINITY };
            }
            finals[k].push(sum / seeds.len() as f64);
        }
        say!("{lr:>8} {:>12.4} {:>12.4}", finals[0][finals[0].len() - 1], finals[1][finals[1].len() - 1]);
    }
    let init = full_loss(&net.model(false)?, &net.init(0)?[0], data)?;
    say!("(lr 0 is the loss at initialisation: {init:.4} for the no-BN net, seed 0)");
    for (k, name) in ["no BN", "BN"].iter().enumerate() {
        let ok: Vec<f64> = lrs.iter().zip(&finals[k]).filter(|(_, &l)| l < TRAINED).map(|(&lr, _)| lr).collect();
        match (ok.first(), ok.last()) {
            (Some(lo), Some(hi)) => {
                say!("{name}: trains for lr in [{lo}, {hi}] of the grid ({} of {} values)", ok.len(), lrs.len())
            }
            _ => say!("{name}: no lr of the grid trains"),
        }
    }
    let series = ["no BN", "BN"]
        .iter()
        .zip(&finals)
        .map(|(name, f)| Series {
            name: name.to_string(),
            // Diverged runs (∞) are drawn at the top of the axis; lr 0 has no log.
            points: lrs.iter().zip(f).skip(1).map(|(&lr, &l)| (lr.log10(), l.min(1e3))).collect(),
        })
        .collect();
    Ok(chart(
        &format!("final training loss after {STEPS} steps"),
        "log₁₀ lr",
        "cross-entropy (log scale)",
        series,
        true,
    ))
}
