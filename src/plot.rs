//! Line charts as standalone SVG: training curves without a plotting dependency (an SVG is a few
//! dozen text elements, and a browser or any image viewer renders it).

use std::fmt::Write;

/// One named curve of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: axes, labels and curves.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Log-scale y axis (for losses spanning decades).
    pub log_y: bool,
    /// Fixed y range (linear axes), e.g. 0–100 for an accuracy; else the data's range.
    pub y_range: Option<(f64, f64)>,
    /// Points as markers, not joined (a scatter plot).
    pub scatter: bool,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W: f64 = 460.0;
const H: f64 = 320.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    // By index, not by repeated addition: a step below lo's float spacing must not loop forever.
    (0..=12).map(|i| (first + i as f64) * step).filter(|t| *t <= hi + 1e-9 * span).collect()
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn panel(out: &mut String, chart: &Chart, x0: f64) {
    let tf = |v: f64| if chart.log_y { v.max(1e-30).log10() } else { v };
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(x, y)| (x, tf(y))))
        .filter(|p| p.1.is_finite())
        .collect();
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (xlo, xhi, ylo, yhi) = (xlo.min(x), xhi.max(x), ylo.min(y), yhi.max(y));
    }
    if pts.is_empty() {
        (xlo, xhi, ylo, yhi) = (0.0, 1.0, 0.0, 1.0);
    }
    if chart.log_y {
        (ylo, yhi) = (ylo.floor(), yhi.ceil());
    } else if let Some(range) = chart.y_range {
        (ylo, yhi) = range;
    }
    if yhi - ylo < 1e-12 {
        (ylo, yhi) = (ylo - 0.5, yhi + 0.5);
    }
    if xhi - xlo < 1e-12 {
        xhi = xlo + 1.0;
    }
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| x0 + LEFT + (x - xlo) / (xhi - xlo) * pw;
    let sy = |y: f64| TOP + (1.0 - (y - ylo) / (yhi - ylo)) * ph;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + LEFT + pw / 2.0,
        escape(&chart.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        x0 + LEFT
    );
    for t in ticks(xlo, xhi) {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle">{4}</text>"##,
            sx(t),
            TOP,
            TOP + ph,
            TOP + ph + 15.0,
            fmt_tick(t)
        );
    }
    let yt = if chart.log_y { (ylo as i32..=yhi as i32).map(f64::from).collect() } else { ticks(ylo, yhi) };
    for t in yt {
        let label = if chart.log_y { format!("1e{}", t as i32) } else { fmt_tick(t) };
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{3:.1}" y="{4:.1}" font-size="11" text-anchor="end">{5}</text>"##,
            x0 + LEFT,
            sy(t),
            x0 + LEFT + pw,
            x0 + LEFT - 5.0,
            sy(t) + 4.0,
            label
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        x0 + LEFT + pw / 2.0,
        H - 10.0,
        escape(&chart.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{0:.1}" y="{1:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {0:.1} {1:.1})">{2}</text>"#,
        x0 + 16.0,
        TOP + ph / 2.0,
        escape(&chart.y_label)
    );
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| (x, tf(y)))
            .filter(|p| p.1.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.clamp(ylo, yhi))))
            .collect();
        if chart.scatter {
            for p in &path {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(out, r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{color}" fill-opacity="0.8"/>"#);
            }
        } else {
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
    }
    // The legend last, on a translucent box, so no curve hides it; placed where it covers the
    // least of the curves (sampled every few pixels along each segment), top right if free.
    let n = chart.series.len() as f64;
    let (box_w, box_h) = (134.0, 16.0 * n + 4.0);
    let mut samples = Vec::new();
    for s in &chart.series {
        let screen: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, y)| (x, tf(y)))
            .filter(|p| p.1.is_finite())
            .map(|(x, y)| (sx(x), sy(y.clamp(ylo, yhi))))
            .collect();
        for w in screen.windows(2) {
            let steps = ((w[1].0 - w[0].0).hypot(w[1].1 - w[0].1) / 3.0).ceil().max(1.0) as usize;
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                samples.push((w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1)));
            }
        }
        samples.extend(screen.first().copied());
    }
    let mut best = (usize::MAX, 0.0, 0.0);
    for bx in [x0 + W - RIGHT - box_w - 6.0, x0 + LEFT + 6.0] {
        let mut by = TOP + 4.0;
        while by + box_h <= TOP + ph - 4.0 {
            let covered = samples
                .iter()
                .filter(|&&(px, py)| px >= bx && px <= bx + box_w && py >= by && py <= by + box_h)
                .count();
            if covered < best.0 {
                best = (covered, bx, by);
            }
            by += 4.0;
        }
    }
    let (_, box_x, box_y) = best;
    let lx = box_x + 6.0;
    let _ = writeln!(
        out,
        r##"<rect x="{box_x:.1}" y="{box_y:.1}" width="{box_w}" height="{box_h:.1}" fill="white" fill-opacity="0.85" stroke="#ccc"/>"##,
    );
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let ly = box_y + 10.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 18.0,
            lx + 22.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
}

/// The charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    svg_with_regions(charts, None)
}

/// A classifier's decision regions over a 2-D input box, with data points on top.
#[derive(Clone, Debug)]
pub struct Regions {
    pub title: String,
    /// (x_min, x_max, y_min, y_max) of the box.
    pub bounds: (f64, f64, f64, f64),
    /// `resolution × resolution` predicted classes, row 0 at y_min.
    pub resolution: usize,
    pub classes: Vec<usize>,
    /// (x, y, label) of the points to draw.
    pub points: Vec<(f64, f64, usize)>,
}

const LIGHT: [&str; 6] = ["#c6dbef", "#fcbba1", "#c7e9c0", "#fdd0a2", "#dadaeb", "#e7cbc3"];

fn regions_panel(out: &mut String, r: &Regions, x0: f64) {
    let (xlo, xhi, ylo, yhi) = r.bounds;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| x0 + LEFT + (x - xlo) / (xhi - xlo) * pw;
    let sy = |y: f64| TOP + (1.0 - (y - ylo) / (yhi - ylo)) * ph;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + LEFT + pw / 2.0,
        escape(&r.title)
    );
    let n = r.resolution.max(1);
    let (cw, ch) = (pw / n as f64, ph / n as f64);
    for (i, &c) in r.classes.iter().enumerate() {
        let (col, row) = (i % n, i / n);
        let _ = writeln!(
            out,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"#,
            x0 + LEFT + col as f64 * cw,
            TOP + ph - (row + 1) as f64 * ch,
            cw + 0.3,
            ch + 0.3,
            LIGHT[c % LIGHT.len()]
        );
    }
    for &(x, y, label) in &r.points {
        let _ = writeln!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}" stroke="#222" stroke-width="0.6"/>"##,
            sx(x),
            sy(y),
            COLORS[label % COLORS.len()]
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        x0 + LEFT
    );
    for t in ticks(xlo, xhi) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            sx(t),
            TOP + ph + 15.0,
            fmt_tick(t)
        );
    }
    for t in ticks(ylo, yhi) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            x0 + LEFT - 5.0,
            sy(t) + 4.0,
            fmt_tick(t)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">feature 0</text>"#,
        x0 + LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{0:.1}" y="{1:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {0:.1} {1:.1})">feature 1</text>"#,
        x0 + 16.0,
        TOP + ph / 2.0
    );
}

/// Charts side by side, then the decision regions when given.
pub fn svg_with_regions(charts: &[Chart], regions: Option<&Regions>) -> String {
    let panels = charts.len() + usize::from(regions.is_some());
    let width = W * panels.max(1) as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, c) in charts.iter().enumerate() {
        panel(&mut out, c, W * i as f64);
    }
    if let Some(r) = regions {
        regions_panel(&mut out, r, W * charts.len() as f64);
    }
    out.push_str("</svg>\n");
    out
}

/// A function of two variables over a box as filled level bands, with paths (optimizer
/// trajectories) drawn over it.
#[derive(Clone, Debug)]
pub struct Field {
    pub title: String,
    /// (x min, x max, y min, y max).
    pub bounds: (f64, f64, f64, f64),
    /// Cells per side; `values` is row-major from the bottom row, `resolution`² of them.
    pub resolution: usize,
    pub values: Vec<f64>,
    /// Band on log(value − min + 1e-12·span) instead of the value (for valleys like Rosenbrock's).
    pub log: bool,
    pub paths: Vec<Series>,
}

/// Twelve bands, light (low) to dark (high).
fn band_color(level: f64) -> String {
    let l = level.clamp(0.0, 1.0);
    let c = |lo: f64, hi: f64| (lo + (hi - lo) * l).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(247.0, 120.0), c(251.0, 140.0), c(255.0, 170.0))
}

fn field_panel(out: &mut String, f: &Field, x0: f64, y0: f64) {
    let (xlo, xhi, ylo, yhi) = f.bounds;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| x0 + LEFT + (x - xlo) / (xhi - xlo) * pw;
    let sy = |y: f64| y0 + TOP + (1.0 - (y - ylo) / (yhi - ylo)) * ph;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + LEFT + pw / 2.0,
        y0 + 20.0,
        escape(&f.title)
    );
    let finite: Vec<f64> = f.values.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).max(1e-300);
    let scale = |v: f64| if f.log { (v - lo + 1e-12 * span).ln() } else { v };
    let (slo, shi) = (scale(lo), scale(hi));
    let n = f.resolution.max(1);
    let (cw, ch) = (pw / n as f64, ph / n as f64);
    for (i, &v) in f.values.iter().enumerate() {
        let band = (((scale(v) - slo) / (shi - slo).max(1e-300)) * 12.0).floor().min(11.0) / 11.0;
        let (col, row) = (i % n, i / n);
        let _ = writeln!(
            out,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"#,
            x0 + LEFT + col as f64 * cw,
            y0 + TOP + ph - (row + 1) as f64 * ch,
            cw + 0.3,
            ch + 0.3,
            band_color(band)
        );
    }
    for (k, s) in f.paths.iter().enumerate() {
        // Points outside the box are clamped to its edge, so a diverging path stays visible.
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x.clamp(xlo, xhi)), sy(y.clamp(ylo, yhi))))
            .collect();
        let color = COLORS[k % COLORS.len()];
        let _ =
            writeln!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, pts.join(" "));
        let (lx, ly) = (x0 + LEFT + 8.0, y0 + TOP + 14.0 + 14.0 * k as f64);
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            ly - 4.0,
            lx + 14.0,
            ly,
            escape(&s.name)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        x0 + LEFT,
        y0 + TOP
    );
    for t in ticks(xlo, xhi) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            sx(t),
            y0 + TOP + ph + 15.0,
            fmt_tick(t)
        );
    }
    for t in ticks(ylo, yhi) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            x0 + LEFT - 5.0,
            sy(t) + 4.0,
            fmt_tick(t)
        );
    }
}

/// One panel of a grid figure.
#[derive(Clone, Debug)]
pub enum Panel {
    Chart(Chart),
    Field(Field),
}

/// Panels in rows of `columns`, as one SVG document.
pub fn svg_grid(panels: &[Panel], columns: usize) -> String {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let (width, height) = (W * columns.min(panels.len().max(1)) as f64, H * rows as f64);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, p) in panels.iter().enumerate() {
        let (x0, y0) = (W * (i % columns) as f64, H * (i / columns) as f64);
        match p {
            Panel::Field(f) => field_panel(&mut out, f, x0, y0),
            Panel::Chart(c) => {
                // Charts are drawn at the top; shift the group down to its row.
                let mut one = String::new();
                panel(&mut one, c, x0);
                let _ = writeln!(out, r#"<g transform="translate(0 {y0})">{one}</g>"#);
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn a_field_panel_draws_its_bands_and_paths_and_the_grid_stacks_rows() {
        let field = Field {
            title: "f".into(),
            bounds: (0.0, 1.0, 0.0, 1.0),
            resolution: 4,
            values: (0..16).map(|i| i as f64).collect(),
            log: false,
            paths: vec![Series { name: "run".into(), points: vec![(0.0, 0.0), (0.5, 0.5), (2.0, 2.0)] }],
        };
        let chart = Chart {
            title: "c".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series { name: "s".into(), points: vec![(0.0, 1.0), (1.0, 2.0)] }],
            log_y: false,
            y_range: None,
            scatter: false,
        };
        let svg = svg_grid(&[Panel::Field(field), Panel::Chart(chart.clone()), Panel::Chart(chart)], 2);
        assert!(svg.contains(&format!(r#"height="{}""#, 2.0 * H)), "two rows");
        // 16 cells, the lowest value lightest and the highest darkest.
        assert!(svg.contains(&band_color(0.0)) && svg.contains(&band_color(1.0)));
        // The path's point outside the box is clamped to its corner (1, 1).
        let pw = W - LEFT - RIGHT;
        assert!(svg.contains(&format!("{:.1},{:.1}", LEFT + pw, TOP)), "clamped corner: {svg}");
        assert!(svg.contains(&format!(r#"translate(0 {H})"#)), "the third panel starts the second row");
    }
}
