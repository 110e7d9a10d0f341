//! The driver: one thread that owns this node's [`Node`], feeds it the bus's
//! messages, a tick every 10 ms and the replicas' progress, sends what it
//! says to send and carries out its actions on replication.
//!
//! # How the control plane's words map to replication
//! - *History* (a term, in the control plane) is the term of the primary
//!   whose stream this node's data follows. A backup moves to term `t`'s
//!   history once every shard is online on the link to `t`'s primary; a
//!   node that opens as primary of `t` is on `t`'s history. Replication's own
//!   history ids (random, per shard) decide partial or full resync; the
//!   control plane's decide who is a prefix of whom and who must merge.
//! - *Progress* is the applied seq of every shard, published by the cores.
//! - *Commit points* (strong mode, as primary): what the sync backup
//!   acknowledged per shard — every strong-acknowledged write is below it.
//!
//! # Boot
//! With no cluster file the configured `primary` opens in term 1 and every
//! other node follows it — once a majority of voters answered it: a node
//! whose disk was replaced has no file either, and must hear the current
//! term (and step down) before it takes a single write. With one, the file wins: a node that was primary
//! boots *not* open and without a primary, so it never takes writes on the
//! strength of a stale view; the others see it is not open and elect again
//! (it may win, with its data intact).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod membership;

use super::bus::Bus;
use super::file::ClusterFile;
use super::members::MemberList;
use super::topology::Topology;
use super::{ClusterView, Command, ElectionView, MemberView};
use crate::control::{Action, Input, Node, Output, Progress, Role, Term};
use crate::server::state::{now_ms, ServerState};

const TICK: Duration = Duration::from_millis(10);

/// What the driver starts from; made before the executors start, so that
/// a node that must not take writes never does, from its first instant.
pub struct Boot {
    /// None: this node is not in the list (waiting to be added).
    member: Option<(Topology, Node)>,
    list: MemberList,
    dir: PathBuf,
    file: ClusterFile,
    /// Changes the configuration asks for (its `[[nodes]]` changed since
    /// this node last started), applied when this node is the primary.
    wanted: Vec<membership::Wanted>,
}

/// The control plane's timings from the configuration.
fn control_config(config: &crate::config::Config) -> crate::control::Config {
    crate::control::Config {
        node_timeout: config.node_timeout,
        failover_max_lag: config.failover_max_lag,
        ..crate::control::Config::default()
    }
}

fn seed() -> u64 {
    now_ms() ^ (u64::from(std::process::id()) << 20)
}

/// Reads the cluster file and sets replication's starting state. None when
/// the configuration has no topology (no bus, no failover).
pub fn prepare(state: &ServerState) -> Result<Option<Boot>, String> {
    let config = state.config();
    if config.nodes.is_empty() {
        return Ok(None);
    }
    let configured = MemberList::from_config(&config)?;
    let dir = config.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let loaded = ClusterFile::load(&dir)?;
    let fresh = loaded.is_none();
    let (list, wanted) = membership::boot_list(&configured, loaded.as_ref());
    let first_primary = match &config.primary {
        Some(name) if list.by_name(name).is_some_and(|e| !e.arbiter) => Some(name.clone()),
        Some(name) if list.version == 0 => {
            return Err(format!("primary {name:?} is not a data node in [[nodes]]"))
        }
        _ => None,
    };
    let mut file = loaded.unwrap_or(ClusterFile {
        term: 1,
        voted_for: None,
        primary: first_primary,
        history: 1,
        list: None,
        histories: Vec::new(),
        config_digest: configured.digest(),
    });
    file.list = Some(list.clone());
    file.config_digest = configured.digest();
    // From now on the file, not the config, says who leads and who is a
    // member.
    file.store(&dir)
        .map_err(|e| format!("cannot write the cluster file in {}: {e}", dir.display()))?;
    let repl = &state.repl;
    state.cluster.active.store(true, Ordering::SeqCst);
    let Some(topo) = Topology::new(&list, &config.node_id, state.shards) else {
        tracing::warn!(
            "cluster: this node ({}) is not a member of the database's list (version {}: {}); it waits until the primary adds it (KEEL NODE ADD {} <client> <bus> <zone> <region>)",
            config.node_id,
            list.version,
            list.members.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
            config.node_id
        );
        repl.set_hold(true);
        repl.set_master(None);
        state.cluster.outside.store(true, Ordering::SeqCst);
        return Ok(Some(Boot {
            member: None,
            list,
            dir,
            file,
            wanted,
        }));
    };
    let me = topo.me;
    let mut primary = file
        .primary
        .as_deref()
        .and_then(|n| topo.by_name(n))
        .map(|p| p.id);
    if primary == Some(me) && !fresh {
        tracing::info!(
            term = file.term,
            "cluster: this node was primary of term {}; it waits to hear who leads now",
            file.term
        );
        primary = None;
    }
    let mut node = Node::new(
        me,
        topo.cluster.clone(),
        control_config(&config),
        seed(),
        0,
        file.term,
        primary,
    );
    node.restore_vote(
        file.voted_for
            .as_deref()
            .and_then(|n| topo.by_name(n))
            .map(|p| p.id),
    );
    // The starting state of replication: open only as the first primary of
    // a fresh database; otherwise follow whoever the file names, or hold.
    // Even the first primary of a fresh database holds writes until a
    // majority answered (see `Driver::boot_gate`).
    if node.open_term().is_some() {
        repl.set_gate(true);
        repl.set_master(None);
    } else {
        repl.set_hold(true);
        let target = primary
            .filter(|p| *p != me && !topo.me().arbiter)
            .and_then(|p| topo.peer(p))
            .map(|p| p.client.clone());
        repl.set_master(target);
    }
    Ok(Some(Boot {
        member: Some((topo, node)),
        list,
        dir,
        file,
        wanted,
    }))
}

struct Driver {
    topo: Topology,
    node: Node,
    bus: Bus,
    state: Arc<ServerState>,
    start: Instant,
    dir: PathBuf,
    file: ClusterFile,
    /// The history (a term) this node's data follows.
    history: Term,
    /// Following (primary, its term, the REPLICAOF epoch we set).
    following: Option<(u32, Term, u64)>,
    /// Opening as primary of a term once every shard promoted request n.
    opening: Option<(Term, u64)>,
    last_progress: Progress,
    last_commit: Vec<u64>,
    /// This node serves reads (what its pings say).
    serving: bool,
    merges_noted: BTreeSet<(u32, Term)>,
    election: Option<ElectionView>,
    elections_won: u64,
    failovers_seen: u64,
    /// Elections this node saw start (its own or heard of), and how long
    /// each took until a primary opened, in milliseconds.
    elections_seen: u64,
    election_ms: crate::server::histogram::Histogram,
    /// Booted open (first primary, no file): writes wait until a majority
    /// of voters were heard from, so a stale first primary learns the term.
    boot_gate: bool,
    heard: BTreeSet<u32>,
    /// The primary last announced to clients (`+switch-master`).
    announced: Option<u32>,
    switchover: Option<Switchover>,
    forced_failovers: u64,
    /// Membership changes: what this node knows of its peers' lists and,
    /// as primary, the steps it drives.
    members: membership::Coordinator,
}

/// A planned switchover (FAILOVER) this primary is running.
struct Switchover {
    target: u32,
    /// Driver clock: give up (or hand over anyway, with `force`) then.
    deadline: u64,
    force: bool,
    /// When the handover was sent (driver clock), once it was.
    handed_at: Option<u64>,
    /// When it was last (re)sent.
    asked_at: u64,
}

/// How long a handed-over switchover may take to show a new primary
/// before writes resume here.
pub const HANDOVER_WAIT_MS: u64 = 3000;

/// Starts the bus and the driver thread.
pub fn start(boot: Boot, state: Arc<ServerState>) -> Result<(), String> {
    let config = state.config();
    let Boot {
        member,
        list,
        dir,
        file,
        wanted,
    } = boot;
    let me_name = config.node_id.clone();
    let port = match (config.bus_port, &member) {
        (0, Some((t, _))) => t.me().bus.1,
        (0, None) => super::members::default_bus_port(config.port),
        (p, _) => p,
    };
    if port == 0 {
        // Client port + 20000 passes 65535: binding port 0 would take a
        // random one nobody can name in KEEL NODE ADD.
        return Err(format!(
            "no cluster bus port: the client port {} + 20000 passes 65535; set bus-port",
            config.port
        ));
    }
    let ip: std::net::IpAddr = if config.bind.is_empty() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        config
            .bind
            .parse()
            .map_err(|_| format!("bad bind address {:?}", config.bind))?
    };
    let shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bus = super::bus::start(
        &me_name,
        member.as_ref().map(|(t, _)| t),
        &list,
        std::net::SocketAddr::new(ip, port),
        &config.database_name,
        config.requirepass.clone(),
        config.masterauth.clone(),
        crate::security::stream::bus_tls(state.clone()),
        shutdown.clone(),
    )
    .map_err(|e| format!("cannot listen on the cluster bus port {ip}:{port}: {e}"))?;
    tracing::info!(
        "cluster: {me_name} {} {} ({} members, list version {}), bus on {ip}:{port}, term {}",
        if member.is_some() {
            "is a member of"
        } else {
            "waits to be added to"
        },
        config.database_name,
        list.members.len(),
        list.version,
        file.term
    );
    std::thread::Builder::new()
        .name("keel-cluster".into())
        .spawn(move || {
            let clock = Instant::now();
            let mut joined = match member {
                Some(m) => Some((m, file, bus)),
                None => {
                    membership::wait_to_join(&state, "joining", &me_name, clock, &dir, file, bus)
                }
            };
            let mut wanted = wanted;
            // A removed node waits as a joiner: the step that removed it may
            // be overwritten by a newer primary's list that still names it.
            while let Some(((topo, node), file, bus)) = joined.take() {
                let mut d = Driver::new(
                    topo,
                    node,
                    bus,
                    state.clone(),
                    clock,
                    dir.clone(),
                    file,
                    std::mem::take(&mut wanted),
                );
                d.run();
                if !d.members.removed {
                    break;
                }
                let Driver { bus, file, .. } = d;
                joined =
                    membership::wait_to_join(&state, "removed", &me_name, clock, &dir, file, bus);
            }
            shutdown.store(true, Ordering::SeqCst);
        })
        .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
    Ok(())
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        topo: Topology,
        node: Node,
        bus: Bus,
        state: Arc<ServerState>,
        start: Instant,
        dir: PathBuf,
        file: ClusterFile,
        wanted: Vec<membership::Wanted>,
    ) -> Driver {
        let history = file.history;
        let shards = state.shards;
        let mut d = Driver {
            topo,
            node,
            bus,
            state: state.clone(),
            start,
            dir,
            file,
            history,
            following: None,
            opening: None,
            last_progress: Progress::empty(history, shards),
            last_commit: vec![0; shards],
            serving: false,
            merges_noted: BTreeSet::new(),
            election: None,
            elections_won: 0,
            failovers_seen: 0,
            elections_seen: 0,
            election_ms: Default::default(),
            boot_gate: false,
            heard: BTreeSet::new(),
            announced: None,
            switchover: None,
            forced_failovers: 0,
            members: membership::Coordinator::new(wanted),
        };
        d.announced = d.node.primary();
        d.boot_gate = d.node.open_term().is_some();
        if let Some(p) = d.node.primary().filter(|p| *p != d.topo.me) {
            d.following = Some((p, d.node.term(), state.repl.epoch.load(Ordering::SeqCst)));
        }
        d.members_changed();
        d
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn run(&mut self) {
        let mut next_tick = self.now();
        while !self.state.shutdown.load(Ordering::Relaxed) {
            let now = self.now();
            let wait = Duration::from_millis(next_tick.saturating_sub(now));
            match self.bus.inbox.recv_timeout(wait) {
                Ok(m) => {
                    if let Some((from, msg)) = self.inbound(m) {
                        self.heard.insert(from);
                        let out = self.node.handle(self.now(), Input::Receive { from, msg });
                        self.apply(out);
                    }
                    if self.members.removed {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.now() >= next_tick {
                self.tick();
                next_tick = self.now() + TICK.as_millis() as u64;
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        self.observe_history();
        let progress = self.progress();
        if progress != self.last_progress {
            self.last_progress = progress.clone();
            let out = self.node.handle(now, Input::Progress(progress));
            self.apply(out);
        }
        if self.node.open_term().is_some() && self.state.repl.strong {
            let commit: Vec<u64> = self
                .state
                .repl
                .published
                .iter()
                .map(|f| f.sync_acked.load(Ordering::Relaxed))
                .collect();
            if commit != self.last_commit {
                self.last_commit = commit.clone();
                let out = self.node.handle(now, Input::Commit(commit));
                self.apply(out);
            }
        }
        for c in self.state.cluster.take_commands() {
            self.command(c);
        }
        let out = self.node.handle(now, Input::Tick);
        self.apply(out);
        self.drive_switchover();
        self.finish_opening();
        self.open_boot_gate();
        self.coordinate();
        self.settle_join();
        let reachable = self
            .node
            .primary()
            .is_some_and(|p| p != self.topo.me && !self.node.suspects(p))
            && !self.node.writes_paused();
        self.state
            .cluster
            .primary_reachable
            .store(reachable, Ordering::Relaxed);
        let lease = !self.state.repl.strong || self.node.can_accept_strong(now);
        self.state.cluster.lease_ok.store(lease, Ordering::Relaxed);
        self.persist();
        self.publish_view();
        self.publish_read_replicas();
        self.announce();
    }

    /// Gossips whether this node serves reads, and lists the backups this
    /// node may send reads to when its own copy is not ready: serving by
    /// their latest ping, not suspected, not the primary; same zone first,
    /// then same region — another region's copy is never "nearest".
    fn publish_read_replicas(&mut self) {
        let me = self.topo.peers.iter().find(|p| p.id == self.topo.me);
        let serving = me.is_some_and(|m| !m.arbiter)
            && !self.state.repl.published.is_empty()
            && self
                .state
                .repl
                .published
                .iter()
                .all(|f| f.ready.load(Ordering::Relaxed));
        self.node.set_serving(serving);
        self.serving = serving;
        let Some(me) = me else {
            return;
        };
        let primary = self.node.primary();
        let mut near: Vec<(u8, &str, (String, u16))> = self
            .topo
            .peers
            .iter()
            .filter(|_| primary != Some(me.id))
            .filter(|p| p.id != me.id && !p.arbiter && Some(p.id) != primary)
            .filter(|p| self.node.peer_serving(p.id) && !self.node.suspects(p.id))
            .filter(|p| p.region == me.region)
            .map(|p| {
                (
                    u8::from(p.zone != me.zone),
                    p.name.as_str(),
                    p.client.clone(),
                )
            })
            .collect();
        near.sort();
        let list: Vec<(String, u16)> = near.into_iter().map(|(_, _, c)| c).collect();
        if let Ok(mut g) = self.state.cluster.read_replicas.lock() {
            if *g != list {
                *g = list;
            }
        }
    }

    /// Tells Sentinel-aware clients subscribed here that the primary moved:
    /// `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`, once
    /// the new primary is known to be open (ourselves: once writable).
    fn announce(&mut self) {
        let Some(p) = self.node.primary() else {
            return;
        };
        let me = self.topo.me;
        if p == me && (self.opening.is_some() || self.boot_gate || self.node.open_term().is_none())
        {
            return;
        }
        if self.announced == Some(p) {
            return;
        }
        let old = self.announced.replace(p).unwrap_or(p);
        if old == p {
            return;
        }
        let (Some(o), Some(n)) = (self.topo.peer(old), self.topo.peer(p)) else {
            return;
        };
        let msg = format!(
            "{} {} {} {} {}",
            self.state.config().database_name,
            o.client.0,
            o.client.1,
            n.client.0,
            n.client.1
        );
        tracing::info!(term = self.node.term(), "cluster: +switch-master {msg}");
        self.state.cluster.notify("+switch-master", msg);
    }

    /// A backup is on its primary's history once every shard is online on
    /// the link made for that primary.
    fn observe_history(&mut self) {
        let Some((_, term, epoch)) = self.following else {
            return;
        };
        if self.history == term || self.topo.me().arbiter {
            return;
        }
        let online = self
            .state
            .repl
            .published
            .iter()
            .all(|f| f.online_epoch.load(Ordering::Relaxed) >= epoch.max(1));
        if online {
            self.history = term;
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            history: self.history,
            seqs: self
                .state
                .repl
                .published
                .iter()
                .map(|f| f.seq.load(Ordering::Relaxed))
                .collect(),
        }
    }

    fn apply(&mut self, out: Output) {
        let ident = self.topo.list.ident();
        for e in out.sends {
            self.bus.send(e.to, ident, e.msg);
        }
        for a in out.actions {
            self.act(a);
        }
    }

    fn name(&self, id: u32) -> String {
        self.topo.name(id).to_string()
    }

    fn act(&mut self, a: Action) {
        let repl = &self.state.repl;
        let term = self.node.term();
        match a {
            Action::Failed { node } => {
                tracing::info!(
                    term,
                    "cluster: {} is failed (a majority suspects it)",
                    self.name(node)
                );
                if Some(node) == self.node.primary() {
                    self.failovers_seen += 1;
                }
            }
            Action::StartElection { term, reason } => {
                tracing::info!(term, "cluster: standing for election ({reason:?})");
                self.note_election(term, &format!("{reason:?}").to_lowercase(), "");
            }
            Action::Voted { term, candidate } => {
                tracing::info!(term, "cluster: voted for {}", self.name(candidate));
                // A voter sees the election start with its vote: it times it
                // from here to the primary it then follows.
                if self.election.as_ref().is_none_or(|e| e.term < term) {
                    self.note_election(term, "voted", &self.name(candidate));
                }
            }
            Action::Won { term } => {
                tracing::info!(
                    term,
                    "cluster: won the election; catching up before opening"
                );
                self.elections_won += 1;
                if let Some(e) = &mut self.election {
                    e.winner = self.topo.me().name.clone();
                }
            }
            Action::Pull { shard, from, up_to } => {
                let addr = self.topo.peer(from).map(|p| p.client.clone());
                let source = self.name(from);
                let what = format!("{shard}<-{source}@{up_to}");
                if let Some(e) = &mut self.election {
                    if !e.pulls.contains(&what) {
                        tracing::info!(
                            term,
                            "cluster: pulling shard {shard} from {source} up to seq {up_to}"
                        );
                        e.pulls.push(what);
                    }
                }
                repl.set_pull(shard, addr);
            }
            Action::MergeFrom { from } => {
                // Merging a diverged history is not wired yet: the member
                // resyncs in full from us (its records past the fork point
                // are dropped). Said once per member and term, never silent.
                if self.merges_noted.insert((from, term)) {
                    tracing::warn!(
                        term,
                        "cluster: {} holds records past the fork point; merge is not implemented, it will resync in full",
                        self.name(from)
                    );
                }
                let out = self.node.handle(self.now(), Input::Merged { from });
                self.apply(out);
            }
            Action::OpenForWrites { term } => {
                for s in 0..self.state.shards {
                    repl.set_pull(s, None);
                }
                let req = repl.request_promotion();
                repl.set_master(None);
                self.following = None;
                self.history = term;
                self.opening = Some((term, req));
                self.finish_opening();
            }
            Action::StepDown { term } => {
                repl.set_hold(true);
                self.opening = None;
                for s in 0..self.state.shards {
                    repl.set_pull(s, None);
                }
                tracing::info!(
                    term,
                    "cluster: stepped down; writes refused until the new primary is known"
                );
            }
            Action::Follow { primary, term } => {
                repl.set_hold(true);
                self.opening = None;
                for s in 0..self.state.shards {
                    repl.set_pull(s, None);
                }
                if self.topo.me().arbiter {
                    return;
                }
                let Some(p) = self.topo.peer(primary) else {
                    return;
                };
                let target = Some(p.client.clone());
                if repl.master() != target {
                    repl.set_master(target);
                }
                tracing::info!(
                    term,
                    "cluster: following {} at {}:{}",
                    p.name,
                    p.client.0,
                    p.client.1
                );
                self.following = Some((primary, term, repl.epoch.load(Ordering::SeqCst)));
                let known = self.election.as_ref().is_some_and(|e| e.term == term);
                if known {
                    if let Some(e) = &mut self.election {
                        e.winner = p.name.clone();
                    }
                    self.election_done();
                } else if self.election.as_ref().is_none_or(|e| e.term < term) {
                    self.election = Some(ElectionView {
                        term,
                        reason: "heard".into(),
                        winner: p.name.clone(),
                        started_ms: now_ms(),
                        took_ms: None,
                        pulls: vec![],
                    });
                }
            }
            Action::PauseWrites => {
                repl.set_paused(true);
                tracing::warn!(term, "cluster: no replica is eligible for promotion; writes paused (reads go on) until one returns or FAILOVER FORCE");
            }
            Action::ResumeWrites => {
                repl.set_paused(false);
                tracing::info!(term, "cluster: an eligible replica is back; writes resume");
            }
            Action::ForcedFailover { term } => {
                tracing::warn!(
                    term,
                    "cluster: FORCED failover to this node (eligibility skipped)"
                );
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = self.now();
        match c {
            Command::Switchover {
                to,
                timeout_ms,
                force,
            } => {
                let Some(target) = self.topo.by_name(&to).map(|p| p.id) else {
                    return;
                };
                if self.node.open_term().is_none() || self.switchover.is_some() {
                    tracing::warn!("cluster: FAILOVER to {to} ignored: not an open primary, or one already runs");
                    if self.switchover.is_none() {
                        self.state.repl.set_write_pause_until(0);
                    }
                    return;
                }
                tracing::info!(
                    term = self.node.term(),
                    "cluster: FAILOVER to {to}: writes held while it catches up (at most {timeout_ms} ms)"
                );
                // Writes wait (not fail) while the target catches up; a
                // margin past the deadline covers the handover itself.
                self.state
                    .repl
                    .set_write_pause_until(now_ms() + timeout_ms + HANDOVER_WAIT_MS);
                self.state.cluster.want_acks.store(true, Ordering::SeqCst);
                self.switchover = Some(Switchover {
                    target,
                    deadline: now + timeout_ms,
                    force,
                    handed_at: None,
                    asked_at: 0,
                });
                self.drive_switchover();
            }
            Command::Abort => {
                if let Some(s) = &self.switchover {
                    if s.handed_at.is_none() {
                        tracing::info!("cluster: FAILOVER aborted; writes resume");
                        self.end_switchover();
                    }
                }
            }
            Command::Member(m) => self.member_command(m),
            Command::Force => {
                tracing::warn!(
                    term = self.node.term(),
                    "cluster: FAILOVER FORCE: this node stands without the eligibility check"
                );
                self.forced_failovers += 1;
                if self.state.repl.strong {
                    tracing::warn!(
                        "cluster: FAILOVER FORCE in strong mode: until a backup connects, writes are acknowledged by this node alone"
                    );
                    self.state.repl.set_degraded(true);
                }
                let out = self.node.handle(now, Input::ForceFailover);
                self.apply(out);
            }
        }
    }

    fn end_switchover(&mut self) {
        self.switchover = None;
        self.state.cluster.want_acks.store(false, Ordering::SeqCst);
        self.state.repl.set_write_pause_until(0);
    }

    /// Waits for the target to hold every record, hands over, and releases
    /// the held writes once the new primary is known (they then meet
    /// `-READONLY` here and clients move).
    fn drive_switchover(&mut self) {
        let now = self.now();
        let Some(s) = &self.switchover else {
            return;
        };
        let (target, deadline, force, handed_at) = (s.target, s.deadline, s.force, s.handed_at);
        let name = self.name(target);
        match handed_at {
            None => {
                if self.node.open_term().is_none() {
                    self.end_switchover();
                    return;
                }
                let caught_up = self.state.repl.published.iter().all(|f| {
                    let seq = f.seq.load(Ordering::Relaxed);
                    f.acked_by
                        .lock()
                        .map(|by| by.iter().any(|(b, a)| *b == name && *a >= seq))
                        .unwrap_or(false)
                });
                let give_up = now >= deadline;
                if caught_up || (give_up && force) {
                    tracing::info!(
                        term = self.node.term(),
                        "cluster: FAILOVER: {name} {}; handing over",
                        if caught_up {
                            "holds every write"
                        } else {
                            "did not catch up in time, FORCE"
                        }
                    );
                    let out = self.node.handle(now, Input::HandOver { to: target });
                    self.apply(out);
                    if let Some(s) = &mut self.switchover {
                        s.handed_at = Some(now);
                        s.asked_at = now;
                    }
                } else if give_up {
                    tracing::warn!("cluster: FAILOVER to {name} timed out before it caught up; writes resume here");
                    self.end_switchover();
                }
            }
            Some(at) => {
                if self.node.open_term().is_none() && self.node.primary() == Some(target) {
                    tracing::info!(
                        term = self.node.term(),
                        "cluster: FAILOVER done: {name} is primary"
                    );
                    self.end_switchover();
                } else if now >= at + HANDOVER_WAIT_MS {
                    tracing::warn!(
                        "cluster: FAILOVER: {name} did not take over; writes resume here"
                    );
                    self.end_switchover();
                } else if self.node.open_term().is_some()
                    && self
                        .switchover
                        .as_ref()
                        .is_some_and(|s| now >= s.asked_at + 300)
                {
                    // The handover message may have been lost: ask again.
                    let out = self.node.handle(now, Input::HandOver { to: target });
                    self.apply(out);
                    if let Some(s) = &mut self.switchover {
                        s.asked_at = now;
                    }
                }
            }
        }
    }

    /// The election in view ended (a primary opened): its duration joins
    /// the histogram once.
    fn election_done(&mut self) {
        if let Some(e) = &mut self.election {
            if e.took_ms.is_none() {
                let took = now_ms().saturating_sub(e.started_ms);
                e.took_ms = Some(took);
                self.election_ms.record(took);
            }
        }
    }

    fn note_election(&mut self, term: Term, reason: &str, winner: &str) {
        self.elections_seen += 1;
        self.election = Some(ElectionView {
            term,
            reason: reason.to_string(),
            winner: winner.to_string(),
            started_ms: now_ms(),
            took_ms: None,
            pulls: vec![],
        });
    }

    fn open_boot_gate(&mut self) {
        if !self.boot_gate {
            return;
        }
        if self.node.open_term().is_none() {
            // Stepped down before it opened: hold (set by StepDown) rules.
            self.boot_gate = false;
            self.state.repl.set_gate(false);
            return;
        }
        let voters = self.topo.cluster.voters();
        let heard = voters
            .iter()
            .filter(|v| **v == self.topo.me || self.heard.contains(v))
            .count();
        if heard >= self.topo.cluster.majority() {
            self.boot_gate = false;
            self.state.repl.set_gate(false);
            tracing::info!(
                term = self.node.term(),
                "cluster: first primary of term {}, open for writes",
                self.node.term()
            );
        }
    }

    /// Opens for writes once every shard promoted.
    fn finish_opening(&mut self) {
        let Some((term, req)) = self.opening else {
            return;
        };
        if !self.state.repl.all_promoted(req) {
            return;
        }
        self.opening = None;
        let took: Vec<u64> = self
            .state
            .repl
            .published
            .iter()
            .map(|f| f.promoted_at.load(Ordering::SeqCst))
            .collect();
        let out = self.node.handle(self.now(), Input::TookOver(took));
        self.apply(out);
        self.state.repl.set_hold(false);
        self.election_done();
        tracing::info!(term, "cluster: primary of term {term}, open for writes");
    }

    fn persist(&mut self) {
        let f = ClusterFile {
            term: self.node.term(),
            voted_for: self.node.voted_for().map(|v| self.name(v)),
            primary: self.node.primary().map(|p| self.name(p)),
            history: self.history,
            list: Some(self.topo.list.clone()),
            config_digest: self.file.config_digest,
            histories: self
                .state
                .repl
                .published
                .iter()
                .map(|f| f.history.load(Ordering::Relaxed))
                .collect(),
        };
        if f == self.file {
            return;
        }
        if let Err(e) = f.store(&self.dir) {
            tracing::warn!("cluster: cannot write the cluster file: {e}");
            return;
        }
        self.file = f;
    }

    fn publish_view(&self) {
        let now = self.now();
        let role = match self.node.role() {
            Role::Follower => "backup",
            Role::Candidate(_) => "candidate",
            Role::CatchingUp(_) => "catching-up",
            Role::Primary { .. } if self.opening.is_some() => "catching-up",
            Role::Primary { .. } => "primary",
        };
        let members = self
            .topo
            .peers
            .iter()
            .map(|p| MemberView {
                name: p.name.clone(),
                client: p.client.clone(),
                zone: p.zone.clone(),
                region: p.region.clone(),
                bus: p.bus.clone(),
                arbiter: p.arbiter,
                voter: p.voter,
                replaces: p.replaces.clone(),
                state: if p.id == self.topo.me {
                    "myself"
                } else if self.node.is_failed(p.id) {
                    "failed"
                } else if self.node.suspects(p.id) {
                    "suspected"
                } else {
                    "ok"
                },
                heard_ms_ago: (p.id != self.topo.me)
                    .then(|| self.node.last_heard(p.id).map(|t| now.saturating_sub(t)))
                    .flatten(),
                serving: if p.id == self.topo.me {
                    self.serving
                } else {
                    self.node.peer_serving(p.id)
                },
                total_seq: if p.id == self.topo.me {
                    Some(self.last_progress.total())
                } else {
                    self.node.peer_progress(p.id).map(|g| g.total())
                },
            })
            .collect();
        let stats = &self.bus.stats;
        let queued = self
            .state
            .cluster
            .commands
            .lock()
            .is_ok_and(|q| q.iter().any(|c| matches!(c, Command::Switchover { .. })));
        let failover_state = match &self.switchover {
            None if queued => "waiting-for-sync",
            None => "no-failover",
            Some(s) if s.handed_at.is_none() => "waiting-for-sync",
            Some(_) => "failover-in-progress",
        };
        let v = ClusterView {
            failover_state,
            forced_failovers: self.forced_failovers,
            term: self.node.term(),
            role,
            primary: self.node.primary().map(|p| self.name(p)),
            history: self.history,
            members,
            writes_paused: self.node.writes_paused(),
            commit: self.node.commit().to_vec(),
            last_election: self.election.clone(),
            elections_won: self.elections_won,
            failovers_seen: self.failovers_seen,
            elections_seen: self.elections_seen,
            election_ms: self.election_ms,
            bus_sent: stats.sent.load(Ordering::Relaxed),
            bus_received: stats.received.load(Ordering::Relaxed),
            bus_dropped: stats.dropped.load(Ordering::Relaxed),
            bus_refused: stats.refused.load(Ordering::Relaxed),
            members_version: self.topo.list.version,
            membership: self.change_in_progress().unwrap_or_else(|| "idle".into()),
            membership_busy: self.membership_busy(),
        };
        if let Ok(mut g) = self.state.cluster.view.lock() {
            *g = v;
        }
    }
}
