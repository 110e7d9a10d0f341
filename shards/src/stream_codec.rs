//! A stream's body in an encoded entry (see [`crate::entry_codec`]).
//!
//! # Layout
//! `count | last_id | max_deleted | entries_added | entry... | groups`:
//! - an id is `ms: varint | seq: varint`; an entry's id is `ms - previous
//!   ms | seq`, so a stream's ids cost a byte or two each;
//! - an entry is `id | pairs: varint | (field, value)...`;
//! - `groups` is `count | (name, last_id, entries_read + 1 (0: unknown),
//!   consumers: count | (name, seen_ms)..., pending: count | (id,
//!   consumer index, delivery_ms, deliveries)...)...`.
//!
//! Decoding appends the entries again, so a loaded stream has full blocks
//! (its block boundaries are not saved: an approximate trim is recorded as
//! the exact trim it made, so nothing depends on them). Every count is
//! checked against the bytes left, ids must ascend, names must be unique and
//! a pending entry must name a listed consumer, else the entry is refused.

use crate::record::{put_bytes, put_varint, FrameError, Reader};
use crate::stream::{Group, Stream, StreamId};

fn bad(why: &'static str) -> FrameError {
    FrameError::Malformed(why)
}

fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_varint(out, id.ms);
    put_varint(out, id.seq);
}

fn get_id(r: &mut Reader<'_>) -> Result<StreamId, FrameError> {
    Ok(StreamId::new(r.varint()?, r.varint()?))
}

/// A count that cannot exceed the bytes left (each item takes one or more).
fn count(r: &mut Reader<'_>) -> Result<u64, FrameError> {
    let n = r.varint()?;
    if n > r.b.len() as u64 {
        return Err(bad("count exceeds the bytes left"));
    }
    Ok(n)
}

pub(crate) fn encode(out: &mut Vec<u8>, s: &Stream) {
    put_varint(out, s.len());
    put_id(out, s.last_id());
    put_id(out, s.max_deleted());
    put_varint(out, s.entries_added());
    let mut prev_ms = 0;
    for (id, fields) in s.range(StreamId::MIN, StreamId::MAX, 0) {
        put_varint(out, id.ms - prev_ms);
        put_varint(out, id.seq);
        prev_ms = id.ms;
        put_varint(out, fields.len() as u64);
        for (f, v) in fields {
            put_bytes(out, f);
            put_bytes(out, v);
        }
    }
    put_varint(out, s.groups().len() as u64);
    for (name, g) in s.groups() {
        put_bytes(out, name);
        put_id(out, g.last_id);
        put_varint(out, g.entries_read.map_or(0, |n| n + 1));
        put_varint(out, g.consumers().len() as u64);
        let mut index = std::collections::HashMap::new();
        for (i, (c, st)) in g.consumers().iter().enumerate() {
            put_bytes(out, c);
            put_varint(out, st.seen_ms);
            index.insert(&c[..], i as u64);
        }
        put_varint(out, g.pel().len() as u64);
        for (id, p) in g.pel() {
            put_id(out, *id);
            put_varint(out, index.get(&p.consumer[..]).copied().unwrap_or(0));
            put_varint(out, p.delivery_ms);
            put_varint(out, p.deliveries);
        }
    }
}

pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Stream, FrameError> {
    let n = count(r)?;
    let last_id = get_id(r)?;
    let max_deleted = get_id(r)?;
    let entries_added = r.varint()?;
    let mut s = Stream::default();
    let mut prev: Option<StreamId> = None;
    let mut fields: Vec<&[u8]> = Vec::new();
    for _ in 0..n {
        let ms = prev
            .map_or(0, |p| p.ms)
            .checked_add(r.varint()?)
            .ok_or(bad("stream id overflows"))?;
        let id = StreamId::new(ms, r.varint()?);
        if prev.is_some_and(|p| id <= p) || id.is_zero() {
            return Err(bad("stream ids out of order"));
        }
        let pairs = count(r)?;
        if pairs == 0 {
            return Err(bad("stream entry without fields"));
        }
        fields.clear();
        for _ in 0..pairs * 2 {
            fields.push(r.bytes()?);
        }
        s.append(id, &fields);
        prev = Some(id);
    }
    if prev.is_some_and(|p| p > last_id) || entries_added < n {
        return Err(bad("stream counters behind its entries"));
    }
    s.set_meta(last_id, entries_added, max_deleted);
    let groups = count(r)?;
    for _ in 0..groups {
        let name = r.bytes()?;
        let last = get_id(r)?;
        let read = r.varint()?;
        let mut g = Group::new(last, read.checked_sub(1));
        let consumers = count(r)?;
        let mut names = Vec::with_capacity(consumers as usize);
        for _ in 0..consumers {
            let c = r.bytes()?;
            let seen = r.varint()?;
            if !g.create_consumer(c, seen) {
                return Err(bad("duplicate consumer"));
            }
            names.push(c);
        }
        let pending = count(r)?;
        for _ in 0..pending {
            let id = get_id(r)?;
            let c = *names
                .get(r.varint()? as usize)
                .ok_or(bad("pending entry of no consumer"))?;
            let (at, times) = (r.varint()?, r.varint()?);
            if g.pel().contains_key(&id) {
                return Err(bad("duplicate pending entry"));
            }
            g.assign(id, c, at, times);
        }
        if !s.create_group(name, g) {
            return Err(bad("duplicate consumer group"));
        }
    }
    Ok(s)
}

/// Everything a snapshot must keep of a stream, as text (tests).
#[cfg(test)]
pub(crate) fn canon(s: &Stream) -> String {
    let mut out = format!(
        "len={} last={} maxdel={} added={} first={};",
        s.len(),
        s.last_id(),
        s.max_deleted(),
        s.entries_added(),
        s.first_id()
    );
    for (id, fields) in s.range(StreamId::MIN, StreamId::MAX, 0) {
        out.push_str(&format!("{id}{fields:?};"));
    }
    for (name, g) in s.groups() {
        out.push_str(&format!(
            "group {name:?} {} {:?} {:?} {:?};",
            g.last_id,
            g.entries_read,
            g.consumers(),
            g.pel()
        ));
    }
    out
}

/// Random streams for the codec and snapshot property tests: entries,
/// deletions, groups with consumers and pending entries.
#[cfg(test)]
pub(crate) fn arbitrary(n: usize) -> impl proptest::strategy::Strategy<Value = Stream> {
    use proptest::prelude::*;
    (
        proptest::collection::vec(
            (
                1u64..3,
                0u64..3,
                proptest::collection::vec(
                    (
                        proptest::collection::vec(b'a'..b'd', 0..3),
                        any::<Vec<u8>>(),
                    ),
                    1..4,
                ),
            ),
            0..n,
        ),
        proptest::collection::vec(any::<u16>(), 0..4),
        proptest::collection::vec(
            (
                proptest::collection::vec(b'g'..b'i', 1..3),
                proptest::collection::vec((any::<u16>(), 0u8..3, any::<u32>(), 1u64..5), 0..6),
                any::<Option<u16>>(),
            ),
            0..3,
        ),
        0u64..5,
    )
        .prop_map(|(entries, dels, groups, extra)| {
            let mut s = Stream::default();
            let mut id = StreamId::new(1, 0);
            let mut ids = Vec::new();
            for (dms, seq, fields) in entries {
                id = StreamId::new(id.ms + dms, if dms == 0 { id.seq + 1 } else { seq });
                let flat: Vec<&[u8]> = fields.iter().flat_map(|(f, v)| [&f[..], &v[..]]).collect();
                s.append(id, &flat);
                ids.push(id);
            }
            let mut max_deleted = StreamId::MIN;
            for d in dels {
                if !ids.is_empty() {
                    let victim = ids[d as usize % ids.len()];
                    if s.delete(victim) {
                        max_deleted = max_deleted.max(victim);
                    }
                }
            }
            let last = StreamId::new(s.last_id().ms + extra, s.last_id().seq);
            s.set_meta(last, s.entries_added() + extra, max_deleted);
            for (name, pel, read) in groups {
                let mut g = Group::new(last, read.map(u64::from));
                for (pick, consumer, at, times) in pel {
                    let pid = if ids.is_empty() {
                        StreamId::new(pick as u64, 1)
                    } else {
                        ids[pick as usize % ids.len()]
                    };
                    g.assign(pid, &[b'c', b'0' + consumer], at as u64, times);
                }
                g.create_consumer(b"idle", 7);
                s.create_group(&name, g);
            }
            s
        })
}
