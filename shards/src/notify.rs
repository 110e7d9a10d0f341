//! Keyspace notifications, the shard's side: which classes are on
//! (`notify-keyspace-events`, process-wide as Redis's) and the events a
//! shard produced and the server has not published yet.
//!
//! The shard only collects: publishing is the server's (it knows the
//! subscribers, on every core). With notifications off, producing an event
//! is one relaxed atomic load and a branch.

use std::sync::atomic::{AtomicU32, Ordering};

/// Class bits, Redis's values.
pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 13;
pub const NEW: u32 = 1 << 14;
/// What `A` stands for: every class but key misses and new keys.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

static FLAGS: AtomicU32 = AtomicU32::new(0);

/// The classes on, and whether keyspace and/or keyevent channels are.
#[inline]
pub fn flags() -> u32 {
    FLAGS.load(Ordering::Relaxed)
}

/// Sets `notify-keyspace-events` (already parsed to bits).
pub fn set_flags(bits: u32) {
    FLAGS.store(bits, Ordering::Relaxed);
}

/// Whether an event of `class` would be published: the class is on and at
/// least one of the two channel kinds is.
#[inline]
pub fn wanted(class: u32) -> bool {
    let f = flags();
    f & class != 0 && f & (KEYSPACE | KEYEVENT) != 0
}

/// Parses class letters as Redis does; `None` on an unknown letter.
pub fn parse(classes: &[u8]) -> Option<u32> {
    let mut bits = 0;
    for &c in classes {
        bits |= match c {
            b'A' => ALL,
            b'g' => GENERIC,
            b'$' => STRING,
            b'l' => LIST,
            b's' => SET,
            b'h' => HASH,
            b'z' => ZSET,
            b'x' => EXPIRED,
            b'e' => EVICTED,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b't' => STREAM,
            b'm' => KEY_MISS,
            b'd' => MODULE,
            b'n' => NEW,
            _ => return None,
        };
    }
    Some(bits)
}

/// One event: `event` happened to `key` in database `db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub db: usize,
    pub event: &'static str,
    pub key: Box<[u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_letters() {
        assert_eq!(parse(b""), Some(0));
        assert_eq!(parse(b"KEA"), Some(KEYSPACE | KEYEVENT | ALL));
        assert_eq!(parse(b"Kx"), Some(KEYSPACE | EXPIRED));
        assert_eq!(parse(b"An").map(|b| b & NEW), Some(NEW));
        assert_eq!(parse(b"Q"), None);
    }
}
