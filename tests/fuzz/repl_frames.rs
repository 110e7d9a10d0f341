//! Replication links: frames (length, crc32, lz4) and the messages inside
//! them, read from a stream that delivers bytes in arbitrary pieces.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::io::AsyncRead;
use keel::repl::link::{decode_frame, encode_frame, FrameReader, LinkError, LinkStats, MAX_FRAME};
use keel::repl::wire::{Hello, Msg, Welcome};
use keel_shards::hlc::Hlc;
use keel_shards::record::{encode_record, walk, Frame, Op, Record, Tail};
use proptest::prelude::*;

use crate::{bytes, config, cuts, largest_allocation, mutate, mutations};

/// A stream that hands out `data` in pieces ending at `cuts`.
struct Pieces {
    data: Vec<u8>,
    cuts: Vec<usize>,
    at: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let at = self.at;
        let end = self
            .cuts
            .iter()
            .copied()
            .find(|&c| c > at)
            .unwrap_or(self.data.len());
        let n = (end - at).min(buf.len());
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

/// Payloads that compress and payloads that do not, around the size
/// under which frames are never compressed.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(300),
        ("[a-c]{1,4}", 0usize..400).prop_map(|(s, n)| s.repeat(n).into_bytes()),
    ]
}

/// The frames of `payloads` back to back, where each ends, and what
/// encoding counted.
fn wire(payloads: &[(Vec<u8>, bool)]) -> (Vec<u8>, Vec<usize>, LinkStats) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    let mut stats = LinkStats::default();
    for (p, compress) in payloads {
        encode_frame(&mut out, p, *compress, &mut stats);
        ends.push(out.len());
    }
    (out, ends, stats)
}

/// The payloads decoded off the front of `buf`, and how decoding stopped:
/// the bytes used when waiting for more, else the error.
fn decode_all(buf: &[u8]) -> (Vec<Vec<u8>>, Result<usize, String>) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match decode_frame(&buf[at..]) {
            Ok(Some((p, n))) => {
                out.push(p);
                at += n;
            }
            Ok(None) => return (out, Ok(at)),
            Err(e) => return (out, Err(e.to_string())),
        }
    }
}

/// `body` (flags and payload) under a correct length and crc.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// What must hold of decoding any bytes.
fn check_frame(buf: &[u8]) -> Result<(), TestCaseError> {
    // (the length counts once the whole 8-byte head is in)
    let announced = buf
        .get(..8)
        .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize);
    let (decoded, big) = largest_allocation(|| decode_frame(buf));
    // (lz4 makes at most 255 bytes of one)
    prop_assert!(
        big <= 64 + 256 * buf.len(),
        "{} bytes allocated at once for {} bytes",
        big,
        buf.len()
    );
    match decoded {
        Ok(Some((p, n))) => {
            prop_assert_eq!(Some(n - 8), announced);
            prop_assert!(n <= buf.len() && p.len() <= MAX_FRAME);
        }
        Ok(None) => match announced {
            None => prop_assert!(buf.len() < 8),
            Some(len) => prop_assert!(len <= MAX_FRAME && buf.len() < 8 + len),
        },
        Err(LinkError::TooLarge(n)) => prop_assert!(n > MAX_FRAME),
        Err(LinkError::Closed | LinkError::Io(_)) => prop_assert!(false, "no I/O here"),
        Err(_) => {}
    }
    Ok(())
}

/// A replication message's contents, owned.
#[derive(Debug, Clone)]
enum OwnedMsg {
    Hello(Hello),
    Welcome(Welcome),
    Refused(String),
    Snapshot(Vec<u8>),
    Data(u64, u64, Vec<u8>),
    Ping(u64, u64),
    Ack(u64),
    MergeAsk(u64),
    MergeData(Vec<u8>),
    MergeEnd(bool),
}

impl OwnedMsg {
    fn view(&self) -> Msg<'_> {
        match self {
            OwnedMsg::Hello(h) => Msg::Hello(h.clone()),
            OwnedMsg::Welcome(w) => Msg::Welcome(w.clone()),
            OwnedMsg::Refused(s) => Msg::Refused(s.clone()),
            OwnedMsg::Snapshot(b) => Msg::Snapshot(b),
            OwnedMsg::Data(s, t, b) => Msg::Data {
                primary_seq: *s,
                at_ms: *t,
                frames: b,
            },
            OwnedMsg::Ping(s, t) => Msg::Ping {
                primary_seq: *s,
                at_ms: *t,
            },
            OwnedMsg::Ack(s) => Msg::Ack { seq: *s },
            OwnedMsg::MergeAsk(a) => Msg::MergeAsk { after: *a },
            OwnedMsg::MergeData(b) => Msg::MergeData(b),
            OwnedMsg::MergeEnd(c) => Msg::MergeEnd { complete: *c },
        }
    }

    /// Whether the message ends in raw bytes (its length is the frame's).
    fn open_ended(&self) -> bool {
        matches!(
            self,
            OwnedMsg::Snapshot(_) | OwnedMsg::Data(..) | OwnedMsg::MergeData(_)
        )
    }
}

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn msg() -> impl Strategy<Value = OwnedMsg> {
    let hello = (
        prop::array::uniform6(any::<u64>()),
        (text(), text(), any::<u64>(), text(), any::<bool>()),
    )
        .prop_map(|(v, (node_id, zone, client_port, auth, pull))| {
            OwnedMsg::Hello(Hello {
                version: v[0],
                shards: v[1],
                shard: v[2],
                history: v[3],
                term: v[4],
                seq: v[5],
                node_id,
                zone,
                client_port,
                auth,
                pull,
            })
        });
    let welcome = (
        any::<bool>(),
        prop::array::uniform3(any::<u64>()),
        (text(), text(), text()),
    )
        .prop_map(|(full, v, (node_id, zone, why))| {
            OwnedMsg::Welcome(Welcome {
                full,
                history: v[0],
                term: v[1],
                from_seq: v[2],
                node_id,
                zone,
                why,
            })
        });
    prop_oneof![
        hello,
        welcome,
        text().prop_map(OwnedMsg::Refused),
        bytes(64).prop_map(OwnedMsg::Snapshot),
        (any::<u64>(), any::<u64>(), bytes(64)).prop_map(|(s, t, b)| OwnedMsg::Data(s, t, b)),
        (any::<u64>(), any::<u64>()).prop_map(|(s, t)| OwnedMsg::Ping(s, t)),
        any::<u64>().prop_map(OwnedMsg::Ack),
        any::<u64>().prop_map(OwnedMsg::MergeAsk),
        bytes(64).prop_map(OwnedMsg::MergeData),
        any::<bool>().prop_map(OwnedMsg::MergeEnd),
    ]
}

/// Bytes that start like a message often enough to reach its fields.
fn msg_soup() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(b"HWESDPAMme?".to_vec()), bytes(120)).prop_map(|(k, mut b)| {
        b.insert(0, k);
        b
    })
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/repl_frames.txt"))]

    /// Frames, raw or compressed, decode to their payloads using exactly
    /// their bytes; any prefix yields the frames wholly inside it and then
    /// waits; a reader fed in any pieces gets every payload, then a clean
    /// end, and counts what was sent.
    #[test]
    fn frames_round_trip_in_any_pieces(
        payloads in prop::collection::vec((payload(), any::<bool>()), 0..6),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (buf, ends, sent) = wire(&payloads);
        let want: Vec<Vec<u8>> = payloads.iter().map(|(p, _)| p.clone()).collect();
        prop_assert_eq!(decode_all(&buf), (want.clone(), Ok(buf.len())));

        let cut = cut.index(buf.len() + 1);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let used = if whole == 0 { 0 } else { ends[whole - 1] };
        prop_assert_eq!(decode_all(&buf[..cut]), (want[..whole].to_vec(), Ok(used)));

        let mut r = Pieces { data: buf.clone(), cuts: cuts(buf.len(), &raw), at: 0 };
        let mut reader = FrameReader::new();
        for p in &want {
            prop_assert_eq!(&block_on(reader.next(&mut r)).map_err(|e| TestCaseError::fail(e.to_string()))?, p);
        }
        prop_assert!(matches!(block_on(reader.next(&mut r)), Err(LinkError::Closed)));
        prop_assert_eq!(reader.stats(), sent);
    }

    /// Arbitrary bytes: a payload inside the input and the limit, "need
    /// more" for a length within the limit, or a typed error.
    #[test]
    fn any_bytes_decode_wait_or_are_refused(buf in bytes(300)) {
        check_frame(&buf)?;
    }

    /// Valid frames' bodies damaged under a correct crc (flags, the size
    /// prefix, lz4 data): a payload no larger than announced and the
    /// limit, or a refusal; never a panic.
    #[test]
    fn damaged_bodies_under_a_good_crc_decode_or_are_refused(
        p in payload(),
        compress in any::<bool>(),
        muts in mutations(3),
    ) {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &p, compress, &mut LinkStats::default());
        let mut body = buf.split_off(8);
        mutate(&mut body, &muts);
        let f = framed(&body);
        check_frame(&f)?;
        if let Ok(Some((got, _))) = decode_frame(&f) {
            if body.first() == Some(&1) {
                let size = u32::from_le_bytes([body[1], body[2], body[3], body[4]]) as usize;
                prop_assert_eq!(got.len(), size);
            } else {
                prop_assert_eq!(&got[..], &body[1..]);
            }
        }
    }

    /// A damaged stream yields only payloads that were sent, all of those
    /// before the damage, then waits or is refused.
    #[test]
    fn damaged_streams_yield_only_sent_payloads(
        payloads in prop::collection::vec((payload(), any::<bool>()), 1..6),
        muts in mutations(3),
    ) {
        let (mut buf, ends, _) = wire(&payloads);
        let lowest = mutate(&mut buf, &muts);
        let (got, _) = decode_all(&buf);
        let want: Vec<Vec<u8>> = payloads.into_iter().map(|(p, _)| p).collect();
        prop_assert!(got.len() <= want.len());
        prop_assert_eq!(&got[..], &want[..got.len()]);
        prop_assert!(got.len() >= ends.iter().filter(|&&e| e <= lowest).count());
    }

    /// Messages encode and decode to themselves; one of fixed length cut
    /// short is refused, never misread.
    #[test]
    fn messages_round_trip(m in msg(), cut in any::<prop::sample::Index>()) {
        let mut out = Vec::new();
        m.view().encode(&mut out);
        prop_assert_eq!(Msg::decode(&out).map_err(|e| e.to_string()), Ok(m.view()));
        if !m.open_ended() {
            let cut = cut.index(out.len());
            prop_assert!(Msg::decode(&out[..cut]).is_err());
        }
    }

    /// Arbitrary bytes: a message that encodes to bytes decoding to it
    /// again, or a refusal.
    #[test]
    fn any_bytes_are_a_message_or_refused(b in prop_oneof![bytes(120), msg_soup()]) {
        if let Ok(m) = Msg::decode(&b) {
            let mut again = Vec::new();
            m.encode(&mut again);
            prop_assert_eq!(Msg::decode(&again).map_err(|e| e.to_string()), Ok(m));
        }
    }

    /// Write records in data messages in link frames, through a reader fed
    /// in any pieces, come out as written.
    #[test]
    fn records_cross_a_link_whole(
        batches in prop::collection::vec(prop::collection::vec((any::<u64>(), bytes(40)), 0..5), 1..4),
        compress in any::<bool>(),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut buf = Vec::new();
        let mut stats = LinkStats::default();
        for (i, batch) in batches.iter().enumerate() {
            let mut frames = Vec::new();
            for (seq, v) in batch {
                encode_record(&mut frames, &rec(*seq, v));
            }
            let mut payload = Vec::new();
            Msg::Data { primary_seq: i as u64, at_ms: 7, frames: &frames }.encode(&mut payload);
            encode_frame(&mut buf, &payload, compress, &mut stats);
        }
        let mut r = Pieces { data: buf.clone(), cuts: cuts(buf.len(), &raw), at: 0 };
        let mut reader = FrameReader::new();
        for (i, batch) in batches.iter().enumerate() {
            let payload = block_on(reader.next(&mut r)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let Ok(Msg::Data { primary_seq, frames, .. }) = Msg::decode(&payload) else {
                return Err(TestCaseError::fail("not a data message"));
            };
            prop_assert_eq!(primary_seq, i as u64);
            let mut got = Vec::new();
            let tail = walk(frames, |_, f| {
                got.push(f);
                true
            });
            prop_assert_eq!(tail, Tail::Clean);
            let want: Vec<Frame<'_>> = batch.iter().map(|(s, v)| Frame::Record(rec(*s, v))).collect();
            prop_assert_eq!(got, want);
        }
    }
}

fn rec(seq: u64, v: &[u8]) -> Record<'_> {
    Record {
        seq,
        term: 2,
        hlc: Hlc::from_raw(seq / 2),
        db: 0,
        op: Op::Cmd,
        key: b"",
        args: vec![&b"SET"[..], b"k", v].into(),
    }
}
