//! The awaited (async) forms a browser page uses against the blocking forms `gradflow` uses:
//! natively each blocking form is `device::wait` on its awaited form, so both run the same code
//! and must agree bit for bit (no tolerance: any difference is a second code path). And
//! `check::run_async`, the page's Check view, passes every op on this machine's adapter.

mod common;

use common::*;
use gradflow::device::wait;
use gradflow::exec::hessian::Hessian;
use gradflow::exec::hessian_summary::{summarize, summarize_async, Budget};
use gradflow::exec::{ops, ops_hvp};
use gradflow::spec::{Act, LayerSpec, Loss, Model};

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// 4 → Linear(6) tanh → BatchNorm → Linear(3): 63 parameters, batch norm so the batching matters.
fn small_model() -> Model {
    let layers = vec![
        LayerSpec::Linear { out: 6, bias: true },
        LayerSpec::Tanh,
        LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        LayerSpec::Linear { out: 3, bias: true },
    ];
    Model::new(4, layers).unwrap()
}

/// Products and the whole `gradflow hessian` summary (Lanczos extremes, SLQ density, index),
/// blocking and awaited, on `h` and on a twin `h2` built the same way.
fn same_products_and_summary(h: &mut Hessian, h2: &mut Hessian, on: &str) {
    let mut r = rng(7);
    let v: Vec<f64> = uniform(&mut r, h.dim(), -1.0, 1.0).iter().map(|&x| x as f64).collect();
    let blocking = h.hv(&v).unwrap();
    let awaited = wait("test product", h2.hv_async(&v)).unwrap();
    assert_eq!(bits(&blocking), bits(&awaited), "{on}: H·v awaited differs from blocking");
    let budget = Budget { k: 3, steps: 12, probes: 2, seed: 0 };
    let a = summarize(h, &budget).unwrap();
    let b = wait("test summary", summarize_async(h2, &budget)).unwrap();
    assert_eq!(bits(&a.smallest), bits(&b.smallest), "{on}: smallest Ritz values");
    assert_eq!(bits(&a.largest), bits(&b.largest), "{on}: largest Ritz values");
    assert_eq!(bits(&a.density.nodes), bits(&b.density.nodes), "{on}: SLQ nodes");
    assert_eq!(bits(&a.density.weights), bits(&b.density.weights), "{on}: SLQ weights");
    assert_eq!(a.index.to_bits(), b.index.to_bits(), "{on}: index");
    assert_eq!(a.products, b.products, "{on}: products");
    assert_eq!(a.largest.len(), 3);
}

#[test]
fn awaited_hessian_products_and_summary_match_the_blocking_ones() {
    let model = small_model();
    let data = synthetic(24, 4, 3, 3);
    let params = model.init_params(5);
    let (batch, _) = gradflow::exec::hessian_summary::batch_rows(&model, 8, data.n);
    assert_eq!(batch, 8, "batch norm: the training batch size");
    let new = || Hessian::new(model.clone(), Loss::CrossEntropy, &params, &data, batch).unwrap();
    same_products_and_summary(&mut new(), &mut new(), "CPU reference");
    if gpu_part!() {
        let (mut h, mut h2) = (new(), new());
        h.use_gpu(std::sync::Arc::new(gpu().clone())).unwrap();
        h2.use_gpu(std::sync::Arc::new(gpu().clone())).unwrap();
        same_products_and_summary(&mut h, &mut h2, "GPU");
    }
}

#[test]
fn a_pause_is_asked_before_each_cpu_product_and_changes_no_number() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let model = small_model();
    let data = synthetic(24, 4, 3, 3);
    let params = model.init_params(5);
    let new = || Hessian::new(model.clone(), Loss::CrossEntropy, &params, &data, 8).unwrap();
    let (mut plain, mut paused) = (new(), new());
    let (asked, awaited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, w) = (Arc::clone(&asked), Arc::clone(&awaited));
    // Every other call hands back a future to await, as a page does once a frame has passed.
    paused.set_pause(Box::new(move || {
        let w = Arc::clone(&w);
        (a.fetch_add(1, Ordering::SeqCst) % 2 == 1).then(|| {
            Box::pin(async move {
                w.fetch_add(1, Ordering::SeqCst);
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        })
    }));
    let budget = Budget { k: 2, steps: 6, probes: 1, seed: 0 };
    let a = summarize(&mut plain, &budget).unwrap();
    let b = wait("test summary", summarize_async(&mut paused, &budget)).unwrap();
    assert_eq!(bits(&a.largest), bits(&b.largest));
    assert_eq!(a.index.to_bits(), b.index.to_bits());
    // Every product but summarize's first evaluation (the loss and gradient at the point), and
    // each column of the exact decomposition this small model gets.
    assert!(b.exact.is_some(), "{} parameters: small enough for the exact spectrum", b.dim);
    let products = b.products - 1 + b.dim;
    assert_eq!(asked.load(Ordering::SeqCst), products, "asked once per product");
    assert_eq!(awaited.load(Ordering::SeqCst), products / 2, "each future it handed back was awaited");
    assert_eq!(bits(a.exact.as_ref().unwrap()), bits(b.exact.as_ref().unwrap()), "the exact spectrum");
}

#[test]
fn a_budget_that_cannot_run_or_would_exhaust_memory_is_refused_by_field() {
    use gradflow::exec::hessian_summary::{exact_index, MAX_STEPS};
    let err = |k, steps, probes| Budget { k, steps, probes, seed: 0 }.check().unwrap_err().to_string();
    assert!(err(3, 0, 5).starts_with("steps"), "{}", err(3, 0, 5));
    assert!(err(3, MAX_STEPS + 1, 5).contains(&format!("expected 1 to {MAX_STEPS}")));
    assert!(err(0, 10, 5).starts_with("k "));
    assert!(err(11, 10, 5).contains("expected 1 to 10"), "k beyond the steps' Ritz values");
    assert!(err(3, 10, 0).starts_with("probes"));
    assert!(Budget { k: 5, steps: 40, probes: 5, seed: 0 }.check().is_ok());
    // The basis: min(steps, dim) vectors of dim f64s must fit.
    use gradflow::exec::hessian_summary::MAX_BASIS_BYTES;
    let dim = 1 << 22;
    let most = MAX_BASIS_BYTES / (8 * dim);
    let big = Budget { k: 5, steps: most + 1, probes: 5, seed: 0 };
    let e = big.check_for(dim).unwrap_err().to_string();
    assert!(e.starts_with("steps") && e.contains(&format!("at most {most} steps fit")), "{e}");
    assert!(Budget { steps: most, ..big }.check_for(dim).is_ok());
    assert!(Budget { k: 5, steps: 1000, probes: 5, seed: 0 }.check_for(10).is_ok(), "steps past dim cost dim vectors");
    // The summary refuses it too, before any product.
    let model = small_model();
    let data = synthetic(24, 4, 3, 3);
    let mut h = Hessian::new(model.clone(), Loss::CrossEntropy, &model.init_params(5), &data, 8).unwrap();
    assert!(summarize(&mut h, &Budget { k: 1, steps: 0, probes: 1, seed: 0 }).is_err());
    assert_eq!(h.products, 0);
    // Rounding-sized eigenvalues count as zero, not negative: n·u·max|λ| = 4·2.2e-16·2.
    let (index, negative, zero, tol) = exact_index(&[-1.0, -1e-16, 0.0, 2.0]);
    assert_eq!((negative, zero), (1, 2));
    assert_eq!(index, 0.25);
    assert!((tol - 4.0 * f64::EPSILON * 2.0).abs() < 1e-30);
}

#[test]
fn awaited_one_shot_ops_match_the_blocking_ones() {
    require_gpu!();
    let g = gpu();
    let mut r = rng(11);
    let (m, k, n) = (9, 17, 5);
    let (x, w, b) =
        (uniform(&mut r, m * k, -1.0, 1.0), uniform(&mut r, n * k, -1.0, 1.0), uniform(&mut r, n, -1.0, 1.0));
    let (z1, y1) = ops::linear_forward(g, &x, &w, Some(&b), m, k, n, Act::IDENTITY).unwrap();
    let (z2, y2) = wait("test", ops::linear_forward_async(g, &x, &w, Some(&b), m, k, n, Act::IDENTITY)).unwrap();
    assert_eq!((bits32(&z1), bits32(&y1)), (bits32(&z2), bits32(&y2)), "linear_forward");
    let labels: Vec<u32> = (0..m as u32).map(|i| i % n as u32).collect();
    let logits = uniform(&mut r, m * n, -5.0, 5.0);
    let l1 = ops::cross_entropy(g, &logits, &labels, m, n).unwrap();
    let l2 = wait("test", ops::cross_entropy_async(g, &logits, &labels, m, n)).unwrap();
    assert_eq!(l1.loss.to_bits(), l2.loss.to_bits(), "cross_entropy loss");
    assert_eq!(bits32(&l1.grad), bits32(&l2.grad), "cross_entropy grad");
    let ro = uniform(&mut r, m * n, -1.0, 1.0);
    let (mut o1, mut o2) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
    ops_hvp::mse_r(g, &ro, &mut o1).unwrap();
    wait("test", ops_hvp::mse_r_async(g, &ro, &mut o2)).unwrap();
    assert_eq!(bits32(&o1), bits32(&o2), "mse_r");
    assert!(o1.iter().any(|&v| v != 0.0), "mse_r wrote nothing");
}

#[test]
fn check_run_async_passes_every_op_on_the_adapter() {
    require_gpu!();
    let outcomes = wait("test check", gradflow::check::run_async(gpu())).unwrap();
    for op in [
        "linear_forward",
        "activation_backward gelu",
        "batchnorm_backward dx",
        "adam_update",
        "hessian_vector_product",
        "grad_norm",
    ] {
        assert!(outcomes.iter().any(|o| o.op.starts_with(op)), "check covers {op}");
    }
    let failed: Vec<String> =
        outcomes.iter().filter(|o| !o.pass()).map(|o| format!("{} ({:.1}% of bound)", o.op, 100.0 * o.share)).collect();
    assert!(failed.is_empty(), "ops out of bounds: {failed:?}");
    assert!(outcomes.iter().all(|o| o.worst.is_finite() && o.share.is_finite()));
}
