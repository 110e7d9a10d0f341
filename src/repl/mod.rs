//! Replication: shard *i* of the primary streams its write records to shard
//! *i* of every backup over a connection of its own, core to core.
//!
//! - [`link`]: the frames on a replication connection (length, crc32, lz4
//!   on cross-zone links).
//! - [`backlog`]: the recent records of one shard, for partial resyncs.
pub mod backlog;
pub mod backup;
pub mod barrier;
pub mod link;
pub mod primary;
pub mod shard;
pub mod shared;
pub mod wire;

use std::time::Duration;

use crate::command::{Kind, Spec};
use crate::conn::Conn;

/// Delays a write while a backup of a shard it writes lags (see
/// [`shard::delay_for`]).
pub async fn backpressure(conn: &Conn, spec: &'static Spec, argv: &[&[u8]]) {
    let repl = &conn.state.repl;
    let us = match spec.kind {
        Kind::Keyed(..) => repl.write_delay_us(conn.router.shards_of(spec, argv)),
        Kind::Conn => repl.any_delay_us(),
    };
    if us > 0 {
        crate::runtime::sleep(Duration::from_micros(us)).await;
    }
}

/// Strong mode: waits until the sync backup applied every record the
/// shards of executors `which` had produced; false if it did not within
/// `repl-timeout`.
pub async fn wait_sync_backup(conn: &Conn, which: &[usize]) -> bool {
    let sync = conn.state.repl.sync_backup();
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
    let tick = crate::runtime::sleep(Duration::from_secs(secs));
    futures::pin_mut!(all);
    futures::pin_mut!(tick);
    match futures::future::select(all, tick).await {
        // (a released waiter's sender is dropped: any outcome is a release)
        futures::future::Either::Left(_) => true,
        futures::future::Either::Right(_) => {
            conn.state
                .repl
                .strong_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
    }
}
