//! Hash commands: HSET, HGET, HINCRBY, HRANDFIELD, HSCAN and friends. Every
//! field written is stamped with the write's HLC time.

use keel_shards::hash::FieldRef;
use keel_shards::journal::Rewrite;
use keel_shards::{Hash, Shard};

use super::error::{CmdError, CmdResult};
use super::{distinct_items, is, rand_count, read, scan_prelude, scan_reply, write, Ctx, Rng};
use crate::cmd::numbers::{incr_by_float, int_arg, parse_i64};
use crate::resp::reply::Reply;

fn bulk_or_nil(f: Option<FieldRef<'_>>) -> Reply {
    f.map_or(Reply::Nil, |f| Reply::Bulk(f.value.to_vec()))
}

fn hset_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> Result<i64, CmdError> {
    if !a.len().is_multiple_of(2) {
        return Err(CmdError::Arity(
            String::from_utf8_lossy(a[0]).to_lowercase(),
        ));
    }
    let added = write(s, ctx, a[1], true, |h: &mut Hash, hlc| {
        let n = a[2..]
            .chunks_exact(2)
            .filter(|p| h.insert(p[0], p[1].to_vec(), hlc))
            .count();
        Ok((n as i64, true))
    })?;
    Ok(added.unwrap_or(0))
}

pub fn hset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(hset_generic(s, ctx, a)?))
}

pub fn hmset(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    hset_generic(s, ctx, a)?;
    Ok(Reply::Ok)
}

pub fn hsetnx(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = write(s, ctx, a[1], true, |h: &mut Hash, hlc| {
        if h.get(a[2]).is_some() {
            return Ok((0, false));
        }
        h.insert(a[2], a[3].to_vec(), hlc);
        Ok((1, true))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn hget(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(read(s, ctx, a[1], |h: &Hash| bulk_or_nil(h.get(a[2])))?.unwrap_or(Reply::Nil))
}

pub fn hmget(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let fields = &a[2..];
    Ok(read(s, ctx, a[1], |h: &Hash| {
        Reply::Array(fields.iter().map(|f| bulk_or_nil(h.get(f))).collect())
    })?
    .unwrap_or_else(|| Reply::Array(vec![Reply::Nil; fields.len()])))
}

pub fn hgetall(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Map(
        read(s, ctx, a[1], |h: &Hash| {
            h.iter()
                .map(|(k, f)| (Reply::bulk(k), Reply::Bulk(f.value.to_vec())))
                .collect()
        })?
        .unwrap_or_default(),
    ))
}

pub fn hkeys(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Array(
        read(s, ctx, a[1], |h: &Hash| {
            h.iter().map(|(k, _)| Reply::bulk(k)).collect()
        })?
        .unwrap_or_default(),
    ))
}

pub fn hvals(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Array(
        read(s, ctx, a[1], |h: &Hash| {
            h.iter()
                .map(|(_, f)| Reply::Bulk(f.value.to_vec()))
                .collect()
        })?
        .unwrap_or_default(),
    ))
}

pub fn hlen(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |h: &Hash| h.len() as i64)?.unwrap_or(0),
    ))
}

pub fn hstrlen(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |h: &Hash| {
            h.get(a[2]).map_or(0, |f| f.value.len() as i64)
        })?
        .unwrap_or(0),
    ))
}

pub fn hexists(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(
        read(s, ctx, a[1], |h: &Hash| h.get(a[2]).is_some() as i64)?.unwrap_or(0),
    ))
}

pub fn hdel(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = write(s, ctx, a[1], false, |h: &mut Hash, _| {
        let n = a[2..].iter().filter(|f| h.remove(f)).count();
        Ok((n as i64, n > 0))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn hincrby(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let delta = int_arg(a[3])?;
    let r = write(s, ctx, a[1], true, |h: &mut Hash, hlc| {
        let current = match h.get(a[2]) {
            None => 0,
            Some(f) => {
                parse_i64(f.value).ok_or_else(|| CmdError::other("hash value is not an integer"))?
            }
        };
        let next = current.checked_add(delta).ok_or(CmdError::Overflow)?;
        h.insert(a[2], next.to_string().into_bytes(), hlc);
        Ok((next, true))
    })?;
    Ok(Reply::Int(r.unwrap_or(0)))
}

pub fn hincrbyfloat(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Check the increment first: a bad one is "not a valid float", not
    // "hash value is not a float".
    crate::cmd::numbers::ld_incr_arg(a[3])?;
    // An infinite increment is refused before the key is looked at (a long
    // double holds 1e400, so only the words spell infinity here).
    let word = String::from_utf8_lossy(a[3]).to_ascii_lowercase();
    if matches!(word.trim_start_matches(['+', '-']), "inf" | "infinity") {
        return Err(CmdError::other("value is NaN or Infinity"));
    }
    let r = write(s, ctx, a[1], true, |h: &mut Hash, hlc| {
        let current = h.get(a[2]).map_or(b"0".to_vec(), |f| f.value.to_vec());
        let next = incr_by_float(&current, a[3]).map_err(|e| match e {
            CmdError::NotFloat => CmdError::other("hash value is not a float"),
            e => e,
        })?;
        h.insert(a[2], next.clone(), hlc);
        Ok((next, true))
    })?;
    // Float arithmetic may differ between machines: record the result.
    if let Some(next) = &r {
        s.rewrite(Rewrite::cmd(&[b"HSET", a[1], a[2], next]));
    }
    Ok(r.map_or(Reply::Nil, Reply::Bulk))
}

pub fn hrandfield(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Redis parses the count before it checks the rest.
    let count = if a.len() > 2 {
        Some(rand_count(a[2])?)
    } else {
        None
    };
    let with_values = match a.len() {
        2 | 3 => false,
        4 if is(a[3], "withvalues") => true,
        _ => return Err(CmdError::Syntax),
    };
    if with_values && count.is_some_and(|n| n.unsigned_abs() > i64::MAX as u64 / 2) {
        return Err(CmdError::other("value is out of range"));
    }
    let mut rng = Rng::new(s);
    let picks = read(s, ctx, a[1], |h: &Hash| {
        let pick = |r: u64| h.sample(r).map(|(k, f)| (k.to_vec(), f.value.to_vec()));
        match count {
            None => pick(rng.next_u64()).into_iter().collect(),
            Some(n) if n < 0 => (0..n.unsigned_abs())
                .filter_map(|_| pick(rng.next_u64()))
                .collect(),
            Some(n) => distinct_items(&mut rng, h.len(), n as usize, pick, || {
                h.iter()
                    .map(|(k, f)| (k.to_vec(), f.value.to_vec()))
                    .collect()
            }),
        }
    })?;
    let picks: Vec<(Vec<u8>, Vec<u8>)> = match (picks, count) {
        (None, None) => return Ok(Reply::Nil),
        (None, Some(_)) => return Ok(Reply::Array(vec![])),
        (Some(p), None) => {
            return Ok(p
                .into_iter()
                .next()
                .map_or(Reply::Nil, |(k, _)| Reply::Bulk(k)))
        }
        (Some(p), Some(_)) => p,
    };
    Ok(if with_values {
        Reply::Pairs(
            picks
                .into_iter()
                .map(|(k, v)| (Reply::Bulk(k), Reply::Bulk(v)))
                .collect(),
        )
    } else {
        Reply::bulks(picks.into_iter().map(|(k, _)| k))
    })
}

pub fn hscan(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let Some(o) = scan_prelude::<Hash>(s, ctx, a)? else {
        return Ok(scan_reply(0, vec![]));
    };
    let r = read(s, ctx, a[1], |h: &Hash| {
        let mut items = Vec::new();
        let next = h.scan(o.cursor, o.count, |k, f| {
            if o.matches(k) {
                items.push(Reply::bulk(k));
                items.push(Reply::Bulk(f.value.to_vec()));
            }
        });
        scan_reply(next, items)
    })?;
    Ok(r.unwrap_or_else(|| scan_reply(0, vec![])))
}
