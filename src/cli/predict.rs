//! `gradflow predict`: a saved model's outputs for new inputs, as .npy logits or a CSV of the
//! predicted class and the logits.

use std::path::Path;

use super::saved::saved_network;
use super::PredictArgs;
use crate::error::{Error, Result};
use crate::train::{self, Placement};

/// The command: reads `args.input`, transforms it as training did, and writes `args.output`.
pub fn predict(args: &PredictArgs, placement: &Placement, non_strict: bool) -> Result<()> {
    let (checkpoint, input, output) = (args.checkpoint.as_path(), args.input.as_path(), args.output.as_path());
    let (config, file) = super::saved::config_for(args.config.clone(), &args.set, checkpoint, non_strict)?;
    let mut inputs = train::session::config_inputs(&config, &file);
    inputs.extend([checkpoint, input]);
    train::session::check_outputs_apart(&[(output, "--output")], &inputs)?;
    let (mut x, n, d) = if is(input, "npy") { read_npy_features(input)? } else { crate::data::load_features(input)? };
    // The same transforms as training: the config's scale, then the saved standardisation.
    if config.data.scale != 1.0 {
        x.iter_mut().for_each(|v| *v *= config.data.scale);
    }
    let saved = crate::checkpoint::load_input_transform(checkpoint)?;
    let standardize = match saved {
        Some((mean, std)) => Some(train::Standardize { mean, std }),
        None => train::Standardize::of_config(&config, &file)?,
    };
    if let Some(s) = &standardize {
        if s.mean.len() != d {
            return Err(Error::DataFile {
                file: input.to_path_buf(),
                message: format!(
                    "has {d} features per row, but the model in {} was trained on {} (its saved standardisation)",
                    checkpoint.display(),
                    s.mean.len()
                ),
            });
        }
        s.apply(&mut x);
    }
    super::saved::check_input_width(&config, checkpoint, input, d)?;
    let mut net = saved_network(&config, d, checkpoint, placement, 1024.min(n.max(1)), non_strict)?;
    let logits = net.predict(&x, n)?;
    let classes = net.model().outputs();
    if is(output, "npy") {
        crate::data::write_npy_f32(output, &[n, classes], &logits)?;
    } else if config.data.is_regression() {
        // A regression model's k outputs are its predicted targets, under the targets' names.
        let names = crate::checkpoint::load_description(checkpoint)?.and_then(|d| d.target_names);
        let name = |j: usize| crate::data::Targets::name_in(names.as_deref(), j);
        let mut text = (0..classes).map(|j| csv_field(&name(j))).collect::<Vec<_>>().join(",");
        text.push('\n');
        for row in logits.chunks(classes) {
            text += &row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
            text.push('\n');
        }
        crate::checkpoint::write_atomic(output, text.as_bytes())?;
    } else {
        let name = |c: usize| crate::data::class_name(config.class_names.as_deref(), c);
        let mut text = String::from("predicted");
        for c in 0..classes {
            text += &format!(",{}", csv_field(&format!("logit_{}", name(c))));
        }
        text.push('\n');
        for row in logits.chunks(classes) {
            text += &csv_field(&name(crate::reference::argmax(row)));
            for v in row {
                text += &format!(",{v}");
            }
            text.push('\n');
        }
        crate::checkpoint::write_atomic(output, text.as_bytes())?;
    }
    crate::say!("{n} rows → {} ({classes} outputs each)", output.display());
    Ok(())
}

/// A class name as a CSV field: quoted (RFC 4180) when it holds a comma, a quote or spaces at
/// its ends, so the file reads back as written.
fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) || name.trim() != name {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// Whether `p` has the extension `ext` (any case).
fn is(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Features from a 2-D .npy array: (values, rows, features), all finite.
fn read_npy_features(input: &Path) -> Result<(Vec<f32>, usize, usize)> {
    use crate::data::NpyData;
    let a = crate::data::read_npy(input)?;
    if a.shape.len() != 2 {
        return Err(Error::DataFile {
            file: input.into(),
            message: format!("expected a 2-D array [rows, features], got shape {:?}", a.shape),
        });
    }
    let x: Vec<f32> = match a.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        // Integers as training takes them: exact in f32 up to 2^24.
        NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        NpyData::I32(v) if v.iter().all(|x| x.unsigned_abs() <= 1 << 24) => v.iter().map(|&x| x as f32).collect(),
        NpyData::I64(v) if v.iter().all(|x| x.unsigned_abs() <= 1 << 24) => v.iter().map(|&x| x as f32).collect(),
        other => {
            return Err(Error::DataFile {
                file: input.into(),
                message: format!(
                    "features must be float32, float64 or integers exact in float32, got {}",
                    other.dtype_name()
                ),
            })
        }
    };
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::DataFile {
            file: input.into(),
            message: format!("{}: {} in data", crate::data::row_feature_text(i, a.shape[1]), x[i]),
        });
    }
    Ok((x, a.shape[0], a.shape[1]))
}
