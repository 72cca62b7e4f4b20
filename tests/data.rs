//! The data module: CSV and .npy loading with file/line-naming errors, splitting, and batch schedules.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gradflow::data::*;
use gradflow::error::Error;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh path under the temp dir, unique to this process and call.
fn temp_path(name: &str) -> PathBuf {
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("gradflow-data-test-{}-{k}-{name}", std::process::id()))
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let p = temp_path(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn csv_err(name: &str, text: &str, opts: &CsvOptions) -> String {
    let p = temp_file(name, text.as_bytes());
    let e = load_csv(&p, opts).expect_err("expected an error").to_string();
    let _ = std::fs::remove_file(&p);
    assert!(e.contains(name), "error should name the file {name}: {e}");
    e
}

fn row_of(values: &[&str]) -> String {
    values.join(",")
}

/// `rows` good rows of `d` features plus a label in 0..3.
fn good_rows(rows: usize, d: usize) -> String {
    (0..rows)
        .map(|r| {
            let mut f: Vec<String> = (0..d).map(|c| format!("{}", (r * d + c) % 17)).collect();
            f.push(format!("{}", r % 3));
            f.join(",") + "\n"
        })
        .collect()
}

// ---------------------------------------------------------------- CSV

#[test]
fn digits_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!((ds.n, ds.d, ds.num_classes), (1797, 64, 10));
    assert_eq!(ds.x.len(), 1797 * 64);
    assert_eq!(ds.labels.len(), 1797);
    assert!(ds.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
    assert_eq!(ds.x.iter().cloned().fold(0.0f32, f32::max), 16.0);
    let mut counts = [0usize; 10];
    ds.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c > 150), "every digit present: {counts:?}");
    assert_eq!(ds.labels[..3], [0, 1, 2]);
    assert_eq!(ds.row(0)[..4], [0.0, 0.0, 5.0, 13.0]);
    // Explicitly no header gives the same rows.
    let no_header = load_csv(&p, &CsvOptions { has_header: Some(false), ..Default::default() }).unwrap();
    assert_eq!(no_header, ds);
}

#[test]
fn csv_header_autodetect_and_label_columns() {
    let p = temp_file("header.csv", b"\xEF\xBB\xBFa, b ,label\r\n1,2,0\r\n\r\n3.5,-4e-1,1\r\n");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!((ds.n, ds.d, ds.num_classes), (2, 2, 2));
    assert_eq!(ds.x, vec![1.0, 2.0, 3.5, -0.4]);
    assert_eq!(ds.labels, vec![0, 1]);

    let q = temp_file("first.csv", b"2,1,2\n0,3,4\n");
    let ds = load_csv(&q, &CsvOptions { label_column: LabelColumn::First, ..Default::default() }).unwrap();
    assert_eq!((ds.n, ds.d, ds.num_classes), (2, 2, 3));
    assert_eq!(ds.x, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(ds.labels, vec![2, 0]);

    let ds =
        load_csv(&q, &CsvOptions { label_column: LabelColumn::Index(1), num_classes: Some(5), ..Default::default() })
            .unwrap();
    assert_eq!(ds.x, vec![2.0, 2.0, 0.0, 4.0]);
    assert_eq!(ds.labels, vec![1, 3]);
    assert_eq!(ds.num_classes, 5);

    // A header forced on: the first (numeric) line is skipped.
    let ds =
        load_csv(&q, &CsvOptions { has_header: Some(true), label_column: LabelColumn::First, ..Default::default() })
            .unwrap();
    assert_eq!((ds.n, ds.labels.clone()), (1, vec![0]));
    for f in [p, q] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn csv_ragged_row_names_line() {
    let mut text = good_rows(6, 64);
    let mut short: Vec<String> = (0..63).map(|_| "1".to_string()).collect();
    short.push("2".into());
    text.push_str(&short.join(","));
    text.push('\n');
    let e = csv_err("ragged.csv", &text, &CsvOptions::default());
    assert!(e.contains("line 7") && e.contains("expected 65 fields, found 64"), "{e}");

    // A header fixes the field count.
    let e = csv_err("ragged_header.csv", "a,b,label\n1,2,0\n1,2,3,0\n", &CsvOptions::default());
    assert!(e.contains("line 3") && e.contains("expected 3 fields, found 4") && e.contains("header"), "{e}");
}

#[test]
fn csv_unparsable_number_names_column() {
    let text = format!("{}{}\n", good_rows(2, 3), row_of(&["1", "abc", "3", "0"]));
    let e = csv_err("nan_text.csv", &text, &CsvOptions::default());
    assert!(e.contains("line 3") && e.contains("column 2") && e.contains("'abc'"), "{e}");

    let e = csv_err("named_col.csv", "px0,px1,label\n1,2,0\n1,x,0\n", &CsvOptions::default());
    assert!(e.contains("line 3") && e.contains("column 2") && e.contains("px1"), "{e}");

    let e = csv_err("empty_field.csv", "1,,0\n", &CsvOptions { has_header: Some(false), ..Default::default() });
    assert!(e.contains("line 1") && e.contains("column 2") && e.contains("empty"), "{e}");

    // A header wrongly declared absent: its words are reported as non-numbers on line 1.
    let e = csv_err(
        "header_as_data.csv",
        "a,b,label\n1,2,0\n",
        &CsvOptions { has_header: Some(false), ..Default::default() },
    );
    assert!(e.contains("line 1") && e.contains("column 1") && e.contains("'a'"), "{e}");
}

#[test]
fn csv_bad_labels() {
    for (bad, what) in [
        ("2.5", "non-negative integer"),
        ("-1", "non-negative integer"),
        ("nan", "non-negative integer"),
        ("inf", "non-negative integer"),
    ] {
        let text = format!("{}{}\n", good_rows(4, 2), row_of(&["1", "2", bad]));
        let e = csv_err("bad_label.csv", &text, &CsvOptions::default());
        assert!(
            e.contains("line 5") && e.contains("column 3") && e.contains("label") && e.contains(what),
            "{bad}: {e}"
        );
    }
    let text = format!("{}{}\n", good_rows(2, 2), row_of(&["1", "2", "3"]));
    let e = csv_err("label_range.csv", &text, &CsvOptions { num_classes: Some(3), ..Default::default() });
    assert!(e.contains("line 3") && e.contains("label 3") && e.contains("3 classes"), "{e}");

    let p = temp_file("label_range_ok.csv", text.as_bytes());
    assert_eq!(load_csv(&p, &CsvOptions::default()).unwrap().num_classes, 4);
    let _ = std::fs::remove_file(p);

    let e = csv_err(
        "label_index.csv",
        "1,2,3\n",
        &CsvOptions { label_column: LabelColumn::Index(3), ..Default::default() },
    );
    assert!(e.contains("line 1") && e.contains("label column"), "{e}");

    let e = csv_err("one_field.csv", "1\n2\n", &CsvOptions::default());
    assert!(e.contains("line 1") && e.contains("at least one feature"), "{e}");
}

#[test]
fn csv_nan_and_inf() {
    let text = format!("{}{}\n", good_rows(11, 4), row_of(&["1", "2", "NaN", "4", "0"]));
    let e = csv_err("nan.csv", &text, &CsvOptions::default());
    assert!(e.contains("line 12: column 3: NaN in data"), "{e}");

    let text = format!("{}{}\n", good_rows(2, 4), row_of(&["-inf", "2", "3", "4", "0"]));
    let e = csv_err("inf.csv", &text, &CsvOptions::default());
    assert!(e.contains("line 3: column 1: Inf in data"), "{e}");

    let e = csv_err("huge.csv", "1e39,0\n", &CsvOptions::default());
    assert!(e.contains("line 1: column 1") && e.contains("float32"), "{e}");
}

#[test]
fn csv_empty_missing_header_only() {
    let e = csv_err("empty.csv", "", &CsvOptions::default());
    assert!(e.contains("empty"), "{e}");
    let e = csv_err("blank.csv", "\n  \n\r\n", &CsvOptions::default());
    assert!(e.contains("empty"), "{e}");
    let e = csv_err("header_only.csv", "a,b,label\n", &CsvOptions::default());
    assert!(e.contains("no data rows"), "{e}");

    let missing = temp_path("does-not-exist.csv");
    let err = load_csv(&missing, &CsvOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("does-not-exist.csv"), "{err}");

    let e = csv_err("binary.csv", "1,2,0\n\u{0}", &CsvOptions::default());
    assert!(e.contains("line 2"), "{e}");
    let p = temp_file("latin1.csv", b"1,2,0\n\xff,1,0\n");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err().to_string();
    assert!(e.contains("latin1.csv") && e.contains("UTF-8"), "{e}");
    let _ = std::fs::remove_file(p);

    let p = temp_file("zero_classes.csv", b"1,0\n");
    assert!(matches!(load_csv(&p, &CsvOptions { num_classes: Some(0), ..Default::default() }), Err(Error::Usage(_))));
    let _ = std::fs::remove_file(p);
}

#[test]
fn csv_in_another_separator_is_refused_with_the_likely_cause() {
    // Each file splits into one field per line at commas; the error says why, on the first line.
    for (name, text, separator) in [
        ("semicolon.csv", "x;y;label\n1.5;2;0\n", "';'-separated"),
        ("semicolon_no_header.csv", "1.5;2;0\n3;4;1\n", "';'-separated"),
        ("tab.tsv", "x\ty\tlabel\n1.5\t2\t0\n", "tab-separated"),
        ("space.txt", "1.5 2 0\n3 4 1\n", "space-separated"),
    ] {
        let e = csv_err(name, text, &CsvOptions::default());
        assert!(e.contains("line 1") && e.contains(separator) && e.contains("comma-separated"), "{e}");
        assert!(!e.contains("found 1 field"), "{e}");
        let p = temp_file(name, text.as_bytes());
        let e = load_features(&p).unwrap_err().to_string();
        let _ = std::fs::remove_file(p);
        assert!(e.contains(name) && e.contains(separator), "load_features: {e}");
    }
    // ';' with decimal commas splits at the commas into non-numbers: the hint comes with them.
    let e = csv_err("decimal_commas.csv", "a,b,label\n1,5;2,0;1\n", &CsvOptions::default());
    assert!(e.contains("line 2") && e.contains("'5;2' is not a number") && e.contains("';'-separated"), "{e}");
    // One ';' line in a comma file: the field count and the hint.
    let e = csv_err("one_bad_line.csv", "a,b,label\n1,2,0\n3;4;1\n", &CsvOptions::default());
    assert!(e.contains("line 3") && e.contains("expected 3 fields, found 1") && e.contains("';'-separated"), "{e}");
    // A header name with a space is no reason to suspect spaces.
    let p = temp_file("spaced_name.csv", b"pixel value\n0.5\n1.5\n");
    assert_eq!(load_features(&p).unwrap(), (vec![0.5, 1.5], 2, 1));
    let _ = std::fs::remove_file(p);
}

#[test]
fn csv_quoted_fields_are_read_as_spreadsheets_write_them() {
    // R's write.csv and pandas' QUOTE_ALL quote fields; the quotes are not part of the value.
    let text = "\"x\",\"y\",\"arm\"\r\n\"1.5\",\"2\",\"0\"\r\n\" -3 \",\"4e-2\",\"1\"\r\n";
    let p = temp_file("quoted.csv", text.as_bytes());
    let ds = load_csv(&p, &CsvOptions { label_column: LabelColumn::Name("arm".into()), ..Default::default() }).unwrap();
    assert_eq!((ds.x.clone(), ds.labels.clone()), (vec![1.5, 2.0, -3.0, 0.04], vec![0, 1]));
    assert_eq!(load_features(&p).unwrap(), (vec![1.5, 2.0, 0.0, -3.0, 0.04, 1.0], 2, 3));
    let _ = std::fs::remove_file(p);

    // A quoted header name may hold a comma or a doubled quote.
    let p = temp_file("quoted_names.csv", b"\"a,b\",\"say \"\"hi\"\"\",label\n1,2,0\n");
    let ds = load_csv(&p, &CsvOptions { label_column: LabelColumn::Name("say \"hi\"".into()), ..Default::default() })
        .unwrap();
    assert_eq!((ds.d, ds.x.clone(), ds.labels.clone()), (2, vec![1.0, 0.0], vec![2]));
    let _ = std::fs::remove_file(p);

    let e = csv_err("unclosed.csv", "a,b,label\n1,\"2,0\n", &CsvOptions::default());
    assert!(e.contains("line 2") && e.contains("column 2") && e.contains("never closes"), "{e}");
    let e = csv_err("after_quote.csv", "a,b,label\n\"1\"5,2,0\n", &CsvOptions::default());
    assert!(e.contains("line 2") && e.contains("column 1") && e.contains("after the closing quote"), "{e}");
    // Quotes do not make a word a number.
    let e = csv_err("quoted_word.csv", "a,b,label\n\"one\",2,0\n", &CsvOptions::default());
    assert!(e.contains("line 2") && e.contains("'one' is not a number"), "{e}");
}

#[test]
fn csv_with_classic_mac_line_ends_counts_lines_as_an_editor() {
    let p = temp_file("mac.csv", b"x,y,label\r1,2,0\r3,nan,1\r");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("NaN"), "{e}");
    let _ = std::fs::remove_file(p);
    let p = temp_file("mac_ok.csv", b"x,y,label\r1,2,0\r3,4,1\r");
    assert_eq!(load_csv(&p, &CsvOptions::default()).unwrap().n, 2);
    let _ = std::fs::remove_file(p);
}

#[test]
fn csv_label_errors_say_what_is_wrong() {
    let e = csv_err("huge_label.csv", "1,2,0\n3,4,4294967296\n", &CsvOptions::default());
    assert!(e.contains("line 2") && e.contains("larger than 4294967295") && !e.contains("non-negative"), "{e}");
    // Every row dropped for NaN: not "only a header".
    let e = csv_err(
        "all_nan.csv",
        "a,b,label\nnan,1,0\n1,inf,1\n",
        &CsvOptions { drop_non_finite: true, ..Default::default() },
    );
    assert!(e.contains("all 2 data rows") && e.contains("dropped") && !e.contains("header"), "{e}");
}

// ---------------------------------------------------------------- .npy

/// A .npy v1.0 file: magic, version, u16 header length, header dict padded with spaces and a
/// final newline so the data starts at a multiple of 64 bytes.
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    assert_eq!(out.len() % 64, 0);
    out.extend_from_slice(data);
    out
}

fn npy_file(name: &str, descr: &str, shape: &[usize], data: &[u8]) -> PathBuf {
    temp_file(name, &npy_bytes(descr, false, shape, data))
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn le_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn le_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn le_i32(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_round_trip() {
    let xf = [1.5f32, -2.0, 0.0, 3.25, 1e-3, 7.0];
    let p = npy_file("f32.npy", "<f4", &[3, 2], &le_f32(&xf));
    assert_eq!(read_npy(&p).unwrap(), NpyArray { shape: vec![3, 2], data: NpyData::F32(xf.to_vec()) });

    let xd = [0.1f64, 0.2, 0.3, -1e10, 5.0, 6.0];
    let q = npy_file("f64.npy", "<f8", &[2, 3], &le_f64(&xd));
    assert_eq!(read_npy(&q).unwrap(), NpyArray { shape: vec![2, 3], data: NpyData::F64(xd.to_vec()) });

    let yl = [2i64, 0, 1];
    let r = npy_file("i64.npy", "<i8", &[3], &le_i64(&yl));
    assert_eq!(read_npy(&r).unwrap(), NpyArray { shape: vec![3], data: NpyData::I64(yl.to_vec()) });

    let s = npy_file("i32.npy", "<i4", &[2], &le_i32(&[4, 1]));
    assert_eq!(read_npy(&s).unwrap().data, NpyData::I32(vec![4, 1]));
    let t = npy_file("u8.npy", "|u1", &[3], &[9, 0, 255]);
    assert_eq!(read_npy(&t).unwrap().data, NpyData::U8(vec![9, 0, 255]));
    let u = npy_file("i1.npy", "|i1", &[2], &[0xff, 3]);
    assert_eq!(read_npy(&u).unwrap().data, NpyData::I32(vec![-1, 3]));

    let ds = load_npy_pair(&p, &r, None).unwrap();
    assert_eq!((ds.n, ds.d, ds.num_classes), (3, 2, 3));
    assert_eq!(ds.x, xf.to_vec());
    assert_eq!(ds.labels, vec![2, 0, 1]);
    assert_eq!(ds.row(1), &[0.0, 3.25]);

    let s2 = npy_file("i32b.npy", "<i4", &[2], &le_i32(&[4, 1]));
    let ds = load_npy_pair(&q, &s2, Some(10)).unwrap();
    assert_eq!((ds.n, ds.d, ds.num_classes), (2, 3, 10));
    assert_eq!(ds.x, xd.iter().map(|&v| v as f32).collect::<Vec<_>>());
    assert_eq!(ds.labels, vec![4, 1]);

    let t2 = npy_file("u8y.npy", "|u1", &[3], &[1, 1, 0]);
    assert_eq!(load_npy_pair(&p, &t2, None).unwrap().labels, vec![1, 1, 0]);
    for f in [p, q, r, s, t, u, s2, t2] {
        let _ = std::fs::remove_file(f);
    }
}

fn npy_err(x: &Path, y: &Path, classes: Option<usize>) -> String {
    load_npy_pair(x, y, classes).expect_err("expected an error").to_string()
}

#[test]
fn npy_errors() {
    let x = npy_file("x_ok.npy", "<f4", &[3, 2], &le_f32(&[0.0; 6]));
    let y = npy_file("y_ok.npy", "<i8", &[3], &le_i64(&[0, 1, 2]));
    assert!(load_npy_pair(&x, &y, None).is_ok());

    let f = temp_file("fortran.npy", &npy_bytes("<f4", true, &[3, 2], &le_f32(&[0.0; 6])));
    let e = npy_err(&f, &y, None);
    assert!(e.contains("fortran.npy") && e.contains("fortran_order"), "{e}");

    let be = npy_file("bigendian.npy", ">f4", &[3, 2], &[0; 24]);
    let e = npy_err(&be, &y, None);
    assert!(e.contains("bigendian.npy") && e.contains("big-endian"), "{e}");

    // Integer inputs are taken when exact in float32, refused beyond 2^24.
    let xi = npy_file("x_int.npy", "<i8", &[3, 2], &le_i64(&[0, 1, 2, 255, -7, 1 << 24]));
    assert_eq!(load_npy_pair(&xi, &y, None).unwrap().x, [0.0, 1.0, 2.0, 255.0, -7.0, 16_777_216.0]);
    let xi = npy_file("x_big.npy", "<i8", &[3, 2], &le_i64(&[0, 0, 0, (1 << 24) + 1, 0, 0]));
    let e = npy_err(&xi, &y, None);
    assert!(e.contains("x_big.npy") && e.contains("row 2, feature 2 (counting from 1)") && e.contains("2^24"), "{e}");

    let yf = npy_file("y_float.npy", "<f4", &[3], &le_f32(&[0.0; 3]));
    let e = npy_err(&x, &yf, None);
    assert!(e.contains("y_float.npy") && e.contains("integers") && e.contains("float32"), "{e}");

    let x1 = npy_file("x_1d.npy", "<f4", &[6], &le_f32(&[0.0; 6]));
    let e = npy_err(&x1, &y, None);
    assert!(e.contains("x_1d.npy") && e.contains("2-D"), "{e}");

    let y2 = npy_file("y_2d.npy", "<i8", &[3, 1], &le_i64(&[0; 3]));
    let e = npy_err(&x, &y2, None);
    assert!(e.contains("y_2d.npy") && e.contains("1-D"), "{e}");

    let y4 = npy_file("y_4rows.npy", "<i8", &[4], &le_i64(&[0; 4]));
    let e = npy_err(&x, &y4, None);
    assert!(
        e.contains("y_4rows.npy") && e.contains("mismatch") && e.contains("4 labels") && e.contains("3 rows"),
        "{e}"
    );

    let short = npy_file("truncated.npy", "<f4", &[3, 2], &le_f32(&[0.0; 5]));
    let e = npy_err(&short, &y, None);
    assert!(e.contains("truncated.npy") && e.contains("24 bytes"), "{e}");

    let f16 = npy_file("half.npy", "<f2", &[3, 2], &[0; 12]);
    let e = npy_err(&f16, &y, None);
    assert!(e.contains("half.npy") && e.contains("<f2") && e.contains("not supported"), "{e}");

    let junk = temp_file("junk.npy", b"this is not numpy at all");
    let e = npy_err(&junk, &y, None);
    assert!(e.contains("junk.npy") && e.contains("not a .npy"), "{e}");

    let empty = temp_file("empty.npy", b"");
    let e = npy_err(&empty, &y, None);
    assert!(e.contains("empty.npy") && e.contains("empty"), "{e}");

    let bad_header = temp_file("bad_header.npy", b"\x93NUMPY\x01\x00\xff\x00{'descr'");
    let e = npy_err(&bad_header, &y, None);
    assert!(e.contains("bad_header.npy") && e.contains("header"), "{e}");

    let missing = temp_path("missing.npy");
    let err = load_npy_pair(&missing, &y, None).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("missing.npy"), "{err}");

    let xnan = npy_file("x_nan.npy", "<f4", &[3, 2], &le_f32(&[0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0]));
    let e = npy_err(&xnan, &y, None);
    assert!(e.contains("x_nan.npy") && e.contains("row 2, feature 2 (counting from 1): NaN in data"), "{e}");
    let xinf = npy_file("x_inf.npy", "<f8", &[3, 2], &le_f64(&[0.0, 0.0, 0.0, 0.0, f64::INFINITY, 0.0]));
    let e = npy_err(&xinf, &y, None);
    assert!(e.contains("x_inf.npy") && e.contains("row 3, feature 1 (counting from 1): Inf in data"), "{e}");

    let yneg = npy_file("y_neg.npy", "<i8", &[3], &le_i64(&[0, -1, 2]));
    let e = npy_err(&x, &yneg, None);
    assert!(e.contains("y_neg.npy") && e.contains("row 2 (counting from 1)") && e.contains("non-negative"), "{e}");

    let e = npy_err(&x, &y, Some(2));
    assert!(
        e.contains("y_ok.npy")
            && e.contains("row 3 (counting from 1)")
            && e.contains("label 2")
            && e.contains("2 classes"),
        "{e}"
    );

    for p in [x, y, f, be, xi, yf, x1, y2, y4, short, f16, junk, empty, bad_header, xnan, xinf, yneg] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn npy_other_versions_and_shapes() {
    // Version 2.0 header (u32 length), a scalar-free empty array, and "=" byte order.
    let header = "{'descr': '=f4', 'fortran_order': False, 'shape': (0, 4), }\n";
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let p = temp_file("v2.npy", &bytes);
    assert_eq!(read_npy(&p).unwrap(), NpyArray { shape: vec![0, 4], data: NpyData::F32(vec![]) });
    let _ = std::fs::remove_file(p);

    let huge = npy_file("huge_shape.npy", "<f8", &[usize::MAX / 2, 4], &[]);
    let e = read_npy(&huge).unwrap_err().to_string();
    assert!(e.contains("huge_shape.npy") && e.contains("too large"), "{e}");
    let _ = std::fs::remove_file(huge);
}

// ---------------------------------------------------------------- rows and lines

/// CSV errors name the file's line as an editor numbers it (header and blank lines count);
/// .npy and in-memory errors name rows and features counting from 1, so x[1, 0] is row 2.
#[test]
fn rows_and_lines_count_from_1_in_every_reader() {
    // The second data row holds a NaN in its first feature.
    let e = csv_err("second_row.csv", "a,b,label\n0,0,0\n\nnan,1,1\n", &CsvOptions::default());
    assert!(e.contains("second_row.csv, line 4: column 1 ('a'): NaN in data"), "{e}");
    let x = npy_file("second_row_x.npy", "<f4", &[2, 2], &le_f32(&[0.0, 0.0, f32::NAN, 1.0]));
    let y = npy_file("second_row_y.npy", "<i8", &[2], &le_i64(&[0, 1]));
    let e = npy_err(&x, &y, None);
    assert!(e.contains("second_row_x.npy: row 2, feature 1 (counting from 1): NaN in data"), "{e}");
    let e = Dataset::new(vec![0.0, 0.0, f32::NAN, 1.0], vec![0, 1], 2, 2, "in memory").unwrap_err().to_string();
    assert!(e.contains("in memory: row 2, feature 1 (counting from 1): NaN in data"), "{e}");

    // The first label out of range: line 2 of the CSV, row 1 of the labels.
    let e =
        csv_err("first_label.csv", "a,b,label\n0,0,5\n", &CsvOptions { num_classes: Some(3), ..Default::default() });
    assert!(e.contains("first_label.csv, line 2") && e.contains("label 5"), "{e}");
    let x_ok = npy_file("finite_x.npy", "<f4", &[2, 2], &le_f32(&[0.0; 4]));
    let y5 = npy_file("first_label_y.npy", "<i8", &[2], &le_i64(&[5, 1]));
    let e = npy_err(&x_ok, &y5, Some(3));
    assert!(e.contains("first_label_y.npy: row 1 (counting from 1): label 5"), "{e}");
    let e = Dataset::new(vec![0.0; 4], vec![5, 1], 2, 3, "in memory").unwrap_err().to_string();
    assert!(e.contains("in memory: row 1 (counting from 1) has label 5"), "{e}");

    // A label too large for u32, and a negative one, in the labels file.
    let big = npy_file("big_label_y.npy", "<i8", &[2], &le_i64(&[0, 1 << 40]));
    let e = npy_err(&x_ok, &big, None);
    assert!(e.contains("row 2 (counting from 1): label 1099511627776 is larger than 4294967295"), "{e}");
    let neg = npy_file("neg_label_y.npy", "<i8", &[2], &le_i64(&[-1, 0]));
    let e = npy_err(&x_ok, &neg, None);
    assert!(e.contains("row 1 (counting from 1): label -1 is not a non-negative integer"), "{e}");
    for p in [x, x_ok, y, y5, big, neg] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn npy_without_rows_is_refused_as_csv_is() {
    let x0 = npy_file("no_rows_x.npy", "<f4", &[0, 2], &[]);
    let y0 = npy_file("no_rows_y.npy", "<i8", &[0], &[]);
    let e = npy_err(&x0, &y0, None);
    assert!(e.contains("no_rows_x.npy") && e.contains("no rows"), "{e}");
    // Every row dropped for a non-finite feature.
    let x = npy_file("all_nan_x.npy", "<f4", &[2, 1], &le_f32(&[f32::NAN, f32::INFINITY]));
    let y = npy_file("all_nan_y.npy", "<i8", &[2], &le_i64(&[0, 1]));
    let e = load_npy_pair_with(&x, &y, None, true).unwrap_err().to_string();
    assert!(e.contains("all_nan_x.npy") && e.contains("all 2 rows") && e.contains("dropped"), "{e}");
    for p in [x0, y0, x, y] {
        let _ = std::fs::remove_file(p);
    }
}

// ---------------------------------------------------------------- Dataset

/// n rows; row i is [i, -i], label i % k.
fn indexed(n: usize, k: usize) -> Dataset {
    let x = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    Dataset::new(x, (0..n).map(|i| (i % k) as u32).collect(), 2, k, "indexed").unwrap()
}

#[test]
fn dataset_new_validates() {
    let e = Dataset::new(vec![0.0; 5], vec![0, 1], 3, 2, "my set").unwrap_err().to_string();
    assert!(e.contains("my set"), "{e}");
    let e = Dataset::new(vec![0.0, f32::NAN, 0.0, 0.0], vec![0, 1], 2, 2, "my set").unwrap_err().to_string();
    assert!(e.contains("my set") && e.contains("row 1, feature 2 (counting from 1): NaN"), "{e}");
    let e = Dataset::new(vec![0.0, 0.0, f32::INFINITY, 0.0], vec![0, 1], 2, 2, "my set").unwrap_err().to_string();
    assert!(e.contains("my set") && e.contains("row 2, feature 1 (counting from 1): Inf"), "{e}");
    let e = Dataset::new(vec![0.0; 4], vec![0, 2], 2, 2, "my set").unwrap_err().to_string();
    assert!(e.contains("my set") && e.contains("label 2") && e.contains("2 classes"), "{e}");
    assert!(Dataset::new(vec![], vec![], 0, 2, "no features").is_err());
    assert!(Dataset::new(vec![], vec![], 3, 0, "no classes").is_err());
    let ok = Dataset::new(vec![1.0, 2.0, 3.0, 4.0], vec![1, 0], 2, 2, "ok").unwrap();
    assert_eq!((ok.n, ok.d, ok.num_classes), (2, 2, 2));
}

#[test]
fn split_is_deterministic_disjoint_and_complete() {
    let ds = indexed(101, 7);
    let (train, test) = ds.split(0.2, 42).unwrap();
    assert_eq!((train.n, test.n), (81, 20));
    assert_eq!((train.d, test.d, train.num_classes, test.num_classes), (2, 2, 7, 7));
    let ids = |s: &Dataset| -> Vec<usize> {
        (0..s.n)
            .map(|i| {
                let r = s.row(i);
                let id = r[0] as usize;
                assert_eq!(r[1], -r[0]);
                assert_eq!(s.labels[i] as usize, id % 7, "label travels with its row");
                id
            })
            .collect()
    };
    let (a, b) = (ids(&train), ids(&test));
    let sa: HashSet<usize> = a.iter().copied().collect();
    let sb: HashSet<usize> = b.iter().copied().collect();
    assert_eq!(sa.len(), a.len());
    assert_eq!(sb.len(), b.len());
    assert!(sa.is_disjoint(&sb));
    assert_eq!(sa.union(&sb).copied().collect::<HashSet<_>>(), (0..101).collect::<HashSet<_>>());

    let (train2, test2) = ds.split(0.2, 42).unwrap();
    assert_eq!((train2, test2), (train.clone(), test.clone()));
    let (train3, _) = ds.split(0.2, 43).unwrap();
    assert_ne!(ids(&train3), a, "another seed gives another split");

    let (all, none) = ds.split(0.0, 1).unwrap();
    assert_eq!((all.n, none.n), (101, 0));
    for bad in [1.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(ds.split(bad, 1), Err(Error::Usage(_))), "{bad}");
    }
}

#[test]
fn gather_and_scale() {
    let mut ds = indexed(5, 3);
    let (mut x, mut y) = (vec![9.0; 100], vec![7; 50]);
    ds.gather(&[4, 0, 4], &mut x, &mut y);
    assert_eq!(x, vec![4.0, -4.0, 0.0, 0.0, 4.0, -4.0]);
    assert_eq!(y, vec![1, 0, 1]);
    ds.gather(&[], &mut x, &mut y);
    assert!(x.is_empty() && y.is_empty());
    ds.scale(0.5);
    assert_eq!(ds.row(3), &[1.5, -1.5]);
}

// ---------------------------------------------------------------- batches

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

#[test]
fn shuffle_covers_each_index_once_and_reshuffles() {
    let mut b = Batcher::new(BatchScheme::Shuffle, 103, 10, false, 7).unwrap();
    assert_eq!(b.steps_per_epoch(), 11);
    let e1 = b.next_epoch();
    let e2 = b.next_epoch();
    for e in [&e1, &e2] {
        assert_eq!(e.len(), 11);
        assert!(e[..10].iter().all(|batch| batch.len() == 10));
        assert_eq!(e[10].len(), 3, "the short last batch is kept");
        assert_eq!(sorted(e.concat()), (0..103).collect::<Vec<_>>());
    }
    assert_ne!(e1, e2, "each epoch is reshuffled");
    assert_ne!(e1.concat(), (0..103).collect::<Vec<_>>());

    let mut again = Batcher::new(BatchScheme::Shuffle, 103, 10, false, 7).unwrap();
    assert_eq!(again.next_epoch(), e1, "reproducible from the seed");
    assert_eq!(again.next_epoch(), e2);
    let mut other = Batcher::new(BatchScheme::Shuffle, 103, 10, false, 8).unwrap();
    assert_ne!(other.next_epoch(), e1);
}

#[test]
fn replacement_draws_m_each_step() {
    let mut b = Batcher::new(BatchScheme::Replacement, 103, 10, false, 3).unwrap();
    assert_eq!(b.steps_per_epoch(), 11);
    let mut seen = HashSet::new();
    let mut dup = false;
    for _ in 0..5 {
        let e = b.next_epoch();
        assert_eq!(e.len(), 11);
        for batch in &e {
            assert_eq!(batch.len(), 10);
            assert!(batch.iter().all(|&i| i < 103));
            dup |= batch.iter().collect::<HashSet<_>>().len() < batch.len();
        }
        let flat = e.concat();
        dup |= flat.iter().collect::<HashSet<_>>().len() < flat.len();
        seen.extend(flat);
    }
    assert!(dup, "with replacement some index repeats within an epoch");
    assert!(seen.len() > 90, "draws spread over the rows: {}", seen.len());
    // drop_last does not change replacement sampling: every step is full.
    let mut d = Batcher::new(BatchScheme::Replacement, 103, 10, true, 3).unwrap();
    assert_eq!(d.steps_per_epoch(), 11);
    assert!(d.next_epoch().iter().all(|b| b.len() == 10));
    let (mut a1, mut a2) = (
        Batcher::new(BatchScheme::Replacement, 50, 8, false, 11).unwrap(),
        Batcher::new(BatchScheme::Replacement, 50, 8, false, 11).unwrap(),
    );
    assert_eq!(a1.next_epoch(), a2.next_epoch());
    assert_eq!(a1.steps_per_epoch(), 7);
}

#[test]
fn drop_last_drops_the_short_batch() {
    for scheme in [BatchScheme::Shuffle, BatchScheme::InOrder] {
        let mut b = Batcher::new(scheme, 103, 10, true, 1).unwrap();
        assert_eq!(b.steps_per_epoch(), 10);
        let e = b.next_epoch();
        assert_eq!(e.len(), 10, "{scheme:?}");
        assert!(e.iter().all(|batch| batch.len() == 10));
        // Nothing to drop when m divides n.
        let mut exact = Batcher::new(scheme, 100, 10, true, 1).unwrap();
        assert_eq!((exact.steps_per_epoch(), exact.next_epoch().len()), (10, 10));
    }
}

#[test]
fn in_order_and_full_batch() {
    let mut b = Batcher::new(BatchScheme::InOrder, 23, 5, false, 9).unwrap();
    let e = b.next_epoch();
    assert_eq!(e.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 5, 5, 3]);
    assert_eq!(e.concat(), (0..23).collect::<Vec<_>>());
    assert_eq!(b.next_epoch(), e);

    for batch_size in [0, 5, 23, 1000] {
        let mut f = Batcher::new(BatchScheme::FullBatch, 23, batch_size, false, 9).unwrap();
        assert_eq!(f.steps_per_epoch(), 1);
        let e = f.next_epoch();
        assert_eq!(e, vec![(0..23).collect::<Vec<_>>()]);
        assert_eq!(f.next_epoch(), e);
    }
}

#[test]
fn batcher_rejects_bad_batch_size() {
    for scheme in [BatchScheme::Shuffle, BatchScheme::Replacement, BatchScheme::InOrder] {
        for m in [0, 24] {
            let err = Batcher::new(scheme, 23, m, false, 0).err().expect("bad batch size");
            assert!(matches!(err, Error::Usage(_)), "{err:?}");
            assert!(err.to_string().contains("batch_size"), "{err}");
        }
        assert!(Batcher::new(scheme, 23, 23, false, 0).is_ok());
        assert!(Batcher::new(scheme, 23, 1, false, 0).is_ok());
    }
    assert!(Batcher::new(BatchScheme::FullBatch, 0, 0, false, 0).is_err());
}

#[test]
fn batch_scheme_names() {
    let names = [
        ("shuffle", BatchScheme::Shuffle),
        ("replacement", BatchScheme::Replacement),
        ("in-order", BatchScheme::InOrder),
        ("full-batch", BatchScheme::FullBatch),
    ];
    for (name, scheme) in names {
        assert_eq!(name.parse::<BatchScheme>().unwrap(), scheme);
        assert_eq!(scheme.to_string(), name);
        assert_eq!(serde_json::from_str::<BatchScheme>(&format!("\"{name}\"")).unwrap(), scheme);
    }
    let e = "sgd".parse::<BatchScheme>().unwrap_err().to_string();
    assert!(e.contains("sgd") && e.contains("in-order"), "{e}");
    assert!(serde_json::from_str::<BatchScheme>("\"InOrder\"").is_err());
}

/// Class names in the label column: numbered in sorted order whatever the rows' order, the
/// header's other names kept for the features, and a file with no header still read as data
/// (its names are only in the label column).
#[test]
fn csv_class_names_are_numbered_in_sorted_order() {
    let p = temp_file("named.csv", b"width,height,kind\n1,2,virginica\n3,4,setosa\n5,6,versicolor\n7,8,setosa\n");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(ds.class_names.as_deref(), Some(&["setosa".to_string(), "versicolor".into(), "virginica".into()][..]));
    assert_eq!(ds.labels, [2, 0, 1, 0]);
    assert_eq!((ds.num_classes, ds.d, ds.n), (3, 2, 4));
    assert_eq!(ds.feature_names.as_deref(), Some(&["width".to_string(), "height".into()][..]));
    assert_eq!(ds.class_name(1), "versicolor");

    let p = temp_file("named_no_header.csv", b"1,2,b\n3,4,a\n");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!((ds.n, ds.labels.clone(), ds.feature_names.clone()), (2, vec![1, 0], None));

    // A first line whose label field alone is not a number, above class numbers, is a header of
    // numbered columns (as pandas writes `pd.DataFrame(X).assign(kind=y)`): not a class.
    let p = temp_file("numbered.csv", b"0,1,kind\n1,2,0\n3,4,1\n");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!((ds.n, ds.num_classes, ds.class_names.clone()), (2, 2, None));
    assert_eq!(ds.feature_names.as_deref(), Some(&["0".to_string(), "1".into()][..]));
    // A label field named like a label column makes a header even above names.
    let p = temp_file("numbered_named.csv", b"0,1,label\n1,2,cat\n3,4,dog\n");
    let ds = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!((ds.n, ds.class_names.clone()), (2, Some(vec!["cat".to_string(), "dog".into()])));
}

/// A stray mark among class numbers is an error naming both kinds' lines, not a third class.
#[test]
fn csv_labels_mixing_numbers_and_names_are_refused() {
    let e = csv_err("mixed.csv", "a,label\n1,0\n2,1\n3,?\n4,1\n", &CsvOptions::default());
    assert!(
        e.contains("line 4") && e.contains("mixes class numbers ('0' on line 2) and class names ('?' on line 4)"),
        "{e}"
    );
}

/// With no config, the header's most telling label name is the label column: `label` over a
/// feature named `y` before it; `y` alone where nothing else is; else the last column.
#[test]
fn csv_label_column_guess_prefers_label_over_y() {
    let guess = |text: &str| gradflow::data::csv::guess_label_column(&temp_file("guess.csv", text.as_bytes())).unwrap();
    assert_eq!(guess("x,y,label\n1,2,a\n"), LabelColumn::Name("label".into()));
    assert_eq!(guess("Class,x,y\na,1,2\n"), LabelColumn::Name("Class".into()));
    assert_eq!(guess("a,y,b\n1,2,3\n"), LabelColumn::Name("y".into()));
    assert_eq!(guess("a,b,c\n1,2,3\n"), LabelColumn::Last);
    assert_eq!(guess("1,2,3\n4,5,6\n"), LabelColumn::Last);
    // A large file is not read whole for the guess: a bad byte past its first MiB does not stop
    // it (the load that follows reports it, with its line).
    let mut big = b"x,\xc3\xa9,label\n".to_vec();
    while big.len() < 3 << 19 {
        big.extend_from_slice("1,2,é\n".as_bytes());
    }
    big.extend_from_slice(b"3,4,\xff\n");
    let p = temp_file("big-guess.csv", &big);
    assert_eq!(gradflow::data::csv::guess_label_column(&p).unwrap(), LabelColumn::Name("label".into()));
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}

/// The page's label-column field: words, digits as a 0-based index, anything else a name.
#[test]
fn a_typed_label_column_reads_as_the_page_writes_it() {
    assert_eq!(LabelColumn::from_text(" last "), LabelColumn::Last);
    assert_eq!(LabelColumn::from_text(""), LabelColumn::Last);
    assert_eq!(LabelColumn::from_text("first"), LabelColumn::First);
    assert_eq!(LabelColumn::from_text("2"), LabelColumn::Index(2));
    assert_eq!(LabelColumn::from_text("+2"), LabelColumn::Name("+2".into()), "config.js writes it as a name");
    assert_eq!(LabelColumn::from_text("kind"), LabelColumn::Name("kind".into()));
}

/// Known classes (a test file, data for a trained model) map through the given names, and a
/// name outside them is an error naming its line; a class count that the names contradict too.
#[test]
fn csv_class_names_against_known_classes_and_counts() {
    let known = Some(vec!["cat".to_string(), "dog".into()]);
    let p = temp_file("known.csv", b"a,label\n1,dog\n2,dog\n");
    let ds = load_csv(&p, &CsvOptions { class_names: known.clone(), ..Default::default() }).unwrap();
    assert_eq!((ds.labels.clone(), ds.num_classes), (vec![1, 1], 2), "both classes, though one occurs");
    let e = csv_err("unknown.csv", "a,label\n1,dog\n2,cow\n", &CsvOptions { class_names: known, ..Default::default() });
    assert!(e.contains("line 3") && e.contains("class 'cow' is not one of the model's classes (cat, dog)"), "{e}");
    let e = csv_err("count.csv", "a,label\n1,dog\n2,cat\n", &CsvOptions { num_classes: Some(3), ..Default::default() });
    assert!(e.contains("data.num_classes = 3 but the column names 2 classes (cat, dog)"), "{e}");
    // Numbers that are not class numbers stay an error (negative, fractional).
    let e = csv_err("fraction.csv", "a,label\n1,0\n2,1.5\n", &CsvOptions::default());
    assert!(e.contains("line 3") && e.contains("'1.5' is not a non-negative integer"), "{e}");
}
