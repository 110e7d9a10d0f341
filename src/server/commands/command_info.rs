//! COMMAND and its subcommands as Redis 7.0 answers them: COUNT, LIST
//! [FILTERBY MODULE|ACLCAT|PATTERN], INFO [names], DOCS [names], GETKEYS
//! and GETKEYSANDFLAGS.
//!
//! The table (`exec::command`) holds what keel runs by; what COMMAND INFO
//! reports follows Redis where the two differ in form: commands whose keys
//! follow a count or an option ("movablekeys") and container commands
//! (OBJECT, CONFIG...) report key positions 0 0 0 as Redis does, and the
//! flags Redis shows that keel's table has no bit for (noscript, blocking,
//! pubsub...) come from the name lists below. ACL categories are derived
//! from the flags and the group (keel has no ACL of its own). Key specs,
//! tips and subcommand details are empty arrays (a valid shape).
//!
//! GETKEYS finds keys as Redis does: from the table's first/last/step, or
//! by reading a numkeys count (ZUNIONSTORE, EVAL, LMPOP...), the STORE
//! option (SORT, GEORADIUS) or the STREAMS option (XREAD). The key flags of
//! GETKEYSANDFLAGS follow Redis's key specs for the common commands
//! (OW/update for what is overwritten whole, RW/insert for pushes,
//! RW/access/delete for pops and moved-away sources, RM/delete for DEL) and
//! are RO/access for reads and RW/access/update for other writes.

use keel_shards::glob;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::exec::command::{self, flags, Spec, COMMANDS};
use crate::resp::reply::Reply;

/// Commands with subcommands: Redis reports them with no flags and no keys.
const CONTAINERS: &[&str] = &[
    "object", "memory", "client", "config", "pubsub", "script", "function", "xgroup", "xinfo",
    "slowlog", "latency", "acl",
];

/// Commands whose keys follow a `numkeys` argument: (name, index of the
/// count, keys before it).
const NUMKEYS: &[(&str, usize)] = &[
    ("zunionstore", 2),
    ("zinterstore", 2),
    ("zdiffstore", 2),
    ("zunion", 1),
    ("zinter", 1),
    ("zdiff", 1),
    ("zintercard", 1),
    ("sintercard", 1),
    ("lmpop", 1),
    ("zmpop", 1),
    ("blmpop", 2),
    ("bzmpop", 2),
    ("eval", 2),
    ("evalsha", 2),
    ("eval_ro", 2),
    ("evalsha_ro", 2),
    ("fcall", 2),
    ("fcall_ro", 2),
];

/// Scripts may name no key at all (Redis's `no_mandatory_keys`).
const NO_MANDATORY_KEYS: &[&str] = &[
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

const MOVABLE_OTHERS: &[&str] = &[
    "sort",
    "sort_ro",
    "georadius",
    "georadiusbymember",
    "xread",
    "xreadgroup",
    "migrate",
];

const BLOCKING: &[&str] = &[
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "xread",
    "xreadgroup",
];

const NOSCRIPT: &[&str] = &[
    "monitor",
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "bzpopmin",
    "bzpopmax",
    "hello",
    "auth",
    "quit",
    "reset",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "subscribe",
    "psubscribe",
    "unsubscribe",
    "punsubscribe",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
    "debug",
    "save",
    "shutdown",
    "bgsave",
    "bgrewriteaof",
    "replicaof",
    "slaveof",
    "role",
    "wait",
    "replconf",
    "failover",
    "keel",
];

const ALLOW_BUSY: &[&str] = &[
    "hello", "auth", "quit", "reset", "multi", "discard", "watch", "unwatch", "shutdown",
    "replconf",
];

const EXTRA: &[(&str, &[&str])] = &[
    ("ssubscribe", &["pubsub", "noscript"]),
    ("sunsubscribe", &["pubsub", "noscript"]),
    ("spublish", &["pubsub"]),
    ("subscribe", &["pubsub"]),
    ("psubscribe", &["pubsub"]),
    ("unsubscribe", &["pubsub"]),
    ("punsubscribe", &["pubsub"]),
    ("publish", &["pubsub"]),
    ("exec", &["skip_slowlog"]),
    ("eval", &["skip_monitor"]),
    ("evalsha", &["skip_monitor"]),
    ("eval_ro", &["skip_monitor"]),
    ("evalsha_ro", &["skip_monitor"]),
    ("fcall", &["skip_monitor"]),
    ("fcall_ro", &["skip_monitor"]),
    ("save", &["no_async_loading", "no_multi"]),
    ("shutdown", &["no_multi"]),
    ("bgsave", &["no_async_loading"]),
    ("bgrewriteaof", &["no_async_loading"]),
    ("replicaof", &["no_async_loading"]),
    ("slaveof", &["no_async_loading"]),
];

/// A subcommand as COMMAND reports it (see [`SUBCOMMANDS`]).
struct Sub {
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    categories: &'static [&'static str],
}

const fn sub(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    categories: &'static [&'static str],
) -> Sub {
    Sub {
        name,
        arity,
        flags,
        keys,
        categories,
    }
}

/// The subcommands keel answers, as Redis 7.0 describes them (a new
/// subcommand adds its line here): name, arity, flags, key positions,
/// ACL categories.
const SUBCOMMANDS: &[Sub] = &[
    // ACL (src/security/acl)
    sub(
        "acl|cat",
        -2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "acl|deluser",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|dryrun",
        -4,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|genpass",
        -2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "acl|getuser",
        3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub("acl|help", 2, &["loading", "stale"], (0, 0, 0), &["@slow"]),
    sub(
        "acl|list",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|load",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|log",
        -2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|save",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|setuser",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|users",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "acl|whoami",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "object|encoding",
        3,
        &["readonly"],
        (2, 2, 1),
        &["@keyspace", "@read", "@slow"],
    ),
    sub(
        "object|freq",
        3,
        &["readonly"],
        (2, 2, 1),
        &["@keyspace", "@read", "@slow"],
    ),
    sub(
        "object|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@keyspace", "@slow"],
    ),
    sub(
        "object|idletime",
        3,
        &["readonly"],
        (2, 2, 1),
        &["@keyspace", "@read", "@slow"],
    ),
    sub(
        "object|refcount",
        3,
        &["readonly"],
        (2, 2, 1),
        &["@keyspace", "@read", "@slow"],
    ),
    sub(
        "memory|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "memory|usage",
        -3,
        &["readonly"],
        (2, 2, 1),
        &["@read", "@slow"],
    ),
    sub(
        "client|getname",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|id",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|info",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|list",
        -2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub(
        "client|no-evict",
        3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub(
        "client|setname",
        3,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "config|get",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "config|resetstat",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "config|rewrite",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "config|set",
        -4,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "pubsub|channels",
        -2,
        &["pubsub", "loading", "stale"],
        (0, 0, 0),
        &["@pubsub", "@slow"],
    ),
    sub(
        "pubsub|numpat",
        2,
        &["pubsub", "loading", "stale"],
        (0, 0, 0),
        &["@pubsub", "@slow"],
    ),
    sub(
        "pubsub|numsub",
        -2,
        &["pubsub", "loading", "stale"],
        (0, 0, 0),
        &["@pubsub", "@slow"],
    ),
    sub(
        "pubsub|shardchannels",
        -2,
        &["pubsub", "loading", "stale"],
        (0, 0, 0),
        &["@pubsub", "@slow"],
    ),
    sub(
        "pubsub|shardnumsub",
        -2,
        &["pubsub", "loading", "stale"],
        (0, 0, 0),
        &["@pubsub", "@slow"],
    ),
    sub(
        "script|exists",
        -3,
        &["noscript"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "script|flush",
        -2,
        &["noscript"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "script|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "script|kill",
        2,
        &["noscript", "allow_busy"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "script|load",
        3,
        &["noscript", "stale"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "function|delete",
        3,
        &["write", "noscript"],
        (0, 0, 0),
        &["@write", "@slow", "@scripting"],
    ),
    sub(
        "function|dump",
        2,
        &["noscript"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "function|flush",
        -2,
        &["write", "noscript"],
        (0, 0, 0),
        &["@write", "@slow", "@scripting"],
    ),
    sub(
        "function|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "function|kill",
        2,
        &["noscript", "allow_busy"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "function|list",
        -2,
        &["noscript"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "function|load",
        -3,
        &["write", "denyoom", "noscript"],
        (0, 0, 0),
        &["@write", "@slow", "@scripting"],
    ),
    sub(
        "function|restore",
        -3,
        &["write", "denyoom", "noscript"],
        (0, 0, 0),
        &["@write", "@slow", "@scripting"],
    ),
    sub(
        "function|stats",
        2,
        &["noscript", "allow_busy"],
        (0, 0, 0),
        &["@slow", "@scripting"],
    ),
    sub(
        "command|count",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|docs",
        -2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|getkeys",
        -4,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|getkeysandflags",
        -4,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|info",
        -2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "command|list",
        -2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    // Streams' containers (listed once XGROUP and XINFO are in the table).
    sub(
        "xgroup|create",
        -5,
        &["write", "denyoom"],
        (2, 2, 1),
        &["@write", "@stream", "@slow"],
    ),
    sub(
        "xgroup|createconsumer",
        5,
        &["write", "denyoom"],
        (2, 2, 1),
        &["@write", "@stream", "@slow"],
    ),
    sub(
        "xgroup|delconsumer",
        5,
        &["write"],
        (2, 2, 1),
        &["@write", "@stream", "@slow"],
    ),
    sub(
        "xgroup|destroy",
        4,
        &["write"],
        (2, 2, 1),
        &["@write", "@stream", "@slow"],
    ),
    sub(
        "xgroup|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@stream", "@slow"],
    ),
    sub(
        "xgroup|setid",
        -5,
        &["write"],
        (2, 2, 1),
        &["@write", "@stream", "@slow"],
    ),
    sub(
        "xinfo|consumers",
        4,
        &["readonly"],
        (2, 2, 1),
        &["@read", "@stream", "@slow"],
    ),
    sub(
        "xinfo|groups",
        3,
        &["readonly"],
        (2, 2, 1),
        &["@read", "@stream", "@slow"],
    ),
    sub(
        "xinfo|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@stream", "@slow"],
    ),
    sub(
        "xinfo|stream",
        -3,
        &["readonly"],
        (2, 2, 1),
        &["@read", "@stream", "@slow"],
    ),
    // introspection (SLOWLOG, LATENCY, MEMORY, CLIENT)
    sub(
        "client|kill",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub(
        "client|pause",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub(
        "client|reply",
        3,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|unblock",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub(
        "client|unpause",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous", "@connection"],
    ),
    sub("memory|doctor", 2, &[], (0, 0, 0), &["@slow"]),
    sub("memory|malloc-stats", 2, &[], (0, 0, 0), &["@slow"]),
    sub("memory|purge", 2, &[], (0, 0, 0), &["@slow"]),
    sub("memory|stats", 2, &[], (0, 0, 0), &["@slow"]),
    sub(
        "latency|doctor",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "latency|graph",
        3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "latency|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "latency|histogram",
        -2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "latency|history",
        3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "latency|latest",
        2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "latency|reset",
        -2,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "slowlog|get",
        -2,
        &["admin", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "slowlog|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "slowlog|len",
        2,
        &["admin", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    sub(
        "slowlog|reset",
        2,
        &["admin", "loading", "stale"],
        (0, 0, 0),
        &["@admin", "@slow", "@dangerous"],
    ),
    // client-side caching
    sub(
        "client|caching",
        3,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|getredir",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|tracking",
        -3,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    sub(
        "client|trackinginfo",
        2,
        &["noscript", "loading", "stale"],
        (0, 0, 0),
        &["@slow", "@connection"],
    ),
    // HELP of CONFIG and PUBSUB
    sub(
        "pubsub|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
    sub(
        "config|help",
        2,
        &["loading", "stale"],
        (0, 0, 0),
        &["@slow"],
    ),
];

/// Every subcommand keel describes, with its ACL categories: what ACL
/// rules such as `+config|get` and `+@admin` name (see `crate::security::acl::ids`).
pub fn subcommand_categories() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    SUBCOMMANDS.iter().map(|x| (x.name, x.categories))
}

fn subcommands_of(parent: &str) -> impl Iterator<Item = &'static Sub> + '_ {
    SUBCOMMANDS
        .iter()
        .filter(move |x| x.name.split('|').next() == Some(parent))
}

fn sub_info(x: &Sub) -> Reply {
    Reply::Array(vec![
        Reply::bulk(x.name),
        Reply::Int(x.arity as i64),
        Reply::Set(x.flags.iter().map(|f| Reply::status(f)).collect()),
        Reply::Int(x.keys.0 as i64),
        Reply::Int(x.keys.1 as i64),
        Reply::Int(x.keys.2 as i64),
        Reply::Set(x.categories.iter().map(|c| Reply::status(c)).collect()),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

/// COMMAND INFO of one name: a command, `parent|sub`, or nil.
fn info_of(name: &[u8]) -> Reply {
    if let Some(s) = command::lookup(name) {
        return info(s);
    }
    let lower = String::from_utf8_lossy(name).to_lowercase();
    let parent = lower.split('|').next().unwrap_or("");
    if command::lookup(parent.as_bytes()).is_none() {
        return Reply::NilArray;
    }
    SUBCOMMANDS
        .iter()
        .find(|x| x.name == lower)
        .map_or(Reply::NilArray, sub_info)
}

/// Whether a command's keys move with its arguments (a count, an option).
pub fn movable(s: &Spec) -> bool {
    NUMKEYS.iter().any(|(n, _)| *n == s.name) || MOVABLE_OTHERS.contains(&s.name)
}

pub fn container(s: &Spec) -> bool {
    CONTAINERS.contains(&s.name)
}

/// The flags COMMAND INFO shows, in Redis's words.
fn flag_names(s: &Spec) -> Vec<&'static str> {
    if container(s) {
        return Vec::new();
    }
    let mut out: Vec<&'static str> = flags::NAMES
        .iter()
        .filter(|(f, _)| s.has(*f))
        .map(|(_, n)| if *n == "no-auth" { "no_auth" } else { *n })
        .collect();
    let mut add = |f: &'static str, on: bool| {
        if on && !out.contains(&f) {
            out.push(f);
        }
    };
    add("blocking", BLOCKING.contains(&s.name));
    add("noscript", NOSCRIPT.contains(&s.name));
    add("allow_busy", ALLOW_BUSY.contains(&s.name));
    add("movablekeys", movable(s));
    add("no_mandatory_keys", NO_MANDATORY_KEYS.contains(&s.name));
    for (name, extra) in EXTRA {
        if *name == s.name {
            for f in *extra {
                add(f, true);
            }
        }
    }
    // Scripts declare their writes themselves (Redis shows no write flag).
    if NO_MANDATORY_KEYS.contains(&s.name) {
        out.retain(|f| *f != "write");
    }
    out
}

/// Redis's ACL categories, in the order it lists them.
pub const CATEGORY_ORDER: &[&str] = &[
    "@keyspace",
    "@read",
    "@write",
    "@set",
    "@sortedset",
    "@list",
    "@hash",
    "@string",
    "@bitmap",
    "@hyperloglog",
    "@geo",
    "@stream",
    "@pubsub",
    "@admin",
    "@fast",
    "@slow",
    "@blocking",
    "@dangerous",
    "@connection",
    "@transaction",
    "@scripting",
];

/// Categories Redis gives some commands beyond what flags and group say.
const CATEGORY_EXTRA: &[(&str, &[&str])] = &[
    ("sort", &["@set", "@sortedset", "@list", "@dangerous"]),
    ("sort_ro", &["@set", "@sortedset", "@list", "@dangerous"]),
    ("restore", &["@dangerous"]),
    ("swapdb", &["@keyspace", "@dangerous"]),
    ("keys", &["@dangerous"]),
    ("dbsize", &["@keyspace"]),
    ("flushdb", &["@keyspace", "@dangerous"]),
    ("flushall", &["@keyspace", "@dangerous"]),
    ("command", &["@connection"]),
    ("info", &["@dangerous"]),
    ("lastsave", &["@admin", "@dangerous"]),
    ("role", &["@admin", "@dangerous"]),
    ("wait", &["@connection"]),
];

/// The ACL categories COMMAND INFO shows (see the module docs).
pub fn categories(s: &Spec) -> Vec<&'static str> {
    if container(s) {
        return vec!["@slow"];
    }
    let mut out = Vec::new();
    // Scripts are neither reads nor writes to ACL: what they call is.
    if !NO_MANDATORY_KEYS.contains(&s.name) {
        if s.has(flags::WRITE) {
            out.push("@write");
        }
        if s.has(flags::READONLY) {
            out.push("@read");
        }
    }
    let group = match s.group {
        "string" => Some("@string"),
        "bitmap" => Some("@bitmap"),
        "hyperloglog" => Some("@hyperloglog"),
        "geo" => Some("@geo"),
        "hash" => Some("@hash"),
        "list" => Some("@list"),
        "set" => Some("@set"),
        "sorted-set" | "sorted_set" => Some("@sortedset"),
        "stream" => Some("@stream"),
        "generic" if !matches!(s.name, "sort" | "sort_ro" | "wait") => Some("@keyspace"),
        "pubsub" => Some("@pubsub"),
        "transactions" => Some("@transaction"),
        "scripting" => Some("@scripting"),
        "connection" => Some("@connection"),
        _ => None,
    };
    out.extend(group);
    out.push(if s.has(flags::FAST) { "@fast" } else { "@slow" });
    if BLOCKING.contains(&s.name) {
        out.push("@blocking");
    }
    if s.has(flags::ADMIN) {
        out.extend(["@admin", "@dangerous"]);
    }
    for (name, extra) in CATEGORY_EXTRA {
        if *name == s.name {
            out.extend(extra.iter().copied());
        }
    }
    out.sort_by_key(|c| CATEGORY_ORDER.iter().position(|o| o == c));
    out.dedup();
    out
}

fn info(s: &Spec) -> Reply {
    // A movable-keys command shows its fixed first key, if it has one.
    // Shard channels are positions Redis reports (for cluster routing),
    // though not keys.
    let (first, last, step) = if container(s) || (movable(s) && s.first_key != 1) {
        (0, 0, 0)
    } else if matches!(s.name, "ssubscribe" | "sunsubscribe") {
        (1, -1, 1)
    } else if s.name == "spublish" {
        (1, 1, 1)
    } else {
        (s.first_key, s.last_key, s.step)
    };
    Reply::Array(vec![
        Reply::bulk(s.name),
        Reply::Int(s.arity as i64),
        Reply::Set(flag_names(s).into_iter().map(Reply::status).collect()),
        Reply::Int(first as i64),
        Reply::Int(last as i64),
        Reply::Int(step as i64),
        Reply::Set(categories(s).into_iter().map(Reply::status).collect()),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(subcommands_of(s.name).map(sub_info).collect()),
    ])
}

fn docs(s: &Spec) -> Reply {
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(s.summary)),
        (Reply::bulk("since"), Reply::bulk("1.0.0")),
        (Reply::bulk("group"), Reply::bulk(s.group)),
    ])
}

/// COMMAND LIST's filter over a command's (or subcommand's) name and ACL
/// categories.
fn listed(name: &str, cats: &[&str], filter: Option<(&[u8], &[u8])>) -> Result<bool, CmdError> {
    let Some((by, arg)) = filter else {
        return Ok(true);
    };
    if is(by, "module") {
        // keel has no modules.
        Ok(false)
    } else if is(by, "aclcat") {
        let cat = String::from_utf8_lossy(arg).to_lowercase();
        Ok(cats.iter().any(|c| c[1..] == cat))
    } else if is(by, "pattern") {
        Ok(glob::matches(arg, name.as_bytes()))
    } else {
        Err(CmdError::Syntax)
    }
}

pub fn command(a: &[&[u8]]) -> CmdResult {
    if a.len() == 1 {
        return Ok(Reply::Array(COMMANDS.iter().map(info).collect()));
    }
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    let arity = |what: &str| Err(CmdError::Arity(format!("command|{what}")));
    match sub.as_str() {
        "count" if a.len() == 2 => Ok(Reply::Int(COMMANDS.len() as i64)),
        "count" => arity("count"),
        "list" => {
            let filter = match a.len() {
                2 => None,
                5 if is(a[2], "filterby") => Some((a[3], a[4])),
                _ => return Err(CmdError::Syntax),
            };
            // Commands and their subcommands (COUNT counts commands only).
            let mut out = Vec::new();
            for s in COMMANDS {
                if listed(s.name, &categories(s), filter)? {
                    out.push(Reply::bulk(s.name));
                }
                for x in subcommands_of(s.name) {
                    if listed(x.name, x.categories, filter)? {
                        out.push(Reply::bulk(x.name));
                    }
                }
            }
            Ok(Reply::Array(out))
        }
        "info" => Ok(Reply::Array(if a.len() == 2 {
            COMMANDS.iter().map(info).collect()
        } else {
            a[2..].iter().map(|n| info_of(n)).collect()
        })),
        "docs" => Ok(Reply::Map(if a.len() == 2 {
            COMMANDS
                .iter()
                .map(|s| (Reply::bulk(s.name), docs(s)))
                .collect()
        } else {
            a[2..]
                .iter()
                .filter_map(|n| command::lookup(n))
                .map(|s| (Reply::bulk(s.name), docs(s)))
                .collect()
        })),
        "getkeys" | "getkeysandflags" if a.len() < 4 => arity(&sub),
        "getkeys" => getkeys(&a[2..], false),
        "getkeysandflags" => getkeys(&a[2..], true),
        "help" => Ok(Reply::Array(
            HELP.iter().map(|l| Reply::status(l)).collect(),
        )),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "COMMAND".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}

const HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Print this help.",
];

/// The keys of a command as ACL checks them: each key's position in
/// `args` and whether the command reads it and whether it writes it (from
/// the key flags GETKEYSANDFLAGS reports: `access` reads; `insert`,
/// `delete` and `update` write). Arguments that do not say (a bad count)
/// give no keys: the command itself refuses them.
pub fn acl_keys(s: &Spec, args: &[&[u8]]) -> Vec<(usize, bool, bool)> {
    if !has_keys(s) {
        return Vec::new();
    }
    let Some((keys, store)) = key_positions(s, args) else {
        return Vec::new();
    };
    keys.into_iter()
        .filter(|&p| p < args.len())
        .map(|p| {
            let f = key_flags(s, p, &store);
            let read = f.contains(&"access");
            let write = f
                .iter()
                .any(|x| matches!(*x, "insert" | "delete" | "update"));
            (p, read, write)
        })
        .collect()
}

/// Whether a command names keys at all.
fn has_keys(s: &Spec) -> bool {
    s.first_key > 0 || movable(s)
}

/// A strict non-negative count.
fn count_at(args: &[&[u8]], at: usize) -> Option<usize> {
    let n = crate::cmd::numbers::parse_i64(args.get(at)?)?;
    usize::try_from(n).ok()
}

/// Positions of the keys in `args` (the command name first), and of those
/// that are destinations overwritten whole; `None` when the arguments do
/// not say (a bad count).
fn key_positions(s: &Spec, args: &[&[u8]]) -> Option<(Vec<usize>, Vec<usize>)> {
    if let Some((_, at)) = NUMKEYS.iter().find(|(n, _)| *n == s.name) {
        let n = count_at(args, *at)?;
        let first = at + 1;
        if n == 0 || n > args.len() - first {
            return None;
        }
        let mut keys: Vec<usize> = (1..*at).filter(|&i| s.first_key == 1 && i == 1).collect();
        let store = keys.clone();
        keys.extend(first..first + n);
        return Some((keys, store));
    }
    match s.name {
        "sort" | "sort_ro" | "georadius" | "georadiusbymember" => {
            let mut store = None;
            let mut i = 2;
            while i < args.len() {
                let w = args[i];
                if s.name.starts_with("sort") && is(w, "limit") {
                    i += 2;
                } else if s.name.starts_with("sort") && (is(w, "get") || is(w, "by")) {
                    i += 1;
                } else if (is(w, "store") || (s.name.starts_with("geo") && is(w, "storedist")))
                    && i + 1 < args.len()
                    && s.name != "sort_ro"
                {
                    store = Some(i + 1);
                    if s.name.starts_with("geo") {
                        i += 1;
                    }
                }
                i += 1;
            }
            let mut keys = vec![1];
            keys.extend(store);
            Some((keys, store.into_iter().collect()))
        }
        "xread" | "xreadgroup" => {
            let at = args.iter().position(|w| is(w, "streams"))?;
            let rest = args.len() - at - 1;
            if rest == 0 || !rest.is_multiple_of(2) {
                return None;
            }
            Some(((at + 1..at + 1 + rest / 2).collect(), Vec::new()))
        }
        _ => {
            let keys: Vec<usize> = s.key_indexes(args.len()).collect();
            if keys.is_empty() {
                return None;
            }
            let store = match s.name {
                "rename" | "renamenx" | "copy" | "bitop" => vec![2],
                "lmove" | "rpoplpush" | "smove" | "blmove" | "brpoplpush" => Vec::new(),
                _ if s.first_key == 1 && s.last_key == 2 && s.has(flags::WRITE) => vec![1],
                _ => Vec::new(),
            };
            Some((keys, store))
        }
    }
}

fn key_flags(s: &Spec, pos: usize, store: &[usize]) -> Vec<&'static str> {
    // What a command only reads: the sources of a command that writes a
    // destination (but RENAME moves its source away), what SORT and
    // GEORADIUS search, PFMERGE's sources.
    let source = match s.name {
        "rename" | "renamenx" => false,
        "sort" | "sort_ro" | "georadius" | "georadiusbymember" => true,
        "pfmerge" => pos > 1,
        _ => !store.is_empty(),
    };
    let moves = matches!(
        s.name,
        "lmove" | "rpoplpush" | "blmove" | "brpoplpush" | "smove"
    );
    if matches!(s.name, "watch" | "object" | "memory") {
        // Only looked at, not read.
        vec!["RO"]
    } else if s.name == "pfmerge" && pos == 1 {
        vec!["RW", "access", "insert"]
    } else if matches!(
        s.name,
        "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" | "hset" | "hmset" | "zadd"
    ) {
        vec!["RW", "update"]
    } else if store.contains(&pos)
        || matches!(
            s.name,
            "set" | "mset" | "msetnx" | "setex" | "psetex" | "restore"
        )
    {
        vec!["OW", "update"]
    } else if s.name == "setnx" {
        vec!["OW", "insert"]
    } else if moves && pos == 2 {
        vec!["RW", "insert"]
    } else if moves
        || matches!(
            s.name,
            "lpop"
                | "rpop"
                | "spop"
                | "getdel"
                | "zpopmin"
                | "zpopmax"
                | "lmpop"
                | "zmpop"
                | "blpop"
                | "brpop"
                | "blmpop"
                | "bzpopmin"
                | "bzpopmax"
                | "bzmpop"
                | "srem"
                | "hdel"
                | "zrem"
                | "lrem"
        )
    {
        vec!["RW", "access", "delete"]
    } else if matches!(
        s.name,
        "lpush" | "rpush" | "lpushx" | "rpushx" | "sadd" | "linsert" | "hsetnx"
    ) {
        vec!["RW", "insert"]
    } else if matches!(s.name, "rename" | "renamenx") {
        vec!["RW", "access", "delete"]
    } else if s.name == "pfcount" {
        // It may cache the count in the value.
        vec!["RW", "access"]
    } else if source || !s.has(flags::WRITE) {
        vec!["RO", "access"]
    } else if matches!(s.name, "del" | "unlink") {
        vec!["RM", "delete"]
    } else {
        vec!["RW", "access", "update"]
    }
}

/// COMMAND GETKEYS / GETKEYSANDFLAGS over `args` (the command asked about,
/// name first).
fn getkeys(args: &[&[u8]], with_flags: bool) -> CmdResult {
    let Some(s) = command::lookup(args[0]) else {
        return Err(CmdError::other("Invalid command specified"));
    };
    if !has_keys(s) {
        return Err(CmdError::other("The command has no key arguments"));
    }
    if !s.arity_ok(args.len()) {
        return Err(CmdError::other(
            "Invalid number of arguments specified for command",
        ));
    }
    let Some((keys, store)) = key_positions(s, args) else {
        if NO_MANDATORY_KEYS.contains(&s.name) {
            return Ok(Reply::Array(Vec::new()));
        }
        return Err(CmdError::other("Invalid arguments specified for command"));
    };
    Ok(Reply::Array(
        keys.into_iter()
            .map(|p| {
                if !with_flags {
                    return Reply::bulk(args[p]);
                }
                let f = key_flags(s, p, &store);
                Reply::Array(vec![
                    Reply::bulk(args[p]),
                    Reply::Set(f.into_iter().map(Reply::status).collect()),
                ])
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(words: &str) -> Result<Vec<String>, String> {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        match getkeys(&args, false) {
            Ok(Reply::Array(v)) => Ok(v
                .into_iter()
                .map(|r| match r {
                    Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn keys_as_redis_finds_them() {
        assert_eq!(
            keys("zunionstore d 2 a b weights 1 2").unwrap(),
            ["d", "a", "b"]
        );
        assert!(keys("zunionstore d 5 a b").is_err());
        assert_eq!(keys("eval s 2 a b c").unwrap(), ["a", "b"]);
        assert!(keys("eval s 0").unwrap().is_empty());
        assert_eq!(keys("sort l by w_* store d").unwrap(), ["l", "d"]);
        assert_eq!(keys("mset a 1 b 2").unwrap(), ["a", "b"]);
        assert_eq!(keys("blmpop 0 2 a b left").unwrap(), ["a", "b"]);
        assert_eq!(
            keys("swapdb 0 1").unwrap_err(),
            "ERR The command has no key arguments"
        );
        assert_eq!(
            keys("get a b").unwrap_err(),
            "ERR Invalid number of arguments specified for command"
        );
    }
}
