//! The winner's catch-up: what a node does between winning a term and opening
//! for writes.
//!
//! # Protocol
//! 1. Wait until every member this node considers alive has pinged it since the
//!    win *in the new term* (so none of them is still an older term's primary
//!    taking writes), or `catchup_wait` has passed.
//! 2. Per shard, pull what this node lacks from the member furthest ahead on that
//!    shard among those on its own history (they are all prefixes of the old
//!    primary's stream); ask every member on another history for its records since
//!    the fork point ([`Action::MergeFrom`]) — merging a prefix is a no-op, so
//!    asking too often is harmless.
//!    Merges are asked only once every pull is applied: a pull is judged done by
//!    the shard's seq, which only a pull of a prefix may move — a merge applied
//!    first would lengthen the log by other records and pass for the pull.
//! 3. Re-ask every two pings until applied; re-plan if a source becomes suspected.
//! 4. Open only when every pull and merge is applied and, for split-brain or forced
//!    elections, one lease has passed since the win.
//!
//! # Invariant
//! A new primary opens holding every record that any member it could hear held
//! when it planned.

use std::collections::{BTreeMap, BTreeSet};

use super::{Node, Role};
use crate::control::messages::{Action, Output, Reason};
use crate::control::progress::Progress;
use crate::control::{Millis, NodeId, Term};

/// A winner's catch-up before opening for writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CatchUp {
    pub term: Term,
    pub reason: Reason,
    pub won_at: Millis,
    pub open_not_before: Millis,
    pub planned: bool,
    /// Outstanding pulls: (shard, source, target seq).
    pub pulls: Vec<(usize, NodeId, u64)>,
    /// Outstanding merges, by source.
    pub merges: BTreeSet<NodeId>,
    pub last_request: Millis,
    /// Voters' progress from their grants.
    pub votes: BTreeMap<NodeId, Progress>,
}

impl Node {
    fn live_data_peers(&self) -> Vec<NodeId> {
        self.cluster
            .members
            .iter()
            .filter(|m| m.id != self.me && m.holds_data && !self.detector.suspects(m.id, self.now))
            .map(|m| m.id)
            .collect()
    }

    /// Plans, retries and completes the winner's catch-up.
    pub(super) fn catch_up(&mut self, out: &mut Output) {
        let now = self.now;
        let live = self.live_data_peers();
        let Role::CatchingUp(cu) = &self.role else {
            return;
        };
        let mut cu = cu.clone();
        if !cu.planned {
            // Fresh: pinged since the win, and already in our term, so it is no longer
            // an older term's primary still taking writes.
            let fresh = |id: &NodeId| {
                self.peers
                    .get(id)
                    .is_some_and(|v| v.heard_at > cu.won_at && v.term >= cu.term)
            };
            let all_fresh = live.iter().all(fresh);
            if !all_fresh && now.saturating_sub(cu.won_at) < self.cfg.catchup_wait {
                return;
            }
            let mine = &self.progress;
            let mut sources: Vec<(NodeId, &Progress)> = live
                .iter()
                .filter_map(|id| self.peers.get(id).map(|v| (*id, &v.progress)))
                .collect();
            for (id, p) in &cu.votes {
                if *id != self.me && live.contains(id) && !sources.iter().any(|(s, _)| s == id) {
                    sources.push((*id, p));
                }
            }
            cu.pulls.clear();
            for shard in 0..self.cluster.shards {
                let have = mine.seqs.get(shard).copied().unwrap_or(0);
                let ahead = sources
                    .iter()
                    .filter(|(_, p)| p.history == mine.history)
                    .map(|(id, p)| {
                        (
                            p.seqs.get(shard).copied().unwrap_or(0),
                            std::cmp::Reverse(*id),
                        )
                    })
                    .max();
                if let Some((seq, std::cmp::Reverse(src))) = ahead {
                    if seq > have {
                        cu.pulls.push((shard, src, seq));
                    }
                }
            }
            cu.merges = sources
                .iter()
                .filter(|(_, p)| p.history != mine.history && p.total() > 0)
                .map(|(id, _)| *id)
                .collect();
            cu.planned = true;
            cu.last_request = now;
            self.emit_requests(&cu, out);
        } else {
            let seqs = &self.progress.seqs;
            let pulling = !cu.pulls.is_empty();
            cu.pulls
                .retain(|(s, _, up_to)| seqs.get(*s).copied().unwrap_or(0) < *up_to);
            let lost_source = cu.pulls.iter().any(|(_, src, _)| !live.contains(src));
            cu.merges.retain(|m| live.contains(m));
            let pulled = pulling && cu.pulls.is_empty();
            if lost_source {
                cu.planned = false;
                cu.won_at = now.saturating_sub(self.cfg.catchup_wait);
            } else if pulled || now.saturating_sub(cu.last_request) >= 2 * self.cfg.ping_interval {
                // The last pull just landed: the merges may go now.
                cu.last_request = now;
                self.emit_requests(&cu, out);
            }
        }
        let done = cu.planned && cu.pulls.is_empty() && cu.merges.is_empty();
        let ready = now >= cu.open_not_before;
        let term = cu.term;
        self.role = Role::CatchingUp(cu);
        if done && ready {
            self.role = Role::Primary { term };
            self.prior_history = self.progress.history;
            self.takeover = self.progress.seqs.clone();
            self.progress.history = term;
            self.loser_merges.clear();
            self.lease.clear();
            if let Some(a) = self.safety.eligible_seen() {
                out.actions.push(a);
            }
            out.actions.push(Action::OpenForWrites { term });
        }
    }

    fn emit_requests(&self, cu: &CatchUp, out: &mut Output) {
        for (shard, from, up_to) in &cu.pulls {
            out.actions.push(Action::Pull {
                shard: *shard,
                from: *from,
                up_to: *up_to,
            });
        }
        if !cu.pulls.is_empty() {
            return;
        }
        for m in &cu.merges {
            out.actions.push(Action::MergeFrom { from: *m });
        }
    }
}
