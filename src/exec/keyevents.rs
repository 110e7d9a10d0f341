//! Which keyspace events a keyed command produces, as Redis 7.0 names
//! them: one table from command to (class, event) instead of a call in
//! every handler.
//!
//! [`before`] notes which of the command's keys hold a value; [`after`]
//! looks again once the handler ran and, if the command wrote, notes its
//! events on the shard, in Redis's order: `new` for a key the command
//! created, the command's own events, then `del` for a key it emptied
//! (a list popped to nothing, an expiry in the past, a store of an empty
//! result). Where the event depends on the outcome (ZADD's INCR, GETEX's
//! PERSIST, which key a blocking pop served) it is read from the
//! arguments and the reply.
//!
//! Notifications off: [`before`] is one atomic load and returns `None`.

use keel_shards::notify::{self as n, KeyEvent};
use keel_shards::Shard;

use crate::cmd::error::CmdResult;
use crate::cmd::Ctx;
use crate::exec::command;
use crate::resp::reply::Reply;

/// What [`after`] needs from before the command ran.
pub struct Before {
    /// The command's key arguments (index in argv) and whether each held a
    /// live value.
    keys: Vec<(usize, bool)>,
    seq: u64,
    implicit: u64,
    /// SMOVE: whether the destination held the member already; SETBIT:
    /// the string's length.
    aux: i64,
}

/// Called before a keyed handler runs.
#[inline]
pub fn before(s: &mut Shard, ctx: &Ctx, args: &[&[u8]]) -> Option<Before> {
    if n::flags() & (n::KEYSPACE | n::KEYEVENT) == 0 {
        return None;
    }
    let spec = command::lookup(args[0]).filter(|s| s.arity_ok(args.len()))?;
    let keys = command::keys_of(spec, args);
    let mut out = Vec::with_capacity(keys.len());
    // keys_of returns slices of `args`: find their positions.
    for k in keys {
        if let Some(i) = args
            .iter()
            .enumerate()
            .skip(1)
            .position(|(_, a)| a.as_ptr() == k.as_ptr() && a.len() == k.len())
        {
            let i = i + 1;
            // A key past its expiry goes now, as Redis's lookup takes it
            // (its `expired` comes before the command's events).
            let _ = s.peek(ctx.db, args[i], ctx.now_ms);
            out.push((i, s.contains_live(ctx.db, args[i], ctx.now_ms)));
        }
    }
    // Key misses: the keys a read finds absent, as Redis's read lookups
    // report them (OBJECT's does not; GETEX, GETDEL and SET ... GET read
    // first), before the write's own events.
    if n::wanted(n::KEY_MISS) {
        let read_from = match spec.name {
            "object" | "memory" => None,
            _ if spec.has(command::flags::READONLY) => Some(1),
            "getex" | "getdel" | "pfmerge" => Some(1),
            "set" if has_opt(args, 3, &["get"]) => Some(1),
            "georadius" | "georadiusbymember" => Some(1),
            "sinterstore" | "sunionstore" | "sdiffstore" | "zrangestore" | "geosearchstore" => {
                Some(2)
            }
            // (after the destination and numkeys)
            "zunionstore" | "zinterstore" | "zdiffstore" => Some(4),
            "bitop" => Some(3),
            "bitfield" if !has_opt(args, 2, &["set", "incrby"]) => Some(1),
            "sort" => Some(1),
            _ => None,
        };
        // SORT reads its one source key (its STORE destination is written).
        let to = if spec.name == "sort" { 1 } else { usize::MAX };
        if let Some(from) = read_from {
            for &(i, live) in &out {
                if i >= from && i <= to && !live {
                    s.notify(n::KEY_MISS, "keymiss", ctx.db, args[i]);
                }
            }
        }
    }
    // SMOVE reports `sadd` only when the destination gains the member;
    // SETBIT only when the bit or the length changes.
    let aux = if args.len() == 4 && args[0].eq_ignore_ascii_case(b"smove") {
        int_reply(&crate::cmd::sets::sismember(
            s,
            ctx,
            &[b"sismember", args[2], args[3]],
        ))
    } else if args.len() == 4 && args[0].eq_ignore_ascii_case(b"setbit") {
        int_reply(&crate::cmd::strings::strlen(s, ctx, &[b"strlen", args[1]]))
    } else if args.len() > 2 && args[0].eq_ignore_ascii_case(b"xadd") {
        // XADD reports `xtrim` too when its MAXLEN/MINID removed entries.
        int_reply(&crate::cmd::streams::xlen(s, ctx, &[b"xlen", args[1]]))
    } else if let Some((group, consumer)) = names_consumer(args) {
        // XREADGROUP, XCLAIM and XAUTOCLAIM create their consumer: bit j
        // set when it is missing from the group of the j-th key.
        out.iter().enumerate().fold(0, |bits, (j, &(i, _))| {
            let missing = consumer_missing(s, ctx, args[i], group, consumer);
            bits | (i64::from(missing && j < 63) << j)
        })
    } else {
        0
    };
    Some(Before {
        aux,
        keys: out,
        seq: s.seq(),
        implicit: s.implicit_writes(),
    })
}

/// The group and consumer of a command that creates its consumer.
fn names_consumer<'a>(args: &[&'a [u8]]) -> Option<(&'a [u8], &'a [u8])> {
    let name = args.first()?;
    if name.eq_ignore_ascii_case(b"xclaim") || name.eq_ignore_ascii_case(b"xautoclaim") {
        return Some((*args.get(2)?, *args.get(3)?));
    }
    if name.eq_ignore_ascii_case(b"xreadgroup") && args.get(1)?.eq_ignore_ascii_case(b"group") {
        return Some((*args.get(2)?, *args.get(3)?));
    }
    None
}

fn consumer_missing(s: &mut Shard, ctx: &Ctx, key: &[u8], group: &[u8], consumer: &[u8]) -> bool {
    match s.peek(ctx.db, key, ctx.now_ms).map(|e| e.value()) {
        Some(keel_shards::ValueRef::Stream(x)) => x
            .group(group)
            .is_some_and(|g| g.consumer(consumer).is_none()),
        _ => false,
    }
}

/// One event to note: class, name, argv index of the key (or an explicit
/// key), database.
struct Ev {
    class: u32,
    event: &'static str,
    key: Vec<u8>,
    db: usize,
}

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn has_opt(args: &[&[u8]], from: usize, names: &[&str]) -> bool {
    args.iter()
        .skip(from)
        .any(|a| names.iter().any(|n| a.eq_ignore_ascii_case(n.as_bytes())))
}

/// The key a blocking-style pop served, from its reply (`[key, ...]`).
fn reply_key(r: &Reply) -> Option<Vec<u8>> {
    match r {
        Reply::Array(items) => match items.first() {
            Some(Reply::Bulk(k)) => Some(k.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn int_reply(r: &CmdResult) -> i64 {
    match r {
        Ok(Reply::Int(i)) => *i,
        _ => 0,
    }
}

fn reply_int(r: &Reply) -> Option<i64> {
    match r {
        Reply::Int(i) => Some(*i),
        _ => None,
    }
}

/// Called after the handler ran (with its result).
pub fn after(b: Before, s: &mut Shard, ctx: &Ctx, args: &[&[u8]], r: &CmdResult) {
    let Ok(reply) = r else { return };
    let wrote = s.seq() - b.seq > s.implicit_writes() - b.implicit;
    let name = lower(args[0]);
    let db = ctx.db;
    let key = |i: usize| args.get(i).map(|k| k.to_vec()).unwrap_or_default();
    let ev = |class, event, key: Vec<u8>| Ev {
        class,
        event,
        key,
        db,
    };
    let mut events: Vec<Ev> = Vec::new();
    // Keys whose `new` the command orders itself, or that Redis deletes
    // and adds again (RENAME, COPY, MOVE: `new` whatever was there).
    let mut custom_new = false;
    // Keys removed by the command's own event (rename_from, move_from).
    let mut no_del: Vec<Vec<u8>> = Vec::new();
    let exists_after = |s: &Shard, k: &[u8]| s.contains_live(db, k, ctx.now_ms);
    let all_keys = |class, event: &'static str, step: usize| -> Vec<Ev> {
        (1..args.len())
            .step_by(step)
            .map(|i| Ev {
                class,
                event,
                key: key(i),
                db,
            })
            .collect()
    };
    let existed = |i: usize| b.keys.iter().any(|&(k, e)| k == i && e);
    // Commands Redis reports even when they changed nothing.
    // SET with an expiry already past: Redis stores the key and expires it
    // at its next lookup; keel does not store it (nor count a write when
    // there was nothing to delete). The same events, the expiry's at once.
    let past_set = name == "set"
        && matches!(reply, Reply::Ok)
        && !exists_after(s, args[1])
        && has_opt(args, 3, &["ex", "px", "exat", "pxat"]);
    let always = match name.as_str() {
        "ltrim" | "append" => existed(1),
        "set" => past_set,
        "pfmerge" => true,
        _ => false,
    };
    match name.as_str() {
        _ if !wrote && !always => {}
        "set" if past_set => {
            custom_new = true;
            if !existed(1) {
                events.push(ev(n::NEW, "new", key(1)));
            }
            events.push(ev(n::STRING, "set", key(1)));
            events.push(ev(n::GENERIC, "expire", key(1)));
            events.push(ev(n::EXPIRED, "expired", key(1)));
            no_del.push(key(1));
        }
        "set" => {
            events.push(ev(n::STRING, "set", key(1)));
            if has_opt(args, 3, &["ex", "px", "exat", "pxat"]) {
                events.push(ev(n::GENERIC, "expire", key(1)));
            }
        }
        "setnx" | "getset" => events.push(ev(n::STRING, "set", key(1))),
        "setex" | "psetex" => {
            events.push(ev(n::STRING, "set", key(1)));
            events.push(ev(n::GENERIC, "expire", key(1)));
        }
        "mset" | "msetnx" => events.extend(all_keys(n::STRING, "set", 2)),
        "append" => events.push(ev(n::STRING, "append", key(1))),
        "setrange" => events.push(ev(n::STRING, "setrange", key(1))),
        "incr" | "decr" | "incrby" | "decrby" => events.push(ev(n::STRING, "incrby", key(1))),
        "incrbyfloat" => events.push(ev(n::STRING, "incrbyfloat", key(1))),
        "setbit" => {
            let bit = i64::from(args[3] == b"1");
            let grew =
                int_reply(&crate::cmd::strings::strlen(s, ctx, &[b"strlen", args[1]])) != b.aux;
            if !existed(1) || grew || reply_int(reply) != Some(bit) {
                events.push(ev(n::STRING, "setbit", key(1)));
            }
        }
        "bitfield" => events.push(ev(n::STRING, "setbit", key(1))),
        "bitop" if exists_after(s, args[2]) => events.push(ev(n::STRING, "set", key(2))),
        "pfadd" | "pfmerge" => events.push(ev(n::STRING, "pfadd", key(1))),
        "getex" => {
            if has_opt(args, 2, &["persist"]) {
                events.push(ev(n::GENERIC, "persist", key(1)));
            } else if exists_after(s, args[1]) {
                events.push(ev(n::GENERIC, "expire", key(1)));
            }
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" if exists_after(s, args[1]) => {
            events.push(ev(n::GENERIC, "expire", key(1)))
        }
        "persist" => events.push(ev(n::GENERIC, "persist", key(1))),
        "rename" | "renamenx" => {
            custom_new = true;
            events.push(ev(n::NEW, "new", key(2)));
            events.push(ev(n::GENERIC, "rename_from", key(1)));
            events.push(ev(n::GENERIC, "rename_to", key(2)));
            no_del.push(key(1));
        }
        "copy" => {
            custom_new = true;
            let dst_db = copy_db(args).unwrap_or(db);
            events.push(Ev {
                db: dst_db,
                ..ev(n::NEW, "new", key(2))
            });
            events.push(Ev {
                db: dst_db,
                ..ev(n::GENERIC, "copy_to", key(2))
            });
        }
        "move" => {
            custom_new = true;
            let dst_db = std::str::from_utf8(args[2])
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(db);
            events.push(Ev {
                db: dst_db,
                ..ev(n::NEW, "new", key(1))
            });
            events.push(ev(n::GENERIC, "move_from", key(1)));
            events.push(Ev {
                db: dst_db,
                ..ev(n::GENERIC, "move_to", key(1))
            });
            no_del.push(key(1));
        }
        "restore" => {
            custom_new = true;
            events.push(ev(n::NEW, "new", key(1)));
            events.push(ev(n::GENERIC, "restore", key(1)));
        }
        "lpush" | "lpushx" => events.push(ev(n::LIST, "lpush", key(1))),
        "rpush" | "rpushx" => events.push(ev(n::LIST, "rpush", key(1))),
        "linsert" => events.push(ev(n::LIST, "linsert", key(1))),
        "lset" => events.push(ev(n::LIST, "lset", key(1))),
        "ltrim" => events.push(ev(n::LIST, "ltrim", key(1))),
        "lrem" => events.push(ev(n::LIST, "lrem", key(1))),
        "lpop" => events.push(ev(n::LIST, "lpop", key(1))),
        "rpop" => events.push(ev(n::LIST, "rpop", key(1))),
        "lmpop" => {
            let left = has_opt(args, 3, &["left"]);
            if let Some(k) = reply_key(reply) {
                events.push(ev(n::LIST, if left { "lpop" } else { "rpop" }, k));
            }
        }
        "rpoplpush" | "lmove" => {
            let (from, to) = if name == "lmove" {
                (lower(args[3]), lower(args[4]))
            } else {
                ("right".into(), "left".into())
            };
            let push = if to == "left" { "lpush" } else { "rpush" };
            let pop = if from == "left" { "lpop" } else { "rpop" };
            events.push(ev(n::LIST, push, key(2)));
            events.push(ev(n::LIST, pop, key(1)));
        }
        "hset" | "hmset" | "hsetnx" => events.push(ev(n::HASH, "hset", key(1))),
        "hdel" => events.push(ev(n::HASH, "hdel", key(1))),
        "hincrby" => events.push(ev(n::HASH, "hincrby", key(1))),
        "hincrbyfloat" => events.push(ev(n::HASH, "hincrbyfloat", key(1))),
        "sadd" => events.push(ev(n::SET, "sadd", key(1))),
        "srem" => events.push(ev(n::SET, "srem", key(1))),
        "spop" => events.push(ev(n::SET, "spop", key(1))),
        "smove" => {
            // srem, del of an emptied source, new destination, sadd.
            custom_new = true;
            events.push(ev(n::SET, "srem", key(1)));
            if !exists_after(s, args[1]) {
                events.push(ev(n::GENERIC, "del", key(1)));
            }
            no_del.push(key(1));
            if !existed(2) {
                events.push(ev(n::NEW, "new", key(2)));
            }
            if reply_int(reply) == Some(1) && b.aux == 0 {
                events.push(ev(n::SET, "sadd", key(2)));
            }
        }
        "sinterstore" | "sunionstore" | "sdiffstore" => {
            store(&mut events, s, args, 1, n::SET, &name, db, ctx)
        }
        "zadd" => {
            let incr = has_opt(args, 2, &["incr"]);
            events.push(ev(n::ZSET, if incr { "zincr" } else { "zadd" }, key(1)));
        }
        "geoadd" => events.push(ev(n::ZSET, "zadd", key(1))),
        "zincrby" => events.push(ev(n::ZSET, "zincr", key(1))),
        "zrem" => events.push(ev(n::ZSET, "zrem", key(1))),
        "zremrangebyscore" | "zremrangebyrank" | "zremrangebylex" => {
            events.push(ev(n::ZSET, static_name(&name), key(1)))
        }
        "zpopmin" => events.push(ev(n::ZSET, "zpopmin", key(1))),
        "zpopmax" => events.push(ev(n::ZSET, "zpopmax", key(1))),
        "zmpop" => {
            let min = has_opt(args, 3, &["min"]);
            if let Some(k) = reply_key(reply) {
                events.push(ev(n::ZSET, if min { "zpopmin" } else { "zpopmax" }, k));
            }
        }
        "zunionstore" | "zinterstore" | "zdiffstore" | "zrangestore" | "geosearchstore" => {
            store(&mut events, s, args, 1, n::ZSET, &name, db, ctx)
        }
        "georadius" | "georadiusbymember" => {
            if let Some(i) = args.iter().rposition(|a| {
                a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist")
            }) {
                store(
                    &mut events,
                    s,
                    args,
                    i + 1,
                    n::ZSET,
                    "georadiusstore",
                    db,
                    ctx,
                );
            }
        }
        "xadd" if !matches!(reply, Reply::Nil) => {
            events.push(ev(n::STREAM, "xadd", key(1)));
            let len = int_reply(&crate::cmd::streams::xlen(s, ctx, &[b"xlen", args[1]]));
            if len < b.aux + 1 {
                events.push(ev(n::STREAM, "xtrim", key(1)));
            }
        }
        "xtrim" if reply_int(reply).is_some_and(|n| n > 0) => {
            events.push(ev(n::STREAM, "xtrim", key(1)))
        }
        "xdel" if reply_int(reply).is_some_and(|n| n > 0) => {
            events.push(ev(n::STREAM, "xdel", key(1)))
        }
        "xsetid" => events.push(ev(n::STREAM, "xsetid", key(1))),
        "xreadgroup" | "xclaim" | "xautoclaim" if b.aux != 0 => {
            if let Some((group, consumer)) = names_consumer(args) {
                for (j, &(i, _)) in b.keys.iter().enumerate().take(63) {
                    if b.aux & (1 << j) != 0 && !consumer_missing(s, ctx, args[i], group, consumer)
                    {
                        events.push(ev(n::STREAM, "xgroup-createconsumer", key(i)));
                    }
                }
            }
        }
        "xgroup" => {
            let done = !matches!(reply, Reply::Int(0));
            let event = match String::from_utf8_lossy(args[1]).to_lowercase().as_str() {
                "create" => Some("xgroup-create"),
                "setid" => Some("xgroup-setid"),
                "destroy" if done => Some("xgroup-destroy"),
                "createconsumer" if done => Some("xgroup-createconsumer"),
                "delconsumer" => Some("xgroup-delconsumer"),
                _ => None,
            };
            if let Some(event) = event {
                events.push(ev(n::STREAM, event, key(2)));
            }
        }
        "sort" => {
            if let Some(i) = args.iter().rposition(|a| a.eq_ignore_ascii_case(b"store")) {
                store(&mut events, s, args, i + 1, n::LIST, "sortstore", db, ctx);
            }
        }
        _ => {}
    }
    if !wrote || past_set {
        for e in &events {
            s.notify(e.class, e.event, e.db, &e.key);
        }
        return;
    }
    // `new` just before the first event of each key that did not hold a
    // value and does now (MSET: new a, set a, new b, set b).
    let mut created: Vec<&[u8]> = Vec::new();
    if !custom_new {
        for &(i, existed) in &b.keys {
            if !existed && exists_after(s, args[i]) && !created.contains(&args[i]) {
                created.push(args[i]);
            }
        }
    }
    for e in &events {
        if let Some(p) = created.iter().position(|k| *k == &e.key[..]) {
            s.notify(n::NEW, "new", db, created.remove(p));
        }
        s.notify(e.class, e.event, e.db, &e.key);
    }
    for k in created {
        s.notify(n::NEW, "new", db, k);
    }
    // `del` for each key the command emptied (once per key).
    let mut seen: Vec<&[u8]> = Vec::new();
    for &(i, existed) in &b.keys {
        let k = args[i];
        if existed && !exists_after(s, k) && !no_del.iter().any(|d| d == k) && !seen.contains(&k) {
            seen.push(k);
            s.notify(n::GENERIC, "del", db, k);
        }
    }
}

/// A STORE destination: the command's event when it holds a result now
/// (an empty result deletes it: `del`, from the emptied rule).
#[allow(clippy::too_many_arguments)]
fn store(
    events: &mut Vec<Ev>,
    s: &Shard,
    args: &[&[u8]],
    at: usize,
    class: u32,
    name: &str,
    db: usize,
    ctx: &Ctx,
) {
    if let Some(k) = args.get(at) {
        if s.contains_live(db, k, ctx.now_ms) {
            events.push(Ev {
                class,
                event: static_name(name),
                key: k.to_vec(),
                db,
            });
        }
    }
}

/// The `&'static str` of an event named after its command.
fn static_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "sinterstore",
        "sunionstore",
        "sdiffstore",
        "zunionstore",
        "zinterstore",
        "zdiffstore",
        "zrangestore",
        "geosearchstore",
        "georadiusstore",
        "sortstore",
        "zremrangebyscore",
        "zremrangebyrank",
        "zremrangebylex",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("unknown")
}

/// COPY's DB option, if any.
fn copy_db(args: &[&[u8]]) -> Option<usize> {
    let i = args.iter().position(|a| a.eq_ignore_ascii_case(b"db"))?;
    std::str::from_utf8(args.get(i + 1)?).ok()?.parse().ok()
}

/// The events of a RENAME/RENAMENX/COPY between two shards, in Redis's
/// order (the router runs those itself, outside [`after`]).
pub fn moved(name: &str, db: usize, dst_db: usize, src: &[u8], dst: &[u8]) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut push = |class, db, event, key: &[u8]| {
        if n::wanted(class) && db < keel_shards::DATABASES {
            out.push(KeyEvent {
                db,
                event,
                key: key.into(),
            });
        }
    };
    if name == "copy" {
        push(n::NEW, dst_db, "new", dst);
        push(n::GENERIC, dst_db, "copy_to", dst);
    } else {
        push(n::NEW, db, "new", dst);
        push(n::GENERIC, db, "rename_from", src);
        push(n::GENERIC, db, "rename_to", dst);
    }
    out
}
