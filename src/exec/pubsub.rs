//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH and PUBSUB.
//!
//! # Protocol
//! A subscription lives on the executor of the subscribing connection, in
//! that executor's [`Registry`]: subscribing costs no message. PUBLISH
//! visits every executor once; each delivers the message to its own
//! subscribers through their connections' message queues, and answers how
//! many it reached. Messages are [`Message`] values, not bytes, because each
//! subscriber encodes them in its own protocol (RESP3 push or RESP2 array).
//!
//! A connection with at least one subscription waits on both its socket and
//! its queue; in RESP2 it then accepts only the (un)subscribe commands, PING,
//! QUIT and RESET, as Redis does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::channel::mpsc;
use keel_shards::glob;

use crate::cmd::error::{CmdError, CmdResult};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;

/// A published message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<Arc<[u8]>>,
    pub channel: Arc<[u8]>,
    pub payload: Arc<[u8]>,
    /// A client-side caching notice (see `server::tracking`).
    pub tracking: Option<crate::server::tracking::Notice>,
}

impl Message {
    pub fn tracking(notice: crate::server::tracking::Notice) -> Message {
        Message {
            pattern: None,
            channel: crate::server::tracking::CHANNEL.into(),
            payload: Arc::from(&b""[..]),
            tracking: Some(notice),
        }
    }

    /// The message as a connection speaking `proto` receives it, if it
    /// does: an invalidation is a RESP3 `invalidate` push, or in RESP2 a
    /// `__redis__:invalidate` message to a subscribed connection (dropped
    /// otherwise, as Redis drops it).
    pub fn reply_for(&self, proto: crate::resp::Protocol, subscribed: bool) -> Option<Reply> {
        use crate::server::tracking::Notice;
        let keys = match &self.tracking {
            None => return Some(self.reply()),
            Some(Notice::RedirectBroken(id)) => {
                // RESP3 only, as Redis tells it.
                return (proto == crate::resp::Protocol::Resp3).then(|| {
                    Reply::Push(vec![
                        Reply::bulk("tracking-redir-broken"),
                        Reply::Int(*id as i64),
                    ])
                });
            }
            Some(Notice::Invalidate { keys, redirected }) => {
                if proto != crate::resp::Protocol::Resp3 && !redirected {
                    return None;
                }
                keys
            }
        };
        let keys = match keys {
            Some(k) => Reply::Array(k.iter().map(|k| Reply::Bulk(k.clone())).collect()),
            None => Reply::Nil,
        };
        match proto {
            crate::resp::Protocol::Resp3 => {
                Some(Reply::Push(vec![Reply::bulk("invalidate"), keys]))
            }
            _ if subscribed => Some(Reply::Push(vec![
                Reply::bulk("message"),
                Reply::Bulk(self.channel.to_vec()),
                keys,
            ])),
            _ => None,
        }
    }

    pub fn reply(&self) -> Reply {
        let b = |x: &Arc<[u8]>| Reply::Bulk(x.to_vec());
        Reply::Push(match &self.pattern {
            Some(p) => vec![
                Reply::bulk("pmessage"),
                b(p),
                b(&self.channel),
                b(&self.payload),
            ],
            None => vec![Reply::bulk("message"), b(&self.channel), b(&self.payload)],
        })
    }
}

pub type Inbox = mpsc::UnboundedReceiver<Message>;
pub type Outbox = mpsc::UnboundedSender<Message>;

/// One executor's subscriptions.
#[derive(Default)]
pub struct Registry {
    channels: HashMap<Vec<u8>, HashMap<u64, Outbox>>,
    patterns: HashMap<Vec<u8>, HashMap<u64, Outbox>>,
}

impl Registry {
    /// Delivers to this executor's subscribers; returns how many received.
    pub fn deliver(&self, channel: &Arc<[u8]>, payload: &Arc<[u8]>) -> i64 {
        let mut n = 0;
        if let Some(subs) = self.channels.get(&channel[..]) {
            for out in subs.values() {
                let m = Message {
                    pattern: None,
                    channel: channel.clone(),
                    payload: payload.clone(),
                    tracking: None,
                };
                if out.unbounded_send(m).is_ok() {
                    n += 1;
                }
            }
        }
        for (pattern, subs) in &self.patterns {
            if glob::matches(pattern, channel) {
                let pattern: Arc<[u8]> = pattern.as_slice().into();
                for out in subs.values() {
                    let m = Message {
                        pattern: Some(pattern.clone()),
                        channel: channel.clone(),
                        payload: payload.clone(),
                        tracking: None,
                    };
                    if out.unbounded_send(m).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    pub fn channel_names(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect()
    }

    pub fn subscribers(&self, channel: &[u8]) -> usize {
        self.channels.get(channel).map_or(0, |s| s.len())
    }

    pub fn pattern_names(&self) -> Vec<Vec<u8>> {
        self.patterns.keys().cloned().collect()
    }
}

/// A connection's own subscriptions, mirrored in its executor's registry.
#[derive(Default)]
pub struct Subscriptions {
    pub channels: Vec<Vec<u8>>,
    pub patterns: Vec<Vec<u8>>,
    outbox: Option<Outbox>,
    pub inbox: Option<Inbox>,
    /// Client-side caching options, when CLIENT TRACKING is on.
    pub tracking: Option<Box<crate::server::tracking::ConnTracking>>,
    /// The connection takes messages without subscriptions (tracking
    /// invalidations).
    pub listening: bool,
}

impl Subscriptions {
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn active(&self) -> bool {
        self.count() > 0
    }

    pub fn outbox(&mut self) -> Outbox {
        if self.outbox.is_none() {
            let (tx, rx) = mpsc::unbounded();
            self.outbox = Some(tx);
            self.inbox = Some(rx);
        }
        self.outbox.clone().expect("created above")
    }
}

fn ack(kind: &'static str, name: Option<&[u8]>, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk(kind),
        name.map_or(Reply::Nil, Reply::bulk),
        Reply::Int(count as i64),
    ])
}

/// SUBSCRIBE / PSUBSCRIBE: one confirmation per name.
pub fn subscribe(conn: &mut Conn, a: &[&[u8]], patterns: bool) -> Vec<Reply> {
    let id = conn.id();
    let out = conn.subs.outbox();
    // A subscribed connection may be a tracking client's REDIRECT target.
    if !conn.subs.active() {
        conn.state.tracking.register(id, out.clone());
    }
    let mut replies = Vec::new();
    for name in &a[1..] {
        let list = if patterns {
            &mut conn.subs.patterns
        } else {
            &mut conn.subs.channels
        };
        if !list.iter().any(|c| c == name) {
            list.push(name.to_vec());
            let mut reg = conn.router.local.pubsub.borrow_mut();
            let map = if patterns {
                &mut reg.patterns
            } else {
                &mut reg.channels
            };
            map.entry(name.to_vec())
                .or_default()
                .insert(id, out.clone());
        }
        let kind = if patterns { "psubscribe" } else { "subscribe" };
        replies.push(ack(kind, Some(name), conn.subs.count()));
    }
    replies
}

/// UNSUBSCRIBE / PUNSUBSCRIBE: the names given, or all when none.
pub fn unsubscribe(conn: &mut Conn, a: &[&[u8]], patterns: bool) -> Vec<Reply> {
    let id = conn.id();
    let kind = if patterns {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let names: Vec<Vec<u8>> = if a.len() > 1 {
        a[1..].iter().map(|n| n.to_vec()).collect()
    } else if patterns {
        conn.subs.patterns.clone()
    } else {
        conn.subs.channels.clone()
    };
    if names.is_empty() {
        return vec![ack(kind, None, conn.subs.count())];
    }
    let mut replies = Vec::new();
    for name in names {
        let list = if patterns {
            &mut conn.subs.patterns
        } else {
            &mut conn.subs.channels
        };
        list.retain(|c| *c != name);
        let mut reg = conn.router.local.pubsub.borrow_mut();
        let map = if patterns {
            &mut reg.patterns
        } else {
            &mut reg.channels
        };
        if let Some(subs) = map.get_mut(&name) {
            subs.remove(&id);
            if subs.is_empty() {
                map.remove(&name);
            }
        }
        drop(reg);
        replies.push(ack(kind, Some(&name), conn.subs.count()));
    }
    replies
}

/// Drops every subscription and client tracking (connection closed or
/// RESET).
pub fn unsubscribe_all(conn: &mut Conn) {
    unsubscribe(conn, &[b"unsubscribe"], false);
    unsubscribe(conn, &[b"punsubscribe"], true);
    conn.state
        .tracking
        .forget(conn.id(), conn.subs.outbox.is_some());
    conn.subs = Subscriptions::default();
}

pub async fn publish(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let channel: Arc<[u8]> = a[1].into();
    let payload: Arc<[u8]> = a[2].into();
    let counts = conn
        .router
        .broadcast(move |ls| ls.pubsub.borrow().deliver(&channel, &payload))
        .await?;
    Ok(Reply::Int(counts.into_iter().sum()))
}

pub async fn pubsub(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match (sub.as_str(), a.len()) {
        ("channels", 2 | 3) => {
            let pattern = a.get(2).map(|p| p.to_vec());
            let names = conn
                .router
                .broadcast(move |ls| ls.pubsub.borrow().channel_names(pattern.as_deref()))
                .await?;
            let unique: HashSet<Vec<u8>> = names.into_iter().flatten().collect();
            Ok(Reply::bulks(unique))
        }
        ("numsub", _) => {
            let channels: Vec<Vec<u8>> = a[2..].iter().map(|c| c.to_vec()).collect();
            let asked = channels.clone();
            let counts = conn
                .router
                .broadcast(move |ls| {
                    let reg = ls.pubsub.borrow();
                    asked.iter().map(|c| reg.subscribers(c)).collect::<Vec<_>>()
                })
                .await?;
            let mut out = Vec::new();
            for (i, c) in channels.into_iter().enumerate() {
                let n: usize = counts.iter().map(|v| v[i]).sum();
                out.push((Reply::Bulk(c), Reply::Int(n as i64)));
            }
            Ok(Reply::Map(out))
        }
        ("numpat", 2) => {
            let names = conn
                .router
                .broadcast(|ls| ls.pubsub.borrow().pattern_names())
                .await?;
            let unique: HashSet<Vec<u8>> = names.into_iter().flatten().collect();
            Ok(Reply::Int(unique.len() as i64))
        }
        ("channels" | "numpat", _) => Err(CmdError::Arity(format!("pubsub|{sub}"))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "PUBSUB".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}
