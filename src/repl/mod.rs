//! Replication: shard *i* of the primary streams its write records to shard
//! *i* of every backup over a connection of its own, core to core.
//!
//! - [`primary`]: a listener per shard on its own core; the handshake that
//!   chooses partial resync (the backlog still holds the backup's next
//!   record of the same history) or full sync (a point-in-time snapshot,
//!   then the stream from its seq); the sender and the ack reader.
//! - [`backup`]: a follower task per shard: asks the primary's client port
//!   for its replication ports (`REPLCONF PEER`), presents its history,
//!   term and seq, loads a snapshot or continues, applies and acks.
//! - [`barrier`]: cross-shard transactions applied whole on a backup.
//! - [`shard`]: one shard's state on its core (history, backlog, links,
//!   strong-mode waiters) and the backpressure curve.
//! - [`shared`]: what crosses cores: REPLICAOF's target, counters, delays.
//! - [`wire`]: the messages; [`link`]: their frames (length, crc32, lz4 on
//!   cross-zone links); [`backlog`]: a shard's recent records.
//!
//! The records are the ones the journal produces for the log (one format,
//! `keel_shards::record`): the log task hands each batch to the backlog too.
//! A backup applies them with replay (`persist::replay`) and keeps the same
//! bytes in its own journal, so its log and backlog equal its primary's.
pub mod backlog;
pub mod backup;
pub mod barrier;
pub mod link;
pub mod merge;
pub mod primary;
pub mod shard;
pub mod shared;
pub mod wire;

use std::time::Duration;

use crate::exec::command::{Kind, Spec};
use crate::server::conn::Conn;

/// Delays a write while a backup of a shard it writes lags (see
/// [`shard::delay_for`]).
pub async fn backpressure(conn: &Conn, spec: &'static Spec, argv: &[&[u8]]) {
    let repl = &conn.state.repl;
    // Nothing lags (the usual case): no need to find the shards.
    if repl.any_delay_us() == 0 {
        return;
    }
    let us = match spec.kind {
        Kind::Keyed(..) => repl.write_delay_us(conn.router.shards_of(spec, argv)),
        Kind::Conn => repl.any_delay_us(),
    };
    if us > 0 {
        crate::runtime::sleep(Duration::from_micros(us)).await;
    }
}

/// Whether this primary holds the strong-mode lease, waiting a little for
/// one it is about to get (the first pings after it opened).
async fn lease_held(state: &crate::server::state::ServerState) -> bool {
    for _ in 0..100 {
        if state
            .cluster
            .lease_ok
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return true;
        }
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Waits while a planned switchover holds writes (at most until its
/// deadline).
pub async fn wait_switchover(state: &crate::server::state::ServerState) {
    loop {
        let until = state.repl.write_pause_until();
        if until == 0 || crate::server::state::now_ms() >= until {
            return;
        }
        crate::runtime::sleep(Duration::from_millis(2)).await;
    }
}

/// Strong mode: waits until the sync backup applied every record the
/// shards of executors `which` had produced; false if it did not within
/// `repl-timeout`.
pub async fn wait_sync_backup(conn: &Conn, which: &[usize]) -> bool {
    let sync = conn.state.repl.sync_backup();
    if sync.is_none() && conn.state.repl.degraded() {
        // An operator forced this node primary with no backup to confirm
        // (FAILOVER FORCE): acknowledged by this node alone until one
        // connects — logged when forced, shown in INFO replication.
        return true;
    }
    let waits = conn
        .router
        .on_executors(which, move |ls| {
            let mut repls = ls.repl.borrow_mut();
            ls.ids()
                .filter_map(|id| {
                    let seq = ls.shard(id).seq();
                    repls
                        .get_mut(ls.local_index(id))
                        .and_then(|r| r.wait_acked(sync.as_deref(), seq))
                })
                .collect::<Vec<_>>()
        })
        .await;
    let Ok(waits) = waits else {
        return false;
    };
    let secs = conn.state.config().repl_timeout;
    let all = futures::future::join_all(waits.into_iter().flatten());
    match crate::runtime::timeout(Duration::from_secs(secs), all).await {
        // (a released waiter's sender is dropped: any outcome is a release)
        // A primary cut off from the majority holds no lease: a new primary
        // may already be open, so it must not acknowledge (cluster only). A
        // primary that just opened gets its lease with the next pings.
        Some(_) if lease_held(&conn.state).await => true,
        Some(_) => {
            tracing::warn!(
                "strong-mode write not acknowledged: this primary holds no majority lease"
            );
            conn.state
                .repl
                .strong_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
        None => {
            conn.state
                .repl
                .strong_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
    }
}
