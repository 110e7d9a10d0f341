//! The parameters CONFIG GET and CONFIG SET know: every parameter
//! redis-server 7.0 accepts at runtime, with its aliases, its kind, its
//! default as CONFIG GET prints it and whether it may change at runtime,
//! plus keel's own parameters.
//!
//! This module only names, validates and canonicalizes values; it owns no
//! state. `server::commands` decides which parameters keel applies to its
//! own structures (their values live in [`crate::config::Config`]) and keeps
//! the others as set, in [`crate::server::state::ServerState`], so that
//! clients, test suites and operators that tune Redis can talk to keel
//! unchanged and read back what they wrote.
//!
//! Validation follows Redis 7.0 to the letter, error texts included, because
//! clients and test suites match those texts.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cmd::numbers::{parse_double, parse_i64};

/// Refused at runtime with "can't set immutable config": immutable in Redis,
/// or settable in Redis but fixed in keel once it runs (port, bind,
/// appendonly and keel's own sizing parameters).
pub const IMMUTABLE: u8 = 1;
/// Refused with "can't set protected config" (Redis refuses these unless
/// `enable-protected-configs` allows them, which is off and immutable).
pub const PROTECTED: u8 = 2;
/// Left out of pattern matches (`CONFIG GET *`); an exact name still works.
pub const HIDDEN: u8 = 4;
/// The value lives in keel's own configuration or state, which CONFIG SET
/// changes; everything else is kept as set (see the module comment).
pub const APPLIED: u8 = 8;
/// keel's own parameter, not Redis's.
pub const KEEL: u8 = 16;
/// Settable in Redis, fixed in keel once it runs: CONFIG SET to the value
/// it has already is accepted as the no-op it is (a client that writes
/// back every value it read, as Redis's own suite does, keeps working).
pub const FIXED_HERE: u8 = 32;

const INT_MAX: i128 = i32::MAX as i128;
const INT_MIN: i128 = i32::MIN as i128;
const UINT_MAX: i128 = u32::MAX as i128;
const LONG_MAX: i128 = i64::MAX as i128;
const ULLONG_MAX: i128 = u64::MAX as i128;

/// A numeric parameter's rules. Redis reads every number into a signed
/// 64-bit value, then checks the range on that value read as unsigned for
/// its unsigned C types (so `-1` is "out of range", not "not a number"),
/// and as signed for the others.
#[derive(Clone, Copy, Debug)]
pub struct Num {
    pub min: i128,
    pub max: i128,
    pub unsigned: bool,
    /// Takes units (`100mb`, `1gb`, `5k`) and no sign.
    pub memory: bool,
    /// Also takes `N%` (kept as -N; only `maxmemory-clients`).
    pub percent: bool,
}

/// Which check a free-form string must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Any,
    Hostname,
    ProcTitle,
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// yes / no.
    Bool,
    Num(Num),
    /// One word of the list; words with the same number are synonyms and
    /// read back as the first of them.
    Enum(&'static [(&'static str, u32)]),
    /// Space-separated words of the list, or-ed together (bit flags).
    Flags(&'static [(&'static str, u32)]),
    Str(Check),
    /// `notify-keyspace-events`: class letters.
    Events,
    /// `save`: pairs of seconds and changes.
    Save,
    /// `client-output-buffer-limit`: class hard soft seconds, repeated.
    OutputLimits,
    /// `oom-score-adj-values`: three integers.
    OomValues,
    /// `latency-tracking-info-percentiles`: doubles between 0 and 100.
    Percentiles,
    /// keel's `bind`, `dir` and `replicaof`: read from keel's state, never
    /// set at runtime.
    Fixed,
    /// keel's own integer parameters, parsed as keel always has.
    KeelInt,
    /// keel's own memory sizes, parsed with [`crate::config::parse_memory`].
    KeelMemory,
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub kind: Kind,
    /// The value before any CONFIG SET, as CONFIG GET prints it (for applied
    /// parameters keel's configuration gives the value instead).
    pub default: &'static str,
    pub flags: u8,
}

impl Param {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    const fn alias(self, alias: &'static str) -> Param {
        Param {
            alias: Some(alias),
            ..self
        }
    }

    const fn with(self, flags: u8) -> Param {
        Param {
            flags: self.flags | flags,
            ..self
        }
    }
}

const fn param(name: &'static str, kind: Kind, default: &'static str) -> Param {
    Param {
        name,
        alias: None,
        kind,
        default,
        flags: 0,
    }
}

const fn boolean(name: &'static str, default: &'static str) -> Param {
    param(name, Kind::Bool, default)
}

const fn number(
    name: &'static str,
    default: &'static str,
    min: i128,
    max: i128,
    unsigned: bool,
    memory: bool,
) -> Param {
    param(
        name,
        Kind::Num(Num {
            min,
            max,
            unsigned,
            memory,
            percent: false,
        }),
        default,
    )
}

/// A signed integer (Redis's int, long, long long, time_t, off_t, and its
/// unsigned long, whose range Redis checks as signed).
const fn int(name: &'static str, default: &'static str, min: i128, max: i128) -> Param {
    number(name, default, min, max, false, false)
}

/// An unsigned integer (Redis's unsigned int and size_t).
const fn uint(name: &'static str, default: &'static str, min: i128, max: i128) -> Param {
    number(name, default, min, max, true, false)
}

/// A memory size kept in a signed C type.
const fn mem(name: &'static str, default: &'static str, min: i128, max: i128) -> Param {
    number(name, default, min, max, false, true)
}

/// A memory size kept in an unsigned C type.
const fn umem(name: &'static str, default: &'static str, min: i128, max: i128) -> Param {
    number(name, default, min, max, true, true)
}

const fn string(name: &'static str, default: &'static str) -> Param {
    param(name, Kind::Str(Check::Any), default)
}

const fn choice(
    name: &'static str,
    words: &'static [(&'static str, u32)],
    default: &'static str,
) -> Param {
    param(name, Kind::Enum(words), default)
}

const YES_NO_LOCAL: &[(&str, u32)] = &[("no", 0), ("yes", 1), ("local", 2)];
const SHUTDOWN_FLAGS: &[(&str, u32)] = &[
    ("default", 0),
    ("save", 1),
    ("nosave", 2),
    ("now", 4),
    ("force", 8),
];
const SHUTDOWN_SAVE: u32 = 1;
const SHUTDOWN_NOSAVE: u32 = 2;

/// The words of `maxmemory-policy`, in the order Redis lists them.
pub const MAXMEMORY_POLICIES: &[(&str, u32)] = &[
    ("volatile-lru", 0),
    ("volatile-lfu", 1),
    ("volatile-random", 2),
    ("volatile-ttl", 3),
    ("allkeys-lru", 4),
    ("allkeys-lfu", 5),
    ("allkeys-random", 6),
    ("noeviction", 7),
];

/// Every parameter, Redis's first (grouped roughly as redis.conf groups
/// them), keel's own last. CONFIG GET * answers in this order.
pub static PARAMS: &[Param] = &[
    // Network and clients.
    param("bind", Kind::Fixed, "* -::*").with(IMMUTABLE | APPLIED | FIXED_HERE),
    string("bind-source-addr", ""),
    boolean("protected-mode", "yes"),
    int("port", "6379", 0, 65535).with(IMMUTABLE | APPLIED | FIXED_HERE),
    int("tcp-backlog", "511", 0, INT_MAX).with(IMMUTABLE),
    string("unixsocket", "").with(IMMUTABLE),
    uint("unixsocketperm", "0", 0, 0o777).with(IMMUTABLE),
    uint("socket-mark-id", "0", 0, UINT_MAX).with(IMMUTABLE),
    int("timeout", "0", 0, INT_MAX),
    int("tcp-keepalive", "300", 0, INT_MAX),
    uint("maxclients", "10000", 1, UINT_MAX).with(APPLIED),
    umem(
        "client-query-buffer-limit",
        "1073741824",
        1024 * 1024,
        LONG_MAX,
    )
    .with(APPLIED),
    mem("proto-max-bulk-len", "536870912", 1024 * 1024, LONG_MAX).with(APPLIED),
    param(
        "client-output-buffer-limit",
        Kind::OutputLimits,
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    ),
    uint("tracking-table-max-keys", "1000000", 0, LONG_MAX),
    // Process and logging.
    boolean("daemonize", "no").with(IMMUTABLE),
    choice(
        "supervised",
        &[("upstart", 1), ("systemd", 2), ("auto", 3), ("no", 0)],
        "no",
    )
    .with(IMMUTABLE),
    string("pidfile", "").with(IMMUTABLE),
    choice(
        "loglevel",
        &[("debug", 0), ("verbose", 1), ("notice", 2), ("warning", 3)],
        "notice",
    )
    .with(APPLIED),
    string("logfile", "").with(IMMUTABLE),
    boolean("syslog-enabled", "no").with(IMMUTABLE),
    string("syslog-ident", "redis").with(IMMUTABLE),
    choice(
        "syslog-facility",
        &[
            ("user", 0),
            ("local0", 1),
            ("local1", 2),
            ("local2", 3),
            ("local3", 4),
            ("local4", 5),
            ("local5", 6),
            ("local6", 7),
            ("local7", 8),
        ],
        "local0",
    )
    .with(IMMUTABLE),
    boolean("crash-log-enabled", "yes"),
    boolean("crash-memcheck-enabled", "yes"),
    int("databases", "16", 1, INT_MAX).with(IMMUTABLE | APPLIED),
    boolean("always-show-logo", "no").with(IMMUTABLE),
    boolean("set-proc-title", "yes").with(IMMUTABLE),
    param(
        "proc-title-template",
        Kind::Str(Check::ProcTitle),
        "{title} {listen-addr} {server-mode}",
    ),
    choice("enable-protected-configs", YES_NO_LOCAL, "no").with(IMMUTABLE),
    choice("enable-debug-command", YES_NO_LOCAL, "no").with(IMMUTABLE),
    choice("enable-module-command", YES_NO_LOCAL, "no").with(IMMUTABLE),
    string("ignore-warnings", ""),
    boolean("use-exit-on-panic", "no").with(HIDDEN),
    int("watchdog-period", "0", 0, INT_MAX).with(HIDDEN),
    // Snapshots. keel takes no timed snapshots, so it starts as
    // redis-server does with `--save ""` rather than with Redis's
    // "3600 1 300 100 60 10000".
    param("save", Kind::Save, ""),
    boolean("stop-writes-on-bgsave-error", "yes"),
    boolean("rdbcompression", "yes"),
    boolean("rdbchecksum", "yes").with(IMMUTABLE),
    choice(
        "sanitize-dump-payload",
        &[("no", 0), ("yes", 1), ("clients", 2)],
        "no",
    ),
    string("dbfilename", "dump.rdb").with(PROTECTED),
    boolean("rdb-del-sync-files", "no"),
    param("dir", Kind::Fixed, "").with(PROTECTED | APPLIED),
    boolean("rdb-save-incremental-fsync", "yes"),
    int("rdb-key-save-delay", "0", INT_MIN, INT_MAX).with(HIDDEN),
    int("key-load-delay", "0", INT_MIN, INT_MAX).with(HIDDEN),
    int(
        "loading-process-events-interval-bytes",
        "2097152",
        1024,
        INT_MAX,
    )
    .with(HIDDEN),
    // Replication.
    param("replicaof", Kind::Fixed, "")
        .alias("slaveof")
        .with(IMMUTABLE | APPLIED),
    string("masterauth", "").with(APPLIED),
    string("masteruser", ""),
    boolean("replica-serve-stale-data", "yes").alias("slave-serve-stale-data"),
    boolean("replica-read-only", "yes").alias("slave-read-only"),
    boolean("repl-diskless-sync", "yes"),
    int("repl-diskless-sync-delay", "5", 0, INT_MAX),
    int("repl-diskless-sync-max-replicas", "0", 0, INT_MAX),
    choice(
        "repl-diskless-load",
        &[("disabled", 0), ("on-empty-db", 1), ("swapdb", 2)],
        "disabled",
    ),
    int("repl-ping-replica-period", "10", 1, INT_MAX).alias("repl-ping-slave-period"),
    int("repl-timeout", "60", 1, INT_MAX).with(APPLIED),
    boolean("repl-disable-tcp-nodelay", "no"),
    // keel keeps a backlog per shard, sized once at start.
    mem("repl-backlog-size", "1048576", 1, LONG_MAX).with(APPLIED),
    int("repl-backlog-ttl", "3600", 0, LONG_MAX),
    int("replica-priority", "100", 0, INT_MAX).alias("slave-priority"),
    boolean("replica-announced", "yes"),
    int("min-replicas-to-write", "0", 0, INT_MAX).alias("min-slaves-to-write"),
    int("min-replicas-max-lag", "10", 0, INT_MAX).alias("min-slaves-max-lag"),
    string("replica-announce-ip", "").alias("slave-announce-ip"),
    int("replica-announce-port", "0", 0, 65535).alias("slave-announce-port"),
    boolean("replica-lazy-flush", "no").alias("slave-lazy-flush"),
    boolean("replica-ignore-maxmemory", "yes").alias("slave-ignore-maxmemory"),
    boolean("replica-ignore-disk-write-errors", "no"),
    choice(
        "propagation-error-behavior",
        &[("ignore", 0), ("panic", 1), ("panic-on-replicas", 2)],
        "ignore",
    ),
    // Security.
    string("requirepass", "").with(APPLIED),
    string("aclfile", "").with(IMMUTABLE | APPLIED),
    int("acllog-max-len", "128", 0, LONG_MAX),
    choice(
        "acl-pubsub-default",
        &[("allchannels", 1), ("resetchannels", 0)],
        "resetchannels",
    ),
    // Memory.
    umem("maxmemory", "0", 0, ULLONG_MAX).with(APPLIED),
    choice("maxmemory-policy", MAXMEMORY_POLICIES, "noeviction").with(APPLIED),
    int("maxmemory-samples", "5", 1, INT_MAX),
    int("maxmemory-eviction-tenacity", "10", 0, 100),
    param(
        "maxmemory-clients",
        Kind::Num(Num {
            min: -100,
            max: LONG_MAX,
            unsigned: false,
            memory: true,
            percent: true,
        }),
        "0",
    ),
    int("lfu-log-factor", "10", 0, INT_MAX),
    int("lfu-decay-time", "1", 0, INT_MAX),
    int("active-expire-effort", "1", 1, 10),
    boolean("lazyfree-lazy-eviction", "no"),
    boolean("lazyfree-lazy-expire", "no"),
    boolean("lazyfree-lazy-server-del", "no"),
    boolean("lazyfree-lazy-user-del", "no"),
    boolean("lazyfree-lazy-user-flush", "no"),
    choice(
        "oom-score-adj",
        &[("no", 0), ("yes", 1), ("relative", 1), ("absolute", 2)],
        "no",
    ),
    param("oom-score-adj-values", Kind::OomValues, "0 200 800"),
    boolean("disable-thp", "yes").with(IMMUTABLE),
    boolean("jemalloc-bg-thread", "yes"),
    // Threads and CPU affinity.
    int("io-threads", "1", 1, 128).with(IMMUTABLE),
    boolean("io-threads-do-reads", "no").with(IMMUTABLE),
    string("server_cpulist", "").with(IMMUTABLE),
    string("bio_cpulist", "").with(IMMUTABLE),
    string("aof_rewrite_cpulist", "").with(IMMUTABLE),
    string("bgsave_cpulist", "").with(IMMUTABLE),
    // Shutdown.
    param("shutdown-on-sigint", Kind::Flags(SHUTDOWN_FLAGS), "default"),
    param(
        "shutdown-on-sigterm",
        Kind::Flags(SHUTDOWN_FLAGS),
        "default",
    ),
    int("shutdown-timeout", "10", 0, INT_MAX),
    // Append-only file.
    boolean("appendonly", "no").with(IMMUTABLE | APPLIED | FIXED_HERE),
    string("appendfilename", "appendonly.aof").with(IMMUTABLE),
    string("appenddirname", "appendonlydir").with(IMMUTABLE),
    choice(
        "appendfsync",
        &[("everysec", 1), ("always", 0), ("no", 2)],
        "everysec",
    )
    .with(APPLIED),
    boolean("no-appendfsync-on-rewrite", "no"),
    int("auto-aof-rewrite-percentage", "100", 0, INT_MAX).with(APPLIED),
    mem("auto-aof-rewrite-min-size", "67108864", 0, LONG_MAX).with(APPLIED),
    boolean("aof-load-truncated", "yes"),
    boolean("aof-use-rdb-preamble", "yes"),
    boolean("aof-timestamp-enabled", "no"),
    boolean("aof-rewrite-incremental-fsync", "yes"),
    boolean("aof-disable-auto-gc", "no"),
    // Scripts.
    int("busy-reply-threshold", "5000", 0, LONG_MAX)
        .alias("lua-time-limit")
        .with(APPLIED),
    // Cluster.
    boolean("cluster-enabled", "no").with(IMMUTABLE),
    string("cluster-config-file", "nodes.conf").with(IMMUTABLE),
    int("cluster-node-timeout", "15000", 0, LONG_MAX),
    int("cluster-port", "0", 0, 65535).with(IMMUTABLE),
    int("cluster-replica-validity-factor", "10", 0, INT_MAX).alias("cluster-slave-validity-factor"),
    int("cluster-migration-barrier", "1", 0, INT_MAX),
    boolean("cluster-allow-replica-migration", "yes"),
    boolean("cluster-require-full-coverage", "yes"),
    boolean("cluster-replica-no-failover", "no").alias("cluster-slave-no-failover"),
    boolean("cluster-allow-reads-when-down", "no"),
    boolean("cluster-allow-pubsubshard-when-down", "yes"),
    umem("cluster-link-sendbuf-limit", "0", 0, ULLONG_MAX),
    string("cluster-announce-ip", ""),
    param("cluster-announce-hostname", Kind::Str(Check::Hostname), ""),
    choice(
        "cluster-preferred-endpoint-type",
        &[("ip", 0), ("hostname", 1), ("unknown-endpoint", 2)],
        "ip",
    ),
    int("cluster-announce-port", "0", 0, 65535),
    int("cluster-announce-bus-port", "0", 0, 65535),
    int("cluster-announce-tls-port", "0", 0, 65535),
    // Monitoring.
    int("slowlog-log-slower-than", "10000", -1, LONG_MAX),
    int("slowlog-max-len", "128", 0, LONG_MAX),
    int("latency-monitor-threshold", "0", 0, LONG_MAX),
    boolean("latency-tracking", "yes"),
    param(
        "latency-tracking-info-percentiles",
        Kind::Percentiles,
        "50 99 99.9",
    ),
    param("notify-keyspace-events", Kind::Events, ""),
    // Encodings of small values.
    uint("hash-max-listpack-entries", "512", 0, LONG_MAX).alias("hash-max-ziplist-entries"),
    umem("hash-max-listpack-value", "64", 0, LONG_MAX).alias("hash-max-ziplist-value"),
    int("list-max-listpack-size", "-2", INT_MIN, INT_MAX).alias("list-max-ziplist-size"),
    int("list-compress-depth", "0", 0, INT_MAX),
    uint("set-max-intset-entries", "512", 0, LONG_MAX),
    uint("zset-max-listpack-entries", "128", 0, LONG_MAX).alias("zset-max-ziplist-entries"),
    umem("zset-max-listpack-value", "64", 0, LONG_MAX).alias("zset-max-ziplist-value"),
    umem("hll-sparse-max-bytes", "3000", 0, LONG_MAX),
    umem("stream-node-max-bytes", "4096", 0, LONG_MAX),
    int("stream-node-max-entries", "100", 0, LONG_MAX),
    // Background work.
    boolean("activerehashing", "yes"),
    int("hz", "10", 0, INT_MAX),
    boolean("dynamic-hz", "yes"),
    boolean("activedefrag", "no"),
    umem("active-defrag-ignore-bytes", "104857600", 1, LONG_MAX),
    int("active-defrag-threshold-lower", "10", 0, 1000),
    int("active-defrag-threshold-upper", "100", 0, 1000),
    int("active-defrag-cycle-min", "1", 1, 99),
    int("active-defrag-cycle-max", "25", 1, 99),
    int("active-defrag-max-scan-fields", "1000", 1, LONG_MAX),
    // TLS: the port and whether links use it are fixed at start; the
    // certificates, CA, client checks, protocols and suites reload on
    // CONFIG SET (see `security::tls`).
    int("tls-port", "0", 0, 65535).with(IMMUTABLE | APPLIED | FIXED_HERE),
    string("tls-cert-file", "").with(APPLIED),
    string("tls-key-file", "").with(APPLIED),
    string("tls-key-file-pass", ""),
    string("tls-client-cert-file", "").with(APPLIED),
    string("tls-client-key-file", "").with(APPLIED),
    string("tls-client-key-file-pass", ""),
    string("tls-dh-params-file", ""),
    string("tls-ca-cert-file", "").with(APPLIED),
    string("tls-ca-cert-dir", "").with(APPLIED),
    choice(
        "tls-auth-clients",
        &[("no", 0), ("yes", 1), ("optional", 2)],
        "yes",
    )
    .with(APPLIED),
    boolean("tls-replication", "no").with(IMMUTABLE | APPLIED | FIXED_HERE),
    boolean("tls-cluster", "no"),
    string("tls-protocols", "").with(APPLIED),
    string("tls-ciphers", "").with(APPLIED),
    string("tls-ciphersuites", "").with(APPLIED),
    boolean("tls-prefer-server-ciphers", "no").with(APPLIED),
    boolean("tls-session-caching", "yes").with(APPLIED),
    int("tls-session-cache-size", "20480", 0, INT_MAX).with(APPLIED),
    int("tls-session-cache-timeout", "300", 0, INT_MAX),
    // keel's own.
    param("shards", Kind::KeelInt, "").with(KEEL | IMMUTABLE | APPLIED | FIXED_HERE),
    param("max-multibulk-len", Kind::KeelInt, "").with(KEEL | IMMUTABLE | APPLIED | FIXED_HERE),
    param("cross-core-queue-depth", Kind::KeelInt, "")
        .with(KEEL | IMMUTABLE | APPLIED | FIXED_HERE),
    param("read-max-lag", Kind::KeelInt, "").with(KEEL | APPLIED),
    // The backup strong-mode writes wait for (a connected backup's id; empty:
    // chosen, another zone's first). Set on the primary.
    string("sync-backup", "").with(KEEL | APPLIED),
    param("lua-memory-limit", Kind::KeelMemory, "").with(KEEL | APPLIED),
];

/// One name CONFIG knows: a parameter under its name or under its alias.
/// Redis treats the two as separate entries (both listed by `CONFIG GET *`,
/// not duplicates of each other in one CONFIG SET), sharing one value.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub param: &'static Param,
    pub alias: bool,
}

impl Entry {
    /// The entry's own spelling.
    pub fn name(&self) -> &'static str {
        match (self.alias, self.param.alias) {
            (true, Some(a)) => a,
            _ => self.param.name,
        }
    }

    fn same(&self, other: &Entry) -> bool {
        std::ptr::eq(self.param, other.param) && self.alias == other.alias
    }
}

/// Every entry, names and aliases, in table order.
pub fn entries() -> impl Iterator<Item = Entry> {
    PARAMS.iter().flat_map(|p| {
        let alias = p.alias.map(|_| Entry {
            param: p,
            alias: true,
        });
        std::iter::once(Entry {
            param: p,
            alias: false,
        })
        .chain(alias)
    })
}

/// The entry a name (any case) names.
pub fn lookup(name: &[u8]) -> Option<Entry> {
    entries().find(|e| e.name().as_bytes().eq_ignore_ascii_case(name))
}

/// CONFIG GET's selection: each argument without `*`, `?` or `[` names one
/// entry (hidden ones too) and is answered under the caller's spelling;
/// the others are case-insensitive patterns over every entry that is not
/// hidden. An entry is answered once however many arguments select it.
pub fn select(args: &[&[u8]]) -> Vec<(Vec<u8>, Entry)> {
    let mut out: Vec<(Vec<u8>, Entry)> = Vec::new();
    let taken = |out: &Vec<(Vec<u8>, Entry)>, name: &[u8]| {
        out.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    for arg in args {
        if !arg.iter().any(|c| matches!(c, b'*' | b'?' | b'[')) {
            if !taken(&out, arg) {
                if let Some(e) = lookup(arg) {
                    out.push((arg.to_vec(), e));
                }
            }
            continue;
        }
        let pattern = arg.to_ascii_lowercase();
        for e in entries() {
            let name = e.name().as_bytes();
            if !e.param.has(HIDDEN)
                && !taken(&out, name)
                && keel_shards::glob::matches(&pattern, name)
            {
                out.push((name.to_vec(), e));
            }
        }
    }
    out
}

/// Why a CONFIG SET was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// No such parameter (the caller's spelling).
    Unknown(String),
    /// Refused for the parameter named so, for this reason.
    Failed { name: String, why: String },
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::Unknown(name) => write!(
                f,
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            ),
            SetError::Failed { name, why } => write!(
                f,
                "CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ),
        }
    }
}

/// One accepted change: the entry and the value in canonical form.
#[derive(Debug)]
pub struct Change {
    pub entry: Entry,
    pub value: String,
}

/// Checks a whole CONFIG SET before anything changes, as Redis does: first
/// every name (unknown, immutable, protected, named twice), then every
/// value in order. The first problem found is the answer; with none, the
/// changes come back in the caller's order (a parameter given under its
/// name and its alias: the later one wins). `current` gives a parameter's
/// value now (client-output-buffer-limit changes only the classes given).
pub fn plan_set(
    pairs: &[(&[u8], &[u8])],
    current: &dyn Fn(&'static Param) -> String,
) -> Result<Vec<Change>, SetError> {
    let mut found: Vec<Entry> = Vec::with_capacity(pairs.len());
    let mut unchanged: Vec<usize> = Vec::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let spelled = || String::from_utf8_lossy(name).into_owned();
        let Some(e) = lookup(name) else {
            return Err(SetError::Unknown(spelled()));
        };
        let same = || {
            let now = current(e.param);
            canonical(e.param, value, &now).map_or(*value == now.as_bytes(), |v| v == now)
        };
        let fixed_but_same = e.param.has(FIXED_HERE) && same();
        if fixed_but_same {
            unchanged.push(i);
        }
        let why = if e.param.has(IMMUTABLE) && !fixed_but_same {
            Some("can't set immutable config")
        } else if e.param.has(PROTECTED) {
            Some("can't set protected config")
        } else if found.iter().any(|f| f.same(&e)) {
            Some("duplicate parameter")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SetError::Failed {
                name: spelled(),
                why: why.into(),
            });
        }
        found.push(e);
    }
    let mut changes = Vec::with_capacity(pairs.len());
    for (i, (entry, (_, value))) in found.into_iter().zip(pairs).enumerate() {
        if unchanged.contains(&i) {
            continue;
        }
        let value = canonical(entry.param, value, &current(entry.param)).map_err(|why| {
            SetError::Failed {
                name: entry.name().into(),
                why,
            }
        })?;
        changes.push(Change { entry, value });
    }
    Ok(changes)
}

/// A value checked and put in the form CONFIG GET prints, or why not.
pub fn canonical(p: &Param, v: &[u8], current: &str) -> Result<String, String> {
    match p.kind {
        Kind::Bool => {
            let yes = if v.eq_ignore_ascii_case(b"yes") {
                true
            } else if v.eq_ignore_ascii_case(b"no") {
                false
            } else {
                return Err("argument must be 'yes' or 'no'".into());
            };
            if yes && p.name == "activedefrag" {
                // keel cannot defragment; this is what a Redis built
                // without its own jemalloc answers.
                return Err("Active defragmentation cannot be enabled: it requires a Redis server compiled with a modified Jemalloc like the one shipped by default with the Redis source distribution".into());
            }
            Ok(if yes { "yes" } else { "no" }.into())
        }
        Kind::Num(n) => {
            let x = number_value(&n, v)?;
            // Redis clamps hz to 1..=500 when it applies it, and reports the
            // clamped value.
            let x = if p.name == "hz" { x.clamp(1, 500) } else { x };
            Ok(if n.percent && x < 0 {
                format!("{}%", -x)
            } else if n.unsigned || n.memory {
                (x as u64).to_string()
            } else {
                x.to_string()
            })
        }
        Kind::Enum(words) => {
            let hit = words
                .iter()
                .find(|(w, _)| w.as_bytes().eq_ignore_ascii_case(v));
            match hit {
                // Synonyms read back as the first word with their number.
                Some(&(_, n)) => Ok(words
                    .iter()
                    .find(|&&(_, m)| m == n)
                    .map_or("", |&(w, _)| w)
                    .into()),
                None => Err(enum_error(words)),
            }
        }
        Kind::Flags(words) => {
            let tokens = split_args(v);
            if tokens.is_empty() {
                return Err(enum_error(words));
            }
            let mut bits = 0;
            for t in tokens {
                match words
                    .iter()
                    .find(|(w, _)| w.as_bytes().eq_ignore_ascii_case(t))
                {
                    Some(&(_, n)) => bits |= n,
                    None => return Err(enum_error(words)),
                }
            }
            if bits & SHUTDOWN_SAVE != 0 && bits & SHUTDOWN_NOSAVE != 0 {
                return Err("shutdown options SAVE and NOSAVE can't be used simultaneously".into());
            }
            Ok(flag_names(words, bits))
        }
        Kind::Str(check) => {
            let s = String::from_utf8_lossy(v).into_owned();
            match check {
                Check::Any => {}
                Check::Hostname => {
                    if s.len() >= 256 {
                        return Err("Hostnames must be less than 256 characters".into());
                    }
                    if !s
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                    {
                        return Err(
                            "Hostnames may only contain alphanumeric characters, hyphens or dots"
                                .into(),
                        );
                    }
                }
                Check::ProcTitle => {
                    if !proc_title_ok(v) {
                        return Err(
                            "template format is invalid or contains unknown variables".into()
                        );
                    }
                }
            }
            Ok(s)
        }
        Kind::Events => events(v),
        Kind::Save => save(v),
        Kind::OutputLimits => output_limits(v, current),
        Kind::OomValues => oom_values(v),
        Kind::Percentiles => percentiles(v),
        // Never set at runtime (immutable or protected).
        Kind::Fixed => Ok(String::from_utf8_lossy(v).into_owned()),
        Kind::KeelInt => std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .map(|n| n.to_string())
            .ok_or_else(|| "argument couldn't be parsed into an integer".into()),
        Kind::KeelMemory => crate::config::parse_memory(&String::from_utf8_lossy(v))
            .map(|n| n.to_string())
            .ok_or_else(|| "argument must be a memory value".into()),
    }
}

fn enum_error(words: &[(&str, u32)]) -> String {
    let list: Vec<&str> = words.iter().map(|&(w, _)| w).collect();
    format!(
        "argument(s) must be one of the following: {}",
        list.join(", ")
    )
}

/// The words of a flags value: the zero word alone, else each flag word
/// whose bits are all set, in table order.
fn flag_names(words: &[(&str, u32)], bits: u32) -> String {
    if let Some(&(w, _)) = words.iter().find(|&&(_, n)| n == bits) {
        return w.into();
    }
    let mut names = Vec::new();
    let mut left = bits;
    for &(w, n) in words {
        if n != 0 && left & n == n {
            names.push(w);
            left &= !n;
        }
    }
    names.join(" ")
}

/// Multi-word values split as Redis splits them: on each single space (two
/// spaces make an empty word), and nothing at all for an empty value.
fn split_args(v: &[u8]) -> Vec<&[u8]> {
    if v.is_empty() {
        return Vec::new();
    }
    v.split(|&c| c == b' ').collect()
}

/// A number with Redis's rules for the parameter (see [`Num`]), as the
/// signed 64-bit value Redis keeps before its range check.
fn number_value(n: &Num, v: &[u8]) -> Result<i64, String> {
    let mut x = None;
    if n.memory {
        x = memory_value(v).map(|u| u as i64);
    }
    if x.is_none() && n.percent && v.len() > 1 && v.ends_with(b"%") {
        x = parse_i64(&v[..v.len() - 1]).filter(|&p| p >= 0).map(|p| -p);
    }
    if x.is_none() && !n.memory && !n.percent {
        x = parse_i64(v);
    }
    let x = x.ok_or_else(|| {
        match (n.memory, n.percent) {
            (true, true) => "argument must be a memory or percent value",
            (true, false) => "argument must be a memory value",
            _ => "argument couldn't be parsed into an integer",
        }
        .to_string()
    })?;
    let out_of_range = || format!("argument must be between {} and {} inclusive", n.min, n.max);
    if n.unsigned {
        let u = x as u64 as i128;
        if u < n.min || u > n.max {
            return Err(out_of_range());
        }
    } else if n.percent && x < 0 {
        if (x as i128) < n.min {
            return Err(format!(
                "percentage argument must be less or equal to {}",
                -n.min
            ));
        }
    } else if (x as i128) < n.min || (x as i128) > n.max {
        return Err(out_of_range());
    }
    Ok(x)
}

/// A memory size as Redis reads one: digits then an optional unit (b, k,
/// kb, m, mb, g, gb, any case), no sign. Its quirks are kept: no digits at
/// all reads as 0 (`""`, `"gb"`), too many digits saturate, and the unit
/// multiplies with wrap-around.
pub fn memory_value(v: &[u8]) -> Option<u64> {
    if v.first() == Some(&b'-') {
        return None;
    }
    let split = v
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let mul: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if digits.len() >= 128 {
        return None;
    }
    let mut n: u64 = 0;
    for d in digits {
        match n
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(d - b'0')))
        {
            Some(x) => n = x,
            None => {
                n = u64::MAX;
                break;
            }
        }
    }
    Some(n.wrapping_mul(mul))
}

/// C's `strtoll(s, &end, 10)` where the whole of `s` must be read: leading
/// white space and a sign are fine, overflow saturates, and an empty string
/// is 0 (strtoll reads nothing and stops at its end).
fn c_integer(s: &[u8]) -> Option<i64> {
    let mut i = s
        .iter()
        .position(|&c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(s.len());
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let start = i;
    let mut n: i128 = 0;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        n = (n * 10 + i128::from(d - b'0')).min(1 << 64);
        i += 1;
    }
    if i == start {
        return s.is_empty().then_some(0);
    }
    if i != s.len() {
        return None;
    }
    let n = if negative { -n } else { n };
    Some(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// notify-keyspace-events: the classes, printed in Redis's order. `A` is
/// every class but `m` and `n`, so `An` reads back as `A` (Redis's way).
fn events(v: &[u8]) -> Result<String, String> {
    const K: u32 = 1;
    const E: u32 = 2;
    const CLASSES: &[(u8, u32)] = &[
        (b'g', 1 << 2),
        (b'$', 1 << 3),
        (b'l', 1 << 4),
        (b's', 1 << 5),
        (b'h', 1 << 6),
        (b'z', 1 << 7),
        (b'x', 1 << 8),
        (b'e', 1 << 9),
        (b't', 1 << 10),
        (b'd', 1 << 13),
        (b'n', 1 << 14),
    ];
    const MISS: u32 = 1 << 11;
    // Every class `A` stands for: all but key misses and new keys.
    const ALL: u32 = (1 << 2)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 6)
        | (1 << 7)
        | (1 << 8)
        | (1 << 9)
        | (1 << 10)
        | (1 << 13);
    let mut bits = 0u32;
    for &c in v {
        bits |= match c {
            b'A' => ALL,
            b'K' => K,
            b'E' => E,
            b'm' => MISS,
            _ => match CLASSES.iter().find(|&&(l, _)| l == c) {
                Some(&(_, b)) => b,
                None => return Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()),
            },
        };
    }
    let mut out = String::new();
    if bits & ALL == ALL {
        out.push('A');
    } else {
        for &(l, b) in CLASSES {
            if bits & b != 0 {
                out.push(l as char);
            }
        }
    }
    for (l, b) in [('K', K), ('E', E), ('m', MISS)] {
        if bits & b != 0 {
            out.push(l);
        }
    }
    Ok(out)
}

/// save: "seconds changes" pairs, seconds at least 1, changes at least 0;
/// empty for none. Changes are kept in a C int, as Redis keeps them.
fn save(v: &[u8]) -> Result<String, String> {
    let bad = || "Invalid save parameters".to_string();
    let words = split_args(v);
    if !words.len().is_multiple_of(2) {
        return Err(bad());
    }
    let mut pairs = Vec::new();
    for pair in words.chunks(2) {
        let secs = c_integer(pair[0]).filter(|&s| s >= 1).ok_or_else(bad)?;
        let changes = c_integer(pair[1]).filter(|&c| c >= 0).ok_or_else(bad)?;
        pairs.push(format!("{secs} {}", changes as i32));
    }
    Ok(pairs.join(" "))
}

/// client-output-buffer-limit: groups of class, hard limit, soft limit and
/// soft seconds; the classes given replace theirs, the others stay.
fn output_limits(v: &[u8], current: &str) -> Result<String, String> {
    const CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];
    let words = split_args(v);
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut limits: [(u64, u64, i64); 3] = [(0, 0, 0); 3];
    let now: Vec<&str> = current.split(' ').collect();
    for (i, class) in now.chunks(4).enumerate().take(3) {
        if let [_, hard, soft, secs] = class {
            limits[i] = (
                hard.parse().unwrap_or(0),
                soft.parse().unwrap_or(0),
                secs.parse().unwrap_or(0),
            );
        }
    }
    let mut new = limits;
    for group in words.chunks(4) {
        let class = match group[0].to_ascii_lowercase().as_slice() {
            b"normal" => 0,
            b"slave" | b"replica" => 1,
            b"pubsub" => 2,
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into())
            }
        };
        let hard = memory_value(group[1]);
        let soft = memory_value(group[2]);
        // Redis keeps the seconds in a C int.
        let secs = c_integer(group[3]).map(|s| s as i32);
        match (hard, soft, secs) {
            (Some(h), Some(s), Some(t)) if t >= 0 => new[class] = (h, s, i64::from(t)),
            _ => {
                return Err(
                    "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                        .into(),
                )
            }
        }
    }
    Ok(CLASSES
        .iter()
        .zip(new)
        .map(|(c, (h, s, t))| format!("{c} {h} {s} {t}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// oom-score-adj-values: three integers in -2000..=2000.
fn oom_values(v: &[u8]) -> Result<String, String> {
    let words = split_args(v);
    if words.len() != 3 {
        return Err("wrong number of arguments".into());
    }
    let mut out = Vec::new();
    for w in words {
        match c_integer(w).filter(|n| (-2000..=2000).contains(n)) {
            Some(n) => out.push(n.to_string()),
            None => {
                return Err(
                    "Invalid oom-score-adj-values, elements must be between -2000 and 2000.".into(),
                )
            }
        }
    }
    Ok(out.join(" "))
}

/// latency-tracking-info-percentiles: doubles in 0..=100, printed with six
/// decimals less trailing zeros; empty for none.
fn percentiles(v: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    for w in split_args(v) {
        let p = parse_double(w)
            .ok_or_else(|| "Invalid latency-tracking-info-percentiles parameters".to_string())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .into(),
            );
        }
        let mut s = format!("{p:.6}");
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
        out.push(s);
    }
    Ok(out.join(" "))
}

/// Whether a proc-title-template is one Redis accepts: `{{` stands for a
/// brace, every `{name}` is one of its variables, and the title it gives
/// (with an empty program title) is not blank. Of the variables, keel's
/// listen address, ports and config file always print something; the
/// program title, server mode and unix socket print nothing here.
fn proc_title_ok(t: &[u8]) -> bool {
    let mut shows = false;
    let mut i = 0;
    while i < t.len() {
        if t[i] != b'{' {
            shows |= t[i] != b' ';
            i += 1;
            continue;
        }
        match t.get(i + 1) {
            None => return false,
            Some(b'{') => {
                shows = true;
                i += 2;
                continue;
            }
            Some(_) => {}
        }
        let Some(len) = t[i + 1..].iter().position(|&c| c == b'}') else {
            return false;
        };
        match &t[i + 1..i + 1 + len] {
            b"listen-addr" | b"port" | b"tls-port" | b"config-file" => shows = true,
            b"title" | b"server-mode" | b"unixsocket" => {}
            _ => return false,
        }
        i += len + 2;
    }
    shows
}

/// `hll-sparse-max-bytes` as last set (Redis's default until then): the
/// sparse-encoding limit for HyperLogLog writes. Process-wide, like the
/// executors that read it; CONFIG SET stores it here.
static HLL_SPARSE_MAX_BYTES: AtomicUsize = AtomicUsize::new(3000);

pub fn hll_sparse_max_bytes() -> usize {
    HLL_SPARSE_MAX_BYTES.load(Ordering::Relaxed)
}

pub fn set_hll_sparse_max_bytes(n: usize) {
    HLL_SPARSE_MAX_BYTES.store(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> Result<String, String> {
        let e = lookup(name.as_bytes()).ok_or("unknown")?;
        canonical(e.param, value.as_bytes(), e.param.default)
    }

    #[test]
    fn names_are_unique_and_lower_case() {
        let names: Vec<&str> = entries().map(|e| e.name()).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
            assert_eq!(n.to_ascii_lowercase(), *n);
        }
        // Every default of a stored parameter is already canonical.
        for p in PARAMS.iter().filter(|p| !p.has(APPLIED)) {
            assert_eq!(
                canonical(p, p.default.as_bytes(), p.default).as_deref(),
                Ok(p.default),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn numbers_follow_redis() {
        assert_eq!(
            set("timeout", "01"),
            Err("argument couldn't be parsed into an integer".into())
        );
        assert_eq!(
            set("timeout", "-1"),
            Err("argument must be between 0 and 2147483647 inclusive".into())
        );
        assert_eq!(
            set("maxclients", "-1"),
            Err("argument must be between 1 and 4294967295 inclusive".into())
        );
        assert_eq!(
            set("slowlog-max-len", "-1"),
            Err("argument must be between 0 and 9223372036854775807 inclusive".into())
        );
        assert_eq!(set("hash-max-ziplist-value", "1kb").as_deref(), Ok("1024"));
        assert_eq!(
            set("hash-max-listpack-entries", "1kb"),
            Err("argument couldn't be parsed into an integer".into())
        );
        assert_eq!(set("maxmemory", "").as_deref(), Ok("0"));
        assert_eq!(
            set("maxmemory", "99999999999999999999").as_deref(),
            Ok("18446744073709551615")
        );
        assert_eq!(
            set("maxmemory", "18446744073709551615kb").as_deref(),
            Ok("18446744073709550592")
        );
        assert_eq!(
            set("proto-max-bulk-len", "1Kb"),
            Err("argument must be between 1048576 and 9223372036854775807 inclusive".into())
        );
        assert_eq!(
            set("proto-max-bulk-len", "-5"),
            Err("argument must be a memory value".into())
        );
        assert_eq!(set("maxmemory-clients", "5%").as_deref(), Ok("5%"));
        assert_eq!(set("maxmemory-clients", "0%").as_deref(), Ok("0"));
        assert_eq!(
            set("maxmemory-clients", "101%"),
            Err("percentage argument must be less or equal to 100".into())
        );
        assert_eq!(
            set("maxmemory-clients", "-5%"),
            Err("argument must be a memory or percent value".into())
        );
        assert_eq!(set("hz", "0").as_deref(), Ok("1"));
        assert_eq!(set("hz", "1000").as_deref(), Ok("500"));
        assert_eq!(set("list-max-ziplist-size", "-5").as_deref(), Ok("-5"));
    }

    #[test]
    fn words_and_lists_follow_redis() {
        assert_eq!(set("activerehashing", "YES").as_deref(), Ok("yes"));
        assert_eq!(
            set("activerehashing", "1"),
            Err("argument must be 'yes' or 'no'".into())
        );
        assert_eq!(set("oom-score-adj", "relative").as_deref(), Ok("yes"));
        assert_eq!(
            set("maxmemory-policy", "ALLKEYS-LFU").as_deref(),
            Ok("allkeys-lfu")
        );
        assert_eq!(
            set("shutdown-on-sigint", "now save").as_deref(),
            Ok("save now")
        );
        assert!(set("shutdown-on-sigint", "").is_err());
        assert!(set("shutdown-on-sigint", "save nosave")
            .unwrap_err()
            .contains("simultaneously"));
        assert_eq!(set("notify-keyspace-events", "An").as_deref(), Ok("A"));
        assert_eq!(set("notify-keyspace-events", "KEA").as_deref(), Ok("AKE"));
        assert_eq!(
            set("notify-keyspace-events", "xmKEl$").as_deref(),
            Ok("$lxKEm")
        );
        assert!(set("notify-keyspace-events", "Q").is_err());
        assert_eq!(set("save", "01 02").as_deref(), Ok("1 2"));
        assert!(set("save", "900 1 ").is_err());
        assert!(set("save", "0 1").is_err());
        assert_eq!(
            set("oom-score-adj-values", "01 +2 -0").as_deref(),
            Ok("1 2 0")
        );
        assert_eq!(
            set("latency-tracking-info-percentiles", "1.50 2e1 100").as_deref(),
            Ok("1.5 20 100")
        );
        assert_eq!(
            set("latency-tracking-info-percentiles", "0.1234567").as_deref(),
            Ok("0.123457")
        );
        assert_eq!(
            set("latency-tracking-info-percentiles", "-0").as_deref(),
            Ok("-0")
        );
        assert_eq!(
            set(
                "client-output-buffer-limit",
                "pubsub 1mb 2mb 60 REPLICA 0 0 0"
            )
            .as_deref(),
            Ok("normal 0 0 0 slave 0 0 0 pubsub 1048576 2097152 60")
        );
        assert!(set("client-output-buffer-limit", "master 1 2 3")
            .unwrap_err()
            .contains("Invalid client class"));
        assert!(set("proc-title-template", "{title}").is_err());
        assert!(set("proc-title-template", "x {").is_err());
        assert_eq!(set("proc-title-template", "{{").as_deref(), Ok("{{"));
        assert!(set("cluster-announce-hostname", "a_b").is_err());
    }

    #[test]
    fn set_checks_names_first_then_values() {
        let now = |p: &'static Param| p.default.to_string();
        let plan = |args: &[&str]| {
            let pairs: Vec<(&[u8], &[u8])> = args
                .chunks(2)
                .map(|c| (c[0].as_bytes(), c[1].as_bytes()))
                .collect();
            plan_set(&pairs, &now).map(|c| c.into_iter().map(|c| c.value).collect::<Vec<_>>())
        };
        assert_eq!(
            plan(&["maxmemory", "foo", "nosuch", "1"]),
            Err(SetError::Unknown("nosuch".into()))
        );
        assert_eq!(
            plan(&["maxmemory", "1", "MAXMEMORY", "2"]),
            Err(SetError::Failed {
                name: "MAXMEMORY".into(),
                why: "duplicate parameter".into()
            })
        );
        assert_eq!(
            plan(&["daemonize", "yes", "nosuch", "1"]),
            Err(SetError::Failed {
                name: "daemonize".into(),
                why: "can't set immutable config".into()
            })
        );
        assert_eq!(
            plan(&["HASH-MAX-ZIPLIST-ENTRIES", "x"]),
            Err(SetError::Failed {
                name: "hash-max-ziplist-entries".into(),
                why: "argument couldn't be parsed into an integer".into()
            })
        );
        assert_eq!(
            plan(&[
                "hash-max-ziplist-entries",
                "1",
                "hash-max-listpack-entries",
                "2"
            ]),
            Ok(vec!["1".to_string(), "2".to_string()])
        );
    }

    #[test]
    fn get_selects_like_redis() {
        let keys = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            select(&args)
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&["MAXMEMORY", "maxmemory"]), ["MAXMEMORY"]);
        assert!(keys(&["*"]).contains(&"hash-max-ziplist-entries".to_string()));
        assert!(!keys(&["*"]).contains(&"use-exit-on-panic".to_string()));
        assert_eq!(keys(&["use-exit-on-panic"]), ["use-exit-on-panic"]);
        assert_eq!(keys(&["LUA-TIME*"]), ["lua-time-limit"]);
        assert!(keys(&["nosuch"]).is_empty());
    }
}
