//! The command table: every command's name, arity, flags, key positions and
//! how it executes. Adding a command touches one line here plus its handler.
//!
//! Arity follows Redis: `n > 0` means exactly `n` arguments (the name
//! included), `n < 0` means at least `-n`.

use std::collections::HashMap;
use std::sync::OnceLock;

use keel_shards::Shard;

use crate::cmd::error::CmdResult;
use crate::cmd::{
    bitmaps, dump, geo, hashes, hyperloglog, introspect, keys, lcs, lists, sets, sort, strings,
    swapdb, zsets, Ctx,
};
// streams
use crate::cmd::{stream_groups, stream_info, streams};

pub type KeyedFn = fn(&mut Shard, &Ctx, &[&[u8]]) -> CmdResult;

pub mod flags {
    pub const WRITE: u32 = 1;
    pub const READONLY: u32 = 2;
    pub const DENYOOM: u32 = 4;
    pub const FAST: u32 = 8;
    pub const NOAUTH: u32 = 16;
    pub const ADMIN: u32 = 32;
    pub const LOADING: u32 = 64;
    pub const STALE: u32 = 128;

    pub const NAMES: [(u32, &str); 8] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (FAST, "fast"),
        (NOAUTH, "no-auth"),
        (ADMIN, "admin"),
        (LOADING, "loading"),
        (STALE, "stale"),
    ];
}

/// How a keyed command whose keys live on several shards is run: each shard
/// runs the same handler on its share of the keys, under a cross-shard
/// transaction, and the parts are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Single-key command: never split.
    Never,
    /// Integer replies are added (DEL, EXISTS, TOUCH, UNLINK).
    Sum,
    /// Array replies are put back in key order (MGET).
    Gather,
    /// Every part answers OK (MSET).
    AllOk,
    /// MSETNX: check every shard, then write only if no key exists.
    MsetNx,
    /// RENAME / RENAMENX / COPY: read the source, write the destination.
    Move,
    /// Multi-key commands that run whole on one shard (SINTER, SMOVE,
    /// ZUNIONSTORE, LMOVE...). For now keys on different shards are refused
    /// with Redis Cluster's CROSSSLOT error (see [`keys_of`]); cross-shard
    /// execution replaces this later.
    SameShard,
    /// XREAD / XREADGROUP (streams): each shard reads its keys, after every
    /// key was checked in key order; the per-key results come back in key
    /// order (`Router::run_streams`).
    Streams,
    /// SORT: as `SameShard` for its sorted key and STORE destination, but
    /// its BY and GET patterns may name keys on any shard: then it runs
    /// holding every shard (see `Router::run_patterns`).
    Patterns,
    /// SWAPDB: keyless, run on every shard in one transaction holding all.
    AllShards,
}

#[derive(Clone, Copy)]
pub enum Kind {
    /// Runs on the shard that owns the keys.
    Keyed(KeyedFn, Split),
    /// Runs in the connection: connection state, server-wide commands.
    Conn,
}

pub struct Spec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub kind: Kind,
    pub group: &'static str,
    pub summary: &'static str,
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Indexes of the key arguments in `argc` arguments.
    pub fn key_indexes(&self, argc: usize) -> impl Iterator<Item = usize> {
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            (argc as i32 + self.last_key).max(0) as usize
        } else {
            (self.last_key as usize).min(argc.saturating_sub(1))
        };
        let step = self.step.max(1) as usize;
        let n = if first == 0 || last < first {
            0
        } else {
            (last - first) / step + 1
        };
        (0..n).map(move |i| first + i * step)
    }
}

use flags::*;
use Split::*;

macro_rules! keyed {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $f:path, $split:expr, $group:literal, $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
            kind: Kind::Keyed($f, $split),
            group: $group,
            summary: $summary,
        }
    };
}

macro_rules! conn {
    ($name:literal, $arity:expr, $flags:expr, $group:literal, $summary:literal) => {
        conn!($name, $arity, $flags, 0, 0, 0, $group, $summary)
    };
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $group:literal, $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
            kind: Kind::Conn,
            group: $group,
            summary: $summary,
        }
    };
}

const W: u32 = WRITE | DENYOOM;
const WF: u32 = WRITE | DENYOOM | FAST;
const R: u32 = READONLY;
const RF: u32 = READONLY | FAST;

pub static COMMANDS: &[Spec] = &[
    // strings
    keyed!("get", 2, RF, 1, 1, 1, strings::get, Never, "string", "Returns the string value of a key."),
    keyed!("set", -3, W, 1, 1, 1, strings::set, Never, "string", "Sets the string value of a key, ignoring its type."),
    keyed!("setnx", 3, WF, 1, 1, 1, strings::setnx, Never, "string", "Set the string value of a key only when the key doesn't exist."),
    keyed!("setex", 4, W, 1, 1, 1, strings::setex, Never, "string", "Sets the string value and expiration time of a key."),
    keyed!("psetex", 4, W, 1, 1, 1, strings::psetex, Never, "string", "Sets both string value and expiration time in milliseconds of a key."),
    keyed!("mget", -2, RF, 1, -1, 1, strings::mget, Gather, "string", "Atomically returns the string values of one or more keys."),
    keyed!("mset", -3, W, 1, -1, 2, strings::mset, AllOk, "string", "Atomically creates or modifies the string values of one or more keys."),
    keyed!("msetnx", -3, W, 1, -1, 2, strings::msetnx, MsetNx, "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    keyed!("incr", 2, WF, 1, 1, 1, strings::incr, Never, "string", "Increments the integer value of a key by one."),
    keyed!("decr", 2, WF, 1, 1, 1, strings::decr, Never, "string", "Decrements the integer value of a key by one."),
    keyed!("incrby", 3, WF, 1, 1, 1, strings::incrby, Never, "string", "Increments the integer value of a key by a number."),
    keyed!("decrby", 3, WF, 1, 1, 1, strings::decrby, Never, "string", "Decrements a number from the integer value of a key."),
    keyed!("incrbyfloat", 3, WF, 1, 1, 1, strings::incrbyfloat, Never, "string", "Increment the floating point value of a key by a number."),
    keyed!("append", 3, WF, 1, 1, 1, strings::append, Never, "string", "Appends a string to the value of a key."),
    keyed!("strlen", 2, RF, 1, 1, 1, strings::strlen, Never, "string", "Returns the length of a string value."),
    keyed!("getrange", 4, R, 1, 1, 1, strings::getrange, Never, "string", "Returns a substring of the string stored at a key."),
    keyed!("substr", 4, R, 1, 1, 1, strings::getrange, Never, "string", "Returns a substring from a string value."),
    keyed!("setrange", 4, W, 1, 1, 1, strings::setrange, Never, "string", "Overwrites a part of a string value with another by an offset."),
    keyed!("lcs", -3, R, 1, 2, 1, lcs::lcs, SameShard, "string", "Finds the longest common substring."),
    keyed!("getdel", 2, WRITE | FAST, 1, 1, 1, strings::getdel, Never, "string", "Returns the string value of a key after deleting the key."),
    keyed!("getex", -2, WRITE | FAST, 1, 1, 1, strings::getex, Never, "string", "Returns the string value of a key after setting its expiration time."),
    keyed!("getset", 3, WF, 1, 1, 1, strings::getset, Never, "string", "Returns the previous string value of a key after setting it to a new value."),
    // bitmaps
    keyed!("setbit", 4, W, 1, 1, 1, bitmaps::setbit, Never, "bitmap", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."),
    keyed!("getbit", 3, RF, 1, 1, 1, bitmaps::getbit, Never, "bitmap", "Returns a bit value by offset."),
    keyed!("bitcount", -2, R, 1, 1, 1, bitmaps::bitcount, Never, "bitmap", "Counts the number of set bits (population counting) in a string."),
    keyed!("bitpos", -3, R, 1, 1, 1, bitmaps::bitpos, Never, "bitmap", "Finds the first set (1) or clear (0) bit in a string."),
    keyed!("bitop", -4, W, 2, -1, 1, bitmaps::bitop, SameShard, "bitmap", "Performs bitwise operations on multiple strings, and stores the result."),
    keyed!("bitfield", -2, W, 1, 1, 1, bitmaps::bitfield, Never, "bitmap", "Performs arbitrary bitfield integer operations on strings."),
    keyed!("bitfield_ro", -2, RF, 1, 1, 1, bitmaps::bitfield_ro, Never, "bitmap", "Performs arbitrary read-only bitfield integer operations on strings."),
    // hyperloglog
    keyed!("pfadd", -2, WF, 1, 1, 1, hyperloglog::pfadd, Never, "hyperloglog", "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist."),
    keyed!("pfcount", -2, R, 1, -1, 1, hyperloglog::pfcount, SameShard, "hyperloglog", "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s)."),
    keyed!("pfmerge", -2, W, 1, -1, 1, hyperloglog::pfmerge, SameShard, "hyperloglog", "Merges one or more HyperLogLog values into a single key."),
    keyed!("pfdebug", 3, WRITE | DENYOOM | ADMIN, 2, 2, 1, hyperloglog::pfdebug, Never, "hyperloglog", "Internal commands for debugging HyperLogLog values."),
    conn!("pfselftest", 1, ADMIN, "hyperloglog", "An internal command for testing HyperLogLog values."),
    conn!("lolwut", -1, READONLY | FAST, "server", "Displays computer art and the version."),
    // introspection (the key is the third argument; OBJECT HELP and
    // MEMORY HELP have none and run on a shard of the connection's core)
    keyed!("object", -2, R, 2, 2, 1, introspect::object, Never, "generic", "A container for object introspection commands."),
    keyed!("memory", -2, R, 2, 2, 1, introspect::memory, Never, "server", "A container for memory diagnostics commands."),
    // geo
    keyed!("geoadd", -5, W, 1, 1, 1, geo::geoadd, Never, "geo", "Adds one or more members to a geospatial index. The key is created if it doesn't exist."),
    keyed!("geodist", -4, R, 1, 1, 1, geo::geodist, Never, "geo", "Returns the distance between two members of a geospatial index."),
    keyed!("geohash", -2, R, 1, 1, 1, geo::geohash, Never, "geo", "Returns members from a geospatial index as geohash strings."),
    keyed!("geopos", -2, R, 1, 1, 1, geo::geopos, Never, "geo", "Returns the longitude and latitude of members from a geospatial index."),
    keyed!("geosearch", -7, R, 1, 1, 1, geo::geosearch, Never, "geo", "Queries a geospatial index for members inside an area of a box or a circle."),
    keyed!("geosearchstore", -8, W, 1, 2, 1, geo::geosearchstore, SameShard, "geo", "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result."),
    keyed!("georadius", -6, W, 1, 1, 1, geo::georadius, SameShard, "geo", "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result."),
    keyed!("georadiusbymember", -5, W, 1, 1, 1, geo::georadiusbymember, SameShard, "geo", "Queries a geospatial index for members within a distance from a member, optionally stores the result."),
    keyed!("georadius_ro", -6, R, 1, 1, 1, geo::georadius_ro, Never, "geo", "Returns members from a geospatial index that are within a distance from a coordinate."),
    keyed!("georadiusbymember_ro", -5, R, 1, 1, 1, geo::georadiusbymember_ro, Never, "geo", "Returns members from a geospatial index that are within a distance from a member."),
    // keys
    keyed!("del", -2, WRITE, 1, -1, 1, keys::del, Sum, "generic", "Deletes one or more keys."),
    keyed!("unlink", -2, WRITE | FAST, 1, -1, 1, keys::del, Sum, "generic", "Asynchronously deletes one or more keys."),
    keyed!("exists", -2, RF, 1, -1, 1, keys::exists, Sum, "generic", "Determines whether one or more keys exist."),
    keyed!("touch", -2, RF, 1, -1, 1, keys::touch, Sum, "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    keyed!("expire", -3, WRITE | FAST, 1, 1, 1, keys::expire, Never, "generic", "Sets the expiration time of a key in seconds."),
    keyed!("pexpire", -3, WRITE | FAST, 1, 1, 1, keys::pexpire, Never, "generic", "Sets the expiration time of a key in milliseconds."),
    keyed!("expireat", -3, WRITE | FAST, 1, 1, 1, keys::expireat, Never, "generic", "Sets the expiration time of a key to a Unix timestamp."),
    keyed!("pexpireat", -3, WRITE | FAST, 1, 1, 1, keys::pexpireat, Never, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    keyed!("ttl", 2, RF, 1, 1, 1, keys::ttl, Never, "generic", "Returns the expiration time in seconds of a key."),
    keyed!("pttl", 2, RF, 1, 1, 1, keys::pttl, Never, "generic", "Returns the expiration time in milliseconds of a key."),
    keyed!("expiretime", 2, RF, 1, 1, 1, keys::expiretime, Never, "generic", "Returns the expiration time of a key as a Unix timestamp."),
    keyed!("pexpiretime", 2, RF, 1, 1, 1, keys::pexpiretime, Never, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    keyed!("persist", 2, WRITE | FAST, 1, 1, 1, keys::persist, Never, "generic", "Removes the expiration time of a key."),
    keyed!("type", 2, RF, 1, 1, 1, keys::type_, Never, "generic", "Determines the type of value stored at a key."),
    keyed!("rename", 3, WRITE, 1, 2, 1, keys::rename, Move, "generic", "Renames a key and overwrites the destination."),
    keyed!("renamenx", 3, WRITE | FAST, 1, 2, 1, keys::rename, Move, "generic", "Renames a key only when the target key name doesn't exist."),
    keyed!("move", 3, WRITE | FAST, 1, 1, 1, keys::move_key, Never, "generic", "Moves a key to another database."),
    keyed!("copy", -3, W, 1, 2, 1, keys::copy, Move, "generic", "Copies the value of a key to a new key."),
    // hashes
    keyed!("hset", -4, WF, 1, 1, 1, hashes::hset, Never, "hash", "Creates or modifies the value of a field in a hash."),
    keyed!("hmset", -4, WF, 1, 1, 1, hashes::hmset, Never, "hash", "Sets the values of multiple fields."),
    keyed!("hsetnx", 4, WF, 1, 1, 1, hashes::hsetnx, Never, "hash", "Sets the value of a field in a hash only when the field doesn't exist."),
    keyed!("hget", 3, RF, 1, 1, 1, hashes::hget, Never, "hash", "Returns the value of a field in a hash."),
    keyed!("hmget", -3, RF, 1, 1, 1, hashes::hmget, Never, "hash", "Returns the values of all fields in a hash."),
    keyed!("hgetall", 2, R, 1, 1, 1, hashes::hgetall, Never, "hash", "Returns all fields and values in a hash."),
    keyed!("hdel", -3, WRITE | FAST, 1, 1, 1, hashes::hdel, Never, "hash", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain."),
    keyed!("hexists", 3, RF, 1, 1, 1, hashes::hexists, Never, "hash", "Determines whether a field exists in a hash."),
    keyed!("hincrby", 4, WF, 1, 1, 1, hashes::hincrby, Never, "hash", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist."),
    keyed!("hincrbyfloat", 4, WF, 1, 1, 1, hashes::hincrbyfloat, Never, "hash", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist."),
    keyed!("hkeys", 2, R, 1, 1, 1, hashes::hkeys, Never, "hash", "Returns all fields in a hash."),
    keyed!("hvals", 2, R, 1, 1, 1, hashes::hvals, Never, "hash", "Returns all values in a hash."),
    keyed!("hlen", 2, RF, 1, 1, 1, hashes::hlen, Never, "hash", "Returns the number of fields in a hash."),
    keyed!("hstrlen", 3, RF, 1, 1, 1, hashes::hstrlen, Never, "hash", "Returns the length of the value of a field."),
    keyed!("hrandfield", -2, R, 1, 1, 1, hashes::hrandfield, Never, "hash", "Returns one or more random fields from a hash."),
    keyed!("hscan", -3, R, 1, 1, 1, hashes::hscan, Never, "hash", "Iterates over fields and values of a hash."),
    // sets
    keyed!("sadd", -3, WF, 1, 1, 1, sets::sadd, Never, "set", "Adds one or more members to a set. Creates the key if it doesn't exist."),
    keyed!("srem", -3, WRITE | FAST, 1, 1, 1, sets::srem, Never, "set", "Removes one or more members from a set. Deletes the set if the last member was removed."),
    keyed!("smembers", 2, R, 1, 1, 1, sets::smembers, Never, "set", "Returns all members of a set."),
    keyed!("sismember", 3, RF, 1, 1, 1, sets::sismember, Never, "set", "Determines whether a member belongs to a set."),
    keyed!("smismember", -3, RF, 1, 1, 1, sets::smismember, Never, "set", "Determines whether multiple members belong to a set."),
    keyed!("scard", 2, RF, 1, 1, 1, sets::scard, Never, "set", "Returns the number of members in a set."),
    keyed!("spop", -2, WRITE | FAST, 1, 1, 1, sets::spop, Never, "set", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."),
    keyed!("srandmember", -2, R, 1, 1, 1, sets::srandmember, Never, "set", "Get one or multiple random members from a set."),
    keyed!("sinter", -2, R, 1, -1, 1, sets::sinter, SameShard, "set", "Returns the intersect of multiple sets."),
    keyed!("sintercard", -3, R, 2, 2, 1, sets::sintercard, SameShard, "set", "Returns the number of members of the intersect of multiple sets."),
    keyed!("sunion", -2, R, 1, -1, 1, sets::sunion, SameShard, "set", "Returns the union of multiple sets."),
    keyed!("sdiff", -2, R, 1, -1, 1, sets::sdiff, SameShard, "set", "Returns the difference of multiple sets."),
    keyed!("sinterstore", -3, W, 1, -1, 1, sets::sinterstore, SameShard, "set", "Stores the intersect of multiple sets in a key."),
    keyed!("sunionstore", -3, W, 1, -1, 1, sets::sunionstore, SameShard, "set", "Stores the union of multiple sets in a key."),
    keyed!("sdiffstore", -3, W, 1, -1, 1, sets::sdiffstore, SameShard, "set", "Stores the difference of multiple sets in a key."),
    keyed!("smove", 4, WRITE | FAST, 1, 2, 1, sets::smove, SameShard, "set", "Moves a member from one set to another."),
    keyed!("sscan", -3, R, 1, 1, 1, sets::sscan, Never, "set", "Iterates over members of a set."),
    // lists
    keyed!("lpush", -3, WF, 1, 1, 1, lists::lpush, Never, "list", "Prepends one or more elements to a list. Creates the key if it doesn't exist."),
    keyed!("rpush", -3, WF, 1, 1, 1, lists::rpush, Never, "list", "Appends one or more elements to a list. Creates the key if it doesn't exist."),
    keyed!("lpushx", -3, WF, 1, 1, 1, lists::lpushx, Never, "list", "Prepends one or more elements to a list only when the list exists."),
    keyed!("rpushx", -3, WF, 1, 1, 1, lists::rpushx, Never, "list", "Appends an element to a list only when the list exists."),
    keyed!("lpop", -2, WRITE | FAST, 1, 1, 1, lists::lpop, Never, "list", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."),
    keyed!("rpop", -2, WRITE | FAST, 1, 1, 1, lists::rpop, Never, "list", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."),
    keyed!("llen", 2, RF, 1, 1, 1, lists::llen, Never, "list", "Returns the length of a list."),
    keyed!("lrange", 4, R, 1, 1, 1, lists::lrange, Never, "list", "Returns a range of elements from a list."),
    keyed!("lindex", 3, R, 1, 1, 1, lists::lindex, Never, "list", "Returns an element from a list by its index."),
    keyed!("lset", 4, W, 1, 1, 1, lists::lset, Never, "list", "Sets the value of an element in a list by its index."),
    keyed!("lrem", 4, WRITE, 1, 1, 1, lists::lrem, Never, "list", "Removes elements from a list. Deletes the list if the last element was removed."),
    keyed!("ltrim", 4, WRITE, 1, 1, 1, lists::ltrim, Never, "list", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."),
    keyed!("linsert", 5, W, 1, 1, 1, lists::linsert, Never, "list", "Inserts an element before or after another element in a list."),
    keyed!("lpos", -3, R, 1, 1, 1, lists::lpos, Never, "list", "Returns the index of matching elements in a list."),
    keyed!("lmove", 5, W, 1, 2, 1, lists::lmove, SameShard, "list", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved."),
    keyed!("rpoplpush", 3, W, 1, 2, 1, lists::rpoplpush, SameShard, "list", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped."),
    keyed!("lmpop", -4, WRITE, 2, 2, 1, lists::lmpop, SameShard, "list", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped."),
    // sorted sets
    keyed!("zadd", -4, WF, 1, 1, 1, zsets::zadd, Never, "sorted-set", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist."),
    keyed!("zincrby", 4, WF, 1, 1, 1, zsets::zincrby, Never, "sorted-set", "Increments the score of a member in a sorted set."),
    keyed!("zrem", -3, WRITE | FAST, 1, 1, 1, zsets::zrem, Never, "sorted-set", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed."),
    keyed!("zscore", 3, RF, 1, 1, 1, zsets::zscore, Never, "sorted-set", "Returns the score of a member in a sorted set."),
    keyed!("zmscore", -3, RF, 1, 1, 1, zsets::zmscore, Never, "sorted-set", "Returns the score of one or more members in a sorted set."),
    keyed!("zcard", 2, RF, 1, 1, 1, zsets::zcard, Never, "sorted-set", "Returns the number of members in a sorted set."),
    keyed!("zcount", 4, RF, 1, 1, 1, zsets::zcount, Never, "sorted-set", "Returns the count of members in a sorted set that have scores within a range."),
    keyed!("zlexcount", 4, RF, 1, 1, 1, zsets::zlexcount, Never, "sorted-set", "Returns the number of members in a sorted set within a lexicographical range."),
    keyed!("zrange", -4, R, 1, 1, 1, zsets::zrange, Never, "sorted-set", "Returns members in a sorted set within a range of indexes."),
    keyed!("zrangestore", -5, W, 1, 2, 1, zsets::zrangestore, SameShard, "sorted-set", "Stores a range of members from sorted set in a key."),
    keyed!("zrevrange", -4, R, 1, 1, 1, zsets::zrevrange, Never, "sorted-set", "Returns members in a sorted set within a range of indexes in reverse order."),
    keyed!("zrangebyscore", -4, R, 1, 1, 1, zsets::zrangebyscore, Never, "sorted-set", "Returns members in a sorted set within a range of scores."),
    keyed!("zrevrangebyscore", -4, R, 1, 1, 1, zsets::zrevrangebyscore, Never, "sorted-set", "Returns members in a sorted set within a range of scores in reverse order."),
    keyed!("zrangebylex", -4, R, 1, 1, 1, zsets::zrangebylex, Never, "sorted-set", "Returns members in a sorted set within a lexicographical range."),
    keyed!("zrevrangebylex", -4, R, 1, 1, 1, zsets::zrevrangebylex, Never, "sorted-set", "Returns members in a sorted set within a lexicographical range in reverse order."),
    keyed!("zrank", 3, RF, 1, 1, 1, zsets::zrank, Never, "sorted-set", "Returns the index of a member in a sorted set ordered by ascending scores."),
    keyed!("zrevrank", 3, RF, 1, 1, 1, zsets::zrevrank, Never, "sorted-set", "Returns the index of a member in a sorted set ordered by descending scores."),
    keyed!("zremrangebyscore", 4, WRITE, 1, 1, 1, zsets::zremrangebyscore, Never, "sorted-set", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed."),
    keyed!("zremrangebyrank", 4, WRITE, 1, 1, 1, zsets::zremrangebyrank, Never, "sorted-set", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed."),
    keyed!("zremrangebylex", 4, WRITE, 1, 1, 1, zsets::zremrangebylex, Never, "sorted-set", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed."),
    keyed!("zmpop", -4, WRITE, 2, 2, 1, zsets::zmpop, SameShard, "sorted_set", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped."),
    keyed!("zpopmin", -2, WRITE | FAST, 1, 1, 1, zsets::zpopmin, Never, "sorted-set", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    keyed!("zpopmax", -2, WRITE | FAST, 1, 1, 1, zsets::zpopmax, Never, "sorted-set", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    keyed!("zrandmember", -2, R, 1, 1, 1, zsets::zrandmember, Never, "sorted-set", "Returns one or more random members from a sorted set."),
    keyed!("zunion", -3, R, 2, 2, 1, zsets::zunion, SameShard, "sorted-set", "Returns the union of multiple sorted sets."),
    keyed!("zinter", -3, R, 2, 2, 1, zsets::zinter, SameShard, "sorted-set", "Returns the intersect of multiple sorted sets."),
    keyed!("zdiff", -3, R, 2, 2, 1, zsets::zdiff, SameShard, "sorted-set", "Returns the difference between multiple sorted sets."),
    keyed!("zintercard", -3, R, 2, 2, 1, zsets::zintercard, SameShard, "sorted_set", "Returns the number of members of the intersect of multiple sorted sets."),
    keyed!("zunionstore", -4, W, 1, 1, 1, zsets::zunionstore, SameShard, "sorted-set", "Stores the union of multiple sorted sets in a key."),
    keyed!("zinterstore", -4, W, 1, 1, 1, zsets::zinterstore, SameShard, "sorted-set", "Stores the intersect of multiple sorted sets in a key."),
    keyed!("zdiffstore", -4, W, 1, 1, 1, zsets::zdiffstore, SameShard, "sorted-set", "Stores the difference of multiple sorted sets in a key."),
    keyed!("zscan", -3, R, 1, 1, 1, zsets::zscan, Never, "sorted-set", "Iterates over members and scores of a sorted set."),
    // streams
    keyed!("xadd", -5, WF, 1, 1, 1, streams::xadd, Never, "stream", "Appends a new message to a stream. Creates the key if it doesn't exist."),
    keyed!("xrange", -4, R, 1, 1, 1, streams::xrange, Never, "stream", "Returns the messages from a stream within a range of IDs."),
    keyed!("xrevrange", -4, R, 1, 1, 1, streams::xrevrange, Never, "stream", "Returns the messages from a stream within a range of IDs in reverse order."),
    keyed!("xlen", 2, RF, 1, 1, 1, streams::xlen, Never, "stream", "Return the number of messages in a stream."),
    keyed!("xdel", -3, WRITE | FAST, 1, 1, 1, streams::xdel, Never, "stream", "Returns the number of messages after removing them from a stream."),
    keyed!("xtrim", -4, WRITE, 1, 1, 1, streams::xtrim, Never, "stream", "Deletes messages from the beginning of a stream."),
    keyed!("xsetid", -3, WF, 1, 1, 1, streams::xsetid, Never, "stream", "An internal command for replicating stream values."),
    keyed!("xread", -4, R, 0, 0, 0, streams::xread, Streams, "stream", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise."),
    keyed!("xgroup", -2, W, 2, 2, 1, stream_groups::xgroup, Never, "stream", "A container for consumer groups commands."),
    keyed!("xreadgroup", -7, WRITE, 0, 0, 0, stream_groups::xreadgroup, Streams, "stream", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise."),
    keyed!("xack", -4, WRITE | FAST, 1, 1, 1, stream_groups::xack, Never, "stream", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream."),
    keyed!("xpending", -3, R, 1, 1, 1, stream_groups::xpending, Never, "stream", "Returns the information and entries from a stream consumer group's pending entries list."),
    keyed!("xclaim", -6, WRITE | FAST, 1, 1, 1, stream_groups::xclaim, Never, "stream", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member."),
    keyed!("xautoclaim", -6, WRITE | FAST, 1, 1, 1, stream_groups::xautoclaim, Never, "stream", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member."),
    keyed!("xinfo", -2, R, 2, 2, 1, stream_info::xinfo, Never, "stream", "A container for stream introspection commands."),
    // SORT and SORT_RO (sortdump)
    keyed!("sort", -2, W, 1, 1, 1, sort::sort, Patterns, "generic", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result."),
    keyed!("sort_ro", -2, R, 1, 1, 1, sort::sort_ro, Patterns, "generic", "Returns the sorted elements of a list, a set, or a sorted set."),
    // DUMP and RESTORE (sortdump)
    keyed!("dump", 2, R, 1, 1, 1, dump::dump, Never, "generic", "Returns a serialized representation of the value stored at a key."),
    keyed!("restore", -4, W, 1, 1, 1, dump::restore, Never, "generic", "Creates a key from the serialized representation of a value."),
    // SWAPDB (sortdump)
    keyed!("swapdb", 3, WRITE | FAST, 0, 0, 0, swapdb::swapdb, AllShards, "server", "Swaps two Redis databases."),
    conn!("keys", 2, R, "generic", "Returns all key names that match a pattern."),
    conn!("scan", -2, R, "generic", "Iterates over the key names in the database."),
    conn!("randomkey", 1, R, "generic", "Returns a random key name from the database."),
    conn!("dbsize", 1, RF, "server", "Returns the number of keys in the database."),
    conn!("flushdb", -1, WRITE, "server", "Removes all keys from the current database."),
    conn!("flushall", -1, WRITE, "server", "Removes all keys from all databases."),
    // connection
    conn!("ping", -1, FAST | STALE, "connection", "Returns the server's liveliness response."),
    conn!("echo", 2, FAST, "connection", "Returns the given string."),
    conn!("hello", -1, FAST | NOAUTH | STALE | LOADING, "connection", "Handshakes with the Redis server."),
    conn!("auth", -2, FAST | NOAUTH | STALE | LOADING, "connection", "Authenticates the connection."),
    conn!("select", 2, FAST | LOADING | STALE, "connection", "Changes the selected database."),
    conn!("quit", -1, FAST | NOAUTH | STALE | LOADING, "connection", "Closes the connection."),
    conn!("reset", 1, FAST | NOAUTH | STALE | LOADING, "connection", "Resets the connection."),
    conn!("client", -2, ADMIN | STALE | LOADING, "connection", "A container for client connection commands."),
    conn!("acl", -2, ADMIN | STALE | LOADING, "server", "A container for Access List Control commands."),
    // blocking list and sorted-set pops
    conn!("blpop", -3, WRITE, 1, -2, 1, "list", "Removes and returns the first element in a list. Blocks until an element is available otherwise."),
    conn!("brpop", -3, WRITE, 1, -2, 1, "list", "Removes and returns the last element in a list. Blocks until an element is available otherwise."),
    conn!("blmove", 6, WRITE | DENYOOM, 1, 2, 1, "list", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise."),
    conn!("brpoplpush", 4, WRITE | DENYOOM, 1, 2, 1, "list", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise."),
    conn!("blmpop", -5, WRITE, 0, 0, 0, "list", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise."),
    conn!("bzpopmin", -3, WRITE | FAST, 1, -2, 1, "sorted_set", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise."),
    conn!("bzmpop", -5, WRITE, 0, 0, 0, "sorted_set", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."),
    conn!("bzpopmax", -3, WRITE | FAST, 1, -2, 1, "sorted_set", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member is available otherwise."),
    // transactions
    conn!("multi", 1, FAST | LOADING | STALE, "transactions", "Starts a transaction."),
    conn!("exec", 1, LOADING | STALE, "transactions", "Executes all commands in a transaction."),
    conn!("discard", 1, FAST | LOADING | STALE, "transactions", "Discards a transaction."),
    conn!("watch", -2, FAST | LOADING | STALE, 1, -1, 1, "transactions", "Monitors changes to keys to determine the execution of a transaction."),
    conn!("unwatch", 1, FAST | LOADING | STALE, "transactions", "Forgets about watched keys of a transaction."),
    // pub/sub
    conn!("subscribe", -2, LOADING | STALE, "pubsub", "Listens for messages published to channels."),
    conn!("psubscribe", -2, LOADING | STALE, "pubsub", "Listens for messages published to channels that match one or more patterns."),
    conn!("unsubscribe", -1, LOADING | STALE, "pubsub", "Stops listening to messages posted to channels."),
    conn!("punsubscribe", -1, LOADING | STALE, "pubsub", "Stops listening to messages published to channels that match one or more patterns."),
    conn!("publish", 3, FAST | LOADING | STALE, "pubsub", "Posts a message to a channel."),
    conn!("ssubscribe", -2, LOADING | STALE, "pubsub", "Listens for messages published to shard channels."),
    conn!("sunsubscribe", -1, LOADING | STALE, "pubsub", "Stops listening to messages posted to shard channels."),
    conn!("spublish", 3, FAST | LOADING | STALE, "pubsub", "Post a message to a shard channel"),
    conn!("pubsub", -2, LOADING | STALE, "pubsub", "A container for Pub/Sub commands."),
    // scripting
    conn!("eval", -3, WRITE | STALE, "scripting", "Executes a server-side Lua script."),
    conn!("evalsha", -3, WRITE | STALE, "scripting", "Executes a server-side Lua script by SHA1 digest."),
    conn!("eval_ro", -3, READONLY | STALE, "scripting", "Executes a read-only server-side Lua script."),
    conn!("evalsha_ro", -3, READONLY | STALE, "scripting", "Executes a read-only server-side Lua script by SHA1 digest."),
    conn!("script", -2, STALE, "scripting", "A container for Lua scripts management commands."),
    conn!("fcall", -3, WRITE | STALE, "scripting", "Invokes a function."),
    conn!("fcall_ro", -3, READONLY | STALE, "scripting", "Invokes a read-only function."),
    conn!("function", -2, STALE, "scripting", "A container for function commands."),
    // server
    conn!("command", -1, LOADING | STALE, "server", "Returns detailed information about all commands."),
    conn!("info", -1, LOADING | STALE, "server", "Returns information and statistics about the server."),
    conn!("config", -2, ADMIN | LOADING | STALE, "server", "A container for server configuration commands."),
    conn!("time", 1, FAST | LOADING | STALE, "server", "Returns the server time."),
    conn!("debug", -2, ADMIN | LOADING | STALE, "server", "A container for debugging commands."),
    conn!("lastsave", 1, FAST | LOADING | STALE, "server", "Returns the Unix timestamp of the last successful save to disk."),
    conn!("save", 1, ADMIN, "server", "Synchronously saves the database(s) to disk."),
    conn!("shutdown", -1, ADMIN | LOADING | STALE, "server", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
    conn!("bgsave", -1, ADMIN, "server", "Asynchronously saves the database(s) to disk."),
    conn!("bgrewriteaof", 1, ADMIN, "server", "Asynchronously rewrites the append-only file to disk."),
    // introspection (server::introspect)
    conn!("slowlog", -2, ADMIN | LOADING | STALE, "server", "A container for slow log commands."),
    conn!("latency", -2, ADMIN | LOADING | STALE, "server", "A container for latency diagnostics commands."),
    conn!("monitor", 1, ADMIN | LOADING | STALE, "server", "Listens for all requests received by the server in real-time."),
    // replication
    conn!("replicaof", 3, ADMIN | STALE, "server", "Configures a server as replica of another, or promotes it to a master."),
    conn!("slaveof", 3, ADMIN | STALE, "server", "Sets a Redis server as a replica of another, or promotes it to being a master."),
    conn!("role", 1, LOADING | STALE | FAST, "server", "Returns the replication role."),
    conn!("wait", 3, 0, "generic", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."),
    conn!("replconf", -2, ADMIN | LOADING | STALE, "server", "An internal command for configuring the replication stream."),
    // failover and discovery (every node answers as its database's Sentinel)
    conn!("failover", -1, ADMIN | STALE, "server", "Starts a coordinated failover from this primary to one of its replicas."),
    conn!("keel", -2, ADMIN | STALE, "server", "keel's own administration: KEEL NODES, KEEL NODE ADD|REMOVE|REPLACE change the database's members online."),
    conn!("sentinel", -2, LOADING | STALE, "sentinel", "Sentinel discovery: where the primary, replicas and other members of this database are."),
];

/// A command's position in [`COMMANDS`], for per-command counters.
pub fn index_of(spec: &'static Spec) -> usize {
    (spec as *const Spec as usize - COMMANDS.as_ptr() as usize) / std::mem::size_of::<Spec>()
}

/// Every key a command names, for commands whose keys follow a `numkeys`
/// count (SINTERCARD, ZUNIONSTORE, LMPOP...) as well as the plain ones.
/// Malformed counts yield what can be read; the handler reports the error.
pub fn keys_of<'a>(spec: &Spec, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let numkeys_at = match spec.name {
        "sintercard" | "zinter" | "zunion" | "zdiff" | "lmpop" | "zintercard" | "zmpop" => Some(1),
        "zunionstore" | "zinterstore" | "zdiffstore" => Some(2),
        _ => None,
    };
    // streams: the keys follow STREAMS (their first half).
    if matches!(spec.name, "xread" | "xreadgroup") {
        return streams::read_keys(args);
    }
    // SORT's STORE key is an option, not a position.
    if matches!(spec.name, "sort" | "sort_ro") {
        return crate::cmd::sort::keys(args);
    }
    // GEORADIUS's STORE key is an option, not a position.
    if matches!(spec.name, "georadius" | "georadiusbymember") {
        return crate::cmd::geo::radius_keys(args);
    }
    let Some(at) = numkeys_at else {
        return spec.key_indexes(args.len()).map(|i| args[i]).collect();
    };
    let mut keys: Vec<&[u8]> = args[1..at].to_vec();
    let n = args
        .get(at)
        .and_then(|a| crate::cmd::numbers::parse_i64(a))
        .unwrap_or(0)
        .max(0) as usize;
    keys.extend(args.iter().skip(at + 1).take(n));
    keys
}

/// Every command by name. ahash, not SipHash: the table is looked up for
/// every command and every `redis.call`, and its keys are ours, not a
/// client's.
type Table = HashMap<&'static str, &'static Spec, ahash::RandomState>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| COMMANDS.iter().map(|s| (s.name, s)).collect())
}

/// Looks a command up by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table().get(std::str::from_utf8(lower).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
    }

    #[test]
    fn key_positions() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_indexes(5).collect::<Vec<_>>(), vec![1, 3]);
        let del = lookup(b"del").unwrap();
        assert_eq!(del.key_indexes(4).collect::<Vec<_>>(), vec![1, 2, 3]);
        let get = lookup(b"get").unwrap();
        assert_eq!(get.key_indexes(2).collect::<Vec<_>>(), vec![1]);
        let ping = lookup(b"ping").unwrap();
        assert_eq!(ping.key_indexes(1).count(), 0);
        let copy = lookup(b"copy").unwrap();
        assert_eq!(copy.key_indexes(5).collect::<Vec<_>>(), vec![1, 2]);
    }
}
