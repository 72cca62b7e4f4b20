//! The Content-Type a file is served with, by its extension.

use std::path::Path;

/// The media type for `path`'s extension (case-insensitive); application/octet-stream for any
/// other. `.wasm` must be application/wasm: `WebAssembly.compileStreaming` refuses anything else.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        // .mjs is JavaScript too: browsers refuse a module script served as anything else.
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "csv" => "text/csv; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "ico" => "image/x-icon",
        // A safetensors file is raw bytes with a JSON header; no registered type exists.
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;
    use std::path::Path;

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type(Path::new("pkg/gradflow_web_bg.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("INDEX.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.mjs")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("model.safetensors")), "application/octet-stream");
        assert_eq!(content_type(Path::new("Makefile")), "application/octet-stream");
    }
}
