//! The kernel layer: one module per WGSL family, each owning its parameters, its entry-point
//! enum, the struct naming its bindings and the one launch builder that training, Hessian
//! products, `check`, `bench` and the tests all call; and `Gpu`, an open device with every
//! family compiled.

pub mod activation;
pub use matmul::autotune;

pub mod batchnorm;
pub mod data;
pub mod dropout;
pub mod hvp;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod small_mlp;
pub mod small_net;

pub use activation::{ActEntry, ActParams, ACT_ACCUMULATE};
pub use batchnorm::{BnEntry, BnParams, BN_ACCUMULATE, BN_EW_COLS, BN_EW_ROWS, BN_FEATURES, BN_SYNC, BN_TRAIN};
pub use data::{DataEntry, GatherParams};
pub use dropout::{DropEntry, DropoutParams, DROPOUT_ACCUMULATE};
pub use hvp::{HvpBuffers, HvpEntry, HvpParams, HVP_ACCUMULATE, HVP_FEATURES};
pub use loss::{
    LossEntry, LossParams, LOSS_ONE_GROUP_ROWS, TOTALS_LEN, TOTAL_BAD_LOSS, TOTAL_CORRECT, TOTAL_COUNT,
    TOTAL_FIRST_BAD, TOTAL_LOSS_SUM, TOTAL_STEPS, TOTAL_STEP_LOSS,
};
pub use matmul::{
    packed_extent, Epilogue, MatmulEntry, MatmulParams, MatmulVariant, PackedEntry, Schedule, UniformEntry,
    FLAG_ACCUMULATE, FLAG_ACT_GRAD, FLAG_ADD_SKIP, FLAG_BIAS, FLAG_ROW_SUM, FLAG_STORE_PREACT, MATMUL_TILE,
    SMALL_PRODUCT_DIM, UNIFORM_WINDOW,
};
pub use optim::{GpuOptimizer, OptEntry, OptParams, UpdateBuffers};
pub use small_mlp::{SmallMlpEntry, SmallMlpParams};
pub use small_net::{SmallNet, SmallNetBuffers, SmallNetEntry, SmallNetParams, SmallNetTrainEntry, TrainStep};

use crate::device::{Binding, Context, Entry, Family, Slot};
use crate::error::Result;

/// Every kernel family's entry points, by file: what `tests/launch_bounds.rs` holds against
/// the WGSL.
pub fn entry_points() -> Vec<(&'static str, Vec<&'static str>)> {
    fn of<E: Entry>() -> (&'static str, Vec<&'static str>) {
        (E::FILE, E::ALL.iter().map(|e| e.name()).collect())
    }
    vec![
        of::<MatmulEntry>(),
        of::<PackedEntry>(),
        of::<UniformEntry>(),
        of::<ActEntry>(),
        of::<LossEntry>(),
        of::<OptEntry>(),
        of::<DataEntry>(),
        of::<BnEntry>(),
        of::<DropEntry>(),
        of::<HvpEntry>(),
        of::<SmallMlpEntry>(),
        of::<SmallNetEntry>(),
        of::<SmallNetTrainEntry>(),
    ]
}

/// Every compiled kernel of the crate, plus the placeholder buffers bound to unused slots.
#[derive(Clone)]
pub struct Kernels {
    matmul: Family<MatmulEntry>,
    packed: matmul::PackedFamily,
    /// The uniform-window product: its operands are uniform windows at bindings 10 and 11, the
    /// rest as in matmul.wgsl; bound by hand (`Gpu::matmul_uniform`), so no default pipeline.
    uniform: Family<UniformEntry>,
    activation: Family<ActEntry>,
    loss: Family<LossEntry>,
    optim: Family<OptEntry>,
    data: Family<DataEntry>,
    batchnorm: Family<BnEntry>,
    /// Dropout's parameters carry the step, which changes every step: bound per step.
    dropout: Family<DropEntry>,
    /// The R-operator's kernels (Hessian-vector products), compiled on first use: most runs
    /// never need them.
    hvp: Family<HvpEntry>,
    /// Many SGD steps of a small MLP per dispatch (`exec::small_mlp`), compiled on first use.
    small_mlp: Family<SmallMlpEntry>,
    /// A small network's forward and backward pass in one launch (`exec::GpuNetwork`
    /// chooses it), compiled on first use.
    small_net: Family<SmallNetEntry>,
    /// The same with the optimizer's update in the launch, where the adapter binds its 12
    /// storage buffers per stage (None elsewhere: the update is a launch of its own).
    small_net_train: Option<Family<SmallNetTrainEntry>>,
    unused_read: wgpu::Buffer,
    unused_write: wgpu::Buffer,
}

impl Kernels {
    /// Compiles every kernel family for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Kernels> {
        use Slot::*;
        let placeholder = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Kernels {
            matmul: Family::new(device, &[Read, Read, Read, ReadWrite, ReadWrite, Uniform], MatmulEntry::ALL)?,
            packed: matmul::PackedFamily::new(device)?,
            uniform: Family::with_bindings(
                device,
                &[(2, Read), (3, ReadWrite), (4, ReadWrite), (5, Uniform), (10, Uniform), (11, Uniform)],
                &[],
            )?,
            activation: Family::new(device, &[Read, Read, ReadWrite, Uniform], ActEntry::ALL)?,
            loss: Family::new(device, &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform], LossEntry::ALL)?,
            // The optimizer's numbers and a batch norm's blend change from step to step, and so do the
            // batch's indices: bound per step, so a many-steps submit needs no copies between steps.
            optim: Family::new(device, &[ReadWrite, Read, ReadWrite, Read, ReadWrite, UniformPerStep], OptEntry::ALL)?,
            data: Family::new(device, &[Read, Read, ReadPerStep, ReadWrite, ReadWrite, Uniform], DataEntry::ALL)?,
            batchnorm: Family::new(
                device,
                &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, UniformPerStep],
                BnEntry::ALL,
            )?,
            dropout: Family::new(device, &[Read, ReadWrite, UniformPerStep], DropEntry::ALL)?,
            hvp: Family::new(device, &[Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform], &[])?,
            small_mlp: Family::new(device, &[ReadWrite, ReadWrite, Read, Read, Read, ReadWrite, Uniform], &[])?,
            small_net: Family::new(
                device,
                &[ReadWrite, ReadWrite, ReadWrite, ReadWrite, Read, Read, ReadPerStep, ReadPerStep],
                &[],
            )?,
            small_net_train: if device.limits().max_storage_buffers_per_shader_stage
                >= small_net::SMALL_NET_TRAIN_STORAGE_BINDINGS
            {
                Some(Family::new(
                    device,
                    &[
                        ReadWrite,
                        ReadWrite,
                        ReadWrite,
                        ReadWrite,
                        Read,
                        Read,
                        ReadPerStep,
                        ReadPerStep,
                        ReadWrite,
                        Read,
                        ReadWrite,
                        ReadPerStep,
                    ],
                    &[],
                )?)
            } else {
                None
            },
            unused_read: placeholder("unused (read)"),
            unused_write: placeholder("unused (write)"),
        })
    }
}

impl Kernels {
    /// The placeholder bound where a launch reads nothing.
    pub(crate) fn none_read(&self) -> Binding<'_> {
        Binding::unused(&self.unused_read)
    }

    /// The placeholder bound where a launch writes nothing.
    pub(crate) fn none_write(&self) -> Binding<'_> {
        Binding::unused(&self.unused_write)
    }
}

/// An open device with every kernel family compiled and the matmul schedule chosen. Derefs to
/// the `Context` (queue, limits, buffers). Cloning shares the device.
#[derive(Clone)]
pub struct Gpu {
    pub ctx: Context,
    /// Every pipeline, compiled once when the device opens.
    pub kernels: Kernels,
    /// The matmul schedule `Gpu::matmul` launches, per shape class.
    pub matmul_schedule: Schedule,
    /// How that schedule was chosen (autotuned now, from the cache, or by $GRADFLOW_MATMUL).
    pub tuning: Option<autotune::Tuning>,
    /// Invocations of the fused small-network step's workgroup: 1 on a CPU adapter, else 64
    /// (`small_net::default_lanes`; tests run both).
    pub small_net_lanes: u32,
}

impl std::ops::Deref for Gpu {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl Gpu {
    /// Opens the best adapter, or the first whose name, backend or driver matches `wanted`
    /// (else `$GRADFLOW_ADAPTER`). Discrete beats integrated beats software.
    pub fn new(wanted: Option<&str>) -> Result<Gpu> {
        Gpu::on(Context::new(wanted)?)
    }

    /// `new`, for data-parallel rank `rank_on_host` of its host: unless an adapter is named, the
    /// ranks share out the adapters of the best kind.
    pub fn for_rank(wanted: Option<&str>, rank_on_host: usize) -> Result<Gpu> {
        Gpu::on(Context::for_rank(wanted, rank_on_host)?)
    }

    /// The GPU a browser page offers (natively `new(None)`), every family compiled: the form a
    /// page awaits.
    pub async fn open() -> Result<Gpu> {
        Gpu::on(Context::open().await?)
    }

    /// Opens a device on `adapter` with the adapter's own limits.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Gpu> {
        Gpu::on(Context::from_adapter(adapter)?)
    }

    /// Compiles every family on `ctx` and chooses the matmul schedule.
    pub fn on(ctx: Context) -> Result<Gpu> {
        // Refused before any kernel is compiled, where `shader_checks()` would read it as off.
        crate::device::shader_checks_env()?;
        let kernels = Kernels::new(&ctx.device)?;
        // Provisional until the autotuner (or $GRADFLOW_MATMUL) has chosen.
        let small_net_lanes = small_net::default_lanes(&ctx.info);
        let mut gpu = Gpu {
            ctx,
            kernels,
            matmul_schedule: Schedule::uniform(MatmulVariant::Tiled),
            tuning: None,
            small_net_lanes,
        };
        // A page cannot block on the timing read-backs the search needs: one fixed schedule.
        #[cfg(target_arch = "wasm32")]
        let tuning = autotune::Tuning { schedule: gpu.matmul_schedule, source: autotune::Source::Browser };
        #[cfg(not(target_arch = "wasm32"))]
        let tuning = autotune::matmul_schedule(&gpu)?;
        gpu.matmul_schedule = tuning.schedule;
        gpu.tuning = Some(tuning);
        Ok(gpu)
    }
}
