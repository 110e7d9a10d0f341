//! Merging a diverged member's records after a split brain heals.
//!
//! # When
//! A node that was primary on the other side of a partition (the *loser*)
//! steps down when it hears the newer term and follows the winner. Its
//! handshake presents the history the winner was promoted from, but with a
//! seq past the winner's takeover point: it wrote records the winner never
//! saw. Before the loser is full-synced (its copy is discarded), the winner
//! asks it for those records (`MergeAsk`), and applies them here, on the
//! shard's own core, under the shard's lock, as ordinary writes of its own —
//! journaled and streamed to its backups like any write, each with the HLC
//! the loser gave it. Then the full sync makes the loser equal to the winner.
//!
//! # The rules (ARCHITECTURE.md §5, `keel_shards::merge`)
//! *Fork time* is the winner's clock when it promoted: a winner key whose
//! HLC is past it was written on the winner's side; *tombstones* are the
//! winner's deletes since the fork, read off its own backlog.
//! - A key only the loser wrote since the fork: its record applies as written.
//! - A scalar both sides wrote: the later HLC wins (the record applies only
//!   if it is later than the winner's write or delete of that key).
//! - Hash fields: one by one, the later HLC wins (field deletes too).
//! - Sets: the loser's adds apply (add wins over a concurrent remove); its
//!   removes apply only to members the winner did not add since the fork.
//! - INCR-family counters: the loser's increments are added
//!   (`INCRBY step`), so both sides' increments count.
//! - HyperLogLogs: the loser's PFADD and PFMERGE apply, giving each
//!   register the greater of both sides' values.
//! - A delete on either side is not undone by the other side's older state.
//! - Streams: entries from both sides are kept, by id. An entry id is unique
//!   within one node's history, but the two sides of a split each kept
//!   adding to the same stream: a loser entry whose id is not past the
//!   winner's last id (the same id, or one the winner's stream already went
//!   beyond) is added again with a fresh id after the winner's last one
//!   (`ms-*`, keeping its milliseconds when it can), so no entry is lost and
//!   ids stay unique and increasing. Deletes, trims and acknowledgements from
//!   the loser apply (a delete or an ack wins). Consumer groups merge field
//!   by field: a group only the loser created is created; `XGROUP SETID` only
//!   moves a group's last-delivered id forward (the later of the two); the
//!   loser's reads and claims (XREADGROUP, XCLAIM, XAUTOCLAIM) run on the
//!   winner's group, adding to its pending lists (the union of both sides'
//!   deliveries, at least once: an entry both sides delivered may be
//!   delivered twice, none is lost). A loser XDEL of an entry that was
//!   re-added under a new id misses it.
//! - Lists, sorted sets and anything else both sides wrote: key-level
//!   last-writer-wins.
//! - `FLUSHDB` and transaction aborts from the loser are not applied.
//!
//! # Limits
//! Only the records still in the loser's backlog can be offered (a loser
//! that restarted has none); only a loser on the winner's previous history
//! is recognised (two failovers while it was cut off make it a stranger,
//! and it resyncs in full). Both are logged and counted.

use std::collections::HashMap;

use keel_shards::entry_codec::decode_entry;
use keel_shards::record::{decode_frame, Frame, Op, Record};
use keel_shards::{Hlc, Shard, ValueRef};

use crate::cmd::{is, Ctx};
use crate::exec::command::{self, Kind};

/// What the winner knows of its own side since the fork.
#[derive(Default)]
pub struct Fork {
    /// The winner's clock when it promoted.
    pub hlc: Hlc,
    /// Keys the winner deleted since the fork: (db, key) → latest delete.
    pub deleted: HashMap<(u8, Vec<u8>), Hlc>,
    /// Hash fields it deleted: (db, key, field) → latest delete.
    pub fields_deleted: HashMap<(u8, Vec<u8>, Vec<u8>), Hlc>,
}

/// What a merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Loser records applied (in whole or in part).
    pub applied: u64,
    /// Loser records the winner's side won over.
    pub skipped: u64,
    /// Records that could not be read or run.
    pub refused: u64,
}

impl MergeStats {
    pub fn add(&mut self, o: MergeStats) {
        self.applied += o.applied;
        self.skipped += o.skipped;
        self.refused += o.refused;
    }
}

fn max_in<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Hlc>, k: K, h: Hlc) {
    let e = m.entry(k).or_insert(h);
    *e = (*e).max(h);
}

impl Fork {
    /// Reads the winner's own records since the fork (its backlog after its
    /// takeover seq) for its deletes.
    pub fn learn(&mut self, frames: &[u8]) {
        let mut rest = frames;
        while !rest.is_empty() {
            let Ok((frame, used)) = decode_frame(rest) else {
                return;
            };
            rest = &rest[used..];
            match frame {
                Frame::Record(r) => self.learn_record(&r),
                Frame::Unit { records, .. } => records.iter().for_each(|r| self.learn_record(r)),
                _ => {}
            }
        }
    }

    fn learn_record(&mut self, r: &Record<'_>) {
        match r.op {
            Op::Del => max_in(&mut self.deleted, (r.db, r.key.to_vec()), r.hlc),
            Op::Cmd => {
                let Some(name) = r.args.first() else {
                    return;
                };
                if is(name, "del") || is(name, "unlink") || is(name, "getdel") {
                    for k in &r.args[1..] {
                        max_in(&mut self.deleted, (r.db, k.to_vec()), r.hlc);
                    }
                } else if is(name, "hdel") && r.args.len() > 2 {
                    for f in &r.args[2..] {
                        let k = (r.db, r.args[1].to_vec(), f.to_vec());
                        max_in(&mut self.fields_deleted, k, r.hlc);
                    }
                }
            }
            _ => {}
        }
    }

    fn deleted_at(&self, db: u8, key: &[u8]) -> Option<Hlc> {
        self.deleted.get(&(db, key.to_vec())).copied()
    }
}

/// The loser's records (whole frames, as its backlog holds them), merged
/// into `s` by the rules above. `now` is the wall clock in Unix ms.
pub fn merge_frames(s: &mut Shard, fork: &Fork, frames: &[u8], now: u64) -> MergeStats {
    let mut stats = MergeStats::default();
    let mut rest = frames;
    while !rest.is_empty() {
        let (frame, used) = match decode_frame(rest) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("merge: a damaged frame from the loser ends the merge: {e}");
                stats.refused += 1;
                return stats;
            }
        };
        rest = &rest[used..];
        match frame {
            Frame::Record(r) => merge_record(s, fork, &r, now, &mut stats),
            Frame::Unit { records, .. } => {
                for r in &records {
                    merge_record(s, fork, r, now, &mut stats);
                }
            }
            _ => stats.refused += 1,
        }
    }
    stats
}

/// The winner's side of one key: whether it wrote it since the fork, and
/// the time of its latest write or delete.
struct Side {
    touched: bool,
    last: Hlc,
    exists: bool,
}

fn side(s: &mut Shard, fork: &Fork, db: u8, key: &[u8], now: u64) -> Side {
    let entry_hlc = s.peek(db as usize, key, now).map(|e| e.hlc());
    let deleted = fork.deleted_at(db, key);
    let last = entry_hlc
        .into_iter()
        .chain(deleted)
        .max()
        .unwrap_or_default();
    Side {
        touched: deleted.is_some() || entry_hlc.is_some_and(|h| h > fork.hlc),
        last,
        exists: entry_hlc.is_some(),
    }
}

/// Runs `args` on the winner's shard as a write taking HLC time `hlc`.
fn run(s: &mut Shard, db: u8, hlc: Hlc, args: &[&[u8]], now: u64, stats: &mut MergeStats) {
    let Some(spec) = command::lookup(args[0]) else {
        stats.refused += 1;
        return;
    };
    let Kind::Keyed(f, _) = spec.kind else {
        stats.refused += 1;
        return;
    };
    if !spec.arity_ok(args.len()) {
        stats.refused += 1;
        return;
    }
    let ctx = Ctx {
        db: db as usize,
        now_ms: now,
        max_string: usize::MAX,
        no_touch: false,
        client: 0,
        track: false,
    };
    s.replay_at(hlc);
    let r = crate::exec::router::apply(f, crate::exec::router::Mode::WRITE, s, &ctx, args);
    s.end_forced_hlc();
    match r {
        Ok(_) => stats.applied += 1,
        Err(e) => {
            tracing::debug!("merge: {} answered {e}", String::from_utf8_lossy(args[0]));
            stats.skipped += 1;
        }
    }
}

fn merge_record(s: &mut Shard, fork: &Fork, r: &Record<'_>, now: u64, stats: &mut MergeStats) {
    let (db, h) = (r.db, r.hlc);
    if db as usize >= keel_shards::STORED_DBS {
        stats.refused += 1;
        return;
    }
    match r.op {
        Op::FlushDb | Op::Abort => stats.skipped += 1,
        Op::Del => {
            let w = side(s, fork, db, r.key, now);
            if w.exists && w.last < h {
                run(s, db, h, &[b"DEL", r.key], now, stats);
            } else {
                stats.skipped += 1;
            }
        }
        Op::Put => {
            let w = side(s, fork, db, r.key, now);
            if w.touched && w.last >= h {
                stats.skipped += 1;
                return;
            }
            let Some(entry) = r.args.first().and_then(|b| decode_entry(b).ok()) else {
                stats.refused += 1;
                return;
            };
            s.command_begin();
            s.replay_at(h);
            s.set(db as usize, r.key, entry, now);
            s.end_forced_hlc();
            s.record_put(db as usize, r.key);
            stats.applied += 1;
        }
        Op::IncrTo => {
            // Both sides' increments count: the loser's step is added to
            // whatever the winner holds (the value at the fork when the
            // winner did not touch it, so the result is the loser's).
            let deleted_later = fork.deleted_at(db, r.key).is_some_and(|d| d >= h);
            match r.args.get(1) {
                Some(step) if !deleted_later => {
                    run(s, db, h, &[b"INCRBY", r.key, step], now, stats)
                }
                _ => stats.skipped += 1,
            }
        }
        Op::Cmd => merge_command(s, fork, r, now, stats),
    }
}

fn merge_command(s: &mut Shard, fork: &Fork, r: &Record<'_>, now: u64, stats: &mut MergeStats) {
    let (db, h) = (r.db, r.hlc);
    let Some(name) = r.args.first() else {
        stats.refused += 1;
        return;
    };
    let Some(spec) = command::lookup(name) else {
        stats.refused += 1;
        return;
    };
    let keys: Vec<Vec<u8>> = command::keys_of(spec, &r.args)
        .into_iter()
        .map(|k| k.to_vec())
        .collect();
    if is(name, "del") || is(name, "unlink") {
        // A delete wins over the winner's older state only.
        for k in &keys {
            let w = side(s, fork, db, k, now);
            if w.exists && w.last < h {
                run(s, db, h, &[b"DEL", k], now, stats);
            } else {
                stats.skipped += 1;
            }
        }
        return;
    }
    let Some(key) = keys.first().cloned() else {
        run(s, db, h, &r.args, now, stats);
        return;
    };
    let w = side(s, fork, db, &key, now);
    if !w.touched {
        run(s, db, h, &r.args, now, stats);
        return;
    }
    // The winner deleted the key after this write: it stays deleted.
    if fork.deleted_at(db, &key).is_some_and(|d| d >= h) {
        stats.skipped += 1;
        return;
    }
    let fields =
        |s: &mut Shard, keep: &dyn Fn(&keel_shards::Hash, &[u8]) -> bool| -> Option<Vec<Vec<u8>>> {
            match s.peek(db as usize, &key, now).map(|e| e.value()) {
                Some(ValueRef::Hash(hash)) => Some(
                    r.args[2..]
                        .iter()
                        .filter(|f| keep(hash, f))
                        .map(|f| f.to_vec())
                        .collect(),
                ),
                None => Some(r.args[2..].iter().map(|f| f.to_vec()).collect()),
                Some(_) => None,
            }
        };
    let field_older = |hash: &keel_shards::Hash, f: &[u8]| {
        let mine = hash.get(f).map(|x| x.hlc);
        let gone = fork
            .fields_deleted
            .get(&(db, key.clone(), f.to_vec()))
            .copied();
        mine.into_iter().chain(gone).max().is_none_or(|t| t < h)
    };
    if (is(name, "hset") || is(name, "hmset"))
        && r.args.len() >= 4
        && r.args.len().is_multiple_of(2)
    {
        // Field by field: pairs whose field the winner wrote later stay its.
        let pairs: Vec<(&[u8], &[u8])> = r.args[2..].chunks(2).map(|c| (c[0], c[1])).collect();
        let keep: Option<Vec<(&[u8], &[u8])>> =
            match s.peek(db as usize, &key, now).map(|e| e.value()) {
                Some(ValueRef::Hash(hash)) => Some(
                    pairs
                        .into_iter()
                        .filter(|(f, _)| field_older(hash, f))
                        .collect(),
                ),
                None => Some(pairs),
                Some(_) => None,
            };
        match keep {
            Some(p) if !p.is_empty() => {
                let mut args: Vec<&[u8]> = vec![b"HSET", &key];
                for (f, v) in p {
                    args.push(f);
                    args.push(v);
                }
                run(s, db, h, &args, now, stats);
            }
            _ => stats.skipped += 1,
        }
    } else if is(name, "hdel") && r.args.len() >= 3 {
        match fields(s, &field_older) {
            Some(f) if !f.is_empty() => {
                let mut args: Vec<&[u8]> = vec![b"HDEL", &key];
                args.extend(f.iter().map(|x| x.as_slice()));
                run(s, db, h, &args, now, stats);
            }
            _ => stats.skipped += 1,
        }
    } else if is(name, "sadd")
        || is(name, "hincrby")
        || is(name, "hincrbyfloat")
        || is(name, "pfadd")
        || is(name, "pfmerge")
    {
        // Adds win; hash counters add up as string counters do; a
        // HyperLogLog's registers only grow, so the loser's adds and merges
        // applied on the winner's value give the register-wise maximum of
        // both sides.
        run(s, db, h, &r.args, now, stats);
    } else if is(name, "srem") && r.args.len() >= 3 {
        // A member the winner added since the fork was added concurrently
        // with this removal: it stays.
        let members: Option<Vec<Vec<u8>>> = match s.peek(db as usize, &key, now).map(|e| e.value())
        {
            Some(ValueRef::Set(set)) => Some(
                r.args[2..]
                    .iter()
                    .filter(|m| set.hlc(m).is_some_and(|t| t <= fork.hlc))
                    .map(|m| m.to_vec())
                    .collect(),
            ),
            _ => None,
        };
        match members {
            Some(m) if !m.is_empty() => {
                let mut args: Vec<&[u8]> = vec![b"SREM", &key];
                args.extend(m.iter().map(|x| x.as_slice()));
                run(s, db, h, &args, now, stats);
            }
            _ => stats.skipped += 1,
        }
    } else if name.first().is_some_and(|c| c.eq_ignore_ascii_case(&b'x')) {
        merge_stream_command(s, db, h, &key, r, now, stats);
    } else if w.last < h && keys.iter().all(|k| side(s, fork, db, k, now).last < h) {
        // Key-level last writer wins.
        run(s, db, h, &r.args, now, stats);
    } else {
        stats.skipped += 1;
    }
}

/// A stream command both sides' histories touched the key of (the rules
/// in the module docs).
fn merge_stream_command(
    s: &mut Shard,
    db: u8,
    h: Hlc,
    key: &[u8],
    r: &Record<'_>,
    now: u64,
    stats: &mut MergeStats,
) {
    use crate::cmd::streams::{xadd_id, IdReq};
    let name = r.args[0];
    // The stream's last id and the named group's last-delivered id.
    let stream =
        |s: &mut Shard, group: &[u8]| match s.peek(db as usize, key, now).map(|e| e.value()) {
            Some(ValueRef::Stream(x)) => Some((x.last_id(), x.group(group).map(|g| g.last_id))),
            _ => None,
        };
    if is(name, "xadd") {
        let (Some((at, req)), Some((last, _))) = (xadd_id(&r.args), stream(s, b"")) else {
            run(s, db, h, &r.args, now, stats);
            return;
        };
        let past = match req {
            IdReq::Exact(id) => id > last,
            IdReq::Ms(ms) => ms > last.ms,
            IdReq::Auto => true,
        };
        if past {
            run(s, db, h, &r.args, now, stats);
            return;
        }
        // Taken or behind the winner's stream: a fresh id after its last.
        let ms = match req {
            IdReq::Exact(id) => id.ms,
            IdReq::Ms(ms) => ms,
            IdReq::Auto => 0,
        }
        .max(last.ms);
        let fresh = format!("{ms}-*").into_bytes();
        let mut args: Vec<&[u8]> = r.args.to_vec();
        args[at] = &fresh;
        run(s, db, h, &args, now, stats);
    } else if is(name, "xgroup") && r.args.len() >= 5 && is(r.args[1], "setid") {
        // A group's last-delivered id only moves forward.
        let ahead = stream(s, r.args[3]).and_then(|(last, group_last)| {
            let id = if r.args[4] == b"$" {
                last
            } else {
                crate::cmd::streams::parse_id(r.args[4], 0).ok()?
            };
            Some(id > group_last?)
        });
        if ahead == Some(true) {
            run(s, db, h, &r.args, now, stats);
        } else {
            stats.skipped += 1;
        }
    } else {
        run(s, db, h, &r.args, now, stats);
    }
}

#[cfg(test)]
mod tests {
    use keel_shards::record::{encode_record, Op, Record};
    use keel_shards::{Hlc, Set, Shard, Typed};

    use super::*;
    use crate::exec::command::{lookup, Kind};

    fn cmd(s: &mut Shard, now: u64, words: &str) {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        let Some(Kind::Keyed(f, _)) = lookup(args[0]).map(|s| s.kind) else {
            panic!("{words}");
        };
        let ctx = Ctx {
            db: 0,
            now_ms: now,
            max_string: usize::MAX,
            no_touch: false,
            client: 0,
            track: false,
        };
        crate::exec::router::apply(f, crate::exec::router::Mode::WRITE, s, &ctx, &args).unwrap();
    }

    fn record(out: &mut Vec<u8>, ms: u64, op: Op, key: &str, words: &str) {
        let args: Vec<&[u8]> = if words.is_empty() {
            vec![]
        } else {
            words.split(' ').map(str::as_bytes).collect()
        };
        encode_record(
            out,
            &Record {
                seq: 0,
                term: 0,
                hlc: Hlc::new(ms, 0),
                db: 0,
                op,
                key: key.as_bytes(),
                args: args.into(),
            },
        );
    }

    fn get(s: &mut Shard, key: &str) -> Option<Vec<u8>> {
        match s.peek(0, key.as_bytes(), 0)?.value() {
            ValueRef::Str(v) => Some(v.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn the_losers_records_merge_by_the_rules() {
        let mut s = Shard::new(0);
        // Before the fork (both sides have these).
        for w in [
            "SET a old",
            "SET ctr 10",
            "HSET h f1 0 f2 0",
            "SADD s m1 m2",
            "SET gone old",
            "SET dropped old",
        ] {
            cmd(&mut s, 1000, w);
        }
        let fork_hlc = s.hlc_last();
        // The winner's side after the fork.
        for w in ["SET b W", "INCRBY ctr 7", "HSET h f1 W", "SADD s mW"] {
            cmd(&mut s, 3000, w);
        }
        cmd(&mut s, 3000, "DEL gone");
        let mut mine = Vec::new();
        record(&mut mine, 3000, Op::Cmd, "", "DEL gone");
        let mut fork = Fork {
            hlc: fork_hlc,
            ..Fork::default()
        };
        fork.learn(&mine);
        assert!(fork.deleted.contains_key(&(0, b"gone".to_vec())));
        // The loser's side after the fork.
        let mut theirs = Vec::new();
        record(&mut theirs, 2000, Op::Cmd, "", "SET gone L");
        record(&mut theirs, 2000, Op::Cmd, "", "SET b L");
        record(&mut theirs, 4000, Op::Cmd, "", "SET a L");
        record(&mut theirs, 2500, Op::IncrTo, "ctr", "15 5");
        record(&mut theirs, 2000, Op::Cmd, "", "HSET h f1 L f2 L");
        record(&mut theirs, 2000, Op::Cmd, "", "SREM s m1");
        record(&mut theirs, 2000, Op::Cmd, "", "SADD s m3");
        record(&mut theirs, 2000, Op::Cmd, "", "SET only L");
        record(&mut theirs, 2000, Op::Cmd, "", "DEL dropped");
        record(&mut theirs, 2000, Op::FlushDb, "", "");
        let st = merge_frames(&mut s, &fork, &theirs, 5000);
        assert_eq!(get(&mut s, "gone"), None, "the winner's later delete stays");
        assert_eq!(
            get(&mut s, "b").as_deref(),
            Some(&b"W"[..]),
            "the later write wins"
        );
        assert_eq!(
            get(&mut s, "a").as_deref(),
            Some(&b"L"[..]),
            "the later write wins"
        );
        assert_eq!(
            get(&mut s, "ctr").as_deref(),
            Some(&b"22"[..]),
            "both increments"
        );
        assert_eq!(get(&mut s, "only").as_deref(), Some(&b"L"[..]));
        assert_eq!(
            get(&mut s, "dropped"),
            None,
            "a delete of older state applies"
        );
        let h = s.peek(0, b"h", 0).map(|e| e.value().to_value());
        let Some(keel_shards::Value::Hash(h)) = h else {
            panic!("h is not a hash");
        };
        assert_eq!(h.get(b"f1").map(|f| f.value.to_vec()), Some(b"W".to_vec()));
        assert_eq!(h.get(b"f2").map(|f| f.value.to_vec()), Some(b"L".to_vec()));
        let e = s.peek(0, b"s", 0).map(|e| e.value().to_value());
        let set = e
            .as_ref()
            .and_then(|v| Set::of(v.as_ref()))
            .expect("s is a set");
        let mut members: Vec<&[u8]> = set.iter().map(|(m, _)| m).collect();
        members.sort();
        assert_eq!(members, vec![&b"m2"[..], b"m3", b"mW"]);
        assert_eq!(st.skipped, 3, "gone, b and FLUSHDB: {st:?}");
        assert_eq!(st.refused, 0);
        assert_eq!(st.applied, 7, "{st:?}");
        // A damaged frame ends the merge, never panics.
        let mut bad = theirs.clone();
        bad[10] ^= 0xff;
        assert!(merge_frames(&mut s, &fork, &bad, 6000).refused >= 1);
    }

    #[test]
    fn stream_entries_from_both_sides_are_kept_and_groups_merge() {
        let mut s = Shard::new(0);
        for w in [
            "XADD st 1-0 a base",
            "XGROUP CREATE st g 0",
            "XREADGROUP GROUP g w STREAMS st >",
        ] {
            cmd(&mut s, 1000, w);
        }
        let fork_hlc = s.hlc_last();
        // The winner adds 5-0 and 6-0 after the fork.
        cmd(&mut s, 3000, "XADD st 5-0 a W1");
        cmd(&mut s, 3000, "XADD st 6-0 a W2");
        let fork = Fork {
            hlc: fork_hlc,
            ..Fork::default()
        };
        // The loser added 5-0 (taken), 4-0 (behind) and 9-0 (past).
        let mut theirs = Vec::new();
        record(&mut theirs, 2000, Op::Cmd, "", "XADD st 5-0 a L1");
        record(&mut theirs, 2000, Op::Cmd, "", "XADD st 4-0 a L2");
        record(&mut theirs, 2100, Op::Cmd, "", "XADD st 9-0 a L3");
        record(&mut theirs, 2200, Op::Cmd, "", "XACK st g 1-0");
        record(&mut theirs, 2300, Op::Cmd, "", "XGROUP SETID st g 0");
        record(&mut theirs, 2400, Op::Cmd, "", "XGROUP CREATE st lg 0");
        let st = merge_frames(&mut s, &fork, &theirs, 5000);
        let e = s.peek(0, b"st", 0).map(|e| e.value().to_value());
        let Some(keel_shards::Value::Stream(x)) = e else {
            panic!("st is not a stream");
        };
        let entries: Vec<(String, Vec<u8>)> = x
            .range(keel_shards::StreamId::MIN, keel_shards::StreamId::MAX, 0)
            .into_iter()
            .map(|(id, f)| (id.to_string(), f[0].1.to_vec()))
            .collect();
        let values: Vec<&[u8]> = entries.iter().map(|(_, v)| &v[..]).collect();
        assert_eq!(
            values,
            vec![&b"base"[..], b"W1", b"W2", b"L1", b"L2", b"L3"],
            "{entries:?}"
        );
        assert_eq!(
            entries[3].0, "6-1",
            "a taken id is re-added after the winner's last"
        );
        assert_eq!(entries[4].0, "6-2");
        assert_eq!(entries[5].0, "9-0", "an id past the winner's stream stays");
        let g = x.group(b"g").expect("group g");
        assert!(g.pel().is_empty(), "the loser's ack applies");
        assert_eq!(
            g.last_id.to_string(),
            "1-0",
            "SETID backwards is not applied"
        );
        assert!(
            x.group(b"lg").is_some(),
            "a group only the loser made is created"
        );
        assert_eq!(st.skipped, 1, "{st:?}");
    }
}
