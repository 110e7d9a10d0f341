//! String commands: GET, SET and friends, counters, ranges.

use keel_shards::journal::Rewrite;
use keel_shards::record::Op;
use keel_shards::{Entry, Shard, ValueRef};

use super::error::{CmdError, CmdResult};
use super::expiry::{absolute_expiry, Unit};
use super::{get_string, is, make_room, with_string, Ctx};
use crate::cmd::numbers::{incr_by_float, int_arg, parse_i64};
use crate::resp::reply::Reply;

pub fn get(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(match get_string(s, ctx, a[1])? {
        Some(v) => Reply::bulk_copy(v),
        None => Reply::Nil,
    })
}

/// SET's and GETEX's options, parsed with Redis's rules: a flag conflicts
/// only with the flags it excludes, so a repeated `EX` is allowed and the
/// last value wins. The expiry value is kept raw and checked later, because
/// Redis checks it after the syntax (and GETEX only once the key exists).
#[derive(Default)]
struct ExtOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(&'a [u8], Unit, bool)>,
}

#[derive(PartialEq)]
enum ExtCommand {
    Set,
    GetEx,
}

fn parse_ext_options<'a>(
    a: &[&'a [u8]],
    from: usize,
    cmd: ExtCommand,
) -> Result<ExtOptions<'a>, CmdError> {
    let mut o = ExtOptions::default();
    // Which expiry form was given: EX, PX, EXAT or PXAT.
    let mut form: Option<(Unit, bool)> = None;
    let mut i = from;
    while i < a.len() {
        let arg = a[i];
        let next = a.get(i + 1).copied();
        let set = cmd == ExtCommand::Set;
        let expiry_form = if is(arg, "ex") {
            Some((Unit::Seconds, true))
        } else if is(arg, "px") {
            Some((Unit::Millis, true))
        } else if is(arg, "exat") {
            Some((Unit::Seconds, false))
        } else if is(arg, "pxat") {
            Some((Unit::Millis, false))
        } else {
            None
        };
        if set && is(arg, "nx") && !o.xx {
            o.nx = true;
        } else if set && is(arg, "xx") && !o.nx {
            o.xx = true;
        } else if set && is(arg, "get") {
            o.get = true;
        } else if set && is(arg, "keepttl") && !o.persist && form.is_none() {
            o.keepttl = true;
        } else if !set && is(arg, "persist") && !o.keepttl && form.is_none() {
            o.persist = true;
        } else if let (Some(f), Some(n)) = (expiry_form, next) {
            if o.keepttl || o.persist || form.is_some_and(|g| g != f) {
                return Err(CmdError::Syntax);
            }
            form = Some(f);
            o.expire = Some((n, f.0, f.1));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

fn expiry_of(o: &ExtOptions, ctx: &Ctx, cmd: &str) -> Result<Option<u64>, CmdError> {
    match o.expire {
        None => Ok(None),
        Some((n, unit, relative)) => absolute_expiry(n, unit, relative, ctx.now_ms, cmd).map(Some),
    }
}

pub fn set(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let o = parse_ext_options(a, 3, ExtCommand::Set)?;
    let expire_at = expiry_of(&o, ctx, "set")?;
    let key = a[1];
    let (old, old_ttl) = match s.get(ctx.db, key, ctx.now_ms) {
        None => (None, 0),
        Some(e) => match e.value() {
            ValueRef::Str(v) => (
                Some(if o.get { v.to_vec() } else { Vec::new() }),
                e.expire_at(),
            ),
            _ if o.get => return Err(CmdError::WrongType),
            _ => (Some(Vec::new()), e.expire_at()),
        },
    };
    let exists = old.is_some();
    let old_reply = || match &old {
        Some(v) => Reply::Bulk(v.clone()),
        None => Reply::Nil,
    };
    if (o.nx && exists) || (o.xx && !exists) {
        return Ok(if o.get { old_reply() } else { Reply::Nil });
    }
    let expire_at = match expire_at {
        Some(at) => at,
        None if o.keepttl => old_ttl,
        None => 0,
    };
    if expire_at != 0 && expire_at <= ctx.now_ms {
        // Already in the past: the write's effect is a delete.
        s.delete(ctx.db, key, ctx.now_ms);
        s.rewrite(Rewrite::cmd(&[b"DEL", key]));
    } else {
        s.set_string(ctx.db, key, a[2], Some(expire_at), ctx.now_ms);
        // A plain `SET key value` is its own record.
        if a.len() > 3 || expire_at != 0 {
            rewrite_set(s, key, a[2], expire_at);
        }
    }
    Ok(if o.get { old_reply() } else { Reply::Ok })
}

pub fn setnx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if s.peek(ctx.db, a[1], ctx.now_ms).is_some() {
        return Ok(Reply::Int(0));
    }
    s.set_string(ctx.db, a[1], a[2], Some(0), ctx.now_ms);
    Ok(Reply::Int(1))
}

fn setex_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], unit: Unit, cmd: &str) -> CmdResult {
    let at = absolute_expiry(a[2], unit, true, ctx.now_ms, cmd)?;
    s.set_string(ctx.db, a[1], a[3], Some(at), ctx.now_ms);
    rewrite_set(s, a[1], a[3], at);
    Ok(Reply::Ok)
}

/// The deterministic record of setting a key's expiry to `at` (0: none).
pub fn expire_record(key: &[u8], at: u64) -> Rewrite {
    if at == 0 {
        Rewrite::cmd(&[b"PERSIST", key])
    } else {
        Rewrite::cmd(&[b"PEXPIREAT", key, at.to_string().as_bytes()])
    }
}

/// Records a SET whose expiry was relative as the absolute form replay needs.
fn rewrite_set(s: &mut Shard, key: &[u8], value: &[u8], expire_at: u64) {
    if !s.journaling() {
        return;
    }
    if expire_at == 0 {
        s.rewrite(Rewrite::cmd(&[b"SET", key, value]));
    } else {
        let at = expire_at.to_string();
        s.rewrite(Rewrite::cmd(&[b"SET", key, value, b"PXAT", at.as_bytes()]));
    }
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
            Some(e) => match e.value() {
                ValueRef::Str(v) => Reply::Bulk(v.to_vec()),
                _ => Reply::Nil,
            },
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
    // Recorded as the value reached and the step (replay sets the value; a
    // merge adds the step).
    s.rewrite(Rewrite {
        op: Op::IncrTo,
        key: key.to_vec(),
        args: vec![text.clone(), delta.to_string().into_bytes()],
    });
    store_keeping_ttl(s, ctx, key, &text);
    Ok(Reply::Int(next))
}

/// Replaces a string value (keeping its TTL), or creates the key.
pub fn store_keeping_ttl(s: &mut Shard, ctx: &Ctx, key: &[u8], value: &[u8]) {
    // A key that expired is gone by now (the caller read it): its TTL is
    // not kept.
    let keep = s.peek(ctx.db, key, ctx.now_ms).is_some();
    s.set_string(ctx.db, key, value, (!keep).then_some(0), ctx.now_ms);
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
    s.rewrite(Rewrite::cmd(&[b"SET", a[1], &next, b"KEEPTTL"]));
    store_keeping_ttl(s, ctx, a[1], &next);
    Ok(Reply::Bulk(next))
}

fn check_size(len: usize, ctx: &Ctx) -> Result<(), CmdError> {
    if len > ctx.max_string {
        return Err(CmdError::StringTooLong);
    }
    Ok(())
}

pub fn append(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    with_string(s, ctx, a[1], |v| {
        check_size(v.len() + a[2].len(), ctx)?;
        make_room(v, v.len() + a[2].len());
        v.extend_from_slice(a[2]);
        Ok((Reply::Int(v.len() as i64), true))
    })
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
    let current = get_string(s, ctx, a[1])?;
    if value.is_empty() {
        return Ok(Reply::Int(current.map_or(0, |v| v.len()) as i64));
    }
    let end = offset
        .checked_add(value.len())
        .ok_or(CmdError::StringTooLong)?;
    check_size(end, ctx)?;
    with_string(s, ctx, a[1], |v| {
        if v.len() < end {
            make_room(v, end);
            v.resize(end, 0);
        }
        v[offset..end].copy_from_slice(value);
        Ok((Reply::Int(v.len() as i64), true))
    })
}

pub fn getdel(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let v = match get_string(s, ctx, a[1])? {
        None => return Ok(Reply::Nil),
        Some(v) => v.to_vec(),
    };
    // The delete's own time (see `keys::del`).
    s.hlc_now(ctx.now_ms);
    s.delete(ctx.db, a[1], ctx.now_ms);
    Ok(Reply::Bulk(v))
}

pub fn getset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let old = get_string(s, ctx, a[1])?.map(|v| v.to_vec());
    s.set(ctx.db, a[1], Entry::string(a[2].to_vec(), 0), ctx.now_ms);
    Ok(old.map_or(Reply::Nil, Reply::Bulk))
}

pub fn getex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let o = parse_ext_options(a, 2, ExtCommand::GetEx)?;
    let v = match get_string(s, ctx, a[1])? {
        None => return Ok(Reply::Nil),
        Some(v) => v.to_vec(),
    };
    // None: leave the TTL; Some(0): PERSIST; Some(t): expire at t.
    let new_ttl = match expiry_of(&o, ctx, "getex")? {
        Some(at) => Some(at),
        None if o.persist => Some(0),
        None => None,
    };
    match new_ttl {
        None => {}
        Some(at) if at != 0 && at <= ctx.now_ms => {
            s.delete(ctx.db, a[1], ctx.now_ms);
            s.rewrite(Rewrite::cmd(&[b"DEL", a[1]]));
        }
        Some(at)
            if s.peek(ctx.db, a[1], ctx.now_ms)
                .is_some_and(|e| e.expire_at() != at) =>
        {
            s.set_expire(ctx.db, a[1], ctx.now_ms, at);
            s.wrote();
            s.rewrite(expire_record(a[1], at));
        }
        Some(_) => {}
    }
    Ok(Reply::Bulk(v))
}
