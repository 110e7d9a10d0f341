//! SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE and INFO persistence.
//!
//! keel's snapshot is also its log rewrite: every shard writes a
//! point-in-time snapshot without fork and, with `appendonly yes`, starts a
//! new log at the snapshot's seq (see `persist::disk`). So BGSAVE and
//! BGREWRITEAOF do the same work; they differ in their replies, as in Redis.

use std::sync::atomic::Ordering;

use futures::channel::oneshot;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::persist::disk::ShardDisk;
use crate::resp::reply::Reply;
use crate::server::conn::{After, Conn};

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
    /// fsync durations of every shard's log, in microseconds.
    pub fsync_us: crate::server::histogram::Histogram,
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
            fsync_us: d.fsync_us,
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
        self.fsync_us.merge(&o.fsync_us);
        self
    }
}

pub async fn facts(conn: &Conn) -> Result<Facts, CmdError> {
    gather(&conn.router).await
}

/// Every shard's persistence facts, merged (for INFO, LASTSAVE, /metrics).
pub async fn gather(router: &crate::exec::router::Router) -> Result<Facts, CmdError> {
    let per = router
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

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: a clean stop, the same as
/// SIGTERM's: listeners close, every shard's log is written and fsynced,
/// backups keep what they were sent. SAVE first takes a snapshot of every
/// shard (a failed one refuses the shutdown unless FORCE); NOSAVE and the
/// default take none (the log already holds every acknowledged write).
/// NOW is accepted: keel does not wait for backups to catch up before
/// stopping (they resume from their position with the next primary).
/// The client's connection closes without a reply, as with Redis.
pub async fn shutdown(conn: &Conn, a: &[&[u8]]) -> (CmdResult, After) {
    let (mut save, mut nosave, mut force, mut abort, mut now) = (false, false, false, false, false);
    for w in &a[1..] {
        match w {
            w if is(w, "save") => save = true,
            w if is(w, "nosave") => nosave = true,
            w if is(w, "force") => force = true,
            w if is(w, "abort") => abort = true,
            w if is(w, "now") => now = true,
            _ => return (Err(CmdError::Syntax), After::Continue),
        }
    }
    if (save && nosave) || (abort && (save || nosave || force || now)) {
        return (Err(CmdError::Syntax), After::Continue);
    }
    if abort {
        // A keel shutdown never waits, so none is ever in progress.
        return (
            Err(CmdError::other("No shutdown in progress.")),
            After::Continue,
        );
    }
    if save {
        // A snapshot already running (the log's own rewrite) is waited for:
        // the one SHUTDOWN SAVE takes must start after every write so far.
        let mut result = snapshot(conn, SnapshotKind::Save, false).await;
        for _ in 0..500 {
            match &result {
                Err(e) if e.to_string().contains("already in progress") => {
                    crate::runtime::sleep(std::time::Duration::from_millis(20)).await;
                    result = snapshot(conn, SnapshotKind::Save, false).await;
                }
                _ => break,
            }
        }
        if let Err(e) = result {
            tracing::warn!("SHUTDOWN SAVE: the snapshot failed: {e}");
            if !force {
                return (
                    Err(CmdError::other("Errors trying to SHUTDOWN. Check logs.")),
                    After::Continue,
                );
            }
        }
    }
    let client = conn.info.borrow().addr.clone();
    tracing::warn!(%client, "SHUTDOWN requested by a client: stopping");
    // New connections are refused at once, and requests on open ones end
    // their connection, as a stopped Redis would: a client that retries
    // on the drop finds the server gone, not a second SHUTDOWN.
    crate::runtime::shut_listeners();
    conn.state.shutdown.store(true, Ordering::SeqCst);
    (Ok(Reply::Ok), After::Vanish)
}
