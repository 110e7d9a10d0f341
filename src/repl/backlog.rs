//! A shard's recent write records, kept by the primary so that a backup that
//! reconnects can continue from the last seq it applied instead of starting
//! over from a snapshot.
//!
//! The backlog holds whole frames, byte for byte as
//! [`keel_shards::record`] encodes them, in the chunks the shard handed over
//! (one per flush of its journal, a few KB each). Chunks are kept as given,
//! never copied on append, and trimmed oldest first. A frame's seq is the
//! shard's seq after it, so seqs increase from frame to frame but skip
//! (a unit or a command that wrote twice moves them by more than one).

use std::collections::VecDeque;

use keel_shards::record::{decode_frame, Frame};

/// How far pinned readers may hold the backlog past its cap before they lose
/// their place anyway: a backup stuck in a full sync must not take the
/// primary's memory with it.
const PIN_SLACK: usize = 4;

/// Frames appended together.
#[derive(Debug)]
struct Chunk {
    /// The seq of the last frame in `bytes`.
    last_seq: u64,
    /// When the chunk was appended, for the lag in ms.
    at_ms: u64,
    /// Offset of the chunk's first byte in everything ever appended: bytes
    /// behind a reader are then a subtraction, not a walk over the chunks.
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    id: u64,
    after_seq: u64,
}

/// The recent frames of one shard.
#[derive(Debug)]
pub struct Backlog {
    chunks: VecDeque<Chunk>,
    /// Bytes held: the sum of the chunks' lengths.
    bytes: usize,
    cap: usize,
    /// The seq just before the first record held.
    start_seq: u64,
    /// The seq after the last record held (or of the shard, if none is).
    last_seq: u64,
    /// Bytes ever appended: the offset the next chunk gets.
    appended: u64,
    pins: Vec<Pin>,
    next_pin: u64,
}

impl Backlog {
    /// An empty backlog of a shard now at `seq`: it can serve readers that
    /// applied `seq`.
    pub fn new(cap_bytes: usize, seq: u64) -> Self {
        Self {
            chunks: VecDeque::new(),
            bytes: 0,
            cap: cap_bytes,
            start_seq: seq,
            last_seq: seq,
            appended: 0,
            pins: Vec::new(),
            next_pin: 0,
        }
    }

    /// Appends whole frames (the records after [`Backlog::last_seq`] up to
    /// and including `last_seq`), produced at `now_ms`; then trims.
    ///
    /// An append that does not lead on from what is held (`last_seq` not
    /// past the current one, or no bytes to get there) starts the backlog
    /// over at `last_seq`: serving a reader across the gap would hand it
    /// the wrong history, while an empty backlog makes it resync.
    pub fn append(&mut self, mut bytes: Vec<u8>, last_seq: u64, now_ms: u64) {
        if bytes.is_empty() && last_seq == self.last_seq {
            return;
        }
        if bytes.is_empty() || last_seq <= self.last_seq {
            self.chunks.clear();
            self.bytes = 0;
            self.start_seq = last_seq;
            self.last_seq = last_seq;
            return;
        }
        // The chunk is kept for as long as the backlog holds it: a buffer
        // the caller grew generously should not keep its spare room.
        if bytes.capacity() > 2 * bytes.len() {
            bytes.shrink_to_fit();
        }
        let len = bytes.len();
        self.chunks.push_back(Chunk {
            last_seq,
            at_ms: now_ms,
            offset: self.appended,
            bytes,
        });
        self.bytes += len;
        self.appended += len as u64;
        self.last_seq = last_seq;
        self.trim();
    }

    pub fn set_cap(&mut self, cap_bytes: usize) {
        self.cap = cap_bytes;
        self.trim();
    }

    /// Holds the frames after `after_seq` for a reader that must not lose its
    /// place (a backup in full sync): while it is pinned, trimming keeps the
    /// chunks it still needs unless the backlog grows past 4 x cap. A pin
    /// below [`Backlog::start_seq`] holds nothing. Returns the pin's id.
    pub fn pin(&mut self, after_seq: u64) -> u64 {
        let id = self.next_pin;
        self.next_pin += 1;
        self.pins.push(Pin { id, after_seq });
        id
    }

    /// Releases a pin, trimming what it held.
    pub fn unpin(&mut self, id: u64) {
        self.pins.retain(|p| p.id != id);
        self.trim();
    }

    /// The oldest seq a reader may have applied and still be served: the seq
    /// just before the first record held.
    pub fn start_seq(&self) -> u64 {
        self.start_seq
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Bytes of frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a reader that applied `after` can continue from here.
    pub fn can_serve(&self, after: u64) -> bool {
        (self.start_seq..=self.last_seq).contains(&after)
    }

    /// The frames with seq > `after`, as one buffer, with the seq of the last
    /// frame returned. Returns about `max_bytes` at most, in whole chunks,
    /// but always at least one chunk when any frame is due. `None` when
    /// `after` cannot be served (or, through a bug upstream, the chunk it
    /// stops inside does not decode); `Some((empty, after))` when caught up.
    pub fn read_after(&self, after: u64, max_bytes: usize) -> Option<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let last = self.read_after_into(after, max_bytes, &mut out)?;
        Some((out, last))
    }

    /// [`Backlog::read_after`], appending the frames to `out` (after a
    /// message header, say, to save a copy); returns the last seq appended
    /// (`after` when caught up).
    pub fn read_after_into(&self, after: u64, max_bytes: usize, out: &mut Vec<u8>) -> Option<u64> {
        if !self.can_serve(after) {
            return None;
        }
        if after == self.last_seq {
            return Some(after);
        }
        let (first, skip) = self.position(after)?;
        // Size the copy first: one allocation per read.
        let mut len = self.chunks[first].bytes.len() - skip;
        let mut end = first + 1;
        while let Some(c) = self.chunks.get(end) {
            if len + c.bytes.len() > max_bytes {
                break;
            }
            len += c.bytes.len();
            end += 1;
        }
        out.reserve(len);
        out.extend_from_slice(&self.chunks[first].bytes[skip..]);
        for c in self.chunks.range(first + 1..end) {
            out.extend_from_slice(&c.bytes);
        }
        Some(self.chunks[end - 1].last_seq)
    }

    /// How far a reader that applied `after` is behind: the bytes of frames
    /// after it, and the age in ms of the oldest chunk holding one (0 when
    /// caught up). A reader the backlog cannot serve is counted as behind
    /// everything held.
    pub fn lag(&self, after: u64, now_ms: u64) -> (u64, u64) {
        if after >= self.last_seq {
            return (0, 0);
        }
        match self.position(after) {
            Some((i, skip)) => {
                let c = &self.chunks[i];
                let behind = self.appended - (c.offset + skip as u64);
                (behind, now_ms.saturating_sub(c.at_ms))
            }
            None => {
                let age = self.chunks.front().map_or(0, |c| c.at_ms);
                (self.bytes as u64, now_ms.saturating_sub(age))
            }
        }
    }

    /// Where the first frame after `after` is: the chunk's index and the
    /// offset in it. `None` when there is no such frame to serve, or the
    /// chunk's frames do not decode.
    fn position(&self, after: u64) -> Option<(usize, usize)> {
        if after < self.start_seq || after >= self.last_seq {
            return None;
        }
        let i = self.chunks.partition_point(|c| c.last_seq <= after);
        let chunk = self.chunks.get(i)?;
        let before = match i {
            0 => self.start_seq,
            _ => self.chunks[i - 1].last_seq,
        };
        // A reader at a chunk boundary, the usual case, needs no decoding.
        let skip = if after == before {
            0
        } else {
            first_frame_after(&chunk.bytes, after)?
        };
        Some((i, skip))
    }

    /// Drops the oldest chunks while over the cap, unless a pin holds them
    /// and the backlog is still within its slack.
    fn trim(&mut self) {
        let hard = self.cap.saturating_mul(PIN_SLACK);
        while self.bytes > self.cap {
            let Some(oldest) = self.chunks.front() else {
                break;
            };
            if self.bytes <= hard && self.pinned(oldest.last_seq) {
                break;
            }
            if let Some(c) = self.chunks.pop_front() {
                self.bytes -= c.bytes.len();
                self.start_seq = c.last_seq;
            }
        }
    }

    /// Whether a pin still being served needs a record of the oldest chunk,
    /// whose last frame is `chunk_last`.
    fn pinned(&self, chunk_last: u64) -> bool {
        self.pins
            .iter()
            .any(|p| p.after_seq >= self.start_seq && p.after_seq < chunk_last)
    }
}

/// The offset in `bytes` of the first frame holding a record after `after`.
/// `None` when a frame does not decode: the caller resyncs the reader rather
/// than guess where it stands.
fn first_frame_after(bytes: &[u8], after: u64) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        let (frame, n) = decode_frame(&bytes[at..]).ok()?;
        if frame_seq(&frame).is_some_and(|s| s > after) {
            break;
        }
        at += n;
    }
    Some(at)
}

/// The shard's seq after a frame applies; a unit's is its last record's.
fn frame_seq(frame: &Frame<'_>) -> Option<u64> {
    match frame {
        Frame::Record(r) => Some(r.seq),
        Frame::Unit { records, .. } => records.last().map(|r| r.seq),
        Frame::Header(_) | Frame::End { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_shards::hlc::Hlc;
    use keel_shards::record::{encode_record, encode_unit, put_unit_record, Op, Record};
    use proptest::prelude::*;

    fn rec(seq: u64, value: &[u8]) -> Record<'_> {
        Record {
            seq,
            term: 1,
            hlc: Hlc::new(1_700_000_000_000, 0),
            db: 0,
            op: Op::Cmd,
            key: b"",
            args: vec![&b"SET"[..], b"key", value].into(),
        }
    }

    /// One framed record with seq `seq`.
    fn record(seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        // Fixed width: the pin test counts frames of equal size.
        encode_record(&mut out, &rec(seq, format!("v{seq:06}").as_bytes()));
        out
    }

    /// One framed unit of `n` records ending at seq `last`.
    fn unit(last: u64, n: u64) -> Vec<u8> {
        let mut body = Vec::new();
        for seq in last + 1 - n..=last {
            put_unit_record(&mut body, &rec(seq, b"u"));
        }
        let mut out = Vec::new();
        encode_unit(&mut out, last, &[0, 1], n as usize, &body);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Chunks: [11, 12], [unit 13..=15], [17].
    fn sample(cap: usize) -> (Backlog, [Vec<u8>; 4]) {
        let f = [record(11), record(12), unit(15, 3), record(17)];
        let mut b = Backlog::new(cap, 10);
        b.append(cat(&[&f[0], &f[1]]), 12, 1000);
        b.append(f[2].clone(), 15, 1010);
        b.append(f[3].clone(), 17, 1020);
        (b, f)
    }

    #[test]
    fn reads_return_the_frames_after_a_seq() {
        let (b, f) = sample(1 << 20);
        assert_eq!((b.start_seq(), b.last_seq()), (10, 17));
        assert_eq!(b.bytes(), f.iter().map(Vec::len).sum::<usize>());
        assert_eq!(b.read_after(10, usize::MAX), Some((f.concat(), 17)));
        assert_eq!(
            b.read_after(12, usize::MAX),
            Some((cat(&[&f[2], &f[3]]), 17))
        );
        assert_eq!(b.read_after(15, usize::MAX), Some((f[3].clone(), 17)));
        assert_eq!(b.read_after(17, usize::MAX), Some((Vec::new(), 17)));
        // Neither before the start nor past the end.
        assert_eq!(b.read_after(9, usize::MAX), None);
        assert_eq!(b.read_after(18, usize::MAX), None);
        assert!(!b.can_serve(9) && b.can_serve(10) && b.can_serve(17) && !b.can_serve(18));
    }

    #[test]
    fn reads_stop_near_max_bytes_in_whole_chunks() {
        let (b, f) = sample(1 << 20);
        // At least one chunk, however small the limit.
        assert_eq!(b.read_after(10, 0), Some((cat(&[&f[0], &f[1]]), 12)));
        let two = f[0].len() + f[1].len() + f[2].len();
        assert_eq!(
            b.read_after(10, two),
            Some((cat(&[&f[0], &f[1], &f[2]]), 15))
        );
        assert_eq!(b.read_after(10, two + f[3].len() - 1).unwrap().1, 15);
    }

    #[test]
    fn reads_from_inside_a_chunk_skip_what_was_applied() {
        let (b, f) = sample(1 << 20);
        assert_eq!(b.read_after(11, 0), Some((f[1].clone(), 12)));
        assert_eq!(
            b.read_after(11, usize::MAX),
            Some((cat(&[&f[1], &f[2], &f[3]]), 17))
        );
        // Seqs between frames (inside a unit, or skipped) resume at the next frame.
        assert_eq!(b.read_after(14, 0), Some((f[2].clone(), 15)));
        assert_eq!(b.read_after(16, 0), Some((f[3].clone(), 17)));
    }

    #[test]
    fn trimming_moves_the_start() {
        let (mut b, f) = sample(1 << 20);
        b.set_cap(f[2].len() + f[3].len());
        assert_eq!(b.start_seq(), 12);
        assert_eq!(b.bytes(), f[2].len() + f[3].len());
        assert!(!b.can_serve(10) && !b.can_serve(11) && b.can_serve(12));
        assert_eq!(b.read_after(11, usize::MAX), None);
        assert_eq!(
            b.read_after(12, usize::MAX),
            Some((cat(&[&f[2], &f[3]]), 17))
        );

        // A cap below one chunk holds nothing, but the backlog still knows
        // where the shard is.
        b.set_cap(0);
        assert_eq!((b.start_seq(), b.last_seq(), b.bytes()), (17, 17, 0));
        assert_eq!(b.read_after(17, usize::MAX), Some((Vec::new(), 17)));
        b.append(record(18), 18, 2000);
        assert_eq!(b.bytes(), 0);
        assert!(b.can_serve(18) && !b.can_serve(17));
    }

    #[test]
    fn pins_hold_chunks_up_to_four_times_the_cap() {
        let size = record(1).len();
        let mut b = Backlog::new(2 * size, 0);
        let pin = b.pin(0);
        for seq in 1..=8 {
            b.append(record(seq), seq, seq);
            assert_eq!(b.start_seq(), 0, "dropped at {seq}");
        }
        assert_eq!(b.bytes(), 8 * size);
        // One more is past 4 x cap: the pinned reader loses its place.
        b.append(record(9), 9, 9);
        assert_eq!((b.start_seq(), b.bytes()), (7, 2 * size));
        assert!(!b.can_serve(0));

        // A pin the backlog can no longer serve holds nothing.
        b.append(record(10), 10, 10);
        assert_eq!(b.start_seq(), 8);

        // A pin inside the backlog holds from its place on; unpinning trims.
        let at9 = b.pin(9);
        for seq in 11..=14 {
            b.append(record(seq), seq, seq);
        }
        assert_eq!(b.start_seq(), 9);
        b.unpin(at9);
        b.unpin(pin);
        assert_eq!((b.start_seq(), b.bytes()), (12, 2 * size));
    }

    #[test]
    fn lag_counts_bytes_and_age() {
        let (b, f) = sample(1 << 20);
        assert_eq!(b.lag(10, 1500), (b.bytes() as u64, 500));
        assert_eq!(b.lag(11, 1500), ((b.bytes() - f[0].len()) as u64, 500));
        assert_eq!(b.lag(12, 1500), ((f[2].len() + f[3].len()) as u64, 490));
        assert_eq!(b.lag(15, 1500), (f[3].len() as u64, 480));
        assert_eq!(b.lag(17, 1500), (0, 0));
        // A clock that stepped back does not underflow.
        assert_eq!(b.lag(15, 0), (f[3].len() as u64, 0));

        // Offsets stay right once the front is trimmed.
        let (mut b, f) = sample(1 << 20);
        b.set_cap(f[3].len());
        assert_eq!(b.lag(15, 1500), (f[3].len() as u64, 480));
        // A reader left behind counts as behind everything held.
        assert_eq!(b.lag(12, 1500), (f[3].len() as u64, 480));
    }

    #[test]
    fn appends_that_do_not_follow_on_start_over() {
        let (mut b, _) = sample(1 << 20);
        b.append(Vec::new(), 17, 0);
        assert_eq!((b.start_seq(), b.last_seq()), (10, 17));
        // The shard's seq went back (or jumped with nothing to show for it):
        // no reader can be served across that.
        b.append(record(16), 16, 0);
        assert_eq!((b.start_seq(), b.last_seq(), b.bytes()), (16, 16, 0));
        b.append(Vec::new(), 20, 0);
        assert_eq!((b.start_seq(), b.last_seq()), (20, 20));
        assert!(!b.can_serve(16));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Frames as (seq gap, records in the frame: 1 = a record, more = a unit).
        Append(Vec<(u64, u64)>, u64),
        Read(prop::sample::Index, usize),
        SetCap(usize),
        Pin(prop::sample::Index),
        Unpin(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (prop::collection::vec((0u64..3, 1u64..4), 1..5), 0u64..50)
                .prop_map(|(f, dt)| Step::Append(f, dt)),
            4 => (any::<prop::sample::Index>(), 0usize..600).prop_map(|(i, m)| Step::Read(i, m)),
            1 => (0usize..3000).prop_map(Step::SetCap),
            1 => any::<prop::sample::Index>().prop_map(Step::Pin),
            1 => any::<prop::sample::Index>().prop_map(Step::Unpin),
        ]
    }

    proptest! {
        /// Whatever is appended, trimmed and pinned, a read returns exactly
        /// the frames after its seq up to the seq it reports, in order, and
        /// the lag is the bytes of the frames it has yet to read.
        #[test]
        fn reads_return_exactly_the_frames_due(steps in prop::collection::vec(step(), 1..60)) {
            let mut b = Backlog::new(1000, 100);
            // Every frame ever appended, with its seq, and every position a
            // reader can be at.
            let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut positions = vec![99, 100];
            let mut pins = Vec::new();
            let (mut now, mut start) = (0, 100);
            for s in steps {
                match s {
                    Step::Append(spec, dt) => {
                        let mut chunk = Vec::new();
                        let mut seq = b.last_seq();
                        for (gap, n) in spec {
                            seq += gap + n;
                            let f = if n == 1 { record(seq) } else { unit(seq, n) };
                            chunk.extend_from_slice(&f);
                            frames.push((seq, f));
                            positions.push(seq);
                            positions.push(seq - 1);
                        }
                        now += dt;
                        b.append(chunk, seq, now);
                    }
                    Step::Read(i, max) => {
                        let after = positions[i.index(positions.len())];
                        let got = b.read_after(after, max);
                        prop_assert_eq!(got.is_some(), b.can_serve(after));
                        let Some((bytes, last)) = got else { continue };
                        let due: Vec<u8> = frames
                            .iter()
                            .filter(|f| f.0 > after && f.0 <= last)
                            .flat_map(|f| f.1.iter().copied())
                            .collect();
                        prop_assert_eq!(&bytes, &due, "after {} up to {}", after, last);
                        prop_assert!(last >= after);
                        prop_assert_eq!(bytes.is_empty(), after == b.last_seq());
                        let behind: usize = frames.iter().filter(|f| f.0 > after).map(|f| f.1.len()).sum();
                        prop_assert_eq!(b.lag(after, now).0, behind as u64);
                    }
                    Step::SetCap(cap) => b.set_cap(cap),
                    Step::Pin(i) => pins.push(b.pin(positions[i.index(positions.len())])),
                    Step::Unpin(i) => {
                        if !pins.is_empty() {
                            b.unpin(pins.swap_remove(i.index(pins.len())));
                        }
                    }
                }
                prop_assert!(b.start_seq() >= start, "start went back");
                start = b.start_seq();
                prop_assert!(b.bytes() <= 4 * b.cap);
                if pins.is_empty() {
                    prop_assert!(b.bytes() <= b.cap);
                }
                let held: usize = frames.iter().filter(|f| f.0 > b.start_seq()).map(|f| f.1.len()).sum();
                prop_assert_eq!(b.bytes(), held);
            }
        }
    }
}
