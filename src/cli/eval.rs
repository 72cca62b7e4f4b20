//! `gradflow eval`: loss, accuracy and confusion matrix of a saved model on the config's data;
//! for a regression model, loss, RMSE and R² (per target and averaged) instead.

use std::fmt;

use super::saved::{data_for_checkpoint, saved_network};
use super::EvalArgs;
use crate::error::{Error, Result};
use crate::train::Placement;

/// What `gradflow eval` found; `Display` writes the command's report.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The split evaluated: test, train or all.
    pub split: String,
    pub rows: usize,
    /// The network and where it ran (`Network::describe`).
    pub device: String,
    /// Mean loss over the rows.
    pub loss: f32,
    /// Rows whose predicted class (argmax of the outputs) is the label.
    pub correct: usize,
    /// `confusion[true class][predicted class]`: row counts.
    pub confusion: Vec<Vec<usize>>,
    /// The classes' names, when the data names them (else they are numbered).
    pub class_names: Option<Vec<String>>,
    /// A regression model's scores (then `correct` is 0 and `confusion` empty: no classes).
    pub regression: Option<RegressionReport>,
}

/// RMSE and R² of a regression model, per target (named) and over them all.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionReport {
    pub target_names: Vec<String>,
    pub scores: crate::train::regression::RegressionScores,
}

impl fmt::Display for RegressionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scores;
        writeln!(f, "RMSE {:.4} (all targets pooled)  R² {:.4} (mean over targets)", s.rmse_all, s.r2_mean)?;
        let width = self.target_names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(6);
        writeln!(f, "{:<width$}  {:>10}  {:>10}", "target", "RMSE", "R²")?;
        for (j, name) in self.target_names.iter().enumerate() {
            writeln!(f, "{name:<width$}  {:>10.4}  {:>10.4}", s.rmse[j], s.r2[j])?;
        }
        Ok(())
    }
}

impl Evaluation {
    /// The fraction of rows predicted right; NaN for a regression model (no classes).
    pub fn accuracy(&self) -> f64 {
        match self.regression {
            Some(_) => f64::NAN,
            None => self.correct as f64 / self.rows as f64,
        }
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} rows ({}) on {}", self.rows, self.split, self.device)?;
        if let Some(r) = &self.regression {
            writeln!(f, "loss {:.4}", self.loss)?;
            return write!(f, "{r}");
        }
        // As a percentage computed in this order, so the figure reads as it always has.
        writeln!(f, "loss {:.4}  accuracy {:.2}%", self.loss, 100.0 * self.correct as f64 / self.rows as f64)?;
        writeln!(f, "confusion matrix (rows: true class, columns: predicted)")?;
        let names: Vec<String> =
            (0..self.confusion.len()).map(|c| crate::data::class_name(self.class_names.as_deref(), c)).collect();
        let width = names.iter().map(|n| n.chars().count() + 1).max().unwrap_or(0).max(6);
        write!(f, "{:>width$}", "")?;
        for name in &names {
            write!(f, "{name:>width$}")?;
        }
        writeln!(f)?;
        for (name, row) in names.iter().zip(&self.confusion) {
            write!(f, "{name:>width$}")?;
            for v in row {
                write!(f, "{v:>width$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The command: evaluates and prints the report.
pub fn eval(args: &EvalArgs, placement: &Placement, non_strict: bool) -> Result<()> {
    let text = evaluate(args, placement, non_strict)?.to_string();
    crate::say!("{}", text.strip_suffix('\n').unwrap_or(&text));
    Ok(())
}

/// Evaluates `args.checkpoint` on the split `args.split` of the config's data, printing nothing.
pub fn evaluate(args: &EvalArgs, placement: &Placement, non_strict: bool) -> Result<Evaluation> {
    let (split, checkpoint) = (args.split.as_str(), args.checkpoint.as_path());
    let (config, file) = super::saved::config_for(args.config.clone(), &args.set, checkpoint, non_strict)?;
    let (train_set, test_set) = data_for_checkpoint(&config, &file, checkpoint)?;
    let data = match split {
        "test" => test_set,
        "train" => train_set,
        "all" => {
            let mut all = train_set;
            all.x.extend(&test_set.x);
            all.labels.extend(&test_set.labels);
            if let (Some(t), Some(more)) = (all.targets.as_mut(), &test_set.targets) {
                t.values.extend(&more.values);
            }
            all.n += test_set.n;
            all
        }
        other => return Err(Error::Usage(format!("--split {other}: use test, train or all"))),
    };
    if data.n == 0 {
        return Err(Error::Usage(format!("the {split} split is empty (data.test_fraction?)")));
    }
    let mut net = saved_network(&config, data.d, checkpoint, placement, 1024.min(data.n), non_strict)?;
    if let Some(t) = &data.targets {
        crate::exec::network::check_targets(net.model(), &data)?;
        let pred = net.predict(&data.x, data.n)?;
        let out = crate::reference::loss_of(crate::spec::Loss::Mse, &pred, Some(&t.values), &data.labels, data.n, t.k);
        // The checkpoint's names where they describe these k targets; the data's otherwise.
        let names = checkpoint_target_names(checkpoint).filter(|n| n.len() == t.k).unwrap_or_else(|| t.all_names());
        return Ok(Evaluation {
            split: split.to_string(),
            rows: data.n,
            device: without_step(&net.describe()),
            loss: out.loss,
            correct: 0,
            confusion: Vec::new(),
            class_names: None,
            regression: Some(RegressionReport {
                target_names: names,
                scores: crate::train::regression::scores(&pred, t),
            }),
        });
    }
    let classes = net.model().outputs();
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(Error::Model(format!("the data has label {bad} but the model has {classes} outputs")));
    }
    let logits = net.predict(&data.x, data.n)?;
    let out = crate::reference::loss_of(config.model.loss, &logits, None, &data.labels, data.n, classes);
    // Rows: true class; columns: predicted class (argmax, first maximum as torch.argmax).
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (r, &label) in data.labels.iter().enumerate() {
        let row = &logits[r * classes..(r + 1) * classes];
        let pred = crate::reference::argmax(row);
        if (label as usize) < classes {
            confusion[label as usize][pred] += 1;
        }
    }
    Ok(Evaluation {
        split: split.to_string(),
        rows: data.n,
        device: without_step(&net.describe()),
        loss: out.loss,
        correct: out.correct,
        confusion,
        class_names: data.class_names.clone(),
        regression: None,
    })
}

/// The target names a checkpoint's metadata carries, if any.
fn checkpoint_target_names(checkpoint: &std::path::Path) -> Option<Vec<String>> {
    crate::checkpoint::load_description(checkpoint).ok().flatten().and_then(|d| d.target_names)
}

/// The executor's description less its training-step line: evaluation runs no step.
fn without_step(describe: &str) -> String {
    describe.lines().filter(|l| !l.trim_start().starts_with("step:")).collect::<Vec<_>>().join("\n")
}
