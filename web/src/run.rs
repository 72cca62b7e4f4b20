//! One training run in the page: a config (the TOML `gradflow train` reads), its data, and its
//! network on the GPU or the CPU reference, stepped an epoch per call so the page stays live.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use gradflow::checkpoint::{self, Progress};
use gradflow::config::Config;
use gradflow::data::{Batcher, Dataset};
use gradflow::error::{Error, Result};
use gradflow::exec::{CpuNetwork, GpuNetwork, Network, Totals};
use gradflow::spec::{Model, NormState};
use gradflow::train::session::Saved;
use gradflow::train::{self, Observe, Split, Standardize};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{js_error, json, Lab};

/// The name errors give the page's config.
const CONFIG_FILE: &str = "page.toml";
/// The name errors give data the page hands over as text (a dropped CSV, the digits).
const DATA_FILE: &str = "data.csv";

/// The network on one of the two executors: the GPU's read-backs are awaited.
#[allow(clippy::large_enum_variant)] // one per run: boxing would buy nothing
pub(crate) enum Executor {
    Cpu(CpuNetwork),
    Gpu(GpuNetwork),
}

impl Executor {
    pub(crate) fn net(&mut self) -> &mut dyn Network {
        match self {
            Executor::Cpu(n) => n,
            Executor::Gpu(n) => n,
        }
    }

    async fn take_totals(&mut self) -> Result<Totals> {
        match self {
            Executor::Cpu(n) => n.take_totals(),
            Executor::Gpu(n) => n.take_totals_async().await,
        }
    }

    pub(crate) async fn predict(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match self {
            Executor::Cpu(n) => n.predict(x, rows),
            Executor::Gpu(n) => n.predict_async(x, rows).await,
        }
    }

    pub(crate) async fn params(&mut self) -> Result<Vec<f32>> {
        match self {
            Executor::Cpu(n) => n.params(),
            Executor::Gpu(n) => n.params_async().await,
        }
    }

    async fn norm_state(&mut self) -> Result<NormState> {
        match self {
            Executor::Cpu(n) => n.norm_state(),
            Executor::Gpu(n) => n.norm_state_async().await,
        }
    }

    async fn optimizer_state(&mut self) -> Result<Vec<f32>> {
        match self {
            Executor::Cpu(n) => n.optimizer_state(),
            Executor::Gpu(n) => n.optimizer_state_async().await,
        }
    }
}

/// What an epoch did, as the page plots it (camelCase for JavaScript; NaN becomes null).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EpochLine {
    pub(crate) epoch: usize,
    pub(crate) epochs: usize,
    pub(crate) steps: usize,
    pub(crate) train_loss: f32,
    pub(crate) train_accuracy: Option<f32>,
    pub(crate) test_loss: Option<f32>,
    pub(crate) test_accuracy: Option<f32>,
    pub(crate) lr: f32,
    pub(crate) seconds: f64,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) exec: Executor,
    pub(crate) train: Dataset,
    test: Dataset,
    /// The training rows before standardisation (what the page plots for 2-D data).
    raw_train: Dataset,
    standardize: Option<Standardize>,
    batcher: Batcher,
    epoch: usize,
    /// What its checkpoints carry besides the network's state, as `gradflow train` saves them.
    saved: Saved,
    /// Why an epoch failed part-way, after which the network's steps and the batcher no longer
    /// match `epoch`: the run trains and saves no more.
    failed: Option<String>,
}

/// A training run, stepped by `epoch()`. Methods that await the GPU take the run for their
/// duration; a second call meanwhile is refused ("busy"), never interleaved.
#[wasm_bindgen]
pub struct Run {
    pub(crate) inner: Rc<RefCell<Inner>>,
    /// Fixed at the start, so the page can read them while an epoch holds `inner`.
    device: String,
    epochs: usize,
    planar: bool,
    class_names: String,
}

fn config_of(text: &str) -> Result<Config> {
    Config::parse(text, Path::new(CONFIG_FILE))
}

/// The config's rows split as `gradflow train` splits them: from `csv` when the page has the
/// data as text, else from what the config names (a generated 2-D set).
fn split_of(config: &Config, csv: Option<&str>) -> Result<(Split, Dataset)> {
    let file = Path::new(CONFIG_FILE);
    let split = match csv {
        Some(text) => {
            let all = gradflow::data::csv::parse_csv(text, Path::new(DATA_FILE), &config.csv_options(file)?)?;
            train::run::split_rows(all, config, file)?
        }
        None => train::load_split(config, file)?,
    };
    let mut raw = split.train.clone();
    if let Some(s) = &split.standardize {
        s.invert(&mut raw.x);
    }
    Ok((split, raw))
}

impl Inner {
    pub(crate) fn new(lab: &Lab, config_toml: &str, csv: Option<&str>, executor: &str) -> Result<Inner> {
        let config = config_of(config_toml)?;
        let (Split { train, validation: _, test, standardize }, raw_train) = split_of(&config, csv)?;
        let model = Model::new(train.d, config.model.layers.clone())?;
        train::check_labels(&model, &train, &test, &config)?;
        let batcher = train::batcher(&config, train.n)?;
        train::check_batches(&model, &batcher)?;
        let max_rows = train::max_rows(&config, train.n);
        let mut exec = match executor {
            "gpu" => {
                let gpu = lab.gpu.clone().ok_or_else(|| Error::NoAdapter(" in this browser".into()))?;
                Executor::Gpu(train::gpu_network(&config, model, Arc::clone(&gpu), max_rows)?)
            }
            "cpu" => Executor::Cpu(train::cpu_network(&config, model, max_rows)?),
            other => return Err(Error::Usage(format!("executor \"{other}\": expected \"gpu\" or \"cpu\""))),
        };
        exec.net().set_train_data(&train)?;
        let saved = Saved::fresh(&config, &train, standardize.as_ref().map(|s| (s.mean.clone(), s.std.clone())))?;
        Ok(Inner { config, exec, train, test, raw_train, standardize, batcher, epoch: 0, saved, failed: None })
    }

    /// The next epoch's steps, submitted as `gradflow train` submits them, then its totals
    /// (one awaited read-back) and the test set's loss and accuracy. After an error the run is
    /// over (see `failed`).
    pub(crate) async fn epoch(&mut self) -> Result<EpochLine> {
        self.refuse_if_failed()?;
        let line = self.train_epoch().await;
        if let Err(e) = &line {
            self.failed = Some(e.to_string());
        }
        line
    }

    fn refuse_if_failed(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(Error::Usage(format!("this run stopped at an error ({why}); start a new run"))),
            None => Ok(()),
        }
    }

    async fn train_epoch(&mut self) -> Result<EpochLine> {
        let start = web_time_now();
        let epoch = self.epoch + 1;
        let batches = self.batcher.next_epoch();
        let (mut done, mut idx, mut pause) = (0, Vec::new(), yield_each_frame());
        while done < batches.len() {
            done += train::submit_steps(self.exec.net(), &batches, done, Observe::Submits, &mut idx)?;
            // The CPU reference computes on the page's own thread: let it draw between chunks.
            if matches!(self.exec, Executor::Cpu(_)) {
                if let Some(wait) = pause() {
                    wait.await;
                }
            }
        }
        let totals = self.exec.take_totals().await?;
        if let Some(bad) = totals.first_bad {
            return Err(Error::Diverged { step: bad.step, epoch, what: train::bad_step_what(bad.loss) });
        }
        // Counted only once its steps are in, so a failed epoch is not reported as done.
        self.epoch = epoch;
        // Read after the steps, as `gradflow train` logs it: the rate the next step will use.
        let lr = self.exec.net().lr();
        let (test_loss, test_accuracy) = self.evaluate_test().await?;
        let seconds = (web_time_now() - start) / 1e3;
        let finite = |v: f32| v.is_finite().then_some(v);
        Ok(EpochLine {
            epoch: self.epoch,
            epochs: self.config.train.epochs,
            steps: done,
            train_loss: totals.mean_loss,
            train_accuracy: finite(totals.accuracy).filter(|_| !self.exec.net().trains_regression()),
            test_loss: finite(test_loss),
            test_accuracy: finite(test_accuracy),
            lr,
            seconds,
        })
    }

    async fn evaluate_test(&mut self) -> Result<(f32, f32)> {
        if self.test.n == 0 {
            return Ok((f32::NAN, f32::NAN));
        }
        let logits = self.exec.predict(&self.test.x, self.test.n).await?;
        Ok(train::score(self.exec.net().model(), &self.test, self.config.model.loss, &logits))
    }

    /// The checkpoint `gradflow train --save` would write now.
    async fn checkpoint(&mut self) -> Result<Vec<u8>> {
        // Its steps and epoch would disagree: a resume would start on the wrong batches.
        self.refuse_if_failed()?;
        let params = self.exec.params().await?;
        let norm = self.exec.norm_state().await?;
        let state = self.exec.optimizer_state().await?;
        let progress = Progress { steps: self.exec.net().steps(), epoch: self.epoch, batch: 0 };
        let ck = self.saved.checkpoint(params, norm, state, progress, "nothing was saved")?;
        checkpoint::to_bytes(Path::new("model.safetensors"), self.exec.net().model(), &self.config.optimizer, &ck)
    }

    /// Loads a state dict (PyTorch's or gradflow's safetensors) into the network, strictly.
    fn load(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        let path = Path::new(name);
        let (params, norm, unexpected) = checkpoint::state_dict_of_bytes(path, bytes, self.exec.net().model())?;
        if !unexpected.is_empty() {
            return Err(Error::Usage(format!(
                "{name} has tensors this model does not have: {}",
                unexpected.join(", ")
            )));
        }
        let net = self.exec.net();
        net.set_params(&params)?;
        net.set_norm_state(&norm)
    }
}

/// How long the CPU reference may hold the page's thread before it yields (about a frame).
const FRAME_MS: f64 = 16.0;

/// A pause that yields to the browser once a frame's time has passed since the last yield: how
/// the CPU reference (an epoch's steps, a Hessian's products) shares the page's thread.
pub(crate) fn yield_each_frame() -> gradflow::exec::hessian::Pause {
    let last = Rc::new(std::cell::Cell::new(web_time_now()));
    Box::new(move || {
        if web_time_now() - last.get() < FRAME_MS {
            return None;
        }
        let last = Rc::clone(&last);
        Some(Box::pin(async move {
            next_task().await;
            last.set(web_time_now());
        }))
    })
}

/// Resolves in a later task, after the browser has handled input: a message to itself through a
/// `MessageChannel`, which, unlike `setTimeout`, browsers do not throttle in a hidden tab (to a
/// second or more per call); `setTimeout(0)` where there is no MessageChannel.
async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if !post_to_self(&resolve) {
            let global = js_sys::global();
            match js_sys::Reflect::get(&global, &"setTimeout".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            {
                Some(f) => {
                    let _ = f.call2(&global, &resolve, &0.into());
                }
                None => {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Calls `resolve` from a new task by posting a message on a fresh MessageChannel; false when
/// the global has none.
fn post_to_self(resolve: &js_sys::Function) -> bool {
    use js_sys::Reflect;
    let function = |v: JsValue| v.dyn_into::<js_sys::Function>().ok();
    let Some(ctor) = Reflect::get(&js_sys::global(), &"MessageChannel".into()).ok().and_then(function) else {
        return false;
    };
    let Ok(channel) = Reflect::construct(&ctor, &js_sys::Array::new()) else { return false };
    let (Ok(receiver), Ok(sender)) = (Reflect::get(&channel, &"port1".into()), Reflect::get(&channel, &"port2".into()))
    else {
        return false;
    };
    let Some(post) = Reflect::get(&sender, &"postMessage".into()).ok().and_then(function) else { return false };
    Reflect::set(&receiver, &"onmessage".into(), resolve).is_ok() && post.call1(&sender, &JsValue::NULL).is_ok()
}

/// Milliseconds from the page's clock (web-time: performance.now()).
fn web_time_now() -> f64 {
    thread_local! { static ORIGIN: web_time::Instant = web_time::Instant::now(); }
    ORIGIN.with(|o| o.elapsed().as_secs_f64() * 1e3)
}

/// The class regions of a 2-D model over a grid, for the page's picture.
#[derive(Serialize)]
struct Regions {
    /// x from, x to, y from, y to (the data's own units).
    bounds: [f32; 4],
    resolution: usize,
    classes: usize,
    /// Row-major from the top-left: the predicted class of each cell.
    cells: Vec<u8>,
    /// The predicted class's softmax probability in each cell (the page shades by it).
    confidence: Vec<f32>,
    /// Training rows: x, y, label.
    points: Vec<(f32, f32, u32)>,
}

#[wasm_bindgen]
impl Lab {
    /// A run of the config `config_toml` (the `gradflow train` format) on `executor` ("gpu" or
    /// "cpu"). `csv` is the data as text when the page has it (the digits, a dropped file; the
    /// config's `data.path` then only names it); without it the config must name a generated
    /// set.
    pub fn run(&self, config_toml: &str, csv: Option<String>, executor: &str) -> Result<Run, JsError> {
        let inner = Inner::new(self, config_toml, csv.as_deref(), executor).map_err(js_error)?;
        let device = match &inner.exec {
            Executor::Cpu(_) => "CPU reference (wasm)".to_string(),
            Executor::Gpu(n) => n.describe(),
        };
        let names: Vec<String> = (0..inner.exec_model_outputs())
            .map(|c| gradflow::data::class_name(inner.train.class_names.as_deref(), c))
            .collect();
        Ok(Run {
            device,
            epochs: inner.config.train.epochs,
            planar: inner.train.d == 2,
            class_names: json(&names)?,
            inner: Rc::new(RefCell::new(inner)),
        })
    }
}

/// Runs `f` on the run's state as a promise of its JSON, refusing a second call while one runs.
pub(crate) fn promise<F, T>(inner: &Rc<RefCell<Inner>>, f: F) -> js_sys::Promise
where
    F: for<'a> FnOnce(&'a mut Inner) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>> + 'static,
    T: Into<JsValue>,
{
    let inner = Rc::clone(inner);
    // Holding the borrow across the awaits is the point: it is the run's lock, and a second
    // call meanwhile fails try_borrow_mut ("busy") instead of interleaving with this one.
    #[allow(clippy::await_holding_refcell_ref)]
    future_to_promise(async move {
        let mut guard = inner.try_borrow_mut().map_err(|_| JsError::new("busy: the run is still working"))?;
        let value = f(&mut guard).await.map_err(js_error)?;
        Ok(value.into())
    })
}

#[wasm_bindgen]
impl Run {
    /// "GPU: <adapter>" or "CPU reference (wasm)".
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// The config's epoch count.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Whether the data has two features (the page draws decision regions).
    #[wasm_bindgen(js_name = isPlanar)]
    pub fn is_planar(&self) -> bool {
        self.planar
    }

    /// The training set's class names, as JSON (numbers when the data has none).
    #[wasm_bindgen(js_name = classNames)]
    pub fn class_names(&self) -> String {
        self.class_names.clone()
    }

    /// Trains one epoch and resolves to its line (JSON `EpochLine`).
    pub fn epoch(&self) -> js_sys::Promise {
        promise(&self.inner, |inner| {
            Box::pin(async move {
                let line = inner.epoch().await?;
                serde_json::to_string(&line).map_err(|e| Error::Usage(e.to_string()))
            })
        })
    }

    /// The predicted class over a `resolution`² grid covering the training points (JSON `Regions`).
    pub fn regions(&self, resolution: usize) -> js_sys::Promise {
        promise(&self.inner, move |inner| Box::pin(async move { inner.regions(resolution).await }))
    }

    /// The checkpoint `gradflow train --save` writes, as the bytes of a .safetensors file.
    pub fn safetensors(&self) -> js_sys::Promise {
        promise(&self.inner, |inner| {
            Box::pin(async move { inner.checkpoint().await.map(|b| js_sys::Uint8Array::from(b.as_slice())) })
        })
    }

    /// Loads a safetensors state dict (PyTorch's names) into the network.
    #[wasm_bindgen(js_name = loadSafetensors)]
    pub fn load_safetensors(&self, bytes: &[u8], name: &str) -> Result<(), JsError> {
        let mut inner = self.inner.try_borrow_mut().map_err(|_| JsError::new("busy: the run is still working"))?;
        inner.load(bytes, name).map_err(js_error)
    }

    /// Loss and accuracy on the test rows now (JSON [loss, accuracy]).
    #[wasm_bindgen(js_name = evaluateTest)]
    pub fn evaluate_test(&self) -> js_sys::Promise {
        promise(&self.inner, |inner| {
            Box::pin(async move {
                let (l, a) = inner.evaluate_test().await?;
                Ok(format!("[{},{}]", json_number(l), json_number(a)))
            })
        })
    }

    /// The flat parameters (the layout of `Model::params`).
    pub fn params(&self) -> js_sys::Promise {
        promise(&self.inner, |inner| {
            Box::pin(async move { inner.exec.params().await.map(|p| js_sys::Float32Array::from(p.as_slice())) })
        })
    }
}

fn json_number(v: f32) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        "null".into()
    }
}

impl Inner {
    fn exec_model_outputs(&self) -> usize {
        match &self.exec {
            Executor::Cpu(n) => n.model().outputs(),
            Executor::Gpu(n) => n.model().outputs(),
        }
    }

    async fn regions(&mut self, resolution: usize) -> Result<String> {
        if self.train.d != 2 {
            return Err(Error::Usage(format!("decision regions need 2 features; the data has {}", self.train.d)));
        }
        let res = resolution.clamp(2, 400);
        let raw = &self.raw_train;
        let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for row in raw.x.chunks_exact(2) {
            for j in 0..2 {
                lo[j] = lo[j].min(row[j]);
                hi[j] = hi[j].max(row[j]);
            }
        }
        // A margin of a tenth of the span on each side, so the points sit inside the picture.
        for j in 0..2 {
            let pad = ((hi[j] - lo[j]) * 0.1).max(1e-3);
            lo[j] -= pad;
            hi[j] += pad;
        }
        let mut grid = Vec::with_capacity(res * res * 2);
        for i in 0..res {
            let y = hi[1] - (i as f32 + 0.5) / res as f32 * (hi[1] - lo[1]);
            for j in 0..res {
                grid.extend([lo[0] + (j as f32 + 0.5) / res as f32 * (hi[0] - lo[0]), y]);
            }
        }
        if let Some(s) = &self.standardize {
            s.apply(&mut grid);
        }
        let logits = self.exec.predict(&grid, res * res).await?;
        let k = self.exec_model_outputs();
        let (mut cells, mut confidence) = (Vec::with_capacity(res * res), Vec::with_capacity(res * res));
        for z in logits.chunks_exact(k) {
            let (best, &top) =
                z.iter().enumerate().fold((0, &f32::NEG_INFINITY), |b, (i, v)| if *v > *b.1 { (i, v) } else { b });
            let sum: f32 = z.iter().map(|v| (v - top).exp()).sum();
            cells.push(best as u8);
            confidence.push(1.0 / sum);
        }
        let points = raw.x.chunks_exact(2).zip(&raw.labels).map(|(p, &l)| (p[0], p[1], l)).collect();
        let regions =
            Regions { bounds: [lo[0], hi[0], lo[1], hi[1]], resolution: res, classes: k, cells, confidence, points };
        serde_json::to_string(&regions).map_err(|e| Error::Usage(e.to_string()))
    }
}
