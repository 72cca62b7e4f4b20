//! The course's test surfaces for optimizers: ill-conditioned quadratics, Rosenbrock's valley,
//! a saddle, the monkey saddle, and the least-squares line fit, each with its gradient, the
//! course's starting point and a box to draw it in.

use rand::{rngs::StdRng, Rng, SeedableRng};

/// A function of two variables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surface {
    /// ½(x² + κy²): condition number κ.
    Quadratic { kappa: f64 },
    /// (1 − x)² + 100(y − x²)², minimum at (1, 1).
    Rosenbrock,
    /// 5x² − y²: a saddle at 0, stable manifold y = 0.
    Saddle,
    /// x³ − 3xy²: a degenerate saddle with three descending valleys.
    MonkeySaddle,
}

impl Surface {
    pub fn name(&self) -> String {
        match self {
            Surface::Quadratic { kappa } => format!("½(x² + {kappa}y²)"),
            Surface::Rosenbrock => "Rosenbrock (1 − x)² + 100(y − x²)²".into(),
            Surface::Saddle => "saddle 5x² − y²".into(),
            Surface::MonkeySaddle => "monkey saddle x³ − 3xy²".into(),
        }
    }

    pub fn value(&self, x: f64, y: f64) -> f64 {
        match *self {
            Surface::Quadratic { kappa } => 0.5 * (x * x + kappa * y * y),
            Surface::Rosenbrock => (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
            Surface::Saddle => 5.0 * x * x - y * y,
            Surface::MonkeySaddle => x.powi(3) - 3.0 * x * y * y,
        }
    }

    pub fn gradient(&self, x: f64, y: f64) -> [f64; 2] {
        match *self {
            Surface::Quadratic { kappa } => [x, kappa * y],
            Surface::Rosenbrock => [-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)],
            Surface::Saddle => [10.0 * x, -2.0 * y],
            Surface::MonkeySaddle => [3.0 * x * x - 3.0 * y * y, -6.0 * x * y],
        }
    }

    /// The Hessian [[f_xx, f_xy], [f_xy, f_yy]].
    pub fn hessian(&self, x: f64, y: f64) -> [[f64; 2]; 2] {
        match *self {
            Surface::Quadratic { kappa } => [[1.0, 0.0], [0.0, kappa]],
            Surface::Rosenbrock => [[2.0 - 400.0 * (y - x * x) + 800.0 * x * x, -400.0 * x], [-400.0 * x, 200.0]],
            Surface::Saddle => [[10.0, 0.0], [0.0, -2.0]],
            Surface::MonkeySaddle => [[6.0 * x, -6.0 * y], [-6.0 * y, -6.0 * x]],
        }
    }

    /// The course's starting points: Rosenbrock's classic (−1.2, 1), the saddle just off its
    /// stable manifold.
    pub fn start(&self) -> [f32; 2] {
        match self {
            Surface::Quadratic { .. } => [1.0, 1.0],
            Surface::Rosenbrock => [-1.2, 1.0],
            Surface::Saddle => [1.0, 0.01],
            Surface::MonkeySaddle => [0.6, 0.1],
        }
    }

    /// (x min, x max, y min, y max) to draw.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        match self {
            Surface::Quadratic { .. } => (-1.2, 1.2, -1.2, 1.2),
            Surface::Rosenbrock => (-1.5, 1.5, -0.5, 1.5),
            Surface::Saddle => (-1.2, 1.2, -1.2, 1.2),
            Surface::MonkeySaddle => (-1.2, 1.2, -1.2, 1.2),
        }
    }
}

/// Points (xᵢ, yᵢ) on the line y = 2x + 1 with Gaussian noise: the least-squares line fit.
pub struct LineFit {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl LineFit {
    pub fn new(points: usize, noise: f64, seed: u64) -> LineFit {
        let mut rng = StdRng::seed_from_u64(seed);
        let x: Vec<f64> = (0..points).map(|_| rng.random_range(0.0..1.0)).collect();
        let y = x
            .iter()
            .map(|&xi| 2.0 * xi + 1.0 + noise * crate::spectrum::random_matrix::standard_normal(&mut rng))
            .collect();
        LineFit { x, y }
    }

    /// Mean over `rows` of (a·x + b − y)², the loss of slope a and intercept b.
    pub fn loss(&self, a: f64, b: f64, rows: &[usize]) -> f64 {
        rows.iter().map(|&i| (a * self.x[i] + b - self.y[i]).powi(2)).sum::<f64>() / rows.len() as f64
    }

    pub fn gradient(&self, a: f64, b: f64, rows: &[usize]) -> [f64; 2] {
        let m = rows.len() as f64;
        let (mut ga, mut gb) = (0.0, 0.0);
        for &i in rows {
            let r = a * self.x[i] + b - self.y[i];
            ga += 2.0 * r * self.x[i] / m;
            gb += 2.0 * r / m;
        }
        [ga, gb]
    }

    /// The exact least-squares (a, b), from the normal equations.
    pub fn solution(&self) -> (f64, f64) {
        let n = self.x.len() as f64;
        let (sx, sy) = (self.x.iter().sum::<f64>(), self.y.iter().sum::<f64>());
        let sxx = self.x.iter().map(|v| v * v).sum::<f64>();
        let sxy = self.x.iter().zip(&self.y).map(|(a, b)| a * b).sum::<f64>();
        let a = (n * sxy - sx * sy) / (n * sxx - sx * sx);
        (a, (sy - a * sx) / n)
    }
}
