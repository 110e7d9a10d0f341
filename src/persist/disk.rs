//! One executor's disk work: for each of its shards, the task that moves
//! write records from the shard's journal to its log file, and the
//! snapshots that bound the log.
//!
//! # The log task
//! Wakes when a shard has records (a kick after each command, see
//! `LocalShards::kick_log`), appends everything pending in one write, and
//! under `appendfsync always` fsyncs before it releases the replies waiting
//! on those records — every client whose records were in that write shares
//! one fsync (group commit). `everysec` fsyncs at most once a second, `no`
//! leaves it to the kernel. A failed write or fsync keeps the records,
//! flags the error (writes are refused with `-MISCONF` meanwhile) and is
//! retried every 100 ms until the disk takes it again.
//!
//! # Snapshots
//! A snapshot begins, in the log task, at a moment the shard is not inside
//! a transaction: the records before that moment go to the current log,
//! those after it to a new one, and the manifest names both. The
//! snapshotter then walks the shard in small steps (between which clients
//! run), writes a new snapshot file, and when it is durable the manifest
//! switches to it and the new log only; the old files are deleted.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use super::dir::{self, Manifest};
use super::logfile::LogFile;
use crate::exec::local::LocalShards;
use crate::server::state::ServerState;

/// The most bytes one log write takes.
const APPEND_CHUNK: usize = 1 << 20;

/// When a log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Fsync {
        match s {
            "always" => Fsync::Always,
            "no" => Fsync::No,
            _ => Fsync::EverySec,
        }
    }
}

/// What a finished snapshot reports to whoever waits on it.
pub type SnapshotDone = oneshot::Sender<Result<(), String>>;

/// One shard's persistence state, on its executor.
pub struct ShardDisk {
    pub shard: usize,
    pub dir: PathBuf,
    pub manifest: Manifest,
    next_gen: u64,
    /// Whether this shard has a log (appendonly).
    pub logging: bool,
    /// `appendfsync always` when the current log was opened.
    pub always: bool,
    /// Seq of the last record known durable.
    pub durable: u64,
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    kick: Option<mpsc::Sender<()>>,
    /// The log's last write or fsync error, while it lasts.
    pub error: Option<String>,
    /// How long each fsync took, in microseconds (for `/metrics`).
    pub fsync_us: crate::server::histogram::Histogram,
    /// Bytes in the current log, and in the base it grew from (the last
    /// snapshot's size, for automatic rewrites).
    pub log_bytes: u64,
    pub base_bytes: u64,
    /// `log_bytes` when the running snapshot began: the part it replaces.
    pub replaced_bytes: u64,
    /// A snapshot asked for and not yet begun, with who waits for it.
    pending: Option<Vec<SnapshotDone>>,
    pub snapshot_running: bool,
    pub last_snapshot_ok: bool,
    pub last_snapshot_secs: u64,
    /// Longest time one step of the last snapshot held the shard, in
    /// microseconds, and how many steps it took and took over a millisecond.
    pub longest_step_us: u64,
    /// The same step's CPU time (the wall-clock figure also counts time
    /// the machine ran something else).
    pub longest_step_cpu_us: u64,
    pub steps: u64,
    pub slow_steps: u64,
    /// Transactions recovery dropped: recorded void in the first new log.
    aborted: Vec<u64>,
    /// A backup's full sync is loading the shard: no snapshot may begin.
    pub loading: bool,
    /// The history the next finished snapshot records (a backup's, after a
    /// full sync: the files before it belong to no history).
    pub history_after_snapshot: Option<u64>,
}

impl ShardDisk {
    pub fn new(
        shard: usize,
        dir: PathBuf,
        manifest: Manifest,
        logging: bool,
        aborted: Vec<u64>,
        base_bytes: u64,
    ) -> ShardDisk {
        let next_gen = manifest.max_generation() + 1;
        ShardDisk {
            shard,
            dir,
            manifest,
            next_gen,
            logging,
            always: false,
            durable: 0,
            waiters: Vec::new(),
            kick: None,
            error: None,
            fsync_us: Default::default(),
            log_bytes: 0,
            base_bytes,
            replaced_bytes: 0,
            pending: None,
            snapshot_running: false,
            last_snapshot_ok: true,
            last_snapshot_secs: 0,
            longest_step_us: 0,
            longest_step_cpu_us: 0,
            steps: 0,
            slow_steps: 0,
            aborted,
            loading: false,
            history_after_snapshot: None,
        }
    }

    pub(super) fn next_generation(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        g
    }

    /// Wakes the log task (records are waiting).
    pub fn kick(&mut self) {
        if let Some(k) = &mut self.kick {
            // Full means a wake-up is already pending.
            let _ = k.try_send(());
        }
    }

    /// A receiver that completes once records up to `seq` are durable.
    pub fn wait_durable(&mut self, seq: u64) -> Option<oneshot::Receiver<()>> {
        if !self.logging || seq <= self.durable {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push((seq, tx));
        self.kick();
        Some(rx)
    }

    fn release(&mut self, durable: u64) {
        self.durable = self.durable.max(durable);
        let d = self.durable;
        self.waiters.retain_mut(|(seq, _)| *seq > d);
        // (retain drops the senders of released waiters, which wakes them)
    }

    /// Asks for a snapshot; `done` hears how it ended.
    pub fn request_snapshot(&mut self, done: Option<SnapshotDone>) {
        self.pending.get_or_insert_with(Vec::new).extend(done);
        self.kick();
    }

    pub fn snapshot_busy(&self) -> bool {
        self.snapshot_running || self.pending.is_some()
    }
}

/// The disk state of every shard of one executor, by local index.
#[derive(Default)]
pub struct Disks {
    pub shards: RefCell<Vec<ShardDisk>>,
}

/// Starts the disk tasks of an executor's shards; the handles finish once
/// the logs are closed after shutdown.
pub async fn start(
    ls: Rc<LocalShards>,
    state: Arc<ServerState>,
) -> Vec<crate::runtime::JoinHandle<()>> {
    let mut handles = Vec::new();
    let ids: Vec<usize> = ls.ids().collect();
    for (i, id) in ids.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(1);
        let logging = {
            let mut disks = ls.disks.shards.borrow_mut();
            let Some(d) = disks.get_mut(i) else {
                return handles;
            };
            d.kick = Some(tx);
            d.durable = ls.shard(id).seq();
            d.always = Fsync::parse(&state.config().appendfsync) == Fsync::Always;
            d.logging
        };
        let log = if logging {
            match open_new_log(&ls, i).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!(shard = id, "cannot open a new log: {e}");
                    state.disk_errors.fetch_add(1, Ordering::SeqCst);
                    None
                }
            }
        } else {
            None
        };
        if logging {
            let aborted = std::mem::take(&mut ls.disks.shards.borrow_mut()[i].aborted);
            let mut s = ls.shard(id);
            s.journal_enable(true);
            for c in aborted {
                s.record_abort(c);
            }
        }
        let task = crate::runtime::spawn(log_task(ls.clone(), state.clone(), i, id, log, rx));
        handles.push(task);
    }
    handles
}

/// Creates the next log file and names it last in the manifest.
async fn open_new_log(ls: &LocalShards, i: usize) -> Result<LogFile, String> {
    let (name, path, dirp) = {
        let mut disks = ls.disks.shards.borrow_mut();
        let d = &mut disks[i];
        let name = dir::log_name(d.next_generation());
        (name.clone(), d.dir.join(name), d.dir.clone())
    };
    // Under `always` each write is made durable by the write itself.
    let always = ls.disks.shards.borrow()[i].always;
    let f = LogFile::create(&path, always)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest = {
        let mut disks = ls.disks.shards.borrow_mut();
        let d = &mut disks[i];
        d.manifest.logs.push(name);
        d.manifest.clone()
    };
    off_core(move || manifest.write(&dirp))
        .await
        .map_err(|e| e.to_string())?;
    Ok(f)
}

/// Runs blocking file-system work (fsync of a manifest and its directory,
/// unlinking a large old snapshot) on a thread of its own, so the shard
/// keeps serving meanwhile.
/// Records shard `i`'s history id in its manifest on disk now (a
/// promotion, or a primary's first id), when it keeps files: a node that
/// restarts must present the same id, or its backups could not continue
/// from it partially. (A backup's id is written after its snapshot
/// instead: until then its files belong to no history.)
pub fn store_history(ls: &LocalShards, i: usize, history: u64) {
    let job = {
        let mut disks = ls.disks.shards.borrow_mut();
        let Some(d) = disks.get_mut(i) else {
            return;
        };
        d.manifest.history = history;
        (d.logging && !d.loading).then(|| (d.manifest.clone(), d.dir.clone()))
    };
    let Some((manifest, dir)) = job else {
        return;
    };
    crate::runtime::spawn(async move {
        if let Err(e) = off_core(move || manifest.write(&dir)).await {
            tracing::warn!("cannot record the history id in {}: {e}", "MANIFEST");
        }
    });
}

pub async fn off_core<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    crate::runtime::spawn_blocking(f).await
}

/// Settings the log task reads each turn (CONFIG SET may change them).
#[derive(Clone, Copy)]
struct Policy {
    fsync: Fsync,
    rewrite_percentage: u64,
    rewrite_min_bytes: u64,
}

/// The policy, read again only after a CONFIG SET (`config_epoch`): the log
/// task asks on every batch and the whole configuration is a clone away.
fn policy(state: &ServerState, cached: &mut Option<(u64, Policy)>) -> Policy {
    let epoch = state.config_epoch.load(Ordering::SeqCst);
    if let Some((e, p)) = *cached {
        if e == epoch {
            return p;
        }
    }
    let c = state.config();
    let p = Policy {
        fsync: Fsync::parse(&c.appendfsync),
        rewrite_percentage: c.auto_aof_rewrite_percentage,
        rewrite_min_bytes: c.auto_aof_rewrite_min_size / state.shards.max(1) as u64,
    };
    *cached = Some((epoch, p));
    p
}

async fn log_task(
    ls: Rc<LocalShards>,
    state: Arc<ServerState>,
    i: usize,
    id: usize,
    mut log: Option<LogFile>,
    mut kick: mpsc::Receiver<()>,
) {
    // Records taken from the journal and not yet written, with the seq of
    // the last of them.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_seq = 0;
    let mut written_seq = ls.shard(id).seq();
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    let mut failing = false;
    let mut cached = None;
    loop {
        let snapshot_wanted = ls
            .disks
            .shards
            .borrow()
            .get(i)
            .is_some_and(|d| d.pending.is_some());
        let wait = if snapshot_wanted {
            // Waiting for a transaction to leave the shard.
            Duration::from_millis(1)
        } else if failing {
            Duration::from_millis(100)
        } else if unsynced {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let tick = crate::runtime::sleep(wait);
        futures::pin_mut!(tick);
        futures::future::select(kick.next(), tick).await;
        let p = policy(&state, &mut cached);
        if p.fsync == Fsync::Always {
            // Let every connection that is ready run first: their records
            // join this write and share its fsync (group commit).
            crate::runtime::yield_now().await;
        }
        let stopping = state.shutdown.load(Ordering::SeqCst);

        // A snapshot begins here, between two log writes, so the records
        // before it and after it go to different logs.
        // (Not while a transaction holds the shard: the next turn, 1 ms on.)
        let begin = snapshot_wanted
            && !stopping
            && ls.is_free(&[id])
            && !ls.disks.shards.borrow()[i].snapshot_running
            && !ls.disks.shards.borrow()[i].loading
            && !ls.shard(id).snapshot_running();
        if begin {
            begin_snapshot(&ls, &state, i, id, &mut log, &mut pending, &mut pending_seq).await;
            unsynced = false;
            written_seq = written_seq.max(pending_seq);
        }

        let Some(file) = log.as_mut() else {
            // No log: the records only feed the replication backlog.
            let (bytes, seq) = ls.shard(id).take_journal();
            crate::repl::shard::feed(&ls, &state, id, bytes, seq);
            if stopping {
                return;
            }
            continue;
        };
        let (bytes, seq) = ls.shard(id).take_journal();
        if !bytes.is_empty() {
            crate::repl::shard::feed(&ls, &state, id, bytes.clone(), seq);
            if pending.is_empty() {
                pending = bytes;
            } else {
                pending.extend_from_slice(&bytes);
            }
            pending_seq = seq;
        }
        // In pieces: a large batch (a bulk load) must not hold the core for
        // one long write.
        let mut done = 0;
        let mut error = None;
        let write_began = Instant::now();
        while done < pending.len() {
            let end = (done + APPEND_CHUNK).min(pending.len());
            match file.append(&pending[done..end]).await {
                Ok(()) => {
                    ls.disks.shards.borrow_mut()[i].log_bytes += (end - done) as u64;
                    done = end;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            pending.drain(..done);
            failed(&ls, &state, i, &mut failing, describe(&e));
            if stopping {
                return;
            }
            continue;
        }
        if done > 0 {
            pending.clear();
            written_seq = pending_seq;
            unsynced = true;
        }
        if file.dsync && done > 0 {
            // O_DSYNC: the write was the fsync (and is timed as one).
            let us = write_began.elapsed().as_micros() as u64;
            ls.disks.shards.borrow_mut()[i].fsync_us.record(us);
            unsynced = false;
            last_sync = Instant::now();
        }
        let sync_now = unsynced
            && (p.fsync == Fsync::Always
                || stopping
                || (p.fsync == Fsync::EverySec && last_sync.elapsed() >= Duration::from_secs(1)));
        if sync_now {
            let t = Instant::now();
            if let Err(e) = file.sync().await {
                failed(&ls, &state, i, &mut failing, describe(&e));
                continue;
            }
            let us = t.elapsed().as_micros() as u64;
            ls.disks.shards.borrow_mut()[i].fsync_us.record(us);
            unsynced = false;
            last_sync = Instant::now();
        }
        if failing {
            failing = false;
            ls.disks.shards.borrow_mut()[i].error = None;
            state.disk_errors.fetch_sub(1, Ordering::SeqCst);
            tracing::info!(shard = id, "log writes succeed again");
        }
        {
            let mut disks = ls.disks.shards.borrow_mut();
            let d = &mut disks[i];
            // Under `always` a record is durable once fsynced; otherwise
            // nobody waits for it.
            if !unsynced || p.fsync != Fsync::Always {
                d.release(written_seq);
            }
            let grown = d.log_bytes > p.rewrite_min_bytes
                && p.rewrite_percentage > 0
                && d.log_bytes > d.base_bytes * (100 + p.rewrite_percentage) / 100;
            if grown && !d.snapshot_busy() && !stopping {
                tracing::info!(shard = id, bytes = d.log_bytes, "log grew: rewriting it");
                d.request_snapshot(None);
            }
        }
        if stopping && pending.is_empty() && ls.shard(id).take_journal().0.is_empty() {
            if let Some(f) = log.take() {
                if let Err(e) = f.close().await {
                    tracing::warn!(shard = id, "closing the log: {e}");
                }
            }
            return;
        }
    }
}

fn failed(ls: &LocalShards, state: &ServerState, i: usize, failing: &mut bool, e: String) {
    if !*failing {
        *failing = true;
        state.disk_errors.fetch_add(1, Ordering::SeqCst);
        tracing::error!(
            shard = ls.disks.shards.borrow()[i].shard,
            "log write failed: {e}"
        );
    }
    *state.disk_error.lock().unwrap_or_else(|p| p.into_inner()) = e.clone();
    ls.disks.shards.borrow_mut()[i].error = Some(e);
}

/// An I/O error as the system names it ("No space left on device"), the
/// way Redis words its -MISCONF replies.
fn describe(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    // Some wrappers append the operation and path after the system's words.
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// Begins a snapshot of shard `id`: the journal is cut at this instant; what
/// it held goes to the current log, a new log takes what follows, and the
/// snapshotter starts.
async fn begin_snapshot(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    i: usize,
    id: usize,
    log: &mut Option<LogFile>,
    pending: &mut Vec<u8>,
    pending_seq: &mut u64,
) {
    let Some(waiters) = ls.disks.shards.borrow_mut()[i].pending.take() else {
        return;
    };
    // Synchronously: cut the journal and begin the snapshot at one seq.
    let begun = {
        let mut s = ls.shard(id);
        let (bytes, seq) = s.take_journal();
        if !bytes.is_empty() {
            pending.extend_from_slice(&bytes);
            *pending_seq = seq;
            drop(s);
            crate::repl::shard::feed(ls, state, id, bytes, seq);
            s = ls.shard(id);
        }
        let (term, commit) = (s.journal_term(), s.last_commit());
        s.snapshot_begin(state.shards, term, commit)
    };
    let header = match begun {
        Ok(h) => h,
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(format!("{e:?}")));
            }
            return;
        }
    };
    {
        let mut disks = ls.disks.shards.borrow_mut();
        disks[i].snapshot_running = true;
        // Step figures are the running (or last) snapshot's.
        disks[i].longest_step_us = 0;
        disks[i].longest_step_cpu_us = 0;
        disks[i].steps = 0;
        disks[i].slow_steps = 0;
        disks[i].replaced_bytes = disks[i].log_bytes + pending.len() as u64;
    }
    let mut ok = Ok(());
    if let Some(old) = log.take() {
        // The old log gets everything up to the snapshot's seq, then closes.
        let mut old = old;
        let r = async {
            old.append(pending).await?;
            old.close().await
        }
        .await;
        match r {
            Ok(()) => pending.clear(),
            Err(e) => ok = Err(format!("finishing the log: {e}")),
        }
        match open_new_log(ls, i).await {
            Ok(f) => *log = Some(f),
            Err(e) => ok = Err(e),
        }
        if !pending.is_empty() {
            // Could not finish the old log: the new one takes those records
            // first (their order is kept; replay skips none).
            if let Some(f) = log.as_mut() {
                if f.append(pending).await.is_ok() {
                    pending.clear();
                }
            }
        }
    }
    if let Err(e) = ok {
        tracing::error!(shard = id, "snapshot not started: {e}");
        ls.shard(id).snapshot_abort();
        ls.disks.shards.borrow_mut()[i].snapshot_running = false;
        for w in waiters {
            let _ = w.send(Err(e.clone()));
        }
        return;
    }
    crate::runtime::spawn(super::snapshot::write(ls.clone(), i, id, header, waiters));
}
