//! Generic key commands: DEL, EXISTS, the EXPIRE family, TTL, TYPE, RENAME,
//! COPY. Commands over many keys run here per shard; the router sums or
//! gathers the shards' parts.

use keel_shards::journal::Rewrite;
use keel_shards::{Entry, Shard};

use super::error::{CmdError, CmdResult};
use super::expiry::Unit;
use super::{is, Ctx};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

pub fn del(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // A delete takes a time of its own (its record's HLC): a merge after a
    // split brain weighs it against the other side's writes of the key.
    if a[1..]
        .iter()
        .any(|k| s.peek(ctx.db, k, ctx.now_ms).is_some())
    {
        s.hlc_now(ctx.now_ms);
    }
    let n = a[1..]
        .iter()
        .filter(|k| s.delete(ctx.db, k, ctx.now_ms))
        .count();
    Ok(Reply::Int(n as i64))
}

pub fn exists(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let n = a[1..]
        .iter()
        .filter(|k| s.peek(ctx.db, k, ctx.now_ms).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

pub fn touch(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let n = a[1..]
        .iter()
        .filter(|k| s.get(ctx.db, k, ctx.now_ms).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn expire_flags(a: &[&[u8]]) -> Result<ExpireFlags, CmdError> {
    let mut f = ExpireFlags::default();
    for arg in &a[3..] {
        if is(arg, "nx") {
            f.nx = true;
        } else if is(arg, "xx") {
            f.xx = true;
        } else if is(arg, "gt") {
            f.gt = true;
        } else if is(arg, "lt") {
            f.lt = true;
        } else {
            return Err(CmdError::other(format!(
                "Unsupported option {}",
                String::from_utf8_lossy(arg)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(CmdError::other(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(CmdError::other(
            "GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

fn expire_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], unit: Unit, relative: bool) -> CmdResult {
    let cmd = String::from_utf8_lossy(a[0]).to_lowercase();
    // Redis checks the flags before the time.
    let flags = expire_flags(a)?;
    let n = int_arg(a[2])?;
    let invalid = || CmdError::InvalidExpire(cmd.clone());
    let mut when = match unit {
        Unit::Seconds => n.checked_mul(1000).ok_or_else(invalid)?,
        Unit::Millis => n,
    };
    if relative {
        when = when.checked_add(ctx.now_ms as i64).ok_or_else(invalid)?;
    }
    let Some(current) = s.peek(ctx.db, a[1], ctx.now_ms).map(|e| e.expire_at()) else {
        return Ok(Reply::Int(0));
    };
    // A key without TTL counts as an infinite TTL for GT and LT.
    let allowed = if flags.nx {
        current == 0
    } else if flags.xx && current == 0 {
        false
    } else if flags.gt {
        current != 0 && when > current as i64
    } else if flags.lt {
        current == 0 || when < current as i64
    } else {
        true
    };
    if !allowed {
        return Ok(Reply::Int(0));
    }
    if when <= ctx.now_ms as i64 {
        s.delete(ctx.db, a[1], ctx.now_ms);
        s.rewrite(Rewrite::cmd(&[b"DEL", a[1]]));
    } else {
        s.set_expire(ctx.db, a[1], ctx.now_ms, when as u64);
        s.wrote();
        s.rewrite(super::strings::expire_record(a[1], when as u64));
    }
    Ok(Reply::Int(1))
}

pub fn expire(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    expire_generic(s, ctx, a, Unit::Seconds, true)
}

pub fn pexpire(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    expire_generic(s, ctx, a, Unit::Millis, true)
}

pub fn expireat(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    expire_generic(s, ctx, a, Unit::Seconds, false)
}

pub fn pexpireat(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    expire_generic(s, ctx, a, Unit::Millis, false)
}

/// TTL-like replies: -2 for a missing key, -1 for no expiry, else `f(expire_at)`.
fn ttl_generic(s: &mut Shard, ctx: &Ctx, key: &[u8], f: impl Fn(u64) -> i64) -> CmdResult {
    Ok(Reply::Int(match s.peek(ctx.db, key, ctx.now_ms) {
        None => -2,
        Some(e) if e.expire_at() == 0 => -1,
        Some(e) => f(e.expire_at()),
    }))
}

pub fn ttl(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let now = ctx.now_ms;
    ttl_generic(s, ctx, a[1], |at| ((at - now + 500) / 1000) as i64)
}

pub fn pttl(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let now = ctx.now_ms;
    ttl_generic(s, ctx, a[1], |at| (at - now) as i64)
}

pub fn expiretime(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    ttl_generic(s, ctx, a[1], |at| (at / 1000) as i64)
}

pub fn pexpiretime(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    ttl_generic(s, ctx, a[1], |at| at as i64)
}

pub fn persist(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if s.peek(ctx.db, a[1], ctx.now_ms)
        .is_none_or(|e| e.expire_at() == 0)
    {
        return Ok(Reply::Int(0));
    }
    s.set_expire(ctx.db, a[1], ctx.now_ms, 0);
    s.wrote();
    Ok(Reply::Int(1))
}

pub fn type_(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::status(
        s.peek(ctx.db, a[1], ctx.now_ms)
            .map_or("none", |e| e.value().type_name()),
    ))
}

/// RENAME / RENAMENX when both keys live on this shard.
pub fn rename(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let nx = is(a[0], "renamenx");
    let Some(entry) = s.peek(ctx.db, a[1], ctx.now_ms).map(|e| e.to_entry()) else {
        return Err(CmdError::NoSuchKey);
    };
    if a[1] == a[2] {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    if nx && s.peek(ctx.db, a[2], ctx.now_ms).is_some() {
        return Ok(Reply::Int(0));
    }
    s.delete(ctx.db, a[1], ctx.now_ms);
    s.set(ctx.db, a[2], entry, ctx.now_ms);
    Ok(if nx { Reply::Int(1) } else { Reply::Ok })
}

/// COPY's options: destination database and REPLACE.
pub struct CopyOptions {
    pub dst_db: usize,
    pub replace: bool,
}

pub fn copy_options(a: &[&[u8]], db: usize) -> Result<CopyOptions, CmdError> {
    let mut o = CopyOptions {
        dst_db: db,
        replace: false,
    };
    let mut i = 3;
    while i < a.len() {
        if is(a[i], "replace") {
            o.replace = true;
        } else if is(a[i], "db") && i + 1 < a.len() {
            let n = int_arg(a[i + 1])?;
            if !(0..keel_shards::DATABASES as i64).contains(&n) {
                return Err(CmdError::DbIndex);
            }
            o.dst_db = n as usize;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

/// COPY when both keys live on this shard.
pub fn copy(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let o = copy_options(a, ctx.db)?;
    if o.dst_db == ctx.db && a[1] == a[2] {
        return Err(CmdError::other(
            "source and destination objects are the same",
        ));
    }
    let Some(entry) = s.peek(ctx.db, a[1], ctx.now_ms).map(|e| e.to_entry()) else {
        return Ok(Reply::Int(0));
    };
    Ok(Reply::Int(
        put(s, ctx, o.dst_db, a[2], entry, o.replace) as i64
    ))
}

/// Stores `entry` at `dst` unless it exists and `replace` is off. Returns
/// whether it stored. The second half of a cross-shard COPY or RENAME.
pub fn put(s: &mut Shard, ctx: &Ctx, db: usize, dst: &[u8], entry: Entry, replace: bool) -> bool {
    if !replace && s.peek(db, dst, ctx.now_ms).is_some() {
        return false;
    }
    if entry.is_expired(ctx.now_ms) {
        return false;
    }
    s.set(db, dst, entry, ctx.now_ms);
    true
}

/// MOVE key db: the key, with its value and expiry, goes to another
/// database of this shard (a key's shard is the same in every database);
/// 0 when it is absent here or present there.
pub fn move_key(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let db = int_arg(a[2])?;
    if i32::try_from(db).is_err() {
        // Redis reads the index as a C int, with this text (sic).
        return Err(CmdError::other(
            "value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    if !(0..keel_shards::DATABASES as i64).contains(&db) {
        return Err(CmdError::DbIndex);
    }
    let db = db as usize;
    if db == ctx.db {
        return Err(CmdError::other(
            "source and destination objects are the same",
        ));
    }
    let Some(entry) = s.peek(ctx.db, a[1], ctx.now_ms).map(|e| e.to_entry()) else {
        return Ok(Reply::Int(0));
    };
    if s.peek(db, a[1], ctx.now_ms).is_some() {
        return Ok(Reply::Int(0));
    }
    s.set(db, a[1], entry, ctx.now_ms);
    s.delete(ctx.db, a[1], ctx.now_ms);
    Ok(Reply::Int(1))
}
