//! The write record: one byte format for the append-only log, the backlog,
//! replication streams and snapshot files.
//!
//! # Framing
//! Every frame is `len: u32 LE | crc32: u32 LE | body[len]`, the crc covering
//! the body. A frame is self-delimiting, so a reader can tell a torn tail (a
//! frame that runs past the end of what was written, or an all-zero length
//! where a DMA writer padded its last block) from a bad frame with valid data
//! after it.
//!
//! # Body
//! `version: u8 | kind: u8 | ...` then, by kind:
//! - `RECORD`: one [`Record`].
//! - `UNIT`: the records one shard applied for one transaction, which a
//!   reader applies all or nothing: `commit: u64 | parts: varint, shard ids:
//!   varint... | count: varint | (len: varint, record)...`. `commit` is the
//!   transaction's global commit number and `parts` the shards it wrote on;
//!   recovery restores a transaction only if every part is present.
//! - `HEADER`: starts a snapshot: `shard, shards, seq, term, commit, hlc`
//!   (varints, hlc as u64 LE): the snapshot holds the shard exactly as it was
//!   after record `seq`, `commit` being the last transaction it saw.
//! - `END`: closes a snapshot: `entries: varint`.
//!
//! A record is `seq: varint | term: varint | hlc: u64 LE | db: u8 | op: u8 |
//! key: bytes | args: varint count, bytes...`, a `bytes` being a varint
//! length and the bytes (varints are LEB128). `seq` is the shard's sequence number *after* the
//! record applied (a command that wrote twice moves it by two). What `key`
//! and `args` hold depends on the [`Op`].

use crate::hlc::Hlc;

/// The body layout this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes of `len | crc32` before every body.
pub const FRAME_HEADER: usize = 8;

/// The largest body a reader accepts: a bound on what a flipped length bit
/// can make it allocate.
pub const MAX_BODY: usize = 1 << 30;

const RECORD: u8 = 1;
const UNIT: u8 = 2;
const HEADER: u8 = 3;
const END: u8 = 4;

/// What a record does. Every op is deterministic: replaying a shard's records
/// in order on an empty shard rebuilds it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// A deterministic command: `args` is its full argument vector (name
    /// first), already rewritten where the original was not deterministic
    /// (relative expiry as `PEXPIREAT`, `SPOP` as `SREM`...). `key` is empty.
    Cmd = 1,
    /// `key` was deleted by an expiry or an eviction.
    Del = 2,
    /// `key` now holds exactly `args[0]`, an encoded entry (snapshots, and
    /// keys written back by a cross-shard command).
    Put = 3,
    /// Database `db` was emptied.
    FlushDb = 4,
    /// `key` holds the integer `args[0]`, reached by adding `args[1]`
    /// (INCR and friends: replay sets the value, a merge adds the delta).
    IncrTo = 5,
    /// The transaction whose commit number is `args[0]` (8 bytes LE) is void:
    /// recovery found one of its parts missing and dropped the others.
    Abort = 6,
}

impl Op {
    fn from_u8(b: u8) -> Option<Op> {
        Some(match b {
            1 => Op::Cmd,
            2 => Op::Del,
            3 => Op::Put,
            4 => Op::FlushDb,
            5 => Op::IncrTo,
            6 => Op::Abort,
            _ => return None,
        })
    }
}

/// One write, borrowing its bytes from the frame it was decoded from (or from
/// the caller that encodes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub term: u64,
    pub hlc: Hlc,
    pub db: u8,
    pub op: Op,
    pub key: &'a [u8],
    /// Borrowed where the writer has them as a slice (no copy per record).
    pub args: std::borrow::Cow<'a, [&'a [u8]]>,
}

/// A snapshot's first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub shard: u64,
    pub shards: u64,
    /// The snapshot is the shard after this record.
    pub seq: u64,
    pub term: u64,
    /// The highest transaction commit number the snapshot includes.
    pub commit: u64,
    /// The shard's clock when the snapshot began.
    pub hlc: u64,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Record(Record<'a>),
    Unit {
        commit: u64,
        parts: Vec<u64>,
        records: Vec<Record<'a>>,
    },
    Header(Header),
    End {
        entries: u64,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame runs past the end of the bytes: a torn write, or more to come.
    #[error("frame truncated: {need} bytes needed, {have} available")]
    Truncated { need: usize, have: usize },
    /// A zero length: the zero padding after the last frame of a DMA file.
    #[error("zero padding")]
    Padding,
    #[error("frame length {0} is out of range")]
    Length(usize),
    #[error("crc mismatch")]
    Crc,
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("malformed frame body: {0}")]
    Malformed(&'static str),
}

// ---------------------------------------------------------------- encoding

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Starts a frame in `out`; returns where its header is, for [`end_frame`].
fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(VERSION);
    out.push(kind);
    at
}

fn end_frame(out: &mut [u8], at: usize) {
    let body = &out[at + FRAME_HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a record's fields (no frame) to `out`.
pub fn put_record(out: &mut Vec<u8>, r: &Record<'_>) {
    put_varint(out, r.seq);
    put_varint(out, r.term);
    out.extend_from_slice(&r.hlc.raw().to_le_bytes());
    out.push(r.db);
    out.push(r.op as u8);
    put_bytes(out, r.key);
    put_varint(out, r.args.len() as u64);
    for a in r.args.iter() {
        put_bytes(out, a);
    }
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, r: &Record<'_>) {
    let at = begin_frame(out, RECORD);
    put_record(out, r);
    end_frame(out, at);
}

/// Appends one framed unit to `out`: `records` holds its records back to
/// back, each as written by [`put_unit_record`].
pub fn encode_unit(out: &mut Vec<u8>, commit: u64, parts: &[u64], count: usize, records: &[u8]) {
    let at = begin_frame(out, UNIT);
    out.extend_from_slice(&commit.to_le_bytes());
    put_varint(out, parts.len() as u64);
    for &p in parts {
        put_varint(out, p);
    }
    put_varint(out, count as u64);
    out.extend_from_slice(records);
    end_frame(out, at);
}

/// Appends one record, length-prefixed, to the body of a unit being built.
pub fn put_unit_record(out: &mut Vec<u8>, r: &Record<'_>) {
    let mut body = Vec::with_capacity(32 + r.key.len());
    put_record(&mut body, r);
    put_bytes(out, &body);
}

pub fn encode_header(out: &mut Vec<u8>, h: &Header) {
    let at = begin_frame(out, HEADER);
    for v in [h.shard, h.shards, h.seq, h.term, h.commit] {
        put_varint(out, v);
    }
    out.extend_from_slice(&h.hlc.to_le_bytes());
    end_frame(out, at);
}

pub fn encode_end(out: &mut Vec<u8>, entries: u64) {
    let at = begin_frame(out, END);
    put_varint(out, entries);
    end_frame(out, at);
}

// ---------------------------------------------------------------- decoding

/// A cursor over a body (or any bytes this module's helpers wrote): every
/// read checks the remaining length first, so malformed input is an error,
/// never a panic.
pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
}

const SHORT: FrameError = FrameError::Malformed("body ends early");

impl<'a> Reader<'a> {
    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        let (&v, rest) = self.b.split_first().ok_or(SHORT)?;
        self.b = rest;
        Ok(v)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FrameError> {
        if self.b.len() < 8 {
            return Err(SHORT);
        }
        let (v, rest) = self.b.split_at(8);
        self.b = rest;
        let mut a = [0; 8];
        a.copy_from_slice(v);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, FrameError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FrameError::Malformed("varint too long"))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.varint()?;
        if n > self.b.len() as u64 {
            return Err(SHORT);
        }
        let (v, rest) = self.b.split_at(n as usize);
        self.b = rest;
        Ok(v)
    }

    fn record(&mut self) -> Result<Record<'a>, FrameError> {
        let seq = self.varint()?;
        let term = self.varint()?;
        let hlc = Hlc::from_raw(self.u64()?);
        let db = self.u8()?;
        let op = Op::from_u8(self.u8()?).ok_or(FrameError::Malformed("unknown op"))?;
        let key = self.bytes()?;
        let n = self.varint()?;
        // Each argument takes at least one byte: a bound before allocating.
        if n > self.b.len() as u64 {
            return Err(SHORT);
        }
        let mut args = Vec::with_capacity(n as usize);
        for _ in 0..n {
            args.push(self.bytes()?);
        }
        Ok(Record {
            seq,
            term,
            hlc,
            db,
            op,
            key,
            args: args.into(),
        })
    }

    pub(crate) fn done(&self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed("trailing bytes"))
        }
    }
}

/// Decodes the frame at the start of `buf`; returns it and its size in bytes.
pub fn decode_frame(buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    if buf.len() < FRAME_HEADER {
        if buf.iter().all(|&b| b == 0) && !buf.is_empty() {
            return Err(FrameError::Padding);
        }
        return Err(FrameError::Truncated {
            need: FRAME_HEADER,
            have: buf.len(),
        });
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 {
        return Err(if crc == 0 {
            FrameError::Padding
        } else {
            FrameError::Length(0)
        });
    }
    if !(2..=MAX_BODY).contains(&len) {
        return Err(FrameError::Length(len));
    }
    let total = FRAME_HEADER + len;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let body = &buf[FRAME_HEADER..total];
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Crc);
    }
    let mut r = Reader { b: body };
    let version = r.u8()?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let frame = match r.u8()? {
        RECORD => Frame::Record(r.record()?),
        UNIT => {
            let commit = r.u64()?;
            let n = r.varint()?;
            if n > r.b.len() as u64 {
                return Err(SHORT);
            }
            let parts = (0..n).map(|_| r.varint()).collect::<Result<Vec<_>, _>>()?;
            let count = r.varint()?;
            if count > r.b.len() as u64 {
                return Err(SHORT);
            }
            let mut records = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let mut inner = Reader { b: r.bytes()? };
                records.push(inner.record()?);
                inner.done()?;
            }
            Frame::Unit {
                commit,
                parts,
                records,
            }
        }
        HEADER => {
            let mut v = [0u64; 5];
            for x in v.iter_mut() {
                *x = r.varint()?;
            }
            Frame::Header(Header {
                shard: v[0],
                shards: v[1],
                seq: v[2],
                term: v[3],
                commit: v[4],
                hlc: r.u64()?,
            })
        }
        END => Frame::End {
            entries: r.varint()?,
        },
        _ => return Err(FrameError::Malformed("unknown frame kind")),
    };
    r.done()?;
    Ok((frame, total))
}

/// How a run of frames ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte was a whole frame (or zero padding after the last one).
    Clean,
    /// The bytes from `offset` on are not a whole frame and no valid frame
    /// follows: a write cut short by a crash. Safe to cut off.
    Torn { offset: usize, error: FrameError },
    /// The frame at `offset` is bad and valid data follows it: corruption
    /// that cutting would lose acknowledged writes behind.
    Corrupt { offset: usize, error: FrameError },
}

/// Walks the frames of `buf` in order, handing each to `f`, and says how the
/// run ended. `f` may stop the walk early by returning `false`.
pub fn walk<'a>(buf: &'a [u8], mut f: impl FnMut(usize, Frame<'a>) -> bool) -> Tail {
    let mut at = 0;
    while at < buf.len() {
        match decode_frame(&buf[at..]) {
            Ok((frame, n)) => {
                if !f(at, frame) {
                    return Tail::Clean;
                }
                at += n;
            }
            Err(FrameError::Padding) if buf[at..].iter().all(|&b| b == 0) => return Tail::Clean,
            Err(error) => {
                return if valid_frame_after(buf, at + 1) {
                    Tail::Corrupt { offset: at, error }
                } else {
                    Tail::Torn { offset: at, error }
                }
            }
        }
    }
    Tail::Clean
}

/// Whether a valid, non-empty frame starts anywhere at or after `from`. A
/// torn tail has none; a corrupt frame in the middle of a log does.
fn valid_frame_after(buf: &[u8], from: usize) -> bool {
    (from..buf.len().saturating_sub(FRAME_HEADER)).any(|i| decode_frame(&buf[i..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec<'a>(seq: u64, key: &'a [u8], args: Vec<&'a [u8]>) -> Record<'a> {
        Record {
            seq,
            term: 3,
            hlc: Hlc::new(1_700_000_000_000, 7),
            db: 2,
            op: Op::Cmd,
            key,
            args: args.into(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        let r = rec(9, b"", vec![b"SET", b"k", b"v"]);
        encode_record(&mut out, &r);
        let mut body = Vec::new();
        put_unit_record(&mut body, &rec(10, b"a", vec![]));
        put_unit_record(&mut body, &rec(11, b"", vec![b"DEL", b"b"]));
        encode_unit(&mut out, 42, &[0, 3], 2, &body);
        let h = Header {
            shard: 1,
            shards: 4,
            seq: 11,
            term: 3,
            commit: 42,
            hlc: 99,
        };
        encode_header(&mut out, &h);
        encode_end(&mut out, 5);
        let mut frames = Vec::new();
        assert_eq!(
            walk(&out, |_, f| {
                frames.push(f);
                true
            }),
            Tail::Clean
        );
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0], Frame::Record(r));
        match &frames[1] {
            Frame::Unit {
                commit,
                parts,
                records,
            } => {
                assert_eq!((*commit, parts.as_slice()), (42, &[0u64, 3][..]));
                assert_eq!(records[1].args, vec![&b"DEL"[..], b"b"]);
            }
            f => panic!("not a unit: {f:?}"),
        }
        assert_eq!(frames[2], Frame::Header(h));
        assert_eq!(frames[3], Frame::End { entries: 5 });
    }

    #[test]
    fn zero_padding_ends_a_log_cleanly() {
        let mut out = Vec::new();
        encode_record(&mut out, &rec(1, b"", vec![b"X"]));
        out.extend_from_slice(&[0; 4096]);
        let mut n = 0;
        assert_eq!(
            walk(&out, |_, _| {
                n += 1;
                true
            }),
            Tail::Clean
        );
        assert_eq!(n, 1);
    }

    fn log(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let v = format!("value-{i}");
            encode_record(
                &mut out,
                &rec(i as u64 + 1, b"", vec![b"SET", b"key", v.as_bytes()]),
            );
        }
        out
    }

    proptest! {
        /// Any cut of a log is seen as a torn tail after the last whole frame,
        /// never as corruption and never as a frame that was not written.
        #[test]
        fn truncation_is_detected_as_torn(n in 1usize..40, cut in 0usize..2000) {
            let full = log(n);
            let cut = cut % full.len();
            let buf = &full[..cut];
            let mut seen = 0;
            let tail = walk(buf, |_, _| { seen += 1; true });
            let mut whole = 0;
            let mut at = 0;
            while let Ok((_, size)) = decode_frame(&full[at..]) {
                if at + size > cut { break; }
                at += size;
                whole += 1;
            }
            prop_assert_eq!(seen, whole);
            if at == cut {
                prop_assert_eq!(tail, Tail::Clean);
            } else {
                prop_assert!(matches!(tail, Tail::Torn { offset, .. } if offset == at), "{:?}", tail);
            }
        }

        /// Any flipped bit is caught: the walk stops at the damaged frame and
        /// reports it (as corruption when intact frames follow).
        #[test]
        fn flipped_bits_are_detected(n in 2usize..40, pos in 0usize..4000, bit in 0u8..8) {
            let mut buf = log(n);
            let pos = pos % buf.len();
            buf[pos] ^= 1 << bit;
            let mut seen = Vec::new();
            let tail = walk(&buf, |at, _| { seen.push(at); true });
            prop_assert!(tail != Tail::Clean, "flip at {} went unnoticed", pos);
            let offset = match tail { Tail::Torn { offset, .. } | Tail::Corrupt { offset, .. } => offset, Tail::Clean => 0 };
            prop_assert!(offset <= pos);
            prop_assert!(seen.iter().all(|&at| at < offset));
            // Flips before the last frame have an intact frame after them.
            if pos < log(n - 1).len() {
                prop_assert!(matches!(tail, Tail::Corrupt { .. }), "{:?}", tail);
            }
        }
    }
}
