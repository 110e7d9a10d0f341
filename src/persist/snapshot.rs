//! Writing a shard's snapshot file in small steps.
//!
//! Each step serialises a bounded part of the shard (see
//! `keel_shards::snapshot`) and then yields, so clients of the shard wait at
//! most one step. The longest step is kept for INFO (`snapshot_longest_step_us`).

use std::rc::Rc;
use std::time::Instant;

use keel_shards::record::Header;

use super::dir::{self, Manifest};
use super::disk::SnapshotDone;
use super::logfile::LogFile;
use crate::exec::local::LocalShards;
use crate::server::state::now_ms;

/// Output bytes one step may produce.
const STEP_BYTES: usize = 32 * 1024;
/// Bytes gathered before a write to the file.
const WRITE_BYTES: usize = 1 << 20;

/// CPU time this thread has used, in microseconds: a step's own cost,
/// without the time the machine gave the core to someone else.
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

pub async fn write(
    ls: Rc<LocalShards>,
    i: usize,
    id: usize,
    header: Header,
    waiters: Vec<SnapshotDone>,
) {
    let result = write_file(&ls, i, id).await;
    let mut disks = ls.disks.shards.borrow_mut();
    let d = &mut disks[i];
    d.snapshot_running = false;
    d.last_snapshot_ok = result.is_ok();
    match &result {
        Ok(bytes) => {
            d.last_snapshot_secs = now_ms() / 1000;
            d.base_bytes = *bytes;
            // The logs before the snapshot are gone.
            d.log_bytes = d.log_bytes.saturating_sub(d.replaced_bytes);
            tracing::info!(shard = id, seq = header.seq, bytes, "snapshot written");
        }
        Err(e) => {
            tracing::error!(shard = id, "snapshot failed: {e}");
            drop(disks);
            ls.shard(id).snapshot_abort();
        }
    }
    for w in waiters {
        let _ = w.send(result.clone().map(|_| ()));
    }
}

async fn write_file(ls: &LocalShards, i: usize, id: usize) -> Result<u64, String> {
    let (path, name, shard_dir) = {
        let mut disks = ls.disks.shards.borrow_mut();
        let d = &mut disks[i];
        let g = d.next_generation();
        let name = dir::snapshot_name(g);
        (d.dir.join(&name), name, d.dir.clone())
    };
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = LogFile::create(&path, false).await.map_err(fail)?;
    let mut out = Vec::with_capacity(WRITE_BYTES + STEP_BYTES);
    loop {
        let (started, cpu_started) = (Instant::now(), thread_cpu_us());
        let done = ls.shard(id).snapshot_step(&mut out, STEP_BYTES);
        let us = started.elapsed().as_micros() as u64;
        let cpu_us = thread_cpu_us().saturating_sub(cpu_started);
        {
            let mut disks = ls.disks.shards.borrow_mut();
            let d = &mut disks[i];
            d.longest_step_us = d.longest_step_us.max(us);
            d.longest_step_cpu_us = d.longest_step_cpu_us.max(cpu_us);
            d.steps += 1;
            if us > 1000 {
                d.slow_steps += 1;
                tracing::debug!(shard = id, us, bytes = out.len(), "slow snapshot step");
            }
        }
        if out.len() >= WRITE_BYTES || done {
            if let Err(e) = file.append(&out).await {
                let _ = std::fs::remove_file(&path);
                return Err(fail(e));
            }
            out.clear();
        }
        if done {
            break;
        }
        // Let the shard's clients (and the reactor) in between steps.
        crate::runtime::yield_now().await;
    }
    let bytes = file.len();
    file.close().await.map_err(fail)?;
    // The snapshot is durable: switch the manifest to it and the log that
    // began with it, then drop what they replace.
    let manifest = {
        let mut disks = ls.disks.shards.borrow_mut();
        let d = &mut disks[i];
        let logs = if d.logging {
            d.manifest.logs.last().cloned().into_iter().collect()
        } else {
            Vec::new()
        };
        let history = d
            .history_after_snapshot
            .take()
            .unwrap_or(d.manifest.history);
        d.manifest = Manifest {
            snapshot: Some(name),
            logs,
            history,
        };
        d.manifest.clone()
    };
    super::disk::off_core(move || {
        manifest.write(&shard_dir)?;
        dir::remove_unnamed(&shard_dir, &manifest)
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(bytes)
}
