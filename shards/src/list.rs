//! The list type: a deque of byte strings with a running byte count (so
//! memory accounting stays O(1) per write).

use std::collections::VecDeque;

#[derive(Default, Clone)]
struct Inner {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// Boxed, so the list costs a key one pointer.
#[derive(Default, Clone)]
pub struct List(Box<Inner>);

impl std::fmt::Debug for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "List({} items)", self.0.items.len())
    }
}

const ITEM: usize = std::mem::size_of::<Vec<u8>>();

impl List {
    pub fn len(&self) -> usize {
        self.0.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.items.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.bytes + self.0.items.capacity() * ITEM + std::mem::size_of::<Inner>()
    }

    pub fn push_front(&mut self, v: Vec<u8>) {
        self.0.bytes += v.len();
        self.0.items.push_front(v);
    }

    pub fn push_back(&mut self, v: Vec<u8>) {
        self.0.bytes += v.len();
        self.0.items.push_back(v);
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let v = self.0.items.pop_front()?;
        self.0.bytes -= v.len();
        self.shrink();
        Some(v)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let v = self.0.items.pop_back()?;
        self.0.bytes -= v.len();
        self.shrink();
        Some(v)
    }

    fn shrink(&mut self) {
        if self.0.items.capacity() > 64 && self.0.items.len() * 4 < self.0.items.capacity() {
            self.0.items.shrink_to(self.0.items.len() * 2);
        }
    }

    pub fn get(&self, i: usize) -> Option<&Vec<u8>> {
        self.0.items.get(i)
    }

    /// Replaces item `i`; false when out of range.
    pub fn set(&mut self, i: usize, v: Vec<u8>) -> bool {
        let Some(slot) = self.0.items.get_mut(i) else {
            return false;
        };
        self.0.bytes = self.0.bytes + v.len() - slot.len();
        *slot = v;
        true
    }

    pub fn insert(&mut self, i: usize, v: Vec<u8>) {
        self.0.bytes += v.len();
        self.0.items.insert(i, v);
    }

    /// Keeps items `start..end` only.
    pub fn retain_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.0.items.len());
        let start = start.min(end);
        for v in self.0.items.drain(end..) {
            self.0.bytes -= v.len();
        }
        for v in self.0.items.drain(..start) {
            self.0.bytes -= v.len();
        }
        self.shrink();
    }

    /// Keeps the items `keep` says yes to, in order; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) -> usize {
        let before = self.0.items.len();
        let mut i = 0;
        let mut freed = 0;
        self.0.items.retain(|v| {
            let k = keep(i, v);
            i += 1;
            if !k {
                freed += v.len();
            }
            k
        });
        self.0.bytes -= freed;
        self.shrink();
        before - self.0.items.len()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Vec<u8>> + ExactSizeIterator {
        self.0.items.iter()
    }

    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Vec<u8>> {
        self.0.items.range(start..end)
    }
}
