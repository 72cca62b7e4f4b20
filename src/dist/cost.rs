//! The data-parallel step on paper: what one step of P parameters costs on N ranks joined by a
//! network of a given bandwidth, as gradflow runs it (compute on each rank's share, the
//! gradient to the host and back over PCIe, one ring all-reduce, nothing overlapped).

/// One machine and network to model.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Network bandwidth per rank, bits per second (25 Gb/s Ethernet: 25e9).
    pub bits_per_sec: f64,
    /// Latency of one message, seconds (the ring sends 2(N − 1) in sequence).
    pub latency_s: f64,
    /// Host↔GPU bandwidth, bytes per second, for the gradient's read-back and upload.
    pub pcie_bytes_per_sec: f64,
}

/// Bytes each rank sends (and receives) in a ring all-reduce of `params` f32 values over
/// `ranks`: reduce-scatter then all-gather, each moving (N − 1)/N of the buffer.
pub fn ring_bytes(params: usize, ranks: usize) -> f64 {
    if ranks < 2 {
        return 0.0;
    }
    2.0 * (ranks as f64 - 1.0) / ranks as f64 * 4.0 * params as f64
}

/// Seconds of one ring all-reduce: bytes over bandwidth plus 2(N − 1) message latencies.
pub fn ring_seconds(params: usize, ranks: usize, link: &Link) -> f64 {
    if ranks < 2 {
        return 0.0;
    }
    ring_bytes(params, ranks) * 8.0 / link.bits_per_sec + 2.0 * (ranks as f64 - 1.0) * link.latency_s
}

/// The modelled step: `compute_one_rank_s` is the whole global batch's compute on one GPU,
/// shared out evenly; then the gradient's round trip to the host and the all-reduce.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCost {
    pub compute_s: f64,
    pub staging_s: f64,
    pub allreduce_s: f64,
}

impl StepCost {
    pub fn total(&self) -> f64 {
        self.compute_s + self.staging_s + self.allreduce_s
    }

    /// Speed-up over one rank divided by the ranks: 1 is perfect scaling.
    pub fn efficiency(&self, one_rank_s: f64, ranks: usize) -> f64 {
        one_rank_s / (self.total() * ranks as f64)
    }
}

pub fn step_cost(params: usize, ranks: usize, compute_one_rank_s: f64, link: &Link) -> StepCost {
    let staging_s = if ranks < 2 { 0.0 } else { 2.0 * 4.0 * params as f64 / link.pcie_bytes_per_sec };
    StepCost { compute_s: compute_one_rank_s / ranks as f64, staging_s, allreduce_s: ring_seconds(params, ranks, link) }
}
