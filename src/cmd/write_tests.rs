//! Write accounting across the collection commands: each write counts
//! once in the shard's sequence, no-ops and errors count nothing, and
//! fields, members and keys carry the HLC time of their last write.

use keel_shards::{Hash, Hlc, Set, Shard, Typed, ValueRef, ZSet};

use super::error::CmdError;
use super::{hashes::*, lists, sets, zsets, Ctx};
use crate::resp::reply::Reply;
fn ctx(now_ms: u64) -> Ctx {
    Ctx {
        db: 0,
        now_ms,
        max_string: 512 << 20,
        no_touch: false,
        client: 0,
        track: false,
    }
}

fn run(s: &mut Shard, now: u64, f: crate::exec::command::KeyedFn, words: &str) -> Reply {
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    f(s, &ctx(now), &args).unwrap_or_else(|e| Reply::Error(e.to_string().into()))
}

fn field_hlc(s: &mut Shard, key: &[u8], field: &[u8]) -> Option<Hlc> {
    let e = s.peek(0, key, 0)?;
    Hash::of(e.value())?.get(field).map(|f| f.hlc)
}

#[test]
fn each_write_counts_once_and_stamps_fields_and_key() {
    let mut s = Shard::new(0);
    run(&mut s, 1000, hset, "HSET h a 1 b 2");
    assert_eq!(s.seq(), 1);
    let t1 = field_hlc(&mut s, b"h", b"a").unwrap();
    assert_eq!(t1.physical_ms(), 1000);
    run(&mut s, 2000, hset, "HSET h b 3");
    assert_eq!(s.seq(), 2);
    // Only the written field moves; the key takes the newest time.
    assert_eq!(field_hlc(&mut s, b"h", b"a"), Some(t1));
    let t2 = field_hlc(&mut s, b"h", b"b").unwrap();
    assert!(t2 > t1);
    assert_eq!(s.peek(0, b"h", 0).map(|e| e.hlc()), Some(t2));
    // No-ops are not writes.
    run(&mut s, 3000, hsetnx, "HSETNX h a 9");
    run(&mut s, 3000, hdel, "HDEL h nope");
    run(&mut s, 3000, hget, "HGET h a");
    assert_eq!(s.seq(), 2);
    // An error after the type check writes nothing and creates nothing.
    run(&mut s, 3000, hincrby, "HINCRBY new f x");
    assert!(s.peek(0, b"new", 0).is_none());
    assert_eq!(s.seq(), 2);
}

#[test]
fn set_members_keep_the_time_they_were_added() {
    let mut s = Shard::new(0);
    run(&mut s, 1000, sets::sadd, "SADD s a");
    run(&mut s, 2000, sets::sadd, "SADD s a b");
    run(&mut s, 3000, sets::sadd, "SADD s a");
    assert_eq!(s.seq(), 2);
    let e = s.peek(0, b"s", 0).unwrap();
    let set = Set::of(e.value()).unwrap();
    assert_eq!(set.hlc(b"a").map(|h| h.physical_ms()), Some(1000));
    assert_eq!(set.hlc(b"b").map(|h| h.physical_ms()), Some(2000));
    // SPOP of everything: one write, key gone.
    run(&mut s, 4000, sets::spop, "SPOP s 10");
    assert_eq!(s.seq(), 3);
    assert!(s.peek(0, b"s", 0).is_none());
}

#[test]
fn zset_members_and_lists_count_writes() {
    let mut s = Shard::new(0);
    run(&mut s, 1000, zsets::zadd, "ZADD z 1 a 2 b");
    run(&mut s, 2000, zsets::zadd, "ZADD z 1 a 3 b");
    run(&mut s, 3000, zsets::zadd, "ZADD z GT 0 a");
    assert_eq!(s.seq(), 2);
    let e = s.peek(0, b"z", 0).unwrap();
    let z = ZSet::of(e.value()).unwrap();
    assert_eq!(z.hlc(b"a").map(|h| h.physical_ms()), Some(1000));
    assert_eq!(z.hlc(b"b").map(|h| h.physical_ms()), Some(2000));
    run(&mut s, 4000, lists::rpush, "RPUSH l a b c");
    run(&mut s, 4000, lists::lrem, "LREM l 0 zz");
    run(&mut s, 4000, lists::lmove, "LMOVE l l2 LEFT RIGHT");
    assert_eq!(s.seq(), 5);
    assert!(matches!(
        s.peek(0, b"l2", 0).map(|e| e.value()),
        Some(ValueRef::List(_))
    ));
    assert_eq!(
        run(&mut s, 4000, sets::sadd, "SADD l x"),
        Reply::Error(CmdError::WrongType.to_string().into())
    );
    assert_eq!(s.seq(), 5);
}

/// The records a shard produced, as argument lists.
fn records(s: &mut Shard) -> Vec<Vec<String>> {
    let (log, _) = s.take_journal();
    let mut out = Vec::new();
    keel_shards::record::walk(&log, |_, frame| {
        if let keel_shards::record::Frame::Record(r) = frame {
            out.push(
                r.args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
        true
    });
    out
}

#[test]
fn stream_writes_are_recorded_with_the_ids_and_trims_they_made() {
    use super::streams;
    let run = |s: &mut Shard, now: u64, f: crate::exec::command::KeyedFn, words: &str| {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        let _ =
            crate::exec::router::apply(f, crate::exec::router::Mode::WRITE, s, &ctx(now), &args);
    };
    let mut s = Shard::new(0);
    s.journal_enable(true);
    run(&mut s, 5000, streams::xadd, "XADD x * a 1");
    run(&mut s, 5000, streams::xadd, "XADD x 5000-* a 2");
    run(&mut s, 6000, streams::xadd, "XADD x 7000-0 a 3");
    for i in 0..150 {
        run(&mut s, 8000 + i, streams::xadd, "XADD x * a 4");
    }
    run(&mut s, 9000, streams::xadd, "XADD x MAXLEN ~ 20 * a 5");
    run(&mut s, 9000, streams::xtrim, "XTRIM x MAXLEN ~ 0");
    // An error and a no-op record nothing.
    run(&mut s, 9000, streams::xadd, "XADD x 1-0 a 6");
    run(&mut s, 9000, streams::xtrim, "XTRIM x MAXLEN 1000");
    let recs = records(&mut s);
    assert_eq!(recs.len(), 155, "one record per write");
    assert_eq!(recs[0], ["XADD", "x", "5000-0", "a", "1"]);
    assert_eq!(recs[1], ["XADD", "x", "5000-1", "a", "2"]);
    assert_eq!(recs[2], ["XADD", "x", "7000-0", "a", "3"]);
    // 153 entries: the first block (100 appends) goes whole.
    assert_eq!(
        recs[153],
        ["XADD", "x", "MAXLEN", "=", "54", "9000-0", "a", "5"]
    );
    assert_eq!(recs[154], ["XTRIM", "x", "MAXLEN", "=", "0"]);
}
