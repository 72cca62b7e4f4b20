//! Line and scatter charts, and decision regions, each with its legend to the right of the data.

use std::fmt::Write;

use super::axes::{self, Frame};
use super::{document, legend_row, legend_width, style, title, Chart, Regions, BOTTOM, GAP, H, LEFT, PALETTE, TOP, W};

/// The data's ranges (y as log10 on a log axis), widened where flat.
fn ranges(chart: &Chart) -> ((f64, f64), (f64, f64)) {
    let tf = |v: f64| if chart.log_y { v.max(1e-300).log10() } else { v };
    let pts = chart.series.iter().flat_map(|s| s.points.iter().map(|&(x, y)| (x, tf(y))));
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (xlo, xhi, ylo, yhi) = (xlo.min(x), xhi.max(x), ylo.min(y), yhi.max(y));
    }
    if xlo > xhi {
        (xlo, xhi, ylo, yhi) = (0.0, 1.0, 0.0, 1.0);
    }
    if chart.log_y {
        (ylo, yhi) = (ylo.floor(), yhi.ceil());
    } else if let Some(range) = chart.y_range {
        (ylo, yhi) = range;
    } else {
        // A 5 % margin, as matplotlib's, so no curve runs along the frame.
        let pad = 0.05 * (yhi - ylo);
        (ylo, yhi) = (ylo - pad, yhi + pad);
    }
    if yhi - ylo < 1e-12 {
        (ylo, yhi) = (ylo - 0.5, yhi + 0.5);
    }
    if xhi - xlo < 1e-12 {
        xhi = xlo + 1.0;
    }
    ((xlo, xhi), (ylo, yhi))
}

/// One chart in the panel at (x0, y0).
pub(super) fn panel(out: &mut String, chart: &Chart, x0: f64, y0: f64) {
    let tf = |v: f64| if chart.log_y { v.max(1e-300).log10() } else { v };
    let (xr, yr) = ranges(chart);
    let legend = legend_width(chart.series.iter().map(|s| s.name.as_str()));
    let f = Frame { x: x0 + LEFT, y: y0 + TOP, w: W - LEFT - GAP - legend, h: H - TOP - BOTTOM, xr, yr };
    let xt = axes::within(axes::linear(xr.0, xr.1), xr.0, xr.1);
    let yt = if chart.log_y { axes::within(axes::log(yr.0, yr.1), yr.0, yr.1) } else { axes::linear(yr.0, yr.1) };
    title(out, &chart.title, f.x + f.w / 2.0, y0);
    f.grid(out, &xt, &yt);
    for (i, s) in chart.series.iter().enumerate() {
        let (color, dash) = style(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, y)| (x, tf(y)))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|(x, y)| (f.sx(x), f.sy(y.clamp(yr.0, yr.1))))
            .collect();
        // A lone point (a one-epoch run) draws nothing as a line: it gets its marker.
        if chart.scatter || pts.len() == 1 {
            pts.iter().for_each(|&(x, y)| marker(out, i, x, y));
        } else {
            let joined: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline class="series" fill="none" stroke="{color}" stroke-dasharray="{dash}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
                joined.join(" ")
            );
        }
    }
    f.axes(out, &xt, &yt, &chart.x_label, &chart.y_label);
    let lx = f.x + f.w + GAP;
    for (i, s) in chart.series.iter().enumerate() {
        let y = f.y + 10.0 + super::LEGEND_ROW * i as f64;
        let mut sample = String::new();
        if chart.scatter {
            marker(&mut sample, i, lx + 14.0, y);
        } else {
            let (color, dash) = style(i);
            sample = format!(
                r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="{dash}" stroke-width="2.5"/>"#,
                lx + 28.0
            );
        }
        legend_row(out, lx, y, &sample, &s.name);
    }
}

/// Series `i`'s marker: circles for the first ten colours, then squares, diamonds, triangles.
fn marker(out: &mut String, i: usize, x: f64, y: f64) {
    let (color, _) = style(i);
    let shape = match (i / PALETTE.len()) % 4 {
        0 => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="4""#),
        1 => format!(r#"<rect x="{:.1}" y="{:.1}" width="7.5" height="7.5""#, x - 3.75, y - 3.75),
        2 => format!(
            r#"<polygon points="{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}""#,
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x - 5.0
        ),
        _ => format!(
            r#"<polygon points="{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}""#,
            y - 5.0,
            x + 4.5,
            y + 4.0,
            x - 4.5,
            y + 4.0
        ),
    };
    let _ = writeln!(out, r#"{shape} fill="{color}" fill-opacity="0.8"/>"#);
}

/// The charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    svg_with_regions(charts, None)
}

/// Class `c`'s region tint: its palette colour mixed 70 % towards white.
fn tint(c: usize) -> String {
    let hex = PALETTE[c % PALETTE.len()];
    let ch = |k: usize| u8::from_str_radix(&hex[k..k + 2], 16).unwrap_or(0) as f64;
    let mix = |v: f64| (v + 0.7 * (255.0 - v)).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(ch(1)), mix(ch(3)), mix(ch(5)))
}

fn regions_panel(out: &mut String, r: &Regions, x0: f64, y0: f64) {
    let (xlo, xhi, ylo, yhi) = r.bounds;
    let count = r.classes.iter().chain(r.points.iter().map(|p| &p.2)).max().map_or(0, |m| m + 1);
    let names: Vec<String> =
        (0..count).map(|c| r.class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}"))).collect();
    let legend = legend_width(names.iter().map(String::as_str));
    let f = Frame {
        x: x0 + LEFT,
        y: y0 + TOP,
        w: W - LEFT - GAP - legend,
        h: H - TOP - BOTTOM,
        xr: (xlo, xhi),
        yr: (ylo, yhi),
    };
    title(out, &r.title, f.x + f.w / 2.0, y0);
    let n = r.resolution.max(1);
    let (cw, ch) = (f.w / n as f64, f.h / n as f64);
    // Crisp edges: anti-aliased neighbouring cells leave faint seams between them.
    let _ = writeln!(out, r#"<g shape-rendering="crispEdges">"#);
    for (i, &c) in r.classes.iter().enumerate() {
        let (col, row) = (i % n, i / n);
        let _ = writeln!(
            out,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"#,
            f.x + col as f64 * cw,
            f.y + f.h - (row + 1) as f64 * ch,
            cw + 0.3,
            ch + 0.3,
            tint(c)
        );
    }
    out.push_str("</g>\n");
    for &(x, y, label) in &r.points {
        let color = PALETTE[label % PALETTE.len()];
        let _ = writeln!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}" stroke="#222" stroke-width="0.6"/>"##,
            f.sx(x),
            f.sy(y)
        );
    }
    let (xt, yt) = (axes::linear(xlo, xhi), axes::linear(ylo, yhi));
    let or = |name: &str, default: &'static str| if name.is_empty() { default.to_string() } else { name.to_string() };
    f.axes(out, &xt, &yt, &or(&r.axis_names.0, "feature 1"), &or(&r.axis_names.1, "feature 2"));
    let lx = f.x + f.w + GAP;
    for (c, name) in names.iter().enumerate() {
        let y = f.y + 10.0 + super::LEGEND_ROW * c as f64;
        let sample = format!(
            r##"<rect x="{lx:.1}" y="{:.1}" width="28" height="14" fill="{}" stroke="#999" stroke-width="0.5"/><circle cx="{:.1}" cy="{y:.1}" r="4" fill="{}" stroke="#222" stroke-width="0.6"/>"##,
            y - 7.0,
            tint(c),
            lx + 14.0,
            PALETTE[c % PALETTE.len()]
        );
        legend_row(out, lx, y, &sample, name);
    }
}

/// Charts side by side, then the decision regions when given.
pub fn svg_with_regions(charts: &[Chart], regions: Option<&Regions>) -> String {
    let panels = charts.len() + usize::from(regions.is_some());
    let mut out = document(W * panels.max(1) as f64, H);
    for (i, c) in charts.iter().enumerate() {
        panel(&mut out, c, W * i as f64, 0.0);
    }
    if let Some(r) = regions {
        regions_panel(&mut out, r, W * charts.len() as f64, 0.0);
    }
    out.push_str("</svg>\n");
    out
}
