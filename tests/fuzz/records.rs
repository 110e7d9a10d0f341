//! Write-record frames: the bytes of logs, snapshot files, the backlog and
//! replication streams, and the snapshot loader that reads them in pieces.

use keel_shards::entry_codec::encode_entry;
use keel_shards::hlc::Hlc;
use keel_shards::record::{
    decode_frame, encode_end, encode_header, encode_record, encode_unit, put_unit_record, walk,
    Frame, FrameError, Header, Op, Record, Tail, FRAME_HEADER, MAX_BODY,
};
use keel_shards::snapshot::Loader;
use keel_shards::{Digest, Entry, Shard, Value};
use proptest::prelude::*;

use crate::{bytes, config, cuts, largest_allocation, mutate, mutations};

/// A record's fields, owned (a [`Record`] borrows its bytes).
#[derive(Debug, Clone)]
struct Rec {
    seq: u64,
    term: u64,
    hlc: u64,
    db: u8,
    op: Op,
    key: Vec<u8>,
    args: Vec<Vec<u8>>,
}

impl Rec {
    fn view(&self) -> Record<'_> {
        Record {
            seq: self.seq,
            term: self.term,
            hlc: Hlc::from_raw(self.hlc),
            db: self.db,
            op: self.op,
            key: &self.key,
            args: self
                .args
                .iter()
                .map(|a| a.as_slice())
                .collect::<Vec<_>>()
                .into(),
        }
    }
}

/// A frame's contents, owned.
#[derive(Debug, Clone)]
enum Owned {
    Record(Rec),
    Unit {
        commit: u64,
        parts: Vec<u64>,
        recs: Vec<Rec>,
    },
    Header(Header),
    End(u64),
}

impl Owned {
    fn view(&self) -> Frame<'_> {
        match self {
            Owned::Record(r) => Frame::Record(r.view()),
            Owned::Unit {
                commit,
                parts,
                recs,
            } => Frame::Unit {
                commit: *commit,
                parts: parts.clone(),
                records: recs.iter().map(Rec::view).collect(),
            },
            Owned::Header(h) => Frame::Header(*h),
            Owned::End(n) => Frame::End { entries: *n },
        }
    }
}

/// Appends `f` to `out` with the encoder of its kind.
fn encode(out: &mut Vec<u8>, f: &Frame<'_>) {
    match f {
        Frame::Record(r) => encode_record(out, r),
        Frame::Unit {
            commit,
            parts,
            records,
        } => {
            let mut body = Vec::new();
            for r in records {
                put_unit_record(&mut body, r);
            }
            encode_unit(out, *commit, parts, records.len(), &body);
        }
        Frame::Header(h) => encode_header(out, h),
        Frame::End { entries } => encode_end(out, *entries),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(vec![
        Op::Cmd,
        Op::Del,
        Op::Put,
        Op::FlushDb,
        Op::IncrTo,
        Op::Abort,
    ])
}

/// Numbers of every varint length, small ones most often.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>(), Just(u64::MAX)]
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        number(),
        number(),
        any::<u64>(),
        any::<u8>(),
        op(),
        bytes(16),
        prop::collection::vec(bytes(300), 0..4),
    )
        .prop_map(|(seq, term, hlc, db, op, key, args)| Rec {
            seq,
            term,
            hlc,
            db,
            op,
            key,
            args,
        })
}

fn frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        3 => rec().prop_map(Owned::Record),
        1 => (number(), prop::collection::vec(number(), 0..4), prop::collection::vec(rec(), 0..3))
            .prop_map(|(commit, parts, recs)| Owned::Unit { commit, parts, recs }),
        1 => prop::array::uniform6(number()).prop_map(|v| Owned::Header(Header {
            shard: v[0],
            shards: v[1],
            seq: v[2],
            term: v[3],
            commit: v[4],
            hlc: v[5],
        })),
        1 => number().prop_map(Owned::End),
    ]
}

/// The frames encoded back to back, and where each starts.
fn log(frames: &[Owned]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for f in frames {
        starts.push(out.len());
        encode(&mut out, &f.view());
    }
    (out, starts)
}

/// The frames a walk over `buf` yields, with their offsets, and its tail.
fn walked(buf: &[u8]) -> (Vec<(usize, Frame<'_>)>, Tail) {
    let mut seen = Vec::new();
    let tail = walk(buf, |at, f| {
        seen.push((at, f));
        true
    });
    (seen, tail)
}

/// `body` in a frame with a correct length and crc.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// What must hold of any frame decoded from any bytes: it used bytes that
/// are there, and encoding it again gives bytes that decode to it.
fn check_decoded(buf: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, big) = largest_allocation(|| decode_frame(buf));
    // (a record per byte, at most)
    let most = 64 + std::mem::size_of::<Record>() * buf.len();
    prop_assert!(
        big <= most,
        "{} bytes allocated at once for {} bytes",
        big,
        buf.len()
    );
    match decoded {
        Ok((f, n)) => {
            prop_assert!(n > FRAME_HEADER && n <= buf.len());
            let mut again = Vec::new();
            encode(&mut again, &f);
            prop_assert_eq!(decode_frame(&again), Ok((f, again.len())));
        }
        Err(FrameError::Truncated { need, have }) => {
            prop_assert_eq!(have, buf.len());
            prop_assert!(need > have && need <= FRAME_HEADER + MAX_BODY);
        }
        Err(FrameError::Padding) => {
            prop_assert!(buf[..buf.len().min(FRAME_HEADER)].iter().all(|&b| b == 0));
        }
        Err(FrameError::Length(n)) => prop_assert!(!(2..=MAX_BODY).contains(&n)),
        Err(_) => {}
    }
    Ok(())
}

/// A snapshot of string keys as a shard's snapshot would hold them.
fn snapshot(seq: u64, term: u64, values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let h = Header {
        shard: 0,
        shards: 1,
        seq,
        term,
        commit: 0,
        hlc: 5,
    };
    encode_header(&mut out, &h);
    for (i, v) in values.iter().enumerate() {
        let mut e = Entry::new(Value::Str(v.clone()), 0);
        e.hlc = Hlc::from_raw(i as u64 + 1);
        let mut arg = Vec::new();
        encode_entry(&mut arg, &e);
        let key = format!("key:{i}").into_bytes();
        let args: Vec<&[u8]> = vec![&arg];
        let r = Record {
            seq,
            term,
            hlc: e.hlc,
            db: 0,
            op: Op::Put,
            key: &key,
            args: args.into(),
        };
        encode_record(&mut out, &r);
    }
    encode_end(&mut out, values.len() as u64);
    out
}

/// Loads `snap` into a fresh shard, fed in pieces ending at `cuts`, as
/// recovery (file reads) and a backup (link messages) feed it.
fn load(snap: &[u8], cuts: &[usize]) -> Result<(usize, Digest), String> {
    let mut shard = Shard::new(0);
    let mut loader = Loader::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    for &c in cuts {
        buf.extend_from_slice(&snap[fed..c]);
        fed = c;
        let n = loader
            .feed(&mut shard, &buf)
            .map_err(|e| format!("after {c} bytes: {e}"))?;
        buf.drain(..n);
    }
    if !loader.done() {
        return Err("not done".into());
    }
    Ok((shard.keys(), shard.digest(0)))
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/records.txt"))]

    /// Frames of every kind decode to themselves, each using exactly its
    /// bytes; any cut of the log yields the whole frames before it and a
    /// torn tail, never corruption and never a frame that was not written.
    #[test]
    fn frames_round_trip_and_any_cut_is_a_torn_tail(
        frames in prop::collection::vec(frame(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let (buf, starts) = log(&frames);
        let (seen, tail) = walked(&buf);
        prop_assert_eq!(tail, Tail::Clean);
        let want: Vec<(usize, Frame<'_>)> =
            starts.iter().copied().zip(frames.iter().map(Owned::view)).collect();
        prop_assert_eq!(&seen, &want);

        let cut = cut.index(buf.len() + 1);
        let (seen, tail) = walked(&buf[..cut]);
        let whole = starts.iter().chain([&buf.len()]).filter(|&&s| s <= cut).count() - 1;
        prop_assert_eq!(&seen[..], &want[..whole]);
        let at = starts.get(whole).copied().unwrap_or(buf.len());
        let rest = &buf[at..cut];
        if rest.iter().all(|&b| b == 0) {
            // (nothing, or the zero low bytes of a length: padding-like)
            prop_assert_eq!(tail, Tail::Clean);
        } else {
            prop_assert!(matches!(tail, Tail::Torn { offset, .. } if offset == at), "{:?}", tail);
            if rest.len() >= FRAME_HEADER {
                let need = starts.get(whole + 1).copied().unwrap_or(buf.len()) - at;
                prop_assert_eq!(
                    decode_frame(rest),
                    Err(FrameError::Truncated { need, have: rest.len() })
                );
            }
        }
    }

    /// A valid frame's body, damaged, under a correct crc (what a writer
    /// bug would produce): a frame that re-encodes to itself, or a typed
    /// error; never a panic, never an allocation the bytes cannot back.
    #[test]
    fn damaged_bodies_under_a_good_crc_decode_or_are_refused(
        f in frame(),
        muts in mutations(3),
    ) {
        let mut buf = Vec::new();
        encode(&mut buf, &f.view());
        let mut body = buf.split_off(FRAME_HEADER);
        mutate(&mut body, &muts);
        let framed = framed(&body);
        check_decoded(&framed)?;
        if body.len() >= 2 {
            let r = decode_frame(&framed);
            let framing = matches!(
                r,
                Err(FrameError::Crc | FrameError::Truncated { .. } | FrameError::Padding)
            );
            prop_assert!(!framing, "{:?}", r);
        }
    }

    /// Arbitrary bytes, bare or under a correct crc.
    #[test]
    fn any_bytes_decode_or_are_refused(buf in bytes(300), crc in any::<bool>()) {
        let buf = if crc { framed(&buf) } else { buf };
        check_decoded(&buf)?;
        let (seen, tail) = walked(&buf);
        let mut next = 0;
        for (at, _) in &seen {
            prop_assert_eq!(*at, next);
            next += decode_frame(&buf[*at..]).map(|(_, n)| n).unwrap_or(0);
        }
        match tail {
            Tail::Clean => prop_assert!(buf[next..].iter().all(|&b| b == 0)),
            Tail::Torn { offset, .. } => prop_assert_eq!(offset, next),
            Tail::Corrupt { offset, .. } => {
                prop_assert_eq!(offset, next);
                prop_assert!((offset + 1..buf.len()).any(|i| decode_frame(&buf[i..]).is_ok()));
            }
        }
    }

    /// A damaged log: the walk yields only frames that were written, at
    /// their places, all those before the damage, and never ends clean
    /// having lost one.
    #[test]
    fn damaged_logs_yield_only_written_frames(
        frames in prop::collection::vec(frame(), 1..6),
        muts in mutations(3),
    ) {
        let (mut buf, starts) = log(&frames);
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain([buf.len()]).collect();
        let lowest = mutate(&mut buf, &muts);
        let want: Vec<(usize, Frame<'_>)> =
            starts.iter().copied().zip(frames.iter().map(Owned::view)).collect();
        let (seen, tail) = walked(&buf);
        prop_assert!(seen.len() <= want.len());
        prop_assert_eq!(&seen[..], &want[..seen.len()]);
        prop_assert!(seen.len() >= ends.iter().filter(|&&e| e <= lowest).count());
        if tail == Tail::Clean {
            prop_assert_eq!(seen.len(), want.len());
        }
    }

    /// A snapshot loads the same whatever pieces it arrives in: cut in
    /// every head (where a length's low bytes may be zero) and anywhere.
    #[test]
    fn snapshots_load_the_same_in_any_pieces(
        values in prop::collection::vec(bytes(600), 0..4),
        seq in number(),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let snap = snapshot(seq, 1, &values);
        let whole = load(&snap, &[snap.len()]);
        prop_assert_eq!(whole.as_ref().map(|w| w.0), Ok(values.len()));
        prop_assert_eq!(&load(&snap, &cuts(snap.len(), &raw)), &whole);
        let mut at = 0;
        while at < snap.len() {
            let (_, n) = decode_frame(&snap[at..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for k in 1..=FRAME_HEADER {
                prop_assert_eq!(&load(&snap, &[at + k, snap.len()]), &whole, "cut {} bytes into the frame at {}", k, at);
            }
            at += n;
        }
    }
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/records.txt"))]

    /// A snapshot with one frame damaged under a good crc (a writer's bug):
    /// loaded, with no more keys than it holds, or refused; never a panic.
    #[test]
    fn damaged_snapshots_load_or_are_refused(
        values in prop::collection::vec(bytes(100), 0..4),
        which in any::<prop::sample::Index>(),
        muts in mutations(3),
    ) {
        let snap = snapshot(9, 1, &values);
        let mut frames = Vec::new();
        let mut at = 0;
        while at < snap.len() {
            let (_, n) = decode_frame(&snap[at..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            frames.push(snap[at + FRAME_HEADER..at + n].to_vec());
            at += n;
        }
        let i = which.index(frames.len());
        mutate(&mut frames[i], &muts);
        let damaged: Vec<u8> = frames.iter().flat_map(|b| framed(b)).collect();
        match load(&damaged, &[damaged.len()]) {
            Ok((keys, _)) => prop_assert!(keys <= values.len()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}
