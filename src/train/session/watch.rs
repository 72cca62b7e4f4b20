//! The validation loss's best epoch so far: which epochs improve on it (`--save-best`) and when
//! the run has waited `patience` epochs for one (`train.early_stopping`), as Keras'
//! `EarlyStopping(monitor="val_loss")` counts.

use crate::config::EarlyStopping;

#[derive(Clone, Debug)]
pub(super) struct Watch {
    patience: Option<usize>,
    min_delta: f64,
    /// The lowest validation loss so far and its epoch (`before` until an epoch improves).
    pub best: f64,
    pub best_epoch: usize,
}

impl Watch {
    /// Watching from after epoch `before` (a resumed run counts from where it resumed).
    pub fn new(stop: Option<&EarlyStopping>, before: usize) -> Watch {
        Watch {
            patience: stop.map(|s| s.patience),
            min_delta: stop.map_or(0.0, |s| s.min_delta),
            best: f64::INFINITY,
            best_epoch: before,
        }
    }

    /// Records epoch `epoch`'s validation loss; true when it is below the best by more than
    /// min_delta (a NaN never improves).
    pub fn record(&mut self, epoch: usize, loss: f64) -> bool {
        let improved = loss < self.best - self.min_delta;
        if improved {
            (self.best, self.best_epoch) = (loss, epoch);
        }
        improved
    }

    /// Whether early stopping ends the run after epoch `epoch`: `patience` epochs since the best.
    pub fn exhausted(&self, epoch: usize) -> bool {
        self.patience.is_some_and(|p| epoch.saturating_sub(self.best_epoch) >= p)
    }

    pub fn patience(&self) -> Option<usize> {
        self.patience
    }

    pub fn min_delta(&self) -> f64 {
        self.min_delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_patience_epochs_after_the_best() {
        let mut w = Watch::new(Some(&EarlyStopping { patience: 2, min_delta: 0.1 }), 0);
        // 1.0 improves on ∞; 0.95 is not below 1.0 − 0.1; 0.85 is; then two without.
        let losses = [1.0, 0.95, 0.85, 0.9, f64::NAN];
        let improved: Vec<bool> = losses.iter().enumerate().map(|(i, &l)| w.record(i + 1, l)).collect();
        assert_eq!(improved, [true, false, true, false, false]);
        assert_eq!(w.best_epoch, 3);
        assert!(!w.exhausted(4));
        assert!(w.exhausted(5));
    }
}
