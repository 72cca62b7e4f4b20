//! The device layer: adapter selection, buffers, the unchecked-module contract, pipelines,
//! dispatch and timing. Knows nothing of any particular kernel.

pub mod buffer;
pub mod context;
pub mod dispatch;
pub mod memory;
pub mod pipeline;
pub mod shaders;
pub mod timing;

pub use buffer::{Binding, GpuBuffer, PendingRead, Ring, STEP_SLOTS, VIEW_ALIGN};
pub use context::{
    describe_adapter, late_errors, list_adapters, quiet_mesa_device_select, scoped, wait, Context, ADAPTER_ENV,
    LLVMPIPE_LOOP_BUDGET, NO_ADAPTER_HINT,
};
pub use dispatch::{
    grid, groups_for, step_slots, submit, submit_steps, submit_with, Dispatch, StepCopy, StepRecord,
    MAX_GROUPS_PER_DIM, SUBMIT_NANOS,
};
pub(crate) use pipeline::entries;
pub use pipeline::{
    parse_shader_checks, shader_checks, shader_checks_env, strided_extent, Entry, Family, Slot, SHADER_CHECKS_ENV,
};
