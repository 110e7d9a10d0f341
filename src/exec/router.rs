//! Where a command runs: key → slot → shard → executor, inline when the
//! shard is local, as a message when it is not; and the cross-shard
//! transactions of multi-key commands (see `local.rs` for the lock protocol).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use keel_shards::{slot, Entry, Shard};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::{keys, strings, Ctx};
use crate::exec::blocking;
use crate::exec::command::{flags, KeyedFn, Spec, Split};
use crate::exec::local::{LocalShards, Msg, TxId};
use crate::resp::reply::Reply;
use crate::runtime::mesh::Sender;

/// One executor's view of every shard.
pub struct Router {
    pub shards: usize,
    pub me: usize,
    /// Lanes to every executor (bounded; see `runtime::mesh`).
    inboxes: Vec<Sender<Msg>>,
    pub local: Rc<LocalShards>,
    next_tx: Cell<u64>,
    /// Commit numbers of transactions, shared by all executors: taken while
    /// a transaction still holds its locks, so on every shard they grow in
    /// the order transactions applied (recovery relies on it).
    commits: Arc<AtomicU64>,
    /// The shards each open transaction of this executor wrote on.
    writers: RefCell<HashMap<TxId, Vec<usize>>>,
}

/// An executor went away (shutdown): the command cannot complete.
fn gone() -> CmdError {
    CmdError::other("server is shutting down")
}

/// How a keyed handler runs: whether it is refused when the shard is out
/// of memory, and whether it is a write (whose key lookups, as Redis's
/// lookupKeyWrite, count neither as keyspace hits nor misses).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    pub deny_oom: bool,
    pub write: bool,
}

impl Mode {
    pub fn of(spec: &Spec) -> Mode {
        Mode {
            deny_oom: spec.has(flags::DENYOOM),
            write: spec.has(flags::WRITE),
        }
    }

    /// Writes without the memory check: replay, merge, blocking pops.
    pub const WRITE: Mode = Mode {
        deny_oom: false,
        write: true,
    };
}

/// Runs a keyed handler, refusing writes that need memory the shard lacks.
///
/// A panic in a handler is a keel bug, but it must not take the executor's
/// task (and any cross-shard locks it holds) down with it: it becomes an
/// error reply and is logged.
///
/// The command's writes become its write record (see `keel_shards::journal`).
pub fn apply(f: KeyedFn, mode: Mode, s: &mut Shard, ctx: &Ctx, args: &[&[u8]]) -> CmdResult {
    s.command_begin();
    s.count_lookups(!mode.write);
    s.touch_lookups(!ctx.no_touch || args[0].eq_ignore_ascii_case(b"touch"));
    if mode.deny_oom && s.ensure_memory(ctx.now_ms).is_err() {
        return Err(CmdError::OutOfMemory);
    }
    let events = crate::exec::keyevents::before(s, ctx, args);
    s.tracking.set_writer(ctx.client);
    if ctx.track && !mode.write {
        crate::server::tracking::remember(s, ctx.client, args);
    }
    let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(s, ctx, args))) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(command = %String::from_utf8_lossy(args[0]), "command handler panicked");
            Err(CmdError::other("internal error while running the command"))
        }
    };
    if let Some(b) = events {
        crate::exec::keyevents::after(b, s, ctx, args, &r);
    }
    s.tracking.set_writer(0);
    s.command_end(ctx.db, args);
    s.touch_lookups(true);
    r
}

/// Writes a key back as a whole (the result of a cross-shard command), as one
/// `Put` or `Del` record.
fn put_back(s: &mut Shard, db: usize, key: &[u8], entry: Option<Entry>, now: u64) -> bool {
    s.command_begin();
    let before = s.seq();
    match entry {
        Some(e) => s.set(db, key, e, now),
        None => {
            // The delete's own time, for merge (see `cmd::keys::del`).
            s.hlc_now(now);
            s.delete(db, key, now);
        }
    }
    let wrote = s.seq() != before;
    if wrote {
        s.record_put(db, key);
    }
    wrote
}

/// After work on a shard: serves clients blocked on keys it made ready and
/// wakes the shard's log task when records wait.
///
/// A shard a transaction holds serves its blocked clients when unlocked.
pub fn serve_blocked(ls: &LocalShards, shard: usize) {
    if ls.shard(shard).has_ready() && !ls.is_locked(shard) {
        blocking::serve(ls, shard);
    }
    ls.kick_log(shard);
}

/// An argument list copied out of the input buffer (to send elsewhere).
pub fn owned(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

pub(super) fn borrowed(args: &[Vec<u8>]) -> Vec<&[u8]> {
    args.iter().map(|a| &a[..]).collect()
}

impl Router {
    pub fn new(
        shards: usize,
        me: usize,
        inboxes: Vec<Sender<Msg>>,
        local: Rc<LocalShards>,
        commits: Arc<AtomicU64>,
    ) -> Self {
        Router {
            shards,
            me,
            inboxes,
            local,
            next_tx: Cell::new(0),
            commits,
            writers: RefCell::new(HashMap::new()),
        }
    }

    /// Notes that transaction `tx` wrote on `shard`.
    fn note_write(&self, tx: TxId, shard: usize) {
        let mut w = self.writers.borrow_mut();
        let list = w.entry(tx).or_default();
        if !list.contains(&shard) {
            list.push(shard);
        }
    }

    pub fn executors(&self) -> usize {
        self.inboxes.len()
    }

    pub fn shard_of(&self, key: &[u8]) -> usize {
        slot::shard_of(key, self.shards)
    }

    pub fn executor_of(&self, shard: usize) -> usize {
        shard % self.executors()
    }

    /// Sends `msg` to `executor`, waiting while its lane from this core is
    /// full.
    pub(super) async fn send(&self, executor: usize, msg: Msg) -> Result<(), CmdError> {
        self.inboxes[executor].send(msg).await.map_err(|_| gone())
    }

    /// Sends `msg` to `executor` at once, past the lane's bound if need be:
    /// for unlocks (which free what others wait for) and batches of a
    /// pipeline (bounded by the pipeline itself).
    pub(super) fn send_now(&self, executor: usize, msg: Msg) -> Result<(), CmdError> {
        self.inboxes[executor].send_now(msg).map_err(|_| gone())
    }

    /// Runs `f` on one shard, inside transaction `tx` if given, then serves
    /// clients blocked on keys it made ready.
    pub async fn on_shard<T, F>(&self, shard: usize, tx: Option<TxId>, f: F) -> Result<T, CmdError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Shard) -> T + Send + 'static,
    {
        let (r, wrote) = self
            .on_local(shard, tx, move |ls| {
                let r = f(&mut ls.shard(shard));
                let wrote = ls.shard(shard).unit_wrote();
                serve_blocked(ls, shard);
                (r, wrote)
            })
            .await?;
        if let (Some(tx), true) = (tx, wrote) {
            self.note_write(tx, shard);
        }
        Ok(r)
    }

    /// Runs `f` with the executor-local state of `shard`'s executor (for
    /// registries that live beside the shards, such as blocked clients).
    pub async fn on_local<T, F>(&self, shard: usize, tx: Option<TxId>, f: F) -> Result<T, CmdError>
    where
        T: Send + 'static,
        F: FnOnce(&LocalShards) -> T + Send + 'static,
    {
        let e = self.executor_of(shard);
        if e == self.me {
            if tx.is_none() {
                self.local.wait_free(&[shard]).await;
            }
            return Ok(f(&self.local));
        }
        let (reply, answer) = oneshot::channel();
        let work = Box::new(move |ls: &LocalShards| {
            let _ = reply.send(f(ls));
        });
        self.send(
            e,
            Msg::Run {
                tx,
                shards: vec![shard],
                work,
            },
        )
        .await?;
        answer.await.map_err(|_| gone())
    }

    /// Runs `f` once on every executor (no locks) and collects the results
    /// in executor order.
    pub async fn broadcast<T, F>(&self, f: F) -> Result<Vec<T>, CmdError>
    where
        T: Send + 'static,
        F: Fn(&LocalShards) -> T + Send + Sync + 'static,
    {
        let all: Vec<usize> = (0..self.executors()).collect();
        self.on_executors(&all, f).await
    }

    /// Runs `f` once on each executor of `which` (ascending, no locks) and
    /// collects the results in that order.
    pub async fn on_executors<T, F>(&self, which: &[usize], f: F) -> Result<Vec<T>, CmdError>
    where
        T: Send + 'static,
        F: Fn(&LocalShards) -> T + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut pending = Vec::new();
        for &e in which {
            if e == self.me {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let f = f.clone();
            let work = Box::new(move |ls: &LocalShards| {
                let _ = reply.send(f(ls));
            });
            self.send(
                e,
                Msg::Run {
                    tx: None,
                    shards: vec![],
                    work,
                },
            )
            .await?;
            pending.push((e, answer));
        }
        let mut out: Vec<(usize, T)> = Vec::with_capacity(which.len());
        if which.contains(&self.me) {
            out.push((self.me, f(&self.local)));
        }
        for (e, answer) in pending {
            out.push((e, answer.await.map_err(|_| gone())?));
        }
        out.sort_by_key(|(e, _)| *e);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    /// Runs a keyed command: inline when its keys are on one local shard, as
    /// a message when on one remote shard, as a transaction when on several.
    pub async fn run(
        &self,
        spec: &'static Spec,
        f: KeyedFn,
        split: Split,
        ctx: Ctx,
        args: &[&[u8]],
        tx: Option<TxId>,
    ) -> CmdResult {
        let mode = Mode::of(spec);
        if split == Split::AllOk || split == Split::MsetNx {
            strings::check_pairs(args)?;
        }
        // streams
        if split == Split::Streams {
            let keys = crate::exec::command::keys_of(spec, args);
            if let Some(first) = keys.first().map(|k| self.shard_of(k)) {
                if keys.iter().any(|k| self.shard_of(k) != first) {
                    return self.run_streams(spec, f, ctx, args, tx).await;
                }
                return self.run_on(first, f, mode, ctx, args, tx).await;
            }
        }
        // SWAPDB: every shard, in one transaction (sortdump).
        if split == Split::AllShards {
            crate::cmd::swapdb::indexes(args)?;
            return self.run_everywhere(f, mode, ctx, args, tx).await;
        }
        // SORT whose BY/GET patterns name keys: every shard (sortdump).
        if split == Split::Patterns && self.shards > 1 && crate::cmd::sort::reads_patterns(args) {
            return self.run_patterns(f, ctx, args, tx).await;
        }
        if split == Split::SameShard || split == Split::Patterns {
            let keys = crate::exec::command::keys_of(spec, args);
            if let Some(first) = keys.first().map(|k| self.shard_of(k)) {
                if keys.iter().any(|k| self.shard_of(k) != first) {
                    let keys = keys.iter().map(|k| k.to_vec()).collect();
                    return self.run_gathered(f, ctx, args, keys, tx).await;
                }
                return self.run_on(first, f, mode, ctx, args, tx).await;
            }
        }
        let mut idx = spec.key_indexes(args.len());
        let first = match idx.next() {
            Some(i) => self.shard_of(args[i]),
            // A command whose key is optional, given none (OBJECT HELP):
            // one of this core's shards answers.
            None => match (0..self.shards).find(|s| self.executor_of(*s) == self.me) {
                Some(s) => return self.run_on(s, f, mode, ctx, args, tx).await,
                None => return Err(CmdError::Syntax),
            },
        };
        let single = idx.all(|i| self.shard_of(args[i]) == first);
        if single {
            return self.run_on(first, f, mode, ctx, args, tx).await;
        }
        self.run_split(spec, f, split, ctx, args, tx).await
    }

    /// Runs a keyed handler on one shard: inline when local, else as a
    /// message.
    async fn run_on(
        &self,
        shard: usize,
        f: KeyedFn,
        mode: Mode,
        ctx: Ctx,
        args: &[&[u8]],
        tx: Option<TxId>,
    ) -> CmdResult {
        if self.executor_of(shard) == self.me {
            if tx.is_none() {
                self.local.wait_free(&[shard]).await;
            }
            let r = apply(f, mode, &mut self.local.shard(shard), &ctx, args);
            if let (Some(tx), true) = (tx, self.local.shard(shard).unit_wrote()) {
                self.note_write(tx, shard);
            }
            serve_blocked(&self.local, shard);
            return r;
        }
        let args = owned(args);
        self.on_shard(shard, tx, move |s| {
            apply(f, mode, s, &ctx, &borrowed(&args))
        })
        .await?
    }

    /// A multi-key command over keys of several shards (SUNIONSTORE, LMOVE,
    /// ZINTER...), run whole and atomically: lock the shards, copy the keys
    /// into a scratch shard, run the ordinary handler there, and write back
    /// exactly the keys it changed. The handlers stay single-shard code.
    async fn run_gathered(
        &self,
        f: KeyedFn,
        ctx: Ctx,
        args: &[&[u8]],
        mut keys: Vec<Vec<u8>>,
        outer: Option<TxId>,
    ) -> CmdResult {
        keys.sort_unstable();
        keys.dedup();
        let mut shards: Vec<usize> = keys.iter().map(|k| self.shard_of(k)).collect();
        shards.sort_unstable();
        shards.dedup();
        let tx = self.enter(outer, &shards).await?;
        let result = self.gather_run_scatter(tx, f, ctx, args, &keys).await;
        self.leave(outer, tx, &shards);
        result
    }

    async fn gather_run_scatter(
        &self,
        tx: TxId,
        f: KeyedFn,
        ctx: Ctx,
        args: &[&[u8]],
        keys: &[Vec<u8>],
    ) -> CmdResult {
        let (db, now) = (ctx.db, ctx.now_ms);
        let mut scratch = Shard::new(usize::MAX);
        // A tracking client's read is remembered on the keys' own shards.
        let track = ctx.track
            && crate::exec::command::lookup(args[0]).is_some_and(|s| !s.has(flags::WRITE));
        let client = ctx.client;
        for key in keys {
            let k = key.clone();
            let entry = self
                .on_shard(self.shard_of(key), Some(tx), move |s| {
                    if track {
                        s.tracking.remember(&k, client);
                    }
                    s.peek(db, &k, now).map(|e| e.to_entry())
                })
                .await?;
            if let Some(e) = entry {
                scratch.set(db, key, e, now);
            }
            scratch.watch(db, key);
        }
        let result = apply(f, Mode::default(), &mut scratch, &ctx, args);
        let events = scratch.take_events();
        for key in keys {
            if scratch.watched_version(db, key, now) == 0 {
                continue;
            }
            let (k, entry) = (
                key.clone(),
                scratch.peek(db, key, now).map(|e| e.to_entry()),
            );
            self.on_shard(self.shard_of(key), Some(tx), move |s| {
                put_back(s, db, &k, entry, now)
            })
            .await?;
        }
        crate::exec::notify::publish(&self.local, &events);
        result
    }

    /// A keyless command that changes every shard (SWAPDB): runs on each
    /// in one transaction holding them all; the first shard's reply.
    async fn run_everywhere(
        &self,
        f: KeyedFn,
        mode: Mode,
        ctx: Ctx,
        args: &[&[u8]],
        outer: Option<TxId>,
    ) -> CmdResult {
        let all: Vec<usize> = (0..self.shards).collect();
        let tx = self.enter(outer, &all).await?;
        let mut first = None;
        for &s in &all {
            let a = owned(args);
            let r = self
                .on_shard(s, Some(tx), move |sh| {
                    apply(f, mode, sh, &ctx, &borrowed(&a))
                })
                .await;
            let failed = !matches!(r, Ok(Ok(_)));
            first.get_or_insert(r);
            if failed {
                break;
            }
        }
        self.leave(outer, tx, &all);
        first.unwrap_or(Err(CmdError::Syntax))?
    }

    /// SORT with BY/GET patterns, which may name keys on any shard: holds
    /// every shard, asks the sorted key's shard which keys the patterns
    /// name, and runs the handler over copies of them as
    /// [`Router::run_gathered`] does (writing back only the destination).
    async fn run_patterns(
        &self,
        f: KeyedFn,
        ctx: Ctx,
        args: &[&[u8]],
        outer: Option<TxId>,
    ) -> CmdResult {
        let all: Vec<usize> = (0..self.shards).collect();
        let tx = self.enter(outer, &all).await?;
        let a = owned(args);
        let keys = self
            .on_shard(self.shard_of(args[1]), Some(tx), move |s| {
                crate::cmd::sort::pattern_keys(s, &ctx, &borrowed(&a))
            })
            .await;
        let result = match keys {
            Ok(Ok(keys)) => self.gather_run_scatter(tx, f, ctx, args, &keys).await,
            Ok(Err(e)) | Err(e) => Err(e),
        };
        self.leave(outer, tx, &all);
        result
    }

    /// Waits until every record the shards of executors `which` had
    /// produced when asked is durable (`appendfsync always`).
    pub async fn wait_durable(&self, which: &[usize]) -> Result<(), CmdError> {
        let waits = self
            .on_executors(which, |ls| {
                ls.ids()
                    .filter_map(|id| {
                        let seq = ls.shard(id).last_record_seq();
                        let i = id / ls.executors;
                        ls.disks
                            .shards
                            .borrow_mut()
                            .get_mut(i)
                            .and_then(|d| d.wait_durable(seq))
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        for w in waits.into_iter().flatten() {
            let _ = w.await;
        }
        Ok(())
    }

    /// The shards a keyed command touches.
    pub fn shards_of(&self, spec: &Spec, args: &[&[u8]]) -> Vec<usize> {
        match spec.kind {
            crate::exec::command::Kind::Keyed(_, Split::Patterns)
                if crate::cmd::sort::reads_patterns(args) =>
            {
                return (0..self.shards).collect();
            }
            crate::exec::command::Kind::Keyed(_, Split::AllShards) => {
                return (0..self.shards).collect();
            }
            _ => {}
        }
        crate::exec::command::keys_of(spec, args)
            .iter()
            .map(|k| self.shard_of(k))
            .collect()
    }

    /// A commit number for a unit of records made on one shard without a
    /// lock (a script run whole on its shard's core): numbered like a
    /// transaction's, from the same counter.
    pub fn next_commit(&self) -> u64 {
        self.commits.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn new_tx(&self) -> TxId {
        let n = self.next_tx.get() + 1;
        self.next_tx.set(n);
        ((self.me as u64) << 48) | n
    }

    /// Locks `shards` (sorted, deduplicated) in ascending executor order.
    pub async fn begin(&self, tx: TxId, shards: &[usize]) -> Result<(), CmdError> {
        for e in 0..self.executors() {
            let mine: Vec<usize> = shards
                .iter()
                .copied()
                .filter(|&s| self.executor_of(s) == e)
                .collect();
            if mine.is_empty() {
                continue;
            }
            if e == self.me {
                self.local.lock(tx, mine).await;
            } else {
                let (grant, granted) = oneshot::channel();
                self.send(
                    e,
                    Msg::Lock {
                        tx,
                        shards: mine,
                        grant,
                    },
                )
                .await?;
                if granted.await.is_err() {
                    self.end(tx, shards);
                    return Err(gone());
                }
            }
        }
        Ok(())
    }

    /// The transaction to run a multi-shard command in: the caller's (inside
    /// EXEC, shards already locked), or a new one that locks `shards`.
    async fn enter(&self, outer: Option<TxId>, shards: &[usize]) -> Result<TxId, CmdError> {
        if let Some(tx) = outer {
            return Ok(tx);
        }
        let tx = self.new_tx();
        self.begin(tx, shards).await?;
        Ok(tx)
    }

    /// Unlocks what [`Router::enter`] locked (nothing for the caller's tx).
    fn leave(&self, outer: Option<TxId>, tx: TxId, shards: &[usize]) {
        if outer.is_none() {
            self.end(tx, shards);
        }
    }

    pub fn end(&self, tx: TxId, shards: &[usize]) {
        let parts: Vec<u64> = self
            .writers
            .borrow_mut()
            .remove(&tx)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s as u64)
            .collect();
        // Numbered while every lock is still held.
        let commit = if parts.is_empty() {
            0
        } else {
            self.commits.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut executors: Vec<usize> = shards.iter().map(|&s| self.executor_of(s)).collect();
        executors.dedup();
        executors.sort_unstable();
        executors.dedup();
        for e in executors {
            if e == self.me {
                self.local.unlock(tx, commit, &parts);
            } else {
                let _ = self.send_now(
                    e,
                    Msg::Unlock {
                        tx,
                        commit,
                        parts: parts.clone(),
                    },
                );
            }
        }
    }

    /// XREAD / XREADGROUP over streams on several shards, as one
    /// transaction: every key is checked first, one by one in key order
    /// (type, group, id), so the answer is the first error in key order and
    /// nothing was read or delivered; then each shard reads its own keys
    /// (no stream is copied), and the per-key results are put back in key
    /// order.
    async fn run_streams(
        &self,
        spec: &'static Spec,
        f: KeyedFn,
        ctx: Ctx,
        args: &[&[u8]],
        outer: Option<TxId>,
    ) -> CmdResult {
        let keys = crate::exec::command::keys_of(spec, args);
        let n = keys.len();
        let at = args.len() - 2 * n;
        let part = |idx: &[usize]| -> Vec<Vec<u8>> {
            let mut a = owned(&args[..at]);
            a.extend(idx.iter().map(|&i| keys[i].to_vec()));
            a.extend(idx.iter().map(|&i| args[at + n + i].to_vec()));
            a
        };
        let mut shards: Vec<usize> = keys.iter().map(|k| self.shard_of(k)).collect();
        shards.sort_unstable();
        shards.dedup();
        let tx = self.enter(outer, &shards).await?;
        let result = async {
            for (i, key) in keys.iter().enumerate() {
                let a = part(&[i]);
                self.on_shard(self.shard_of(key), Some(tx), move |sh| {
                    crate::cmd::streams::read_check(sh, &ctx, &borrowed(&a))
                })
                .await??;
            }
            let mode = Mode::of(spec);
            let mut found: Vec<(usize, Reply, Reply)> = Vec::new();
            for &s in &shards {
                let idx: Vec<usize> = (0..n).filter(|&i| self.shard_of(keys[i]) == s).collect();
                let a = part(&idx);
                let r = self
                    .on_shard(s, Some(tx), move |sh| {
                        apply(f, mode, sh, &ctx, &borrowed(&a))
                    })
                    .await??;
                let Reply::KeyedArrays(pairs) = r else {
                    continue;
                };
                // A part lists its keys in argument order, skipping those
                // with nothing: match them up in that order.
                let mut next = idx.iter();
                for (k, v) in pairs {
                    let pos = next
                        .by_ref()
                        .find(|&&i| matches!(&k, Reply::Bulk(b) if b[..] == *keys[i]))
                        .copied()
                        .unwrap_or(n);
                    found.push((pos, k, v));
                }
            }
            found.sort_by_key(|p| p.0);
            Ok(if found.is_empty() {
                Reply::NilArray
            } else {
                Reply::KeyedArrays(found.into_iter().map(|(_, k, v)| (k, v)).collect())
            })
        }
        .await;
        self.leave(outer, tx, &shards);
        result
    }

    /// A multi-key command whose keys span shards, as one transaction.
    async fn run_split(
        &self,
        spec: &'static Spec,
        f: KeyedFn,
        split: Split,
        ctx: Ctx,
        args: &[&[u8]],
        outer: Option<TxId>,
    ) -> CmdResult {
        let step = spec.step.max(1) as usize;
        let mut shards = self.shards_of(spec, args);
        shards.sort_unstable();
        shards.dedup();
        let tx = self.enter(outer, &shards).await?;
        let result = if split == Split::Move {
            self.run_move(tx, ctx, args).await
        } else {
            // Each shard's part: the command name plus its keys (and, for
            // MSET-like commands, their values), in argument order.
            let mut parts: Vec<(usize, Vec<Vec<u8>>, Vec<usize>)> = shards
                .iter()
                .map(|&s| (s, vec![args[0].to_vec()], Vec::new()))
                .collect();
            for (pos, i) in spec.key_indexes(args.len()).enumerate() {
                let s = self.shard_of(args[i]);
                if let Some(part) = parts.iter_mut().find(|p| p.0 == s) {
                    part.1.extend(args[i..i + step].iter().map(|a| a.to_vec()));
                    part.2.push(pos);
                }
            }
            self.run_parts(tx, f, split, Mode::of(spec), ctx, parts, args.len())
                .await
        };
        self.leave(outer, tx, &shards);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_parts(
        &self,
        tx: TxId,
        f: KeyedFn,
        split: Split,
        mode: Mode,
        ctx: Ctx,
        parts: Vec<(usize, Vec<Vec<u8>>, Vec<usize>)>,
        argc: usize,
    ) -> CmdResult {
        if split == Split::MsetNx {
            let mut existing = 0;
            for (s, a, _) in &parts {
                let a = a.clone();
                let r = self
                    .on_shard(*s, Some(tx), move |sh| {
                        strings::count_existing(sh, &ctx, &borrowed(&a))
                    })
                    .await??;
                if let Reply::Int(n) = r {
                    existing += n;
                }
            }
            if existing > 0 {
                return Ok(Reply::Int(0));
            }
        }
        let mut sum = 0;
        let mut gathered: Vec<Reply> = vec![Reply::Nil; argc];
        // The parts' keyspace events, published in key order once all ran
        // (as one shard would have produced them).
        let mut events: Vec<(usize, keel_shards::notify::KeyEvent)> = Vec::new();
        for (s, a, positions) in parts {
            let keys = a.clone();
            let (r, evs) = self
                .on_shard(s, Some(tx), move |sh| {
                    let r = apply(f, mode, sh, &ctx, &borrowed(&a));
                    (r, sh.take_events())
                })
                .await?;
            let r = r?;
            let step = (keys.len() - 1) / positions.len().max(1);
            for e in evs {
                let pos = (0..positions.len())
                    .find(|&j| {
                        keys.get(1 + j * step.max(1))
                            .is_some_and(|k| k[..] == e.key[..])
                    })
                    .map_or(usize::MAX, |j| positions[j]);
                events.push((pos, e));
            }
            match (split, r) {
                (Split::Sum, Reply::Int(n)) => sum += n,
                (Split::Gather, Reply::Array(items)) => {
                    for (p, item) in positions.into_iter().zip(items) {
                        gathered[p] = item;
                    }
                }
                _ => {}
            }
        }
        events.sort_by_key(|(pos, _)| *pos);
        let events: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
        crate::exec::notify::publish(&self.local, &events);
        Ok(match split {
            Split::Sum => Reply::Int(sum),
            Split::Gather => {
                gathered.truncate(argc - 1);
                Reply::Array(gathered)
            }
            Split::MsetNx => Reply::Int(1),
            _ => Reply::Ok,
        })
    }

    /// RENAME, RENAMENX and COPY between two shards.
    async fn run_move(&self, tx: TxId, ctx: Ctx, args: &[&[u8]]) -> CmdResult {
        let name = String::from_utf8_lossy(args[0]).to_lowercase();
        let (src, dst) = (args[1].to_vec(), args[2].to_vec());
        let (copy, nx) = (name == "copy", name == "renamenx");
        let opts = if copy {
            Some(keys::copy_options(args, ctx.db)?)
        } else {
            None
        };
        let (src_shard, dst_shard) = (self.shard_of(&src), self.shard_of(&dst));
        let key = src.clone();
        let entry = self
            .on_shard(src_shard, Some(tx), move |s| {
                s.peek(ctx.db, &key, ctx.now_ms).map(|e| e.to_entry())
            })
            .await?;
        let Some(entry) = entry else {
            return if copy {
                Ok(Reply::Int(0))
            } else {
                Err(CmdError::NoSuchKey)
            };
        };
        let (dst_db, replace) = match &opts {
            Some(o) => (o.dst_db, o.replace),
            None => (ctx.db, !nx),
        };
        let stored = self
            .on_shard(dst_shard, Some(tx), move |s| {
                if s.ensure_memory(ctx.now_ms).is_err() {
                    return Err(CmdError::OutOfMemory);
                }
                s.command_begin();
                let stored = keys::put(s, &ctx, dst_db, &dst, entry, replace);
                if stored {
                    s.record_put(dst_db, &dst);
                }
                Ok(stored)
            })
            .await??;
        if !copy && stored {
            let key = src.clone();
            self.on_shard(src_shard, Some(tx), move |s| {
                put_back(s, ctx.db, &key, None, ctx.now_ms)
            })
            .await?;
        }
        if stored {
            let events = crate::exec::keyevents::moved(&name, ctx.db, dst_db, &src, args[2]);
            crate::exec::notify::publish(&self.local, &events);
        }
        Ok(match (copy || nx, stored) {
            (true, s) => Reply::Int(s as i64),
            (false, _) => Reply::Ok,
        })
    }
}
