//! Every kernel on the GPU against its CPU reference, on random and awkward shapes: 1, primes,
//! one past a 64-wide tile or a 256-wide workgroup, large, and a dispatch split past 65,535
//! workgroups.
//!
//! Tolerances come from forward error analysis, one function per op in
//! `gradflow::reference::bounds` (which `gradflow check` uses too): an f32 dot product of length
//! K is within γ_{K+1}·Σ|a·b| of the exact value; built-in functions are held to Vulkan's
//! required precision; the CPU reference is exact to one rounding (f64 accumulation), so
//! |GPU − CPU| ≤ (GPU bound) + u·|CPU|.

mod common;

use common::*;
use gradflow::exec::ops;
use gradflow::kernels::{LossEntry, LossParams, TOTALS_LEN};
use gradflow::reference as cpu;
use gradflow::spec::{Act, Activation, Loss};

/// (m, k, n) triples: degenerate, prime, tile edges, and one large.
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 7, 1),
    (3, 5, 7),
    (13, 29, 37),
    (64, 64, 64),
    (65, 17, 65),
    (127, 257, 63),
    (257, 131, 129),
    (512, 384, 320),
    // Inside the uniform-window schedule's windows with every stride a multiple of 4, so its
    // four-at-a-time loads run: a batch of 30 (a quad of k past the end in dW), the digits
    // model's layer, and a tiny aligned one.
    (30, 64, 128),
    (32, 128, 64),
    (6, 8, 12),
];

for_every_schedule! {
    fn linear_forward_matches_cpu_for_every_activation(g: &Gpu) {
        let mut r = rng(1);
        for &(m, k, n) in &SHAPES {
            for act in ops::all_activations() {
                let x = uniform(&mut r, m * k, -2.0, 2.0);
                let w = uniform(&mut r, n * k, -1.0, 1.0);
                let b = uniform(&mut r, n, -1.0, 1.0);
                let (z, y) = ops::linear_forward(g, &x, &w, Some(&b), m, k, n, act).unwrap();
                let (z_ref, y_ref) = cpu::linear_forward(&x, &w, Some(&b), m, k, n, act);
                let (zb, yb) = linear_forward_bound(&x, &w, Some(&b), m, k, n, act, &z_ref, &y_ref);
                let what = format!("linear_forward ({:?}) {m}x{k}x{n} {}", g.matmul_schedule.large, act.kind.name());
                assert_within(&format!("{what} z"), &z, &widen(&z_ref), &zb);
                let (err, _) = assert_within(&format!("{what} y"), &y, &widen(&y_ref), &yb);
                if (m, k, n) == SHAPES[8] {
                    eprintln!("{what}: worst |GPU − CPU| {err:.2e}");
                }
            }
        }
    }
}

for_every_schedule! {
    /// A Linear ending a residual block, the sum fused into its epilogue: y = x·Wᵀ + b + skip, against
    /// the CPU's product and residual_add (bound: `linear_forward_residual_bound`).
    fn linear_forward_residual_matches_cpu_product_then_sum(g: &Gpu) {
        let mut r = rng(11);
        for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
            let x = uniform(&mut r, m * k, -2.0, 2.0);
            let w = uniform(&mut r, n * k, -1.0, 1.0);
            let b = uniform(&mut r, n, -1.0, 1.0);
            let skip = uniform(&mut r, m * n, -3.0, 3.0);
            let bias = (i % 2 == 0).then_some(&b[..]);
            let y = ops::linear_forward_residual(g, &x, &w, bias, &skip, m, k, n).unwrap();
            let (z_ref, _) = cpu::linear_forward(&x, &w, bias, m, k, n, Act::IDENTITY);
            let y_ref = cpu::residual_add(&z_ref, &skip);
            let bound = linear_forward_residual_bound(&x, &w, bias, m, k, n, &z_ref, &y_ref);
            let v = g.matmul_schedule.large;
            assert_within(&format!("linear_forward_residual ({v:?}) {m}x{k}x{n}"), &y, &widen(&y_ref), &bound);
        }
    }
}

#[test]
fn linear_forward_without_bias() {
    require_gpu!();
    let mut r = rng(2);
    let (m, k, n) = (33, 70, 5);
    let x = uniform(&mut r, m * k, -1.0, 1.0);
    let w = uniform(&mut r, n * k, -1.0, 1.0);
    let (_, y) = ops::linear_forward(gpu(), &x, &w, None, m, k, n, Act::IDENTITY).unwrap();
    let (z_ref, y_ref) = cpu::linear_forward(&x, &w, None, m, k, n, Act::IDENTITY);
    let (_, b) = linear_forward_bound(&x, &w, None, m, k, n, Act::IDENTITY, &z_ref, &y_ref);
    assert_within("linear_forward no bias", &y, &widen(&y_ref), &b);
}

for_every_schedule! {
    /// Products longer than llvmpipe's loop budget (65,535 iterations per invocation, which a direct
    /// product spends one per k): every schedule gives the full sum, by the fallback to `tiled` on
    /// llvmpipe, or, where even that cannot run (k = 70,001 with wgpu's shader checks on), refuses
    /// with the loop-limit error; never a sum cut short. Constant operands make the answer exact in
    /// f32 (every partial sum is a multiple of 1/8 below 2¹⁴), so missing terms cannot hide inside
    /// a rounding bound. 16,001 is past what a checked packed product could loop over.
    fn products_longer_than_llvmpipes_loop_budget_are_whole_or_refused(g: &Gpu) {
        for (m, k, n) in [(70, 16_001, 70), (5, 70_001, 3)] {
            let x = vec![0.5f32; m * k];
            let w = vec![0.25f32; n * k];
            match ops::linear_forward(g, &x, &w, None, m, k, n, Act::IDENTITY) {
                Ok((_, y)) => {
                    assert!(
                        y.iter().all(|&v| v == 0.125 * k as f32),
                        "k = {k} ({}): {:?}",
                        g.matmul_schedule.name(),
                        &y[..3]
                    )
                }
                Err(e) => assert!(
                    g.loop_limit().is_some() && e.to_string().contains("loop iterations"),
                    "k = {k} ({}): {e}",
                    g.matmul_schedule.name()
                ),
            }
        }
    }
}

for_every_schedule! {
    fn linear_backward_input_matches_cpu_plain_and_with_fused_activation_grad(g: &Gpu) {
        let mut r = rng(3);
        for &(m, k, n) in &SHAPES {
            let dz = uniform(&mut r, m * n, -1.0, 1.0);
            let w = uniform(&mut r, n * k, -1.0, 1.0);
            let dx = ops::linear_backward_input(g, &dz, &w, m, k, n, None).unwrap();
            let dx_ref = cpu::linear_backward_input(&dz, &w, m, k, n);
            let b = linear_backward_input_bound(&dz, &w, m, k, n, &dx_ref);
            let v = g.matmul_schedule.large;
            let (err, _) =
                assert_within(&format!("linear_backward_input ({v:?}) {m}x{k}x{n}"), &dx, &widen(&dx_ref), &b);
            if (m, k, n) == SHAPES[8] {
                eprintln!("linear_backward_input ({v:?}) {m}x{k}x{n}: worst |GPU − CPU| {err:.2e}");
            }
            // The fused epilogue: dz_prev = (dz·W) ⊙ act'(z_prev).
            for act in ops::all_activations() {
                let z_prev = uniform(&mut r, m * k, -3.0, 3.0);
                let got = ops::linear_backward_input(g, &dz, &w, m, k, n, Some((&z_prev, act))).unwrap();
                let want = cpu::activation_backward(&z_prev, &dx_ref, act);
                let bound = act_grad_epilogue_bound(act, &z_prev, &b, &dx_ref, &want);
                assert_within(
                    &format!("fused act' ({v:?}) {} {m}x{k}x{n}", act.kind.name()),
                    &got,
                    &widen(&want),
                    &bound,
                );
            }
        }
    }
}

for_every_schedule! {
    fn linear_backward_weight_and_bias_grad_match_cpu(g: &Gpu) {
        let mut r = rng(4);
        for &(m, k, n) in &SHAPES {
            let dz = uniform(&mut r, m * n, -1.0, 1.0);
            let x = uniform(&mut r, m * k, -1.0, 1.0);
            let dw = ops::linear_backward_weight(g, &dz, &x, m, k, n).unwrap();
            let (dw_fused, db) = ops::linear_backward_weight_and_bias(g, &dz, &x, m, k, n).unwrap();
            let dw_ref = cpu::linear_backward_weight(&dz, &x, m, k, n);
            let b = linear_backward_weight_bound(&dz, &x, m, k, n, &dw_ref);
            let v = g.matmul_schedule.large;
            let (e1, _) =
                assert_within(&format!("linear_backward_weight ({v:?}) {m}x{k}x{n}"), &dw, &widen(&dw_ref), &b);
            // The row-sum epilogue must leave the product itself exactly as it was.
            assert_eq!(dw_fused, dw, "linear_backward_weight_and_bias ({v:?}) {m}x{k}x{n}: dW differs without bias");

            let db_ref = cpu::bias_grad(&dz, m, n);
            let b = bias_grad_bound(&dz, m, n);
            let (e2, _) = assert_within(&format!("bias_grad ({v:?}, fused) {m}x{n}"), &db, &widen(&db_ref), &b);
            if (m, k, n) == SHAPES[8] {
                eprintln!("linear_backward_weight ({v:?}) {m}x{k}x{n}: worst {e1:.2e}; bias_grad: worst {e2:.2e}");
            }
        }
    }
}

for_every_schedule! {
    /// The bias gradient is written by the invocations that own column 0 of dW, one per row of dW
    /// (an output feature): check feature counts around the tile and block edges, and a dW with one
    /// column, on every schedule.
    fn bias_grad_past_one_tile_of_features(g: &Gpu) {
        let mut r = rng(5);
        for (n, k) in [(1, 1), (7, 1), (63, 3), (64, 5), (65, 8), (129, 2), (257, 9)] {
            let m = 3;
            let dz = uniform(&mut r, m * n, -1.0, 1.0);
            let x = uniform(&mut r, m * k, -1.0, 1.0);
            let (_, db) = ops::linear_backward_weight_and_bias(g, &dz, &x, m, k, n).unwrap();
            let db_ref = cpu::bias_grad(&dz, m, n);
            let b = bias_grad_bound(&dz, m, n);
            assert_within(&format!("bias_grad ({:?}) n={n} k={k}", g.matmul_schedule.large), &db, &widen(&db_ref), &b);
        }
    }
}

#[test]
fn activations_match_cpu_on_edge_lengths_and_values() {
    require_gpu!();
    let mut r = rng(6);
    let special = [0.0f32, -0.0, 1e-30, -1e-30, 30.0, -30.0, 88.0, -88.0, 100.0, -100.0];
    for len in [1usize, 7, 255, 256, 257, 65_537] {
        for act in ops::all_activations() {
            let mut x = uniform(&mut r, len, -6.0, 6.0);
            for (i, v) in special.iter().enumerate().take(len) {
                x[i] = *v;
            }
            let dy = uniform(&mut r, len, -1.0, 1.0);
            let y = ops::activation_forward(gpu(), &x, act).unwrap();
            let y_ref = cpu::activation_forward(&x, act);
            let yb = activation_forward_bound(act, &x, &y_ref);
            assert_within(&format!("activation_forward {} len {len}", act.kind.name()), &y, &widen(&y_ref), &yb);
            let dx = ops::activation_backward(gpu(), &x, &dy, act).unwrap();
            let dx_ref = cpu::activation_backward(&x, &dy, act);
            let db = activation_backward_bound(act, &x, &dy, &dx_ref);
            let (err, _) =
                assert_within(&format!("activation_backward {} len {len}", act.kind.name()), &dx, &widen(&dx_ref), &db);
            if len == 65_537 {
                eprintln!("activation {}: worst backward |GPU − CPU| {err:.2e}", act.kind.name());
            }
        }
    }
}

#[test]
fn elementwise_dispatch_splits_past_65535_workgroups() {
    require_gpu!();
    // 65,535 × 256 + 1 elements need 65,536 workgroups: the grid becomes 2-D.
    let len = 65_535 * 256 + 1;
    let x: Vec<f32> = (0..len).map(|i| (i % 1000) as f32 - 500.0).collect();
    let act = Act::new(gradflow::spec::Activation::Relu);
    let y = ops::activation_forward(gpu(), &x, act).unwrap();
    assert_eq!(y.len(), len);
    for i in [0, 1, 255, 256, 65_535 * 256 - 1, 65_535 * 256, len - 1] {
        assert_eq!(y[i], x[i].max(0.0), "element {i}");
    }
    assert!(y.iter().zip(&x).all(|(a, b)| *a == b.max(0.0)));
}

for_every_schedule! {
    fn matmul_dispatch_splits_past_65535_workgroups(g: &Gpu) {
        // 64 × 65,537 rows of tiles: more tiles than one grid dimension holds.
        let (m, k, n) = (64 * 65_537, 2, 3);
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32) - 8.0).collect();
        let w: Vec<f32> = vec![1.0, 0.5, -1.0, 2.0, 0.25, 0.0];
        // Small integers and halves: every product and sum is exact in f32.
        let (_, y_ref) = cpu::linear_forward(&x, &w, None, m, k, n, Act::IDENTITY);
        let (_, y) = ops::linear_forward(g, &x, &w, None, m, k, n, Act::IDENTITY).unwrap();
        assert!(y == y_ref, "{:?}: split dispatch differs", g.matmul_schedule.large);
    }
}

for_every_schedule! {
    /// A batch of models in one launch (workgroup z), each against the CPU's product on its own
    /// slices: shapes from 1 to past a tile, 1 and 3 models (the packed and uniform-window
    /// schedules run a batch on matmul.wgsl's own).
    fn linear_forward_over_a_batch_of_models_matches_cpu_model_by_model(g: &Gpu) {
        let mut r = rng(11);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (65, 17, 65), (127, 257, 63)] {
            for models in [1, 3] {
                for act in [Act::IDENTITY, Act::new(Activation::Relu), Act::new(Activation::Tanh)] {
                    let x = uniform(&mut r, models * m * k, -2.0, 2.0);
                    let w = uniform(&mut r, models * n * k, -1.0, 1.0);
                    let b = uniform(&mut r, models * n, -1.0, 1.0);
                    let (z, y) = ops::linear_forward_models(g, &x, &w, Some(&b), m, k, n, act, models).unwrap();
                    let (z_ref, y_ref) = cpu::linear_forward_models(&x, &w, Some(&b), m, k, n, act, models);
                    for i in 0..models {
                        let (xs, ws, bs, out) = (i * m * k..(i + 1) * m * k, i * n * k..(i + 1) * n * k, i * n..(i + 1) * n, i * m * n..(i + 1) * m * n);
                        let (zr, yr) = (&z_ref[out.clone()], &y_ref[out.clone()]);
                        let (zb, yb) = linear_forward_bound(&x[xs], &w[ws], Some(&b[bs]), m, k, n, act, zr, yr);
                        let what = format!("model {i} of {models}, {m}x{k}x{n} {}", act.kind.name());
                        assert_within(&format!("{what} z"), &z[out.clone()], &widen(zr), &zb);
                        assert_within(&format!("{what} y"), &y[out], &widen(yr), &yb);
                    }
                }
            }
        }
    }
}

/// A layer's three products (forward with z kept, dX with act' and accumulation, dW with the
/// bias's row sums) for 3 models whose slices lie apart with padding, in one launch each,
/// against each model's products launched alone on the same schedule: the same kernel sums in
/// the same order, so to the bit.
fn batched_products_equal_lone_products(variant: gradflow::kernels::MatmulVariant) {
    use gradflow::kernels::{Epilogue, MatmulParams};
    on_schedule(file!(), variant, |g| {
        let mut r = rng(12);
        let (models, m, k, n) = (3, 67, 19, 65);
        let act = Act::new(Activation::Tanh);
        // Per model: x, W and b at offsets inside a padded slice, z, y, dz, dx and the gradient.
        let (xs, ps, outs, dxs) = (m * k + 5, n * k + n + 9, m * n + 3, m * k + 2);
        let (weight_at, bias_at) = (4, 4 + n * k);
        let x = uniform(&mut r, models * xs, -2.0, 2.0);
        let params = uniform(&mut r, models * ps, -1.0, 1.0);
        let dz = uniform(&mut r, models * outs, -1.0, 1.0);
        let dx0 = uniform(&mut r, models * dxs, -1.0, 1.0);
        let products = |x: &[f32], params: &[f32], dz: &[f32], dx0: &[f32], count: usize| {
            let strides = |a: usize, b: usize, c: usize, aux: usize, bias: usize| [a, b, c, aux, bias];
            let fwd = MatmulParams::dense_forward(m, k, n, weight_at, Epilogue::dense(Some(bias_at), act))
                .for_models(count, strides(xs, ps, outs, outs, ps));
            let bwd_in = MatmulParams::dense_backward_input(m, k, n, weight_at, Some(act), true)
                .for_models(count, strides(outs, ps, dxs, outs, 0));
            let bwd_w = MatmulParams::dense_backward_params(m, k, n, weight_at, Some(bias_at), false)
                .for_models(count, strides(outs, xs, ps, 0, 0));
            let (gx, gp, gdz) =
                (g.upload("x", x).unwrap(), g.upload("p", params).unwrap(), g.upload("dz", dz).unwrap());
            let (y, z) = (g.storage("y", count * outs).unwrap(), g.storage("z", count * outs).unwrap());
            let (dx, grads) = (g.upload("dx", dx0).unwrap(), g.storage("grads", count * ps).unwrap());
            let launches = [
                g.matmul(&gx, &gp, Some(&gp), &y, Some(&z), fwd).unwrap(),
                g.matmul(&gdz, &gp, None, &dx, Some(&z), bwd_in).unwrap(),
                g.matmul(&gdz, &gx, None, &grads, None, bwd_w).unwrap(),
            ];
            gradflow::device::submit(g, "products", &launches.iter().collect::<Vec<_>>()).unwrap();
            [&y, &z, &dx, &grads].map(|b| g.read_all(b).unwrap().into_iter().map(f32::to_bits).collect::<Vec<_>>())
        };
        let batched = products(&x, &params, &dz, &dx0, models);
        for i in 0..models {
            let slice = |v: &[f32], s: usize| v[i * s..(i + 1) * s].to_vec();
            let alone = products(&slice(&x, xs), &slice(&params, ps), &slice(&dz, outs), &slice(&dx0, dxs), 1);
            for (o, (what, stride)) in [("y", outs), ("z", outs), ("dx", dxs), ("grads", ps)].into_iter().enumerate() {
                assert_eq!(batched[o][i * stride..(i + 1) * stride], alone[o][..], "{variant:?}: model {i}'s {what}");
            }
        }
    });
}

#[test]
fn batched_products_equal_lone_products_to_the_bit_on_tiled() {
    batched_products_equal_lone_products(gradflow::kernels::MatmulVariant::Tiled);
}

#[test]
fn batched_products_equal_lone_products_to_the_bit_on_direct() {
    batched_products_equal_lone_products(gradflow::kernels::MatmulVariant::Direct);
}

#[test]
fn a_batch_whose_models_would_overlap_is_refused() {
    use gradflow::kernels::{Epilogue, MatmulParams};
    require_gpu!();
    let g = gpu();
    let (m, k, n) = (4, 3, 5);
    let (x, w) = (g.storage("x", 2 * m * k).unwrap(), g.storage("w", 2 * n * k).unwrap());
    let y = g.storage("y", 2 * m * n).unwrap();
    let p = MatmulParams::dense_forward(m, k, n, 0, Epilogue::linear(None, false));
    // C moving less than one model's m·n per model: the second would overwrite the first.
    let e = g.matmul(&x, &w, None, &y, None, p.for_models(2, [m * k, n * k, m * n - 1, 0, 0])).err().unwrap();
    assert!(e.to_string().contains("overlap"), "{e}");
    // Past the buffer: the second model's C is 1 element short.
    let short = g.storage("short", 2 * m * n - 1).unwrap();
    let r = g.matmul(&x, &w, None, &short, None, p.for_models(2, [m * k, n * k, m * n + 3, 0, 0]));
    assert!(matches!(r, Err(gradflow::error::Error::LaunchOutOfBounds { binding: 3, .. })), "{:?}", r.err());
    assert!(g.matmul(&x, &w, None, &y, None, p.for_models(2, [m * k, n * k, m * n, 0, 0])).is_ok());
}

#[test]
fn a_batch_of_losses_equals_each_model_alone_to_the_bit() {
    // One launch over 3 models against each model's loss alone (itself held against the CPU
    // above): the same row functions and the same reduction order, so the same bits, on the
    // one-workgroup form (up to 64 rows) and the per-row kernel with its reduction.
    require_gpu!();
    let mut r = rng(21);
    for &(rows, cols) in &[(1usize, 1usize), (13, 7), (64, 10), (65, 3), (300, 11)] {
        let models = 3;
        let logits = uniform(&mut r, models * rows * cols, -4.0, 4.0);
        let targets = uniform(&mut r, models * rows * cols, -1.0, 1.0);
        let labels: Vec<u32> = (0..models * rows).map(|i| ((i * 5 + 1) % cols) as u32).collect();
        for (loss, with_targets) in [(Loss::CrossEntropy, false), (Loss::Mse, false), (Loss::Mse, true)] {
            let t = with_targets.then_some(&targets[..]);
            let all = ops::loss_models(gpu(), loss, &logits, t, &labels, rows, cols, models).unwrap();
            for (i, got) in all.iter().enumerate() {
                let (m, l) = (i * rows * cols..(i + 1) * rows * cols, i * rows..(i + 1) * rows);
                let t = with_targets.then(|| &targets[m.clone()]);
                let alone = ops::loss_models(gpu(), loss, &logits[m], t, &labels[l], rows, cols, 1).unwrap();
                let what = format!("{} {rows}x{cols} targets {with_targets}: model {i}", loss.name());
                assert_eq!(got.loss.to_bits(), alone[0].loss.to_bits(), "{what} loss");
                assert_eq!(got.correct, alone[0].correct, "{what} correct");
                assert!(got.grad.iter().zip(&alone[0].grad).all(|(a, b)| a.to_bits() == b.to_bits()), "{what} grad");
            }
        }
    }
}

#[test]
fn a_batch_of_losses_whose_models_would_overlap_is_refused() {
    require_gpu!();
    let g = gpu();
    let (rows, cols) = (5, 3);
    let buf = |len| g.storage("b", len).unwrap();
    let (logits, labels, grad, stats, totals) =
        (buf(2 * rows * cols), buf(2 * rows), buf(2 * rows * cols), buf(4 * rows), buf(2 * TOTALS_LEN));
    let p = LossParams::new(rows, cols, false);
    let strides = |totals: usize| [rows * cols, rows, 0, rows * cols, 2 * rows, totals];
    let e = g.loss(
        LossEntry::CrossEntropy,
        &logits,
        &labels,
        None,
        &grad,
        &stats,
        &totals,
        p.for_models(2, strides(TOTALS_LEN - 1)),
    );
    assert!(e.err().expect("totals 6 apart for 7 each").to_string().contains("overlap"));
    let short = buf(TOTALS_LEN + 3);
    let r = g.loss(
        LossEntry::CrossEntropy,
        &logits,
        &labels,
        None,
        &grad,
        &stats,
        &short,
        p.for_models(2, strides(TOTALS_LEN)),
    );
    assert!(matches!(r, Err(gradflow::error::Error::LaunchOutOfBounds { binding: 5, .. })), "{:?}", r.err());
    assert!(g
        .loss(
            LossEntry::CrossEntropy,
            &logits,
            &labels,
            None,
            &grad,
            &stats,
            &totals,
            p.for_models(2, strides(TOTALS_LEN))
        )
        .is_ok());
}

#[test]
fn cross_entropy_matches_cpu_including_logits_of_100() {
    require_gpu!();
    let mut r = rng(7);
    for &(rows, cols, scale) in
        &[(1usize, 1usize, 1.0f32), (1, 2, 1.0), (7, 3, 5.0), (64, 10, 1.0), (257, 13, 100.0), (1000, 100, 20.0)]
    {
        let logits = uniform(&mut r, rows * cols, -scale, scale);
        let labels: Vec<u32> = (0..rows).map(|i| ((i * 7 + 3) % cols) as u32).collect();
        let out = ops::cross_entropy(gpu(), &logits, &labels, rows, cols).unwrap();
        let want = cpu::cross_entropy(&logits, &labels, rows, cols);
        // The library's loss bounds are against the exact values; u·|CPU| for the f32 reference.
        let (loss_b, grad_b) = cross_entropy_bounds(&logits, &labels, rows, cols);
        let what = format!("cross_entropy {rows}x{cols} ±{scale}");
        assert!(out.loss.is_finite(), "{what}: loss {}", out.loss);
        assert_within(
            &format!("{what} loss"),
            &[out.loss],
            &[want.loss as f64],
            &[loss_b + EPS * want.loss.abs() as f64],
        );
        let gb: Vec<f64> = grad_b.iter().zip(&want.grad).map(|(b, g)| b + EPS * g.abs() as f64).collect();
        assert_within(&format!("{what} grad"), &out.grad, &widen(&want.grad), &gb);
        assert_eq!(out.correct, want.correct, "{what}: correct count");
    }
}

/// A batch of at most 64 rows runs its loss in one workgroup (`*_reduced`); its loss, gradient
/// and totals are the bits of the two-dispatch path (per-row kernel, then loss_reduce).
#[test]
fn one_workgroup_loss_matches_the_two_dispatch_path_bit_for_bit() {
    require_gpu!();
    use gradflow::device::submit;
    use gradflow::kernels::{LossParams, LOSS_ONE_GROUP_ROWS, TOTALS_LEN};
    let g = gpu();
    let mut r = rng(12);
    use gradflow::spec::Loss;
    for (loss, rows, cols) in
        [(Loss::CrossEntropy, 1, 3), (Loss::CrossEntropy, 37, 10), (Loss::Mse, 64, 4), (Loss::Mse, 5, 1)]
    {
        let entry = loss.name();
        let logits = g.upload("logits", &uniform(&mut r, rows * cols, -3.0, 3.0)).unwrap();
        let labels: Vec<u32> = (0..rows).map(|i| ((i * 5 + 1) % cols) as u32).collect();
        let labels = g.upload("labels", &labels).unwrap();
        let p = LossParams::new(rows, cols, false);
        let run = |max_rows: usize| {
            let grad = g.storage("grad", rows * cols).unwrap();
            let stats = g.storage("row stats", 2 * rows).unwrap();
            let totals = g.storage("totals", TOTALS_LEN).unwrap();
            let step = g.loss_step(loss, &logits, &labels, None, &grad, &stats, &totals, p, max_rows).unwrap();
            submit(g, entry, &step.iter().collect::<Vec<_>>()).unwrap();
            (step.len(), g.read_all(&grad).unwrap(), g.read_all(&totals).unwrap())
        };
        let (one, grad1, totals1) = run(LOSS_ONE_GROUP_ROWS);
        let (two, grad2, totals2) = run(LOSS_ONE_GROUP_ROWS + 1);
        assert_eq!((one, two), (1, 2), "{entry}: dispatch counts");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&grad1), bits(&grad2), "{entry} {rows}x{cols}: gradient");
        assert_eq!(bits(&totals1), bits(&totals2), "{entry} {rows}x{cols}: totals");
    }
}

#[test]
fn mse_matches_cpu_with_targets_and_with_one_hot_labels() {
    require_gpu!();
    let mut r = rng(8);
    for &(rows, cols) in &[(1usize, 1usize), (10, 2), (64, 3), (65, 4), (129, 3), (300, 10)] {
        let pred = uniform(&mut r, rows * cols, -2.0, 2.0);
        let target = uniform(&mut r, rows * cols, -2.0, 2.0);
        let out = ops::mse(gpu(), &pred, Some(&target), &[], rows, cols).unwrap();
        let want = cpu::mse(&pred, Some(&target), &[], rows, cols);
        // Against the exact values, as cross-entropy's; u·|CPU| for the f32 reference.
        let (lb, gb) = mse_bounds(&pred, &widen(&target), rows, cols);
        assert_within(
            &format!("mse {rows}x{cols} loss"),
            &[out.loss],
            &[want.loss as f64],
            &[lb + EPS * want.loss as f64],
        );
        let gb: Vec<f64> = gb.iter().zip(&want.grad).map(|(b, g)| b + EPS * g.abs() as f64).collect();
        assert_within(&format!("mse {rows}x{cols} grad"), &out.grad, &widen(&want.grad), &gb);

        let labels: Vec<u32> = (0..rows).map(|i| (i % cols) as u32).collect();
        let onehot: Vec<f64> =
            (0..rows * cols).map(|i| f64::from(u8::from(i % cols == labels[i / cols] as usize))).collect();
        let out = ops::mse(gpu(), &pred, None, &labels, rows, cols).unwrap();
        let want = cpu::mse(&pred, None, &labels, rows, cols);
        let (lb, _) = mse_bounds(&pred, &onehot, rows, cols);
        assert_within(
            &format!("mse one-hot {rows}x{cols} loss"),
            &[out.loss],
            &[want.loss as f64],
            &[lb + EPS * want.loss as f64],
        );
        assert_eq!(out.correct, want.correct);
    }
}

/// Pass timing: more passes than one query set holds is refused (false), not a validation error
/// from wgpu; within the limit it times what it was asked to, on adapters with timestamps.
#[test]
fn pass_timer_refuses_more_passes_than_a_query_set_holds() {
    require_gpu!();
    let g = gpu();
    assert!(!g.start_pass_timer(2049));
    if g.start_pass_timer(2) {
        let x = vec![1.0f32; 64];
        ops::linear_forward(g, &x, &x, None, 8, 8, 8, Act::IDENTITY).unwrap();
        let times = g.finish_pass_timer().unwrap();
        assert!(!times.is_empty() && times.len() <= 2 && times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
    }
}

/// data.wgsl's gather against `Dataset::gather`, bit for bit (a gather only copies): batches of 1,
/// a prime, one past a 256-element workgroup and large, with repeated and extreme indices.
#[test]
fn gather_batch_matches_dataset_gather_bit_for_bit() {
    require_gpu!();
    let g = gpu();
    let mut r = rng(12);
    for (n, cols, rows) in [(1usize, 1usize, 1usize), (7, 3, 13), (300, 1, 257), (1000, 37, 4099)] {
        let x = uniform(&mut r, n * cols, -5.0, 5.0);
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let ds = gradflow::data::Dataset::new(x.clone(), labels.clone(), cols, 3, "gathered").unwrap();
        // First and last rows, repeats, then random rows.
        let mut idx: Vec<usize> = vec![0, n - 1, n - 1];
        idx.extend((idx.len()..rows).map(|i| (i * 7919 + 13) % n));
        idx.truncate(rows);
        let (mut want_x, mut want_y) = (Vec::new(), Vec::new());
        ds.gather(&idx, &mut want_x, &mut want_y);

        let idx32: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let (src_x, src_y, ids) =
            (g.upload("x", &x).unwrap(), g.upload("labels", &labels).unwrap(), g.upload("indices", &idx32).unwrap());
        let (dst_x, dst_y) = (g.storage("batch x", rows * cols).unwrap(), g.storage("batch labels", rows).unwrap());
        let p = gradflow::kernels::GatherParams::new(rows, cols, n);
        let d = g.gather_batch(&src_x, &src_y, &ids, &dst_x, &dst_y, p).unwrap();
        gradflow::device::submit(g, "gather", &[&d]).unwrap();
        let got_x = g.read_all(&dst_x).unwrap();
        let got_y: Vec<u32> = g.read(&dst_y, 0, rows).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got_x), bits(&want_x), "gather_batch x, {rows} rows of {cols} from {n}");
        assert_eq!(got_y, want_y, "gather_batch labels, {rows} rows from {n}");
    }
}

#[test]
fn a_label_the_host_did_not_check_makes_the_loss_nan() {
    // loss_rows.wgsl's guard, written so WebGPU's compiler (which refuses a constant NaN) takes it too.
    require_gpu!();
    let logits = [0.5f32, -1.0, 2.0, 0.25, 1.0, -0.5];
    let ok = ops::cross_entropy(gpu(), &logits, &[2, 0], 2, 3).unwrap();
    assert!(ok.loss.is_finite(), "labels in range: {}", ok.loss);
    let bad = ops::cross_entropy(gpu(), &logits, &[2, 3], 2, 3).unwrap();
    assert!(bad.loss.is_nan(), "label 3 of 3 classes gave loss {}", bad.loss);
}
