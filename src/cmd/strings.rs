//! String commands: GET, SET and friends, counters, ranges.

use keel_shards::{Entry, Shard, Value};

use super::error::{CmdError, CmdResult};
use super::expiry::{absolute_expiry, Unit};
use super::{get_string, is, Ctx};
use crate::numbers::{incr_by_float, int_arg, parse_i64};
use crate::reply::Reply;

pub fn get(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(match get_string(s, ctx, a[1])? {
        Some(v) => Reply::Bulk(v.to_vec()),
        None => Reply::Nil,
    })
}

#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    expire_at: Option<u64>,
}

fn parse_set_options(a: &[&[u8]], ctx: &Ctx) -> Result<SetOptions, CmdError> {
    let mut o = SetOptions::default();
    let mut expire: Option<(&[u8], Unit, bool)> = None;
    let mut i = 3;
    while i < a.len() {
        let arg = a[i];
        let next = a.get(i + 1).copied();
        if is(arg, "nx") && !o.xx {
            o.nx = true;
        } else if is(arg, "xx") && !o.nx {
            o.xx = true;
        } else if is(arg, "get") {
            o.get = true;
        } else if is(arg, "keepttl") && expire.is_none() {
            o.keepttl = true;
        } else if expire.is_none() && !o.keepttl && next.is_some() {
            let (unit, relative) = if is(arg, "ex") {
                (Unit::Seconds, true)
            } else if is(arg, "px") {
                (Unit::Millis, true)
            } else if is(arg, "exat") {
                (Unit::Seconds, false)
            } else if is(arg, "pxat") {
                (Unit::Millis, false)
            } else {
                return Err(CmdError::Syntax);
            };
            expire = next.map(|n| (n, unit, relative));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if let Some((n, unit, relative)) = expire {
        o.expire_at = Some(absolute_expiry(n, unit, relative, ctx.now_ms, "set")?);
    }
    Ok(o)
}

pub fn set(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let o = parse_set_options(a, ctx)?;
    let key = a[1];
    let (old, old_ttl) = match s.get(ctx.db, key, ctx.now_ms) {
        None => (None, 0),
        Some(Entry {
            value: Value::Str(v),
            expire_at,
            ..
        }) => (
            Some(if o.get { v.to_vec() } else { Vec::new() }),
            *expire_at,
        ),
        Some(_) if o.get => return Err(CmdError::WrongType),
        Some(e) => (Some(Vec::new()), e.expire_at),
    };
    let exists = old.is_some();
    let old_reply = || match &old {
        Some(v) => Reply::Bulk(v.clone()),
        None => Reply::Nil,
    };
    if (o.nx && exists) || (o.xx && !exists) {
        return Ok(if o.get { old_reply() } else { Reply::Nil });
    }
    let expire_at = match o.expire_at {
        Some(at) => at,
        None if o.keepttl => old_ttl,
        None => 0,
    };
    if expire_at != 0 && expire_at <= ctx.now_ms {
        // Already in the past: the write's effect is a delete.
        s.delete(ctx.db, key, ctx.now_ms);
    } else {
        s.set(
            ctx.db,
            key,
            Entry::string(a[2].to_vec(), expire_at),
            ctx.now_ms,
        );
    }
    Ok(if o.get { old_reply() } else { Reply::Ok })
}

pub fn setnx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if s.peek(ctx.db, a[1], ctx.now_ms).is_some() {
        return Ok(Reply::Int(0));
    }
    s.set(ctx.db, a[1], Entry::string(a[2].to_vec(), 0), ctx.now_ms);
    Ok(Reply::Int(1))
}

fn setex_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], unit: Unit, cmd: &str) -> CmdResult {
    let at = absolute_expiry(a[2], unit, true, ctx.now_ms, cmd)?;
    s.set(ctx.db, a[1], Entry::string(a[3].to_vec(), at), ctx.now_ms);
    Ok(Reply::Ok)
}

pub fn setex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setex_generic(s, ctx, a, Unit::Seconds, "setex")
}

pub fn psetex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setex_generic(s, ctx, a, Unit::Millis, "psetex")
}

pub fn mget(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let mut out = Vec::with_capacity(a.len() - 1);
    for key in &a[1..] {
        out.push(match s.get(ctx.db, key, ctx.now_ms) {
            Some(Entry {
                value: Value::Str(v),
                ..
            }) => Reply::Bulk(v.clone()),
            _ => Reply::Nil,
        });
    }
    Ok(Reply::Array(out))
}

/// Checks MSET's and MSETNX's shape before anything is split across shards.
pub fn check_pairs(a: &[&[u8]]) -> Result<(), CmdError> {
    if a.len() < 3 || !(a.len() - 1).is_multiple_of(2) {
        return Err(CmdError::Arity(
            String::from_utf8_lossy(a[0]).to_lowercase(),
        ));
    }
    Ok(())
}

pub fn mset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    check_pairs(a)?;
    for pair in a[1..].chunks(2) {
        s.set(
            ctx.db,
            pair[0],
            Entry::string(pair[1].to_vec(), 0),
            ctx.now_ms,
        );
    }
    Ok(Reply::Ok)
}

/// How many of MSETNX's keys exist (the first phase of a cross-shard MSETNX).
pub fn count_existing(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let n = a[1..]
        .chunks(2)
        .filter(|p| s.peek(ctx.db, p[0], ctx.now_ms).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

pub fn msetnx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    check_pairs(a)?;
    if count_existing(s, ctx, a)? != Reply::Int(0) {
        return Ok(Reply::Int(0));
    }
    mset(s, ctx, a)?;
    Ok(Reply::Int(1))
}

/// Applies `f` to the integer a key holds (0 when absent), keeping its TTL.
fn incr_generic(s: &mut Shard, ctx: &Ctx, key: &[u8], delta: i64) -> CmdResult {
    let current = match get_string(s, ctx, key)? {
        None => 0,
        Some(v) => parse_i64(v).ok_or(CmdError::NotInteger)?,
    };
    let next = current.checked_add(delta).ok_or(CmdError::Overflow)?;
    let mut buf = itoa::Buffer::new();
    let text = buf.format(next).as_bytes().to_vec();
    store_keeping_ttl(s, ctx, key, text);
    Ok(Reply::Int(next))
}

/// Replaces a string value in place (keeping its TTL), or creates the key.
fn store_keeping_ttl(s: &mut Shard, ctx: &Ctx, key: &[u8], value: Vec<u8>) {
    let mut value = Some(value);
    let hlc = s.hlc_now(ctx.now_ms);
    let updated = s.modify(ctx.db, key, ctx.now_ms, |e| {
        if let Some(v) = value.take() {
            e.value = Value::Str(v);
            e.hlc = hlc;
        }
    });
    match (updated, value) {
        (Some(()), _) => s.wrote(),
        (None, Some(v)) => s.set(ctx.db, key, Entry::string(v, 0), ctx.now_ms),
        (None, None) => {}
    }
}

pub fn incr(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    incr_generic(s, ctx, a[1], 1)
}

pub fn decr(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    incr_generic(s, ctx, a[1], -1)
}

pub fn incrby(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    incr_generic(s, ctx, a[1], int_arg(a[2])?)
}

pub fn decrby(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let d = int_arg(a[2])?;
    let neg = d
        .checked_neg()
        .ok_or_else(|| CmdError::other("decrement would overflow"))?;
    incr_generic(s, ctx, a[1], neg)
}

pub fn incrbyfloat(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let current = get_string(s, ctx, a[1])?.unwrap_or(b"0").to_vec();
    let next = incr_by_float(&current, a[2])?;
    store_keeping_ttl(s, ctx, a[1], next.clone());
    Ok(Reply::Bulk(next))
}

fn check_size(len: usize, ctx: &Ctx) -> Result<(), CmdError> {
    if len > ctx.max_string {
        return Err(CmdError::StringTooLong);
    }
    Ok(())
}

pub fn append(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let len = match get_string(s, ctx, a[1])? {
        None => {
            s.set(ctx.db, a[1], Entry::string(a[2].to_vec(), 0), ctx.now_ms);
            return Ok(Reply::Int(a[2].len() as i64));
        }
        Some(v) => v.len() + a[2].len(),
    };
    check_size(len, ctx)?;
    let hlc = s.hlc_now(ctx.now_ms);
    s.modify(ctx.db, a[1], ctx.now_ms, |e| {
        if let Value::Str(v) = &mut e.value {
            v.extend_from_slice(a[2]);
            e.hlc = hlc;
        }
    });
    s.wrote();
    Ok(Reply::Int(len as i64))
}

pub fn strlen(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        get_string(s, ctx, a[1])?.map_or(0, |v| v.len()) as i64
    ))
}

pub fn getrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (mut start, mut end) = (int_arg(a[2])?, int_arg(a[3])?);
    let v = get_string(s, ctx, a[1])?.unwrap_or(b"");
    let len = v.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return Ok(Reply::bulk(""));
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0).min(len - 1);
    if start > end {
        return Ok(Reply::bulk(""));
    }
    Ok(Reply::Bulk(v[start as usize..=end as usize].to_vec()))
}

pub fn setrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let offset = int_arg(a[2])?;
    if offset < 0 {
        return Err(CmdError::OffsetOutOfRange);
    }
    let offset = offset as usize;
    let value = a[3];
    let current_len = match get_string(s, ctx, a[1])? {
        None if value.is_empty() => return Ok(Reply::Int(0)),
        None => None,
        Some(v) => Some(v.len()),
    };
    if value.is_empty() {
        return Ok(Reply::Int(current_len.unwrap_or(0) as i64));
    }
    let end = offset
        .checked_add(value.len())
        .ok_or(CmdError::StringTooLong)?;
    check_size(end, ctx)?;
    let write = |v: &mut Vec<u8>| {
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset..end].copy_from_slice(value);
        v.len()
    };
    let len = match current_len {
        None => {
            let mut v = Vec::new();
            let len = write(&mut v);
            s.set(ctx.db, a[1], Entry::string(v, 0), ctx.now_ms);
            len
        }
        Some(_) => {
            let hlc = s.hlc_now(ctx.now_ms);
            let len = s
                .modify(ctx.db, a[1], ctx.now_ms, |e| match &mut e.value {
                    Value::Str(v) => {
                        e.hlc = hlc;
                        write(v)
                    }
                    _ => 0,
                })
                .unwrap_or(0);
            s.wrote();
            len
        }
    };
    Ok(Reply::Int(len as i64))
}

pub fn getdel(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let v = match get_string(s, ctx, a[1])? {
        None => return Ok(Reply::Nil),
        Some(v) => v.to_vec(),
    };
    s.delete(ctx.db, a[1], ctx.now_ms);
    Ok(Reply::Bulk(v))
}

pub fn getset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let old = get_string(s, ctx, a[1])?.map(|v| v.to_vec());
    s.set(ctx.db, a[1], Entry::string(a[2].to_vec(), 0), ctx.now_ms);
    Ok(old.map_or(Reply::Nil, Reply::Bulk))
}

pub fn getex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // None: leave the TTL; Some(0): PERSIST; Some(t): expire at t.
    let mut new_ttl: Option<u64> = None;
    let mut i = 2;
    while i < a.len() {
        let arg = a[i];
        let next = a.get(i + 1).copied();
        let (unit, relative) = if is(arg, "ex") {
            (Unit::Seconds, true)
        } else if is(arg, "px") {
            (Unit::Millis, true)
        } else if is(arg, "exat") {
            (Unit::Seconds, false)
        } else if is(arg, "pxat") {
            (Unit::Millis, false)
        } else if is(arg, "persist") && new_ttl.is_none() {
            new_ttl = Some(0);
            i += 1;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        match (new_ttl, next) {
            (None, Some(n)) => {
                new_ttl = Some(absolute_expiry(n, unit, relative, ctx.now_ms, "getex")?);
            }
            _ => return Err(CmdError::Syntax),
        }
        i += 2;
    }
    let v = match get_string(s, ctx, a[1])? {
        None => return Ok(Reply::Nil),
        Some(v) => v.to_vec(),
    };
    match new_ttl {
        None => {}
        Some(at) if at != 0 && at <= ctx.now_ms => {
            s.delete(ctx.db, a[1], ctx.now_ms);
        }
        Some(at) => {
            let changed = s.modify(ctx.db, a[1], ctx.now_ms, |e| {
                let changed = e.expire_at != at;
                e.expire_at = at;
                changed
            });
            if changed == Some(true) {
                s.wrote();
            }
        }
    }
    Ok(Reply::Bulk(v))
}
