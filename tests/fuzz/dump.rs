//! DUMP payloads: what RESTORE decodes from a client (magic, format, a
//! key's entry in keel's snapshot encoding, crc32).

use keel::cmd::dump::{parse_payload, payload, Refused};
use keel_shards::{Entry, Hash, Hlc, List, Set, Value, ZSet};
use proptest::prelude::*;

use crate::{bytes, config, largest_allocation, mutate, mutations};

/// Element times a little apart, as one key's writes are.
fn time() -> impl Strategy<Value = Hlc> {
    (0u64..1000).prop_map(|d| Hlc::from_raw((1_700_000_000_000 << 16) + d))
}

fn value() -> impl Strategy<Value = Value> {
    let small = || bytes(12);
    prop_oneof![
        bytes(60).prop_map(Value::Str),
        prop::collection::vec((small(), small(), time()), 1..8).prop_map(|fields| {
            let mut h = Hash::default();
            for (f, v, t) in fields {
                h.insert(&f, v, t);
            }
            Value::Hash(h)
        }),
        prop::collection::vec((small(), time()), 1..8).prop_map(|members| {
            let mut s = Set::default();
            for (m, t) in members {
                s.insert(&m, t);
            }
            Value::Set(s)
        }),
        prop::collection::vec(
            (
                small(),
                prop_oneof![
                    any::<f64>().prop_filter("a score", |f| !f.is_nan()),
                    (-100i64..100).prop_map(|n| n as f64),
                ],
                time(),
            ),
            1..8
        )
        .prop_map(|members| {
            let mut z = ZSet::default();
            for (m, score, t) in members {
                // (-0 is stored as 0, as ZADD stores it)
                z.insert(&m, if score == 0.0 { 0.0 } else { score }, t);
            }
            Value::ZSet(z)
        }),
        prop::collection::vec(small(), 1..8).prop_map(|items| {
            let mut l = List::default();
            for i in items {
                l.push_back(i);
            }
            Value::List(l)
        }),
    ]
}

/// Everything a value holds, in one order (a set's or a hash's own order
/// is its table's, which need not survive a reload).
fn canon(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Value::Str(s) => vec![format!("{s:?}")],
        Value::Hash(h) => h
            .iter()
            .map(|(k, f)| format!("{k:?}={:?}@{}", f.value, f.hlc.raw()))
            .collect(),
        Value::Set(s) => s
            .iter()
            .map(|(m, t)| format!("{m:?}@{}", t.raw()))
            .collect(),
        Value::ZSet(z) => z
            .iter_scored()
            .map(|(m, s)| format!("{m:?}={:?}@{}", s.score.to_bits(), s.hlc.raw()))
            .collect(),
        Value::List(l) => return l.iter().map(|i| format!("{i:?}")).collect(),
        Value::Stream(_) => vec!["stream".into()],
    };
    out.sort();
    out
}

/// The payload of `v` as DUMP writes it, stamped `hlc`.
fn dumped(v: Value, hlc: Hlc) -> Vec<u8> {
    let mut e = Entry::new(v, 0);
    e.hlc = hlc;
    payload(&e)
}

/// What must hold of any payload: a value whose own payload parses back
/// to the same bytes, or a refusal; allocations backed by its bytes.
fn check_payload(p: &[u8], hlc: Hlc) -> Result<(), TestCaseError> {
    let (parsed, big) = largest_allocation(|| parse_payload(p));
    prop_assert!(
        big <= 4096 + 64 * p.len(),
        "{} bytes allocated at once for {}",
        big,
        p.len()
    );
    if let Ok(v) = parsed {
        let want = canon(&v);
        let again = dumped(v, hlc);
        let v2 = parse_payload(&again).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(canon(&v2), want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/dump.txt"))]

    /// A value of every type dumps to a payload that restores to the same
    /// elements, scores and times, and to a payload of the same length.
    #[test]
    fn payloads_round_trip(v in value(), t in time()) {
        let want = canon(&v);
        let p = dumped(v, t);
        let back = parse_payload(&p).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(canon(&back), want);
        prop_assert_eq!(dumped(back, t).len(), p.len());
    }

    /// A payload damaged in transit fails its checksum.
    #[test]
    fn damaged_payloads_are_refused(v in value(), t in time(), muts in mutations(3)) {
        let p = dumped(v, t);
        let mut d = p.clone();
        mutate(&mut d, &muts);
        if d != p {
            prop_assert_eq!(parse_payload(&d).err(), Some(Refused::VersionOrChecksum));
        }
    }

    /// An entry damaged under a good checksum (a forged payload): a value
    /// that dumps consistently, or "Bad data format"; never a panic.
    #[test]
    fn forged_payloads_decode_or_are_bad_data(v in value(), t in time(), muts in mutations(3)) {
        let p = dumped(v, t);
        let mut entry = p[5..p.len() - 4].to_vec();
        mutate(&mut entry, &muts);
        let mut body = p[..5].to_vec();
        body.extend_from_slice(&entry);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        check_payload(&body, t)?;
        prop_assert!(!matches!(parse_payload(&body), Err(Refused::VersionOrChecksum)));
    }

    /// Arbitrary bytes after a good header and under a good checksum.
    #[test]
    fn arbitrary_entries_decode_or_are_bad_data(entry in bytes(80), t in time()) {
        let mut p = b"KEEL\x01".to_vec();
        p.extend_from_slice(&entry);
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        check_payload(&p, t)?;
    }
}
