//! The simulated world: nodes, their data, the network, the nemesis, and the loop
//! that advances virtual time one millisecond at a time.
//!
//! Each node's data is a log of write ids per shard (its seq on a shard is the
//! length of that log). Replication, pulls and merges move ids between logs over
//! the simulated network, so a lost write is a missing id and divergence is two
//! logs that differ: the checks in [`invariants`](super::invariants) are set
//! comparisons. Value-level merge rules are covered by `keel_shards::merge`'s own
//! property tests; here a merge is the union of ids, appended in the source's order.
//!
//! The data rules the replication layer must follow, as modelled here:
//! - a backup applies a stream only from the node it believes is primary;
//! - a backup whose log is not a prefix of its primary's offers its extra records
//!   (since the fork point) for merge before it resyncs, and resyncs only once the
//!   primary's log holds all of them;
//! - strong mode acknowledges a write once a backup in another zone applied it and
//!   the primary still holds its lease.
//!
//! Membership (the rules of `cluster::members` and the driver's coordinator,
//! modelled in `world/coordinator.rs`): every node holds a member list; every control
//! message carries its sender's list [`Ident`]; a node hands a control message to
//! its [`Node`] only when the sender holds its own list. Nodes may start outside
//! the list (*joiners*: they ignore everything until a list that adds them
//! arrives) and a node that learns it was removed stops taking part. Replication,
//! the strong-mode ack rule and the checks use the list in force at the node
//! concerned, never the starting configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use keel_shards::hlc::{Hlc, HlcClock};

use super::super::messages::{Action, Input, Message, Output, Reason};
use super::super::node::Role;
use super::super::rng::SeededRng;
use super::super::{Cluster, Member, Node, NodeId, Progress, Term};
use super::invariants::Checker;
use super::membership::{Change, Ident, MemberList};
use super::nemesis::{schedule, Fault};
use super::network::Network;
use super::{Report, SimConfig, Violation};

mod coordinator;

/// What travels between simulated nodes.
#[derive(Clone, Debug)]
pub enum SimMsg {
    /// A control-plane message and the list its sender held when it sent it.
    Control {
        ident: Ident,
        msg: Message,
    },
    /// A member list, sent to a node on an older one (or told it was removed).
    Members(Rc<MemberList>),
    Repl {
        term: Term,
        shard: usize,
        log: Rc<Vec<u64>>,
        /// The primary's commit point for this shard (the seq a cross-zone
        /// backup applied), so backups learn it with the stream.
        commit: u64,
    },
    ReplAck {
        term: Term,
        shard: usize,
        seq: u64,
        /// The commit point the backup now knows for this shard.
        knows: u64,
    },
    Offer {
        shard: usize,
        ids: Vec<u64>,
    },
    PullReq {
        shard: usize,
    },
    PullResp {
        shard: usize,
        log: Rc<Vec<u64>>,
    },
    MergeReq,
    MergeResp {
        logs: Vec<Rc<Vec<u64>>>,
    },
}

/// One simulated machine.
pub struct SimNode {
    pub node: Node,
    pub zone: u16,
    pub holds_data: bool,
    pub up: bool,
    pub paused_until: Option<u64>,
    pub logs: Vec<Rc<Vec<u64>>>,
    /// Per shard, the term of the primary whose stream that shard follows. The
    /// node reports the oldest: one shard still diverged keeps the whole node on
    /// its old history, so a winner merges from it rather than trusting seqs.
    pub histories: Vec<Term>,
    offset: u64,
    drift_ppm: i64,
    /// Strong-mode writes waiting for a backup ack: (id, shard, seq).
    pending: Vec<(u64, usize, u64)>,
    /// As primary: per shard, the highest seq a cross-zone backup applied.
    commit: Vec<u64>,
    /// As primary: per member and shard, the commit point it reported knowing.
    known: BTreeMap<NodeId, Vec<u64>>,
    /// Last time this node crashed, restarted, paused or resumed.
    pub disturbed_at: u64,
    /// The node's hybrid logical clock, driven by its own (skewed) clock.
    hlc: HlcClock,
    /// Largest HLC among the writes this node holds.
    hlc_held: Hlc,
    /// Per shard: (length, last id) of the log when its HLCs were last folded in.
    hlc_scanned: Vec<(usize, u64)>,
    /// The member list this node holds (kept across restarts: the cluster
    /// file). A joiner not yet added keeps here the newest list it heard.
    pub list: Rc<MemberList>,
    /// In the list: false for a joiner until a list that adds it arrives.
    pub joined: bool,
    /// Learned it was removed: it stops taking part (for good under keel's
    /// rules; see [`MembershipRules::rejoin`](super::MembershipRules::rejoin)).
    pub gone: bool,
    /// The list each peer's latest frame carried (driver memory: lost on a crash).
    holds: BTreeMap<NodeId, Ident>,
    /// When each node was last sent our list (this node's clock).
    pushed: BTreeMap<NodeId, u64>,
    /// Removed members still told so, until a deadline (this node's clock).
    departed: Vec<(NodeId, u64)>,
    /// Members whose control messages reached the node since it started.
    heard: BTreeSet<NodeId>,
    /// keel's boot gate: a node that restarts as the open primary takes no
    /// membership step until it has heard a majority of its list's voters
    /// (by then a newer term would have made it step down).
    boot_gate: bool,
}

impl SimNode {
    pub fn running(&self, t: u64) -> bool {
        self.up && !self.gone && self.paused_until.is_none_or(|p| p <= t)
    }

    /// A member taking part: added (not a joiner still waiting) and not removed.
    pub fn taking_part(&self) -> bool {
        self.joined && !self.gone
    }

    pub fn all_ids(&self) -> HashSet<u64> {
        self.logs.iter().flat_map(|l| l.iter().copied()).collect()
    }

    fn progress(&self) -> Progress {
        Progress {
            history: self.histories.iter().copied().min().unwrap_or(0),
            seqs: self.logs.iter().map(|l| l.len() as u64).collect(),
        }
    }
}

/// The whole simulation.
pub struct World {
    pub t: u64,
    pub cfg: SimConfig,
    pub seed: u64,
    rng: SeededRng,
    pub net: Network<SimMsg>,
    pub nodes: Vec<SimNode>,
    faults: Vec<(u64, Fault)>,
    next_fault: usize,
    last_primary_crashed: Option<NodeId>,
    next_id: u64,
    /// Every write acknowledged to a client.
    pub acked: HashSet<u64>,
    /// Strong-mode acknowledged writes, with the term of the primary that
    /// acknowledged each.
    pub strong_acked: HashMap<u64, Term>,
    /// The HLC each write was given, indexed by write id.
    write_hlc: Vec<Hlc>,
    /// Nodes that start outside the list, in the order they are added.
    joiners: Vec<Member>,
    /// Joiners some list has added (ids are never reused: never added twice).
    added: BTreeSet<NodeId>,
    /// Membership changes asked of the primary and not yet accepted.
    asked: VecDeque<Change>,
    pub checker: Checker,
    pub report: Report,
    trace: Vec<String>,
}

fn is_prefix(a: &[u64], b: &[u64]) -> bool {
    a.len() <= b.len() && a == &b[..a.len()]
}

/// Appends to `dst` every id of `src` it lacks, in `src`'s order.
fn union_into(dst: &mut Rc<Vec<u64>>, src: &[u64]) -> bool {
    if is_prefix(dst, src) {
        if src.len() > dst.len() {
            let from = dst.len();
            Rc::make_mut(dst).extend_from_slice(&src[from..]);
            return true;
        }
        return false;
    }
    let have: HashSet<u64> = dst.iter().copied().collect();
    let missing: Vec<u64> = src.iter().copied().filter(|i| !have.contains(i)).collect();
    if missing.is_empty() {
        return false;
    }
    Rc::make_mut(dst).extend(missing);
    true
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng = SeededRng::new(seed);
        let cluster = Cluster {
            members: cfg.members.clone(),
            shards: cfg.shards,
        };
        let initial = Rc::new(MemberList::initial(cfg.members.clone()));
        // Joiners take the ids after the members', as keel's `next_id` would.
        let first = cfg.members.len() as NodeId;
        let joiners: Vec<Member> = (first..first + cfg.joiners)
            .map(|id| Member {
                id,
                zone: (id % 3) as u16,
                voter: false,
                holds_data: true,
            })
            .collect();
        let everyone: Vec<Member> = cfg.members.iter().chain(&joiners).cloned().collect();
        let zones: Vec<u16> = everyone.iter().map(|m| m.zone).collect();
        let first_primary = cfg
            .members
            .iter()
            .find(|m| m.holds_data)
            .map(|m| m.id)
            .unwrap_or(0);
        let nodes = everyone
            .iter()
            .map(|m| {
                let offset = rng.range(0, cfg.max_clock_offset);
                let drift = rng.range(0, 2 * cfg.max_drift_ppm) as i64 - cfg.max_drift_ppm as i64;
                let joined = m.id < first;
                SimNode {
                    // A joiner's node is rebuilt from the list that adds it;
                    // until then it is never fed.
                    node: Node::new(
                        m.id,
                        cluster.clone(),
                        cfg.control.clone(),
                        seed,
                        offset,
                        1,
                        Some(first_primary),
                    ),
                    zone: m.zone,
                    holds_data: m.holds_data,
                    up: true,
                    paused_until: None,
                    logs: (0..cfg.shards).map(|_| Rc::new(Vec::new())).collect(),
                    histories: vec![u64::from(joined); cfg.shards],
                    offset,
                    drift_ppm: drift,
                    pending: Vec::new(),
                    commit: vec![0; cfg.shards],
                    known: BTreeMap::new(),
                    hlc: HlcClock::new(cfg.max_clock_drift),
                    hlc_held: Hlc::ZERO,
                    hlc_scanned: vec![(0, 0); cfg.shards],
                    disturbed_at: 0,
                    list: if joined {
                        initial.clone()
                    } else {
                        Rc::new(MemberList::initial(Vec::new()))
                    },
                    joined,
                    gone: false,
                    holds: BTreeMap::new(),
                    pushed: BTreeMap::new(),
                    departed: Vec::new(),
                    heard: BTreeSet::new(),
                    boot_gate: false,
                }
            })
            .collect();
        let n = everyone.len() as u32;
        let mut faults = schedule(
            cfg.nemesis,
            &mut rng,
            n,
            cfg.control.node_timeout,
            cfg.fault_start,
            cfg.fault_end,
        );
        if !cfg.script.is_empty() {
            faults.extend(cfg.script.iter().cloned());
            faults.sort_by_key(|(t, _)| *t);
        }
        let net = Network::new(cfg.link.clone(), zones);
        World {
            t: 0,
            checker: Checker::new(&cfg, &initial),
            cfg,
            seed,
            rng,
            net,
            nodes,
            faults,
            next_fault: 0,
            last_primary_crashed: None,
            next_id: 1,
            acked: HashSet::new(),
            strong_acked: HashMap::new(),
            write_hlc: vec![Hlc::ZERO],
            joiners,
            added: BTreeSet::new(),
            asked: VecDeque::new(),
            report: Report::default(),
            trace: Vec::new(),
        }
    }

    /// Node `i`'s own clock at the current instant (offset and rate drift applied).
    pub fn local(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let t = self.t as i64;
        (t + n.offset as i64 + t * n.drift_ppm / 1_000_000).max(0) as u64
    }

    fn log(&mut self, s: impl FnOnce() -> String) {
        if self.cfg.trace {
            let line = format!("{:>6} {}", self.t, s());
            self.trace.push(line);
            if self.trace.len() > 400 {
                self.trace.drain(..200);
            }
        }
    }

    fn fail(&self, what: String) -> Violation {
        Violation {
            seed: self.seed,
            t: self.t,
            what,
            trace: self.trace.clone(),
        }
    }

    /// Runs the whole schedule, then the heal phase; returns the report or the
    /// first violated invariant.
    pub fn run(mut self) -> Result<Report, Violation> {
        let end = self.cfg.fault_end + self.cfg.heal;
        while self.t < end {
            self.step().map_err(|w| self.fail(w))?;
            self.t += 1;
        }
        let removed_writes = self.checker.final_check(&self).map_err(|w| self.fail(w))?;
        let mut report = self.report;
        report.removed_writes = removed_writes;
        report.acked = self.acked.len() as u64;
        report.trace = self.trace;
        Ok(report)
    }

    fn step(&mut self) -> Result<(), String> {
        if self.t == self.cfg.fault_end {
            self.heal_all();
        }
        while self.next_fault < self.faults.len() && self.faults[self.next_fault].0 <= self.t {
            let f = self.faults[self.next_fault].1.clone();
            self.next_fault += 1;
            if self.t < self.cfg.fault_end {
                self.apply_fault(f);
            }
        }
        // Requests wait for an open primary that is free to take them, as an
        // operator retries a refused KEEL NODE command; none is taken after
        // the faults end, so the heal phase only finishes what was started.
        if self.t < self.cfg.fault_end && self.t.is_multiple_of(10) {
            self.offer_change()?;
        }
        while let Some(m) = self.net.pop_due(self.t) {
            let to = m.to as usize;
            if !self.nodes[to].up {
                continue;
            }
            if let Some(p) = self.nodes[to].paused_until.filter(|p| *p > self.t) {
                self.net.push(p, m);
                continue;
            }
            self.deliver(m.from, m.to, m.msg)?;
        }
        let n = self.nodes.len();
        for i in 0..n {
            if !self.nodes[i].running(self.t) {
                continue;
            }
            if let Some(p) = self.nodes[i].paused_until {
                if p <= self.t {
                    self.nodes[i].paused_until = None;
                    self.nodes[i].disturbed_at = self.t;
                }
            }
            if !self.nodes[i].joined {
                continue;
            }
            if (self.t + i as u64).is_multiple_of(self.cfg.tick_every) {
                self.feed(i, Input::Tick)?;
                self.coordinate(i)?;
            }
            if (self.t + i as u64).is_multiple_of(self.cfg.repl_every) {
                self.replicate(i);
            }
        }
        // Clients stop at the heal, so convergence is exact equality of logs.
        if self.t < self.cfg.fault_end && self.t.is_multiple_of(self.cfg.write_every) {
            self.client_writes()?;
        }
        self.with_checker(|c, w| c.step(w))
    }

    fn connectivity(&self) -> Vec<bool> {
        let n = self.nodes.len() as NodeId;
        (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .map(|(a, b)| self.net.connected(a, b))
            .collect()
    }

    /// Tells the checker which links a fault changed.
    fn note_link_changes(&mut self, before: &[bool]) {
        let n = self.nodes.len();
        let after = self.connectivity();
        for a in 0..n {
            for b in a + 1..n {
                if before[a * n + b] != after[a * n + b] {
                    self.checker
                        .link_changed((a as NodeId, b as NodeId), self.t);
                }
            }
        }
    }

    fn heal_all(&mut self) {
        let before = self.connectivity();
        self.heal_all_inner();
        self.note_link_changes(&before);
    }

    fn heal_all_inner(&mut self) {
        self.log(|| "heal all".into());
        self.net.group.iter_mut().for_each(|g| *g = 0);
        self.net.cut.clear();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.restart(i);
            }
            if self.nodes[i].paused_until.is_some() {
                self.nodes[i].paused_until = Some(self.t);
            }
        }
        self.checker.fault_changed(self.t);
        self.checker.heal_started = Some(self.t);
    }

    fn open_primary(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                let s = &self.nodes[*i];
                s.up && s.taking_part() && s.node.open_term().is_some()
            })
            .max_by_key(|i| self.nodes[*i].node.open_term())
    }

    fn restart(&mut self, i: usize) {
        let now = self.local(i);
        let s = &mut self.nodes[i];
        s.up = true;
        s.paused_until = None;
        s.disturbed_at = self.t;
        s.pending.clear();
        s.holds.clear();
        s.pushed.clear();
        s.departed.clear();
        s.heard.clear();
        s.node.restart(now);
        s.boot_gate = s.node.open_term().is_some();
        self.log(|| format!("restart n{i}"));
    }

    fn apply_fault(&mut self, f: Fault) {
        let before = self.connectivity();
        self.apply_fault_inner(f);
        self.note_link_changes(&before);
    }

    fn apply_fault_inner(&mut self, f: Fault) {
        self.log(|| format!("fault {f:?}"));
        self.checker.fault_changed(self.t);
        match f {
            Fault::CrashPrimary { fallback } => {
                let v = self.open_primary().unwrap_or(fallback as usize);
                self.crash(v);
                self.last_primary_crashed = Some(v as NodeId);
                if self.checker.failover_from.is_none() {
                    self.checker.failover_from = Some((v as NodeId, self.t));
                }
            }
            Fault::Crash(id) => self.crash(id as usize),
            Fault::Restart(id) => {
                let id = if id == u32::MAX {
                    self.last_primary_crashed.unwrap_or(0)
                } else {
                    id
                };
                if !self.nodes[id as usize].up {
                    self.restart(id as usize);
                }
            }
            Fault::PausePrimary { fallback, ms } => {
                let v = self.open_primary().unwrap_or(fallback as usize);
                self.pause(v, ms);
            }
            Fault::Pause(id, ms) => self.pause(id as usize, ms),
            Fault::IsolatePrimaryZone => {
                let p = self.open_primary().unwrap_or(0);
                let zone = self.nodes[p].zone;
                for (i, s) in self.nodes.iter().enumerate() {
                    self.net.group[i] = u32::from(s.zone == zone);
                }
                if self.checker.failover_from.is_none() {
                    self.checker.failover_from = Some((p as NodeId, self.t));
                }
            }
            Fault::Partition(groups) => self.net.group = groups,
            Fault::Heal => self.net.group.iter_mut().for_each(|g| *g = 0),
            Fault::Cut(a, b) => {
                let k = (a.min(b), a.max(b));
                if !self.net.cut.contains(&k) {
                    self.net.cut.push(k);
                }
                self.checker.link_changed(k, self.t);
            }
            Fault::Uncut(a, b) => {
                let k = (a.min(b), a.max(b));
                self.net.cut.retain(|c| *c != k);
                self.checker.link_changed(k, self.t);
            }
            Fault::Ask(c) => self.asked.push_back(c),
        }
    }

    fn crash(&mut self, i: usize) {
        let s = &mut self.nodes[i];
        if s.up {
            s.up = false;
            s.disturbed_at = self.t;
            s.pending.clear();
        }
    }

    fn pause(&mut self, i: usize, ms: u64) {
        let s = &mut self.nodes[i];
        if s.up {
            let until = s.paused_until.unwrap_or(self.t).max(self.t + ms);
            s.paused_until = Some(until);
            s.disturbed_at = self.t;
        }
    }

    fn send(&mut self, from: usize, to: NodeId, msg: SimMsg) {
        let now = self.t;
        self.net.send(&mut self.rng, now, from as NodeId, to, msg);
    }

    /// Feeds one input to node `i` and carries out its output.
    fn feed(&mut self, i: usize, input: Input) -> Result<(), String> {
        let now = self.local(i);
        let out = self.nodes[i].node.handle(now, input);
        self.carry_out(i, out)
    }

    /// Folds the HLCs of writes node `i` gained into its clock, as a replica does
    /// for every record it applies; counts remote HLCs refused for drift.
    fn fold_hlcs(&mut self, i: usize) {
        let now = self.local(i);
        for shard in 0..self.cfg.shards {
            let log = self.nodes[i].logs[shard].clone();
            let (len, last) = self.nodes[i].hlc_scanned[shard];
            let same_prefix = len <= log.len() && (len == 0 || log[len - 1] == last);
            let from = if same_prefix { len } else { 0 };
            for id in &log[from..] {
                let h = self
                    .write_hlc
                    .get(*id as usize)
                    .copied()
                    .unwrap_or(Hlc::ZERO);
                let s = &mut self.nodes[i];
                match s.hlc.update(h, now) {
                    Ok(()) => s.hlc_held = s.hlc_held.max(h),
                    Err(_) => self.report.hlc_refused += 1,
                }
            }
            self.nodes[i].hlc_scanned[shard] = (log.len(), log.last().copied().unwrap_or(0));
        }
    }

    fn feed_progress(&mut self, i: usize) -> Result<(), String> {
        self.fold_hlcs(i);
        let p = self.nodes[i].progress();
        if &p != self.nodes[i].node.progress() {
            self.feed(i, Input::Progress(p))?;
        }
        Ok(())
    }

    fn carry_out(&mut self, i: usize, out: Output) -> Result<(), String> {
        let ident = self.nodes[i].list.ident();
        for e in out.sends {
            self.send(i, e.to, SimMsg::Control { ident, msg: e.msg });
        }
        for a in out.actions {
            self.log(|| format!("n{i} {a:?}"));
            match a {
                Action::Failed { node } => self.checker.on_failed(self.t, node),
                Action::StartElection { term, reason } => {
                    self.report.elections += 1;
                    if reason == Reason::SplitBrain {
                        self.report.split_brain_elections += 1;
                    }
                    if reason == Reason::Failover {
                        self.checker.on_failover_election(self, i, term)?;
                    }
                }
                Action::Won { .. } => self.with_checker(|c, w| c.on_won(w, i)),
                Action::Pull { shard, from, .. } => self.send(i, from, SimMsg::PullReq { shard }),
                Action::MergeFrom { from } => {
                    if self.nodes[i].node.open_term().is_some() {
                        self.report.loser_merges += 1;
                    }
                    self.send(i, from, SimMsg::MergeReq)
                }
                Action::OpenForWrites { term } => {
                    self.nodes[i].known.clear();
                    self.nodes[i].histories.iter_mut().for_each(|h| *h = term);
                    self.nodes[i].pending.clear();
                    self.with_checker(|c, w| c.on_open(w, i, term))?;
                }
                Action::StepDown { .. } => self.nodes[i].pending.clear(),
                Action::PauseWrites => self.report.write_pauses += 1,
                Action::ForcedFailover { .. } => self.report.forced += 1,
                Action::Voted { .. } | Action::Follow { .. } | Action::ResumeWrites => {}
            }
        }
        Ok(())
    }

    fn client_writes(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running(self.t) || !self.nodes[i].joined {
                continue;
            }
            let now = self.local(i);
            let node = &self.nodes[i].node;
            let ok = if self.cfg.strong {
                node.can_accept_strong(now)
            } else {
                node.can_accept_writes()
            };
            if !ok {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let shard = self.rng.range(0, self.cfg.shards as u64 - 1) as usize;
            self.fold_hlcs(i);
            let s = &mut self.nodes[i];
            // I7: a write orders after every write its node holds (LWW merge must
            // never let an older write beat a newer one), whatever the clock skew.
            let h = s.hlc.now(now).map_err(|e| format!("I7: n{i} HLC: {e}"))?;
            if h <= s.hlc_held {
                return Err(format!(
                    "I7: n{i} issued HLC {h:?} not after held {:?}",
                    s.hlc_held
                ));
            }
            s.hlc_held = h;
            self.write_hlc.push(h);
            debug_assert_eq!(self.write_hlc.len() as u64, id + 1);
            Rc::make_mut(&mut s.logs[shard]).push(id);
            let seq = s.logs[shard].len() as u64;
            if self.cfg.strong {
                s.pending.push((id, shard, seq));
            } else {
                self.acked.insert(id);
            }
            self.feed_progress(i)?;
        }
        Ok(())
    }

    fn replicate(&mut self, i: usize) {
        let Some(term) = self.nodes[i].node.open_term() else {
            return;
        };
        // To the data members of the primary's own list: learners copy like
        // any backup; a node outside it is no backup of this primary.
        let list = self.nodes[i].list.clone();
        for m in list.members.iter().filter(|m| m.holds_data) {
            let j = m.id as usize;
            if j == i {
                continue;
            }
            for shard in 0..self.cfg.shards {
                let log = self.nodes[i].logs[shard].clone();
                let commit = self.nodes[i].commit[shard];
                self.send(
                    i,
                    j as NodeId,
                    SimMsg::Repl {
                        term,
                        shard,
                        log,
                        commit,
                    },
                );
            }
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: SimMsg) -> Result<(), String> {
        let (f, i) = (from as usize, to as usize);
        if !self.nodes[i].taking_part() {
            // A joiner, or a removed node, listens only for a list that
            // adds it (a removed one may answer an older list: see
            // `on_outsider_frame`).
            return match msg {
                SimMsg::Members(list) => self.on_members(i, from, list),
                SimMsg::Control { ident, .. } => {
                    self.on_outsider_frame(i, from, ident);
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        match msg {
            SimMsg::Control { ident, msg } => self.on_control(i, from, ident, msg)?,
            SimMsg::Members(list) => self.on_members(i, from, list)?,
            SimMsg::Repl {
                term,
                shard,
                log,
                commit,
            } => {
                let s = &self.nodes[i];
                if s.node.primary() != Some(from) || *s.node.role() != Role::Follower {
                    return Ok(());
                }
                let mine = &s.logs[shard];
                if is_prefix(mine, &log) {
                    if mine.len() < log.len() || s.histories[shard] != term {
                        self.nodes[i].logs[shard] = log.clone();
                        self.nodes[i].histories[shard] = term;
                    }
                    let seq = log.len() as u64;
                    self.feed_progress(i)?;
                    let mut c = self.nodes[i].node.commit().to_vec();
                    if let Some(x) = c.get_mut(shard) {
                        *x = (*x).max(commit);
                    }
                    self.feed(i, Input::Commit(c))?;
                    let knows = self.nodes[i].node.commit().get(shard).copied().unwrap_or(0);
                    self.send(
                        i,
                        from,
                        SimMsg::ReplAck {
                            term,
                            shard,
                            seq,
                            knows,
                        },
                    );
                } else {
                    let theirs: HashSet<u64> = log.iter().copied().collect();
                    let extra: Vec<u64> = mine
                        .iter()
                        .copied()
                        .filter(|x| !theirs.contains(x))
                        .collect();
                    if extra.is_empty() {
                        // The primary holds everything we have: resync to its log.
                        self.nodes[i].logs[shard] = log.clone();
                        self.nodes[i].histories[shard] = term;
                        self.feed_progress(i)?;
                    } else {
                        self.send(i, from, SimMsg::Offer { shard, ids: extra });
                    }
                }
            }
            SimMsg::ReplAck {
                term,
                shard,
                seq,
                knows,
            } => self.on_ack(i, f, term, shard, seq, knows)?,
            SimMsg::Offer { shard, ids } => {
                if self.nodes[i].node.open_term().is_some() {
                    let have: HashSet<u64> = self.nodes[i].logs[shard].iter().copied().collect();
                    let add: Vec<u64> = ids.into_iter().filter(|x| !have.contains(x)).collect();
                    if !add.is_empty() {
                        Rc::make_mut(&mut self.nodes[i].logs[shard]).extend(add);
                        self.feed_progress(i)?;
                    }
                }
            }
            SimMsg::PullReq { shard } => {
                let log = self.nodes[i].logs[shard].clone();
                self.send(i, from, SimMsg::PullResp { shard, log });
            }
            SimMsg::PullResp { shard, log } => {
                if matches!(self.nodes[i].node.role(), Role::CatchingUp(_))
                    && union_into(&mut self.nodes[i].logs[shard], &log)
                {
                    self.feed_progress(i)?;
                }
            }
            SimMsg::MergeReq => {
                let logs = self.nodes[i].logs.clone();
                self.send(i, from, SimMsg::MergeResp { logs });
            }
            SimMsg::MergeResp { logs } => {
                let node = &self.nodes[i].node;
                if matches!(node.role(), Role::CatchingUp(_)) || node.open_term().is_some() {
                    for (shard, log) in logs.iter().enumerate() {
                        union_into(&mut self.nodes[i].logs[shard], log);
                    }
                    self.feed_progress(i)?;
                    self.feed(i, Input::Merged { from })?;
                }
            }
        }
        Ok(())
    }

    /// Strong mode: a write is acknowledged once (1) a backup in another zone
    /// applied it — that seq becomes the shard's commit point — and (2) a majority
    /// of voters know a commit point at or past it (from the stream or from pings).
    /// (2) is what lets any later majority refuse a candidate missing the write.
    #[allow(clippy::too_many_arguments)]
    fn on_ack(
        &mut self,
        i: usize,
        from: usize,
        term: Term,
        shard: usize,
        seq: u64,
        knows: u64,
    ) -> Result<(), String> {
        if !self.cfg.strong || self.nodes[i].node.open_term() != Some(term) {
            return Ok(());
        }
        let shards = self.cfg.shards;
        let k = self.nodes[i]
            .known
            .entry(from as NodeId)
            .or_insert_with(|| vec![0; shards]);
        k[shard] = k[shard].max(knows);
        // Only a voter of the primary's list may be the sync backup (keel picks
        // it among voters): a learner's copy makes no commit point.
        let voter = self.nodes[i].list.is_voter(from as NodeId);
        if voter && self.nodes[from].zone != self.nodes[i].zone && seq > self.nodes[i].commit[shard]
        {
            let log = &self.nodes[i].logs[shard];
            if seq as usize <= log.len() {
                self.nodes[i].commit[shard] = seq;
                let c = self.nodes[i].commit.clone();
                self.feed(i, Input::Commit(c))?;
            }
        }
        self.try_ack(i, shard)
    }

    fn try_ack(&mut self, i: usize, shard: usize) -> Result<(), String> {
        let now = self.local(i);
        if !self.nodes[i].node.can_accept_strong(now) {
            return Ok(());
        }
        let term = self.nodes[i].node.open_term().unwrap_or(0);
        // How far a majority of voters know the commit point, among the voters
        // of this primary's own list (its lease counts in the same list). A
        // committed step changes one voter, so a majority of the next list
        // still holds a voter that knows the commit point and refuses a
        // candidate missing it; past one step this relies on the stream and
        // the pings having carried the commit point to the newer voters
        // meanwhile (each step waits at least a round of frames). I2 checks it.
        let voters = self.nodes[i].list.voters();
        let mut knowledge: Vec<u64> = voters
            .iter()
            .map(|v| {
                if *v as usize == i {
                    return self.nodes[i].commit[shard];
                }
                let via_stream = self.nodes[i]
                    .known
                    .get(v)
                    .and_then(|v| v.get(shard).copied())
                    .unwrap_or(0);
                let via_ping = self.nodes[i]
                    .node
                    .peer_commit(*v)
                    .and_then(|v| v.get(shard).copied())
                    .unwrap_or(0);
                via_stream.max(via_ping)
            })
            .collect();
        knowledge.sort_unstable_by(|a, b| b.cmp(a));
        let majority = knowledge.len() / 2 + 1;
        let known = knowledge.get(majority - 1).copied().unwrap_or(0);
        let upto = known.min(self.nodes[i].commit[shard]);
        let s = &mut self.nodes[i];
        let log = s.logs[shard].clone();
        let mut newly = Vec::new();
        s.pending.retain(|(id, sh, sq)| {
            let done = *sh == shard && *sq <= upto && log.get(*sq as usize - 1) == Some(id);
            if done {
                newly.push(*id);
            }
            !done
        });
        if newly.is_empty() {
            return Ok(());
        }
        for id in newly {
            self.acked.insert(id);
            self.strong_acked.insert(id, term);
        }
        self.checker.on_strong_ack(self, i)
    }

    /// Lends the checker and the world to `f` at once.
    fn with_checker<R>(&mut self, f: impl FnOnce(&mut Checker, &mut World) -> R) -> R {
        let mut c = std::mem::take(&mut self.checker);
        let r = f(&mut c, self);
        self.checker = c;
        r
    }

    /// Node ids of members currently open as primary.
    pub fn open_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                let s = &self.nodes[*i];
                s.up && s.taking_part() && s.node.open_term().is_some()
            })
            .collect()
    }

    /// Per-term map of which node opened, for reporting.
    pub fn opened(&self) -> &BTreeMap<Term, NodeId> {
        &self.checker.opened
    }
}
