//! The REST API, as Upstash's SDKs speak it (`@upstash/redis`,
//! `@upstash/ratelimit`, Python `upstash-redis`), on the node's HTTP port.
//!
//! - `POST /` with a JSON array is one command; `POST /pipeline` an array of
//!   them (not atomic: one `{"result"}` or `{"error"}` each);
//!   `POST /multi-exec` the same as one transaction; `GET|POST /cmd/arg/...`
//!   the path form (segments percent-decoded, query parameters appended as
//!   arguments, a POST body as the last argument). Subscriptions are
//!   event streams ([`super::events`]).
//! - Arguments are JSON strings, numbers (their literal text, so `1.5`,
//!   `1e+21` and big integers reach the command as written) and booleans.
//! - Replies are RESP2 shapes as JSON. With `Upstash-Encoding: base64`
//!   every string but the status `OK` is base64, as the SDKs decode it.
//! - `upstash-sync-token`: every response says, per shard, the position
//!   of the primary's history the client has seen (its writes, and what it
//!   read). A request that brings it back is served by a backup only once
//!   the backup has applied that much, else forwarded to the primary:
//!   read-your-writes across requests, connections and nodes.
//! - `Authorization: Bearer <token>` or `?_token=`: the full token
//!   (`--http-token`, default the `requirepass` password) or the read-only
//!   one (`--http-readonly-token`); with neither set no token is asked.
//!   Those run as the ACL user `default`. A token `<user>:<password>`
//!   naming an ACL user runs the request as that user, with its
//!   permissions (a refusal is a 403 with Redis's `NOPERM` error).
//!
//! Each HTTP connection runs its commands as one client ([`Conn`]) of the
//! node, through the same path as RESP: forwarding to the primary from a
//! backup, transactions across shards, durability waits. Commands that
//! hold a connection's state between requests (blocking pops, WATCH,
//! SUBSCRIBE, SELECT...) are refused, as Upstash refuses them.

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Value as Json};

use super::Response;
use crate::exec::command::{self, flags};
use crate::server::conn::{self, After, Conn};

/// A reply as RESP2 shaped it.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Status(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// Reads one RESP2 reply from `b` at `*at`.
pub fn read_reply(b: &[u8], at: &mut usize) -> Option<Resp> {
    let line_end = *at + memchr::memmem::find(b.get(*at..)?, b"\r\n")?;
    let kind = *b.get(*at)?;
    let line = &b[*at + 1..line_end];
    *at = line_end + 2;
    let int = || std::str::from_utf8(line).ok()?.parse::<i64>().ok();
    Some(match kind {
        b'+' => Resp::Status(line.to_vec()),
        b'-' => Resp::Error(String::from_utf8_lossy(line).into_owned()),
        b':' => Resp::Int(int()?),
        b'$' => match int()? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let end = *at + n as usize;
                let v = b.get(*at..end)?.to_vec();
                *at = end + 2;
                Resp::Bulk(Some(v))
            }
        },
        b'*' => match int()? {
            n if n < 0 => Resp::Array(None),
            n => {
                let mut items = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    items.push(read_reply(b, at)?);
                }
                Resp::Array(Some(items))
            }
        },
        _ => return None,
    })
}

/// How strings go into JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
}

impl Encoding {
    fn string(self, b: &[u8]) -> Json {
        match self {
            Encoding::Utf8 => Json::String(String::from_utf8_lossy(b).into_owned()),
            Encoding::Base64 => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }
}

/// A reply's JSON value (an error nested in an array becomes its text).
fn to_json(r: &Resp, enc: Encoding) -> Json {
    match r {
        // The SDKs leave a bare "OK" as it is, whatever the encoding.
        Resp::Status(s) if s == b"OK" => Json::String("OK".into()),
        Resp::Status(s) => enc.string(s),
        Resp::Error(e) => Json::String(e.clone()),
        Resp::Int(i) => json!(i),
        Resp::Bulk(None) | Resp::Array(None) => Json::Null,
        Resp::Bulk(Some(b)) => enc.string(b),
        Resp::Array(Some(items)) => Json::Array(items.iter().map(|i| to_json(i, enc)).collect()),
    }
}

/// `{"result": ...}` or `{"error": ...}`.
fn outcome(r: &Resp, enc: Encoding) -> Json {
    match r {
        Resp::Error(e) => json!({ "error": e }),
        r => json!({ "result": to_json(r, enc) }),
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    ReadOnly,
}

/// The access `token` grants, or the 401 to answer.
pub fn authorize(
    token: Option<&str>,
    full: Option<&str>,
    read_only: Option<&str>,
) -> Result<Access, Response> {
    if full.is_none() && read_only.is_none() {
        return Ok(Access::Full);
    }
    let same = |a: &str, b: &str| {
        // Compared in full whatever the first difference: no timing hint.
        a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    };
    match token {
        Some(t) if full.is_some_and(|f| same(t, f)) => Ok(Access::Full),
        Some(t) if read_only.is_some_and(|r| same(t, r)) => Ok(Access::ReadOnly),
        _ => Err(error(401, "Unauthorized")),
    }
}

/// The 401 of a token that authorises nothing.
pub fn unauthorized() -> Response {
    error(401, "Unauthorized")
}

fn error(status: u16, msg: &str) -> Response {
    Response::json(status, json!({ "error": msg }).to_string())
}

/// Commands REST refuses: they keep a connection's state between
/// requests, or wait on it.
const REFUSED: &[&str] = &[
    "blpop",
    "brpop",
    "brpoplpush",
    "blmove",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "watch",
    "unwatch",
    "multi",
    "exec",
    "discard",
    "select",
    "hello",
    "auth",
    "reset",
    "quit",
    "monitor",
    "client",
    "replicaof",
    "slaveof",
    "sync",
    "psync",
    "replconf",
    "wait",
];

/// One command's arguments from its JSON array. Each is read from its
/// raw text, so a number reaches the command exactly as written (`1E5`,
/// `1.50`, `0e0`: a parsed number would come back as `1e+5`).
fn args_of(v: &RawValue) -> Result<Vec<Vec<u8>>, String> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(v.get()) else {
        return Err("ERR a command is a JSON array of its name and arguments".into());
    };
    if items.is_empty() {
        return Err("ERR empty command".into());
    }
    items
        .iter()
        .map(|a| {
            let text = a.get();
            match text.as_bytes().first() {
                Some(b'"') => serde_json::from_str::<String>(text)
                    .map(String::into_bytes)
                    .map_err(|e| format!("ERR the body is not valid JSON: {e}")),
                // A number's or a boolean's literal (raw values are valid
                // JSON: `t`/`f` start only `true`/`false`).
                Some(b'-' | b'0'..=b'9' | b't' | b'f') => Ok(text.as_bytes().to_vec()),
                _ => Err("ERR arguments must be strings, numbers or booleans".to_string()),
            }
        })
        .collect()
}

/// Why a command may not run here, if it may not: the HTTP status a lone
/// command answers with, and the error.
fn refusal(args: &[Vec<u8>], access: Access) -> Option<(u16, Resp)> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if REFUSED.contains(&name.as_str()) {
        return Some((
            400,
            Resp::Error(format!("ERR Command is not available over REST: '{name}'")),
        ));
    }
    if access == Access::ReadOnly {
        let write = command::lookup(&args[0]).is_none_or(|s| s.has(flags::WRITE));
        if write {
            return Some((
                403,
                Resp::Error(format!(
                    "NOPERM this token has no permissions to run the '{name}' command"
                )),
            ));
        }
    }
    None
}

/// Runs `cmds` in order as the connection's client; their replies.
/// `Err` when the replies may not be given (a strong write the sync backup
/// did not confirm).
async fn run(conn: &mut Conn, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Resp>, Response> {
    let mut out = Vec::new();
    for args in cmds {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let found = command::lookup(argv[0]);
        match conn.execute(found, &argv, &mut out).await {
            After::Continue | After::Close | After::Vanish => {}
            // (blocking commands are refused before they get here)
            After::Block(_) | After::Forwarded(_) => {
                return Err(error(500, "ERR a blocking command reached the REST path"))
            }
        }
    }
    if conn::finish_replies(conn, &mut out).await.is_err() {
        return Err(error(
            503,
            "ERR the sync backup did not confirm the write: its outcome is unknown",
        ));
    }
    let mut at = 0;
    let mut replies = Vec::with_capacity(cmds.len());
    while at < out.len() {
        match read_reply(&out, &mut at) {
            Some(r) => replies.push(r),
            None => return Err(error(500, "ERR unreadable reply")),
        }
    }
    Ok(replies)
}

/// One REST request, after its token was checked.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Query parameters other than `_token`, decoded, in order.
    pub query: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: &'a [u8],
    pub encoding: Encoding,
    pub access: Access,
    pub sync_token: Option<&'a str>,
}

/// The sync token's form: a version, then a seq per shard.
const TOKEN_PREFIX: &str = "k1:";

/// Takes in a request's sync token: the client's reads wait for (or are
/// forwarded past) what it has seen. A token keel cannot read is ignored,
/// as a missing one would be.
fn adopt_token(conn: &mut Conn, token: Option<&str>) {
    let Some(seqs) = token.and_then(|t| t.strip_prefix(TOKEN_PREFIX)) else {
        return;
    };
    let seqs: Option<Vec<u64>> = seqs.split('.').map(|s| s.parse().ok()).collect();
    let Some(seqs) = seqs.filter(|s| s.len() == conn.state.shards) else {
        return;
    };
    if conn.written_seqs.len() < seqs.len() {
        conn.written_seqs.resize(seqs.len(), 0);
    }
    for (mine, s) in conn.written_seqs.iter_mut().zip(seqs) {
        *mine = (*mine).max(s);
    }
}

/// The position this client has seen now: per shard, the later of its own
/// writes' seqs (answered by the primary) and what this node has applied —
/// on a primary read exactly from every shard's core (a write just made
/// may not be published to this core yet), on a backup as published (a
/// lower bound; the client's own writes are exact in `written_seqs`).
async fn token_of(conn: &Conn) -> String {
    let exact = if conn.state.repl.is_backup() {
        None
    } else {
        crate::server::commands::replication::shard_seqs(conn, Vec::new())
            .await
            .ok()
    };
    let seqs: Vec<String> = (0..conn.state.shards)
        .map(|s| {
            let seen = match &exact {
                Some(e) => e.get(s).copied().unwrap_or(0),
                None => crate::cluster::route::local_seq(conn, s),
            };
            conn.written_seqs
                .get(s)
                .copied()
                .unwrap_or(0)
                .max(seen)
                .to_string()
        })
        .collect();
    format!("{TOKEN_PREFIX}{}", seqs.join("."))
}

/// Serves one REST request.
pub async fn handle(conn: &mut Conn, call: Call<'_>) -> Response {
    // The connection's own position (its forwarded writes) and the
    // client's, from its token.
    adopt_token(conn, call.sync_token);
    let mut resp = serve(conn, call).await;
    resp.headers
        .push(("upstash-sync-token", token_of(conn).await));
    resp
}

async fn serve(conn: &mut Conn, call: Call<'_>) -> Response {
    let enc = call.encoding;
    match (call.method, call.path) {
        ("POST", "/") => {
            let cmd = match command_of(call.body) {
                Ok(c) => c,
                Err(e) => return error(400, &e),
            };
            single(conn, cmd, call.access, enc).await
        }
        ("POST", "/pipeline") | ("POST", "/multi-exec") => {
            let cmds = match commands_of(call.body) {
                Ok(c) => c,
                Err(e) => return error(400, &e),
            };
            if call.path == "/pipeline" {
                pipeline(conn, cmds, call.access, enc).await
            } else {
                transaction(conn, cmds, call.access, enc).await
            }
        }
        ("GET" | "POST", p) => {
            let mut cmd: Vec<Vec<u8>> = p
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| percent_encoding::percent_decode_str(s).collect())
                .collect();
            for (k, v) in call.query {
                cmd.push(k);
                if !v.is_empty() {
                    cmd.push(v);
                }
            }
            if call.method == "POST" && !call.body.is_empty() {
                cmd.push(call.body.to_vec());
            }
            if cmd.is_empty() {
                return error(400, "ERR no command in the path");
            }
            single(conn, cmd, call.access, enc).await
        }
        _ => error(405, "ERR use GET or POST"),
    }
}

fn parse_body(body: &[u8]) -> Result<&RawValue, String> {
    serde_json::from_slice(body).map_err(|e| format!("ERR the body is not valid JSON: {e}"))
}

/// The command in a `POST /` body (a non-empty array of its name and
/// arguments), or the error a 400 carries.
pub fn command_of(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    parse_body(body).and_then(args_of)
}

/// The commands in a `/pipeline` or `/multi-exec` body (a non-empty array
/// of commands), or the error a 400 carries.
pub fn commands_of(body: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    match serde_json::from_str::<Vec<&RawValue>>(parse_body(body)?.get()) {
        Ok(items) if !items.is_empty() => items.into_iter().map(args_of).collect(),
        _ => Err("ERR the body must be a non-empty JSON array of commands".into()),
    }
}

async fn single(conn: &mut Conn, cmd: Vec<Vec<u8>>, access: Access, enc: Encoding) -> Response {
    if let Some((status, r)) = refusal(&cmd, access) {
        return Response::json(status, outcome(&r, enc).to_string());
    }
    match run(conn, &[cmd]).await {
        Ok(replies) => match replies.first() {
            // An ACL refusal is a 403, as a read-only token's is.
            Some(r @ Resp::Error(e)) if e.starts_with("NOPERM") => {
                Response::json(403, outcome(r, enc).to_string())
            }
            Some(r @ Resp::Error(_)) => Response::json(400, outcome(r, enc).to_string()),
            Some(r) => Response::json(200, outcome(r, enc).to_string()),
            None => error(500, "ERR no reply"),
        },
        Err(resp) => resp,
    }
}

async fn pipeline(
    conn: &mut Conn,
    cmds: Vec<Vec<Vec<u8>>>,
    access: Access,
    enc: Encoding,
) -> Response {
    // Refused commands answer in their places; the rest run in one batch.
    let refused: Vec<Option<Resp>> = cmds
        .iter()
        .map(|c| refusal(c, access).map(|(_, r)| r))
        .collect();
    let runnable: Vec<Vec<Vec<u8>>> = cmds
        .into_iter()
        .zip(&refused)
        .filter(|(_, r)| r.is_none())
        .map(|(c, _)| c)
        .collect();
    let mut replies = match run(conn, &runnable).await {
        Ok(r) => r.into_iter(),
        Err(resp) => return resp,
    };
    let items: Vec<Json> = refused
        .iter()
        .map(|r| match r {
            Some(r) => outcome(r, enc),
            None => replies
                .next()
                .map_or_else(|| json!({ "error": "ERR no reply" }), |r| outcome(&r, enc)),
        })
        .collect();
    Response::json(200, Json::Array(items).to_string())
}

async fn transaction(
    conn: &mut Conn,
    cmds: Vec<Vec<Vec<u8>>>,
    access: Access,
    enc: Encoding,
) -> Response {
    // (one status for the whole transaction, whatever the reason)
    if let Some((_, r)) = cmds.iter().find_map(|c| refusal(c, access)) {
        return Response::json(400, outcome(&r, enc).to_string());
    }
    let mut all = Vec::with_capacity(cmds.len() + 2);
    all.push(vec![b"MULTI".to_vec()]);
    all.extend(cmds);
    all.push(vec![b"EXEC".to_vec()]);
    let replies = match run(conn, &all).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match replies.last() {
        // Each command's own reply, errors of those that failed included.
        Some(Resp::Array(Some(items))) => Response::json(
            200,
            Json::Array(items.iter().map(|r| outcome(r, enc)).collect()).to_string(),
        ),
        // Discarded (a command could not be queued) or aborted by WATCH.
        Some(r @ Resp::Error(_)) => Response::json(400, outcome(r, enc).to_string()),
        _ => error(400, "EXECABORT Transaction discarded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_back_in_every_shape() {
        let b = b"+OK\r\n-ERR no\r\n:42\r\n$-1\r\n$4\r\na\r\nb\r\n*2\r\n$1\r\nx\r\n*-1\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while at < b.len() {
            got.push(read_reply(b, &mut at).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Resp::Status(b"OK".to_vec()),
                Resp::Error("ERR no".into()),
                Resp::Int(42),
                Resp::Bulk(None),
                Resp::Bulk(Some(b"a\r\nb".to_vec())),
                Resp::Array(Some(vec![
                    Resp::Bulk(Some(b"x".to_vec())),
                    Resp::Array(None)
                ])),
            ]
        );
        assert_eq!(read_reply(b"$5\r\nab", &mut 0), None);
        // A truncated element inside an array: None, never a panic.
        assert_eq!(read_reply(b"*2\r\n$5\r\nab", &mut 0), None);
        assert_eq!(read_reply(b"*2\r\n$2\r\nab", &mut 0), None);
    }

    #[test]
    fn arguments_keep_their_literal_text() {
        // (`1E5` and `0e0` found by the fuzz target, tests/fuzz/rest_json.rs:
        // they came back as `1e+5` and `0e+0`)
        let args = command_of(
            br#"["SET", "k\u00e9", 1.50, 1e+21, 123456789012345678901234567890, true, 1E5, 0e0, -0]"#,
        )
        .unwrap();
        let text: Vec<&str> = args
            .iter()
            .map(|a| std::str::from_utf8(a).unwrap())
            .collect();
        assert_eq!(
            text,
            [
                "SET",
                "k\u{e9}",
                "1.50",
                "1e+21",
                "123456789012345678901234567890",
                "true",
                "1E5",
                "0e0",
                "-0"
            ]
        );
        assert!(command_of(br#"["SET", null]"#).is_err());
        assert!(command_of(br#"["SET", [1]]"#).is_err());
        assert!(command_of(br#"{"SET": 1}"#).is_err());
        assert!(command_of(b"[]").is_err());
        assert_eq!(
            commands_of(br#" [ ["SET", "a", 1E1], ["GET", "a"] ] "#),
            Ok(vec![
                vec![b"SET".to_vec(), b"a".to_vec(), b"1E1".to_vec()],
                vec![b"GET".to_vec(), b"a".to_vec()]
            ])
        );
        assert!(commands_of(b"[]").is_err());
        assert!(commands_of(br#"[["GET", "a"], []]"#).is_err());
    }

    #[test]
    fn base64_spares_only_the_ok_status() {
        let r = Resp::Array(Some(vec![
            Resp::Status(b"OK".to_vec()),
            Resp::Status(b"PONG".to_vec()),
            Resp::Bulk(Some(vec![0xff, 0])),
            Resp::Int(3),
        ]));
        assert_eq!(
            to_json(&r, Encoding::Base64),
            json!(["OK", "UE9ORw==", "/wA=", 3])
        );
        assert_eq!(
            outcome(&Resp::Error("ERR x".into()), Encoding::Base64),
            json!({"error": "ERR x"})
        );
    }

    #[test]
    fn tokens_grant_full_or_read_access() {
        assert_eq!(authorize(None, None, None).ok(), Some(Access::Full));
        assert_eq!(
            authorize(Some("a"), Some("a"), Some("r")).ok(),
            Some(Access::Full)
        );
        assert_eq!(
            authorize(Some("r"), Some("a"), Some("r")).ok(),
            Some(Access::ReadOnly)
        );
        assert_eq!(
            authorize(Some("x"), Some("a"), None)
                .err()
                .map(|r| r.status),
            Some(401)
        );
        assert_eq!(
            authorize(None, Some("a"), None).err().map(|r| r.status),
            Some(401)
        );
        let set = vec![b"set".to_vec(), b"k".to_vec(), b"v".to_vec()];
        assert!(refusal(&set, Access::ReadOnly).is_some());
        assert!(refusal(&set, Access::Full).is_none());
        assert!(refusal(&[b"GET".to_vec(), b"k".to_vec()], Access::ReadOnly).is_none());
        assert!(refusal(
            &[b"BLPOP".to_vec(), b"k".to_vec(), b"0".to_vec()],
            Access::Full
        )
        .is_some());
    }
}
