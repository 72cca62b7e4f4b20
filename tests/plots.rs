//! Plots as a reader gets them: the file format follows the extension (and any other is refused
//! before a command does its work), ten or more distinct series styles, bounded log ticks, level
//! sets with contours and a colour bar, and decision regions with a legend per class. Every
//! assertion reads the file written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gradflow::plot::{self, Chart, Field, Panel, Regions, Series};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-plots-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chart(series: Vec<Series>, log_y: bool) -> Chart {
    Chart { title: "t".into(), x_label: "x".into(), y_label: "y".into(), series, log_y, y_range: None, scatter: false }
}

fn line(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series { name: name.into(), points }
}

/// Every value of `attr="…"` on the elements of the file whose text contains `marker`.
fn attrs(svg: &str, marker: &str, attr: &str) -> Vec<String> {
    let key = format!(" {attr}=\"");
    svg.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| l.split_once(&key).and_then(|(_, rest)| rest.split_once('"')).map(|(v, _)| v.to_string()))
        .collect()
}

fn written(path: &Path, svg: &str) -> String {
    plot::write(path, svg).unwrap();
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_extension_picks_png_or_svg_in_any_case_and_nothing_else() {
    let d = dir("formats");
    let figure = plot::svg(&[chart(vec![line("a", vec![(0.0, 1.0), (1.0, 2.0)])], false)]);
    for name in ["f.png", "F.PNG"] {
        plot::write(&d.join(name), &figure).unwrap();
        let bytes = std::fs::read(d.join(name)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
    }
    for name in ["f.svg", "F.Svg"] {
        let text = written(&d.join(name), &figure);
        let opt = resvg::usvg::Options::default();
        resvg::usvg::Tree::from_str(&text, &opt).unwrap_or_else(|e| panic!("{name} parses as SVG: {e}"));
    }
    for name in ["f.pdf", "f"] {
        let e = plot::write(&d.join(name), &figure).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(".svg or .png"), "{e}");
        assert!(!d.join(name).exists(), "nothing written for {name}");
    }
}

#[test]
fn train_compare_and_sweep_refuse_an_unknown_plot_format_before_any_work() {
    use gradflow::cli::{self, CompareArgs, SweepArgs, TrainArgs};
    use std::sync::atomic::AtomicUsize;
    let d = dir("refused");
    let cfg = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/spirals.toml"));
    let (save, pdf) = (d.join("model.safetensors"), d.join("curves.pdf"));
    let cpu = gradflow::train::Placement { cpu: true, ..Default::default() };
    let args = TrainArgs {
        config: Some(cfg.clone()),
        save: Some(save.clone()),
        plot: Some(pdf.clone()),
        ..Default::default()
    };
    let e = cli::train::train_until(args, &cpu, false, &gradflow::dist::Single, &AtomicUsize::new(0)).unwrap_err();
    let expect =
        format!("{}: --plot: cannot write a plot as '.pdf'; give a file name ending in .svg or .png", pdf.display());
    assert_eq!(e.to_string(), expect);
    assert!(!save.exists(), "no training, so no checkpoint");
    let args = CompareArgs { config: Some(cfg.clone()), plot: Some(pdf.clone()), seeds: 1, ..Default::default() };
    assert_eq!(cli::compare::compare(&args, &cpu).unwrap_err().to_string(), expect);
    let args = SweepArgs {
        config: Some(cfg),
        plot: Some(pdf.clone()),
        seeds: 1,
        grid: vec!["optimizer.lr=[0.1]".into()],
        ..Default::default()
    };
    assert_eq!(cli::sweep::sweep(&args, &cpu).unwrap_err().to_string(), expect);
}

#[test]
fn twelve_series_get_twelve_distinct_styles_and_the_legend_is_outside_the_data() {
    let series = (0..12).map(|i| line(&format!("run {i}"), vec![(0.0, i as f64), (1.0, i as f64 + 1.0)])).collect();
    let svg = written(&dir("palette").join("p.svg"), &plot::svg(&[chart(series, false)]));
    let strokes = attrs(&svg, r#"class="series""#, "stroke");
    let dashes = attrs(&svg, r#"class="series""#, "stroke-dasharray");
    assert_eq!(strokes.len(), 12);
    assert!(strokes.iter().collect::<BTreeSet<_>>().len() >= 10, "ten colours at least: {strokes:?}");
    let pairs: BTreeSet<_> = strokes.iter().zip(&dashes).collect();
    assert_eq!(pairs.len(), 12, "colour/dash pairs: {pairs:?}");
    // The data frame is the rect with the dark stroke; every legend label starts right of it.
    let frame = svg.lines().find(|l| l.contains(r##"stroke="#333""##) && l.starts_with("<rect")).unwrap();
    let num = |l: &str, a: &str| attrs(l, "", a)[0].parse::<f64>().unwrap();
    let right = num(frame, "x") + num(frame, "width");
    let legend_x: Vec<f64> = svg
        .lines()
        .filter(|l| l.contains(r#"class="legend""#))
        .map(|l| num(&l[l.find("<text").unwrap()..], "x"))
        .collect();
    assert_eq!(legend_x.len(), 12);
    assert!(legend_x.iter().all(|&x| x > right), "legend at {legend_x:?}, data ends at {right}");
}

#[test]
fn a_log_axis_over_33_decades_labels_at_most_ten_ticks_that_do_not_overlap() {
    let points = vec![(0.0, 1e-8), (1.0, 1e25)];
    let svg = written(&dir("log").join("l.svg"), &plot::svg(&[chart(vec![line("loss", points)], true)]));
    // y tick labels are the right-aligned tick texts.
    let ys: Vec<f64> = svg
        .lines()
        .filter(|l| l.contains(r#"class="tick""#) && l.contains(r#"text-anchor="end""#))
        .map(|l| attrs(l, "", "y")[0].parse().unwrap())
        .collect();
    assert!((3..=10).contains(&ys.len()), "{} labels", ys.len());
    let mut sorted = ys.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(sorted.windows(2).all(|w| w[1] - w[0] >= 16.0), "labels closer than a line: {sorted:?}");
    // Every fifth decade: 1e-5, 1, …, 1e25.
    assert!(svg.contains(">1e-5<") && svg.contains(">1<") && svg.contains(">1e25<"), "decades labelled");
}

#[test]
fn a_level_set_has_contour_lines_and_a_colour_bar_with_values() {
    let n = 40;
    let values = (0..n * n).map(|i| ((i % n) as f64 - 20.0).powi(2) + ((i / n) as f64 - 20.0).powi(2)).collect();
    let field = Field {
        title: "bowl".into(),
        bounds: (-1.0, 1.0, -1.0, 1.0),
        resolution: n,
        values,
        measure: "loss & co".into(),
        log: false,
        paths: vec![line("SGD", vec![(0.9, 0.9), (0.0, 0.0)])],
    };
    let svg = written(&dir("field").join("f.svg"), &plot::svg_grid(&[Panel::Field(field)], 1));
    assert_eq!(svg.matches(r#"class="contour""#).count(), 11, "a contour at each of 11 inner level boundaries");
    let bar = &svg[svg.find(r#"<g class="colorbar">"#).expect("a colour bar")..];
    let bar = &bar[..bar.find("</g>").unwrap()];
    let labels: Vec<&str> = bar.lines().filter_map(|l| l.split_once("\">").map(|(_, t)| t)).collect();
    assert!(
        bar.contains(">0<") && bar.contains(">800<"),
        "the bar's scale runs from the minimum 0 to the maximum 800: {labels:?}"
    );
    assert!(svg.contains(">SGD<"), "the path is in the legend");
    assert!(bar.contains(">loss &amp; co</text>"), "the bar names what it measures, escaped: {labels:?}");
}

#[test]
fn decision_regions_have_a_legend_entry_per_class() {
    let regions = Regions {
        title: "regions".into(),
        bounds: (0.0, 1.0, 0.0, 1.0),
        resolution: 2,
        classes: vec![0, 1, 2, 2],
        points: vec![(0.2, 0.2, 0), (0.8, 0.2, 1), (0.5, 0.8, 2)],
        class_names: vec!["setosa".into(), "versicolor".into()],
        axis_names: (String::new(), String::new()),
    };
    let svg = written(&dir("regions").join("r.svg"), &plot::svg_with_regions(&[], Some(&regions)));
    let legend: Vec<&str> = svg.lines().filter(|l| l.contains(r#"class="legend""#)).collect();
    assert_eq!(legend.len(), 3);
    for name in [">setosa<", ">versicolor<", ">class 2<"] {
        assert!(legend.iter().any(|l| l.contains(name)), "{name} in {legend:?}");
    }
}
