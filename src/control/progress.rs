//! Progress: how far a replica is, and the rules that rank candidates by it.
//!
//! A node's progress is the history it follows (the term of the primary whose
//! stream its tail came from) and its applied seq on every shard. Its *total* is
//! the sum of the seqs. The election ranks candidates by total, then prefers the
//! current primary, then the lowest node id (`ARCHITECTURE.md` §5); because every
//! voter applies the same total order, they all pick the same leader.
//!
//! Eligibility: a candidate is eligible when it is not behind the commit point of
//! any shard (it holds every strong-acknowledged write the voter knows of) and its
//! total is within `failover_max_lag` of the old primary's last known total.

use std::cmp::Ordering;

use super::{NodeId, Term};

/// A replica's position: history and per-shard applied seqs.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Progress {
    /// Term of the primary whose stream this replica's tail follows.
    pub history: Term,
    /// Applied seq per shard.
    pub seqs: Vec<u64>,
}

impl Progress {
    /// A replica with `shards` empty shards in `history`.
    pub fn empty(history: Term, shards: usize) -> Progress {
        Progress {
            history,
            seqs: vec![0; shards],
        }
    }

    /// The sum of seqs over shards.
    pub fn total(&self) -> u64 {
        self.seqs.iter().sum()
    }

    /// True when this replica is at or past `commit` on every shard.
    pub fn covers(&self, commit: &[u64]) -> bool {
        commit
            .iter()
            .enumerate()
            .all(|(i, c)| self.seqs.get(i).copied().unwrap_or(0) >= *c)
    }
}

/// What a voter needs to judge eligibility.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Eligibility {
    /// Highest commit point known per shard.
    pub commit: Vec<u64>,
    /// The old primary's last known total.
    pub primary_total: u64,
    /// `failover_max_lag`, in records.
    pub max_lag: u64,
}

impl Eligibility {
    /// Whether a replica at `p` may be promoted.
    pub fn allows(&self, p: &Progress) -> bool {
        p.covers(&self.commit) && p.total().saturating_add(self.max_lag) >= self.primary_total
    }
}

/// One entry in a ranking.
#[derive(Clone, Copy, Debug)]
pub struct Ranked<'a> {
    pub id: NodeId,
    pub progress: &'a Progress,
    pub is_current_primary: bool,
}

/// Orders candidates best first: highest total, then the current primary, then the
/// lowest node id. `Ordering::Less` means `a` is better.
pub fn rank(a: &Ranked<'_>, b: &Ranked<'_>) -> Ordering {
    b.progress
        .total()
        .cmp(&a.progress.total())
        .then(b.is_current_primary.cmp(&a.is_current_primary))
        .then(a.id.cmp(&b.id))
}

/// The best of `candidates` that `rule` allows, if any.
pub fn best<'a>(
    candidates: impl IntoIterator<Item = Ranked<'a>>,
    rule: &Eligibility,
) -> Option<NodeId> {
    candidates
        .into_iter()
        .filter(|c| rule.allows(c.progress))
        .min_by(rank)
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seqs: &[u64]) -> Progress {
        Progress {
            history: 1,
            seqs: seqs.to_vec(),
        }
    }

    #[test]
    fn ranks_by_total_then_primary_then_lowest_id() {
        let (a, b, c) = (p(&[5, 5]), p(&[9, 1]), p(&[3, 3]));
        let rule = Eligibility::default();
        let r = |id, progress, is_current_primary| Ranked {
            id,
            progress,
            is_current_primary,
        };
        assert_eq!(best([r(3, &a, false), r(2, &b, false)], &rule), Some(2));
        assert_eq!(best([r(2, &a, false), r(3, &b, true)], &rule), Some(3));
        assert_eq!(best([r(1, &c, false), r(4, &a, false)], &rule), Some(4));
    }

    #[test]
    fn a_replica_behind_a_commit_point_is_not_eligible() {
        let rule = Eligibility {
            commit: vec![4, 4],
            primary_total: 8,
            max_lag: 100,
        };
        assert!(!rule.allows(&p(&[10, 3])));
        assert!(rule.allows(&p(&[4, 4])));
    }

    #[test]
    fn a_replica_too_far_behind_the_old_primary_is_not_eligible() {
        let rule = Eligibility {
            commit: vec![],
            primary_total: 100,
            max_lag: 10,
        };
        assert!(!rule.allows(&p(&[89])));
        assert!(rule.allows(&p(&[90])));
        let only_bad = [Ranked {
            id: 1,
            progress: &p(&[1]),
            is_current_primary: false,
        }];
        assert_eq!(best(only_bad, &rule), None);
    }
}
