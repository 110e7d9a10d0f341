//! Property and rule tests for `keel_shards::merge`: the join laws, convergence of
//! replicas that merge the same histories, no resurrection, counters adding up,
//! add-wins sets and drift rejection.

use keel_shards::hlc::{Hlc, HlcClock, HlcError};
use keel_shards::merge::{
    join_keyspace, merge_keyspace, view_keyspace, KeyState, Keyspace, Tag, View,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Set(u8),
    Del,
    CounterSet(i8),
    Incr(i8),
    HSet(u8, u8),
    HDel(u8),
    SAdd(u8),
    SRem(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(|v| Op::Set(v % 4)),
        Just(Op::Del),
        any::<i8>().prop_map(Op::CounterSet),
        any::<i8>().prop_map(Op::Incr),
        (0u8..3, 0u8..4).prop_map(|(f, v)| Op::HSet(f, v)),
        (0u8..3).prop_map(Op::HDel),
        (0u8..3).prop_map(Op::SAdd),
        (0u8..3).prop_map(Op::SRem),
    ]
}

/// One replica's writes: (key, op, physical ms advance).
fn history() -> impl Strategy<Value = Vec<(u8, Op, u8)>> {
    proptest::collection::vec((0u8..3, op(), 0u8..3), 0..25)
}

struct Replica {
    origin: u64,
    clock: HlcClock,
    now: u64,
    ks: Keyspace,
}

impl Replica {
    fn new(origin: u64, base: &Keyspace, now: u64) -> Replica {
        let mut clock = HlcClock::new(u64::MAX / 2);
        for s in base.values() {
            clock.update(s.max_hlc(), now).unwrap();
        }
        Replica {
            origin,
            clock,
            now,
            ks: base.clone(),
        }
    }

    fn apply(&mut self, hist: &[(u8, Op, u8)]) {
        for (key, op, adv) in hist {
            self.now += u64::from(*adv);
            let h = self.clock.now(self.now).unwrap();
            let k = self.ks.entry(vec![*key]).or_default();
            match op {
                Op::Set(v) => k.set(vec![*v], h),
                Op::Del => k.del(h),
                Op::CounterSet(v) => k.counter_set(i64::from(*v), h),
                Op::Incr(d) => k.incr(self.origin, i64::from(*d), h),
                Op::HSet(f, v) => k.hset(vec![*f], vec![*v], h),
                Op::HDel(f) => k.hdel(vec![*f], h),
                Op::SAdd(m) => k.sadd(
                    vec![*m],
                    Tag {
                        hlc: h,
                        origin: self.origin,
                    },
                ),
                Op::SRem(m) => k.srem(&[*m]),
            }
        }
    }
}

/// Builds `n` replicas that share `prefix` and then diverge with their own writes.
fn diverge(prefix: &[(u8, Op, u8)], sides: &[Vec<(u8, Op, u8)>]) -> Vec<Keyspace> {
    let mut base = Replica::new(0, &Keyspace::new(), 1_000);
    base.apply(prefix);
    sides
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut r = Replica::new(i as u64 + 1, &base.ks, base.now);
            r.apply(h);
            r.ks
        })
        .collect()
}

fn joined(a: &Keyspace, b: &Keyspace) -> Keyspace {
    let mut out = a.clone();
    join_keyspace(&mut out, b);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_commutative(p in history(), a in history(), b in history()) {
        let s = diverge(&p, &[a, b]);
        prop_assert_eq!(joined(&s[0], &s[1]), joined(&s[1], &s[0]));
    }

    #[test]
    fn merge_is_associative(p in history(), a in history(), b in history(), c in history()) {
        let s = diverge(&p, &[a, b, c]);
        let left = joined(&joined(&s[0], &s[1]), &s[2]);
        let right = joined(&s[0], &joined(&s[1], &s[2]));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_is_idempotent(p in history(), a in history(), b in history()) {
        let s = diverge(&p, &[a, b]);
        let once = joined(&s[0], &s[1]);
        prop_assert_eq!(joined(&once, &s[1]), once.clone());
        prop_assert_eq!(joined(&once, &once), once);
    }

    #[test]
    fn replicas_merging_same_histories_end_equal(p in history(), a in history(), b in history(), c in history()) {
        let s = diverge(&p, &[a, b, c]);
        // Three replicas receive the other histories in different orders, some twice.
        let r0 = joined(&joined(&joined(&s[0], &s[2]), &s[1]), &s[2]);
        let r1 = joined(&joined(&s[1], &s[0]), &s[2]);
        let r2 = joined(&joined(&s[2], &s[1]), &s[0]);
        prop_assert_eq!(view_keyspace(&r0), view_keyspace(&r1));
        prop_assert_eq!(view_keyspace(&r1), view_keyspace(&r2));
        prop_assert_eq!(r0, r2);
    }

    #[test]
    fn a_delete_newer_than_everything_is_never_resurrected(p in history(), a in history(), b in history(), key in 0u8..3) {
        let mut s = diverge(&p, &[a, b]);
        // Side 0 deletes `key` with an HLC later than every write on either side.
        let latest = s.iter().flat_map(|ks| ks.values().map(KeyState::max_hlc)).max().unwrap_or(Hlc::ZERO);
        let del = Hlc::new(latest.physical_ms() + 1, 0);
        s[0].entry(vec![key]).or_default().del(del);
        let m = joined(&s[0], &s[1]);
        prop_assert!(m.get(&vec![key]).and_then(KeyState::view).is_none());
        let m2 = joined(&s[1], &s[0]);
        prop_assert!(m2.get(&vec![key]).and_then(KeyState::view).is_none());
    }

    #[test]
    fn counters_add_both_sides_increments(base in -100i64..100, da in proptest::collection::vec(-50i64..50, 0..10), db in proptest::collection::vec(-50i64..50, 0..10)) {
        let mut k = KeyState::default();
        k.counter_set(base, Hlc::new(10, 0));
        let (mut a, mut b) = (k.clone(), k);
        for (i, d) in da.iter().enumerate() { a.incr(1, *d, Hlc::new(20 + i as u64, 0)); }
        for (i, d) in db.iter().enumerate() { b.incr(2, *d, Hlc::new(20 + i as u64, 1)); }
        a.merge(&b);
        let want = base + da.iter().sum::<i64>() + db.iter().sum::<i64>();
        prop_assert_eq!(a.view(), Some(View::Counter(want)));
    }
}

#[test]
fn scalar_keeps_the_later_hlc() {
    let mut a = KeyState::default();
    let mut b = KeyState::default();
    a.set(b"old".to_vec(), Hlc::new(5, 0));
    b.set(b"new".to_vec(), Hlc::new(6, 0));
    a.merge(&b);
    assert_eq!(a.view(), Some(View::String(b"new".to_vec())));
}

#[test]
fn a_key_only_one_side_wrote_is_kept() {
    let mut local = Keyspace::new();
    let mut remote = Keyspace::new();
    remote
        .entry(b"k".to_vec())
        .or_default()
        .set(b"v".to_vec(), Hlc::new(5, 0));
    let mut clock = HlcClock::new(1000);
    let r = merge_keyspace(&mut local, &remote, &mut clock, 10);
    assert_eq!(r.merged, 1);
    assert_eq!(
        view_keyspace(&local).get(b"k".as_slice()),
        Some(&View::String(b"v".to_vec()))
    );
}

#[test]
fn hashes_merge_field_by_field() {
    let mut base = KeyState::default();
    base.hset(b"f".to_vec(), b"0".to_vec(), Hlc::new(1, 0));
    let (mut a, mut b) = (base.clone(), base);
    a.hset(b"f".to_vec(), b"a".to_vec(), Hlc::new(3, 0));
    b.hset(b"g".to_vec(), b"b".to_vec(), Hlc::new(4, 0));
    b.hset(b"f".to_vec(), b"b".to_vec(), Hlc::new(2, 0));
    a.merge(&b);
    let View::Hash(h) = a.view().unwrap() else {
        panic!("not a hash")
    };
    assert_eq!(h.get(b"f".as_slice()), Some(&b"a".to_vec()));
    assert_eq!(h.get(b"g".as_slice()), Some(&b"b".to_vec()));
}

#[test]
fn hdel_tombstone_beats_an_older_field_write() {
    let mut a = KeyState::default();
    a.hset(b"f".to_vec(), b"1".to_vec(), Hlc::new(1, 0));
    a.hset(b"g".to_vec(), b"1".to_vec(), Hlc::new(1, 1));
    let mut b = a.clone();
    a.hdel(b"f".to_vec(), Hlc::new(5, 0));
    b.hset(b"f".to_vec(), b"2".to_vec(), Hlc::new(3, 0));
    b.merge(&a);
    let View::Hash(h) = b.view().unwrap() else {
        panic!("not a hash")
    };
    assert!(!h.contains_key(b"f".as_slice()));
}

#[test]
fn concurrent_set_add_wins_over_remove() {
    let mut base = KeyState::default();
    let t1 = Tag {
        hlc: Hlc::new(1, 0),
        origin: 1,
    };
    base.sadd(b"m".to_vec(), t1);
    let (mut a, mut b) = (base.clone(), base);
    // a removes m (seen tag t1) later in time than b's concurrent re-add.
    b.sadd(
        b"m".to_vec(),
        Tag {
            hlc: Hlc::new(2, 0),
            origin: 2,
        },
    );
    a.srem(b"m");
    a.merge(&b);
    assert_eq!(
        a.view(),
        Some(View::Set([b"m".to_vec()].into_iter().collect()))
    );
}

#[test]
fn deleted_key_is_not_resurrected_by_older_writes() {
    let mut a = KeyState::default();
    a.sadd(
        b"m".to_vec(),
        Tag {
            hlc: Hlc::new(1, 0),
            origin: 1,
        },
    );
    let mut b = a.clone();
    b.sadd(
        b"n".to_vec(),
        Tag {
            hlc: Hlc::new(2, 0),
            origin: 2,
        },
    );
    a.del(Hlc::new(3, 0));
    b.merge(&a);
    assert_eq!(b.view(), None);
}

#[test]
fn far_future_remote_keys_are_refused_and_reported() {
    let mut local = Keyspace::new();
    let mut remote = Keyspace::new();
    remote
        .entry(b"ok".to_vec())
        .or_default()
        .set(b"1".to_vec(), Hlc::new(1_100, 0));
    remote
        .entry(b"wild".to_vec())
        .or_default()
        .set(b"2".to_vec(), Hlc::new(9_000, 0));
    let mut clock = HlcClock::new(500);
    let r = merge_keyspace(&mut local, &remote, &mut clock, 1_000);
    assert_eq!(r.merged, 1);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].key, b"wild".to_vec());
    assert!(matches!(r.rejected[0].error, HlcError::ClockDrift { .. }));
    assert!(!local.contains_key(b"wild".as_slice()));
}
