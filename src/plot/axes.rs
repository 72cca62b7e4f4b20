//! Axes: where the ticks go and what they say (1/2/5 steps; on log axes, at most ~8 labels).

use std::fmt::Write;

use super::{escape, LABEL_PX, TICK_PX};

/// One tick at `at` (in the axis's own units: log10 of the value on a log axis), labelled or not.
pub struct Tick {
    pub at: f64,
    pub label: Option<String>,
}

/// Round tick values covering [lo, hi], 1/2/5 × 10^k apart, at most 7.
pub fn linear(lo: f64, hi: f64) -> Vec<Tick> {
    let span = (hi - lo).max(1e-12);
    let mag = 10f64.powf((span / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil();
    // By index, not by repeated addition: a step below lo's float spacing must not loop forever.
    (0..=12)
        .map(|i| (first + i as f64) * step)
        .filter(|t| *t <= hi + 1e-9 * span)
        .map(|t| Tick { at: t, label: Some(value(if t.abs() < 1e-9 * span { 0.0 } else { t })) })
        .collect()
}

/// Ticks of a log axis over decades [lo, hi] (integers): labels every 1, 2, 5, 10… decades so
/// at most 8 show, the other decades as unlabelled minor ticks; within 3 decades also 2…9 × 10^k
/// as minor ticks, and within 2 the 2 and 5 labelled.
pub fn log(lo: f64, hi: f64) -> Vec<Tick> {
    let (lo, hi) = (lo.round() as i64, hi.round() as i64);
    let decades = (hi - lo).max(1);
    let every = [1, 2, 5, 10, 20, 50, 100].into_iter().find(|s| decades / s < 8).unwrap_or(200);
    let mut out = Vec::new();
    for d in lo..=hi {
        let label = (d.rem_euclid(every) == 0).then(|| value(10f64.powi(d as i32)));
        out.push(Tick { at: d as f64, label });
        if decades <= 3 && d < hi {
            for k in 2..=9 {
                let v = k as f64 * 10f64.powi(d as i32);
                let label = (decades <= 2 && (k == 2 || k == 5)).then(|| value(v));
                out.push(Tick { at: v.log10(), label });
            }
        }
    }
    out
}

/// A tick's text: plain decimals in 0.001..10⁴, else 1e-8 style.
pub fn value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The box a panel draws its data in, in figure pixels, with the data ranges it maps.
pub struct Frame {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub xr: (f64, f64),
    pub yr: (f64, f64),
}

impl Frame {
    pub fn sx(&self, x: f64) -> f64 {
        self.x + (x - self.xr.0) / (self.xr.1 - self.xr.0) * self.w
    }
    pub fn sy(&self, y: f64) -> f64 {
        self.y + (1.0 - (y - self.yr.0) / (self.yr.1 - self.yr.0)) * self.h
    }

    /// Grid lines (under the data): major ticks only.
    pub fn grid(&self, out: &mut String, xt: &[Tick], yt: &[Tick]) {
        for t in xt.iter().filter(|t| t.label.is_some()) {
            let x = self.sx(t.at);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/>"##,
                self.y,
                self.y + self.h
            );
        }
        for t in yt.iter().filter(|t| t.label.is_some()) {
            let y = self.sy(t.at);
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/>"##,
                self.x,
                self.x + self.w
            );
        }
    }

    /// The frame, tick marks (long labelled, short minor), tick labels and axis labels.
    pub fn axes(&self, out: &mut String, xt: &[Tick], yt: &[Tick], x_label: &str, y_label: &str) {
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
            self.x, self.y, self.w, self.h
        );
        let bottom = self.y + self.h;
        for t in xt {
            let x = self.sx(t.at);
            let len = if t.label.is_some() { 6.0 } else { 3.0 };
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
                bottom + len
            );
            if let Some(l) = &t.label {
                let _ = writeln!(
                    out,
                    r#"<text class="tick" x="{x:.1}" y="{:.1}" font-size="{TICK_PX}" text-anchor="middle">{l}</text>"#,
                    bottom + 21.0
                );
            }
        }
        for t in yt {
            let y = self.sy(t.at);
            let len = if t.label.is_some() { 6.0 } else { 3.0 };
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#333"/>"##,
                self.x - len,
                self.x
            );
            if let Some(l) = &t.label {
                let _ = writeln!(
                    out,
                    r#"<text class="tick" x="{:.1}" y="{:.1}" font-size="{TICK_PX}" text-anchor="end">{l}</text>"#,
                    self.x - 9.0,
                    y + 4.5
                );
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="{LABEL_PX}" text-anchor="middle">{}</text>"#,
            self.x + self.w / 2.0,
            bottom + 46.0,
            escape(x_label)
        );
        let (lx, ly) = (self.x - 64.0, self.y + self.h / 2.0);
        let _ = writeln!(
            out,
            r#"<text x="{lx:.1}" y="{ly:.1}" font-size="{LABEL_PX}" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#,
            escape(y_label)
        );
    }
}

/// Only the ticks inside [lo, hi] (log ticks are generated per whole decade).
pub fn within(ticks: Vec<Tick>, lo: f64, hi: f64) -> Vec<Tick> {
    let eps = 1e-9 * (hi - lo).abs().max(1e-300);
    ticks.into_iter().filter(|t| t.at >= lo - eps && t.at <= hi + eps).collect()
}
