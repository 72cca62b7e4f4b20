//! Hessian-vector products by the R-operator (cpu::hvp) on a small model with every layer type,
//! against the reference's own gradient, against central differences of that gradient, and for
//! symmetry (nothing in the R-operator enforces it); then Lanczos and SLQ on the exact Hessian
//! against its full eigendecomposition.

use gradflow::data::Dataset;
use gradflow::exec::cpu_network::loss_and_grads;
use gradflow::exec::hessian::{gpu_hvp_error_bound, Hessian};
use gradflow::reference::hvp::loss_grad_hvp;
use gradflow::spec::{LayerSpec, Loss, Model};
use gradflow::spectrum::{lanczos, stochastic_lanczos_quadrature, symmetric_eigen};
use rand::{rngs::StdRng, Rng, SeedableRng};

mod common;

const U: f64 = f64::EPSILON / 2.0;

/// 3 → Linear(5) tanh → BatchNorm sigmoid → residual [Linear(5) GELU Linear(5)] → leaky ReLU →
/// residual with projection [Linear(4) ReLU] → Linear(3): every layer type, 149 parameters.
fn every_layer_model() -> Model {
    let l = |out| LayerSpec::Linear { out, bias: true };
    let layers = vec![
        l(5),
        LayerSpec::Tanh,
        LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        LayerSpec::Sigmoid,
        LayerSpec::Residual { layers: vec![l(5), LayerSpec::Gelu, l(5)], projection: false },
        LayerSpec::LeakyRelu { negative_slope: 0.1 },
        LayerSpec::Residual { layers: vec![l(4), LayerSpec::Relu], projection: true },
        l(3),
    ];
    Model::new(3, layers).unwrap()
}

fn data(rows: usize, seed: u64) -> Dataset {
    let mut r = StdRng::seed_from_u64(seed);
    let x = (0..rows * 3).map(|_| r.random_range(-2.0f32..2.0)).collect();
    let labels = (0..rows).map(|_| r.random_range(0..3u32)).collect();
    Dataset::new(x, labels, 3, 3, "test data").unwrap()
}

/// Parameters with some spread (the default init plus noise), so no activation sits in a flat
/// region by construction.
fn params(model: &Model, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut p = model.init_params(seed);
    for t in &model.params {
        for v in &mut p[t.offset..t.offset + t.len] {
            *v += r.random_range(-0.3f32..0.3);
        }
    }
    p
}

#[test]
fn the_r_operator_matches_the_gradient_central_differences_and_is_symmetric() {
    let model = every_layer_model();
    let n_params: usize = model.params.iter().map(|t| t.len).sum();
    assert!(n_params <= 200, "{n_params} parameters");
    let data = data(12, 1);
    let running = model.init_norm_state().running;
    for loss in [Loss::CrossEntropy, Loss::Mse] {
        let p = params(&model, 2);
        // Two batches of 6: batch norm uses each batch's statistics.
        let mut h = Hessian::new(model.clone(), loss, &p, &data, 6).unwrap();
        assert_eq!(h.dim(), n_params);

        // The forward and backward passes against the reference's own (f64) gradient.
        let out = h.evaluate(&vec![0.0; n_params]).unwrap();
        let grad_of = |flat: &[f64]| -> (f64, Vec<f64>) {
            let (mut l, mut g) = (0.0, vec![0.0; model.param_len]);
            for b in 0..2 {
                let x: Vec<f64> = data.x[b * 18..(b + 1) * 18].iter().map(|&v| v as f64).collect();
                let (lb, gb) =
                    loss_and_grads::<f64>(&model, loss, flat, &running, &x, &data.labels[b * 6..(b + 1) * 6], 6)
                        .unwrap();
                l += 0.5 * lb;
                g.iter_mut().zip(&gb).for_each(|(a, c)| *a += 0.5 * c);
            }
            (l, g)
        };
        let flat: Vec<f64> = p.iter().map(|&v| v as f64).collect();
        let (ref_loss, ref_grad) = grad_of(&flat);
        let ref_grad = h.pack(&ref_grad);
        let gmax = ref_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            (out.loss - ref_loss).abs() <= 1e-13 * ref_loss.abs().max(1.0),
            "{loss:?}: loss {} vs {ref_loss}",
            out.loss
        );
        for (a, b) in out.grad.iter().zip(&ref_grad) {
            // Same sums in a different order: a few hundred roundings of the largest term.
            assert!((a - b).abs() <= 1e3 * U * gmax, "{loss:?}: gradient {a} vs {b}");
        }

        // Symmetry of the exact Hessian: each entry is a sum of O(10³) products, so 1e4·u of the
        // largest entry bounds the rounding of either side.
        let dense = h.dense().unwrap();
        let hmax = dense.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut asym = 0.0f64;
        for i in 0..n_params {
            for j in 0..i {
                asym = asym.max((dense[i * n_params + j] - dense[j * n_params + i]).abs());
            }
        }
        assert!(asym <= 1e4 * U * hmax, "{loss:?}: asymmetry {asym:e} (largest entry {hmax:e})");

        // Every column against central differences of the reference gradient with step 1e-5:
        // truncation h²/6·|∂³g| (≤ 1e-9 for third derivatives up to 60) plus rounding
        // ~u·max|g|/h (≤ 1e-10); 1e-7·max(1, max|H|) bounds both with room for larger curvature.
        let step = 1e-5;
        let mut worst = 0.0f64;
        for j in 0..n_params {
            let e = h.unpack(&(0..n_params).map(|k| if k == j { step } else { 0.0 }).collect::<Vec<_>>());
            let plus: Vec<f64> = flat.iter().zip(&e).map(|(a, b)| a + b).collect();
            let minus: Vec<f64> = flat.iter().zip(&e).map(|(a, b)| a - b).collect();
            let (gp, gm) = (h.pack(&grad_of(&plus).1), h.pack(&grad_of(&minus).1));
            for i in 0..n_params {
                let fd = (gp[i] - gm[i]) / (2.0 * step);
                worst = worst.max((fd - dense[i * n_params + j]).abs());
            }
        }
        eprintln!("{loss:?}: {n_params} parameters, max|H| {hmax:.3e}, asymmetry {asym:.1e}, worst |H − central difference| {worst:.1e}");
        assert!(worst <= 1e-7 * hmax.max(1.0), "{loss:?}: central differences differ by {worst:e}");
    }
}

/// Hv is linear in v and H·(a + b) = Ha + Hb to rounding: a check that no term of the R pass
/// depends on v nonlinearly (a missing or doubled R-term usually breaks the symmetry test above;
/// this one catches terms quadratic in v).
#[test]
fn the_r_operator_is_linear_in_the_direction() {
    let model = every_layer_model();
    let data = data(8, 3);
    let p = params(&model, 4);
    let flat: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let x: Vec<f64> = data.x.iter().map(|&v| v as f64).collect();
    let mut r = StdRng::seed_from_u64(5);
    let mut dir = || -> Vec<f64> { (0..model.param_len).map(|_| r.random_range(-1.0..1.0)).collect() };
    let (a, b) = (dir(), dir());
    let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| 3.0 * x + y).collect();
    let hv = |v: &[f64]| loss_grad_hvp(&model, Loss::CrossEntropy, &flat, v, &x, &data.labels, 8).hv;
    let (ha, hb, hs) = (hv(&a), hv(&b), hv(&sum));
    let scale = hs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..model.param_len {
        assert!((hs[i] - 3.0 * ha[i] - hb[i]).abs() <= 1e4 * U * scale.max(1.0), "coordinate {i}");
    }
}

#[test]
fn lanczos_extremes_and_index_of_an_exact_hessian_match_its_eigendecomposition() {
    let model = every_layer_model();
    let data = data(12, 6);
    let p = params(&model, 7);
    let mut h = Hessian::new(model, Loss::CrossEntropy, &p, &data, 6).unwrap();
    let n = h.dim();
    let dense = h.dense().unwrap();
    let (exact, _) = symmetric_eigen(&dense, n);
    let hmax = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // Lanczos with as many steps as coordinates (or until the Krylov space closes): every Ritz
    // value an eigenvalue, to c·n·u·‖H‖ (Weyl) with the f64 products' own rounding.
    let mut r = StdRng::seed_from_u64(8);
    let start: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
    let run = lanczos(&mut h, &start, n).unwrap();
    let (low, high) = run.extremes(3);
    let tol = 1e4 * n as f64 * U * hmax;
    for (g, w) in low.iter().zip(&exact[..3]).chain(high.iter().zip(&exact[n - 3..])) {
        assert!((g - w).abs() <= tol, "extreme {g} vs {w}");
    }
    // The index: negative eigenvalues by count, beside SLQ's estimate (bound as in tests/spectrum.rs:
    // 4 standard deviations of the probe average plus the quadrature's 1/m at the jump).
    let negative = exact.iter().filter(|&&x| x < -tol).count() as f64 / n as f64;
    let zeroish = exact.iter().filter(|&&x| x.abs() <= tol).count();
    let (probes, steps) = (30, 40);
    let density = stochastic_lanczos_quadrature(&mut h, probes, steps, 9).unwrap();
    let estimate = density.fraction_below(0.0);
    let bound = 4.0 * (2.0 * negative * (1.0 - negative) / (n * probes) as f64).sqrt() + 1.0 / steps as f64;
    eprintln!(
        "{n} parameters: eigenvalues {:.3e} … {:.3e}, index {negative:.3} ({zeroish} within rounding of 0), SLQ {estimate:.3}",
        exact[0],
        exact[n - 1]
    );
    assert!((estimate - negative).abs() <= bound + zeroish as f64 / n as f64, "index {negative} vs SLQ {estimate}");
}

/// The GPU's R-operator (f32) against the CPU reference's (f64) on the every-layer model, for
/// both losses and batches of 6 and of 12 rows, in random directions.
///
/// Bound: `gpu_hvp_error_bound` (2·stages·K·u·max|Hv|: the repository's gradient bound of
/// tests/networks.rs with the R pass's second traversal of every stage).
#[test]
fn gpu_hessian_vector_products_match_the_cpu_reference() {
    common::require_gpu!();
    let model = every_layer_model();
    let data = data(12, 12);
    let p = params(&model, 13);
    let gpu = std::sync::Arc::new(common::gpu().clone());
    let mut r = StdRng::seed_from_u64(14);
    for loss in [Loss::CrossEntropy, Loss::Mse] {
        for batch in [6, 12] {
            let mut cpu = Hessian::new(model.clone(), loss, &p, &data, batch).unwrap();
            let mut dev = Hessian::new(model.clone(), loss, &p, &data, batch).unwrap();
            dev.use_gpu(gpu.clone()).unwrap();
            let n = cpu.dim();
            for trial in 0..3 {
                let v: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
                let want = cpu.hv(&v).unwrap();
                let got = dev.hv(&v).unwrap();
                let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let bound = gpu_hvp_error_bound(&model, batch, scale);
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                eprintln!(
                    "{loss:?}, batch {batch}, direction {trial}: worst |GPU − CPU| {worst:.2e}, {:.1e} of max|Hv| \
                     ({:.1}% of the bound)",
                    worst / scale,
                    100.0 * worst / bound
                );
                assert!(worst <= bound, "{loss:?} batch {batch}: GPU and CPU Hv differ by {worst:e} > {bound:e}");
            }
        }
    }
}

/// On a bigger model (17,000 parameters, real digits rows, batch norm), the GPU's H·v against
/// central differences of the CPU reference's f64 gradient along v: (∇L(θ + hv) − ∇L(θ − hv))/2h.
/// Smooth activations only: a ReLU's kink between θ ± hv makes the difference quotient jump.
///
/// Bound: the GPU's (as above) plus the quotient's truncation h²/6·|∂³L[v, v, ·]| and rounding
/// u·max|∇L|/h; with h = 1e-3 and unit-size v both sit below 1e-6·max|Hv| for third
/// derivatives up to 10³·max|Hv|, so 1e-6·max|Hv| is added.
#[test]
fn gpu_hessian_vector_products_match_central_differences_on_a_bigger_model() {
    common::require_gpu!();
    let cfg = gradflow::config::Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/digits.toml"
    )))
    .unwrap();
    let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/digits.toml"));
    let (full, _) = gradflow::train::load_data(&cfg, file).unwrap();
    let rows = 300;
    let data =
        Dataset::new(full.x[..rows * 64].to_vec(), full.labels[..rows].to_vec(), 64, 10, "digits subset").unwrap();
    let l = |out| LayerSpec::Linear { out, bias: true };
    let layers = vec![
        l(128),
        LayerSpec::Tanh,
        LayerSpec::BatchNorm { eps: 1e-5, momentum: Default::default(), sync: false },
        LayerSpec::Gelu,
        l(64),
        LayerSpec::Sigmoid,
        l(10),
    ];
    let model = Model::new(64, layers).unwrap();
    let p = params(&model, 15);
    let batch = 100;
    let mut h = Hessian::new(model.clone(), Loss::CrossEntropy, &p, &data, batch).unwrap();
    h.use_gpu(std::sync::Arc::new(common::gpu().clone())).unwrap();
    let n = h.dim();
    assert!(n > 17_000, "{n} parameters");
    let mut r = StdRng::seed_from_u64(16);
    let v: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
    let v_unit: Vec<f64> = {
        let s = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / s).collect()
    };
    let got = h.hv(&v_unit).unwrap();
    let running = model.init_norm_state().running;
    let flat: Vec<f64> = p.iter().map(|&x| x as f64).collect();
    let dir = h.unpack(&v_unit);
    let grad_at = |t: f64| -> Vec<f64> {
        let theta: Vec<f64> = flat.iter().zip(&dir).map(|(a, b)| a + t * b).collect();
        let mut g = vec![0.0; model.param_len];
        for b in 0..rows / batch {
            let x: Vec<f64> = data.x[b * batch * 64..(b + 1) * batch * 64].iter().map(|&v| v as f64).collect();
            let (_, gb) = loss_and_grads::<f64>(
                &model,
                Loss::CrossEntropy,
                &theta,
                &running,
                &x,
                &data.labels[b * batch..(b + 1) * batch],
                batch,
            )
            .unwrap();
            g.iter_mut().zip(&gb).for_each(|(a, c)| *a += c * batch as f64 / rows as f64);
        }
        h.pack(&g)
    };
    let step = 1e-3;
    let (gp, gm) = (grad_at(step), grad_at(-step));
    let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * step)).collect();
    let scale = fd.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let bound = gpu_hvp_error_bound(&model, batch, scale) + 1e-6 * scale;
    let worst = got.iter().zip(&fd).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!(
        "{n} parameters: max|Hv| {scale:.3e}, worst |GPU Hv − central difference| {worst:.2e} ({:.1}% of the bound)",
        100.0 * worst / bound
    );
    assert!(worst <= bound, "GPU Hv and central differences differ by {worst:e} > {bound:e}");
}
