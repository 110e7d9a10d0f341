//! The hash type: field → value, each field with the HLC time of its last
//! write (field-level merge needs it).
//!
//! Small hashes (up to [`MAX_ENTRIES`](crate::packed::MAX_ENTRIES) fields of up to [`MAX_VALUE`](crate::packed::MAX_VALUE) bytes)
//! are one packed buffer of `field | value | hlc` records, searched linearly
//! as Redis searches a listpack; a hash that outgrows that moves, once, to
//! the keyspace's own [`Dict`], which gives HSCAN stable cursors and
//! HRANDFIELD sampling.

use crate::dict::Dict;
use crate::hlc::Hlc;
use crate::packed::{
    add_one, base, base_for, count, first_record, fits_base, get_bytes, get_hlc, header, put_bytes,
    put_hlc, remove_one,
};

/// One field's value and the time it was last written (the large form).
#[derive(Debug, Clone)]
pub struct Field {
    pub value: Vec<u8>,
    pub hlc: Hlc,
}

/// A field as commands see it, whichever form holds it.
#[derive(Debug, Clone, Copy)]
pub struct FieldRef<'a> {
    pub value: &'a [u8],
    pub hlc: Hlc,
}

#[derive(Clone)]
struct Big {
    map: Dict<Field>,
    /// Payload bytes: field names, values and per-field overhead (HLC included).
    bytes: usize,
}

#[derive(Clone)]
enum Repr {
    Packed(Vec<u8>),
    Big(Box<Big>),
}

#[derive(Clone)]
pub struct Hash(Repr);

impl Default for Hash {
    fn default() -> Self {
        Hash(Repr::Packed(Vec::new()))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({} fields)", self.len())
    }
}

fn cost(field: &[u8], value: &[u8]) -> usize {
    value.len() + Dict::<Field>::entry_overhead(field.len())
}

/// One packed record: (field, value, hlc, start, end).
fn records(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], Hlc, usize, usize)> {
    let mut pos = first_record(buf);
    let b = base(buf);
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let f = get_bytes(buf, &mut pos);
        let v = get_bytes(buf, &mut pos);
        let h = get_hlc(buf, &mut pos, b);
        Some((f, v, h, start, pos))
    })
}

/// Re-encodes a packed buffer on an older base (a record older than every
/// time it holds arrives: merge input, never a local write).
fn rebase(buf: &mut Vec<u8>, new_base: Hlc) {
    let mut out = header(count(buf), new_base);
    for (f, v, h, ..) in records(buf) {
        put_bytes(&mut out, f);
        put_bytes(&mut out, v);
        put_hlc(&mut out, new_base, h);
    }
    *buf = out;
}

impl Hash {
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Packed(buf) => count(buf),
            Repr::Big(b) => b.map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the hash is in its packed small form.
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed(_))
    }

    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Packed(buf) => buf.capacity(),
            Repr::Big(b) => b.bytes + b.map.table_bytes() + std::mem::size_of::<Big>(),
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<FieldRef<'_>> {
        match &self.0 {
            Repr::Packed(buf) => records(buf)
                .find(|r| r.0 == field)
                .map(|(_, value, hlc, ..)| FieldRef { value, hlc }),
            Repr::Big(b) => b.map.get(field).map(|f| FieldRef {
                value: &f.value,
                hlc: f.hlc,
            }),
        }
    }

    /// Sets `field`; returns whether it is new.
    pub fn insert(&mut self, field: &[u8], value: Vec<u8>, hlc: Hlc) -> bool {
        if let Repr::Packed(buf) = &mut self.0 {
            if !fits_base(buf, hlc) {
                rebase(buf, hlc);
            }
            let (max_entries, max_value) = crate::packed::limits::hash();
            let fits = field.len() <= max_value && value.len() <= max_value;
            let found = records(buf).find(|r| r.0 == field).map(|r| (r.3, r.4));
            if fits && (found.is_some() || count(buf) < max_entries) {
                let b = base_for(buf, hlc);
                let mut rec = Vec::with_capacity(field.len() + value.len() + 12);
                put_bytes(&mut rec, field);
                put_bytes(&mut rec, &value);
                put_hlc(&mut rec, b, hlc);
                return match found {
                    Some((start, end)) => {
                        buf.reserve_exact(rec.len().saturating_sub(end - start));
                        buf.splice(start..end, rec);
                        false
                    }
                    None => {
                        add_one(buf, b);
                        // Exact growth: a packed buffer lives long and
                        // doubling would waste up to half of it.
                        buf.reserve_exact(rec.len());
                        buf.extend_from_slice(&rec);
                        true
                    }
                };
            }
            self.grow();
        }
        let Repr::Big(b) = &mut self.0 else {
            return false;
        };
        b.bytes += cost(field, &value);
        match b.map.insert(field, Field { value, hlc }) {
            Some(old) => {
                b.bytes -= cost(field, &old.value);
                false
            }
            None => true,
        }
    }

    /// Moves a packed hash to the table form.
    fn grow(&mut self) {
        let Repr::Packed(buf) = &self.0 else {
            return;
        };
        let mut big = Big {
            map: Dict::new(),
            bytes: 0,
        };
        for (f, v, hlc, ..) in records(buf) {
            big.bytes += cost(f, v);
            big.map.insert(
                f,
                Field {
                    value: v.to_vec(),
                    hlc,
                },
            );
        }
        self.0 = Repr::Big(Box::new(big));
    }

    /// Removes `field`; returns whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.0 {
            Repr::Packed(buf) => {
                let Some((start, end)) = records(buf).find(|r| r.0 == field).map(|r| (r.3, r.4))
                else {
                    return false;
                };
                buf.drain(start..end);
                remove_one(buf);
                true
            }
            Repr::Big(b) => match b.map.remove(field) {
                Some(old) => {
                    b.bytes -= cost(field, &old.value);
                    true
                }
                None => false,
            },
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], FieldRef<'_>)> + '_> {
        match &self.0 {
            Repr::Packed(buf) => {
                Box::new(records(buf).map(|(f, value, hlc, ..)| (f, FieldRef { value, hlc })))
            }
            Repr::Big(b) => Box::new(b.map.iter().map(|(k, f)| {
                (
                    k,
                    FieldRef {
                        value: &f.value,
                        hlc: f.hlc,
                    },
                )
            })),
        }
    }

    /// One HSCAN step. A packed hash answers whole, with cursor 0, as
    /// Redis answers for a listpack.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], FieldRef<'_>)) -> u64 {
        match &self.0 {
            Repr::Packed(_) => {
                for (k, v) in self.iter() {
                    f(k, v);
                }
                0
            }
            Repr::Big(b) => b.map.scan(cursor, count, |k, v| {
                f(
                    k,
                    FieldRef {
                        value: &v.value,
                        hlc: v.hlc,
                    },
                )
            }),
        }
    }

    pub fn sample(&self, random: u64) -> Option<(&[u8], FieldRef<'_>)> {
        match &self.0 {
            Repr::Packed(buf) => {
                let n = count(buf) as u64;
                if n == 0 {
                    return None;
                }
                self.iter().nth((random % n) as usize)
            }
            Repr::Big(b) => b.map.sample(random).map(|(k, f)| {
                (
                    k,
                    FieldRef {
                        value: &f.value,
                        hlc: f.hlc,
                    },
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::{MAX_ENTRIES, MAX_VALUE};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn matches_a_map_across_both_forms(ops in proptest::collection::vec((any::<bool>(), 0u16..300, 0usize..100), 0..600)) {
            let mut h = Hash::default();
            let mut m: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (i, (add, k, vlen)) in ops.into_iter().enumerate() {
                let k = format!("f{k}").into_bytes();
                if add {
                    let v = vec![b'v'; vlen];
                    prop_assert_eq!(h.insert(&k, v.clone(), Hlc::new(i as u64, 0)), m.insert(k, v).is_none());
                } else {
                    prop_assert_eq!(h.remove(&k), m.remove(&k).is_some());
                }
                prop_assert_eq!(h.len(), m.len());
            }
            let got: BTreeMap<Vec<u8>, Vec<u8>> = h.iter().map(|(k, f)| (k.to_vec(), f.value.to_vec())).collect();
            prop_assert_eq!(&got, &m);
            for (k, v) in &m {
                prop_assert_eq!(h.get(k).map(|f| f.value), Some(&v[..]));
            }
            let mut scanned = 0;
            let mut cursor = 0;
            loop {
                cursor = h.scan(cursor, 10, |_, _| scanned += 1);
                if cursor == 0 { break; }
            }
            prop_assert_eq!(scanned, m.len());
        }
    }

    #[test]
    fn stays_packed_while_small_and_keeps_times() {
        let mut h = Hash::default();
        for i in 0..MAX_ENTRIES {
            h.insert(
                format!("f{i}").as_bytes(),
                b"v".to_vec(),
                Hlc::new(i as u64 + 1, 0),
            );
        }
        assert!(h.is_packed());
        assert_eq!(h.get(b"f7").map(|f| f.hlc), Some(Hlc::new(8, 0)));
        // An older time than the base re-encodes the buffer.
        h.insert(b"f9", b"w".to_vec(), Hlc::new(0, 0));
        h.insert(b"f0", b"w".to_vec(), Hlc::new(0, 0));
        assert!(h.is_packed());
        assert_eq!(h.get(b"f9").map(|f| f.hlc), Some(Hlc::new(0, 0)));
        assert_eq!(h.get(b"f7").map(|f| f.hlc), Some(Hlc::new(8, 0)));
        h.insert(b"one-more", b"v".to_vec(), Hlc::new(999, 0));
        assert!(!h.is_packed());
        assert_eq!(h.get(b"f7").map(|f| f.hlc), Some(Hlc::new(8, 0)));
        let mut long = Hash::default();
        long.insert(b"f", vec![0; MAX_VALUE + 1], Hlc::ZERO);
        assert!(!long.is_packed());
    }
}
