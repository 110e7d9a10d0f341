//! The list type: a deque of byte strings with a running byte count.

use std::collections::VecDeque;

#[derive(Default, Clone)]
pub struct List {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl std::fmt::Debug for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "List({} items)", self.items.len())
    }
}

const ITEM: usize = std::mem::size_of::<Vec<u8>>();

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes + self.items.capacity() * ITEM
    }

    pub fn push_front(&mut self, v: Vec<u8>) {
        self.bytes += v.len();
        self.items.push_front(v);
    }

    pub fn push_back(&mut self, v: Vec<u8>) {
        self.bytes += v.len();
        self.items.push_back(v);
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let v = self.items.pop_front()?;
        self.bytes -= v.len();
        self.shrink();
        Some(v)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let v = self.items.pop_back()?;
        self.bytes -= v.len();
        self.shrink();
        Some(v)
    }

    fn shrink(&mut self) {
        if self.items.capacity() > 64 && self.items.len() * 4 < self.items.capacity() {
            self.items.shrink_to(self.items.len() * 2);
        }
    }

    pub fn get(&self, i: usize) -> Option<&Vec<u8>> {
        self.items.get(i)
    }

    /// Replaces item `i`; false when out of range.
    pub fn set(&mut self, i: usize, v: Vec<u8>) -> bool {
        let Some(slot) = self.items.get_mut(i) else {
            return false;
        };
        self.bytes = self.bytes + v.len() - slot.len();
        *slot = v;
        true
    }

    pub fn insert(&mut self, i: usize, v: Vec<u8>) {
        self.bytes += v.len();
        self.items.insert(i, v);
    }

    pub fn remove(&mut self, i: usize) -> Option<Vec<u8>> {
        let v = self.items.remove(i)?;
        self.bytes -= v.len();
        Some(v)
    }

    /// Keeps items `start..end` only.
    pub fn retain_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.items.len());
        let start = start.min(end);
        for v in self.items.drain(end..) {
            self.bytes -= v.len();
        }
        for v in self.items.drain(..start) {
            self.bytes -= v.len();
        }
        self.shrink();
    }

    /// Keeps the items `keep` says yes to, in order; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) -> usize {
        let before = self.items.len();
        let mut i = 0;
        let mut freed = 0;
        self.items.retain(|v| {
            let k = keep(i, v);
            i += 1;
            if !k {
                freed += v.len();
            }
            k
        });
        self.bytes -= freed;
        self.shrink();
        before - self.items.len()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Vec<u8>> + ExactSizeIterator {
        self.items.iter()
    }

    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Vec<u8>> {
        self.items.range(start..end)
    }
}
