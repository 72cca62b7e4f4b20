//! The commands about this machine's adapters: `devices` (what wgpu sees), `check` (every kernel
//! against the CPU reference) and `bench` (matmul GFLOP/s, training samples/s).

use super::BenchArgs;
use crate::error::{Error, Result};
use crate::train::Placement;

/// `gradflow devices`: prints `listing()`.
pub fn devices() -> Result<()> {
    let text = listing()?;
    crate::say!("{}", text.strip_suffix('\n').unwrap_or(&text));
    Ok(())
}

/// The adapters wgpu can see, best first, each with its limits and matmul schedule (or a line
/// saying there are none, and how to get one); an error for an invalid gradflow variable.
pub fn listing() -> Result<String> {
    crate::device::shader_checks_env()?;
    let adapters = crate::device::list_adapters();
    let mut text = String::new();
    if adapters.is_empty() {
        text += &format!("no adapters{}\n", crate::device::context::NO_ADAPTER_HINT);
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let schedule = crate::kernels::autotune::cached(&info)?
            .map_or("not autotuned yet (the first run that opens it times the candidates)".to_string(), |s| s.name());
        text += &format!(
            "{i}: {}\n   max storage binding {} MiB, max workgroups/dim {}, max invocations/workgroup {}\n   matmul schedule: {schedule}\n",
            crate::device::describe_adapter(&info),
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup
        );
    }
    Ok(text)
}

/// `gradflow check`: every kernel against the CPU reference; an error if one is out of bounds.
pub fn check(placement: &Placement) -> Result<()> {
    if crate::check::run(placement)? {
        Ok(())
    } else {
        Err(Error::Usage("check: some kernels are outside their error bounds".into()))
    }
}

/// `gradflow bench`: the JSON path is checked before the first measurement (a full run takes
/// minutes).
pub fn bench(args: &BenchArgs, placement: &Placement) -> Result<()> {
    if let Some(p) = &args.json {
        crate::train::session::check_writable(p, "--json")?;
    }
    crate::bench::run(placement, args.quick, args.json.as_deref())
}
