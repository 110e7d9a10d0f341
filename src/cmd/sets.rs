//! Set commands: SADD, SREM, SPOP, SRANDMEMBER, the SINTER/SUNION/SDIFF
//! family, SMOVE, SSCAN. Every member added is stamped with the write's HLC
//! time. Multi-key commands run on one shard (the router refuses keys that
//! span shards with CROSSSLOT for now).

use std::collections::HashSet;

use keel_shards::journal::Rewrite;
use keel_shards::{Entry, Set, Shard, Value};

use super::error::{CmdError, CmdResult};
use super::{distinct_items, is, read, scan_prelude, scan_reply, write, Ctx, Rng};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

pub fn sadd(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = write(s, ctx, a[1], true, |set: &mut Set, hlc| {
        let n = a[2..].iter().filter(|m| set.insert(m, hlc)).count();
        Ok((n as i64, n > 0))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn srem(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = write(s, ctx, a[1], false, |set: &mut Set, _| {
        let n = a[2..].iter().filter(|m| set.remove(m)).count();
        Ok((n as i64, n > 0))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

fn members(set: &Set) -> Vec<Vec<u8>> {
    set.iter().map(|(m, _)| m.to_vec()).collect()
}

pub fn smembers(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let m = read(s, ctx, a[1], members)?.unwrap_or_default();
    Ok(Reply::Set(m.into_iter().map(Reply::Bulk).collect()))
}

pub fn sismember(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |set: &Set| set.contains(a[2]) as i64)?.unwrap_or(0),
    ))
}

pub fn smismember(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let ms = &a[2..];
    let r = read(s, ctx, a[1], |set: &Set| {
        ms.iter()
            .map(|m| Reply::Int(set.contains(m) as i64))
            .collect()
    })?;
    Ok(Reply::Array(
        r.unwrap_or_else(|| vec![Reply::Int(0); ms.len()]),
    ))
}

pub fn scard(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |set: &Set| set.len() as i64)?.unwrap_or(0),
    ))
}

pub fn spop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => {
            let n = int_arg(a[2])
                .map_err(|_| CmdError::other("value is out of range, must be positive"))?;
            if n < 0 {
                return Err(CmdError::other("value is out of range, must be positive"));
            }
            Some(n as usize)
        }
        _ => return Err(CmdError::Syntax),
    };
    let mut rng = Rng::new(s);
    let popped = write(s, ctx, a[1], false, |set: &mut Set, _| {
        let n = count.unwrap_or(1);
        let picks: Vec<(Vec<u8>, ())> = if n == 1 {
            set.sample(rng.next_u64())
                .map(|m| (m.to_vec(), ()))
                .into_iter()
                .collect()
        } else {
            distinct_items(
                &mut rng,
                set.len(),
                n,
                |r| set.sample(r).map(|m| (m.to_vec(), ())),
                || set.iter().map(|(m, _)| (m.to_vec(), ())).collect(),
            )
        };
        for (m, _) in &picks {
            set.remove(m);
        }
        let wrote = !picks.is_empty();
        Ok((picks.into_iter().map(|(m, _)| m).collect::<Vec<_>>(), wrote))
    })?;
    // Random picks: recorded as the members removed.
    if let Some(members) = popped.as_ref().filter(|m| !m.is_empty()) {
        let mut argv: Vec<&[u8]> = vec![b"SREM", a[1]];
        argv.extend(members.iter().map(|m| &m[..]));
        s.rewrite(Rewrite::cmd(&argv));
    }
    Ok(match (count, popped) {
        (None, p) => p
            .and_then(|p| p.into_iter().next())
            .map_or(Reply::Nil, Reply::Bulk),
        (Some(_), p) => Reply::Set(p.unwrap_or_default().into_iter().map(Reply::Bulk).collect()),
    })
}

pub fn srandmember(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => Some(super::rand_count(a[2])?),
        _ => return Err(CmdError::Syntax),
    };
    let mut rng = Rng::new(s);
    let r = read(s, ctx, a[1], |set: &Set| {
        let pick = |r: u64| set.sample(r).map(|m| (m.to_vec(), ()));
        let picks: Vec<(Vec<u8>, ())> = match count {
            None => pick(rng.next_u64()).into_iter().collect(),
            Some(n) if n < 0 => (0..n.unsigned_abs())
                .filter_map(|_| pick(rng.next_u64()))
                .collect(),
            Some(n) => distinct_items(&mut rng, set.len(), n as usize, pick, || {
                set.iter().map(|(m, _)| (m.to_vec(), ())).collect()
            }),
        };
        picks.into_iter().map(|(m, _)| m).collect::<Vec<_>>()
    })?;
    Ok(match count {
        None => r
            .and_then(|p| p.into_iter().next())
            .map_or(Reply::Nil, Reply::Bulk),
        Some(_) => Reply::bulks(r.unwrap_or_default()),
    })
}

/// How SINTER, SUNION and SDIFF combine their sets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Computes the combination of the sets at `keys`. Redis checks every key's
/// type before it looks at contents: any non-set is WRONGTYPE.
fn combine(
    s: &mut Shard,
    ctx: &Ctx,
    keys: &[&[u8]],
    op: Op,
    limit: usize,
) -> Result<Vec<Vec<u8>>, CmdError> {
    let mut lens = Vec::with_capacity(keys.len());
    for k in keys {
        lens.push(read(s, ctx, k, |set: &Set| set.len())?);
    }
    match op {
        Op::Inter => {
            if lens.iter().any(|l| l.is_none()) {
                return Ok(vec![]);
            }
            // Start from the smallest set; keep what every other set holds.
            let (first, _) = lens
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| l.unwrap_or(0))
                .unwrap_or((0, &None));
            let mut out = read(s, ctx, keys[first], members)?.unwrap_or_default();
            for (i, k) in keys.iter().enumerate() {
                if i != first {
                    read(s, ctx, k, |set: &Set| out.retain(|m| set.contains(m)))?;
                }
            }
            if limit > 0 {
                out.truncate(limit);
            }
            Ok(out)
        }
        Op::Union => {
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            for k in keys {
                read(s, ctx, k, |set: &Set| {
                    for (m, _) in set.iter() {
                        if !seen.contains(m) {
                            seen.insert(m.to_vec());
                        }
                    }
                })?;
            }
            Ok(seen.into_iter().collect())
        }
        Op::Diff => {
            let mut out = read(s, ctx, keys[0], members)?.unwrap_or_default();
            for k in &keys[1..] {
                if out.is_empty() {
                    break;
                }
                read(s, ctx, k, |set: &Set| out.retain(|m| !set.contains(m)))?;
            }
            Ok(out)
        }
    }
}

fn reply_set(m: Vec<Vec<u8>>) -> Reply {
    Reply::Set(m.into_iter().map(Reply::Bulk).collect())
}

pub fn sinter(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(reply_set(combine(s, ctx, &a[1..], Op::Inter, 0)?))
}

pub fn sunion(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(reply_set(combine(s, ctx, &a[1..], Op::Union, 0)?))
}

pub fn sdiff(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(reply_set(combine(s, ctx, &a[1..], Op::Diff, 0)?))
}

/// Stores `members` as the set at `dst` (deleting it when empty); returns
/// the count. One write.
fn store(s: &mut Shard, ctx: &Ctx, dst: &[u8], members: Vec<Vec<u8>>) -> i64 {
    let n = members.len() as i64;
    if members.is_empty() {
        s.delete(ctx.db, dst, ctx.now_ms);
        return 0;
    }
    let hlc = s.hlc_now(ctx.now_ms);
    let mut set = Set::default();
    for m in &members {
        set.insert(m, hlc);
    }
    s.set(ctx.db, dst, Entry::new(Value::Set(set), 0), ctx.now_ms);
    n
}

fn store_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], op: Op) -> CmdResult {
    let m = combine(s, ctx, &a[2..], op, 0)?;
    Ok(Reply::Int(store(s, ctx, a[1], m)))
}

pub fn sinterstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    store_generic(s, ctx, a, Op::Inter)
}

pub fn sunionstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    store_generic(s, ctx, a, Op::Union)
}

pub fn sdiffstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    store_generic(s, ctx, a, Op::Diff)
}

/// `numkeys key [key ...]` of SINTERCARD, LMPOP, ZUNION...: the keys, and
/// the index after them. `what` names the count in the error.
pub fn numkeys<'a>(a: &[&'a [u8]], at: usize) -> Result<(Vec<&'a [u8]>, usize), CmdError> {
    let n = match int_arg(a[at]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(CmdError::other("numkeys should be greater than 0")),
    };
    if n > a.len() - at - 1 {
        return Err(CmdError::other(
            "Number of keys can't be greater than number of args",
        ));
    }
    Ok((a[at + 1..at + 1 + n].to_vec(), at + 1 + n))
}

pub fn sintercard(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (keys, mut i) = numkeys(a, 1)?;
    let mut limit = 0;
    while i < a.len() {
        if is(a[i], "limit") && i + 1 < a.len() {
            limit = match int_arg(a[i + 1]) {
                Ok(n) if n >= 0 => n as usize,
                _ => return Err(CmdError::other("LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(Reply::Int(
        combine(s, ctx, &keys, Op::Inter, limit)?.len() as i64
    ))
}

pub fn smove(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (src, dst, m) = (a[1], a[2], a[3]);
    let Some(has) = read(s, ctx, src, |set: &Set| set.contains(m))? else {
        return Ok(Reply::Int(0));
    };
    read(s, ctx, dst, |_: &Set| ())?;
    if src == dst {
        return Ok(Reply::Int(has as i64));
    }
    if !has {
        return Ok(Reply::Int(0));
    }
    write(s, ctx, src, false, |set: &mut Set, _| {
        Ok((set.remove(m), true))
    })?;
    write(s, ctx, dst, true, |set: &mut Set, hlc| {
        Ok(((), set.insert(m, hlc)))
    })?;
    Ok(Reply::Int(1))
}

/// Redis's `set-max-intset-entries` default.
const MAX_INTSET_ENTRIES: usize = 512;

/// A set Redis 7.0 would hold as an intset (every member an integer in
/// Redis's canonical form, at most [`MAX_INTSET_ENTRIES`] of them): its
/// members in ascending order. Redis never converts a set back to an intset
/// once it held another member; keel does not track that history.
fn intset_members(set: &Set) -> Option<Vec<(i64, &[u8])>> {
    if set.len() > MAX_INTSET_ENTRIES {
        return None;
    }
    let mut ints = set
        .iter()
        .map(|(m, _)| crate::cmd::numbers::parse_i64(m).map(|n| (n, m)))
        .collect::<Option<Vec<_>>>()?;
    ints.sort_unstable_by_key(|(n, _)| *n);
    Some(ints)
}

pub fn sscan(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let Some(o) = scan_prelude::<Set>(s, ctx, a)? else {
        return Ok(scan_reply(0, vec![]));
    };
    let r = read(s, ctx, a[1], |set: &Set| {
        let mut items = Vec::new();
        if let Some(ints) = intset_members(set) {
            // Redis 7.0 keeps such a set as an intset, which SSCAN answers
            // whole, in ascending order, with cursor 0, whatever the cursor.
            items.extend(
                ints.into_iter()
                    .filter(|(_, m)| o.matches(m))
                    .map(|(_, m)| Reply::bulk(m)),
            );
            return scan_reply(0, items);
        }
        let next = set.scan(o.cursor, o.count, |m| {
            if o.matches(m) {
                items.push(Reply::bulk(m));
            }
        });
        scan_reply(next, items)
    })?;
    Ok(r.unwrap_or_else(|| scan_reply(0, vec![])))
}
