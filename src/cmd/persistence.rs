//! SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE and INFO persistence.
//!
//! keel's snapshot is also its log rewrite: every shard writes a
//! point-in-time snapshot without fork and, with `appendonly yes`, starts a
//! new log at the snapshot's seq (see `persist::disk`). So BGSAVE and
//! BGREWRITEAOF do the same work; they differ in their replies, as in Redis.

use futures::channel::oneshot;

use super::error::{CmdError, CmdResult};
use crate::conn::Conn;
use crate::persist::disk::SnapshotKind;
use crate::reply::Reply;

/// Runs a snapshot of every shard; waits for it unless `background`.
pub async fn snapshot(conn: &Conn, kind: SnapshotKind, background: bool) -> CmdResult {
    crate::persist::ensure_dir(&conn.state).map_err(|e| CmdError::other(e.to_string()))?;
    let busy = conn
        .router
        .broadcast(|ls| ls.disks.shards.borrow().iter().any(|d| d.snapshot_busy()))
        .await?;
    if busy.into_iter().any(|b| b) {
        return Err(CmdError::other(match kind {
            SnapshotKind::Save => "Background save already in progress",
            SnapshotKind::Rewrite => "Background append only file rewriting already in progress",
        }));
    }
    let waits = conn
        .router
        .broadcast(move |ls| {
            ls.disks
                .shards
                .borrow_mut()
                .iter_mut()
                .map(|d| {
                    let (tx, rx) = oneshot::channel();
                    d.request_snapshot(kind, Some(tx));
                    rx
                })
                .collect::<Vec<_>>()
        })
        .await?;
    if background {
        return Ok(Reply::status(match kind {
            SnapshotKind::Save => "Background saving started",
            SnapshotKind::Rewrite => "Background append only file rewriting started",
        }));
    }
    for w in waits.into_iter().flatten() {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CmdError::other(format!("snapshot failed: {e}"))),
            Err(_) => return Err(CmdError::other("snapshot interrupted")),
        }
    }
    Ok(Reply::Ok)
}

/// What INFO persistence and LASTSAVE report, over every shard.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts {
    pub running: bool,
    pub last_ok: bool,
    /// The oldest shard's last snapshot time (0: some shard has none).
    pub last_save_secs: u64,
    pub log_bytes: u64,
    pub base_bytes: u64,
    pub write_ok: bool,
    pub longest_step_us: u64,
    pub longest_step_cpu_us: u64,
    pub steps: u64,
    pub slow_steps: u64,
    pub cow_entries: u64,
}

pub async fn facts(conn: &Conn) -> Result<Facts, CmdError> {
    let per = conn
        .router
        .broadcast(|ls| {
            let mut f = Facts {
                last_ok: true,
                write_ok: true,
                last_save_secs: u64::MAX,
                ..Facts::default()
            };
            for (d, id) in ls.disks.shards.borrow().iter().zip(ls.ids()) {
                f.running |= d.snapshot_busy();
                f.last_ok &= d.last_snapshot_ok;
                f.last_save_secs = f.last_save_secs.min(d.last_snapshot_secs);
                f.log_bytes += d.log_bytes;
                f.base_bytes += d.base_bytes;
                f.write_ok &= d.error.is_none();
                f.longest_step_us = f.longest_step_us.max(d.longest_step_us);
                f.longest_step_cpu_us = f.longest_step_cpu_us.max(d.longest_step_cpu_us);
                f.steps += d.steps;
                f.slow_steps += d.slow_steps;
                f.cow_entries += ls.shard(id).snapshot_cow_entries();
            }
            f
        })
        .await?;
    let mut all = Facts {
        last_ok: true,
        write_ok: true,
        last_save_secs: u64::MAX,
        ..Facts::default()
    };
    for f in per {
        all.running |= f.running;
        all.last_ok &= f.last_ok;
        all.last_save_secs = all.last_save_secs.min(f.last_save_secs);
        all.log_bytes += f.log_bytes;
        all.base_bytes += f.base_bytes;
        all.write_ok &= f.write_ok;
        all.longest_step_us = all.longest_step_us.max(f.longest_step_us);
        all.longest_step_cpu_us = all.longest_step_cpu_us.max(f.longest_step_cpu_us);
        all.steps += f.steps;
        all.slow_steps += f.slow_steps;
        all.cow_entries += f.cow_entries;
    }
    if all.last_save_secs == u64::MAX {
        all.last_save_secs = 0;
    }
    Ok(all)
}

/// LASTSAVE: when every shard last finished a snapshot (the start time if
/// some never did).
pub async fn lastsave(conn: &Conn) -> CmdResult {
    let f = facts(conn).await?;
    let t = if f.last_save_secs == 0 {
        conn.state.started_ms / 1000
    } else {
        f.last_save_secs
    };
    Ok(Reply::Int(t as i64))
}
