//! List commands: pushes and pops at both ends, LRANGE, LINDEX, LSET, LREM,
//! LTRIM, LINSERT, LPOS, and the two-key LMOVE / RPOPLPUSH / LMPOP (run on
//! one shard; the router refuses keys that span shards for now). The
//! blocking variants live with the connection code.

use keel_shards::{List, Shard};

use super::error::{CmdError, CmdResult};
use super::{is, read, write, Ctx};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

fn end_arg(a: &[u8]) -> Result<End, CmdError> {
    if is(a, "left") {
        Ok(End::Left)
    } else if is(a, "right") {
        Ok(End::Right)
    } else {
        Err(CmdError::Syntax)
    }
}

fn push_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], end: End, create: bool) -> CmdResult {
    let r = write(s, ctx, a[1], create, |l: &mut List, _| {
        for v in &a[2..] {
            match end {
                End::Left => l.push_front(v.to_vec()),
                End::Right => l.push_back(v.to_vec()),
            }
        }
        Ok((l.len() as i64, true))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn lpush(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    push_generic(s, ctx, a, End::Left, true)
}

pub fn rpush(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    push_generic(s, ctx, a, End::Right, true)
}

pub fn lpushx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    push_generic(s, ctx, a, End::Left, false)
}

pub fn rpushx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    push_generic(s, ctx, a, End::Right, false)
}

/// Pops up to `n` items from one end of the list at `key`; `None` when the
/// key is absent.
fn pop_n(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    end: End,
    n: usize,
) -> Result<Option<Vec<Vec<u8>>>, CmdError> {
    write(s, ctx, key, false, |l: &mut List, _| {
        let mut out = Vec::with_capacity(n.min(l.len()));
        while out.len() < n {
            let v = match end {
                End::Left => l.pop_front(),
                End::Right => l.pop_back(),
            };
            match v {
                Some(v) => out.push(v),
                None => break,
            }
        }
        let wrote = !out.is_empty();
        Ok((out, wrote))
    })
}

fn pop_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], end: End) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => {
            let n = int_arg(a[2])
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::other("value is out of range, must be positive"))?;
            Some(n as usize)
        }
        // Redis answers more than one count with the arity error.
        _ => {
            return Err(CmdError::Arity(
                String::from_utf8_lossy(a[0]).to_ascii_lowercase(),
            ))
        }
    };
    let popped = pop_n(s, ctx, a[1], end, count.unwrap_or(1))?;
    Ok(match (count, popped) {
        (None, None) => Reply::Nil,
        (None, Some(p)) => p.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
        (Some(_), None) => Reply::NilArray,
        (Some(_), Some(p)) => Reply::bulks(p),
    })
}

pub fn lpop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    pop_generic(s, ctx, a, End::Left)
}

pub fn rpop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    pop_generic(s, ctx, a, End::Right)
}

pub fn llen(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |l: &List| l.len() as i64)?.unwrap_or(0),
    ))
}

/// Resolves Redis's `start stop` (negative from the end) against `len`:
/// the half-open range, or `None` when empty.
pub fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop as usize + 1))
}

/// A single index (negative from the end) into a list of `len`.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i.checked_add(len as i64)? } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub fn lrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (start, stop) = (int_arg(a[2])?, int_arg(a[3])?);
    let r = read(s, ctx, a[1], |l: &List| {
        match index_range(start, stop, l.len()) {
            None => vec![],
            Some((b, e)) => l.range(b, e).map(|v| Reply::Bulk(v.clone())).collect(),
        }
    })?;
    Ok(Reply::Array(r.unwrap_or_default()))
}

pub fn lindex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis checks the key before it parses the index.
    let r = read(s, ctx, a[1], |l: &List| {
        let i = int_arg(a[2])?;
        Ok::<_, CmdError>(index(i, l.len()).and_then(|i| l.get(i)).cloned())
    })?;
    Ok(r.transpose()?.flatten().map_or(Reply::Nil, Reply::Bulk))
}

pub fn lset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis checks the key before it parses the index.
    let r = write(s, ctx, a[1], false, |l: &mut List, _| {
        let i = int_arg(a[2])?;
        let i = index(i, l.len()).ok_or_else(|| CmdError::other("index out of range"))?;
        l.set(i, a[3].to_vec());
        Ok(((), true))
    })?;
    r.ok_or(CmdError::NoSuchKey)?;
    Ok(Reply::Ok)
}

pub fn lrem(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let count = int_arg(a[2])?;
    let target = a[3];
    let r = write(s, ctx, a[1], false, |l: &mut List, _| {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        // Which positions go: the first `limit` matches from the chosen end.
        let matches: Vec<usize> = if count < 0 {
            let len = l.len();
            l.iter()
                .rev()
                .enumerate()
                .filter(|(_, v)| v.as_slice() == target)
                .map(|(i, _)| len - 1 - i)
                .take(limit)
                .collect()
        } else {
            l.iter()
                .enumerate()
                .filter(|(_, v)| v.as_slice() == target)
                .map(|(i, _)| i)
                .take(limit)
                .collect()
        };
        if matches.is_empty() {
            return Ok((0, false));
        }
        let gone: std::collections::HashSet<usize> = matches.into_iter().collect();
        let n = l.retain(|i, _| !gone.contains(&i));
        Ok((n as i64, true))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn ltrim(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (start, stop) = (int_arg(a[2])?, int_arg(a[3])?);
    write(s, ctx, a[1], false, |l: &mut List, _| {
        let before = l.len();
        match index_range(start, stop, l.len()) {
            None => l.retain_range(0, 0),
            Some((b, e)) => l.retain_range(b, e),
        }
        Ok(((), l.len() != before))
    })?;
    Ok(Reply::Ok)
}

pub fn linsert(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let after = if is(a[2], "after") {
        true
    } else if is(a[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let r = write(s, ctx, a[1], false, |l: &mut List, _| {
        let at = l.iter().position(|v| v.as_slice() == a[3]);
        match at {
            None => Ok((-1, false)),
            Some(i) => {
                l.insert(if after { i + 1 } else { i }, a[4].to_vec());
                Ok((l.len() as i64, true))
            }
        }
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn lpos(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<usize>, 0usize);
    let mut i = 3;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        let n = int_arg(a[i + 1])?;
        if is(a[i], "rank") {
            if n == 0 {
                return Err(CmdError::other(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            // Redis 7.0 negates i64::MIN into itself and then behaves as
            // RANK -1.
            rank = if n == i64::MIN { -1 } else { n };
        } else if is(a[i], "count") {
            if n < 0 {
                return Err(CmdError::other("COUNT can't be negative"));
            }
            count = Some(n as usize);
        } else if is(a[i], "maxlen") {
            if n < 0 {
                return Err(CmdError::other("MAXLEN can't be negative"));
            }
            maxlen = n as usize;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let want = match count {
        None => 1,
        Some(0) => usize::MAX,
        Some(n) => n,
    };
    let found = read(s, ctx, a[1], |l: &List| {
        let len = l.len();
        let scan = if maxlen == 0 { len } else { maxlen.min(len) };
        let skip = (rank.unsigned_abs() - 1) as usize;
        let it: Box<dyn Iterator<Item = (usize, &Vec<u8>)>> = if rank > 0 {
            Box::new(l.iter().enumerate().take(scan))
        } else {
            Box::new(
                l.iter()
                    .rev()
                    .enumerate()
                    .take(scan)
                    .map(move |(i, v)| (len - 1 - i, v)),
            )
        };
        it.filter(|(_, v)| v.as_slice() == a[2])
            .skip(skip)
            .take(want)
            .map(|(i, _)| i as i64)
            .collect::<Vec<_>>()
    })?
    .unwrap_or_default();
    Ok(match count {
        None => found.first().map_or(Reply::Nil, |&i| Reply::Int(i)),
        Some(_) => Reply::Array(found.into_iter().map(Reply::Int).collect()),
    })
}

/// Pops from `src` and pushes onto `dst` (both on this shard). `None` when
/// `src` is absent or empty.
fn move_one(
    s: &mut Shard,
    ctx: &Ctx,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Option<Vec<u8>>, CmdError> {
    if read(s, ctx, src, |_: &List| ())?.is_none() {
        return Ok(None);
    }
    // The destination's type is checked before anything moves.
    read(s, ctx, dst, |_: &List| ())?;
    let Some(v) = pop_n(s, ctx, src, from, 1)?.and_then(|p| p.into_iter().next()) else {
        return Ok(None);
    };
    let item = v.clone();
    write(s, ctx, dst, true, |l: &mut List, _| {
        match to {
            End::Left => l.push_front(item),
            End::Right => l.push_back(item),
        }
        Ok(((), true))
    })?;
    Ok(Some(v))
}

pub fn lmove(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (from, to) = (end_arg(a[3])?, end_arg(a[4])?);
    Ok(move_one(s, ctx, a[1], a[2], from, to)?.map_or(Reply::Nil, Reply::Bulk))
}

pub fn rpoplpush(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(move_one(s, ctx, a[1], a[2], End::Right, End::Left)?.map_or(Reply::Nil, Reply::Bulk))
}

pub fn lmpop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis's order: numkeys, the direction (a syntax error when there are
    // fewer arguments than keys), then the options one by one.
    let n = match int_arg(a[1]) {
        Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(CmdError::other("numkeys should be greater than 0")),
    };
    if a.len().saturating_sub(3) < n {
        return Err(CmdError::Syntax);
    }
    let keys = &a[2..2 + n];
    let end = end_arg(a[2 + n])?;
    let mut count = None;
    let mut j = 3 + n;
    while j < a.len() {
        if count.is_none() && is(a[j], "count") && j + 1 < a.len() {
            count = Some(match int_arg(a[j + 1]) {
                Ok(n) if n > 0 => n as usize,
                _ => return Err(CmdError::other("count should be greater than 0")),
            });
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let count = count.unwrap_or(1);
    for &k in keys {
        if let Some(p) = pop_n(s, ctx, k, end, count)? {
            if !p.is_empty() {
                return Ok(Reply::Array(vec![Reply::bulk(k), Reply::bulks(p)]));
            }
        }
    }
    Ok(Reply::NilArray)
}
