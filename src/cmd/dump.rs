//! DUMP and RESTORE: a key's value as an opaque, versioned, checksummed
//! payload, and back.
//!
//! # Payload layout (keel's own, format 1)
//! ```text
//! "KEEL" | format: u8 = 1 | entry | crc32: u32 LE
//! ```
//! `entry` is the key's entry in keel's snapshot encoding
//! (`keel_shards::entry_codec`: type, expiry, HLC time, body), written with
//! no expiry: DUMP carries no TTL, RESTORE takes one. The CRC-32 covers
//! every byte before it. A payload of another format version, one whose
//! checksum does not match (a flipped or missing byte), or a truncated one
//! is refused with Redis's "DUMP payload version or checksum are wrong";
//! one whose checksum matches but does not decode, with "Bad data format".
//! Decoding checks every length against the bytes left, so no payload can
//! make RESTORE panic or allocate beyond its size.
//!
//! Redis's own payloads (an RDB object, its RDB version and a CRC-64) are
//! not accepted: they fail the version check. DUMP/RESTORE move keys
//! between keel servers; to move data from Redis, replicate or load it.
//!
//! RESTORE is recorded as the entry written whole (`Op::Put`, absolute
//! expiry included), so replay and replicas never decode a payload again.
//! The restored value's fields and members take the time of the RESTORE,
//! not those of the server that dumped them (its clock is not ours).

use keel_shards::entry_codec::{decode_entry, encode_entry};
use keel_shards::journal::Rewrite;
use keel_shards::record::Op;
use keel_shards::{Entry, Hash, Hlc, Set, Shard, Value, ZSet};

use super::error::{CmdError, CmdResult};
use super::numbers::int_arg;
use super::{is, Ctx};
use crate::resp::reply::Reply;

const MAGIC: &[u8; 4] = b"KEEL";
/// The payload format this build writes and reads.
pub const FORMAT: u8 = 1;
const HEADER: usize = MAGIC.len() + 1;
const TRAILER: usize = 4;

/// The payload of one entry (its expiry left out).
pub fn payload(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    let bare = Entry {
        value: entry.value.clone(),
        expire_at: 0,
        access: 0,
        hlc: entry.hlc,
    };
    encode_entry(&mut out, &bare);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Wrong magic or format version, bad checksum, too short.
    VersionOrChecksum,
    /// The checksum matched but the entry does not decode.
    BadData,
}

/// The value a payload holds.
pub fn parse_payload(p: &[u8]) -> Result<Value, Refused> {
    if p.len() < HEADER + TRAILER || &p[..MAGIC.len()] != MAGIC || p[MAGIC.len()] != FORMAT {
        return Err(Refused::VersionOrChecksum);
    }
    let (body, crc) = p.split_at(p.len() - TRAILER);
    let mut want = [0u8; TRAILER];
    want.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_le_bytes(want) {
        return Err(Refused::VersionOrChecksum);
    }
    decode_entry(&body[HEADER..])
        .map(|e| e.value)
        .map_err(|_| Refused::BadData)
}

/// `v` with every field and member stamped with `hlc` (the RESTORE's time).
fn restamp(v: Value, hlc: Hlc) -> Value {
    match v {
        Value::Hash(h) => {
            let mut out = Hash::default();
            for (f, x) in h.iter() {
                out.insert(f, x.value.to_vec(), hlc);
            }
            Value::Hash(out)
        }
        Value::Set(s) => {
            let mut out = Set::default();
            for (m, _) in s.iter() {
                out.insert(m, hlc);
            }
            Value::Set(out)
        }
        Value::ZSet(z) => {
            let mut out = ZSet::default();
            for (m, score) in z.iter() {
                out.insert(m, score, hlc);
            }
            Value::ZSet(out)
        }
        other => other,
    }
}

pub fn dump(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(match s.get(ctx.db, a[1], ctx.now_ms) {
        Some(e) => Reply::Bulk(payload(&e.to_entry())),
        None => Reply::Nil,
    })
}

/// RESTORE's options after the payload.
#[derive(Default)]
struct Opts {
    replace: bool,
    absttl: bool,
    idle: Option<i64>,
    freq: Option<i64>,
}

fn options(a: &[&[u8]]) -> Result<Opts, CmdError> {
    let mut o = Opts::default();
    let mut j = 4;
    while j < a.len() {
        let more = a.len() - j - 1;
        if is(a[j], "replace") {
            o.replace = true;
        } else if is(a[j], "absttl") {
            o.absttl = true;
        } else if is(a[j], "idletime") && more >= 1 && o.freq.is_none() {
            let n = int_arg(a[j + 1])?;
            if n < 0 {
                return Err(CmdError::other("Invalid IDLETIME value, must be >= 0"));
            }
            o.idle = Some(n);
            j += 1;
        } else if is(a[j], "freq") && more >= 1 && o.idle.is_none() {
            let n = int_arg(a[j + 1])?;
            if !(0..=255).contains(&n) {
                return Err(CmdError::other(
                    "Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            // Accepted and checked as Redis does; keel keeps no LFU counter
            // (Redis too ignores it unless an LFU policy is set).
            o.freq = Some(n);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

pub fn restore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (db, now, key) = (ctx.db, ctx.now_ms, a[1]);
    let o = options(a)?;
    if !o.replace && s.get(db, key, now).is_some() {
        return Err(CmdError::Raw(
            "BUSYKEY Target key name already exists.".into(),
        ));
    }
    let ttl = int_arg(a[2])?;
    if ttl < 0 {
        return Err(CmdError::other("Invalid TTL value, must be >= 0"));
    }
    let value = match parse_payload(a[3]) {
        Ok(v) => v,
        Err(Refused::VersionOrChecksum) => {
            return Err(CmdError::other(
                "DUMP payload version or checksum are wrong",
            ))
        }
        Err(Refused::BadData) => return Err(CmdError::other("Bad data format")),
    };
    let expire_at = match (ttl, o.absttl) {
        (0, _) => 0,
        (t, true) => t as u64,
        (t, false) => (t as u64).saturating_add(now),
    };
    if expire_at != 0 && expire_at <= now {
        // Already expired: nothing is created; REPLACE still deletes.
        if o.replace && s.delete(db, key, now) {
            s.rewrite(Rewrite::cmd(&[b"DEL", key]));
        }
        return Ok(Reply::Ok);
    }
    let hlc = s.hlc_now(now);
    let mut entry = Entry::new(restamp(value, hlc), expire_at);
    entry.hlc = hlc;
    entry.access = match o.idle {
        Some(idle) => (now / 1000).saturating_sub(idle.max(0) as u64) as u32,
        None => (now / 1000) as u32,
    };
    let record = s.journaling().then(|| {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, &entry);
        bytes
    });
    s.restore(db, key, entry);
    s.wrote();
    if let Some(bytes) = record {
        s.rewrite(Rewrite {
            op: Op::Put,
            key: key.to_vec(),
            args: vec![bytes],
        });
    }
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_shards::{Digest, List};

    fn samples() -> Vec<Value> {
        let t = Hlc::from_raw(5);
        let mut h = Hash::default();
        h.insert(b"f", b"v".to_vec(), t);
        h.insert(b"", b"\x00\xff".to_vec(), t);
        let mut set = Set::default();
        set.insert(b"a", t);
        set.insert(b"12", t);
        let mut z = ZSet::default();
        z.insert(b"m", 1.5, t);
        z.insert(b"n", -0.25, t);
        let mut l = List::default();
        l.push_back(b"x".to_vec());
        l.push_back(Vec::new());
        vec![
            Value::Str(b"hello\x00".to_vec()),
            Value::Hash(h),
            Value::Set(set),
            Value::ZSet(z),
            Value::List(l),
        ]
    }

    #[test]
    fn every_type_round_trips() {
        for v in samples() {
            let p = payload(&Entry::new(v.clone(), 123));
            let back = parse_payload(&p).expect("own payload");
            // Same type, elements and scores: the same DEBUG DIGEST.
            let digest = |v: Value| Digest::of_entry(0, b"k", &Entry::new(v, 0));
            assert_eq!(digest(back), digest(v));
        }
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_refused() {
        for v in samples() {
            let p = payload(&Entry::new(v, 0));
            for i in 0..p.len() {
                for bit in 0..8 {
                    let mut q = p.clone();
                    q[i] ^= 1 << bit;
                    assert!(parse_payload(&q).is_err(), "flip at {i}");
                }
            }
            for n in 0..p.len() {
                assert!(parse_payload(&p[..n]).is_err(), "cut at {n}");
            }
        }
    }

    #[test]
    fn a_matching_checksum_over_bad_data_is_bad_data() {
        let mut p = MAGIC.to_vec();
        p.push(FORMAT);
        p.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(parse_payload(&p).err(), Some(Refused::BadData));
    }
}
