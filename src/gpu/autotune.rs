//! Picks the matmul schedule for an adapter by timing each candidate once, and remembers the
//! winner in a small cache file so later runs spend nothing on it.
//!
//! The candidates are `MatmulVariant::ALL`, timed on two products that stand for training: the
//! reference MLP's first layer at batch 256 (256×784 · 784×512) and a small-model layer at
//! batch 32 (32×64 · 64×128). Candidates more than 2× slower than the best on the small one are
//! dropped before the large one; of the rest, the least total time wins.

use std::path::PathBuf;
use std::time::Instant;

use super::kernels::{submit, MatmulParams, MatmulVariant};
use super::Gpu;
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
    /// Timed now: (variant, seconds for the two probe products) per candidate, and the search's
    /// wall time.
    Measured { times: Vec<(MatmulVariant, f64)>, seconds: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub variant: MatmulVariant,
    pub source: Source,
}

impl Tuning {
    /// One line for `gradflow devices` and `bench`.
    pub fn describe(&self) -> String {
        let name = self.variant.name();
        match &self.source {
            Source::Environment => format!("matmul schedule: {name} (from $GRADFLOW_MATMUL)"),
            Source::Cached(path) => {
                format!("matmul schedule: {name} (autotuned earlier, cached in {})", path.display())
            }
            Source::Measured { times, seconds } => {
                let each: Vec<String> = times.iter().map(|(v, t)| format!("{} {:.1} ms", v.name(), t * 1e3)).collect();
                format!("matmul schedule: {name} (autotuned in {seconds:.2} s: {})", each.join(", "))
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

/// What a cached choice is valid for: the adapter and driver, this build's kernels, and whether
/// shader checks are on (they change the relative costs).
fn cache_key(i: &wgpu::AdapterInfo) -> String {
    let key = format!(
        "{}|{:?}|{}|{}|{:04x}:{:04x}|gradflow {}|checks {}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        i.vendor,
        i.device,
        env!("CARGO_PKG_VERSION"),
        super::kernels::shader_checks()
    );
    // One line per entry: keep the key free of the separator and newlines.
    key.replace(['\t', '\n'], " ")
}

fn read_cache(path: &PathBuf, key: &str) -> Option<MatmulVariant> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        let (k, v) = line.split_once('\t')?;
        (k == key).then(|| MatmulVariant::from_name(v.trim())).flatten()
    })
}

/// Appends the entry; a cache that cannot be written only costs the next run another search.
fn write_cache(path: &PathBuf, key: &str, variant: MatmulVariant) {
    use std::io::Write;
    let _ = path.parent().map(std::fs::create_dir_all);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{key}\t{}", variant.name());
    }
}

/// The cached schedule of an adapter, if it has been autotuned (for `gradflow devices`).
pub fn cached(info: &wgpu::AdapterInfo) -> Option<MatmulVariant> {
    if let Some(variant) = MatmulVariant::from_env() {
        return Some(variant);
    }
    cache_path().and_then(|p| read_cache(&p, &cache_key(info)))
}

/// The products the candidates are timed on: a Linear layer's forward pass at a small model's
/// shape (batch 32) and at the reference MLP's first layer (batch 256).
const PROBES: [(usize, usize, usize); 2] = [(32, 64, 128), (256, 784, 512)];

/// A candidate slower than this multiple of the best on the small probe is not timed on the
/// large one (where a slow schedule costs the search most).
const PRUNE: f64 = 2.0;

/// Seconds for one run of `variant` on the probe product (m, k, n), after one untimed run that
/// compiles its pipelines and touches the memory.
fn time_variant(gpu: &Gpu, variant: MatmulVariant, (m, k, n): (usize, usize, usize)) -> Result<f64> {
    let g = Gpu { matmul_variant: variant, tuning: None, ..gpu.clone() };
    let a = g.storage("autotune a", m * k)?;
    let b = g.storage("autotune b", k * n)?;
    let c = g.storage("autotune c", m * n)?;
    let d = g.matmul(&a, &b, None, &c, None, MatmulParams::linear_forward(m, k, n))?;
    submit(&g, "autotune", &[&d])?;
    g.wait()?;
    let start = Instant::now();
    submit(&g, "autotune", &[&d])?;
    g.wait()?;
    Ok(start.elapsed().as_secs_f64())
}

/// The schedule for `gpu`: `$GRADFLOW_MATMUL`, else the cached winner, else the fastest now.
pub fn matmul_variant(gpu: &Gpu) -> Result<Tuning> {
    if let Some(variant) = MatmulVariant::from_env() {
        return Ok(Tuning { variant, source: Source::Environment });
    }
    let key = cache_key(&gpu.info);
    let path = cache_path();
    if let Some(variant) = path.as_ref().and_then(|p| read_cache(p, &key)) {
        return Ok(Tuning { variant, source: Source::Cached(path.unwrap_or_default()) });
    }
    let start = Instant::now();
    let mut times = Vec::new();
    for variant in MatmulVariant::ALL {
        times.push((variant, time_variant(gpu, variant, PROBES[0])?));
    }
    let best = times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    times.retain(|t| t.1 <= PRUNE * best);
    for t in &mut times {
        t.1 += time_variant(gpu, t.0, PROBES[1])?;
    }
    let variant = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map_or(MatmulVariant::Tiled, |t| t.0);
    if let Some(p) = &path {
        write_cache(p, &key, variant);
    }
    Ok(Tuning { variant, source: Source::Measured { times, seconds: start.elapsed().as_secs_f64() } })
}
