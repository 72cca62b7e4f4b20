//! Shared by the integration tests: one device per test binary, random data, and the check of a
//! result against its error bound (the bounds themselves are `gradflow::reference::bounds`).
#![allow(dead_code)]

pub mod golden;

use std::io::Write;
use std::sync::{Once, OnceLock};

use gradflow::kernels::Gpu;
// The error model (u, γ_n, the built-ins' precisions, one bound per op) is the library's.
pub use gradflow::reference::bounds::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Set to 1 (`.ci/run` does) to make a missing adapter fail the GPU tests instead of skipping them.
pub const REQUIRE_GPU_ENV: &str = "GRADFLOW_REQUIRE_GPU";

/// The one command that gives a headless Linux machine an adapter: Mesa's lavapipe.
pub const INSTALL_LAVAPIPE: &str = "apt-get install -y mesa-vulkan-drivers";

/// First statement of a GPU test: returns from the test (it then passes without running) when
/// wgpu sees no adapter, or fails it under `GRADFLOW_REQUIRE_GPU=1`; see `gpu_gate`.
#[allow(unused_macros)]
macro_rules! require_gpu {
    () => {
        if !$crate::common::gpu_gate(file!()) {
            return;
        }
    };
}

/// Burn's `testgen_all!` for the matmul schedules: each body becomes a module with one `#[test]`
/// per schedule (`name::on_tiled`, `::on_direct`, `::on_packed`, `::on_uniform`), each on the shared device
/// with that schedule forced for every product (`on_schedule`), so a failure names its schedule
/// and a new schedule is one line here, not an edit to every test. The other executors come from
/// the environment: `.ci/run` reruns these files with shader checks on and on GL.
#[allow(unused_macros)]
macro_rules! for_every_schedule {
    ($($(#[$meta:meta])* fn $name:ident($g:ident: &Gpu) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            // A new MatmulVariant must get its test line below.
            const _: () = assert!(gradflow::kernels::MatmulVariant::ALL.len() == 4);
            fn body($g: &gradflow::kernels::Gpu) $body
            #[test]
            fn on_tiled() {
                $crate::common::on_schedule(file!(), gradflow::kernels::MatmulVariant::Tiled, body)
            }
            #[test]
            fn on_direct() {
                $crate::common::on_schedule(file!(), gradflow::kernels::MatmulVariant::Direct, body)
            }
            #[test]
            fn on_packed() {
                $crate::common::on_schedule(file!(), gradflow::kernels::MatmulVariant::Packed, body)
            }
            #[test]
            fn on_uniform() {
                $crate::common::on_schedule(file!(), gradflow::kernels::MatmulVariant::Uniform, body)
            }
        }
    )*};
}

/// Runs `body` on the shared device with every product on `variant` (after `require_gpu!`'s gate).
pub fn on_schedule(file: &str, variant: gradflow::kernels::MatmulVariant, body: impl FnOnce(&Gpu)) {
    if gpu_gate(file) {
        body(&Gpu { matmul_schedule: gradflow::kernels::Schedule::uniform(variant), ..gpu().clone() });
    }
}

/// For a test that checks the CPU reference too: whether its GPU part runs, decided as
/// `require_gpu!` decides for a whole test. Written once per test (the skip line counts them).
#[allow(unused_macros)]
macro_rules! gpu_part {
    () => {
        $crate::common::gpu_gate(file!())
    };
}

// Path-addressable (`common::require_gpu!`) and picked up by `use common::*`.
#[allow(unused_imports)]
pub(crate) use {for_every_schedule, gpu_part, require_gpu};

/// Whether wgpu sees any adapter, asked once per test binary. `Gpu::new` fails with `NoAdapter`
/// exactly when this list is empty.
pub fn adapter_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| !gradflow::device::list_adapters().is_empty())
}

/// Whether `GRADFLOW_REQUIRE_GPU` asks for an adapter: `1` yes, `0` or unset no; any other
/// value stops the test binary (a misspelt "true" must not quietly skip every GPU test).
pub fn gpu_required() -> bool {
    match std::env::var(REQUIRE_GPU_ENV).as_deref() {
        Ok("1") => true,
        Ok("0" | "") | Err(std::env::VarError::NotPresent) => false,
        Ok(other) => panic!("${REQUIRE_GPU_ENV}={other:?} is not a value it takes; expected 1 or 0"),
        Err(std::env::VarError::NotUnicode(v)) => {
            panic!("${REQUIRE_GPU_ENV}={v:?} is not a value it takes; expected 1 or 0")
        }
    }
}

/// The gate behind `require_gpu!` and `gpu_part!` for a test in `file`: true with an adapter;
/// without one a panic with the install command under `GRADFLOW_REQUIRE_GPU=1`, else false, and
/// the first time in this test binary one line on stderr saying what is skipped and why.
pub fn gpu_gate(file: &str) -> bool {
    // Read first, so an invalid value is refused on a machine with an adapter too.
    let required = gpu_required();
    if adapter_present() {
        return true;
    }
    if required {
        panic!(
            "{REQUIRE_GPU_ENV}={} and wgpu finds no GPU adapter. On a headless Linux machine install \
             Mesa's software Vulkan driver (lavapipe): `{INSTALL_LAVAPIPE}`",
            std::env::var(REQUIRE_GPU_ENV).unwrap_or_default()
        );
    }
    static ANNOUNCED: Once = Once::new();
    ANNOUNCED.call_once(|| {
        // Straight to the process's stderr: libtest captures eprintln! of passing tests.
        let _ = std::io::stderr().write_all(format!("\n{}\n", skip_line(file)).as_bytes());
    });
    false
}

/// "SKIPPED n GPU tests of `file` …": n counted from the test file's source, one gate per test.
pub fn skip_line(file: &str) -> String {
    let source = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .or_else(|_| std::fs::read_to_string(file));
    let what = match source {
        Ok(text) => {
            let code = || text.lines().map(|l| l.split("//").next().unwrap_or(""));
            let whole = code().filter(|l| l.contains("require_gpu!()")).count();
            let parts = code().filter(|l| l.contains("gpu_part!()")).count();
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            match (whole, parts) {
                (w, 0) => format!("{w} GPU test{} of {file}", plural(w)),
                (0, p) => format!("the GPU part of {p} test{} of {file}", plural(p)),
                (w, p) => format!("{w} GPU test{} of {file} and the GPU part of {p} more", plural(w)),
            }
        }
        Err(_) => format!("the GPU tests of {file}"),
    };
    format!(
        "SKIPPED {what}: wgpu finds no GPU adapter. Install one (Mesa's software Vulkan driver, \
         lavapipe) with `{INSTALL_LAVAPIPE}`; {REQUIRE_GPU_ENV}=1 turns this skip into a failure."
    )
}

/// The device every GPU test uses: `$GRADFLOW_ADAPTER` if set, else the best adapter. For tests
/// that passed `require_gpu!` or `gpu_part!`.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(gpu_or_panic)
}

/// A new device handle (for tests that passed `require_gpu!` or `gpu_part!`), or a panic.
pub fn gpu_or_panic() -> Gpu {
    match Gpu::new(None) {
        Ok(gpu) => {
            eprintln!("GPU tests on {}", gpu.describe());
            gpu
        }
        Err(e @ gradflow::error::Error::NoAdapter(_)) => {
            panic!("{e} (a test opened the GPU without `require_gpu!` or `gpu_part!` first)")
        }
        Err(e) => panic!("could not open the GPU: {e}"),
    }
}

/// `rows` random rows of `d` features in [−1, 1) with labels from a fixed linear rule over
/// `classes` classes, so the problem is learnable.
pub fn synthetic(rows: usize, d: usize, classes: usize, seed: u64) -> gradflow::data::Dataset {
    let mut r = rng(seed);
    let x = uniform(&mut r, rows * d, -1.0, 1.0);
    let labels = (0..rows)
        .map(|i| {
            let s: f32 = x[i * d..(i + 1) * d].iter().enumerate().map(|(j, v)| v * ((j % 5) as f32 - 2.0)).sum();
            ((s.abs() * 3.0) as usize % classes) as u32
        })
        .collect();
    gradflow::data::Dataset::new(x, labels, d, classes, "synthetic").unwrap()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Asserts |got − want| ≤ bound[i] element-wise and returns the worst |error| and worst error/bound.
pub fn assert_within(what: &str, got: &[f32], want: &[f64], bound: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    let mut worst_ratio = 0.0f64;
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        // Plus f32's smallest normal: values below it are subnormal, which GPUs may flush to zero.
        assert!(
            err <= bound[i] + f32::MIN_POSITIVE as f64 || (got[i].is_nan() && want[i].is_nan()),
            "{what}[{i}]: got {}, want {}, |error| {err:e} > bound {:e}",
            got[i],
            want[i],
            bound[i]
        );
        worst = worst.max(err);
        if bound[i] > 0.0 {
            worst_ratio = worst_ratio.max(err / bound[i]);
        }
    }
    (worst, worst_ratio)
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A saved file's tensors as (name, bytes), sorted by name: two checkpoints compare bit for bit.
pub fn checkpoint_tensors(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, v)| (n.to_string(), v.data().to_vec())).collect();
    out.sort();
    out
}

/// Runs the `gradflow` binary with `args`: (succeeded, stdout, stderr). XDG_RUNTIME_DIR points at
/// the temp dir so that Mesa's warning about it stays out of stderr.
pub fn run_gradflow(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradflow"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run gradflow");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A scratch directory `gradflow-{test}-{pid}-{name}` under the temp dir, created: one per test
/// binary run and name, so parallel tests do not share files.
pub fn scratch_dir(test: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gradflow-{test}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
