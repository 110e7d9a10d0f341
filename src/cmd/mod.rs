//! Command implementations, one file per family. Keyed commands run on the
//! shard that owns their keys and see only that [`Shard`] and a [`Ctx`];
//! the cluster commands (`sentinel`, `failover`) see the server's shared
//! state. Commands that act on the connection itself (CLIENT, SELECT, INFO,
//! REPLICAOF...) live beside the connection loop, in `server::commands`:
//! nothing here depends on the connection.

pub mod bitmaps;
pub mod dump;
pub mod error;
pub mod expiry;
pub mod failover;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod introspect;
pub mod keys;
pub mod lcs;
pub mod lists;
pub mod membership;
pub mod numbers;
pub mod sentinel;
pub mod sets;
pub mod sort;
pub mod stream_groups;
pub mod stream_info;
pub mod streams;
pub mod strings;
pub mod swapdb;
#[cfg(test)]
mod write_tests;
pub mod zsets;

use keel_shards::{Hlc, Shard, Typed, Value, ValueRef};

use crate::cmd::numbers::parse_i64;

use crate::resp::reply::Reply;
use error::CmdError;

/// What a keyed command may know besides its shard and arguments.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The connection's selected database.
    pub db: usize,
    /// Wall-clock time in Unix milliseconds, read once per command.
    pub now_ms: u64,
    /// `proto-max-bulk-len`: the largest string a command may build.
    pub max_string: usize,
    /// CLIENT NO-TOUCH: the command's reads leave keys' LRU age alone
    /// (TOUCH still touches).
    pub no_touch: bool,
    /// The client running the command (0: none, e.g. replay): the writer
    /// NOLOOP tracking clients are not told about.
    pub client: u64,
    /// Client-side caching: the shard remembers that `client` read the
    /// command's keys (see `server::tracking`).
    pub track: bool,
}

/// The string a key holds: `Ok(None)` when absent, WRONGTYPE when it holds
/// another type.
pub fn get_string<'a>(
    s: &'a mut Shard,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a [u8]>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms).map(|e| e.value()) {
        None => Ok(None),
        Some(ValueRef::Str(v)) => Ok(Some(v)),
        Some(_) => Err(CmdError::WrongType),
    }
}

/// Changes the string at `key` in place, creating an empty one when the
/// key is absent (its expiry, if any, stays). `f` returns its result and
/// whether it changed the string. The string is then held out of line
/// with room to grow (see `keel_shards::keyspace`), so APPEND, SETRANGE,
/// SETBIT and BITFIELD that grow it cost what they add, not a copy.
pub fn with_string<R>(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Vec<u8>) -> Result<(R, bool), CmdError>,
) -> Result<R, CmdError> {
    let create = Some(Value::Str(Vec::new()));
    let r = s.write(ctx.db, key, ctx.now_ms, create, |v, _| match v {
        Value::Str(bytes) => match f(bytes) {
            Ok((r, wrote)) => (Ok(r), wrote),
            Err(e) => (Err(e), false),
        },
        _ => (Err(CmdError::WrongType), false),
    });
    r.unwrap_or(Err(CmdError::NoSuchKey))
}

/// Reserves room for `v` to reach `need` bytes the way Redis grows a
/// string: double while under 1 MB, then 1 MB more at a time.
pub fn make_room(v: &mut Vec<u8>, need: usize) {
    if need <= v.capacity() {
        return;
    }
    let extra = need.min(1 << 20);
    v.reserve_exact(need + extra - v.len());
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Reads the collection at `key`: `Ok(None)` when absent, WRONGTYPE when the
/// key holds another type.
pub fn read<T: Typed, R>(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    f: impl FnOnce(&T) -> R,
) -> Result<Option<R>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms) {
        None => Ok(None),
        Some(e) => T::of(e.value()).map(f).map(Some).ok_or(CmdError::WrongType),
    }
}

/// Changes the collection at `key` (creating an empty one first when
/// `create`) as at most one write: `f` returns its result and whether it
/// wrote, and gets the write's HLC time to stamp fields and members with.
/// `f` must check its arguments before it changes anything: an error means
/// nothing was written. An emptied collection's key is deleted.
pub fn write<T: Typed, R>(
    s: &mut Shard,
    ctx: &Ctx,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut T, Hlc) -> Result<(R, bool), CmdError>,
) -> Result<Option<R>, CmdError> {
    s.write(
        ctx.db,
        key,
        ctx.now_ms,
        create.then(T::empty),
        |v, hlc| match T::of_mut(v) {
            None => (Err(CmdError::WrongType), false),
            Some(t) => match f(t, hlc) {
                Ok((r, wrote)) => (Ok(r), wrote),
                Err(e) => (Err(e), false),
            },
        },
    )
    .transpose()
}

/// The arguments of HSCAN, SSCAN and ZSCAN after the key.
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Vec<u8>>,
    pub count: usize,
}

/// A SCAN cursor as Redis reads it (strtoul: "-1" wraps around).
pub fn scan_cursor(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|t| {
            t.parse::<u64>()
                .ok()
                .or_else(|| parse_i64(arg).map(|n| n as u64))
        })
        .ok_or_else(|| CmdError::other("invalid cursor"))
}

/// HSCAN, SSCAN and ZSCAN check in Redis's order: the cursor, then the key
/// (`None`, an empty scan, when it is missing; WRONGTYPE), then the options.
pub fn scan_prelude<T: Typed>(
    s: &mut Shard,
    ctx: &Ctx,
    a: &[&[u8]],
) -> Result<Option<ScanArgs>, CmdError> {
    scan_cursor(a[2])?;
    if read(s, ctx, a[1], |_: &T| ())?.is_none() {
        return Ok(None);
    }
    scan_args(&a[2..]).map(Some)
}

/// Parses `cursor [MATCH pattern] [COUNT count]` as Redis does.
pub fn scan_args(a: &[&[u8]]) -> Result<ScanArgs, CmdError> {
    let cursor = scan_cursor(a[0])?;
    let mut o = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
    };
    let mut i = 1;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        if is(a[i], "count") {
            let n = crate::cmd::numbers::int_arg(a[i + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            o.count = n as usize;
        } else if is(a[i], "match") {
            o.pattern = Some(a[i + 1].to_vec());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(o)
}

impl ScanArgs {
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern
            .as_deref()
            .is_none_or(|p| keel_shards::glob::matches(p, item))
    }
}

/// A SCAN-family reply: the next cursor and the items found.
pub fn scan_reply(next: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(next.to_string().into_bytes()),
        Reply::Array(items),
    ])
}

/// A small generator for the RAND commands, seeded from the shard's, so a
/// command can draw numbers while it borrows a value of the shard.
pub struct Rng(u64);

impl Rng {
    pub fn new(s: &mut Shard) -> Rng {
        Rng(s.random() | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` distinct indexes into `0..len` (`n <= len`).
    pub fn distinct(&mut self, len: usize, n: usize) -> Vec<usize> {
        if n * 2 > len {
            // Partial Fisher-Yates over all indexes.
            let mut all: Vec<usize> = (0..len).collect();
            for i in 0..n {
                let j = i + self.below(len - i);
                all.swap(i, j);
            }
            all.truncate(n);
            return all;
        }
        let mut chosen = std::collections::HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let i = self.below(len);
            if chosen.insert(i) {
                out.push(i);
            }
        }
        out
    }
}

/// Up to `n` distinct items of a collection of `len` picked at random: by
/// sampling when `n` is small against `len`, else from a full listing.
pub fn distinct_items<T: Clone>(
    rng: &mut Rng,
    len: usize,
    n: usize,
    mut sample: impl FnMut(u64) -> Option<(Vec<u8>, T)>,
    all: impl FnOnce() -> Vec<(Vec<u8>, T)>,
) -> Vec<(Vec<u8>, T)> {
    if n >= len {
        return all();
    }
    if n * 3 <= len {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut tries = 0;
        while out.len() < n && tries < 64 * n + 64 {
            tries += 1;
            if let Some((k, v)) = sample(rng.next_u64()) {
                if seen.insert(k.clone()) {
                    out.push((k, v));
                }
            }
        }
        if out.len() == n {
            return out;
        }
    }
    let items = all();
    rng.distinct(items.len(), n)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// The most elements a negative RAND count may ask for. Redis would try to
/// build any size and run out of memory; keel refuses instead.
pub const MAX_RAND_REPEATS: u64 = 1 << 24;

/// The count argument of HRANDFIELD, SRANDMEMBER and ZRANDMEMBER: Redis
/// refuses `i64::MIN`, whose magnitude has no positive twin; keel also
/// refuses repeats beyond [`MAX_RAND_REPEATS`].
pub fn rand_count(arg: &[u8]) -> Result<i64, CmdError> {
    let n = crate::cmd::numbers::int_arg(arg)?;
    if n == i64::MIN {
        return Err(CmdError::other(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if n < 0 && n.unsigned_abs() > MAX_RAND_REPEATS {
        return Err(CmdError::other("value is out of range"));
    }
    Ok(n)
}
