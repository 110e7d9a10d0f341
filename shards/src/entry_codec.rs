//! One key's [`Entry`] as bytes: the argument of an `Op::Put` record
//! (snapshots, and keys written back whole by cross-shard commands).
//!
//! # Layout
//! `type: u8 | expire_at: varint | hlc: u64 LE | body`, the body by type:
//! - string: the bytes, to the end (the entry is a whole record argument,
//!   which carries its length);
//! - hash: `count | base | (field, value, time)...`;
//! - set: `count | base | (member, time)...`;
//! - sorted set: `count | base | (member, score, time)...`, in score order
//!   when the set is small;
//! - list: `count | item...`, head first.
//! - stream: see [`crate::stream_codec`] (entries in id order, then the
//!   counters and the consumer groups; an empty stream is a valid value).
//!
//! `count` is a varint, `base` the oldest element time (u64 LE) and each
//! `time` a varint added to it: the elements of one write cost a byte of time
//! each, not eight. Strings are `varint length | bytes`. A score is an
//! integral double below 2^53 as an even varint (zigzag value shifted left),
//! any other double as the varint 1 and its 8 bytes, so every score comes
//! back bit for bit (`-0` is never stored: the sorted set keeps `0`).
//!
//! The access time (LRU age) is not saved: a loaded key is as old as its
//! load.
//!
//! # Decoding
//! Decoding rebuilds the value through the types' own insert APIs, so it
//! gets the form commands would have built (packed while small) and exact
//! memory counts. Input is never trusted: every length is checked against the
//! bytes that remain before anything is read or allocated, and a malformed
//! entry (unknown type, short or trailing bytes, a NaN score, a duplicate
//! element, an empty collection, a time that overflows) is an error, never a
//! panic.

use crate::hash::Hash;
use crate::hlc::Hlc;
use crate::keyspace::{EntryView, ValueRef};
use crate::list::List;
use crate::record::{put_bytes, put_varint, FrameError, Reader};
use crate::set::Set;
use crate::value::{Entry, Value};
use crate::zset::ZSet;

const STR: u8 = 0;
const HASH: u8 = 1;
const SET: u8 = 2;
const ZSET: u8 = 3;
const LIST: u8 = 4;
const STREAM: u8 = 5;

fn bad(why: &'static str) -> FrameError {
    FrameError::Malformed(why)
}

fn put_score(out: &mut Vec<u8>, score: f64) {
    let integral = score.fract() == 0.0 && score.abs() < (1u64 << 53) as f64;
    if integral && !(score == 0.0 && score.is_sign_negative()) {
        let i = score as i64;
        let zigzag = ((i << 1) ^ (i >> 63)) as u64;
        put_varint(out, zigzag << 1);
    } else {
        put_varint(out, 1);
        out.extend_from_slice(&score.to_bits().to_le_bytes());
    }
}

fn get_score(r: &mut Reader<'_>) -> Result<f64, FrameError> {
    let v = r.varint()?;
    let score = if v & 1 == 1 {
        if v != 1 {
            return Err(bad("bad score tag"));
        }
        f64::from_bits(r.u64()?)
    } else {
        let z = v >> 1;
        if z >= 1 << 54 {
            return Err(bad("integral score out of range"));
        }
        (((z >> 1) as i64) ^ -((z & 1) as i64)) as f64
    };
    if score.is_nan() {
        return Err(bad("NaN score"));
    }
    Ok(score)
}

/// The oldest of some times (ZERO for none).
fn oldest(times: impl Iterator<Item = Hlc>) -> Hlc {
    times.min().unwrap_or(Hlc::ZERO)
}

fn put_time(out: &mut Vec<u8>, base: Hlc, t: Hlc) {
    put_varint(out, t.raw() - base.raw());
}

fn get_time(r: &mut Reader<'_>, base: u64) -> Result<Hlc, FrameError> {
    let d = r.varint()?;
    base.checked_add(d)
        .map(Hlc::from_raw)
        .ok_or(bad("element time overflows"))
}

/// Appends `e` to `out`, in the layout of the module docs.
pub fn encode_entry(out: &mut Vec<u8>, e: &impl EntryView) {
    let tag = match e.value() {
        ValueRef::Str(_) => STR,
        ValueRef::Hash(_) => HASH,
        ValueRef::Set(_) => SET,
        ValueRef::ZSet(_) => ZSET,
        ValueRef::List(_) => LIST,
        ValueRef::Stream(_) => STREAM,
    };
    out.push(tag);
    put_varint(out, e.expire_at());
    out.extend_from_slice(&e.hlc().raw().to_le_bytes());
    match e.value() {
        ValueRef::Str(s) => out.extend_from_slice(s),
        ValueRef::Hash(h) => {
            let base = oldest(h.iter().map(|(_, f)| f.hlc));
            put_varint(out, h.len() as u64);
            out.extend_from_slice(&base.raw().to_le_bytes());
            for (k, f) in h.iter() {
                put_bytes(out, k);
                put_bytes(out, f.value);
                put_time(out, base, f.hlc);
            }
        }
        ValueRef::Set(s) => {
            let base = oldest(s.iter().map(|(_, t)| t));
            put_varint(out, s.len() as u64);
            out.extend_from_slice(&base.raw().to_le_bytes());
            for (m, t) in s.iter() {
                put_bytes(out, m);
                put_time(out, base, t);
            }
        }
        ValueRef::ZSet(z) => {
            let base = oldest(z.iter_scored().map(|(_, s)| s.hlc));
            put_varint(out, z.len() as u64);
            out.extend_from_slice(&base.raw().to_le_bytes());
            for (m, s) in z.iter_scored() {
                put_bytes(out, m);
                put_score(out, s.score);
                put_time(out, base, s.hlc);
            }
        }
        ValueRef::List(l) => {
            put_varint(out, l.len() as u64);
            for item in l.iter() {
                put_bytes(out, item);
            }
        }
        ValueRef::Stream(x) => crate::stream_codec::encode(out, x),
    }
}

/// A collection's element count: at least one (an empty collection is not
/// a key), and no more than the bytes left (each element takes at least
/// one), so a corrupt count cannot make the decoder loop or allocate.
fn count(r: &mut Reader<'_>) -> Result<u64, FrameError> {
    let n = r.varint()?;
    if n == 0 {
        return Err(bad("empty collection"));
    }
    if n > r.b.len() as u64 {
        return Err(bad("element count exceeds the bytes left"));
    }
    Ok(n)
}

/// Rebuilds an entry written by [`encode_entry`]; `b` must hold exactly one.
pub fn decode_entry(b: &[u8]) -> Result<Entry, FrameError> {
    let mut r = Reader { b };
    let tag = r.u8()?;
    let expire_at = r.varint()?;
    let hlc = Hlc::from_raw(r.u64()?);
    let value = match tag {
        STR => {
            let s = r.b.to_vec();
            r.b = &[];
            Value::Str(s)
        }
        HASH => {
            let n = count(&mut r)?;
            let base = r.u64()?;
            let mut h = Hash::default();
            for _ in 0..n {
                let k = r.bytes()?;
                let v = r.bytes()?;
                let t = get_time(&mut r, base)?;
                if !h.insert(k, v.to_vec(), t) {
                    return Err(bad("duplicate hash field"));
                }
            }
            Value::Hash(h)
        }
        SET => {
            let n = count(&mut r)?;
            let base = r.u64()?;
            let mut s = Set::default();
            for _ in 0..n {
                let m = r.bytes()?;
                let t = get_time(&mut r, base)?;
                if !s.insert(m, t) {
                    return Err(bad("duplicate set member"));
                }
            }
            Value::Set(s)
        }
        ZSET => {
            let n = count(&mut r)?;
            let base = r.u64()?;
            let mut z = ZSet::default();
            for _ in 0..n {
                let m = r.bytes()?;
                let score = get_score(&mut r)?;
                let t = get_time(&mut r, base)?;
                if z.insert(m, score, t).is_some() {
                    return Err(bad("duplicate sorted set member"));
                }
            }
            Value::ZSet(z)
        }
        LIST => {
            let n = count(&mut r)?;
            let mut l = List::default();
            for _ in 0..n {
                l.push_back(r.bytes()?.to_vec());
            }
            Value::List(l)
        }
        STREAM => Value::Stream(crate::stream_codec::decode(&mut r)?),
        _ => return Err(bad("unknown value type")),
    };
    r.done()?;
    let mut e = Entry::new(value, expire_at);
    e.hlc = hlc;
    Ok(e)
}

/// Test helpers shared with the snapshot tests: random entries of every
/// type, and a canonical form that compares everything a snapshot must keep.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Everything an entry must keep through a snapshot, in a canonical
    /// order: type, elements with their times and scores, expiry, key time.
    pub fn canon(e: &impl EntryView) -> String {
        let items: Vec<String> = match e.value() {
            ValueRef::Str(s) => vec![format!("{s:?}")],
            ValueRef::Hash(h) => h
                .iter()
                .map(|(k, f)| format!("{k:?}={:?}@{}", f.value, f.hlc.raw()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            ValueRef::Set(s) => s
                .iter()
                .map(|(m, t)| format!("{m:?}@{}", t.raw()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            ValueRef::ZSet(z) => z
                .iter_scored()
                .map(|(m, s)| format!("{m:?}:{:x}@{}", s.score.to_bits(), s.hlc.raw()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            ValueRef::List(l) => l.iter().map(|v| format!("{v:?}")).collect(),
            ValueRef::Stream(x) => vec![crate::stream_codec::canon(x)],
        };
        format!(
            "{} exp={} hlc={} [{}]",
            e.value().type_name(),
            e.expire_at(),
            e.hlc().raw(),
            items.join(",")
        )
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => proptest::collection::vec(b'a'..b'e', 0..4),
            1 => proptest::collection::vec(any::<u8>(), 0..max),
        ]
    }

    fn time() -> impl Strategy<Value = Hlc> {
        prop_oneof![
            Just(Hlc::ZERO),
            (0u64..1 << 40, any::<u16>()).prop_map(|(p, l)| Hlc::new(p, l)),
            Just(Hlc::from_raw(u64::MAX)),
        ]
    }

    fn score() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1000i32..1000).prop_map(f64::from),
            any::<f64>().prop_filter("not NaN", |s| !s.is_nan()),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(9007199254740992.0),
            Just(-9007199254740991.0),
        ]
    }

    /// A random value of any type; `big` allows collections past the
    /// packed forms' limits.
    pub fn value(big: bool) -> impl Strategy<Value = Value> {
        let n = if big { 300 } else { 8 };
        prop_oneof![
            bytes(200).prop_map(Value::Str),
            proptest::collection::vec((bytes(80), bytes(80), time()), 1..n).prop_map(|fs| {
                let mut h = Hash::default();
                for (k, v, t) in fs {
                    h.insert(&k, v, t);
                }
                Value::Hash(h)
            }),
            proptest::collection::vec((bytes(80), time()), 1..n).prop_map(|ms| {
                let mut s = Set::default();
                for (m, t) in ms {
                    s.insert(&m, t);
                }
                Value::Set(s)
            }),
            proptest::collection::vec((bytes(80), score(), time()), 1..n).prop_map(|ms| {
                let mut z = ZSet::default();
                for (m, sc, t) in ms {
                    z.insert(&m, sc, t);
                }
                Value::ZSet(z)
            }),
            proptest::collection::vec(bytes(40), 1..n).prop_map(|items| {
                let mut l = List::default();
                for v in items {
                    l.push_back(v);
                }
                Value::List(l)
            }),
            crate::stream_codec::arbitrary(n).prop_map(Value::Stream),
        ]
    }

    pub fn entry(big: bool) -> impl Strategy<Value = Entry> {
        (value(big), prop_oneof![Just(0u64), any::<u64>()], time()).prop_map(|(v, exp, t)| {
            let mut e = Entry::new(v, exp);
            e.hlc = t;
            e
        })
    }

    /// Per-element times, for a direct comparison besides [`canon`].
    pub fn times(e: &Entry) -> BTreeMap<Vec<u8>, Hlc> {
        match &e.value {
            Value::Hash(h) => h.iter().map(|(k, f)| (k.to_vec(), f.hlc)).collect(),
            Value::Set(s) => s.iter().map(|(m, t)| (m.to_vec(), t)).collect(),
            Value::ZSet(z) => z.iter_scored().map(|(m, s)| (m.to_vec(), s.hlc)).collect(),
            _ => BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{canon, entry, times};
    use super::*;
    use crate::digest::Digest;
    use proptest::prelude::*;

    fn round_trip(e: &Entry) -> Entry {
        let mut out = Vec::new();
        encode_entry(&mut out, e);
        match decode_entry(&out) {
            Ok(d) => d,
            Err(err) => panic!("{err} decoding {}", canon(e)),
        }
    }

    #[test]
    fn small_collections_come_back_packed() {
        let mut h = Hash::default();
        let mut z = ZSet::default();
        for i in 0..10u64 {
            h.insert(
                format!("f{i}").as_bytes(),
                b"v".to_vec(),
                Hlc::new(100 - i, 0),
            );
            z.insert(format!("m{i}").as_bytes(), i as f64 * 0.5, Hlc::new(i, 0));
        }
        for v in [Value::Hash(h), Value::ZSet(z)] {
            let d = round_trip(&Entry::new(v, 7));
            match &d.value {
                Value::Hash(h) => assert!(h.is_packed()),
                Value::ZSet(z) => assert!(z.is_packed()),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn strings_are_compact() {
        let mut out = Vec::new();
        encode_entry(&mut out, &Entry::string(b"hello".to_vec(), 0));
        // type, expiry, key time, bytes.
        assert_eq!(out.len(), 1 + 1 + 8 + 5);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let cases: [&[u8]; 7] = [
            b"",
            &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // Empty hash.
            &[HASH, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // A count far beyond the bytes.
            &[
                LIST, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
            ],
            // Trailing byte after a list of one.
            &[LIST, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, b'a', b'x'],
            // A NaN score.
            &[
                ZSET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'm', 1, 0, 0, 0, 0,
                0, 0, 0xf8, 0x7f, 0,
            ],
            // A duplicate set member.
            &[
                SET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'm', 0, 1, b'm', 0,
            ],
        ];
        for c in cases {
            assert!(decode_entry(c).is_err(), "{c:?} decoded");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn entries_round_trip(e in entry(true), db in 0usize..16) {
            let d = round_trip(&e);
            prop_assert_eq!(Digest::of_entry(db, b"k", &d), Digest::of_entry(db, b"k", &e));
            prop_assert_eq!(canon(&d), canon(&e));
            prop_assert_eq!(times(&d), times(&e));
            prop_assert_eq!((d.hlc, d.expire_at), (e.hlc, e.expire_at));
            // Decoding builds what the insert APIs build: the same memory.
            let mut again = Vec::new();
            encode_entry(&mut again, &d);
            prop_assert_eq!(round_trip(&d).value.heap_bytes(), d.value.heap_bytes());
            prop_assert_eq!(decode_entry(&again).map(|x| canon(&x)), Ok(canon(&e)));
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_entry(&b);
        }

        #[test]
        fn damage_never_panics(e in entry(false), cut in any::<usize>(), pos in any::<usize>(), bit in 0u8..8) {
            let mut out = Vec::new();
            encode_entry(&mut out, &e);
            let cut = cut % (out.len() + 1);
            if cut < out.len() && !matches!(e.value, Value::Str(_)) {
                // A collection cut short is always noticed.
                prop_assert!(decode_entry(&out[..cut]).is_err());
            } else {
                let _ = decode_entry(&out[..cut]);
            }
            let pos = pos % out.len();
            out[pos] ^= 1 << bit;
            if let Ok(d) = decode_entry(&out) {
                // Whatever decodes is a well-formed entry.
                let mut again = Vec::new();
                encode_entry(&mut again, &d);
                prop_assert!(decode_entry(&again).is_ok());
            }
        }
    }
}
