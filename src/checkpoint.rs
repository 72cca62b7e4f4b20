//! Checkpoints: one safetensors file with `torch.nn.Sequential` state-dict names and layouts
//! (`0.weight` as [out, in], `1.running_mean`, `1.num_batches_tracked` as int64), so
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=False)` takes it, plus the
//! optimizer state (`optimizer.<slot>.<name>`, PyTorch's slot names) and the run's position in
//! the metadata: optimizer steps, epoch and batch within it (the batch schedule is replayed from
//! its seed, which is how its RNG state is kept). A checksum over every tensor's bytes makes an
//! altered file an error rather than a silently different model. Files are written atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::spec::{Model, NormState};

/// Where a run stands: enough to continue it exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Optimizer steps taken (schedule position, Adam's bias correction).
    pub steps: usize,
    /// Epochs fully done.
    pub epoch: usize,
    /// Batches done within the next epoch.
    pub batch: usize,
}

/// Everything a checkpoint holds, in the executors' flat layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub params: Vec<f32>,
    pub norm: NormState,
    /// Slot-major optimizer state (`Optimizer::state_slots` × param_len), if saved.
    pub optimizer_state: Option<Vec<f32>>,
    pub progress: Progress,
    /// The input standardisation (per-feature mean, std) the model was trained with, if any.
    pub standardize: Option<(Vec<f32>, Vec<f32>)>,
    /// The batch schedule the position refers to (scheme, batch size, drop_last, seed, rows);
    /// a resume with another schedule is refused.
    pub schedule: String,
    /// Which rows were the training rows (`train::session::fingerprint`); empty when unknown.
    pub train_rows: String,
    /// What the model is (config, class names), for commands given only the file.
    pub description: Option<Description>,
}

/// What a saved model is, so that `eval`, `predict` and `hessian` need only the file: the run's
/// config (the TOML after `--set`, data paths absolute: model, loss, preprocessing, data) and
/// its classes' names. Stored as metadata, which PyTorch's loaders ignore.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Description {
    pub config: String,
    /// The config is the built-in digits run (whose data may be the built-in copy).
    pub builtin: bool,
    pub class_names: Option<Vec<String>>,
    /// A regression model's targets' names, one per output (`predict` writes them as headers).
    pub target_names: Option<Vec<String>>,
}

const CONFIG_KEY: &str = "gradflow.config";
const BUILTIN_KEY: &str = "gradflow.builtin_config";
const CLASS_NAMES_KEY: &str = "gradflow.class_names";
const TARGET_NAMES_KEY: &str = "gradflow.target_names";

/// PyTorch's names for each state slot of an optimizer (the order of `Optimizer::state_slots`).
pub fn slot_names(opt: &Optimizer) -> &'static [&'static str] {
    match opt.normalized() {
        Optimizer::Sgd(_) => &["momentum_buffer"],
        Optimizer::Adagrad(_) => &["sum"],
        Optimizer::Rmsprop(_) => &["square_avg", "grad_avg", "momentum_buffer"],
        Optimizer::Adam(_) | Optimizer::Adamw(_) => &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    }
}

/// FNV-1a: cheap, and enough to tell that two byte streams differ (integrity, not security).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn f32s(&mut self, values: &[f32]) {
        for v in values {
            self.bytes(&v.to_le_bytes());
        }
    }

    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv::default();
        h.bytes(bytes);
        h.0
    }
}

/// FNV-1a over the tensors' names and bytes, in name order: cheap and enough to catch an
/// altered or swapped byte (this is an integrity check, not a signature).
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>, meta: &HashMap<String, String>) -> u64 {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    // The metadata that steers a resume is covered too (everything but the checksum itself).
    let mut keys: Vec<&String> = meta.keys().filter(|k| k.as_str() != "gradflow.checksum").collect();
    keys.sort();
    let meta_bytes: Vec<(String, &String)> = keys.iter().map(|k| (format!("meta:{k}"), &meta[*k])).collect();
    sorted.extend(meta_bytes.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Fnv::default();
    for (name, bytes) in sorted {
        h.bytes(name.as_bytes());
        h.bytes(bytes);
    }
    h.0
}

fn io(file: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io { file: file.to_path_buf(), message: e.to_string() }
}

fn bad(file: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint { file: file.to_path_buf(), message: message.into() }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// folder. A crash leaves the old file or the new one, never half of one; the temporary file a
/// killed writer left is removed by the next write to that path (`remove_stale_temps`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io(path, "not a file name"))?;
    remove_stale_temps(dir, &name.to_string_lossy());
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all(); // not every platform can fsync a folder
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io(path, e))
}

/// Removes `write_atomic`'s temporary files for `name` in `dir` that no running writer owns: on
/// Linux those whose process is gone (/proc), elsewhere those untouched for an hour. Best
/// effort: a file that cannot be read or removed is left.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let proc_fs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        let stale = if pid == std::process::id() {
            true
        } else if proc_fs {
            !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600)
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Saves `ck` for `model` (and the optimizer whose state it carries) to `path`.
pub fn save(path: &Path, model: &Model, optimizer: &Optimizer, ck: &Checkpoint) -> Result<()> {
    write_atomic(path, &to_bytes(path, model, optimizer, ck)?)
}

/// The bytes `save` writes (a browser page offers them as a download); `path` names the file in
/// errors.
pub fn to_bytes(path: &Path, model: &Model, optimizer: &Optimizer, ck: &Checkpoint) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &model.params {
        owned.push((t.name.clone(), Dtype::F32, t.shape.clone(), f32_bytes(&ck.params[t.offset..t.offset + t.len])));
    }
    for t in &model.running {
        owned.push((
            t.name.clone(),
            Dtype::F32,
            t.shape.clone(),
            f32_bytes(&ck.norm.running[t.offset..t.offset + t.len]),
        ));
    }
    for (layer, &n) in model.norms.iter().zip(&ck.norm.batches_tracked) {
        owned.push((
            format!("{}.num_batches_tracked", layer.name),
            Dtype::I64,
            vec![],
            (n as i64).to_le_bytes().to_vec(),
        ));
    }
    if let Some(state) = &ck.optimizer_state {
        let len = model.param_len;
        for (s, slot) in slot_names(optimizer).iter().enumerate() {
            for t in &model.params {
                let at = s * len + t.offset;
                owned.push((
                    format!("optimizer.{slot}.{}", t.name),
                    Dtype::F32,
                    t.shape.clone(),
                    f32_bytes(&state[at..at + t.len]),
                ));
            }
        }
    }
    if let Some((mean, std)) = &ck.standardize {
        owned.push(("gradflow.input_mean".into(), Dtype::F32, vec![mean.len()], f32_bytes(mean)));
        owned.push(("gradflow.input_std".into(), Dtype::F32, vec![std.len()], f32_bytes(std)));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "gradflow-checkpoint-1".to_string());
    meta.insert("gradflow.steps".to_string(), ck.progress.steps.to_string());
    meta.insert("gradflow.epoch".to_string(), ck.progress.epoch.to_string());
    meta.insert("gradflow.batch".to_string(), ck.progress.batch.to_string());
    meta.insert("gradflow.optimizer".to_string(), optimizer.name().to_string());
    meta.insert("gradflow.state_layout".to_string(), optimizer.state_layout());
    meta.insert("gradflow.schedule".to_string(), ck.schedule.clone());
    meta.insert("gradflow.train_rows".to_string(), ck.train_rows.clone());
    if let Some(d) = &ck.description {
        meta.insert(CONFIG_KEY.to_string(), d.config.clone());
        meta.insert(BUILTIN_KEY.to_string(), d.builtin.to_string());
        if let Some(names) = &d.class_names {
            let json = serde_json::to_string(names).map_err(|e| bad(path, e.to_string()))?;
            meta.insert(CLASS_NAMES_KEY.to_string(), json);
        }
        if let Some(names) = &d.target_names {
            let json = serde_json::to_string(names).map_err(|e| bad(path, e.to_string()))?;
            meta.insert(TARGET_NAMES_KEY.to_string(), json);
        }
    }
    let sum = checksum(owned.iter().map(|(n, _, _, b)| (n.as_str(), b.as_slice())), &meta);
    meta.insert("gradflow.checksum".to_string(), format!("{sum:016x}"));
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(path, e.to_string()))?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e.to_string()))?;
    sorted_header(&bytes).map_err(|e| bad(path, e))
}

/// The file with its JSON header's keys (tensors, and the metadata's) in sorted order: safetensors
/// writes the metadata from a HashMap, whose order changes between runs, so without this two
/// saves of one state differ in their bytes. Same length (same keys and values), same padding.
fn sorted_header(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    type Sorted = std::collections::BTreeMap<String, serde_json::Value>;
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| "no header length")?) as usize;
    let header = bytes.get(8..8 + n).ok_or("header past the end")?;
    let mut sorted: Sorted = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    if let Some(meta) = sorted.get_mut("__metadata__") {
        let inner: Sorted = serde_json::from_value(meta.take()).map_err(|e| e.to_string())?;
        *meta = serde_json::to_value(inner).map_err(|e| e.to_string())?;
    }
    let mut text = serde_json::to_vec(&sorted).map_err(|e| e.to_string())?;
    if text.len() > n {
        return Err(format!("the sorted header is {} bytes, the written one {n}", text.len()));
    }
    text.resize(n, b' ');
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..8]);
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// One tensor of a file as f64 values, with its shape (f32, f64, and the integer counters).
fn values(file: &Path, st: &SafeTensors<'_>, name: &str) -> Result<Option<(Vec<usize>, Vec<f64>)>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let data = view.data();
    let v: Vec<f64> = match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
        Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect(),
        Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64).collect(),
        other => return Err(bad(file, format!("tensor '{name}' has dtype {other:?}; expected F32, F64 or I64"))),
    };
    Ok(Some((view.shape().to_vec(), v)))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io(path, e))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e}); truncated or altered?")))
}

/// Fills the flat parameters and batch-norm state from a state dict (`prefix` before each name):
/// every tensor the model has must be present with its shape; other tensors are ignored.
fn fill_state(
    path: &Path,
    st: &SafeTensors<'_>,
    model: &Model,
    prefix: &str,
    strict: bool,
) -> Result<(Vec<f32>, NormState)> {
    let mut params = vec![0.0f32; model.param_len];
    let mut norm = model.init_norm_state();
    let tensors = model.params.iter().map(|t| (t, true)).chain(model.running.iter().map(|t| (t, false)));
    for (t, is_param) in tensors {
        let name = format!("{prefix}{}", t.name);
        let (shape, v) = values(path, st, &name)?.ok_or_else(|| {
            bad(path, format!("tensor '{name}' is missing (the config's model has it, shape {:?})", t.shape))
        })?;
        if shape != t.shape {
            return Err(bad(
                path,
                format!("tensor '{name}' has shape {shape:?}; the config's model needs {:?}", t.shape),
            ));
        }
        if v.iter().any(|x| !x.is_finite() || x.abs() > f32::MAX as f64) {
            return Err(bad(path, format!("tensor '{name}' holds NaN, Inf or a value too large for float32")));
        }
        let dst = if is_param { &mut params } else { &mut norm.running };
        for (d, s) in dst[t.offset..t.offset + t.len].iter_mut().zip(&v) {
            *d = *s as f32;
        }
    }
    for (k, layer) in model.norms.iter().enumerate() {
        let name = format!("{prefix}{}.num_batches_tracked", layer.name);
        match values(path, st, &name)? {
            Some((_, v)) if v.len() == 1 && v[0] >= 0.0 && v[0].fract() == 0.0 => {
                norm.batches_tracked[k] = v[0] as u64;
            }
            Some((shape, v)) => {
                let shown: Vec<f64> = v.iter().take(4).copied().collect();
                let more = if v.len() > 4 { ", …" } else { "" };
                return Err(bad(
                    path,
                    format!("tensor '{name}' should be one non-negative integer, got shape {shape:?}, values {shown:?}{more}"),
                ));
            }
            // PyTorch state dicts always have it; for --init a missing one means a fresh layer.
            None if strict => return Err(bad(path, format!("tensor '{name}' is missing"))),
            None => {}
        }
    }
    Ok((params, norm))
}

/// The file's metadata, its checksum verified when it has one (gradflow's own files);
/// `required` makes a missing checksum an error (`--resume`).
fn verified_meta(path: &Path, bytes: &[u8], st: &SafeTensors<'_>, required: bool) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(path, e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let Some(want) = meta.get("gradflow.checksum") else {
        return if required { Err(bad(path, "no gradflow.checksum: not a gradflow checkpoint")) } else { Ok(meta) };
    };
    let names = st.names();
    let tensors: Vec<(&str, &[u8])> =
        names.iter().filter_map(|n| st.tensor(n).ok().map(|v| (&n[..], v.data()))).collect();
    let got = format!("{:016x}", checksum(tensors.into_iter(), &meta));
    if &got != want {
        return Err(bad(
            path,
            format!("checksum mismatch (file says {want}, contents give {got}): the file was altered or damaged"),
        ));
    }
    Ok(meta)
}

/// A state dict saved by PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`) or by
/// gradflow: parameters and batch-norm state for `model` (`--init`, `eval`, `predict`). Strict as
/// torch's `load_state_dict`: a tensor the model does not have (a checkpoint of a bigger model)
/// is an error, not silently dropped.
pub fn load_state_dict(path: &Path, model: &Model) -> Result<(Vec<f32>, NormState)> {
    let (params, norm, unexpected) = load_state_dict_lenient(path, model)?;
    refuse_unexpected(path, &unexpected)?;
    Ok((params, norm))
}

/// `load_state_dict` that takes a file with tensors the model does not have, as torch's
/// `strict=False`: their names come back so the caller can say which were ignored.
pub fn load_state_dict_lenient(path: &Path, model: &Model) -> Result<(Vec<f32>, NormState, Vec<String>)> {
    state_dict_of_bytes(path, &read(path)?, model)
}

/// `load_state_dict_lenient` on a file's bytes (a file dropped into a browser page); `path`
/// names it in errors.
pub fn state_dict_of_bytes(path: &Path, bytes: &[u8], model: &Model) -> Result<(Vec<f32>, NormState, Vec<String>)> {
    let st = parse(path, bytes)?;
    verified_meta(path, bytes, &st, false)?;
    let (params, norm) = fill_state(path, &st, model, "", false)?;
    Ok((params, norm, unexpected(&st, model)))
}

/// Names in the file that neither the model nor gradflow's own extras (its optimizer state for
/// the model's parameters, the input standardisation) account for, sorted.
fn unexpected(st: &SafeTensors<'_>, model: &Model) -> Vec<String> {
    let mut known: std::collections::HashSet<String> =
        model.params.iter().chain(&model.running).map(|t| t.name.clone()).collect();
    known.extend(model.norms.iter().map(|l| format!("{}.num_batches_tracked", l.name)));
    known.extend(["gradflow.input_mean".to_string(), "gradflow.input_std".to_string()]);
    let is_own_state = |name: &str| {
        name.strip_prefix("optimizer.")
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(_, tensor)| model.params.iter().any(|t| t.name == tensor))
    };
    let mut names: Vec<String> =
        st.names().into_iter().filter(|n| !known.contains(*n) && !is_own_state(n)).map(str::to_string).collect();
    names.sort();
    names
}

fn refuse_unexpected(path: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let shown = names.iter().take(8).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = if names.len() > 8 { format!(" and {} more", names.len() - 8) } else { String::new() };
    Err(bad(
        path,
        format!(
            "has {} tensor(s) the config's model does not have: {shown}{more} (a checkpoint of a bigger or \
             different model?); torch's load_state_dict refuses them too. --non-strict ignores them",
            names.len()
        ),
    ))
}

/// A gradflow checkpoint for `model` trained by `optimizer` (`--resume`): checksum, shapes and
/// the optimizer's state all checked.
pub fn load(path: &Path, model: &Model, optimizer: &Optimizer) -> Result<Checkpoint> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    let meta = verified_meta(path, &bytes, &st, true)?;
    let saved_opt = meta.get("gradflow.optimizer").map(String::as_str).unwrap_or("?");
    if saved_opt != optimizer.name() {
        return Err(bad(path, format!("saved by optimizer '{saved_opt}', but the config uses '{}'", optimizer.name())));
    }
    let layout = meta.get("gradflow.state_layout").map(String::as_str).unwrap_or("?");
    if layout != optimizer.state_layout() {
        return Err(bad(
            path,
            format!(
                "its optimizer state is '{layout}' but the config's optimizer keeps '{}'",
                optimizer.state_layout()
            ),
        ));
    }
    let (params, norm) = fill_state(path, &st, model, "", true)?;
    refuse_unexpected(path, &unexpected(&st, model))?;
    let mut state = optimizer.initial_state(model.param_len);
    for (s, slot) in slot_names(optimizer).iter().enumerate() {
        for t in &model.params {
            let name = format!("optimizer.{slot}.{}", t.name);
            let (shape, v) =
                values(path, &st, &name)?.ok_or_else(|| bad(path, format!("tensor '{name}' is missing")))?;
            if shape != t.shape {
                return Err(bad(path, format!("tensor '{name}' has shape {shape:?}; expected {:?}", t.shape)));
            }
            if v.iter().any(|x| !x.is_finite() || x.abs() > f32::MAX as f64) {
                return Err(bad(path, format!("tensor '{name}' holds NaN, Inf or a value too large for float32")));
            }
            let at = s * model.param_len + t.offset;
            for (d, x) in state[at..at + t.len].iter_mut().zip(&v) {
                *d = *x as f32;
            }
        }
    }
    let number = |key: &str| -> Result<usize> {
        meta.get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(path, format!("metadata {key} is missing or not a number")))
    };
    let progress = Progress {
        steps: number("gradflow.steps")?,
        epoch: number("gradflow.epoch")?,
        batch: number("gradflow.batch")?,
    };
    let standardize = input_transform(path, &st)?;
    let schedule = meta.get("gradflow.schedule").cloned().unwrap_or_default();
    let train_rows = meta.get("gradflow.train_rows").cloned().unwrap_or_default();
    let description = description_of(path, &meta)?;
    Ok(Checkpoint {
        params,
        norm,
        optimizer_state: Some(state),
        progress,
        standardize,
        schedule,
        train_rows,
        description,
    })
}

fn input_transform(path: &Path, st: &SafeTensors<'_>) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    match (values(path, st, "gradflow.input_mean")?, values(path, st, "gradflow.input_std")?) {
        (Some((_, m)), Some((_, s))) => {
            // Checked as the f32 the transform uses: a positive f64 std can round to 0, a finite
            // f64 mean to infinity.
            let (m, s): (Vec<f32>, Vec<f32>) =
                (m.iter().map(|&v| v as f32).collect(), s.iter().map(|&v| v as f32).collect());
            let bad_std = s.iter().any(|v| !(v.is_finite() && *v > 0.0));
            if m.len() != s.len() || m.iter().any(|v| !v.is_finite()) || bad_std {
                return Err(bad(
                    path,
                    "gradflow.input_mean / input_std: lengths differ, a value is not finite in f32, or a std is not \
                     positive in f32",
                ));
            }
            Ok(Some((m, s)))
        }
        (None, None) => Ok(None),
        _ => Err(bad(path, "has one of gradflow.input_mean and gradflow.input_std but not the other")),
    }
}

/// The model's description a gradflow checkpoint carries (None for a PyTorch state dict or a
/// checkpoint saved before descriptions were), its checksum verified.
pub fn load_description(path: &Path) -> Result<Option<Description>> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    let meta = verified_meta(path, &bytes, &st, false)?;
    description_of(path, &meta)
}

fn description_of(path: &Path, meta: &HashMap<String, String>) -> Result<Option<Description>> {
    let Some(config) = meta.get(CONFIG_KEY) else { return Ok(None) };
    let builtin = match meta.get(BUILTIN_KEY).map(String::as_str) {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => return Err(bad(path, format!("metadata {BUILTIN_KEY} is '{other}'; expected true or false"))),
    };
    let names = |key: &str| -> Result<Option<Vec<String>>> {
        match meta.get(key) {
            None => Ok(None),
            Some(json) => serde_json::from_str::<Vec<String>>(json)
                .map(Some)
                .map_err(|e| bad(path, format!("metadata {key} is not a JSON list of names ({e})"))),
        }
    };
    let class_names = names(CLASS_NAMES_KEY)?;
    let target_names = names(TARGET_NAMES_KEY)?;
    Ok(Some(Description { config: config.clone(), builtin, class_names, target_names }))
}

/// The shape of tensor `name` in a state dict, if it has one.
pub fn tensor_shape(path: &Path, name: &str) -> Result<Option<Vec<usize>>> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    Ok(st.tensor(name).ok().map(|v| v.shape().to_vec()))
}

/// The input standardisation a checkpoint carries (`gradflow.input_mean`, `gradflow.input_std`).
pub fn load_input_transform(path: &Path) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    verified_meta(path, &bytes, &st, false)?;
    input_transform(path, &st)
}
