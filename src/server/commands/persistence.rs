//! SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE and INFO persistence.
//!
//! keel's snapshot is also its log rewrite: every shard writes a
//! point-in-time snapshot without fork and, with `appendonly yes`, starts a
//! new log at the snapshot's seq (see `persist::disk`). So BGSAVE and
//! BGREWRITEAOF do the same work; they differ in their replies, as in Redis.

use futures::channel::oneshot;

use crate::cmd::error::{CmdError, CmdResult};
use crate::persist::disk::ShardDisk;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;

/// Which command asked: the work is the same, the replies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Save,
    Rewrite,
}

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
                    d.request_snapshot(Some(tx));
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

impl Facts {
    /// Nothing yet: what merging starts from.
    fn none() -> Facts {
        Facts {
            last_ok: true,
            write_ok: true,
            last_save_secs: u64::MAX,
            ..Facts::default()
        }
    }

    fn of_shard(d: &ShardDisk, cow_entries: u64) -> Facts {
        Facts {
            running: d.snapshot_busy(),
            last_ok: d.last_snapshot_ok,
            last_save_secs: d.last_snapshot_secs,
            log_bytes: d.log_bytes,
            base_bytes: d.base_bytes,
            write_ok: d.error.is_none(),
            longest_step_us: d.longest_step_us,
            longest_step_cpu_us: d.longest_step_cpu_us,
            steps: d.steps,
            slow_steps: d.slow_steps,
            cow_entries,
        }
    }

    /// Shards' figures together: flags all-or-any, sizes summed, the
    /// oldest save, the longest step.
    fn merge(mut self, o: Facts) -> Facts {
        self.running |= o.running;
        self.last_ok &= o.last_ok;
        self.last_save_secs = self.last_save_secs.min(o.last_save_secs);
        self.log_bytes += o.log_bytes;
        self.base_bytes += o.base_bytes;
        self.write_ok &= o.write_ok;
        self.longest_step_us = self.longest_step_us.max(o.longest_step_us);
        self.longest_step_cpu_us = self.longest_step_cpu_us.max(o.longest_step_cpu_us);
        self.steps += o.steps;
        self.slow_steps += o.slow_steps;
        self.cow_entries += o.cow_entries;
        self
    }
}

pub async fn facts(conn: &Conn) -> Result<Facts, CmdError> {
    let per = conn
        .router
        .broadcast(|ls| {
            let disks = ls.disks.shards.borrow();
            disks
                .iter()
                .zip(ls.ids())
                .fold(Facts::none(), |f, (d, id)| {
                    f.merge(Facts::of_shard(d, ls.shard(id).snapshot_cow_entries()))
                })
        })
        .await?;
    let mut all = per.into_iter().fold(Facts::none(), Facts::merge);
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
