//! INFO: the server's state in Redis's section and field names, which
//! dashboards and client libraries read (`redis_version`, `role`, `loading`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use keel_shards::{ShardStats, DATABASES};

use crate::cmd::error::CmdResult;
use crate::resp::reply::Reply;
use crate::server::client::CommandStats;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// Every section, in print order; the default set is all but commandstats.
const ALL: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "cpu",
    "commandstats",
    "errorstats",
    "keyspace",
    "shards",
];

/// One shard's figures, gathered from its executor.
pub(crate) struct ShardFacts {
    pub id: usize,
    pub seq: u64,
    pub keys: usize,
    pub used: usize,
    pub stats: ShardStats,
    /// Per database: keys, and keys with a TTL.
    pub dbs: Vec<(usize, usize)>,
}

/// Every shard's figures in shard order, and the command counters of every
/// executor summed (for INFO and `/metrics`): one message per core.
pub(crate) async fn gather(
    router: &crate::exec::router::Router,
) -> Result<(Vec<ShardFacts>, CommandStats), crate::cmd::error::CmdError> {
    let parts = router
        .broadcast(|ls| {
            let shards: Vec<ShardFacts> = ls
                .ids()
                .map(|id| {
                    let s = ls.shard(id);
                    ShardFacts {
                        id,
                        seq: s.seq(),
                        keys: s.keys(),
                        used: s.used_memory(),
                        stats: s.stats,
                        dbs: (0..DATABASES)
                            .map(|d| (s.db_len(d), s.db_volatile(d)))
                            .collect(),
                    }
                })
                .collect();
            (shards, ls.stats.borrow().clone())
        })
        .await?;
    let mut shards = Vec::new();
    let mut cmd = CommandStats::default();
    for (s, c) in parts {
        shards.extend(s);
        cmd.merge(&c);
    }
    shards.sort_by_key(|s| s.id);
    Ok((shards, cmd))
}

pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

pub async fn info(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let asked: Vec<String> = a[1..]
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let sections: Vec<&str> = if asked.is_empty() || asked.iter().any(|s| s == "default") {
        ALL.iter()
            .copied()
            .filter(|s| *s != "commandstats")
            .collect()
    } else if asked.iter().any(|s| s == "all" || s == "everything") {
        ALL.to_vec()
    } else {
        ALL.iter()
            .copied()
            .filter(|s| asked.iter().any(|a| a == s))
            .collect()
    };
    let (shards, cmd) = gather(&conn.router).await?;
    let st = &conn.state;
    let config = st.config();
    let used: usize = shards.iter().map(|s| s.used).sum();
    let mut stats = ShardStats::default();
    for s in &shards {
        stats.keyspace_hits += s.stats.keyspace_hits;
        stats.keyspace_misses += s.stats.keyspace_misses;
        stats.expired_keys += s.stats.expired_keys;
        stats.evicted_keys += s.stats.evicted_keys;
    }
    let now = now_ms();
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let w = &mut out;
        match *section {
            "server" => {
                let _ = write!(
                    w,
                    "# Server\r\nredis_version:{}\r\nkeel_version:{}\r\nredis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:10\r\nexecutable:{}\r\nconfig_file:{}\r\nshards:{}\r\nexecutors:{}\r\nhttp_port:{}\r\n",
                    crate::REDIS_VERSION,
                    env!("CARGO_PKG_VERSION"),
                    std::process::id(),
                    st.run_id,
                    st.port.load(Ordering::Relaxed),
                    now * 1000,
                    (now - st.started_ms) / 1000,
                    (now - st.started_ms) / 86_400_000,
                    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                    config.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    st.shards,
                    st.executors,
                    st.http_port.load(Ordering::Relaxed),
                );
            }
            "clients" => {
                let _ = write!(
                    w,
                    "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:{}\r\n",
                    st.connected_clients.load(Ordering::Relaxed),
                    config.maxclients,
                    st.blocked_clients.load(Ordering::Relaxed),
                    st.tracking.counts().0,
                );
            }
            "memory" => {
                // keel frees values where they are dropped: no object ever
                // waits for a background free (lazyfree_* stay 0).
                let rss = rss_bytes();
                let _ = write!(
                    w,
                    "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:0\r\nmem_not_counted_for_evict:0\r\n",
                    human(used as u64),
                    human(rss),
                    config.maxmemory,
                    human(config.maxmemory),
                    config.maxmemory_policy.name(),
                    if used > 0 { rss as f64 / used as f64 } else { 0.0 },
                );
            }
            "persistence" => {
                let f = crate::server::commands::persistence::facts(conn)
                    .await
                    .unwrap_or_default();
                let c = st.config();
                let status = |ok: bool| if ok { "ok" } else { "err" };
                let last = if f.last_save_secs == 0 {
                    st.started_ms / 1000
                } else {
                    f.last_save_secs
                };
                let _ = write!(
                    w,
                    "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_last_bgrewrite_status:{}\r\naof_last_write_status:{}\r\naof_current_size:{}\r\naof_base_size:{}\r\nsnapshot_longest_step_us:{}\r\nsnapshot_longest_step_cpu_us:{}\r\nsnapshot_steps:{}\r\nsnapshot_steps_over_1ms:{}\r\nsnapshot_cow_entries:{}\r\n",
                    shards.iter().map(|s| s.seq).sum::<u64>(),
                    f.running as u8,
                    last,
                    status(f.last_ok),
                    c.appendonly as u8,
                    (f.running && c.appendonly) as u8,
                    status(f.last_ok),
                    status(f.write_ok),
                    f.log_bytes + f.base_bytes,
                    f.base_bytes,
                    f.longest_step_us,
                    f.longest_step_cpu_us,
                    f.steps,
                    f.slow_steps,
                    f.cow_entries,
                );
            }
            "stats" => {
                let _ = write!(
                    w,
                    "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ninstantaneous_input_kbps:{:.2}\r\ninstantaneous_output_kbps:{:.2}\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:0\r\npubsub_patterns:0\r\ntotal_error_replies:{}\r\npipeline_batches:{}\r\npipeline_batched_commands:{}\r\ntracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\n",
                    st.total_connections.load(Ordering::Relaxed),
                    cmd.total_commands,
                    cmd.instant.ops.round() as u64,
                    cmd.net_input_bytes,
                    cmd.net_output_bytes,
                    cmd.instant.input_bytes / 1024.0,
                    cmd.instant.output_bytes / 1024.0,
                    st.rejected_connections.load(Ordering::Relaxed),
                    st.repl.sync_full.load(Ordering::Relaxed),
                    st.repl.sync_partial_ok.load(Ordering::Relaxed),
                    st.repl.sync_partial_err.load(Ordering::Relaxed),
                    stats.expired_keys,
                    stats.evicted_keys,
                    stats.keyspace_hits,
                    stats.keyspace_misses,
                    cmd.error_replies,
                    cmd.batches,
                    cmd.batched_commands,
                    keel_shards::tracking::total_keys(),
                    keel_shards::tracking::total_items(),
                    st.tracking.counts().1,
                );
                st.acl.log.info_stats(w);
            }
            "replication" => {
                crate::server::commands::replication::info_section(conn, w).await?;
            }
            "cluster" => crate::cluster::info_section(st, w),
            "cpu" => {
                let (sys, user) = cpu_times();
                let _ = write!(
                    w,
                    "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n"
                );
            }
            "commandstats" => {
                w.push_str("# Commandstats\r\n");
                let mut names: Vec<_> = crate::exec::command::COMMANDS
                    .iter()
                    .zip(&cmd.by_command)
                    .filter(|(_, s)| s.calls + s.rejected + s.failed > 0)
                    .map(|(spec, s)| (spec.name, s))
                    .collect();
                names.sort_by_key(|(n, _)| *n);
                for (name, s) in names {
                    let _ = write!(
                        w,
                        "cmdstat_{name}:calls={},usec={},usec_per_call={:.2},rejected_calls={},failed_calls={}\r\n",
                        s.calls,
                        s.usec,
                        if s.calls > 0 { s.usec as f64 / s.calls as f64 } else { 0.0 },
                        s.rejected,
                        s.failed
                    );
                }
            }
            "errorstats" => {
                w.push_str("# Errorstats\r\n");
                for (code, n) in &cmd.errors {
                    let _ = write!(w, "errorstat_{code}:count={n}\r\n");
                }
            }
            "keyspace" => {
                w.push_str("# Keyspace\r\n");
                for db in 0..DATABASES {
                    let keys: usize = shards.iter().map(|s| s.dbs[db].0).sum();
                    let expires: usize = shards.iter().map(|s| s.dbs[db].1).sum();
                    if keys > 0 {
                        let _ = write!(w, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
                    }
                }
            }
            "shards" => {
                w.push_str("# Shards\r\n");
                for s in &shards {
                    let _ = write!(
                        w,
                        "shard{}:seq={},keys={},used_memory={}\r\n",
                        s.id, s.seq, s.keys, s.used
                    );
                }
            }
            _ => {}
        }
    }
    Ok(Reply::Verbatim(out))
}
