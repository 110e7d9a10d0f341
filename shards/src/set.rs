//! The set type: members, each with the HLC time of the write that added it.
//!
//! Built on the keyspace's own [`Dict`] for SSCAN's stable cursors and
//! SRANDMEMBER/SPOP sampling.

use crate::dict::Dict;
use crate::hlc::Hlc;

#[derive(Default, Clone)]
pub struct Set {
    map: Dict<Hlc>,
    /// Payload bytes: members and per-member overhead (HLC included).
    bytes: usize,
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Set({} members)", self.map.len())
    }
}

fn cost(member: &[u8]) -> usize {
    member.len() + Dict::<Hlc>::node_overhead()
}

impl Set {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes + self.map.table_bytes()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.map.contains_key(member)
    }

    pub fn hlc(&self, member: &[u8]) -> Option<Hlc> {
        self.map.get(member).copied()
    }

    /// Adds `member`; returns whether it is new. An existing member keeps its
    /// time: re-adding it changes nothing.
    pub fn insert(&mut self, member: &[u8], hlc: Hlc) -> bool {
        if self.map.contains_key(member) {
            return false;
        }
        self.map.insert(member, hlc);
        self.bytes += cost(member);
        true
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        if self.map.remove(member).is_some() {
            self.bytes -= cost(member);
            return true;
        }
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Hlc)> {
        self.map.iter().map(|(k, h)| (k, *h))
    }

    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        self.map.scan(cursor, count, |k, _| f(k))
    }

    pub fn sample(&self, random: u64) -> Option<&[u8]> {
        self.map.sample(random).map(|(k, _)| k)
    }
}
