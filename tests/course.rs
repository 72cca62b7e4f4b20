//! The course's experiments on explicit functions: momentum against its continuous-time limits
//! (Kovachki & Stuart), on the GPU's fused update and the CPU reference.

mod common;

use gradflow::course::continuous::{errors, initial_velocity, modified_equation, Method};
use gradflow::course::descent::Backend;

const Q: [f64; 2] = [1.0, 10.0];
const U0: [f32; 2] = [1.0, 1.0];
const LAMBDA: f64 = 0.5;

/// The modified equation's closed form satisfies a·ü + b·u̇ + q·u = 0 and its initial conditions,
/// over- and underdamped. Checked by central differences: u̇(0) with step 1e-7 (the fast mode's
/// rate reaches (1 − λ)/(hα) ≈ 170, so truncation d²·|u⁽³⁾|/6 ≲ 3e-11 and rounding u/d ≈ 1e-9:
/// tolerance 1e-6), the equation at t ≥ 0.1 (fast mode gone) with step 1e-4 (truncation
/// ~1e-8·|u⁽⁴⁾| and rounding 4u/d² ≈ 1e-8: tolerance 1e-5·q).
#[test]
fn the_modified_equations_solution_solves_it() {
    for (h, q) in [(0.5f64.powi(8), 1.0), (0.5f64.powi(3), 10.0), (0.5, 10.0)] {
        for method in [Method::HeavyBall, Method::Nesterov] {
            let alpha = method.alpha(LAMBDA);
            let u = |t: f64| modified_equation(q, LAMBDA, alpha, h, 1.0, t);
            let d = 1e-4;
            assert!((u(0.0) - 1.0).abs() < 1e-12);
            let v0 = (u(1e-7) - u(-1e-7)) / 2e-7;
            assert!((v0 - initial_velocity(q, LAMBDA, alpha, 1.0)).abs() < 1e-6, "{method:?} h {h}: u̇(0) = {v0}");
            for t in [0.1, 0.4, 0.9] {
                let (du, ddu) = ((u(t + d) - u(t - d)) / (2.0 * d), (u(t + d) - 2.0 * u(t) + u(t - d)) / (d * d));
                let residual = h * alpha * ddu + (1.0 - LAMBDA) * du + q * u(t);
                assert!(residual.abs() < 1e-5 * q, "{method:?} h {h} q {q} t {t}: residual {residual:e}");
            }
        }
    }
}

/// Heavy ball and Nesterov at fixed λ approach the rescaled gradient flow as O(h): the slope of
/// log error against log h over h = 2⁻⁶ … 2⁻¹⁰ is 1 up to the next term of the expansion
/// (E = C·h + D·h² gives a slope within 1 ± 2⁻⁶·|D/C|, so [0.95, 1.1] allows |D/C| up to 3); and
/// the modified equation is closer than the flow at every step size. On both backends.
#[test]
fn momentum_tracks_the_gradient_flow_to_first_order_and_the_modified_equation_closer() {
    for backend in backends(common::gpu_part!()) {
        for method in [Method::HeavyBall, Method::Nesterov] {
            let mut rows = Vec::new();
            for e in 6..=10 {
                let h = 0.5f64.powi(e);
                let (flow, modified) = errors(backend, method, LAMBDA, h, &Q, &U0, 1.0).unwrap();
                assert!(modified < flow, "{method:?} on the {} at h = 2^-{e}: {modified:e} ≥ {flow:e}", backend.name());
                rows.push((h.log2(), flow.log2()));
            }
            let n = rows.len() as f64;
            let (mx, my) = (rows.iter().map(|r| r.0).sum::<f64>() / n, rows.iter().map(|r| r.1).sum::<f64>() / n);
            let slope = rows.iter().map(|r| (r.0 - mx) * (r.1 - my)).sum::<f64>()
                / rows.iter().map(|r| (r.0 - mx).powi(2)).sum::<f64>();
            eprintln!("{method:?} on the {}: error ∝ h^{slope:.4}", backend.name());
            assert!((0.95..=1.1).contains(&slope), "{method:?}: slope {slope}");
        }
    }
}

/// The CPU reference, and the GPU's fused update when `with_gpu`.
fn backends(with_gpu: bool) -> Vec<Backend<'static>> {
    let mut out = vec![Backend::Cpu];
    if with_gpu {
        out.push(Backend::Gpu(common::gpu()));
    }
    out
}

fn sgd(setup: &str) -> gradflow::optim::OptimizerSetup {
    toml::from_str::<gradflow::optim::Optimizer>(setup).unwrap().into()
}

/// On ½(x² + κy²) gradient descent with h = 1/κ removes y in one step and shrinks x by exactly
/// 1 − 1/κ per step; heavy ball with Polyak's parameters (h = 4/(√κ + 1)², λ = ρ², with
/// ρ = (√κ − 1)/(√κ + 1)) converges at ρ per step, 0.818 for κ = 100 against GD's 0.99. Both on
/// the GPU's fused update and the CPU reference. f32 iterates: n steps carry ≤ 2n·u relative.
#[test]
fn quadratics_converge_at_the_rates_the_course_derives() {
    use gradflow::course::descent::run_optimizer;
    use gradflow::course::surfaces::Surface;
    for backend in backends(common::gpu_part!()) {
        for kappa in [10.0f64, 100.0] {
            let s = Surface::Quadratic { kappa };
            let xs = run_optimizer(backend, &sgd(&format!("type='sgd'\nlr={}", 1.0 / kappa)), &[1.0, 1.0], 50, |p| {
                s.gradient(p[0], p[1]).to_vec()
            })
            .unwrap();
            for (n, x) in xs.iter().enumerate().skip(1) {
                let want = (1.0 - 1.0 / kappa).powi(n as i32);
                assert!((x[0] - want).abs() <= 2.0 * n as f64 * 6e-8 * want, "κ {kappa} GD x_{n} = {} vs {want}", x[0]);
                assert!(x[1].abs() <= 1e-7, "κ {kappa} GD y_{n} = {}", x[1]);
            }
        }
        let kappa = 100.0f64;
        let rho = (kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0);
        let (h, lambda) = (4.0 / (kappa.sqrt() + 1.0).powi(2), rho * rho);
        let s = Surface::Quadratic { kappa };
        let heavy = format!("type='sgd'\nlr={h}\nmomentum={{ value = {lambda}, form = 'heavy-ball' }}");
        let xs = run_optimizer(backend, &sgd(&heavy), &[1.0, 1.0], 40, |p| s.gradient(p[0], p[1]).to_vec()).unwrap();
        let norm = |n: usize| xs[n].iter().map(|v| v * v).sum::<f64>().sqrt();
        // Both modes share the double root ρ, so ‖x_n‖ ~ n·ρⁿ and the ratio over 20 steps is
        // ρ·2^(1/20) = 1.035ρ; allow [ρ, 1.05ρ].
        let measured = (norm(40) / norm(20)).powf(1.0 / 20.0);
        eprintln!("heavy ball on κ = 100 ({}): rate {measured:.4}, theory {rho:.4}", backend.name());
        assert!(measured >= rho && measured <= 1.05 * rho, "rate {measured} vs ρ = {rho}");
    }
}

/// Gradient descent near the saddle 5x² − y²: x shrinks by 1 − 10h, y grows by 1 + 2h each step,
/// so a start just off the stable manifold leaves along y; and full-batch GD on the line fit
/// ends at the normal equations' solution.
#[test]
fn descent_leaves_the_saddle_and_solves_least_squares() {
    use gradflow::course::descent::run_optimizer;
    use gradflow::course::surfaces::{LineFit, Surface};
    for backend in backends(common::gpu_part!()) {
        let h = 0.05f64;
        let xs = run_optimizer(backend, &sgd(&format!("type='sgd'\nlr={h}")), &[1.0, 0.01], 40, |p| {
            Surface::Saddle.gradient(p[0], p[1]).to_vec()
        })
        .unwrap();
        for (n, x) in xs.iter().enumerate() {
            let (wx, wy) = ((1.0 - 10.0 * h).powi(n as i32), 0.01f32 as f64 * (1.0 + 2.0 * h).powi(n as i32));
            let tol = 2.0 * (n + 1) as f64 * 6e-8;
            assert!((x[0] - wx).abs() <= tol * wx && (x[1] - wy).abs() <= tol * wy, "step {n}: {x:?} vs ({wx}, {wy})");
        }
        let fit = LineFit::new(50, 0.1, 3);
        let all: Vec<usize> = (0..50).collect();
        let xs = run_optimizer(backend, &sgd("type='sgd'\nlr=0.5"), &[0.0, 0.0], 3000, |p| {
            fit.gradient(p[0], p[1], &all).to_vec()
        })
        .unwrap();
        let (a, b) = fit.solution();
        let end = xs.last().unwrap();
        // The normal matrix's condition number is ~20 here, so 3000 steps at 0.5 leave a contraction
        // error far below f32's; what remains is f32 rounding of the gradient sums (~50·u).
        assert!((end[0] - a).abs() < 1e-5 && (end[1] - b).abs() < 1e-5, "{end:?} vs ({a}, {b})");
    }
}

/// Dauphin et al.'s point about Newton's method, on a 27-parameter tanh network (4-3-3, random
/// data, cross-entropy) where Levenberg–Marquardt on ½‖∇L‖² finds a saddle (‖∇L‖ ≤ 1e-9,
/// index > 0). From 1e-3 off it, 30 steps each: Newton converges to a critical point at the
/// saddle's loss (the negative curvature flips its step uphill), gradient descent barely moves,
/// and saddle-free Newton (|H|⁻¹ on a Lanczos subspace, |θ| floored at 0.1·max|θ|) leaves with
/// the loss falling every step.
#[test]
fn newton_is_drawn_to_a_saddle_and_saddle_free_newton_escapes_it() {
    use gradflow::course::critical::{
        find_critical_point, grad_norm_and_loss, newton_step, saddle_free_newton_step, take_step,
    };
    use gradflow::data::Dataset;
    use gradflow::exec::hessian::Hessian;
    use gradflow::spec::{LayerSpec, Loss, Model};
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut r = StdRng::seed_from_u64(1);
    let n = 30;
    let x: Vec<f32> = (0..n * 4).map(|_| r.random_range(-1.0..1.0)).collect();
    let labels: Vec<u32> = (0..n).map(|_| r.random_range(0..3)).collect();
    let data = Dataset::new(x, labels, 4, 3, "random points").unwrap();
    let l = |out| LayerSpec::Linear { out, bias: true };
    let model = Model::new(4, vec![l(3), LayerSpec::Tanh, l(3)]).unwrap();
    let mut p = model.init_params(3);
    p.iter_mut().for_each(|v| *v *= 3.0);
    let mut h = Hessian::new(model, Loss::CrossEntropy, &p, &data, n).unwrap();
    let saddle = find_critical_point(&mut h, 200, 1e-10).unwrap();
    assert!(saddle.grad_norm <= 1e-9 && saddle.index > 0.0, "{saddle:?}");
    let start: Vec<f64> =
        saddle.point.iter().enumerate().map(|(i, v)| v + 1e-3 * (((i * 7919) % 13) as f64 / 6.0 - 1.0)).collect();
    let mut end = Vec::new();
    for method in ["Newton", "gradient descent", "saddle-free Newton"] {
        h.set_point(&start).unwrap();
        let mut losses = vec![grad_norm_and_loss(&mut h).unwrap().1];
        for _ in 0..30 {
            let step = match method {
                "Newton" => newton_step(&mut h, 1e-6).unwrap(),
                "gradient descent" => h.evaluate(&vec![0.0; 27]).unwrap().grad.iter().map(|g| -0.5 * g).collect(),
                _ => saddle_free_newton_step(&mut h, 27, 0.1).unwrap(),
            };
            take_step(&mut h, &step).unwrap();
            losses.push(grad_norm_and_loss(&mut h).unwrap().1);
        }
        if method == "saddle-free Newton" {
            assert!(losses.windows(2).all(|w| w[1] <= w[0] + 1e-12), "saddle-free Newton's loss rose: {losses:?}");
        }
        let (g, loss) = grad_norm_and_loss(&mut h).unwrap();
        eprintln!(
            "{method}: after 30 steps ‖∇L‖ {g:.2e}, loss {loss:.6} (saddle {:.6}, index {:.3})",
            saddle.loss, saddle.index
        );
        end.push((g, loss));
    }
    let (newton, gd, sfn) = (end[0], end[1], end[2]);
    assert!(newton.0 < 1e-8 && (newton.1 - saddle.loss).abs() < 1e-6, "Newton: {newton:?}");
    assert!(saddle.loss - gd.1 < 1e-3, "gradient descent left fast: {gd:?}");
    assert!(saddle.loss - sfn.1 > 0.1 && sfn.1 < gd.1, "saddle-free Newton: {sfn:?}");
    // Saddle-free Newton again with its Lanczos products on the GPU (f32 R-operator): the same
    // escape, the loss falling at every step, within f32 rounding of the f64 run's end.
    if !common::gpu_part!() {
        return;
    }
    h.use_gpu(std::sync::Arc::new(common::gpu().clone())).unwrap();
    h.set_point(&start).unwrap();
    let mut last = grad_norm_and_loss(&mut h).unwrap().1;
    for _ in 0..30 {
        let step = saddle_free_newton_step(&mut h, 27, 0.1).unwrap();
        take_step(&mut h, &step).unwrap();
        let loss = grad_norm_and_loss(&mut h).unwrap().1;
        assert!(loss <= last + 1e-9, "saddle-free Newton on the GPU: the loss rose to {loss}");
        last = loss;
    }
    eprintln!("saddle-free Newton with GPU products: loss {last:.6} (CPU products {:.6})", sfn.1);
    assert!((last - sfn.1).abs() < 1e-3, "GPU {last} vs CPU {}", sfn.1);
}

/// Saxe et al.: a three-layer linear network from small weights learns the modes of its
/// input-output map one at a time in order of strength (3, 1.8, 1.1, 0.7, 0.45, 0.3), each after
/// a plateau, on the GPU and the CPU reference alike (the same step for every mode, give or take
/// one: f32 rounding of different summation orders). The example's setup: modes of close
/// strength can swap with another random start (the learning time also grows with the log of
/// the mode's initial overlap), so the strengths are spread by factors of 1.5–1.7.
#[test]
fn a_deep_linear_network_learns_its_modes_strongest_first() {
    use gradflow::course::deep_linear::{deep_linear_model, learning_times, modes_dataset};
    use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
    use gradflow::optim::Sgd;
    use gradflow::spec::Loss;
    let data = modes_dataset(&[3.0, 1.8, 1.1, 0.7, 0.45, 0.3]).unwrap();
    let model = deep_linear_model(6, 3).unwrap();
    let mut p0 = model.init_params(0);
    p0.iter_mut().for_each(|v| *v *= 0.1);
    let mut times = Vec::new();
    let mut nets: Vec<Box<dyn Network>> =
        vec![Box::new(CpuNetwork::new(model.clone(), Loss::Mse, Sgd::new(2.0), p0.clone()).unwrap())];
    if common::gpu_part!() {
        let gpu = std::sync::Arc::new(common::gpu().clone());
        nets.push(Box::new(GpuNetwork::new(gpu, model.clone(), Loss::Mse, Sgd::new(2.0), &p0, 6).unwrap()));
    }
    for mut net in nets {
        net.set_train_data(&data).unwrap();
        let (learned, losses) = learning_times(net.as_mut(), &data, 1500).unwrap();
        let learned: Vec<usize> = learned.iter().map(|s| s.expect("every mode learned in 1500 steps")).collect();
        assert!(learned.windows(2).all(|w| w[0] < w[1]), "modes out of order: {learned:?}");
        // A plateau before each of the weaker modes: between consecutive learning times the loss
        // moves less in the first half of the gap than in the second (it waits, then drops).
        for w in learned.windows(2).skip(1) {
            let (a, b) = (w[0], w[1]);
            let mid = (a + b) / 2;
            assert!(losses[a] - losses[mid] < losses[mid] - losses[b], "no plateau between steps {a} and {b}");
        }
        times.push(learned);
    }
    if let [cpu, gpu] = &times[..] {
        assert!(cpu.iter().zip(gpu).all(|(a, b)| a.abs_diff(*b) <= 1), "CPU {cpu:?} GPU {gpu:?}");
    }
}

/// Newton's method is drawn to the saddle of 5x² − y²; gradient descent leaves it; saddle-free
/// Newton leaves it fastest. From (1, 0.01): Newton's step −H⁻¹∇f = −(x, y) lands on the saddle
/// in one step; GD with h = 0.05 scales (x, y) by (0.5, 1.1); saddle-free Newton −|H|⁻¹∇f =
/// (−x, +y) removes x and doubles y each step. Exact in f64 up to a few roundings.
#[test]
fn newton_lands_on_the_saddle_of_5x2_minus_y2_and_saddle_free_newton_doubles_away() {
    use gradflow::course::critical::eigen_step;
    use gradflow::course::surfaces::Surface;
    use gradflow::spectrum::symmetric_eigen;
    let s = Surface::Saddle;
    let step = |p: [f64; 2], saddle_free: bool| -> [f64; 2] {
        let h = s.hessian(p[0], p[1]);
        let (values, vectors) = symmetric_eigen(&[h[0][0], h[0][1], h[1][0], h[1][1]], 2);
        let d = eigen_step(&s.gradient(p[0], p[1]), &values, &vectors, 1e-12, saddle_free);
        [p[0] + d[0], p[1] + d[1]]
    };
    let newton = step([1.0, 0.01], false);
    assert!(newton[0].abs() < 1e-15 && newton[1].abs() < 1e-15, "Newton: {newton:?}");
    let mut sfn = [1.0, 0.01];
    let mut gd = [1.0f64, 0.01f64];
    for n in 1..=10 {
        sfn = step(sfn, true);
        let g = s.gradient(gd[0], gd[1]);
        gd = [gd[0] - 0.05 * g[0], gd[1] - 0.05 * g[1]];
        assert!(
            sfn[0].abs() < 1e-15 && (sfn[1] - 0.01 * 2f64.powi(n)).abs() < 1e-14 * 2f64.powi(n),
            "SFN {n}: {sfn:?}"
        );
        assert!((gd[1] - 0.01 * 1.1f64.powi(n)).abs() < 1e-15 * 1.1f64.powi(n) * 10.0, "GD {n}: {gd:?}");
        assert!(sfn[1] > gd[1], "saddle-free Newton leaves faster");
    }
}
