//! What `gradflow train` checks and reads before its first step: outputs that can be written
//! and overwrite no input, labels that fit the model, the header it prints, the state it starts
//! from (`--init`, `--resume`) and whether a checkpoint continues this run.

use std::path::Path;

use super::TrainOptions;
use crate::checkpoint::{self, Checkpoint, Fnv, Progress};
use crate::config::Config;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::spec::Model;

/// Every file the run will write can be written, before any training: a typo in a folder name
/// must not cost an hour of training.
/// The outputs must also be different files, none of them one the run reads (the config,
/// its data; `--save` may be `--resume`'s file, which it continues).
pub(super) fn check_outputs(opts: &TrainOptions, config: &Config, config_file: &Path) -> Result<()> {
    if opts.save_best.is_some() && config.data.validation_fraction == 0.0 {
        return Err(Error::Usage(
            "--save-best keeps the epoch with the lowest validation loss: set data.validation_fraction > 0 \
             (e.g. --set data.validation_fraction=0.1)"
                .into(),
        ));
    }
    if opts.track_sharpness.is_some() && config.data.is_regression() {
        // Said before the header lines, as every other refusal of the run's options.
        return Err(Error::Usage(
            "--track-sharpness measures the Hessian, which compares with class labels only; \
             this config trains on real targets (data.targets)"
                .into(),
        ));
    }
    let outputs = [
        (&opts.save, "--save"),
        (&opts.save_best, "--save-best"),
        (&opts.metrics, "--metrics"),
        (&opts.plot, "--plot"),
    ];
    let outputs: Vec<(&Path, &str)> = outputs.iter().filter_map(|(p, f)| p.as_deref().map(|p| (p, *f))).collect();
    let mut inputs = config_inputs(config, config_file);
    // A run continued from the checkpoint its config came from may save over it, as any --resume.
    if opts.resume.as_deref() == Some(config_file) {
        inputs.retain(|p| *p != config_file);
    }
    inputs.extend(opts.init.as_deref());
    // Overwriting an input is the graver mistake: said first.
    check_outputs_apart(&outputs, &inputs)?;
    match &opts.plot {
        Some(p) => crate::plot::format_of(p, "--plot").map(drop),
        None => Ok(()),
    }
}

/// The files a command reads through its config: the config itself and its data.
pub fn config_inputs<'a>(config: &'a Config, config_file: &'a Path) -> Vec<&'a Path> {
    [Some(config_file), config.data.path.as_deref(), config.data.labels.as_deref()]
        .into_iter()
        .chain([config.data.test_path.as_deref(), config.data.test_labels.as_deref()])
        .chain([config.data.targets_path.as_deref(), config.data.test_targets.as_deref()])
        .flatten()
        .collect()
}

/// Every command's outputs (path, flag) before any work: none is one of its `inputs`, no two
/// name the same file, each can be written (`check_writable`).
pub fn check_outputs_apart(outputs: &[(&Path, &str)], inputs: &[&Path]) -> Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    for input in inputs {
        if let Some((path, flag)) = outputs.iter().find(|(p, _)| same(p, input)) {
            return Err(Error::Io {
                file: path.to_path_buf(),
                message: format!("{flag}: would overwrite an input of the command"),
            });
        }
    }
    for (i, (a, fa)) in outputs.iter().enumerate() {
        if let Some((_, fb)) = outputs[i + 1..].iter().find(|(b, _)| same(a, b)) {
            return Err(Error::Io { file: a.to_path_buf(), message: format!("{fa} and {fb} name the same file") });
        }
        check_writable(a, fa)?;
    }
    Ok(())
}

/// `path` is not a folder, its folder exists and takes a new file, and an existing file can be
/// opened for writing (nothing is changed).
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    let err = |message: String| Error::Io { file: path.to_path_buf(), message };
    if path.is_dir() {
        return Err(err(format!("{flag}: is a folder; give a file name")));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(err(format!("{flag}: the folder {} does not exist", dir.display())));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let probe = dir.join(format!(".{name}.probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| err(format!("{flag}: cannot write in {}: {e}", dir.display())))?;
    if path.exists() {
        std::fs::OpenOptions::new().append(true).open(path).map_err(|e| err(format!("{flag}: {e}")))?;
    }
    Ok(())
}

/// The numbered classes below the largest label that no training row has ("classes 0 to 4 never
/// occur", "class 3 never occurs"), when there are any: a label column numbered from 1 gives class 0 an output that
/// nothing trains. Named classes all occur by construction.
fn missing_classes(train: &Dataset) -> Option<String> {
    if train.class_names.is_some() {
        return None;
    }
    let mut seen = vec![false; train.num_classes];
    train.labels.iter().for_each(|&l| seen[l as usize] = true);
    let missing: Vec<usize> = (0..train.num_classes).filter(|&c| !seen[c]).collect();
    let contiguous = missing.windows(2).all(|w| w[1] == w[0] + 1);
    match missing.as_slice() {
        [] => None,
        [one] => Some(format!("class {one} never occurs")),
        [first, .., last] if contiguous => Some(format!("classes {first} to {last} never occur")),
        many => {
            Some(format!("classes {} never occur", many.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")))
        }
    }
}

pub(super) fn print_header(
    config: &Config,
    config_file: &Path,
    [train, validation, test]: [&Dataset; 3],
    model: &Model,
    quiet: bool,
) {
    if train.num_classes == 1 && !train.is_regression() {
        crate::warn!(
            "warning: the training data has only one class: every prediction will be that class \
             (wrong label column? set data.label_column or data.num_classes)"
        );
    }
    if let Some(missing) = missing_classes(train).filter(|_| config.data.num_classes.is_none()) {
        crate::warn!(
            "warning: {missing} in the training data; the model still has an output for each (labels are class \
             numbers from 0: numbered from 1? set data.num_classes to say the classes are meant)"
        );
    }
    if quiet {
        return;
    }
    let builtin = config.builtin && !config_file.exists();
    crate::say!("config: {}{}", config_file.display(), if builtin { " (the built-in copy)" } else { "" });
    let classes = match train.num_classes {
        1 => "1 class".to_string(),
        n => format!("{n} classes"),
    };
    let classes = match (&train.targets, &train.class_names) {
        (Some(t), _) => format!("{} real target(s): {}", t.k, crate::data::listed(&t.all_names())),
        (None, Some(names)) => format!("{classes}: {}", crate::data::listed(names)),
        (None, None) => classes,
    };
    let features = match &train.feature_names {
        Some(names) => format!("{} features ({})", train.d, crate::data::listed(names)),
        None => format!("{} features", train.d),
    };
    let test_rows = match &config.data.test_path {
        Some(p) => format!("{} test rows from {}", test.n, p.display()),
        None => format!("{} test rows", test.n),
    };
    let builtin_data = if config.builtin && config.data.path.as_ref().is_some_and(|p| !p.exists()) {
        " (the built-in copy)"
    } else {
        ""
    };
    let validation_rows = match validation.n {
        0 => String::new(),
        n => format!("{n} validation / "),
    };
    crate::say!(
        "data: {}{builtin_data} ({} train / {validation_rows}{test_rows}, {features}, {classes})",
        config.data.source(),
        train.n,
    );
    if test.n == 0 {
        crate::say!("no test set (data.test_fraction = 0 and no data.test_path): no test column");
    }
    crate::say!("model: {}", model.summary());
}

/// The checkpoint a run starts from: `--init`'s state dict or `--resume`'s checkpoint.
/// Read before the device is opened, so a bad file fails fast.
pub(super) fn read_start(config: &Config, opts: &TrainOptions, model: &Model) -> Result<Option<Checkpoint>> {
    if let Some(path) = &opts.init {
        let (params, norm) = if opts.non_strict {
            let (params, norm, ignored) = checkpoint::load_state_dict_lenient(path, model)?;
            warn_ignored(path, &ignored);
            (params, norm)
        } else {
            checkpoint::load_state_dict(path, model)?
        };
        if !opts.quiet {
            crate::say!("init: {}", path.display());
        }
        return Ok(Some(Checkpoint {
            params,
            norm,
            optimizer_state: None,
            progress: Progress::default(),
            standardize: None,
            schedule: String::new(),
            train_rows: String::new(),
            description: None,
        }));
    }
    let Some(path) = &opts.resume else { return Ok(None) };
    let ck = checkpoint::load(path, model, &config.optimizer)?;
    let p = ck.progress;
    let at = match p.batch {
        0 => format!("after epoch {}", p.epoch),
        b => format!("epoch {} after batch {b}", p.epoch + 1),
    };
    if !opts.quiet {
        crate::say!("resume: {} (step {}, {at})", path.display(), p.steps);
    }
    Ok(Some(ck))
}

/// `--non-strict`'s loud line: which tensors of `path` were dropped.
pub fn warn_ignored(path: &Path, ignored: &[String]) {
    if !ignored.is_empty() {
        crate::warn!(
            "warning: --non-strict: ignoring {} tensor(s) of {} the model does not have: {}",
            ignored.len(),
            path.display(),
            ignored.join(", ")
        );
    }
}

/// Why there is nothing to train from `progress`, if so.
pub(super) fn finished(config: &Config, opts: &TrainOptions, progress: &Progress) -> Option<String> {
    let epochs = config.train.epochs;
    if opts.resume.is_some() && progress.epoch >= epochs {
        return Some(format!(
            "the checkpoint has finished epoch {} of train.epochs = {epochs} (raise --epochs to train on)",
            progress.epoch
        ));
    }
    // `--max-steps 0 --save FILE` on a fresh run saves the initial state (the start of a path).
    let saves_start = opts.max_steps == Some(0) && opts.save.is_some() && opts.resume.is_none();
    match opts.max_steps {
        Some(m) if m <= progress.steps && !saves_start => {
            Some(format!("--max-steps {m}, and the run is at step {}", progress.steps))
        }
        _ => None,
    }
}

/// What a saved batch position refers to: a resume with another schedule would replay other batches.
pub fn schedule_of(config: &Config, rows: usize) -> String {
    let t = &config.train;
    format!("{} batch_size={} drop_last={} seed={} rows={rows}", t.batching, t.batch_size, t.drop_last, t.seed)
}

/// Which rows are training rows, and their values: a resume on other rows (another split,
/// file, scale or standardisation) would not continue the same run.
pub fn fingerprint(train: &Dataset) -> String {
    let mut h = Fnv::default();
    h.f32s(&train.x);
    for l in &train.labels {
        h.bytes(&l.to_le_bytes());
    }
    format!("rows={} features={} fnv={:016x}", train.n, train.d, h.0)
}

/// A checkpoint resumes only the run it came from: the same batch schedule and training rows.
pub(super) fn check_resume(opts: &TrainOptions, ck: &Checkpoint, schedule: &str, train_rows: &str) -> Result<()> {
    let file = opts.resume.clone().unwrap_or_default();
    // Checkpoints from before the fingerprint was saved have none to compare.
    if !ck.train_rows.is_empty() && ck.train_rows != train_rows {
        return Err(Error::Checkpoint {
            file,
            message: format!(
                "saved for the training rows '{}', but the config's data gives '{train_rows}' (a changed data \
                 file, test_fraction, split_seed, scale or standardisation?)",
                ck.train_rows
            ),
        });
    }
    if ck.schedule != schedule {
        return Err(Error::Checkpoint {
            file,
            message: format!("saved for the batch schedule '{}', but the config gives '{schedule}'", ck.schedule),
        });
    }
    Ok(())
}
