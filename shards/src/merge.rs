//! Merge decisions: how two divergent copies of a key become one.
//!
//! After a split brain heals, the winner of the fresh election pulls the loser's
//! records written since the fork point and merges them (`ARCHITECTURE.md` §5). This
//! module is the rule book, as pure functions over a self-contained model of values
//! that carry their HLCs. Later work maps the real keyspace and write records onto
//! [`KeyState`]; nothing here knows about shards, records or the network.
//!
//! # Model
//! A [`KeyState`] is a product of small join-semilattices, one per concern:
//! - `deleted_at`: the HLC of the latest whole-key delete (a key tombstone). Every
//!   element (string value, hash field, set add tag, counter epoch) older than it is
//!   invisible, so a delete on one side is never undone by older data from the
//!   other side (no resurrection).
//! - `kind`: which type the key has, as a last-writer-wins register keyed by the HLC
//!   of the write that gave it that type.
//! - `string`: a last-writer-wins register (value + HLC).
//! - `counter`: a base value set by `SET`-like writes (LWW) plus, per
//!   `(epoch, origin)`, the running totals of increments and decrements that origin
//!   applied since that base. Both sides' increments add up instead of one side's
//!   result overwriting the other's.
//! - `hash`: field → LWW register of `Option<value>` (`None` is a field tombstone).
//! - `set`: member → add tags and removed tags (an observed-remove set): `SREM`
//!   removes only the add tags it has seen, so an add the remover did not see —
//!   a concurrent add — survives. Add wins.
//!
//! # Invariants
//! - [`KeyState::merge`] is a join: commutative, associative and idempotent. Every
//!   replica that merges the same set of histories, in any order and any number of
//!   times, reaches the same state, and therefore the same [`KeyState::view`].
//! - Ties on equal HLCs are broken by comparing values, never by argument order, so
//!   the join stays commutative even when two clocks issue the same timestamp.
//! - A remote key carrying an HLC further than `max_clock_drift` ahead of the local
//!   clock is refused and reported by [`merge_keyspace`]; refusing is the one place
//!   where merge is deliberately not commutative.
//!
//! Tombstones and removed tags are kept until every replica has seen them; their
//! garbage collection belongs to the replication layer, not to these rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::hlc::{Hlc, HlcClock, HlcError};

/// Raw bytes of a value, field or member.
pub type Bytes = Vec<u8>;

/// Identifies the node (writer) that applied an increment or a set add. Every node
/// has a distinct origin, so per-origin totals only ever grow.
pub type Origin = u64;

/// A last-writer-wins register. The greater `(hlc, value)` wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lww<T> {
    pub hlc: Hlc,
    pub value: T,
}

impl<T: Ord + Clone> Lww<T> {
    fn join(&mut self, other: &Lww<T>) {
        if (other.hlc, &other.value) > (self.hlc, &self.value) {
            *self = other.clone();
        }
    }
}

fn join_opt<T: Ord + Clone>(mine: &mut Option<Lww<T>>, other: &Option<Lww<T>>) {
    match (mine.as_mut(), other) {
        (_, None) => {}
        (None, Some(o)) => *mine = Some(o.clone()),
        (Some(m), Some(o)) => m.join(o),
    }
}

/// The type a key currently has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    String,
    Counter,
    Hash,
    Set,
}

/// Running totals of one origin's increments and decrements since one base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Totals {
    pub incr: u64,
    pub decr: u64,
}

/// A set add tag: unique per add (the HLC and the node that made it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub hlc: Hlc,
    pub origin: Origin,
}

/// One set member's add tags and the tags removed since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Member {
    pub adds: BTreeSet<Tag>,
    pub removed: BTreeSet<Tag>,
}

/// Everything one replica knows about one key. See the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    pub deleted_at: Hlc,
    pub kind: Option<Lww<Kind>>,
    pub string: Option<Lww<Bytes>>,
    pub counter_base: Option<Lww<i64>>,
    /// `(epoch, origin)` → totals; the epoch is the HLC of the base they apply to.
    pub counter: BTreeMap<(Hlc, Origin), Totals>,
    pub hash: BTreeMap<Bytes, Lww<Option<Bytes>>>,
    pub set: BTreeMap<Bytes, Member>,
}

/// What a client would read from a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    String(Bytes),
    Counter(i64),
    Hash(BTreeMap<Bytes, Bytes>),
    Set(BTreeSet<Bytes>),
}

impl KeyState {
    /// Joins `other` into `self`. Commutative, associative, idempotent.
    pub fn merge(&mut self, other: &KeyState) {
        self.deleted_at = self.deleted_at.max(other.deleted_at);
        join_opt(&mut self.kind, &other.kind);
        join_opt(&mut self.string, &other.string);
        join_opt(&mut self.counter_base, &other.counter_base);
        for (k, t) in &other.counter {
            let e = self.counter.entry(*k).or_default();
            e.incr = e.incr.max(t.incr);
            e.decr = e.decr.max(t.decr);
        }
        for (f, v) in &other.hash {
            match self.hash.get_mut(f) {
                Some(m) => m.join(v),
                None => {
                    self.hash.insert(f.clone(), v.clone());
                }
            }
        }
        for (m, o) in &other.set {
            let e = self.set.entry(m.clone()).or_default();
            e.adds.extend(o.adds.iter().copied());
            e.removed.extend(o.removed.iter().copied());
        }
    }

    /// The largest HLC anywhere in this key; merge checks it against clock drift.
    pub fn max_hlc(&self) -> Hlc {
        let mut m = self.deleted_at;
        let regs = [
            self.kind.as_ref().map(|r| r.hlc),
            self.string.as_ref().map(|r| r.hlc),
            self.counter_base.as_ref().map(|r| r.hlc),
        ];
        m = regs.into_iter().flatten().fold(m, Hlc::max);
        m = self.counter.keys().map(|(e, _)| *e).fold(m, Hlc::max);
        m = self.hash.values().map(|r| r.hlc).fold(m, Hlc::max);
        for mem in self.set.values() {
            m = mem
                .adds
                .iter()
                .chain(mem.removed.iter())
                .map(|t| t.hlc)
                .fold(m, Hlc::max);
        }
        m
    }

    /// The visible value, or `None` when the key does not exist.
    pub fn view(&self) -> Option<View> {
        let kind = self.kind.as_ref()?;
        // The write that gave the key its type must postdate the last delete.
        if kind.hlc < self.deleted_at {
            return None;
        }
        let live = |h: Hlc| h >= self.deleted_at && h >= kind.hlc;
        match kind.value {
            Kind::String => {
                let s = self.string.as_ref().filter(|s| live(s.hlc))?;
                Some(View::String(s.value.clone()))
            }
            Kind::Counter => {
                let base = self.counter_base.as_ref().filter(|b| live(b.hlc))?;
                let mut v = base.value;
                for ((epoch, _), t) in &self.counter {
                    if *epoch == base.hlc {
                        v = v.wrapping_add(t.incr as i64).wrapping_sub(t.decr as i64);
                    }
                }
                Some(View::Counter(v))
            }
            Kind::Hash => {
                let fields: BTreeMap<Bytes, Bytes> = self
                    .hash
                    .iter()
                    .filter(|(_, r)| live(r.hlc))
                    .filter_map(|(f, r)| r.value.clone().map(|v| (f.clone(), v)))
                    .collect();
                (!fields.is_empty()).then_some(View::Hash(fields))
            }
            Kind::Set => {
                let members: BTreeSet<Bytes> = self
                    .set
                    .iter()
                    .filter(|(_, m)| m.adds.iter().any(|t| live(t.hlc) && !m.removed.contains(t)))
                    .map(|(k, _)| k.clone())
                    .collect();
                (!members.is_empty()).then_some(View::Set(members))
            }
        }
    }

    fn set_kind(&mut self, kind: Kind, hlc: Hlc) {
        let visible = self.view().is_some();
        let same = self.kind.as_ref().is_some_and(|k| k.value == kind);
        if !(visible && same) {
            // A new key, or a type change: the write at `hlc` creates it.
            self.kind = Some(Lww { hlc, value: kind });
        }
    }

    /// `SET key value` at `hlc`: replaces whatever the key held.
    pub fn set(&mut self, value: Bytes, hlc: Hlc) {
        self.deleted_at = self.deleted_at.max(hlc);
        self.kind = Some(Lww {
            hlc,
            value: Kind::String,
        });
        self.string = Some(Lww { hlc, value });
    }

    /// `DEL key` at `hlc`: a key tombstone.
    pub fn del(&mut self, hlc: Hlc) {
        self.deleted_at = self.deleted_at.max(hlc);
    }

    /// A counter `SET` (for example `SET n 10` followed by INCRs): a new base.
    pub fn counter_set(&mut self, value: i64, hlc: Hlc) {
        self.deleted_at = self.deleted_at.max(hlc);
        self.kind = Some(Lww {
            hlc,
            value: Kind::Counter,
        });
        self.counter_base = Some(Lww { hlc, value });
    }

    /// `INCRBY key delta` by `origin` at `hlc`. A missing key starts at 0.
    pub fn incr(&mut self, origin: Origin, delta: i64, hlc: Hlc) {
        let base_live = matches!(self.view(), Some(View::Counter(_)));
        if !base_live {
            self.counter_set(0, hlc);
        }
        let Some(epoch) = self.counter_base.as_ref().map(|b| b.hlc) else {
            return;
        };
        let t = self.counter.entry((epoch, origin)).or_default();
        if delta >= 0 {
            t.incr = t.incr.wrapping_add(delta as u64);
        } else {
            t.decr = t.decr.wrapping_add(delta.unsigned_abs());
        }
    }

    /// `HSET key field value` at `hlc`.
    pub fn hset(&mut self, field: Bytes, value: Bytes, hlc: Hlc) {
        self.set_kind(Kind::Hash, hlc);
        let reg = Lww {
            hlc,
            value: Some(value),
        };
        self.hash
            .entry(field)
            .and_modify(|r| r.join(&reg))
            .or_insert(reg);
    }

    /// `HDEL key field` at `hlc`: a field tombstone.
    pub fn hdel(&mut self, field: Bytes, hlc: Hlc) {
        let reg = Lww { hlc, value: None };
        self.hash
            .entry(field)
            .and_modify(|r| r.join(&reg))
            .or_insert(reg);
    }

    /// `SADD key member` with a fresh tag.
    pub fn sadd(&mut self, member: Bytes, tag: Tag) {
        self.set_kind(Kind::Set, tag.hlc);
        self.set.entry(member).or_default().adds.insert(tag);
    }

    /// `SREM key member`: removes the add tags this replica has seen.
    pub fn srem(&mut self, member: &[u8]) {
        if let Some(m) = self.set.get_mut(member) {
            let seen: Vec<Tag> = m.adds.iter().copied().collect();
            m.removed.extend(seen);
        }
    }
}

/// A keyspace in the merge model.
pub type Keyspace = BTreeMap<Bytes, KeyState>;

/// A remote key refused by [`merge_keyspace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub key: Bytes,
    pub error: HlcError,
}

/// What a keyspace merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub merged: usize,
    pub rejected: Vec<Rejected>,
}

/// Merges the loser's keys (`remote`, written since the fork point) into `local`.
/// Keys whose HLCs run too far ahead of `clock` at `physical_ms` are refused and
/// reported; the rest are joined key by key and the clock moves past them.
pub fn merge_keyspace(
    local: &mut Keyspace,
    remote: &Keyspace,
    clock: &mut HlcClock,
    physical_ms: u64,
) -> MergeReport {
    let mut report = MergeReport::default();
    for (key, theirs) in remote {
        let hlc = theirs.max_hlc();
        if let Err(error) = clock.update(hlc, physical_ms) {
            report.rejected.push(Rejected {
                key: key.clone(),
                error,
            });
            continue;
        }
        local.entry(key.clone()).or_default().merge(theirs);
        report.merged += 1;
    }
    report
}

/// Joins two keyspaces without a drift check (replica-to-replica convergence of
/// already accepted state).
pub fn join_keyspace(local: &mut Keyspace, remote: &Keyspace) {
    for (key, theirs) in remote {
        local.entry(key.clone()).or_default().merge(theirs);
    }
}

/// The visible contents of a keyspace: what `DEBUG DIGEST` would summarise.
pub fn view_keyspace(ks: &Keyspace) -> BTreeMap<Bytes, View> {
    ks.iter()
        .filter_map(|(k, s)| s.view().map(|v| (k.clone(), v)))
        .collect()
}
