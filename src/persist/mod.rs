//! Persistence: the shards' write records on disk, snapshots, recovery.
//!
//! - [`dir`]: the data directory — lock, format, per-shard manifests, files
//!   replaced by rename, never overwritten.
//! - [`logfile`]: an append-only file written on the ring.
//! - [`disk`]: per shard, the task moving records from the journal to the
//!   log (fsync policy, group commit, disk errors) and starting snapshots.
//! - [`snapshot`]: writing a snapshot file in small steps.
//! - [`recover`]: loading snapshots and replaying logs at start.
//! - [`replay`]: applies write records to a shard (recovery, and later the
//!   backups of replication).

pub mod dir;
pub mod disk;
pub mod logfile;
pub mod recover;
pub mod replay;
pub mod snapshot;

use std::sync::atomic::Ordering;

use keel_shards::Shard;

use crate::config::Config;
use crate::server::state::ServerState;
use dir::{DataDir, Manifest};
use disk::ShardDisk;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    #[error(transparent)]
    Recover(#[from] recover::RecoverError),
}

/// Opens the data directory when there is data to load or a log to keep
/// (`appendonly yes`), recovers every shard from it, and returns the shards
/// in global order with their disk state. Without either, the directory is
/// left alone until a SAVE or BGSAVE needs it.
pub fn start(
    config: &Config,
    state: &ServerState,
) -> Result<Vec<(Shard, ShardDisk)>, PersistError> {
    let n = state.shards;
    let shard_dir = |i: usize| config.dir.join(dir::shard_dir(i));
    if !config.appendonly && !DataDir::exists(&config.dir) {
        return Ok((0..n)
            .map(|i| {
                (
                    Shard::new(i),
                    ShardDisk::new(i, shard_dir(i), Manifest::default(), false, Vec::new(), 0),
                )
            })
            .collect());
    }
    let d = DataDir::open(&config.dir, n)?;
    let recovered = recover::recover(&d, config.repair)?;
    state.commits.store(recovered.max_commit, Ordering::SeqCst);
    *state.datadir.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    Ok(recovered
        .shards
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut disk = ShardDisk::new(
                i,
                shard_dir(i),
                r.manifest,
                config.appendonly,
                r.aborted,
                r.base_bytes,
            );
            disk.log_bytes = r.log_bytes;
            (r.shard, disk)
        })
        .collect())
}

/// Opens (and locks) the data directory if it is not yet: SAVE and BGSAVE
/// without `appendonly`.
pub fn ensure_dir(state: &ServerState) -> Result<(), PersistError> {
    let mut slot = state.datadir.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        let dir = state.config().dir;
        *slot = Some(DataDir::open(&dir, state.shards)?);
    }
    Ok(())
}
