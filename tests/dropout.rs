//! Dropout: Philox4x32-10 against Random123's known answers (Rust and WGSL), the GPU's mask
//! against the CPU reference's bit for bit, torch's formula statistically (kept fraction, mean of
//! the inverted scaling), a training step GPU against CPU, evaluation as the identity, a resumed
//! run drawing the same masks as an unbroken one, and config errors.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gradflow::data::Dataset;
use gradflow::device::submit;
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::kernels::{DropEntry, DropoutParams};
use gradflow::reference::philox::philox4x32_10;
use gradflow::reference::{dropout_apply, DropoutDraw};
use gradflow::spec::{LayerSpec, Loss, Model};

/// Random123's kat_vectors for philox4x32 10: counter (4 words), key (2 words), expected output.
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    ([0; 4], [0; 2], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

fn layers(text: &str) -> Vec<LayerSpec> {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    toml::from_str::<L>(&format!("layers = {text}")).map(|l| l.layers).unwrap()
}

fn dropout_model() -> Model {
    Model::new(
        12,
        layers(
            "[{ type = 'linear', out = 32 }, { type = 'relu' }, { type = 'dropout', p = 0.3 },
              { type = 'linear', out = 16 }, { type = 'dropout', p = 0.5 }, { type = 'tanh' },
              { type = 'linear', out = 4 }]",
        ),
    )
    .unwrap()
}

#[test]
fn philox_matches_random123_known_answers_in_rust() {
    for (counter, key, want) in KAT {
        assert_eq!(philox4x32_10(counter, key), want, "counter {counter:08x?} key {key:08x?}");
    }
}

/// The raw words of `philox_words` for one counter and key.
fn gpu_words(g: &gradflow::kernels::Gpu, counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let y = g.storage("philox words", 4).unwrap();
    let p = DropoutParams {
        len: 4,
        threshold: counter[0],
        step: counter[1],
        layer: counter[2],
        flags: counter[3],
        key0: key[0],
        key1: key[1],
        scale: 0.0,
    };
    let d = g.dropout(DropEntry::Words, None, &y, p).unwrap();
    submit(g, "philox words", &[&d]).unwrap();
    let words: Vec<u32> = g.read::<f32>(&y, 0, 4).unwrap().iter().map(|v| v.to_bits()).collect();
    words.try_into().unwrap()
}

#[test]
fn philox_matches_random123_known_answers_on_the_gpu() {
    require_gpu!();
    for (counter, key, want) in KAT {
        assert_eq!(gpu_words(gpu(), counter, key), want, "counter {counter:08x?} key {key:08x?}");
    }
}

/// One dropout launch over `x` on the GPU: the result's bits.
fn gpu_dropout(g: &gradflow::kernels::Gpu, x: &[f32], draw: &DropoutDraw) -> Vec<u32> {
    let xb = g.upload("x", x).unwrap();
    let y = g.storage("y", x.len()).unwrap();
    let d = g.dropout(DropEntry::Apply, Some(&xb), &y, DropoutParams::new(draw, x.len(), false)).unwrap();
    submit(g, "dropout", &[&d]).unwrap();
    g.read::<f32>(&y, 0, x.len()).unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_gpu_draws_the_cpu_mask_bit_for_bit() {
    require_gpu!();
    let mut r = rng(5);
    // Odd and prime sizes (partial Philox blocks and workgroups) and one past 2^20.
    for len in [1usize, 7, 257, (1 << 20) + 3] {
        for (p, seed, step, layer) in
            [(0.1f32, 0u64, 0u64, 0usize), (0.5, 0xdead_beef_1234_5678, 12345, 3), (0.9, 7, 1, 9)]
        {
            let draw = DropoutDraw::new(p, seed, step, layer);
            let x = uniform(&mut r, len, -2.0, 2.0);
            let want: Vec<u32> = dropout_apply(&x, &draw.mask(len), draw.scale).iter().map(|v| v.to_bits()).collect();
            let got = gpu_dropout(gpu(), &x, &draw);
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(first.is_none(), "len {len} p {p}: element {first:?} differs");
        }
    }
}

#[test]
fn the_kept_fraction_is_binomial_around_one_minus_p() {
    let n = 1usize << 20;
    for p in [0.1f32, 0.5, 0.9] {
        let draw = DropoutDraw::new(p, 42, 3, 1);
        let kept = draw.mask(n).iter().filter(|&&k| k).count() as f64;
        // Kept ~ Binomial(n, q), q = P(k ≥ ⌈p·2²⁴⌉) for a uniform 24-bit k, within 2⁻²⁴ of 1 − p.
        let q = 1.0 - draw.threshold as f64 / (1u64 << 24) as f64;
        assert!((q - (1.0 - p as f64)).abs() <= 1.0 / (1u64 << 24) as f64, "q {q} for p {p}");
        // 5 standard deviations: a false alarm has probability below 6e-7 per case.
        let bound = 5.0 * (n as f64 * q * (1.0 - q)).sqrt();
        assert!((kept - n as f64 * q).abs() <= bound, "p {p}: kept {kept} of {n}, expected {} ± {bound}", n as f64 * q);
    }
    // p = 0 keeps everything unchanged; p = 1 zeroes everything (torch's nn.Dropout(1.0)).
    let x = [1.5f32, -2.0, 3.25];
    assert_eq!(dropout_apply(&x, &DropoutDraw::new(0.0, 1, 2, 3).mask(3), DropoutDraw::new(0.0, 1, 2, 3).scale), x);
    assert!(DropoutDraw::new(1.0, 1, 2, 3).mask(1000).iter().all(|&k| !k));
}

#[test]
fn the_mean_over_masks_is_the_input_inverted_scaling() {
    let (n, steps) = (64usize, 4000u64);
    let mut r = rng(8);
    let x = uniform(&mut r, n, -1.0, 1.0);
    for p in [0.2f32, 0.5] {
        let mut sum = vec![0.0f64; n];
        for step in 0..steps {
            let draw = DropoutDraw::new(p, 11, step, 2);
            for (s, y) in sum.iter_mut().zip(dropout_apply(&x, &draw.mask(n), draw.scale)) {
                *s += y as f64;
            }
        }
        // E[y] = x and Var[y] = x²·p/(1 − p) (torch's inverted dropout); by the CLT the mean of
        // `steps` draws is within 5 standard errors with probability 1 − 6e-7 per element.
        let q = p as f64 / (1.0 - p as f64);
        for (i, (&xi, s)) in x.iter().zip(&sum).enumerate() {
            let mean = s / steps as f64;
            let bound = 5.0 * (xi as f64).abs() * (q / steps as f64).sqrt() + 1e-6;
            assert!((mean - xi as f64).abs() <= bound, "p {p}, element {i}: mean {mean}, x {xi}, bound {bound}");
        }
    }
}

fn data() -> Dataset {
    synthetic(96, 12, 4, 3)
}

/// The same model with every dropout replaced by an identity: the same parameters and names.
fn without_dropout() -> Model {
    let mut l = dropout_model().layers;
    for s in &mut l {
        if matches!(s, LayerSpec::Dropout { .. }) {
            *s = LayerSpec::Identity;
        }
    }
    Model::new(12, l).unwrap()
}

#[test]
fn dropout_keeps_torchs_sequential_indices_and_has_no_parameters() {
    let m = dropout_model();
    let names: Vec<&str> = m.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]);
    assert_eq!(m.param_len, without_dropout().param_len);
    assert!(m.summary().contains("Dropout(0.3)"), "{}", m.summary());
}

#[test]
fn evaluation_is_the_identity() {
    let m = dropout_model();
    let params = m.init_params(1);
    let d = data();
    let sgd = gradflow::optim::Sgd::new(0.0);
    let mut with = CpuNetwork::new(m.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let mut plain = CpuNetwork::new(without_dropout(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let want = plain.predict(&d.x, d.n).unwrap();
    assert_eq!(with.predict(&d.x, d.n).unwrap(), want, "CPU predict");
    if gpu_part!() {
        let mut g =
            GpuNetwork::new(std::sync::Arc::new(gpu().clone()), m, Loss::CrossEntropy, sgd, &params, 32).unwrap();
        g.set_train_data(&d).unwrap();
        g.train_step(&(0..32).collect::<Vec<u32>>()).unwrap(); // a training step between: eval is still exact
        let mut p2 =
            CpuNetwork::new(without_dropout(), Loss::CrossEntropy, gradflow::optim::Sgd::new(0.0), params).unwrap();
        let got = g.predict(&d.x, d.n).unwrap();
        let want = p2.predict(&d.x, d.n).unwrap();
        // The GPU's products round differently from the CPU's: a few f32 ulps of the logits.
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / (b.abs() + 1.0)).fold(0.0, f32::max);
        assert!((worst as f64) <= 12.0 * 3.0 * EPS, "GPU eval differs from the dropout-free model by {worst}");
    }
    // Training draws masks: the training loss is not the evaluation one.
    let batch: Vec<u32> = (0..32).collect();
    with.set_train_data(&d).unwrap();
    plain.set_train_data(&d).unwrap();
    with.train_step(&batch).unwrap();
    plain.train_step(&batch).unwrap();
    assert_ne!(with.last_loss().unwrap(), plain.last_loss().unwrap());
}

#[test]
fn a_training_step_with_dropout_matches_the_cpu_on_the_gpu() {
    require_gpu!();
    let m = dropout_model();
    let params = m.init_params(2);
    let d = data();
    let rows = 48;
    let batch: Vec<u32> = (0..rows as u32).collect();
    let sgd = gradflow::optim::Sgd::new(0.0);
    let arc = || std::sync::Arc::new(gpu().clone());
    let mut cpu_net = CpuNetwork::new(m.clone(), Loss::CrossEntropy, sgd.clone(), params.clone()).unwrap();
    let mut one = GpuNetwork::new(arc(), m.clone(), Loss::CrossEntropy, sgd.clone(), &params, rows).unwrap();
    let mut many = GpuNetwork::new(arc(), m.clone(), Loss::CrossEntropy, sgd, &params, rows).unwrap();
    for net in [&mut cpu_net as &mut dyn Network, &mut one, &mut many] {
        net.set_dropout_seed(0x5eed);
        net.set_train_data(&d).unwrap();
    }
    // Step by step, and three steps in one submit (per-step slots): the third step's mask.
    for _ in 0..3 {
        cpu_net.train_step(&batch).unwrap();
        one.train_step(&batch).unwrap();
    }
    many.train_steps(&[&batch, &batch, &batch]).unwrap();
    let gc = cpu_net.grads().unwrap();
    // As networks.rs: each layer the gradient passes adds about K·u (K ≤ 48 terms) relative to
    // the tensor's largest entry; 3 Linear layers and the loss. A wrong mask would differ by
    // whole entries.
    let bound_of = |scale: f32| 4.0 * rows as f64 * EPS * scale as f64 + 1e-30;
    for (what, gg) in [("step by step", one.grads().unwrap()), ("one submit", many.grads().unwrap())] {
        for t in &m.params {
            let c = &gc[t.offset..t.offset + t.len];
            let g = &gg[t.offset..t.offset + t.len];
            let bound = bound_of(c.iter().fold(0.0f32, |a, v| a.max(v.abs())));
            for (a, b) in c.iter().zip(g) {
                assert!(((a - b).abs() as f64) <= bound, "{what} {}: cpu {a} gpu {b}, bound {bound:e}", t.name);
            }
        }
    }
}

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("dropout", name)
}

fn gradflow(args: &[&str]) -> (bool, String, String) {
    common::run_gradflow(args)
}

/// configs/digits.toml with dropout, Adam, 2 epochs of 64-row batches (23 steps each).
fn dropout_digits_config(d: &Path, p: &str) -> PathBuf {
    let text = gradflow::config::DEFAULT_CONFIG
        .replace("../data/digits.csv", concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv"))
        .replace("epochs = 30", "epochs = 2")
        .replace("batch_size = 32", "batch_size = 64")
        .replace("type = \"sgd\"\nlr = 0.05\nmomentum = 0.9", "type = \"adam\"\nlr = 0.003");
    let start = text.find("layers = [").unwrap();
    let end = start + text[start..].find("\n]\n").unwrap() + 3;
    let layers = format!(
        "layers = [{{ type = 'linear', out = 32 }}, {{ type = 'relu' }}, {{ type = 'dropout', p = {p} }}, {{ type = 'linear', out = 10 }}]\n"
    );
    let path = d.join("dropout.toml");
    std::fs::write(&path, format!("{}{layers}{}", &text[..start], &text[end..])).unwrap();
    path
}

#[test]
fn a_resumed_run_draws_the_masks_of_an_unbroken_one() {
    let d = dir("resume");
    let config = dropout_digits_config(&d, "0.3");
    let cfg = config.to_str().unwrap();
    let (whole, part) = (d.join("whole.safetensors"), d.join("part.safetensors"));
    let (ok, out, err) = gradflow(&["train", "--cpu", "--config", cfg, "--save", whole.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    // Stop after epoch 1's 23 steps, then resume for epoch 2.
    let (ok, out, err) =
        gradflow(&["train", "--cpu", "--config", cfg, "--max-steps", "23", "--save", part.to_str().unwrap()]);
    assert!(ok && out.contains("stopped after step 23"), "{out}\n{err}");
    let (ok, out, err) = gradflow(&[
        "train",
        "--cpu",
        "--config",
        cfg,
        "--resume",
        part.to_str().unwrap(),
        "--save",
        part.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("resume:"), "{out}\n{err}");
    let (a, b) = (checkpoint_tensors(&whole), checkpoint_tensors(&part));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "tensor {na} differs between the unbroken and the resumed run");
    }
}

#[test]
fn a_probability_outside_zero_one_is_a_config_error() {
    for p in ["1.5", "-0.1", "nan"] {
        let l = layers(&format!("[{{ type = 'linear', out = 4 }}, {{ type = 'dropout', p = {p} }}]"));
        let e = Model::new(3, l).unwrap_err().to_string();
        assert!(e.contains("layer 1 (dropout)") && e.contains("p must be a probability in [0, 1]"), "{e}");
    }
    let d = dir("config");
    let config = dropout_digits_config(&d, "2.0");
    let (ok, _, err) = gradflow(&["train", "--cpu", "--config", config.to_str().unwrap(), "--max-steps", "1"]);
    assert!(!ok && err.contains("dropout") && err.contains("p must be"), "{err}");
    // p = 1 is torch's too: allowed, everything dropped.
    assert!(Model::new(3, layers("[{ type = 'dropout', p = 1.0 }, { type = 'linear', out = 2 }]")).is_ok());
}

#[test]
fn the_hessian_sees_dropout_as_the_identity() {
    let d = data();
    let params = dropout_model().init_params(4);
    let hessian = |m: Model, on_gpu: bool| {
        let mut h = gradflow::exec::hessian::Hessian::new(m, Loss::CrossEntropy, &params, &d, 32).unwrap();
        if on_gpu {
            h.use_gpu(std::sync::Arc::new(gpu().clone())).unwrap();
        }
        let v: Vec<f64> = (0..h.point().len()).map(|i| ((i * 37) % 11) as f64 / 11.0 - 0.5).collect();
        h.evaluate(&v).unwrap()
    };
    // Evaluation mode: the same f64 arithmetic as the dropout-free model, exactly.
    let (a, b) = (hessian(dropout_model(), false), hessian(without_dropout(), false));
    assert_eq!((a.loss, &a.grad, &a.hv), (b.loss, &b.grad, &b.hv));
    if gpu_part!() {
        // The GPU runs the identity as an activation launch: the same f32 launches either way.
        let (a, b) = (hessian(dropout_model(), true), hessian(without_dropout(), true));
        assert_eq!((a.loss, &a.grad, &a.hv), (b.loss, &b.grad, &b.hv));
    }
}

#[test]
fn batched_training_refuses_dropout_so_runs_train_one_by_one() {
    require_gpu!();
    let m = dropout_model();
    let inits = vec![m.init_params(0), m.init_params(1)];
    let setups: Vec<gradflow::optim::OptimizerSetup> = vec![gradflow::optim::Sgd::new(0.1).into(); 2];
    let g = std::sync::Arc::new(gpu().clone());
    let e = gradflow::exec::BatchedNetworks::new(g, m, Loss::CrossEntropy, setups, &inits, 16).err().unwrap();
    // A usage error: the side-by-side callers take it as "train one by one".
    assert!(matches!(e, gradflow::error::Error::Usage(_)) && e.to_string().contains("dropout"), "{e}");
}

#[test]
fn the_builder_adds_a_dropout_and_build_checks_p() {
    let m = gradflow::spec::ModelBuilder::new(4)
        .dense(8, gradflow::spec::Activation::Relu)
        .dropout(0.2)
        .dense(2, gradflow::spec::Activation::Identity)
        .build()
        .unwrap();
    let names: Vec<&str> = m.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"], "0 Linear, 1 ReLU, 2 Dropout, 3 Linear");
    let e = gradflow::spec::ModelBuilder::new(4).dropout(-1.0).dense(2, gradflow::spec::Activation::Identity).build();
    assert!(e.unwrap_err().to_string().contains("p must be a probability"));
}
