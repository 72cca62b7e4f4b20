//! Regression scores: RMSE and the coefficient of determination R² per target, and their
//! uniform averages, as scikit-learn's `mean_squared_error` and `r2_score` compute them.

use crate::data::Targets;

/// The scores of k predicted values per row against the targets.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionScores {
    /// √(mean over rows of (prediction − target)²), per target.
    pub rmse: Vec<f64>,
    /// 1 − SS_res / SS_tot per target, SS_tot about the evaluated rows' own mean. For a constant
    /// target (SS_tot = 0) it is NaN when the prediction is exact (0/0) and −∞ otherwise, as
    /// sklearn's r2_score with force_finite=False.
    pub r2: Vec<f64>,
    /// √(mean over every value of the squared error): the RMSE of the MSE loss.
    pub rmse_all: f64,
    /// The mean of the per-target R² (sklearn's multioutput="uniform_average").
    pub r2_mean: f64,
}

/// Scores `pred` (rows × k, row-major) against `targets`; sums in f64.
pub fn scores(pred: &[f32], targets: &Targets) -> RegressionScores {
    let k = targets.k.max(1);
    let rows = targets.values.len() / k;
    let mut rmse = Vec::with_capacity(k);
    let mut r2 = Vec::with_capacity(k);
    let mut total = 0.0;
    for j in 0..k {
        let col = |v: &[f32], i: usize| v[i * k + j] as f64;
        let mean = (0..rows).map(|i| col(&targets.values, i)).sum::<f64>() / rows as f64;
        let ss_res: f64 = (0..rows).map(|i| (col(pred, i) - col(&targets.values, i)).powi(2)).sum();
        let ss_tot: f64 = (0..rows).map(|i| (col(&targets.values, i) - mean).powi(2)).sum();
        total += ss_res;
        rmse.push((ss_res / rows as f64).sqrt());
        r2.push(1.0 - ss_res / ss_tot);
    }
    let r2_mean = r2.iter().sum::<f64>() / k as f64;
    RegressionScores { rmse, r2, rmse_all: (total / (rows * k) as f64).sqrt(), r2_mean }
}
