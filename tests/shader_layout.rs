//! The numbers the host and the kernels must agree on, read back from the WGSL through naga's
//! reflection: every flag, code and tile constant the host writes or sizes grids from, and the
//! byte layout of every parameter struct the host writes into a uniform. A change on one side
//! only fails here, not as a silently wrong launch.

use std::mem::{offset_of, size_of};

use gradflow::device::shaders;
use gradflow::kernels::matmul::*;
use gradflow::kernels::optim::*;
use gradflow::kernels::*;
use gradflow::reference::philox;
use gradflow::spec::Activation;
use naga::{Expression, Literal, Module, TypeInner};

fn module(file: &str) -> Module {
    let src = shaders::source(file).unwrap_or_else(|| panic!("no family {file}"));
    naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The value of the module-scope `const NAME: u32` in `file`.
fn constant(m: &Module, file: &str, name: &str) -> u64 {
    let (_, c) = m
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{file} declares no const {name}"));
    match m.global_expressions[c.init] {
        Expression::Literal(Literal::U32(v)) => v as u64,
        Expression::Literal(Literal::I32(v)) => v as u64,
        Expression::Literal(Literal::AbstractInt(v)) => v as u64,
        ref e => panic!("{file}: const {name} is {e:?}, not an integer literal"),
    }
}

/// (size, [(member, offset)]) of the WGSL struct `name` in `file`.
fn layout(m: &Module, file: &str, name: &str) -> (usize, Vec<(String, usize)>) {
    let ty = m
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{file} declares no struct {name}"))
        .1;
    match &ty.inner {
        TypeInner::Struct { members, span } => (
            *span as usize,
            members.iter().map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset as usize)).collect(),
        ),
        other => panic!("{file}: {name} is {other:?}"),
    }
}

/// Checks the WGSL struct against the Rust one: the same size, and every named (non-padding)
/// WGSL member at the offset of the Rust field of that name.
fn check_struct(file: &str, name: &str, rust_size: usize, rust: &[(&str, usize)]) {
    let m = module(file);
    let (size, members) = layout(&m, file, name);
    assert_eq!(size, rust_size, "{file}: struct {name} is {size} bytes in WGSL, {rust_size} in Rust");
    for (member, offset) in members.iter().filter(|(n, _)| !n.starts_with('_')) {
        let rust_offset = rust
            .iter()
            .find(|(n, _)| n == member)
            .unwrap_or_else(|| panic!("{file}: {name}.{member} has no Rust field of that name"))
            .1;
        assert_eq!(*offset, rust_offset, "{file}: {name}.{member} at byte {offset} in WGSL, {rust_offset} in Rust");
    }
}

macro_rules! fields {
    ($ty:ty { $($f:ident),* $(,)? }) => {
        (size_of::<$ty>(), vec![$((stringify!($f), offset_of!($ty, $f))),*])
    };
}

#[test]
fn parameter_structs_have_the_same_layout_on_both_sides() {
    let (size, f) = fields!(MatmulParams {
        m,
        n,
        k,
        tiles_n,
        a_offset,
        a_stride_m,
        a_stride_k,
        b_offset,
        b_stride_k,
        b_stride_n,
        c_offset,
        bias_offset,
        flags,
        act,
        slope,
        tiles_total,
        models,
        a_model_stride,
        b_model_stride,
        c_model_stride,
        aux_model_stride,
        bias_model_stride
    });
    check_struct("matmul.wgsl", "MatmulParams", size, &f);
    check_struct("matmul_packed.wgsl", "MatmulParams", size, &f);
    check_struct("matmul_uniform.wgsl", "MatmulParams", size, &f);
    let (size, f) = fields!(ActParams { len, act, slope, flags });
    check_struct("activation.wgsl", "ActParams", size, &f);
    let (size, f) = fields!(DropoutParams { len, step, layer, threshold, key0, key1, scale, flags });
    check_struct("dropout.wgsl", "DropoutParams", size, &f);
    let (size, f) = fields!(BnParams {
        rows,
        cols,
        gamma_offset,
        beta_offset,
        mean_offset,
        var_offset,
        flags,
        act,
        slope,
        eps,
        keep,
        take,
        models,
        x_model_stride,
        dy_model_stride,
        params_model_stride,
        running_model_stride,
        stats_model_stride,
        out_model_stride,
        grads_model_stride
    });
    check_struct("batchnorm.wgsl", "BnParams", size, &f);
    let (size, f) = fields!(LossParams {
        rows,
        cols,
        use_targets,
        models,
        logits_model_stride,
        labels_model_stride,
        targets_model_stride,
        grad_model_stride,
        row_stats_model_stride,
        totals_model_stride
    });
    check_struct("loss.wgsl", "LossParams", size, &f);
    let (size, f) = fields!(GatherParams { rows, cols, src_rows });
    check_struct("data.wgsl", "GatherParams", size, &f);
    let (size, f) = fields!(OptParams {
        len,
        flags,
        state_stride,
        max_norm,
        momentum,
        one_minus_dampening,
        one_minus_beta1,
        beta2,
        eps,
        alpha,
        lr_decay_div,
        bias_c1,
        bias_c2_sqrt,
        one_minus_beta2,
        one_minus_alpha,
        step,
        param_base,
        state_base,
        clip_base,
        update,
        groups
    });
    check_struct("optim.wgsl", "OptParams", size, &f);
    use gradflow::kernels::small_mlp::SmallMlpParams;
    let (size, f) = fields!(SmallMlpParams {
        layers,
        rows,
        batch,
        steps,
        first_step,
        every,
        loss,
        param_len,
        lr,
        momentum,
        one_minus_dampening,
        first_momentum_step,
        shape,
        act
    });
    check_struct("small_mlp.wgsl", "SmallMlpParams", size, &f);
    use gradflow::kernels::SmallNetParams;
    let (size, f) = fields!(SmallNetParams {
        rows,
        cols,
        use_targets,
        layers,
        inputs,
        src_rows,
        gathered,
        loss,
        logits_at,
        logit_grads_at,
        stats_at,
        models,
        param_stride,
        values_stride,
        index_stride,
        param_len,
        shape,
        act,
        norm,
        blend,
        link,
        grad
    });
    check_struct("small_net.wgsl", "SmallNetParams", size, &f);
    let (size, f) = fields!(HvpParams { len, rows, cols, act, slope, flags, gamma_offset, beta_offset });
    check_struct("hvp.wgsl", "HvpParams", size, &f);
}

#[test]
fn flags_codes_and_tile_sizes_agree() {
    let checks: &[(&str, &str, u64)] = &[
        ("matmul.wgsl", "FLAG_BIAS", FLAG_BIAS as u64),
        ("matmul.wgsl", "FLAG_STORE_PREACT", FLAG_STORE_PREACT as u64),
        ("matmul.wgsl", "FLAG_ACT_GRAD", FLAG_ACT_GRAD as u64),
        ("matmul.wgsl", "FLAG_ACCUMULATE", FLAG_ACCUMULATE as u64),
        ("matmul.wgsl", "FLAG_ROW_SUM", FLAG_ROW_SUM as u64),
        ("matmul.wgsl", "FLAG_ADD_SKIP", FLAG_ADD_SKIP as u64),
        ("matmul.wgsl", "TILE", MATMUL_TILE as u64),
        ("matmul_uniform.wgsl", "UNIFORM_WINDOW", UNIFORM_WINDOW as u64),
        ("matmul_uniform.wgsl", "A_ALONG_K", WINDOW_A_ALONG_K as u64),
        ("matmul_uniform.wgsl", "A_ALONG_M", WINDOW_A_ALONG_M as u64),
        ("matmul_uniform.wgsl", "B_ALONG_K", WINDOW_B_ALONG_K as u64),
        ("matmul_uniform.wgsl", "B_ALONG_N", WINDOW_B_ALONG_N as u64),
        ("activation.wgsl", "ACT_ACCUMULATE", ACT_ACCUMULATE as u64),
        ("dropout.wgsl", "DROPOUT_ACCUMULATE", DROPOUT_ACCUMULATE as u64),
        ("dropout.wgsl", "PHILOX_M0", philox::PHILOX_M0 as u64),
        ("dropout.wgsl", "PHILOX_M1", philox::PHILOX_M1 as u64),
        ("dropout.wgsl", "PHILOX_W0", philox::PHILOX_W0 as u64),
        ("dropout.wgsl", "PHILOX_W1", philox::PHILOX_W1 as u64),
        ("batchnorm.wgsl", "BN_TRAIN", BN_TRAIN as u64),
        ("batchnorm.wgsl", "BN_ACCUMULATE", BN_ACCUMULATE as u64),
        ("batchnorm.wgsl", "BN_SYNC", BN_SYNC as u64),
        ("batchnorm.wgsl", "FEATURES", BN_FEATURES as u64),
        ("batchnorm.wgsl", "EW_COLS", BN_EW_COLS as u64),
        ("loss.wgsl", "TOTAL_STEP_LOSS", TOTAL_STEP_LOSS as u64),
        ("loss.wgsl", "ONE_GROUP_ROWS", LOSS_ONE_GROUP_ROWS as u64),
        ("loss.wgsl", "TOTAL_LOSS_SUM", TOTAL_LOSS_SUM as u64),
        ("loss.wgsl", "TOTAL_CORRECT", TOTAL_CORRECT as u64),
        ("loss.wgsl", "TOTAL_COUNT", TOTAL_COUNT as u64),
        ("loss.wgsl", "TOTAL_STEPS", gradflow::kernels::TOTAL_STEPS as u64),
        ("loss.wgsl", "TOTAL_FIRST_BAD", gradflow::kernels::TOTAL_FIRST_BAD as u64),
        ("loss.wgsl", "TOTAL_BAD_LOSS", gradflow::kernels::TOTAL_BAD_LOSS as u64),
        ("optim.wgsl", "CLIP_COEF", gradflow::kernels::optim::CLIP_COEF as u64),
        ("optim.wgsl", "CLIP_NORM", gradflow::kernels::optim::CLIP_NORM as u64),
        ("optim.wgsl", "CLIP_BAD_STEP", gradflow::kernels::optim::CLIP_BAD_STEP as u64),
        ("optim.wgsl", "CLIP_PARTIALS", gradflow::kernels::optim::CLIP_PARTIALS as u64),
        ("optim.wgsl", "FLAG_NESTEROV", FLAG_NESTEROV as u64),
        ("optim.wgsl", "FLAG_HEAVY_BALL", FLAG_HEAVY_BALL as u64),
        ("optim.wgsl", "FLAG_NESTEROV_LOOKAHEAD", FLAG_NESTEROV_LOOKAHEAD as u64),
        ("optim.wgsl", "FLAG_CENTERED", FLAG_CENTERED as u64),
        ("optim.wgsl", "FLAG_AMSGRAD", FLAG_AMSGRAD as u64),
        ("optim.wgsl", "FLAG_DECOUPLED", FLAG_DECOUPLED as u64),
        ("optim.wgsl", "FLAG_CLIP", FLAG_CLIP as u64),
        ("optim.wgsl", "FLAG_FIRST_STEP", FLAG_FIRST_STEP as u64),
        ("optim.wgsl", "NORM_CHUNK", NORM_CHUNK as u64),
        ("optim.wgsl", "BLOCK", gradflow::spec::PARAM_ALIGN as u64),
        ("optim.wgsl", "UPDATE_SGD", gradflow::kernels::optim::UPDATE_SGD as u64),
        ("optim.wgsl", "UPDATE_ADAGRAD", gradflow::kernels::optim::UPDATE_ADAGRAD as u64),
        ("optim.wgsl", "UPDATE_RMSPROP", gradflow::kernels::optim::UPDATE_RMSPROP as u64),
        ("optim.wgsl", "UPDATE_ADAM", gradflow::kernels::optim::UPDATE_ADAM as u64),
        ("small_net_train.wgsl", "UPDATE_ADAM", gradflow::kernels::optim::UPDATE_ADAM as u64),
        ("hvp.wgsl", "HVP_ACCUMULATE", HVP_ACCUMULATE as u64),
        ("hvp.wgsl", "FEATURES", HVP_FEATURES as u64),
        ("small_mlp.wgsl", "MAX_LAYERS", gradflow::kernels::small_mlp::MAX_LAYERS as u64),
        ("small_mlp.wgsl", "MAX_WIDTH", gradflow::kernels::small_mlp::MAX_WIDTH as u64),
        ("small_mlp.wgsl", "MAX_BATCH", gradflow::kernels::small_mlp::MAX_BATCH as u64),
        ("small_mlp.wgsl", "MAX_PARAMS", gradflow::kernels::small_mlp::MAX_PARAMS as u64),
        ("small_mlp.wgsl", "NO_BIAS", gradflow::kernels::small_mlp::NO_BIAS as u64),
        ("small_mlp.wgsl", "LOSS_MSE", gradflow::kernels::small_mlp::LOSS_MSE as u64),
        ("small_mlp.wgsl", "LOSS_CROSS_ENTROPY", gradflow::kernels::small_mlp::LOSS_CROSS_ENTROPY as u64),
        ("small_net.wgsl", "MAX_LAYERS", gradflow::kernels::small_net::SMALL_NET_MAX_LAYERS as u64),
        ("small_net.wgsl", "ONE_GROUP_ROWS", gradflow::kernels::small_net::SMALL_NET_WORKGROUP as u64),
        ("small_net.wgsl", "NO_BIAS", gradflow::kernels::small_net::SMALL_NET_NO_BIAS as u64),
        ("small_net.wgsl", "LAYER_DENSE", gradflow::kernels::small_net::SMALL_NET_DENSE as u64),
        ("small_net.wgsl", "LAYER_NORM", gradflow::kernels::small_net::SMALL_NET_NORM as u64),
        ("small_net.wgsl", "LOSS_PARTS", gradflow::kernels::small_net::SMALL_NET_LOSS_PARTS as u64),
        ("small_net.wgsl", "LAYER_ACT", gradflow::kernels::small_net::SMALL_NET_ACT as u64),
        ("small_net.wgsl", "LAYER_ADD", gradflow::kernels::small_net::SMALL_NET_ADD as u64),
        ("small_net.wgsl", "NONE", gradflow::kernels::small_net::SMALL_NET_NONE as u64),
        ("small_net.wgsl", "GRAD_ADD_IN", gradflow::kernels::small_net::SMALL_NET_GRAD_ADD_IN as u64),
        ("small_net.wgsl", "GRAD_ADD_SKIP", gradflow::kernels::small_net::SMALL_NET_GRAD_ADD_SKIP as u64),
        ("small_net.wgsl", "LOSS_MSE", gradflow::kernels::small_net::SMALL_NET_MSE as u64),
        ("small_net.wgsl", "LOSS_CROSS_ENTROPY", gradflow::kernels::small_net::SMALL_NET_CROSS_ENTROPY as u64),
        ("small_net.wgsl", "TOTAL_FIRST_BAD", gradflow::kernels::TOTAL_FIRST_BAD as u64),
        ("small_net.wgsl", "TOTALS_STRIDE", gradflow::kernels::small_net::SMALL_NET_TOTALS_STRIDE as u64),
    ];
    for &(file, name, rust) in checks {
        let m = module(file);
        assert_eq!(constant(&m, file, name), rust, "{file}: const {name} differs from the host's");
    }
    // Rows per element-wise batch-norm workgroup: runs × rows per run.
    let m = module("batchnorm.wgsl");
    let rows = constant(&m, "batchnorm.wgsl", "EW_RUNS") * constant(&m, "batchnorm.wgsl", "EW_ROWS");
    assert_eq!(rows, BN_EW_ROWS as u64, "batchnorm.wgsl: rows per element-wise workgroup");
    // Activation codes, by the WGSL names of common.wgsl.
    let m = module("activation.wgsl");
    for a in Activation::ALL {
        let name = match a {
            Activation::Identity => "ACT_IDENTITY",
            Activation::Relu => "ACT_RELU",
            Activation::Sigmoid => "ACT_SIGMOID",
            Activation::Tanh => "ACT_TANH",
            Activation::Gelu => "ACT_GELU",
            Activation::LeakyRelu => "ACT_LEAKY_RELU",
        };
        assert_eq!(constant(&m, "common.wgsl", name), a.code() as u64, "activation code of {a:?}");
    }
}

/// The workgroup sizes the host sizes its grids and error bounds by: the gradient norm's threads
/// (`grad_norm_rel_error` counts its tree levels from them) and batch norm's feature tiles.
#[test]
fn workgroup_sizes_agree() {
    let checks: &[(&str, &str, [u32; 3])] = &[
        ("optim.wgsl", "grad_norm_partial", [NORM_THREADS as u32, 1, 1]),
        ("optim.wgsl", "grad_norm_finish", [NORM_THREADS as u32, 1, 1]),
        ("batchnorm.wgsl", "batchnorm_stats", [BN_FEATURES, 16, 1]),
        ("batchnorm.wgsl", "batchnorm_backward_reduce", [BN_FEATURES, 16, 1]),
        ("batchnorm.wgsl", "batchnorm_forward", [BN_EW_COLS as u32, 4, 1]),
        ("batchnorm.wgsl", "batchnorm_backward_input", [BN_EW_COLS as u32, 4, 1]),
    ];
    for &(file, entry, want) in checks {
        let m = module(file);
        let ep = m.entry_points.iter().find(|e| e.name == entry).unwrap_or_else(|| panic!("{file} has no {entry}"));
        assert_eq!(ep.workgroup_size, want, "{file}: {entry}'s workgroup size differs from the host's");
    }
}

/// The pipeline constants the host specialises the matmul epilogue on are `override …: u32`
/// declarations of every module that launches it.
#[test]
fn epilogue_constants_are_u32_overrides() {
    let names: Vec<&str> = MatmulParams::default().epilogue().iter().map(|(n, _)| *n).collect();
    for file in ["matmul.wgsl", "matmul_packed.wgsl", "matmul_uniform.wgsl"] {
        let m = module(file);
        for name in &names {
            let (_, o) = m
                .overrides
                .iter()
                .find(|(_, o)| o.name.as_deref() == Some(*name))
                .unwrap_or_else(|| panic!("{file} declares no override {name}"));
            assert!(
                matches!(m.types[o.ty].inner, TypeInner::Scalar(naga::Scalar::U32)),
                "{file}: override {name} is not a u32"
            );
        }
    }
}

/// The same for the activation constant of the element-wise families and the optimizer's flags.
#[test]
fn activation_constants_are_u32_overrides() {
    let checks = [
        ("activation.wgsl", ActParams::default().constants()[0].0),
        ("activation.wgsl", ActParams::default().constants()[1].0),
        ("batchnorm.wgsl", BnParams::default().constants()[0].0),
        ("batchnorm.wgsl", BnParams::default().constants()[1].0),
        ("optim.wgsl", OptParams::default().constants()[0].0),
        ("hvp.wgsl", HvpParams::default().constants()[0].0),
        ("hvp.wgsl", HvpParams::default().constants()[1].0),
    ];
    for (file, name) in checks {
        let m = module(file);
        let (_, o) = m
            .overrides
            .iter()
            .find(|(_, o)| o.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{file} declares no override {name}"));
        assert!(matches!(m.types[o.ty].inner, TypeInner::Scalar(naga::Scalar::U32)), "{file}: {name} not u32");
    }
}

/// optim.wgsl's per-model parameters, and the fused training step's: an array of
/// `OPT_MODELS_PER_LAUNCH` `OptParams` (uniform in optim.wgsl, storage in small_net_train.wgsl,
/// whose loop runs to a field of it), which the host pads to that length (the binding covers
/// the whole array).
#[test]
fn the_optimizer_model_array_holds_opt_models_per_launch_structs() {
    for (file, space) in [
        ("optim.wgsl", naga::AddressSpace::Uniform),
        ("small_net_train.wgsl", naga::AddressSpace::Storage { access: naga::StorageAccess::LOAD }),
    ] {
        let m = module(file);
        let (_, var) = m
            .global_variables
            .iter()
            .find(|(_, v)| v.name.as_deref() == Some("models"))
            .unwrap_or_else(|| panic!("{file} declares `models`"));
        assert_eq!(var.space, space, "{file}: `models`' address space");
        let TypeInner::Array { base, size: naga::ArraySize::Constant(n), .. } = m.types[var.ty].inner else {
            panic!("{file}: `models` is not a fixed-size array");
        };
        assert_eq!(n.get() as usize, OPT_MODELS_PER_LAUNCH, "{file}: array length in WGSL vs OPT_MODELS_PER_LAUNCH");
        assert_eq!(m.types[base].name.as_deref(), Some("OptParams"));
    }
}
