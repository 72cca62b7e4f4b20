//! The HTTP/1.1 a static file server needs: reading a request's head, writing a response's.

use std::io::{self, BufRead, Write};

/// The most a request's head (request line and headers) may take; a longer one is refused.
const MAX_HEAD: usize = 16 * 1024;

/// A request's head, as far as serving files needs it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The client wants the connection kept open after the answer (HTTP/1.1 unless it says
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The request has a body, which is never read: the connection closes after the answer.
    pub has_body: bool,
}

/// Why no request was read.
#[derive(Debug)]
pub enum HeadError {
    /// Not HTTP/1.x, or a head over `MAX_HEAD`: answered with 400, then the connection closes.
    Malformed(&'static str),
    Io(io::Error),
}

/// The next request's head on the connection, None when the client closed it first.
pub fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, HeadError> {
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = Vec::new();
        let n = io::Read::take(&mut *r, (MAX_HEAD + 1 - size) as u64)
            .read_until(b'\n', &mut line)
            .map_err(HeadError::Io)?;
        size += n;
        if n == 0 {
            return if lines.is_empty() { Ok(None) } else { Err(HeadError::Malformed("head cut short")) };
        }
        if size > MAX_HEAD {
            return Err(HeadError::Malformed("head too long"));
        }
        let line = String::from_utf8(line).map_err(|_| HeadError::Malformed("head not UTF-8"))?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        if line.is_empty() && lines.is_empty() {
            continue;
        }
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line is not METHOD TARGET VERSION"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1")),
    };
    let header = |name: &str| {
        lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    let connection = header("connection").unwrap_or_default();
    let keep_alive = if http11 { !connection.contains("close") } else { connection.contains("keep-alive") };
    let has_body = header("transfer-encoding").is_some() || header("content-length").is_some_and(|v| v != "0");
    Ok(Some(Request { method: method.to_string(), target: target.to_string(), keep_alive, has_body }))
}

/// The reason phrase of the statuses this server answers with.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

/// Writes a response's status line and headers, Content-Length `len` and the connection's
/// fate among them; the body (if any) follows.
pub fn write_head(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    len: u64,
    keep_alive: bool,
) -> io::Result<()> {
    write!(w, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    for (name, value) in headers {
        write!(w, "{name}: {value}\r\n")?;
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(w, "Content-Length: {len}\r\nConnection: {connection}\r\n\r\n")
}

/// A complete response with a one-line plain-text body naming the status (none for HEAD).
pub fn write_status(
    w: &mut impl Write,
    status: u16,
    extra: &[(&str, &str)],
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let body = format!("{status} {}\n", reason(status));
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
    headers.extend_from_slice(extra);
    write_head(w, status, &headers, body.len() as u64, keep_alive)?;
    if !head_only {
        w.write_all(body.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, HeadError> {
        read_request(&mut io::Cursor::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn heads_and_their_connection() {
        let r = parse("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str(), r.keep_alive, r.has_body), ("GET", "/a?b", true, false));
        let r = parse("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = parse("HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = parse("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").unwrap().unwrap();
        assert!(r.has_body);
        assert!(parse("").unwrap().is_none());
        assert!(matches!(parse("GET /\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse("GET / HTTP/2\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse("GET / HTTP/1.1\r\nHost"), Err(HeadError::Malformed(_))));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&long), Err(HeadError::Malformed(_))));
    }
}
