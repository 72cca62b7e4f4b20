//! Picks the matmul schedule for an adapter and each shape class by timing the candidates, and
//! remembers the winners in a small cache file so later runs spend nothing on it.
//!
//! The candidates are `MatmulVariant::ALL`, timed per shape class (`Schedule::is_small`): on the
//! three products of a small-model layer at batch 32 (128 → 64 features: forward, dX and dW, the
//! best of five runs each, since each is over in a fraction of a millisecond) and on the
//! reference MLP's first layer at batch 256 (256×784 · 784×512). Each class takes its fastest; a candidate
//! more than 4× slower than the best on the small product is not timed on the large one (where a
//! slow schedule costs the search most), nor is one that cannot run it (`uniform`).

use std::path::PathBuf;
use std::time::Instant;

use super::Gpu;
use super::{MatmulParams, MatmulVariant, Schedule};
use crate::device::submit;
use crate::error::Result;

/// Environment variable naming the cache file (default: `$XDG_CACHE_HOME/gradflow/autotune.txt`,
/// else `$HOME/.cache/gradflow/autotune.txt`); `off` disables the cache.
pub const CACHE_ENV: &str = "GRADFLOW_AUTOTUNE_CACHE";

/// How the schedule was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `$GRADFLOW_MATMUL` named it.
    Environment,
    /// Read from the cache file.
    Cached(PathBuf),
    /// Timed now: (variant, seconds) per candidate on the small and on the large product, and
    /// the search's wall time.
    Measured { small: Vec<(MatmulVariant, f64)>, large: Vec<(MatmulVariant, f64)>, seconds: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub schedule: Schedule,
    pub source: Source,
}

impl Tuning {
    /// One line for `gradflow devices`, `train` and `bench`.
    pub fn describe(&self) -> String {
        let name = self.schedule.name();
        match &self.source {
            Source::Environment => format!("matmul schedule: {name} (from $GRADFLOW_MATMUL)"),
            Source::Cached(path) => {
                format!("matmul schedule: {name} (autotuned earlier, cached in {})", path.display())
            }
            Source::Measured { small, large, seconds } => {
                let each = |times: &[(MatmulVariant, f64)]| {
                    times.iter().map(|(v, t)| format!("{} {:.2} ms", v.name(), t * 1e3)).collect::<Vec<_>>().join(", ")
                };
                format!(
                    "matmul schedule: {name} (autotuned in {seconds:.2} s; small layer, 3 products: {}; large product: {})",
                    each(small),
                    each(large)
                )
            }
        }
    }
}

/// The cache file, unless disabled or no home is known.
pub fn cache_path() -> Option<PathBuf> {
    match std::env::var(CACHE_ENV) {
        Ok(v) if v == "off" => return None,
        Ok(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gradflow").join("autotune.txt"))
}

/// What a cached choice is valid for: the adapter and driver, this build's kernels (a hash of
/// every WGSL source, so a changed or added schedule is tuned afresh), and whether shader checks
/// are on (they change the relative costs).
fn cache_key(i: &wgpu::AdapterInfo) -> String {
    let key = format!(
        "{}|{:?}|{}|{}|{:04x}:{:04x}|gradflow {} kernels {:016x}|checks {}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        i.vendor,
        i.device,
        env!("CARGO_PKG_VERSION"),
        kernels_hash(),
        crate::device::shader_checks()
    );
    // One line per entry: keep the key free of the separator and newlines.
    key.replace(['\t', '\n'], " ")
}

/// FNV-1a over every kernel source and the candidate list: stable across runs and builds of the
/// same code (std's hasher is not).
fn kernels_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let names: Vec<&str> = MatmulVariant::ALL.iter().map(|v| v.name()).collect();
    let parts = crate::device::shaders::FAMILIES
        .iter()
        .chain(&crate::device::shaders::PARTS)
        .flat_map(|(file, src)| [*file, *src])
        .chain([crate::device::shaders::COMMON]);
    for part in parts.chain(names) {
        for b in part.bytes().chain([0]) {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn read_cache(path: &PathBuf, key: &str) -> Option<Schedule> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        let (k, v) = line.split_once('\t')?;
        (k == key).then(|| Schedule::from_cache(v.trim())).flatten()
    })
}

/// Appends the entry; a cache that cannot be written only costs the next run another search.
fn write_cache(path: &PathBuf, key: &str, schedule: Schedule) {
    use std::io::Write;
    let _ = path.parent().map(std::fs::create_dir_all);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{key}\t{}", schedule.to_cache());
    }
}

/// The cached schedule of an adapter, if it has been autotuned (for `gradflow devices`).
pub fn cached(info: &wgpu::AdapterInfo) -> Option<Schedule> {
    if let Some(variant) = MatmulVariant::from_env() {
        return Some(Schedule::uniform(variant));
    }
    cache_path().and_then(|p| read_cache(&p, &cache_key(info)))
}

/// The small class's probe: a Linear layer's (rows, inputs, outputs), all three of its products.
const SMALL_LAYER: (usize, usize, usize) = (32, 128, 64);
/// The large class's probe: the reference MLP's first forward product (rows, inputs, outputs).
const LARGE_LAYER: (usize, usize, usize) = (256, 784, 512);

/// A candidate slower than this multiple of the best on the small probe is not timed on the
/// large one (where a slow schedule costs the search most).
const PRUNE: f64 = 4.0;

/// Seconds for `variant` on the product `p` over x [rows, inputs], W [outputs, inputs] and
/// dz [rows, outputs]: the best of `runs` timed runs, after one untimed run that compiles its
/// pipeline and touches the memory.
fn time_product(gpu: &Gpu, variant: MatmulVariant, p: MatmulParams, runs: usize) -> Result<f64> {
    let g = Gpu { matmul_schedule: Schedule::uniform(variant), tuning: None, ..gpu.clone() };
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let a = g.storage("autotune a", m * k)?;
    let b = g.storage("autotune b", k * n)?;
    let c = g.storage("autotune c", m * n)?;
    let d = g.matmul(&a, &b, None, &c, None, p)?;
    submit(&g, "autotune", &[&d])?;
    g.wait()?;
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        submit(&g, "autotune", &[&d])?;
        g.wait()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Seconds for the small probe: the layer's forward, dX and dW products, five runs each.
fn time_small(gpu: &Gpu, variant: MatmulVariant) -> Result<f64> {
    let (rows, inputs, outputs) = SMALL_LAYER;
    let mut total = 0.0;
    for p in [
        MatmulParams::linear_forward(rows, inputs, outputs),
        MatmulParams::linear_backward_input(rows, inputs, outputs),
        MatmulParams::linear_backward_weight(rows, inputs, outputs),
    ] {
        total += time_product(gpu, variant, p, 5)?;
    }
    Ok(total)
}

fn fastest(times: &[(MatmulVariant, f64)]) -> MatmulVariant {
    times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map_or(MatmulVariant::Tiled, |t| t.0)
}

/// The schedule for `gpu`: `$GRADFLOW_MATMUL` (one schedule for every shape), else the cached
/// winners, else the fastest now for each shape class.
pub fn matmul_schedule(gpu: &Gpu) -> Result<Tuning> {
    if let Some(variant) = MatmulVariant::from_env() {
        return Ok(Tuning { schedule: Schedule::uniform(variant), source: Source::Environment });
    }
    let key = cache_key(&gpu.info);
    let path = cache_path();
    if let Some(schedule) = path.as_ref().and_then(|p| read_cache(p, &key)) {
        return Ok(Tuning { schedule, source: Source::Cached(path.unwrap_or_default()) });
    }
    let start = Instant::now();
    let mut small = Vec::new();
    for variant in MatmulVariant::ALL {
        small.push((variant, time_small(gpu, variant)?));
    }
    let best = small.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let mut large = Vec::new();
    let (rows, inputs, outputs) = LARGE_LAYER;
    let large_product = MatmulParams::linear_forward(rows, inputs, outputs);
    for &(variant, t) in &small {
        // A schedule that cannot run the large product (uniform windows are 64 KiB) is not a
        // candidate for it.
        if t <= PRUNE * best && variant.for_shape(&large_product, &gpu.limits) == variant {
            large.push((variant, time_product(gpu, variant, large_product, 1)?));
        }
    }
    let schedule = Schedule { small: fastest(&small), large: fastest(&large) };
    if let Some(p) = &path {
        write_cache(p, &key, schedule);
    }
    Ok(Tuning { schedule, source: Source::Measured { small, large, seconds: start.elapsed().as_secs_f64() } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::SMALL_PRODUCT_DIM;

    #[test]
    fn cache_entries_round_trip_and_old_single_names_still_read() {
        for small in MatmulVariant::ALL {
            for large in MatmulVariant::ALL {
                let s = Schedule { small, large };
                assert_eq!(Schedule::from_cache(&s.to_cache()), Some(s));
            }
        }
        assert_eq!(Schedule::from_cache("packed"), Some(Schedule::uniform(MatmulVariant::Packed)));
        assert_eq!(Schedule::from_cache("fast"), None);
        assert_eq!(Schedule::from_cache("tiled,"), None);
    }

    #[test]
    fn a_small_product_the_small_schedule_cannot_run_takes_the_large_ones() {
        let limits = wgpu::Limits::default();
        let s = Schedule { small: MatmulVariant::Uniform, large: MatmulVariant::Packed };
        // dW of a 784 -> 512 layer at batch 32: small (k = 32), but x is 25,088 floats.
        let tall = MatmulParams::linear_backward_weight(32, 784, 512);
        assert!(Schedule::is_small(&tall));
        assert_eq!(s.for_product(&tall, &limits), MatmulVariant::Packed);
        // The digits layer's dW fits the windows.
        assert_eq!(s.for_product(&MatmulParams::linear_backward_weight(32, 64, 128), &limits), MatmulVariant::Uniform);
        assert_eq!(s.for_product(&MatmulParams::linear_forward(256, 784, 512), &limits), MatmulVariant::Packed);
    }

    #[test]
    fn a_product_is_small_when_any_dimension_is() {
        let d = SMALL_PRODUCT_DIM as usize;
        assert!(Schedule::is_small(&MatmulParams::linear_forward(d, 784, 512)));
        assert!(!Schedule::is_small(&MatmulParams::linear_forward(d + 1, 784, 512)));
        // dW's k is the batch.
        assert!(Schedule::is_small(&MatmulParams::linear_backward_weight(32, 784, 512)));
        assert!(Schedule::is_small(&MatmulParams::linear_forward(256, 512, 10)));
        assert!(!Schedule::is_small(&MatmulParams::linear_backward_input(256, 784, 512)));
    }
}
