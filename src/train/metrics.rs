//! The metrics file: one record per epoch (and per `log_every` steps when asked), as CSV or JSON
//! lines by the file's extension. Fields: step, epoch, loss, accuracy, test_loss,
//! test_accuracy, lr, grad_norm, wall_s, sharpness (λ_max of the training loss's Hessian, from
//! `train --track-sharpness`, on the step records where it was measured), val_loss,
//! val_accuracy (the validation split's, `data.validation_fraction`); a field that does
//! not apply to a record is empty (CSV) or null (JSON).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub step: usize,
    pub epoch: usize,
    /// Mean training loss over the epoch, or the last step's loss for a step record.
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub lr: f64,
    /// ‖∇‖₂ of the last step's gradients.
    pub grad_norm: Option<f64>,
    pub wall_s: f64,
    /// λ_max of the training loss's Hessian at this step (`train::sharpness`).
    pub sharpness: Option<f64>,
    /// The validation split's loss and accuracy after the epoch.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
}

/// (epoch, train loss, train accuracy, test loss, test accuracy, validation loss, validation
/// accuracy; NaN where a split is empty) of each epoch: what the session records and
/// `train --plot` draws.
pub type Curve = (f64, f64, f64, f64, f64, f64, f64);

// New fields go at the end: readers that take columns by position keep working.
const FIELDS: [&str; 12] = [
    "step",
    "epoch",
    "loss",
    "accuracy",
    "test_loss",
    "test_accuracy",
    "lr",
    "grad_norm",
    "wall_s",
    "sharpness",
    "val_loss",
    "val_accuracy",
];

pub struct MetricsWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    json: bool,
}

impl MetricsWriter {
    /// Creates (or, when `append`, continues) the file; `.jsonl`/`.json` give JSON lines, else CSV.
    pub fn create(path: &Path, append: bool) -> Result<MetricsWriter> {
        let io = |e: std::io::Error| Error::Io { file: path.to_path_buf(), message: e.to_string() };
        let json = path.extension().is_some_and(|e| e == "jsonl" || e == "json");
        let exists = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(io)?;
        let mut w = MetricsWriter { path: path.to_path_buf(), file: std::io::BufWriter::new(file), json };
        let continuing = append && exists;
        if !json && !continuing {
            writeln!(w.file, "{}", FIELDS.join(",")).map_err(io)?;
        }
        Ok(w)
    }

    pub fn write(&mut self, r: &Record) -> Result<()> {
        let opt = |v: Option<f64>, null: &str| v.filter(|x| x.is_finite()).map_or(null.to_string(), |x| format!("{x}"));
        let line = if self.json {
            let null = "null";
            format!(
                "{{\"step\":{},\"epoch\":{},\"loss\":{},\"accuracy\":{},\"test_loss\":{},\"test_accuracy\":{},\"lr\":{},\"grad_norm\":{},\"wall_s\":{:.3},\"sharpness\":{},\"val_loss\":{},\"val_accuracy\":{}}}",
                r.step,
                r.epoch,
                opt(r.loss, null),
                opt(r.accuracy, null),
                opt(r.test_loss, null),
                opt(r.test_accuracy, null),
                r.lr,
                opt(r.grad_norm, null),
                r.wall_s,
                opt(r.sharpness, null),
                opt(r.val_loss, null),
                opt(r.val_accuracy, null)
            )
        } else {
            format!(
                "{},{},{},{},{},{},{},{},{:.3},{},{},{}",
                r.step,
                r.epoch,
                opt(r.loss, ""),
                opt(r.accuracy, ""),
                opt(r.test_loss, ""),
                opt(r.test_accuracy, ""),
                r.lr,
                opt(r.grad_norm, ""),
                r.wall_s,
                opt(r.sharpness, ""),
                opt(r.val_loss, ""),
                opt(r.val_accuracy, "")
            )
        };
        let io = |e: std::io::Error| Error::Io { file: self.path.clone(), message: e.to_string() };
        writeln!(self.file, "{line}").map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// ‖g‖₂ of a flat gradient, summed in f64.
pub fn grad_norm(grads: &[f32]) -> f64 {
    grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt()
}
