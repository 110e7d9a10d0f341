//! The set type: members, each with the HLC time of the write that added it.
//!
//! Built on the keyspace's own [`Dict`] for SSCAN's stable cursors and
//! SRANDMEMBER/SPOP sampling.

use crate::dict::Dict;
use crate::hlc::Hlc;

#[derive(Default, Clone)]
struct Inner {
    map: Dict<Hlc>,
    /// Payload bytes: members and per-member overhead (HLC included).
    bytes: usize,
}

/// Boxed, so an empty or absent set costs a key one pointer.
#[derive(Default, Clone)]
pub struct Set(Box<Inner>);

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Set({} members)", self.0.map.len())
    }
}

fn cost(member: &[u8]) -> usize {
    Dict::<Hlc>::entry_overhead(member.len())
}

impl Set {
    pub fn len(&self) -> usize {
        self.0.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.bytes + self.0.map.table_bytes() + std::mem::size_of::<Inner>()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.0.map.contains_key(member)
    }

    pub fn hlc(&self, member: &[u8]) -> Option<Hlc> {
        self.0.map.get(member).copied()
    }

    /// Adds `member`; returns whether it is new. An existing member keeps its
    /// time: re-adding it changes nothing.
    pub fn insert(&mut self, member: &[u8], hlc: Hlc) -> bool {
        if self.0.map.contains_key(member) {
            return false;
        }
        self.0.map.insert(member, hlc);
        self.0.bytes += cost(member);
        true
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        if self.0.map.remove(member).is_some() {
            self.0.bytes -= cost(member);
            return true;
        }
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Hlc)> {
        self.0.map.iter().map(|(k, h)| (k, *h))
    }

    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        self.0.map.scan(cursor, count, |k, _| f(k))
    }

    pub fn sample(&self, random: u64) -> Option<&[u8]> {
        self.0.map.sample(random).map(|(k, _)| k)
    }
}
