//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH,
//! SPUBLISH and PUBSUB.
//!
//! Shard channels (SSUBSCRIBE / SPUBLISH) are Redis 7's name space for
//! cluster-local messages. keel has no hash slots to pin a channel to, so a
//! shard channel is a separate name space that behaves like a plain channel:
//! same delivery across cores and nodes, `smessage` instead of `message`,
//! never matched by patterns, counted apart in (un)subscribe replies.
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

/// The three name spaces a connection subscribes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE: glob patterns over the channels PUBLISH reaches.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH: shard channels, a name space of their own
    /// that patterns never match (as in Redis 7).
    Shard,
}

impl Space {
    /// The space a (un)subscribe command works in, by its name.
    pub fn of_command(name: &str) -> Space {
        match name.as_bytes().first() {
            Some(b'p') => Space::Pattern,
            Some(b's') => Space::Shard,
            _ => Space::Channel,
        }
    }

    fn verb(self, unsubscribe: bool) -> &'static str {
        match (self, unsubscribe) {
            (Space::Channel, false) => "subscribe",
            (Space::Pattern, false) => "psubscribe",
            (Space::Shard, false) => "ssubscribe",
            (Space::Channel, true) => "unsubscribe",
            (Space::Pattern, true) => "punsubscribe",
            (Space::Shard, true) => "sunsubscribe",
        }
    }
}

/// A published message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<Arc<[u8]>>,
    /// Published with SPUBLISH (delivered as `smessage`).
    pub shard: bool,
    pub channel: Arc<[u8]>,
    pub payload: Arc<[u8]>,
    /// A client-side caching notice (see `server::tracking`).
    pub tracking: Option<crate::server::tracking::Notice>,
}

impl Message {
    pub fn tracking(notice: crate::server::tracking::Notice) -> Message {
        Message {
            pattern: None,
            shard: false,
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
            None => {
                let kind = if self.shard { "smessage" } else { "message" };
                vec![Reply::bulk(kind), b(&self.channel), b(&self.payload)]
            }
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
    shard_channels: HashMap<Vec<u8>, HashMap<u64, Outbox>>,
    /// Links from backups (`REPLCONF shard-relay`) that take every shard
    /// message, since shard channels have no pattern to catch them all.
    shard_relays: HashMap<u64, Outbox>,
}

impl Registry {
    fn space(&mut self, space: Space) -> &mut HashMap<Vec<u8>, HashMap<u64, Outbox>> {
        match space {
            Space::Channel => &mut self.channels,
            Space::Pattern => &mut self.patterns,
            Space::Shard => &mut self.shard_channels,
        }
    }

    /// Delivers to this executor's subscribers; returns how many received.
    pub fn deliver(&self, channel: &Arc<[u8]>, payload: &Arc<[u8]>) -> i64 {
        let message = |pattern| Message {
            pattern,
            shard: false,
            channel: channel.clone(),
            payload: payload.clone(),
            tracking: None,
        };
        let mut n = 0;
        if let Some(subs) = self.channels.get(&channel[..]) {
            for out in subs.values() {
                n += out.unbounded_send(message(None)).is_ok() as i64;
            }
        }
        for (pattern, subs) in &self.patterns {
            if glob::matches(pattern, channel) {
                let pattern: Arc<[u8]> = pattern.as_slice().into();
                for out in subs.values() {
                    n += out.unbounded_send(message(Some(pattern.clone()))).is_ok() as i64;
                }
            }
        }
        n
    }

    /// Delivers an SPUBLISH to this executor's shard-channel subscribers
    /// and relay links; returns how many received.
    pub fn deliver_shard(&self, channel: &Arc<[u8]>, payload: &Arc<[u8]>) -> i64 {
        let subs = self.shard_channels.get(&channel[..]);
        let mut n = 0;
        for out in subs
            .into_iter()
            .flat_map(|s| s.values())
            .chain(self.shard_relays.values())
        {
            let m = Message {
                pattern: None,
                shard: true,
                channel: channel.clone(),
                payload: payload.clone(),
                tracking: None,
            };
            n += out.unbounded_send(m).is_ok() as i64;
        }
        n
    }

    pub fn channel_names(&self, space: Space, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        let map = match space {
            Space::Shard => &self.shard_channels,
            _ => &self.channels,
        };
        map.keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect()
    }

    pub fn subscribers(&self, space: Space, channel: &[u8]) -> usize {
        let map = match space {
            Space::Shard => &self.shard_channels,
            _ => &self.channels,
        };
        map.get(channel).map_or(0, |s| s.len())
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
    pub shard_channels: Vec<Vec<u8>>,
    /// This connection is a backup's relay link for shard messages.
    pub shard_relay: bool,
    outbox: Option<Outbox>,
    pub inbox: Option<Inbox>,
    /// Client-side caching options, when CLIENT TRACKING is on.
    pub tracking: Option<Box<crate::server::tracking::ConnTracking>>,
    /// The connection takes messages without subscriptions (tracking
    /// invalidations).
    pub listening: bool,
}

impl Subscriptions {
    /// Channels and patterns: the count (P)SUBSCRIBE replies carry.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the connection is in subscribed mode (any name space).
    pub fn active(&self) -> bool {
        self.count() + self.shard_channels.len() > 0 || self.shard_relay
    }

    fn names(&mut self, space: Space) -> &mut Vec<Vec<u8>> {
        match space {
            Space::Channel => &mut self.channels,
            Space::Pattern => &mut self.patterns,
            Space::Shard => &mut self.shard_channels,
        }
    }

    /// The count a reply in `space` carries: shard channels are counted
    /// apart from the others, as Redis counts them.
    fn count_in(&self, space: Space) -> usize {
        match space {
            Space::Shard => self.shard_channels.len(),
            _ => self.count(),
        }
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

/// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE: one confirmation per name.
pub fn subscribe(conn: &mut Conn, a: &[&[u8]], space: Space) -> Vec<Reply> {
    let id = conn.id();
    let out = conn.subs.outbox();
    // A subscribed connection may be a tracking client's REDIRECT target.
    if !conn.subs.active() {
        conn.state.tracking.register(id, out.clone());
    }
    let mut replies = Vec::new();
    for name in &a[1..] {
        let list = conn.subs.names(space);
        if !list.iter().any(|c| c == name) {
            list.push(name.to_vec());
            let mut reg = conn.router.local.pubsub.borrow_mut();
            reg.space(space)
                .entry(name.to_vec())
                .or_default()
                .insert(id, out.clone());
        }
        replies.push(ack(
            space.verb(false),
            Some(name),
            conn.subs.count_in(space),
        ));
    }
    replies
}

/// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE: the names given, or all when
/// none.
pub fn unsubscribe(conn: &mut Conn, a: &[&[u8]], space: Space) -> Vec<Reply> {
    let id = conn.id();
    let kind = space.verb(true);
    let names: Vec<Vec<u8>> = if a.len() > 1 {
        a[1..].iter().map(|n| n.to_vec()).collect()
    } else {
        conn.subs.names(space).clone()
    };
    if names.is_empty() {
        return vec![ack(kind, None, conn.subs.count_in(space))];
    }
    let mut replies = Vec::new();
    for name in names {
        conn.subs.names(space).retain(|c| *c != name);
        let mut reg = conn.router.local.pubsub.borrow_mut();
        let map = reg.space(space);
        if let Some(subs) = map.get_mut(&name) {
            subs.remove(&id);
            if subs.is_empty() {
                map.remove(&name);
            }
        }
        drop(reg);
        replies.push(ack(kind, Some(&name), conn.subs.count_in(space)));
    }
    replies
}

/// Makes this connection a backup's relay link: it receives every shard
/// message published here (`REPLCONF shard-relay`).
pub fn relay_shard_messages(conn: &mut Conn) {
    let id = conn.id();
    let out = conn.subs.outbox();
    conn.subs.shard_relay = true;
    conn.router
        .local
        .pubsub
        .borrow_mut()
        .shard_relays
        .insert(id, out);
}

/// Drops every subscription and client tracking (connection closed or
/// RESET).
pub fn unsubscribe_all(conn: &mut Conn) {
    unsubscribe(conn, &[b"unsubscribe"], Space::Channel);
    unsubscribe(conn, &[b"punsubscribe"], Space::Pattern);
    unsubscribe(conn, &[b"sunsubscribe"], Space::Shard);
    conn.state
        .tracking
        .forget(conn.id(), conn.subs.outbox.is_some());
    if conn.subs.shard_relay {
        let id = conn.id();
        conn.router
            .local
            .pubsub
            .borrow_mut()
            .shard_relays
            .remove(&id);
    }
    conn.subs = Subscriptions::default();
}

/// PUBLISH / SPUBLISH: delivered on every executor of this node.
pub async fn publish(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let channel: Arc<[u8]> = a[1].into();
    let payload: Arc<[u8]> = a[2].into();
    let shard = a[0].eq_ignore_ascii_case(b"spublish");
    let counts = conn
        .router
        .broadcast(move |ls| {
            let reg = ls.pubsub.borrow();
            if shard {
                reg.deliver_shard(&channel, &payload)
            } else {
                reg.deliver(&channel, &payload)
            }
        })
        .await?;
    Ok(Reply::Int(counts.into_iter().sum()))
}

pub async fn pubsub(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match (sub.as_str(), a.len()) {
        ("channels" | "shardchannels", 2 | 3) => {
            let space = if sub == "channels" {
                Space::Channel
            } else {
                Space::Shard
            };
            let pattern = a.get(2).map(|p| p.to_vec());
            let names = conn
                .router
                .broadcast(move |ls| ls.pubsub.borrow().channel_names(space, pattern.as_deref()))
                .await?;
            let unique: HashSet<Vec<u8>> = names.into_iter().flatten().collect();
            Ok(Reply::bulks(unique))
        }
        ("numsub" | "shardnumsub", _) => {
            let space = if sub == "numsub" {
                Space::Channel
            } else {
                Space::Shard
            };
            let channels: Vec<Vec<u8>> = a[2..].iter().map(|c| c.to_vec()).collect();
            let asked = channels.clone();
            let counts = conn
                .router
                .broadcast(move |ls| {
                    let reg = ls.pubsub.borrow();
                    asked
                        .iter()
                        .map(|c| reg.subscribers(space, c))
                        .collect::<Vec<_>>()
                })
                .await?;
            let mut out = Vec::new();
            for (i, c) in channels.into_iter().enumerate() {
                let n: usize = counts.iter().map(|v| v[i]).sum();
                out.push((Reply::Bulk(c), Reply::Int(n as i64)));
            }
            // Redis 7.0 answers a flat array in RESP3 too.
            Ok(Reply::Array(
                out.into_iter().flat_map(|(c, n)| [c, n]).collect(),
            ))
        }
        ("help", 2) => Ok(Reply::Array(Vec::from(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    The channels with at least one subscriber (matching the pattern).",
                "NUMPAT",
                "    How many patterns are subscribed to.",
                "NUMSUB [<channel> ...]",
                "    Each channel's subscriber count.",
                "SHARDCHANNELS [<pattern>]",
                "    The shard channels with at least one subscriber.",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Each shard channel's subscriber count.",
                "HELP",
                "    Prints this help.",
            ]
            .map(Reply::status),
        ))),
        ("numpat", 2) => {
            let names = conn
                .router
                .broadcast(|ls| ls.pubsub.borrow().pattern_names())
                .await?;
            let unique: HashSet<Vec<u8>> = names.into_iter().flatten().collect();
            Ok(Reply::Int(unique.len() as i64))
        }
        ("channels" | "numpat" | "help", _) => Err(CmdError::Arity(format!("pubsub|{sub}"))),
        // Redis checks this one's count in the handler, with its own text.
        ("shardchannels", _) => Err(CmdError::other(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(a[1])
        ))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "PUBSUB".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}
