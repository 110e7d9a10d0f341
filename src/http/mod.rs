//! HTTP on every node, on the same per-core runtime as RESP: the health
//! endpoints DNS health checks and load balancers poll ([`health`]) and the
//! Upstash-compatible REST API ([`rest`]).
//!
//! One listener per core on `--http-port` (the client port + 1000 unless
//! set; 0 turns HTTP off). HTTP/1.1 with keep-alive; requests are parsed by
//! `httparse`, bounded (headers 16 KiB, bodies `--http-max-body`), and
//! anything malformed gets a 400 and the connection closed — never a panic
//! or a hang (an idle connection is closed after 60 s). Every response
//! allows any origin (CORS), as browsers calling the REST API need.

pub mod events;
pub mod health;
pub mod metrics;
pub mod rest;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt;

use crate::exec::router::Router;
use crate::server::client::ClientInfo;
use crate::server::conn::{send, Conn, Transport};
use crate::server::state::ServerState;

/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 << 10;
const IDLE: Duration = Duration::from_secs(60);

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    /// Headers beyond the usual ones.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.to_string(),
            content_type: "text/plain",
            headers: Vec::new(),
        }
    }

    /// The answer to a CORS preflight.
    fn preflight() -> Response {
        let mut r = Response::text(204, "");
        r.headers = vec![
            ("access-control-allow-methods", "GET, POST, HEAD, OPTIONS".into()),
            (
                "access-control-allow-headers",
                "authorization, content-type, upstash-encoding, upstash-sync-token, upstash-response-format".into(),
            ),
            ("access-control-max-age", "86400".into()),
        ];
        r
    }

    fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: {}\r\naccess-control-allow-origin: *\r\naccess-control-expose-headers: upstash-sync-token\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        for (k, v) in &self.headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
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
    /// `Authorization: Bearer <token>`.
    bearer: Option<String>,
    base64: bool,
    /// `upstash-sync-token`: the position the client has seen.
    sync_token: Option<String>,
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
    let (mut bearer, mut base64, mut sync_token) = (None, false, None);
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
        } else if h.name.eq_ignore_ascii_case("authorization") {
            let v = String::from_utf8_lossy(h.value);
            if let Some((scheme, token)) = v.trim().split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    bearer = Some(token.trim().to_string());
                }
            }
        } else if h.name.eq_ignore_ascii_case("upstash-sync-token") {
            sync_token = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("upstash-encoding") {
            base64 = h.value.eq_ignore_ascii_case(b"base64");
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
            bearer,
            base64,
            sync_token,
        },
        used,
    )))
}

/// What a request turns into: a response, or a stream of events.
enum Routed {
    Respond(Response),
    /// `/subscribe/<channels>` or `/psubscribe/<patterns>`.
    Subscribe {
        patterns: bool,
        names: Vec<Vec<u8>>,
    },
}

async fn route(req: &Request, body: &[u8], conn: &mut Conn) -> Routed {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let (router, state) = (conn.router.clone(), conn.state.clone());
    Routed::Respond(match (req.method.as_str(), path) {
        ("OPTIONS", _) => Response::preflight(),
        ("GET" | "HEAD", "/health") => health::health(&router, &state, false).await,
        ("GET" | "HEAD", "/health/primary") => health::health(&router, &state, true).await,
        ("GET" | "HEAD", "/metrics") => metrics::metrics(&router, &state).await,
        (_, "/health" | "/health/primary" | "/metrics") => Response::text(405, "GET or HEAD\n"),
        _ => {
            let mut token = req.bearer.clone();
            let mut params = Vec::new();
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == "_token" {
                    token = Some(v.into_owned());
                } else {
                    params.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
                }
            }
            // A token `user:password` runs the request as that ACL user
            // (see `crate::security::acl::paths::rest_token`); the REST tokens run it
            // as `default`.
            use crate::security::acl::{gate, paths, paths::RestToken};
            let access = match paths::rest_token(conn, token.as_deref()) {
                RestToken::User(user) => {
                    gate::login(conn, user);
                    rest::Access::Full
                }
                RestToken::Refused => return Routed::Respond(rest::unauthorized()),
                RestToken::NotAUser => {
                    paths::login_default(conn);
                    let (full, read_only) = state.http_tokens();
                    match rest::authorize(token.as_deref(), full.as_deref(), read_only.as_deref()) {
                        Ok(a) => a,
                        Err(r) => return Routed::Respond(r),
                    }
                }
            };
            if let Some((patterns, names)) = events::subscription(&req.method, path) {
                if let Some(e) = paths::subscribe_refused(conn, patterns, &names) {
                    let body = serde_json::json!({ "error": e }).to_string();
                    return Routed::Respond(Response::json(403, body));
                }
                return Routed::Subscribe { patterns, names };
            }
            let call = rest::Call {
                method: &req.method,
                path,
                query: params,
                body,
                encoding: if req.base64 {
                    rest::Encoding::Base64
                } else {
                    rest::Encoding::Utf8
                },
                access,
                sync_token: req.sync_token.as_deref(),
            };
            rest::handle(conn, call).await
        }
    })
}

/// Serves one HTTP connection until it closes, errs or idles. Its REST
/// commands run as one client of the node.
/// With `http-tls`, the TLS handshake comes first (bounded in time; a
/// failed one is logged at info level and ends the connection).
pub async fn serve(stream: crate::runtime::TcpStream, router: Rc<Router>, state: Arc<ServerState>) {
    let info = ClientInfo::accepted(&state, &stream);
    let acceptor = state
        .tls
        .as_ref()
        .filter(|_| state.config().tls.http)
        .and_then(|t| t.http_acceptor());
    let peer = info.addr.clone();
    let conn = Conn::new(router, state, Rc::new(std::cell::RefCell::new(info)), true);
    match acceptor {
        None => serve_with(stream, conn).await,
        Some(a) => {
            let handshake = a.accept(crate::security::stream::Queued(stream));
            match crate::runtime::timeout(crate::security::tls::HANDSHAKE_TIMEOUT, handshake).await
            {
                Some(Ok(s)) => serve_with(s, conn).await,
                Some(Err(e)) => tracing::info!("HTTPS handshake with {peer} failed: {e}"),
                None => tracing::info!("HTTPS handshake with {peer} timed out"),
            }
        }
    }
}

async fn serve_with<S: Transport>(mut stream: S, mut conn: Conn) {
    let max_body = conn.state.config().http_max_body as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let parsed = match parse(&buf) {
            Ok(p) => p,
            Err(resp) => {
                let _ = send(&mut stream, &resp.encode(false, false)).await;
                return;
            }
        };
        let complete = match &parsed {
            Some((req, used)) if req.body_len > max_body => {
                let resp = Response::json(
                    413,
                    format!("{{\"error\":\"ERR the body is larger than http-max-body ({max_body} bytes)\"}}"),
                );
                let _ = send(&mut stream, &resp.encode(false, false)).await;
                // Closing with unread bytes would reset the connection, and
                // the client might lose the answer: read (and drop) what is
                // on its way, a bounded amount for a bounded time.
                let mut left = (req.body_len + used)
                    .saturating_sub(buf.len())
                    .min(4 * max_body);
                while left > 0 {
                    match crate::runtime::timeout(Duration::from_secs(1), stream.read(&mut chunk))
                        .await
                    {
                        Some(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                        _ => break,
                    }
                }
                return;
            }
            Some((req, used)) => buf.len() >= used + req.body_len,
            None => false,
        };
        let Some((req, used)) = parsed.filter(|_| complete) else {
            let n = match crate::runtime::timeout(IDLE, stream.read(&mut chunk)).await {
                Some(Ok(n)) if n > 0 => n,
                _ => return,
            };
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let resp = match route(&req, &buf[used..used + req.body_len], &mut conn).await {
            Routed::Respond(r) => r,
            Routed::Subscribe { patterns, names } => {
                // The connection is the event stream until either side ends it.
                events::stream(&mut stream, &mut conn, patterns, &names).await;
                return;
            }
        };
        buf.drain(..used + req.body_len);
        let out = resp.encode(req.keep_alive, req.method == "HEAD");
        if send(&mut stream, &out).await.is_err() || !req.keep_alive {
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
