//! PyTorch's golden cases (float64 maths on float32 inputs, ../shared/golden, copied to
//! tests/fixtures/golden) on both paths. The CPU reference rounds an f64 computation once, so it
//! must sit within about one f32 rounding of each value; the GPU within the forward error bounds
//! of `gradflow::reference::bounds` (dot products γ_{K+1}·Σ|a·b|; built-ins at Vulkan's required
//! precision).

mod common;

use common::golden::{cases_of, load};
use common::*;
use gradflow::exec::ops;
use gradflow::reference as cpu;
use gradflow::spec::{Act, Activation};

fn labels_u32(v: &[f64]) -> Vec<u32> {
    v.iter().map(|&l| l as u32).collect()
}

#[test]
fn golden_linear_both_paths() {
    let cases = cases_of("linear");
    assert_eq!(cases.len(), 3, "linear cases in the manifest");
    for name in cases {
        let c = load(&name);
        let (m, k) = (c.shape("x")[0], c.shape("x")[1]);
        let n = c.shape("weight")[0];
        let (x, w, b, dy) = (c.f32("x"), c.f32("weight"), c.f32("bias"), c.f32("dy"));
        let (_, y) = cpu::linear_forward(&x, &w, Some(&b), m, k, n, Act::IDENTITY);
        assert_within(&format!("{name} cpu y"), &y, c.t("y"), &cpu_bound(c.t("y")));
        assert_within(
            &format!("{name} cpu dx"),
            &cpu::linear_backward_input(&dy, &w, m, k, n),
            c.t("dx"),
            &cpu_bound(c.t("dx")),
        );
        assert_within(
            &format!("{name} cpu dweight"),
            &cpu::linear_backward_weight(&dy, &x, m, k, n),
            c.t("dweight"),
            &cpu_bound(c.t("dweight")),
        );
        assert_within(&format!("{name} cpu dbias"), &cpu::bias_grad(&dy, m, n), c.t("dbias"), &cpu_bound(c.t("dbias")));

        if !gpu_part!() {
            continue;
        }
        let g = gpu();
        let (_, y_b) = linear_forward_bound(&x, &w, Some(&b), m, k, n, Act::IDENTITY, c.t("y"), c.t("y"));
        let (_, y) = ops::linear_forward(g, &x, &w, Some(&b), m, k, n, Act::IDENTITY).unwrap();
        let (e1, _) = assert_within(&format!("{name} gpu y"), &y, c.t("y"), &y_b);
        let dx = ops::linear_backward_input(g, &dy, &w, m, k, n, None).unwrap();
        let dx_b = linear_backward_input_bound(&dy, &w, m, k, n, c.t("dx"));
        let (e2, _) = assert_within(&format!("{name} gpu dx"), &dx, c.t("dx"), &dx_b);
        let (dw, db) = ops::linear_backward_weight_and_bias(g, &dy, &x, m, k, n).unwrap();
        let dw_b = linear_backward_weight_bound(&dy, &x, m, k, n, c.t("dweight"));
        let (e3, _) = assert_within(&format!("{name} gpu dweight"), &dw, c.t("dweight"), &dw_b);
        let (e4, _) = assert_within(&format!("{name} gpu dbias"), &db, c.t("dbias"), &bias_grad_bound(&dy, m, n));
        eprintln!("{name}: worst GPU error y {e1:.2e} dx {e2:.2e} dW {e3:.2e} db {e4:.2e}");
    }
}

#[test]
fn golden_activations_both_paths() {
    let cases = cases_of("activation");
    assert_eq!(cases.len(), 5, "activation cases in the manifest");
    for name in cases {
        let c = load(&name);
        let act = match c.params["activation"].as_str().unwrap() {
            "relu" => Act::new(Activation::Relu),
            "sigmoid" => Act::new(Activation::Sigmoid),
            "tanh" => Act::new(Activation::Tanh),
            "gelu" => Act::new(Activation::Gelu),
            "leaky_relu" => Act { kind: Activation::LeakyRelu, slope: c.param("negative_slope") as f32 },
            other => panic!("unknown activation {other}"),
        };
        let (x, dy) = (c.f32("x"), c.f32("dy"));
        // The negative slope is an f32 here (the kernels take f32) and a double in PyTorch: its
        // rounding is one more u relative on the negative side.
        let slope_rounding = if act.kind == Activation::LeakyRelu { EPS } else { 0.0 };
        let with_slope = |want: &[f64]| -> Vec<f64> {
            cpu_bound(want).iter().zip(want).map(|(b, w)| b + slope_rounding * w.abs()).collect()
        };
        assert_within(&format!("{name} cpu y"), &cpu::activation_forward(&x, act), c.t("y"), &with_slope(c.t("y")));
        assert_within(
            &format!("{name} cpu dx"),
            &cpu::activation_backward(&x, &dy, act),
            c.t("dx"),
            &with_slope(c.t("dx")),
        );

        if !gpu_part!() {
            continue;
        }
        let y_b: Vec<f64> = activation_forward_bound(act, &x, c.t("y"))
            .iter()
            .zip(c.t("y"))
            .map(|(b, y)| b + slope_rounding * y.abs())
            .collect();
        // The golden dx/dy is act' exact, so the evaluation bound is taken at it (the library's
        // activation_backward_bound takes act' from the f32 reference).
        let dx_b: Vec<f64> = x
            .iter()
            .zip(&dy)
            .zip(c.t("dx"))
            .map(|((&z, &g), &d)| {
                let exact_grad = d / g as f64;
                (g as f64).abs() * act_grad_eval_bound(act, z as f64, if g == 0.0 { 0.0 } else { exact_grad })
                    + (2.0 * EPS + slope_rounding) * d.abs()
            })
            .collect();
        let y = ops::activation_forward(gpu(), &x, act).unwrap();
        let (e1, _) = assert_within(&format!("{name} gpu y"), &y, c.t("y"), &y_b);
        let dx = ops::activation_backward(gpu(), &x, &dy, act).unwrap();
        let (e2, _) = assert_within(&format!("{name} gpu dx"), &dx, c.t("dx"), &dx_b);
        eprintln!("{name}: worst GPU error y {e1:.2e} dx {e2:.2e}");
    }
}

#[test]
fn golden_cross_entropy_both_paths() {
    let cases = cases_of("cross_entropy");
    assert_eq!(cases.len(), 2);
    for name in cases {
        let c = load(&name);
        let (rows, cols) = (c.shape("logits")[0], c.shape("logits")[1]);
        let logits = c.f32("logits");
        let labels = labels_u32(c.t("labels"));
        let want_loss = c.t("loss")[0];
        let out = cpu::cross_entropy(&logits, &labels, rows, cols);
        assert_within(&format!("{name} cpu loss"), &[out.loss], &[want_loss], &cpu_bound(&[want_loss]));
        assert_within(&format!("{name} cpu dlogits"), &out.grad, c.t("dlogits"), &cpu_bound(c.t("dlogits")));

        if !gpu_part!() {
            continue;
        }
        let (loss_b, grad_b) = cross_entropy_bounds(&logits, &labels, rows, cols);
        let out = ops::cross_entropy(gpu(), &logits, &labels, rows, cols).unwrap();
        let (e1, _) = assert_within(&format!("{name} gpu loss"), &[out.loss], &[want_loss], &[loss_b]);
        let (e2, _) = assert_within(&format!("{name} gpu dlogits"), &out.grad, c.t("dlogits"), &grad_b);
        eprintln!("{name}: GPU loss error {e1:.2e} (bound {loss_b:.2e}), worst dlogits error {e2:.2e}");
    }
}

#[test]
fn golden_mse_both_paths() {
    let cases = cases_of("mse");
    assert_eq!(cases.len(), 2);
    for name in cases {
        let c = load(&name);
        let (rows, cols) = (c.shape("pred")[0], c.shape("pred")[1]);
        let (pred, target) = (c.f32("pred"), c.f32("target"));
        let want_loss = c.t("loss")[0];
        let out = cpu::mse(&pred, Some(&target), &[], rows, cols);
        assert_within(&format!("{name} cpu loss"), &[out.loss], &[want_loss], &cpu_bound(&[want_loss]));
        assert_within(&format!("{name} cpu dpred"), &out.grad, c.t("dpred"), &cpu_bound(c.t("dpred")));

        if !gpu_part!() {
            continue;
        }
        let (loss_b, grad_b) = mse_bounds(&pred, c.t("target"), rows, cols);
        let out = ops::mse(gpu(), &pred, Some(&target), &[], rows, cols).unwrap();
        let (e1, _) = assert_within(&format!("{name} gpu loss"), &[out.loss], &[want_loss], &[loss_b]);
        let (e2, _) = assert_within(&format!("{name} gpu dpred"), &out.grad, c.t("dpred"), &grad_b);
        eprintln!("{name}: GPU loss error {e1:.2e}, worst dpred error {e2:.2e}");
    }
}
