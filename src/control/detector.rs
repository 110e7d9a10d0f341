//! Failure detection: pings, suspicion, gossip, and the majority rule.
//!
//! # Protocol
//! Every member pings every other every `ping_interval`. A member this node has not
//! heard from for `node_timeout` is *suspected*. Each ping carries the sender's
//! suspect list; a member is *failed* only when a majority of voters (this node
//! included) currently suspect it.
//!
//! # Invariants
//! - A member that was silent for less than `node_timeout` on every link is never
//!   suspected; a pause shorter than that (the issue asks for half of it) is
//!   invisible.
//! - One bad link makes at most its two ends suspect each other: a single
//!   suspicion is never a majority in a database of three or more voters.
//! - Gossip goes stale: a voter's report counts only while this node has heard that
//!   voter within `node_timeout`, so a silent voter's old suspicions expire.

use std::collections::{BTreeMap, BTreeSet};

use super::{Millis, NodeId};

/// This node's view of who is alive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FailureDetector {
    me: NodeId,
    timeout: Millis,
    last_heard: BTreeMap<NodeId, Millis>,
    /// Latest suspect list gossiped by each member.
    reports: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

impl FailureDetector {
    /// A detector that considers every `peer` heard at `now` (so nobody is suspected
    /// at boot or right after a restart).
    pub fn new(
        me: NodeId,
        peers: impl IntoIterator<Item = NodeId>,
        timeout: Millis,
        now: Millis,
    ) -> Self {
        FailureDetector {
            me,
            timeout,
            last_heard: peers
                .into_iter()
                .filter(|p| *p != me)
                .map(|p| (p, now))
                .collect(),
            reports: BTreeMap::new(),
        }
    }

    /// The members are now `ids`: new ones count as heard at `now`, gone
    /// ones are forgotten with their reports.
    pub fn set_members(&mut self, ids: &BTreeSet<NodeId>, now: Millis) {
        self.last_heard.retain(|id, _| ids.contains(id));
        self.reports.retain(|id, _| ids.contains(id));
        for id in ids {
            if *id != self.me {
                self.last_heard.entry(*id).or_insert(now);
            }
        }
    }

    /// Any message from `from` proves it alive.
    pub fn heard(&mut self, from: NodeId, now: Millis) {
        let e = self.last_heard.entry(from).or_insert(now);
        *e = (*e).max(now);
    }

    /// Records the suspect list `from` gossiped.
    pub fn gossip(&mut self, from: NodeId, suspects: &[NodeId]) {
        self.reports
            .insert(from, suspects.iter().copied().collect());
    }

    /// When `peer` was last heard.
    pub fn last_heard(&self, peer: NodeId) -> Option<Millis> {
        self.last_heard.get(&peer).copied()
    }

    /// Whether this node itself suspects `peer`.
    pub fn suspects(&self, peer: NodeId, now: Millis) -> bool {
        self.last_heard
            .get(&peer)
            .is_some_and(|t| now.saturating_sub(*t) >= self.timeout)
    }

    /// Every member this node suspects, for gossip.
    pub fn suspect_list(&self, now: Millis) -> Vec<NodeId> {
        self.last_heard
            .keys()
            .copied()
            .filter(|p| self.suspects(*p, now))
            .collect()
    }

    /// Whether a majority of `voters` currently suspect `peer`.
    pub fn is_failed(&self, peer: NodeId, voters: &[NodeId], now: Millis) -> bool {
        let count = voters
            .iter()
            .filter(|v| {
                if **v == self.me {
                    self.suspects(peer, now)
                } else {
                    // A report counts only while its author is itself alive to us.
                    !self.suspects(**v, now)
                        && self.reports.get(v).is_some_and(|s| s.contains(&peer))
                }
            })
            .count();
        count > voters.len() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_shorter_than_the_timeout_is_not_suspicion() {
        let mut d = FailureDetector::new(1, [1, 2, 3], 1000, 0);
        d.heard(2, 500);
        assert!(!d.suspects(2, 1499));
        assert!(d.suspects(2, 1500));
        assert!(d.suspects(3, 1000));
    }

    #[test]
    fn failed_needs_a_majority_of_voters() {
        let voters = [1, 2, 3, 4, 5];
        let mut d = FailureDetector::new(1, voters, 1000, 0);
        for v in [2, 3, 4] {
            d.heard(v, 1500);
        }
        // Node 1 suspects 5; alone that is 1 of 5.
        assert!(!d.is_failed(5, &voters, 1500));
        d.gossip(2, &[5]);
        assert!(!d.is_failed(5, &voters, 1500));
        d.gossip(3, &[5]);
        assert!(d.is_failed(5, &voters, 1500));
    }

    #[test]
    fn reports_from_a_silent_voter_do_not_count() {
        let voters = [1, 2, 3];
        let mut d = FailureDetector::new(1, voters, 1000, 0);
        d.gossip(2, &[3]);
        d.heard(2, 100);
        // At 1200 node 1 suspects 3, but 2 has been silent too long to vouch.
        d.heard(3, 100);
        assert!(d.suspects(3, 1200));
        assert!(!d.is_failed(3, &voters, 1200));
    }
}
