//! Start-up: each shard loads its newest snapshot and replays its logs.
//!
//! 1. Every shard (one thread each) loads the snapshot its manifest names
//!    and reads its logs, checking every frame. A torn last record — a
//!    write cut short by a crash — is cut off with a warning. A bad frame
//!    with valid data after it is corruption: the start stops, unless
//!    `--repair`, which moves everything from the bad frame on into a
//!    `.bad` file beside the log.
//! 2. Transactions that wrote on several shards left one unit in each
//!    shard's log. A shard's *horizon* is the highest commit number it is
//!    known to hold (its snapshot's, or its last unit's); since a shard
//!    applies transactions in commit order and its log is a prefix of what
//!    it applied, transaction `c` is wholly on disk iff every shard it wrote
//!    on has a horizon of at least `c`. Units of other transactions are
//!    skipped everywhere, and an `Abort` record in the next log keeps them
//!    skipped on later starts.
//! 3. Every shard replays its logs past its snapshot's seq (one thread
//!    each); seq counters resume where they were.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use keel_shards::record::{decode_frame, walk, Frame, Op, Tail};
use keel_shards::snapshot::Loader;
use keel_shards::Shard;

use super::dir::{self, DataDir, DirError, Manifest};
use super::replay;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("snapshot {path} is unreadable: {why}")]
    Snapshot { path: PathBuf, why: String },
    #[error("log {path} is corrupt at offset {offset} ({why}) and valid records follow; start with --repair to move everything from that offset on aside")]
    Corrupt {
        path: PathBuf,
        offset: usize,
        why: String,
    },
    #[error("log {path}: replay failed: {why}")]
    Replay { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One recovered shard.
pub struct RecoveredShard {
    pub shard: Shard,
    pub manifest: Manifest,
    /// Transactions this shard held a part of and recovery dropped.
    pub aborted: Vec<u64>,
    /// Bytes of the snapshot, the base for automatic rewrites.
    pub base_bytes: u64,
    /// Bytes of the logs after it.
    pub log_bytes: u64,
}

pub struct Recovered {
    pub shards: Vec<RecoveredShard>,
    /// The highest transaction commit number seen anywhere.
    pub max_commit: u64,
}

/// What phase 1 learns about one shard.
struct Scan {
    shard: Shard,
    manifest: Manifest,
    logs: Vec<(PathBuf, Vec<u8>)>,
    horizon: u64,
    /// (commit, parts) of every unit in the logs.
    units: Vec<(u64, Vec<u64>)>,
    aborts: Vec<u64>,
    base_bytes: u64,
}

pub fn recover(dir: &DataDir, repair: bool) -> Result<Recovered, RecoverError> {
    let started = Instant::now();
    let paths: Vec<PathBuf> = (0..dir.shards).map(|i| dir.shard_path(i)).collect();
    let scans = each_shard(paths.into_iter().enumerate().collect(), |(i, path)| {
        scan(i, &path, repair)
    })?;

    let horizon: Vec<u64> = scans.iter().map(|s| s.horizon).collect();
    let mut max_commit = horizon.iter().copied().max().unwrap_or(0);
    let mut skip: HashSet<u64> = HashSet::new();
    for s in &scans {
        skip.extend(&s.aborts);
        for (commit, parts) in &s.units {
            max_commit = max_commit.max(*commit);
            let whole = parts
                .iter()
                .all(|&p| horizon.get(p as usize).is_some_and(|&h| h >= *commit));
            if !whole {
                skip.insert(*commit);
            }
        }
    }

    let shards = each_shard(scans, |scan| replay_logs(scan, &skip))?;
    let keys: usize = shards.iter().map(|s| s.shard.keys()).sum();
    tracing::info!(
        keys,
        ms = started.elapsed().as_millis() as u64,
        "data loaded from {}",
        dir.path.display()
    );
    Ok(Recovered { shards, max_commit })
}

/// Runs `f` on every item in a thread of its own (one per shard: loading
/// is parallel across cores), keeping the order; the first error wins.
fn each_shard<I: Send, O: Send>(
    items: Vec<I>,
    f: impl Fn(I) -> Result<O, RecoverError> + Sync,
) -> Result<Vec<O>, RecoverError> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| s.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RecoverError::Replay {
                        path: PathBuf::new(),
                        why: "a recovery thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

fn scan(i: usize, path: &Path, repair: bool) -> Result<Scan, RecoverError> {
    let mut manifest = Manifest::read(path)?;
    dir::remove_unnamed(path, &manifest)?;
    let mut shard = Shard::new(i);
    let mut horizon = 0;
    let mut base_bytes = 0;
    if let Some(name) = &manifest.snapshot {
        let p = path.join(name);
        let h = load_snapshot(&mut shard, &p)?;
        horizon = h.commit;
        shard.applied_commit(h.commit);
        base_bytes = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    let mut logs = Vec::new();
    let mut units = Vec::new();
    let mut aborts = Vec::new();
    let names = manifest.logs.clone();
    let mut cut_from: Option<usize> = None;
    for (n, name) in names.iter().enumerate() {
        let p = path.join(name);
        let mut bytes = fs::read(&p).map_err(io_err(&p))?;
        let tail = walk(&bytes, |_, frame| {
            match frame {
                Frame::Unit { commit, parts, .. } => {
                    horizon = horizon.max(commit);
                    units.push((commit, parts));
                }
                Frame::Record(r) if r.op == Op::Abort => {
                    if let Some(c) = r.args.first().and_then(|a| <[u8; 8]>::try_from(*a).ok()) {
                        aborts.push(u64::from_le_bytes(c));
                    }
                }
                _ => {}
            }
            true
        });
        match tail {
            Tail::Clean => {}
            Tail::Torn { offset, error } => {
                tracing::warn!(
                    file = %p.display(),
                    offset,
                    "log ends in a torn record ({error}): cut off at offset {offset}"
                );
                cut(&p, offset)?;
                bytes.truncate(offset);
            }
            Tail::Corrupt { offset, error } => {
                if !repair {
                    return Err(RecoverError::Corrupt {
                        path: p,
                        offset,
                        why: error.to_string(),
                    });
                }
                let aside = path.join(format!("{name}.{offset}.bad"));
                fs::write(&aside, &bytes[offset..]).map_err(io_err(&aside))?;
                cut(&p, offset)?;
                bytes.truncate(offset);
                tracing::warn!(
                    file = %p.display(),
                    offset,
                    moved_to = %aside.display(),
                    "repair: log corrupt at offset {offset} ({error}); everything after it moved aside"
                );
                logs.push((p, bytes));
                cut_from = Some(n + 1);
                break;
            }
        }
        logs.push((p, bytes));
    }
    if let Some(from) = cut_from {
        // Later logs follow the bad record: they move aside too.
        for name in manifest.logs.drain(from..) {
            let p = path.join(&name);
            let aside = path.join(format!("{name}.bad"));
            fs::rename(&p, &aside).map_err(io_err(&p))?;
            tracing::warn!(moved_to = %aside.display(), "repair: later log moved aside");
        }
        manifest.write(path)?;
    }
    Ok(Scan {
        shard,
        manifest,
        logs,
        horizon,
        units,
        aborts,
        base_bytes,
    })
}

/// Cuts a log file at `offset`, durably.
fn cut(p: &Path, offset: usize) -> Result<(), RecoverError> {
    let f = OpenOptions::new().write(true).open(p).map_err(io_err(p))?;
    f.set_len(offset as u64).map_err(io_err(p))?;
    f.sync_all().map_err(io_err(p))
}

fn load_snapshot(shard: &mut Shard, p: &Path) -> Result<keel_shards::record::Header, RecoverError> {
    let bad = |why: String| RecoverError::Snapshot {
        path: p.to_path_buf(),
        why,
    };
    let mut f = File::open(p).map_err(io_err(p))?;
    let mut loader = Loader::new();
    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut chunk = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut chunk).map_err(io_err(p))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let used = loader.feed(shard, &buf).map_err(|e| bad(e.to_string()))?;
        buf.drain(..used);
        if loader.done() {
            break;
        }
    }
    if !loader.done() {
        return Err(bad("it ends before its last frame".into()));
    }
    loader.header().ok_or_else(|| bad("no header".into()))
}

fn replay_logs(scan: Scan, skip: &HashSet<u64>) -> Result<RecoveredShard, RecoverError> {
    let Scan {
        mut shard,
        manifest,
        logs,
        units,
        base_bytes,
        ..
    } = scan;
    // This shard's parts of the transactions dropped everywhere.
    let mut aborted: Vec<u64> = units
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| skip.contains(c))
        .collect();
    aborted.sort_unstable();
    aborted.dedup();
    for (p, bytes) in &logs {
        let mut at = 0;
        while at < bytes.len() {
            let (frame, n) = match decode_frame(&bytes[at..]) {
                Ok(x) => x,
                // Zero padding after the last frame (checked in the scan).
                Err(_) => break,
            };
            at += n;
            let done = shard.seq();
            let apply = match &frame {
                Frame::Record(r) => r.op != Op::Abort && r.seq > done,
                Frame::Unit {
                    commit, records, ..
                } => !skip.contains(commit) && records.first().is_some_and(|r| r.seq > done),
                _ => false,
            };
            if apply {
                replay::apply_frame(&mut shard, &frame).map_err(|e| RecoverError::Replay {
                    path: p.clone(),
                    why: e.to_string(),
                })?;
            }
        }
    }
    let log_bytes = logs.iter().map(|(_, b)| b.len() as u64).sum();
    if !aborted.is_empty() {
        tracing::warn!(
            shard = shard.id,
            transactions = ?aborted,
            "dropped transactions whose records did not reach every shard's log"
        );
    }
    Ok(RecoveredShard {
        shard,
        manifest,
        aborted,
        base_bytes,
        log_bytes,
    })
}
