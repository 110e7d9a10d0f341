//! One shard: a core's slice of the keyspace, its databases, its write
//! sequence, expiry and memory accounting.
//!
//! A shard is plain data: it is only ever touched by the executor that owns
//! it, so nothing here locks. Time comes in as `now_ms` arguments; the engine
//! never reads a clock, which keeps replay and tests deterministic.

use std::collections::HashMap;

use crate::digest::Digest;
use crate::hlc::{Hlc, HlcClock};
use crate::journal::Journal;
use crate::keyspace::{EntryNode, EntryRef, Keyspace};
use crate::record::Op;
use crate::snapshot::Snapshot;
use crate::table::Chain;
use crate::value::{Entry, Value};

/// Databases per shard, as Redis's default `databases 16`.
pub const DATABASES: usize = 16;

/// A database no client can SELECT, stored, logged, replicated and merged
/// like the others: server-wide state that must travel with the data
/// (the function libraries) lives here. FLUSHALL, eviction, expiry and
/// key counts leave it alone.
pub const META_DB: usize = DATABASES;

/// Databases a shard stores: the clients' and [`META_DB`].
pub const STORED_DBS: usize = DATABASES + 1;

/// Bumped whenever any shard in the process changes [`META_DB`], by any
/// path (a command, replay, replication, merge, a snapshot load): whoever
/// caches what it holds compares this number to know the cache is stale.
pub static META_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[inline]
fn touch(db: usize) {
    if db == META_DB {
        META_EPOCH.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// How keys are chosen for eviction when a shard is over its memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionPolicy {
    NoEviction,
    AllKeysLru,
    AllKeysRandom,
    VolatileLru,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    pub const NAMES: [&'static str; 6] = [
        "noeviction",
        "allkeys-lru",
        "allkeys-random",
        "volatile-lru",
        "volatile-random",
        "volatile-ttl",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "noeviction" => Self::NoEviction,
            "allkeys-lru" => Self::AllKeysLru,
            "allkeys-random" => Self::AllKeysRandom,
            "volatile-lru" => Self::VolatileLru,
            "volatile-random" => Self::VolatileRandom,
            "volatile-ttl" => Self::VolatileTtl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Counters `INFO stats` aggregates over shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardStats {
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub expired_keys: u64,
    pub evicted_keys: u64,
}

/// The shard is over its memory limit and may not evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// A watched key: (database, name).
type WatchedKey = (usize, Box<[u8]>);
/// How many connections watch a key, and its version.
type Watchers = (u32, u64);

#[derive(Default)]
pub(crate) struct Db {
    pub(crate) dict: Keyspace,
    /// Keys with an expiry: active expiry skips databases without any.
    pub(crate) volatile: usize,
    /// Where active expiry resumes its walk.
    expire_cursor: u64,
}

pub struct Shard {
    pub id: usize,
    pub(crate) dbs: Vec<Db>,
    pub(crate) seq: u64,
    /// Payload bytes: keys, values and per-entry overhead (not the tables).
    pub(crate) used: usize,
    maxmemory: usize,
    policy: EvictionPolicy,
    rng: u64,
    /// Stamps every write with a hybrid-logical-clock time.
    pub(crate) clock: HlcClock,
    /// The point-in-time snapshot being taken, if any (see [`crate::snapshot`]).
    pub(crate) snap: Option<Box<Snapshot>>,
    /// Entries snapshots saved ahead of their walk because a write was about
    /// to change them (copy-on-write), over the shard's life.
    pub(crate) snapshot_cow: u64,
    pub stats: ShardStats,
    /// Keys some connection WATCHes: (watchers, version). Every change to
    /// such a key bumps its version; EXEC compares versions.
    watched: HashMap<WatchedKey, Watchers>,
    /// Keys clients are blocked on (BLPOP...), with how many wait.
    blocking: HashMap<WatchedKey, u32>,
    /// Blocked-on keys written since the server last looked: their waiters
    /// may now be served.
    ready: Vec<(usize, Vec<u8>)>,
    /// Write records not yet handed to the log (see `journal.rs`).
    journal: Journal,
    /// Replay: the HLC time the next write must take.
    forced_hlc: Option<Hlc>,
    /// Whether read lookups count as keyspace hits and misses: off while a
    /// write command runs (see [`Shard::count_lookups`]).
    counting: bool,
    /// A backup's shard: its writes come only from the primary's records,
    /// so it never expires or evicts on its own (an expired key is hidden
    /// from reads until the primary's `Del` arrives).
    follower: bool,
}

impl Shard {
    pub fn new(id: usize) -> Self {
        let mut dbs = Vec::with_capacity(STORED_DBS);
        dbs.resize_with(STORED_DBS, Db::default);
        Shard {
            id,
            dbs,
            seq: 0,
            used: 0,
            maxmemory: 0,
            policy: EvictionPolicy::NoEviction,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (id as u64).wrapping_add(1),
            clock: HlcClock::new(u64::MAX / 2),
            snap: None,
            snapshot_cow: 0,
            stats: ShardStats::default(),
            watched: HashMap::new(),
            blocking: HashMap::new(),
            ready: Vec::new(),
            journal: Journal::default(),
            forced_hlc: None,
            counting: true,
            follower: false,
        }
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    pub(crate) fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Makes the shard a backup's (see the `follower` field) or a primary's.
    pub fn set_follower(&mut self, on: bool) {
        self.follower = on;
    }

    pub fn is_follower(&self) -> bool {
        self.follower
    }

    /// Replay: sets the shard's seq to a record's.
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Replay: the next write takes HLC time `hlc`, as the original did;
    /// [`Shard::replayed`] ends the record.
    pub fn replay_at(&mut self, hlc: Hlc) {
        self.forced_hlc = Some(hlc);
    }

    /// Merge: forgets a time forced with [`Shard::replay_at`] that no write
    /// took (the merged command turned out to change nothing).
    pub fn end_forced_hlc(&mut self) {
        self.forced_hlc = None;
    }

    /// Replay: a record is applied; its seq and time become the shard's.
    pub fn replayed(&mut self, seq: u64, hlc: Hlc) {
        self.forced_hlc = None;
        self.seq = seq;
        // A time from our own past never exceeds the drift bound.
        let _ = self.clock.update(hlc, hlc.physical_ms());
    }

    /// The last HLC time issued or seen.
    pub fn hlc_last(&self) -> Hlc {
        self.clock.last()
    }

    /// The shard's write sequence: the number of writes it has applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Marks one applied write. Every mutation of the keyspace goes through
    /// here exactly once, which is where the write record will be emitted.
    pub fn wrote(&mut self) {
        self.seq += 1;
    }

    /// Starts watching a key; returns its current version.
    pub fn watch(&mut self, db: usize, key: &[u8]) -> u64 {
        let w = self.watched.entry((db, key.into())).or_insert((0, 0));
        w.0 += 1;
        w.1
    }

    /// Stops one watcher of a key.
    pub fn unwatch(&mut self, db: usize, key: &[u8]) {
        let k = (db, Box::<[u8]>::from(key));
        if let Some(w) = self.watched.get_mut(&k) {
            w.0 -= 1;
            if w.0 == 0 {
                self.watched.remove(&k);
            }
        }
    }

    /// A watched key's version (it changes whenever the key does).
    pub fn watched_version(&mut self, db: usize, key: &[u8], now_ms: u64) -> u64 {
        // A key that expired since it was watched counts as changed.
        self.expire_if_due(db, key, now_ms);
        self.watched
            .get(&(db, Box::<[u8]>::from(key)))
            .map_or(0, |w| w.1)
    }

    /// Marks a change to `key`: bumps its WATCH version and flags it ready
    /// for clients blocked on it.
    fn touch_watched(&mut self, db: usize, key: &[u8]) {
        if self.watched.is_empty() && self.blocking.is_empty() {
            return;
        }
        let k = (db, Box::<[u8]>::from(key));
        if let Some(w) = self.watched.get_mut(&k) {
            w.1 += 1;
        }
        if self.blocking.contains_key(&k) && !self.ready.iter().any(|(d, r)| *d == db && r == key) {
            self.ready.push((db, key.to_vec()));
        }
    }

    /// Notes one more client blocked on a key.
    pub fn block_on(&mut self, db: usize, key: &[u8]) {
        *self.blocking.entry((db, key.into())).or_insert(0) += 1;
    }

    /// Notes one blocked client less on a key.
    pub fn unblock(&mut self, db: usize, key: &[u8]) {
        let k = (db, Box::<[u8]>::from(key));
        if let Some(n) = self.blocking.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.blocking.remove(&k);
            }
        }
    }

    /// Blocked-on keys written since the last call.
    pub fn take_ready(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.ready)
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn used_memory(&self) -> usize {
        self.used + self.dbs.iter().map(|d| d.dict.table_bytes()).sum::<usize>()
    }

    pub fn set_memory_limit(&mut self, maxmemory: usize, policy: EvictionPolicy) {
        self.maxmemory = maxmemory;
        self.policy = policy;
    }

    pub fn db_len(&self, db: usize) -> usize {
        self.dbs[db].dict.len()
    }

    pub fn db_volatile(&self, db: usize) -> usize {
        self.dbs[db].volatile
    }

    pub fn keys(&self) -> usize {
        self.dbs[..DATABASES].iter().map(|d| d.dict.len()).sum()
    }

    /// A fresh HLC time for a write at wall-clock `now_ms`: later than every
    /// time this shard issued before.
    pub fn hlc_now(&mut self, now_ms: u64) -> Hlc {
        let h = match self.forced_hlc.take() {
            Some(h) => {
                let _ = self.clock.update(h, h.physical_ms());
                h
            }
            // `now` fails only when the 48-bit clock is exhausted; the last
            // time is then the best there is.
            None => self.clock.now(now_ms).unwrap_or(self.clock.last()),
        };
        if self.journal.on && self.journal.first_hlc.is_none() {
            self.journal.first_hlc = Some(h);
        }
        h
    }

    /// A pseudo-random number (for sampling and random commands).
    pub fn random(&mut self) -> u64 {
        self.next_random()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: cheap, and good enough for sampling.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The encoded entry at `key`, for a `Put` record.
    pub(crate) fn entry_bytes_of(&self, db: usize, key: &[u8]) -> Option<Vec<u8>> {
        let e = self.dbs[db].dict.get(key)?;
        let mut out = Vec::new();
        crate::entry_codec::encode_entry(&mut out, &e);
        Some(out)
    }

    /// Called before `key` changes in any way (insert, change, removal):
    /// where a running snapshot saves a key it has not reached yet. Without
    /// a snapshot this is one branch.
    #[inline]
    fn before_change(&mut self, db: usize, key: &[u8]) {
        if self.snap.is_some() {
            self.snapshot_save(db, key, true);
        }
    }

    /// [`Shard::before_change`] for a removal that nothing else follows: a
    /// snapshot saves the key without remembering it (see the
    /// [`crate::snapshot`] docs).
    #[inline]
    fn before_remove(&mut self, db: usize, key: &[u8]) {
        if self.snap.is_some() {
            self.snapshot_save(db, key, false);
        }
    }

    /// Called with the table of database `db` just emptied by FLUSHDB: a
    /// running snapshot that has not finished walking it keeps it to finish
    /// the walk, so a flush never serialises a whole database at once.
    fn after_flush(&mut self, db: usize, old: Keyspace) {
        if let Some(s) = self.snap.as_deref_mut() {
            s.adopt(db, old);
        }
    }

    /// Removes `key` if it has expired; returns whether it did. An expiry is a
    /// write (replicas see it as a DEL).
    fn expire_if_due(&mut self, db: usize, key: &[u8], now_ms: u64) -> bool {
        let expired = matches!(self.dbs[db].dict.get(key), Some(e) if e.is_expired(now_ms));
        if expired && !self.follower {
            self.remove_entry(db, key);
            self.stats.expired_keys += 1;
            self.wrote();
            self.record_implicit(db, Op::Del, key);
        }
        expired
    }

    /// The LRU clock at `now_ms`: seconds.
    fn access_at(now_ms: u64) -> u32 {
        (now_ms / 1000) as u32
    }

    /// Whether the command about to run counts its lookups as keyspace hits
    /// and misses: a read does; a write's lookups count as neither, as
    /// Redis counts them.
    pub fn count_lookups(&mut self, on: bool) {
        self.counting = on;
    }

    /// A read lookup: expires lazily, counts hits and misses, touches LRU age.
    pub fn get(&mut self, db: usize, key: &[u8], now_ms: u64) -> Option<EntryRef<'_>> {
        // Hash once on the common path; only an expired key looks again.
        let h = self.dbs[db].dict.hash(key);
        let live = match self.dbs[db].dict.get_hashed(h, key) {
            None => false,
            Some(e) => !e.is_expired(now_ms),
        };
        if !live {
            self.expire_if_due(db, key, now_ms);
            self.stats.keyspace_misses += u64::from(self.counting);
            return None;
        }
        self.stats.keyspace_hits += u64::from(self.counting);
        let n = self.dbs[db].dict.node_mut(h, key)?;
        n.set_access(Self::access_at(now_ms));
        Some(n.view())
    }

    /// A lookup that neither counts nor touches (EXISTS, TYPE, TTL...).
    pub fn peek(&mut self, db: usize, key: &[u8], now_ms: u64) -> Option<EntryRef<'_>> {
        self.expire_if_due(db, key, now_ms);
        // (a follower keeps expired keys until told: hide them)
        self.dbs[db].dict.get(key).filter(|e| !e.is_expired(now_ms))
    }

    /// Sets a live key's expiry (0: none); false when the key is absent.
    /// The caller calls [`Shard::wrote`] when the change is a write.
    pub fn set_expire(&mut self, db: usize, key: &[u8], now_ms: u64, expire_at: u64) -> bool {
        touch(db);
        self.expire_if_due(db, key, now_ms);
        let h = self.dbs[db].dict.hash(key);
        if self.dbs[db].dict.get_hashed(h, key).is_none() {
            return false;
        }
        self.before_change(db, key);
        self.touch_watched(db, key);
        let access = Self::access_at(now_ms);
        let d = &mut self.dbs[db];
        let Some(n) = d.dict.node_mut(h, key) else {
            return false;
        };
        n.set_access(access);
        if n.overwrite_expire(expire_at) {
            return true;
        }
        // The node gains or loses its expiry field: a new node.
        let before = n.view().mem_bytes();
        let mut e = n.view().to_entry();
        e.expire_at = expire_at;
        let node = EntryNode::from_entry(key, e);
        let after = node.view().mem_bytes();
        d.dict.put(key, node);
        if expire_at != 0 {
            d.volatile += 1;
        } else {
            d.volatile -= 1;
        }
        self.used = self.used + after - before;
        true
    }

    /// Stores the string `value` at `key` as one write, replacing whatever
    /// was there. `expire_at` is the new expiry (0: none), or `None` to keep
    /// the key's current one. The key's node is rewritten in place when its
    /// size does not change (no allocation), else replaced.
    pub fn set_string(
        &mut self,
        db: usize,
        key: &[u8],
        value: &[u8],
        expire_at: Option<u64>,
        now_ms: u64,
    ) {
        touch(db);
        let hlc = self.hlc_now(now_ms);
        self.before_change(db, key);
        self.touch_watched(db, key);
        let access = Self::access_at(now_ms);
        let d = &mut self.dbs[db];
        let h = d.dict.hash(key);
        let link = d.dict.link(h, key);
        let (before, had_ttl, after, at);
        match link.as_mut() {
            Some(n) => {
                let v = n.view();
                (before, had_ttl) = (v.mem_bytes(), v.has_expire());
                at = expire_at.unwrap_or_else(|| v.expire_at());
                if n.overwrite_str(value, at) {
                    n.set_hlc(hlc);
                    n.set_access(access);
                    after = before;
                } else {
                    let mut node = EntryNode::string(key, value, at, hlc, access);
                    *node.next_mut() = n.next_mut().take();
                    after = node.view().mem_bytes();
                    *link = Some(node);
                }
            }
            None => {
                (before, had_ttl) = (0, false);
                at = expire_at.unwrap_or(0);
                let node = EntryNode::string(key, value, at, hlc, access);
                after = node.view().mem_bytes();
                d.dict.insert_new(node);
            }
        }
        if had_ttl != (at != 0) {
            if at != 0 {
                d.volatile += 1;
            } else {
                d.volatile -= 1;
            }
        }
        self.used = self.used + after - before;
        self.wrote();
    }

    /// Changes, or creates from `create`, the value at `key` as at most one
    /// write. `f` gets the value and the write's HLC time, and returns its
    /// result and whether it wrote; a write stamps the key's HLC and counts
    /// once. A collection left empty is deleted, as Redis does. Returns
    /// `None` when the key is absent and `create` is `None`.
    pub fn write<R>(
        &mut self,
        db: usize,
        key: &[u8],
        now_ms: u64,
        create: Option<Value>,
        f: impl FnOnce(&mut Value, Hlc) -> (R, bool),
    ) -> Option<R> {
        touch(db);
        self.expire_if_due(db, key, now_ms);
        self.before_change(db, key);
        let created = !self.dbs[db].dict.contains_key(key);
        if created {
            let node = EntryNode::growable(key, Entry::new(create?, 0));
            self.used += node.view().mem_bytes();
            self.dbs[db].dict.insert_new(node);
        }
        let hlc = self.hlc_now(now_ms);
        let access = Self::access_at(now_ms);
        let d = &mut self.dbs[db];
        let h = d.dict.hash(key);
        let n = d.dict.node_mut(h, key)?;
        let before = n.view().mem_bytes();
        n.set_access(access);
        let (r, wrote, empty) = match n.collection_mut() {
            Some(v) => {
                let (r, wrote) = f(v, hlc);
                let empty = v.is_empty_collection();
                if wrote {
                    n.set_hlc(hlc);
                }
                (r, wrote, empty)
            }
            None => {
                // An inline string: `f` gets a copy (collection commands
                // answer WRONGTYPE and change nothing); a change is stored
                // back, out of line.
                let mut e = n.view().to_entry();
                let (r, wrote) = f(&mut e.value, hlc);
                let empty = e.value.is_empty_collection();
                if wrote {
                    e.hlc = hlc;
                    // Held out of line from now on: the next in-place
                    // change of this string is not a copy.
                    d.dict.put(key, EntryNode::growable(key, e));
                }
                (r, wrote, empty)
            }
        };
        let after = d.dict.get_hashed(h, key).map_or(0, |e| e.mem_bytes());
        self.used = self.used + after - before;
        // A key created for `f` that then wrote nothing (an error, a FAIL
        // overflow) was never there.
        if empty || (created && !wrote) {
            self.remove_entry(db, key);
        }
        if wrote {
            self.touch_watched(db, key);
            self.wrote();
        }
        Some(r)
    }

    /// Stores `entry` under `key`, replacing whatever was there. Counts as
    /// one write.
    pub fn set(&mut self, db: usize, key: &[u8], mut entry: Entry, now_ms: u64) {
        touch(db);
        entry.access = Self::access_at(now_ms);
        entry.hlc = self.hlc_now(now_ms);
        self.restore(db, key, entry);
        self.wrote();
    }

    /// Stores `entry` under `key` exactly as given (its HLC, expiry and
    /// value), replacing whatever was there: loading a snapshot, or a key
    /// written back whole. Not a write of this shard: the sequence and the
    /// clock do not move.
    pub fn restore(&mut self, db: usize, key: &[u8], entry: Entry) {
        touch(db);
        self.before_change(db, key);
        self.touch_watched(db, key);
        let node = EntryNode::from_entry(key, entry);
        let (added, volatile) = (node.view().mem_bytes(), node.view().has_expire());
        let d = &mut self.dbs[db];
        if volatile {
            d.volatile += 1;
        }
        let removed = match d.dict.put(key, node) {
            Some(old) => {
                if old.view().has_expire() {
                    d.volatile -= 1;
                }
                old.view().mem_bytes()
            }
            None => 0,
        };
        self.used = self.used + added - removed;
    }

    /// Loading: inserts `entry` at a key that must be absent (false, and
    /// nothing changed, when it is not). No snapshot runs while loading.
    pub(crate) fn load_entry(&mut self, db: usize, key: &[u8], entry: Entry) -> bool {
        let d = &mut self.dbs[db];
        if d.dict.contains_key(key) {
            return false;
        }
        let node = EntryNode::from_entry(key, entry);
        if node.view().has_expire() {
            d.volatile += 1;
        }
        self.used += node.view().mem_bytes();
        d.dict.insert_new(node);
        true
    }

    /// Deletes `key`; returns whether a live key was removed. A removal of
    /// a live key counts as one write.
    pub fn delete(&mut self, db: usize, key: &[u8], now_ms: u64) -> bool {
        touch(db);
        if self.expire_if_due(db, key, now_ms) {
            return false;
        }
        if !self.remove_entry(db, key) {
            return false;
        }
        self.wrote();
        true
    }

    fn remove_entry(&mut self, db: usize, key: &[u8]) -> bool {
        self.before_remove(db, key);
        let Some(node) = self.dbs[db].dict.remove(key) else {
            return false;
        };
        self.touch_watched(db, key);
        let e = node.view();
        if e.has_expire() {
            self.dbs[db].volatile -= 1;
        }
        self.used -= e.mem_bytes();
        true
    }

    /// Empties one database; returns how many keys it held.
    pub fn flush_db(&mut self, db: usize) -> usize {
        touch(db);
        let d = std::mem::take(&mut self.dbs[db]);
        let n = d.dict.len();
        for (k, e) in d.dict.iter() {
            self.used -= e.mem_bytes();
            self.touch_watched(db, k);
        }
        self.after_flush(db, d.dict);
        if n > 0 {
            self.wrote();
            self.record_implicit(db, Op::FlushDb, b"");
        }
        n
    }

    /// SWAPDB on this shard: databases `a` and `b` trade contents. WATCHed
    /// keys of either that exist in either are touched (as Redis does), and
    /// keys of either that clients are blocked on and that now exist become
    /// ready. A key expired at `now_ms` counts as absent (swapping it for
    /// nothing changes nothing). A running snapshot keeps the contents of
    /// the start. Counts as one write (its record is the command).
    pub fn swap_dbs(&mut self, a: usize, b: usize, now_ms: u64) {
        if a == b {
            return;
        }
        self.snapshot_before_swap(a);
        self.snapshot_before_swap(b);
        let live = |s: &Shard, db: usize, key: &[u8]| {
            s.dbs[db]
                .dict
                .get(key)
                .is_some_and(|e| !e.is_expired(now_ms))
        };
        let exists = |s: &Shard, key: &[u8]| live(s, a, key) || live(s, b, key);
        let touched: Vec<WatchedKey> = self
            .watched
            .keys()
            .filter(|(db, k)| (*db == a || *db == b) && exists(self, k))
            .cloned()
            .collect();
        for k in &touched {
            if let Some(w) = self.watched.get_mut(k) {
                w.1 += 1;
            }
        }
        self.dbs.swap(a, b);
        let ready: Vec<(usize, Vec<u8>)> = self
            .blocking
            .keys()
            .filter(|(db, k)| (*db == a || *db == b) && live(self, *db, k))
            .map(|(db, k)| (*db, k.to_vec()))
            .collect();
        for (db, k) in ready {
            if !self.ready.iter().any(|(d, r)| *d == db && *r == k) {
                self.ready.push((db, k));
            }
        }
        self.wrote();
    }

    /// One step of a `SCAN` over `db`. Expired keys are skipped.
    pub fn scan(
        &self,
        db: usize,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut f: impl FnMut(&[u8], EntryRef<'_>),
    ) -> u64 {
        self.dbs[db].dict.scan(cursor, count, |k, e| {
            if !e.is_expired(now_ms) {
                f(k, e)
            }
        })
    }

    /// Every live key of `db`.
    pub fn for_each(&self, db: usize, now_ms: u64, mut f: impl FnMut(&[u8], EntryRef<'_>)) {
        for (k, e) in self.dbs[db].dict.iter() {
            if !e.is_expired(now_ms) {
                f(k, e)
            }
        }
    }

    /// A random live key of `db`, if any (a few tries past expired keys).
    pub fn random_key(&mut self, db: usize, now_ms: u64) -> Option<Vec<u8>> {
        for _ in 0..16 {
            let r = self.next_random();
            let (k, e) = self.dbs[db].dict.sample(r)?;
            if !e.is_expired(now_ms) {
                return Some(k.to_vec());
            }
            let k = k.to_vec();
            self.expire_if_due(db, &k, now_ms);
        }
        None
    }

    /// Digest of every live key in every database of this shard.
    pub fn digest(&self, now_ms: u64) -> Digest {
        let mut d = Digest::default();
        for (db, dbv) in self.dbs.iter().enumerate() {
            for (k, e) in dbv.dict.iter() {
                if !e.is_expired(now_ms) {
                    d.combine(Digest::of_entry(db, k, &e));
                }
            }
        }
        d
    }

    /// Active expiry: walks up to `budget` entries of databases holding keys
    /// with a TTL and deletes those that expired. Returns (walked, expired), so
    /// the caller can repeat while a large share of what it saw had expired,
    /// as Redis's adaptive cycle does.
    pub fn active_expire(&mut self, now_ms: u64, budget: usize) -> (usize, usize) {
        if self.follower {
            return (0, 0);
        }
        let mut walked = 0;
        let mut expired = Vec::new();
        for db in 0..DATABASES {
            if self.dbs[db].volatile == 0 || walked >= budget {
                continue;
            }
            let d = &self.dbs[db];
            let count = (budget - walked).min(d.dict.len());
            let next = d.dict.scan(d.expire_cursor, count, |k, e| {
                walked += 1;
                if e.is_expired(now_ms) {
                    expired.push((db, k.to_vec()));
                }
            });
            self.dbs[db].expire_cursor = next;
        }
        let n = expired.len();
        for (db, k) in expired {
            self.expire_if_due(db, &k, now_ms);
        }
        (walked, n)
    }

    /// Makes room before a write that may grow memory. `Err` means the write
    /// must be refused with `-OOM`.
    pub fn ensure_memory(&mut self, now_ms: u64) -> Result<(), OutOfMemory> {
        if self.maxmemory == 0 || self.follower {
            return Ok(());
        }
        let mut guard = 0;
        while self.used_memory() > self.maxmemory {
            guard += 1;
            if self.policy == EvictionPolicy::NoEviction || guard > 10_000 {
                return Err(OutOfMemory);
            }
            match self.pick_victim(now_ms) {
                Some((db, key)) => {
                    self.remove_entry(db, &key);
                    self.stats.evicted_keys += 1;
                    self.wrote();
                    self.record_implicit(db, Op::Del, &key);
                }
                None => return Err(OutOfMemory),
            }
        }
        Ok(())
    }

    /// Samples five keys (Redis's default `maxmemory-samples`) and returns the
    /// best to evict under the policy.
    fn pick_victim(&mut self, now_ms: u64) -> Option<(usize, Vec<u8>)> {
        let volatile_only = matches!(
            self.policy,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        );
        let candidates: Vec<usize> = (0..DATABASES)
            .filter(|&db| {
                let d = &self.dbs[db];
                if volatile_only {
                    d.volatile > 0
                } else {
                    !d.dict.is_empty()
                }
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let mut best: Option<(u64, usize, Vec<u8>)> = None;
        let mut tries = 0;
        let mut found = 0;
        while found < 5 && tries < 50 {
            tries += 1;
            let r = self.next_random();
            let db = candidates[(r as usize >> 7) % candidates.len()];
            let r2 = self.next_random();
            let Some((k, e)) = self.dbs[db].dict.sample(r2) else {
                continue;
            };
            if volatile_only && !e.has_expire() {
                continue;
            }
            found += 1;
            // Lower score is evicted first.
            let score = match self.policy {
                EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => e.access() as u64,
                EvictionPolicy::VolatileTtl => e.expire_at(),
                _ => r2,
            };
            let _ = now_ms;
            if best.as_ref().is_none_or(|b| score < b.0) {
                best = Some((score, db, k.to_vec()));
            }
        }
        best.map(|(_, db, k)| (db, k))
    }
}

/// Convenience for string values.
impl Entry {
    pub fn string(bytes: Vec<u8>, expire_at: u64) -> Entry {
        Entry::new(Value::Str(bytes), expire_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_dbs_touches_live_watched_keys_and_readies_blocked_ones() {
        let mut s = Shard::new(0);
        s.set(0, b"live", Entry::string(b"v".to_vec(), 0), 10);
        s.set(1, b"stale", Entry::string(b"v".to_vec(), 20), 10);
        s.set(1, b"queue", Entry::string(b"v".to_vec(), 0), 10);
        let live = s.watch(0, b"live");
        let stale = s.watch(0, b"stale");
        let absent = s.watch(3, b"live");
        s.block_on(0, b"queue");
        let seq = s.seq();
        s.swap_dbs(0, 1, 100);
        assert_eq!(s.seq(), seq + 1);
        // "live" left db 0: changed. "stale" had expired: no logical change.
        assert_ne!(s.watched_version(0, b"live", 100), live);
        // (read as of before its expiry: a read at 100 would expire it,
        // which is a change of its own)
        assert_eq!(s.watched_version(0, b"stale", 15), stale);
        assert_eq!(s.watched_version(3, b"live", 100), absent);
        assert_eq!(s.take_ready(), vec![(0, b"queue".to_vec())]);
        assert!(s.peek(1, b"live", 100).is_some());
        // Swapping a database with itself is nothing.
        s.swap_dbs(2, 2, 100);
        assert_eq!(s.seq(), seq + 1);
    }

    #[test]
    fn writes_bump_seq_and_reads_do_not() {
        let mut s = Shard::new(0);
        s.set(0, b"a", Entry::string(b"1".to_vec(), 0), 1000);
        s.get(0, b"a", 1000);
        s.peek(0, b"a", 1000);
        assert_eq!(s.seq(), 1);
        assert!(s.delete(0, b"a", 1000));
        assert!(!s.delete(0, b"a", 1000));
        assert_eq!(s.seq(), 2);
    }

    /// Issue 13's memory measure, as the shard accounts it: a million
    /// keys of 16 bytes with 32-byte values fit in 100 bytes a key, table
    /// included (RSS is measured beside redis by bench/run.sh).
    #[test]
    fn small_string_keys_cost_under_100_bytes() {
        let mut s = Shard::new(0);
        let n = 200_000;
        for i in 0..n {
            let key = format!("key:{i:012}");
            s.set_string(0, key.as_bytes(), &[b'v'; 32], Some(0), 1000);
        }
        let per_key = s.used_memory() / n;
        assert!(per_key <= 100, "{per_key} B/key");
        // Overwrites, expiries and deletes keep the account exact.
        for i in 0..n {
            let key = format!("key:{i:012}");
            match i % 4 {
                0 => s.set_string(0, key.as_bytes(), b"short", None, 1000),
                1 => assert!(s.set_expire(0, key.as_bytes(), 1000, 9_000_000)),
                2 => assert!(s.delete(0, key.as_bytes(), 1000)),
                _ => s.set_string(0, key.as_bytes(), &[b'w'; 32], Some(5_000_000), 1000),
            }
        }
        let recount: usize = s.dbs[0].dict.iter().map(|(_, e)| e.mem_bytes()).sum();
        assert_eq!(s.used, recount);
        assert_eq!(s.db_volatile(0), n / 2);
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut s = Shard::new(0);
        s.set(0, b"a", Entry::string(b"1".to_vec(), 1500), 1000);
        for i in 0..100 {
            s.set(
                0,
                format!("k{i}").as_bytes(),
                Entry::string(vec![], 1500),
                1000,
            );
        }
        assert!(s.get(0, b"a", 1499).is_some());
        assert!(s.get(0, b"a", 1500).is_none());
        assert_eq!(s.stats.expired_keys, 1);
        let (_, n) = s.active_expire(2000, 1000);
        assert_eq!(n, 100);
        assert_eq!(s.keys(), 0);
        assert_eq!(s.db_volatile(0), 0);
        assert_eq!(s.used, 0);
    }

    #[test]
    fn noeviction_refuses_and_lru_evicts_old_keys() {
        let mut s = Shard::new(0);
        s.set_memory_limit(1, EvictionPolicy::NoEviction);
        s.set(0, b"a", Entry::string(vec![0; 100], 0), 0);
        assert_eq!(s.ensure_memory(0), Err(OutOfMemory));
        let mut s = Shard::new(0);
        for i in 0..1000u64 {
            s.set(
                0,
                format!("k{i}").as_bytes(),
                Entry::string(vec![0; 100], 0),
                i * 1000,
            );
        }
        let full = s.used_memory();
        s.set_memory_limit(full / 2, EvictionPolicy::AllKeysLru);
        assert!(s.ensure_memory(1_000_000).is_ok());
        assert!(s.used_memory() <= full / 2);
        assert!(s.stats.evicted_keys > 0);
        // Sampling favours old keys: the newest tenth mostly survives.
        let recent = (900..1000)
            .filter(|i| s.peek(0, format!("k{i}").as_bytes(), 1_000_000).is_some())
            .count();
        assert!(recent > 70, "only {recent} recent keys survived");
    }

    #[test]
    fn digest_ignores_order_and_sees_values() {
        let mut a = Shard::new(0);
        let mut b = Shard::new(1);
        a.set(0, b"x", Entry::string(b"1".to_vec(), 0), 0);
        a.set(0, b"y", Entry::string(b"2".to_vec(), 0), 0);
        b.set(0, b"y", Entry::string(b"2".to_vec(), 0), 0);
        b.set(0, b"x", Entry::string(b"1".to_vec(), 0), 0);
        assert_eq!(a.digest(0), b.digest(0));
        b.set(0, b"x", Entry::string(b"3".to_vec(), 0), 0);
        assert_ne!(a.digest(0), b.digest(0));
        assert!(Shard::new(2).digest(0).is_empty());
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;
    use crate::keyspace::ValueRef;
    use crate::value::Typed;
    use crate::{Hash, Set};

    #[test]
    fn strings_changed_in_place_grow_without_copies_and_account_memory() {
        let mut s = Shard::new(0);
        let append = |s: &mut Shard, bytes: &[u8]| {
            s.write(
                0,
                b"k",
                1000,
                Some(Value::Str(Vec::new())),
                |v, _| match v {
                    Value::Str(b) => {
                        b.extend_from_slice(bytes);
                        (b.len(), true)
                    }
                    _ => (0, false),
                },
            )
        };
        assert_eq!(append(&mut s, b"ab"), Some(2));
        let mut last_ptr = None;
        let mut moves = 0;
        for _ in 0..1000 {
            append(&mut s, b"x");
            let ptr = match s.peek(0, b"k", 1000).unwrap().value() {
                ValueRef::Str(b) => b.as_ptr(),
                _ => unreachable!(),
            };
            moves += (last_ptr != Some(ptr)) as usize;
            last_ptr = Some(ptr);
        }
        // A Vec that doubles moves about log2(1000) times, not 1000.
        assert!(moves < 20, "{moves} moves");
        let e = s.peek(0, b"k", 1000).unwrap();
        assert!(matches!(e.value(), ValueRef::Str(b) if b.len() == 1002 && b.starts_with(b"abx")));
        // Memory counts the held capacity; deleting returns it all.
        assert!(s.used >= 1002);
        s.set_string(0, b"k", b"inline", None, 1000);
        assert!(s.used > 0 && s.used < 200, "{}", s.used);
        append(&mut s, b"!");
        assert_eq!(
            s.get(0, b"k", 1000)
                .unwrap()
                .to_entry()
                .value
                .as_ref()
                .type_name(),
            "string"
        );
        assert!(s.delete(0, b"k", 1000));
        assert_eq!(s.used, 0);
        // A key created for a write that wrote nothing is not left behind.
        s.write(0, b"n", 1000, Some(Value::Str(Vec::new())), |_, _| {
            ((), false)
        });
        assert!(s.peek(0, b"n", 1000).is_none());
        assert_eq!(s.used, 0);
    }

    #[test]
    fn write_creates_counts_once_and_deletes_empty() {
        let mut s = Shard::new(0);
        let r = s.write(0, b"h", 1000, Some(Hash::empty()), |v, hlc| {
            let h = Hash::of_mut(v).unwrap();
            h.insert(b"f", b"v".to_vec(), hlc);
            h.insert(b"g", b"w".to_vec(), hlc);
            (2, true)
        });
        assert_eq!(r, Some(2));
        assert_eq!(s.seq(), 1);
        let hlc = s.peek(0, b"h", 1000).unwrap().hlc();
        assert_eq!(hlc.physical_ms(), 1000);
        assert!(s.used > 0);
        // A write that changes nothing neither counts nor stamps.
        s.write(0, b"h", 2000, None, |_, _| ((), false));
        assert_eq!(s.seq(), 1);
        assert_eq!(s.peek(0, b"h", 2000).unwrap().hlc(), hlc);
        s.write(0, b"h", 3000, None, |v, _| {
            let h = Hash::of_mut(v).unwrap();
            h.remove(b"f");
            h.remove(b"g");
            ((), true)
        });
        assert_eq!(s.seq(), 2);
        assert!(s.peek(0, b"h", 3000).is_none());
        assert_eq!(s.used, 0);
        // Creating without writing leaves nothing behind.
        s.write(0, b"s", 3000, Some(Set::empty()), |_, _| ((), false));
        assert!(s.peek(0, b"s", 3000).is_none());
        assert_eq!((s.used, s.seq()), (0, 2));
        assert!(s.write(0, b"none", 3000, None, |_, _| ((), true)).is_none());
    }
}
