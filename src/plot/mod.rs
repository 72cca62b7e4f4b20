//! Figures as standalone SVG, drawn by hand (a chart is a few dozen elements), and as PNG through
//! resvg with an embedded font: `write` picks the format from the file's extension.
//!
//! Style after matplotlib's defaults: the tab10 palette (dashes beyond ten series), legends
//! outside the data, 1/2/5 ticks, bounded log ticks, viridis level sets with contours and a
//! colour bar.

mod axes;
mod chart;
mod field;

use std::fmt::Write;
use std::path::Path;

use crate::error::{Error, Result};

pub use chart::{svg, svg_with_regions};
pub use field::svg_grid;

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
    /// The legend's name of class k (`class k` where absent).
    pub class_names: Vec<String>,
    /// The axes' names (the features'); "feature 1" and "feature 2" when empty.
    pub axis_names: (String, String),
}

/// A function of two variables over a box as filled levels with contour lines and a colour bar,
/// with paths (optimizer trajectories) drawn over it.
#[derive(Clone, Debug)]
pub struct Field {
    pub title: String,
    /// (x min, x max, y min, y max).
    pub bounds: (f64, f64, f64, f64),
    /// Cells per side; `values` is row-major from the bottom row, `resolution`² of them.
    pub resolution: usize,
    pub values: Vec<f64>,
    /// What the values are, as the colour bar names them ("f", "log₁₀ loss").
    pub measure: String,
    /// Levels on log(value − min + 1e-12·span) instead of the value (for valleys like Rosenbrock's).
    pub log: bool,
    pub paths: Vec<Series>,
}

/// One panel of a grid figure.
#[derive(Clone, Debug)]
pub enum Panel {
    Chart(Chart),
    Field(Field),
}

/// The file formats `write` produces, chosen by the path's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

/// The format a plot path asks for: `.svg` or `.png`, in any case; anything else is an error that
/// names the path, so a command can refuse it before any work.
pub fn format_of(path: &Path, flag: &str) -> Result<Format> {
    // A folder's name has no meaningful extension: say what is wrong with it, as every output does.
    if path.is_dir() {
        return Err(Error::Io { file: path.to_path_buf(), message: format!("{flag}: is a folder; give a file name") });
    }
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        other => Err(Error::Io {
            file: path.to_path_buf(),
            message: format!(
                "{flag}: cannot write a plot as {}; give a file name ending in .svg or .png",
                other.map_or("a file without an extension".to_string(), |e| format!("'.{e}'"))
            ),
        }),
    }
}

/// Writes the figure `svg` (from `svg`, `svg_with_regions` or `svg_grid`) to `path` as SVG or
/// PNG by its extension, atomically (a reader never sees half a file).
pub fn write(path: &Path, svg: &str) -> Result<()> {
    let bytes = match format_of(path, "plot")? {
        Format::Svg => svg.as_bytes().to_vec(),
        Format::Png => png(svg).map_err(|message| Error::Io { file: path.to_path_buf(), message })?,
    };
    crate::checkpoint::write_atomic(path, &bytes)
}

/// DejaVu Sans (licence in assets/fonts): PNG text must not depend on the machine's fonts.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_FAMILY: &str = "DejaVu Sans";

/// The SVG rasterised at its own size.
fn png(svg: &str) -> std::result::Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options { font_family: FONT_FAMILY.into(), ..Default::default() };
    let db = opt.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family(FONT_FAMILY);
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| format!("the figure's SVG does not parse: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| "the figure is empty".to_string())?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| format!("PNG encoding: {e}"))
}

/// matplotlib's tab10: ten colours told apart in print and by most colour-blind readers.
pub const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
/// Beyond ten series the colours repeat with these dashes, so every pair stays distinct.
const DASHES: [&str; 4] = ["", "7,4", "2,3", "9,3,2,3"];

/// Colour and dash pattern of series `i`.
fn style(i: usize) -> (&'static str, &'static str) {
    (PALETTE[i % PALETTE.len()], DASHES[(i / PALETTE.len()) % DASHES.len()])
}

/// One panel's size: a chart reads on a laptop screen at 100 %.
const W: f64 = 820.0;
const H: f64 = 500.0;
const LEFT: f64 = 84.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;
const GAP: f64 = 18.0;
const TITLE_PX: f64 = 18.0;
const LABEL_PX: f64 = 15.0;
const TICK_PX: f64 = 13.0;
const LEGEND_PX: f64 = 13.0;
const LEGEND_ROW: f64 = 21.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A legend column's width for these names (DejaVu Sans runs up to ~0.62 em a character), with
/// the sample and a margin.
fn legend_width<'a>(names: impl Iterator<Item = &'a str>) -> f64 {
    let longest = names.map(|n| n.chars().count()).max();
    longest.map_or(0.0, |n| (50.0 + 0.62 * LEGEND_PX * n as f64).min(300.0))
}

/// The SVG document's opening for a figure of this size, on white.
fn document(width: f64, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}, sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    )
}

/// A panel's bold title centred over its plot area.
fn title(out: &mut String, text: &str, cx: f64, y0: f64) {
    let _ = writeln!(
        out,
        r#"<text x="{cx:.1}" y="{:.1}" font-size="{TITLE_PX}" text-anchor="middle" font-weight="bold">{}</text>"#,
        y0 + 28.0,
        escape(text)
    );
}

/// One legend row: a sample (`sample` SVG drawn at the row's left, centred on y) and the name.
fn legend_row(out: &mut String, x: f64, y: f64, sample: &str, name: &str) {
    let _ = writeln!(
        out,
        r#"<g class="legend">{sample}<text x="{:.1}" y="{:.1}" font-size="{LEGEND_PX}">{}</text></g>"#,
        x + 34.0,
        y + 4.5,
        escape(name)
    );
}
