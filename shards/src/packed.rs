//! Byte-packed records for small collections, in the spirit of Redis's
//! listpack: a small hash or sorted set is one `Vec<u8>` of records instead
//! of a table of separately allocated nodes, which is what keeps keel's
//! memory near Redis's although every field carries an 8-byte HLC.
//!
//! A string is `varint length | bytes`; numbers are fixed 8-byte little
//! endian. Buffers are only ever written by this crate, so a read past a
//! record's end is a bug here, never a client's doing.

/// Up to this many entries, and entries up to this many bytes, stay packed
/// (Redis's `hash-max-listpack-entries` / `-value` and the zset twins).
pub const MAX_ENTRIES: usize = 128;
pub const MAX_VALUE: usize = 64;

/// A packed buffer starts with its record count in one byte (it never
/// exceeds [`MAX_ENTRIES`]); an empty buffer holds no records and no count.
pub fn count(buf: &[u8]) -> usize {
    buf.first().map_or(0, |&n| n as usize)
}

/// Where the first record starts.
pub fn first_record(buf: &[u8]) -> usize {
    buf.len().min(1)
}

/// Counts one more record (call before appending or splicing it in).
pub fn add_one(buf: &mut Vec<u8>) {
    match buf.first_mut() {
        Some(n) => *n += 1,
        None => buf.push(1),
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

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let mut n = b.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(b);
}

pub fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let b = buf[*pos];
        *pos += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let s = &buf[*pos..*pos + n];
    *pos += n;
    s
}

pub fn get_u64(buf: &[u8], pos: &mut usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[*pos..*pos + 8]);
    *pos += 8;
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut buf = Vec::new();
        let long = vec![7u8; 300];
        put_bytes(&mut buf, b"abc");
        put_u64(&mut buf, u64::MAX - 3);
        put_bytes(&mut buf, &long);
        put_bytes(&mut buf, b"");
        let mut pos = 0;
        assert_eq!(get_bytes(&buf, &mut pos), b"abc");
        assert_eq!(get_u64(&buf, &mut pos), u64::MAX - 3);
        assert_eq!(get_bytes(&buf, &mut pos), &long[..]);
        assert_eq!(get_bytes(&buf, &mut pos), b"");
        assert_eq!(pos, buf.len());
    }
}
