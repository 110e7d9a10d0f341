//! `DEBUG DIGEST`: a checksum of a keyspace that two servers holding the same
//! data agree on, whatever order their keys were written in or which shard
//! holds them. Each key's digest mixes its database, name, type, value and
//! expiry; the keyspace digest is the XOR of the key digests, so it is
//! independent of iteration order and can be combined across shards.
//!
//! The hash is fixed (FNV-1a with a finaliser), never the process-random
//! table hasher: replicas must compute the same digest.

use crate::keyspace::{EntryView, ValueRef};

/// A 160-bit digest, printed as 40 hex digits like Redis's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest([u64; 3]);

fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for part in parts {
        // Length first, so ("ab","c") and ("a","bc") differ.
        for b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// An order-independent digest of a collection's elements (each a pair of
/// byte strings): the XOR of their hashes, as 24 bytes.
fn unordered<'a>(items: impl Iterator<Item = [&'a [u8]; 2]>) -> Vec<u8> {
    let mut acc = [0u64; 3];
    for pair in items {
        for (i, a) in acc.iter_mut().enumerate() {
            *a ^= fnv1a(10 + i as u64, &pair);
        }
    }
    acc.iter().flat_map(|a| a.to_le_bytes()).collect()
}

/// A stream's entries in order, its counters and its groups (consumers,
/// pending entries with their times), hashed in their canonical order.
fn stream_body(x: &crate::stream::Stream) -> Vec<u8> {
    use crate::stream::StreamId;
    let mut text: Vec<u8> = Vec::new();
    let id = |t: &mut Vec<u8>, i: StreamId| {
        t.extend_from_slice(&i.ms.to_le_bytes());
        t.extend_from_slice(&i.seq.to_le_bytes());
    };
    id(&mut text, x.last_id());
    id(&mut text, x.max_deleted());
    text.extend_from_slice(&x.entries_added().to_le_bytes());
    let mut parts: Vec<Vec<u8>> = vec![text];
    for (i, fields) in x.range(StreamId::MIN, StreamId::MAX, 0) {
        let mut t = Vec::new();
        id(&mut t, i);
        for (f, v) in fields {
            t.extend_from_slice(&(f.len() as u64).to_le_bytes());
            t.extend_from_slice(f);
            t.extend_from_slice(&(v.len() as u64).to_le_bytes());
            t.extend_from_slice(v);
        }
        parts.push(t);
    }
    for (name, g) in x.groups() {
        let mut t = name.clone();
        id(&mut t, g.last_id);
        t.extend_from_slice(&g.entries_read.map_or(u64::MAX, |n| n).to_le_bytes());
        for (c, st) in g.consumers() {
            t.extend_from_slice(&(c.len() as u64).to_le_bytes());
            t.extend_from_slice(c);
            t.extend_from_slice(&st.seen_ms.to_le_bytes());
        }
        for (pid, p) in g.pel() {
            id(&mut t, *pid);
            t.extend_from_slice(&(p.consumer.len() as u64).to_le_bytes());
            t.extend_from_slice(&p.consumer);
            t.extend_from_slice(&p.delivery_ms.to_le_bytes());
            t.extend_from_slice(&p.deliveries.to_le_bytes());
        }
        parts.push(t);
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    [1, 2, 3]
        .iter()
        .flat_map(|&seed| fnv1a(seed, &refs).to_le_bytes())
        .collect()
}

impl Digest {
    pub fn of_entry(db: usize, key: &[u8], entry: &impl EntryView) -> Digest {
        let dbb = (db as u64).to_le_bytes();
        let exp = entry.expire_at().to_le_bytes();
        let agg;
        let (tag, body): (&[u8], &[u8]) = match entry.value() {
            ValueRef::Str(s) => (b"string", s),
            ValueRef::Hash(h) => {
                agg = unordered(h.iter().map(|(f, v)| [f, v.value]));
                (b"hash", &agg)
            }
            ValueRef::Set(s) => {
                agg = unordered(s.iter().map(|(m, _)| [m, &[][..]]));
                (b"set", &agg)
            }
            ValueRef::ZSet(z) => {
                // -0.0 and 0.0 are the same score.
                let bits = |s: f64| (s + 0.0).to_bits().to_le_bytes();
                let scored: Vec<([u8; 8], &[u8])> = z.iter().map(|(m, s)| (bits(s), m)).collect();
                agg = unordered(scored.iter().map(|(s, m)| [*m, &s[..]]));
                (b"zset", &agg)
            }
            ValueRef::List(l) => {
                let items: Vec<&[u8]> = l.iter().map(|v| &v[..]).collect();
                agg = [1, 2, 3]
                    .iter()
                    .flat_map(|&seed| fnv1a(seed, &items).to_le_bytes())
                    .collect();
                (b"list", &agg)
            }
            ValueRef::Stream(x) => {
                agg = stream_body(x);
                (b"stream", &agg)
            }
        };
        let parts: [&[u8]; 5] = [&dbb, key, tag, body, &exp];
        Digest([fnv1a(1, &parts), fnv1a(2, &parts), fnv1a(3, &parts)])
    }

    pub fn combine(&mut self, other: Digest) {
        for i in 0..3 {
            self.0[i] ^= other.0[i];
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 3]
    }

    /// 40 hex digits; all zeros for an empty keyspace, as Redis prints it.
    pub fn to_hex(&self) -> String {
        format!(
            "{:016x}{:016x}{:08x}",
            self.0[0], self.0[1], self.0[2] as u32
        )
    }
}
