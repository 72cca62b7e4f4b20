//! The crate's layers, read from its source: every module imports only from its own layer or
//! the layers below (`LAYERS`), and no two source files import each other, directly or round a
//! longer circle. A `crate::` or `super::` path in code (not in comments, strings or the
//! `#[cfg(test)]` block at a file's end) counts as an import of the module it names; a name a
//! `mod.rs` re-exports (`pub use sub::Name`) counts as an import of `sub`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may import from its own row and those
/// above it in this list, never from a row below.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["spec", "optim", "data", "checkpoint", "config", "plot", "spectrum", "dist"],
    &["reference", "device"],
    &["kernels"],
    &["exec"],
    &["train", "course", "check", "bench"],
    &["cli"],
    &["prelude"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

type Module = Vec<String>;

/// Every module file under `src/` (not the binaries), by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    walk(&path, src, out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src").with_extension("");
            let mut m: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if m == ["lib"] || m == ["main"] {
                continue;
            }
            if m.last().is_some_and(|s| s == "mod") {
                m.pop();
            }
            out.insert(m, path);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code of a Rust file without comments, string and char literals, and its trailing
/// `#[cfg(test)]` block.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body + rest[body..].find(&close).map_or(rest.len() - body, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (rest[1..].starts_with('\\') || rest[1..].chars().nth(1) == Some('\'')) {
            // A char literal ('x' or '\n'); a lifetime has no closing quote right after.
            let len = rest[1..].find('\'').map_or(1, |e| e + 2);
            i += if rest[1..].starts_with("\\'") { 4 } else { len };
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `a::b::{c, d::{e, f}}` as [a::b::c, a::b::d::e, a::b::d::f].
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else { return vec![path.to_string()] };
    let (head, body) = (&path[..open], &path[open + 1..path.rfind('}').unwrap_or(path.len())]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{head}{p}"))).collect()
}

/// The `crate::`/`super::` paths in `code`, each as (root, the path after it).
fn paths(code: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for root in ["crate", "super"] {
        let needle = format!("{root}::");
        let mut from = 0;
        while let Some(at) = code[from..].find(&needle) {
            let start = from + at;
            from = start + needle.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let (mut end, mut depth) = (from, 0);
            for (k, c) in code[from..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    c if depth > 0 || c.is_alphanumeric() || c == '_' || c == ':' => {}
                    _ => break,
                }
                end = from + k + c.len_utf8();
            }
            for p in expand(code[from..end].trim_end_matches(':')) {
                out.push((root, p));
            }
        }
    }
    out
}

/// Names each `mod.rs` re-exports from its children: (module, name) → child module.
fn re_exports(mods: &BTreeMap<Module, PathBuf>) -> BTreeMap<(Module, String), Module> {
    let mut out = BTreeMap::new();
    for (m, path) in mods {
        if !path.ends_with("mod.rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(path).expect("read mod.rs"));
        for stmt in code.split(';') {
            let Some(used) = stmt.trim().strip_prefix("pub use ") else { continue };
            for p in expand(used.trim()) {
                let segs: Vec<&str> = p.split("::").map(str::trim).collect();
                if segs.len() >= 2 && segs[0] != "crate" && segs[0] != "super" {
                    let name = segs[segs.len() - 1].rsplit(" as ").next().unwrap_or("").to_string();
                    let mut child = m.clone();
                    child.push(segs[0].to_string());
                    out.insert((m.clone(), name), child);
                }
            }
        }
    }
    out
}

/// Each module file's imports of other module files.
fn imports(mods: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let re = re_exports(mods);
    let mut graph = BTreeMap::new();
    for (m, path) in mods {
        let mut code = code_of(&std::fs::read_to_string(path).expect("read source"));
        if path.ends_with("mod.rs") {
            // The index lines of a mod.rs (its children and their re-exports) are not imports.
            code = code
                .lines()
                .filter(|l| {
                    let l = l.trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
                    !(l.starts_with("mod ") || (l.starts_with("use ") && !l.starts_with("use crate")))
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        let mut targets = BTreeSet::new();
        for (root, p) in paths(&code) {
            let mut full: Vec<String> = if root == "super" { m[..m.len().saturating_sub(1)].to_vec() } else { vec![] };
            full.extend(p.split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "self"));
            let Some(k) = (1..=full.len()).rev().find(|&k| mods.contains_key(&full[..k])) else { continue };
            let mut target = full[..k].to_vec();
            if let Some(child) = full.get(k).and_then(|name| re.get(&(target.clone(), name.clone()))) {
                target = child.clone();
            }
            if &target != m {
                targets.insert(target);
            }
        }
        graph.insert(m.clone(), targets);
    }
    graph
}

fn crate_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let mods = modules(&crate_src());
    let mut wrong = Vec::new();
    for (m, targets) in imports(&mods) {
        let Some(own) = layer_of(&m[0]) else {
            wrong.push(format!("src/{}: module {} is in no layer of tests/layering.rs", m.join("/"), m[0]));
            continue;
        };
        for t in targets {
            match layer_of(&t[0]) {
                Some(l) if l <= own => {}
                _ => wrong.push(format!("{} (layer {own}) imports {} from a layer above", m.join("::"), t.join("::"))),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_source_files_import_each_other_round_a_circle() {
    let graph = imports(&modules(&crate_src()));
    // Depth-first search with colours; a grey target is a back edge, so a circle.
    fn visit<'a>(
        m: &'a Module,
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<&'a Module, u8>,
        stack: &mut Vec<&'a Module>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m, 1);
        stack.push(m);
        for t in graph.get(m).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                0 => visit(t, graph, state, stack, circles),
                1 => {
                    let from = stack.iter().position(|s| *s == t).unwrap_or(0);
                    let names: Vec<String> = stack[from..].iter().map(|s| s.join("::")).collect();
                    circles.push(format!("{} -> {}", names.join(" -> "), t.join("::")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m, 2);
    }
    let (mut state, mut circles) = (BTreeMap::new(), Vec::new());
    for m in graph.keys() {
        if !state.contains_key(m) {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

/// The checker itself: it sees an import through a re-export, a `super::` path, a nested
/// `use` list, and not one in a comment or a string.
#[test]
fn the_import_reader_resolves_paths_and_ignores_comments_and_strings() {
    let code = code_of("use crate::a::{b, c::{d, e}}; // crate::z\nlet s = \"crate::y\"; let c = '\"'; super::f::g();");
    let found: Vec<(&str, String)> = paths(&code);
    assert_eq!(
        found,
        vec![
            ("crate", "a::b".to_string()),
            ("crate", "a::c::d".to_string()),
            ("crate", "a::c::e".to_string()),
            ("super", "f::g".to_string())
        ]
    );
    let src = crate_src();
    let graph = imports(&modules(&src));
    let exec_gpu = graph.get(&vec!["exec".to_string(), "gpu_network".to_string()]).expect("exec::gpu_network");
    // `crate::spec::{Loss, Model}` is an import of spec::loss and spec::model, through spec's re-exports.
    assert!(exec_gpu.contains(&vec!["spec".to_string(), "model".to_string()]), "{exec_gpu:?}");
    assert!(exec_gpu.contains(&vec!["exec".to_string(), "launch".to_string()]), "{exec_gpu:?}");
}
