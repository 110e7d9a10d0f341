//! SWAPDB index1 index2: two databases trade contents on every shard.
//!
//! The router runs it on every shard inside one transaction holding them
//! all (`Split::AllShards`), so no client sees one shard swapped and
//! another not. Each shard records the command itself (it is deterministic
//! per shard): replay, backups and replicas swap the same two databases on
//! each of their shards. See `Shard::swap_dbs` for WATCH, blocked clients
//! and a snapshot running meanwhile.

use keel_shards::{Shard, DATABASES};

use super::error::{CmdError, CmdResult};
use super::numbers::parse_i64;
use super::Ctx;
use crate::resp::reply::Reply;

/// A database index as Redis's `getIntFromObjectOrReply` reads it (an
/// integer that fits a C int), with its own error text.
fn index(arg: &[u8], which: &str) -> Result<i64, CmdError> {
    parse_i64(arg)
        .filter(|n| i32::try_from(*n).is_ok())
        .ok_or_else(|| CmdError::other(format!("invalid {which} DB index")))
}

/// The two databases, checked as Redis checks them.
pub fn indexes(a: &[&[u8]]) -> Result<(usize, usize), CmdError> {
    let x = index(a[1], "first")?;
    let y = index(a[2], "second")?;
    let range = 0..DATABASES as i64;
    if !range.contains(&x) || !range.contains(&y) {
        return Err(CmdError::DbIndex);
    }
    Ok((x as usize, y as usize))
}

pub fn swapdb(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (x, y) = indexes(a)?;
    s.swap_dbs(x, y, ctx.now_ms);
    Ok(Reply::Ok)
}
