//! Commands that run in the connection rather than on one shard: the
//! keyspace-wide ones (KEYS, SCAN, DBSIZE, FLUSHDB...), which visit every
//! executor, and the server ones (INFO, CONFIG, COMMAND, DEBUG, TIME).
//!
//! They live beside the connection loop because they act on it (its
//! database, protocol, subscriptions, transaction); the keyed handlers of
//! `crate::cmd` see only a shard and a [`Ctx`](crate::cmd::Ctx), never the
//! connection, so `cmd` does not depend on this layer.
//!
//! - [`connection`]: PING, HELLO, AUTH, SELECT, CLIENT...
//! - [`replication`]: REPLICAOF, ROLE, WAIT, REPLCONF, INFO replication.
//! - [`persistence`]: SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE, INFO persistence.

pub mod connection;
pub mod persistence;
pub mod replication;

use persistence::SnapshotKind;
use std::time::Duration;

use keel_shards::{glob, Digest, EvictionPolicy};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::{float_arg, int_arg};
use crate::config::parse_memory;
use crate::exec::command::{self, flags, Spec, COMMANDS};
use crate::resp::reply::Reply;
use crate::server::conn::{After, Conn};
use crate::server::info;

/// Runs a connection-kind command.
pub async fn run(
    conn: &mut Conn,
    spec: &'static Spec,
    a: &[&[u8]],
    now: u64,
) -> (CmdResult, After) {
    let r = match spec.name {
        "ping" => connection::ping(a),
        "echo" => Ok(Reply::bulk(a[1])),
        "hello" => connection::hello(conn, a),
        "auth" => connection::auth(conn, a),
        "select" => connection::select(conn, a),
        "quit" => return connection::quit(),
        "shutdown" => return persistence::shutdown(conn, a).await,
        "reset" => connection::reset(conn).await,
        "client" => connection::client(conn, a).await,
        "keys" => keys(conn, a, now).await,
        "scan" => scan(conn, a, now).await,
        "randomkey" => randomkey(conn, now).await,
        "dbsize" => dbsize(conn).await,
        "flushdb" | "flushall" => flush(conn, a, spec.name == "flushall").await,
        "command" => command_cmd(a),
        "info" => info::info(conn, a).await,
        "config" => config(conn, a).await,
        "time" => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            Ok(Reply::bulks([
                (us / 1_000_000).to_string(),
                (us % 1_000_000).to_string(),
            ]))
        }
        "debug" => debug(conn, a, now).await,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => {
            crate::script::eval(conn, spec.name, a, now).await
        }
        "script" => crate::script::script(conn, a),
        "fcall" | "fcall_ro" => crate::script::fcall(conn, spec.name, a, now).await,
        "function" => crate::script::function::function(conn, a).await,
        "multi" => crate::exec::multi::multi(conn),
        "exec" => crate::exec::multi::exec(conn, now).await,
        "discard" => crate::exec::multi::discard(conn).await,
        "watch" => crate::exec::multi::watch(conn, a).await,
        "unwatch" => crate::exec::multi::unwatch(conn).await,
        "publish" => crate::exec::pubsub::publish(conn, a).await,
        "pubsub" => crate::exec::pubsub::pubsub(conn, a).await,
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "bzpopmin" | "bzpopmax"
        | "bzmpop" => {
            // Only reached inside EXEC, where blocking commands never block.
            match crate::exec::blocking::start(conn, spec.name, a).await {
                crate::exec::blocking::Start::Done(r) => r,
                crate::exec::blocking::Start::Wait(_) => Ok(Reply::NilArray),
            }
        }
        "lastsave" => persistence::lastsave(conn).await,
        "replicaof" | "slaveof" => replication::replicaof(conn, a),
        "role" => replication::role(conn).await,
        "wait" => replication::wait(conn, a).await,
        "replconf" if a.len() >= 2 && is(a[1], "seqs") => replication::seqs(conn, a).await,
        "replconf" if a.len() >= 2 && is(a[1], "after") => replication::after(conn, a),
        "replconf" => replication::replconf(conn, a),
        "sentinel" => crate::cmd::sentinel::sentinel(&conn.state, a),
        "failover" => crate::cmd::failover::failover(&conn.state, a),
        "save" => persistence::snapshot(conn, SnapshotKind::Save, false).await,
        "bgsave" => persistence::snapshot(conn, SnapshotKind::Save, true).await,
        "bgrewriteaof" => persistence::snapshot(conn, SnapshotKind::Rewrite, true).await,
        _ => Err(CmdError::other(format!("unknown command '{}'", spec.name))),
    };
    (r, After::Continue)
}

async fn keys(conn: &Conn, a: &[&[u8]], now: u64) -> CmdResult {
    let (db, pattern) = (conn.db, a[1].to_vec());
    let parts = conn
        .router
        .broadcast(move |ls| {
            let mut out = Vec::new();
            for id in ls.ids() {
                ls.shard(id).for_each(db, now, |k, _| {
                    if glob::matches(&pattern, k) {
                        out.push(k.to_vec());
                    }
                });
            }
            out
        })
        .await?;
    Ok(Reply::bulks(parts.into_iter().flatten()))
}

/// SCAN's cursor names a shard and a position in it: `pos * shards + shard`.
async fn scan(conn: &Conn, a: &[&[u8]], now: u64) -> CmdResult {
    let cursor: u64 = std::str::from_utf8(a[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CmdError::other("invalid cursor"))?;
    let mut pattern: Option<Vec<u8>> = None;
    let mut count = 10usize;
    let mut type_filter: Option<String> = None;
    let mut i = 2;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        if is(a[i], "match") {
            pattern = Some(a[i + 1].to_vec());
        } else if is(a[i], "count") {
            let n = int_arg(a[i + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = n as usize;
        } else if is(a[i], "type") {
            type_filter = Some(String::from_utf8_lossy(a[i + 1]).to_lowercase());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let shards = conn.router.shards as u64;
    let (mut shard, mut pos) = ((cursor % shards) as usize, cursor / shards);
    let db = conn.db;
    let mut keys = Vec::new();
    // Visit shards until COUNT entries were looked at or every shard is done.
    loop {
        let (p, t, c) = (
            pattern.clone(),
            type_filter.clone(),
            count.saturating_sub(keys.len()).max(1),
        );
        let (next, found) = conn
            .router
            .on_shard(shard, conn.tx, move |s| {
                let mut found = Vec::new();
                let next = s.scan(db, pos, c, now, |k, e| {
                    let type_ok = t.as_deref().is_none_or(|t| e.value().type_name() == t);
                    let match_ok = p.as_deref().is_none_or(|p| glob::matches(p, k));
                    if type_ok && match_ok {
                        found.push(k.to_vec());
                    }
                });
                (next, found)
            })
            .await?;
        keys.extend(found);
        if next != 0 {
            pos = next;
            break;
        }
        shard += 1;
        pos = 0;
        if shard as u64 >= shards {
            return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::bulks(keys)]));
        }
        if keys.len() >= count {
            break;
        }
    }
    let next = pos * shards + shard as u64;
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::bulks(keys),
    ]))
}

async fn randomkey(conn: &Conn, now: u64) -> CmdResult {
    let db = conn.db;
    let sizes = conn
        .router
        .broadcast(move |ls| {
            ls.ids()
                .map(|id| (id, ls.shard(id).db_len(db)))
                .collect::<Vec<_>>()
        })
        .await?;
    let candidates: Vec<usize> = sizes
        .into_iter()
        .flatten()
        .filter(|&(_, n)| n > 0)
        .map(|(id, _)| id)
        .collect();
    if candidates.is_empty() {
        return Ok(Reply::Nil);
    }
    let start = (now as usize).wrapping_mul(2654435761) % candidates.len();
    for i in 0..candidates.len() {
        let shard = candidates[(start + i) % candidates.len()];
        if let Some(k) = conn
            .router
            .on_shard(shard, conn.tx, move |s| s.random_key(db, now))
            .await?
        {
            return Ok(Reply::Bulk(k));
        }
    }
    Ok(Reply::Nil)
}

async fn dbsize(conn: &Conn) -> CmdResult {
    let db = conn.db;
    let n = conn
        .router
        .broadcast(move |ls| ls.ids().map(|id| ls.shard(id).db_len(db)).sum::<usize>())
        .await?;
    Ok(Reply::Int(n.into_iter().sum::<usize>() as i64))
}

async fn flush(conn: &Conn, a: &[&[u8]], all: bool) -> CmdResult {
    match a.len() {
        1 => {}
        2 if is(a[1], "async") || is(a[1], "sync") => {}
        _ => return Err(CmdError::Syntax),
    }
    let db = conn.db;
    conn.router
        .broadcast(move |ls| {
            for id in ls.ids() {
                let mut s = ls.shard(id);
                if all {
                    for d in 0..keel_shards::DATABASES {
                        s.flush_db(d);
                    }
                } else {
                    s.flush_db(db);
                }
                drop(s);
                ls.kick_log(id);
            }
        })
        .await?;
    Ok(Reply::Ok)
}

/// One command's COMMAND INFO entry.
fn command_info(s: &Spec) -> Reply {
    let flag_names = flags::NAMES
        .iter()
        .filter(|(f, _)| s.has(*f))
        .map(|(_, n)| Reply::status(n))
        .collect();
    Reply::Array(vec![
        Reply::bulk(s.name),
        Reply::Int(s.arity as i64),
        Reply::Set(flag_names),
        Reply::Int(s.first_key as i64),
        Reply::Int(s.last_key as i64),
        Reply::Int(s.step as i64),
        Reply::Set(vec![Reply::Status(format!("@{}", s.group).into())]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn command_docs(s: &Spec) -> Reply {
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(s.summary)),
        (Reply::bulk("since"), Reply::bulk("1.0.0")),
        (Reply::bulk("group"), Reply::bulk(s.group)),
    ])
}

fn command_cmd(a: &[&[u8]]) -> CmdResult {
    if a.len() == 1 {
        return Ok(Reply::Array(COMMANDS.iter().map(command_info).collect()));
    }
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match sub.as_str() {
        "count" if a.len() == 2 => Ok(Reply::Int(COMMANDS.len() as i64)),
        "list" => Ok(Reply::bulks(COMMANDS.iter().map(|s| s.name))),
        "info" => Ok(Reply::Array(if a.len() == 2 {
            COMMANDS.iter().map(command_info).collect()
        } else {
            a[2..]
                .iter()
                .map(|n| command::lookup(n).map_or(Reply::NilArray, command_info))
                .collect()
        })),
        "docs" => Ok(Reply::Map(if a.len() == 2 {
            COMMANDS
                .iter()
                .map(|s| (Reply::bulk(s.name), command_docs(s)))
                .collect()
        } else {
            a[2..]
                .iter()
                .filter_map(|n| command::lookup(n))
                .map(|s| (Reply::bulk(s.name), command_docs(s)))
                .collect()
        })),
        "count" => Err(CmdError::Arity("command|count".into())),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "COMMAND".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}

/// The parameters CONFIG GET reports, with their current values.
fn config_params(conn: &Conn) -> Vec<(&'static str, String)> {
    let c = conn.state.config();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        ("bind", c.bind.clone()),
        (
            "port",
            conn.state
                .port
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
        ("shards", conn.state.shards.to_string()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("maxmemory", c.maxmemory.to_string()),
        ("maxmemory-policy", c.maxmemory_policy.name().to_string()),
        ("maxmemory-samples", "5".into()),
        ("dir", c.dir.display().to_string()),
        ("appendonly", yes_no(c.appendonly)),
        ("appendfsync", c.appendfsync.clone()),
        (
            "auto-aof-rewrite-percentage",
            c.auto_aof_rewrite_percentage.to_string(),
        ),
        (
            "auto-aof-rewrite-min-size",
            c.auto_aof_rewrite_min_size.to_string(),
        ),
        ("proto-max-bulk-len", c.proto_max_bulk_len.to_string()),
        ("max-multibulk-len", c.max_multibulk_len.to_string()),
        (
            "cross-core-queue-depth",
            c.cross_core_queue_depth.to_string(),
        ),
        (
            "client-query-buffer-limit",
            c.client_query_buffer_limit.to_string(),
        ),
        ("maxclients", c.maxclients.to_string()),
        ("read-max-lag", c.read_max_lag.to_string()),
        ("busy-reply-threshold", c.busy_reply_threshold.to_string()),
        ("lua-time-limit", c.busy_reply_threshold.to_string()),
        ("lua-memory-limit", c.lua_memory_limit.to_string()),
        ("loglevel", c.loglevel.clone()),
        ("databases", keel_shards::DATABASES.to_string()),
        ("save", String::new()),
        ("timeout", "0".into()),
        ("hz", "10".into()),
    ]
}

async fn config(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match sub.as_str() {
        "get" if a.len() >= 3 => {
            let params = config_params(conn);
            let mut out = Vec::new();
            for (name, value) in params {
                if a[2..]
                    .iter()
                    .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                {
                    out.push((Reply::bulk(name), Reply::bulk(value)));
                }
            }
            Ok(Reply::Map(out))
        }
        "set" if a.len() >= 4 && a.len().is_multiple_of(2) => {
            for pair in a[2..].chunks(2) {
                config_set(conn, pair[0], pair[1]).await?;
            }
            Ok(Reply::Ok)
        }
        "resetstat" if a.len() == 2 => {
            conn.router
                .broadcast(|ls| *ls.stats.borrow_mut() = Default::default())
                .await?;
            Ok(Reply::Ok)
        }
        "get" | "set" | "resetstat" => Err(CmdError::Arity(format!("config|{sub}"))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CONFIG".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}

async fn config_set(conn: &Conn, name: &[u8], value: &[u8]) -> Result<(), CmdError> {
    let name = String::from_utf8_lossy(name).to_lowercase();
    let text = String::from_utf8_lossy(value).into_owned();
    let failed = |why: &str| {
        CmdError::other(format!(
            "CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let memory = || parse_memory(&text).ok_or_else(|| failed("argument must be a memory value"));
    match name.as_str() {
        "maxmemory" => {
            let v = memory()?;
            conn.state.update_config(|c| c.maxmemory = v);
        }
        "maxmemory-policy" => {
            let p = EvictionPolicy::parse(&text).ok_or_else(|| failed("argument(s) must be one of the following: volatile-lru, allkeys-lru, volatile-random, allkeys-random, volatile-ttl, noeviction"))?;
            conn.state.update_config(|c| c.maxmemory_policy = p);
        }
        "requirepass" => conn
            .state
            .update_config(|c| c.requirepass = Some(text.clone()).filter(|p| !p.is_empty())),
        "appendfsync" if ["always", "everysec", "no"].contains(&text.as_str()) => {
            conn.state.update_config(|c| c.appendfsync = text.clone());
            let always = conn.state.config().appendonly && text == "always";
            conn.state
                .fsync_always
                .store(always, std::sync::atomic::Ordering::SeqCst);
        }
        "auto-aof-rewrite-min-size" => {
            let v = memory()?;
            conn.state
                .update_config(|c| c.auto_aof_rewrite_min_size = v);
        }
        "auto-aof-rewrite-percentage" => {
            let v: u64 = text.parse().map_err(|_| CmdError::Syntax)?;
            conn.state
                .update_config(|c| c.auto_aof_rewrite_percentage = v);
        }
        "proto-max-bulk-len" => {
            let v = memory()?;
            conn.state.update_config(|c| c.proto_max_bulk_len = v);
        }
        "client-query-buffer-limit" => {
            let v = memory()?;
            conn.state
                .update_config(|c| c.client_query_buffer_limit = v);
        }
        "read-max-lag" => {
            let v = text
                .parse()
                .map_err(|_| failed("argument couldn't be parsed into an integer"))?;
            conn.state.update_config(|c| c.read_max_lag = v);
        }
        "busy-reply-threshold" | "lua-time-limit" => {
            let v: u64 = text
                .parse()
                .map_err(|_| failed("argument couldn't be parsed into an integer"))?;
            conn.state.update_config(|c| c.busy_reply_threshold = v);
            conn.state
                .scripts
                .busy_threshold_ms
                .store(v, std::sync::atomic::Ordering::Relaxed);
        }
        "lua-memory-limit" => {
            let v = memory()?;
            conn.state.update_config(|c| c.lua_memory_limit = v);
            conn.state
                .scripts
                .memory_limit
                .store(v, std::sync::atomic::Ordering::Relaxed);
        }
        "maxclients" => {
            let v = text
                .parse()
                .map_err(|_| failed("argument couldn't be parsed into an integer"))?;
            conn.state.update_config(|c| c.maxclients = v);
        }
        "loglevel" if ["debug", "verbose", "notice", "warning"].contains(&text.as_str()) => {
            conn.state.update_config(|c| c.loglevel = text.clone())
        }
        "save" | "hz" | "timeout" | "maxmemory-samples" => {}
        "appendfsync" | "loglevel" => {
            return Err(failed("argument(s) must be one of the allowed values"))
        }
        "port"
        | "bind"
        | "dir"
        | "shards"
        | "appendonly"
        | "databases"
        | "max-multibulk-len"
        | "cross-core-queue-depth" => return Err(failed("can't set immutable config")),
        _ => {
            return Err(CmdError::other(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            )))
        }
    }
    apply_memory_limits(conn).await
}

/// Pushes the current memory limit and policy to every shard.
pub async fn apply_memory_limits(conn: &Conn) -> Result<(), CmdError> {
    let (limit, policy) = conn.state.shard_memory_limit();
    conn.router
        .broadcast(move |ls| {
            for id in ls.ids() {
                ls.shard(id).set_memory_limit(limit, policy);
            }
        })
        .await?;
    Ok(())
}

async fn debug(conn: &Conn, a: &[&[u8]], now: u64) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match (sub.as_str(), a.len()) {
        ("sleep", 3) => {
            let secs = float_arg(a[2])?;
            if secs > 0.0 {
                crate::runtime::sleep(Duration::from_secs_f64(secs.min(3600.0))).await;
            }
            Ok(Reply::Ok)
        }
        ("digest", 2) => {
            let parts = conn
                .router
                .broadcast(move |ls| {
                    let mut d = Digest::default();
                    for id in ls.ids() {
                        d.combine(ls.shard(id).digest(now));
                    }
                    d
                })
                .await?;
            let mut d = Digest::default();
            for p in parts {
                d.combine(p);
            }
            Ok(Reply::Status(d.to_hex().into()))
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "DEBUG".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}
