//! Byte-packed records for small collections, in the spirit of Redis's
//! listpack: a small hash or sorted set is one `Vec<u8>` of records instead
//! of a table of separately allocated nodes, which is what keeps keel's
//! memory near Redis's although every field carries an HLC.
//!
//! A string is `varint length | bytes`; an HLC is a varint relative to the
//! buffer's base; a score is a varint when integral, else 8 bytes. Buffers are only ever written by this crate, so a read past a
//! record's end is a bug here, never a client's doing.

use crate::hlc::Hlc;

/// Up to this many entries, and entries up to this many bytes, stay packed
/// until CONFIG SET says otherwise (Redis's `hash-max-listpack-entries` /
/// `-value` and the zset twins; keel's entries default is below Redis's 512,
/// as lookups in a packed buffer are linear scans).
pub const MAX_ENTRIES: usize = 128;
pub const MAX_VALUE: usize = 64;

/// The most entries a packed buffer can hold: its record count is one byte.
pub const ENTRIES_CEILING: usize = 255;

/// The packing thresholds in force: keel's defaults until CONFIG SET sets
/// one, then what it set (entries never above [`ENTRIES_CEILING`]).
/// Process-wide atomics read with relaxed loads: a collection converts on
/// the first write after a change, as in Redis, and never converts back.
pub mod limits {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::{ENTRIES_CEILING, MAX_ENTRIES, MAX_VALUE};

    static HASH_ENTRIES: AtomicUsize = AtomicUsize::new(MAX_ENTRIES);
    static HASH_VALUE: AtomicUsize = AtomicUsize::new(MAX_VALUE);
    static ZSET_ENTRIES: AtomicUsize = AtomicUsize::new(MAX_ENTRIES);
    static ZSET_VALUE: AtomicUsize = AtomicUsize::new(MAX_VALUE);

    /// (entries, value bytes) a packed hash may hold.
    pub fn hash() -> (usize, usize) {
        (HASH_ENTRIES.load(Relaxed), HASH_VALUE.load(Relaxed))
    }

    /// (entries, member bytes) a packed sorted set may hold.
    pub fn zset() -> (usize, usize) {
        (ZSET_ENTRIES.load(Relaxed), ZSET_VALUE.load(Relaxed))
    }

    fn entries(n: u64) -> usize {
        n.min(ENTRIES_CEILING as u64) as usize
    }

    fn bytes(n: u64) -> usize {
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    pub fn set_hash(max_entries: u64, max_value: u64) {
        HASH_ENTRIES.store(entries(max_entries), Relaxed);
        HASH_VALUE.store(bytes(max_value), Relaxed);
    }

    pub fn set_zset(max_entries: u64, max_value: u64) {
        ZSET_ENTRIES.store(entries(max_entries), Relaxed);
        ZSET_VALUE.store(bytes(max_value), Relaxed);
    }
}

/// A non-empty packed buffer starts with a header: its record count in one
/// byte (it never exceeds [`ENTRIES_CEILING`]), then the base HLC that record
/// times are stored relative to, as varints: the fields of one write cost
/// one byte of time each, not eight. An empty buffer has no header.
pub const HEADER: usize = 9;

pub fn count(buf: &[u8]) -> usize {
    buf.first().map_or(0, |&n| n as usize)
}

/// The time record times are relative to.
pub fn base(buf: &[u8]) -> Hlc {
    if buf.len() < HEADER {
        return Hlc::ZERO;
    }
    let mut pos = 1;
    Hlc::from_raw(get_u64(buf, &mut pos))
}

/// Where the first record starts.
pub fn first_record(buf: &[u8]) -> usize {
    buf.len().min(HEADER)
}

/// Whether a record written at `hlc` can be stored relative to the base;
/// when not, the caller rebuilds the buffer on an older base.
pub fn fits_base(buf: &[u8], hlc: Hlc) -> bool {
    buf.is_empty() || hlc >= base(buf)
}

/// The base a new record at `hlc` is encoded against.
pub fn base_for(buf: &[u8], hlc: Hlc) -> Hlc {
    if buf.is_empty() {
        hlc
    } else {
        base(buf)
    }
}

/// A header for a buffer of `n` records on `base`.
pub fn header(n: usize, base: Hlc) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.push(n as u8);
    put_u64(&mut h, base.raw());
    h
}

/// Counts one more record (call before appending or splicing it in); an
/// empty buffer gets its header, on `base`.
pub fn add_one(buf: &mut Vec<u8>, base: Hlc) {
    match buf.first_mut() {
        Some(n) => *n += 1,
        None => *buf = header(1, base),
    }
}

/// Counts one record fewer (call after draining it); an emptied buffer
/// frees its memory.
pub fn remove_one(buf: &mut Vec<u8>) {
    if let Some(n) = buf.first_mut() {
        *n -= 1;
        if *n == 0 {
            *buf = Vec::new();
            return;
        }
    }
    if buf.capacity() > 2 * buf.len() + 64 {
        buf.shrink_to_fit();
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub fn get_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let (mut n, mut shift) = (0u64, 0);
    loop {
        let b = buf[*pos];
        *pos += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let n = get_varint(buf, pos) as usize;
    let s = &buf[*pos..*pos + n];
    *pos += n;
    s
}

pub fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

pub fn get_u64(buf: &[u8], pos: &mut usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[*pos..*pos + 8]);
    *pos += 8;
    u64::from_le_bytes(b)
}

/// A record's time, relative to the buffer's base (`hlc >= base`).
pub fn put_hlc(out: &mut Vec<u8>, base: Hlc, hlc: Hlc) {
    put_varint(out, hlc.raw() - base.raw());
}

pub fn get_hlc(buf: &[u8], pos: &mut usize, base: Hlc) -> Hlc {
    Hlc::from_raw(base.raw() + get_varint(buf, pos))
}

/// Integral scores below 2^53 as a zigzag varint (an even first varint),
/// any other double as a marker and its 8 bytes, as listpack stores small
/// integers in a byte or two.
pub fn put_score(out: &mut Vec<u8>, score: f64) {
    let exact = score.fract() == 0.0 && score.abs() < (1u64 << 53) as f64;
    if exact && !(score == 0.0 && score.is_sign_negative()) {
        let i = score as i64;
        let zigzag = ((i << 1) ^ (i >> 63)) as u64;
        put_varint(out, zigzag << 1);
    } else {
        out.push(1);
        put_u64(out, score.to_bits());
    }
}

pub fn get_score(buf: &[u8], pos: &mut usize) -> f64 {
    let v = get_varint(buf, pos);
    if v & 1 == 1 {
        return f64::from_bits(get_u64(buf, pos));
    }
    let z = v >> 1;
    (((z >> 1) as i64) ^ -((z & 1) as i64)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCORES: [f64; 10] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        1.5,
        1e300,
        -9007199254740991.0,
        9007199254740992.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];

    #[test]
    fn round_trips() {
        let mut buf = Vec::new();
        let long = vec![7u8; 300];
        put_bytes(&mut buf, b"abc");
        put_u64(&mut buf, u64::MAX - 3);
        put_bytes(&mut buf, &long);
        put_bytes(&mut buf, b"");
        for sc in SCORES {
            put_score(&mut buf, sc);
        }
        put_hlc(&mut buf, Hlc::new(5, 0), Hlc::new(900, 3));
        let mut pos = 0;
        assert_eq!(get_bytes(&buf, &mut pos), b"abc");
        assert_eq!(get_u64(&buf, &mut pos), u64::MAX - 3);
        assert_eq!(get_bytes(&buf, &mut pos), &long[..]);
        assert_eq!(get_bytes(&buf, &mut pos), b"");
        for sc in SCORES {
            let got = get_score(&buf, &mut pos);
            assert_eq!(got.to_bits(), sc.to_bits(), "{sc}");
        }
        assert_eq!(get_hlc(&buf, &mut pos, Hlc::new(5, 0)), Hlc::new(900, 3));
        assert_eq!(pos, buf.len());
    }
}
