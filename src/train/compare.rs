//! `gradflow compare`: the same model, from the same initial weights and the same batch schedule,
//! trained with each of several optimizers (or batching schemes), with the curves overlaid.
//!
//! An entry is `config` (the config's own optimizer and batching) or a preset name, optionally
//! with settings in parentheses: TOML values separated by commas or spaces, `adam(lr=0.003,
//! betas=[0.8, 0.99])`, `sgd(lr=0.1 batching="replacement")`. Settings name optimizer fields, or
//! `batching` and `batch_size` of the training section. A preset takes the config's learning
//! rate unless the entry sets `lr`, so no run has a rate the user did not see; `settings` writes
//! every field of a run back in this form.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::optim::{MomentumForm, MomentumSpec, Optimizer};

/// The entry that stands for the config's own optimizer (and batching).
pub const CONFIG_ENTRY: &str = "config";

/// `--optimizers` when not given: the config's own run first, as the reference.
pub const DEFAULT_ENTRIES: &str = "config,sgd,momentum,nesterov,adagrad,rmsprop,adam";

/// The presets: (name, optimizer fields as TOML, batching override). None sets `lr`: each takes
/// the config's unless the entry gives one; the other fields are torch.optim's defaults.
pub const PRESETS: [(&str, &str, Option<&str>); 10] = [
    ("sgd", "type = 'sgd'", None),
    ("momentum", "type = 'sgd'\nmomentum = 0.9", None),
    ("nesterov", "type = 'sgd'\nmomentum = 0.9\nnesterov = true", None),
    ("adagrad", "type = 'adagrad'", None),
    ("rmsprop", "type = 'rmsprop'", None),
    ("adam", "type = 'adam'", None),
    ("adamw", "type = 'adamw'", None),
    // The course's two SGD schemes and full-batch gradient descent.
    ("sgd-reshuffle", "type = 'sgd'", Some("shuffle")),
    ("sgd-replacement", "type = 'sgd'", Some("replacement")),
    ("gd", "type = 'sgd'", Some("full-batch")),
];

/// One run of the comparison: its label and the config it trains with.
#[derive(Clone, Debug)]
pub struct Contender {
    pub label: String,
    pub config: Config,
}

/// Splits at commas outside parentheses.
fn entries(spec: &str) -> Result<Vec<String>> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in spec.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(Error::Usage(format!("--optimizers '{spec}': a ')' without its '('")));
        }
        cur.push(c);
    }
    if depth != 0 {
        return Err(Error::Usage(format!("--optimizers '{spec}': a '(' without its ')'")));
    }
    out.push(cur);
    let out: Vec<String> = out.into_iter().map(|e| e.trim().to_string()).collect();
    if out.iter().any(String::is_empty) {
        return Err(Error::Usage(format!("--optimizers '{spec}': an empty entry")));
    }
    Ok(out)
}

/// The pieces of `inside` separated by commas or blanks outside brackets, braces and quotes,
/// with a lone `=` (from `lr = 0.1`) joined to its neighbours.
fn pieces(inside: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in inside.chars() {
        match (quote, c) {
            (Some(q), _) => quote = (c != q).then_some(q),
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') | (None, ' ' | '\t') if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    let mut joined: Vec<String> = Vec::new();
    for p in out {
        match joined.last_mut() {
            Some(last) if last.ends_with('=') || p.starts_with('=') => last.push_str(&p),
            _ => joined.push(p),
        }
    }
    joined
}

/// The entry's settings as (field, TOML value), in the order given.
fn parse_settings(entry: &str, inside: &str) -> Result<Vec<(String, toml::Value)>> {
    let usage = |m: String| Error::Usage(format!("--optimizers entry '{entry}': {m}"));
    let mut out: Vec<(String, toml::Value)> = Vec::new();
    for piece in pieces(inside) {
        let (key, value) = piece
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| usage(format!("'{piece}' is not a setting; write name=value, e.g. lr=0.01")))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| {
                usage(format!(
                    "{key}={value}: not a TOML value (a number 0.01, true/false, a string \"replacement\", \
                     an array [0.9, 0.999])"
                ))
            })?;
        if out.iter().any(|(k, _)| k == key) {
            return Err(usage(format!("{key} is given twice")));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The contenders `spec` names, each a copy of `base` with its optimizer (and batching).
pub fn parse_contenders(base: &Config, spec: &str) -> Result<Vec<Contender>> {
    entries(spec)?.into_iter().map(|entry| contender(base, &entry)).collect()
}

/// One entry's contender: its preset (or the config's optimizer) with the entry's settings.
fn contender(base: &Config, entry: &str) -> Result<Contender> {
    let usage = |m: String| Error::Usage(format!("--optimizers entry '{entry}': {m}"));
    let (name, inside) = match entry.split_once('(') {
        Some((n, rest)) => (n.trim(), rest.strip_suffix(')').unwrap_or(rest)),
        None => (entry, ""),
    };
    let mut config = base.clone();
    let mut optimizer = if name == CONFIG_ENTRY {
        table_of(&base.optimizer)
    } else {
        let names = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ");
        let (_, fields, batching) = PRESETS.iter().find(|p| p.0 == name).ok_or_else(|| {
            Error::Usage(format!("--optimizers: unknown entry '{name}'; use {CONFIG_ENTRY} or one of {names}"))
        })?;
        if let Some(b) = batching {
            config.train.batching = b.parse()?;
        }
        let mut table: toml::Table = toml::from_str(fields).map_err(|e| Error::Usage(e.to_string()))?;
        table.insert("lr".into(), toml::Value::Float(base.optimizer.lr()));
        table
    };
    let preset = optimizer.clone();
    let mut given = Vec::new();
    for (key, value) in parse_settings(entry, inside)? {
        match key.as_str() {
            "batching" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| usage("batching is a string, e.g. batching=\"replacement\"".into()))?;
                config.train.batching = s.parse().map_err(|e: Error| usage(e.to_string()))?;
            }
            "batch_size" => {
                let n = value
                    .as_integer()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| usage(format!("batch_size={value}: a positive integer, e.g. batch_size=32")))?;
                config.train.batch_size = n as usize;
            }
            "type" => {
                return Err(usage("the optimizer is the entry's name (adam(lr=0.01)), not a type= setting".into()))
            }
            _ => {
                given.push((key.clone(), value.clone()));
                optimizer.insert(key, value);
            }
        }
    }
    config.optimizer = optimizer_of(optimizer).map_err(|m| usage(blame(&preset, &given).unwrap_or(m)))?;
    config.optimizer.validate().map_err(usage)?;
    let label = if name == CONFIG_ENTRY && inside.trim().is_empty() {
        format!("{CONFIG_ENTRY}: {}", short_settings(&base.optimizer))
    } else {
        entry.to_string()
    };
    Ok(Contender { label, config })
}

fn optimizer_of(table: toml::Table) -> std::result::Result<Optimizer, String> {
    toml::Value::Table(table).try_into::<Optimizer>().map_err(|e| crate::config::messages::plain(e.message()))
}

/// The first of the `given` settings that the `preset` refuses on its own: "field=value:
/// why; expected form", for an error that names the field.
fn blame(preset: &toml::Table, given: &[(String, toml::Value)]) -> Option<String> {
    let example = optimizer_of(preset.clone()).ok().map(|o| settings_of(&o)).unwrap_or_default();
    given.iter().find_map(|(key, value)| {
        let mut one = preset.clone();
        one.insert(key.clone(), value.clone());
        let why = optimizer_of(one).err()?;
        let form =
            example.iter().find(|(k, _)| k == key).map_or(String::new(), |(k, v)| format!("; write it as {k}={v}"));
        Some(format!("{key}={value}: {why}{form}"))
    })
}

/// Every field of `optimizer` (defaults included) as (name, TOML value), in its struct's order.
pub fn settings_of(optimizer: &Optimizer) -> Vec<(String, String)> {
    // `{:?}` writes the shortest text that reads back as the same f64, in a form TOML reads.
    let f = |x: f64| format!("{x:?}");
    let b = |x: bool| x.to_string();
    let adam = |lr, betas: [f64; 2], eps, wd, amsgrad| {
        vec![
            ("lr", f(lr)),
            ("betas", format!("[{}, {}]", f(betas[0]), f(betas[1]))),
            ("eps", f(eps)),
            ("weight_decay", f(wd)),
            ("amsgrad", b(amsgrad)),
        ]
    };
    let fields = match optimizer {
        Optimizer::Sgd(s) => vec![
            ("lr", f(s.lr)),
            ("momentum", momentum(&s.momentum)),
            ("dampening", f(s.dampening)),
            ("weight_decay", f(s.weight_decay)),
            ("nesterov", b(s.nesterov)),
        ],
        Optimizer::Adagrad(a) => vec![
            ("lr", f(a.lr)),
            ("lr_decay", f(a.lr_decay)),
            ("weight_decay", f(a.weight_decay)),
            ("initial_accumulator_value", f(a.initial_accumulator_value)),
            ("eps", f(a.eps)),
        ],
        Optimizer::Rmsprop(r) => vec![
            ("lr", f(r.lr)),
            ("alpha", f(r.alpha)),
            ("eps", f(r.eps)),
            ("weight_decay", f(r.weight_decay)),
            ("momentum", f(r.momentum)),
            ("centered", b(r.centered)),
        ],
        Optimizer::Adam(a) => adam(a.lr, a.betas, a.eps, a.weight_decay, a.amsgrad),
        Optimizer::Adamw(a) => adam(a.lr, a.betas, a.eps, a.weight_decay, a.amsgrad),
    };
    fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// SGD's momentum as the config writes it: a number, or a table with its form.
fn momentum(m: &MomentumSpec) -> String {
    let form = match m.form() {
        MomentumForm::Pytorch => return format!("{:?}", m.value()),
        MomentumForm::HeavyBall => "heavy-ball",
        MomentumForm::NesterovLookahead => "nesterov-lookahead",
    };
    format!("{{value = {:?}, form = \"{form}\"}}", m.value())
}

/// `optimizer` as an entry that names its learning rate and the fields it sets away from
/// torch.optim's defaults: `sgd(lr=0.05, momentum=0.9)`.
pub fn short_settings(optimizer: &Optimizer) -> String {
    let bare = format!("type = '{}'\nlr = {:?}", optimizer.name(), optimizer.lr());
    let defaults = toml::from_str::<toml::Table>(&bare).ok().and_then(|t| optimizer_of(t).ok());
    let defaults = defaults.map(|d| settings_of(&d)).unwrap_or_default();
    let fields: Vec<String> = settings_of(optimizer)
        .into_iter()
        .filter(|(k, v)| k == "lr" || !defaults.iter().any(|(dk, dv)| dk == k && dv == v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{}({})", optimizer.name(), fields.join(", "))
}

/// `optimizer` as the `[optimizer]` table that reads back as it.
fn table_of(optimizer: &Optimizer) -> toml::Table {
    let lines: Vec<String> = settings_of(optimizer).iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let mut table: toml::Table = toml::from_str(&lines.join("\n")).unwrap_or_default();
    table.insert("type".into(), toml::Value::String(optimizer.name().into()));
    table
}

/// A run's full settings as an `--optimizers` entry that trains it again on `base`: every
/// optimizer field, and the batching and batch size where they differ from the config's.
pub fn settings(base: &Config, run: &Config) -> String {
    let mut fields: Vec<String> = settings_of(&run.optimizer).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if run.train.batching != base.train.batching {
        fields.push(format!("batching=\"{}\"", run.train.batching));
    }
    if run.train.batch_size != base.train.batch_size {
        fields.push(format!("batch_size={}", run.train.batch_size));
    }
    format!("{}({})", run.optimizer.name(), fields.join(", "))
}

/// One epoch of a run; epoch 0 is before training (its training numbers then come from an
/// evaluation of the training set, later ones from the epoch's own steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
}

impl Point {
    /// Epoch `epoch`'s point from its (loss, accuracy) on the training and the test set.
    pub fn new(epoch: usize, train: (f32, f32), test: (f32, f32)) -> Point {
        Point {
            epoch,
            train_loss: train.0 as f64,
            train_accuracy: train.1 as f64,
            test_loss: test.0 as f64,
            test_accuracy: test.1 as f64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Run {
    pub label: String,
    /// Where it ran (`Network::describe`).
    pub device: String,
    pub points: Vec<Point>,
    /// Seconds spent training (the evaluations after each epoch not counted).
    pub seconds: f64,
    /// Training rows stepped over, all epochs together.
    pub samples: usize,
    /// Why the run stopped early: its loss or parameters went NaN or ±Inf (its last point is
    /// then NaN).
    pub diverged: Option<String>,
}

impl Run {
    /// The last epoch's numbers.
    pub fn last(&self) -> Point {
        self.points[self.points.len() - 1]
    }
}

/// Trains `contender` for its config's epochs from the config's initial weights and batch seed.
pub fn run_contender(
    contender: &Contender,
    train_set: &crate::data::Dataset,
    test_set: &crate::data::Dataset,
    placement: &super::Placement,
) -> Result<Run> {
    let config = &contender.config;
    let model = crate::spec::Model::new(train_set.d, config.model.layers.clone())?;
    super::run::check_labels(&model, train_set, test_set, config)?;
    let mut batcher = super::batcher(config, train_set.n)?;
    super::check_batches(&model, &batcher)?;
    let mut net = super::build_network(config, model, placement, super::max_rows(config, train_set.n))?;
    if let Some(stream) = config.data.stream {
        net.set_streaming(stream);
    }
    net.set_train_data(train_set)?;
    let loss = config.model.loss;
    // Before any step: the same numbers for every contender, since they share the weights.
    let (train_loss, train_acc) = super::evaluate(net.as_mut(), train_set, loss)?;
    let (test_loss, test_acc) = super::evaluate(net.as_mut(), test_set, loss)?;
    let point = Point::new;
    let mut points = vec![point(0, (train_loss, train_acc), (test_loss, test_acc))];
    let (mut seconds, mut samples) = (0.0, 0);
    let mut diverged = None;
    for epoch in 1..=config.train.epochs {
        let batches = batcher.next_epoch();
        let start = web_time::Instant::now();
        let report = match super::train_batches(net.as_mut(), &batches, epoch, super::Observe::Submits, |_, _| {
            Ok(super::Flow::Continue)
        }) {
            Ok(r) => r,
            // A diverged run is a result of the comparison, not a failure of it.
            Err(e @ Error::Diverged { .. }) => {
                let nan = (f32::NAN, f32::NAN);
                points.push(point(epoch, nan, nan));
                diverged = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
        seconds += start.elapsed().as_secs_f64();
        samples += batches[..report.steps].iter().map(Vec::len).sum::<usize>();
        let test = super::evaluate(net.as_mut(), test_set, loss)?;
        points.push(point(epoch, (report.train_loss, report.train_accuracy), test));
    }
    Ok(Run { label: contender.label.clone(), device: net.describe(), points, seconds, samples, diverged })
}

/// Training loss (log axis) and test accuracy of every run, overlaid.
pub fn charts(runs: &[Run]) -> Vec<crate::plot::Chart> {
    use crate::plot::{Chart, Series};
    let series = |f: &dyn Fn(&Point) -> f64| {
        runs.iter()
            .map(|r| Series {
                name: r.label.clone(),
                points: r.points.iter().map(|p| (p.epoch as f64, f(p))).collect(),
            })
            .collect()
    };
    vec![
        Chart {
            title: "Training loss".into(),
            x_label: "epoch".into(),
            y_label: "training loss (log scale)".into(),
            series: series(&|p| p.train_loss),
            log_y: true,
            y_range: None,
            scatter: false,
        },
        // Real targets have no accuracy: their second chart is the test RMSE, √ of the MSE.
        if runs.iter().flat_map(|r| &r.points).all(|p| p.train_accuracy.is_nan()) {
            Chart {
                title: "Test RMSE".into(),
                x_label: "epoch".into(),
                y_label: "test RMSE".into(),
                series: series(&|p| p.test_loss.sqrt()),
                log_y: false,
                y_range: None,
                scatter: false,
            }
        } else {
            Chart {
                title: "Test accuracy".into(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                series: series(&|p| 100.0 * p.test_accuracy),
                log_y: false,
                y_range: Some((0.0, 100.0)),
                scatter: false,
            }
        },
    ]
}
