//! Level sets: a function on a grid as twelve filled viridis levels, contour lines between them
//! (marching squares), a colour bar with its values, and paths with a legend; and grid figures.

use std::fmt::Write;

use super::axes::{self, Frame};
use super::chart::panel;
use super::{document, legend_row, legend_width, style, title, Field, Panel, BOTTOM, GAP, H, LEFT, TICK_PX, TOP, W};

const LEVELS: usize = 12;
const BAR_W: f64 = 18.0;
/// The colour bar and its labels.
const BAR_SPACE: f64 = BAR_W + 80.0;

/// matplotlib's viridis at t in [0, 1] (nine stops, linear between): perceptually even, and
/// readable in grey.
pub fn viridis(t: f64) -> String {
    const STOPS: [(u8, u8, u8); 9] = [
        (0x44, 0x01, 0x54),
        (0x47, 0x2d, 0x7b),
        (0x3b, 0x52, 0x8b),
        (0x2c, 0x72, 0x8e),
        (0x21, 0x91, 0x8c),
        (0x28, 0xae, 0x80),
        (0x5e, 0xc9, 0x62),
        (0xad, 0xdc, 0x30),
        (0xfd, 0xe7, 0x25),
    ];
    let x = t.clamp(0.0, 1.0) * 8.0;
    let (i, u) = ((x.floor() as usize).min(7), x - x.floor().min(7.0));
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * u).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The scale levels are cut on, and back: log(v − min + 1e-12·span) for `log` fields.
struct Scale {
    log: bool,
    lo: f64,
    eps: f64,
    slo: f64,
    shi: f64,
}

impl Scale {
    fn of(f: &Field) -> Scale {
        let finite = f.values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
        let eps = 1e-12 * (hi - lo).max(1e-300);
        let mut s = Scale { log: f.log, lo, eps, slo: 0.0, shi: 0.0 };
        (s.slo, s.shi) = (s.to(lo), s.to(hi));
        if s.shi - s.slo < 1e-300 {
            s.shi = s.slo + 1.0;
        }
        s
    }
    fn to(&self, v: f64) -> f64 {
        if self.log {
            (v - self.lo + self.eps).max(1e-300).ln()
        } else {
            v
        }
    }
    fn from(&self, s: f64) -> f64 {
        if self.log {
            s.exp() + self.lo - self.eps
        } else {
            s
        }
    }
    /// The values' range, for telling rounding from a value.
    fn span(&self) -> f64 {
        self.from(self.shi) - self.lo
    }
    /// Level boundary k of 0..=LEVELS, in scaled units.
    fn boundary(&self, k: usize) -> f64 {
        self.slo + (self.shi - self.slo) * k as f64 / LEVELS as f64
    }
    /// The level (0..LEVELS) of a value.
    fn level(&self, v: f64) -> usize {
        let t = (self.to(v) - self.slo) / (self.shi - self.slo);
        ((t * LEVELS as f64).floor().max(0.0) as usize).min(LEVELS - 1)
    }
}

/// Segments where the grid (cell centres, values `s` already scaled) crosses `level`, in data
/// coordinates: each square of four neighbouring centres crossed on 2 (or, at a saddle, 4) edges.
fn contour(s: &[f64], n: usize, at: &dyn Fn(f64, f64) -> (f64, f64), level: f64) -> Vec<[(f64, f64); 2]> {
    let mut segs = Vec::new();
    for r in 0..n.saturating_sub(1) {
        for c in 0..n - 1 {
            let corners = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)];
            let v: Vec<f64> = corners.iter().map(|&(c, r)| s[r * n + c]).collect();
            if v.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let mut cross = Vec::with_capacity(4);
            for e in 0..4 {
                let (a, b) = (v[e], v[(e + 1) % 4]);
                if (a < level) != (b < level) {
                    let t = (level - a) / (b - a);
                    let (p, q) = (corners[e], corners[(e + 1) % 4]);
                    cross.push(at(
                        p.0 as f64 + t * (q.0 as f64 - p.0 as f64),
                        p.1 as f64 + t * (q.1 as f64 - p.1 as f64),
                    ));
                }
            }
            for pair in cross.chunks_exact(2) {
                segs.push([pair[0], pair[1]]);
            }
        }
    }
    segs
}

fn field_panel(out: &mut String, fd: &Field, x0: f64, y0: f64) {
    let (xlo, xhi, ylo, yhi) = fd.bounds;
    let legend = legend_width(fd.paths.iter().map(|s| s.name.as_str()));
    let w = W - LEFT - GAP - BAR_SPACE - if legend > 0.0 { GAP + legend } else { 0.0 };
    let f = Frame { x: x0 + LEFT, y: y0 + TOP, w, h: H - TOP - BOTTOM, xr: (xlo, xhi), yr: (ylo, yhi) };
    title(out, &fd.title, f.x + f.w / 2.0, y0);
    let scale = Scale::of(fd);
    let n = fd.resolution.max(1);
    let (cw, ch) = (f.w / n as f64, f.h / n as f64);
    // Crisp edges: anti-aliased neighbouring cells leave faint seams between them.
    let _ = writeln!(out, r#"<g shape-rendering="crispEdges">"#);
    for (i, &v) in fd.values.iter().enumerate() {
        let fill = if v.is_finite() { viridis(scale.level(v) as f64 / (LEVELS - 1) as f64) } else { "#ffffff".into() };
        let _ = writeln!(
            out,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{fill}"/>"#,
            f.x + (i % n) as f64 * cw,
            f.y + f.h - (i / n + 1) as f64 * ch,
            cw + 0.3,
            ch + 0.3
        );
    }
    out.push_str("</g>\n");
    // Contours through the cell centres, in pixels.
    let at = |c: f64, r: f64| (f.x + (c + 0.5) * cw, f.y + f.h - (r + 0.5) * ch);
    let scaled: Vec<f64> = fd.values.iter().map(|&v| scale.to(v)).collect();
    for k in 1..LEVELS {
        let d: String = contour(&scaled, n, &at, scale.boundary(k))
            .iter()
            .map(|[a, b]| format!("M{:.1} {:.1}L{:.1} {:.1}", a.0, a.1, b.0, b.1))
            .collect();
        if !d.is_empty() {
            let _ = writeln!(
                out,
                r#"<path class="contour" d="{d}" fill="none" stroke="black" stroke-opacity="0.45" stroke-width="0.8"/>"#
            );
        }
    }
    paths(out, fd, &f);
    f.axes(out, &axes::linear(xlo, xhi), &axes::linear(ylo, yhi), "x", "y");
    colour_bar(out, &scale, f.x + f.w + GAP, &f, fd);
    let lx = f.x + f.w + GAP + BAR_SPACE + GAP;
    for (k, s) in fd.paths.iter().enumerate() {
        let y = f.y + 10.0 + super::LEGEND_ROW * k as f64;
        let (color, dash) = style(k);
        let sample = format!(
            r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="{dash}" stroke-width="2.5"/>"#,
            lx + 28.0
        );
        legend_row(out, lx, y, &sample, &s.name);
    }
}

/// The trajectories, each on a white halo so it reads over dark and light levels alike, with a
/// dot at its start. Points outside the box are clamped to its edge, so a diverging path stays
/// visible.
fn paths(out: &mut String, fd: &Field, f: &Frame) {
    let (xlo, xhi, ylo, yhi) = fd.bounds;
    for (k, s) in fd.paths.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", f.sx(x.clamp(xlo, xhi)), f.sy(y.clamp(ylo, yhi))))
            .collect();
        let (color, dash) = style(k);
        let joined = pts.join(" ");
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="white" stroke-opacity="0.8" stroke-width="4" stroke-linejoin="round" points="{joined}"/>"#
        );
        let _ = writeln!(
            out,
            r#"<polyline class="series" fill="none" stroke="{color}" stroke-dasharray="{dash}" stroke-width="2" stroke-linejoin="round" points="{joined}"/>"#
        );
        if let Some((x, y)) = pts.first().and_then(|p| p.split_once(',')) {
            let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="4" fill="{color}" stroke="white"/>"#);
        }
    }
}

/// The levels' colours bottom (low) to top, with the value at every other boundary.
fn colour_bar(out: &mut String, scale: &Scale, x: f64, f: &Frame, fd: &Field) {
    let band = f.h / LEVELS as f64;
    let _ = writeln!(out, r#"<g class="colorbar">"#);
    for k in 0..LEVELS {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.2}" width="{BAR_W}" height="{:.2}" fill="{}"/>"#,
            f.y + f.h - (k + 1) as f64 * band,
            band + 0.3,
            viridis(k as f64 / (LEVELS - 1) as f64)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x:.1}" y="{:.1}" width="{BAR_W}" height="{:.1}" fill="none" stroke="#333"/>"##,
        f.y, f.h
    );
    for k in (0..=LEVELS).step_by(2) {
        let y = f.y + f.h - k as f64 * band;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#333"/><text class="tick" x="{:.1}" y="{:.1}" font-size="{TICK_PX}">{}</text>"##,
            x + BAR_W,
            x + BAR_W + 5.0,
            x + BAR_W + 8.0,
            y + 4.5,
            significant(tidy(scale.from(scale.boundary(k)), scale.span()))
        );
    }
    let measure = super::escape(&fd.measure);
    let caption = if fd.log { format!("{measure} (log spacing)") } else { measure };
    let _ = writeln!(out, r#"<text x="{x:.1}" y="{:.1}" font-size="{TICK_PX}">{caption}</text></g>"#, f.y - 8.0);
}

/// Zero for a value within rounding of it (a level boundary at 0 computes as ~1e-16).
fn tidy(v: f64, span: f64) -> f64 {
    if v.abs() < 1e-9 * span {
        0.0
    } else {
        v
    }
}

/// Two significant digits, for colour-bar values that need not be round.
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return axes::value(v);
    }
    let digits = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// Panels in rows of `columns`, as one SVG document.
pub fn svg_grid(panels: &[Panel], columns: usize) -> String {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let mut out = document(W * columns.min(panels.len().max(1)) as f64, H * rows as f64);
    for (i, p) in panels.iter().enumerate() {
        let (x0, y0) = (W * (i % columns) as f64, H * (i / columns) as f64);
        match p {
            Panel::Field(f) => field_panel(&mut out, f, x0, y0),
            Panel::Chart(c) => panel(&mut out, c, x0, y0),
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_has_one_straight_contour_per_level_it_crosses() {
        // v = column index on a 4×4 grid: level 1.5 crosses between columns 1 and 2 in each of 3 rows.
        let s: Vec<f64> = (0..16).map(|i| (i % 4) as f64).collect();
        let segs = contour(&s, 4, &|c, r| (c, r), 1.5);
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|[a, b]| (a.0 - 1.5).abs() < 1e-12 && (b.0 - 1.5).abs() < 1e-12));
    }

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
    }
}
