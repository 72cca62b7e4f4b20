//! Minibatch schedules: the course's two SGD schemes, in-order batches, and full-batch descent.

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchScheme {
    /// Approach 1: reshuffle every epoch, then walk the permutation in batches.
    Shuffle,
    /// Approach 2: each step draws m indices uniformly with replacement; ceil(n/m) steps an epoch.
    Replacement,
    /// Consecutive rows in file order.
    InOrder,
    /// One batch of every row: gradient descent.
    FullBatch,
}

impl std::str::FromStr for BatchScheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<BatchScheme> {
        match s {
            "shuffle" => Ok(BatchScheme::Shuffle),
            "replacement" => Ok(BatchScheme::Replacement),
            "in-order" => Ok(BatchScheme::InOrder),
            "full-batch" => Ok(BatchScheme::FullBatch),
            _ => Err(Error::Usage(format!("unknown batching '{s}': use shuffle, replacement, in-order or full-batch"))),
        }
    }
}

impl std::fmt::Display for BatchScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BatchScheme::Shuffle => "shuffle",
            BatchScheme::Replacement => "replacement",
            BatchScheme::InOrder => "in-order",
            BatchScheme::FullBatch => "full-batch",
        })
    }
}

/// Hands out each epoch's minibatches as row indices, reproducibly from a seed.
pub struct Batcher {
    scheme: BatchScheme,
    n: usize,
    batch_size: usize,
    drop_last: bool,
    rng: StdRng,
}

impl Batcher {
    pub fn new(scheme: BatchScheme, n: usize, batch_size: usize, drop_last: bool, seed: u64) -> Result<Batcher> {
        if n == 0 {
            return Err(Error::Usage("the training set is empty".into()));
        }
        let batch_size = if scheme == BatchScheme::FullBatch { n } else { batch_size };
        if batch_size == 0 || batch_size > n {
            return Err(Error::Usage(format!(
                "train.batch_size must be between 1 and the {n} training rows, got {batch_size}"
            )));
        }
        Ok(Batcher { scheme, n, batch_size, drop_last, rng: StdRng::seed_from_u64(seed) })
    }

    pub fn steps_per_epoch(&self) -> usize {
        match self.scheme {
            BatchScheme::Replacement => self.n.div_ceil(self.batch_size),
            _ if self.drop_last => self.n / self.batch_size,
            _ => self.n.div_ceil(self.batch_size),
        }
    }

    /// Rows in a full batch (every batch but perhaps the last).
    pub fn largest_batch(&self) -> usize {
        self.batch_size
    }

    /// The fewest rows any batch of an epoch has (a short last batch unless `drop_last`).
    pub fn smallest_batch(&self) -> usize {
        match self.scheme {
            BatchScheme::Replacement | BatchScheme::FullBatch => self.batch_size,
            _ if self.drop_last || self.n.is_multiple_of(self.batch_size) => self.batch_size,
            _ => self.n % self.batch_size,
        }
    }

    /// The next epoch's batches as row indices.
    pub fn next_epoch(&mut self) -> Vec<Vec<usize>> {
        let order: Vec<usize> = match self.scheme {
            BatchScheme::Replacement => {
                let (n, m) = (self.n, self.batch_size);
                return (0..self.steps_per_epoch())
                    .map(|_| (0..m).map(|_| self.rng.random_range(0..n)).collect())
                    .collect();
            }
            BatchScheme::Shuffle => {
                let mut idx: Vec<usize> = (0..self.n).collect();
                idx.shuffle(&mut self.rng);
                idx
            }
            BatchScheme::InOrder | BatchScheme::FullBatch => (0..self.n).collect(),
        };
        order
            .chunks(self.batch_size)
            .filter(|c| !self.drop_last || c.len() == self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }
}
