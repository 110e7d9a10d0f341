//! The hash type: field → value, each field with the HLC time of its last
//! write (field-level merge needs it).
//!
//! Built on the keyspace's own [`Dict`], which gives HSCAN stable cursors and
//! HRANDFIELD random sampling.

use crate::dict::Dict;
use crate::hlc::Hlc;

/// One field's value and the time it was last written.
#[derive(Debug, Clone)]
pub struct Field {
    pub value: Vec<u8>,
    pub hlc: Hlc,
}

#[derive(Default, Clone)]
pub struct Hash {
    map: Dict<Field>,
    /// Payload bytes: field names, values and per-field overhead (HLC included).
    bytes: usize,
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({} fields)", self.map.len())
    }
}

fn cost(field: &[u8], value: &[u8]) -> usize {
    field.len() + value.len() + Dict::<Field>::node_overhead()
}

impl Hash {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes + self.map.table_bytes()
    }

    pub fn get(&self, field: &[u8]) -> Option<&Field> {
        self.map.get(field)
    }

    /// Sets `field`; returns whether it is new.
    pub fn insert(&mut self, field: &[u8], value: Vec<u8>, hlc: Hlc) -> bool {
        self.bytes += cost(field, &value);
        match self.map.insert(field, Field { value, hlc }) {
            Some(old) => {
                self.bytes -= cost(field, &old.value);
                false
            }
            None => true,
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> Option<Field> {
        let old = self.map.remove(field)?;
        self.bytes -= cost(field, &old.value);
        Some(old)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Field)> {
        self.map.iter()
    }

    pub fn scan(&self, cursor: u64, count: usize, f: impl FnMut(&[u8], &Field)) -> u64 {
        self.map.scan(cursor, count, f)
    }

    pub fn sample(&self, random: u64) -> Option<(&[u8], &Field)> {
        self.map.sample(random)
    }
}
