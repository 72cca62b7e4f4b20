//! `gradflow landscape`: the loss along the line between two saved models, or over a plane
//! through three of them or through one and two random directions (the maths in
//! `train::landscape`), printed, tabled and drawn.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::saved::{config_for, data_for_checkpoint, state_dict};
use super::LandscapeArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::spec::Model;
use crate::train::landscape::{self as land, Evaluator, Measure, NormMode, State};
use crate::train::{self, Placement};

/// What is measured: a line or one of the two planes.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Line { from: PathBuf, to: PathBuf },
    Plane { points: [PathBuf; 3] },
    Around { at: PathBuf, seed: u64 },
}

/// One measured point: α, or (x, y), and the losses and accuracies there.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub coords: Vec<f64>,
    pub train: Measure,
    pub test: Measure,
}

/// A trajectory checkpoint's place in the plane and how far off it the checkpoint lies.
#[derive(Clone, Debug, PartialEq)]
pub struct Projected {
    pub file: PathBuf,
    pub x: f64,
    pub y: f64,
    /// |θ − its projection| / |θ − origin|.
    pub off_plane: f64,
}

/// Everything the command measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Landscape {
    pub shape: Shape,
    pub rows: Vec<Row>,
    /// Points per side of a plane's grid (the number of α on a line).
    pub side: usize,
    pub range: (f64, f64),
    pub trajectory: Vec<Projected>,
    pub device: String,
    pub norm: String,
}

/// The command: measures, prints a summary, writes the table and the plot.
pub fn landscape(args: &LandscapeArgs, placement: &Placement, non_strict: bool) -> Result<()> {
    let l = measure(args, placement, non_strict)?;
    crate::say!("{}", report(&l).trim_end());
    if let Some(path) = &args.table {
        crate::checkpoint::write_atomic(path, table(&l).as_bytes())?;
        crate::say!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        crate::plot::write(path, &figure(&l))?;
        crate::say!("wrote {}", path.display());
    }
    Ok(())
}

/// The shape the options ask for.
pub fn shape_of(args: &LandscapeArgs) -> Result<Shape> {
    match (&args.from, &args.to, &args.plane, &args.around, args.random_directions) {
        (Some(a), Some(b), None, None, _) => Ok(Shape::Line { from: a.clone(), to: b.clone() }),
        (None, None, Some(list), None, _) => {
            let files: Vec<PathBuf> = list.split(',').map(|s| PathBuf::from(s.trim())).collect();
            match <[PathBuf; 3]>::try_from(files) {
                Ok(points) => Ok(Shape::Plane { points }),
                Err(files) => Err(Error::Usage(format!(
                    "--plane {list}: give three checkpoints A,B,C separated by commas, not {}",
                    files.len()
                ))),
            }
        }
        (None, None, None, Some(at), Some(seed)) => Ok(Shape::Around { at: at.clone(), seed }),
        _ => Err(Error::Usage(
            "say what to measure: --from A --to B (a line), --plane A,B,C, or --around FILE --random-directions SEED"
                .into(),
        )),
    }
}

/// `--range MIN,MAX` (or the shape's default) and `--points` (or its default), checked.
pub fn grid_of(args: &LandscapeArgs, shape: &Shape) -> Result<((f64, f64), usize)> {
    let range = match &args.range {
        None if matches!(shape, Shape::Around { .. }) => (-1.0, 1.0),
        None => (-0.5, 1.5),
        Some(text) => {
            let parts: Vec<Option<f64>> = text.split(',').map(|s| s.trim().parse::<f64>().ok()).collect();
            match parts[..] {
                [Some(lo), Some(hi)] if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
                [Some(lo), Some(hi)] if lo.is_finite() && hi.is_finite() => {
                    return Err(Error::Usage(format!("--range {text}: the minimum must be below the maximum")))
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "--range {text}: give MIN,MAX, two numbers, e.g. --range=-0.5,1.5"
                    )))
                }
            }
        }
    };
    let points = args.points.unwrap_or(if matches!(shape, Shape::Line { .. }) { 41 } else { 21 });
    if points < 2 {
        return Err(Error::Usage(format!("--points {points}: at least 2 are needed to span the range")));
    }
    Ok((range, points))
}

/// The checkpoints the shape reads, each with the option that named it.
fn inputs(shape: &Shape) -> Vec<(PathBuf, String)> {
    match shape {
        Shape::Line { from, to } => vec![(from.clone(), "--from".into()), (to.clone(), "--to".into())],
        Shape::Plane { points } => {
            points.iter().zip(["A", "B", "C"]).map(|(p, n)| (p.clone(), format!("--plane's {n}"))).collect()
        }
        Shape::Around { at, .. } => vec![(at.clone(), "--around".into())],
    }
}

/// Measures what `args` asks for, printing nothing.
pub fn measure(args: &LandscapeArgs, placement: &Placement, non_strict: bool) -> Result<Landscape> {
    let shape = shape_of(args)?;
    let (range, side) = grid_of(args, &shape)?;
    let mode = NormMode::parse(&args.bn)?;
    let trajectory_files: Vec<PathBuf> =
        args.trajectory.iter().flat_map(|t| t.split(',')).map(|s| PathBuf::from(s.trim())).collect();
    if !trajectory_files.is_empty() && matches!(shape, Shape::Line { .. }) {
        return Err(Error::Usage("--trajectory is drawn on a plane: give --plane or --around with it".into()));
    }
    let named = inputs(&shape);
    let (config, file) = config_for(args.config.clone(), &args.set, &named[0].0, non_strict)?;
    check_outputs(args, &config, &file, &named, &trajectory_files)?;
    let all: Vec<(PathBuf, String)> =
        named.iter().cloned().chain(trajectory_files.iter().map(|f| (f.clone(), "--trajectory".into()))).collect();
    for (path, flag) in &all[1..] {
        check_same_model(&config, &named[0].0, path, flag)?;
    }
    let (train_set, test_set) = data_for_checkpoint(&config, &file, &named[0].0)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    let states = named.iter().map(|(p, _)| state(p, &model, non_strict)).collect::<Result<Vec<State>>>()?;
    let rows = 1024.min(train_set.n.max(test_set.n).max(1));
    let net = train::build_network(&config, model.clone(), placement, rows)?;
    let device = net.describe();
    let mut ev = Evaluator { net, loss: config.model.loss, mode, batch: config.train.batch_size };
    let norm = norm_words(&model, mode, config.train.batch_size);
    let (origin, basis) = plane_basis(&model, &shape, &states)?;
    let mut measured = Vec::new();
    let mut at = |coords: Vec<f64>, weights: &[f64], points: &[&State]| -> Result<()> {
        let s = land::affine(&model, points, weights)?;
        measured.push(Row { coords, train: ev.measure(&s, &train_set)?, test: ev.measure(&s, &test_set)? });
        Ok(())
    };
    match &shape {
        Shape::Line { .. } => {
            for a in land::alphas(range.0, range.1, side) {
                at(vec![a], &land::line(a), &[&states[0], &states[1]])?;
            }
        }
        Shape::Plane { .. } | Shape::Around { .. } => {
            let ticks = land::grid(range.0, range.1, side);
            let refs: Vec<&State> = origin.iter().chain(basis.iter()).collect();
            let anchors = matches!(shape, Shape::Plane { .. });
            for &y in &ticks {
                for &x in &ticks {
                    let w = if anchors { land::through_three(x, y) } else { land::around(x, y) };
                    at(vec![x, y], &w, &refs)?;
                }
            }
        }
    }
    let trajectory = project_all(&model, &shape, &states, &basis, &trajectory_files, non_strict)?;
    Ok(Landscape { shape, rows: measured, side, range, trajectory, device, norm })
}

/// For a plane, the states its weights combine (A, B, C; or θ, d₁, d₂) split into the origin and
/// the rest; for a line, nothing.
fn plane_basis(model: &Model, shape: &Shape, states: &[State]) -> Result<(Vec<State>, Vec<State>)> {
    match shape {
        Shape::Line { .. } => Ok((Vec::new(), Vec::new())),
        Shape::Plane { .. } => Ok((vec![states[0].clone()], states[1..].to_vec())),
        Shape::Around { seed, .. } => {
            let (d1, d2) = land::random_directions(model, &states[0], *seed);
            Ok((vec![states[0].clone()], vec![d1, d2]))
        }
    }
}

/// The trajectory's checkpoints in the plane's coordinates.
fn project_all(
    model: &Model,
    shape: &Shape,
    states: &[State],
    basis: &[State],
    files: &[PathBuf],
    non_strict: bool,
) -> Result<Vec<Projected>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let origin = &states[0].params;
    let diff = |s: &State| s.params.iter().zip(origin).map(|(a, b)| a - b).collect::<Vec<f32>>();
    let (u, v) = match shape {
        Shape::Plane { .. } => (diff(&basis[0]), diff(&basis[1])),
        _ => (basis[0].params.clone(), basis[1].params.clone()),
    };
    files
        .iter()
        .map(|f| {
            let p = state(f, model, non_strict)?;
            let (x, y, off_plane) = land::project(origin, &u, &v, &p.params)?;
            Ok(Projected { file: f.clone(), x, y, off_plane })
        })
        .collect()
}

fn state(path: &Path, model: &Model, non_strict: bool) -> Result<State> {
    let (params, norm) = state_dict(path, model, non_strict)?;
    Ok(State { params, norm })
}

/// A checkpoint that describes its model must hold the first one's (layers, loss, input scaling).
fn check_same_model(config: &Config, first: &Path, path: &Path, flag: &str) -> Result<()> {
    if crate::checkpoint::load_description(path)?.is_some() {
        let (other, _) = config_for(None, &[], path, true)?;
        let differs = other.model.layers != config.model.layers || other.model.loss != config.model.loss;
        if differs {
            return Err(Error::Usage(format!(
                "{flag} {} holds another model than {}: a path or plane needs states of one model",
                path.display(),
                first.display()
            )));
        }
    }
    if crate::checkpoint::load_input_transform(path)? != crate::checkpoint::load_input_transform(first)? {
        return Err(Error::Usage(format!(
            "{flag} {} standardises its inputs otherwise than {}: its losses would be on other data",
            path.display(),
            first.display()
        )));
    }
    Ok(())
}

/// Outputs checked before any work: plot format, writable files, none over an input.
fn check_outputs(
    args: &LandscapeArgs,
    config: &Config,
    file: &Path,
    named: &[(PathBuf, String)],
    trajectory: &[PathBuf],
) -> Result<()> {
    let mut outputs: Vec<(&Path, &str)> = Vec::new();
    if let Some(p) = &args.plot {
        crate::plot::format_of(p, "--plot")?;
        train::session::check_writable(p, "--plot")?;
        outputs.push((p, "--plot"));
    }
    if let Some(p) = &args.table {
        train::session::check_writable(p, "--table")?;
        outputs.push((p, "--table"));
    }
    let mut ins = train::session::config_inputs(config, file);
    ins.extend(named.iter().map(|(p, _)| p.as_path()));
    ins.extend(trajectory.iter().map(|p| p.as_path()));
    train::session::check_outputs_apart(&outputs, &ins)
}

fn norm_words(model: &Model, mode: NormMode, batch: usize) -> String {
    match (model.has_batch_norm(), mode) {
        (false, _) => "no batch norm".into(),
        (true, NormMode::Eval) => "batch norm in evaluation mode, running statistics combined like the parameters \
                                   (variances floored at 0)"
            .into(),
        (true, NormMode::Train) => {
            format!("batch norm in training mode, batches of {batch} consecutive rows, on the CPU reference")
        }
    }
}

/// The printed summary: the table for a line, the extremes and anchors for a plane.
pub fn report(l: &Landscape) -> String {
    let mut out = String::new();
    let what = match &l.shape {
        Shape::Line { from, to } => format!("(1−α)·A + α·B, A = {}, B = {}", from.display(), to.display()),
        Shape::Plane { points: [a, b, c] } => {
            format!("A + x·(B−A) + y·(C−A), A = {}, B = {}, C = {}", a.display(), b.display(), c.display())
        }
        Shape::Around { at, seed } => {
            format!("θ + x·d₁ + y·d₂ at {}, filter-normalised directions from seed {seed}", at.display())
        }
    };
    let _ = writeln!(out, "{what}; {} on {}", l.norm, l.device);
    match l.shape {
        Shape::Line { .. } => line_report(&mut out, &l.rows),
        _ => plane_report(&mut out, l),
    }
    out
}

fn line_report(out: &mut String, rows: &[Row]) {
    let _ =
        writeln!(out, "{:>7}  {:>10}  {:>10}  {:>9}  {:>9}", "α", "train loss", "test loss", "train acc", "test acc");
    for r in rows {
        let _ = writeln!(
            out,
            "{:>7.3}  {:>10}  {:>10}  {:>8.2}%  {:>8.2}%",
            r.coords[0],
            loss(r.train.loss),
            loss(r.test.loss),
            100.0 * r.train.accuracy,
            100.0 * r.test.accuracy
        );
    }
    let inside: Vec<&Row> = rows.iter().filter(|r| (0.0..=1.0).contains(&r.coords[0])).collect();
    let (Some(a), Some(b)) = (inside.first(), inside.last()) else { return };
    let top = inside.iter().fold(a, |m, r| if r.train.loss > m.train.loss { r } else { m });
    let barrier = top.train.loss - a.train.loss.max(b.train.loss);
    let rise = inside.windows(2).find(|w| w[1].train.loss > w[0].train.loss).map(|w| w[1].coords[0]);
    let _ = writeln!(
        out,
        "train loss on [0, 1]: highest {:.4} at α = {:.3}, {:.4} above the higher end (a barrier if > 0); {}",
        top.train.loss,
        top.coords[0],
        barrier,
        match rise {
            None => "decreases monotonically from A to B".to_string(),
            Some(at) => format!("first rises at α = {at:.3}"),
        }
    );
}

/// Four decimals, or three significant digits below 0.001 (a trained model's training loss).
fn loss(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

fn plane_report(out: &mut String, l: &Landscape) {
    let min = l.rows.iter().fold(&l.rows[0], |m, r| if r.train.loss < m.train.loss { r } else { m });
    let max = l.rows.iter().fold(&l.rows[0], |m, r| if r.train.loss > m.train.loss { r } else { m });
    let _ = writeln!(
        out,
        "{}×{} grid on [{}, {}]²: train loss from {} at ({:.3}, {:.3}) to {} at ({:.3}, {:.3})",
        l.side,
        l.side,
        l.range.0,
        l.range.1,
        loss(min.train.loss),
        min.coords[0],
        min.coords[1],
        loss(max.train.loss),
        max.coords[0],
        max.coords[1]
    );
    for (name, x, y) in anchors(&l.shape) {
        if let Some(r) = l.rows.iter().find(|r| r.coords == [x, y]) {
            let _ =
                writeln!(out, "{name} ({x}, {y}): train loss {}, test loss {}", loss(r.train.loss), loss(r.test.loss));
        }
    }
    for p in &l.trajectory {
        let _ = writeln!(
            out,
            "{}: ({:.3}, {:.3}), {:.1}% of its distance from the origin off the plane",
            p.file.display(),
            p.x,
            p.y,
            100.0 * p.off_plane
        );
    }
}

/// The plane's named points and their coordinates.
fn anchors(shape: &Shape) -> Vec<(&'static str, f64, f64)> {
    match shape {
        Shape::Plane { .. } => vec![("A", 0.0, 0.0), ("B", 1.0, 0.0), ("C", 0.0, 1.0)],
        Shape::Around { .. } => vec![("θ", 0.0, 0.0)],
        Shape::Line { .. } => Vec::new(),
    }
}

/// Every point as CSV.
pub fn table(l: &Landscape) -> String {
    let head = if matches!(l.shape, Shape::Line { .. }) { "alpha" } else { "x,y" };
    let mut out = format!("{head},train_loss,test_loss,train_acc,test_acc\n");
    for r in &l.rows {
        let coords: Vec<String> = r.coords.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            coords.join(","),
            r.train.loss,
            r.test.loss,
            r.train.accuracy,
            r.test.accuracy
        );
    }
    out
}

/// The line's losses and accuracies against α, or the plane's training loss as level sets with
/// the anchors and the trajectory on it.
pub fn figure(l: &Landscape) -> String {
    use crate::plot::{Chart, Field, Panel, Series};
    let curve = |name: &str, f: &dyn Fn(&Row) -> f64| Series {
        name: name.into(),
        points: l.rows.iter().map(|r| (r.coords[0], f(r))).collect(),
    };
    match &l.shape {
        Shape::Line { .. } => {
            let chart = |title: &str, y: &str, series: Vec<Series>, y_range| Chart {
                title: title.into(),
                x_label: "α  (0: A, 1: B)".into(),
                y_label: y.into(),
                series,
                log_y: false,
                y_range,
                scatter: false,
            };
            let losses = vec![curve("train", &|r| r.train.loss), curve("test", &|r| r.test.loss)];
            let accs = vec![curve("train", &|r| 100.0 * r.train.accuracy), curve("test", &|r| 100.0 * r.test.accuracy)];
            crate::plot::svg(&[
                chart("Loss along (1−α)·A + α·B", "loss", losses, None),
                chart("Accuracy along the line", "accuracy (%)", accs, Some((0.0, 100.0))),
            ])
        }
        _ => {
            let mut paths: Vec<Series> = anchors(&l.shape)
                .into_iter()
                .map(|(name, x, y)| Series { name: name.into(), points: vec![(x, y)] })
                .collect();
            if !l.trajectory.is_empty() {
                paths.push(Series {
                    name: "trajectory (projected)".into(),
                    points: l.trajectory.iter().map(|p| (p.x, p.y)).collect(),
                });
            }
            let title = match l.shape {
                Shape::Plane { .. } => "log₁₀ training loss on the plane through A, B, C",
                _ => "log₁₀ training loss around θ, filter-normalised",
            };
            crate::plot::svg_grid(
                &[Panel::Field(Field {
                    title: title.into(),
                    bounds: (l.range.0, l.range.1, l.range.0, l.range.1),
                    resolution: l.side,
                    // Decades evenly: a trained model's loss is orders of magnitude below the start's.
                    values: l.rows.iter().map(|r| r.train.loss.max(1e-30).log10()).collect(),
                    measure: "log₁₀ loss".into(),
                    log: false,
                    paths,
                })],
                1,
            )
        }
    }
}
