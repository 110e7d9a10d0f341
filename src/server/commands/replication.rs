//! REPLICAOF / SLAVEOF, ROLE, WAIT, REPLCONF and INFO's replication section.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cmd::error::{CmdError, CmdResult};
use crate::config::parse_host_port;
use crate::repl::shard::LinkInfo;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// One backup link of one shard, as INFO and ROLE show it.
#[derive(Clone)]
pub struct LinkView {
    pub link: LinkInfo,
    pub lag_bytes: u64,
    pub lag_ms: u64,
}

/// One shard's replication facts.
pub struct ShardView {
    pub id: usize,
    pub seq: u64,
    pub history: u64,
    pub backlog_start: u64,
    pub backlog_bytes: usize,
    pub links: Vec<LinkView>,
    pub follow_state: &'static str,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub last_sync: String,
    pub last_error: String,
    pub synced: bool,
    pub synced_ms: u64,
    pub caught_up_ms: u64,
    pub lag_ms: u64,
    pub last_io_ms: u64,
    pub received: crate::repl::link::LinkStats,
}

pub async fn gather(conn: &Conn) -> Result<Vec<ShardView>, CmdError> {
    gather_views(&conn.router).await
}

/// Every shard's replication facts, from every executor.
pub async fn gather_views(
    router: &crate::exec::router::Router,
) -> Result<Vec<ShardView>, CmdError> {
    let parts = router
        .broadcast(|ls| {
            let now = now_ms();
            let repls = ls.repl.borrow();
            ls.ids()
                .filter_map(|id| {
                    let r = repls.get(ls.local_index(id))?;
                    let seq = ls.shard(id).seq();
                    let links = r
                        .links
                        .iter()
                        .map(|l| {
                            let l = l.borrow();
                            let (lag_bytes, lag_ms) =
                                if l.in_full_sync || !r.backlog.can_serve(l.acked) {
                                    // (behind the backlog: all of it, and since
                                    // the backup last acked)
                                    (r.backlog.bytes() as u64, now.saturating_sub(l.acked_ms))
                                } else {
                                    r.backlog.lag(l.acked, now)
                                };
                            LinkView {
                                link: l.clone(),
                                lag_bytes,
                                lag_ms,
                            }
                        })
                        .collect();
                    let f = &r.follow;
                    Some(ShardView {
                        id,
                        seq,
                        history: r.history,
                        backlog_start: r.backlog.start_seq(),
                        backlog_bytes: r.backlog.bytes(),
                        links,
                        follow_state: f.state,
                        full_syncs: f.full_syncs,
                        partial_syncs: f.partial_syncs,
                        last_sync: f.last_sync.clone(),
                        last_error: f.last_error.clone(),
                        synced: f.synced,
                        synced_ms: f.synced_ms,
                        caught_up_ms: f.caught_up_ms,
                        lag_ms: match (f.caught_up_ms, f.synced_ms) {
                            (0, 0) => 0,
                            (0, synced) => now.saturating_sub(synced),
                            (caught_up, _) => now.saturating_sub(caught_up),
                        },
                        last_io_ms: f.last_io_ms,
                        received: f.received,
                    })
                })
                .collect::<Vec<_>>()
        })
        .await?;
    let mut all: Vec<ShardView> = parts.into_iter().flatten().collect();
    all.sort_by_key(|s| s.id);
    Ok(all)
}

/// A backup as a whole: its links on every shard.
struct Backup {
    id: String,
    addr: String,
    port: u16,
    zone: String,
    links: usize,
    online: bool,
    acked: u64,
    oldest_ack_ms: u64,
    compress: bool,
    payload: u64,
    wire: u64,
}

fn backups(views: &[ShardView]) -> Vec<Backup> {
    let mut out: Vec<Backup> = Vec::new();
    for v in views {
        for l in &v.links {
            let i = match out.iter().position(|b| b.id == l.link.backup) {
                Some(i) => i,
                None => {
                    out.push(Backup {
                        id: l.link.backup.clone(),
                        addr: l.link.addr.clone(),
                        port: l.link.client_port,
                        zone: l.link.zone.clone(),
                        links: 0,
                        online: true,
                        acked: 0,
                        oldest_ack_ms: u64::MAX,
                        compress: l.link.compress,
                        payload: 0,
                        wire: 0,
                    });
                    out.len() - 1
                }
            };
            let b = &mut out[i];
            b.links += 1;
            b.online &= !l.link.in_full_sync;
            b.acked += l.link.acked;
            b.oldest_ack_ms = b.oldest_ack_ms.min(l.link.acked_ms);
            b.payload += l.link.stats.payload_bytes;
            b.wire += l.link.stats.wire_bytes;
        }
    }
    for b in &mut out {
        b.online &= b.links == views.len();
    }
    out
}

/// Whether a backup is ready for reads: synced on every shard, linked,
/// and at most `read-max-lag` ms behind.
fn ready(conn: &Conn, views: &[ShardView]) -> bool {
    is_ready(&conn.state, views)
}

/// A backup is ready for reads: every shard synced, online, within
/// `read-max-lag`, and caught up since the last full sync.
pub fn is_ready(state: &crate::server::state::ServerState, views: &[ShardView]) -> bool {
    let max = state.config().read_max_lag;
    let last_sync = views.iter().map(|v| v.synced_ms).max().unwrap_or(0);
    views.iter().all(|v| {
        v.synced && v.follow_state == "online" && v.lag_ms <= max && v.caught_up_ms >= last_sync
    })
}

/// The primary ROLE and INFO name: the one followed; a node the cluster
/// holds (stepped down, or not yet told who leads) is no master either —
/// it shows as a replica of nobody yet (empty host, port 0, link down).
fn shown_master(st: &crate::server::state::ServerState) -> Option<(String, u16)> {
    st.repl
        .master()
        .or_else(|| st.repl.is_backup().then(|| (String::new(), 0)))
}

pub async fn info_section(conn: &Conn, w: &mut String) -> Result<(), CmdError> {
    let views = gather(conn).await?;
    let st = &conn.state;
    let config = st.config();
    let offset: u64 = views.iter().map(|v| v.seq).sum();
    let failover_state = if conn.state.cluster.is_active() {
        conn.state.cluster.view().failover_state
    } else {
        "no-failover"
    };
    let history = views.first().map_or(0, |v| v.history);
    let now = now_ms();
    w.push_str("# Replication\r\n");
    match shown_master(st) {
        None => {
            let bs = backups(&views);
            let _ = write!(w, "role:master\r\nconnected_slaves:{}\r\n", bs.len());
            for (i, b) in bs.iter().enumerate() {
                let _ = write!(
                    w,
                    "slave{i}:ip={},port={},state={},offset={},lag={},id={},zone={},compress={},payload_bytes={},wire_bytes={}\r\n",
                    b.addr,
                    b.port,
                    if b.online { "online" } else { "wait_bgsave" },
                    b.acked,
                    now.saturating_sub(b.oldest_ack_ms) / 1000,
                    b.id,
                    b.zone,
                    b.compress as u8,
                    b.payload,
                    b.wire,
                );
            }
            let _ = write!(
                w,
                "master_failover_state:{failover_state}\r\nmaster_replid:{history:016x}\r\nmaster_repl_offset:{offset}\r\nrepl_backlog_active:1\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
                config.repl_backlog_size * st.shards as u64,
                views.iter().map(|v| v.backlog_start).sum::<u64>(),
                views.iter().map(|v| v.backlog_bytes).sum::<usize>(),
            );
        }
        Some((host, port)) => {
            let up = views.iter().all(|v| v.follow_state == "online");
            let last_io = views.iter().map(|v| v.last_io_ms).min().unwrap_or(0);
            let error = views
                .iter()
                .map(|v| v.last_error.as_str())
                .find(|e| !e.is_empty())
                .unwrap_or("");
            let _ = write!(
                w,
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{offset}\r\nslave_repl_offset:{offset}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:{history:016x}\r\nmaster_repl_offset:{offset}\r\nreplica_ready:{}\r\nreplica_lag_ms:{}\r\nmaster_sync_last_error:{}\r\n",
                if up { "up" } else { "down" },
                if last_io == 0 { -1 } else { (now.saturating_sub(last_io) / 1000) as i64 },
                views.iter().any(|v| v.follow_state == "sync") as u8,
                ready(conn, &views) as u8,
                views.iter().map(|v| v.lag_ms).max().unwrap_or(0),
                error,
            );
        }
    }
    let _ = write!(
        w,
        "node_id:{}\r\nzone:{}\r\nregion:{}\r\nconsistency:{}\r\nsync_backup:{}\r\nstrong_timeouts:{}\r\nstrong_degraded:{}\r\nbarrier_waiting:{}\r\nwrites_forwarded:{}\r\nreads_local:{}\r\nreads_forwarded_strong:{}\r\nreads_forwarded_not_ready:{}\r\nreads_forwarded_own_write:{}\r\nreads_forwarded_nearby:{}\r\nreads_local_after_wait:{}\r\nreads_served_for_backups:{}\r\n",
        config.node_id,
        config.zone,
        config.region,
        config.consistency.name(),
        st.repl.sync_backup().unwrap_or_default(),
        st.repl.strong_timeouts.load(Ordering::Relaxed),
        (st.repl.degraded() && st.repl.sync_backup().is_none()) as u8,
        st.repl.barrier.waiting(),
        st.repl.fwd_writes.load(Ordering::Relaxed),
        st.repl.reads_local.load(Ordering::Relaxed),
        st.repl.fwd_reads_strong.load(Ordering::Relaxed),
        st.repl.fwd_reads_not_ready.load(Ordering::Relaxed),
        st.repl.fwd_reads_own_write.load(Ordering::Relaxed),
        st.repl.reads_nearby.load(Ordering::Relaxed),
        st.repl.reads_waited.load(Ordering::Relaxed),
        st.repl.reads_for_others.load(Ordering::Relaxed),
    );
    for v in &views {
        let _ = write!(
            w,
            "shard{}:seq={},history={:016x},delay_us={},backlog_start={},backlog_bytes={},state={},full_syncs={},partial_syncs={},lag_ms={},received_payload_bytes={},received_wire_bytes={}\r\n",
            v.id,
            v.seq,
            v.history,
            st.repl.delay_us.get(v.id).map_or(0, |d| d.load(Ordering::Relaxed)),
            v.backlog_start,
            v.backlog_bytes,
            v.follow_state,
            v.full_syncs,
            v.partial_syncs,
            v.lag_ms,
            v.received.payload_bytes,
            v.received.wire_bytes,
        );
        if !v.last_sync.is_empty() {
            let _ = write!(w, "shard{}_last_sync:{}\r\n", v.id, v.last_sync);
        }
        for l in &v.links {
            let _ = write!(
                w,
                "shard{}_link_{}:state={},sync={},acked={},lag_records={},lag_bytes={},lag_ms={},compress={},payload_bytes={},wire_bytes={},frames_raw={},frames_compressed={},frames_shared={}\r\n",
                v.id,
                l.link.backup,
                if l.link.in_full_sync { "sync" } else { "online" },
                l.link.sync,
                l.link.acked,
                v.seq.saturating_sub(l.link.acked),
                l.lag_bytes,
                l.lag_ms,
                l.link.compress as u8,
                l.link.stats.payload_bytes,
                l.link.stats.wire_bytes,
                l.link.stats.frames_raw,
                l.link.stats.frames_compressed,
                l.link.stats.frames_shared,
            );
            if !l.link.why.is_empty() {
                let _ = write!(
                    w,
                    "shard{}_link_{}_why:{}\r\n",
                    v.id, l.link.backup, l.link.why
                );
            }
        }
    }
    Ok(())
}

/// REPLICAOF host port | REPLICAOF NO ONE (SLAVEOF is the same).
pub fn replicaof(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let host = String::from_utf8_lossy(a[1]).into_owned();
    let port = String::from_utf8_lossy(a[2]).into_owned();
    if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
        if conn.state.repl.is_backup() {
            conn.state.repl.set_master(None);
            tracing::info!("REPLICAOF NO ONE: this node is a primary now");
        }
        return Ok(Reply::Ok);
    }
    let target = parse_host_port(&format!("{host} {port}"))
        .ok_or_else(|| CmdError::other("Invalid master port"))?;
    if conn.state.repl.master().as_ref() == Some(&target) {
        return Ok(Reply::status("OK Already connected to specified master"));
    }
    tracing::info!("REPLICAOF {}:{}", target.0, target.1);
    conn.state.repl.set_master(Some(target));
    Ok(Reply::Ok)
}

/// ROLE, in Redis's shape.
pub async fn role(conn: &Conn) -> CmdResult {
    let views = gather(conn).await?;
    let offset: u64 = views.iter().map(|v| v.seq).sum();
    Ok(match shown_master(&conn.state) {
        None => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Int(offset as i64),
            Reply::Array(
                backups(&views)
                    .iter()
                    .map(|b| {
                        Reply::bulks([b.addr.clone(), b.port.to_string(), b.acked.to_string()])
                    })
                    .collect(),
            ),
        ]),
        Some((host, port)) => {
            let state = if views.iter().all(|v| v.follow_state == "online") {
                "connected"
            } else if views.iter().any(|v| v.follow_state == "sync") {
                "sync"
            } else {
                "connecting"
            };
            Reply::Array(vec![
                Reply::bulk("slave"),
                Reply::bulk(host),
                Reply::Int(port as i64),
                Reply::bulk(state),
                Reply::Int(offset as i64),
            ])
        }
    })
}

/// WAIT numreplicas timeout: how many backups applied every write this
/// node had made when WAIT began, waiting up to `timeout` ms (0: forever)
/// for `numreplicas` of them.
pub async fn wait(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let num = crate::cmd::numbers::int_arg(a[1])?;
    let timeout = crate::cmd::numbers::int_arg(a[2])?;
    if timeout < 0 {
        return Err(CmdError::other("timeout is negative"));
    }
    if conn.state.repl.is_backup() {
        return Err(CmdError::other(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let (first, _) = acks(conn, false).await?;
    let target: Vec<(usize, u64)> = first.iter().map(|a| (a.shard, a.seq)).collect();
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout as u64));
    loop {
        // Each look leaves a watcher on every shard: the next ack wakes us.
        let (now, watchers) = acks(conn, true).await?;
        let mut ids: Vec<&str> = now
            .iter()
            .flat_map(|a| a.links.iter().map(|l| l.0.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let count = ids
            .iter()
            .filter(|id| {
                target.iter().all(|(shard, seq)| {
                    now.iter().any(|a| {
                        a.shard == *shard
                            && a.links
                                .iter()
                                .any(|(b, acked, full)| b == *id && !full && acked >= seq)
                    })
                })
            })
            .count() as i64;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if count >= num || left == Some(Duration::ZERO) {
            return Ok(Reply::Int(count));
        }
        // (at least once a second: a backup that connects sends no ack on
        // shards it has nothing for)
        let most = left
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        if watchers.is_empty() {
            crate::runtime::sleep(most).await;
        } else {
            let _ = crate::runtime::timeout(most, futures::future::select_all(watchers)).await;
        }
    }
}

/// One shard's acks: its seq and each backup's (id, acked, in full sync).
struct Acks {
    shard: usize,
    seq: u64,
    links: Vec<(String, u64, bool)>,
}

/// Every shard's acks; with `watch`, a receiver per shard that completes at
/// its next ack.
async fn acks(
    conn: &Conn,
    watch: bool,
) -> Result<(Vec<Acks>, Vec<futures::channel::oneshot::Receiver<()>>), CmdError> {
    let parts = conn
        .router
        .broadcast(move |ls| {
            let mut repls = ls.repl.borrow_mut();
            let mut out = Vec::new();
            let mut watchers = Vec::new();
            for id in ls.ids() {
                let Some(r) = repls.get_mut(ls.local_index(id)) else {
                    continue;
                };
                out.push(Acks {
                    shard: id,
                    seq: ls.shard(id).seq(),
                    links: r
                        .links
                        .iter()
                        .map(|l| {
                            let l = l.borrow();
                            (l.backup.clone(), l.acked, l.in_full_sync)
                        })
                        .collect(),
                });
                if watch {
                    r.ack_watchers.retain(|w| !w.is_canceled());
                    let (tx, rx) = futures::channel::oneshot::channel();
                    r.ack_watchers.push(tx);
                    watchers.push(rx);
                }
            }
            (out, watchers)
        })
        .await?;
    let mut all = Vec::new();
    let mut watchers = Vec::new();
    for (a, w) in parts {
        all.extend(a);
        watchers.extend(w);
    }
    Ok((all, watchers))
}

/// REPLCONF SEQS [shard …]: the seqs now of the shards named (all when
/// none are), in an array over every shard with 0 for those not asked. A
/// backup that forwarded a write asks right after it for the shards the
/// write touched (same connection, so the answer covers the write): a read
/// of its client's is served locally only once the local replica reached
/// these. Only the executors holding those shards are asked — none but
/// this one, often.
pub async fn seqs(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let asked: Option<Vec<usize>> = a[2..]
        .iter()
        .map(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .collect();
    let Some(asked) = asked.filter(|s| s.iter().all(|id| *id < conn.state.shards)) else {
        return Err(CmdError::other("REPLCONF SEQS takes shard numbers"));
    };
    let seqs = shard_seqs(conn, asked).await?;
    Ok(Reply::Array(
        seqs.into_iter().map(|s| Reply::Int(s as i64)).collect(),
    ))
}

/// The seqs now of the shards `asked` (all when empty), over every shard
/// with 0 for those not asked: exact, from the executors holding them.
pub async fn shard_seqs(conn: &Conn, asked: Vec<usize>) -> Result<Vec<u64>, CmdError> {
    let mut executors: Vec<usize> = if asked.is_empty() {
        (0..conn.router.executors()).collect()
    } else {
        asked.iter().map(|s| conn.router.executor_of(*s)).collect()
    };
    executors.sort_unstable();
    executors.dedup();
    let parts = conn
        .router
        .on_executors(&executors, move |ls| {
            ls.ids()
                .filter(|id| asked.is_empty() || asked.contains(id))
                .map(|id| (id, ls.shard(id).seq()))
                .collect::<Vec<_>>()
        })
        .await?;
    let mut seqs = vec![0u64; conn.state.shards];
    for (id, seq) in parts.into_iter().flatten() {
        if let Some(s) = seqs.get_mut(id) {
            *s = seq;
        }
    }
    Ok(seqs)
}

/// REPLCONF AFTER s0 s1 …: a backup that sends a read here for a client
/// of its own (its copy was not ready) says, per shard, the client's latest
/// write. The read that follows on this connection is then routed as if
/// that client had written here: served locally only once these seqs are
/// applied, else forwarded to the primary — never on to another backup.
pub fn after(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let seqs: Option<Vec<u64>> = a[2..]
        .iter()
        .map(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .collect();
    let Some(seqs) = seqs.filter(|s| s.len() <= conn.state.shards) else {
        return Err(CmdError::other("REPLCONF AFTER takes one seq per shard"));
    };
    conn.written_seqs = seqs;
    conn.routed = true;
    Ok(Reply::status("OK"))
}

/// REPLCONF: `PEER` tells a backup this node's replication ports; the
/// subcommands Redis replicas send are accepted.
pub fn replconf(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    if a[1].eq_ignore_ascii_case(b"peer") {
        let c = conn.state.config();
        let ports: Vec<String> = conn
            .state
            .repl
            .peer_ports()
            .iter()
            .map(|p| p.to_string())
            .collect();
        return Ok(Reply::Bulk(
            format!(
                "{} {} {} {} {}",
                c.node_id,
                c.zone,
                c.region,
                conn.state.shards,
                ports.join(",")
            )
            .into_bytes(),
        ));
    }
    Ok(Reply::Ok)
}
