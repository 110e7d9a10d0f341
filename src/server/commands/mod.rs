//! Commands that run in the connection rather than on one shard: the
//! keyspace-wide ones (KEYS, SCAN, DBSIZE, FLUSHDB...), which visit every
//! executor, and the server ones (INFO, CONFIG, COMMAND, DEBUG, TIME).
//!
//! They live beside the connection loop because they act on it (its
//! database, protocol, subscriptions, transaction); the keyed handlers of
//! `crate::cmd` see only a shard and a [`Ctx`](crate::cmd::Ctx), never the
//! connection, so `cmd` does not depend on this layer.
//!
//! - [`command_info`]: COMMAND and its subcommands.
//! - [`connection`]: PING, HELLO, AUTH, SELECT, CLIENT...
//! - [`replication`]: REPLICAOF, ROLE, WAIT, REPLCONF, INFO replication.
//! - [`persistence`]: SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE, INFO persistence.

pub mod acl;
pub mod command_info;
pub mod connection;
pub mod persistence;
pub mod replication;

use persistence::SnapshotKind;
use std::time::Duration;

use keel_shards::{glob, Digest, EvictionPolicy};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::{float_arg, int_arg};
use crate::config::{Config, Consistency};
use crate::exec::command::Spec;
use crate::resp::reply::Reply;
use crate::server::config_table::{self, Param};
use crate::server::conn::{After, Conn};
use crate::server::info;
use crate::server::state::ServerState;

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
        "acl" => acl::acl(conn, a).await,
        "keys" => keys(conn, a, now).await,
        "scan" => scan(conn, a, now).await,
        "randomkey" => randomkey(conn, now).await,
        "dbsize" => dbsize(conn).await,
        "flushdb" | "flushall" => flush(conn, a, spec.name == "flushall").await,
        "command" => command_info::command(a),
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
        // introspection (server::introspect)
        "slowlog" => crate::server::introspect::slowlog::slowlog(conn, a).await,
        "latency" => crate::server::introspect::latency::latency(conn, a).await,
        "monitor" => crate::server::introspect::monitor_cmd(conn),
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
        "publish" | "spublish" => crate::exec::pubsub::publish(conn, a).await,
        "pubsub" => crate::exec::pubsub::pubsub(conn, a).await,
        "lolwut" => lolwut(a),
        "pfselftest" => keel_shards::hll::debug::self_test()
            .map(|()| Reply::Ok)
            .map_err(CmdError::Raw),
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
        "replconf" if a.len() == 2 && is(a[1], "shard-relay") => {
            crate::exec::pubsub::relay_shard_messages(conn);
            Ok(Reply::Ok)
        }
        "replconf" => replication::replconf(conn, a),
        // Only reached inside EXEC (a subscription outside one is taken by
        // the connection loop); Redis refuses a shard subscription there.
        "ssubscribe" => Err(CmdError::other(
            "SSUBSCRIBE isn't allowed for a DENY BLOCKING client",
        )),
        "sentinel" => crate::cmd::sentinel::sentinel(&conn.state, a),
        "failover" => crate::cmd::failover::failover(&conn.state, a),
        "keel" => crate::cmd::membership::keel(&conn.state, a),
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
                // Blocked readers of a stream that is gone get their error.
                crate::exec::blocking::serve(ls, id);
                ls.kick_log(id);
            }
        })
        .await?;
    crate::server::tracking::flushed(conn, all).await?;
    Ok(Reply::Ok)
}

/// The values CONFIG SET kept for parameters keel does not apply, by name.
type Stored = std::collections::HashMap<&'static str, String>;

fn stored(state: &ServerState) -> std::sync::MutexGuard<'_, Stored> {
    match state.config_stored.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A parameter's value as CONFIG GET prints it: keel's own for the ones it
/// applies, else as last set (or its default).
fn config_value(state: &ServerState, c: &Config, stored: &Stored, p: &'static Param) -> String {
    if p.has(config_table::APPLIED) {
        if let Some(v) = applied_value(state, c, stored, p) {
            return v;
        }
    }
    stored
        .get(p.name)
        .cloned()
        .unwrap_or_else(|| p.default.to_string())
}

/// The value of a parameter that lives in keel's configuration or state.
fn applied_value(state: &ServerState, c: &Config, stored: &Stored, p: &Param) -> Option<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    Some(match p.name {
        "bind" => c.bind.clone(),
        "port" => state
            .port
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string(),
        "databases" => keel_shards::DATABASES.to_string(),
        "dir" => c.dir.display().to_string(),
        "replicaof" => state
            .repl
            .master()
            .map(|(host, port)| format!("{host} {port}"))
            .unwrap_or_default(),
        "masterauth" => c.masterauth.clone().unwrap_or_default(),
        "requirepass" => c.requirepass.clone().unwrap_or_default(),
        "aclfile" => c
            .aclfile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        "repl-timeout" => c.repl_timeout.to_string(),
        "repl-backlog-size" => c.repl_backlog_size.to_string(),
        "maxclients" => c.maxclients.to_string(),
        "client-query-buffer-limit" => c.client_query_buffer_limit.to_string(),
        "proto-max-bulk-len" => c.proto_max_bulk_len.to_string(),
        "loglevel" => c.loglevel.clone(),
        "maxmemory" => c.maxmemory.to_string(),
        // An LFU policy runs as its LRU sibling but reads back as set.
        "maxmemory-policy" => match stored.get(p.name) {
            Some(word) if eviction_policy(word) == Some(c.maxmemory_policy) => word.clone(),
            _ => c.maxmemory_policy.name().to_string(),
        },
        "appendonly" => yes_no(c.appendonly),
        "appendfsync" => c.appendfsync.clone(),
        "auto-aof-rewrite-percentage" => c.auto_aof_rewrite_percentage.to_string(),
        "auto-aof-rewrite-min-size" => c.auto_aof_rewrite_min_size.to_string(),
        "busy-reply-threshold" => c.busy_reply_threshold.to_string(),
        "shards" => state.shards.to_string(),
        "max-multibulk-len" => c.max_multibulk_len.to_string(),
        "cross-core-queue-depth" => c.cross_core_queue_depth.to_string(),
        "read-max-lag" => c.read_max_lag.to_string(),
        "sync-backup" => c.sync_backup.clone().unwrap_or_default(),
        "lua-memory-limit" => c.lua_memory_limit.to_string(),
        name if name.starts_with("tls-") => tls_value(&c.tls, name)?,
        _ => return None,
    })
}

/// CONFIG GET of a TLS parameter keel applies (None: kept as set).
fn tls_value(t: &crate::security::tls::TlsSettings, name: &str) -> Option<String> {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    Some(match name {
        "tls-port" => t.port.to_string(),
        "tls-cert-file" => path(&t.cert_file),
        "tls-key-file" => path(&t.key_file),
        "tls-client-cert-file" => path(&t.client_cert_file),
        "tls-client-key-file" => path(&t.client_key_file),
        "tls-ca-cert-file" => path(&t.ca_cert_file),
        "tls-ca-cert-dir" => path(&t.ca_cert_dir),
        "tls-auth-clients" => t.auth_clients.name().to_string(),
        "tls-replication" => yes(t.replication),
        "tls-protocols" => t.protocols.clone(),
        "tls-ciphers" | "tls-ciphersuites" => t.ciphersuites.clone(),
        "tls-prefer-server-ciphers" => yes(t.prefer_server_ciphers),
        "tls-session-caching" => yes(t.session_caching),
        "tls-session-cache-size" => t.session_cache_size.to_string(),
        _ => return None,
    })
}

/// One checked CONFIG SET value into TLS settings.
fn set_tls(t: &mut crate::security::tls::TlsSettings, name: &str, v: &str) {
    let path = || Some(std::path::PathBuf::from(v)).filter(|_| !v.is_empty());
    match name {
        "tls-cert-file" => t.cert_file = path(),
        "tls-key-file" => t.key_file = path(),
        "tls-client-cert-file" => t.client_cert_file = path(),
        "tls-client-key-file" => t.client_key_file = path(),
        "tls-ca-cert-file" => t.ca_cert_file = path(),
        "tls-ca-cert-dir" => t.ca_cert_dir = path(),
        "tls-auth-clients" => {
            if let Some(a) = crate::security::tls::AuthClients::parse(v) {
                t.auth_clients = a;
            }
        }
        "tls-protocols" => t.protocols = v.to_string(),
        "tls-ciphers" | "tls-ciphersuites" => t.ciphersuites = v.to_string(),
        "tls-prefer-server-ciphers" => t.prefer_server_ciphers = v == "yes",
        "tls-session-caching" => t.session_caching = v == "yes",
        "tls-session-cache-size" => t.session_cache_size = v.parse().unwrap_or(20480),
        _ => {}
    }
}

/// keel's eviction policy for a `maxmemory-policy` word. keel has no LFU
/// counters: the LFU policies evict by recency, as their LRU siblings do.
fn eviction_policy(word: &str) -> Option<EvictionPolicy> {
    EvictionPolicy::parse(&word.replace("-lfu", "-lru"))
}

/// Makes one checked, canonical CONFIG SET value take effect: in keel's
/// configuration (and the atomics its hot paths read) for the parameters
/// it applies, else kept for CONFIG GET.
fn apply(state: &ServerState, stored: &mut Stored, p: &'static Param, v: &str) {
    // Canonical numbers of applied parameters are never negative.
    let n = v.parse::<u64>().unwrap_or(0);
    let text = || Some(v.to_string()).filter(|s| !s.is_empty());
    match p.name {
        "maxmemory" => state.update_config(|c| c.maxmemory = n),
        "maxmemory-policy" => {
            if let Some(policy) = eviction_policy(v) {
                state.update_config(|c| c.maxmemory_policy = policy);
            }
            if v.ends_with("-lfu") {
                stored.insert(p.name, v.to_string());
            } else {
                stored.remove(p.name);
            }
        }
        "requirepass" => {
            state.update_config(|c| c.requirepass = text());
            // The default user's password, as in Redis.
            state.acl.set_default_password(text().as_deref());
        }
        "masterauth" => state.update_config(|c| c.masterauth = text()),
        "appendfsync" => {
            state.update_config(|c| c.appendfsync = v.to_string());
            // As at start: strong consistency acknowledges only what the log
            // made durable, whatever the fsync policy.
            let c = state.config();
            let always = c.appendonly && (v == "always" || c.consistency == Consistency::Strong);
            state
                .fsync_always
                .store(always, std::sync::atomic::Ordering::SeqCst);
        }
        "auto-aof-rewrite-percentage" => state.update_config(|c| c.auto_aof_rewrite_percentage = n),
        "auto-aof-rewrite-min-size" => state.update_config(|c| c.auto_aof_rewrite_min_size = n),
        "proto-max-bulk-len" => state.update_config(|c| c.proto_max_bulk_len = n),
        "client-query-buffer-limit" => state.update_config(|c| c.client_query_buffer_limit = n),
        "maxclients" => state.update_config(|c| c.maxclients = n),
        "loglevel" => state.update_config(|c| c.loglevel = v.to_string()),
        "repl-timeout" => state.update_config(|c| c.repl_timeout = n),
        // Each shard's backlog takes the new cap after the CONFIG SET (see
        // `apply_backlog_size`); backlogs made later read it here.
        "repl-backlog-size" => state.update_config(|c| c.repl_backlog_size = n),
        "read-max-lag" => state.update_config(|c| c.read_max_lag = n),
        "sync-backup" => state.update_config(|c| c.sync_backup = text()),
        "busy-reply-threshold" => {
            state.update_config(|c| c.busy_reply_threshold = n);
            state
                .scripts
                .busy_threshold_ms
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        "lua-memory-limit" => {
            state.update_config(|c| c.lua_memory_limit = n);
            state
                .scripts
                .memory_limit
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        _ => {
            crate::server::introspect::config_changed(p.name, v);
            if p.name == "tracking-table-max-keys" {
                keel_shards::tracking::set_max_keys(usize::try_from(n).unwrap_or(usize::MAX));
            }
            if p.name == "acllog-max-len" {
                state
                    .acl
                    .set_log_max(usize::try_from(n).unwrap_or(usize::MAX));
            }
            if p.name == "hll-sparse-max-bytes" {
                config_table::set_hll_sparse_max_bytes(usize::try_from(n).unwrap_or(usize::MAX));
            }
            stored.insert(p.name, v.to_string());
            apply_packing(stored, p.name);
        }
    }
}

/// The listpack thresholds, once one of a pair changes: keel packs small
/// hashes and sorted sets as Redis does, from the next write to a
/// collection; entries stop at 255 (`keel_shards::packed::ENTRIES_CEILING`).
/// Until a CONFIG SET, keel keeps its own defaults (128 entries, 64 bytes).
fn apply_packing(stored: &Stored, name: &str) {
    use keel_shards::packed::{limits, MAX_ENTRIES, MAX_VALUE};
    // A threshold never set keeps keel's default, not Redis's.
    let value = |name: &str, keel_default: usize| {
        stored
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(keel_default as u64)
    };
    match name {
        "hash-max-listpack-entries" | "hash-max-listpack-value" => limits::set_hash(
            value("hash-max-listpack-entries", MAX_ENTRIES),
            value("hash-max-listpack-value", MAX_VALUE),
        ),
        "zset-max-listpack-entries" | "zset-max-listpack-value" => limits::set_zset(
            value("zset-max-listpack-entries", MAX_ENTRIES),
            value("zset-max-listpack-value", MAX_VALUE),
        ),
        "stream-node-max-entries" | "stream-node-max-bytes" => {
            use keel_shards::stream::{BLOCK_BYTES, BLOCK_ENTRIES};
            keel_shards::stream::limits::set(
                value("stream-node-max-entries", BLOCK_ENTRIES as usize),
                value("stream-node-max-bytes", BLOCK_BYTES),
            )
        }
        _ => {}
    }
}

async fn config(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match sub.as_str() {
        "get" if a.len() >= 3 => {
            let c = conn.state.config();
            let stored = stored(&conn.state);
            let out = config_table::select(&a[2..])
                .into_iter()
                .map(|(name, e)| {
                    let value = config_value(&conn.state, &c, &stored, e.param);
                    (Reply::bulk(name), Reply::bulk(value))
                })
                .collect();
            Ok(Reply::Map(out))
        }
        "set" if a.len() >= 4 && !a.len().is_multiple_of(2) => Err(CmdError::Syntax),
        "set" if a.len() >= 4 => {
            config_set(conn, &a[2..])?;
            apply_memory_limits(conn).await?;
            // Parameters whose new value the executors must take now.
            let named = |name: &[u8]| {
                a[2..]
                    .iter()
                    .step_by(2)
                    .any(|p| p.eq_ignore_ascii_case(name))
            };
            if named(b"repl-backlog-size") {
                let cap = conn.state.config().repl_backlog_size as usize;
                conn.router
                    .broadcast(move |ls| {
                        for r in ls.repl.borrow_mut().iter_mut() {
                            r.backlog.set_cap(cap);
                        }
                    })
                    .await?;
            }
            if named(b"tracking-table-max-keys") {
                // A lowered limit lets keys go now, with their invalidations.
                conn.router
                    .broadcast(|ls| {
                        for id in ls.ids() {
                            if ls.shard(id).tracking.trim() {
                                ls.kick_log(id);
                            }
                        }
                    })
                    .await?;
            }
            Ok(Reply::Ok)
        }
        "resetstat" if a.len() == 2 => {
            conn.router
                .broadcast(|ls| *ls.stats.borrow_mut() = Default::default())
                .await?;
            Ok(Reply::Ok)
        }
        "rewrite" if a.len() == 2 => config_rewrite(&conn.state),
        "help" if a.len() == 2 => Ok(Reply::Array(Vec::from(
            [
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern> [<pattern> ...]",
                "    The parameters matching the glob patterns, with their values.",
                "SET <parameter> <value> [<parameter> <value> ...]",
                "    Sets parameters, all or none (every value is checked first).",
                "RESETSTAT",
                "    Zeroes the counters INFO reports.",
                "REWRITE",
                "    Saves what CONFIG SET changed into the configuration file.",
                "HELP",
                "    Prints this help.",
            ]
            .map(Reply::status),
        ))),
        "get" | "set" | "resetstat" | "rewrite" | "help" => {
            Err(CmdError::Arity(format!("config|{sub}")))
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CONFIG".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}

/// CONFIG SET's name/value pairs, all checked before any takes effect (see
/// [`config_table::plan_set`]).
fn config_set(conn: &Conn, args: &[&[u8]]) -> Result<(), CmdError> {
    let pairs: Vec<(&[u8], &[u8])> = args.chunks(2).map(|p| (p[0], p[1])).collect();
    set_params(&conn.state, &pairs).map_err(CmdError::other)
}

/// Checks every pair, then applies them all (or none), noting them for
/// CONFIG REWRITE.
fn set_params(state: &ServerState, pairs: &[(&[u8], &[u8])]) -> Result<(), String> {
    let c = state.config();
    let mut stored = stored(state);
    let changes = config_table::plan_set(pairs, &|p| config_value(state, &c, &stored, p))
        .map_err(|e| e.to_string())?;
    let mut changed = match state.config_changed.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    // TLS settings change together, and only if the new certificates load.
    if changes
        .iter()
        .any(|ch| tls_value(&c.tls, ch.entry.param.name).is_some())
    {
        let mut t = c.tls.clone();
        for ch in &changes {
            set_tls(&mut t, ch.entry.param.name, &ch.value);
        }
        if let Some(tls) = state.tls.as_ref().filter(|_| t.wanted()) {
            if let Err(e) = tls.reload(&t) {
                let name = changes
                    .iter()
                    .map(|ch| ch.entry.param.name)
                    .find(|n| n.starts_with("tls-"))
                    .unwrap_or("tls");
                tracing::warn!("CONFIG SET {name}: the TLS configuration stays as it was: {e}");
                return Err(config_table::SetError::Failed {
                    name: name.into(),
                    why: format!("Unable to update TLS configuration: {e}"),
                }
                .to_string());
            }
            tracing::info!("TLS configuration reloaded");
        }
        state.update_config(|c| c.tls = t.clone());
    }
    // A new sync backup must be connected, or strong writes would wait.
    if let Some(ch) = changes
        .iter()
        .find(|ch| ch.entry.param.name == "sync-backup")
    {
        let id = Some(ch.value.as_str()).filter(|v| !v.is_empty());
        if let Err(why) = state.repl.set_sync_backup(id, &c.node_id) {
            return Err(config_table::SetError::Failed {
                name: "sync-backup".into(),
                why,
            }
            .to_string());
        }
    }
    for change in changes {
        apply(state, &mut stored, change.entry.param, &change.value);
        changed.insert(change.entry.param.name);
    }
    // notify-keyspace-events takes effect from the letters given, not the
    // canonical form CONFIG GET shows: Redis prints `KEAn` as `AKE` yet
    // keeps reporting new keys.
    for (name, value) in pairs {
        if name.eq_ignore_ascii_case(b"notify-keyspace-events") {
            keel_shards::notify::set_flags(keel_shards::notify::parse(value).unwrap_or(0));
        }
    }
    Ok(())
}

/// Applies at start what an earlier CONFIG REWRITE saved (the `[redis]`
/// table of the configuration file), as one CONFIG SET would.
pub fn apply_saved(state: &ServerState, saved: &[(String, String)]) -> Result<(), String> {
    if saved.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(&[u8], &[u8])> = saved
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    set_params(state, &pairs)
        .map_err(|e| format!("the configuration file's [redis] table: {e}"))?;
    // Saved values are the file's own now, not changes to save again.
    if let Ok(mut changed) = state.config_changed.lock() {
        changed.clear();
    }
    Ok(())
}

/// CONFIG REWRITE: saves what CONFIG SET changed into the configuration
/// file keel started from (see `server::config_rewrite`).
fn config_rewrite(state: &ServerState) -> CmdResult {
    let Some(path) = state.config().config_file else {
        return Err(CmdError::other(
            "The server is running without a config file",
        ));
    };
    let c = state.config();
    let names: Vec<&'static str> = match state.config_changed.lock() {
        Ok(c) => c.iter().copied().collect(),
        Err(poisoned) => poisoned.into_inner().iter().copied().collect(),
    };
    let stored = stored(state);
    let values: Vec<(&'static str, String)> = names
        .into_iter()
        .filter_map(|name| config_table::lookup(name.as_bytes()))
        .map(|e| (e.param.name, config_value(state, &c, &stored, e.param)))
        .collect();
    drop(stored);
    crate::server::config_rewrite::rewrite(&path, &values)
        .map_err(|e| CmdError::other(format!("Rewriting config file: {e}")))?;
    Ok(Reply::Ok)
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

/// LOLWUT [VERSION v]: a drawing and the version, as a verbatim string.
/// keel's drawing is its own: a hull riding waves whose length the
/// (optional) version picks.
fn lolwut(a: &[&[u8]]) -> CmdResult {
    // Like Redis, anything but `VERSION v` is ignored.
    let waves = match a {
        [_, v, n, ..] if is(v, "version") => int_arg(n)?.clamp(1, 20) as usize,
        _ => 7,
    };
    let sea = "~".repeat(waves);
    let art = format!(
        "       |\\\n       | \\\n       |  \\\n  _____|___\\____\n  \\   k e e l   /\n{sea}\\___________/{sea}\n\nkeel ver. {} (Redis {})\n",
        env!("CARGO_PKG_VERSION"),
        crate::REDIS_VERSION
    );
    Ok(Reply::Verbatim(art))
}
