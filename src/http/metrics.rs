//! `GET /metrics`: the node in Prometheus's text format, for scraping.
//!
//! Nothing here is recorded on the data path: every figure is a counter or
//! gauge the shards and executors keep anyway (the ones INFO prints), read
//! on each executor and summed at scrape time, so a scrape costs one
//! message per core and recording costs no lock and no cross-core traffic.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::Response;
use crate::exec::command::COMMANDS;
use crate::exec::router::Router;
use crate::server::histogram::Histogram;
use crate::server::state::ServerState;

type Labels = Vec<(&'static str, String)>;

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// One of our power-of-two histograms as a Prometheus histogram, in
/// seconds. (prometheus-client's own histogram records observations one by
/// one; ours are already bucketed by the cores that timed the runs.)
#[derive(Debug, Default)]
struct Seconds(Mutex<(Histogram, f64)>);

impl Seconds {
    /// `unit`: the histogram's unit in seconds (1e-6 for microseconds).
    fn add(&self, h: &Histogram, unit: f64) {
        if let Ok(mut g) = self.0.lock() {
            g.0.merge(h);
            g.1 = unit;
        }
    }
}

impl TypedMetric for Seconds {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Seconds {
    fn encode(&self, mut e: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (h, unit) = *self.0.lock().map_err(|_| std::fmt::Error)?;
        // Per-bucket counts (the encoder makes them cumulative), up to the
        // highest used, then +Inf.
        let last = h.buckets.iter().rposition(|&n| n > 0).unwrap_or(0);
        let mut buckets: Vec<(f64, u64)> = h.buckets[..=last]
            .iter()
            .enumerate()
            .map(|(k, &n)| ((1u64 << k) as f64 * unit, n))
            .collect();
        buckets.push((f64::INFINITY, 0));
        e.encode_histogram::<NoLabelSet>(h.sum as f64 * unit, h.calls, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn seconds(reg: &mut Registry, name: &str, help: &str, h: &Histogram, unit: f64) {
    let m = Seconds::default();
    m.add(h, unit);
    reg.register(name, help, m);
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub async fn metrics(router: &Router, state: &ServerState) -> Response {
    let (shards, cmd) = match crate::server::info::gather(router).await {
        Ok(g) => g,
        Err(e) => return Response::text(503, &format!("{e}\n")),
    };

    let mut reg = Registry::with_prefix("keel");
    let keys = gauge_family(
        &mut reg,
        "shard_keys",
        "Keys held by the shard, all databases",
    );
    let used = gauge_family(
        &mut reg,
        "shard_used_memory_bytes",
        "Memory the shard accounts for its data",
    );
    let seq = counter_family(
        &mut reg,
        "shard_write_seq",
        "The shard's write sequence number",
    );
    let expired = counter_family(&mut reg, "shard_expired_keys", "Keys the shard expired");
    let evicted = counter_family(
        &mut reg,
        "shard_evicted_keys",
        "Keys the shard evicted for memory",
    );
    let hits = counter_family(
        &mut reg,
        "shard_keyspace_hits",
        "Key lookups that found the key",
    );
    let misses = counter_family(
        &mut reg,
        "shard_keyspace_misses",
        "Key lookups that did not",
    );
    for s in &shards {
        let l: Labels = vec![("shard", s.id.to_string())];
        keys.get_or_create(&l).set(to_i64(s.keys));
        used.get_or_create(&l).set(to_i64(s.used));
        seq.get_or_create(&l).inc_by(s.seq);
        expired.get_or_create(&l).inc_by(s.stats.expired_keys);
        evicted.get_or_create(&l).inc_by(s.stats.evicted_keys);
        hits.get_or_create(&l).inc_by(s.stats.keyspace_hits);
        misses.get_or_create(&l).inc_by(s.stats.keyspace_misses);
    }

    // Commands by family (Redis's command groups: string, hash, stream...).
    let calls = counter_family(&mut reg, "commands", "Commands run, by command family");
    let failed = counter_family(
        &mut reg,
        "command_errors",
        "Commands answered with an error, by command family",
    );
    let usec = counter_family(
        &mut reg,
        "command_usec",
        "Microseconds spent running commands, by command family",
    );
    for (spec, stat) in COMMANDS.iter().zip(&cmd.by_command) {
        if stat.calls == 0 && stat.failed == 0 && stat.rejected == 0 {
            continue;
        }
        let l: Labels = vec![("family", spec.group.to_string())];
        calls.get_or_create(&l).inc_by(stat.calls);
        failed.get_or_create(&l).inc_by(stat.failed + stat.rejected);
        usec.get_or_create(&l).inc_by(stat.usec);
    }
    let took = Family::<Labels, Seconds>::default();
    reg.register(
        "command_duration_seconds",
        "How long commands ran, by command family",
        took.clone(),
    );
    for (spec, h) in COMMANDS.iter().zip(&cmd.latency) {
        if let Some(h) = h {
            took.get_or_create(&vec![("family", spec.group.to_string())])
                .add(h, 1e-6);
        }
    }
    // Container commands' runs are kept per subcommand (`client|list`).
    for (name, h) in &cmd.sub_latency {
        let parent = name.split('|').next().unwrap_or(name);
        if let Some(spec) = crate::exec::command::lookup(parent.as_bytes()) {
            took.get_or_create(&vec![("family", spec.group.to_string())])
                .add(h, 1e-6);
        }
    }

    use std::sync::atomic::Ordering::Relaxed;
    gauge(
        &mut reg,
        "connected_clients",
        "Client connections open now",
        to_i64(state.connected_clients.load(Relaxed)),
    );
    counter(
        &mut reg,
        "connections_received",
        "Client connections accepted",
        state.total_connections.load(Relaxed),
    );
    counter(
        &mut reg,
        "net_input_bytes",
        "Bytes read from clients",
        cmd.net_input_bytes,
    );
    counter(
        &mut reg,
        "net_output_bytes",
        "Bytes written to clients",
        cmd.net_output_bytes,
    );

    replication(&mut reg, router).await;
    persistence(&mut reg, router).await;

    if state.cluster.is_active() {
        let v = state.cluster.view();
        gauge(
            &mut reg,
            "cluster_term",
            "The cluster's term as this node knows it",
            i64::try_from(v.term).unwrap_or(i64::MAX),
        );
        gauge(
            &mut reg,
            "cluster_writes_paused",
            "1 while writes are paused for want of an eligible replica",
            i64::from(v.writes_paused),
        );
        let role = gauge_family(&mut reg, "cluster_role", "1 for this node's role now");
        role.get_or_create(&vec![("role", v.role.to_string())])
            .set(1);
        cluster(&mut reg, &v);
    }

    let mut body = String::new();
    if let Err(e) = encode(&mut body, &reg) {
        return Response::text(500, &format!("{e}\n"));
    }
    let mut r = Response::text(200, &body);
    r.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    r
}

/// Per shard: what it sent to each backup and how far behind the backup
/// is; as a backup, how far behind the primary it is and how it synced.
async fn replication(reg: &mut Registry, router: &Router) {
    let Ok(views) = crate::server::commands::replication::gather_views(router).await else {
        return;
    };
    let lag_seq = gauge_family(
        reg,
        "repl_link_lag_records",
        "Sequence numbers a backup's acknowledgements trail the shard by",
    );
    let lag_bytes = gauge_family(
        reg,
        "repl_link_lag_bytes",
        "Backlog bytes a backup has yet to acknowledge",
    );
    let lag_ms = gauge_family(
        reg,
        "repl_link_lag_ms",
        "Age of the oldest record a backup has yet to acknowledge",
    );
    let payload = counter_family(
        reg,
        "repl_link_payload_bytes",
        "Record bytes sent to a backup, before compression",
    );
    let wire = counter_family(
        reg,
        "repl_link_wire_bytes",
        "Bytes sent to a backup on the wire",
    );
    let behind = gauge_family(
        reg,
        "repl_lag_ms",
        "As a backup: how far behind its primary the shard is",
    );
    let syncs = counter_family(
        reg,
        "repl_syncs",
        "Syncs this shard made as a backup, by kind",
    );
    for v in &views {
        let shard = v.id.to_string();
        for l in &v.links {
            let labels: Labels = vec![
                ("shard", shard.clone()),
                ("backup", l.link.backup.clone()),
                ("zone", l.link.zone.clone()),
            ];
            lag_seq
                .get_or_create(&labels)
                .set(i64::try_from(v.seq.saturating_sub(l.link.acked)).unwrap_or(i64::MAX));
            lag_bytes
                .get_or_create(&labels)
                .set(i64::try_from(l.lag_bytes).unwrap_or(i64::MAX));
            lag_ms
                .get_or_create(&labels)
                .set(i64::try_from(l.lag_ms).unwrap_or(i64::MAX));
            payload
                .get_or_create(&labels)
                .inc_by(l.link.stats.payload_bytes);
            wire.get_or_create(&labels).inc_by(l.link.stats.wire_bytes);
        }
        let one: Labels = vec![("shard", shard.clone())];
        behind
            .get_or_create(&one)
            .set(i64::try_from(v.lag_ms).unwrap_or(i64::MAX));
        for (kind, n) in [("full", v.full_syncs), ("partial", v.partial_syncs)] {
            syncs
                .get_or_create(&vec![("shard", shard.clone()), ("kind", kind.to_string())])
                .inc_by(n);
        }
    }
}

/// The members as this node sees them, and the elections it saw.
fn cluster(reg: &mut Registry, v: &crate::cluster::ClusterView) {
    let state = gauge_family(
        reg,
        "cluster_member_state",
        "1 for the state this node sees each member in (myself, ok, suspected, failed)",
    );
    let heard = gauge_family(
        reg,
        "cluster_member_heard_ms_ago",
        "Milliseconds since this node last heard from the member",
    );
    let serving = gauge_family(
        reg,
        "cluster_member_serving",
        "1 if the member serves reads, by its latest ping",
    );
    let progress = gauge_family(
        reg,
        "cluster_member_write_progress",
        "The member's writes applied, summed over its shards, by its latest ping",
    );
    let voter = gauge_family(
        reg,
        "cluster_member_voter",
        "1 if the member votes, 0 for a learner still copying",
    );
    for m in &v.members {
        let who = |extra: Option<(&'static str, String)>| {
            let mut l: Labels = vec![("member", m.name.clone()), ("zone", m.zone.clone())];
            l.extend(extra);
            l
        };
        // Every state is listed, 0 or 1, so a panel can graph each one.
        for s in ["myself", "ok", "suspected", "failed"] {
            state
                .get_or_create(&who(Some(("state", s.to_string()))))
                .set(i64::from(m.state == s));
        }
        if let Some(ms) = m.heard_ms_ago {
            heard
                .get_or_create(&who(None))
                .set(i64::try_from(ms).unwrap_or(i64::MAX));
        }
        serving.get_or_create(&who(None)).set(i64::from(m.serving));
        voter.get_or_create(&who(None)).set(i64::from(m.voter));
        if let Some(seq) = m.total_seq {
            progress
                .get_or_create(&who(None))
                .set(i64::try_from(seq).unwrap_or(i64::MAX));
        }
    }
    gauge(
        reg,
        "cluster_members_version",
        "Version of the member list this node holds (0: the configuration's)",
        i64::try_from(v.members_version).unwrap_or(i64::MAX),
    );
    counter(
        reg,
        "cluster_elections",
        "Elections this node saw start, its own or others'",
        v.elections_seen,
    );
    counter(
        reg,
        "cluster_elections_won",
        "Elections this node won",
        v.elections_won,
    );
    counter(
        reg,
        "cluster_failovers_seen",
        "Times this node saw its primary declared failed",
        v.failovers_seen,
    );
    counter(
        reg,
        "cluster_forced_failovers",
        "Forced failovers this node ran",
        v.forced_failovers,
    );
    seconds(
        reg,
        "cluster_election_duration_seconds",
        "From an election's start to a primary open for writes, as this node saw it",
        &v.election_ms,
        1e-3,
    );
    let bus = counter_family(reg, "cluster_bus_messages", "Cluster bus messages, by fate");
    for (fate, n) in [
        ("sent", v.bus_sent),
        ("received", v.bus_received),
        ("dropped", v.bus_dropped),
        ("refused", v.bus_refused),
    ] {
        bus.get_or_create(&vec![("fate", fate.to_string())])
            .inc_by(n);
    }
}

/// The write logs and snapshots of every shard together.
async fn persistence(reg: &mut Registry, router: &Router) {
    let Ok(f) = crate::server::commands::persistence::gather(router).await else {
        return;
    };
    gauge(
        reg,
        "log_bytes",
        "Bytes in the shards' write logs and snapshots",
        i64::try_from(f.log_bytes + f.base_bytes).unwrap_or(i64::MAX),
    );
    gauge(
        reg,
        "snapshot_running",
        "1 while a snapshot is being written",
        i64::from(f.running),
    );
    gauge(
        reg,
        "last_snapshot_ok",
        "1 if the last snapshot succeeded",
        i64::from(f.last_ok),
    );
    gauge(
        reg,
        "log_write_ok",
        "1 while the write logs can be written",
        i64::from(f.write_ok),
    );
    seconds(
        reg,
        "fsync_duration_seconds",
        "How long the write logs' fsyncs took",
        &f.fsync_us,
        1e-6,
    );
    if f.last_save_secs != 0 && f.last_save_secs != u64::MAX {
        gauge(
            reg,
            "last_snapshot_time_seconds",
            "Unix time of the oldest shard's last snapshot",
            i64::try_from(f.last_save_secs).unwrap_or(i64::MAX),
        );
    }
}
