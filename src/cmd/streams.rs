//! Stream commands: XADD XRANGE XREVRANGE XLEN XDEL XTRIM XREAD XSETID.
//! Consumer groups are in `stream_groups`.
//!
//! # Records
//! A write must replay to the same state. XADD with `*` or `ms-*` is
//! recorded with the id it chose; an approximate (`~`) trim, which depends
//! on how entries fall into blocks, is recorded as the exact `MAXLEN =` it
//! came to (trimming only ever removes the oldest entries, so the length
//! left says exactly which). Everything else is deterministic as sent.

use keel_shards::journal::Rewrite;
use keel_shards::stream::{EntryFields, Trim};
use keel_shards::{Shard, Stream, StreamId};

use super::error::{CmdError, CmdResult};
use super::{is, read, write, Ctx};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

pub const INVALID_ID: &str = "Invalid stream ID specified as stream command argument";

/// Redis's `string2ull`: decimal digits (an optional `+`), no sign.
fn parse_u64(b: &[u8]) -> Option<u64> {
    let digits = b.strip_prefix(b"+").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What an XADD id asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdReq {
    /// `*`
    Auto,
    /// `ms-*`
    Ms(u64),
    Exact(StreamId),
}

/// Parses `ms-seq`, `ms` (the seq then `missing_seq`), and unless
/// `strict`, `-` and `+`; `ms-*` only when `star_seq`.
fn parse_any(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    star_seq: bool,
) -> Result<IdReq, CmdError> {
    let invalid = || CmdError::other(INVALID_ID);
    if arg.len() > 127 {
        return Err(invalid());
    }
    if arg == b"-" || arg == b"+" {
        if strict {
            return Err(invalid());
        }
        return Ok(IdReq::Exact(if arg == b"-" {
            StreamId::MIN
        } else {
            StreamId::MAX
        }));
    }
    match arg.iter().position(|&c| c == b'-') {
        None => {
            let ms = parse_u64(arg).ok_or_else(invalid)?;
            Ok(IdReq::Exact(StreamId::new(ms, missing_seq)))
        }
        Some(dash) => {
            let ms = parse_u64(&arg[..dash]).ok_or_else(invalid)?;
            let rest = &arg[dash + 1..];
            if star_seq && rest == b"*" {
                return Ok(IdReq::Ms(ms));
            }
            let seq = parse_u64(rest).ok_or_else(invalid)?;
            Ok(IdReq::Exact(StreamId::new(ms, seq)))
        }
    }
}

/// An id where `-` and `+` are allowed.
pub fn parse_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    match parse_any(arg, missing_seq, false, false)? {
        IdReq::Exact(id) => Ok(id),
        _ => Err(CmdError::other(INVALID_ID)),
    }
}

/// An id where `-` and `+` are refused.
pub fn parse_strict_id(arg: &[u8]) -> Result<StreamId, CmdError> {
    match parse_any(arg, 0, true, false)? {
        IdReq::Exact(id) => Ok(id),
        _ => Err(CmdError::other(INVALID_ID)),
    }
}

/// A range bound: an id, `-`/`+`, or `(id` (exclusive, strict).
fn parse_bound(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CmdError> {
    if arg.len() > 1 && arg[0] == b'(' {
        let id = match parse_any(&arg[1..], missing_seq, true, false)? {
            IdReq::Exact(id) => id,
            _ => return Err(CmdError::other(INVALID_ID)),
        };
        return Ok((id, true));
    }
    Ok((parse_id(arg, missing_seq)?, false))
}

/// `ms-seq`, written digit by digit (every entry of a reply has one).
pub fn id_bytes(id: StreamId) -> Vec<u8> {
    fn digits(out: &mut Vec<u8>, mut n: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&buf[i..]);
    }
    let mut out = Vec::with_capacity(24);
    digits(&mut out, id.ms);
    out.push(b'-');
    digits(&mut out, id.seq);
    out
}

pub fn id_reply(id: StreamId) -> Reply {
    Reply::Bulk(id_bytes(id))
}

/// `[id, [field, value, ...]]`.
pub fn entry_reply((id, fields): &EntryFields<'_>) -> Reply {
    Reply::Array(vec![
        id_reply(*id),
        Reply::Array(
            fields
                .iter()
                .flat_map(|(f, v)| [Reply::bulk_copy(f), Reply::bulk_copy(v)])
                .collect(),
        ),
    ])
}

pub fn entries_reply(entries: &[EntryFields<'_>]) -> Reply {
    Reply::Array(entries.iter().map(entry_reply).collect())
}

/// A COUNT argument: negative counts read as 0.
fn count_arg(arg: &[u8]) -> Result<i64, CmdError> {
    Ok(int_arg(arg)?.max(0))
}

// ------------------------------------------------------------------ XADD

/// The trimming options of XADD and XTRIM.
#[derive(Clone, Copy, Debug, Default)]
struct TrimArgs {
    how: Option<Trim>,
    approx: bool,
    limit: u64,
}

/// Parses XADD's or XTRIM's options from `a[2]` in Redis's order; for
/// XADD also NOMKSTREAM and the id. Returns where the fields start.
fn trim_args(a: &[&[u8]], xadd: bool) -> Result<(TrimArgs, bool, Option<IdReq>, usize), CmdError> {
    let mut t = TrimArgs::default();
    let (mut nomk, mut id, mut limit_given) = (false, None, false);
    let exclusive = || {
        CmdError::other(
            "syntax error, MAXLEN and MINID options at the same time are not compatible",
        )
    };
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = a[i];
        if xadd && opt == b"*" {
            id = Some(IdReq::Auto);
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if t.how.is_some() {
                return Err(exclusive());
            }
            t.approx = false;
            let next = a[i + 1];
            if more >= 2 && next == b"~" {
                t.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            if is(opt, "maxlen") {
                let n = int_arg(a[i + 1])?;
                if n < 0 {
                    return Err(CmdError::other("The MAXLEN argument must be >= 0."));
                }
                t.how = Some(Trim::MaxLen(n as u64));
            } else {
                t.how = Some(Trim::MinId(parse_strict_id(a[i + 1])?));
            }
            i += 1;
        } else if is(opt, "limit") && more > 0 {
            let n = int_arg(a[i + 1])?;
            if n < 0 {
                return Err(CmdError::other("The LIMIT argument must be >= 0."));
            }
            t.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            nomk = true;
        } else if xadd {
            id = Some(parse_any(opt, 0, true, true)?);
            break;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if t.limit != 0 && t.how.is_none() {
        return Err(CmdError::other(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.how.is_none() {
        return Err(CmdError::other(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !t.approx {
            return Err(CmdError::other(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        t.limit = keel_shards::stream::limits::approx_trim_limit();
    } else {
        t.limit = 0;
    }
    Ok((t, nomk, id, i + 1))
}

/// Where an XADD's id argument is and what it asks for (`None` when the
/// options do not parse), for the merge rules.
pub fn xadd_id(a: &[&[u8]]) -> Option<(usize, IdReq)> {
    let (_, _, req, field_at) = trim_args(a, true).ok()?;
    Some((field_at - 1, req?))
}

/// The id XADD gives an entry after `last` at time `now`.
fn new_id(last: StreamId, now: u64, req: IdReq) -> Result<StreamId, CmdError> {
    let smaller = || {
        CmdError::other(
            "The ID specified in XADD is equal or smaller than the target stream top item",
        )
    };
    let id = match req {
        IdReq::Auto if now > last.ms => StreamId::new(now, 0),
        IdReq::Auto => last.next().ok_or_else(smaller)?,
        IdReq::Ms(ms) if ms == last.ms => {
            if last.seq == u64::MAX {
                return Err(smaller());
            }
            StreamId::new(ms, last.seq + 1)
        }
        IdReq::Ms(ms) => StreamId::new(ms, 0),
        IdReq::Exact(id) => id,
    };
    if id <= last {
        return Err(smaller());
    }
    Ok(id)
}

pub fn xadd(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (t, nomk, req, field_at) = trim_args(a, true)?;
    if a.len() < field_at + 2 || !(a.len() - field_at).is_multiple_of(2) {
        return Err(CmdError::Arity("xadd".into()));
    }
    let req = req.unwrap_or(IdReq::Auto);
    if req == IdReq::Exact(StreamId::MIN) {
        return Err(CmdError::other(
            "The ID specified in XADD must be greater than 0-0",
        ));
    }
    let fields = &a[field_at..];
    let r = write(s, ctx, a[1], !nomk, |x: &mut Stream, _| {
        if x.last_id() == StreamId::MAX {
            return Err(CmdError::other(
                "The stream has exhausted the last possible ID, unable to add more items",
            ));
        }
        let id = new_id(x.last_id(), ctx.now_ms, req)?;
        x.append(id, fields);
        if let Some(how) = t.how {
            x.trim(how, t.approx, t.limit);
        }
        Ok(((id, x.len()), true))
    })?;
    let Some((id, len)) = r else {
        return Ok(Reply::Nil);
    };
    if !matches!(req, IdReq::Exact(_)) || t.approx {
        // Recorded with the id it chose and the exact trim it made.
        let idb = id_bytes(id);
        let lenb = len.to_string().into_bytes();
        let mut argv: Vec<&[u8]> = vec![b"XADD", a[1]];
        if t.how.is_some() {
            argv.extend([&b"MAXLEN"[..], b"=", &lenb]);
        }
        argv.push(&idb);
        argv.extend_from_slice(fields);
        s.rewrite(Rewrite::cmd(&argv));
    }
    Ok(id_reply(id))
}

pub fn xtrim(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (t, _, _, _) = trim_args(a, false)?;
    let Some(how) = t.how else {
        return Err(CmdError::Syntax);
    };
    let r = write(s, ctx, a[1], false, |x: &mut Stream, _| {
        let n = x.trim(how, t.approx, t.limit);
        Ok(((n, x.len()), n > 0))
    })?;
    let Some((n, len)) = r else {
        return Ok(Reply::Int(0));
    };
    if t.approx && n > 0 {
        let lenb = len.to_string().into_bytes();
        s.rewrite(Rewrite::cmd(&[&b"XTRIM"[..], a[1], b"MAXLEN", b"=", &lenb]));
    }
    Ok(Reply::Int(n as i64))
}

pub fn xdel(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // The key first (a missing key answers 0 whatever the ids), then every
    // id, so nothing is deleted when one is malformed.
    if read(s, ctx, a[1], |_: &Stream| ())?.is_none() {
        return Ok(Reply::Int(0));
    }
    let ids = a[2..]
        .iter()
        .map(|x| parse_strict_id(x))
        .collect::<Result<Vec<_>, _>>()?;
    let n = write(s, ctx, a[1], false, |x: &mut Stream, _| {
        let mut n = 0;
        let mut max_deleted = x.max_deleted();
        for id in &ids {
            if x.delete(*id) {
                n += 1;
                max_deleted = max_deleted.max(*id);
            }
        }
        let (last, added) = (x.last_id(), x.entries_added());
        x.set_meta(last, added, max_deleted);
        Ok((n, n > 0))
    })?;
    Ok(Reply::Int(n.unwrap_or(0)))
}

pub fn xlen(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |x: &Stream| x.len() as i64)?.unwrap_or(0),
    ))
}

fn range(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev { (a[3], a[2]) } else { (a[2], a[3]) };
    let (mut start, start_ex) = parse_bound(start_arg, 0)?;
    if start_ex {
        start = start
            .next()
            .ok_or_else(|| CmdError::other("invalid start ID for the interval"))?;
    }
    let (mut end, end_ex) = parse_bound(end_arg, u64::MAX)?;
    if end_ex {
        end = end
            .prev()
            .ok_or_else(|| CmdError::other("invalid end ID for the interval"))?;
    }
    let mut count: i64 = -1;
    let mut j = 4;
    while j < a.len() {
        if is(a[j], "count") && j + 1 < a.len() {
            count = count_arg(a[j + 1])?;
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let r = read(s, ctx, a[1], |x: &Stream| {
        if count == 0 {
            return Reply::NilArray;
        }
        let n = count.max(0) as usize;
        let entries = if rev {
            x.rev_range(start, end, n)
        } else {
            x.range(start, end, n)
        };
        entries_reply(&entries)
    })?;
    Ok(r.unwrap_or(Reply::Array(vec![])))
}

pub fn xrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    range(s, ctx, a, false)
}

pub fn xrevrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    range(s, ctx, a, true)
}

pub fn xsetid(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let id = parse_strict_id(a[2])?;
    let (mut added, mut max_del) = (None, StreamId::MIN);
    let mut i = 3;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(a[i], "entriesadded") && more {
            let n = int_arg(a[i + 1])?;
            if n < 0 {
                return Err(CmdError::other("entries_added must be positive"));
            }
            added = Some(n as u64);
        } else if is(a[i], "maxdeletedid") && more {
            max_del = parse_strict_id(a[i + 1])?;
            if id < max_del {
                return Err(CmdError::other(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let r = write(s, ctx, a[1], false, |x: &mut Stream, _| {
        if !x.is_empty() {
            if id < x.last_valid_id() {
                return Err(CmdError::other(
                    "The ID specified in XSETID is smaller than the target stream top item",
                ));
            }
            if added.is_some_and(|n| x.len() > n) {
                return Err(CmdError::other(
                    "The entries_added specified in XSETID is smaller than the target stream length",
                ));
            }
        }
        let max_del = if max_del.is_zero() {
            x.max_deleted()
        } else {
            max_del
        };
        x.set_meta(id, added.unwrap_or(x.entries_added()), max_del);
        Ok(((), true))
    })?;
    r.map(|_| Reply::Ok).ok_or(CmdError::NoSuchKey)
}

// ------------------------------------------------------------------ XREAD

/// The parsed arguments of XREAD and XREADGROUP.
pub struct ReadArgs<'a> {
    pub count: usize,
    pub block: Option<u64>,
    pub group: Option<(&'a [u8], &'a [u8])>,
    pub noack: bool,
    pub keys: Vec<&'a [u8]>,
    pub ids: Vec<&'a [u8]>,
}

/// Where the keys of an XREAD or XREADGROUP are (after STREAMS, the first
/// half of what follows), for the router.
pub fn read_keys<'a>(a: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut i = 1;
    while i < a.len() {
        if is(a[i], "streams") {
            let rest = &a[i + 1..];
            return rest[..rest.len() / 2].to_vec();
        }
        i += if is(a[i], "group") {
            3
        } else if is(a[i], "noack") {
            1
        } else {
            2
        };
    }
    Vec::new()
}

/// Parses XREAD / XREADGROUP options in Redis's order.
pub fn read_args<'a>(a: &[&'a [u8]], group: bool) -> Result<ReadArgs<'a>, CmdError> {
    let mut r = ReadArgs {
        count: 0,
        block: None,
        group: None,
        noack: false,
        keys: Vec::new(),
        ids: Vec::new(),
    };
    let mut streams_at = None;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let o = a[i];
        if is(o, "block") && more > 0 {
            i += 1;
            let ms = int_arg(a[i])
                .map_err(|_| CmdError::other("timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(CmdError::other("timeout is negative"));
            }
            r.block = Some(ms as u64);
        } else if is(o, "count") && more > 0 {
            i += 1;
            r.count = count_arg(a[i])? as usize;
        } else if is(o, "streams") && more > 0 {
            let n = a.len() - (i + 1);
            if !n.is_multiple_of(2) {
                return Err(CmdError::other(
                    "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            streams_at = Some(i + 1);
            break;
        } else if is(o, "group") && more >= 2 {
            if !group {
                return Err(CmdError::other(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.group = Some((a[i + 1], a[i + 2]));
            i += 2;
        } else if is(o, "noack") {
            if !group {
                return Err(CmdError::other(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let Some(at) = streams_at else {
        return Err(CmdError::Syntax);
    };
    if group && r.group.is_none() {
        return Err(CmdError::other("Missing GROUP option for XREADGROUP"));
    }
    let n = (a.len() - at) / 2;
    r.keys = a[at..at + n].to_vec();
    r.ids = a[at + n..].to_vec();
    Ok(r)
}

/// XREAD's checks of each key in order (its type, then its id): the id
/// each asks after (`$`: the stream's last id).
fn xread_prelude(s: &mut Shard, ctx: &Ctx, r: &ReadArgs<'_>) -> Result<Vec<StreamId>, CmdError> {
    let mut after = Vec::with_capacity(r.keys.len());
    for (key, id) in r.keys.iter().zip(&r.ids) {
        let last = read(s, ctx, key, |x: &Stream| x.last_id())?;
        after.push(if *id == b"$" {
            last.unwrap_or(StreamId::MIN)
        } else if *id == b">" {
            return Err(CmdError::other(
                "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
            ));
        } else {
            parse_strict_id(id)?
        });
    }
    Ok(after)
}

/// XREAD without BLOCK (or one whose keys are ready): the entries after
/// each id, keys with none left out; a nil array when no key has any.
pub fn xread(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = read_args(a, false)?;
    let after = xread_prelude(s, ctx, &r)?;
    read_after(s, ctx, &r.keys, &after, r.count)
}

/// The checks XREAD or XREADGROUP make of their keys before reading any
/// (types, groups, ids), nothing read or changed: the router runs them key
/// by key in order when the keys span shards, so the first error in key
/// order is the answer, as in Redis.
pub fn read_check(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if is(a[0], "xreadgroup") {
        let r = read_args(a, true)?;
        super::stream_groups::xreadgroup_prelude(s, ctx, &r)?;
    } else {
        let r = read_args(a, false)?;
        xread_prelude(s, ctx, &r)?;
    }
    Ok(Reply::Ok)
}

/// The entries after `after[i]` in each key, as XREAD answers them.
pub fn read_after(
    s: &mut Shard,
    ctx: &Ctx,
    keys: &[&[u8]],
    after: &[StreamId],
    count: usize,
) -> CmdResult {
    let mut out = Vec::new();
    for (key, gt) in keys.iter().zip(after) {
        let part = read(s, ctx, key, |x: &Stream| {
            if x.is_empty() || x.last_valid_id() <= *gt {
                return None;
            }
            let start = gt.next()?;
            Some(entries_reply(&x.range(start, StreamId::MAX, count)))
        })?
        .flatten();
        if let Some(entries) = part {
            out.push((Reply::bulk(*key), entries));
        }
    }
    Ok(if out.is_empty() {
        Reply::NilArray
    } else {
        Reply::KeyedArrays(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_redis_prints_them() {
        for (ms, seq) in [
            (0, 0),
            (1, 9),
            (10, 0),
            (u64::MAX, u64::MAX),
            (1_700_000_000_000, 42),
        ] {
            let id = StreamId::new(ms, seq);
            assert_eq!(id_bytes(id), format!("{ms}-{seq}").into_bytes());
        }
    }

    #[test]
    fn ids_parse_as_redis_parses_them() {
        assert_eq!(
            parse_id(b"5", u64::MAX).ok(),
            Some(StreamId::new(5, u64::MAX))
        );
        assert_eq!(parse_id(b"-", 0).ok(), Some(StreamId::MIN));
        assert_eq!(parse_id(b"+", 0).ok(), Some(StreamId::MAX));
        assert!(parse_strict_id(b"+").is_err());
        assert!(parse_strict_id(b"1-").is_err());
        assert!(parse_strict_id(b"-1").is_err());
        assert!(parse_strict_id(b"18446744073709551616").is_err());
        assert_eq!(parse_any(b"7-*", 0, true, true).ok(), Some(IdReq::Ms(7)));
        assert!(parse_any(b"7-*", 0, true, false).is_err());
    }
}
