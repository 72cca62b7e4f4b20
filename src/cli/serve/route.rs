//! Which file under the served folder a request target names, or why none: the one place that
//! keeps a request inside the folder.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// What a request target resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A regular file inside the root.
    File(PathBuf),
    /// A folder named without its trailing slash: the same target with one (so the page's
    /// relative URLs resolve inside it).
    Redirect(String),
    /// A `..` segment, a backslash, or a path that leaves the root through a link.
    Forbidden,
    NotFound,
    /// Not an origin-form target, a bad %-escape, or not UTF-8 once decoded.
    BadRequest,
}

/// Resolves `target` (the request line's, e.g. `/index.html?selftest`) against `root`, which
/// must be canonical (`std::fs::canonicalize`). A folder serves its index.html; there are no
/// listings.
pub fn resolve(root: &Path, target: &str) -> Route {
    let Some(rest) = target.strip_prefix('/') else { return Route::BadRequest };
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let Some(decoded) = percent_decode(path) else { return Route::BadRequest };
    let mut file = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            // Refused rather than resolved: a browser never sends one (it normalises the URL),
            // so a `..` here is a client probing for files outside the root.
            ".." => return Route::Forbidden,
            s if s.contains('\\') => return Route::Forbidden,
            s => file.push(s),
        }
    }
    let real = match std::fs::canonicalize(&file) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Route::Forbidden,
        Err(_) => return Route::NotFound,
    };
    // A symlink may point anywhere; only what resolves inside the root is served.
    if !real.starts_with(root) {
        return Route::Forbidden;
    }
    if real.is_dir() {
        if !decoded.is_empty() && !decoded.ends_with('/') {
            let query = &target[1 + path.len()..];
            // Rebuilt from the non-empty segments: a leading "//" would send the browser to
            // another host (a protocol-relative URL).
            let folder: String =
                path.split('/').filter(|s| !s.is_empty() && *s != ".").map(|s| format!("{s}/")).collect();
            return Route::Redirect(format!("/{folder}{query}"));
        }
        let index = real.join("index.html");
        return if index.is_file() { Route::File(index) } else { Route::NotFound };
    }
    if real.is_file() {
        Route::File(real)
    } else {
        Route::NotFound
    }
}

/// `s` with every `%XX` replaced by its byte; None for a malformed escape, a NUL, or bytes that
/// are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("gradflow-route-{}", std::process::id()));
        let root = base.join("web");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "<p>").unwrap();
        std::fs::write(root.join("pkg/a b.js"), "").unwrap();
        std::fs::write(base.join("secret.txt"), "no").unwrap();
        (std::fs::canonicalize(&root).unwrap(), base)
    }

    #[test]
    fn files_folders_and_refusals() {
        let (r, base) = root();
        assert_eq!(resolve(&r, "/"), Route::File(r.join("index.html")));
        assert_eq!(resolve(&r, "/index.html?selftest"), Route::File(r.join("index.html")));
        assert_eq!(resolve(&r, "/pkg/a%20b.js"), Route::File(r.join("pkg/a b.js")));
        assert_eq!(resolve(&r, "/pkg?x=1"), Route::Redirect("/pkg/?x=1".into()));
        assert_eq!(resolve(&r, "//pkg"), Route::Redirect("/pkg/".into()), "never to the host \"pkg\"");
        assert_eq!(resolve(&r, "/.//pkg?a"), Route::Redirect("/pkg/?a".into()));
        assert_eq!(resolve(&r, "/."), Route::Redirect("/".into()));
        assert_eq!(resolve(&r, "/pkg/"), Route::NotFound, "no index.html, no listing");
        assert_eq!(resolve(&r, "/missing.js"), Route::NotFound);
        assert_eq!(resolve(&r, "/../secret.txt"), Route::Forbidden);
        assert_eq!(resolve(&r, "/pkg/%2e%2e/%2E%2E/secret.txt"), Route::Forbidden);
        assert_eq!(resolve(&r, "/..%5csecret.txt"), Route::Forbidden);
        assert_eq!(resolve(&r, "/a%zz"), Route::BadRequest);
        assert_eq!(resolve(&r, "/a%00"), Route::BadRequest);
        assert_eq!(resolve(&r, "index.html"), Route::BadRequest);
        std::fs::remove_dir_all(base).unwrap();
    }
}
