//! `gradflow serve` over real sockets: the binary started on a free port (read back from its
//! first line), files fetched with raw HTTP/1.1, status lines, MIME types, refusals.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `gradflow serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradflow"))
            .args(["serve", "--dir", dir.to_str().unwrap(), "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gradflow serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "serving DIR at http://127.0.0.1:PORT/ (Ctrl-C stops)"
        let port = line.split("http://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).map(|p| p.parse().unwrap());
        Server { child, port: port.unwrap_or_else(|| panic!("no URL in the first line: {line:?}")) }
    }

    /// Sends `request` raw on a new connection and reads until the server closes it.
    fn raw(&self, request: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    }

    /// `method target` with `Connection: close`: the status line, the headers (names lowercased)
    /// and the body.
    fn fetch(&self, method: &str, target: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
        split(&self.raw(&format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn split(response: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8(response[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers =
        lines.map(|l| l.split_once(": ").unwrap()).map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect();
    (status, headers, response[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// A page folder with one file of each served type, a subfolder, and a file beside the folder
/// that must stay out of reach.
fn site(name: &str) -> PathBuf {
    let base = common::scratch_dir("serve", name);
    let web = base.join("web");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><p>hi</p>").unwrap();
    std::fs::write(web.join("pkg/gradflow_web_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for f in ["app.js", "m.mjs", "style.css", "a.json", "a.svg", "a.png", "d.csv", "m.safetensors"] {
        std::fs::write(web.join(f), f).unwrap();
    }
    std::fs::write(base.join("secret.txt"), "outside").unwrap();
    web
}

#[test]
fn serves_files_with_their_types_and_index_html_for_the_root() {
    let server = Server::start(&site("types"));
    let (status, headers, body) = server.fetch("GET", "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(body, b"<!doctype html><p>hi</p>");
    assert_eq!(header(&headers, "content-length"), body.len().to_string());

    // The query (the page's ?selftest) does not change the file.
    assert_eq!(server.fetch("GET", "/index.html?selftest").2, body);

    let (status, headers, body) = server.fetch("GET", "/pkg/gradflow_web_bg.wasm");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), "application/wasm", "streaming compile needs it");
    assert_eq!(body, b"\0asm\x01\0\0\0");

    for (file, mime) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("m.mjs", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("a.json", "application/json"),
        ("a.svg", "image/svg+xml"),
        ("a.png", "image/png"),
        ("d.csv", "text/csv; charset=utf-8"),
        ("m.safetensors", "application/octet-stream"),
    ] {
        let (status, headers, body) = server.fetch("GET", &format!("/{file}"));
        assert_eq!((status.as_str(), header(&headers, "content-type")), ("HTTP/1.1 200 OK", mime), "{file}");
        assert_eq!(body, file.as_bytes());
    }

    // HEAD: GET's head, no body.
    let (status, headers, body) = server.fetch("HEAD", "/app.js");
    assert_eq!((status.as_str(), header(&headers, "content-length")), ("HTTP/1.1 200 OK", "6"));
    assert!(body.is_empty());

    // A folder named without its slash is redirected to it.
    let (status, headers, _) = server.fetch("GET", "/pkg");
    assert_eq!((status.as_str(), header(&headers, "location")), ("HTTP/1.1 301 Moved Permanently", "/pkg/"));
}

#[test]
fn refuses_traversal_unknown_files_and_other_methods() {
    let server = Server::start(&site("refusals"));
    for target in
        ["/../secret.txt", "/pkg/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/..%5csecret.txt"]
    {
        let (status, _, body) = server.fetch("GET", target);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{target}");
        assert!(!String::from_utf8_lossy(&body).contains("outside"), "{target}");
    }
    assert_eq!(server.fetch("GET", "/missing.js").0, "HTTP/1.1 404 Not Found");
    assert_eq!(server.fetch("GET", "/pkg/").0, "HTTP/1.1 404 Not Found", "a folder without index.html: no listing");
    let (status, headers, _) = server.fetch("POST", "/index.html");
    assert_eq!((status.as_str(), header(&headers, "allow")), ("HTTP/1.1 405 Method Not Allowed", "GET, HEAD"));
    assert_eq!(server.fetch("GET", "/a%zz").0, "HTTP/1.1 400 Bad Request");
    assert_eq!(split(&server.raw("nonsense\r\n\r\n")).0, "HTTP/1.1 400 Bad Request");
}

#[test]
fn keeps_a_connection_open_for_several_requests() {
    let server = Server::start(&site("keepalive"));
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // Two requests on one connection, the second closing it: both answered, in order.
    s.write_all(b"GET /a.json HTTP/1.1\r\nHost: x\r\n\r\nGET /d.csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.find("a.json").unwrap() < text.find("d.csv").unwrap(), "{text}");
}

#[test]
fn a_missing_folder_is_an_error_naming_it() {
    let missing = common::scratch_dir("serve", "nofolder").join("web");
    let (ok, _, err) = common::run_gradflow(&["serve", "--dir", missing.to_str().unwrap(), "--port", "0"]);
    assert!(!ok);
    assert!(err.contains(missing.to_str().unwrap()) && err.contains("not a folder"), "{err}");
}
