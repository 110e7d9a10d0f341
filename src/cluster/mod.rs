//! The cluster layer: the bus that drives the control plane on the network,
//! and what the rest of the server sees of it.
//!
//! ```text
//!   executors (one per core)                 cluster driver thread
//!  ┌──────────────────────────┐  facts   ┌─────────────────────────────┐
//!  │ shard seq, follower?,    │ ───────► │ control::Node (pure)        │◄── bus links
//!  │ link online?, sync acks  │ atomics  │  Input::Tick / Receive /    │    (a thread
//!  │ (published every 10 ms)  │          │  Progress / Commit          │     per peer)
//!  │                          │ ◄─────── │ Output → sends on the bus,  │
//!  │ follow tasks read:       │  repl    │  Actions → ReplShared:      │
//!  │ master, pulls, hold,     │  shared  │  master, pulls, hold,       │
//!  │ promotion requests       │          │  promote, pause             │
//!  └──────────────────────────┘          └─────────────────────────────┘
//! ```
//!
//! Only a node with a `[[nodes]]` topology runs a bus. The control plane's
//! [`Node`](crate::control::Node) stays pure; [`driver`] feeds it real
//! messages, a monotonic clock and the replicas' progress, and carries out
//! its actions:
//! - `Follow` → REPLICAOF the new primary (a partial resync: the promoted
//!   node keeps the old history id and the seq where it took over);
//! - `Pull` → stream one shard from a survivor that is further ahead, before
//!   opening (any node serves a pull, backups included);
//! - `OpenForWrites` → every shard promotes (a new history id), then writes
//!   are accepted; `StepDown` → writes refused at once (`-READONLY`);
//! - `PauseWrites` / `ResumeWrites` → the safety check's `-CLUSTERDOWN`.
//!
//! # Layout
//! - [`topology`]: members, their numbers and addresses.
//! - [`wire`]: bus frames (crc32, version, per-link counter) and messages.
//! - [`bus`]: the links, on threads of their own.
//! - [`file`](mod@file): the cluster file (term, vote, primary, history).
//! - [`driver`]: the loop that ties them to the control plane.
//! - [`check`]: `--check-config`, a topology checked before any start.

pub mod bus;
pub mod check;
pub mod driver;
pub mod file;
pub mod forward;
pub mod members;
pub mod pubsub_relay;
pub mod route;
pub mod topology;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::exec::local::LocalShards;
use crate::server::state::ServerState;

/// What INFO shows of one member.
#[derive(Clone, Debug, Default)]
pub struct MemberView {
    pub name: String,
    /// Client address, as the topology gives it.
    pub client: (String, u16),
    pub zone: String,
    pub region: String,
    /// Bus address.
    pub bus: (String, u16),
    pub arbiter: bool,
    /// Votes (a learner, still copying, does not).
    pub voter: bool,
    /// Once a voter, this member replaces the one named.
    pub replaces: Option<String>,
    /// "myself", "ok", "suspected" or "failed".
    pub state: &'static str,
    pub heard_ms_ago: Option<u64>,
    pub total_seq: Option<u64>,
    /// Serves reads (its own word, by its latest ping; ours for myself).
    pub serving: bool,
}

/// The last election this node saw or ran.
#[derive(Clone, Debug, Default)]
pub struct ElectionView {
    pub term: u64,
    pub reason: String,
    pub winner: String,
    /// Unix ms when it started (this node's clock) and how long until the
    /// winner opened (as far as this node saw).
    pub started_ms: u64,
    pub took_ms: Option<u64>,
    /// Pulls the winner did, as "shard<-node@seq" (on the winner only).
    pub pulls: Vec<String>,
}

/// The cluster's state as INFO and the write path see it.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub term: u64,
    /// Redis's `master_failover_state`: no-failover, waiting-for-sync or
    /// failover-in-progress.
    pub failover_state: &'static str,
    /// Forced failovers this node ran (never silent).
    pub forced_failovers: u64,
    pub role: &'static str,
    pub primary: Option<String>,
    pub history: u64,
    pub members: Vec<MemberView>,
    pub writes_paused: bool,
    /// The highest commit point per shard this node knows (the seq up to
    /// which strong writes were acknowledged), as its pings carry it.
    pub commit: Vec<u64>,
    pub last_election: Option<ElectionView>,
    pub elections_won: u64,
    pub failovers_seen: u64,
    pub elections_seen: u64,
    /// How long elections took until a primary opened, in milliseconds.
    pub election_ms: crate::server::histogram::Histogram,
    pub bus_sent: u64,
    pub bus_received: u64,
    pub bus_dropped: u64,
    pub bus_refused: u64,
    /// The member list's version (0: the configuration's).
    pub members_version: u64,
    /// The membership change in progress ("idle" when none).
    pub membership: String,
}

/// A pub/sub message the driver asks every executor to deliver to its own
/// subscribers (`+switch-master`), numbered so each delivers it once.
#[derive(Clone, Debug)]
pub struct Notice {
    pub seq: u64,
    pub channel: std::sync::Arc<[u8]>,
    pub payload: std::sync::Arc<[u8]>,
}

/// What an operator asks the driver (FAILOVER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Planned switchover to `to` (a member's name): pause writes, wait until
    /// it acknowledged every record (or `force` at the deadline), hand over.
    Switchover {
        to: String,
        timeout_ms: u64,
        force: bool,
    },
    /// Stop a switchover still waiting for its target.
    Abort,
    /// Make this node primary now, skipping eligibility (logged, in INFO).
    Force,
    /// KEEL NODE ADD / REMOVE / REPLACE, on the primary.
    Member(MemberCommand),
}

/// A membership change an operator asks the primary for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberCommand {
    /// Add a member as a learner (with `replaces` set: a REPLACE).
    Add(members::Entry),
    /// Remove the member of that name.
    Remove(String),
}

/// Shared between the driver thread and the executors.
#[derive(Default)]
pub struct ClusterState {
    /// A topology is configured and the bus runs.
    pub active: AtomicBool,
    pub view: Mutex<ClusterView>,
    /// Strong mode: this primary holds a majority lease (checked before a
    /// strong-mode write is acknowledged). True when not in a cluster.
    pub lease_ok: AtomicBool,
    /// Recent notices, oldest first (a few dozen at most).
    pub notices: Mutex<std::collections::VecDeque<Notice>>,
    /// Operator commands for the driver.
    pub commands: Mutex<Vec<Command>>,
    /// A switchover runs: the cores publish every backup's acks.
    pub want_acks: AtomicBool,
    /// The primary this node follows is heard and writes are not paused:
    /// forwarding to it makes sense (else reads are served here and writes
    /// refused at once).
    pub primary_reachable: AtomicBool,
    /// Backups this node may send a read to when its own copy is not
    /// ready, nearest first (same zone, then same region; never another
    /// region), each serving reads by its latest ping.
    pub read_replicas: Mutex<Vec<(String, u16)>>,
}

impl ClusterState {
    pub fn new() -> Self {
        ClusterState {
            active: AtomicBool::new(false),
            view: Mutex::new(ClusterView::default()),
            lease_ok: AtomicBool::new(true),
            notices: Mutex::new(std::collections::VecDeque::new()),
            commands: Mutex::new(Vec::new()),
            want_acks: AtomicBool::new(false),
            primary_reachable: AtomicBool::new(false),
            read_replicas: Mutex::new(Vec::new()),
        }
    }

    /// The nearest backup that serves reads, if any.
    pub fn nearest_replica(&self) -> Option<(String, u16)> {
        self.read_replicas.lock().ok()?.first().cloned()
    }

    /// Whether the node at `client` is still listed as serving reads.
    pub fn serves_reads(&self, client: &(String, u16)) -> bool {
        self.read_replicas
            .lock()
            .is_ok_and(|l| l.iter().any(|c| c == client))
    }

    pub fn command(&self, c: Command) {
        if let Ok(mut q) = self.commands.lock() {
            q.push(c);
        }
    }

    fn take_commands(&self) -> Vec<Command> {
        self.commands
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// Queues a pub/sub message for every executor's subscribers.
    pub fn notify(&self, channel: &str, payload: String) {
        if let Ok(mut q) = self.notices.lock() {
            let seq = q.back().map_or(1, |n| n.seq + 1);
            q.push_back(Notice {
                seq,
                channel: channel.as_bytes().into(),
                payload: payload.into_bytes().into(),
            });
            while q.len() > 64 {
                q.pop_front();
            }
        }
    }

    /// Notices after `seq`.
    pub fn notices_after(&self, seq: u64) -> Vec<Notice> {
        self.notices
            .lock()
            .map(|q| q.iter().filter(|n| n.seq > seq).cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> ClusterView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Delivers the notices after `*seen` to this executor's subscribers.
pub fn deliver_notices(ls: &LocalShards, state: &ServerState, seen: &mut u64) {
    for n in state.cluster.notices_after(*seen) {
        ls.pubsub.borrow().deliver(&n.channel, &n.payload);
        *seen = n.seq;
    }
}

/// Publishes this executor's shards' facts for the driver (runs on the
/// shards' core every few milliseconds).
pub fn publish_facts(ls: &LocalShards, state: &ServerState) {
    let sync = state.repl.sync_backup();
    let now = crate::server::state::now_ms();
    let max_lag = state.config().read_max_lag;
    let repls = ls.repl.borrow();
    for id in ls.ids() {
        let Some(f) = state.repl.published.get(id) else {
            continue;
        };
        let s = ls.shard(id);
        let follower = s.is_follower();
        f.seq.store(s.seq(), Ordering::Relaxed);
        f.follower.store(follower, Ordering::Relaxed);
        drop(s);
        if let Some(r) = repls.get(ls.local_index(id)) {
            let online = if r.follow.state == "online" {
                r.follow.link_epoch
            } else {
                0
            };
            f.online_epoch.store(online, Ordering::Relaxed);
            let fo = &r.follow;
            let lag = match (fo.caught_up_ms, fo.synced_ms) {
                (0, 0) => 0,
                (0, synced) => now.saturating_sub(synced),
                (caught_up, _) => now.saturating_sub(caught_up),
            };
            let ready = !follower
                || (fo.synced
                    && fo.state == "online"
                    && lag <= max_lag
                    && fo.caught_up_ms >= fo.synced_ms);
            f.ready.store(ready, Ordering::Relaxed);
            f.history.store(r.history, Ordering::Relaxed);
            let acked = r
                .links
                .iter()
                .map(|l| l.borrow())
                .filter(|l| Some(l.backup.as_str()) == sync.as_deref() && !l.closed)
                .map(|l| l.acked)
                .max()
                .unwrap_or(0);
            f.sync_acked.store(acked, Ordering::Relaxed);
            if !state.cluster.want_acks.load(Ordering::Relaxed) {
                continue;
            }
            if let Ok(mut by) = f.acked_by.lock() {
                by.clear();
                by.extend(
                    r.links
                        .iter()
                        .map(|l| l.borrow())
                        .filter(|l| !l.closed)
                        .map(|l| (l.backup.clone(), l.acked)),
                );
            }
        }
    }
}

/// As primary: whether the copies are placed across zones (ARCHITECTURE.md
/// §6) — the sync backup in another zone ([`crate::repl::ReplShared::placement`])
/// and the readable copies (this primary and every backup serving reads)
/// in more than one zone, so a dark zone never takes every readable copy.
fn placement(state: &ServerState, v: &ClusterView) -> String {
    let links = state.repl.placement();
    if links != "ok" {
        return links;
    }
    let data = |m: &&MemberView| !m.arbiter;
    let zones: std::collections::BTreeSet<&str> = v
        .members
        .iter()
        .filter(data)
        .map(|m| m.zone.as_str())
        .collect();
    let readable: std::collections::BTreeSet<&str> = v
        .members
        .iter()
        .filter(data)
        .filter(|m| m.state == "myself" || (m.state == "ok" && m.serving))
        .map(|m| m.zone.as_str())
        .collect();
    if zones.len() > 1 && readable.len() < 2 {
        let zone = readable.iter().next().copied().unwrap_or("");
        return format!(
            "degraded: every readable copy is in zone {zone} (the backups of other zones are not ready for reads)"
        );
    }
    "ok".into()
}

/// INFO's `# Cluster` section. `cluster_enabled:0` stays Redis's answer
/// (keel is not Redis Cluster: clients must not ask for slots); the rest is
/// the failover state.
pub fn info_section(state: &ServerState, w: &mut String) {
    use std::fmt::Write;
    w.push_str("# Cluster\r\ncluster_enabled:0\r\n");
    if !state.cluster.is_active() {
        w.push_str("keel_cluster:no\r\n");
        return;
    }
    let v = state.cluster.view();
    let _ = write!(
        w,
        "keel_cluster:yes\r\ncluster_failover_state:{}\r\ncluster_forced_failovers:{}\r\ncluster_term:{}\r\ncluster_role:{}\r\ncluster_primary:{}\r\ncluster_history:{}\r\ncluster_writes_paused:{}\r\ncluster_elections_won:{}\r\ncluster_failovers_seen:{}\r\ncluster_bus_sent:{}\r\ncluster_bus_received:{}\r\ncluster_bus_dropped:{}\r\ncluster_bus_refused:{}\r\n",
        v.failover_state,
        v.forced_failovers,
        v.term,
        v.role,
        v.primary.as_deref().unwrap_or(""),
        v.history,
        v.writes_paused as u8,
        v.elections_won,
        v.failovers_seen,
        v.bus_sent,
        v.bus_received,
        v.bus_dropped,
        v.bus_refused,
    );
    let _ = write!(
        w,
        "cluster_members_version:{}\r\ncluster_membership:{}\r\n",
        v.members_version,
        if v.membership.is_empty() {
            "idle"
        } else {
            v.membership.as_str()
        }
    );
    let commit: Vec<String> = v.commit.iter().map(|c| c.to_string()).collect();
    let _ = write!(w, "cluster_commit:{}\r\n", commit.join(","));
    let r = &state.repl;
    if v.role == "primary" {
        let _ = write!(w, "cluster_placement:{}\r\n", placement(state, &v));
    }
    let _ = write!(
        w,
        "cluster_merges:{}\r\ncluster_merge_applied:{}\r\ncluster_merge_kept_ours:{}\r\ncluster_merge_lost:{}\r\n",
        r.merges.load(Ordering::Relaxed),
        r.merge_applied.load(Ordering::Relaxed),
        r.merge_skipped.load(Ordering::Relaxed),
        r.merge_lost.load(Ordering::Relaxed),
    );
    // Where this node sends a read its own copy cannot serve, in order.
    let readers: Vec<String> = state
        .cluster
        .read_replicas
        .lock()
        .map(|l| l.iter().map(|(h, p)| format!("{h}:{p}")).collect())
        .unwrap_or_default();
    let _ = write!(w, "cluster_read_replicas:{}\r\n", readers.join(","));
    for (i, m) in v.members.iter().enumerate() {
        let _ = write!(
            w,
            "member{i}:name={},zone={},arbiter={},voter={},state={},serving={},heard_ms_ago={}\r\n",
            m.name,
            m.zone,
            m.arbiter as u8,
            m.voter as u8,
            m.state,
            m.serving as u8,
            m.heard_ms_ago.map_or("-".to_string(), |x| x.to_string()),
        );
    }
    if let Some(e) = &v.last_election {
        let _ = write!(
            w,
            "last_election:term={},reason={},winner={},started_ms={},took_ms={},pulls={}\r\n",
            e.term,
            e.reason,
            e.winner,
            e.started_ms,
            e.took_ms.map_or("-".to_string(), |x| x.to_string()),
            if e.pulls.is_empty() {
                "none".to_string()
            } else {
                e.pulls.join(";")
            },
        );
    }
}
