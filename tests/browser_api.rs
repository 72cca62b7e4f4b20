//! The library calls the browser page makes instead of the CLI's file- and blocking forms: each
//! gives what its native counterpart gives.

mod common;

use std::path::Path;

use common::*;
use gradflow::checkpoint::{self, Checkpoint};
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::optim::Sgd;
use gradflow::spec::{Activation, Loss, Model};
use gradflow::train::Standardize;

/// apply rounds (x − m)/s once (f64 maths); invert rounds x̂·s and + m in f32: the round trip is
/// off by at most u(2|x − m| + |x|) + O(u²) ≤ 3u(|x| + |m|).
#[test]
fn standardize_invert_undoes_apply() {
    let data = synthetic(97, 3, 2, 5);
    let s = Standardize::fit(&data);
    let mut x = data.x.clone();
    s.apply(&mut x);
    s.invert(&mut x);
    let u = f32::EPSILON as f64 / 2.0;
    for (i, (a, b)) in x.iter().zip(&data.x).enumerate() {
        let m = s.mean[i % 3] as f64;
        let bound = 3.0 * u * (b.abs() as f64 + m.abs());
        assert!(((a - b) as f64).abs() <= bound, "row {} feature {}: {a} against {b}", i / 3, i % 3);
    }
}

fn trained_cpu() -> CpuNetwork {
    let data = synthetic(40, 4, 3, 1);
    let model =
        Model::builder(4).dense(8, Activation::Tanh).batch_norm().dense(3, Activation::Identity).build().unwrap();
    let params = model.init_params(3);
    let mut net = CpuNetwork::new(model, Loss::CrossEntropy, setup(), params).unwrap();
    net.set_train_data(&data).unwrap();
    net.train_step(&(0..20).collect::<Vec<u32>>()).unwrap();
    net
}

fn setup() -> gradflow::optim::OptimizerSetup {
    Sgd::with_momentum(0.1, 0.9).into()
}

/// The page downloads `to_bytes`; the CLI writes `save`: the same file.
#[test]
fn checkpoint_bytes_are_what_save_writes_and_read_back() {
    let mut net = trained_cpu();
    let optimizer = setup().optimizer;
    let ck = Checkpoint {
        params: net.params().unwrap(),
        norm: net.norm_state().unwrap(),
        optimizer_state: Some(net.optimizer_state().unwrap()),
        progress: Default::default(),
        standardize: None,
        schedule: "shuffle".into(),
        train_rows: String::new(),
        description: None,
    };
    let path = scratch_dir("browser_api", "ck").join("m.safetensors");
    checkpoint::save(&path, net.model(), &optimizer, &ck).unwrap();
    let bytes = checkpoint::to_bytes(&path, net.model(), &optimizer, &ck).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let (params, norm, unexpected) =
        checkpoint::state_dict_of_bytes(Path::new("dropped.safetensors"), &bytes, net.model()).unwrap();
    assert_eq!((params, norm), (ck.params.clone(), ck.norm.clone()));
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let cut = checkpoint::state_dict_of_bytes(Path::new("dropped.safetensors"), &bytes[..bytes.len() / 2], net.model());
    let message = cut.unwrap_err().to_string();
    assert!(message.contains("dropped.safetensors"), "{message}");
}

/// `score` on awaited logits is `evaluate`.
#[test]
fn score_is_evaluate() {
    let mut net = trained_cpu();
    let data = synthetic(31, 4, 3, 9);
    let logits = net.predict(&data.x, data.n).unwrap();
    let scored = gradflow::train::score(net.model(), &data, Loss::CrossEntropy, &logits);
    assert_eq!(gradflow::train::evaluate(&mut net, &data, Loss::CrossEntropy).unwrap(), scored);
}

/// The awaited read-backs give the blocking ones' values (natively one waits on the other).
#[test]
fn awaited_read_backs_are_the_blocking_ones() {
    require_gpu!();
    let data = synthetic(40, 4, 3, 1);
    let model = Model::builder(4).dense(8, Activation::Tanh).dense(3, Activation::Identity).build().unwrap();
    let params = model.init_params(3);
    let gpu = std::sync::Arc::new(gpu_or_panic());
    let mut net = GpuNetwork::new(gpu, model, Loss::CrossEntropy, setup(), &params, 20).unwrap();
    net.set_train_data(&data).unwrap();
    net.train_step(&(0..20).collect::<Vec<u32>>()).unwrap();
    use gradflow::device::wait;
    assert_eq!(wait("params", net.params_async()).unwrap(), net.params().unwrap());
    assert_eq!(wait("state", net.optimizer_state_async()).unwrap(), net.optimizer_state().unwrap());
    assert_eq!(wait("loss", net.last_loss_async()).unwrap(), net.last_loss().unwrap());
    let x = &data.x[..8];
    assert_eq!(wait("predict", net.predict_async(x, 2)).unwrap(), net.predict(x, 2).unwrap());
    let totals = wait("totals", net.take_totals_async()).unwrap();
    assert_eq!(totals.samples, 20);
    assert_eq!(net.take_totals().unwrap().samples, 0, "taking the totals starts counting afresh");
}
