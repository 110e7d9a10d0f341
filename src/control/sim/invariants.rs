//! The invariants the simulator checks, at every step and at every event.
//!
//! | id | invariant | when |
//! |----|-----------|------|
//! | I1 | at most one node opens as primary per term; in strong mode at most one node can accept strong writes at any instant | every open; every ms |
//! | I2 | an opening primary holds every strong-acknowledged write | every open |
//! | I3 | an opening primary holds every write that a survivor held when it won | every open |
//! | I4 | no failover election starts while an open primary is healthy and reachable by a majority | every failover election |
//! | I5 | with a healthy majority holding every acknowledged write, some member of it is an open primary within [`SimConfig::liveness_bound`] of the last fault change | every 10 ms |
//! | I6 | after the final heal all replicas converge (same logs, one primary) within the heal phase, and no acknowledged write is lost | every 10 ms after heal; end |
//! | I7 | a new write's HLC orders after every write its node holds, under clock offsets of up to 5 s and ±2% rate drift | every write |
//!
//! A *survivor* of a winner is a member that is running, connected to the winner,
//! and was not crashed, paused or restarted, and whose link to the winner did not
//! change (partition, heal, cut), during the last `node_timeout` plus two pings:
//! the members the winner can count on hearing.
//! "Healthy and reachable by a majority" (I4) uses the same notion over
//! `1.2 × node_timeout + 2 pings`, the longest silence clock-rate drift can stretch
//! a timeout to.

use std::collections::{BTreeMap, HashSet};

use super::super::{NodeId, Term};
use super::world::World;
use super::{FailoverTimes, SimConfig};

/// Invariant state carried through a run.
#[derive(Default)]
pub struct Checker {
    pub opened: BTreeMap<Term, NodeId>,
    /// The primary whose loss the figures time, and when it was lost.
    pub failover_from: Option<(NodeId, u64)>,
    failed_at: Option<u64>,
    won_at: Option<u64>,
    won_snapshot: BTreeMap<usize, HashSet<u64>>,
    last_fault_change: u64,
    links: BTreeMap<(NodeId, NodeId), u64>,
    last_ok: u64,
    pub heal_started: Option<u64>,
    converged_at: Option<u64>,
    broken: bool,
    clear_since: Option<u64>,
    node_timeout: u64,
    ping: u64,
    bound: u64,
    strong: bool,
    voters: Vec<NodeId>,
}

impl Checker {
    pub fn new(cfg: &SimConfig) -> Checker {
        Checker {
            opened: BTreeMap::new(),
            failover_from: None,
            failed_at: None,
            won_at: None,
            won_snapshot: BTreeMap::new(),
            last_fault_change: 0,
            links: BTreeMap::new(),
            last_ok: 0,
            heal_started: None,
            converged_at: None,
            broken: false,
            clear_since: None,
            node_timeout: cfg.control.node_timeout,
            ping: cfg.control.ping_interval,
            bound: cfg.liveness_bound,
            strong: cfg.strong,
            voters: cfg
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.id)
                .collect(),
        }
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn fault_changed(&mut self, t: u64) {
        self.last_fault_change = t;
    }

    pub fn link_changed(&mut self, k: (NodeId, NodeId), t: u64) {
        self.links.insert(k, t);
    }

    /// `a` and `b` were running and connected, untouched by faults, since `since`.
    fn steady(&self, w: &World, a: usize, b: usize, since: u64) -> bool {
        let ok = |i: usize| w.nodes[i].running(w.t) && w.nodes[i].disturbed_at < since;
        let k = (a.min(b) as NodeId, a.max(b) as NodeId);
        ok(a)
            && ok(b)
            && w.net.connected(a as NodeId, b as NodeId)
            && self.links.get(&k).is_none_or(|t| *t < since)
    }

    fn survivors(&self, w: &World, winner: usize) -> Vec<usize> {
        let since = w.t.saturating_sub(self.node_timeout + 2 * self.ping);
        (0..w.nodes.len())
            .filter(|j| *j != winner && w.nodes[*j].holds_data && self.steady(w, winner, *j, since))
            .collect()
    }

    pub fn on_failed(&mut self, t: u64, node: NodeId) {
        if let Some((p, t0)) = self.failover_from {
            if p == node && t >= t0 && self.failed_at.is_none() {
                self.failed_at = Some(t);
            }
        }
    }

    pub fn on_won(&mut self, w: &World, i: usize) {
        if let (Some((p, _)), Some(_), None) = (self.failover_from, self.failed_at, self.won_at) {
            if p as usize != i {
                self.won_at = Some(w.t);
            }
        }
        let mut snap = HashSet::new();
        for j in self.survivors(w, i) {
            snap.extend(w.nodes[j].all_ids());
        }
        self.won_snapshot.insert(i, snap);
    }

    pub fn on_open(&mut self, w: &mut World, i: usize, term: Term) -> Result<(), String> {
        if let Some(prev) = self.opened.insert(term, i as NodeId) {
            if prev != i as NodeId {
                return Err(format!(
                    "I1: n{prev} and n{i} both opened as primary of term {term}"
                ));
            }
        }
        let mine = w.nodes[i].all_ids();
        if let Some(snap) = self.won_snapshot.remove(&i) {
            if let Some(lost) = snap.iter().find(|x| !mine.contains(x)) {
                return Err(format!(
                    "I3: n{i} opened term {term} without write {lost} that a survivor held when it won"
                ));
            }
        }
        if self.strong {
            // Strict: the strong-mode ack rule makes a majority know the commit
            // point, so every elected primary must hold every acknowledged write,
            // whoever survived.
            if let Some(id) = w.strong_acked.iter().find(|x| !mine.contains(x)) {
                let held_by_survivor = self
                    .survivors(w, i)
                    .iter()
                    .any(|j| w.nodes[*j].logs.iter().any(|l| l.contains(id)));
                w.report.unprotected_strong_acks += 1;
                return Err(format!(
                    "I2: n{i} opened term {term} without strong-acked write {id} (held by a survivor: {held_by_survivor})"
                ));
            }
        }
        if let (Some((p, t0)), Some(f), Some(won)) =
            (self.failover_from, self.failed_at, self.won_at)
        {
            if p as usize != i && w.report.failover.is_none() {
                w.report.failover = Some(FailoverTimes {
                    detection: f - t0,
                    election: won - f,
                    catch_up: w.t - won,
                });
            }
        }
        Ok(())
    }

    /// I4, checked when node `i` starts a failover election.
    pub fn on_failover_election(&self, w: &World, i: usize, term: Term) -> Result<(), String> {
        let window = self.node_timeout * 6 / 5 + 2 * self.ping;
        let since = w.t.saturating_sub(window);
        if w.t < window {
            return Ok(());
        }
        for j in w.open_nodes() {
            if j == i {
                continue;
            }
            let reach = self
                .voters
                .iter()
                .filter(|v| **v as usize == j || self.steady(w, j, **v as usize, since))
                .count();
            let healthy = w.nodes[j].running(w.t) && w.nodes[j].disturbed_at < since;
            if healthy && reach >= self.majority() {
                return Err(format!(
                    "I4: n{i} started a failover election (term {term}) while primary n{j} was healthy and reachable by {reach} voters"
                ));
            }
        }
        Ok(())
    }

    /// I1 for strong acks: the acking primary must be the only lease holder.
    pub fn on_strong_ack(&self, w: &World, i: usize) -> Result<(), String> {
        self.single_strong_writer(w)
            .map_err(|e| format!("{e} (while n{i} acknowledged a strong write)"))
    }

    fn single_strong_writer(&self, w: &World) -> Result<(), String> {
        let holders: Vec<usize> = (0..w.nodes.len())
            .filter(|i| w.nodes[*i].running(w.t) && w.nodes[*i].node.can_accept_strong(w.local(*i)))
            .collect();
        if holders.len() > 1 {
            return Err(format!(
                "I1: {holders:?} can all accept strong-mode writes at once"
            ));
        }
        Ok(())
    }

    fn converged(&self, w: &World) -> bool {
        let open = w.open_nodes();
        if open.len() != 1 {
            return false;
        }
        let p = &w.nodes[open[0]];
        w.nodes
            .iter()
            .filter(|s| s.holds_data)
            .all(|s| s.up && s.logs == p.logs)
    }

    pub fn step(&mut self, w: &mut World) -> Result<(), String> {
        if self.strong {
            self.single_strong_writer(w)?;
        }
        if !w.t.is_multiple_of(10) {
            return Ok(());
        }
        self.liveness(w)?;
        if let (Some(_), None) = (self.heal_started, self.converged_at) {
            if self.converged(w) {
                self.converged_at = Some(w.t);
            }
        }
        self.measure_heal(w);
        Ok(())
    }

    /// Heal-to-convergence samples: from the instant every fault is gone to the
    /// instant one primary is open and every replica follows it (its logs a prefix
    /// of the primary's, at most a few records behind: writes keep flowing).
    fn measure_heal(&mut self, w: &mut World) {
        let n = w.nodes.len() as NodeId;
        let clear = w.nodes.iter().all(|s| s.running(w.t))
            && (0..n).all(|a| (0..n).all(|b| w.net.connected(a, b)));
        if !clear {
            self.broken = true;
            self.clear_since = None;
            return;
        }
        if !self.broken {
            return;
        }
        let since = *self.clear_since.get_or_insert(w.t);
        let open = w.open_nodes();
        let [p] = open.as_slice() else {
            return;
        };
        let p = &w.nodes[*p];
        let following = w.nodes.iter().filter(|s| s.holds_data).all(|s| {
            s.logs.iter().zip(&p.logs).all(|(mine, theirs)| {
                mine.len() <= theirs.len()
                    && theirs.len() - mine.len() <= 10
                    && mine[..] == theirs[..mine.len()]
            })
        });
        if following {
            w.report.heals.push(w.t - since);
            self.broken = false;
            self.clear_since = None;
        }
    }

    fn liveness(&mut self, w: &World) -> Result<(), String> {
        let n = w.nodes.len();
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            if w.nodes[i].running(w.t) {
                groups.entry(w.net.group[i]).or_default().push(i);
            }
        }
        let healthy = groups.values().find(|g| {
            let voters = g
                .iter()
                .filter(|i| self.voters.contains(&(**i as NodeId)))
                .count();
            voters >= self.majority()
                && g.iter().all(|a| {
                    g.iter()
                        .all(|b| w.net.connected(*a as NodeId, *b as NodeId))
                })
        });
        let Some(g) = healthy else {
            self.last_ok = w.t;
            return Ok(());
        };
        if g.iter().any(|i| w.nodes[*i].node.open_term().is_some()) {
            self.last_ok = w.t;
            return Ok(());
        }
        // Only a majority with a member at or past every commit point its voters
        // know must elect: the safety check rightly refuses otherwise.
        let shards = w.cfg.shards;
        let known: Vec<u64> = (0..shards)
            .map(|k| {
                g.iter()
                    .map(|i| w.nodes[*i].node.commit().get(k).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let eligible = g.iter().any(|i| {
            let s = &w.nodes[*i];
            s.holds_data && (0..shards).all(|k| s.logs[k].len() as u64 >= known[k])
        });
        if !eligible {
            self.last_ok = w.t;
            return Ok(());
        }
        let since = self.last_ok.max(self.last_fault_change);
        if w.t - since > self.bound {
            return Err(format!(
                "I5: healthy majority {g:?} has had no open primary for {} ms",
                w.t - since
            ));
        }
        Ok(())
    }

    pub fn final_check(&self, w: &World) -> Result<(), String> {
        if self.converged_at.is_none() {
            let views: Vec<String> = w
                .nodes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    format!(
                        "n{i}: up={} role={:?} term={} primary={:?} seqs={:?}",
                        s.up,
                        s.node.role(),
                        s.node.term(),
                        s.node.primary(),
                        s.logs.iter().map(|l| l.len()).collect::<Vec<_>>()
                    )
                })
                .collect();
            return Err(format!(
                "I6: replicas did not converge after the heal: {views:?}"
            ));
        }
        let open = w.open_nodes();
        let Some(p) = open.first() else {
            return Err("I6: no primary at the end".into());
        };
        let ids = w.nodes[*p].all_ids();
        if let Some(lost) = w.acked.iter().find(|x| !ids.contains(x)) {
            return Err(format!(
                "I6: acknowledged write {lost} is lost after convergence"
            ));
        }
        Ok(())
    }
}
