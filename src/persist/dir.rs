//! The data directory: who owns it, what it holds, and which files are live.
//!
//! ```text
//! dir/
//!   LOCK            flock'ed by the keel that owns the directory
//!   keel.meta       format version and shard count, written once
//!   shard-003/
//!     MANIFEST      the live snapshot and logs of shard 3, in order
//!     snap-000007.kdb
//!     log-000008.klog
//! ```
//!
//! Files are never overwritten in place: a manifest is written to a new
//! file, fsynced, renamed over the old one, and the directory fsynced. Logs
//! only grow (recovery may cut a torn tail). A file not named by a manifest
//! is debris from a crash and is deleted on start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("data directory {0} is in use by another keel (its LOCK is held)")]
    Locked(PathBuf),
    #[error("data directory {path} holds {found} shards but this keel runs {want}; start with --shards {found}")]
    ShardCount {
        path: PathBuf,
        found: usize,
        want: usize,
    },
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const META: &str = "keel.meta";
const FORMAT: &str = "keel-data 1";

/// An open, locked data directory.
pub struct DataDir {
    pub path: PathBuf,
    pub shards: usize,
    /// Held for the life of the process: the lock is the open descriptor.
    _lock: File,
}

/// What one shard's manifest names: the snapshot, then the logs in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub snapshot: Option<String>,
    pub logs: Vec<String>,
    /// The replication history these files belong to (0: none, e.g. while
    /// a backup's full sync is incomplete; see `repl`).
    pub history: u64,
}

impl DataDir {
    /// Whether `path` already holds keel data.
    pub fn exists(path: &Path) -> bool {
        path.join(META).exists()
    }

    /// Creates (if needed) and locks the directory for `shards` shards.
    pub fn open(path: &Path, shards: usize) -> Result<DataDir, DirError> {
        fs::create_dir_all(path).map_err(io_err(path))?;
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DirError::Locked(path.to_path_buf()));
        }
        let meta = path.join(META);
        match fs::read_to_string(&meta) {
            Ok(text) => {
                let mut lines = text.lines();
                if lines.next() != Some(FORMAT) {
                    return Err(DirError::Bad {
                        path: meta,
                        why: format!("not a keel data directory of format '{FORMAT}'"),
                    });
                }
                let found = lines
                    .next()
                    .and_then(|l| l.strip_prefix("shards "))
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| DirError::Bad {
                        path: meta.clone(),
                        why: "no shard count".into(),
                    })?;
                if found != shards {
                    return Err(DirError::ShardCount {
                        path: path.to_path_buf(),
                        found,
                        want: shards,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(
                    path,
                    META,
                    format!("{FORMAT}\nshards {shards}\n").as_bytes(),
                )?;
            }
            Err(e) => return Err(io_err(&meta)(e)),
        }
        for i in 0..shards {
            let d = path.join(shard_dir(i));
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            shards,
            _lock: lock,
        })
    }

    pub fn shard_path(&self, shard: usize) -> PathBuf {
        self.path.join(shard_dir(shard))
    }
}

pub fn shard_dir(shard: usize) -> String {
    format!("shard-{shard:03}")
}

pub fn snapshot_name(gen: u64) -> String {
    format!("snap-{gen:06}.kdb")
}

pub fn log_name(gen: u64) -> String {
    format!("log-{gen:06}.klog")
}

/// The generation number in a data file's name (`log-000008.klog` → 8).
pub fn generation(name: &str) -> Option<u64> {
    let stem = name.split('.').next()?;
    stem.strip_prefix("log-")
        .or_else(|| stem.strip_prefix("snap-"))?
        .parse()
        .ok()
}

impl Manifest {
    pub fn read(shard_dir: &Path) -> Result<Manifest, DirError> {
        let path = shard_dir.join("MANIFEST");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut m = Manifest::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = |why: &str| DirError::Bad {
                path: path.clone(),
                why: format!("{why}: {line:?}"),
            };
            let (kind, name) = line.split_once(' ').ok_or_else(|| bad("malformed line"))?;
            if kind == "history" {
                m.history = u64::from_str_radix(name, 16).map_err(|_| bad("bad history id"))?;
                continue;
            }
            if name.contains('/') || generation(name).is_none() {
                return Err(bad("bad file name"));
            }
            match kind {
                "snapshot" => m.snapshot = Some(name.to_string()),
                "log" => m.logs.push(name.to_string()),
                _ => return Err(bad("unknown entry")),
            }
        }
        Ok(m)
    }

    /// Replaces the manifest atomically.
    pub fn write(&self, shard_dir: &Path) -> Result<(), DirError> {
        let mut text = String::new();
        if self.history != 0 {
            text.push_str(&format!("history {:016x}\n", self.history));
        }
        if let Some(s) = &self.snapshot {
            text.push_str(&format!("snapshot {s}\n"));
        }
        for l in &self.logs {
            text.push_str(&format!("log {l}\n"));
        }
        write_atomic(shard_dir, "MANIFEST", text.as_bytes())
    }

    /// The highest generation it names.
    pub fn max_generation(&self) -> u64 {
        self.snapshot
            .iter()
            .chain(&self.logs)
            .filter_map(|n| generation(n))
            .max()
            .unwrap_or(0)
    }

    /// Whether `name` is live.
    pub fn names(&self, name: &str) -> bool {
        self.snapshot.as_deref() == Some(name) || self.logs.iter().any(|l| l == name)
    }
}

/// Writes `name` in `dir` as a new file, fsyncs it, renames it into place
/// and fsyncs the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DirError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), DirError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Deletes the files of a shard directory its manifest does not name
/// (crash debris, replaced generations), keeping repair files.
pub fn remove_unnamed(shard_dir: &Path, m: &Manifest) -> Result<(), DirError> {
    for entry in fs::read_dir(shard_dir).map_err(io_err(shard_dir))? {
        let entry = entry.map_err(io_err(shard_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = name.ends_with(".kdb") || name.ends_with(".klog") || name.ends_with(".tmp");
        if data && !m.names(&name) && name != "MANIFEST" {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("keel-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn lock_meta_and_manifest() {
        let p = tmp("lock");
        let d = DataDir::open(&p, 2).unwrap();
        assert!(matches!(DataDir::open(&p, 2), Err(DirError::Locked(_))));
        drop(d);
        assert!(matches!(
            DataDir::open(&p, 3),
            Err(DirError::ShardCount {
                found: 2,
                want: 3,
                ..
            })
        ));
        let d = DataDir::open(&p, 2).unwrap();
        let sd = d.shard_path(1);
        assert_eq!(Manifest::read(&sd).unwrap(), Manifest::default());
        let m = Manifest {
            snapshot: Some(snapshot_name(3)),
            logs: vec![log_name(4), log_name(5)],
            history: 0xfeed,
        };
        m.write(&sd).unwrap();
        assert_eq!(Manifest::read(&sd).unwrap(), m);
        assert_eq!(m.max_generation(), 5);
        assert_eq!(generation("snap-000012.kdb"), Some(12));
        assert_eq!(generation("/a.b/log-000003.klog"), None);
        fs::write(sd.join(log_name(2)), b"old").unwrap();
        remove_unnamed(&sd, &m).unwrap();
        assert!(!sd.join(log_name(2)).exists());
        let _ = fs::remove_dir_all(&p);
    }
}
