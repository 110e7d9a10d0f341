//! Client-side caching: CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO,
//! and the delivery of invalidation messages.
//!
//! # Protocol
//! - A connection's tracking options live on the connection
//!   ([`ConnTracking`], in its `Subscriptions`) and, for whoever delivers
//!   invalidations, in the server's [`Directory`] (by client id, with the
//!   message queues of the connections that can receive them).
//! - Default mode: a read-only command run for a tracking client carries
//!   `Ctx::track`, and the shard that runs it remembers the client for each
//!   key, in the same step as the read (no write can slip between them).
//!   A write to a remembered key queues one invalidation on the shard, which
//!   forgets the key; after the shard's work, [`flush`] delivers it to the
//!   client, or to its REDIRECT connection, whatever their cores.
//! - BCAST: while any client broadcasts, shards report every written key;
//!   [`flush`] sends each broadcasting client the keys under its prefixes.
//! - FLUSHALL/FLUSHDB: every tracking client gets one invalidation with a
//!   null key list ([`flushed`]).
//!
//! Messages: RESP3 `>2 invalidate [keys]`; in RESP2 the redirect
//! connection, subscribed (to `__redis__:invalidate`), gets
//! `message __redis__:invalidate [keys]`. A RESP2 connection that is not
//! subscribed gets nothing, as in Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use keel_shards::tracking::Invalidation;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::parse_i64;
use crate::exec::command::{self, Spec};
use crate::exec::local::LocalShards;
use crate::exec::pubsub::{Message, Outbox};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;

/// The channel RESP2 redirect connections subscribe to.
pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// One connection's tracking options.
#[derive(Debug, Clone, Default)]
pub struct ConnTracking {
    pub redirect: u64,
    pub bcast: bool,
    /// BCAST prefixes, sorted ("" for every key).
    pub prefixes: Vec<Vec<u8>>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// CLIENT CACHING was given: it holds for the next command (and
    /// whatever CLIENT commands and MULTI ... EXEC come first).
    pub caching: bool,
    /// The flag ends when the next command starts.
    clear_due: bool,
    /// The REDIRECT connection is gone (kept in the directory's copy).
    pub broken: bool,
}

/// What a tracking message says.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Drop these keys (`None`: every key); `redirected`: sent to the
    /// REDIRECT connection (in RESP2 only such a one, subscribed, gets it).
    Invalidate {
        keys: Option<Vec<Vec<u8>>>,
        redirected: bool,
    },
    /// The REDIRECT connection (this id) is gone: invalidations are lost.
    RedirectBroken(u64),
}

impl ConnTracking {
    /// Whether a read-only command now remembers its keys.
    pub fn remembers(&self) -> bool {
        !self.bcast && (!self.optin || self.caching) && (!self.optout || !self.caching)
    }
}

#[derive(Default)]
struct Dir {
    /// Message queues of connections that may receive invalidations
    /// (tracking ones, and subscribed ones as possible redirect targets).
    outboxes: HashMap<u64, Outbox>,
    /// Every tracking client's options.
    trackers: HashMap<u64, ConnTracking>,
}

/// The server's tracking clients and where their messages go.
#[derive(Default)]
pub struct Directory {
    inner: Mutex<Dir>,
    /// Tracking clients: a closing connection takes the lock only when
    /// there are some.
    trackers: std::sync::atomic::AtomicUsize,
}

impl Directory {
    fn with<T>(&self, f: impl FnOnce(&mut Dir) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut d| f(&mut d))
    }

    /// (tracking clients, distinct BCAST prefixes), for INFO.
    pub fn counts(&self) -> (usize, usize) {
        self.with(|d| {
            let mut prefixes: Vec<&[u8]> = d
                .trackers
                .values()
                .filter(|t| t.bcast)
                .flat_map(|t| t.prefixes.iter().map(|p| &p[..]))
                .collect();
            prefixes.sort_unstable();
            prefixes.dedup();
            (d.trackers.len(), prefixes.len())
        })
        .unwrap_or_default()
    }

    /// Notes the message queue of connection `id`.
    pub fn register(&self, id: u64, out: Outbox) {
        self.with(|d| d.outboxes.insert(id, out));
    }

    fn set_tracker(&self, id: u64, t: Option<ConnTracking>) {
        self.with(|d| {
            match t {
                Some(t) => d.trackers.insert(id, t),
                None => d.trackers.remove(&id),
            };
            let bcast = d.trackers.values().filter(|t| t.bcast).count();
            keel_shards::tracking::set_broadcasting(bcast);
            self.trackers
                .store(d.trackers.len(), std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// A connection is gone (`had_outbox`: it could receive messages).
    /// Clients redirecting to it learn their redirection is broken.
    pub fn forget(&self, id: u64, had_outbox: bool) {
        if !had_outbox && self.trackers.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        self.with(|d| {
            d.outboxes.remove(&id);
            for t in d.trackers.values_mut() {
                if t.redirect == id {
                    t.broken = true;
                }
            }
        });
        self.set_tracker(id, None);
    }

    /// Whether client `id`'s REDIRECT connection is gone.
    fn broken(&self, id: u64) -> bool {
        self.with(|d| d.trackers.get(&id).is_some_and(|t| t.broken))
            .unwrap_or(false)
    }
}

/// Sends client `id` (or its REDIRECT connection) an invalidation of
/// `keys`. A broken redirection sends the client itself a notice instead,
/// each time, as Redis does.
fn send(d: &Dir, id: u64, t: &ConnTracking, keys: Option<Vec<Vec<u8>>>) {
    if t.broken {
        if let Some(own) = d.outboxes.get(&id) {
            let _ = own.unbounded_send(Message::tracking(Notice::RedirectBroken(t.redirect)));
        }
        return;
    }
    let redirected = t.redirect != 0;
    if let Some(out) = d.outboxes.get(if redirected { &t.redirect } else { &id }) {
        let _ = out.unbounded_send(Message::tracking(Notice::Invalidate { keys, redirected }));
    }
}

/// Delivers the invalidations the shards `globals` queued (after work on
/// them), those of several shards together.
pub fn flush(ls: &LocalShards, globals: &[usize]) {
    let mut pending = Vec::new();
    for &g in globals {
        pending.append(&mut ls.shard(g).tracking.take_pending());
    }
    let Some(dir) = ls.tracking.get() else {
        return;
    };
    dir.with(|d| deliver(d, &pending));
}

fn deliver(d: &Dir, pending: &[Invalidation]) {
    for inv in pending {
        for id in &inv.clients {
            let Some(t) = d.trackers.get(id) else {
                continue;
            };
            if t.bcast || (t.noloop && inv.writer == *id) {
                continue;
            }
            send(d, *id, t, Some(vec![inv.key.to_vec()]));
        }
    }
    // Broadcasting clients: per prefix, the keys under it, in one message.
    for (id, t) in d.trackers.iter().filter(|(_, t)| t.bcast) {
        for p in &t.prefixes {
            let keys: Vec<Vec<u8>> = pending
                .iter()
                .filter(|i| i.key.starts_with(p) && !(t.noloop && i.writer == *id))
                .map(|i| i.key.to_vec())
                .collect();
            if !keys.is_empty() {
                send(d, *id, t, Some(keys));
            }
        }
    }
}

/// After FLUSHALL / FLUSHDB: every tracking client drops everything.
pub async fn flushed(conn: &Conn, all: bool) -> Result<(), CmdError> {
    if all {
        conn.router
            .broadcast(|ls| {
                for id in ls.ids() {
                    ls.shard(id).tracking.clear();
                }
            })
            .await?;
    }
    conn.state.tracking.with(|d| {
        for (id, t) in &d.trackers {
            send(d, *id, t, None);
        }
    });
    Ok(())
}

/// Before each command: CLIENT CACHING applies to the one command after it
/// (a whole MULTI ... EXEC counting as one, CLIENT commands not counting),
/// as Redis clears the flag after any other command.
pub fn next_command(conn: &mut Conn, spec: &Spec) {
    let in_multi_after =
        spec.name == "multi" || (conn.multi.is_some() && !matches!(spec.name, "exec" | "discard"));
    if let Some(t) = conn.subs.tracking.as_deref_mut() {
        if t.clear_due {
            t.caching = false;
        }
        t.clear_due = spec.name != "client" && !in_multi_after;
    }
}

/// The keys a read-only command names, remembered for `client` on the
/// shard running it (called from `exec::router::apply`).
pub fn remember(s: &mut keel_shards::Shard, client: u64, args: &[&[u8]]) {
    if let Some(spec) = command::lookup(args[0]) {
        for k in command::keys_of(spec, args) {
            s.tracking.remember(k, client);
        }
    }
}

/// CLIENT TRACKING | CACHING | GETREDIR | TRACKINGINFO.
pub async fn client(conn: &mut Conn, sub: &str, a: &[&[u8]]) -> CmdResult {
    match (sub, a.len()) {
        ("tracking", n) if n >= 3 => tracking(conn, a).await,
        ("caching", n) if n >= 3 => caching(conn, a),
        ("getredir", 2) => Ok(Reply::Int(
            conn.subs
                .tracking
                .as_ref()
                .map_or(-1, |t| t.redirect as i64),
        )),
        ("trackinginfo", 2) => Ok(info(conn)),
        _ => Err(CmdError::Arity(format!("client|{sub}"))),
    }
}

async fn tracking(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let mut new = ConnTracking::default();
    let mut redirect: Option<u64> = None;
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if is(a[j], "redirect") && more {
            j += 1;
            if redirect.is_some() {
                return Err(CmdError::other(
                    "A client can only redirect to a single other client",
                ));
            }
            let id = parse_i64(a[j]).ok_or(CmdError::NotInteger)?;
            if id <= 0 || !client_exists(conn, id as u64).await? {
                return Err(CmdError::other(
                    "The client ID you want redirect to does not exist",
                ));
            }
            redirect = Some(id as u64);
        } else if is(a[j], "bcast") {
            new.bcast = true;
        } else if is(a[j], "optin") {
            new.optin = true;
        } else if is(a[j], "optout") {
            new.optout = true;
        } else if is(a[j], "noloop") {
            new.noloop = true;
        } else if is(a[j], "prefix") && more {
            j += 1;
            prefixes.push(a[j].to_vec());
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if is(a[2], "off") {
        conn.subs.tracking = None;
        // (a RESP3 connection stays a possible REDIRECT target)
        conn.subs.listening = conn.proto == crate::resp::Protocol::Resp3;
        conn.state.tracking.set_tracker(conn.id(), None);
        return Ok(Reply::Ok);
    }
    if !is(a[2], "on") {
        return Err(CmdError::Syntax);
    }
    if !new.bcast && !prefixes.is_empty() {
        return Err(CmdError::other(
            "PREFIX option requires BCAST mode to be enabled",
        ));
    }
    let old = conn.subs.tracking.as_deref().cloned();
    if let Some(old) = &old {
        if old.bcast != new.bcast {
            return Err(CmdError::other(
                "You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
            ));
        }
    }
    if new.bcast && (new.optin || new.optout) {
        return Err(CmdError::other(
            "OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if new.optin && new.optout {
        return Err(CmdError::other(
            "You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if let Some(old) = &old {
        if (new.optin && old.optout) || (new.optout && old.optin) {
            return Err(CmdError::other(
                "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.",
            ));
        }
    }
    // Prefixes accumulate over CLIENT TRACKING ON calls; none may contain
    // another (the new ones among themselves and against the old ones).
    let mut all: Vec<Vec<u8>> = old.as_ref().map(|o| o.prefixes.clone()).unwrap_or_default();
    if new.bcast {
        if prefixes.is_empty() && all.is_empty() {
            prefixes.push(Vec::new());
        }
        let overlap = |p: &[u8], q: &[u8]| p.starts_with(q) || q.starts_with(p);
        let text = |p: &[u8], q: &[u8], whose: &str| {
            CmdError::other(format!(
                "Prefix '{}' overlaps with {whose} '{}'. Prefixes for a single client must not overlap.",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(q)
            ))
        };
        for (i, p) in prefixes.iter().enumerate() {
            // (a prefix the client has already is no collision)
            if !all.contains(p) {
                if let Some(q) = all.iter().find(|q| overlap(p, q)) {
                    return Err(text(p, q, "an existing prefix"));
                }
            }
            if let Some(q) = prefixes[i + 1..].iter().find(|q| overlap(p, q)) {
                return Err(text(p, q, "another provided prefix"));
            }
        }
        for p in prefixes {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all.sort();
    }
    new.prefixes = all;
    // Options given once stay (Redis adds flags; OFF clears them).
    if let Some(old) = &old {
        new.noloop |= old.noloop;
        new.optin |= old.optin;
        new.optout |= old.optout;
    }
    new.redirect = redirect.unwrap_or(0);
    let id = conn.id();
    let out = conn.subs.outbox();
    conn.state.tracking.register(id, out);
    conn.state.tracking.set_tracker(id, Some(new.clone()));
    conn.subs.tracking = Some(Box::new(new));
    conn.subs.listening = true;
    Ok(Reply::Ok)
}

/// Whether a client with this id is connected (on any core).
async fn client_exists(conn: &Conn, id: u64) -> Result<bool, CmdError> {
    let found = conn
        .router
        .broadcast(move |ls| ls.clients.borrow().iter().any(|c| c.borrow().id == id))
        .await?;
    Ok(found.into_iter().any(|f| f))
}

fn caching(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let Some(t) = conn.subs.tracking.as_deref_mut() else {
        return Err(CmdError::other(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        ));
    };
    if is(a[2], "yes") {
        if !t.optin {
            return Err(CmdError::other(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
    } else if is(a[2], "no") {
        if !t.optout {
            return Err(CmdError::other(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
    } else {
        return Err(CmdError::Syntax);
    }
    t.caching = true;
    Ok(Reply::Ok)
}

fn info(conn: &Conn) -> Reply {
    let t = conn.subs.tracking.as_deref();
    let mut flags = vec![Reply::bulk(if t.is_some() { "on" } else { "off" })];
    let mut prefixes = Vec::new();
    let mut redirect = -1;
    if let Some(t) = t {
        if t.bcast {
            flags.push(Reply::bulk("bcast"));
        }
        if t.optin {
            flags.push(Reply::bulk("optin"));
            if t.caching {
                flags.push(Reply::bulk("caching-yes"));
            }
        }
        if t.optout {
            flags.push(Reply::bulk("optout"));
            if t.caching {
                flags.push(Reply::bulk("caching-no"));
            }
        }
        if t.noloop {
            flags.push(Reply::bulk("noloop"));
        }
        if t.redirect != 0 && conn.state.tracking.broken(conn.id()) {
            flags.push(Reply::bulk("broken_redirect"));
        }
        redirect = t.redirect as i64;
        prefixes = t.prefixes.iter().map(|p| Reply::Bulk(p.clone())).collect();
    }
    Reply::Map(vec![
        (Reply::bulk("flags"), Reply::Set(flags)),
        (Reply::bulk("redirect"), Reply::Int(redirect)),
        (Reply::bulk("prefixes"), Reply::Array(prefixes)),
    ])
}
