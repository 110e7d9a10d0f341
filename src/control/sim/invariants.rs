//! The invariants the simulator checks, at every step and at every event.
//!
//! | id | invariant | when |
//! |----|-----------|------|
//! | I1 | at most one node opens as primary per term; in strong mode at most one node can accept strong writes at any instant | every open; every ms |
//! | I2 | an opening primary holds every write strong-acknowledged in an earlier term (leader completeness) | every open |
//! | I3 | an opening primary holds every write that a survivor held when it won, of the survivors it could still hear through its catch-up | every open |
//! | I4 | no failover election starts while an open primary is healthy and reachable by a majority | every failover election |
//! | I5 | with a healthy majority holding every acknowledged write, some member of it is an open primary within [`SimConfig::liveness_bound`] of the last fault change | every 10 ms |
//! | I6 | after the final heal all replicas converge (same logs, one primary) within the heal phase, and no acknowledged write is lost | every 10 ms after heal; end |
//! | I7 | a new write's HLC orders after every write its node holds, under clock offsets of up to 5 s and ±2% rate drift | every write |
//! | L1 | consecutive committed member lists (by identity) differ by at most one voter | every list a node takes |
//! | L2 | two lists made with the same identity are the same list | every list made |
//! | L3 | at the end every member of the primary's list takes part (added, not removed) and holds that list | end |
//!
//! A list is *committed* once a majority of its voters have held it (at any
//! time: a voter that held it may have voted or echoed under it). Lists only
//! move by copying, so checking L2 where lists are made covers every holder.
//!
//! Which list each check counts in (members change during a run):
//! - I4 counts the voters of the open primary's own list, and only when the
//!   node starting the election holds that same list: members on different
//!   lists do not hear each other's control messages until the newer list
//!   reaches the other, so such an election says nothing about a healthy
//!   primary.
//! - I5 asks, per partition group, for a majority of the voters of the newest
//!   list any member of the group holds (the group spreads it within a push).
//! - I3's survivors are data members of the winner's list holding that list;
//!   I6 and L3 look at the members of the final primary's list; nodes removed
//!   and joiners never added take no part. An eventual-mode write whose only
//!   copies are on removed nodes at the end is counted
//!   ([`Report::removed_writes`](super::Report::removed_writes)), not failed:
//!   a cut-off primary took it and an operator removed that primary.
//! - I1, I2 and the lost-write half of I6 are over every node, whatever it
//!   holds: they are what membership changes must not break.
//!
//! A *survivor* of a winner is a member that is running, connected to the winner,
//! and was not crashed, paused or restarted, and whose link to the winner did not
//! change (partition, heal, cut), during the last `node_timeout` plus two pings:
//! the members the winner can count on hearing.
//! "Healthy and reachable by a majority" (I4) uses the same notion over
//! `1.2 × node_timeout + 2 pings`, the longest silence clock-rate drift can stretch
//! a timeout to.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use super::super::{NodeId, Term};
use super::membership::{Ident, MemberList};
use super::world::World;
use super::{FailoverTimes, SimConfig};

/// Each survivor of a winner, and the write ids it held.
type Snapshot = Vec<(usize, HashSet<u64>)>;

/// What the checker knows of one list.
pub struct ListRecord {
    pub list: Rc<MemberList>,
    /// Nodes that ever held it.
    pub held: BTreeSet<NodeId>,
    pub committed: bool,
}

/// Node `i` runs and was not crashed, restarted, paused or resumed since `since`.
fn undisturbed(w: &World, i: usize, since: u64) -> bool {
    let s = &w.nodes[i];
    s.running(w.t) && s.disturbed_at < since && s.paused_until.is_none()
}

/// Invariant state carried through a run.
#[derive(Default)]
pub struct Checker {
    pub opened: BTreeMap<Term, NodeId>,
    /// The primary whose loss the figures time, and when it was lost.
    pub failover_from: Option<(NodeId, u64)>,
    failed_at: Option<u64>,
    won_at: Option<u64>,
    /// Per winner: when it won, and what each of its survivors held then.
    won_snapshot: BTreeMap<usize, (u64, Snapshot)>,
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
    /// Every list made in the run, by identity.
    pub lists: BTreeMap<Ident, ListRecord>,
    list_checks: bool,
}

impl Checker {
    pub fn new(cfg: &SimConfig, initial: &Rc<MemberList>) -> Checker {
        let mut lists = BTreeMap::new();
        lists.insert(
            initial.ident(),
            ListRecord {
                list: initial.clone(),
                held: initial.members.iter().map(|m| m.id).collect(),
                committed: true,
            },
        );
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
            lists,
            list_checks: cfg.list_checks,
        }
    }

    /// L2, when a primary makes a list.
    pub fn on_list_made(&mut self, _w: &World, list: &Rc<MemberList>) -> Result<(), String> {
        match self.lists.get(&list.ident()) {
            Some(r) if *r.list != **list && self.list_checks => Err(format!(
                "L2: two lists with identity {:?}: {:?} and {:?}",
                list.ident(),
                r.list,
                list
            )),
            Some(_) => Ok(()),
            None => {
                self.lists.insert(
                    list.ident(),
                    ListRecord {
                        list: list.clone(),
                        held: BTreeSet::new(),
                        committed: false,
                    },
                );
                Ok(())
            }
        }
    }

    /// L1, when node `i` takes the list `ident`.
    pub fn on_list_held(&mut self, _w: &World, i: usize, ident: Ident) -> Result<(), String> {
        let Some(r) = self.lists.get_mut(&ident) else {
            return Err(format!("n{i} holds list {ident:?} that nobody made"));
        };
        r.held.insert(i as NodeId);
        if r.committed {
            return Ok(());
        }
        let voters = r.list.voters();
        let held = voters.iter().filter(|v| r.held.contains(v)).count();
        if held < r.list.majority() {
            return Ok(());
        }
        r.committed = true;
        if !self.list_checks {
            return Ok(());
        }
        let committed: Vec<&ListRecord> = self.lists.values().filter(|r| r.committed).collect();
        for pair in committed.windows(2) {
            let (a, b) = (&pair[0].list, &pair[1].list);
            let d = a.voters_differ(b);
            if d > 1 {
                return Err(format!(
                    "L1: committed lists {:?} (voters {:?}) and {:?} (voters {:?}) differ by {d} voters",
                    a.ident(),
                    a.voters(),
                    b.ident(),
                    b.voters()
                ));
            }
        }
        Ok(())
    }

    pub fn fault_changed(&mut self, t: u64) {
        self.last_fault_change = t;
    }

    pub fn link_changed(&mut self, k: (NodeId, NodeId), t: u64) {
        self.links.insert(k, t);
    }

    /// `a` and `b` were running and connected, untouched by faults, since `since`.
    /// A pause that ends this very millisecond counts as a disturbance now (the
    /// world notes it only when the node next steps).
    fn steady(&self, w: &World, a: usize, b: usize, since: u64) -> bool {
        let ok = |i: usize| undisturbed(w, i, since);
        let k = (a.min(b) as NodeId, a.max(b) as NodeId);
        ok(a)
            && ok(b)
            && w.net.connected(a as NodeId, b as NodeId)
            && self.links.get(&k).is_none_or(|t| *t < since)
    }

    /// Data members of the winner's list, holding that list, steady with it.
    fn survivors(&self, w: &World, winner: usize) -> Vec<usize> {
        let since = w.t.saturating_sub(self.node_timeout + 2 * self.ping);
        let list = &w.nodes[winner].list;
        (0..w.nodes.len())
            .filter(|j| {
                let s = &w.nodes[*j];
                *j != winner
                    && s.holds_data
                    && s.taking_part()
                    && list.contains(*j as NodeId)
                    && s.list.ident() == list.ident()
                    && self.steady(w, winner, *j, since)
            })
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
        let snap = self
            .survivors(w, i)
            .into_iter()
            .map(|j| (j, w.nodes[j].all_ids()))
            .collect();
        self.won_snapshot.insert(i, (w.t, snap));
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
        if let Some((won, snap)) = self.won_snapshot.remove(&i) {
            // Only survivors the winner could still hear through its catch-up
            // count: one crashed or cut off after the win is a second fault
            // (the catch-up plans from the members it hears).
            for (j, ids) in snap {
                if !self.steady(w, i, j, won) {
                    continue;
                }
                if let Some(lost) = ids.iter().find(|x| !mine.contains(x)) {
                    return Err(format!(
                        "I3: n{i} opened term {term} without write {lost} that survivor n{j} held when it won"
                    ));
                }
            }
        }
        if self.strong {
            // Strict: the strong-mode ack rule makes a majority know the commit
            // point, so every elected primary must hold every write acknowledged
            // in an earlier term, whoever survived. A write acknowledged in a
            // later term than the opener's is not its to hold: the opener won
            // before that term began and opens late (cut off through its
            // catch-up); it cannot take strong writes (I1: a majority moved on
            // to the later term) and steps down at the first ping it hears.
            let missing = w
                .strong_acked
                .iter()
                .find(|(x, t)| **t < term && !mine.contains(x));
            if let Some((id, _)) = missing {
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
            let list = &w.nodes[j].list;
            if j == i || w.nodes[i].list.ident() != list.ident() {
                continue;
            }
            let reach = list
                .voters()
                .iter()
                .filter(|v| **v as usize == j || self.steady(w, j, **v as usize, since))
                .count();
            let healthy = undisturbed(w, j, since);
            if healthy && reach >= list.majority() {
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

    /// One primary, and every data member of its list up with its logs.
    fn converged(&self, w: &World) -> bool {
        let open = w.open_nodes();
        if open.len() != 1 {
            return false;
        }
        let p = &w.nodes[open[0]];
        p.list.members.iter().filter(|m| m.holds_data).all(|m| {
            let s = &w.nodes[m.id as usize];
            s.up && s.taking_part() && s.logs == p.logs
        })
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
        let part: Vec<NodeId> = (0..w.nodes.len() as NodeId)
            .filter(|i| w.nodes[*i as usize].taking_part())
            .collect();
        let clear = part.iter().all(|i| w.nodes[*i as usize].running(w.t))
            && part
                .iter()
                .all(|a| part.iter().all(|b| w.net.connected(*a, *b)));
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
        let members = p.list.members.iter().filter(|m| m.holds_data);
        let following = members.map(|m| &w.nodes[m.id as usize]).all(|s| {
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
            if w.nodes[i].running(w.t) && w.nodes[i].taking_part() {
                groups.entry(w.net.group[i]).or_default().push(i);
            }
        }
        // The newest list in a group is the one its members will hold once
        // its pushes arrive.
        let newest = |g: &Vec<usize>| {
            g.iter()
                .map(|i| &w.nodes[*i].list)
                .max_by_key(|l| l.ident())
                .cloned()
        };
        let healthy = groups.values().find_map(|g| {
            let list = newest(g)?;
            let voters = g.iter().filter(|i| list.is_voter(**i as NodeId)).count();
            let ok = voters >= list.majority()
                && g.iter().all(|a| {
                    g.iter()
                        .all(|b| w.net.connected(*a as NodeId, *b as NodeId))
                });
            ok.then_some((g, list))
        });
        let Some((g, list)) = healthy else {
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
            s.holds_data
                && list.is_voter(*i as NodeId)
                && (0..shards).all(|k| s.logs[k].len() as u64 >= known[k])
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

    /// I6 and L3 at the end of the run. Returns how many eventual-mode
    /// writes survive only on removed nodes: a cut-off primary took them and
    /// an operator removed it before they were merged back — dropped with
    /// the node, as removing it means (strong-mode writes never are: I2).
    pub fn final_check(&self, w: &World) -> Result<u64, String> {
        if self.converged_at.is_none() {
            let views: Vec<String> = w
                .nodes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    format!(
                        "n{i}: up={} joined={} gone={} list={:?} role={:?} term={} primary={:?} seqs={:?}",
                        s.up,
                        s.joined,
                        s.gone,
                        s.list.ident(),
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
        let on_removed: HashSet<u64> = w
            .nodes
            .iter()
            .filter(|s| s.gone)
            .flat_map(|s| s.all_ids())
            .collect();
        let mut removed_writes = 0;
        for x in &w.acked {
            if ids.contains(x) {
                continue;
            }
            if !w.cfg.strong && on_removed.contains(x) {
                removed_writes += 1;
                continue;
            }
            return Err(format!(
                "I6: acknowledged write {x} is lost after convergence"
            ));
        }
        // Every node is up after the final heal: a member of the final list
        // must be taking part, on that list.
        let list = &w.nodes[*p].list;
        for m in &list.members {
            let s = &w.nodes[m.id as usize];
            if !s.taking_part() || s.list.ident() != list.ident() {
                return Err(format!(
                    "L3: member n{} holds list {:?} (joined: {}, removed: {}), the primary n{p} {:?}",
                    m.id,
                    s.list.ident(),
                    s.joined,
                    s.gone,
                    list.ident()
                ));
            }
        }
        Ok(removed_writes)
    }
}
