//! HyperLogLog: PFADD PFCOUNT PFMERGE, on strings in Redis's own format
//! (`keel_shards::hll`), so a value moves between keel and Redis as bytes
//! and counts the same on both.
//!
//! One difference: PFCOUNT never writes. Redis stores the count it computed
//! in the value's header, which makes a read a replicated write; on keel a
//! PFCOUNT served by a backup would then change the backup alone. Instead
//! each core remembers the counts it computed, keyed by the key's write
//! stamp (its HLC), so a repeated PFCOUNT of an unchanged key is a lookup
//! there too. The stored bytes are what Redis would hold before its first
//! PFCOUNT: a valid value whose cache is marked stale.

use std::cell::RefCell;
use std::collections::HashMap;

use keel_shards::hll::{self, HllError};
use keel_shards::{Hlc, Shard, Value, ValueRef};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::Ctx;
use crate::resp::reply::Reply;

/// Counts remembered per core before the memo starts over.
const MEMO_MAX: usize = 4096;

type MemoKey = (usize, usize, Vec<u8>);

thread_local! {
    /// (shard, db, key) -> (the key's HLC, its value's length, the count).
    static COUNTS: RefCell<HashMap<MemoKey, (Hlc, usize, u64)>> = RefCell::new(HashMap::new());
}

fn hll_error(e: HllError) -> CmdError {
    CmdError::Raw(e.to_string())
}

/// The HyperLogLog at `key`: `None` when absent; WRONGTYPE for another
/// type, and Redis's HyperLogLog WRONGTYPE for a string that is not one.
fn read<'a>(s: &'a mut Shard, ctx: &Ctx, key: &[u8]) -> Result<Option<(&'a [u8], Hlc)>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms) {
        None => Ok(None),
        Some(e) => match e.value() {
            ValueRef::Str(v) if hll::is_valid(v) => Ok(Some((v, e.hlc()))),
            ValueRef::Str(_) => Err(hll_error(HllError::Invalid)),
            _ => Err(CmdError::WrongType),
        },
    }
}

pub fn pfadd(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let create = Some(Value::Str(hll::new()));
    let existed = s.peek(ctx.db, a[1], ctx.now_ms).is_some();
    let r = s.write(ctx.db, a[1], ctx.now_ms, create, |v, _| {
        let Value::Str(bytes) = v else {
            return (Err(CmdError::WrongType), false);
        };
        if !hll::is_valid(bytes) {
            return (Err(hll_error(HllError::Invalid)), false);
        }
        let mut changed = !existed;
        for e in &a[2..] {
            match hll::add(
                bytes,
                e,
                crate::server::config_table::hll_sparse_max_bytes(),
            ) {
                Ok(c) => changed |= c,
                // What was added before the damaged part stays, as in Redis.
                Err(err) => return (Err(hll_error(err)), changed),
            }
        }
        // A sparse value grows a few bytes at a time; what its Vec doubled
        // to would be most of its memory across many small HyperLogLogs.
        if bytes.capacity() > bytes.len() + bytes.len() / 4 {
            bytes.shrink_to(bytes.len() + bytes.len() / 8);
        }
        (Ok(Reply::Int(changed as i64)), changed)
    });
    r.unwrap_or(Err(CmdError::NoSuchKey))
}

pub fn pfcount(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if a.len() > 2 {
        let mut values: Vec<Vec<u8>> = Vec::new();
        for key in &a[1..] {
            if let Some((v, _)) = read(s, ctx, key)? {
                values.push(v.to_vec());
            }
        }
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        return Ok(Reply::Int(
            hll::count_union(&refs).map_err(hll_error)? as i64
        ));
    }
    let id = s.id;
    let Some((v, hlc)) = read(s, ctx, a[1])? else {
        return Ok(Reply::Int(0));
    };
    if let Some(n) = hll::cached(v) {
        return Ok(Reply::Int(n as i64));
    }
    let memo_key = (id, ctx.db, a[1].to_vec());
    let known = COUNTS.with(|m| m.borrow().get(&memo_key).copied());
    if let Some((h, len, n)) = known {
        if h == hlc && len == v.len() {
            return Ok(Reply::Int(n as i64));
        }
    }
    let n = hll::count_union(&[v]).map_err(hll_error)?;
    COUNTS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MEMO_MAX {
            m.clear();
        }
        m.insert(memo_key, (hlc, v.len(), n));
    });
    // Redis replies with a signed integer: an estimate past i64 shows as
    // i64::MIN there too.
    Ok(Reply::Int(n as i64))
}

pub fn pfmerge(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Checked in argument order, the destination first, as Redis does.
    let dest = read(s, ctx, a[1])?.map(|(v, _)| v.to_vec());
    let mut sources: Vec<Vec<u8>> = Vec::new();
    for key in &a[2..] {
        if let Some((v, _)) = read(s, ctx, key)? {
            sources.push(v.to_vec());
        }
    }
    let refs: Vec<&[u8]> = sources.iter().map(|v| v.as_slice()).collect();
    let merged = hll::merge(
        &refs,
        dest.as_deref(),
        crate::server::config_table::hll_sparse_max_bytes(),
    )
    .map_err(hll_error)?;
    // The destination keeps its expiry, as Redis changes it in place.
    let r = s.write(
        ctx.db,
        a[1],
        ctx.now_ms,
        Some(Value::Str(Vec::new())),
        |v, _| {
            *v = Value::Str(merged);
            ((), true)
        },
    );
    r.ok_or(CmdError::NoSuchKey)?;
    Ok(Reply::Ok)
}

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key: Redis's debugging views.
/// GETREG and TODENSE turn a sparse value dense, a write recorded as the
/// command itself (the conversion is deterministic).
pub fn pfdebug(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    let v = read(s, ctx, a[2])?
        .map(|(v, _)| v.to_vec())
        .ok_or_else(|| CmdError::other("The specified key does not exist"))?;
    let known = ["getreg", "decode", "encoding", "todense"];
    if known.contains(&sub.as_str()) && a.len() != 3 {
        return Err(CmdError::other(format!(
            "Wrong number of arguments for the '{}' subcommand",
            String::from_utf8_lossy(a[1])
        )));
    }
    let densify = |s: &mut Shard| -> Result<Vec<u8>, CmdError> {
        let mut dense = v.clone();
        if hll::debug::make_dense(&mut dense).map_err(hll_error)? {
            let bytes = dense.clone();
            s.write(ctx.db, a[2], ctx.now_ms, None, |value, _| {
                *value = Value::Str(bytes);
                ((), true)
            });
        }
        Ok(dense)
    };
    match sub.as_str() {
        "getreg" => {
            let dense = densify(s)?;
            let regs = hll::debug::registers(&dense).map_err(hll_error)?;
            Ok(Reply::Array(
                regs.into_iter().map(|r| Reply::Int(r.into())).collect(),
            ))
        }
        "decode" if hll::debug::is_sparse(&v) => {
            Ok(Reply::Bulk(hll::debug::decode_sparse(&v).into_bytes()))
        }
        "decode" => Err(CmdError::other("HLL encoding is not sparse")),
        "encoding" => Ok(Reply::status(if hll::debug::is_sparse(&v) {
            "sparse"
        } else {
            "dense"
        })),
        "todense" => {
            let was_sparse = hll::debug::is_sparse(&v);
            densify(s)?;
            Ok(Reply::Int(was_sparse as i64))
        }
        _ => Err(CmdError::other(format!(
            "Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(a[1])
        ))),
    }
}
