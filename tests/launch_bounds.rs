//! The host's half of the unchecked-shader safety contract, from safe public code: every launch
//! builder refuses parameters that would reach past a bound buffer, with an error naming the
//! kernel and the binding, when the launch is built and whenever its parameters are rewritten.
//! (Data-dependent indices, such as gathered row numbers and group indices, are the kernels'
//! half: each is clamped in the WGSL.) Buffers are allocated in whole quads of four elements,
//! which kernels working four at a time may touch, so each short buffer below is a quad short.

mod common;

use common::*;
use gradflow::device::Entry;
use gradflow::error::Error;
use gradflow::kernels::small_mlp::{SmallMlpParams, MAX_LAYERS};
use gradflow::kernels::{
    ActEntry, ActParams, BnEntry, BnParams, GatherParams, HvpBuffers, HvpEntry, HvpParams, LossParams, MatmulParams,
    MatmulVariant, Schedule, SmallNetBuffers, SmallNetParams, FLAG_BIAS, FLAG_STORE_PREACT,
};
use gradflow::spec::{Act, Loss};

/// The error a refused launch must give: out of bounds at `binding` of `kernel`.
fn assert_out_of_bounds<T>(r: gradflow::error::Result<T>, kernel: &str, binding: usize) {
    match r {
        Err(Error::LaunchOutOfBounds { kernel: k, binding: b, needed, available }) => {
            assert_eq!((k, b), (kernel, binding), "wrong kernel or binding named");
            assert!(needed > available, "{needed} > {available}");
        }
        Err(e) => panic!("expected an out-of-bounds refusal of {kernel} binding {binding}, got: {e}"),
        Ok(_) => panic!("a launch of {kernel} past binding {binding} was built"),
    }
}

#[test]
fn a_matmul_past_its_operands_is_refused_on_every_schedule() {
    require_gpu!();
    let g = gpu();
    let (rows, inputs, outputs) = (4, 8, 4);
    let x = g.storage("x", rows * inputs).unwrap();
    let w = g.storage("w", outputs * inputs + outputs).unwrap();
    let y = g.storage("y", rows * outputs).unwrap();
    let z = g.storage("z", rows * outputs).unwrap();
    let ok = MatmulParams::linear_forward(rows, inputs, outputs);
    for variant in MatmulVariant::ALL {
        let mut g = g.clone();
        g.matmul_schedule = Schedule::uniform(variant);
        let name = variant.name();
        g.matmul(&x, &w, None, &y, None, ok).unwrap_or_else(|e| panic!("{name}: an exact fit was refused: {e}"));
        // A: one row too many through the offset, then through the stride.
        assert_out_of_bounds(g.matmul(&x, &w, None, &y, None, MatmulParams { a_offset: 1, ..ok }), "matmul", 0);
        assert_out_of_bounds(g.matmul(&x, &w, None, &y, None, MatmulParams { a_stride_m: 9, ..ok }), "matmul", 0);
        // B (W as strided), the bias past W's end, C at an offset, z without room.
        assert_out_of_bounds(g.matmul(&x, &w, None, &y, None, MatmulParams { b_stride_n: 10, ..ok }), "matmul", 1);
        let bias = MatmulParams { flags: FLAG_BIAS, bias_offset: (outputs * inputs + 1) as u32, ..ok };
        assert_out_of_bounds(g.matmul(&x, &w, Some(&w), &y, None, bias), "matmul", 2);
        assert_out_of_bounds(g.matmul(&x, &w, None, &y, None, MatmulParams { c_offset: 1, ..ok }), "matmul", 3);
        let preact = MatmulParams { flags: FLAG_STORE_PREACT, ..ok };
        assert_out_of_bounds(g.matmul(&x, &w, None, &y, None, preact), "matmul", 4);
        g.matmul(&x, &w, None, &y, Some(&z), preact).unwrap_or_else(|e| panic!("{name}: z that fits: {e}"));
    }
}

#[test]
fn a_built_product_can_shrink_but_not_grow_or_move() {
    require_gpu!();
    let g = gpu();
    let x = g.storage("x", 8 * 4).unwrap();
    let w = g.storage("w", 3 * 4).unwrap();
    let y = g.storage("y", 8 * 3).unwrap();
    let built = MatmulParams::linear_forward(8, 4, 3);
    let mut d = g.matmul(&x, &w, None, &y, None, built).unwrap();
    d.update_matmul(g, MatmulParams { m: 5, ..built }).expect("a shorter batch");
    d.update_matmul(g, built).expect("back to the built size");
    for (what, p) in [
        ("a larger batch", MatmulParams { m: 9, ..built }),
        ("another offset", MatmulParams { m: 5, a_offset: 4, ..built }),
        ("another epilogue", MatmulParams { flags: FLAG_BIAS, ..built }),
    ] {
        match d.update_matmul(g, p) {
            Err(Error::LaunchParams { kernel: "matmul", .. }) => {}
            other => panic!("{what}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn elementwise_norm_loss_gather_and_hvp_launches_check_their_ranges() {
    require_gpu!();
    let g = gpu();
    let (rows, cols) = (8, 4);
    let small = g.storage("small", rows * cols - 4).unwrap();
    let full = g.storage("full", rows * cols).unwrap();
    let act =
        ActParams { len: (rows * cols) as u32, act: gradflow::spec::Activation::Relu.code(), slope: 0.0, flags: 0 };
    g.activation(ActEntry::Forward, &full, None, &full, act).expect("a fitting activation");
    assert_out_of_bounds(g.activation(ActEntry::Forward, &small, None, &full, act), "activation_forward", 0);
    assert_out_of_bounds(g.activation(ActEntry::Backward, &full, Some(&small), &full, act), "activation_backward", 1);
    assert_out_of_bounds(g.residual_add(&full, &full, &small, act), "residual_add", 2);
    // An update that grows the launch past its buffers is refused too.
    let mut d = g.activation(ActEntry::Forward, &small, None, &small, ActParams { len: 3, ..act }).unwrap();
    assert_out_of_bounds(d.update(g, &act, act.grid()).map(|_| ()), "activation_forward", 0);

    // Batch norm: γ at the end of a parameter buffer one element short.
    let params = g.storage("params", 2 * cols).unwrap();
    let running = g.storage("running", 2 * cols).unwrap();
    let stats = g.storage("stats", 3 * cols).unwrap();
    let bn = BnParams::layer(rows, cols, 0, cols, 0, cols, 1e-5, Act::IDENTITY);
    let run =
        |p: BnParams| g.batchnorm(BnEntry::Forward, &full, None, &params, &running, &stats, Some(&full), &full, p);
    run(bn).expect("a fitting batch norm");
    assert_out_of_bounds(run(BnParams { beta_offset: cols as u32 + 1, ..bn }), "batchnorm_forward", 2);
    let stats_short = g.storage("stats", 3 * cols - 4).unwrap();
    let r = g.batchnorm(BnEntry::Stats, &full, None, &params, &running, &stats_short, None, &full, bn);
    assert_out_of_bounds(r, "batchnorm_stats", 4);
    let r = g.batchnorm(
        BnEntry::Stats,
        &full,
        None,
        &params,
        &running,
        &stats,
        None,
        &full,
        BnParams { mean_offset: 6, ..bn },
    );
    assert_out_of_bounds(r, "batchnorm_stats", 3);

    // Loss: labels one short.
    let labels = g.storage("labels", rows - 4).unwrap();
    let row_stats = g.storage("row stats", 2 * rows).unwrap();
    let totals = g.storage("totals", gradflow::kernels::TOTALS_LEN).unwrap();
    let lp = LossParams::new(rows, cols, false);
    let r = g.loss_step(Loss::CrossEntropy, &full, &labels, None, &full, &row_stats, &totals, lp, rows);
    assert_out_of_bounds(r, "cross_entropy_reduced", 1);

    // Gather: a resident set claimed larger than its buffer; no rows at all.
    let indices = g.storage("indices", rows).unwrap();
    let gp = GatherParams::new(rows, cols, rows + 1);
    assert_out_of_bounds(g.gather_batch(&full, &indices, &indices, &full, &indices, gp), "gather_batch", 0);
    match g.gather_batch(&full, &indices, &indices, &full, &indices, GatherParams::new(rows, cols, 0)) {
        Err(Error::LaunchParams { kernel: "gather_batch", .. }) => {}
        other => panic!("gathering from no rows: {:?}", other.map(|_| ())),
    }

    // HVP: the direction v one element short of β.
    let hp = HvpParams {
        len: 0,
        rows: rows as u32,
        cols: cols as u32,
        act: 0,
        slope: 0.0,
        flags: 0,
        gamma_offset: 0,
        beta_offset: cols as u32,
    };
    let bufs = |v| HvpBuffers {
        x: &full,
        rx: &full,
        g: None,
        rg: None,
        theta: Some(&params),
        v: Some(v),
        stats: Some(&stats),
        out: &full,
    };
    let short_v = g.storage("v", 2 * cols - 4).unwrap();
    let stats5 = g.storage("stats", 5 * cols).unwrap();
    let ok = HvpBuffers { stats: Some(&stats5), ..bufs(&params) };
    g.hvp_kernel(HvpEntry::BatchnormRForward, &ok, hp).expect("a fitting R-forward");
    let short = HvpBuffers { stats: Some(&stats5), ..bufs(&short_v) };
    assert_out_of_bounds(g.hvp_kernel(HvpEntry::BatchnormRForward, &short, hp), "batchnorm_r_forward", 5);
    assert_out_of_bounds(g.hvp_kernel(HvpEntry::BatchnormRForward, &bufs(&params), hp), "batchnorm_r_forward", 6);
}

#[test]
fn the_small_mlp_kernel_refuses_shapes_its_workgroup_arrays_cannot_hold() {
    require_gpu!();
    let g = gpu();
    let b = |n| g.storage("buffer", n).unwrap();
    let (params, velocity, x, labels, schedule, costs) = (b(64), b(64), b(16), b(8), b(8), b(1));
    let buffers = [&params, &velocity, &x, &labels, &schedule, &costs];
    let mut p = SmallMlpParams { layers: 1, rows: 8, batch: 1, steps: 1, param_len: 6, ..Default::default() };
    p.shape[0] = [2, 2, 0, 4];
    g.small_mlp_kernel(&buffers, &p).expect("a 2-2 layer");
    for (what, bad) in [
        ("too many layers", SmallMlpParams { layers: MAX_LAYERS as u32 + 1, ..p }),
        ("weights past the parameters", SmallMlpParams { param_len: 3, ..p }),
        ("too wide", {
            let mut q = p;
            q.shape[0] = [17, 2, 0, u32::MAX];
            q.param_len = 34;
            q
        }),
    ] {
        match g.small_mlp_kernel(&buffers, &bad) {
            Err(Error::LaunchParams { kernel, .. }) => assert_eq!(kernel, "small_mlp_sgd", "{what}"),
            other => panic!("{what}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // Steps past the schedule's rows.
    assert_out_of_bounds(g.small_mlp_kernel(&buffers, &SmallMlpParams { steps: 9, ..p }), "small_mlp_sgd", 4);
}

/// Every entry-point enum names exactly the WGSL file's entry points (read by naga), so an
/// entry point is never a string that could be misspelt.
#[test]
fn entry_point_enums_match_the_wgsl() {
    for (file, names) in gradflow::kernels::entry_points() {
        let src = gradflow::device::shaders::source(file).unwrap_or_else(|| panic!("no shader {file}"));
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{file}: {e}"));
        // A family compiled on top of another (the packed product on matmul.wgsl) declares its own.
        let own = gradflow::device::shaders::FAMILIES.iter().find(|(f, _)| *f == file).map(|(_, s)| *s).unwrap();
        let mut wgsl: Vec<&str> =
            module.entry_points.iter().map(|e| e.name.as_str()).filter(|n| own.contains(&format!("fn {n}("))).collect();
        let mut ours = names.clone();
        wgsl.sort();
        ours.sort();
        assert_eq!(ours, wgsl, "{file}: the enum's entry points against the WGSL's");
    }
    assert_eq!(BnEntry::Stats.name(), "batchnorm_stats");
}

#[test]
fn the_small_net_kernel_refuses_a_chain_it_cannot_walk_and_buffers_too_short() {
    require_gpu!();
    let g = gpu();
    let b = |n| g.storage("buffer", n).unwrap();
    let model = gradflow::spec::ModelBuilder::new(3)
        .dense(5, gradflow::spec::Activation::Tanh)
        .dense(2, gradflow::spec::Activation::Identity)
        .build()
        .unwrap();
    let net = gradflow::kernels::SmallNet::new(&model, Loss::CrossEntropy, 4).unwrap();
    let p = net.params.for_batch(4, 10, true);
    let (params, grads, values, totals) = (b(model.param_len), b(model.param_len), b(net.values_len), b(7));
    let (x, labels, indices) = (b(30), b(10), b(4));
    let run = |p: &SmallNetParams, values: &gradflow::device::GpuBuffer, x: &gradflow::device::GpuBuffer| {
        let buffers = SmallNetBuffers {
            params: &params,
            grads: &grads,
            values,
            totals: &totals,
            x,
            labels: &labels,
            indices: Some(&indices),
        };
        g.small_net_step(&buffers, p)
    };
    run(&p, &values, &x).expect("a 3-5-2 net on 4 of 10 rows");
    // The adapter's entry point: a model per invocation with one lane, else a workgroup per model.
    let kernel = g.small_net_launch(&p).0.name();
    let short_values = b(net.values_len - 4);
    assert_out_of_bounds(run(&p, &short_values, &x), kernel, 2);
    let short_x = b(27);
    assert_out_of_bounds(run(&p, &values, &short_x), kernel, 4);
    // Lanes outside 1..=64 (or past the backend's limit) are refused.
    for lanes in [0, 65] {
        let g = gradflow::kernels::Gpu { small_net_lanes: lanes, ..g.clone() };
        let buffers = SmallNetBuffers {
            params: &params,
            grads: &grads,
            values: &values,
            totals: &totals,
            x: &x,
            labels: &labels,
            indices: Some(&indices),
        };
        match g.small_net_step(&buffers, &p) {
            Err(Error::LaunchParams { kernel: k, .. }) => assert!(k.starts_with("small_net_"), "{k}"),
            other => panic!("{lanes} lanes: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    for (what, bad) in [
        ("more rows than the index slices", SmallNetParams { rows: 5, ..p }),
        ("no layers", SmallNetParams { layers: 0, ..p }),
        ("a broken chain", SmallNetParams { inputs: 4, ..p }),
        ("MSE targets", SmallNetParams { use_targets: 1, ..p }),
    ] {
        match run(&bad, &values, &x) {
            Err(Error::LaunchParams { kernel: k, .. }) => assert_eq!(k, kernel, "{what}"),
            other => panic!("{what}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}

/// A batch-norm layer of the fused step: its running statistics, batch statistics and gradient
/// slots must lie inside `values`, its γ and β inside the parameters, its width kept, and a
/// batch of one row (no variance to take) is refused; a layer kind the kernel does not know is
/// refused too.
#[test]
fn the_small_net_kernel_checks_its_batch_norm_layers() {
    require_gpu!();
    let g = gpu();
    let b = |n| g.storage("buffer", n).unwrap();
    let model = gradflow::spec::Model::new(
        3,
        vec![
            gradflow::spec::LayerSpec::Linear { out: 5, bias: false },
            gradflow::spec::LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
            gradflow::spec::LayerSpec::Tanh,
            gradflow::spec::LayerSpec::Linear { out: 2, bias: true },
        ],
    )
    .unwrap();
    let net = gradflow::kernels::SmallNet::new(&model, Loss::CrossEntropy, 4).unwrap();
    assert!(net.has_norms());
    let p = net.params.for_batch(4, 10, true);
    let (params, grads, values, totals) = (b(model.param_len), b(model.param_len), b(net.values_len), b(7));
    let (x, labels, indices) = (b(30), b(10), b(4));
    let run = |p: &SmallNetParams, values: &gradflow::device::GpuBuffer| {
        let buffers = SmallNetBuffers {
            params: &params,
            grads: &grads,
            values,
            totals: &totals,
            x: &x,
            labels: &labels,
            indices: Some(&indices),
        };
        g.small_net_step(&buffers, p)
    };
    run(&p, &values).expect("a 3-5-BN-2 net on 4 of 10 rows");
    let kernel = g.small_net_launch(&p).0.name();
    let with_norm = |f: &dyn Fn(&mut [u32; 4])| {
        let mut q = p;
        f(&mut q.norm[1]);
        q
    };
    let past = net.values_len as u32;
    // The running variance, then the batch statistics, moved to the end of `values`.
    assert_out_of_bounds(run(&with_norm(&|n| n[2] = past - 2), &values), kernel, 2);
    assert_out_of_bounds(run(&with_norm(&|n| n[3] = past - 5), &values), kernel, 2);
    // The batch norm's input-gradient slot, and its output's, moved to the end of `values`.
    let mut slot_past = p;
    slot_past.link[1][2] = past - 2;
    assert_out_of_bounds(run(&slot_past, &values), kernel, 2);
    let mut grad_past = p;
    grad_past.grad[1][0] = past - 2;
    assert_out_of_bounds(run(&grad_past, &values), kernel, 2);
    let mut gamma_past = p;
    gamma_past.shape[1][2] = model.param_len as u32 - 2;
    assert_out_of_bounds(run(&gamma_past, &values), kernel, 0);
    let mut widening = p;
    widening.shape[1][1] = 6;
    for (what, bad) in [
        ("one row", SmallNetParams { rows: 1, ..p }),
        ("a layer kind 4", with_norm(&|n| n[0] = 4)),
        ("a batch norm that widens", widening),
    ] {
        match run(&bad, &values) {
            Err(Error::LaunchParams { kernel: k, .. }) => assert_eq!(k, kernel, "{what}"),
            other => panic!("{what}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn a_batched_optimizer_launch_checks_every_models_slice() {
    use gradflow::kernels::optim::{GpuOptimizer, OptimizerModel};
    use gradflow::optim::{Optimizer, ParamGroups};
    require_gpu!();
    let g = gpu();
    let len = 64;
    let (param, grad) = (g.storage("param", 3 * len).unwrap(), g.storage("grad", 3 * len).unwrap());
    let adam: Optimizer = Optimizer::adam(0.01).into();
    let at = |offset| OptimizerModel {
        optimizer: adam.clone(),
        groups: ParamGroups::flat(&adam, len),
        max_norm: Some(1.0),
        offset,
    };
    GpuOptimizer::for_models(g, &param, &grad, len, vec![at(0), at(len), at(2 * len)])
        .unwrap_or_else(|e| panic!("three models that fit were refused: {e}"));
    // The third model's slice one quad past the end: the update (built first) refuses it at
    // param (binding 0), with clipping and without.
    assert_out_of_bounds(
        GpuOptimizer::for_models(g, &param, &grad, len, vec![at(0), at(len), at(2 * len + 4)]),
        "adam_update",
        0,
    );
    let mut unclipped = at(2 * len + 4);
    unclipped.max_norm = None;
    let r =
        GpuOptimizer::for_models(g, &param, &grad, len, vec![OptimizerModel { max_norm: None, ..at(0) }, unclipped]);
    assert_out_of_bounds(r, "adam_update", 0);
    // Models that cannot share one kernel, and a slice off the quad grid, are refused by name.
    let sgd: Optimizer = gradflow::optim::Sgd::new(0.1).into();
    let other = OptimizerModel { optimizer: sgd.clone(), groups: ParamGroups::flat(&sgd, len), ..at(len) };
    match GpuOptimizer::for_models(g, &param, &grad, len, vec![at(0), other]) {
        Err(Error::Usage(m)) => assert!(m.contains("model 1's optimizer (sgd)") && m.contains("(adam)"), "{m}"),
        other => panic!("adam and sgd in one launch: {:?}", other.err()),
    }
    match GpuOptimizer::for_models(g, &param, &grad, len, vec![at(2)]) {
        Err(Error::Usage(m)) => assert!(m.contains("not a multiple of 4"), "{m}"),
        other => panic!("a slice at element 2: {:?}", other.err()),
    }
    // Two slices sharing quads: each update writes whole quads, so one would undo the other's.
    match GpuOptimizer::for_models(g, &param, &grad, len, vec![at(0), at(len - 4)]) {
        Err(Error::Usage(m)) => assert!(m.contains("overlap model 0's"), "{m}"),
        other => panic!("overlapping slices: {:?}", other.err()),
    }
}

#[test]
fn a_step_ring_binds_one_slot_and_only_where_a_launch_takes_it_per_step() {
    use gradflow::device::{GpuBuffer, STEP_SLOTS, VIEW_ALIGN};
    require_gpu!();
    let g = gpu();
    // A small ring has every slot, each on a 256-byte boundary; a large one as many as 16 MiB hold.
    let small = g.step_ring("indices", 3).unwrap();
    assert_eq!(small.ring.map(|r| (r.stride, r.slots)), Some((VIEW_ALIGN, STEP_SLOTS)));
    let large = g.step_ring("indices", 1 << 20).unwrap();
    assert_eq!(large.ring.map(|r| (r.stride, r.slots)), Some((4 << 20, 4)));
    // Writes past the last slot or wider than a slot are refused.
    assert!(g.write_slots(&large, 3, &vec![0u32; 1 << 20], 1 << 20).is_ok());
    assert!(g.write_slots(&large, 3, &vec![0u32; 2 << 20], 1 << 20).is_err(), "slot 4 of 4");
    assert!(g.write_slots(&small, 0, &[0u32; 8], 8).is_err(), "8 elements into slots of 3");
    // A gather reads its indices per step, so a ring binds there; its extents are one slot's.
    let (x, labels) = (g.storage("x", 10 * 2).unwrap(), g.storage("labels", 10).unwrap());
    let (bx, bl) = (g.storage("batch x", 3 * 2).unwrap(), g.storage("batch labels", 3).unwrap());
    assert!(g.gather_batch(&x, &labels, &small, &bx, &bl, GatherParams::new(3, 2, 10)).is_ok());
    let four: GpuBuffer = g.step_ring("indices", 4).unwrap();
    let (bx, bl) = (g.storage("batch x", 8 * 2).unwrap(), g.storage("batch labels", 8).unwrap());
    assert_out_of_bounds(g.gather_batch(&x, &labels, &four, &bx, &bl, GatherParams::new(5, 2, 10)), "gather_batch", 2);
    // A binding that does not move per step refuses a ring rather than read slot 0 forever.
    let e = g.copy_f32(&small, &bx, 3).err().expect("a ring where no offset moves it").to_string();
    assert!(e.contains("step ring"), "{e}");
}

/// The fused step with the update in its launch (small_net_train.wgsl): its numbers must name an
/// update and not clip, its state must hold that update's slots, and the network's parameters
/// (`param_len`, the update's loop) must lie inside the parameters; where the adapter binds too
/// few storage buffers it is refused by name.
#[test]
fn the_fused_training_step_checks_its_update_and_its_loop() {
    use gradflow::kernels::optim::{OptParams, FLAG_CLIP, UPDATE_ADAM};
    use gradflow::kernels::UpdateBuffers;
    require_gpu!();
    let g = gpu();
    let b = |n| g.storage("buffer", n).unwrap();
    let model = gradflow::spec::ModelBuilder::new(3)
        .dense(5, gradflow::spec::Activation::Tanh)
        .dense(2, gradflow::spec::Activation::Identity)
        .build()
        .unwrap();
    let len = model.param_len;
    let net = gradflow::kernels::SmallNet::new(&model, Loss::CrossEntropy, 4).unwrap();
    let p = net.params.for_batch(4, 10, true);
    assert_eq!(p.param_len as usize, len);
    let (params, grads, values, totals) = (b(len), b(len), b(net.values_len), b(7));
    let (x, labels, indices) = (b(30), b(10), b(4));
    let stride = len.next_multiple_of(4);
    let (state, short_state, groups, clip) = (b(2 * stride), b(stride), b(len.div_ceil(64)), b(4));
    let opt = OptParams { len: len as u32, state_stride: stride as u32, update: UPDATE_ADAM, ..Default::default() };
    let run = |p: &SmallNetParams, opt: &OptParams, state| {
        let buffers = SmallNetBuffers {
            params: &params,
            grads: &grads,
            values: &values,
            totals: &totals,
            x: &x,
            labels: &labels,
            indices: Some(&indices),
        };
        g.small_net_train_step(&buffers, p, &UpdateBuffers { state, block_group: &groups, clip: &clip }, opt)
    };
    if !g.small_net_trains() {
        match run(&p, &opt, &state) {
            Err(Error::LaunchParams { why, .. }) => assert!(why.contains("storage buffers"), "{why}"),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        return;
    }
    run(&p, &opt, &state).expect("a 3-5-2 net on 4 of 10 rows with Adam");
    let kernel = gradflow::kernels::SmallNetTrainEntry::ALL
        .iter()
        .map(|e| e.name())
        .find(|n| n.contains(if g.small_net_lanes == 1 { "models" } else { "net_train" }))
        .unwrap();
    assert_out_of_bounds(run(&p, &opt, &short_state), kernel, 8);
    for (what, bad) in
        [("update 9", OptParams { update: 9, ..opt }), ("clipping", OptParams { flags: FLAG_CLIP, ..opt })]
    {
        match run(&p, &bad, &state) {
            Err(Error::LaunchParams { kernel: k, .. }) => assert_eq!(k, kernel, "{what}"),
            other => panic!("{what}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // The update's loop past the parameters: refused by the network's own check.
    let past = SmallNetParams { param_len: (len + 8) as u32, ..p };
    assert_out_of_bounds(run(&past, &opt, &state), g.small_net_launch(&p).0.name(), 0);
}
