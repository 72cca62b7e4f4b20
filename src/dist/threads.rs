//! An in-process group: N threads of one process as N ranks, for testing the data-parallel
//! logic (batch shares, the gradient sum, the agreed stop, the totals) without MPI. Sums run
//! in rank order, so a run is deterministic.

use std::sync::{Arc, Barrier, Mutex};

use super::Collective;
use crate::error::{Error, Result};

/// What the ranks exchange: each rank's contribution, in rank order.
struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

/// One rank of an in-process group; `Threads::group(n)` makes all n.
#[derive(Clone)]
pub struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl Threads {
    /// The n ranks of a new group, to be moved into n threads.
    pub fn group(n: usize) -> Vec<Threads> {
        let shared = Arc::new(Shared { barrier: Barrier::new(n), slots: Mutex::new(vec![Vec::new(); n]) });
        (0..n).map(|rank| Threads { rank, size: n, shared: Arc::clone(&shared) }).collect()
    }

    /// Every rank's `values`, in rank order, on every rank.
    fn exchange(&self, values: Vec<f64>) -> Result<Vec<Vec<f64>>> {
        let poisoned = |_| Error::Dist("a rank of the in-process group panicked".into());
        self.shared.slots.lock().map_err(poisoned)?[self.rank] = values;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().map_err(poisoned)?.clone();
        // Nobody writes the next round before everyone has read this one.
        self.shared.barrier.wait();
        Ok(all)
    }

    fn reduce(&self, values: &[f64], combine: impl Fn(f64, f64) -> f64) -> Result<Vec<f64>> {
        let all = self.exchange(values.to_vec())?;
        if all.iter().any(|v| v.len() != values.len()) {
            return Err(Error::Dist("ranks reduced vectors of different lengths".into()));
        }
        Ok((0..values.len()).map(|i| all.iter().skip(1).fold(all[0][i], |acc, v| combine(acc, v[i]))).collect())
    }
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.rank
    }
    fn allreduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        // Summed in f32, in rank order, as an MPI_SUM over MPI_FLOAT would.
        let all = self.exchange(values.iter().map(|&v| v as f64).collect())?;
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().skip(1).fold(all[0][i] as f32, |acc, r| acc + r[i] as f32);
        }
        Ok(())
    }
    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let sum = self.reduce(values, |a, b| a + b)?;
        values.copy_from_slice(&sum);
        Ok(())
    }
    fn allreduce_min_u64(&self, values: &mut [u64]) -> Result<()> {
        // Each u64 as two exact halves.
        let halves = values.iter().flat_map(|&v| [(v >> 32) as f64, (v & 0xffff_ffff) as f64]).collect();
        let all = self.exchange(halves)?;
        for (i, v) in values.iter_mut().enumerate() {
            let whole = |r: &Vec<f64>| ((r[2 * i] as u64) << 32) | r[2 * i + 1] as u64;
            *v = all.iter().map(whole).min().unwrap_or(*v);
        }
        Ok(())
    }
    fn broadcast_f32(&self, root: usize, values: &mut [f32]) -> Result<()> {
        let all = self.exchange(values.iter().map(|&v| v as f64).collect())?;
        for (v, r) in values.iter_mut().zip(&all[root]) {
            *v = *r as f32;
        }
        Ok(())
    }
    fn all_equal(&self, value: u64) -> Result<bool> {
        let all = self.exchange(vec![(value >> 32) as f64, (value & 0xffff_ffff) as f64])?;
        Ok(all.iter().all(|v| v == &all[0]))
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// `work(k)` for every k in `0..count`, as many at a time as the machine has cores (threads
/// take the next k from a shared counter), each result in its slot: independent jobs such as
/// the runs of a sweep. A job that panics leaves None in its slot; the others keep theirs.
/// Returns the results in order and the number of threads used.
pub fn one_per_core<T: Send>(count: usize, work: impl Fn(usize) -> T + Sync) -> (Vec<Option<T>>, usize) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= count {
                    return;
                }
                if let Ok(result) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(k))) {
                    slots.lock().unwrap_or_else(|e| e.into_inner())[k] = Some(result);
                }
            });
        }
    });
    (slots.into_inner().unwrap_or_else(|e| e.into_inner()), threads)
}
