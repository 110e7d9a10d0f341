//! What every executor shares: the runtime-changeable settings and the
//! server-wide counters. Hot-path readers use atomics; the rest sits behind a
//! lock taken only by CONFIG and INFO.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use keel_shards::EvictionPolicy;

use crate::config::Config;

pub struct ServerState {
    /// The settings CONFIG SET may change.
    pub config: RwLock<Config>,
    pub shards: usize,
    pub executors: usize,
    /// Keyspace notifications' mailboxes, one per executor.
    pub keyspace_hub: std::sync::Arc<crate::exec::notify::Hub>,
    /// Client-side caching: tracking clients and their message queues.
    pub tracking: std::sync::Arc<crate::server::tracking::Directory>,
    /// The port actually bound (differs from the config when it said 0).
    pub port: AtomicU64,
    /// The HTTP port bound (0: none).
    pub http_port: AtomicU64,
    pub started_ms: u64,
    pub run_id: String,
    pub next_client_id: AtomicU64,
    pub connected_clients: AtomicUsize,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub blocked_clients: AtomicUsize,
    /// Bumped by CONFIG SET so executors re-read memory limits.
    pub config_epoch: AtomicU64,
    pub shutdown: AtomicBool,
    /// Shards whose log cannot be written: while non-zero, writes are
    /// refused with -MISCONF.
    pub disk_errors: AtomicUsize,
    /// The last log error's text, for -MISCONF replies on every core.
    pub disk_error: Mutex<String>,
    /// `appendonly yes` with `appendfsync always`: replies to writes wait
    /// for their records to be durable.
    pub fsync_always: AtomicBool,
    /// The data directory, once opened (and locked).
    pub datadir: Mutex<Option<crate::persist::dir::DataDir>>,
    /// Numbers transactions for their write records (see `Router::end`).
    pub commits: Arc<AtomicU64>,
    pub repl: crate::repl::shared::ReplShared,
    /// The cluster bus's view (term, members, elections); idle without a
    /// topology.
    pub cluster: crate::cluster::ClusterState,
    /// Script bodies and the state of running scripts (see `script`).
    pub scripts: crate::script::cache::Scripts,
    /// The function libraries (FUNCTION LOAD), as read from `META_DB`.
    pub functions: crate::script::library::Functions,
    /// What CONFIG SET gave the Redis parameters keel keeps without
    /// applying them, by parameter name (see `server::config_table`).
    pub config_stored: Mutex<std::collections::HashMap<&'static str, String>>,
    /// The parameters CONFIG SET changed since start: what CONFIG REWRITE
    /// saves to the configuration file.
    pub config_changed: Mutex<std::collections::BTreeSet<&'static str>>,
    /// TLS, when the configuration asks for it at start (its port and
    /// whether links use it are fixed; its certificates reload).
    pub tls: Option<crate::security::tls::Tls>,
    /// ACL users and log (see `crate::security::acl`).
    pub acl: Arc<crate::security::acl::Acl>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ServerState {
    pub fn new(
        config: Config,
        shards: usize,
        executors: usize,
        tls: Option<crate::security::tls::Tls>,
    ) -> Self {
        let started_ms = now_ms();
        // A run id only needs to differ between runs: mix time and pid.
        let mut x = started_ms ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
        let run_id: String = (0..40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                std::char::from_digit((x % 16) as u32, 16).unwrap_or('0')
            })
            .collect();
        // Strong consistency acknowledges only what the log made durable.
        let fsync_always = config.appendonly
            && (config.appendfsync == "always"
                || config.consistency == crate::config::Consistency::Strong);
        ServerState {
            port: AtomicU64::new(config.port as u64),
            http_port: AtomicU64::new(0),
            repl: crate::repl::shared::ReplShared::new(shards, &config),
            cluster: crate::cluster::ClusterState::new(),
            functions: crate::script::library::Functions::default(),
            scripts: crate::script::cache::Scripts::new(
                executors,
                config.busy_reply_threshold,
                config.lua_memory_limit,
            ),
            acl: Arc::new(crate::security::acl::Acl::new(
                config.requirepass.as_deref(),
                config.aclfile.clone(),
            )),
            config: RwLock::new(config),
            shards,
            executors,
            keyspace_hub: crate::exec::notify::Hub::new(executors),
            tracking: Default::default(),
            started_ms,
            run_id,
            next_client_id: AtomicU64::new(1),
            connected_clients: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            blocked_clients: AtomicUsize::new(0),
            config_epoch: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            commits: Arc::new(AtomicU64::new(0)),
            disk_errors: AtomicUsize::new(0),
            disk_error: Mutex::new(String::new()),
            datadir: Mutex::new(None),
            fsync_always: AtomicBool::new(fsync_always),
            config_stored: Mutex::new(Default::default()),
            config_changed: Mutex::new(Default::default()),
            tls,
        }
    }

    pub fn config(&self) -> Config {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The REST tokens (full, read-only): read per request, so without
    /// cloning the whole configuration.
    pub fn http_tokens(&self) -> (Option<String>, Option<String>) {
        let c = match self.config.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        (c.http_token.clone(), c.http_readonly_token.clone())
    }

    pub fn update_config(&self, f: impl FnOnce(&mut Config)) {
        match self.config.write() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
        self.config_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Each shard's share of `maxmemory`.
    pub fn shard_memory_limit(&self) -> (usize, EvictionPolicy) {
        let c = self.config();
        (
            (c.maxmemory / self.shards as u64) as usize,
            c.maxmemory_policy,
        )
    }
}
