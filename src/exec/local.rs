//! The shards one executor owns, and the locks that make commands spanning
//! several shards atomic.
//!
//! # Protocol
//! Work reaches a shard in one of two ways: inline, from a connection on the
//! owning executor, or as a [`Msg`] from another executor's connection. Both
//! run to completion without yielding, so a command that touches only one
//! executor's shards is atomic by construction and needs no lock.
//!
//! A command whose keys span executors runs as a *transaction* `tx`:
//! 1. it locks, executor by executor in ascending order, every shard it
//!    touches (`Msg::Lock`, all of one executor's shards at once);
//! 2. it runs its parts (`Msg::Run` carrying `tx`, which may enter its own
//!    locked shards);
//! 3. it unlocks (`Msg::Unlock`).
//!
//! While a shard is locked, every other piece of work for it waits in the
//! executor's FIFO `waiting` queue (remote work) or parks on a wake-up
//! (inline work) and re-checks after each unlock. No other client can
//! observe a half-applied transaction.
//!
//! # Invariants
//! - Locks are taken in one global order (ascending executor), so two
//!   transactions never wait on each other in a cycle: no deadlock.
//! - The message loop never blocks: work that cannot run is queued, never
//!   awaited, so a transaction's own `Run` and `Unlock` always get through.
//! - A `RefCell` borrow of a shard is never held across an `.await`.
//!
//! # Waiting without awaiting
//! A script runs synchronously (Lua cannot await), yet one that spans
//! executors must wait for another executor to run its `redis.call` on a
//! shard the script has locked. [`LocalShards::block_on`] waits by spinning
//! on the answer while it keeps handling this executor's own messages, so
//! another script that waits on this executor the same way is served and
//! two such waits never deadlock. While it waits, work that holds no lock
//! (`Run` without a transaction, which may itself be a script) is deferred
//! until the script ends: only one script runs on a core at a time.
//! Blocked clients of a locked shard are served when it is unlocked, so
//! they never see a transaction or a script half applied.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;
use keel_shards::Shard;

use crate::exec::blocking::Waiters;
use crate::exec::pubsub::Registry;
use crate::persist::disk::Disks;
use crate::runtime::mesh::Drain;
use crate::server::client::{ClientInfo, CommandStats};

/// Identifies a cross-shard transaction: its coordinator's executor in the
/// high bits and a per-executor counter below.
pub type TxId = u64;

/// Work to run on the receiving executor.
pub type Work = Box<dyn FnOnce(&LocalShards) + Send>;

/// A message from one executor to another.
pub enum Msg {
    /// Run `work` once `shards` are not locked by anyone but `tx`.
    Run {
        tx: Option<TxId>,
        shards: Vec<usize>,
        work: Work,
    },
    /// Lock `shards` for `tx`, then answer on `grant`.
    Lock {
        tx: TxId,
        shards: Vec<usize>,
        grant: oneshot::Sender<()>,
    },
    /// Release every shard `tx` holds here; `commit` numbers the
    /// transaction and `parts` are the shards it wrote on (for the units its
    /// records form, see `keel_shards::journal`).
    Unlock {
        tx: TxId,
        commit: u64,
        parts: Vec<u64>,
    },
}

enum Waiting {
    Run {
        shards: Vec<usize>,
        work: Work,
    },
    Lock {
        tx: TxId,
        shards: Vec<usize>,
        grant: oneshot::Sender<()>,
    },
    Wake(oneshot::Sender<()>),
}

struct Locks {
    owner: Vec<Option<TxId>>,
    waiting: VecDeque<Waiting>,
}

/// The shards one executor owns. Global shard `g` lives on executor
/// `g % executors` at local index `g / executors`.
pub struct LocalShards {
    pub executor: usize,
    pub executors: usize,
    shards: Vec<RefCell<Shard>>,
    locks: RefCell<Locks>,
    /// This executor's connections, for CLIENT LIST and INFO clients.
    pub clients: RefCell<Vec<Rc<RefCell<ClientInfo>>>>,
    /// Per-command counters of this executor's connections.
    pub stats: RefCell<CommandStats>,
    /// Pub/Sub subscriptions of this executor's connections.
    pub pubsub: RefCell<Registry>,
    /// Clients blocked on keys of this executor's shards.
    pub blocked: RefCell<Waiters>,
    /// The shards' logs and snapshots.
    pub disks: Disks,
    /// The shards' replication state, by local index.
    pub repl: RefCell<Vec<crate::repl::shard::ShardRepl>>,
    /// This executor's inbox, for [`LocalShards::block_on`].
    pub inbox: RefCell<Option<Drain<Msg>>>,
    /// Inside [`LocalShards::block_on`]: lock-free work is deferred.
    nested: Cell<bool>,
    /// Where keyspace events go (see `exec::notify`); unset in tests that
    /// run shards without a server.
    pub notify_hub: std::cell::OnceCell<std::sync::Arc<crate::exec::notify::Hub>>,
    /// Where client-side caching invalidations go (see `server::tracking`).
    pub tracking: std::cell::OnceCell<std::sync::Arc<crate::server::tracking::Directory>>,
    deferred: RefCell<Vec<(Vec<usize>, Work)>>,
}

impl LocalShards {
    pub fn new(executor: usize, executors: usize, total_shards: usize) -> Self {
        let shards = (executor..total_shards)
            .step_by(executors)
            .map(Shard::new)
            .collect();
        Self::with_shards(executor, executors, shards)
    }

    /// This executor's shards, already built (by recovery), in local order.
    pub fn with_shards(executor: usize, executors: usize, shards: Vec<Shard>) -> Self {
        let shards: Vec<RefCell<Shard>> = shards.into_iter().map(RefCell::new).collect();
        let n = shards.len();
        LocalShards {
            executor,
            executors,
            shards,
            locks: RefCell::new(Locks {
                owner: vec![None; n],
                waiting: VecDeque::new(),
            }),
            clients: RefCell::new(Vec::new()),
            stats: RefCell::new(CommandStats::default()),
            pubsub: RefCell::new(Registry::default()),
            blocked: RefCell::new(Waiters::default()),
            disks: Disks::default(),
            repl: RefCell::new(Vec::new()),
            inbox: RefCell::new(None),
            nested: Cell::new(false),
            notify_hub: std::cell::OnceCell::new(),
            tracking: std::cell::OnceCell::new(),
            deferred: RefCell::new(Vec::new()),
        }
    }

    fn index(&self, global: usize) -> usize {
        global / self.executors
    }

    /// The local index of global shard `global` (its place in per-executor
    /// vectors such as `disks` and `repl`).
    pub fn local_index(&self, global: usize) -> usize {
        self.index(global)
    }

    /// Borrows a shard. Panics only on a keel bug (a borrow held across an
    /// await), never on client input.
    pub fn shard(&self, global: usize) -> RefMut<'_, Shard> {
        self.shards[self.index(global)].borrow_mut()
    }

    /// After work on shard `global`: publishes the keyspace events it
    /// noted and wakes its log task if records wait. Invalidations wait
    /// while a transaction holds the shard: a client learns of a MULTI's
    /// keys in one message per prefix, after EXEC (see [`Self::unlock`]).
    pub fn kick_log(&self, global: usize) {
        if self.shard(global).has_events() {
            crate::exec::notify::flush(self, global);
        }
        if self.shard(global).tracking.has_pending() && !self.is_locked(global) {
            crate::server::tracking::flush(self, &[global]);
        }
        if self.shard(global).journal_pending() {
            if let Some(d) = self.disks.shards.borrow_mut().get_mut(self.index(global)) {
                d.kick();
            }
        }
    }

    /// Global ids of the shards this executor owns.
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.shards.len()).map(|i| i * self.executors + self.executor)
    }

    fn free_for(&self, locks: &Locks, shards: &[usize], tx: Option<TxId>) -> bool {
        shards.iter().all(|&g| match locks.owner[self.index(g)] {
            None => true,
            Some(owner) => Some(owner) == tx,
        })
    }

    /// Whether inline work may touch `shards` now.
    pub fn is_free(&self, shards: &[usize]) -> bool {
        self.free_for(&self.locks.borrow(), shards, None)
    }

    /// Handles one message from another executor.
    pub fn handle(&self, msg: Msg) {
        match msg {
            Msg::Run { tx, shards, work } => self.run_or_queue(tx, shards, work),
            Msg::Lock { tx, shards, grant } => self.lock_or_queue(tx, shards, grant),
            Msg::Unlock { tx, commit, parts } => self.unlock(tx, commit, &parts),
        }
    }

    /// Runs `work` now if `shards` are free for `tx`, else queues it.
    fn run_or_queue(&self, tx: Option<TxId>, shards: Vec<usize>, work: Work) {
        if tx.is_none() && self.nested.get() {
            self.deferred.borrow_mut().push((shards, work));
            return;
        }
        let runnable = self.free_for(&self.locks.borrow(), &shards, tx);
        if runnable {
            work(self);
        } else {
            self.locks
                .borrow_mut()
                .waiting
                .push_back(Waiting::Run { shards, work });
        }
    }

    fn lock_or_queue(&self, tx: TxId, shards: Vec<usize>, grant: oneshot::Sender<()>) {
        let mut locks = self.locks.borrow_mut();
        if self.free_for(&locks, &shards, Some(tx)) {
            for &g in &shards {
                locks.owner[self.index(g)] = Some(tx);
            }
            drop(locks);
            // The transaction's records on each shard form one unit.
            for &g in &shards {
                self.shard(g).unit_begin();
            }
            if grant.send(()).is_err() {
                // The coordinator is gone: nobody will unlock for it.
                self.unlock(tx, 0, &[]);
            }
        } else {
            locks.waiting.push_back(Waiting::Lock { tx, shards, grant });
        }
    }

    /// Locks `shards` for a transaction coordinated on this executor.
    pub async fn lock(&self, tx: TxId, shards: Vec<usize>) {
        let (grant, granted) = oneshot::channel();
        self.lock_or_queue(tx, shards, grant);
        let _ = granted.await;
    }

    /// Releases `tx`'s shards, closing its units as transaction `commit`
    /// over `parts`, and lets waiting work through, in order.
    pub fn unlock(&self, tx: TxId, commit: u64, parts: &[u64]) {
        let mut released = Vec::new();
        let pending = {
            let mut locks = self.locks.borrow_mut();
            for (i, owner) in locks.owner.iter_mut().enumerate() {
                if *owner == Some(tx) {
                    *owner = None;
                    self.shards[i].borrow_mut().unit_end(commit, parts);
                    if let Some(d) = self.disks.shards.borrow_mut().get_mut(i) {
                        d.kick();
                    }
                    released.push(i * self.executors + self.executor);
                }
            }
            std::mem::take(&mut locks.waiting)
        };
        // The transaction's invalidations, together, now that it is whole.
        if released
            .iter()
            .any(|&g| self.shard(g).tracking.has_pending())
        {
            crate::server::tracking::flush(self, &released);
        }
        // Clients blocked on keys the transaction made ready, now that it
        // is whole.
        for g in released {
            if self.shard(g).has_ready() {
                crate::exec::blocking::serve(self, g);
            }
        }
        for w in pending {
            match w {
                Waiting::Run { shards, work } => self.run_or_queue(None, shards, work),
                Waiting::Lock { tx, shards, grant } => self.lock_or_queue(tx, shards, grant),
                Waiting::Wake(w) => {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Whether a transaction holds `global` now.
    pub fn is_locked(&self, global: usize) -> bool {
        self.locks.borrow().owner[self.index(global)].is_some()
    }

    /// Runs `fut` to completion without returning to the executor: polls
    /// it, and between polls handles this executor's messages (deferring
    /// lock-free work, see the module notes). For futures that only wait on
    /// other executors (a transaction's remote parts), never on a task of
    /// this one.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let was = self.nested.replace(true);
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = Vec::new();
        let mut idle = 0u32;
        let out = loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                break v;
            }
            let got = self
                .inbox
                .borrow()
                .as_ref()
                .is_some_and(|d| d.try_drain(&mut batch));
            if got {
                idle = 0;
                for msg in batch.drain(..) {
                    self.handle(msg);
                }
            } else {
                idle = idle.saturating_add(1);
                if idle < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        };
        self.nested.set(was);
        out
    }

    /// Runs the work [`LocalShards::block_on`] deferred, in arrival order.
    pub fn run_deferred(&self) {
        if self.nested.get() {
            return;
        }
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        for (shards, work) in deferred {
            self.run_or_queue(None, shards, work);
        }
    }

    /// Waits until inline work may touch `shards`. The caller must then run
    /// without awaiting in between.
    pub async fn wait_free(&self, shards: &[usize]) {
        while !self.is_free(shards) {
            let (tx, rx) = oneshot::channel();
            self.locks.borrow_mut().waiting.push_back(Waiting::Wake(tx));
            let _ = rx.await;
        }
    }
}
