//! `train --plot`: the training curves, with `--track-sharpness` the sharpness against 2/η, and
//! for 2-feature data the decision regions.

use super::metrics::Curve;
use super::sharpness::{Measured, STEPS};
use crate::error::Result;

/// A chart's series with the validation split's, when the run has one.
fn with_validation(mut series: Vec<crate::plot::Series>, validation: crate::plot::Series) -> Vec<crate::plot::Series> {
    if !validation.points.is_empty() {
        series.push(validation);
    }
    series
}

/// Training curves, the sharpness when `measured` has any, and for 2-feature data the decision
/// regions with the points.
pub fn write(
    path: &std::path::Path,
    curves: &[Curve],
    measured: &[Measured],
    net: &mut dyn crate::exec::Network,
    train_set: &crate::data::Dataset,
    test_set: &crate::data::Dataset,
    standardized: bool,
) -> Result<()> {
    use crate::plot::{svg_with_regions, Chart, Regions, Series};
    let series = |name: &str, f: &dyn Fn(&Curve) -> f64| Series {
        name: name.into(),
        points: curves.iter().map(|c| (c.0, f(c))).filter(|p| p.1.is_finite()).collect(),
    };
    let mut charts = vec![
        Chart {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss (log scale)".into(),
            series: with_validation(
                vec![series("train", &|c| c.1), series("test", &|c| c.3)],
                series("validation", &|c| c.5),
            ),
            log_y: true,
            y_range: None,
            scatter: false,
        },
        Chart {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy (%)".into(),
            series: with_validation(
                vec![series("train", &|c| 100.0 * c.2), series("test", &|c| 100.0 * c.4)],
                series("validation", &|c| 100.0 * c.6),
            ),
            log_y: false,
            y_range: Some((0.0, 100.0)),
            scatter: false,
        },
    ];
    if train_set.is_regression() {
        // No accuracy for real targets: the RMSE (√ of the MSE loss) in its place.
        charts[1] = Chart {
            title: "RMSE".into(),
            x_label: "epoch".into(),
            y_label: "RMSE (log scale)".into(),
            series: with_validation(
                vec![series("train", &|c| c.1.sqrt()), series("test", &|c| c.3.sqrt())],
                series("validation", &|c| c.5.sqrt()),
            ),
            log_y: true,
            y_range: None,
            scatter: false,
        };
    }
    if !measured.is_empty() {
        charts.push(sharpness_chart(measured));
    }
    // Decision regions are argmax classes: none for regression.
    let regions = if train_set.d == 2 && !train_set.is_regression() {
        let all: Vec<&[f32]> = train_set.x.chunks(2).chain(test_set.x.chunks(2)).collect();
        let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &all {
            (xlo, xhi) = (xlo.min(p[0] as f64), xhi.max(p[0] as f64));
            (ylo, yhi) = (ylo.min(p[1] as f64), yhi.max(p[1] as f64));
        }
        let (mx, my) = (0.05 * (xhi - xlo).max(1e-6), 0.05 * (yhi - ylo).max(1e-6));
        let bounds = (xlo - mx, xhi + mx, ylo - my, yhi + my);
        let n = 120;
        let mut grid = Vec::with_capacity(2 * n * n);
        for row in 0..n {
            for col in 0..n {
                grid.push((bounds.0 + (col as f64 + 0.5) / n as f64 * (bounds.1 - bounds.0)) as f32);
                grid.push((bounds.2 + (row as f64 + 0.5) / n as f64 * (bounds.3 - bounds.2)) as f32);
            }
        }
        let logits = net.predict(&grid, n * n)?;
        let c = net.model().outputs();
        let classes = logits.chunks(c).map(crate::reference::argmax).collect();
        let labels = train_set.labels.iter().chain(&test_set.labels);
        let points = all.iter().zip(labels).map(|(p, &l)| (p[0] as f64, p[1] as f64, l as usize)).collect();
        Some(Regions {
            title: "decision regions".into(),
            bounds,
            resolution: n,
            classes,
            points,
            class_names: (0..c).map(|k| train_set.class_name(k)).collect(),
            axis_names: axis_names(train_set, standardized),
        })
    } else {
        None
    };
    crate::plot::write(path, &svg_with_regions(&charts, regions.as_ref()))
}

/// The axes of the decision regions: the features' names from the header (else "feature k"),
/// marked when the model saw them standardised, as they are drawn.
fn axis_names(data: &crate::data::Dataset, standardized: bool) -> (String, String) {
    let (a, b) = match data.feature_names.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        _ => ("feature 1".to_string(), "feature 2".to_string()),
    };
    let mark = |name: String| if standardized { format!("{name} (standardised)") } else { name };
    (mark(a), mark(b))
}

/// λ_max against the step, and the stability threshold 2/η of gradient descent on a quadratic
/// (a line that moves with a learning-rate schedule).
fn sharpness_chart(measured: &[Measured]) -> crate::plot::Chart {
    let series = |name: String, f: &dyn Fn(&Measured) -> f64| crate::plot::Series {
        name,
        points: measured.iter().map(|m| (m.step as f64, f(m))).filter(|p| p.1.is_finite()).collect(),
    };
    crate::plot::Chart {
        title: "sharpness".into(),
        x_label: "step".into(),
        y_label: "largest Hessian eigenvalue".into(),
        series: vec![
            series(format!("λmax (Lanczos, {STEPS} steps)"), &|m| m.lambda_max),
            series("2/η".into(), &|m| m.two_over_lr),
        ],
        log_y: false,
        y_range: None,
        scatter: false,
    }
}
