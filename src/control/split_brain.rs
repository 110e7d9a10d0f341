//! The split-brain check: compare every member's view of who is primary.
//!
//! # Protocol
//! Every `split_check_interval` a node gathers the claims it has heard within
//! `node_timeout`: who says "I am primary and open for writes", with which term,
//! plus its own claim. Two or more distinct claimants mean the database has two
//! primaries (a minority primary kept writing in eventual mode while the majority
//! elected another). The check then starts a fresh election; the winner merges the
//! other histories (see [`Action::MergeFrom`](super::Action::MergeFrom)) and every
//! loser resyncs as a backup.
//!
//! # Invariant
//! Two open primaries that can hear each other, or that a third member can hear,
//! are noticed within one check interval plus one ping interval.

use std::collections::BTreeMap;

use super::{NodeId, Term};

/// Returns every claimant when there are at least two, else `None`.
pub fn two_primaries(claims: &BTreeMap<NodeId, Term>) -> Option<Vec<NodeId>> {
    (claims.len() >= 2).then(|| claims.keys().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_is_fine_two_are_split_brain() {
        let mut c = BTreeMap::new();
        c.insert(1, 3);
        assert_eq!(two_primaries(&c), None);
        c.insert(2, 4);
        assert_eq!(two_primaries(&c), Some(vec![1, 2]));
    }
}

/// The periodic check's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SplitBrainCheck {
    next_check: u64,
    seen_at: Option<u64>,
}

impl SplitBrainCheck {
    /// Runs the check if it is due at `now`; returns the claimants when two or more
    /// primaries are visible.
    pub fn run(
        &mut self,
        now: u64,
        interval: u64,
        claims: &BTreeMap<NodeId, Term>,
    ) -> Option<Vec<NodeId>> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + interval;
        let found = two_primaries(claims);
        if found.is_some() {
            self.seen_at = Some(now);
        }
        found
    }

    /// Whether split brain was seen within `window` of `now` (voters grant a
    /// split-brain election only if they saw it too).
    pub fn seen_recently(&self, now: u64, window: u64) -> bool {
        self.seen_at
            .is_some_and(|t| now.saturating_sub(t) <= window)
    }
}
