//! Shader modules, bind-group layouts and pipelines: the one `unsafe` of the crate (trusted,
//! unchecked shader modules) with its safety contract, and `Family`, a WGSL file's compiled
//! entry points.

use super::buffer::STEP_SLOTS;
use super::context::scoped;
use super::dispatch::{Dispatch, Step};
use super::{shaders, Binding, Context, GpuBuffer, VIEW_ALIGN};
use crate::error::{Error, Result};

/// What a binding holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Read,
    ReadWrite,
    Uniform,
    /// Read-only storage bound with a dynamic offset: a step ring (`Context::step_ring`), or as
    /// the last binding the launch's parameters, one struct per step slot.
    ReadPerStep,
    /// The launch's parameters with a dynamic offset: one struct (or one per model) per step slot.
    UniformPerStep,
    /// A sampled rgba32float texture read with `textureLoad`.
    Texture,
    /// A write-only rgba32float storage texture.
    TextureOut,
}

/// The texel format of packed operands: four f32 per texel.
pub const PACKED_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

impl Slot {
    /// Whether the binding takes a dynamic offset per step.
    pub fn per_step(self) -> bool {
        matches!(self, Slot::ReadPerStep | Slot::UniformPerStep)
    }
}

fn binding_type(slot: Slot) -> wgpu::BindingType {
    let buffer = |ty, has_dynamic_offset| wgpu::BindingType::Buffer { ty, has_dynamic_offset, min_binding_size: None };
    let read = wgpu::BufferBindingType::Storage { read_only: true };
    match slot {
        Slot::Read => buffer(read, false),
        Slot::ReadPerStep => buffer(read, true),
        Slot::ReadWrite => buffer(wgpu::BufferBindingType::Storage { read_only: false }, false),
        Slot::Uniform => buffer(wgpu::BufferBindingType::Uniform, false),
        Slot::UniformPerStep => buffer(wgpu::BufferBindingType::Uniform, true),
        Slot::Texture => wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        Slot::TextureOut => wgpu::BindingType::StorageTexture {
            access: wgpu::StorageTextureAccess::WriteOnly,
            format: PACKED_FORMAT,
            view_dimension: wgpu::TextureViewDimension::D2,
        },
    }
}

/// A layout with `slots` at the given binding numbers.
pub fn layout_at(device: &wgpu::Device, label: &str, slots: &[(u32, Slot)]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: binding_type(slot),
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries })
}

/// A whole buffer at `binding`, for the bind groups built by hand (texture and window products).
pub fn buffer(binding: u32, b: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }
}

/// Environment variable that turns wgpu's injected shader checks back on (`1`).
pub const SHADER_CHECKS_ENV: &str = "GRADFLOW_SHADER_CHECKS";
const SHADER_CHECKS_VALUES: &str = "1 (checks on) or 0 (off, the default)";

/// Whether kernels are compiled with wgpu's runtime checks (bounds clamps, loop bounding,
/// division guards): off unless `$GRADFLOW_SHADER_CHECKS=1`. An invalid value reads as off
/// here; `Gpu::on` refuses it before any kernel is compiled.
pub fn shader_checks() -> bool {
    shader_checks_env().unwrap_or(false)
}

/// `$GRADFLOW_SHADER_CHECKS`, or the error naming its invalid value.
pub fn shader_checks_env() -> Result<bool> {
    crate::error::env_value(SHADER_CHECKS_ENV, SHADER_CHECKS_VALUES)?.map_or(Ok(false), |v| parse_shader_checks(&v))
}

/// A `$GRADFLOW_SHADER_CHECKS` value: `1` or `0`; anything else ("true", "yes") is refused, not
/// silently off.
pub fn parse_shader_checks(value: &str) -> Result<bool> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(Error::Env { var: SHADER_CHECKS_ENV, value: value.into(), expected: SHADER_CHECKS_VALUES }),
    }
}

/// Compiles one kernel family's WGSL.
///
/// # Safety contract (why the unchecked module is sound)
/// Without checks, a kernel that indexes past a binding reads or writes outside it. Every
/// index a kernel computes is kept inside its bindings by these two halves:
/// - **The host** checks every launch before it exists: each kernel module states, per entry
///   point, how many elements of each binding a launch with given parameters may touch (its
///   `extents` function; also the limits its workgroup arrays rely on), and `Family::dispatch`
///   refuses a launch whose extents pass any bound buffer's element count (`Bounds`; the count
///   is the buffer's length rounded to the whole 16-byte quad every allocation holds, never more
///   than the allocation; for a view, `GpuBuffer::view`, its own length from its offset, which
///   the bind group binds as the range's start and size) with `Error::LaunchOutOfBounds` naming
///   kernel and binding. Rewritten
///   parameters are checked again (`Dispatch::update`; a product may only shrink,
///   `Dispatch::update_matmul`). The pieces that could skip this (`Family::dispatch`,
///   `Binding`'s fields, this function) are crate-private. A uniform-window product is built
///   only when each operand's last value plus the kernel's vec4 over-read (`WINDOW_OVERREAD`)
///   lies inside its 16,384-float window (`window_fits`) and the buffer holds the whole 64 KiB
///   window from its aligned start (checked in `Gpu::matmul`); packed textures are made for the
///   launch's m, n, k; wgpu itself validates every binding's size. A step ring
///   (`Context::step_ring`) binds one slot's range, which the extents are held against, and
///   each step's dynamic offset moves that range to a whole slot inside the ring (wgpu checks
///   offset + range against the buffer at every `set_bind_group`). The one launch with two
///   parameter sets (small_net_train.wgsl: the optimizer's numbers are the family's parameters,
///   the network's sit in a step ring) holds the network's to small_net.wgsl's extents over the
///   same buffers before every write of that ring (`TrainStep::write_net`).
/// - **Indices that are data, not parameters**, are clamped in the kernel: gathered row
///   numbers below `src_rows` (data.wgsl), the small-MLP schedule's rows below `rows`, the
///   optimizer's group indices below `MAX_GROUPS` (optim.wgsl), labels below `cols`
///   (loss.wgsl). The host checks them too where it writes them (`check_batch`, data loading),
///   so the clamps never change a valid result.
/// - **Each kernel** guards every index derived from its parameters: `if (i >= len) return`
///   or the `r < p.m && k < p.k` tests of `load_a`/`load_b`/`store_c`, a clamp to the last row
///   for texel fetches and window reads past the edge (`min(col, p.n - 1)`, `min(k, p.k - 1)`),
///   and loops bounded by uniform sizes. Divisors are uniform sizes the host never
///   sets to zero (a zero-sized launch is skipped before dispatch: `Dispatch::record`).
///
/// A third rule is llvmpipe's, not wgpu's: it ends every loop of an invocation once all its loops
/// have run 65,535 iterations together, silently. Each launch whose loop count grows with its
/// sizes is checked against `Context::loop_limit` before it is built (`Context::check_loops`): long
/// products move to the tiled schedule, which loops once per 16 of k; what still does not fit
/// is an error.
///
/// `$GRADFLOW_SHADER_CHECKS=1` restores wgpu's checks; CI runs the kernel tests in both modes.
pub(crate) fn module(device: &wgpu::Device, file: &str, src: String) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor { label: Some(file), source: wgpu::ShaderSource::Wgsl(src.into()) };
    if shader_checks() {
        device.create_shader_module(desc)
    } else {
        // SAFETY: see the contract above; every WGSL file compiled here is this crate's own.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    }
}

/// Values for a module's pipeline-overridable constants (`override NAME: u32` in WGSL), by name.
pub type Constants = [(&'static str, u32)];

/// A compute pipeline for `entry` of `module`, its overridable constants set.
pub fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    layout: &wgpu::BindGroupLayout,
    entry: &str,
    constants: &Constants,
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = constants.iter().map(|&(name, v)| (name, v as f64)).collect();
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
        cache: None,
    })
}

/// A module's pipelines, one per entry point and set of override constants, made on first use
/// (or up front for the default constants) and shared by every clone of the device's kernels.
/// The epilogues are specialised this way: with their flags and activation as constants the
/// driver folds the branches away, which on lavapipe cut the cold compile of a product from
/// 0.7–6.8 s to 0.3–0.5 s and its run time by up to 40 %.
#[derive(Clone, Default)]
pub struct Specialized {
    made: std::sync::Arc<std::sync::Mutex<Vec<SpecializedPipeline>>>,
}

/// (entry point, constants, the pipeline).
type SpecializedPipeline = (&'static str, Vec<(&'static str, u32)>, wgpu::ComputePipeline);

impl Specialized {
    pub fn get(
        &self,
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        layout: &wgpu::BindGroupLayout,
        entry: &'static str,
        constants: &Constants,
    ) -> wgpu::ComputePipeline {
        // A poisoned lock only means another thread panicked while inserting; the list is intact.
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, p)) = made.iter().find(|(e, c, _)| *e == entry && c[..] == *constants) {
            return p.clone();
        }
        let p = pipeline(device, module, layout, entry, constants);
        made.push((entry, constants.to_vec(), p.clone()));
        p
    }
}

/// A WGSL file's entry points as an enum, so that no entry point is a string: `entries!`
/// declares one per kernel family, and `tests/launch_bounds.rs` holds each against the WGSL.
pub trait Entry: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// The WGSL file the entry points live in.
    const FILE: &'static str;
    /// Every entry point of the file.
    const ALL: &'static [Self];
    /// The entry point's name in the WGSL.
    fn name(self) -> &'static str;
}

/// Declares a family's entry-point enum: `entries!(pub enum E in "file.wgsl" { A = "a", … })`.
macro_rules! entries {
    ($(#[$meta:meta])* pub enum $name:ident in $file:literal { $($(#[$vmeta:meta])* $variant:ident = $wgsl:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::device::Entry for $name {
            const FILE: &'static str = $file;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn name(self) -> &'static str {
                match self { $($name::$variant => $wgsl),+ }
            }
        }
    };
}
pub(crate) use entries;

/// How many 4-byte elements of each bound buffer (in binding order, the uniform excluded) a
/// launch with these parameters may touch, or an error when the parameters break a limit the
/// kernel relies on (a workgroup array's size): the host's half of the safety contract.
pub type Extents<E, P> = fn(E, &P) -> Result<Vec<u64>>;

/// One family of kernels: a WGSL file, the bind-group layout its entry points share, and a
/// pipeline per entry point.
pub struct Family<E: Entry> {
    pub layout: wgpu::BindGroupLayout,
    /// What each binding holds, in binding order.
    slots: Vec<Slot>,
    pub(crate) module: wgpu::ShaderModule,
    pipelines: Specialized,
    _entries: std::marker::PhantomData<E>,
}

impl<E: Entry> Clone for Family<E> {
    fn clone(&self) -> Self {
        Family {
            layout: self.layout.clone(),
            slots: self.slots.clone(),
            module: self.module.clone(),
            pipelines: self.pipelines.clone(),
            _entries: std::marker::PhantomData,
        }
    }
}

impl<E: Entry> Family<E> {
    /// A family whose bindings are `slots` at 0, 1, 2, … (the uniform last), with the default
    /// pipelines of `eager` made now (the rest on first use).
    pub(crate) fn new(device: &wgpu::Device, slots: &[Slot], eager: &[E]) -> Result<Family<E>> {
        let numbered: Vec<(u32, Slot)> = slots.iter().enumerate().map(|(i, &s)| (i as u32, s)).collect();
        Family::with_bindings(device, &numbered, eager)
    }

    /// A family with `slots` at the given binding numbers.
    pub(crate) fn with_bindings(device: &wgpu::Device, slots: &[(u32, Slot)], eager: &[E]) -> Result<Family<E>> {
        let file = E::FILE;
        let src = shaders::source(file).ok_or_else(|| Error::Model(format!("no shader {file}")))?;
        scoped(device, &format!("compiling {file}"), || {
            let module = module(device, file, src);
            let layout = layout_at(device, file, slots);
            let slots = slots.iter().map(|&(_, s)| s).collect();
            let family =
                Family { layout, slots, module, pipelines: Specialized::default(), _entries: std::marker::PhantomData };
            for &entry in eager {
                family.pipeline(device, entry, &[]);
            }
            family
        })
    }

    /// `entry` specialised on `constants` (its default pipeline when empty).
    pub fn pipeline(&self, device: &wgpu::Device, entry: E, constants: &Constants) -> wgpu::ComputePipeline {
        self.pipelines.get(device, &self.module, &self.layout, entry.name(), constants)
    }

    /// Binds `buffers` (in binding order, the uniform last) to `entry` with `entry`
    /// specialised on `constants`, after checking that every element `extents` says the
    /// launch may touch lies inside its buffer; the same check guards every later rewrite of
    /// the launch's parameters (`Dispatch::update`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch<P: bytemuck::Pod + Send + Sync>(
        &self,
        gpu: &Context,
        entry: E,
        constants: &Constants,
        buffers: &[Binding],
        extents: Extents<E, P>,
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_models(gpu, entry, constants, buffers, extents, std::slice::from_ref(params), 1, false, groups)
    }

    /// `dispatch` for a launch whose parameters change from step to step (a learning rate, a
    /// blend): in a family that binds them per step, they get a slot per step
    /// (`Dispatch::write_slot`); elsewhere this is `dispatch`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch_per_step<P: bytemuck::Pod + Send + Sync>(
        &self,
        gpu: &Context,
        entry: E,
        constants: &Constants,
        buffers: &[Binding],
        extents: Extents<E, P>,
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_models(gpu, entry, constants, buffers, extents, std::slice::from_ref(params), 1, true, groups)
    }

    /// `dispatch` for a launch over a batch of models whose last binding holds one parameter
    /// struct per model (an array of `array_len` the kernel indexes by its model, zeros past
    /// `params`); each is checked. With `per_step`, in a family whose parameters are bound per
    /// step (`Slot::UniformPerStep`, or `Slot::ReadPerStep` last), the buffer holds
    /// `STEP_SLOTS` slots, one per step of a many-steps submit (`Dispatch::write_slot`); a
    /// launch whose parameters stay put binds its one slot at offset 0 in every step.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch_models<P: bytemuck::Pod + Send + Sync>(
        &self,
        gpu: &Context,
        entry: E,
        constants: &Constants,
        buffers: &[Binding],
        extents: Extents<E, P>,
        params: &[P],
        array_len: usize,
        per_step: bool,
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let name = entry.name();
        if params.is_empty() || params.len() > array_len.max(1) {
            return Err(Error::Plan(format!("{name}: a launch needs 1 to {} parameter structs", array_len.max(1))));
        }
        if buffers.len() + 1 != self.slots.len() {
            return Err(Error::Plan(format!("{name}: {} buffers for {} bindings", buffers.len(), self.slots.len())));
        }
        // The dynamic offsets' strides, in binding order: a step ring's, then the parameters'.
        let mut strides = Vec::new();
        let mut slots = usize::MAX;
        for (i, (b, slot)) in buffers.iter().zip(&self.slots).enumerate() {
            match (slot.per_step(), b.ring) {
                (true, Some(ring)) => {
                    strides.push(ring.stride);
                    slots = slots.min(ring.slots);
                }
                (true, None) => strides.push(0),
                (false, Some(_)) => {
                    return Err(Error::Plan(format!("{name}: binding {i} is a step ring but takes no offset per step")))
                }
                (false, None) => {}
            }
        }
        let bound_per_step = self.slots.last().is_some_and(|s| s.per_step());
        let per_step = per_step && bound_per_step;
        let used = std::mem::size_of_val(params) as u64;
        let uniform_stride = if per_step { used.next_multiple_of(VIEW_ALIGN) } else { 0 };
        if bound_per_step {
            strides.push(uniform_stride);
        }
        if per_step {
            slots = slots.min(STEP_SLOTS);
        }
        let bounds = Bounds::new(entry, buffers, extents);
        for p in params {
            bounds.check(p)?;
        }
        gpu.scoped(name, || {
            let pipeline = self.pipeline(&gpu.device, entry, constants);
            // Slot j's structs start at j·stride; each slot's binding spans the whole array, so
            // slots overlap past their own structs, which no workgroup reads (zeros).
            let array_bytes = (array_len.max(params.len()) * std::mem::size_of::<P>()) as u64;
            let ring_slots = if per_step { STEP_SLOTS as u64 } else { 1 };
            let uniform =
                gpu.parameter_ring(name, bytemuck::cast_slice(params), uniform_stride, ring_slots, array_bytes);
            let mut entries: Vec<wgpu::BindGroupEntry> = buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: GpuBuffer::resource(b) })
                .collect();
            entries.push(wgpu::BindGroupEntry {
                binding: buffers.len() as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: 0,
                    size: std::num::NonZeroU64::new(array_bytes),
                }),
            });
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(name),
                layout: &self.layout,
                entries: &entries,
            });
            let step = Step { pipeline, bind_group, groups, strides };
            Dispatch::new_models(vec![step], uniform, uniform_stride, slots, bounds.erase(), params)
        })
    }
}

/// A launch's bounds check: the bound buffers' lengths and the extents function of its entry.
pub struct Bounds<E: Entry, P> {
    entry: E,
    lengths: Vec<u64>,
    extents: Extents<E, P>,
}

impl<E: Entry, P: bytemuck::Pod + Send + Sync> Bounds<E, P> {
    /// The check for `entry` over `buffers` (their lengths in 4-byte elements).
    pub(crate) fn new(entry: E, buffers: &[Binding], extents: Extents<E, P>) -> Bounds<E, P> {
        Bounds { entry, lengths: buffers.iter().map(|b| b.len).collect(), extents }
    }

    /// An error naming the kernel, the binding and both lengths when `params` would reach past a
    /// bound buffer.
    pub fn check(&self, params: &P) -> Result<()> {
        let needed = (self.extents)(self.entry, params)?;
        for (binding, (&need, &have)) in needed.iter().zip(&self.lengths).enumerate() {
            if need > have {
                return Err(Error::LaunchOutOfBounds {
                    kernel: self.entry.name(),
                    binding,
                    needed: need,
                    available: have,
                });
            }
        }
        Ok(())
    }

    /// The check as the launch keeps it: over the parameters' bytes, one struct or one per
    /// model of a batched launch, each checked.
    pub fn erase(self) -> super::dispatch::BoundsCheck {
        std::sync::Arc::new(move |bytes: &[u8]| {
            let size = std::mem::size_of::<P>();
            if bytes.is_empty() || !bytes.len().is_multiple_of(size) {
                return Err(Error::Plan(format!(
                    "{}: parameters of {} bytes, expected a multiple of {size}",
                    self.entry.name(),
                    bytes.len()
                )));
            }
            bytes.chunks(size).try_for_each(|chunk| match bytemuck::try_from_bytes::<P>(chunk) {
                Ok(p) => self.check(p),
                Err(_) => Err(Error::Plan(format!("{}: parameters not aligned", self.entry.name()))),
            })
        })
    }
}

/// The largest index + 1 of `offset + Σ (count_i − 1)·stride_i`, or 0 when any count is 0: the
/// extent of a strided view with these counts.
pub fn strided_extent(offset: u32, dims: &[(u32, u32)]) -> u64 {
    if dims.iter().any(|&(count, _)| count == 0) {
        return 0;
    }
    offset as u64 + dims.iter().map(|&(count, stride)| (count as u64 - 1) * stride as u64).sum::<u64>() + 1
}
