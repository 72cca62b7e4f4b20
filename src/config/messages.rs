//! serde's and toml's messages in a user's words: the field, what it takes ("a whole number
//! ≥ 0", "a number") and what was found, never a Rust type name (`usize`, `f32`).

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The dotted field holding byte `at` of `text` ("train.epochs", "model.layers[2].out").
pub fn field_at(text: &str, at: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    in_table(table.get_ref(), at)
}

// A `[section]` table's span does not cover its fields, so every table is searched, not only
// those whose span holds `at`.
fn in_table(table: &DeTable, at: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let inner = in_value(value, at);
        let here = key.span().contains(&at) || value.span().contains(&at);
        match inner {
            Some(rest) if rest.starts_with('[') => Some(format!("{}{rest}", key.get_ref())),
            Some(rest) => Some(format!("{}.{rest}", key.get_ref())),
            None => here.then(|| key.get_ref().to_string()),
        }
    })
}

fn in_value(value: &Spanned<DeValue>, at: usize) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => in_table(t, at),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let inner = in_value(item, at);
            match inner {
                Some(rest) if rest.starts_with('[') => Some(format!("[{i}]{rest}")),
                Some(rest) => Some(format!("[{i}].{rest}")),
                None => item.span().contains(&at).then(|| format!("[{i}]")),
            }
        }),
        _ => None,
    }
}

/// A toml error of `text` as one line: "line L: field: what was wrong" (no line when `lines` is
/// false: `text` is a re-serialised table after `--set`).
pub fn describe(text: &str, e: &toml::de::Error, lines: bool) -> String {
    let message = plain(e.message().trim());
    let Some(span) = e.span() else { return message };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let at = if lines { format!("line {line}: ") } else { String::new() };
    match field_at(text, span.start) {
        Some(field) => format!("{at}{field}: {message}"),
        None => format!("{at}{message}"),
    }
}

/// The largest whole number a TOML file holds (its integers are 64-bit signed).
const TOML_MAX: i64 = i64::MAX;

/// serde's "invalid type: …, expected …" and "invalid value: …, expected …" anywhere in
/// `message`, in words; other messages keep their text with any Rust type name in words.
pub fn plain(message: &str) -> String {
    if message == "floating-point number overflowed" {
        return "the number is too large (at most about 1.8e308)".into();
    }
    for head in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(head) {
            if let Some((found, expected)) = message[start + head.len()..].rsplit_once(", expected ") {
                return format!("{}{}", &message[..start], mismatch(found, expected));
            }
        }
    }
    type_names_in_words(message)
}

/// "expected <words>, found <value>", or "<value> is too large" for an integer out of range.
fn mismatch(found: &str, expected: &str) -> String {
    let expected = expected.trim().trim_end_matches('.');
    if let Some(number) = found.strip_prefix("integer `").and_then(|f| f.strip_suffix("` as i128")) {
        return format!("{number} is too large (at most {TOML_MAX})");
    }
    if let Some(number) = found.strip_prefix("integer `").and_then(|f| f.strip_suffix('`')) {
        if let (Ok(n), Some(max)) = (number.parse::<i128>(), max_of(expected)) {
            if n > max {
                return format!("{number} is too large (at most {max})");
            }
        }
    }
    format!("expected {}, found {}", words(expected), found_words(found))
}

/// The largest value of an integer type serde names.
fn max_of(expected: &str) -> Option<i128> {
    Some(match expected {
        "u8" => u8::MAX as i128,
        "u16" => u16::MAX as i128,
        "u32" => u32::MAX as i128,
        "i32" => i32::MAX as i128,
        "u64" | "usize" | "i64" | "isize" => TOML_MAX as i128,
        _ => return None,
    })
}

/// What serde expected, in words.
fn words(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number ≥ 0".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" | "i128" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list, e.g. [1, 2]".into(),
        "a map" => "a table, e.g. { key = 1 }".into(),
        "a string" | "a borrowed string" | "char" => "a string in quotes".into(),
        other if other.starts_with("struct ") => "a table, e.g. { key = 1 }".into(),
        other => type_names_in_words(other),
    }
}

/// What serde found, in words: "-1", "2.5", "the string \"32\"".
fn found_words(found: &str) -> String {
    let quoted = |prefix: &str| found.strip_prefix(prefix).and_then(|f| f.strip_suffix('`')).map(str::to_owned);
    if let Some(n) = quoted("integer `") {
        return n;
    }
    if let Some(x) = quoted("floating point `") {
        // serde writes 1e20 out in full; large ones read better as written.
        return match x.parse::<f64>() {
            Ok(v) if v.abs() >= 1e15 => format!("{v:e}"),
            _ => x,
        };
    }
    if let Some(b) = quoted("boolean `") {
        return b;
    }
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => type_names_in_words(other),
    }
}

/// Any Rust numeric type name left in a message, in words.
fn type_names_in_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let w = match word.as_str() {
            "usize" | "u64" | "u32" | "u16" | "u8" => "whole number ≥ 0",
            "isize" | "i64" | "i32" | "i16" | "i8" | "i128" => "whole number",
            "f64" | "f32" => "number",
            other => other,
        };
        out.push_str(w);
        word.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_read_as_words() {
        assert_eq!(plain("invalid value: integer `-1`, expected usize"), "expected a whole number ≥ 0, found -1");
        assert_eq!(
            plain("invalid type: string \"32\", expected usize"),
            "expected a whole number ≥ 0, found the string \"32\""
        );
        assert_eq!(
            plain("invalid type: floating point `2.5`, expected usize"),
            "expected a whole number ≥ 0, found 2.5"
        );
        assert_eq!(
            plain("invalid type: floating point `100000000000000000000.0`, expected usize"),
            "expected a whole number ≥ 0, found 1e20"
        );
        assert_eq!(
            plain("invalid value: integer `5000000000`, expected u32"),
            "5000000000 is too large (at most 4294967295)"
        );
        assert_eq!(
            plain("invalid type: integer `99999999999999999999` as i128, expected usize"),
            "99999999999999999999 is too large (at most 9223372036854775807)"
        );
        assert_eq!(
            plain("[optimizer]: lr: invalid type: string \"abc\", expected f64"),
            "[optimizer]: lr: expected a number, found the string \"abc\""
        );
        assert_eq!(plain("unknown field `x`, expected `a`"), "unknown field `x`, expected `a`");
    }

    #[test]
    fn the_field_at_a_position_is_its_dotted_path() {
        let text = "[train]\nepochs = 2\n[model]\nlayers = [{ type = \"relu\" }, { type = \"linear\", out = 3 }]\n";
        assert_eq!(field_at(text, text.find('2').unwrap()).as_deref(), Some("train.epochs"));
        assert_eq!(field_at(text, text.find('3').unwrap()).as_deref(), Some("model.layers[1].out"));
    }
}
