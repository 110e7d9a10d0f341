//! Subscriptions over REST as server-sent events, the form Upstash serves:
//! `POST /subscribe/<channel>` (or `/psubscribe/<pattern>`; several names
//! joined by commas) answers `text/event-stream` and writes one event per
//! line of what a RESP subscriber would get:
//!
//! ```text
//! data: subscribe,news,1
//!
//! data: message,news,hello
//!
//! data: pmessage,n*,news,hello
//! ```
//!
//! A payload's newlines continue the event on further `data:` lines, as the
//! event-stream format joins them back. The stream lasts until the client
//! goes away (or keel stops); a publish on any node of the database reaches
//! it, as it reaches RESP subscribers.

use futures::future::Either;
use futures::{AsyncReadExt, StreamExt};

use crate::exec::pubsub;
use crate::resp::reply::Reply;
use crate::server::conn::{send, Conn, Transport};

/// The subscription a request asks for: (patterns?, names).
pub fn subscription(method: &str, path: &str) -> Option<(bool, Vec<Vec<u8>>)> {
    if method != "GET" && method != "POST" {
        return None;
    }
    let (patterns, rest) = if let Some(r) = path.strip_prefix("/subscribe/") {
        (false, r)
    } else {
        (true, path.strip_prefix("/psubscribe/")?)
    };
    let names: Vec<Vec<u8>> = rest
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).collect())
        .collect();
    Some((patterns, names))
}

/// One event: the fields joined by commas.
fn event(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for &b in f.iter() {
            if b == b'\n' {
                out.extend_from_slice(b"\ndata: ");
            } else if b != b'\r' {
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\n\n");
    out
}

/// A subscribe confirmation or a message, as an event.
fn reply_event(r: &Reply) -> Option<Vec<u8>> {
    let items = match r {
        Reply::Push(items) | Reply::Array(items) => items,
        _ => return None,
    };
    let fields: Vec<Vec<u8>> = items
        .iter()
        .map(|i| match i {
            Reply::Bulk(b) => b.clone(),
            Reply::Int(n) => n.to_string().into_bytes(),
            other => format!("{other:?}").into_bytes(),
        })
        .collect();
    let refs: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
    Some(event(&refs))
}

/// Subscribes `conn` and streams events to `stream` until the client
/// closes it; unsubscribes at the end.
pub async fn stream<S: Transport>(
    stream: &mut S,
    conn: &mut Conn,
    patterns: bool,
    names: &[Vec<u8>],
) {
    if names.is_empty() {
        let resp =
            super::Response::json(400, r#"{"error":"ERR no channel to subscribe to"}"#.into());
        let _ = send(stream, &resp.encode(false, false)).await;
        return;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\naccess-control-allow-origin: *\r\naccess-control-expose-headers: upstash-sync-token\r\n\r\n";
    let mut argv: Vec<&[u8]> = vec![if patterns {
        b"PSUBSCRIBE"
    } else {
        b"SUBSCRIBE"
    }];
    argv.extend(names.iter().map(|n| n.as_slice()));
    let mut out = head.as_bytes().to_vec();
    let space = if patterns {
        pubsub::Space::Pattern
    } else {
        pubsub::Space::Channel
    };
    for r in pubsub::subscribe(conn, &argv, space) {
        out.extend(reply_event(&r).unwrap_or_default());
    }
    if send(stream, &out).await.is_ok() {
        let mut scratch = [0u8; 1024];
        while let Some(inbox) = conn.subs.inbox.as_mut() {
            let read = stream.read(&mut scratch);
            futures::pin_mut!(read);
            match futures::future::select(read, inbox.next()).await {
                // Anything the client sends is ignored; its close ends it.
                Either::Left((Ok(n), _)) if n > 0 => continue,
                Either::Left(_) => break,
                Either::Right((Some(m), _)) => {
                    let Some(e) = reply_event(&m.reply()) else {
                        continue;
                    };
                    if send(stream, &e).await.is_err() {
                        break;
                    }
                }
                Either::Right((None, _)) => break,
            }
        }
    }
    pubsub::unsubscribe_all(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_channels_or_patterns() {
        assert_eq!(
            subscription("POST", "/subscribe/news"),
            Some((false, vec![b"news".to_vec()]))
        );
        assert_eq!(
            subscription("GET", "/psubscribe/n%2A,a"),
            Some((true, vec![b"n*".to_vec(), b"a".to_vec()]))
        );
        assert_eq!(subscription("POST", "/set/a/b"), None);
        assert_eq!(subscription("DELETE", "/subscribe/x"), None);
    }

    #[test]
    fn events_carry_fields_and_multi_line_payloads() {
        assert_eq!(
            event(&[b"message", b"ch", b"hi"]),
            b"data: message,ch,hi\n\n".to_vec()
        );
        assert_eq!(
            event(&[b"message", b"ch", b"a\r\nb"]),
            b"data: message,ch,a\ndata: b\n\n".to_vec()
        );
    }
}
