//! OBJECT and MEMORY USAGE: what a key is made of, without touching it
//! (no LRU update, no keyspace hit or miss).
//!
//! OBJECT ENCODING names keel's own representation in Redis's words where
//! the two agree: a packed hash or sorted set is a `listpack`, the larger
//! forms `hashtable` and `skiplist`; a string is `int`, `embstr` or `raw`
//! by Redis's rules, and `raw` once a command changed it in place, as in
//! Redis. keel has no intset: a set is always a `hashtable`. Lists are
//! `quicklist`, as every Redis 7.0 list is.

use keel_shards::{Shard, ValueRef};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::numbers::parse_i64;
use crate::cmd::{is, Ctx};
use crate::resp::reply::Reply;

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
}

/// An unknown subcommand, or a known one with the wrong arguments.
fn misuse(cmd: &str, known: &[&str], a: &[&[u8]]) -> CmdError {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    if known.contains(&sub.as_str()) {
        return CmdError::Arity(format!("{}|{sub}", cmd.to_lowercase()));
    }
    CmdError::Raw(format!(
        "ERR unknown subcommand '{}'. Try {cmd} HELP.",
        String::from_utf8_lossy(a[1])
    ))
}

/// Redis's name for how a string is stored.
fn string_encoding(v: &[u8], in_place: bool) -> &'static str {
    if in_place {
        return "raw";
    }
    // An integer Redis would store as a number: canonical digits, in range.
    if v.len() <= 20 && parse_i64(v).is_some() {
        return "int";
    }
    if v.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

pub fn object(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 && is(a[1], "help") {
        return Ok(help(OBJECT_HELP));
    }
    let sub = a[1];
    const KNOWN: &[&str] = &["encoding", "freq", "idletime", "refcount", "help"];
    if a.len() != 3 || is(sub, "help") || !KNOWN.iter().any(|w| is(sub, w)) {
        return Err(misuse("OBJECT", KNOWN, a));
    }
    let Some(e) = s.peek(ctx.db, a[2], ctx.now_ms) else {
        return Ok(Reply::Nil);
    };
    if is(sub, "encoding") {
        let name = match e.value() {
            ValueRef::Str(v) => string_encoding(v, e.is_growable_string()),
            ValueRef::Hash(h) if h.is_packed() => "listpack",
            ValueRef::Hash(_) => "hashtable",
            ValueRef::Set(_) => "hashtable",
            ValueRef::ZSet(z) if z.is_packed() => "listpack",
            ValueRef::ZSet(_) => "skiplist",
            ValueRef::List(_) => "quicklist",
            ValueRef::Stream(_) => "stream",
        };
        return Ok(Reply::bulk(name));
    }
    if is(sub, "refcount") {
        // keel shares no values between keys.
        return Ok(Reply::Int(1));
    }
    if is(sub, "idletime") {
        let now = (ctx.now_ms / 1000) as u32;
        return Ok(Reply::Int(now.saturating_sub(e.access()) as i64));
    }
    // keel's eviction policies are LRU, random and TTL: no LFU counters.
    Err(CmdError::Raw("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into()))
}

pub fn memory(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 && is(a[1], "help") {
        return Ok(help(MEMORY_HELP));
    }
    if !is(a[1], "usage") || a.len() < 3 {
        // (STATS, DOCTOR... with no extra argument run in the connection,
        // `server::introspect::memory`; with one, they are misused here.)
        let known = ["usage", "help", "stats", "doctor", "malloc-stats", "purge"];
        return Err(misuse("MEMORY", &known, a));
    }
    match &a[3..] {
        [] => {}
        [w, n] if is(w, "samples") => {
            // Accepted as Redis does; keel knows every value's size exactly.
            parse_i64(n)
                .filter(|n| *n >= 0)
                .ok_or(CmdError::NotInteger)?;
        }
        _ => return Err(CmdError::Syntax),
    }
    Ok(match s.peek(ctx.db, a[2], ctx.now_ms) {
        None => Reply::Nil,
        // The key's node, its value and what they cost the allocator.
        Some(e) => Reply::Int(e.mem_bytes() as i64),
    })
}
