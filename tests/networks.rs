//! Whole networks with batch norm and residual blocks: PyTorch's golden training runs on both
//! paths, the CPU reference's gradients against central finite differences in f64, the GPU's
//! gradients against the CPU's on a deep residual MLP, running statistics, and bad models.

mod common;

use common::golden::{cases_of, check, golden_optimizer, load, mlp_bn_model, state_of, trajectory_tol, Case};
use common::*;
use gradflow::data::Dataset;
use gradflow::exec::cpu_network::loss_and_grads;
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::optim::Optimizer;
use gradflow::spec::{LayerSpec, Loss, Model, NormState};

fn layers(toml_text: &str) -> Vec<LayerSpec> {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    toml::from_str::<L>(toml_text).unwrap().layers
}

struct RunResult {
    losses: Vec<f32>,
    params: Vec<f32>,
    norm: NormState,
    eval_logits: Vec<f32>,
}

/// The golden protocol: in-order batches of 64 (the last may be short), `epochs` epochs.
fn golden_run(net: &mut dyn Network, c: &Case, x: &[f32], labels: &[u32]) -> RunResult {
    let n = labels.len();
    let batch = c.param("batch_size") as usize;
    let data = Dataset::new(x.to_vec(), labels.to_vec(), 20, 5, "golden x").unwrap();
    net.set_train_data(&data).unwrap();
    let mut losses = Vec::new();
    for _ in 0..c.param("epochs") as usize {
        for start in (0..n).step_by(batch) {
            let rows: Vec<u32> = (start as u32..(start + batch).min(n) as u32).collect();
            net.train_step(&rows).unwrap();
            losses.push(net.last_loss().unwrap());
        }
    }
    RunResult {
        losses,
        params: net.params().unwrap(),
        norm: net.norm_state().unwrap(),
        eval_logits: net.predict(x, n).unwrap(),
    }
}

/// Biases of Linear layers whose output feeds only batch norms: batch norm subtracts the batch
/// mean, so their gradient is exactly zero and what PyTorch (or we) compute is rounding noise of
/// order 1e-9 (f32) or 1e-17 (f64). SGD scales that noise by lr and the biases stay put; AdaGrad,
/// RMSprop and Adam divide by its own size and move them by steps of about lr in directions that
/// rounding chooses. Their values, and the running means and eval logits that carry them, are
/// therefore not reproducible by any implementation that rounds differently.
fn noise_driven_biases(model: &Model) -> Vec<String> {
    use gradflow::spec::Op;
    let mut out = Vec::new();
    for (s, stage) in model.stages.iter().enumerate() {
        if let Op::Dense { bias: Some(_), act, .. } = stage.op {
            if act.kind != gradflow::spec::Activation::Identity {
                continue;
            }
            let readers: Vec<_> = model.stages.iter().filter(|t| t.reads().contains(&(s + 1))).collect();
            if !readers.is_empty() && readers.iter().all(|t| matches!(t.op, Op::BatchNorm { .. })) {
                out.push(format!("{}.bias", stage.name));
                out.extend(readers.iter().map(|t| format!("{}.running_mean", t.name)));
            }
        }
    }
    out
}

/// The most one step of `opt` can move a parameter whose gradient is noise: AdaGrad lr (|g|/√Σg²
/// ≤ 1), RMSprop lr/√(1 − α), Adam lr·max(1, (1 − β₁)/√(1 − β₂)) (Kingma & Ba, §2.1).
fn max_noise_step(opt: &Optimizer) -> Option<f64> {
    match opt.normalized() {
        Optimizer::Sgd(_) => None,
        Optimizer::Adagrad(a) => Some(a.lr),
        Optimizer::Rmsprop(r) => Some(r.lr / (1.0 - r.alpha).sqrt()),
        Optimizer::Adam(a) => Some(a.lr * f64::max(1.0, (1.0 - a.betas[0]) / (1.0 - a.betas[1]).sqrt())),
        Optimizer::Adamw(a) => Some(a.lr * f64::max(1.0, (1.0 - a.betas[0]) / (1.0 - a.betas[1]).sqrt())),
    }
}

#[test]
fn golden_bn_training_runs_on_both_paths() {
    let with_gpu = gpu_part!();
    let names = cases_of("training_run");
    assert_eq!(names.len(), 7, "one golden training run per optimizer");
    let model = mlp_bn_model();
    let noisy = noise_driven_biases(&model);
    assert_eq!(noisy, ["0.bias", "1.running_mean", "3.bias", "4.running_mean"]);
    for name in names {
        let c = load(&name);
        let x = c.f32("x");
        let labels: Vec<u32> = c.t("y").iter().map(|&v| v as u32).collect();
        let opt = golden_optimizer(&c);
        let steps = c.t("losses").len();
        // Tolerance: `trajectory_tol` (steps·K·u with K = 64: batch 64, width 64; measured: SGD-family
        // runs use at most 1.1 % of it).
        let tol = trajectory_tol(steps, 64);
        let noise = max_noise_step(&opt).map(|s| s * steps as f64);
        let (p0, norm0) = state_of(&model, &c, "init");
        let (p_final, norm_final) = state_of(&model, &c, "final");
        let cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, opt.clone(), p0.clone()).unwrap();
        let mut nets: Vec<(&str, Box<dyn Network>)> = vec![("cpu", Box::new(cpu_net))];
        if with_gpu {
            let gpu_net = GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, opt.clone(), &p0, 64).unwrap();
            nets.push(("gpu", Box::new(gpu_net)));
        }
        for (path, mut net) in nets {
            let what = |t: &str| format!("{name} {path} {t}");
            net.set_norm_state(&norm0).unwrap();
            let r = golden_run(net.as_mut(), &c, &x, &labels);
            let mut worst = check(&what("losses"), &r.losses, c.t("losses"), tol, 0.0, 0.0);
            let tensors =
                model.params.iter().map(|t| (t, &r.params)).chain(model.running.iter().map(|t| (t, &r.norm.running)));
            for (t, flat) in tensors {
                let got = &flat[t.offset..t.offset + t.len];
                let want = c.t(&format!("final.{}", t.name));
                let extra = if noisy.contains(&t.name) { noise.unwrap_or(0.0) } else { 0.0 };
                worst = worst.max(check(&what(&t.name), got, want, tol, 0.1, extra));
            }
            assert_eq!(r.norm.batches_tracked, norm_final.batches_tracked, "{}", what("num_batches_tracked"));
            if noise.is_none() {
                worst = worst.max(check(&what("eval_logits"), &r.eval_logits, c.t("eval_logits"), tol, 1.0, 0.0));
            } else {
                assert!(r.eval_logits.iter().all(|v| v.is_finite()), "{}", what("eval logits finite"));
            }
            // The eval path on PyTorch's own final state, for every optimizer.
            net.set_params(&p_final).unwrap();
            net.set_norm_state(&norm_final).unwrap();
            let logits = net.predict(&x, labels.len()).unwrap();
            worst = worst.max(check(&what("eval_logits from final state"), &logits, c.t("eval_logits"), tol, 1.0, 0.0));
            eprintln!("{name} {path}: worst share of bound {worst:.3}");
        }
    }
}

fn gpu_arc() -> std::sync::Arc<gradflow::kernels::Gpu> {
    std::sync::Arc::new(gpu().clone())
}

/// A small model with every new piece: batch norm with a fused activation, a residual block
/// without and one with a projection, nested layers, smooth activations (finite differences
/// need no kinks).
fn residual_bn_model() -> Model {
    Model::new(
        6,
        layers(
            "layers = [
               { type = 'linear', out = 8 }, { type = 'tanh' },
               { type = 'residual', layers = [
                   { type = 'batch-norm' }, { type = 'gelu' }, { type = 'linear', out = 8 },
                   { type = 'batch-norm', momentum = 'none' }, { type = 'tanh' } ] },
               { type = 'residual', projection = true, layers = [
                   { type = 'linear', out = 5 }, { type = 'sigmoid' }, { type = 'batch-norm' } ] },
               { type = 'linear', out = 3 } ]",
        ),
    )
    .unwrap()
}

#[test]
fn state_dict_names_follow_the_pytorch_module_tree() {
    let model = residual_bn_model();
    let names: Vec<&str> = model.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "2.body.0.weight",
            "2.body.0.bias",
            "2.body.2.weight",
            "2.body.2.bias",
            "2.body.3.weight",
            "2.body.3.bias",
            "3.body.0.weight",
            "3.body.0.bias",
            "3.body.2.weight",
            "3.body.2.bias",
            "3.projection.weight",
            "4.weight",
            "4.bias"
        ]
    );
    let running: Vec<&str> = model.running.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        running,
        [
            "2.body.0.running_mean",
            "2.body.0.running_var",
            "2.body.3.running_mean",
            "2.body.3.running_var",
            "3.body.2.running_mean",
            "3.body.2.running_var"
        ]
    );
    assert_eq!(model.params.iter().find(|t| t.name == "3.projection.weight").unwrap().shape, [5, 8]);
    assert!(model.is_norm_param("2.body.3.weight") && !model.is_norm_param("2.body.2.weight"));
}

#[test]
fn cpu_reference_gradients_match_central_differences_in_f64() {
    let model = residual_bn_model();
    let rows = 10;
    let mut r = rng(21);
    let params: Vec<f64> = model.init_params(3).iter().map(|&v| v as f64).collect();
    // Move γ and β off 1 and 0 so their gradients are generic.
    let mut params = params;
    for t in model.params.iter().filter(|t| t.norm) {
        for v in &mut params[t.offset..t.offset + t.len] {
            *v += uniform(&mut r, 1, -0.5, 0.5)[0] as f64;
        }
    }
    let x: Vec<f64> = uniform(&mut r, rows * 6, -2.0, 2.0).iter().map(|&v| v as f64).collect();
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
    let running = model.init_norm_state().running;
    for loss in [Loss::CrossEntropy, Loss::Mse] {
        let f = |p: &[f64]| loss_and_grads(&model, loss, p, &running, &x, &labels, rows).unwrap().0;
        let (_, grads) = loss_and_grads(&model, loss, &params, &running, &x, &labels, rows).unwrap();
        // Central differences with h = 1e-5: truncation h²·|L'''|/6 ≈ 1e-11 and rounding
        // u₆₄·|L|/h ≈ 1e-11, so 1e-8 absolute is three orders of magnitude of headroom.
        let h = 1e-5;
        let mut worst = 0.0f64;
        let mut checked = 0;
        for t in &model.params {
            for i in t.offset..t.offset + t.len {
                let mut p = params.clone();
                p[i] += h;
                let up = f(&p);
                p[i] -= 2.0 * h;
                let down = f(&p);
                let fd = (up - down) / (2.0 * h);
                let err = (fd - grads[i]).abs();
                assert!(
                    err < 1e-8,
                    "{loss:?} {}[{}]: analytic {} vs central difference {fd}",
                    t.name,
                    i - t.offset,
                    grads[i]
                );
                worst = worst.max(err);
                checked += 1;
            }
        }
        let largest = grads.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        assert!(largest > 1e-3, "gradients are not trivially zero");
        eprintln!("{loss:?}: {checked} parameters, worst |analytic − central difference| {worst:e} (largest gradient {largest:e})");
    }
}

/// A deep residual MLP: `blocks` blocks of [Linear (no bias), BN+gelu, Linear] around an identity
/// skip. The Linear before each batch norm has no bias, as usual: batch norm would cancel it and
/// its gradient would be exactly zero (then only rounding noise is left to compare).
fn deep_residual(width: usize, blocks: usize) -> Model {
    let block = format!(
        "{{ type = 'residual', layers = [{{ type = 'linear', out = {width}, bias = false }}, {{ type = 'batch-norm' }}, {{ type = 'gelu' }}, {{ type = 'linear', out = {width} }}] }}"
    );
    let body = vec![block; blocks].join(", ");
    Model::new(
        16,
        layers(&format!("layers = [{{ type = 'linear', out = {width} }}, {body}, {{ type = 'linear', out = 4 }}]")),
    )
    .unwrap()
}

#[test]
fn gpu_gradients_match_the_cpu_on_a_deep_residual_mlp() {
    require_gpu!();
    let (width, blocks, rows) = (48, 10, 96);
    let model = deep_residual(width, blocks);
    let params = model.init_params(9);
    let mut r = rng(4);
    let x = uniform(&mut r, rows * 16, -1.0, 1.0);
    let labels: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % 4).collect();
    let data = Dataset::new(x, labels, 16, 4, "random").unwrap();
    let batch: Vec<u32> = (0..rows as u32).collect();
    let sgd = gradflow::optim::Sgd::new(0.0);
    let mut cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let mut gpu_net = GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, sgd, &params, rows).unwrap();
    for net in [&mut cpu_net as &mut dyn Network, &mut gpu_net] {
        net.set_train_data(&data).unwrap();
        net.train_step(&batch).unwrap();
    }
    let (gc, gg) = (cpu_net.grads().unwrap(), gpu_net.grads().unwrap());
    // Each of the 2·blocks + 2 layers the gradient passes adds an f32 error of about K·u
    // (K ≤ 96 terms) relative to the gradient scale of its tensor; batch norm's backward is a
    // difference of such sums, so the error is measured against each tensor's largest entry:
    // bound = layers·K·u·max|g_tensor| (measured below, printed).
    let layers_passed = (2 * blocks + 3) as f64;
    let mut worst_share = 0.0f64;
    for t in &model.params {
        let c = &gc[t.offset..t.offset + t.len];
        let g = &gg[t.offset..t.offset + t.len];
        let scale = c.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        let bound = layers_passed * rows as f64 * EPS * scale + 1e-30;
        for (a, b) in c.iter().zip(g) {
            let err = (*a as f64 - *b as f64).abs();
            assert!(err <= bound, "{}: cpu {a} gpu {b}, |error| {err:e} > bound {bound:e}", t.name);
            worst_share = worst_share.max(err / bound);
        }
    }
    // Forward values (loss, running statistics) carry the same layers·K·u relative error.
    let forward_bound = layers_passed * rows as f64 * EPS;
    let (lc, lg) = (cpu_net.last_loss().unwrap(), gpu_net.last_loss().unwrap());
    assert!((((lc - lg) / lc).abs() as f64) <= forward_bound, "loss cpu {lc} gpu {lg}");
    let (nc, ng) = (cpu_net.norm_state().unwrap(), gpu_net.norm_state().unwrap());
    let diff = nc.running.iter().zip(&ng.running).map(|(a, b)| (a - b).abs() / (a.abs() + 1.0)).fold(0.0, f32::max);
    assert!((diff as f64) <= forward_bound, "running statistics differ by {diff}");
    eprintln!("deep residual ({blocks} blocks, width {width}): worst gradient error {worst_share:.4} of bound");
}

#[test]
fn running_statistics_are_the_momentum_average_or_the_cumulative_one() {
    // BatchNorm on the input itself: the running statistics are then functions of the data
    // alone, computed here independently in f64.
    let (n, d, batch) = (90, 5, 20); // batches of 20, 20, 20, 20, 10
    let mut r = rng(8);
    let x: Vec<f32> = (0..n * d).map(|i| 3.0 * (i % d) as f32 + uniform(&mut r, 1, -1.0, 1.0)[0]).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let data = Dataset::new(x.clone(), labels, d, 2, "random").unwrap();
    let with_gpu = gpu_part!();
    for momentum in ["0.25", "'none'"] {
        let model = Model::new(
            d,
            layers(&format!(
                "layers = [{{ type = 'batch-norm', momentum = {momentum} }}, {{ type = 'linear', out = 2 }}]"
            )),
        )
        .unwrap();
        let params = model.init_params(1);
        let (mut mean, mut var) = (vec![0.0f64; d], vec![1.0f64; d]);
        let mut k = 0u64;
        for start in (0..n).step_by(batch) {
            let m = batch.min(n - start);
            k += 1;
            let f = if momentum == "'none'" { 1.0 / k as f64 } else { 0.25 };
            for j in 0..d {
                let col: Vec<f64> = (start..start + m).map(|i| x[i * d + j] as f64).collect();
                let mu = col.iter().sum::<f64>() / m as f64;
                let unbiased = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (m as f64 - 1.0);
                mean[j] = (1.0 - f) * mean[j] + f * mu;
                var[j] = (1.0 - f) * var[j] + f * unbiased;
            }
        }
        let sgd = gradflow::optim::Sgd::new(0.1);
        let cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
        let mut nets: Vec<(&str, Box<dyn Network>)> = vec![("cpu", Box::new(cpu_net))];
        if with_gpu {
            let gpu_net = GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, sgd, &params, batch).unwrap();
            nets.push(("gpu", Box::new(gpu_net)));
        }
        for (path, mut net) in nets {
            net.set_train_data(&data).unwrap();
            for start in (0..n).step_by(batch) {
                let rows: Vec<u32> = (start as u32..(start + batch).min(n) as u32).collect();
                net.train_step(&rows).unwrap();
            }
            let s = net.norm_state().unwrap();
            assert_eq!(s.batches_tracked, [5], "{path} num_batches_tracked");
            let (rm, rv) = (&model.running[0], &model.running[1]);
            // Five blends, each a few roundings of values of size |mean| + spread: 64u relative.
            let bound = |w: &[f64]| w.iter().map(|v| 64.0 * EPS * (v.abs() + 1.0)).collect::<Vec<_>>();
            assert_within(
                &format!("{path} momentum {momentum} running_mean"),
                &s.running[rm.offset..rm.offset + d],
                &mean,
                &bound(&mean),
            );
            assert_within(
                &format!("{path} momentum {momentum} running_var"),
                &s.running[rv.offset..rv.offset + d],
                &var,
                &bound(&var),
            );
        }
    }
}

#[test]
fn a_batch_of_one_in_training_mode_is_an_error_on_both_paths() {
    let model = Model::new(
        3,
        layers("layers = [{ type = 'linear', out = 4 }, { type = 'batch-norm' }, { type = 'linear', out = 2 }]"),
    )
    .unwrap();
    let params = model.init_params(0);
    let data = Dataset::new(vec![0.5; 12], vec![0, 1, 0, 1], 3, 2, "tiny").unwrap();
    let sgd = gradflow::optim::Sgd::new(0.1);
    let cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let mut nets: Vec<Box<dyn Network>> = vec![Box::new(cpu_net)];
    if gpu_part!() {
        nets.push(Box::new(GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, sgd, &params, 4).unwrap()));
    }
    for mut net in nets {
        net.set_train_data(&data).unwrap();
        let e = net.train_step(&[2]).unwrap_err().to_string();
        assert!(e.contains("more than 1 row") && e.contains("layer 1"), "{e}");
        // Eval mode is fine with one row (it uses the running statistics).
        assert_eq!(net.predict(&[0.1, 0.2, 0.3], 1).unwrap().len(), 2);
        net.train_step(&[0, 1]).unwrap();
    }
}

#[test]
fn residual_width_mismatch_is_found_when_the_model_is_built() {
    let e = Model::new(
        8,
        layers("layers = [{ type = 'residual', layers = [{ type = 'linear', out = 5 }, { type = 'relu' }] }]"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("layer 0 (residual)")
            && e.contains("width 8")
            && e.contains("width 5")
            && e.contains("projection = true"),
        "{e}"
    );
    for eps in ["0.0", "1e-50", "inf"] {
        let e = Model::new(8, layers(&format!("layers = [{{ type = 'batch-norm', eps = {eps} }}]")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 0 (batch-norm)") && e.contains("eps"), "{e}");
    }
    let e = Model::new(8, layers("layers = [{ type = 'residual', layers = [] }]")).unwrap_err().to_string();
    assert!(e.contains("layers` is empty"), "{e}");
    let e = toml::from_str::<toml::Table>("layers = [{ type = 'batch-norm', momentum = 'fast' }]")
        .unwrap()
        .try_into::<std::collections::BTreeMap<String, Vec<LayerSpec>>>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("momentum") && e.contains("none"), "{e}");
    // With a projection the same block builds, and its projection has the state-dict name PyTorch's module gives it.
    let m = Model::new(
        8,
        layers("layers = [{ type = 'residual', projection = true, layers = [{ type = 'linear', out = 5 }] }]"),
    )
    .unwrap();
    assert!(m.params.iter().any(|t| t.name == "0.projection.weight" && t.shape == [5, 8]));
}

#[test]
fn at_thirty_layers_the_gradient_reaches_the_first_layer_only_through_residual_blocks() {
    require_gpu!();
    // The configs of `examples/depth.rs`: one step each on the same batch, then the first
    // layer's weight gradient. Plain: each ReLU layer at PyTorch's default init shrinks the
    // signal's second moment by about 6 (Var W = 1/(3·fan_in), ReLU halves), so ~6^-29 of it
    // survives; residual blocks keep an identity path.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut norms = Vec::new();
    for file in ["deep_plain.toml", "deep_residual.toml"] {
        let config = gradflow::config::Config::load(&root.join(file)).unwrap();
        let model = Model::new(64, config.model.layers.clone()).unwrap();
        assert_eq!(model.params.iter().filter(|t| t.name.ends_with("weight")).count(), 30, "{file}: 30 Linear layers");
        let params = model.init_params(config.model.init_seed);
        let mut net =
            GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, config.optimizer.clone(), &params, 64)
                .unwrap();
        let mut r = rng(1);
        let data =
            Dataset::new(uniform(&mut r, 64 * 64, 0.0, 1.0), (0..64).map(|i| i % 10).collect(), 64, 10, "random")
                .unwrap();
        net.set_train_data(&data).unwrap();
        net.train_step(&(0..64).collect::<Vec<u32>>()).unwrap();
        let g = net.grads().unwrap();
        let w0 = &model.params[0];
        norms.push(g[w0.offset..w0.offset + w0.len].iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt());
    }
    eprintln!("first-layer gradient norm: plain {:e}, residual {:e}", norms[0], norms[1]);
    assert!(norms[0] < 1e-8 && norms[1] > 1e-2, "plain {:e}, residual {:e}", norms[0], norms[1]);
}

#[test]
fn gpu_gradient_routing_matches_the_cpu_for_every_way_a_value_is_shared() {
    require_gpu!();
    // Each model shares a value between two readers in a different way, so every accumulate
    // path of the backward pass runs: a batch norm reading a block's input (BN_ACCUMULATE), a
    // Linear+tanh output read by a matmul and a residual sum (fused act' with FLAG_ACCUMULATE and
    // ACT_ACCUMULATE), a projection next to a body, and standalone activations.
    let models = [
        ("bn + projection + cumulative momentum", residual_bn_model()),
        (
            "fused activation shared by a matmul and a sum",
            Model::new(
                6,
                layers(
                    "layers = [{ type = 'linear', out = 8 }, { type = 'tanh' },
                     { type = 'residual', layers = [{ type = 'linear', out = 8 }, { type = 'gelu' }, { type = 'linear', out = 8 }] },
                     { type = 'residual', layers = [{ type = 'linear', out = 8 }, { type = 'sigmoid' }] },
                     { type = 'linear', out = 3 }]",
                ),
            )
            .unwrap(),
        ),
        (
            "standalone activations around a block",
            Model::new(
                6,
                layers(
                    "layers = [{ type = 'linear', out = 8, bias = false }, { type = 'batch-norm' },
                     { type = 'residual', layers = [{ type = 'tanh' }, { type = 'linear', out = 8 }] },
                     { type = 'sigmoid' }, { type = 'linear', out = 3 }]",
                ),
            )
            .unwrap(),
        ),
    ];
    let rows = 37;
    let mut r = rng(12);
    let x = uniform(&mut r, rows * 6, -2.0, 2.0);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
    let data = Dataset::new(x, labels, 6, 3, "random").unwrap();
    let batch: Vec<u32> = (0..rows as u32).collect();
    for (label, model) in models {
        let params = model.init_params(2);
        let sgd = gradflow::optim::Sgd::new(0.1);
        let mut cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
        let mut gpu_net = GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, sgd, &params, rows).unwrap();
        for net in [&mut cpu_net as &mut dyn Network, &mut gpu_net] {
            net.set_train_data(&data).unwrap();
            net.train_step(&batch).unwrap();
        }
        let (gc, gg) = (cpu_net.grads().unwrap(), gpu_net.grads().unwrap());
        // As in the deep test: stages·K·u relative to each tensor's largest gradient. A bias that
        // only batch norm reads has an exactly zero gradient; both paths must give noise below
        // that bound relative to the model's largest gradient.
        let bound_scale = (model.stages.len() * rows) as f64 * EPS;
        let noisy = noise_driven_biases(&model);
        let largest = gc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        for t in model.params.iter().filter(|t| noisy.contains(&t.name)) {
            for v in gc[t.offset..t.offset + t.len].iter().chain(&gg[t.offset..t.offset + t.len]) {
                assert!(
                    (*v as f64).abs() <= bound_scale * largest,
                    "{label} {}: {v} should be 0 up to rounding",
                    t.name
                );
            }
        }
        for t in model.params.iter().filter(|t| !noisy.contains(&t.name)) {
            let c = &gc[t.offset..t.offset + t.len];
            let scale = c.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
            assert!(scale > 0.0, "{label}: {} has no gradient", t.name);
            for (a, b) in c.iter().zip(&gg[t.offset..t.offset + t.len]) {
                let err = (*a as f64 - *b as f64).abs();
                assert!(err <= bound_scale * scale, "{label} {}: cpu {a} gpu {b}", t.name);
            }
        }
        // And the next step starts from the same parameters and running statistics.
        let (pc, pg) = (cpu_net.params().unwrap(), gpu_net.params().unwrap());
        // Parameters moved by lr·g: their difference is lr times the gradient bound (plus the
        // update's rounding); forward values (running statistics, eval outputs) carry the same
        // stages·K·u relative error as the gradients.
        let lr = 0.1;
        let dp = pc.iter().zip(&pg).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        let p_bound = lr * bound_scale * largest + 2.0 * EPS * pc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        assert!(dp <= p_bound, "{label}: parameters differ by {dp:e} > {p_bound:e}");
        let (nc, ng) = (cpu_net.norm_state().unwrap(), gpu_net.norm_state().unwrap());
        assert_eq!(nc.batches_tracked, ng.batches_tracked);
        let dn = nc.running.iter().zip(&ng.running).map(|(a, b)| (a - b).abs() / (a.abs() + 1.0)).fold(0.0, f32::max);
        assert!((dn as f64) <= bound_scale, "{label}: running statistics differ by {dn}");
        // Eval mode on both.
        let (ec, eg) = (cpu_net.predict(&data.x, rows).unwrap(), gpu_net.predict(&data.x, rows).unwrap());
        let de = ec.iter().zip(&eg).map(|(a, b)| (a - b).abs() / (a.abs() + 1.0)).fold(0.0, f32::max);
        assert!((de as f64) <= bound_scale, "{label}: eval outputs differ by {de}");
    }
}

#[test]
fn streamed_training_data_gives_the_same_bits_as_resident_data() {
    require_gpu!();
    // Data larger than one GPU buffer is kept on the host and each batch uploaded before its
    // step; forced here on a small set, the run must be bit-identical to the resident one.
    let model = residual_bn_model();
    let params = model.init_params(5);
    let mut r = rng(30);
    let data =
        Dataset::new(uniform(&mut r, 200 * 6, -1.0, 1.0), (0..200).map(|i| i % 3).collect(), 6, 3, "random").unwrap();
    let opt: Optimizer = toml::from_str("type = 'adam'\nlr = 0.01").unwrap();
    let run = |stream: bool| {
        let mut net = GpuNetwork::new(gpu_arc(), model.clone(), Loss::CrossEntropy, opt.clone(), &params, 32).unwrap();
        net.set_streaming(stream);
        net.set_train_data(&data).unwrap();
        for s in 0..20u32 {
            let batch: Vec<u32> = (0..32).map(|i| (s * 37 + i * 7) % 200).collect();
            net.train_step(&batch).unwrap();
        }
        (net.params().unwrap(), net.norm_state().unwrap())
    };
    let (resident, streamed) = (run(false), run(true));
    assert!(resident.0.iter().zip(&streamed.0).all(|(a, b)| a.to_bits() == b.to_bits()), "parameters differ");
    assert_eq!(resident.1, streamed.1);
}

for_every_schedule! {
    /// A residual block straight on the network's input reads the input as the product's A and
    /// adds it back through the epilogue's aux binding: a schedule that binds A as a uniform
    /// window must not take that launch (one buffer cannot be a uniform and writable storage in
    /// one dispatch). One step on every schedule, against the CPU reference.
    fn a_residual_block_on_the_input_trains_on_every_schedule(g: &Gpu) {
        let layers: Vec<LayerSpec> = toml::from_str::<toml::Table>(
            "layers = [{ type = 'residual', layers = [{ type = 'linear', out = 64 }] }, { type = 'tanh' }, { type = 'linear', out = 3 }]",
        )
        .unwrap()["layers"]
            .clone()
            .try_into()
            .unwrap();
        let model = Model::new(64, layers).unwrap();
        let data = synthetic(20, 64, 3, 4);
        let params = model.init_params(2);
        let sgd = gradflow::optim::Sgd::new(0.1);
        let mut gpu_net =
            GpuNetwork::new(std::sync::Arc::new(g.clone()), model.clone(), Loss::CrossEntropy, sgd.clone(), &params, 8).unwrap();
        let mut cpu_net = CpuNetwork::new(model.clone(), Loss::CrossEntropy, sgd, params).unwrap();
        let batch: Vec<u32> = (0..8).collect();
        for net in [&mut gpu_net as &mut dyn Network, &mut cpu_net] {
            net.set_train_data(&data).unwrap();
            net.train_step(&batch).unwrap();
        }
        // Two layers of at most 8 rows and 64 terms: within 2·(8 + 64)·u of the largest gradient.
        let (gg, gc) = (gpu_net.grads().unwrap(), cpu_net.grads().unwrap());
        let scale = gc.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
        for (a, b) in gg.iter().zip(&gc) {
            assert!(((a - b).abs() as f64) <= 2.0 * 72.0 * EPS * scale, "gpu {a} cpu {b}");
        }
    }
}
