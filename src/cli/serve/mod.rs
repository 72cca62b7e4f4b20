//! `gradflow serve`: a static file server for the web page (issue 23's `web/`), on std::net alone,
//! one thread per connection. WebGPU and wasm need a page served over http (a file:// page cannot
//! fetch its .wasm), and `.wasm` must come as application/wasm for streaming compilation.

mod http;
mod mime;
mod route;

use std::io::{self, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ServeArgs;
use crate::error::{Error, Result};
use http::HeadError;
use route::Route;

/// How long a kept-alive connection may sit idle (or a client take over its head) before its
/// thread gives it up.
const IDLE: Duration = Duration::from_secs(30);

/// Binds `--host:--port`, prints the URL (with the bound port, so `--port 0` can be read back)
/// and serves `--dir` until SIGINT/SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let dir = &args.dir;
    let root = std::fs::canonicalize(dir).ok().filter(|p| p.is_dir()).ok_or_else(|| Error::Io {
        file: dir.clone(),
        message: "serve --dir: not a folder (the web page is built into web/ by scripts/build-web.sh)".into(),
    })?;
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .map_err(|e| Error::Usage(format!("serve: cannot listen on --host {} --port {}: {e}", args.host, args.port)))?;
    let addr = listener.local_addr().map_err(|e| Error::Usage(format!("serve: the bound address: {e}")))?;
    stop_on_signals()?;
    // The first line of stdout, the one tests and scripts read the port from.
    println!("serving {} at http://{addr}/ (Ctrl-C stops)", dir.display());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            // A client that goes away mid-answer is its own business, not the server's.
            let _ = connection(stream, &root);
        });
    }
    Ok(())
}

/// SIGINT/SIGTERM end the server with status 0, the usual way to stop it; nothing is left to
/// save, so a thread waiting on the signals exits the process directly.
fn stop_on_signals() -> Result<()> {
    use signal_hook::consts::TERM_SIGNALS;
    let mut signals = signal_hook::iterator::Signals::new(TERM_SIGNALS)
        .map_err(|e| Error::Usage(format!("could not install the signal handler: {e}")))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            // stdout may be a pipe its reader has closed: that must not keep the server alive.
            let _ = writeln!(io::stdout(), "stopped");
            std::process::exit(0);
        }
    });
    Ok(())
}

/// Answers the requests on one connection until either side closes it.
fn connection(stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    // A client that stops reading must not hold its thread forever either.
    stream.set_write_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = BufWriter::new(stream);
    loop {
        let request = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(HeadError::Malformed(why)) => {
                let _ = writeln!(io::stderr(), "serve: bad request: {why}");
                http::write_status(&mut out, 400, &[], false, false)?;
                return out.flush();
            }
            Err(HeadError::Io(e)) => return Err(e),
        };
        // A body is never read, so the connection cannot carry another request after it.
        let keep_alive = request.keep_alive && !request.has_body;
        let status = answer(&mut out, root, &request, keep_alive)?;
        out.flush()?;
        // The request log; a closed stderr loses it, and nothing else.
        let _ = writeln!(io::stderr(), "{} {} {status}", request.method, request.target);
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Writes the response to one request; returns its status.
fn answer(out: &mut impl Write, root: &Path, request: &http::Request, keep_alive: bool) -> io::Result<u16> {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            http::write_status(out, 405, &[("Allow", "GET, HEAD")], false, keep_alive)?;
            return Ok(405);
        }
    };
    let file: PathBuf = match route::resolve(root, &request.target) {
        Route::File(f) => f,
        Route::Redirect(to) => {
            http::write_status(out, 301, &[("Location", &to)], head_only, keep_alive)?;
            return Ok(301);
        }
        refused => {
            let status = match refused {
                Route::Forbidden => 403,
                Route::BadRequest => 400,
                _ => 404,
            };
            http::write_status(out, status, &[], head_only, keep_alive)?;
            return Ok(status);
        }
    };
    let Ok(mut f) = std::fs::File::open(&file) else {
        http::write_status(out, 403, &[], head_only, keep_alive)?;
        return Ok(403);
    };
    let len = f.metadata()?.len();
    // no-cache: a rebuilt page (scripts/build-web.sh) shows on the next reload.
    let headers = [("Content-Type", mime::content_type(&file)), ("Cache-Control", "no-cache")];
    http::write_head(out, 200, &headers, len, keep_alive)?;
    if !head_only {
        io::copy(&mut f, out)?;
    }
    Ok(200)
}
