//! MULTI / EXEC / DISCARD / WATCH / UNWATCH.
//!
//! # Rules
//! - Between MULTI and EXEC, commands are checked (name, arity, auth) and
//!   queued; a command that fails those checks makes EXEC answer EXECABORT.
//!   Errors while running (WRONGTYPE...) do not abort: they are replies.
//! - EXEC locks every shard the queued commands touch, plus the shards of
//!   watched keys, in the global lock order of `local.rs`; then checks the
//!   watched keys' versions; then runs the queue in order; then unlocks. No
//!   other client observes the transaction half done, whichever shards it
//!   spans. A queue that touches only this executor's shards locks locally
//!   and runs without leaving the core; a single local shard costs no
//!   message at all.
//! - Commands that see the whole keyspace (KEYS, SCAN, DBSIZE, FLUSHDB...)
//!   make EXEC lock every shard.
//! - WATCH registers the key on its shard, which bumps the key's version on
//!   every change (writes, expiry, eviction, FLUSHDB). A changed version at
//!   EXEC means EXEC answers a null array and runs nothing.

use crate::cmd::error::{CmdError, CmdResult};
use crate::exec::command::{Kind, Spec};
use crate::resp::reply::Reply;
use crate::server::commands as server;
use crate::server::conn::Conn;

/// A command waiting for EXEC.
pub struct Queued {
    pub spec: &'static Spec,
    pub args: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct MultiState {
    pub queued: Vec<Queued>,
    /// A command failed to queue: EXEC must abort.
    pub aborted: bool,
}

/// A key this connection WATCHes, with its version when watched.
pub struct Watch {
    pub shard: usize,
    pub db: usize,
    pub key: Vec<u8>,
    pub version: u64,
}

/// Connection-kind commands that only touch the connection itself: they need
/// no shard locks inside EXEC.
const CONNECTION_ONLY: &[&str] = &[
    "ping", "echo", "select", "time", "client", "command", "config", "hello", "auth", "lastsave",
    "unwatch", "acl",
];

pub fn multi(conn: &mut Conn) -> CmdResult {
    if conn.multi.is_some() {
        return Err(CmdError::other("MULTI calls can not be nested"));
    }
    conn.multi = Some(MultiState::default());
    Ok(Reply::Ok)
}

pub async fn discard(conn: &mut Conn) -> CmdResult {
    if conn.multi.take().is_none() {
        return Err(CmdError::other("DISCARD without MULTI"));
    }
    unwatch_all(conn).await;
    Ok(Reply::Ok)
}

pub async fn watch(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    if conn.multi.is_some() {
        return Err(CmdError::other("WATCH inside MULTI is not allowed"));
    }
    let db = conn.db;
    for key in &a[1..] {
        let shard = conn.router.shard_of(key);
        let k = key.to_vec();
        let version = conn
            .router
            .on_shard(shard, None, move |s| s.watch(db, &k))
            .await?;
        conn.watches.push(Watch {
            shard,
            db,
            key: key.to_vec(),
            version,
        });
    }
    Ok(Reply::Ok)
}

pub async fn unwatch(conn: &mut Conn) -> CmdResult {
    unwatch_all(conn).await;
    Ok(Reply::Ok)
}

/// Forgets every watched key (after EXEC, DISCARD, UNWATCH, RESET, close).
pub async fn unwatch_all(conn: &mut Conn) {
    let tx = conn.tx;
    for w in std::mem::take(&mut conn.watches) {
        let _ = conn
            .router
            .on_shard(w.shard, tx, move |s| s.unwatch(w.db, &w.key))
            .await;
    }
}

pub async fn exec(conn: &mut Conn, now: u64) -> CmdResult {
    let Some(state) = conn.multi.take() else {
        return Err(CmdError::other("EXEC without MULTI"));
    };
    if state.aborted {
        unwatch_all(conn).await;
        return Err(CmdError::Raw(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
    }
    let router = conn.router.clone();
    let mut shards: Vec<usize> = conn.watches.iter().map(|w| w.shard).collect();
    for q in &state.queued {
        let args: Vec<&[u8]> = q.args.iter().map(|a| &a[..]).collect();
        match q.spec.kind {
            Kind::Keyed(..) => shards.extend(router.shards_of(q.spec, &args)),
            Kind::Conn if CONNECTION_ONLY.contains(&q.spec.name) => {}
            Kind::Conn => shards.extend(0..router.shards),
        }
    }
    shards.sort_unstable();
    shards.dedup();
    let tx = router.new_tx();
    router.begin(tx, &shards).await?;
    conn.tx = Some(tx);
    let result = run_locked(conn, state, now).await;
    conn.tx = None;
    router.end(tx, &shards);
    unwatch_all(conn).await;
    result
}

async fn run_locked(conn: &mut Conn, state: MultiState, now: u64) -> CmdResult {
    let tx = conn.tx;
    for w in &conn.watches {
        let (db, key, saved) = (w.db, w.key.clone(), w.version);
        let version = conn
            .router
            .on_shard(w.shard, tx, move |s| s.watched_version(db, &key, now))
            .await?;
        if version != saved {
            return Ok(Reply::NilArray);
        }
    }
    let mut replies = Vec::with_capacity(state.queued.len());
    for q in state.queued {
        let args: Vec<&[u8]> = q.args.iter().map(|a| &a[..]).collect();
        // The user's permissions may have changed since it was queued.
        if let Some(e) = crate::security::acl::paths::recheck_at_exec(conn, q.spec, &args) {
            replies.push(Reply::Error(e.to_string().into()));
            continue;
        }
        let started = std::time::Instant::now();
        let memory = if q.spec.name == "memory" {
            // MEMORY STATS, DOCTOR...: server-wide, not on a key's shard.
            crate::server::introspect::memory::memory(conn, &args).await
        } else {
            None
        };
        let r = match (memory, q.spec.kind) {
            (Some(r), _) => r,
            (None, Kind::Keyed(f, split)) => {
                let ctx = conn.ctx(now);
                conn.router.run(q.spec, f, split, ctx, &args, tx).await
            }
            (None, Kind::Conn) => Box::pin(server::run(conn, q.spec, &args, now)).await.0,
        };
        // Each command of the transaction counts in INFO commandstats and
        // errorstats, as in Redis.
        if let Err(e) = &r {
            let text = format!("-{e}");
            conn.router
                .local
                .stats
                .borrow_mut()
                .note_error(text.as_bytes());
        }
        conn.count(q.spec, started, r.is_err());
        replies.push(r.unwrap_or_else(|e| Reply::Error(e.to_string().into())));
    }
    Ok(Reply::Array(replies))
}
