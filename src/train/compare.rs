//! `gradflow compare`: the same model, from the same initial weights and the same batch schedule,
//! trained with each of several optimizers (or batching schemes), with the curves overlaid.
//!
//! An entry is a preset name, optionally with settings in parentheses, TOML values separated by
//! spaces: `adam(lr=0.003)`, `sgd(lr=0.1 batching="replacement")`, `momentum(momentum=0.95)`.
//! Settings name optimizer fields, or `batching` and `batch_size` of the training section.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::optim::Optimizer;

/// The presets: (name, optimizer fields as TOML, batching override). Learning rates suit the
/// default digits run; override them per entry for other problems.
pub const PRESETS: [(&str, &str, Option<&str>); 10] = [
    ("sgd", "type = 'sgd'\nlr = 0.05", None),
    ("momentum", "type = 'sgd'\nlr = 0.05\nmomentum = 0.9", None),
    ("nesterov", "type = 'sgd'\nlr = 0.05\nmomentum = 0.9\nnesterov = true", None),
    ("adagrad", "type = 'adagrad'\nlr = 0.05", None),
    ("rmsprop", "type = 'rmsprop'\nlr = 0.001", None),
    ("adam", "type = 'adam'\nlr = 0.001", None),
    ("adamw", "type = 'adamw'\nlr = 0.001", None),
    // The course's two SGD schemes and full-batch gradient descent.
    ("sgd-reshuffle", "type = 'sgd'\nlr = 0.05", Some("shuffle")),
    ("sgd-replacement", "type = 'sgd'\nlr = 0.05", Some("replacement")),
    ("gd", "type = 'sgd'\nlr = 0.5", Some("full-batch")),
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

/// The contenders `spec` names, each a copy of `base` with its optimizer (and batching).
pub fn parse_contenders(base: &Config, spec: &str) -> Result<Vec<Contender>> {
    let names = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for entry in entries(spec)? {
        let (name, settings) = match entry.split_once('(') {
            Some((n, rest)) => (n.trim(), rest.strip_suffix(')').unwrap_or(rest).trim()),
            None => (entry.as_str(), ""),
        };
        let (_, fields, batching) = PRESETS
            .iter()
            .find(|p| p.0 == name)
            .ok_or_else(|| Error::Usage(format!("--optimizers: unknown entry '{name}'; use one of {names}")))?;
        let mut optimizer: toml::Table = toml::from_str(fields).map_err(|e| Error::Usage(e.to_string()))?;
        let mut config = base.clone();
        if let Some(b) = batching {
            config.train.batching = b.parse().map_err(|e: Error| Error::Usage(e.to_string()))?;
        }
        // Settings as TOML: `lr=0.1 momentum=0.9` reads as two key-value lines.
        let table: toml::Table = toml::from_str(&settings.split_whitespace().collect::<Vec<_>>().join("\n"))
            .map_err(|e| Error::Usage(format!("--optimizers entry '{entry}': {}", e.message())))?;
        for (key, value) in table {
            match key.as_str() {
                "batching" => {
                    let s = value.as_str().ok_or_else(|| Error::Usage(format!("'{entry}': batching is a string")))?;
                    config.train.batching = s.parse()?;
                }
                "batch_size" => {
                    let n = value
                        .as_integer()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| Error::Usage(format!("'{entry}': batch_size must be a positive integer")))?;
                    config.train.batch_size = n as usize;
                }
                _ => {
                    optimizer.insert(key, value);
                }
            }
        }
        config.optimizer = toml::Value::Table(optimizer)
            .try_into::<Optimizer>()
            .map_err(|e| Error::Usage(format!("--optimizers entry '{entry}': {}", e.message())))?;
        config.optimizer.validate().map_err(|m| Error::Usage(format!("--optimizers entry '{entry}': {m}")))?;
        out.push(Contender { label: entry.clone(), config });
    }
    Ok(out)
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
        let start = std::time::Instant::now();
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
        Chart {
            title: "Test accuracy".into(),
            x_label: "epoch".into(),
            y_label: "test accuracy (%)".into(),
            series: series(&|p| 100.0 * p.test_accuracy),
            log_y: false,
            y_range: Some((0.0, 100.0)),
            scatter: false,
        },
    ]
}
