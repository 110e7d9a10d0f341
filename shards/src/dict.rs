//! The keyspace's hash table: separate chaining over a power-of-two bucket
//! array, keyed by byte strings.
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

struct Node<V> {
    key: NodeKey,
    value: V,
    next: Option<Box<Node<V>>>,
}

/// Keys up to this many bytes live inside the node: most keys are short, and
/// this saves one allocation (and its allocator overhead) per key.
const INLINE_KEY: usize = 22;

/// A key stored inline when short, on the heap when long. 24 bytes either way.
enum NodeKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl NodeKey {
    fn new(key: &[u8]) -> NodeKey {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            NodeKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            NodeKey::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            NodeKey::Inline { len, bytes } => &bytes[..*len as usize],
            NodeKey::Heap(b) => b,
        }
    }
}

/// A chained hash table from byte-string keys to `V`.
pub struct Dict<V> {
    buckets: Vec<Option<Box<Node<V>>>>,
    len: usize,
    hasher: RandomState,
}

const MIN_BUCKETS: usize = 4;

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Dict<V> {
    pub fn new() -> Self {
        let mut buckets = Vec::new();
        buckets.resize_with(MIN_BUCKETS, || None);
        Dict {
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

    /// Bytes held by the bucket array itself (not the entries).
    pub fn table_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Option<Box<Node<V>>>>()
    }

    /// Heap bytes one entry of `key_len` costs beyond its value's payload:
    /// the node with its allocator header, and a long key's own allocation.
    pub const fn entry_overhead(key_len: usize) -> usize {
        let node = std::mem::size_of::<Node<V>>() + 16;
        if key_len <= INLINE_KEY {
            node
        } else {
            node + key_len + 16
        }
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn bucket_of(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) & self.mask()
    }

    /// The key's hash, for a lookup followed by a second one on the same key
    /// without hashing twice.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// `get_mut` with a hash from [`Dict::hash`].
    pub fn get_mut_hashed(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let b = (hash as usize) & self.mask();
        let mut node = self.buckets[b].as_deref_mut();
        while let Some(n) = node {
            if n.key.as_bytes() == key {
                return Some(&mut n.value);
            }
            node = n.next.as_deref_mut();
        }
        None
    }

    /// `get` with a hash from [`Dict::hash`].
    pub fn get_hashed(&self, hash: u64, key: &[u8]) -> Option<&V> {
        let mut node = self.buckets[(hash as usize) & self.mask()].as_deref();
        while let Some(n) = node {
            if n.key.as_bytes() == key {
                return Some(&n.value);
            }
            node = n.next.as_deref();
        }
        None
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.get_hashed(self.hash(key), key)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.get_mut_hashed(self.hash(key), key)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        self.insert_new(key, value);
        None
    }

    /// Inserts a key the caller knows is absent (loading a snapshot).
    pub fn insert_absent(&mut self, key: &[u8], value: V) {
        self.insert_new(key, value)
    }

    /// Inserts a key known to be absent.
    fn insert_new(&mut self, key: &[u8], value: V) {
        if self.len >= self.buckets.len() {
            self.resize(self.buckets.len() * 2);
        }
        let b = self.bucket_of(key);
        let key = NodeKey::new(key);
        let next = self.buckets[b].take();
        self.buckets[b] = Some(Box::new(Node { key, value, next }));
        self.len += 1;
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let b = self.bucket_of(key);
        let mut link = &mut self.buckets[b];
        loop {
            match link {
                None => return None,
                Some(n) if n.key.as_bytes() == key => {
                    let mut node = link.take()?;
                    *link = node.next.take();
                    self.len -= 1;
                    let value = node.value;
                    self.maybe_shrink();
                    return Some(value);
                }
                Some(n) => link = &mut n.next,
            }
        }
    }

    fn maybe_shrink(&mut self) {
        let n = self.buckets.len();
        if n > MIN_BUCKETS && self.len * 8 < n {
            self.resize((n / 2).max(MIN_BUCKETS));
        }
    }

    /// Empties the table, returning its old contents for deferred dropping.
    pub fn take_all(&mut self) -> Dict<V> {
        std::mem::take(self)
    }

    fn resize(&mut self, new_len: usize) {
        let mut new_buckets: Vec<Option<Box<Node<V>>>> = Vec::new();
        new_buckets.resize_with(new_len, || None);
        let old = std::mem::replace(&mut self.buckets, new_buckets);
        let mask = new_len - 1;
        for mut head in old {
            while let Some(mut node) = head {
                head = node.next.take();
                let b = (self.hasher.hash_one(node.key.as_bytes()) as usize) & mask;
                node.next = self.buckets[b].take();
                self.buckets[b] = Some(node);
            }
        }
    }

    /// Visits one bucket per step in reverse-bit order, starting at `cursor`,
    /// calling `f` for each entry, until about `count` entries were visited or
    /// the table is done. Returns the next cursor (0 when finished).
    pub fn scan(&self, mut cursor: u64, count: usize, mut f: impl FnMut(&[u8], &V)) -> u64 {
        let mask = self.mask() as u64;
        let mut seen = 0;
        loop {
            let mut node = self.buckets[(cursor & mask) as usize].as_deref();
            while let Some(n) = node {
                f(n.key.as_bytes(), &n.value);
                seen += 1;
                node = n.next.as_deref();
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
    /// entries at position `from` or later (with their positions), and
    /// returns the first position after the bucket (`None` after the last).
    ///
    /// `from` need not start a bucket: after the table halved, the bucket
    /// holding it also holds earlier positions, which are left out. Only
    /// then are the entries' positions computed (hashed); otherwise `f` gets
    /// `from` for every entry.
    pub fn visit_bucket(&self, from: u64, mut f: impl FnMut(&[u8], &V, u64)) -> Option<u64> {
        let bits = self.buckets.len().trailing_zeros();
        let shift = 64 - bits;
        let index = from >> shift;
        let bucket = (from.reverse_bits() as usize) & self.mask();
        let aligned = index << shift == from;
        let mut node = self.buckets[bucket].as_deref();
        while let Some(n) = node {
            let k = n.key.as_bytes();
            if aligned {
                f(k, &n.value, from);
            } else {
                let p = self.position(k);
                if p >= from {
                    f(k, &n.value, p);
                }
            }
            node = n.next.as_deref();
        }
        let next = index + 1;
        (next < 1 << bits).then(|| next << shift)
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Keys of one bucket chosen from `random`, walking forward past empty
    /// buckets. Used for sampling; `None` only when the table is empty.
    pub fn sample(&self, random: u64) -> Option<(&[u8], &V)> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let start = random as usize & mask;
        for i in 0..self.buckets.len() {
            let mut chain = Vec::new();
            let mut node = self.buckets[(start + i) & mask].as_deref();
            while let Some(n) = node {
                chain.push(n);
                node = n.next.as_deref();
            }
            if !chain.is_empty() {
                let pick = chain[((random >> 32) as usize) % chain.len()];
                return Some((pick.key.as_bytes(), &pick.value));
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.buckets.iter().flat_map(|head| {
            let mut node = head.as_deref();
            std::iter::from_fn(move || {
                let n = node?;
                node = n.next.as_deref();
                Some((n.key.as_bytes(), &n.value))
            })
        })
    }
}

impl<V: Clone> Clone for Dict<V> {
    fn clone(&self) -> Self {
        let mut d = Dict::new();
        for (k, v) in self.iter() {
            d.insert_new(k, v.clone());
        }
        d
    }
}

impl<V> Drop for Dict<V> {
    // Long chains would otherwise drop recursively and could overflow the stack.
    fn drop(&mut self) {
        for head in self.buckets.iter_mut() {
            let mut node = head.take();
            while let Some(mut n) = node {
                node = n.next.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn insert_get_remove() {
        let mut d = Dict::new();
        for i in 0..1000u32 {
            assert!(d.insert(format!("k{i}").as_bytes(), i).is_none());
        }
        assert_eq!(d.len(), 1000);
        assert_eq!(d.get(b"k500"), Some(&500));
        assert_eq!(d.insert(b"k500", 7), Some(500));
        for i in 0..1000u32 {
            assert!(d.remove(format!("k{i}").as_bytes()).is_some());
        }
        assert!(d.is_empty());
        assert!(d.table_bytes() < 1000);
    }

    #[test]
    fn scan_survives_resizes_between_calls() {
        let mut d = Dict::new();
        for i in 0..500u32 {
            d.insert(format!("k{i}").as_bytes(), i);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = d.scan(cursor, 10, |k, _| {
                seen.insert(k.to_vec());
            });
            step += 1;
            // Grow, then shrink the table in the middle of the iteration.
            if step == 5 {
                for i in 500..5000u32 {
                    d.insert(format!("k{i}").as_bytes(), i);
                }
            }
            if step == 20 {
                for i in 500..5000u32 {
                    d.remove(format!("k{i}").as_bytes());
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..500u32 {
            assert!(seen.contains(format!("k{i}").as_bytes()), "missed k{i}");
        }
    }

    /// Walking by position sees every key that stays, exactly once, in
    /// increasing position order, however the table resizes between buckets.
    #[test]
    fn bucket_walk_by_position_survives_resizes() {
        let mut d = Dict::new();
        for i in 0..500u32 {
            d.insert(format!("k{i}").as_bytes(), i);
        }
        let mut seen = Vec::new();
        let mut from = 0u64;
        let mut step = 0;
        loop {
            let next = d.visit_bucket(from, |k, _, p| {
                assert!(p >= from);
                seen.push((d.position(k), k.to_vec()))
            });
            step += 1;
            if step % 7 == 0 {
                for i in 500..3000u32 {
                    d.insert(format!("k{i}").as_bytes(), i);
                }
            }
            if step % 7 == 3 {
                for i in 500..3000u32 {
                    d.remove(format!("k{i}").as_bytes());
                }
            }
            match next {
                Some(n) => {
                    assert!(n > from);
                    from = n;
                }
                None => break,
            }
        }
        let kept: Vec<_> = seen
            .iter()
            .filter(|(_, k)| {
                let i: u32 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                i < 500
            })
            .collect();
        assert_eq!(kept.len(), 500);
        let mut keys: Vec<_> = seen.iter().map(|(_, k)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), seen.len(), "a key was visited twice");
    }

    #[test]
    fn sample_finds_entries() {
        let mut d = Dict::new();
        assert!(d.sample(1).is_none());
        d.insert(b"only", 1);
        for r in 0..50u64 {
            assert_eq!(
                d.sample(r.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .map(|(k, _)| k),
                Some(&b"only"[..])
            );
        }
    }
}
