//! The chained hash table under both the keyspace ([`crate::keyspace`]) and
//! the collections' member tables ([`crate::dict`]): separate chaining over
//! a power-of-two bucket array, generic over the node type, so the keyspace
//! can use nodes that hold key, value and metadata in one allocation while
//! hashes and sets keep plain boxed nodes.
//!
//! keel owns this table instead of using a library map because the keyspace
//! needs three things a general map does not give:
//! - **Stable scan cursors** across resizes (`SCAN` must return every key that
//!   was present for the whole iteration). Buckets are visited in reverse-bit
//!   order, so a cursor stays valid when the table doubles or halves between
//!   calls (the same idea Redis uses).
//! - **Random sampling** of entries, for `RANDOMKEY`, approximated LRU eviction
//!   and active expiry.
//! - **Bucket-level access**, which point-in-time snapshots build on: a bucket
//!   is the unit that is serialised before a write may touch it.
//!
//! Hashing uses a per-table random `ahash` state, so hostile keys cannot
//! force collisions.

use ahash::RandomState;

/// A node of a bucket's chain: it knows its key and owns the next node.
pub trait Chain: Sized {
    fn key(&self) -> &[u8];
    fn next(&self) -> Option<&Self>;
    fn next_mut(&mut self) -> &mut Option<Self>;
}

/// A chained hash table of nodes `N`, each found by its key.
pub struct Table<N: Chain> {
    buckets: Vec<Option<N>>,
    len: usize,
    hasher: RandomState,
}

const MIN_BUCKETS: usize = 4;

impl<N: Chain> Default for Table<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: Chain> Table<N> {
    pub fn new() -> Self {
        let mut buckets = Vec::new();
        buckets.resize_with(MIN_BUCKETS, || None);
        Table {
            buckets,
            len: 0,
            hasher: RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the bucket array itself (not the nodes).
    pub fn table_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Option<N>>()
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The key's hash, for a lookup followed by a second one on the same key
    /// without hashing twice.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The node holding `key`, given the key's [`Table::hash`].
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<&N> {
        let mut node = self.buckets[(hash as usize) & self.mask()].as_ref();
        while let Some(n) = node {
            if n.key() == key {
                return Some(n);
            }
            node = n.next();
        }
        None
    }

    /// [`Table::find`], mutably.
    pub fn find_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut N> {
        self.link(hash, key).as_mut()
    }

    /// The link that holds `key`'s node, or the empty link ending its
    /// chain when the key is absent. A node may be replaced through it (its
    /// `next` carried over); removals go through [`Table::remove`], which
    /// keeps the count.
    pub fn link(&mut self, hash: u64, key: &[u8]) -> &mut Option<N> {
        let b = (hash as usize) & self.mask();
        let mut link = &mut self.buckets[b];
        // (Checking first and advancing after keeps the borrow checker
        // happy: a conditional return of the link it matched is not.)
        while link.as_ref().is_some_and(|n| n.key() != key) {
            if let Some(n) = link {
                link = n.next_mut();
            }
        }
        link
    }

    /// Inserts a node whose key is absent (the caller checked).
    pub fn insert_new(&mut self, mut node: N) {
        if self.len >= self.buckets.len() {
            self.resize(self.buckets.len() * 2);
        }
        let b = (self.hash(node.key()) as usize) & self.mask();
        *node.next_mut() = self.buckets[b].take();
        self.buckets[b] = Some(node);
        self.len += 1;
    }

    /// Unlinks and returns `key`'s node (its `next` cleared).
    pub fn remove(&mut self, key: &[u8]) -> Option<N> {
        let link = self.link(self.hash(key), key);
        let mut node = link.take()?;
        *link = node.next_mut().take();
        self.len -= 1;
        self.maybe_shrink();
        Some(node)
    }

    fn maybe_shrink(&mut self) {
        let n = self.buckets.len();
        if n > MIN_BUCKETS && self.len * 8 < n {
            self.resize((n / 2).max(MIN_BUCKETS));
        }
    }

    fn resize(&mut self, new_len: usize) {
        let mut new_buckets: Vec<Option<N>> = Vec::new();
        new_buckets.resize_with(new_len, || None);
        let old = std::mem::replace(&mut self.buckets, new_buckets);
        let mask = new_len - 1;
        for mut head in old {
            while let Some(mut node) = head {
                head = node.next_mut().take();
                let b = (self.hasher.hash_one(node.key()) as usize) & mask;
                *node.next_mut() = self.buckets[b].take();
                self.buckets[b] = Some(node);
            }
        }
    }

    /// Visits one bucket per step in reverse-bit order, starting at `cursor`,
    /// calling `f` for each node, until about `count` nodes were visited or
    /// the table is done. Returns the next cursor (0 when finished).
    pub fn scan(&self, mut cursor: u64, count: usize, mut f: impl FnMut(&N)) -> u64 {
        let mask = self.mask() as u64;
        let mut seen = 0;
        loop {
            let mut node = self.buckets[(cursor & mask) as usize].as_ref();
            while let Some(n) = node {
                f(n);
                seen += 1;
                node = n.next();
            }
            // Increment the reversed cursor: set the unmasked high bits so the
            // carry propagates, reverse, add one, reverse back.
            cursor |= !mask;
            cursor = cursor.reverse_bits().wrapping_add(1).reverse_bits();
            if cursor == 0 || seen >= count {
                return cursor;
            }
        }
    }

    /// A key's place in scan order: its hash with the bits reversed. A
    /// bucket of a table of `2^n` buckets holds exactly the positions whose
    /// top `n` bits are its index reversed, so buckets are consecutive
    /// ranges of positions and the scan visits positions in increasing
    /// order, whatever the table size: a position is a key's address that
    /// resizes do not move.
    pub fn position(&self, key: &[u8]) -> u64 {
        self.hash(key).reverse_bits()
    }

    /// Visits the bucket holding scan position `from`, calling `f` for its
    /// nodes at position `from` or later (with their positions), and
    /// returns the first position after the bucket (`None` after the last).
    ///
    /// `from` need not start a bucket: after the table halved, the bucket
    /// holding it also holds earlier positions, which are left out. Only
    /// then are the nodes' positions computed (hashed); otherwise `f` gets
    /// `from` for every node.
    pub fn visit_bucket(&self, from: u64, mut f: impl FnMut(&N, u64)) -> Option<u64> {
        let bits = self.buckets.len().trailing_zeros();
        let shift = 64 - bits;
        let index = from >> shift;
        let bucket = (from.reverse_bits() as usize) & self.mask();
        let aligned = index << shift == from;
        let mut node = self.buckets[bucket].as_ref();
        while let Some(n) = node {
            if aligned {
                f(n, from);
            } else {
                let p = self.position(n.key());
                if p >= from {
                    f(n, p);
                }
            }
            node = n.next();
        }
        let next = index + 1;
        (next < 1 << bits).then(|| next << shift)
    }

    /// A node chosen from `random`, every node about equally likely (a
    /// hash's HRANDFIELD -1000 must pass Redis's chi-square test): draw a
    /// bucket and a slot below [`SAMPLE_SLOTS`]; a node sits in that slot of
    /// that bucket's chain, or the draw is made again. Nodes past the first
    /// few of a chain (rare below a load factor of one) are drawn less.
    /// After many misses (a table left sparse by deletes) it walks forward
    /// from a random bucket. `None` only when the table is empty.
    pub fn sample(&self, random: u64) -> Option<&N> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut draw = random;
        for _ in 0..256 {
            let head = self.buckets[draw as usize & mask].as_ref();
            let slot = (draw >> 32) as usize % SAMPLE_SLOTS;
            if let Some(n) = std::iter::successors(head, |n| n.next()).nth(slot) {
                return Some(n);
            }
            draw = splitmix64(draw);
        }
        let start = draw as usize & mask;
        for i in 0..self.buckets.len() {
            let head = self.buckets[(start + i) & mask].as_ref();
            let chain = std::iter::successors(head, |n| n.next());
            let len = chain.clone().count();
            if len > 0 {
                return chain.clone().nth(((random >> 32) as usize) % len);
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = &N> {
        self.buckets
            .iter()
            .flat_map(|head| std::iter::successors(head.as_ref(), |n| n.next()))
    }
}

impl<N: Chain> Drop for Table<N> {
    // Long chains would otherwise drop recursively and could overflow the stack.
    fn drop(&mut self) {
        for head in self.buckets.iter_mut() {
            let mut node = head.take();
            while let Some(mut n) = node {
                node = n.next_mut().take();
            }
        }
    }
}

/// Chain positions a sample draws among (see [`Table::sample`]).
const SAMPLE_SLOTS: usize = 4;

/// One step of SplitMix64: a fresh, well-mixed draw from the last one.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
