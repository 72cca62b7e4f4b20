//! Every accumulate flag, per kernel: a launch with the flag adds to its destination exactly
//! what the same launch without it writes (the plain launches are held against the CPU
//! reference in kernels_gpu_vs_cpu.rs and batchnorm.rs; HVP_ACCUMULATE in hvp_kernels.rs). Training uses these
//! where a value has two consumers: a matmul's dX or dW into a gradient another launch also
//! writes, a standalone activation's backward, a batch norm's dx.
//!
//! Bound: the accumulated value is fl(d + o), d the plain launch's value and o what was there.
//! A driver may contract the add with d's last product into an fma, which skips at most one
//! rounding of d; so |acc − (d + o)| ≤ u·|d| + u·|d + o| ≤ 2u·(|d| + |o|).

mod common;

use common::*;
use gradflow::device::{submit, Dispatch, GpuBuffer};
use gradflow::kernels::{
    ActEntry, ActParams, BnEntry, BnParams, Epilogue, Gpu, MatmulParams, ACT_ACCUMULATE, BN_ACCUMULATE, BN_TRAIN,
};
use gradflow::spec::{Act, Activation};

/// Runs `launch` over a destination holding `initial` and returns what it holds after.
fn run_into(g: &Gpu, initial: &[f32], launch: impl FnOnce(&GpuBuffer) -> Dispatch) -> Vec<f32> {
    let dst = g.upload("destination", initial).unwrap();
    let d = launch(&dst);
    submit(g, "accumulate", &[&d]).unwrap();
    g.read_all(&dst).unwrap()
}

/// Asserts acc = plain + initial within the module's bound.
fn assert_adds(what: &str, acc: &[f32], plain: &[f32], initial: &[f32]) {
    let want: Vec<f64> = plain.iter().zip(initial).map(|(&d, &o)| d as f64 + o as f64).collect();
    let bound: Vec<f64> =
        plain.iter().zip(initial).map(|(&d, &o)| 2.0 * EPS * (d.abs() as f64 + o.abs() as f64)).collect();
    assert_within(what, acc, &want, &bound);
}

const SHAPES: [(usize, usize, usize); 5] = [(1, 1, 1), (3, 5, 7), (37, 29, 13), (65, 64, 66), (130, 257, 31)];

for_every_schedule! {
    fn matmul_accumulate_adds_the_product_on_every_schedule(g: &Gpu) {
        let mut r = rng(31);
        for &(m, k, n) in &SHAPES {
            let what = |launch: &str| format!("{launch} {m}x{k}x{n} ({})", g.matmul_schedule.name());
            let x = g.upload("x", &uniform(&mut r, m * k, -2.0, 2.0)).unwrap();
            let wb = g.upload("weight and bias", &uniform(&mut r, n * k + n, -1.0, 1.0)).unwrap();
            let dz = g.upload("dz", &uniform(&mut r, m * n, -1.0, 1.0)).unwrap();
            let (x, wb, dz) = (&x, &wb, &dz);

            // Forward, with the bias: y (+)= x·Wᵀ + b.
            let initial = uniform(&mut r, m * n, -3.0, 3.0);
            let forward = |accumulate| {
                let p = MatmulParams::dense_forward(m, k, n, 0, Epilogue::linear(Some(n * k), accumulate));
                move |dst: &GpuBuffer| g.matmul(x, wb, Some(wb), dst, None, p).unwrap()
            };
            let plain = run_into(g, &vec![0.0; m * n], forward(false));
            assert_adds(&what("dense_forward"), &run_into(g, &initial, forward(true)), &plain, &initial);

            // dX (+)= dZ·W.
            let initial = uniform(&mut r, m * k, -3.0, 3.0);
            let input = |accumulate| {
                let p = MatmulParams::dense_backward_input(m, k, n, 0, None, accumulate);
                move |dst: &GpuBuffer| g.matmul(dz, wb, None, dst, None, p).unwrap()
            };
            let plain = run_into(g, &vec![0.0; m * k], input(false));
            assert_adds(&what("dense_backward_input"), &run_into(g, &initial, input(true)), &plain, &initial);

            // dW (+)= dZᵀ·X and db (+)= Σ dZ, into one gradient buffer at an offset.
            let (at, len) = (5, 5 + n * k + n);
            let initial = uniform(&mut r, len, -3.0, 3.0);
            let params = |accumulate| {
                let p = MatmulParams::dense_backward_params(m, k, n, at, Some(at + n * k), accumulate);
                move |dst: &GpuBuffer| g.matmul(dz, x, None, dst, None, p).unwrap()
            };
            let plain = run_into(g, &vec![0.0; len], params(false));
            let acc = run_into(g, &initial, params(true));
            assert_adds(&what("dense_backward_params"), &acc[at..], &plain[at..], &initial[at..]);
            assert_eq!(acc[..at], initial[..at], "{}: elements before the gradient", what("dense_backward_params"));
        }
    }
}

#[test]
fn activation_backward_accumulate_adds_dy_times_the_derivative() {
    require_gpu!();
    let g = gpu();
    let mut r = rng(32);
    for &act in Activation::ALL {
        for len in [1, 255, 256, 257, 4099] {
            let x = g.upload("x", &uniform(&mut r, len, -3.0, 3.0)).unwrap();
            let dy = g.upload("dy", &uniform(&mut r, len, -2.0, 2.0)).unwrap();
            let (x, dy) = (&x, &dy);
            let initial = uniform(&mut r, len, -2.0, 2.0);
            let a = Act::new(act);
            let launch = |flags| {
                let p = ActParams { len: len as u32, act: act.code(), slope: a.slope, flags };
                move |dst: &GpuBuffer| g.activation(ActEntry::Backward, x, Some(dy), dst, p).unwrap()
            };
            let plain = run_into(g, &vec![0.0; len], launch(0));
            let acc = run_into(g, &initial, launch(ACT_ACCUMULATE));
            assert_adds(&format!("activation_backward {} over {len}", act.name()), &acc, &plain, &initial);
        }
    }
}

#[test]
fn batchnorm_backward_input_accumulate_adds_dx() {
    require_gpu!();
    let g = gpu();
    let mut r = rng(33);
    for &(rows, cols) in &[(2, 1), (17, 3), (64, 16), (65, 17), (200, 70)] {
        let x = g.upload("x", &uniform(&mut r, rows * cols, -2.0, 2.0)).unwrap();
        let dy = g.upload("dy", &uniform(&mut r, rows * cols, -1.0, 1.0)).unwrap();
        let mut gamma_beta = uniform(&mut r, cols, 0.5, 1.5);
        gamma_beta.extend(uniform(&mut r, cols, -0.5, 0.5));
        let params = g.upload("γ and β", &gamma_beta).unwrap();
        let running = g.upload("running", &[vec![0.0f32; cols], vec![1.0f32; cols]].concat()).unwrap();
        let stats = g.storage("stats", 3 * cols).unwrap();
        let sums = g.storage("Σdu and Σdu·x̂", 2 * cols).unwrap();
        let p = BnParams::layer(rows, cols, 0, cols, 0, cols, 1e-5, Act::new(Activation::Tanh)).training(0.1);
        // The statistics and the two sums the input gradient reads, once.
        let prepare = [
            g.batchnorm(BnEntry::Stats, &x, None, &params, &running, &stats, None, &sums, p).unwrap(),
            g.batchnorm(BnEntry::BackwardReduce, &x, Some(&dy), &params, &running, &stats, None, &sums, p).unwrap(),
        ];
        submit(g, "batch-norm statistics and sums", &prepare.iter().collect::<Vec<_>>()).unwrap();
        let (x, dy, params, running, stats, sums) = (&x, &dy, &params, &running, &stats, &sums);
        let launch = |flags| {
            let p = BnParams { flags: BN_TRAIN | flags, ..p };
            move |dst: &GpuBuffer| {
                g.batchnorm(BnEntry::BackwardInput, x, Some(dy), params, running, stats, Some(dst), sums, p).unwrap()
            }
        };
        let initial = uniform(&mut r, rows * cols, -1.0, 1.0);
        let plain = run_into(g, &vec![0.0; rows * cols], launch(0));
        let acc = run_into(g, &initial, launch(BN_ACCUMULATE));
        assert_adds(&format!("batchnorm_backward_input {rows}x{cols}"), &acc, &plain, &initial);
    }
}
