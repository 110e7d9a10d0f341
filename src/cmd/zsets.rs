//! Sorted-set commands: ZADD and its flags, scores, ranks, the ZRANGE family
//! (by rank, score and lex, REV, LIMIT, WITHSCORES), removals by range, pops,
//! ZRANDMEMBER, the ZUNION/ZINTER/ZDIFF family, ZSCAN.
//!
//! Ranges resolve to rank windows on the treap first (`score_ranks`,
//! `lex_ranks`: O(log n)), then walk only the window, so a LIMIT never pays
//! for what it skips.

use std::collections::HashMap;

use keel_shards::zset::{LexBound, ScoreBound};
use keel_shards::{Entry, Shard, Value, ValueRef, ZSet};

use super::error::{CmdError, CmdResult};
use super::lists::index_range;
use super::{is, rand_count, read, scan_prelude, scan_reply, write, Ctx, Rng};
use crate::cmd::numbers::int_arg;
use crate::resp::encode::format_double;
use crate::resp::reply::Reply;

/// A score argument as Redis's `getDoubleFromObject` reads it (strtod: hex
/// floats and `inf` too; no NaN, no overflow). `-0` stays `-0` here; stored
/// scores are normalized to `0` as Redis's listpack encoding does.
fn parse_score(s: &[u8]) -> Option<f64> {
    crate::cmd::numbers::parse_double(s)
}

fn score_arg(s: &[u8]) -> Result<f64, CmdError> {
    parse_score(s).ok_or(CmdError::NotFloat)
}

fn score_bound(s: &[u8]) -> Result<ScoreBound, CmdError> {
    let err = || CmdError::other("min or max is not a float");
    match s.strip_prefix(b"(") {
        Some(rest) => Ok(ScoreBound {
            value: crate::cmd::numbers::parse_range_double(rest).ok_or_else(err)?,
            exclusive: true,
        }),
        None => Ok(ScoreBound {
            value: crate::cmd::numbers::parse_range_double(s).ok_or_else(err)?,
            exclusive: false,
        }),
    }
}

fn lex_bound(s: &[u8]) -> Result<LexBound, CmdError> {
    match s {
        b"+" => Ok(LexBound::Max),
        b"-" => Ok(LexBound::Min),
        [b'[', rest @ ..] => Ok(LexBound::Inclusive(rest.to_vec())),
        [b'(', rest @ ..] => Ok(LexBound::Exclusive(rest.to_vec())),
        _ => Err(CmdError::other("min or max not valid string range item")),
    }
}

fn scored(items: Vec<(Vec<u8>, f64)>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Reply::Bulk(m), Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::bulks(items.into_iter().map(|(m, _)| m))
    }
}

pub fn zadd(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let f = a[i];
        if is(f, "nx") {
            nx = true;
        } else if is(f, "xx") {
            xx = true;
        } else if is(f, "gt") {
            gt = true;
        } else if is(f, "lt") {
            lt = true;
        } else if is(f, "ch") {
            ch = true;
        } else if is(f, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    if nx && xx {
        return Err(CmdError::other(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(CmdError::other(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && rest.len() > 2 {
        return Err(CmdError::other(
            "INCR option supports a single increment-element pair",
        ));
    }
    let pairs: Vec<(f64, &[u8])> = rest
        .chunks_exact(2)
        .map(|p| Ok((score_arg(p[0])?, p[1])))
        .collect::<Result<_, CmdError>>()?;
    let r = write(s, ctx, a[1], !xx, |z: &mut ZSet, hlc| {
        let (mut added, mut changed) = (0i64, 0i64);
        let mut last: Option<f64> = None;
        for &(score, m) in &pairs {
            match z.score(m) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { score };
                    if new.is_nan() {
                        return Err(CmdError::other("resulting score is not a number (NaN)"));
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    last = Some(new);
                    if new != cur {
                        z.insert(m, new + 0.0, hlc);
                        changed += 1;
                    }
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.insert(m, score + 0.0, hlc);
                    added += 1;
                    last = Some(score);
                }
            }
        }
        let reply = if incr {
            last.map_or(Reply::Nil, Reply::Double)
        } else {
            Reply::Int(if ch { added + changed } else { added })
        };
        Ok((reply, added + changed > 0))
    })?;
    Ok(r.unwrap_or(if incr { Reply::Nil } else { Reply::Int(0) }))
}

pub fn zincrby(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let by = score_arg(a[2])?;
    let r = write(s, ctx, a[1], true, |z: &mut ZSet, hlc| {
        // A new member's score is the increment itself (so `-0` answers
        // `-0`), as in Redis.
        let new = z.score(a[3]).map_or(by, |cur| cur + by);
        if new.is_nan() {
            return Err(CmdError::other("resulting score is not a number (NaN)"));
        }
        z.insert(a[3], new + 0.0, hlc);
        Ok((new, true))
    })?;
    Ok(r.map_or(Reply::Nil, Reply::Double))
}

pub fn zrem(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = write(s, ctx, a[1], false, |z: &mut ZSet, _| {
        let n = a[2..].iter().filter(|m| z.remove(m).is_some()).count();
        Ok((n as i64, n > 0))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn zscore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = read(s, ctx, a[1], |z: &ZSet| z.score(a[2]))?;
    Ok(r.flatten().map_or(Reply::Nil, Reply::Double))
}

pub fn zmscore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let ms = &a[2..];
    let r = read(s, ctx, a[1], |z: &ZSet| {
        ms.iter()
            .map(|m| z.score(m).map_or(Reply::Nil, Reply::Double))
            .collect()
    })?;
    Ok(Reply::Array(
        r.unwrap_or_else(|| vec![Reply::Nil; ms.len()]),
    ))
}

pub fn zcard(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |z: &ZSet| z.len() as i64)?.unwrap_or(0),
    ))
}

pub fn zcount(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (min, max) = (score_bound(a[2])?, score_bound(a[3])?);
    let r = read(s, ctx, a[1], |z: &ZSet| {
        let (b, e) = z.score_ranks(min, max);
        (e - b) as i64
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn zlexcount(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (min, max) = (lex_bound(a[2])?, lex_bound(a[3])?);
    let r = read(s, ctx, a[1], |z: &ZSet| {
        let (b, e) = z.lex_ranks(&min, &max, false);
        (e - b) as i64
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

fn rank_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], rev: bool) -> CmdResult {
    let r = read(s, ctx, a[1], |z: &ZSet| {
        z.rank(a[2]).map(|r| if rev { z.len() - 1 - r } else { r })
    })?;
    Ok(r.flatten().map_or(Reply::Nil, |r| Reply::Int(r as i64)))
}

pub fn zrank(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    rank_generic(s, ctx, a, false)
}

pub fn zrevrank(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    rank_generic(s, ctx, a, true)
}

/// What a ZRANGE-family command selects.
enum By {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

struct Range {
    by: By,
    rev: bool,
    /// LIMIT offset count (count < 0: no limit).
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

/// Which ZRANGE-family syntax is being parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// ZRANGE / ZRANGESTORE: BYSCORE, BYLEX, REV, LIMIT (+ WITHSCORES).
    Auto { store: bool },
    /// The older commands, whose name fixes the kind and direction.
    Fixed { kind: Kind, rev: bool },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// Parses `min max [options]` (`a` starts at min).
fn parse_range(a: &[&[u8]], syntax: Syntax) -> Result<Range, CmdError> {
    let (mut kind, mut rev) = match syntax {
        Syntax::Auto { .. } => (Kind::Rank, false),
        Syntax::Fixed { kind, rev } => (kind, rev),
    };
    let auto = matches!(syntax, Syntax::Auto { .. });
    let (mut limit, mut with_scores) = (None, false);
    let mut i = 2;
    while i < a.len() {
        let o = a[i];
        if is(o, "withscores") && syntax != (Syntax::Auto { store: true }) {
            with_scores = true;
        } else if is(o, "limit") && i + 2 < a.len() {
            limit = Some((int_arg(a[i + 1])?, int_arg(a[i + 2])?));
            i += 2;
        } else if auto && is(o, "byscore") && kind != Kind::Lex {
            kind = Kind::Score;
        } else if auto && is(o, "bylex") && kind != Kind::Score {
            kind = Kind::Lex;
        } else if auto && is(o, "rev") && !rev {
            rev = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    // Redis refuses a LIMIT on ranks only when it limits: `LIMIT n -1` is
    // accepted, and ignored.
    if kind == Kind::Rank && limit.is_some_and(|(_, count)| count != -1) {
        return Err(CmdError::other(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == Kind::Lex {
        return Err(CmdError::other(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Reverse ranges name the maximum first.
    let (lo, hi) = if rev && kind != Kind::Rank {
        (a[1], a[0])
    } else {
        (a[0], a[1])
    };
    let by = match kind {
        Kind::Rank => By::Rank(int_arg(lo)?, int_arg(hi)?),
        Kind::Score => By::Score(score_bound(lo)?, score_bound(hi)?),
        Kind::Lex => By::Lex(lex_bound(lo)?, lex_bound(hi)?),
    };
    Ok(Range {
        by,
        rev,
        limit,
        with_scores,
    })
}

/// The members and scores a range selects, in reply order.
fn select(z: &ZSet, r: &Range) -> Vec<(Vec<u8>, f64)> {
    let len = z.len();
    // A window [b, e) of ascending ranks, walked up or down.
    let (b, e) = match &r.by {
        By::Rank(start, stop) => {
            let Some((b, e)) = index_range(*start, *stop, len) else {
                return vec![];
            };
            if r.rev {
                (len - e, len - b)
            } else {
                (b, e)
            }
        }
        By::Score(min, max) => z.score_ranks(*min, *max),
        By::Lex(min, max) => z.lex_ranks(min, max, r.rev),
    };
    if let (By::Lex(min, max), Some((offset, count))) = (&r.by, r.limit) {
        return lex_walk(z, (b, e), min, max, r.rev, offset, count);
    }
    let (b, e) = match r.limit {
        None => (b, e),
        Some(_) if matches!(r.by, By::Rank(..)) => (b, e),
        Some((offset, _)) if offset < 0 => return vec![],
        Some((offset, count)) => {
            let offset = (offset as usize).min(e - b);
            let count = if count < 0 {
                e - b - offset
            } else {
                (count as usize).min(e - b - offset)
            };
            if r.rev {
                (e - offset - count, e - offset)
            } else {
                (b + offset, b + offset + count)
            }
        }
    };
    let mut out = Vec::with_capacity(e - b);
    z.range(b, e, |s, m| out.push((m.to_vec(), s)));
    if r.rev {
        out.reverse();
    }
    out
}

/// Whether `m` lies below a lex range's minimum.
fn below_lex_min(min: &LexBound, m: &[u8]) -> bool {
    match min {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Inclusive(b) => m < b.as_slice(),
        LexBound::Exclusive(b) => m <= b.as_slice(),
    }
}

/// Whether `m` lies within a lex range's maximum.
fn within_lex_max(max: &LexBound, m: &[u8]) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Inclusive(b) => m <= b.as_slice(),
        LexBound::Exclusive(b) => m < b.as_slice(),
    }
}

/// A lex range with LIMIT, walked as Redis walks it: from the first member
/// in range (backward: the last), skip `offset` members without looking at
/// them, then take members while they stay within the far bound. This only
/// differs from slicing the window when scores are not all equal.
fn lex_walk(
    z: &ZSet,
    (b, e): (usize, usize),
    min: &LexBound,
    max: &LexBound,
    rev: bool,
    offset: i64,
    count: i64,
) -> Vec<(Vec<u8>, f64)> {
    if offset < 0 || b >= e {
        return vec![];
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if rev {
        let Some(mut p) = (e - 1).checked_sub(offset) else {
            return out;
        };
        while out.len() < count {
            let Some((sc, m)) = z.nth(p) else { break };
            if below_lex_min(min, m) {
                break;
            }
            out.push((m.to_vec(), sc));
            let Some(q) = p.checked_sub(1) else { break };
            p = q;
        }
    } else {
        let mut p = b.saturating_add(offset);
        while out.len() < count {
            let Some((sc, m)) = z.nth(p) else { break };
            if !within_lex_max(max, m) {
                break;
            }
            out.push((m.to_vec(), sc));
            p += 1;
        }
    }
    out
}

fn range_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], syntax: Syntax) -> CmdResult {
    let r = parse_range(&a[2..], syntax)?;
    let items = read(s, ctx, a[1], |z: &ZSet| select(z, &r))?.unwrap_or_default();
    Ok(scored(items, r.with_scores))
}

pub fn zrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    range_generic(s, ctx, a, Syntax::Auto { store: false })
}

pub fn zrevrange(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let kind = Kind::Rank;
    range_generic(s, ctx, a, Syntax::Fixed { kind, rev: true })
}

pub fn zrangebyscore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let kind = Kind::Score;
    range_generic(s, ctx, a, Syntax::Fixed { kind, rev: false })
}

pub fn zrevrangebyscore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let kind = Kind::Score;
    range_generic(s, ctx, a, Syntax::Fixed { kind, rev: true })
}

pub fn zrangebylex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let kind = Kind::Lex;
    range_generic(s, ctx, a, Syntax::Fixed { kind, rev: false })
}

pub fn zrevrangebylex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let kind = Kind::Lex;
    range_generic(s, ctx, a, Syntax::Fixed { kind, rev: true })
}

/// Stores `items` as the sorted set at `dst` (deleting it when empty);
/// returns the count. One write.
pub(crate) fn store(s: &mut Shard, ctx: &Ctx, dst: &[u8], items: Vec<(Vec<u8>, f64)>) -> i64 {
    if items.is_empty() {
        s.delete(ctx.db, dst, ctx.now_ms);
        return 0;
    }
    let hlc = s.hlc_now(ctx.now_ms);
    let mut z = ZSet::default();
    for (m, sc) in &items {
        z.insert(m, *sc + 0.0, hlc);
    }
    let n = z.len() as i64;
    s.set(ctx.db, dst, Entry::new(Value::ZSet(z), 0), ctx.now_ms);
    n
}

pub fn zrangestore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = parse_range(&a[3..], Syntax::Auto { store: true })?;
    let items = read(s, ctx, a[2], |z: &ZSet| select(z, &r))?.unwrap_or_default();
    Ok(Reply::Int(store(s, ctx, a[1], items)))
}

fn remrange(s: &mut Shard, ctx: &Ctx, key: &[u8], by: By) -> CmdResult {
    let r = write(s, ctx, key, false, |z: &mut ZSet, _| {
        let range = Range {
            by,
            rev: false,
            limit: None,
            with_scores: false,
        };
        let gone = select(z, &range);
        for (m, _) in &gone {
            z.remove(m);
        }
        Ok((gone.len() as i64, !gone.is_empty()))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn zremrangebyscore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let by = By::Score(score_bound(a[2])?, score_bound(a[3])?);
    remrange(s, ctx, a[1], by)
}

pub fn zremrangebyrank(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let by = By::Rank(int_arg(a[2])?, int_arg(a[3])?);
    remrange(s, ctx, a[1], by)
}

pub fn zremrangebylex(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let by = By::Lex(lex_bound(a[2])?, lex_bound(a[3])?);
    remrange(s, ctx, a[1], by)
}

/// Pops up to `n` of the lowest (or highest) members of the sorted set at
/// `key`, in pop order; `None` when the key is absent.
fn pop_members(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    n: usize,
    max: bool,
) -> Result<Option<Scored>, CmdError> {
    write(s, ctx, key, false, |z: &mut ZSet, _| {
        let len = z.len();
        let k = n.min(len);
        let mut out = Vec::with_capacity(k);
        let (b, e) = if max { (len - k, len) } else { (0, k) };
        z.range(b, e, |sc, m| out.push((m.to_vec(), sc)));
        if max {
            out.reverse();
        }
        for (m, _) in &out {
            z.remove(m);
        }
        let wrote = !out.is_empty();
        Ok((out, wrote))
    })
}

fn pop_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], max: bool) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => Some(
            int_arg(a[2])
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::other("value is out of range, must be positive"))?
                as usize,
        ),
        _ => return Err(CmdError::Syntax),
    };
    let popped = pop_members(s, ctx, a[1], count.unwrap_or(1), max)?.unwrap_or_default();
    Ok(match count {
        Some(_) => scored(popped, true),
        None => Reply::Array(
            popped
                .into_iter()
                .flat_map(|(m, sc)| [Reply::Bulk(m), Reply::Double(sc)])
                .collect(),
        ),
    })
}

pub fn zpopmin(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    pop_generic(s, ctx, a, false)
}

pub fn zpopmax(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    pop_generic(s, ctx, a, true)
}

pub fn zrandmember(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis parses the count before it checks the rest.
    let count = if a.len() > 2 {
        Some(rand_count(a[2])?)
    } else {
        None
    };
    let with_scores = match a.len() {
        2 | 3 => false,
        4 if is(a[3], "withscores") => true,
        _ => return Err(CmdError::Syntax),
    };
    if with_scores && count.is_some_and(|n| n.unsigned_abs() > i64::MAX as u64 / 2) {
        return Err(CmdError::other("value is out of range"));
    }
    let mut rng = Rng::new(s);
    let picks = read(s, ctx, a[1], |z: &ZSet| {
        let len = z.len();
        let at = |i: usize| z.nth(i).map(|(sc, m)| (m.to_vec(), sc));
        match count {
            None => at(rng.below(len)).into_iter().collect(),
            Some(n) if n < 0 => (0..n.unsigned_abs())
                .filter_map(|_| at(rng.below(len)))
                .collect(),
            Some(n) if n as usize >= len => {
                let mut all = Vec::with_capacity(len);
                z.range(0, len, |sc, m| all.push((m.to_vec(), sc)));
                all
            }
            Some(n) => rng
                .distinct(len, n as usize)
                .into_iter()
                .filter_map(at)
                .collect::<Vec<_>>(),
        }
    })?;
    Ok(match (count, picks) {
        (None, p) => p
            .and_then(|p| p.into_iter().next())
            .map_or(Reply::Nil, |(m, _)| Reply::Bulk(m)),
        (Some(_), p) => scored(p.unwrap_or_default(), with_scores),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// Members with their scores, in whatever order.
type Scored = Vec<(Vec<u8>, f64)>;

/// The members and scores of a sorted set or (score 1) a plain set at `key`.
fn scored_members(s: &mut Shard, ctx: &Ctx, key: &[u8]) -> Result<Option<Scored>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms).map(|e| e.value()) {
        None => Ok(None),
        Some(ValueRef::ZSet(z)) => Ok(Some(z.iter().map(|(m, sc)| (m.to_vec(), sc)).collect())),
        Some(ValueRef::Set(set)) => Ok(Some(set.iter().map(|(m, _)| (m.to_vec(), 1.0)).collect())),
        Some(_) => Err(CmdError::WrongType),
    }
}

/// ZUNION / ZINTER / ZDIFF and their STORE forms. `at` is the numkeys
/// index; returns the result in score order and whether WITHSCORES was set.
fn setop(
    s: &mut Shard,
    ctx: &Ctx,
    a: &[&[u8]],
    at: usize,
    op: SetOp,
    store: bool,
) -> Result<(Scored, bool), CmdError> {
    let n = int_arg(a[at])?;
    if n < 1 {
        return Err(CmdError::other(format!(
            "at least 1 input key is needed for '{}' command",
            String::from_utf8_lossy(a[0]).to_lowercase()
        )));
    }
    let n = n as usize;
    if n > a.len() - at - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[at + 1..at + 1 + n];
    // Redis reads (and type-checks) the inputs before it parses the options.
    let mut inputs = Vec::with_capacity(n);
    for k in keys {
        inputs.push(scored_members(s, ctx, k)?);
    }
    let mut weights = vec![1.0; n];
    let mut agg = Aggregate::Sum;
    let mut with_scores = false;
    let mut i = at + 1 + n;
    while i < a.len() {
        if op != SetOp::Diff && is(a[i], "weights") && i + n < a.len() {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = parse_score(a[i + 1 + j])
                    .ok_or_else(|| CmdError::other("weight value is not a float"))?;
            }
            i += n + 1;
        } else if op != SetOp::Diff && is(a[i], "aggregate") && i + 1 < a.len() {
            agg = if is(a[i + 1], "sum") {
                Aggregate::Sum
            } else if is(a[i + 1], "min") {
                Aggregate::Min
            } else if is(a[i + 1], "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            i += 2;
        } else if !store && is(a[i], "withscores") {
            with_scores = true;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let weigh = |sc: f64, w: f64| {
        let v = sc * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let combine = |x: f64, y: f64| match agg {
        Aggregate::Sum => {
            let v = x + y;
            if v.is_nan() {
                0.0
            } else {
                v
            }
        }
        Aggregate::Min => x.min(y),
        Aggregate::Max => x.max(y),
    };
    let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
    match op {
        SetOp::Union => {
            // As Redis: smallest input first (a stable sort). The order
            // matters where floating-point sums do not commute (inf - inf).
            let mut sorted: Vec<(Scored, f64)> = inputs
                .into_iter()
                .map(Option::unwrap_or_default)
                .zip(weights.iter().copied())
                .collect();
            sorted.sort_by_key(|(input, _)| input.len());
            for (input, w) in sorted {
                for (m, sc) in input {
                    let v = weigh(sc, w);
                    acc.entry(m)
                        .and_modify(|x| *x = combine(*x, v))
                        .or_insert(v);
                }
            }
        }
        SetOp::Inter => {
            if inputs.iter().all(|i| i.is_some()) {
                // As Redis: smallest input first (a stable sort), and only
                // its weighted scores are cleared of NaN before aggregating.
                let mut sorted: Vec<(Scored, f64)> =
                    inputs.into_iter().flatten().zip(weights).collect();
                sorted.sort_by_key(|(input, _)| input.len());
                let mut it = sorted.into_iter();
                if let Some((first, w)) = it.next() {
                    acc = first.into_iter().map(|(m, sc)| (m, weigh(sc, w))).collect();
                }
                for (input, w) in it {
                    let other: HashMap<Vec<u8>, f64> = input.into_iter().collect();
                    acc.retain(|m, x| match other.get(m) {
                        Some(sc) => {
                            *x = combine(*x, *sc * w);
                            true
                        }
                        None => false,
                    });
                }
            }
        }
        SetOp::Diff => {
            let mut it = inputs.into_iter();
            if let Some(first) = it.next() {
                acc = first.unwrap_or_default().into_iter().collect();
            }
            for input in it {
                for (m, _) in input.unwrap_or_default() {
                    acc.remove(&m);
                }
            }
        }
    }
    let mut out: Vec<(Vec<u8>, f64)> = acc.into_iter().collect();
    out.sort_by(|x, y| {
        x.1.partial_cmp(&y.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| x.0.cmp(&y.0))
    });
    Ok((out, with_scores))
}

fn setop_reply(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], op: SetOp) -> CmdResult {
    let (items, with_scores) = setop(s, ctx, a, 1, op, false)?;
    Ok(scored(items, with_scores))
}

fn setop_store(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], op: SetOp) -> CmdResult {
    let (items, _) = setop(s, ctx, a, 2, op, true)?;
    Ok(Reply::Int(store(s, ctx, a[1], items)))
}

pub fn zunion(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_reply(s, ctx, a, SetOp::Union)
}

pub fn zinter(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_reply(s, ctx, a, SetOp::Inter)
}

pub fn zdiff(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_reply(s, ctx, a, SetOp::Diff)
}

pub fn zunionstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_store(s, ctx, a, SetOp::Union)
}

pub fn zinterstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_store(s, ctx, a, SetOp::Inter)
}

pub fn zdiffstore(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    setop_store(s, ctx, a, SetOp::Diff)
}

pub fn zscan(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let Some(o) = scan_prelude::<ZSet>(s, ctx, a)? else {
        return Ok(scan_reply(0, vec![]));
    };
    let r = read(s, ctx, a[1], |z: &ZSet| {
        let mut items = Vec::new();
        let next = z.scan(o.cursor, o.count, |m, sc| {
            if o.matches(m) {
                items.push(Reply::bulk(m));
                items.push(Reply::Bulk(format_double(sc).into_bytes()));
            }
        });
        scan_reply(next, items)
    })?;
    Ok(r.unwrap_or_else(|| scan_reply(0, vec![])))
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]: how many members every
/// input (sorted set or set) holds, counting stops at `limit` (0: none).
pub fn zintercard(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let n = int_arg(a[1])?;
    if n < 1 {
        return Err(CmdError::other(
            "at least 1 input key is needed for 'zintercard' command",
        ));
    }
    let n = n as usize;
    if n > a.len() - 2 {
        return Err(CmdError::Syntax);
    }
    // Inputs are read (and type-checked) before the options, as Redis does.
    let mut inputs = Vec::with_capacity(n);
    for k in &a[2..2 + n] {
        inputs.push(scored_members(s, ctx, k)?);
    }
    let mut limit = 0usize;
    let mut i = 2 + n;
    while i < a.len() {
        if is(a[i], "limit") && i + 1 < a.len() {
            limit = match int_arg(a[i + 1]) {
                Ok(l) if l >= 0 => l as usize,
                _ => return Err(CmdError::other("LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(inputs) = inputs.into_iter().collect::<Option<Vec<Scored>>>() else {
        return Ok(Reply::Int(0)); // a missing key is an empty input
    };
    let mut sets: Vec<std::collections::HashSet<&[u8]>> = inputs
        .iter()
        .map(|s| s.iter().map(|(m, _)| m.as_slice()).collect())
        .collect();
    // Walk the smallest input, probing the others.
    sets.sort_by_key(|s| s.len());
    let (first, rest) = sets.split_at(1);
    let mut count = 0usize;
    for m in &first[0] {
        if rest.iter().all(|s| s.contains(m)) {
            count += 1;
            if count == limit {
                break;
            }
        }
    }
    Ok(Reply::Int(count as i64))
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]: pops from the first
/// of the keys that holds a sorted set; `[key, [[member, score], ...]]`.
pub fn zmpop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis's order: numkeys, MIN|MAX (a syntax error when there are fewer
    // arguments than keys), then the options.
    let n = match int_arg(a[1]) {
        Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(CmdError::other("numkeys should be greater than 0")),
    };
    if a.len().saturating_sub(3) < n {
        return Err(CmdError::Syntax);
    }
    let max = match a[2 + n] {
        w if is(w, "min") => false,
        w if is(w, "max") => true,
        _ => return Err(CmdError::Syntax),
    };
    let mut count = None;
    let mut j = 3 + n;
    while j < a.len() {
        if count.is_none() && is(a[j], "count") && j + 1 < a.len() {
            count = Some(match int_arg(a[j + 1]) {
                Ok(c) if c > 0 => c as usize,
                _ => return Err(CmdError::other("count should be greater than 0")),
            });
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    for &key in &a[2..2 + n] {
        if let Some(popped) = pop_members(s, ctx, key, count.unwrap_or(1), max)? {
            let items = popped
                .into_iter()
                .map(|(m, sc)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(sc)]))
                .collect();
            return Ok(Reply::Array(vec![Reply::bulk(key), Reply::Array(items)]));
        }
    }
    Ok(Reply::NilArray)
}
