//! Picking an adapter and opening a device on it, with wgpu's errors turned into ours.

use std::sync::Arc;

use crate::error::{Error, Result};

/// Environment variable that picks an adapter, like `--adapter`.
pub const ADAPTER_ENV: &str = "GRADFLOW_ADAPTER";

/// Mesa's Vulkan device-select layer connects to Wayland while adapters are enumerated and, on a
/// headless machine without `XDG_RUNTIME_DIR`, prints "error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment." twice, which reads as gradflow's own error. The layer only reorders
/// adapters for programs that take the first one; gradflow ranks them itself (`--adapter`), so
/// without a runtime folder (and so without a display to select for) this turns the layer off
/// through its own switch, `NODEVICE_SELECT=1`, unless that is already set.
///
/// It changes the environment, so it must run while no other thread can read it (the rule of
/// `std::env::set_var`): the `gradflow` binary calls it first in `main`. On Linux every program
/// linked with gradflow (the examples, a library user's) also runs it before `main`, from the
/// `.init_array` constructor below, where only one thread exists; calling it again is harmless.
pub fn quiet_mesa_device_select() {
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !runtime_dir_ok && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Runs `quiet_mesa_device_select` before `main` of any program linked with gradflow. Library
/// code cannot do it soundly later: by the time an instance is created, other threads may be
/// reading the environment. Kept beside `instance()`, which every adapter search calls, so the
/// linker keeps this object file.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static QUIET_MESA_BEFORE_MAIN: extern "C" fn() = {
    extern "C" fn quiet() {
        quiet_mesa_device_select();
    }
    quiet
};

/// How to get a GPU where there is none: printed whenever no adapter is found.
pub const NO_ADAPTER_HINT: &str = "; on headless Linux install Mesa's software Vulkan driver (lavapipe): \
    `apt-get install -y mesa-vulkan-drivers`";

/// An open device: adapter, queue, limits and the pass timer, before any kernel is compiled
/// (`kernels::Gpu` adds them). Cloning shares the device.
#[derive(Clone)]
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Timestamps of submitted passes while `bench` measures device time (`device::timing`).
    pub timer: Arc<std::sync::Mutex<Option<super::timing::PassTimer>>>,
}

/// Loop iterations one shader invocation may run on llvmpipe (lavapipe's and Mesa GL's software
/// rasteriser): gallivm ends every loop once all loops of the invocation together have run
/// 65,535 iterations, without an error. Kept 5,535 below that.
pub const LLVMPIPE_LOOP_BUDGET: usize = 60_000;

impl Context {
    /// The loop budget of one invocation on this adapter, where it has one (llvmpipe).
    pub fn loop_limit(&self) -> Option<usize> {
        let llvmpipe = |s: &str| s.to_lowercase().contains("llvmpipe");
        (llvmpipe(&self.info.name) || llvmpipe(&self.info.driver)).then_some(LLVMPIPE_LOOP_BUDGET)
    }

    /// An error when a kernel would run more than `loop_limit` loop iterations per invocation.
    pub fn check_loops(&self, what: &str, iterations: usize) -> Result<()> {
        match self.loop_limit() {
            Some(limit) if iterations > limit => {
                Err(Error::LoopLimit { what: what.to_string(), iterations, limit, adapter: self.info.name.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Whether training batches are better gathered on the host and uploaded than gathered by a
    /// kernel from a resident copy: on a CPU adapter (lavapipe, WARP) the upload is a memcpy, and
    /// the gather dispatch it replaces costs 20–40 µs of thread-pool wake-up on lavapipe (the
    /// digits run: about +15 % samples/s). On a GPU the upload crosses the bus; the kernel wins.
    pub fn gathers_on_host(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    // The native APIs before GL: better compute support and limits.
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

/// One line per adapter: name, type, backend, driver.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    let driver =
        if info.driver.is_empty() { String::new() } else { format!(", driver {} {}", info.driver, info.driver_info) };
    // A browser may withhold the name (WebGPU's privacy rules): say so rather than print nothing.
    let name = if info.name.is_empty() { "unnamed adapter" } else { info.name.as_str() };
    format!("{name} ({:?}, {:?}{})", info.device_type, info.backend, driver.trim_end())
}

/// Every backend, or those `$WGPU_BACKEND` names (wgpu's own variable: "vulkan,gl", …).
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see, best first (none in a browser, whose one adapter is asked for
/// by `Context::open`).
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let mut adapters =
        wait("listing adapters", async { Ok(instance().enumerate_adapters(backends()).await) }).unwrap_or_default();
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

/// Runs `future` to its end: natively by blocking on it. A browser's main thread must never
/// block (a read-back's mapping completes only once the page yields to its event loop), so
/// there a future that is not ready at its first poll is an error naming `what` and the
/// awaited form to use instead; nothing panics or hangs.
pub fn wait<T>(what: &str, future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = what;
        pollster::block_on(future)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => Err(Error::Readback(format!(
                "{what}: a browser cannot wait for the GPU; use the awaited (async) form of this call"
            ))),
        }
    }
}

/// `$GRADFLOW_ADAPTER`, None when unset or empty.
fn adapter_env() -> Result<Option<String>> {
    crate::error::env_value(
        ADAPTER_ENV,
        "part of an adapter's name, backend or driver, as `gradflow devices` lists them",
    )
}

fn matches(info: &wgpu::AdapterInfo, wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    info.name.to_lowercase().contains(&wanted)
        || format!("{:?}", info.backend).to_lowercase() == wanted
        || info.driver.to_lowercase().contains(&wanted)
}

impl Context {
    /// Opens the best adapter, or the first whose name, backend or driver matches `wanted`
    /// (else `$GRADFLOW_ADAPTER`). Discrete beats integrated beats software.
    pub fn new(wanted: Option<&str>) -> Result<Context> {
        let from = if wanted.is_none() { " (from $GRADFLOW_ADAPTER)" } else { "" };
        let wanted = wanted.map(str::to_owned).or(adapter_env()?);
        let adapters = list_adapters();
        if adapters.is_empty() {
            return Err(Error::NoAdapter(NO_ADAPTER_HINT.to_string()));
        }
        let adapter = match &wanted {
            None => adapters[0].clone(),
            Some(w) => {
                adapters.iter().find(|a| matches(&a.get_info(), w)).cloned().ok_or_else(|| Error::AdapterNotFound {
                    wanted: w.clone(),
                    from,
                    available: adapters.iter().map(|a| describe_adapter(&a.get_info())).collect::<Vec<_>>().join("; "),
                })?
            }
        };
        Context::from_adapter(&adapter)
    }

    /// `new`, for data-parallel rank `rank_on_host` of its host: unless an adapter is named, the
    /// ranks share out the adapters of the best kind (rank r takes the r-th, modulo their number).
    pub fn for_rank(wanted: Option<&str>, rank_on_host: usize) -> Result<Context> {
        let named = wanted.is_some() || adapter_env()?.is_some();
        if named || rank_on_host == 0 {
            return Context::new(wanted);
        }
        let adapters = list_adapters();
        let Some(best) = adapters.first().map(|a| rank(&a.get_info())) else {
            return Err(Error::NoAdapter(NO_ADAPTER_HINT.to_string()));
        };
        let peers: Vec<&wgpu::Adapter> = adapters.iter().filter(|a| rank(&a.get_info()) == best).collect();
        Context::from_adapter(peers[rank_on_host % peers.len()])
    }

    /// Opens a device with the adapter's own limits, so layers as large as the hardware allows fit.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Context> {
        wait("opening a device", Context::open_adapter(adapter))
    }

    /// The GPU a browser page offers (WebGPU's one adapter, high-performance preferred), or
    /// natively `new(None)`: the form a page awaits. `Error::NoAdapter` says what is missing.
    pub async fn open() -> Result<Context> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            Context::new(None)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::BROWSER_WEBGPU;
            let instance = wgpu::Instance::new(desc);
            let options = wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            };
            let adapter = instance.request_adapter(&options).await.map_err(|e| {
                Error::NoAdapter(format!(
                    " ({e}); this browser offers no WebGPU adapter: use a recent Chrome or Edge, Firefox 141+ on \
                     Windows, or Safari 26, with hardware acceleration on"
                ))
            })?;
            Context::open_adapter(&adapter).await
        }
    }

    /// `from_adapter` as a future.
    pub async fn open_adapter(adapter: &wgpu::Adapter) -> Result<Context> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("gradflow"),
            // Timestamps let `bench` read device time per pass; subgroups let
            // `examples/subgroup_matmul.rs` try them. No kernel needs either.
            required_features: adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|source| Error::RequestDevice { adapter: info.name.clone(), source })?;
        // Errors outside our scopes are reported, not turned into a panic inside wgpu.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| report_late_error(format!("uncaptured GPU error: {e}"))));
        Ok(Context { device, queue, info, limits, timer: Default::default() })
    }

    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns what they caught.
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        scoped(&self.device, context, f)
    }

    /// Largest buffer this device can bind as one storage array, in bytes.
    pub fn max_storage_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| Error::Readback(e.to_string()))
    }
}

/// GPU errors no call could return: natively the uncaptured ones (printed on stderr), in a
/// browser also every error scope's (printed on the console), kept for `late_errors`.
static LATE_ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn report_late_error(message: String) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::error_1(&format!("gradflow: {message}").into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("gradflow: {message}");
    LATE_ERRORS.lock().unwrap_or_else(|e| e.into_inner()).push(message);
}

/// The GPU errors reported since the last call (a page shows them; its self-test fails on any).
pub fn late_errors() -> Vec<String> {
    std::mem::take(&mut *LATE_ERRORS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f` inside validation and out-of-memory error scopes on `device` and returns what they caught.
pub fn scoped<T>(device: &wgpu::Device, context: &str, f: impl FnOnce() -> T) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let (validation, oom) = (validation.pop(), oom.pop());
    // A browser reports a scope's errors only through its event loop: they arrive later, as
    // `late_errors` (and on the console), never as this call's result.
    #[cfg(target_arch = "wasm32")]
    {
        let context = context.to_string();
        wasm_bindgen_futures::spawn_local(async move {
            for e in [validation.await, oom.await].into_iter().flatten() {
                report_late_error(format!("{context}: {e}"));
            }
        });
        Ok(value)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let validation_err = pollster::block_on(validation);
        let oom_err = pollster::block_on(oom);
        scope_result(context, value, validation_err, oom_err)
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn scope_result<T>(
    context: &str,
    value: T,
    validation_err: Option<wgpu::Error>,
    oom_err: Option<wgpu::Error>,
) -> Result<T> {
    if let Some(e) = oom_err {
        return Err(Error::GpuOutOfMemory { context: context.to_string(), message: e.to_string() });
    }
    if let Some(e) = validation_err {
        return Err(Error::GpuValidation { context: context.to_string(), message: e.to_string() });
    }
    Ok(value)
}

impl Context {
    /// Starts timing the next `passes` submitted passes; false where the device cannot, or
    /// `passes` is more than one query set holds (2,048).
    pub fn start_pass_timer(&self, passes: u32) -> bool {
        let timer = super::timing::PassTimer::new(&self.device, passes);
        let on = timer.is_some();
        *self.timer.lock().unwrap_or_else(|e| e.into_inner()) = timer;
        on
    }

    /// Stops the timer and returns the device seconds of each pass it timed.
    pub fn finish_pass_timer(&self) -> Result<Vec<f64>> {
        let timer = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(t) = timer else {
            return Err(Error::Readback("no pass timer was running".into()));
        };
        let stamps = self.read::<u64>(&t.resolve, 0, super::timing::SLOT_ELEMENTS * t.used as usize)?;
        let period = self.queue.get_timestamp_period() as f64 * 1e-9;
        let per_slot = super::timing::SLOT_ELEMENTS / 2;
        Ok(stamps.chunks_exact(per_slot).map(|p| p[1].saturating_sub(p[0]) as f64 * period).collect())
    }
}
