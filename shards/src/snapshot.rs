//! Point-in-time snapshots of a running shard, without fork and without
//! stopping it (Dragonfly's design), and loading them back.
//!
//! A snapshot is the shard as it was when [`Shard::snapshot_begin`] ran:
//! every key of all databases, expired or not (lazy expiry handles those
//! after a load), with its value, element times, expiry and HLC. It is taken
//! in small steps ([`Shard::snapshot_step`]) between which the shard keeps
//! serving reads and writes. The output is frames of [`crate::record`]: a
//! `Header`, one `Op::Put` record per key (the argument an
//! [`crate::entry_codec`] entry), then `End { entries }`.
//!
//! # The frontier
//! The walk visits databases in order and, inside one, the table's buckets
//! in scan order. Scan order is defined on a key's *position*
//! ([`Dict::position`]: its hash, bits reversed), not on bucket numbers: a
//! bucket of a `2^n`-bucket table is the range of positions whose top `n`
//! bits are its reversed index, so every table size cuts the same line of
//! positions into ranges, and visiting buckets in scan order visits
//! positions in increasing order. The walk's state is one position per
//! shard, the *frontier*: in the database being walked, exactly the keys at
//! positions below it have been *reached*; earlier databases are reached
//! whole, later ones not at all. Whether a key is reached never depends on
//! the table's size, so resizes between steps do not disturb it:
//! - when the table doubles, the frontier still starts a bucket (each old
//!   range splits into two);
//! - when it halves, the frontier may fall inside a bucket that also holds
//!   positions already walked; the next visit hashes that bucket's keys and
//!   leaves out those below the frontier ([`Dict::visit_bucket`]). Redis's
//!   SCAN returns them again; a snapshot must not, and does not.
//!
//! A key's hash, hence its position, is fixed for its table's life (a table
//! keeps its hasher through resizes). FLUSHDB replaces the table, which is
//! why the old one goes to the snapshot (below) instead of being walked anew.
//!
//! # Copy-on-write
//! Every change to a key goes through the shard's `before_change` hook
//! first (inserts, in-place changes, removals, expiry and eviction
//! included). While a snapshot runs, the hook looks at the key: if the walk
//! has reached it, nothing is to do (its old value is already out). If not,
//! and the key is not yet in the database's *decided* set, the key goes into
//! that set and, if it exists, its current entry — unchanged since the
//! snapshot began, or it would already be decided — is serialised into a
//! pending buffer that the next step hands out. A key that does not exist is
//! one the snapshot must not hold (it did not exist at the start, or it was
//! saved and removed since), and the set makes the walk skip it if it is
//! inserted later. The walk skips decided keys and forgets them as it passes
//! them; what remains of a database's set goes when the walk leaves it. So
//! every key of the start is written exactly once, with its value of the
//! start, and no key born later is written at all.
//!
//! A plain removal (DEL, expiry, eviction) saves the key without deciding
//! it: once it is gone the walk cannot meet it, and if it comes back the
//! insert finds it absent and decides it then. This keeps the set small
//! when expiry or eviction removes many keys during a snapshot; the set
//! holds keys changed in place and keys born during the snapshot.
//!
//! Without a snapshot the hook costs one branch. With one, a change hashes
//! the key once more and, before the walk reaches it, looks it up in a set.
//!
//! # FLUSHDB
//! A flush of a database the walk has not finished hands its table to the
//! snapshot, which walks it at its own pace (with the same frontier and
//! decided set, since the table keeps its hasher); the new empty table only
//! ever holds keys born after the start, so the hook ignores it. A flush of
//! a finished database, or of one already handed over, drops its table as
//! usual. The handed-over table is no longer counted in the shard's memory.
//!
//! # Bounds
//! A step stops after about `budget_bytes` of output or
//! [`MAX_BUCKETS_PER_STEP`] buckets, whichever comes first, and always makes
//! progress. Records saved by copy-on-write go out first, in pieces of the
//! same budget (the walk waits until they are all out). Empty databases cost nothing. What no step can split is one
//! key: a collection of millions of elements is serialised in one go, by a
//! step or, ahead of the walk, by the write that changes it.

use std::collections::HashSet;

use ahash::RandomState;

use crate::entry_codec::{decode_entry, encode_entry};
use crate::hlc::Hlc;
use crate::keyspace::{EntryRef, Keyspace};
use crate::record::{
    encode_end, encode_header, encode_record, Frame, FrameError, Header, Op, Record, FRAME_HEADER,
};
use crate::shard::{Shard, STORED_DBS};

/// The most buckets one step visits, so a step over a huge or sparse table
/// stays well under a millisecond. Scan order jumps across the bucket array,
/// so each bucket is about one cache miss, its entries one or two more: 256
/// buckets of small keys take about 150 µs.
pub const MAX_BUCKETS_PER_STEP: usize = 256;

/// A snapshot is already running on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a snapshot is already running on this shard")]
pub struct SnapshotBusy;

/// A running snapshot's state (it lives in the [`Shard`]).
pub(crate) struct Snapshot {
    header: Header,
    header_sent: bool,
    /// The database being walked (`STORED_DBS` once all are).
    db: usize,
    /// The frontier: the first position of `db` not yet reached.
    pos: u64,
    /// Per database: keys decided before the walk reached them.
    decided: Vec<HashSet<Box<[u8]>, RandomState>>,
    /// Per database: the table a FLUSHDB took away before the walk was done
    /// with it.
    detached: Vec<Option<Keyspace>>,
    /// Records saved by copy-on-write; those from `pending_at` on are not
    /// handed out yet.
    pending: Vec<u8>,
    pending_at: usize,
    /// Put records written so far (walked and saved).
    entries: u64,
    scratch: Vec<u8>,
    /// Buckets the last step visited (for tests of the bound).
    pub(crate) last_step_buckets: usize,
}

impl Snapshot {
    /// Appends one key's Put record.
    fn put(
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        h: &Header,
        db: usize,
        key: &[u8],
        e: EntryRef<'_>,
    ) {
        scratch.clear();
        encode_entry(scratch, &e);
        encode_record(
            out,
            &Record {
                seq: h.seq,
                term: h.term,
                hlc: e.hlc(),
                db: db as u8,
                op: Op::Put,
                key,
                args: vec![&scratch[..]].into(),
            },
        );
    }

    /// Takes the table FLUSHDB removed from `db`, if the walk still needs it.
    pub(crate) fn adopt(&mut self, db: usize, old: Keyspace) {
        if db >= self.db && self.detached[db].is_none() && !old.is_empty() {
            self.detached[db] = Some(old);
        }
    }

    /// Moves saved records to `out` until it holds `budget` bytes past
    /// `start` (at least one record); returns whether none are left.
    fn drain_pending(&mut self, out: &mut Vec<u8>, start: usize, budget: usize) -> bool {
        let p = &self.pending;
        let mut end = self.pending_at;
        while end < p.len()
            && (end == self.pending_at || out.len() - start + end - self.pending_at < budget)
        {
            // Our own frames: the length is there and right.
            let len = u32::from_le_bytes([p[end], p[end + 1], p[end + 2], p[end + 3]]);
            end += FRAME_HEADER + len as usize;
        }
        out.extend_from_slice(&p[self.pending_at..end]);
        self.pending_at = end;
        if end < p.len() {
            return false;
        }
        // A burst of saves can leave a large buffer behind: give it back.
        if self.pending.capacity() > 1 << 20 {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        self.pending_at = 0;
        true
    }

    /// Moves the walk to the next database, forgetting this one's state.
    fn next_db(&mut self) {
        self.decided[self.db] = HashSet::default();
        self.detached[self.db] = None;
        self.db += 1;
        self.pos = 0;
    }
}

impl Shard {
    /// Starts a snapshot of the shard as it is now. `shards` is the shard
    /// count (recorded in the header), `term` and `commit` the current term
    /// and the last transaction commit number this shard applied.
    pub fn snapshot_begin(
        &mut self,
        shards: usize,
        term: u64,
        commit: u64,
    ) -> Result<Header, SnapshotBusy> {
        if self.snap.is_some() {
            return Err(SnapshotBusy);
        }
        let header = Header {
            shard: self.id as u64,
            shards: shards as u64,
            seq: self.seq,
            term,
            commit,
            hlc: self.clock.last().raw(),
        };
        self.snap = Some(Box::new(Snapshot {
            header,
            header_sent: false,
            db: 0,
            pos: 0,
            decided: (0..STORED_DBS).map(|_| HashSet::default()).collect(),
            detached: (0..STORED_DBS).map(|_| None).collect(),
            pending: Vec::new(),
            pending_at: 0,
            entries: 0,
            scratch: Vec::new(),
            last_step_buckets: 0,
        }));
        Ok(header)
    }

    /// Whether a snapshot is being taken.
    pub fn snapshot_running(&self) -> bool {
        self.snap.is_some()
    }

    /// Drops the running snapshot, if any (its output so far is useless).
    pub fn snapshot_abort(&mut self) {
        self.snap = None;
    }

    /// Bytes of records saved by copy-on-write that the next steps will
    /// hand out (memory the running snapshot holds besides flushed tables).
    pub fn snapshot_pending_bytes(&self) -> usize {
        self.snap
            .as_ref()
            .map_or(0, |s| s.pending.len() - s.pending_at)
    }

    /// Entries snapshots saved ahead of their walk because a write was about
    /// to change them, over the shard's life (for INFO).
    pub fn snapshot_cow_entries(&self) -> u64 {
        self.snapshot_cow
    }

    /// Appends the snapshot's next whole frames to `out`: the header first,
    /// then Put records (those saved by copy-on-write since the last step,
    /// then walked ones) until about `budget_bytes` were written or
    /// [`MAX_BUCKETS_PER_STEP`] buckets visited. Returns true when it wrote
    /// the final `End` frame; the snapshot is then over. Without a running
    /// snapshot it writes nothing and returns false.
    pub fn snapshot_step(&mut self, out: &mut Vec<u8>, budget_bytes: usize) -> bool {
        let dbs = &self.dbs;
        let Some(s) = self.snap.as_deref_mut() else {
            return false;
        };
        let start = out.len();
        if !s.header_sent {
            encode_header(out, &s.header);
            s.header_sent = true;
        }
        // Saved records first; the walk goes on only once they are all out,
        // so a burst of saves does not make one step long. Each key is saved
        // at most once, so the walk is never starved for good.
        if !s.pending.is_empty() && !s.drain_pending(out, start, budget_bytes) {
            s.last_step_buckets = 0;
            return false;
        }
        let mut buckets = 0;
        while s.db < STORED_DBS {
            if buckets > 0 && (out.len() - start >= budget_bytes || buckets >= MAX_BUCKETS_PER_STEP)
            {
                s.last_step_buckets = buckets;
                return false;
            }
            let db = s.db;
            let dict = s.detached[db].as_ref().unwrap_or(&dbs[db].dict);
            if dict.is_empty() {
                // Every key this database held at the start is saved already.
                s.next_db();
                continue;
            }
            buckets += 1;
            let (decided, scratch, header) = (&mut s.decided[db], &mut s.scratch, &s.header);
            let mut n = 0;
            let next = dict.visit_bucket(s.pos, |k, e, _| {
                if !decided.is_empty() && decided.remove(k) {
                    return;
                }
                Snapshot::put(out, scratch, header, db, k, e);
                n += 1;
            });
            s.entries += n;
            match next {
                Some(p) => s.pos = p,
                None => s.next_db(),
            }
        }
        s.last_step_buckets = buckets;
        encode_end(out, s.entries);
        self.snap = None;
        true
    }

    /// The copy-on-write hook: `key` of `db` is about to change; `stays`
    /// is false for a removal (the key will be absent after it).
    #[cold]
    #[inline(never)]
    pub(crate) fn snapshot_save(&mut self, db: usize, key: &[u8], stays: bool) {
        let dict = &self.dbs[db].dict;
        let Some(s) = self.snap.as_deref_mut() else {
            return;
        };
        if db < s.db || s.detached[db].is_some() {
            // Walked already, or the live table holds only newer keys.
            return;
        }
        if db == s.db && dict.position(key) < s.pos {
            return;
        }
        if s.decided[db].contains(key) {
            return;
        }
        let entry = dict.get(key);
        if stays {
            s.decided[db].insert(key.into());
        } else if entry.is_none() {
            return;
        }
        if let Some(e) = entry {
            Snapshot::put(&mut s.pending, &mut s.scratch, &s.header, db, key, e);
            s.entries += 1;
            self.snapshot_cow += 1;
        }
    }

    /// Before SWAPDB moves `db`'s table elsewhere: every key of it the walk
    /// has not reached is saved now, with its value of the start, and the
    /// walk then treats the live table as born after the start (as after a
    /// FLUSHDB whose old table it walks; an empty one here).
    pub(crate) fn snapshot_before_swap(&mut self, db: usize) {
        match self.snap.as_deref() {
            Some(s) if db >= s.db && s.detached[db].is_none() => {}
            _ => return,
        }
        let keys: Vec<Box<[u8]>> = self.dbs[db].dict.iter().map(|(k, _)| k.into()).collect();
        for k in keys {
            self.snapshot_save(db, &k, true);
        }
        if let Some(s) = self.snap.as_deref_mut() {
            s.detached[db] = Some(Keyspace::default());
        }
    }

    #[cfg(test)]
    pub(crate) fn snapshot_last_step_buckets(&self) -> usize {
        self.snap.as_ref().map_or(0, |s| s.last_step_buckets)
    }
}

/// Why snapshot frames could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("a snapshot must start with its header")]
    NoHeader,
    #[error("a second snapshot header")]
    SecondHeader,
    #[error("the snapshot is of shard {snapshot}, not of shard {shard}")]
    WrongShard { snapshot: u64, shard: u64 },
    #[error("a snapshot loads into an empty shard")]
    NotEmpty,
    #[error("a snapshot holds only Put records, got {0}")]
    NotAPut(&'static str),
    #[error("record seq {seq} term {term} differs from the header's")]
    WrongSeq { seq: u64, term: u64 },
    #[error("database {0} is out of range")]
    Database(u8),
    #[error("record time differs from its entry's")]
    WrongTime,
    #[error("key appears twice in the snapshot")]
    Duplicate,
    #[error("the snapshot ends after {got} entries, its end says {expected}")]
    Count { expected: u64, got: u64 },
    #[error("frame after the end of the snapshot")]
    AfterEnd,
}

/// What one loaded frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The header: the snapshot is of the shard after record `seq`.
    Header(Header),
    /// One key.
    Entry,
    /// The end: the shard now holds the snapshot, its seq is the header's
    /// and its clock is at least the header's.
    End(Header),
}

/// Applies a snapshot's frames, one at a time, to an empty shard.
#[derive(Debug, Default)]
pub struct Loader {
    header: Option<Header>,
    entries: u64,
    done: bool,
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The header, once loaded.
    pub fn header(&self) -> Option<Header> {
        self.header
    }

    /// Whether the `End` frame was loaded.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Applies one frame (from [`crate::record::decode_frame`]).
    pub fn apply(&mut self, shard: &mut Shard, frame: Frame<'_>) -> Result<Loaded, LoadError> {
        if self.done {
            return Err(LoadError::AfterEnd);
        }
        let Some(h) = self.header else {
            let Frame::Header(h) = frame else {
                return Err(LoadError::NoHeader);
            };
            if h.shard != shard.id as u64 {
                return Err(LoadError::WrongShard {
                    snapshot: h.shard,
                    shard: shard.id as u64,
                });
            }
            if shard.keys() != 0 {
                return Err(LoadError::NotEmpty);
            }
            self.header = Some(h);
            return Ok(Loaded::Header(h));
        };
        match frame {
            Frame::Header(_) => Err(LoadError::SecondHeader),
            Frame::Unit { .. } => Err(LoadError::NotAPut("a unit")),
            Frame::End { entries } => {
                if entries != self.entries {
                    return Err(LoadError::Count {
                        expected: entries,
                        got: self.entries,
                    });
                }
                shard.seq = h.seq;
                shard.clock.advance_to(Hlc::from_raw(h.hlc));
                self.done = true;
                Ok(Loaded::End(h))
            }
            Frame::Record(r) => {
                if r.op != Op::Put || r.args.len() != 1 {
                    return Err(LoadError::NotAPut("another record"));
                }
                if (r.seq, r.term) != (h.seq, h.term) {
                    return Err(LoadError::WrongSeq {
                        seq: r.seq,
                        term: r.term,
                    });
                }
                let db = r.db as usize;
                if db >= STORED_DBS {
                    return Err(LoadError::Database(r.db));
                }
                let entry = decode_entry(r.args[0])?;
                if entry.hlc != r.hlc {
                    return Err(LoadError::WrongTime);
                }
                // Loading fills an empty shard: one insert per key, no
                // removal of an old entry.
                if !shard.load_entry(db, r.key, entry) {
                    return Err(LoadError::Duplicate);
                }
                self.entries += 1;
                Ok(Loaded::Entry)
            }
        }
    }

    /// Applies the whole frames at the start of `buf`; returns how many
    /// bytes they took. Stops before a frame cut short (more bytes to come)
    /// and after the `End` frame.
    pub fn feed(&mut self, shard: &mut Shard, buf: &[u8]) -> Result<usize, LoadError> {
        let mut at = 0;
        while at < buf.len() && !self.done {
            match crate::record::decode_frame(&buf[at..]) {
                Ok((frame, n)) => {
                    self.apply(shard, frame)?;
                    at += n;
                }
                Err(FrameError::Truncated { .. }) => break,
                // Under a whole head, zeros are the start of a frame whose
                // length's low bytes are zero (a 256-byte body), not padding.
                Err(FrameError::Padding) if buf.len() - at < crate::record::FRAME_HEADER => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests;
