//! The member tables of hashes, sets and sorted sets: a [`Table`] of boxed
//! nodes, each holding a short key inline and a value `V`.

use crate::table::{Chain, Table};

pub struct Node<V> {
    key: NodeKey,
    value: V,
    next: Option<Box<Node<V>>>,
}

impl<V> Chain for Box<Node<V>> {
    fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }
    fn next(&self) -> Option<&Self> {
        self.next.as_ref()
    }
    fn next_mut(&mut self) -> &mut Option<Self> {
        &mut self.next
    }
}

/// Keys up to this many bytes live inside the node: most keys are short, and
/// this saves one allocation (and its allocator overhead) per key.
pub(crate) const INLINE_KEY: usize = 22;

/// A key stored inline when short, on the heap when long. 24 bytes either
/// way. (Sorted sets' tree nodes hold their members in one too.)
#[derive(Clone)]
pub(crate) enum NodeKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl Default for NodeKey {
    fn default() -> Self {
        NodeKey::Inline {
            len: 0,
            bytes: [0; INLINE_KEY],
        }
    }
}

impl NodeKey {
    pub(crate) fn new(key: &[u8]) -> NodeKey {
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

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            NodeKey::Inline { len, bytes } => &bytes[..*len as usize],
            NodeKey::Heap(b) => b,
        }
    }
}

/// A chained hash table from byte-string keys to `V`.
pub struct Dict<V> {
    table: Table<Box<Node<V>>>,
}

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Dict<V> {
    pub fn new() -> Self {
        Dict {
            table: Table::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held by the bucket array itself (not the entries).
    pub fn table_bytes(&self) -> usize {
        self.table.table_bytes()
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

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.table.find(self.table.hash(key), key).map(|n| &n.value)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let h = self.table.hash(key);
        self.table.find_mut(h, key).map(|n| &mut n.value)
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

    /// Inserts a key known to be absent.
    fn insert_new(&mut self, key: &[u8], value: V) {
        self.table.insert_new(Box::new(Node {
            key: NodeKey::new(key),
            value,
            next: None,
        }));
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        self.table.remove(key).map(|n| n.value)
    }

    /// See [`Table::scan`].
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &V)) -> u64 {
        self.table
            .scan(cursor, count, |n| f(n.key.as_bytes(), &n.value))
    }

    /// See [`Table::position`].
    pub fn position(&self, key: &[u8]) -> u64 {
        self.table.position(key)
    }

    /// See [`Table::visit_bucket`].
    pub fn visit_bucket(&self, from: u64, mut f: impl FnMut(&[u8], &V, u64)) -> Option<u64> {
        self.table
            .visit_bucket(from, |n, p| f(n.key.as_bytes(), &n.value, p))
    }

    /// A random entry (see [`Table::sample`]).
    pub fn sample(&self, random: u64) -> Option<(&[u8], &V)> {
        self.table
            .sample(random)
            .map(|n| (n.key.as_bytes(), &n.value))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.table.iter().map(|n| (n.key.as_bytes(), &n.value))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Sampling is close to uniform: 10,000 draws over 10 keys pass the
    /// chi-square test Redis's suite applies to HRANDFIELD (df = 9, < 40),
    /// for a table built up and for one left sparse by deletes.
    #[test]
    fn sample_is_uniform() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x ^ (x >> 29)
        };
        let mut sparse = Dict::new();
        for i in 0..500u32 {
            sparse.insert(format!("gone{i}").as_bytes(), 0);
        }
        for i in 0..500u32 {
            sparse.remove(format!("gone{i}").as_bytes());
        }
        let mut dense = Dict::new();
        for d in [&mut dense, &mut sparse] {
            for i in 0..10u32 {
                d.insert(format!("k{i}").as_bytes(), i);
            }
            let mut seen = [0f64; 10];
            for _ in 0..10_000 {
                let (_, &v) = d.sample(next()).expect("not empty");
                seen[v as usize] += 1.0;
            }
            let chi: f64 = seen.iter().map(|&o| (o - 1000.0).powi(2) / 1000.0).sum();
            assert!(chi < 40.0, "chi-square {chi}: {seen:?}");
        }
    }

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
