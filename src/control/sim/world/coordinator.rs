//! Membership on the simulated network, as `cluster/driver/membership.rs`
//! does it on keel's bus:
//! - a control message reaches the receiver's [`Node`] only when its sender
//!   holds the receiver's list; a receiver that sees a sender on an older
//!   list sends it its own (rate-limited);
//! - a newer list is adopted at once (`Node::set_cluster`); a node that finds
//!   itself left out stops; a joiner waits, ignoring everything, for a list
//!   that adds it;
//! - every node, every tick, sends its list to members whose latest frame
//!   carried an older one and to members it removed (for a while);
//! - the open primary (past keel's boot gate) coordinates one step at a
//!   time: promote a learner that holds the list and is caught up, else
//!   remove a member a voter replaces, else take an operator's request —
//!   each only once the current list is *committed* (a majority of its
//!   voters, itself included, last spoke from it).
//!
//! Where [`MembershipRules`] asks for it, the model runs a fix in place of
//! the driver's first-draft rule (each is named there, with what goes wrong
//! without it).
//!
//! [`MembershipRules`]: super::super::MembershipRules

use std::rc::Rc;

use super::super::super::messages::{Input, Message};
use super::super::super::{Node, NodeId};
use super::super::membership::{Change, Ident, MemberList};
use super::{SimMsg, World};

/// How often a node on an older list is sent ours (keel's `PUSH_EVERY_MS`).
const PUSH_EVERY: u64 = 300;
/// How long a removed member keeps being told (keel's `FAREWELL_MS`).
const FAREWELL: u64 = 10_000;
/// A learner is caught up when its latest ping says it follows this
/// primary's stream and trails it by at most this many records per shard:
/// keel's "serves reads" (synced, within `read-max-lag`). Writes keep
/// flowing, so exact equality would rarely be seen in a ping.
const CAUGHT_UP_LAG: u64 = 16;

impl World {
    /// A control frame: handed to the node only when sender and receiver
    /// hold the same list.
    pub(super) fn on_control(
        &mut self,
        i: usize,
        from: NodeId,
        ident: Ident,
        msg: Message,
    ) -> Result<(), String> {
        self.nodes[i].holds.insert(from, ident);
        let mine = self.nodes[i].list.ident();
        if ident == mine {
            self.nodes[i].heard.insert(from);
            self.feed(i, Input::Receive { from, msg })?;
        } else if mine > ident {
            let anyone = self.cfg.rules.answer_non_members;
            self.push_to(i, from, false, anyone);
        }
        Ok(())
    }

    /// A list: adopted if newer; a joiner takes only one that adds it, and
    /// so does a removed node when it may come back.
    pub(super) fn on_members(
        &mut self,
        i: usize,
        from: NodeId,
        list: Rc<MemberList>,
    ) -> Result<(), String> {
        let newer = list.ident() > self.nodes[i].list.ident();
        if !self.nodes[i].joined {
            if newer {
                if list.contains(i as NodeId) {
                    return self.join(i, list);
                }
                self.nodes[i].list = list;
            }
            return Ok(());
        }
        if self.nodes[i].gone {
            if newer && self.cfg.rules.rejoin {
                if list.contains(i as NodeId) {
                    return self.rejoin(i, list);
                }
                self.nodes[i].list = list;
            } else {
                self.on_outsider_frame(i, from, list.ident());
            }
            return Ok(());
        }
        self.nodes[i].holds.insert(from, list.ident());
        if newer {
            self.adopt(i, list)?;
        } else if list.ident() < self.nodes[i].list.ident() && self.cfg.rules.answer_non_members {
            // Its sender is behind too: a removed node whose list names only
            // members that left speaks to nobody else.
            self.push_to(i, from, false, true);
        }
        Ok(())
    }

    /// A removed node still listening answers a frame from an older list
    /// with the list that removed it: a node removed while it was away may
    /// hear of it from nobody else when its own list names only members
    /// that left since.
    pub(super) fn on_outsider_frame(&mut self, i: usize, from: NodeId, ident: Ident) {
        let r = self.cfg.rules;
        let s = &self.nodes[i];
        if s.gone && r.rejoin && r.answer_non_members && ident < s.list.ident() {
            self.push_to(i, from, false, true);
        }
    }

    /// Sends our list to `to` if it is a member or a departed one (or
    /// anyone, with `anyone`), at most every `PUSH_EVERY` unless `at_once`.
    fn push_to(&mut self, i: usize, to: NodeId, at_once: bool, anyone: bool) {
        let now = self.local(i);
        let s = &self.nodes[i];
        if to as usize == i {
            return;
        }
        let due = s
            .pushed
            .get(&to)
            .is_none_or(|last| now >= last + PUSH_EVERY);
        let known = anyone || s.list.contains(to) || s.departed.iter().any(|d| d.0 == to);
        if !(due || at_once) || !known {
            return;
        }
        self.nodes[i].pushed.insert(to, now);
        let list = self.nodes[i].list.clone();
        self.send(i, to, SimMsg::Members(list));
    }

    /// A joiner added: its control state starts afresh from the list, in
    /// term 0 (a fresh cluster file); it learns the term and the primary from
    /// the first ping, and copies the data as a learner.
    fn join(&mut self, i: usize, list: Rc<MemberList>) -> Result<(), String> {
        let now = self.local(i);
        let ident = list.ident();
        let cluster = list.cluster(self.cfg.shards);
        let s = &mut self.nodes[i];
        s.node = Node::new(
            i as NodeId,
            cluster,
            self.cfg.control.clone(),
            self.seed,
            now,
            0,
            None,
        );
        s.joined = true;
        s.list = list;
        s.holds.clear();
        s.pushed.clear();
        s.departed.clear();
        self.log(|| format!("n{i} joins with list {ident:?}"));
        self.with_checker(|c, w| c.on_list_held(w, i, ident))
    }

    /// A removed node that a newer list still has: it comes back as after a
    /// restart (term, vote and data kept), on that list.
    fn rejoin(&mut self, i: usize, list: Rc<MemberList>) -> Result<(), String> {
        let now = self.local(i);
        let ident = list.ident();
        let cluster = list.cluster(self.cfg.shards);
        let t = self.t;
        let s = &mut self.nodes[i];
        s.gone = false;
        s.disturbed_at = t;
        s.list = list;
        s.holds.clear();
        s.pushed.clear();
        s.departed.clear();
        s.node.restart(now);
        s.node.set_cluster(cluster);
        s.heard.clear();
        s.boot_gate = s.node.open_term().is_some();
        self.report.rejoined += 1;
        self.log(|| format!("n{i} is back in list {ident:?}"));
        self.with_checker(|c, w| c.on_list_held(w, i, ident))
    }

    /// Makes `list` node `i`'s: members it drops are told for a while; a
    /// node dropped itself stops.
    fn adopt(&mut self, i: usize, list: Rc<MemberList>) -> Result<(), String> {
        let now = self.local(i);
        let ident = list.ident();
        let old = std::mem::replace(&mut self.nodes[i].list, list.clone());
        for m in &old.members {
            if m.id as usize != i && !list.contains(m.id) {
                self.nodes[i].departed.push((m.id, now + FAREWELL));
            }
        }
        if !list.contains(i as NodeId) {
            let t = self.t;
            let s = &mut self.nodes[i];
            s.gone = true;
            s.disturbed_at = t;
            s.pending.clear();
            self.report.removed += 1;
            self.log(|| format!("n{i} learns it was removed (list {ident:?}) and stops"));
        } else {
            let cluster = list.cluster(self.cfg.shards);
            self.nodes[i].node.set_cluster(cluster);
            self.log(|| format!("n{i} adopts list {ident:?} voters {:?}", list.voters()));
        }
        self.with_checker(|c, w| c.on_list_held(w, i, ident))
    }

    /// keel's `open_boot_gate`: the gate opens once the node is no longer
    /// open, or has heard a majority of its list's voters.
    fn open_boot_gate(&mut self, i: usize) {
        let s = &self.nodes[i];
        if !s.boot_gate {
            return;
        }
        let heard = s
            .list
            .voters()
            .iter()
            .filter(|v| **v as usize == i || s.heard.contains(v))
            .count();
        if s.node.open_term().is_none() || heard >= s.list.majority() {
            self.nodes[i].boot_gate = false;
        }
    }

    /// Whether a majority of node `i`'s list's voters, `i` included, last
    /// spoke from that list.
    fn committed(&self, i: usize) -> bool {
        let s = &self.nodes[i];
        let mine = s.list.ident();
        let holding = s
            .list
            .voters()
            .iter()
            .filter(|v| **v as usize == i || s.holds.get(v) == Some(&mine))
            .count();
        holding >= s.list.majority()
    }

    /// keel's `change_in_progress`: a step not committed yet, a learner, or
    /// a pending replacement (and, re-stamping, a list of an older term).
    fn change_in_progress(&self, i: usize) -> bool {
        let s = &self.nodes[i];
        let l = &s.list;
        let stale = self.cfg.rules.restamp && l.term != s.node.term();
        !self.committed(i) || !l.learners().is_empty() || !l.replaces.is_empty() || stale
    }

    /// Whether `learner`'s latest ping says it follows primary `i`'s stream
    /// and is within `CAUGHT_UP_LAG` records of it on every shard.
    fn caught_up(&self, i: usize, learner: NodeId) -> bool {
        let node = &self.nodes[i].node;
        let mine = node.progress();
        node.peer_progress(learner).is_some_and(|p| {
            p.history == mine.history
                && mine
                    .seqs
                    .iter()
                    .zip(&p.seqs)
                    .all(|(m, t)| t + CAUGHT_UP_LAG >= *m)
        })
    }

    /// As the open primary: a new version, adopted here, then sent at once
    /// to every member of the old and the new list.
    fn propose(&mut self, i: usize, list: MemberList, what: &str) -> Result<(), String> {
        let list = Rc::new(list);
        let ident = list.ident();
        self.report.list_changes += 1;
        self.log(|| format!("n{i} proposes list {ident:?}: {what}"));
        self.with_checker(|c, w| c.on_list_made(w, &list))?;
        let old = self.nodes[i].list.clone();
        let mut to: Vec<NodeId> = old
            .members
            .iter()
            .chain(&list.members)
            .map(|m| m.id)
            .collect();
        to.sort_unstable();
        to.dedup();
        self.adopt(i, list)?;
        for n in to {
            self.push_to(i, n, true, false);
        }
        Ok(())
    }

    /// Every tick on every member: keep stragglers told, and as the open
    /// primary take the next step once the last one committed.
    pub(super) fn coordinate(&mut self, i: usize) -> Result<(), String> {
        if !self.nodes[i].taking_part() {
            return Ok(());
        }
        let now = self.local(i);
        self.nodes[i].departed.retain(|d| d.1 > now);
        let s = &self.nodes[i];
        let mine = s.list.ident();
        let unheard = self.cfg.rules.push_unheard;
        let behind: Vec<NodeId> = s
            .list
            .members
            .iter()
            .map(|m| m.id)
            .filter(|p| {
                *p as usize != i
                    && match s.holds.get(p) {
                        Some(h) => mine > *h,
                        None => unheard,
                    }
            })
            .chain(s.departed.iter().map(|d| d.0))
            .collect();
        for p in behind {
            self.push_to(i, p, false, false);
        }
        self.open_boot_gate(i);
        let s = &self.nodes[i];
        if s.node.open_term().is_none() || s.boot_gate || !self.committed(i) {
            return Ok(());
        }
        let term = s.node.term();
        let list = s.list.clone();
        if self.cfg.rules.restamp && list.term != term {
            return self.propose(i, list.restamped(term), "the list again, in this term");
        }
        let ready = list.learners().into_iter().find(|p| {
            s.holds.get(p) == Some(&mine) && !s.node.suspects(*p) && self.caught_up(i, *p)
        });
        if let Some(p) = ready {
            return self.propose(i, list.with_voter(term, p), &format!("n{p} votes"));
        }
        let replaced = list
            .replaces
            .iter()
            .find(|(new, _)| list.is_voter(**new))
            .map(|(new, old)| (*new, *old));
        if let Some((new, old)) = replaced {
            // keel: the primary cannot remove itself; it waits for the next
            // primary (an operator's FAILOVER TO) to complete the change.
            if old as usize == i {
                return Ok(());
            }
            return self.propose(
                i,
                list.without(term, old),
                &format!("n{old} leaves, replaced by n{new}"),
            );
        }
        Ok(())
    }

    /// Offers the oldest request to the open primary; it takes it only when
    /// no change is in progress (keel refuses the command otherwise). As
    /// keel's `member_command`, this does not wait for the boot gate (its
    /// `coordinate` does).
    pub(super) fn offer_change(&mut self) -> Result<(), String> {
        let Some(c) = self.asked.front().cloned() else {
            return Ok(());
        };
        let Some(p) = self.open_primary() else {
            return Ok(());
        };
        if !self.nodes[p].running(self.t) || self.change_in_progress(p) {
            return Ok(());
        }
        self.asked.pop_front();
        let list = self.nodes[p].list.clone();
        let term = self.nodes[p].node.term();
        let joiner = self
            .joiners
            .iter()
            .find(|j| !self.added.contains(&j.id))
            .cloned();
        let voters = list.voters();
        let (next, what) = match c {
            Change::AddJoiner => match joiner {
                Some(j) => (
                    list.with_learner(term, j.clone(), None),
                    format!("n{} joins as a learner", j.id),
                ),
                None => return Ok(()),
            },
            Change::RemoveVoter { pick } => {
                // Keep two voters at least: a smaller database is outside
                // what the sweeps mean to exercise.
                let others: Vec<NodeId> = voters
                    .iter()
                    .copied()
                    .filter(|v| *v as usize != p)
                    .collect();
                if voters.len() < 3 || others.is_empty() {
                    return Ok(());
                }
                let v = others[(pick % others.len() as u64) as usize];
                (list.without(term, v), format!("n{v} leaves"))
            }
            Change::Replace { pick } => {
                // A joiner holds data: it may replace a data voter, not an
                // arbiter (keel refuses that too).
                let data: Vec<NodeId> = list
                    .members
                    .iter()
                    .filter(|m| m.voter && m.holds_data)
                    .map(|m| m.id)
                    .collect();
                match joiner {
                    Some(j) if !data.is_empty() => {
                        let v = data[(pick % data.len() as u64) as usize];
                        (
                            list.with_learner(term, j.clone(), Some(v)),
                            format!("n{} joins to replace n{v}", j.id),
                        )
                    }
                    _ => return Ok(()),
                }
            }
        };
        for m in &next.members {
            self.added.insert(m.id);
        }
        self.propose(p, next, &what)
    }
}
