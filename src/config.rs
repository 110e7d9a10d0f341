//! Configuration: embedded defaults, then a TOML file, then command-line
//! flags (flags win). Flags carry redis-server's names where Redis has the
//! setting, so operators' habits carry over.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use keel_shards::EvictionPolicy;

const DEFAULTS: &str = include_str!("default.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid {name} '{value}': {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

/// keel: a Redis-compatible, highly available key-value server.
#[derive(Debug, Parser, Default)]
#[command(
    name = "keel",
    version,
    about,
    long_about = None,
    after_help = "Try it: `keel demo` starts a three-zone database on this machine (ports 6379-6381)\nand shows how to fail it over; `keel demo --help` for its commands."
)]
pub struct Flags {
    /// TOML configuration file (like redis-server's first argument).
    #[arg(value_name = "CONFIG")]
    pub config_file: Option<PathBuf>,
    /// TOML configuration file; same as the positional argument.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for clients.
    #[arg(long)]
    pub bind: Option<String>,
    /// TCP port for clients (0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Keyspace shards; default the number of cores the process may use.
    /// More shards than cores puts several shards on one core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Password clients must send with AUTH or HELLO before other commands.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// The primary's requirepass, which this node presents as a backup.
    #[arg(long)]
    pub masterauth: Option<String>,
    /// TLS: the port for clients over TLS (0: none).
    #[arg(long = "tls-port")]
    pub tls_port: Option<u16>,
    /// TLS: this node's certificate (PEM), for clients and other nodes.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the certificate's private key (PEM).
    #[arg(long = "tls-key-file")]
    pub tls_key_file: Option<PathBuf>,
    /// TLS: what this node presents when it connects to another node;
    /// default tls-cert-file.
    #[arg(long = "tls-client-cert-file")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// TLS: tls-client-cert-file's private key.
    #[arg(long = "tls-client-key-file")]
    pub tls_client_key_file: Option<PathBuf>,
    /// TLS: the CA that signs client and node certificates (PEM).
    #[arg(long = "tls-ca-cert-file")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// TLS: a directory of CA certificates (*.pem, *.crt).
    #[arg(long = "tls-ca-cert-dir")]
    pub tls_ca_cert_dir: Option<PathBuf>,
    /// TLS: clients must present a certificate: yes, no or optional.
    #[arg(long = "tls-auth-clients")]
    pub tls_auth_clients: Option<String>,
    /// TLS: links between nodes (replication, cluster bus) in mutual TLS:
    /// yes or no.
    #[arg(long = "tls-replication")]
    pub tls_replication: Option<String>,
    /// TLS: the HTTP port speaks HTTPS: yes or no.
    #[arg(long = "http-tls")]
    pub http_tls: Option<String>,
    /// TLS: protocol versions allowed, e.g. "TLSv1.2 TLSv1.3".
    #[arg(long = "tls-protocols")]
    pub tls_protocols: Option<String>,
    /// TLS: cipher suites allowed (IANA or OpenSSL names); default all
    /// of rustls's.
    #[arg(long = "tls-ciphersuites", alias = "tls-ciphers")]
    pub tls_ciphersuites: Option<String>,
    /// TLS: the server's cipher order wins: yes or no.
    #[arg(long = "tls-prefer-server-ciphers")]
    pub tls_prefer_server_ciphers: Option<String>,
    /// TLS: clients may resume sessions: yes or no (default yes).
    #[arg(long = "tls-session-caching")]
    pub tls_session_caching: Option<String>,
    /// TLS: sessions kept for resumption (default 20480).
    #[arg(long = "tls-session-cache-size")]
    pub tls_session_cache_size: Option<usize>,
    /// Memory limit for data (bytes, or with a unit: 100mb, 2gb); 0 means none.
    #[arg(long)]
    pub maxmemory: Option<String>,
    /// What to do at the memory limit: noeviction, allkeys-lru,
    /// allkeys-random, volatile-lru, volatile-random, volatile-ttl.
    #[arg(long = "maxmemory-policy")]
    pub maxmemory_policy: Option<String>,
    /// Directory for data files.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Append-only log: yes or no.
    #[arg(long)]
    pub appendonly: Option<String>,
    /// When the append-only log is fsynced: always, everysec or no.
    #[arg(long)]
    pub appendfsync: Option<String>,
    /// Rewrite the log (snapshot + new log) when it has grown by this
    /// percentage over its base; 0 turns automatic rewrites off.
    #[arg(long = "auto-aof-rewrite-percentage")]
    pub auto_aof_rewrite_percentage: Option<u64>,
    /// ...but not before the logs reach this size (bytes or with a unit).
    #[arg(long = "auto-aof-rewrite-min-size")]
    pub auto_aof_rewrite_min_size: Option<String>,
    /// Start even if a log is corrupt in the middle: everything from the bad
    /// record on is moved aside into a `.bad` file, not deleted.
    #[arg(long)]
    pub repair: bool,
    /// Largest bulk string a client may send (bytes or with a unit).
    #[arg(long = "proto-max-bulk-len")]
    pub proto_max_bulk_len: Option<String>,
    /// Most arguments in one request.
    #[arg(long = "max-multibulk-len")]
    pub max_multibulk_len: Option<u64>,
    /// Messages queued from one core to another before the sender waits.
    #[arg(long = "cross-core-queue-depth")]
    pub cross_core_queue_depth: Option<u64>,
    /// Largest unparsed input a client may accumulate before it is closed.
    #[arg(long = "client-query-buffer-limit")]
    pub client_query_buffer_limit: Option<String>,
    /// Most simultaneous client connections.
    #[arg(long)]
    pub maxclients: Option<u64>,
    /// Log verbosity: debug, verbose, notice or warning.
    #[arg(long)]
    pub loglevel: Option<String>,
    /// This node's id in the database's topology.
    #[arg(long = "node-id")]
    pub node_id: Option<String>,
    /// This node's availability zone (links to other zones are compressed).
    #[arg(long)]
    pub zone: Option<String>,
    /// This node's region.
    #[arg(long)]
    pub region: Option<String>,
    /// First port of the replication listeners: shard i listens on
    /// peer-port + i. 0: the client port + 10000, or a free port where that
    /// one is taken (backups ask the primary for its ports).
    #[arg(long = "peer-port")]
    pub peer_port: Option<u16>,
    /// Follow the primary at "HOST PORT" (its client port), as redis-server's
    /// replicaof.
    #[arg(long)]
    pub replicaof: Option<String>,
    /// eventual or strong (see ARCHITECTURE.md, consistency modes).
    #[arg(long)]
    pub consistency: Option<String>,
    /// Recent write records each shard keeps for partial resyncs (bytes or
    /// with a unit), per shard.
    #[arg(long = "repl-backlog-size")]
    pub repl_backlog_size: Option<String>,
    /// A backup is ready for reads while it is at most this many
    /// milliseconds behind its primary.
    #[arg(long = "read-max-lag")]
    pub read_max_lag: Option<u64>,
    /// Milliseconds a script runs before other clients get -BUSY and
    /// SCRIPT KILL may stop it (Redis's name; `lua-time-limit` is its alias).
    #[arg(long = "busy-reply-threshold", alias = "lua-time-limit")]
    pub busy_reply_threshold: Option<u64>,
    /// Memory each core's Lua state may use (bytes or with a unit).
    #[arg(long = "lua-memory-limit")]
    pub lua_memory_limit: Option<String>,
    /// The most a write is delayed (microseconds) while a backup lags.
    #[arg(long = "repl-backpressure-max-us")]
    pub repl_backpressure_max_us: Option<u64>,
    /// The lag (bytes or with a unit) at which writes are delayed by half
    /// the maximum.
    #[arg(long = "repl-backpressure-lag")]
    pub repl_backpressure_lag: Option<String>,
    /// Seconds without a word from the other side before a replication link
    /// is dropped; also how long a strong-mode write waits for its backup.
    #[arg(long = "repl-timeout")]
    pub repl_timeout: Option<u64>,
    /// The backup (by node id) strong-mode writes wait for; default the
    /// first backup to connect.
    #[arg(long = "sync-backup")]
    pub sync_backup: Option<String>,
    /// Milliseconds of silence after which a member of the topology is
    /// suspected; a failover needs a majority of voters to suspect the
    /// primary.
    #[arg(long = "node-timeout")]
    pub node_timeout: Option<u64>,
    /// How far (write records, summed over shards) a backup may trail the
    /// old primary's last known progress and still be promoted.
    #[arg(long = "failover-max-lag")]
    pub failover_max_lag: Option<u64>,
    /// The database's name, as Sentinel-aware clients ask for it.
    #[arg(long = "database-name")]
    pub database_name: Option<String>,
    /// Port of this node's cluster bus; default the client port + 20000.
    #[arg(long = "bus-port")]
    pub bus_port: Option<u16>,
    /// HTTP port (GET /health for DNS and load balancers); default the
    /// client port + 1000 (a free port if that one is taken); 0 turns it off.
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    /// Bearer token of the REST API (every command); default the
    /// requirepass password. With neither, REST asks no token.
    #[arg(long = "http-token")]
    pub http_token: Option<String>,
    /// Bearer token of the REST API that may run read commands only.
    #[arg(long = "http-readonly-token")]
    pub http_readonly_token: Option<String>,
    /// The largest REST request body (e.g. 10mb).
    #[arg(long = "http-max-body")]
    pub http_max_body: Option<String>,
    /// Check FILE (settings and [[nodes]] topology, with the other flags
    /// applied) without starting anything: print a summary and every
    /// problem, exit non-zero if there is one.
    #[arg(long = "check-config", value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// The ACL file: users loaded at start and by ACL LOAD, written by
    /// ACL SAVE (`user <name> <rules>` lines, as ACL LIST prints them).
    #[arg(long)]
    pub aclfile: Option<PathBuf>,
}

/// The settings as a file spells them.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    bind: Option<String>,
    port: Option<u16>,
    shards: Option<usize>,
    requirepass: Option<String>,
    masterauth: Option<String>,
    tls_port: Option<u16>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_cert_file: Option<PathBuf>,
    tls_client_key_file: Option<PathBuf>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_ca_cert_dir: Option<PathBuf>,
    tls_auth_clients: Option<toml::Value>,
    tls_replication: Option<toml::Value>,
    http_tls: Option<toml::Value>,
    tls_protocols: Option<String>,
    #[serde(alias = "tls-ciphers")]
    tls_ciphersuites: Option<String>,
    tls_prefer_server_ciphers: Option<toml::Value>,
    tls_session_caching: Option<toml::Value>,
    tls_session_cache_size: Option<usize>,
    maxmemory: Option<toml::Value>,
    maxmemory_policy: Option<String>,
    dir: Option<PathBuf>,
    appendonly: Option<toml::Value>,
    appendfsync: Option<String>,
    auto_aof_rewrite_percentage: Option<u64>,
    auto_aof_rewrite_min_size: Option<toml::Value>,
    proto_max_bulk_len: Option<toml::Value>,
    max_multibulk_len: Option<u64>,
    cross_core_queue_depth: Option<u64>,
    client_query_buffer_limit: Option<toml::Value>,
    maxclients: Option<u64>,
    loglevel: Option<String>,
    node_id: Option<String>,
    zone: Option<String>,
    region: Option<String>,
    peer_port: Option<u16>,
    replicaof: Option<String>,
    consistency: Option<String>,
    repl_backlog_size: Option<toml::Value>,
    read_max_lag: Option<u64>,
    busy_reply_threshold: Option<u64>,
    lua_memory_limit: Option<toml::Value>,
    repl_backpressure_max_us: Option<u64>,
    repl_backpressure_lag: Option<toml::Value>,
    repl_timeout: Option<u64>,
    sync_backup: Option<String>,
    node_timeout: Option<u64>,
    failover_max_lag: Option<u64>,
    database_name: Option<String>,
    bus_port: Option<u16>,
    http_port: Option<u16>,
    http_token: Option<String>,
    http_readonly_token: Option<String>,
    http_max_body: Option<toml::Value>,
    aclfile: Option<PathBuf>,
    /// Redis parameters saved by CONFIG REWRITE, applied at start as
    /// CONFIG SET (see `server::config_rewrite`).
    redis: Option<toml::Table>,
    /// The database's nodes, and which one is primary.
    primary: Option<String>,
    nodes: Option<Vec<NodeSpec>>,
}

/// One node of the database, as the topology lists it.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSpec {
    pub id: String,
    /// Address clients use ("host:port").
    pub client: String,
    /// First replication port ("host:port"; shard i on port + i); default
    /// the client port + 10000.
    pub peer: Option<String>,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub region: String,
    /// Cluster bus address ("host:port"); default the client port + 20000.
    pub bus: Option<String>,
    /// Votes in elections but holds no data (a third zone's tie-breaker).
    #[serde(default)]
    pub arbiter: bool,
}

/// What a write's acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Applied on the primary.
    Eventual,
    /// Applied on the sync backup and durable in the primary's log.
    Strong,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Consistency> {
        match s.to_ascii_lowercase().as_str() {
            "eventual" => Some(Consistency::Eventual),
            "strong" => Some(Consistency::Strong),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::Strong => "strong",
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    pub shards: Option<usize>,
    pub requirepass: Option<String>,
    pub masterauth: Option<String>,
    pub tls: crate::security::tls::TlsSettings,
    pub maxmemory: u64,
    pub maxmemory_policy: EvictionPolicy,
    pub dir: PathBuf,
    pub appendonly: bool,
    pub appendfsync: String,
    pub auto_aof_rewrite_percentage: u64,
    pub auto_aof_rewrite_min_size: u64,
    pub repair: bool,
    pub proto_max_bulk_len: u64,
    pub max_multibulk_len: u64,
    pub cross_core_queue_depth: u64,
    pub client_query_buffer_limit: u64,
    pub maxclients: u64,
    pub loglevel: String,
    pub config_file: Option<PathBuf>,
    /// The file's `[redis]` table: (parameter, value) pairs applied at
    /// start as one CONFIG SET.
    pub redis_saved: Vec<(String, String)>,
    pub node_id: String,
    pub zone: String,
    pub region: String,
    pub peer_port: u16,
    /// The primary to follow at start (its client address).
    pub replicaof: Option<(String, u16)>,
    pub consistency: Consistency,
    pub repl_backlog_size: u64,
    pub read_max_lag: u64,
    pub busy_reply_threshold: u64,
    pub lua_memory_limit: u64,
    pub repl_backpressure_max_us: u64,
    pub repl_backpressure_lag: u64,
    pub repl_timeout: u64,
    pub nodes: Vec<NodeSpec>,
    /// The backup strong-mode writes wait for (default: the first to connect).
    pub sync_backup: Option<String>,
    /// The topology's first primary (`primary = "<id>"`).
    pub primary: Option<String>,
    pub node_timeout: u64,
    pub failover_max_lag: u64,
    pub database_name: String,
    /// 0: the client port + 20000.
    pub bus_port: u16,
    /// None: the client port + 1000 (or a free one); Some(0): no HTTP.
    pub http_port: Option<u16>,
    /// REST tokens: full (default the requirepass password) and read-only.
    pub http_token: Option<String>,
    pub http_readonly_token: Option<String>,
    pub http_max_body: u64,
    /// The ACL file (`--aclfile`), if any.
    pub aclfile: Option<PathBuf>,
}

/// Parses "host port" (or "host:port") as REPLICAOF takes it.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    let (host, port) = match s.split_once(char::is_whitespace) {
        Some((h, p)) => (h.trim(), p.trim()),
        None => s.rsplit_once(':')?,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

/// Parses a memory size the way redis.conf does: `1gb`, `100mb`, `5k`, bytes.
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(true) => "yes".into(),
        toml::Value::Boolean(false) => "no".into(),
        other => other.to_string(),
    }
}

fn memory(name: &'static str, v: &str) -> Result<u64, ConfigError> {
    parse_memory(v).ok_or_else(|| ConfigError::Invalid {
        name,
        value: v.into(),
        why: "expected bytes or a size like 100mb".into(),
    })
}

pub fn parse_yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Builds the configuration from defaults, the file and the flags.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let defaults: FileConfig =
            toml::from_str(DEFAULTS).map_err(|source| ConfigError::Toml {
                path: "<embedded defaults>".into(),
                source,
            })?;
        let path = flags.config.clone().or(flags.config_file.clone());
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Toml {
                    path: p.display().to_string(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        // Flags first, then the file, then the embedded defaults.
        macro_rules! pick {
            ($flag:expr, $field:ident) => {
                $flag.or(file.$field.clone()).or(defaults.$field.clone())
            };
        }
        macro_rules! pick_text {
            ($flag:expr, $field:ident) => {
                $flag
                    .or(file.$field.as_ref().map(value_text))
                    .or(defaults.$field.as_ref().map(value_text))
                    .unwrap_or_default()
            };
        }
        let requirepass = pick!(flags.requirepass, requirepass).filter(|p| !p.is_empty());
        let policy_text = pick!(flags.maxmemory_policy, maxmemory_policy).unwrap_or_default();
        let maxmemory_policy =
            EvictionPolicy::parse(&policy_text).ok_or_else(|| ConfigError::Invalid {
                name: "maxmemory-policy",
                value: policy_text.clone(),
                why: format!("expected one of {}", EvictionPolicy::NAMES.join(", ")),
            })?;
        let appendonly_text = pick_text!(flags.appendonly, appendonly);
        let appendonly = parse_yes_no(&appendonly_text).ok_or_else(|| ConfigError::Invalid {
            name: "appendonly",
            value: appendonly_text.clone(),
            why: "expected yes or no".into(),
        })?;
        let appendfsync = pick!(flags.appendfsync, appendfsync).unwrap_or_default();
        if !["always", "everysec", "no"].contains(&appendfsync.as_str()) {
            return Err(ConfigError::Invalid {
                name: "appendfsync",
                value: appendfsync,
                why: "expected always, everysec or no".into(),
            });
        }
        let shards = pick!(flags.shards, shards);
        if shards == Some(0) || shards.is_some_and(|n| n > 1024) {
            return Err(ConfigError::Invalid {
                name: "shards",
                value: format!("{shards:?}"),
                why: "expected 1 to 1024".into(),
            });
        }
        let consistency_text = pick!(flags.consistency, consistency).unwrap_or_default();
        let consistency =
            Consistency::parse(&consistency_text).ok_or_else(|| ConfigError::Invalid {
                name: "consistency",
                value: consistency_text.clone(),
                why: "expected eventual or strong".into(),
            })?;
        let nodes = file.nodes.clone().unwrap_or_default();
        let port = pick!(flags.port, port).unwrap_or(6379);
        let node_id = pick!(flags.node_id, node_id)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}:{port}",
                    pick!(flags.bind.clone(), bind).unwrap_or_default()
                )
            });
        let me = nodes.iter().find(|n| n.id == node_id);
        let replicaof =
            match pick!(flags.replicaof, replicaof).filter(|s| !s.is_empty()) {
                Some(text) => Some(parse_host_port(&text).ok_or_else(|| ConfigError::Invalid {
                    name: "replicaof",
                    value: text.clone(),
                    why: "expected \"HOST PORT\"".into(),
                })?),
                // The topology names the primary: every other node follows it.
                None => match file.primary.as_ref().filter(|p| **p != node_id) {
                    Some(p) => {
                        let n = nodes.iter().find(|n| n.id == *p).ok_or_else(|| {
                            ConfigError::Invalid {
                                name: "primary",
                                value: p.clone(),
                                why: "no node with that id in [[nodes]]".into(),
                            }
                        })?;
                        Some(
                            parse_host_port(&n.client).ok_or_else(|| ConfigError::Invalid {
                                name: "nodes.client",
                                value: n.client.clone(),
                                why: "expected HOST:PORT".into(),
                            })?,
                        )
                    }
                    None => None,
                },
            };
        let yes_no = |name: &'static str, text: String| {
            if text.is_empty() {
                return Ok(false);
            }
            parse_yes_no(&text).ok_or_else(|| ConfigError::Invalid {
                name,
                value: text.clone(),
                why: "expected yes or no".into(),
            })
        };
        let auth_text = pick_text!(flags.tls_auth_clients, tls_auth_clients);
        let tls = crate::security::tls::TlsSettings {
            port: pick!(flags.tls_port, tls_port).unwrap_or(0),
            cert_file: pick!(flags.tls_cert_file, tls_cert_file),
            key_file: pick!(flags.tls_key_file, tls_key_file),
            client_cert_file: pick!(flags.tls_client_cert_file, tls_client_cert_file),
            client_key_file: pick!(flags.tls_client_key_file, tls_client_key_file),
            ca_cert_file: pick!(flags.tls_ca_cert_file, tls_ca_cert_file),
            ca_cert_dir: pick!(flags.tls_ca_cert_dir, tls_ca_cert_dir),
            auth_clients: if auth_text.is_empty() {
                Default::default()
            } else {
                crate::security::tls::AuthClients::parse(&auth_text).ok_or_else(|| {
                    ConfigError::Invalid {
                        name: "tls-auth-clients",
                        value: auth_text.clone(),
                        why: "expected yes, no or optional".into(),
                    }
                })?
            },
            replication: yes_no(
                "tls-replication",
                pick_text!(flags.tls_replication, tls_replication),
            )?,
            http: yes_no("http-tls", pick_text!(flags.http_tls, http_tls))?,
            protocols: pick!(flags.tls_protocols, tls_protocols).unwrap_or_default(),
            ciphersuites: pick!(flags.tls_ciphersuites, tls_ciphersuites).unwrap_or_default(),
            prefer_server_ciphers: yes_no(
                "tls-prefer-server-ciphers",
                pick_text!(flags.tls_prefer_server_ciphers, tls_prefer_server_ciphers),
            )?,
            session_caching: {
                let t = pick_text!(flags.tls_session_caching, tls_session_caching);
                t.is_empty() || yes_no("tls-session-caching", t)?
            },
            session_cache_size: pick!(flags.tls_session_cache_size, tls_session_cache_size)
                .unwrap_or(20480),
        };
        Ok(Config {
            node_id: node_id.clone(),
            zone: pick!(flags.zone, zone)
                .or(me.map(|n| n.zone.clone()))
                .filter(|z| !z.is_empty())
                .unwrap_or_else(|| "default".into()),
            region: pick!(flags.region, region)
                .or(me.map(|n| n.region.clone()))
                .filter(|z| !z.is_empty())
                .unwrap_or_else(|| "default".into()),
            peer_port: pick!(flags.peer_port, peer_port).unwrap_or(0),
            replicaof,
            consistency,
            repl_backlog_size: memory(
                "repl-backlog-size",
                &pick_text!(flags.repl_backlog_size, repl_backlog_size),
            )?,
            read_max_lag: pick!(flags.read_max_lag, read_max_lag).unwrap_or(1000),
            busy_reply_threshold: pick!(flags.busy_reply_threshold, busy_reply_threshold)
                .unwrap_or(5000),
            lua_memory_limit: memory(
                "lua-memory-limit",
                &pick_text!(flags.lua_memory_limit, lua_memory_limit),
            )?,
            repl_backpressure_max_us: pick!(
                flags.repl_backpressure_max_us,
                repl_backpressure_max_us
            )
            .unwrap_or(1000),
            repl_backpressure_lag: memory(
                "repl-backpressure-lag",
                &pick_text!(flags.repl_backpressure_lag, repl_backpressure_lag),
            )?
            .max(1),
            repl_timeout: pick!(flags.repl_timeout, repl_timeout).unwrap_or(10).max(1),
            nodes,
            sync_backup: pick!(flags.sync_backup, sync_backup).filter(|s| !s.is_empty()),
            primary: file.primary.clone(),
            node_timeout: pick!(flags.node_timeout, node_timeout)
                .unwrap_or(1000)
                .max(50),
            failover_max_lag: pick!(flags.failover_max_lag, failover_max_lag).unwrap_or(10_000),
            database_name: pick!(flags.database_name, database_name)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "keel".into()),
            bus_port: pick!(flags.bus_port, bus_port).unwrap_or(0),
            http_port: pick!(flags.http_port, http_port),
            http_token: pick!(flags.http_token, http_token)
                .filter(|t| !t.is_empty())
                .or_else(|| requirepass.clone()),
            http_readonly_token: pick!(flags.http_readonly_token, http_readonly_token)
                .filter(|t| !t.is_empty()),
            aclfile: pick!(flags.aclfile, aclfile).filter(|p| !p.as_os_str().is_empty()),
            http_max_body: memory(
                "http-max-body",
                &pick_text!(flags.http_max_body, http_max_body),
            )?
            .max(1024),
            bind: pick!(flags.bind, bind).unwrap_or_default(),
            port,
            shards,
            requirepass,
            masterauth: pick!(flags.masterauth, masterauth).filter(|p| !p.is_empty()),
            tls,
            maxmemory: memory("maxmemory", &pick_text!(flags.maxmemory, maxmemory))?,
            maxmemory_policy,
            dir: pick!(flags.dir, dir).unwrap_or_else(|| ".".into()),
            appendonly,
            appendfsync,
            auto_aof_rewrite_percentage: pick!(
                flags.auto_aof_rewrite_percentage,
                auto_aof_rewrite_percentage
            )
            .unwrap_or(100),
            auto_aof_rewrite_min_size: memory(
                "auto-aof-rewrite-min-size",
                &pick_text!(flags.auto_aof_rewrite_min_size, auto_aof_rewrite_min_size),
            )?,
            repair: flags.repair,
            proto_max_bulk_len: memory(
                "proto-max-bulk-len",
                &pick_text!(flags.proto_max_bulk_len, proto_max_bulk_len),
            )?,
            max_multibulk_len: pick!(flags.max_multibulk_len, max_multibulk_len)
                .unwrap_or(i32::MAX as u64),
            cross_core_queue_depth: pick!(flags.cross_core_queue_depth, cross_core_queue_depth)
                .unwrap_or(1024)
                .max(1),
            client_query_buffer_limit: memory(
                "client-query-buffer-limit",
                &pick_text!(flags.client_query_buffer_limit, client_query_buffer_limit),
            )?,
            maxclients: pick!(flags.maxclients, maxclients).unwrap_or(10000),
            loglevel: pick!(flags.loglevel, loglevel).unwrap_or_else(|| "notice".into()),
            redis_saved: match &file.redis {
                Some(t) => {
                    crate::server::config_rewrite::saved(t).map_err(|why| ConfigError::Invalid {
                        name: "[redis]",
                        value: path
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        why,
                    })?
                }
                None => Vec::new(),
            },
            config_file: path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_flags() {
        let c = Config::load(Flags::default()).unwrap();
        assert_eq!((c.bind.as_str(), c.port), ("127.0.0.1", 6379));
        assert_eq!(c.proto_max_bulk_len, 512 * 1024 * 1024);
        let c = Config::load(Flags::parse_from([
            "keel",
            "--port",
            "7000",
            "--maxmemory",
            "1gb",
        ]))
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.maxmemory, 1 << 30);
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = std::env::temp_dir().join(format!("keel-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keel.toml");
        std::fs::write(
            &path,
            "port = 7001\nmaxmemory-policy = \"allkeys-lru\"\nappendonly = true\n",
        )
        .unwrap();
        let c = Config::load(Flags::parse_from(["keel", path.to_str().unwrap()])).unwrap();
        assert_eq!(
            (c.port, c.maxmemory_policy, c.appendonly),
            (7001, EvictionPolicy::AllKeysLru, true)
        );
        let c = Config::load(Flags::parse_from([
            "keel",
            "--config",
            path.to_str().unwrap(),
            "--port",
            "7002",
        ]))
        .unwrap();
        assert_eq!(c.port, 7002);
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(Config::load(Flags::parse_from(["keel", path.to_str().unwrap()])).is_err());
    }

    #[test]
    fn a_topology_names_the_primary_to_follow() {
        let dir = std::env::temp_dir().join(format!("keel-topology-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keel.toml");
        let topology = r#"
primary = "a"
consistency = "strong"
[[nodes]]
id = "a"
client = "10.0.0.1:6379"
zone = "z1"
region = "r1"
[[nodes]]
id = "b"
client = "10.0.0.2:6379"
zone = "z2"
region = "r1"
"#;
        std::fs::write(&path, topology).unwrap();
        let p = path.to_str().unwrap();
        let b = Config::load(Flags::parse_from(["keel", p, "--node-id", "b"])).unwrap();
        assert_eq!(b.replicaof, Some(("10.0.0.1".to_string(), 6379)));
        assert_eq!((b.zone.as_str(), b.region.as_str()), ("z2", "r1"));
        assert_eq!(b.consistency, Consistency::Strong);
        let a = Config::load(Flags::parse_from(["keel", p, "--node-id", "a"])).unwrap();
        assert_eq!((a.replicaof, a.zone.as_str()), (None, "z1"));
        // A flag wins over the topology.
        let c = Config::load(Flags::parse_from([
            "keel",
            p,
            "--node-id",
            "b",
            "--replicaof",
            "10.0.0.9 7000",
        ]))
        .unwrap();
        assert_eq!(c.replicaof, Some(("10.0.0.9".to_string(), 7000)));
        std::fs::write(
            &path,
            topology.replace("primary = \"a\"", "primary = \"x\""),
        )
        .unwrap();
        assert!(Config::load(Flags::parse_from(["keel", p, "--node-id", "b"])).is_err());
        assert!(Config::load(Flags::parse_from(["keel", "--replicaof", "nohostport"])).is_err());
        assert!(Config::load(Flags::parse_from(["keel", "--consistency", "maybe"])).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::load(Flags::parse_from(["keel", "--maxmemory", "lots"])).is_err());
        assert!(Config::load(Flags::parse_from([
            "keel",
            "--maxmemory-policy",
            "sometimes"
        ]))
        .is_err());
        assert!(Config::load(Flags::parse_from(["keel", "--shards", "0"])).is_err());
    }
}
