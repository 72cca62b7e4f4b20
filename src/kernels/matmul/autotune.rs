//! Picks the matmul schedule for an adapter and each shape class by timing the candidates, and
//! remembers the winners in a small cache file so later runs spend nothing on it.
//!
//! The candidates are `MatmulVariant::ALL`, timed per shape class (`Schedule::is_small`): on the
//! three products of a small-model layer at batch 32 (128 → 64 features: forward, dX and dW, the
//! best of five runs each, since each is over in a fraction of a millisecond) and on the
//! reference MLP's first layer at batch 256 (256×784 · 784×512). Each class takes its fastest; a candidate
//! more than 4× slower than the best on the small product is not timed on the large one (where a
//! slow schedule costs the search most), nor is one that cannot run it (`uniform`).

use std::path::{Path, PathBuf};
use web_time::Instant;

use super::Gpu;
use super::{MatmulParams, MatmulVariant, Schedule};
use crate::device::submit;
use crate::error::{Error, Result};

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
    /// Timed now: (variant, seconds) per candidate on the small and on the large product, the
    /// search's wall time, and where the winners were kept.
    /// In a browser, which is not searched (its timings would need blocking read-backs).
    Browser,
    Measured {
        small: Vec<(MatmulVariant, f64)>,
        large: Vec<(MatmulVariant, f64)>,
        seconds: f64,
        kept: Kept,
    },
}

/// Where a fresh search's winners went.
#[derive(Clone, Debug, PartialEq)]
pub enum Kept {
    /// Appended to this cache file: the next run reads them.
    Cached(PathBuf),
    /// Not cached, and why: the next run searches again.
    NotCached(String),
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
            Source::Browser => format!("matmul schedule: {name} (fixed in a browser: no autotuning)"),
            Source::Cached(path) => {
                format!("matmul schedule: {name} (autotuned earlier, cached in {})", path.display())
            }
            Source::Measured { small, large, seconds, kept } => {
                let each = |times: &[(MatmulVariant, f64)]| {
                    times.iter().map(|(v, t)| format!("{} {:.2} ms", v.name(), t * 1e3)).collect::<Vec<_>>().join(", ")
                };
                let kept = match kept {
                    Kept::Cached(path) => format!("cached in {}", path.display()),
                    Kept::NotCached(why) => format!("not cached: {why}"),
                };
                format!(
                    "matmul schedule: {name} (autotuned in {seconds:.2} s; small layer, 3 products: {}; large product: {}; {kept})",
                    each(small),
                    each(large)
                )
            }
        }
    }
}

/// Why there is no cache file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoCache {
    /// `$GRADFLOW_AUTOTUNE_CACHE=off`: the user's choice, said only in the schedule line.
    Off,
    /// Neither `$XDG_CACHE_HOME` nor `$HOME`: said once on stderr, like an unwritable file.
    NoHome,
}

impl std::fmt::Display for NoCache {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            NoCache::Off => write!(f, "${CACHE_ENV}=off"),
            NoCache::NoHome => write!(f, "neither $XDG_CACHE_HOME nor $HOME is set"),
        }
    }
}

/// The cache file, or why there is none.
pub type CachePlace = std::result::Result<PathBuf, NoCache>;

/// The cache file or why there is none; an error for a `$GRADFLOW_AUTOTUNE_CACHE` that reads
/// like a switch but is not `off`.
pub fn cache_path() -> Result<CachePlace> {
    if let Some(v) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return Ok(parse_cache_env(&v)?.ok_or(NoCache::Off));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .ok_or(NoCache::NoHome);
    Ok(base.map(|b| b.join("gradflow").join("autotune.txt")))
}

/// A non-empty `$GRADFLOW_AUTOTUNE_CACHE`: `off` (None) or the cache file. "OFF", "0", "false",
/// "none", "no" and "disabled" are refused: each would otherwise be a cache file of that name
/// in the current folder, and the user who wrote it meant off.
pub fn parse_cache_env(value: &std::ffi::OsStr) -> Result<Option<PathBuf>> {
    if value == "off" {
        return Ok(None);
    }
    let switch = ["off", "0", "false", "none", "no", "disable", "disabled"];
    match value.to_str() {
        Some(v) if switch.contains(&v.to_lowercase().as_str()) => Err(Error::Env {
            var: CACHE_ENV,
            value: v.into(),
            expected: "a file path for the cache, or off to turn it off",
        }),
        _ => Ok(Some(PathBuf::from(value))),
    }
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

fn read_cache(path: &Path, key: &str) -> Option<Schedule> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        let (k, v) = line.split_once('\t')?;
        (k == key).then(|| Schedule::from_cache(v.trim())).flatten()
    })
}

/// Appends the entry, or says why it could not (then the next run searches again).
fn write_cache(path: &Path, key: &str, schedule: Schedule) -> std::result::Result<(), String> {
    use std::io::Write;
    let why = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A file where a folder of the path should be: create_dir_all's "File exists" misleads.
        if let Some(file) = dir.ancestors().find(|a| a.is_file()) {
            return Err(format!("{} is a file, not a folder", file.display()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(why)?;
    writeln!(f, "{key}\t{}", schedule.to_cache()).map_err(why)
}

/// Where the winners of a search went; a cache that cannot be kept (rather than one turned
/// off) is said on stderr once per process, since every run pays the search again.
fn keep(path: CachePlace, key: &str, schedule: Schedule, seconds: f64) -> Kept {
    let why = match path {
        Ok(p) => match write_cache(&p, key, schedule) {
            Ok(()) => return Kept::Cached(p),
            Err(why) => why,
        },
        Err(NoCache::Off) => return Kept::NotCached(NoCache::Off.to_string()),
        Err(NoCache::NoHome) => NoCache::NoHome.to_string(),
    };
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| crate::warn!("{}", unwritable_line(&why, seconds)));
    Kept::NotCached(why)
}

/// The one stderr line for a cache that cannot be kept: why, the cost, and the two ways out.
pub fn unwritable_line(why: &str, seconds: f64) -> String {
    format!(
        "gradflow: the matmul autotune cache is not kept ({why}), so every run times the schedules \
         again ({seconds:.1} s here); set ${CACHE_ENV} to a writable file, or to off to stop caching"
    )
}

/// The cached schedule of an adapter, if it has been autotuned (for `gradflow devices`); an
/// error for an invalid `$GRADFLOW_MATMUL` or `$GRADFLOW_AUTOTUNE_CACHE`.
pub fn cached(info: &wgpu::AdapterInfo) -> Result<Option<Schedule>> {
    if let Some(variant) = MatmulVariant::from_env()? {
        return Ok(Some(Schedule::uniform(variant)));
    }
    Ok(cache_path()?.ok().and_then(|p| read_cache(&p, &cache_key(info))))
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
    if let Some(variant) = MatmulVariant::from_env()? {
        return Ok(Tuning { schedule: Schedule::uniform(variant), source: Source::Environment });
    }
    let key = cache_key(&gpu.info);
    let path = cache_path()?;
    if let Some((p, schedule)) = path.as_ref().ok().and_then(|p| Some((p, read_cache(p, &key)?))) {
        return Ok(Tuning { schedule, source: Source::Cached(p.clone()) });
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
    let seconds = start.elapsed().as_secs_f64();
    let kept = keep(path, &key, schedule, seconds);
    Ok(Tuning { schedule, source: Source::Measured { small, large, seconds, kept } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_that_cannot_be_written_says_why_and_the_line_says_not_cached() {
        let dir = std::env::temp_dir().join(format!("gradflow-autotune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a-file");
        std::fs::write(&file, "").unwrap();
        let s = Schedule::uniform(MatmulVariant::Packed);
        let why = write_cache(&file.join("cache.txt"), "key", s).unwrap_err();
        assert_eq!(why, format!("{} is a file, not a folder", file.display()));
        assert!(write_cache(&dir, "key", s).unwrap_err().starts_with(&format!("cannot write {}: ", dir.display())));
        let kept = write_cache(&dir.join("sub/cache.txt"), "key", s);
        assert_eq!(kept, Ok(()));
        assert_eq!(read_cache(&dir.join("sub/cache.txt"), "key"), Some(s));

        let tuning = Tuning {
            schedule: s,
            source: Source::Measured { small: vec![], large: vec![], seconds: 1.0, kept: Kept::NotCached(why.clone()) },
        };
        assert!(tuning.describe().ends_with(&format!("; not cached: {why})")), "{}", tuning.describe());
        let line = unwritable_line(&why, 4.25);
        assert_eq!(line.lines().count(), 1);
        for part in [why.as_str(), "(4.2 s here)", "$GRADFLOW_AUTOTUNE_CACHE to a writable file", "to off"] {
            assert!(line.contains(part), "{part:?} in {line}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
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
