//! Blocking commands: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX,
//! and XREAD / XREADGROUP with BLOCK.
//!
//! # Protocol
//! A blocked client leaves a [`Waiter`] on the executor of each key's shard,
//! in a FIFO per key, so clients are served in the order they blocked. A
//! waiter is registered by one message that first tries the key and only
//! registers if it is not ready, so a push between "try" and "register"
//! cannot be missed.
//!
//! Every write to a key someone is blocked on marks the key ready in its
//! shard; after each command the executor serves the ready keys' waiters by
//! running the non-blocking twin (LPOP, LMOVE, LMPOP, ZPOPMIN...) on the
//! shard, inside the same turn, so no other command can take the data first.
//!
//! A client blocked on keys of several shards has one waiter per key, all
//! sharing one `claim` flag: whoever sets it first (a shard serving it, or
//! the connection timing out or going away) wins, and the others drop the
//! waiter. The data is popped only after winning the claim, so nothing is
//! popped for a client that already had its answer.
//!
//! Streams: a stream waiter is ready when its key has an entry past the id
//! it waits after (XREAD, with `$` resolved when the client blocked) or past
//! its group's last delivered id (XREADGROUP `>`). Waiters of one key may
//! wait after different ids, so serving a key skips waiters not yet ready
//! instead of stopping at the first; XREAD consumes nothing, so every ready
//! XREAD waiter is served by one XADD.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use keel_shards::{Shard, StreamId, ValueRef, DATABASES};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::numbers::{float_arg, int_arg};
use crate::cmd::{is, Ctx};
use crate::exec::command::{self, Kind};
use crate::exec::local::LocalShards;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// What serving a waiter runs on its key.
#[derive(Debug, Clone)]
pub enum BlockOp {
    /// BLPOP / BRPOP: `[key, value]`.
    Pop { left: bool },
    /// BLMOVE / BRPOPLPUSH: the moved value.
    Move {
        dst: Vec<u8>,
        from: &'static str,
        to: &'static str,
    },
    /// BLMPOP: `[key, [values]]`.
    MPop { left: bool, count: i64 },
    /// BZPOPMIN / BZPOPMAX: `[key, member, score]`.
    ZPop { min: bool },
    /// BZMPOP: `[key, [[member, score]...]]`.
    ZMPop { min: bool, count: i64 },
    /// XREAD BLOCK: the entries after `after` (0 `count`: all).
    XRead { after: StreamId, count: usize },
    /// XREADGROUP BLOCK with `>`: new entries for the group.
    XReadGroup {
        group: Vec<u8>,
        consumer: Vec<u8>,
        count: usize,
        noack: bool,
    },
}

impl BlockOp {
    fn value_type(&self) -> &'static str {
        match self {
            BlockOp::ZPop { .. } | BlockOp::ZMPop { .. } => "zset",
            BlockOp::XRead { .. } | BlockOp::XReadGroup { .. } => "stream",
            _ => "list",
        }
    }

    /// The non-blocking twin's arguments for `key`.
    fn args(&self, key: &[u8]) -> Vec<Vec<u8>> {
        let v = |s: &str| s.as_bytes().to_vec();
        match self {
            BlockOp::Pop { left } => vec![v(if *left { "lpop" } else { "rpop" }), key.to_vec()],
            BlockOp::Move { dst, from, to } => {
                vec![v("lmove"), key.to_vec(), dst.clone(), v(from), v(to)]
            }
            BlockOp::MPop { left, count } => vec![
                v("lmpop"),
                v("1"),
                key.to_vec(),
                v(if *left { "left" } else { "right" }),
                v("count"),
                count.to_string().into_bytes(),
            ],
            BlockOp::ZPop { min } => {
                vec![v(if *min { "zpopmin" } else { "zpopmax" }), key.to_vec()]
            }
            BlockOp::ZMPop { min, count } => vec![
                v("zmpop"),
                v("1"),
                key.to_vec(),
                v(if *min { "min" } else { "max" }),
                v("count"),
                count.to_string().into_bytes(),
            ],
            BlockOp::XRead { after, count } => {
                let mut a = vec![v("xread")];
                if *count > 0 {
                    a.extend([v("count"), count.to_string().into_bytes()]);
                }
                a.extend([v("streams"), key.to_vec(), after.to_string().into_bytes()]);
                a
            }
            BlockOp::XReadGroup {
                group,
                consumer,
                count,
                noack,
            } => {
                let mut a = vec![v("xreadgroup"), v("group"), group.clone(), consumer.clone()];
                if *count > 0 {
                    a.extend([v("count"), count.to_string().into_bytes()]);
                }
                if *noack {
                    a.push(v("noack"));
                }
                a.extend([v("streams"), key.to_vec(), v(">")]);
                a
            }
        }
    }

    /// Whether `key` has something for this waiter: a value of its type for
    /// pops; for XREAD an entry past the id waited after; for XREADGROUP a
    /// new entry for the group, or the key or group gone (answered with
    /// Redis's UNBLOCKED / NOGROUP errors).
    fn ready(&self, s: &mut Shard, ctx: &Ctx, key: &[u8]) -> bool {
        let value = s.peek(ctx.db, key, ctx.now_ms).map(|e| e.value());
        match (self, value) {
            (BlockOp::XRead { after, .. }, Some(ValueRef::Stream(x))) => {
                !x.is_empty() && x.last_valid_id() > *after
            }
            (BlockOp::XRead { .. }, _) => false,
            (BlockOp::XReadGroup { group, .. }, Some(ValueRef::Stream(x))) => x
                .group(group)
                .is_none_or(|g| !x.is_empty() && x.last_valid_id() > g.last_id),
            (BlockOp::XReadGroup { .. }, _) => true,
            (_, v) => v.map(|v| v.type_name()) == Some(self.value_type()),
        }
    }

    /// Runs the twin on `key` if it holds data of the right type.
    fn attempt(&self, s: &mut Shard, ctx: &Ctx, key: &[u8]) -> Option<Reply> {
        if let BlockOp::XReadGroup { group, .. } = self {
            let gone = match s.peek(ctx.db, key, ctx.now_ms).map(|e| e.value()) {
                Some(ValueRef::Stream(x)) if x.group(group).is_some() => None,
                Some(ValueRef::Stream(_)) => {
                    Some("NOGROUP the consumer group this client was blocked on no longer exists")
                }
                _ => Some("UNBLOCKED the stream key no longer exists"),
            };
            if let Some(e) = gone {
                return Some(Reply::Error(e.into()));
            }
        }
        if s.peek(ctx.db, key, ctx.now_ms)
            .map(|e| e.value().type_name())
            != Some(self.value_type())
        {
            return None;
        }
        let args = self.args(key);
        let argv: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let Some(Kind::Keyed(f, _)) = command::lookup(argv[0]).map(|spec| spec.kind) else {
            return None;
        };
        // An error (e.g. a destination of the wrong type) is the answer.
        let reply =
            match crate::exec::router::apply(f, crate::exec::router::Mode::WRITE, s, ctx, &argv) {
                Ok(r) => r,
                Err(e) => return Some(Reply::Error(e.to_string().into())),
            };
        Some(match (self, reply) {
            (_, Reply::Nil | Reply::NilArray) => return None,
            (BlockOp::Pop { .. }, v) => Reply::Array(vec![Reply::bulk(key), v]),
            (BlockOp::ZPop { .. }, Reply::Array(mut items)) if items.len() == 2 => {
                items.insert(0, Reply::bulk(key));
                Reply::Array(items)
            }
            (_, v) => v,
        })
    }
}

/// One blocked client's registration on one key.
pub struct Waiter {
    pub claim: Arc<AtomicBool>,
    pub reply: Arc<Mutex<Option<oneshot::Sender<Reply>>>>,
    pub op: BlockOp,
    /// The client's ACL user, checked again if users changed meanwhile.
    pub acl: Arc<crate::security::acl::paths::BlockedAcl>,
}

impl Waiter {
    fn send(&self, r: Reply) {
        if let Ok(mut slot) = self.reply.lock() {
            if let Some(tx) = slot.take() {
                let _ = tx.send(r);
            }
        }
    }
}

/// One executor's blocked clients: (shard, db, key) → waiters in order.
pub type Waiters = HashMap<(usize, usize, Vec<u8>), VecDeque<Waiter>>;

fn ctx_for(db: usize) -> Ctx {
    Ctx {
        db,
        now_ms: now_ms(),
        max_string: usize::MAX,
        no_touch: false,
        client: 0,
        track: false,
    }
}

/// Tries `key` for the waiter and registers it if the key is not ready.
pub fn try_or_register(ls: &LocalShards, shard: usize, db: usize, key: Vec<u8>, w: Waiter) {
    if w.claim.load(Ordering::SeqCst) {
        return;
    }
    let ctx = ctx_for(db);
    let mut s = ls.shard(shard);
    let found = s.peek(db, &key, ctx.now_ms).map(|e| e.value().type_name());
    // Stream reads already ran once (`start_stream`): what changed since
    // is judged as for a client already blocked. XREAD keeps waiting on a
    // key that became something else; XREADGROUP is told its key or group
    // is gone (it would otherwise wait for a group that no longer exists).
    let stream = matches!(w.op, BlockOp::XRead { .. } | BlockOp::XReadGroup { .. });
    if !stream && found.is_some_and(|t| t != w.op.value_type()) {
        // A key of another type is an error at once, as in Redis.
        if !w.claim.swap(true, Ordering::SeqCst) {
            w.send(Reply::Error(CmdError::WrongType.to_string().into()));
        }
        return;
    }
    let group = matches!(w.op, BlockOp::XReadGroup { .. });
    if (found.is_some() || group)
        && w.op.ready(&mut s, &ctx, &key)
        && !w.claim.swap(true, Ordering::SeqCst)
    {
        if let Some(r) = w.op.attempt(&mut s, &ctx, &key) {
            w.send(r);
        }
        drop(s);
        serve(ls, shard);
        // Its keyspace events go out before the client has its reply.
        ls.kick_log(shard);
        return;
    }
    s.block_on(db, &key);
    ls.blocked
        .borrow_mut()
        .entry((shard, db, key))
        .or_default()
        .push_back(w);
}

/// Serves waiters of keys that writes made ready on `shard`.
pub fn serve(ls: &LocalShards, shard: usize) {
    for _round in 0..1024 {
        let ready = ls.shard(shard).take_ready();
        if ready.is_empty() {
            return;
        }
        for (db, key) in ready {
            serve_key(ls, shard, db, key);
        }
    }
}

fn serve_key(ls: &LocalShards, shard: usize, db: usize, key: Vec<u8>) {
    let ctx = ctx_for(db);
    let map_key = (shard, db, key);
    loop {
        let mut blocked = ls.blocked.borrow_mut();
        let Some(queue) = blocked.get_mut(&map_key) else {
            return;
        };
        if queue.is_empty() {
            blocked.remove(&map_key);
            return;
        }
        let mut s = ls.shard(shard);
        // Drop registrations served elsewhere or gone.
        let before = queue.len();
        queue.retain(|w| !w.claim.load(Ordering::SeqCst));
        for _ in queue.len()..before {
            s.unblock(db, &map_key.2);
        }
        // The first waiter (in blocking order) the key can serve now.
        let Some(at) = queue
            .iter()
            .position(|w| w.op.ready(&mut s, &ctx, &map_key.2))
        else {
            return;
        };
        let Some(w) = queue.remove(at) else { return };
        w.claim.store(true, Ordering::SeqCst);
        drop(blocked);
        s.unblock(db, &map_key.2);
        // Users changed since it blocked: it may no longer run (the key
        // stays for the next waiter).
        if let Some(refused) = w.acl.recheck() {
            w.send(refused);
            continue;
        }
        if let Some(r) = w.op.attempt(&mut s, &ctx, &map_key.2) {
            w.send(r);
        }
    }
}

/// Drops the registrations of a waiter that is done (served, timed out or
/// disconnected).
pub fn cancel(ls: &LocalShards, shard: usize, db: usize, key: Vec<u8>, claim: &Arc<AtomicBool>) {
    let map_key = (shard, db, key);
    let mut blocked = ls.blocked.borrow_mut();
    if let Some(queue) = blocked.get_mut(&map_key) {
        let before = queue.len();
        queue.retain(|w| !Arc::ptr_eq(&w.claim, claim));
        let removed = before - queue.len();
        if queue.is_empty() {
            blocked.remove(&map_key);
        }
        drop(blocked);
        let mut s = ls.shard(shard);
        for _ in 0..removed {
            s.unblock(map_key.1, &map_key.2);
        }
    }
}

/// A client waiting for a blocking command's answer.
pub struct Blocked {
    pub answer: oneshot::Receiver<Reply>,
    pub claim: Arc<AtomicBool>,
    pub deadline: Option<Instant>,
    pub timeout_reply: Reply,
    pub keys: Vec<(usize, usize, Vec<u8>)>,
}

/// The outcome of starting a blocking command.
pub enum Start {
    Done(CmdResult),
    Wait(Box<Blocked>),
}

fn timeout_arg(arg: &[u8]) -> Result<Option<Duration>, CmdError> {
    let t =
        float_arg(arg).map_err(|_| CmdError::other("timeout is not a float or out of range"))?;
    if t < 0.0 {
        return Err(CmdError::other("timeout is negative"));
    }
    if !t.is_finite() || t > 1e10 {
        return Err(CmdError::other("timeout is out of range"));
    }
    Ok(if t == 0.0 {
        None
    } else {
        Some(Duration::from_secs_f64(t))
    })
}

fn direction(arg: &[u8]) -> Result<&'static str, CmdError> {
    if is(arg, "left") {
        Ok("left")
    } else if is(arg, "right") {
        Ok("right")
    } else {
        Err(CmdError::Syntax)
    }
}

/// BLMPOP / BZMPOP's `timeout numkeys key... SIDE [COUNT n]`, checked in
/// Redis's order (numkeys, the side, the options; the caller reads the
/// timeout last): the keys, what `side` made of the side word, the count.
fn mpop_args(
    a: &[&[u8]],
    side: impl Fn(&[u8]) -> Result<bool, CmdError>,
) -> Result<(Vec<Vec<u8>>, bool, i64), CmdError> {
    let numkeys = int_arg(a[2]).map_err(|_| CmdError::other("numkeys should be greater than 0"))?;
    if numkeys <= 0 {
        return Err(CmdError::other("numkeys should be greater than 0"));
    }
    let n = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if a.len().saturating_sub(4) < n {
        return Err(CmdError::Syntax);
    }
    let keys = a[3..3 + n].iter().map(|k| k.to_vec()).collect();
    let first_side = side(a[3 + n])?;
    let mut count = None;
    let mut j = 4 + n;
    while j < a.len() {
        if count.is_none() && is(a[j], "count") && j + 1 < a.len() {
            let c = int_arg(a[j + 1])
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| CmdError::other("count should be greater than 0"))?;
            count = Some(c);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((keys, first_side, count.unwrap_or(1)))
}

/// A blocking command's keys, timeout, operation and reply for a timeout.
type Request = (Vec<Vec<u8>>, Option<Duration>, BlockOp, Reply);

/// Parses a blocking command.
fn parse(name: &str, a: &[&[u8]]) -> Result<Request, CmdError> {
    let last = a.len() - 1;
    Ok(match name {
        "blpop" | "brpop" => (
            a[1..last].iter().map(|k| k.to_vec()).collect(),
            timeout_arg(a[last])?,
            BlockOp::Pop {
                left: name == "blpop",
            },
            Reply::NilArray,
        ),
        "bzpopmin" | "bzpopmax" => (
            a[1..last].iter().map(|k| k.to_vec()).collect(),
            timeout_arg(a[last])?,
            BlockOp::ZPop {
                min: name == "bzpopmin",
            },
            Reply::NilArray,
        ),
        "brpoplpush" => (
            vec![a[1].to_vec()],
            timeout_arg(a[3])?,
            BlockOp::Move {
                dst: a[2].to_vec(),
                from: "right",
                to: "left",
            },
            Reply::NilArray,
        ),
        "blmove" => {
            let (from, to) = (direction(a[3])?, direction(a[4])?);
            (
                vec![a[1].to_vec()],
                timeout_arg(a[5])?,
                BlockOp::Move {
                    dst: a[2].to_vec(),
                    from,
                    to,
                },
                Reply::NilArray,
            )
        }
        "blmpop" => {
            let (keys, left, count) = mpop_args(a, |w| Ok(direction(w)? == "left"))?;
            (
                keys,
                timeout_arg(a[1])?,
                BlockOp::MPop { left, count },
                Reply::NilArray,
            )
        }
        "bzmpop" => {
            let (keys, min, count) = mpop_args(a, |w| match w {
                w if is(w, "min") => Ok(true),
                w if is(w, "max") => Ok(false),
                _ => Err(CmdError::Syntax),
            })?;
            (
                keys,
                timeout_arg(a[1])?,
                BlockOp::ZMPop { min, count },
                Reply::NilArray,
            )
        }
        _ => return Err(CmdError::other("not a blocking command")),
    })
}

/// Starts a blocking command: answers at once when a key is ready (or inside
/// MULTI, where blocking commands never block), else leaves waiters.
pub async fn start(conn: &mut Conn, name: &str, a: &[&[u8]]) -> Start {
    let (keys, timeout, op, timeout_reply) = match parse(name, a) {
        Ok(p) => p,
        Err(e) => return Start::Done(Err(e)),
    };
    let router = conn.router.clone();
    if let BlockOp::Move { dst, .. } = &op {
        if router.shard_of(dst) != router.shard_of(&keys[0]) {
            return Start::Done(Err(CmdError::Raw(
                "CROSSSLOT Keys in request don't hash to the same slot".into(),
            )));
        }
    }
    if conn.db >= DATABASES {
        return Start::Done(Err(CmdError::DbIndex));
    }
    let nil_in_tx = if matches!(op, BlockOp::Move { .. }) {
        // A nil bulk for BLMOVE / BRPOPLPUSH, as Redis's addReplyNull.
        Reply::Nil
    } else {
        timeout_reply.clone()
    };
    let waits = keys.into_iter().map(|k| (k, op.clone())).collect();
    let acl = crate::security::acl::paths::BlockedAcl::of(conn, name, a);
    wait_on(conn, waits, timeout, timeout_reply, nil_in_tx, acl).await
}

/// Leaves a waiter for each (key, operation), answering at once when a key
/// is ready (or inside MULTI, where nothing blocks: `nil_in_tx`).
async fn wait_on(
    conn: &mut Conn,
    waits: Vec<(Vec<u8>, BlockOp)>,
    timeout: Option<Duration>,
    timeout_reply: Reply,
    nil_in_tx: Reply,
    acl: Arc<crate::security::acl::paths::BlockedAcl>,
) -> Start {
    let router = conn.router.clone();
    let claim = Arc::new(AtomicBool::new(false));
    let (tx, mut answer) = oneshot::channel();
    let reply = Arc::new(Mutex::new(Some(tx)));
    let db = conn.db;
    let mut registered = Vec::new();
    for (key, op) in waits {
        let shard = router.shard_of(&key);
        let w = Waiter {
            claim: claim.clone(),
            reply: reply.clone(),
            op,
            acl: acl.clone(),
        };
        let k = key.clone();
        if router
            .on_local(shard, conn.tx, move |ls| {
                try_or_register(ls, shard, db, k, w)
            })
            .await
            .is_err()
        {
            break;
        }
        registered.push((shard, db, key));
        if claim.load(Ordering::SeqCst) {
            break;
        }
    }
    if claim.load(Ordering::SeqCst) {
        let r = (&mut answer).await.unwrap_or(timeout_reply);
        cancel_all(conn, &claim, registered).await;
        return Start::Done(Ok(r));
    }
    if conn.tx.is_some() {
        // Inside EXEC nothing blocks: an empty answer at once.
        claim.store(true, Ordering::SeqCst);
        cancel_all(conn, &claim, registered).await;
        return Start::Done(Ok(nil_in_tx));
    }
    Start::Wait(Box::new(Blocked {
        answer,
        claim,
        deadline: timeout.map(|t| Instant::now() + t),
        timeout_reply,
        keys: registered,
    }))
}

/// Whether a keyed command is XREAD or XREADGROUP with BLOCK (the
/// connection then starts it here instead of running it once).
pub fn is_stream_block(name: &str, a: &[&[u8]]) -> bool {
    matches!(name, "xread" | "xreadgroup")
        && crate::cmd::streams::read_args(a, name == "xreadgroup").is_ok_and(|r| r.block.is_some())
}

/// XREAD / XREADGROUP with BLOCK: runs the command once without BLOCK (with
/// `$` resolved to each stream's last id), and when that finds nothing,
/// waits on every key for an entry past the id it asked after.
pub async fn start_stream(conn: &mut Conn, name: &str, a: &[&[u8]]) -> Start {
    let group = name == "xreadgroup";
    let r = match crate::cmd::streams::read_args(a, group) {
        Ok(r) => r,
        Err(e) => return Start::Done(Err(e)),
    };
    if conn.db >= DATABASES {
        return Start::Done(Err(CmdError::DbIndex));
    }
    let router = conn.router.clone();
    let db = conn.db;
    // `$` is the stream's last id when the client blocks.
    let mut ids: Vec<Vec<u8>> = Vec::with_capacity(r.ids.len());
    for (key, id) in r.keys.iter().zip(&r.ids) {
        if group || *id != b"$" {
            ids.push(id.to_vec());
            continue;
        }
        let shard = router.shard_of(key);
        let k = key.to_vec();
        let last = router
            .on_local(shard, conn.tx, move |ls| {
                match ls.shard(shard).peek(db, &k, now_ms()).map(|e| e.value()) {
                    Some(ValueRef::Stream(x)) => x.last_id(),
                    _ => StreamId::MIN,
                }
            })
            .await
            .unwrap_or(StreamId::MIN);
        ids.push(last.to_string().into_bytes());
    }
    // The same command without BLOCK, ids resolved.
    let mut argv: Vec<&[u8]> = vec![a[0]];
    if let Some((g, c)) = r.group {
        argv.extend([&b"GROUP"[..], g, c]);
    }
    let count = r.count.to_string().into_bytes();
    if r.count > 0 {
        argv.extend([&b"COUNT"[..], &count]);
    }
    if r.noack {
        argv.push(b"NOACK");
    }
    argv.push(b"STREAMS");
    argv.extend(r.keys.iter().copied());
    argv.extend(ids.iter().map(|i| &i[..]));
    let Some(spec) = command::lookup(a[0]) else {
        return Start::Done(Err(CmdError::Syntax));
    };
    let Kind::Keyed(f, split) = spec.kind else {
        return Start::Done(Err(CmdError::Syntax));
    };
    let ctx = conn.ctx(now_ms());
    match router.run(spec, f, split, ctx, &argv, conn.tx).await {
        Ok(Reply::NilArray) => {}
        other => return Start::Done(other),
    }
    let waits = r
        .keys
        .iter()
        .zip(&ids)
        .map(|(k, id)| {
            let op = match r.group {
                Some((g, c)) => BlockOp::XReadGroup {
                    group: g.to_vec(),
                    consumer: c.to_vec(),
                    count: r.count,
                    noack: r.noack,
                },
                None => BlockOp::XRead {
                    after: crate::cmd::streams::parse_strict_id(id).unwrap_or(StreamId::MAX),
                    count: r.count,
                },
            };
            (k.to_vec(), op)
        })
        .collect();
    let timeout = r.block.filter(|ms| *ms > 0).map(Duration::from_millis);
    let acl = crate::security::acl::paths::BlockedAcl::of(conn, name, a);
    wait_on(conn, waits, timeout, Reply::NilArray, Reply::NilArray, acl).await
}

/// Removes a finished waiter's registrations from every shard.
pub async fn cancel_all(conn: &Conn, claim: &Arc<AtomicBool>, keys: Vec<(usize, usize, Vec<u8>)>) {
    for (shard, db, key) in keys {
        let c = claim.clone();
        let _ = conn
            .router
            .on_local(shard, conn.tx, move |ls| cancel(ls, shard, db, key, &c))
            .await;
    }
}
