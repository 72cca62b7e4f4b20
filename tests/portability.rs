//! Every kernel family must compile for every platform wgpu targets, not just the one this
//! machine happens to run: each family (with `common.wgsl` prepended, exactly as the device sees
//! it) is parsed by naga's WGSL front end, validated, and translated to SPIR-V (Vulkan), MSL
//! (Metal) and HLSL (DX12), one entry point at a time, the way wgpu compiles pipelines.
//!
//! The back ends get real binding maps with `fake_missing_bindings: false`, as wgpu-hal does, so a
//! resource that a back end cannot place is an error here rather than silently invalid output.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gradflow::device::shaders::{self, FAMILIES};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Binding, BuiltIn, EntryPoint, Module, ResourceBinding, ShaderStage, StorageAccess};

/// One kernel family, parsed and validated.
struct Family {
    file: &'static str,
    module: Module,
    info: ModuleInfo,
}

/// What kind of resource a bound global is, which decides its slot class on Metal and DX12.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Resource {
    Uniform,
    StorageRead,
    StorageReadWrite,
    /// A texture (sampled or storage): a texture slot on Metal, t#/u# on DX12.
    Texture,
}

/// Every bound global of a module: its binding and its kind.
fn resources(module: &Module) -> Vec<(ResourceBinding, Resource)> {
    let mut out = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = var.binding else { continue };
        let kind = match var.space {
            AddressSpace::Uniform => Resource::Uniform,
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => Resource::StorageReadWrite,
            AddressSpace::Storage { .. } => Resource::StorageRead,
            AddressSpace::Handle if matches!(module.types[var.ty].inner, naga::TypeInner::Image { .. }) => {
                Resource::Texture
            }
            other => panic!("binding {binding:?} in unexpected address space {other:?}: extend tests/portability.rs"),
        };
        out.push((binding, kind));
    }
    out.sort_by_key(|(b, _)| (b.group, b.binding));
    out
}

fn uses_num_workgroups(ep: &EntryPoint) -> bool {
    ep.function.arguments.iter().any(|arg| matches!(arg.binding, Some(Binding::BuiltIn(BuiltIn::NumWorkGroups))))
}

/// Parses and validates every family; panics with naga's rendered diagnostics on the first
/// family that fails (the rest cannot be translated without a module anyway).
fn families() -> Vec<Family> {
    FAMILIES
        .iter()
        .map(|&(file, _)| {
            let source = shaders::source(file).unwrap_or_else(|| panic!("shaders::source({file:?}) returned None"));
            let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                panic!("{file}: WGSL parse failed:\n{}", e.emit_to_string_with_path(&source, file))
            });
            // Default capabilities (MULTISAMPLED_SHADING | CUBE_ARRAY_TEXTURES) are enough: the
            // kernels use only f32/u32, storage/uniform buffers and workgroup memory, which core
            // WebGPU allows everywhere.
            let info =
                Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&module).unwrap_or_else(|e| {
                    panic!("{file}: naga validation failed:\n{}", e.emit_to_string_with_path(&source, file))
                });
            Family { file, module, info }
        })
        .collect()
}

/// The override values a family is translated with besides its defaults: every epilogue flag
/// on and the activation with the most code (GELU), as the host may specialise a pipeline.
fn specialisation(module: &Module) -> naga::back::PipelineConstants {
    let mut constants = naga::back::PipelineConstants::default();
    for (_, o) in module.overrides.iter() {
        let name = o.name.clone().unwrap_or_default();
        let value = match name.as_str() {
            // Every flag but ADD_SKIP, which excludes STORE_PREACT and ACT_GRAD.
            "EPILOGUE_FLAGS" => 31.0,
            "EPILOGUE_ACT" | "ACT" => 4.0,
            // Every static optimizer flag (FIRST_STEP, 128, is never a constant).
            "OPT_FLAGS" => 127.0,
            "BN_FLAGS" => 3.0,
            "ACT_FLAGS" => 1.0,
            "HVP_FLAGS" => 1.0,
            // The CPU adapters' one invocation (64 is the default).
            "LANES" => 1.0,
            "MODEL_GROUP" => 8.0,
            // A read along k, B along n (the default, 0, is the value-by-value path).
            "WINDOW_LAYOUT" => 9.0,
            other => panic!("override {other}: give tests/portability.rs a value for it"),
        };
        constants.insert(name, value);
    }
    constants
}

/// Runs `check` on every entry point of every family, with its overrides at their defaults and
/// at `specialisation`'s values (resolved as wgpu resolves them when it makes a pipeline), and
/// fails once, listing every failure.
fn for_each_entry_point(backend: &str, mut check: impl FnMut(&Family, &EntryPoint) -> Result<(), String>) {
    let families = families();
    let mut failures = Vec::new();
    let mut checked = 0;
    for family in &families {
        for constants in [naga::back::PipelineConstants::default(), specialisation(&family.module)] {
            for ep in &family.module.entry_points {
                checked += 1;
                let resolved = naga::back::pipeline_constants::process_overrides(
                    &family.module,
                    &family.info,
                    Some((ep.stage, &ep.name)),
                    &constants,
                );
                let result = match resolved {
                    Ok((module, info)) => {
                        let f = Family { file: family.file, module: module.into_owned(), info: info.into_owned() };
                        let ep = f.module.entry_points.iter().find(|e| e.name == ep.name).cloned();
                        match ep {
                            Some(ep) => check(&f, &ep),
                            None => Err("entry point lost while resolving overrides".into()),
                        }
                    }
                    Err(e) => Err(format!("overrides {constants:?}: {e}")),
                };
                if let Err(e) = result {
                    failures.push(format!("{backend}: {} entry point `{}`: {e}", family.file, ep.name));
                }
            }
        }
    }
    assert!(checked > 0, "no entry points at all");
    assert!(failures.is_empty(), "{} of {checked} entry points failed:\n\n{}", failures.len(), failures.join("\n\n"));
    eprintln!("{backend}: {checked} entry point specialisations translated");
}

#[test]
fn every_family_parses_validates_and_has_a_compute_entry_point() {
    let families = families();
    assert_eq!(families.len(), FAMILIES.len());
    let mut problems = Vec::new();
    for f in &families {
        let compute: Vec<&str> = f
            .module
            .entry_points
            .iter()
            .filter(|ep| ep.stage == ShaderStage::Compute)
            .map(|ep| ep.name.as_str())
            .collect();
        if compute.is_empty() {
            problems.push(format!("{} declares no @compute entry point", f.file));
        }
        for ep in &f.module.entry_points {
            if ep.stage != ShaderStage::Compute {
                problems.push(format!("{} entry point `{}` is {:?}, not compute", f.file, ep.name, ep.stage));
            }
        }
        eprintln!("{}: {}", f.file, compute.join(", "));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_entry_point_translates_to_spirv() {
    use naga::back::spv;
    for_each_entry_point("SPIR-V", |f, ep| {
        let options = spv::Options {
            fake_missing_bindings: false,
            binding_map: resources(&f.module)
                .into_iter()
                .map(|(b, _)| {
                    (b, spv::BindingInfo { descriptor_set: b.group, binding: b.binding, binding_array_size: None })
                })
                .collect(),
            // What wgpu-hal's Vulkan back end uses when the device lacks robust buffer access.
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: naga::proc::BoundsCheckPolicy::Restrict,
                buffer: naga::proc::BoundsCheckPolicy::Restrict,
                ..Default::default()
            },
            ..Default::default()
        };
        let pipeline = spv::PipelineOptions { shader_stage: ep.stage, entry_point: ep.name.clone() };
        let words =
            spv::write_vec(&f.module, &f.info, &options, Some(&pipeline)).map_err(|e| format!("{e} ({e:?})"))?;
        if words.len() < 5 {
            return Err(format!("only {} words of output", words.len()));
        }
        if words[0] != 0x0723_0203 {
            return Err(format!("first word {:#010x} is not the SPIR-V magic number", words[0]));
        }
        // OpEntryPoint carries the name as a nul-terminated literal string.
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let needle: Vec<u8> = ep.name.bytes().chain([0]).collect();
        if !bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
            return Err("entry point name not found in the SPIR-V module".into());
        }
        Ok(())
    });
}

#[test]
fn every_entry_point_translates_to_msl() {
    use naga::back::msl;
    for_each_entry_point("MSL", |f, ep| {
        // Buffer slots in binding order, then the sizes buffer that runtime-sized arrays need
        // (the layout wgpu-hal's Metal back end builds).
        // Textures take texture slots, counted apart from the buffers'.
        let mut map = msl::BindingMap::new();
        let resources = resources(&f.module);
        let (mut buffers, mut textures) = (0, 0);
        for &(binding, kind) in &resources {
            let target = if kind == Resource::Texture {
                textures += 1;
                msl::BindTarget { texture: Some(textures - 1), ..Default::default() }
            } else {
                buffers += 1;
                msl::BindTarget {
                    buffer: Some(buffers - 1),
                    mutable: kind == Resource::StorageReadWrite,
                    ..Default::default()
                }
            };
            map.insert(binding, target);
        }
        let ep_resources =
            msl::EntryPointResources { resources: map, immediates_buffer: None, sizes_buffer: Some(buffers) };
        let restrict = naga::proc::BoundsCheckPolicy::Restrict;
        let options = msl::Options {
            // Metal 2.0 (macOS 10.13 / iOS 11): the oldest language version wgpu meets in practice.
            lang_version: (2, 0),
            per_entry_point_map: BTreeMap::from([(ep.name.clone(), ep_resources)]),
            fake_missing_bindings: false,
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: restrict,
                buffer: restrict,
                image_load: restrict,
                ..Default::default()
            },
            ..Default::default()
        };
        let pipeline = msl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())), ..Default::default() };
        let (text, info) =
            msl::write_string(&f.module, &f.info, &options, &pipeline).map_err(|e| format!("{e} ({e:?})"))?;
        check_text_output(&text, &ep.name, &info.entry_point_names)?;
        if !text.contains("kernel void") {
            return Err("no `kernel` function in the MSL".into());
        }
        Ok(())
    });
}

#[test]
fn every_entry_point_translates_to_hlsl() {
    use naga::back::hlsl;
    for model in [hlsl::ShaderModel::V5_1, hlsl::ShaderModel::V6_0] {
        for_each_entry_point(&format!("HLSL SM {}", model.to_str()), |f, ep| {
            let resources = resources(&f.module);
            // t#, u# and b# are separate register classes, so the WGSL binding number is a
            // unique register within each; the group becomes the register space.
            let binding_map: hlsl::BindingMap = resources
                .iter()
                .map(|&(b, _)| {
                    (b, hlsl::BindTarget { space: b.group as u8, register: b.binding, ..Default::default() })
                })
                .collect();
            // `@builtin(num_workgroups)` has no HLSL semantic: wgpu passes it in a constant buffer.
            // Without this binding naga would fall back to SV_GroupID, which is a different value.
            let free_register = resources.iter().map(|(b, _)| b.binding + 1).max().unwrap_or(0);
            let options = hlsl::Options {
                shader_model: model,
                binding_map,
                fake_missing_bindings: false,
                special_constants_binding: Some(hlsl::BindTarget {
                    space: 0,
                    register: free_register,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())) };
            let mut text = String::new();
            let info = hlsl::Writer::new(&mut text, &options, &pipeline)
                .write(&f.module, &f.info, None)
                .map_err(|e| format!("{e} ({e:?})"))?;
            check_text_output(&text, &ep.name, &info.entry_point_names)?;
            if uses_num_workgroups(ep) && !text.contains("_NagaConstants") {
                return Err(
                    "uses num_workgroups but the HLSL does not read it from the special constants buffer".into()
                );
            }
            if !text.contains("[numthreads(") {
                return Err("no [numthreads(...)] attribute in the HLSL".into());
            }
            Ok(())
        });
    }
}

/// Shared checks for the text back ends: the one requested entry point translated, and the
/// output is non-empty and contains its name.
///
/// naga's namer appends `_` to identifiers that end in a digit (`copy_f32` becomes `copy_f32_`)
/// or collide with a keyword of the target language. That is harmless, since wgpu-hal looks the
/// function up by the name naga reports, so exactly that rename is accepted; any other
/// (a `_1` suffix means two things wanted the same name) is a failure.
fn check_text_output<E: std::fmt::Debug>(text: &str, name: &str, names: &[Result<String, E>]) -> Result<(), String> {
    let mut err = String::new();
    let translated = match names {
        [Ok(translated)] if *translated == name || *translated == format!("{name}_") => Some(translated.as_str()),
        [Ok(translated)] => {
            let _ = write!(err, "entry point unexpectedly renamed to `{translated}`; ");
            Some(translated.as_str())
        }
        [Err(e)] => {
            let _ = write!(err, "entry point failed to translate: {e:?}; ");
            None
        }
        other => {
            let _ = write!(err, "expected exactly one translated entry point, got {}; ", other.len());
            None
        }
    };
    if text.trim().is_empty() {
        err += "output is empty; ";
    } else {
        for n in [Some(name), translated].into_iter().flatten() {
            if !text.contains(n) {
                let _ = write!(err, "output does not contain `{n}`; ");
            }
        }
    }
    if err.is_empty() {
        Ok(())
    } else {
        Err(err.trim_end_matches("; ").to_string())
    }
}
