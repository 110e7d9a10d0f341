//! Replay equals state: random command sequences run with the journal on,
//! then their records replayed on an empty shard, give the same keyspace —
//! values, expiry times, per-key HLC times and seq.

use keel_shards::record::{walk, Tail};
use keel_shards::{Entry, Shard, DATABASES};
use proptest::prelude::*;

use super::apply_frame;
use crate::cmd::Ctx;
use crate::exec::command::{self, Kind};
use crate::exec::router::apply;

/// Command templates: `{k}` a key, `{f}` a field or member, `{v}` a value,
/// `{n}` a small integer, `{t}` a TTL in seconds, `{at}` an absolute time in
/// ms near now, `{s}` a score.
const TEMPLATES: &[&str] = &[
    "SET {k} {v}",
    "SET {k} {v} EX {t}",
    "SET {k} {v} PX 1500 NX",
    "SET {k} {v} XX KEEPTTL GET",
    "SET {k} {v} PXAT {at}",
    "SETEX {k} {t} {v}",
    "PSETEX {k} 900 {v}",
    "SETNX {k} {v}",
    "GETSET {k} {v}",
    "GETDEL {k}",
    "GETEX {k} EX {t}",
    "GETEX {k} PERSIST",
    "GETEX {k} PXAT {at}",
    "APPEND {k} {v}",
    "SETRANGE {k} {n} {v}",
    "INCR {k}",
    "DECRBY {k} {n}",
    "INCRBYFLOAT {k} 1.5",
    "MSET {k} {v} {k} {v}",
    "MSETNX {k} {v} {k} {v}",
    "DEL {k} {k}",
    "UNLINK {k}",
    "EXPIRE {k} {t}",
    "PEXPIRE {k} 700 NX",
    "EXPIREAT {k} 1",
    "PEXPIREAT {k} {at} GT",
    "PERSIST {k}",
    "RENAME {k} {k}",
    "RENAMENX {k} {k}",
    "COPY {k} {k} REPLACE",
    "GET {k}",
    "EXISTS {k} {k}",
    "HSET {k} {f} {v} {f} {v}",
    "HSETNX {k} {f} {v}",
    "HDEL {k} {f}",
    "HINCRBY {k} {f} {n}",
    "HINCRBYFLOAT {k} {f} 0.25",
    "HGETALL {k}",
    "SADD {k} {f} {f} {f}",
    "SREM {k} {f}",
    "SPOP {k}",
    "SPOP {k} {n}",
    "SMOVE {k} {k} {f}",
    "SINTERSTORE {k} {k} {k}",
    "SUNIONSTORE {k} {k} {k}",
    "SDIFFSTORE {k} {k} {k}",
    "ZADD {k} {s} {f} {s} {f}",
    "ZADD {k} INCR {s} {f}",
    "ZINCRBY {k} {s} {f}",
    "ZREM {k} {f}",
    "ZPOPMIN {k}",
    "ZPOPMAX {k} {n}",
    "ZREMRANGEBYRANK {k} 0 {n}",
    "ZUNIONSTORE {k} 2 {k} {k}",
    "ZINTERSTORE {k} 2 {k} {k} AGGREGATE MAX",
    "ZRANGESTORE {k} {k} 0 -1",
    "LPUSH {k} {v} {v}",
    "RPUSH {k} {v}",
    "LPOP {k}",
    "RPOP {k} {n}",
    "LSET {k} 0 {v}",
    "LINSERT {k} BEFORE {v} {v}",
    "LREM {k} 0 {v}",
    "LTRIM {k} 1 -1",
    "LMOVE {k} {k} LEFT RIGHT",
    "RPOPLPUSH {k} {k}",
    "LMPOP 2 {k} {k} LEFT COUNT {n}",
    // streams: `*` ids and approximate trims are recorded as what they did
    "XADD {k} * {f} {v}",
    "XADD {k} * {f} {v} {f} {v}",
    "XADD {k} 1700000000000-* {f} {v}",
    "XADD {k} MAXLEN ~ {n} LIMIT {n} * {f} {v}",
    "XADD {k} MAXLEN {n} * {f} {v}",
    "XADD {k} NOMKSTREAM MINID ~ 1700000000400 * {f} {v}",
    "XTRIM {k} MAXLEN {n}",
    "XTRIM {k} MINID ~ 1700000000300 LIMIT 0",
    "XDEL {k} 1700000000000-0 1700000000100-0",
    "XSETID {k} 1800000000000-0 ENTRIESADDED 999",
    // consumer groups: delivery and seen times come from the record's time
    "XGROUP CREATE {k} g 0 MKSTREAM",
    "XGROUP CREATE {k} h $",
    "XGROUP SETID {k} g 0",
    "XGROUP CREATECONSUMER {k} g {f}",
    "XGROUP DELCONSUMER {k} g {f}",
    "XGROUP DESTROY {k} h",
    "XREADGROUP GROUP g {f} COUNT {n} STREAMS {k} >",
    "XREADGROUP GROUP g {f} NOACK STREAMS {k} >",
    "XREADGROUP GROUP g {f} STREAMS {k} 0",
    "XACK {k} g 1700000000000-0 1700000000100-0",
    "XCLAIM {k} g {f} 0 1700000000000-0 1700000000100-0 1700000000200-0",
    "XCLAIM {k} g {f} 10 1700000000300-0 IDLE 500 RETRYCOUNT {n} FORCE",
    "XAUTOCLAIM {k} g {f} 0 0 COUNT {n}",
    "XAUTOCLAIM {k} g {f} 100 0 JUSTID",
    "SORT {k} ALPHA LIMIT 0 {n} STORE {k}",
    "SORT {k} BY nosort DESC STORE {k}",
    "SORT {k} BY *x ALPHA GET # GET *->f STORE {k}",
    "SWAPDB 0 {n}",
    "RESTORE {k} 0 {p} REPLACE",
    "RESTORE {k} {t}000 {p}",
    "FLUSHDB",
];

fn fill(template: &str, rng: &mut u64, now: u64) -> Vec<Vec<u8>> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    template
        .split(' ')
        .map(|w| match w {
            "{k}" => format!("k{}", next() % 6).into_bytes(),
            "{f}" => format!("f{}", next() % 5).into_bytes(),
            "{v}" => format!("v{}", next() % 7).into_bytes(),
            "{n}" => (next() % 4 + 1).to_string().into_bytes(),
            "{t}" => (next() % 3 + 1).to_string().into_bytes(),
            "{at}" => (now + next() % 4000).to_string().into_bytes(),
            "{s}" => format!("{}.5", next() % 9).into_bytes(),
            "{p}" => dump_payload(next() % 3),
            w => w.as_bytes().to_vec(),
        })
        .collect()
}

/// A DUMP payload of a string, a hash or a set.
fn dump_payload(which: u64) -> Vec<u8> {
    use keel_shards::{Hash, Hlc, Set, Value};
    let t = Hlc::from_raw(7);
    let value = match which {
        0 => Value::Str(b"dumped".to_vec()),
        1 => {
            let mut h = Hash::default();
            h.insert(b"f0", b"v".to_vec(), t);
            h.insert(b"f9", b"w".to_vec(), t);
            Value::Hash(h)
        }
        _ => {
            let mut set = Set::default();
            set.insert(b"m", t);
            Value::Set(set)
        }
    };
    crate::cmd::dump::payload(&Entry::new(value, 0))
}

fn run(s: &mut Shard, db: usize, now: u64, argv: &[Vec<u8>]) {
    let args: Vec<&[u8]> = argv.iter().map(|a| &a[..]).collect();
    if args[0] == b"FLUSHDB" {
        s.command_begin();
        s.flush_db(db);
        return;
    }
    let spec = command::lookup(args[0]).expect("template names a command");
    let Kind::Keyed(f, _) = spec.kind else {
        panic!("not keyed: {}", spec.name)
    };
    let ctx = Ctx {
        db,
        now_ms: now,
        max_string: 1 << 20,
        no_touch: false,
        client: 0,
        track: false,
    };
    let _ = apply(f, crate::exec::router::Mode::WRITE, s, &ctx, &args);
}

/// Every key of every database with its entry (expired ones included).
fn contents(s: &Shard) -> Vec<(usize, Vec<u8>, Entry)> {
    let mut out = Vec::new();
    for db in 0..DATABASES {
        s.for_each(db, 0, |k, e| out.push((db, k.to_vec(), e.to_entry())));
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

fn same(a: &Shard, b: &Shard) -> Result<(), TestCaseError> {
    let (ca, cb) = (contents(a), contents(b));
    prop_assert_eq!(ca.len(), cb.len(), "key counts differ");
    for ((da, ka, ea), (db, kb, eb)) in ca.iter().zip(&cb) {
        prop_assert_eq!((da, ka), (db, kb));
        let key = String::from_utf8_lossy(ka);
        prop_assert_eq!(
            keel_shards::Digest::of_entry(*da, ka, ea),
            keel_shards::Digest::of_entry(*db, kb, eb),
            "value of {} differs",
            key
        );
        prop_assert_eq!(ea.expire_at, eb.expire_at, "expiry of {} differs", key);
        prop_assert_eq!(ea.hlc, eb.hlc, "HLC of {} differs", key);
    }
    prop_assert_eq!(a.seq(), b.seq());
    Ok(())
}

/// Runs `steps` of `templates` with the journal on, replays the records on
/// an empty shard and compares.
fn replay_matches(
    templates: &[&str],
    steps: Vec<(usize, u64, usize, u8)>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut a = Shard::new(0);
    a.journal_enable(true);
    let mut rng = seed;
    let mut now = 1_700_000_000_000u64;
    let mut in_unit = false;
    for (t, dt, db, unit) in steps {
        now += dt;
        // Now and then a transaction's records form a unit.
        if unit == 0 && !in_unit {
            a.unit_begin();
            in_unit = true;
        } else if unit == 1 && in_unit {
            a.unit_end(7, &[0]);
            in_unit = false;
        }
        let argv = fill(templates[t % templates.len()], &mut rng, now);
        run(&mut a, db, now, &argv);
    }
    if in_unit {
        a.unit_end(8, &[0]);
    }
    let (log, last) = a.take_journal();
    prop_assert_eq!(last, a.seq());
    let mut b = Shard::new(0);
    let mut error = None;
    let tail = walk(&log, |_, frame| match apply_frame(&mut b, &frame) {
        Ok(()) => true,
        Err(e) => {
            error = Some(e.to_string());
            false
        }
    });
    prop_assert_eq!(error, None);
    prop_assert_eq!(tail, Tail::Clean);
    same(&a, &b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn replaying_a_shards_records_rebuilds_it(
        steps in prop::collection::vec((0..TEMPLATES.len(), 0u64..900, 0usize..3, 0u8..12), 1..120),
        seed in 1u64..u64::MAX,
    ) {
        replay_matches(TEMPLATES, steps, seed)?;
    }

    /// Streams alone, so groups, deliveries and claims pile up on a few keys.
    #[test]
    fn replaying_stream_records_rebuilds_them(
        steps in prop::collection::vec((0..100usize, 0u64..900, 0usize..2, 0u8..12), 1..150),
        seed in 1u64..u64::MAX,
    ) {
        let streams: Vec<&str> = TEMPLATES.iter().copied().filter(|t| t.starts_with('X')).collect();
        replay_matches(&streams, steps, seed)?;
    }
}

#[test]
fn a_record_with_the_wrong_argument_count_is_refused_not_run() {
    use keel_shards::hlc::Hlc;
    use keel_shards::record::{Frame, Op, Record};
    let mut s = Shard::new(0);
    for args in [
        vec![&b"SET"[..], b"k"],
        vec![&b"INCRBY"[..]],
        vec![&b"HSET"[..], b"h", b"f"],
    ] {
        let r = Record {
            seq: 1,
            term: 0,
            hlc: Hlc::from_raw(1 << 20),
            db: 0,
            op: Op::Cmd,
            key: b"",
            args: args.into(),
        };
        assert!(matches!(
            apply_frame(&mut s, &Frame::Record(r)),
            Err(super::ReplayError::Malformed { .. })
        ));
    }
    assert_eq!((s.keys(), s.seq()), (0, 0));
}
