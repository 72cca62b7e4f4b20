//! Property tests of every reader of user files (CSV, .npy, safetensors checkpoints and state
//! dicts, TOML configs) on random bytes and on mutated valid files: each call returns Ok or an
//! error with a message (a panic fails the case), a successful read is self-consistent, and no
//! single allocation exceeds what the file's length can justify. Headers that claim huge sizes
//! are unit cases at the end.
//!
//! Case counts are fixed below (not taken from the environment) so the file runs in bounded
//! time; a failure prints its seed and proptest keeps it in fuzz_readers.proptest-regressions
//! for replay.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use gradflow::checkpoint::{self, Checkpoint, Progress};
use gradflow::config::Config;
use gradflow::data::{self, CsvOptions, Dataset, LabelColumn, NpyData};
use gradflow::error::Error;
use gradflow::optim::{Optimizer, Sgd};
use gradflow::spec::{LayerSpec, Model};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use safetensors::tensor::{Dtype, TensorView};

// ------------------------------------------------------------ the largest allocation

#[path = "common/largest_alloc.rs"]
mod largest_alloc;

use largest_alloc::largest_allocation;

/// What a reader may allocate at once for an input of `len` bytes: a few copies of the file
/// widened (bytes to f32, fields to slices), plus small fixed buffers.
fn allowance(len: usize) -> usize {
    64 * len + (1 << 20)
}

// ------------------------------------------------------------ files and checks

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary file holding `bytes`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str, bytes: &[u8]) -> TempFile {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gradflow-fuzz-{}-{k}.{ext}", std::process::id()));
        std::fs::write(&path, bytes).expect("write a temp file");
        TempFile(path)
    }
    fn name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The user-facing words of an error, without the file name the variant adds.
fn message_of(e: &Error) -> String {
    match e {
        Error::Io { message, .. }
        | Error::Data { message, .. }
        | Error::DataFile { message, .. }
        | Error::Config { message, .. }
        | Error::Checkpoint { message, .. } => message.clone(),
        Error::Usage(m) | Error::Model(m) => m.clone(),
        Error::Shape { what, expected, got } => format!("{what}{expected}{got}"),
        other => other.to_string(),
    }
}

/// Runs one reader call: a panic fails the case (proptest catches it), an error must have a
/// message and name one of `files`, and the largest allocation must fit `input_len`.
fn read_cleanly<T>(
    what: &str,
    files: &[&TempFile],
    input_len: usize,
    call: impl FnOnce() -> gradflow::error::Result<T>,
) -> Result<Option<T>, TestCaseError> {
    let (result, largest) = largest_allocation(call);
    prop_assert!(
        largest <= allowance(input_len),
        "{what}: allocated {largest} bytes at once for {input_len} bytes of input"
    );
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let text = e.to_string();
            prop_assert!(!message_of(&e).trim().is_empty(), "{what}: an error without a message: {e:?}");
            let names_file = files.iter().any(|f| text.contains(&f.name()));
            prop_assert!(names_file, "{what}: the error does not name the file: {text}");
            Ok(None)
        }
    }
}

fn check_dataset(what: &str, ds: &Dataset) -> Result<(), TestCaseError> {
    prop_assert_eq!(ds.x.len(), ds.n * ds.d, "{}: x holds n·d values", what);
    prop_assert_eq!(ds.labels.len(), ds.n, "{}: one label per row", what);
    prop_assert!(ds.x.iter().all(|v| v.is_finite()), "{what}: only finite features");
    prop_assert!(ds.labels.iter().all(|&l| (l as usize) < ds.num_classes), "{what}: labels within num_classes");
    Ok(())
}

// ------------------------------------------------------------ mutations

/// One edit of a valid file; positions are fractions of the current length.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Inserts a token of the format's vocabulary.
    Insert(Index, Index),
    /// Writes a token over the bytes at a position, keeping the length where it fits.
    Overwrite(Index, Index),
    Delete(Index, u8),
    Truncate(Index),
    /// Copies a span elsewhere.
    Duplicate(Index, u8, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(a, b)| Mutation::SetByte(a, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, t)| Mutation::Overwrite(a, t)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(a, n)| Mutation::Delete(a, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<u8>(), any::<Index>()).prop_map(|(a, n, b)| Mutation::Duplicate(a, n, b)),
    ]
}

fn mutated(seed: &[u8], edits: &[Mutation], tokens: &[&[u8]]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    for m in edits {
        match m {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] = *v;
            }
            Mutation::Insert(i, t) => {
                let k = at(i, b.len());
                b.splice(k..k, t.get(tokens).iter().copied());
            }
            Mutation::Overwrite(i, t) => {
                let token = t.get(tokens);
                let k = at(i, b.len());
                let end = (k + token.len()).min(b.len());
                b.splice(k..end, token.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let k = at(i, b.len());
                let end = (k + *n as usize).min(b.len());
                b.drain(k..end);
            }
            Mutation::Truncate(i) => b.truncate(at(i, b.len())),
            Mutation::Duplicate(i, n, to) => {
                let k = at(i, b.len());
                let span: Vec<u8> = b[k..(k + *n as usize).min(b.len())].to_vec();
                let dst = at(to, b.len());
                b.splice(dst..dst, span);
            }
            _ => {}
        }
    }
    b
}

/// A seed chosen from `seeds`, mutated 1 to 4 times with `tokens`.
fn mutant(seeds: &'static [Vec<u8>], tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), prop::collection::vec(mutation(), 1..5))
        .prop_map(move |(s, edits)| mutated(&seeds[s.index(seeds.len())], &edits, tokens))
}

/// Random bytes, or a valid seed with random bytes in place of its tail.
fn noise(seeds: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (any::<Index>(), any::<Index>(), prop::collection::vec(any::<u8>(), 0..256)).prop_map(move |(s, cut, tail)| {
            let seed = &seeds[s.index(seeds.len())];
            let mut b = seed[..cut.index(seed.len() + 1)].to_vec();
            b.extend(tail);
            b
        }),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    // Explicit, not from PROPTEST_* variables: the file's run time stays bounded in CI.
    ProptestConfig { cases, max_shrink_iters: 2048, ..ProptestConfig::default() }
}

fn repo_file(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("a seed file in the repository")
}

// ------------------------------------------------------------ CSV

static CSV_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let digits = String::from_utf8(repo_file("data/digits.csv")).unwrap();
    let digits_head: String = digits.lines().take(12).map(|l| format!("{l}\n")).collect();
    vec![
        repo_file("data/spirals.csv"),
        digits_head.into_bytes(),
        b"a,b,label\n1.5,2,0\n-3,4e-2,1\n".to_vec(),
        b"\"x\",\"y\",\"arm\"\r\n\"1.5\",\"2\",\"0\"\r\n\"3\",\"4\",\"1\"\r\n".to_vec(),
        b"x;y;label\n1,5;2;0\n".to_vec(),
        b"1\t2\t0\n3\t4\t1\n".to_vec(),
    ]
});

const CSV_TOKENS: &[&[u8]] = &[
    b",",
    b";",
    b"\t",
    b" ",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b"-1",
    b"1e39",
    b"1e999",
    b"NaN",
    b"inf",
    b"-inf",
    b"4294967295",
    b"4294967296",
    b"99999999999999999999",
    b"0.5",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\0",
    b"x,y,label\n",
    b"\xc3\xa9",
    b",,,,,,,,",
    b"\"1,5\"",
];

fn csv_options() -> impl Strategy<Value = CsvOptions> {
    let label = prop_oneof![
        Just(LabelColumn::Last),
        Just(LabelColumn::First),
        (0usize..5).prop_map(LabelColumn::Index),
        prop_oneof![Just("arm"), Just("label"), Just("y"), Just("")].prop_map(|s| LabelColumn::Name(s.into())),
    ];
    let classes = prop_oneof![Just(None), (1usize..12).prop_map(Some), Just(Some(usize::MAX))];
    let names =
        prop::option::of(prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("0"), Just("x y")], 1..4));
    (label, prop::option::of(any::<bool>()), classes, any::<bool>(), names).prop_map(
        |(label_column, has_header, num_classes, drop_non_finite, names)| CsvOptions {
            label_column,
            has_header,
            num_classes,
            drop_non_finite,
            class_names: names.map(|n| n.into_iter().map(String::from).collect()),
        },
    )
}

fn check_csv(bytes: &[u8], opts: &CsvOptions) -> Result<(), TestCaseError> {
    let f = TempFile::new("csv", bytes);
    if let Some(ds) = read_cleanly("load_csv", &[&f], bytes.len(), || data::load_csv(&f.0, opts))? {
        check_dataset("load_csv", &ds)?;
    }
    if let Some((x, n, d)) = read_cleanly("load_features", &[&f], bytes.len(), || data::load_features(&f.0))? {
        prop_assert_eq!(x.len(), n * d);
        prop_assert!(x.iter().all(|v| v.is_finite()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn csv_readers_survive_mutated_files(bytes in mutant(&CSV_SEEDS, CSV_TOKENS), opts in csv_options()) {
        check_csv(&bytes, &opts)?;
    }

    #[test]
    fn csv_readers_survive_noise(bytes in noise(&CSV_SEEDS), opts in csv_options()) {
        check_csv(&bytes, &opts)?;
    }
}

// ------------------------------------------------------------ .npy

/// A .npy v1.0 file as NumPy writes it: header padded so the data starts at a multiple of 64.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// Version 2.0: a u32 header length.
fn npy_v2(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x02\x00".to_vec();
    out.extend((header.len() as u32).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// Element widths of every dtype the reader takes.
const NPY_DTYPES: &[(&str, usize)] = &[
    ("<f4", 4),
    ("<f8", 8),
    ("<i8", 8),
    ("<u8", 8),
    ("<i4", 4),
    ("<u4", 4),
    ("<i2", 2),
    ("<u2", 2),
    ("|i1", 1),
    ("|u1", 1),
    ("|b1", 1),
];

/// Small [3, 2] inputs and [3] labels of every supported dtype, values 0, 1, 2, ...
static NPY_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut seeds = Vec::new();
    for &(descr, width) in NPY_DTYPES {
        let values = |n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| {
                    let label = if descr == "|b1" { i % 2 } else { i % 3 };
                    match descr {
                        "<f4" => (label as f32).to_le_bytes().to_vec(),
                        "<f8" => (label as f64).to_le_bytes().to_vec(),
                        _ => (label as u64).to_le_bytes()[..width].to_vec(),
                    }
                })
                .collect()
        };
        seeds.push(npy(descr, "(3, 2)", &values(6)));
        seeds.push(npy(descr, "(3,)", &values(3)));
    }
    seeds.push(npy_v2("<f4", "(3, 2)", &[0; 24]));
    seeds.push(npy("<f4", "()", &1.0f32.to_le_bytes()));
    seeds
});

const NPY_TOKENS: &[&[u8]] = &[
    b"(1000000000000, 1000000)",
    b"(18446744073709551615, 2)",
    b"(4611686018427387904, 4)",
    b"()",
    b"(0,)",
    b"(0, 0)",
    b"(3, 0)",
    b"'<f4'",
    b"'<f8'",
    b"'>i8'",
    b"'=u2'",
    b"'|b1'",
    b"'<c8'",
    b"'<U3'",
    b"True",
    b"False",
    b"'shape'",
    b"'descr'",
    b"'fortran_order'",
    b",",
    b"}",
    b"{",
    b":",
    b"\n",
    b"\0",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f\xff\xff\xf0\x7f",
    b"-1",
    b"3L",
    b"\x93NUMPY\x03\x00",
];

/// Well-formed headers with random dtypes (supported and not), shapes (empty, zero, huge) and
/// bodies of the right length or a little off, holding NaN, Inf, huge and negative values.
fn npy_structured() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop_oneof![
        (0..NPY_DTYPES.len()).prop_map(|i| NPY_DTYPES[i].0.to_string()),
        prop_oneof![Just(">f4"), Just("=f8"), Just("<f2"), Just("<c8"), Just("|O"), Just("<U2"), Just("")]
            .prop_map(String::from),
    ];
    let dim = prop_oneof![4 => 0usize..4, 1 => Just(1usize << 40), 1 => Just(usize::MAX)];
    let body = prop_oneof![Just(0i64), Just(0), Just(0), Just(-1), Just(1), Just(-8), Just(100)];
    let fill = prop_oneof![
        Just(f64::NAN.to_le_bytes()),
        Just(f64::NEG_INFINITY.to_le_bytes()),
        Just(1e300f64.to_le_bytes()),
        Just(u64::MAX.to_le_bytes()),
        Just((-1i64).to_le_bytes()),
        any::<u64>().prop_map(u64::to_le_bytes),
    ];
    (any::<bool>(), descr, any::<bool>(), prop::collection::vec(dim, 0..4), body, fill).prop_map(
        |(v2, descr, fortran, shape, off, fill)| {
            let width = NPY_DTYPES.iter().find(|(d, _)| *d == descr).map_or(4, |&(_, w)| w);
            let exact = shape.iter().try_fold(width, |a, &d| a.checked_mul(d)).filter(|&n| n <= 4096).unwrap_or(16);
            let len = (exact as i64 + off).clamp(0, 8192) as usize;
            let data: Vec<u8> = (0..len).map(|i| fill[i % 8]).collect();
            let shape = match shape.as_slice() {
                [one] => format!("({one},)"),
                dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
            };
            let mut bytes = if v2 { npy_v2(&descr, &shape, &data) } else { npy(&descr, &shape, &data) };
            if fortran {
                let text = String::from_utf8_lossy(&bytes).replace("'fortran_order': False", "'fortran_order': True ");
                bytes = text.into_bytes();
            }
            bytes
        },
    )
}

/// Valid [3, 2] float32 inputs and [3] int64 labels, the partners of a mutated file.
static GOOD_X: LazyLock<Vec<u8>> = LazyLock::new(|| npy("<f4", "(3, 2)", &[0; 24]));
static GOOD_Y: LazyLock<Vec<u8>> =
    LazyLock::new(|| npy("<i8", "(3,)", &[0i64, 1, 2].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));

fn check_npy(bytes: &[u8], classes: Option<usize>, drop: bool) -> Result<(), TestCaseError> {
    let f = TempFile::new("npy", bytes);
    let len = bytes.len();
    if let Some(a) = read_cleanly("read_npy", &[&f], len, || data::read_npy(&f.0))? {
        let count = a.shape.iter().product::<usize>();
        let held = match &a.data {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::U8(v) => v.len(),
        };
        prop_assert_eq!(held, count, "read_npy: the values fill the shape {:?}", a.shape);
    }
    let (x, y) = (TempFile::new("npy", &GOOD_X), TempFile::new("npy", &GOOD_Y));
    let both = len + GOOD_X.len().max(GOOD_Y.len());
    for (xf, yf) in [(&f, &y), (&x, &f)] {
        let read = || data::load_npy_pair_with(&xf.0, &yf.0, classes, drop);
        if let Some(ds) = read_cleanly("load_npy_pair_with", &[xf, yf], both, read)? {
            check_dataset("load_npy_pair_with", &ds)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn npy_readers_survive_mutated_files(
        bytes in mutant(&NPY_SEEDS, NPY_TOKENS),
        classes in prop_oneof![Just(None), (1usize..5).prop_map(Some)],
        drop in any::<bool>(),
    ) {
        check_npy(&bytes, classes, drop)?;
    }

    #[test]
    fn npy_readers_survive_odd_headers(
        bytes in npy_structured(),
        classes in prop_oneof![Just(None), (1usize..5).prop_map(Some)],
        drop in any::<bool>(),
    ) {
        check_npy(&bytes, classes, drop)?;
    }

    #[test]
    fn npy_readers_survive_noise(bytes in noise(&NPY_SEEDS), drop in any::<bool>()) {
        check_npy(&bytes, None, drop)?;
    }
}

// ------------------------------------------------------------ checkpoints and state dicts

fn model(inputs: usize, layers: &str) -> Model {
    #[derive(serde::Deserialize)]
    struct Layers {
        layers: Vec<LayerSpec>,
    }
    let layers = toml::from_str::<Layers>(&format!("layers = {layers}")).unwrap().layers;
    Model::new(inputs, layers).unwrap()
}

/// The model checkpoints are read for: linear, batch norm, relu, linear (2 → 4 → 3).
static MODEL: LazyLock<Model> = LazyLock::new(|| {
    model(2, "[{ type = 'linear', out = 4 }, { type = 'batch-norm' }, { type = 'relu' }, { type = 'linear', out = 3 }]")
});
/// Another shape, to save files the model above must refuse.
static OTHER_MODEL: LazyLock<Model> = LazyLock::new(|| model(3, "[{ type = 'linear', out = 3 }]"));

fn adam() -> Optimizer {
    Optimizer::Adam(Optimizer::adam(0.01))
}

fn sgd() -> Optimizer {
    Optimizer::Sgd(Sgd::new(0.1))
}

/// A checkpoint of `model` with `fill` as every parameter and state value.
fn checkpoint_of(
    model: &Model,
    optimizer: &Optimizer,
    fill: f32,
    standardize: Option<(Vec<f32>, Vec<f32>)>,
) -> Checkpoint {
    let mut norm = model.init_norm_state();
    norm.batches_tracked.iter_mut().for_each(|b| *b = 7);
    Checkpoint {
        params: vec![fill; model.param_len],
        norm,
        optimizer_state: Some(vec![fill; model.param_len * optimizer.state_slots()]),
        progress: Progress { steps: 12, epoch: 3, batch: 1 },
        standardize,
        schedule: "shuffle batch_size=4 drop_last=false seed=0 rows=16".into(),
        train_rows: "rows=16 features=3 fnv=0123456789abcdef".into(),
        // A description, so that mutations reach its reader and the config parser behind it.
        description: Some(checkpoint::Description {
            config: gradflow::config::DEFAULT_CONFIG.into(),
            builtin: fill > 0.0,
            class_names: (fill < 0.0).then(|| vec!["cat".into(), "dog, \"big\"".into()]),
            target_names: None,
        }),
    }
}

/// A checkpoint written by gradflow's own `checkpoint::save`.
fn saved(model: &Model, optimizer: &Optimizer, ck: &Checkpoint) -> Vec<u8> {
    let f = TempFile::new("safetensors", b"");
    checkpoint::save(&f.0, model, optimizer, ck).expect("save a checkpoint");
    std::fs::read(&f.0).unwrap()
}

static CHECKPOINT_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let standardize = Some((vec![0.5, -1.0], vec![2.0, 0.25]));
    vec![
        saved(&MODEL, &adam(), &checkpoint_of(&MODEL, &adam(), 0.25, standardize.clone())),
        saved(&MODEL, &sgd(), &checkpoint_of(&MODEL, &sgd(), -1.5, None)),
        saved(&OTHER_MODEL, &adam(), &checkpoint_of(&OTHER_MODEL, &adam(), 1.0, standardize)),
    ]
});

const SAFETENSORS_TOKENS: &[&[u8]] = &[
    b"999999999999",
    b"18446744073709551615",
    b"1000000000000,1000000",
    b"\"F32\"",
    b"\"F64\"",
    b"\"I64\"",
    b"\"BF16\"",
    b"\"F8_E4M3\"",
    b"\"shape\"",
    b"\"data_offsets\"",
    b"\"dtype\"",
    b"\"__metadata__\"",
    b"\"gradflow.checksum\"",
    b"[]",
    b"[0,0]",
    b"{",
    b"}",
    b",",
    b"\"",
    b"\\u0000",
    b"\0",
    b"\xff",
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
];

fn check_checkpoint(bytes: &[u8]) -> Result<(), TestCaseError> {
    let f = TempFile::new("safetensors", bytes);
    let len = bytes.len();
    for optimizer in [adam(), sgd()] {
        if let Some(ck) = read_cleanly("checkpoint::load", &[&f], len, || checkpoint::load(&f.0, &MODEL, &optimizer))? {
            prop_assert_eq!(ck.params.len(), MODEL.param_len);
            prop_assert!(ck.params.iter().all(|v| v.is_finite()), "load: finite parameters");
            let state = ck.optimizer_state.unwrap_or_default();
            prop_assert_eq!(state.len(), MODEL.param_len * optimizer.state_slots());
        }
    }
    if let Some((params, norm)) =
        read_cleanly("load_state_dict", &[&f], len, || checkpoint::load_state_dict(&f.0, &MODEL))?
    {
        prop_assert_eq!(params.len(), MODEL.param_len);
        prop_assert!(params.iter().chain(&norm.running).all(|v| v.is_finite()), "load_state_dict: finite values");
    }
    if let Some(Some(d)) = read_cleanly("load_description", &[&f], len, || checkpoint::load_description(&f.0))? {
        // The saved config parses (or is refused) without a panic either.
        read_cleanly("the saved config", &[&f], len, || {
            gradflow::config::Config::from_saved(&d.config, &f.0, d.builtin, &[])
        })?;
    }
    if let Some(Some((mean, std))) =
        read_cleanly("load_input_transform", &[&f], len, || checkpoint::load_input_transform(&f.0))?
    {
        prop_assert_eq!(mean.len(), std.len());
        prop_assert!(std.iter().all(|s| *s > 0.0) && mean.iter().all(|m| m.is_finite()));
    }
    Ok(())
}

/// Names a state-dict file may hold: the model's, its optimizer state, the input transform,
/// and strangers.
const TENSOR_NAMES: &[&str] = &[
    "0.weight",
    "0.bias",
    "1.weight",
    "1.bias",
    "1.running_mean",
    "1.running_var",
    "1.num_batches_tracked",
    "3.weight",
    "3.bias",
    "optimizer.exp_avg.0.weight",
    "gradflow.input_mean",
    "gradflow.input_std",
    "stranger",
];

const DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F64, Dtype::I64, Dtype::I32, Dtype::U8, Dtype::BF16, Dtype::BOOL];

/// A safetensors file built tensor by tensor: model names with random dtypes, shapes and bytes
/// (NaN, Inf and huge values among them), and random gradflow metadata.
fn state_dict() -> impl Strategy<Value = Vec<u8>> {
    let tensor = (any::<Index>(), any::<Index>(), prop::collection::vec(0usize..6, 0..3), any::<u64>());
    let meta = prop::collection::vec((0usize..5, prop_oneof![Just("-1"), Just("3"), Just("x"), Just("")]), 0..4);
    (prop::collection::vec(tensor, 0..10), meta).prop_map(|(tensors, meta)| {
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, dtype, shape, bits) in tensors {
            let name = name.get(TENSOR_NAMES).to_string();
            if owned.iter().any(|(n, ..)| *n == name) {
                continue;
            }
            let dtype = *dtype.get(DTYPES);
            let bytes = shape.iter().product::<usize>() * dtype.bitsize() / 8;
            // A repeating 8-byte pattern: with the right bits it is NaN, Inf or 1e300.
            let pattern = match bits % 4 {
                0 => f64::NAN.to_le_bytes(),
                1 => f64::INFINITY.to_le_bytes(),
                2 => 1e300f64.to_le_bytes(),
                _ => bits.to_le_bytes(),
            };
            owned.push((name, dtype, shape, (0..bytes).map(|i| pattern[i % 8]).collect()));
        }
        let keys = ["gradflow.steps", "gradflow.epoch", "gradflow.optimizer", "gradflow.checksum", "format"];
        let meta: std::collections::HashMap<String, String> =
            meta.into_iter().map(|(k, v)| (keys[k].to_string(), v.to_string())).collect();
        let views: Vec<(String, TensorView<'_>)> =
            owned.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, Some(meta)).unwrap()
    })
}

/// Checkpoints saved by gradflow (valid checksums) with values and transforms a loader must
/// refuse or take: NaN, Inf, zero or negative std, mismatched lengths, another model.
fn odd_checkpoint() -> impl Strategy<Value = Vec<u8>> {
    let fill = prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(0.0f32), Just(-3.0f32), Just(f32::MAX)];
    let transform = prop_oneof![
        Just(None),
        (0usize..4, 0usize..4, fill.clone()).prop_map(|(m, s, v)| Some((vec![0.0; m], vec![v; s]))),
    ];
    (any::<bool>(), any::<bool>(), fill, transform).prop_map(|(other_model, use_sgd, fill, transform)| {
        let model: &Model = if other_model { &OTHER_MODEL } else { &MODEL };
        let optimizer = if use_sgd { sgd() } else { adam() };
        saved(model, &optimizer, &checkpoint_of(model, &optimizer, fill, transform))
    })
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn checkpoint_readers_survive_mutated_files(bytes in mutant(&CHECKPOINT_SEEDS, SAFETENSORS_TOKENS)) {
        check_checkpoint(&bytes)?;
    }

    #[test]
    fn checkpoint_readers_survive_noise(bytes in noise(&CHECKPOINT_SEEDS)) {
        check_checkpoint(&bytes)?;
    }

    #[test]
    fn checkpoint_readers_survive_odd_state_dicts(bytes in state_dict()) {
        check_checkpoint(&bytes)?;
    }

    #[test]
    fn checkpoint_readers_survive_odd_saved_values(bytes in odd_checkpoint()) {
        check_checkpoint(&bytes)?;
    }
}

// ------------------------------------------------------------ TOML configs

static CONFIG_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "configs/*.toml are the seeds");
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
});

const TOML_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"{",
    b"}",
    b"=",
    b"\"",
    b"'",
    b"\n",
    b"#",
    b",",
    b".",
    b"-1",
    b"0",
    b"1e999",
    b"nan",
    b"-inf",
    b"18446744073709551616",
    b"9223372036854775807",
    b"true",
    b"layers",
    b"{ type = \"residual\", layers = [",
    b"{ type = \"batch-norm\", momentum = \"none\" }",
    b"[data]\n",
    b"[model]\n",
    b"[optimizer]\ntype = \"sgd\"\n",
    b"[[train.param_groups]]\n",
    b"out = 0",
    b"lr = -1",
    b"\\u0000",
    b"\"\"\"",
    b"'''",
    b"1979-05-27T07:32:00Z",
    b"\xff",
];

/// `--set` overrides, well and badly formed.
fn overrides() -> impl Strategy<Value = Vec<String>> {
    let one = prop_oneof![
        Just("optimizer.lr=0.5".to_string()),
        Just("optimizer.lr=-1".to_string()),
        Just("train.epochs=nan".to_string()),
        Just("data.path=x.csv".to_string()),
        Just("data.=1".to_string()),
        Just("model.layers.0=1".to_string()),
        Just("novalue".to_string()),
        Just("a.b.c.d=[1,{x=2}]".to_string()),
        "[a-z.=\\[\\]{}'\" 0-9]{0,24}",
    ];
    prop::collection::vec(one, 0..3)
}

fn check_config(bytes: &[u8], sets: &[String]) -> Result<(), TestCaseError> {
    let f = TempFile::new("toml", bytes);
    let len = bytes.len() + sets.iter().map(String::len).sum::<usize>();
    read_cleanly("Config::load_with", &[&f], len, || Config::load_with(&f.0, sets))?;
    let text = String::from_utf8_lossy(bytes);
    if let Some(config) = read_cleanly("Config::parse_with", &[&f], len, || Config::parse_with(&text, &f.0, sets))? {
        prop_assert!(config.optimizer.validate().is_ok(), "a parsed config has valid optimizer settings");
        // The data options are read from a parsed config too.
        read_cleanly("Config::csv_options", &[&f], len, || config.csv_options(&f.0))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn config_parser_survives_mutated_files(bytes in mutant(&CONFIG_SEEDS, TOML_TOKENS), sets in overrides()) {
        check_config(&bytes, &sets)?;
    }

    #[test]
    fn config_parser_survives_noise(bytes in noise(&CONFIG_SEEDS), sets in overrides()) {
        check_config(&bytes, &sets)?;
    }
}

// ------------------------------------------------------------ headers that claim too much

/// Reads `bytes` with `read`, expecting a refusal whose message contains `expect`, made without
/// an allocation the file's length does not justify.
fn refused<T: std::fmt::Debug>(
    ext: &str,
    bytes: &[u8],
    expect: &str,
    read: impl FnOnce(&Path) -> gradflow::error::Result<T>,
) {
    let f = TempFile::new(ext, bytes);
    let (result, largest) = largest_allocation(|| read(&f.0));
    let e = result.expect_err("a refusal").to_string();
    assert!(e.contains(&f.name()) && e.contains(expect), "{e}");
    assert!(largest <= allowance(bytes.len()), "allocated {largest} bytes for a {}-byte file: {e}", bytes.len());
}

#[test]
fn npy_shapes_larger_than_the_file_are_refused_before_allocating() {
    let cases = [
        ("<f4", "(1000000000000, 1000000)", "needs 4000000000000000000 bytes"),
        ("<f8", "(1000000000000, 1000000)", "needs 8000000000000000000 bytes"),
        ("|u1", "(1000000000000, 1000000)", "the file has 8"),
        ("<f4", "(18446744073709551615,)", "too large"),
        ("<i8", "(4294967296, 4294967296)", "too large"),
    ];
    for (descr, shape, expect) in cases {
        refused("npy", &npy(descr, shape, &[0; 8]), expect, data::read_npy);
        let x = TempFile::new("npy", &GOOD_X);
        refused("npy", &npy(descr, shape, &[0; 8]), expect, |y| data::load_npy_pair(&x.0, y, None));
    }
    // A version 2.0 header length of 4 GiB in an 80-byte file.
    let mut lying = npy_v2("<f4", "(3, 2)", &[0; 24]);
    lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    refused("npy", &lying, "truncated", data::read_npy);
}

/// A safetensors file of one tensor whose header claims `shape` and `offsets`, with `data` after.
fn safetensors_claiming(shape: &str, offsets: &str, data: &[u8]) -> Vec<u8> {
    let header = format!("{{\"0.weight\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":{offsets}}}}}");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn safetensors_headers_larger_than_the_file_are_refused_before_allocating() {
    let files = [
        safetensors_claiming("[1000000000000,1000000]", "[0,4000000000000000000]", &[0; 32]),
        safetensors_claiming("[4294967296,4294967296,4]", "[0,0]", &[]),
        safetensors_claiming("[4,2]", "[0,32]", &[0; 8]),
    ];
    for bytes in &files {
        refused("safetensors", bytes, "not a readable safetensors file", |p| checkpoint::load_state_dict(p, &MODEL));
        refused("safetensors", bytes, "not a readable safetensors file", |p| checkpoint::load(p, &MODEL, &adam()));
        refused("safetensors", bytes, "not a readable safetensors file", checkpoint::load_input_transform);
    }
    // A header length of 2^63 - 1 in a 16-byte file.
    let mut lying = safetensors_claiming("[4,2]", "[0,32]", &[0; 32]);
    lying[..8].copy_from_slice(&(i64::MAX as u64).to_le_bytes());
    refused("safetensors", &lying, "not a readable safetensors file", checkpoint::load_input_transform);
}

#[test]
fn csv_labels_implying_absurd_class_counts_are_refused() {
    let opts = CsvOptions::default();
    for (text, line) in [("1,2,0\n3,4,4294967295\n", "line 2"), ("0.5,70000\n1,1\n", "line 1")] {
        let f = TempFile::new("csv", text.as_bytes());
        let e = data::load_csv(&f.0, &opts).expect_err("an absurd class count").to_string();
        assert!(e.contains(&f.name()) && e.contains(line) && e.contains("data.num_classes"), "{e}");
    }
    // Given explicitly, a large count is the user's word; many classes with as many rows pass.
    let f = TempFile::new("csv", b"1,2,0\n3,4,70000\n");
    let ds = data::load_csv(&f.0, &CsvOptions { num_classes: Some(70_001), ..Default::default() }).unwrap();
    assert_eq!(ds.num_classes, 70_001);
    let rows: String = (0..70_000).map(|i| format!("1,{i}\n")).collect();
    let f = TempFile::new("csv", rows.as_bytes());
    assert_eq!(data::load_csv(&f.0, &opts).unwrap().num_classes, 70_000);
    // The same rule for .npy labels.
    let y = npy("<i8", "(3,)", &[0i64, 1, u32::MAX as i64].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let x = TempFile::new("npy", &GOOD_X);
    refused("npy", &y, "data.num_classes", |y| data::load_npy_pair(&x.0, y, None));
}

#[test]
fn deeply_nested_configs_are_refused_without_overflowing_the_stack() {
    for depth in [1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let text = format!("[data]\npath = 'x.csv'\nnested = {}1{}\n", open.repeat(depth), close.repeat(depth));
            let f = TempFile::new("toml", text.as_bytes());
            let e = Config::load(&f.0).expect_err("a refusal").to_string();
            assert!(e.contains(&f.name()), "{e}");
        }
    }
}
