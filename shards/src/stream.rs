//! The stream type: an append-only log of entries (an id and field/value
//! pairs) with consumer groups, as Redis 7.0 has it.
//!
//! # Representation
//! Entries live in packed *blocks*, not one heap object each: a `BTreeMap`
//! from a block's *master id* (the id of the first entry appended to it) to
//! one `Vec<u8>` holding up to [`BLOCK_ENTRIES`] entries. Inside a block an
//! entry is `ms delta | seq | flags | values...`: the id relative to the
//! master id (the seq is relative too while the ms is the master's), and the
//! field names are left out when they are the block's *master fields* (the
//! first entry's), as Redis's listpacks do, so a stream of same-shaped events
//! costs about its values' bytes.
//!
//! A block closes to new entries after [`BLOCK_ENTRIES`] appends (deleted
//! ones included) or [`BLOCK_BYTES`] bytes, Redis's node limits, so an
//! approximate (`~`) trim, which drops whole blocks only, removes what
//! Redis would for the same history of small entries. A deleted entry's
//! bytes are cut out of its block at once (a block is small); a block whose
//! entries are all gone is dropped.
//!
//! # Memory
//! [`Stream::heap_bytes`] is O(1): blocks keep a running byte count, and each
//! group keeps one for its consumers and pending entries, updated by the
//! group's own methods (the only way to change them).

use std::collections::{BTreeMap, BTreeSet};

/// Appends (deleted included) after which a block takes no more entries.
pub const BLOCK_ENTRIES: u32 = 100;
/// Bytes after which a block takes no more entries.
pub const BLOCK_BYTES: usize = 4096;

/// The block limits in force: Redis's `stream-node-max-entries` and
/// `stream-node-max-bytes` as CONFIG SET last set them (0: no limit), read
/// with relaxed loads when a block is chosen for an append.
pub mod limits {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

    static ENTRIES: AtomicU32 = AtomicU32::new(super::BLOCK_ENTRIES);
    static BYTES: AtomicUsize = AtomicUsize::new(super::BLOCK_BYTES);

    pub fn set(entries: u64, bytes: u64) {
        let entries = if entries == 0 {
            u32::MAX
        } else {
            entries.min(u64::from(u32::MAX)) as u32
        };
        let bytes = if bytes == 0 {
            usize::MAX
        } else {
            usize::try_from(bytes).unwrap_or(usize::MAX)
        };
        ENTRIES.store(entries, Relaxed);
        BYTES.store(bytes, Relaxed);
    }

    /// (appends, bytes) after which a block takes no more entries.
    pub fn get() -> (u32, usize) {
        (ENTRIES.load(Relaxed), BYTES.load(Relaxed))
    }

    /// How many entries a `~` trim without LIMIT may delete: a hundred
    /// blocks' worth, as Redis caps it (10,000 when blocks are unbounded,
    /// never more than a million).
    pub fn approx_trim_limit() -> u64 {
        match ENTRIES.load(Relaxed) {
            u32::MAX => 10_000,
            n => (100 * u64::from(n)).min(1_000_000),
        }
    }
}

/// A stream entry id: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next id, `None` past the last one.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous id, `None` before the first one.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry read out of a stream: its id and its field/value pairs,
/// borrowed from the block.
pub type EntryFields<'a> = (StreamId, Vec<(&'a [u8], &'a [u8])>);

// ------------------------------------------------------------------ blocks

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads a block's own bytes (written by this module, so well formed).
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        while let Some(&b) = self.b.get(self.at) {
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    }

    fn bytes(&mut self) -> &'a [u8] {
        let n = self.varint() as usize;
        let end = (self.at + n).min(self.b.len());
        let s = &self.b[self.at..end];
        self.at = end;
        s
    }
}

#[derive(Clone, Debug)]
struct Block {
    /// `master field count | fields... | entries...`.
    data: Vec<u8>,
    /// Where the entries start.
    entries_at: u32,
    /// Entries appended, deleted ones included (Redis's node count).
    appended: u32,
    /// Entries present.
    live: u32,
    /// The last id appended, even if deleted since (what MINID trimming
    /// compares, as Redis reads its node's last entry).
    last: StreamId,
}

/// Where one entry sits in its block.
struct Slot {
    id: StreamId,
    start: usize,
    end: usize,
}

struct Walk<'a> {
    master_fields: Vec<&'a [u8]>,
    c: Cursor<'a>,
    master: StreamId,
}

impl<'a> Walk<'a> {
    /// The next entry's id, where it starts and its flags; the cursor is
    /// left at its values.
    fn next_id(&mut self) -> Option<(StreamId, usize, u64)> {
        if self.c.at >= self.c.b.len() {
            return None;
        }
        let start = self.c.at;
        let ms_delta = self.c.varint();
        let s = self.c.varint();
        let m = self.master;
        let id = if ms_delta == 0 {
            StreamId::new(m.ms, m.seq.wrapping_add(s))
        } else {
            StreamId::new(m.ms.wrapping_add(ms_delta), s)
        };
        Some((id, start, self.c.varint()))
    }

    /// The field/value pairs of the entry [`Walk::next_id`] just read.
    fn fields(&mut self, flags: u64) -> Vec<(&'a [u8], &'a [u8])> {
        let n = (flags >> 1) as usize;
        let mut fields = Vec::with_capacity(n);
        if flags & 1 == 1 {
            for i in 0..self.master_fields.len() {
                let f = self.master_fields[i];
                fields.push((f, self.c.bytes()));
            }
        } else {
            for _ in 0..n {
                let f = self.c.bytes();
                fields.push((f, self.c.bytes()));
            }
        }
        fields
    }

    /// Steps over the entry [`Walk::next_id`] just read.
    fn skip(&mut self, flags: u64) {
        let n = if flags & 1 == 1 {
            self.master_fields.len()
        } else {
            2 * (flags >> 1) as usize
        };
        for _ in 0..n {
            self.c.bytes();
        }
    }
}

impl Block {
    fn new(master: StreamId, fields: &[&[u8]]) -> Block {
        let mut data = Vec::new();
        let n = fields.len() / 2;
        put_varint(&mut data, n as u64);
        for f in fields.iter().step_by(2) {
            put_bytes(&mut data, f);
        }
        Block {
            entries_at: data.len() as u32,
            data,
            appended: 0,
            live: 0,
            last: master,
        }
    }

    fn master_fields(&self) -> Vec<&[u8]> {
        let mut c = Cursor {
            b: &self.data,
            at: 0,
        };
        let n = c.varint();
        (0..n).map(|_| c.bytes()).collect()
    }

    fn encoded_len(fields: &[&[u8]]) -> usize {
        fields.iter().map(|f| f.len() + 2).sum::<usize>() + 6
    }

    fn push(&mut self, master: StreamId, id: StreamId, fields: &[&[u8]]) {
        // Same field names as the master entry (compared in place, no
        // allocation: this runs for every XADD).
        let same = {
            let mut c = Cursor {
                b: &self.data,
                at: 0,
            };
            c.varint() as usize * 2 == fields.len()
                && fields.iter().step_by(2).all(|f| c.bytes() == *f)
        };
        let mut out = std::mem::take(&mut self.data);
        let ms_delta = id.ms - master.ms;
        put_varint(&mut out, ms_delta);
        put_varint(
            &mut out,
            if ms_delta == 0 {
                id.seq - master.seq
            } else {
                id.seq
            },
        );
        let n = (fields.len() / 2) as u64;
        put_varint(&mut out, (n << 1) | same as u64);
        if same {
            for v in fields.iter().skip(1).step_by(2) {
                put_bytes(&mut out, v);
            }
        } else {
            for f in fields {
                put_bytes(&mut out, f);
            }
        }
        self.data = out;
        self.appended += 1;
        self.live += 1;
        self.last = id;
    }

    /// Every entry of the block, in id order.
    fn slots(&self, master: StreamId) -> Vec<Slot> {
        let mut it = self.walk(master);
        let mut out = Vec::with_capacity(self.live as usize);
        while let Some((id, start, flags)) = it.next_id() {
            it.skip(flags);
            out.push(Slot {
                id,
                start,
                end: it.c.at,
            });
        }
        out
    }

    /// A walk over the block's entries that decodes ids first and fields
    /// only when asked: a range that wants a few entries of a block reads
    /// only those.
    fn walk(&self, master: StreamId) -> Walk<'_> {
        Walk {
            master_fields: self.master_fields(),
            c: Cursor {
                b: &self.data,
                at: self.entries_at as usize,
            },
            master,
        }
    }

    /// Cuts the bytes `start..end` (whole entries, `n` of them) out.
    fn cut(&mut self, start: usize, end: usize, n: u32) {
        self.data.drain(start..end);
        self.live -= n;
    }
}

// ------------------------------------------------------------------ groups

/// A delivered, not yet acknowledged entry of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub consumer: Vec<u8>,
    /// Unix ms of the last delivery.
    pub delivery_ms: u64,
    pub deliveries: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Unix ms the consumer was last seen (read or claimed).
    pub seen_ms: u64,
    /// Its pending entries (details in the group's list).
    pel: BTreeSet<StreamId>,
}

impl Consumer {
    pub fn pending(&self) -> &BTreeSet<StreamId> {
        &self.pel
    }
}

/// Bytes one pending entry costs (group list node + consumer set node).
const PENDING_BYTES: usize = 96;
const CONSUMER_BYTES: usize = 96;
const GROUP_BYTES: usize = 128;

/// A consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, when known (Redis's `entries-read`;
    /// `None` is its invalid counter).
    pub entries_read: Option<u64>,
    pel: BTreeMap<StreamId, Pending>,
    consumers: BTreeMap<Vec<u8>, Consumer>,
    bytes: usize,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: Option<u64>) -> Group {
        Group {
            last_id,
            entries_read,
            pel: BTreeMap::new(),
            consumers: BTreeMap::new(),
            bytes: 0,
        }
    }

    pub fn pel(&self) -> &BTreeMap<StreamId, Pending> {
        &self.pel
    }

    pub fn consumers(&self) -> &BTreeMap<Vec<u8>, Consumer> {
        &self.consumers
    }

    pub fn consumer(&self, name: &[u8]) -> Option<&Consumer> {
        self.consumers.get(name)
    }

    /// Creates the consumer if missing (seen at `now`); true if created.
    pub fn create_consumer(&mut self, name: &[u8], now: u64) -> bool {
        if self.consumers.contains_key(name) {
            return false;
        }
        self.bytes += CONSUMER_BYTES + name.len();
        self.consumers.insert(
            name.to_vec(),
            Consumer {
                seen_ms: now,
                pel: BTreeSet::new(),
            },
        );
        true
    }

    /// Marks the consumer seen at `now`, creating it if missing.
    pub fn touch_consumer(&mut self, name: &[u8], now: u64) {
        if !self.create_consumer(name, now) {
            if let Some(c) = self.consumers.get_mut(name) {
                c.seen_ms = now;
            }
        }
    }

    /// Sets a consumer's seen time as given (loading).
    pub fn set_seen(&mut self, name: &[u8], seen_ms: u64) {
        if let Some(c) = self.consumers.get_mut(name) {
            c.seen_ms = seen_ms;
        }
    }

    /// Deletes a consumer and its pending entries; how many it had.
    pub fn delete_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        self.bytes -= CONSUMER_BYTES + name.len();
        for id in &c.pel {
            self.pel.remove(id);
            self.bytes -= PENDING_BYTES;
        }
        Some(c.pel.len())
    }

    /// Makes `id` pending for `consumer` (created if missing), taking it
    /// from whichever consumer had it, with this delivery time and count.
    pub fn assign(&mut self, id: StreamId, consumer: &[u8], delivery_ms: u64, deliveries: u64) {
        self.create_consumer(consumer, delivery_ms);
        match self.pel.get_mut(&id) {
            Some(p) => {
                if p.consumer != consumer {
                    if let Some(old) = self.consumers.get_mut(&p.consumer) {
                        old.pel.remove(&id);
                    }
                    p.consumer = consumer.to_vec();
                }
                p.delivery_ms = delivery_ms;
                p.deliveries = deliveries;
            }
            None => {
                self.bytes += PENDING_BYTES;
                self.pel.insert(
                    id,
                    Pending {
                        consumer: consumer.to_vec(),
                        delivery_ms,
                        deliveries,
                    },
                );
            }
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Updates a pending entry's delivery time and count in place.
    pub fn redeliver(&mut self, id: StreamId, delivery_ms: u64, deliveries: u64) {
        if let Some(p) = self.pel.get_mut(&id) {
            p.delivery_ms = delivery_ms;
            p.deliveries = deliveries;
        }
    }

    /// Acknowledges `id`: true if it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(p) = self.pel.remove(&id) else {
            return false;
        };
        self.bytes -= PENDING_BYTES;
        if let Some(c) = self.consumers.get_mut(&p.consumer) {
            c.pel.remove(&id);
        }
        true
    }
}

// ------------------------------------------------------------------ stream

#[derive(Clone, Debug, Default)]
struct Inner {
    blocks: BTreeMap<StreamId, Block>,
    len: u64,
    last_id: StreamId,
    max_deleted: StreamId,
    entries_added: u64,
    groups: BTreeMap<Vec<u8>, Group>,
    /// Bytes of the blocks (capacities and per-block overhead).
    block_bytes: usize,
}

/// How a trim chooses what to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// A stream. Boxed, so it costs a key one pointer.
#[derive(Clone, Default)]
pub struct Stream(Box<Inner>);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({} entries)", self.0.len)
    }
}

/// Bytes a block costs besides its data: its map slot and header.
const BLOCK_OVERHEAD: usize = 64;

impl Stream {
    pub fn len(&self) -> u64 {
        self.0.len
    }

    /// No entries (the key stays: an emptied stream is still a stream, as
    /// in Redis).
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    pub fn last_id(&self) -> StreamId {
        self.0.last_id
    }

    pub fn max_deleted(&self) -> StreamId {
        self.0.max_deleted
    }

    pub fn entries_added(&self) -> u64 {
        self.0.entries_added
    }

    /// Sets the counters XSETID (and loading) set.
    pub fn set_meta(&mut self, last_id: StreamId, entries_added: u64, max_deleted: StreamId) {
        self.0.last_id = last_id;
        self.0.entries_added = entries_added;
        self.0.max_deleted = max_deleted;
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Inner>()
            + self.0.block_bytes
            + self
                .0
                .groups
                .iter()
                .map(|(n, g)| g.bytes + GROUP_BYTES + n.len())
                .sum::<usize>()
    }

    /// Number of blocks (for tests and OBJECT-style introspection).
    pub fn blocks(&self) -> usize {
        self.0.blocks.len()
    }

    /// Appends an entry with `id`, which must be past [`Stream::last_id`];
    /// `fields` is the flat field/value list (even, non-empty).
    pub fn append(&mut self, id: StreamId, fields: &[&[u8]]) {
        debug_assert!(id > self.0.last_id || (self.0.len == 0 && self.0.entries_added == 0));
        let inner = &mut *self.0;
        let need = Block::encoded_len(fields);
        let (max_entries, max_bytes) = limits::get();
        let open = inner.blocks.iter_mut().next_back().filter(|(_, b)| {
            b.appended < max_entries && b.data.len().saturating_add(need) < max_bytes
        });
        match open {
            Some((&master, b)) => {
                let before = b.data.capacity();
                b.push(master, id, fields);
                inner.block_bytes = inner.block_bytes + b.data.capacity() - before;
            }
            None => {
                // The last block is closed for good: give back the room its
                // vector grew into.
                if let Some((_, last)) = inner.blocks.iter_mut().next_back() {
                    let before = last.data.capacity();
                    last.data.shrink_to_fit();
                    inner.block_bytes = inner.block_bytes + last.data.capacity() - before;
                }
                let mut b = Block::new(id, fields);
                b.push(id, id, fields);
                inner.block_bytes += b.data.capacity() + BLOCK_OVERHEAD;
                inner.blocks.insert(id, b);
            }
        }
        inner.len += 1;
        inner.last_id = id;
        inner.entries_added += 1;
    }

    /// The first entry's id (0-0 when empty, as Redis reports it).
    pub fn first_id(&self) -> StreamId {
        self.first().map_or(StreamId::MIN, |(id, _)| id)
    }

    /// The last entry present (not [`Stream::last_id`], which may be
    /// deleted or set past it).
    pub fn last_valid_id(&self) -> StreamId {
        self.last().map_or(StreamId::MIN, |(id, _)| id)
    }

    pub fn first(&self) -> Option<EntryFields<'_>> {
        self.range(StreamId::MIN, StreamId::MAX, 1)
            .into_iter()
            .next()
    }

    pub fn last(&self) -> Option<EntryFields<'_>> {
        self.rev_range(StreamId::MIN, StreamId::MAX, 1)
            .into_iter()
            .next()
    }

    pub fn get(&self, id: StreamId) -> Option<EntryFields<'_>> {
        self.range(id, id, 1).into_iter().next()
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.get(id).is_some()
    }

    /// Entries with `start <= id <= end`, ascending, at most `count`
    /// (0 = all).
    pub fn range(&self, start: StreamId, end: StreamId, count: usize) -> Vec<EntryFields<'_>> {
        self.view().range(start, end, count)
    }

    /// Entries with `start <= id <= end`, descending, at most `count`
    /// (0 = all).
    pub fn rev_range(&self, start: StreamId, end: StreamId, count: usize) -> Vec<EntryFields<'_>> {
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        // Per block, the ids first (no field is decoded to be skipped),
        // then the fields of the entries wanted, newest first: XREVRANGE
        // COUNT 1 and "is there anything new" read one entry, not a block.
        let mut ids = Vec::new();
        for (&master, b) in self.0.blocks.range(..=end).rev() {
            if b.last < start {
                break;
            }
            let mut it = b.walk(master);
            ids.clear();
            while let Some((id, _, flags)) = it.next_id() {
                if id > end {
                    break;
                }
                ids.push((id, it.c.at, flags));
                it.skip(flags);
            }
            for &(id, at, flags) in ids.iter().rev() {
                if id < start {
                    return out;
                }
                it.c.at = at;
                out.push((id, it.fields(flags)));
                if count != 0 && out.len() >= count {
                    return out;
                }
            }
        }
        out
    }

    /// Deletes one entry; true if it was there. Does not move
    /// `max_deleted` (XDEL does that).
    pub fn delete(&mut self, id: StreamId) -> bool {
        let inner = &mut *self.0;
        let Some((&master, b)) = inner.blocks.range_mut(..=id).next_back() else {
            return false;
        };
        let Some((start, end)) = b
            .slots(master)
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.start, s.end))
        else {
            return false;
        };
        b.cut(start, end, 1);
        inner.len -= 1;
        if b.live == 0 {
            inner.block_bytes -= b.data.capacity() + BLOCK_OVERHEAD;
            inner.blocks.remove(&master);
        }
        true
    }

    /// Trims as Redis's `streamTrim` does: whole blocks first; with
    /// `approx`, only whole blocks; `limit` (0 = none) caps the entries
    /// removed. Returns how many were removed.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let inner = &mut *self.0;
        let mut deleted = 0u64;
        while let Some((&master, b)) = inner.blocks.iter_mut().next() {
            if let Trim::MaxLen(max) = how {
                if inner.len <= max {
                    break;
                }
            }
            let entries = b.live as u64;
            if limit != 0 && deleted + entries > limit {
                break;
            }
            let whole = match how {
                Trim::MaxLen(max) => inner.len - entries >= max,
                Trim::MinId(min) => b.last < min,
            };
            if whole {
                inner.block_bytes -= b.data.capacity() + BLOCK_OVERHEAD;
                inner.blocks.remove(&master);
                inner.len -= entries;
                deleted += entries;
                continue;
            }
            if approx {
                break;
            }
            let slots = b.slots(master);
            let mut n = 0usize;
            for s in &slots {
                let stop = match how {
                    Trim::MaxLen(max) => inner.len - n as u64 <= max,
                    Trim::MinId(min) => s.id >= min,
                };
                if stop {
                    break;
                }
                n += 1;
            }
            if n > 0 {
                let (start, end) = (slots[0].start, slots[n - 1].end);
                drop(slots);
                b.cut(start, end, n as u32);
                inner.len -= n as u64;
                deleted += n as u64;
            }
            break;
        }
        deleted
    }

    // -------------------------------------------------------------- groups

    pub fn groups(&self) -> &BTreeMap<Vec<u8>, Group> {
        &self.0.groups
    }

    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.0.groups.get(name)
    }

    pub fn group_mut(&mut self, name: &[u8]) -> Option<&mut Group> {
        self.0.groups.get_mut(name)
    }

    /// Creates a group; false if one has that name.
    pub fn create_group(&mut self, name: &[u8], g: Group) -> bool {
        if self.0.groups.contains_key(name) {
            return false;
        }
        self.0.groups.insert(name.to_vec(), g);
        true
    }

    pub fn destroy_group(&mut self, name: &[u8]) -> bool {
        self.0.groups.remove(name).is_some()
    }

    /// A group and the stream's entries, for reads that change the group.
    pub fn group_and_entries(&mut self, name: &[u8]) -> Option<(&mut Group, StreamView<'_>)> {
        let inner = &mut *self.0;
        let g = inner.groups.get_mut(name)?;
        Some((
            g,
            StreamView {
                blocks: &inner.blocks,
                len: inner.len,
                last_id: inner.last_id,
                max_deleted: inner.max_deleted,
                entries_added: inner.entries_added,
            },
        ))
    }

    fn view(&self) -> StreamView<'_> {
        StreamView {
            blocks: &self.0.blocks,
            len: self.0.len,
            last_id: self.0.last_id,
            max_deleted: self.0.max_deleted,
            entries_added: self.0.entries_added,
        }
    }

    /// See [`StreamView::entries_read_estimate`].
    pub fn entries_read_estimate(&self, id: StreamId) -> Option<u64> {
        self.view().entries_read_estimate(id)
    }

    /// See [`StreamView::lag`].
    pub fn lag(&self, g: &Group) -> Option<i64> {
        self.view().lag(g)
    }
}

/// The entries and counters of a stream, borrowed beside one of its
/// groups (see [`Stream::group_and_entries`]).
pub struct StreamView<'a> {
    blocks: &'a BTreeMap<StreamId, Block>,
    pub len: u64,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
}

impl<'a> StreamView<'a> {
    fn stream_range(&self, start: StreamId, end: StreamId, count: usize) -> Vec<EntryFields<'a>> {
        // The same walk as `Stream::range`, over borrowed blocks.
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        let from = self
            .blocks
            .range(..=start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let blocks: &'a BTreeMap<StreamId, Block> = self.blocks;
        for (&master, b) in blocks.range(from..=end) {
            if b.last < start {
                continue;
            }
            let mut it = b.walk(master);
            while let Some((id, _, flags)) = it.next_id() {
                if id > end {
                    return out;
                }
                if id < start {
                    it.skip(flags);
                    continue;
                }
                out.push((id, it.fields(flags)));
                if count != 0 && out.len() >= count {
                    return out;
                }
            }
        }
        out
    }

    pub fn range(&self, start: StreamId, end: StreamId, count: usize) -> Vec<EntryFields<'a>> {
        self.stream_range(start, end, count)
    }

    pub fn get(&self, id: StreamId) -> Option<EntryFields<'a>> {
        self.stream_range(id, id, 1).into_iter().next()
    }

    pub fn first_id(&self) -> StreamId {
        self.stream_range(StreamId::MIN, StreamId::MAX, 1)
            .first()
            .map_or(StreamId::MIN, |e| e.0)
    }

    /// Whether a deleted entry may lie in `start..` (Redis's
    /// `streamRangeHasTombstones` with no end).
    pub fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.len == 0 || self.max_deleted.is_zero() || self.first_id() > self.max_deleted {
            return false;
        }
        start <= self.max_deleted
    }

    /// Redis's `streamEstimateDistanceFromFirstEverEntry`: how many entries
    /// were added up to `id`, when that can be known.
    pub fn entries_read_estimate(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.len == 0 && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            if id < first {
                return Some(self.entries_added - self.len);
            }
            if id == first {
                return Some(self.entries_added - self.len + 1);
            }
        }
        None
    }

    /// Redis's `streamReplyWithCGLag`: entries the group has yet to read,
    /// when known.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if let Some(read) = g.entries_read {
            if !self.has_tombstones_from(g.last_id) {
                return Some(self.entries_added as i64 - read as i64);
            }
        }
        self.entries_read_estimate(g.last_id)
            .map(|read| self.entries_added as i64 - read as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn filled(n: u64) -> Stream {
        let mut s = Stream::default();
        for i in 1..=n {
            let v = i.to_string();
            s.append(id(i, 0), &[b"f", v.as_bytes()]);
        }
        s
    }

    #[test]
    fn entries_pack_into_blocks_of_a_hundred() {
        let s = filled(250);
        assert_eq!(s.len(), 250);
        assert_eq!(s.blocks(), 3);
        let all = s.range(StreamId::MIN, StreamId::MAX, 0);
        assert_eq!(all.len(), 250);
        assert_eq!(all[0].0, id(1, 0));
        assert_eq!(all[249].1, vec![(&b"f"[..], &b"250"[..])]);
        // Same-shaped entries store only their values.
        assert!(s.heap_bytes() < 250 * 16 + 4096, "{}", s.heap_bytes());
    }

    #[test]
    fn fields_that_differ_from_the_master_are_kept() {
        let mut s = Stream::default();
        s.append(id(1, 0), &[b"a", b"1", b"b", b"2"]);
        s.append(id(1, 1), &[b"x", b"9"]);
        s.append(id(1, 2), &[b"a", b"3", b"b", b"4"]);
        let all = s.range(StreamId::MIN, StreamId::MAX, 0);
        assert_eq!(all[1], (id(1, 1), vec![(&b"x"[..], &b"9"[..])]));
        assert_eq!(
            all[2].1,
            vec![(&b"a"[..], &b"3"[..]), (&b"b"[..], &b"4"[..])]
        );
    }

    #[test]
    fn ranges_both_ways_and_counts() {
        let s = filled(150);
        let r = s.range(id(99, 0), id(102, 0), 0);
        assert_eq!(
            r.iter().map(|e| e.0.ms).collect::<Vec<_>>(),
            vec![99, 100, 101, 102]
        );
        let r = s.rev_range(id(99, 0), id(102, 0), 3);
        assert_eq!(
            r.iter().map(|e| e.0.ms).collect::<Vec<_>>(),
            vec![102, 101, 100]
        );
        assert!(s.range(id(5, 1), id(5, 9), 0).is_empty());
        assert_eq!(s.last_valid_id(), id(150, 0));
    }

    #[test]
    fn deletes_cut_entries_and_drop_empty_blocks() {
        let mut s = filled(120);
        let before = s.heap_bytes();
        assert!(s.delete(id(50, 0)));
        assert!(!s.delete(id(50, 0)));
        assert_eq!(s.len(), 119);
        assert!(s.get(id(50, 0)).is_none());
        assert!(s.get(id(51, 0)).is_some());
        for i in 101..=120 {
            assert!(s.delete(id(i, 0)));
        }
        assert_eq!(s.blocks(), 1);
        assert!(s.heap_bytes() < before);
        // The last id stays where it was.
        assert_eq!(s.last_id(), id(120, 0));
        assert_eq!(s.last_valid_id(), id(100, 0));
    }

    #[test]
    fn trims_like_redis() {
        let mut s = filled(250);
        // Approximate: whole blocks only.
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
        assert_eq!(s.len(), 150);
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.first_id(), id(131, 0));
        assert_eq!(s.trim(Trim::MinId(id(140, 0)), false, 0), 9);
        assert_eq!(s.first_id(), id(140, 0));
        // A limit below a block's size stops the trim.
        assert_eq!(s.trim(Trim::MaxLen(0), true, 50), 0);
        assert_eq!(s.trim(Trim::MaxLen(0), false, 0), 111);
        assert_eq!(s.len(), 0);
        assert_eq!(s.first_id(), StreamId::MIN);
    }

    #[test]
    fn groups_track_pending_entries_and_bytes() {
        let mut s = filled(5);
        let base = s.heap_bytes();
        assert!(s.create_group(b"g", Group::new(StreamId::MIN, Some(0))));
        assert!(!s.create_group(b"g", Group::new(StreamId::MIN, Some(0))));
        let g = s.group_mut(b"g").unwrap();
        g.assign(id(1, 0), b"alice", 10, 1);
        g.assign(id(2, 0), b"alice", 10, 1);
        g.assign(id(2, 0), b"bob", 20, 1);
        assert_eq!(g.consumer(b"alice").unwrap().pending().len(), 1);
        assert_eq!(g.pel()[&id(2, 0)].consumer, b"bob");
        assert!(g.ack(id(1, 0)));
        assert!(!g.ack(id(1, 0)));
        assert_eq!(g.delete_consumer(b"bob"), Some(1));
        assert!(g.pel().is_empty());
        g.delete_consumer(b"alice");
        assert_eq!(s.heap_bytes(), base + GROUP_BYTES + 1);
        assert!(s.destroy_group(b"g"));
        assert_eq!(s.heap_bytes(), base);
    }

    #[test]
    fn ids_step_across_their_edges() {
        assert_eq!(id(1, u64::MAX).next(), Some(id(2, 0)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(id(2, 0).prev(), Some(id(1, u64::MAX)));
        assert_eq!(StreamId::MIN.prev(), None);
    }
}
