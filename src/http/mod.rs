//! HTTP on every node, on the same per-core runtime as RESP: for now the
//! health endpoints DNS health checks and load balancers poll
//! ([`health`]); the REST API will share this listener.
//!
//! One listener per core on `--http-port` (the client port + 1000 unless
//! set; 0 turns HTTP off). HTTP/1.1 with keep-alive; requests are parsed by
//! `httparse`, bounded (headers 16 KiB, no body accepted yet), and anything
//! malformed gets a 400 and the connection closed — never a panic or a hang
//! (an idle connection is closed after 60 s).

pub mod health;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};

use crate::exec::router::Router;
use crate::server::state::ServerState;

/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 << 10;
const IDLE: Duration = Duration::from_secs(60);

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            body,
            content_type: "application/json",
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.to_string(),
            content_type: "text/plain",
        }
    }

    fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// One parsed request head.
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    body_len: usize,
}

/// Parses a request head off `buf`: Ok(None) while incomplete, else the
/// request and the bytes its head used.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(Response::text(413, "request head too large\n"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Response::text(400, &format!("bad request: {e}\n"))),
    };
    let version = req.version.unwrap_or(0);
    let mut keep_alive = version >= 1;
    let mut body_len = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| Response::text(400, "bad content-length\n"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::text(400, "chunked bodies are not accepted\n"));
        }
    }
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("/").to_string(),
            keep_alive,
            body_len,
        },
        used,
    )))
}

async fn route(req: &Request, router: &Router, state: &ServerState) -> Response {
    let path = req.path.split('?').next().unwrap_or("/");
    match (req.method.as_str(), path) {
        ("GET" | "HEAD", "/health") => health::health(router, state, false).await,
        ("GET" | "HEAD", "/health/primary") => health::health(router, state, true).await,
        (_, "/health" | "/health/primary") => Response::text(405, "GET or HEAD\n"),
        _ => Response::text(404, "not found\n"),
    }
}

/// Serves one HTTP connection until it closes, errs or idles.
pub async fn serve<S>(mut stream: S, router: Rc<Router>, state: Arc<ServerState>)
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    loop {
        let parsed = match parse(&buf) {
            Ok(p) => p,
            Err(resp) => {
                let _ = stream.write_all(&resp.encode(false, false)).await;
                return;
            }
        };
        let Some((req, used)) = parsed else {
            let n = match crate::runtime::timeout(IDLE, stream.read(&mut chunk)).await {
                Some(Ok(n)) if n > 0 => n,
                _ => return,
            };
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        if req.body_len > 0 {
            // No endpoint takes a body yet.
            let resp = Response::text(413, "no body is accepted here\n");
            let _ = stream.write_all(&resp.encode(false, false)).await;
            return;
        }
        buf.drain(..used);
        let resp = route(&req, &router, &state).await;
        let out = resp.encode(req.keep_alive, req.method == "HEAD");
        if stream.write_all(&out).await.is_err() || !req.keep_alive {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_parsed_and_bounded() {
        let (r, n) = parse(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .ok()
            .flatten()
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.keep_alive, n),
            ("GET", "/health", true, 33)
        );
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n").ok().flatten().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .ok()
            .flatten()
            .unwrap();
        assert!(!r.keep_alive);
        assert!(matches!(parse(b"GET /health HTTP/1.1\r\nHo"), Ok(None)));
        assert_eq!(
            parse(b"\x00\x01garbage\r\n\r\n").err().map(|r| r.status),
            Some(400)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(parse(big.as_bytes()).err().map(|r| r.status), Some(413));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .err()
                .map(|r| r.status),
            Some(400)
        );
    }
}
