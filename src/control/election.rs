//! Election: the vote rule and the candidate's tally.
//!
//! # Protocol
//! When the primary is failed (or the split-brain check fires, or an operator
//! forces it), a data member waits a seeded random delay, then stands for
//! `term + 1` if it is the best eligible candidate it knows. If it sees an election
//! already in progress it reschedules instead: one election at a time. It first
//! runs a pre-vote (the same rule, nobody records anything), and only with a
//! majority of pre-grants bumps its term and asks for real votes; so terms only move
//! when an election can succeed. It wins with a majority of grants and then catches
//! up before it opens (see [`node`](super::node)). As in Raft, any message with a
//! higher term makes the receiver adopt it, and a primary or candidate step down.
//!
//! A voter grants ([`vote_rule`]):
//! 1. only for a term at least its own, and at most one candidate per term;
//! 2. for a failover, only if it has itself not heard the primary for
//!    `node_timeout` and a majority of voters suspect it (no disruption of a
//!    healthy primary); for a split-brain election, only if it saw two primaries;
//! 3. only to an eligible candidate (not behind a commit point, within
//!    `failover_max_lag`), and only if no live member it knows ranks better.
//!
//! Forced elections and handovers skip (2) and (3); forced ones are logged
//! by the node, handovers come only from the open primary.
//!
//! # Invariant
//! At most one candidate collects a majority in a term: grants are unique per
//! voter and term, and two majorities share a voter.

use std::collections::BTreeMap;

use super::messages::Reason;
use super::progress::{best, Eligibility, Progress, Ranked};
use super::{Millis, NodeId, Term};

/// A vote request as the voter sees it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub candidate: NodeId,
    pub term: Term,
    pub progress: &'a Progress,
    pub reason: Reason,
}

/// What the voter knows when it decides.
#[derive(Clone, Debug)]
pub struct VoterView<'a> {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// Failover gate: the voter itself suspects the primary and sees it failed (or
    /// knows no primary for its term).
    pub primary_failed: bool,
    /// Split-brain gate: the voter saw two primaries recently.
    pub split_seen: bool,
    pub rule: &'a Eligibility,
    /// Live data members the voter knows (itself included), excluding the failed
    /// primary, with their latest progress and whether they are current primary.
    pub known: Vec<Ranked<'a>>,
}

/// Why a vote was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    StaleTerm,
    AlreadyVoted(NodeId),
    PrimaryNotFailed,
    NoSplitBrainSeen,
    NotEligible,
    BetterCandidate(NodeId),
}

/// The vote rule. `Ok(())` means grant.
pub fn vote_rule(req: &Request<'_>, v: &VoterView<'_>) -> Result<(), Denial> {
    if req.term < v.term {
        return Err(Denial::StaleTerm);
    }
    if req.term == v.term {
        match v.voted_for {
            Some(c) if c == req.candidate => return Ok(()),
            Some(c) => return Err(Denial::AlreadyVoted(c)),
            None => {}
        }
    }
    match req.reason {
        Reason::Forced | Reason::Handover => return Ok(()),
        Reason::Failover if !v.primary_failed => return Err(Denial::PrimaryNotFailed),
        Reason::SplitBrain if !v.split_seen => return Err(Denial::NoSplitBrainSeen),
        _ => {}
    }
    if !v.rule.allows(req.progress) {
        return Err(Denial::NotEligible);
    }
    let me = Ranked {
        id: req.candidate,
        progress: req.progress,
        is_current_primary: false,
    };
    let others = v.known.iter().copied().filter(|k| k.id != req.candidate);
    match best(others.chain(std::iter::once(me)), v.rule) {
        Some(b) if b != req.candidate => Err(Denial::BetterCandidate(b)),
        _ => Ok(()),
    }
}

/// A candidate's round: first a pre-vote, then the real vote.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidacy {
    /// The term this round is for.
    pub term: Term,
    /// Still in the pre-vote phase.
    pub pre: bool,
    pub reason: Reason,
    pub started: Millis,
    /// When requests were last (re)sent.
    pub last_sent: Millis,
    /// Grants received, with each voter's progress (used to plan the catch-up).
    pub votes: BTreeMap<NodeId, Progress>,
}

impl Candidacy {
    /// Records a grant; returns true once `majority` voters granted.
    pub fn grant(&mut self, from: NodeId, progress: Progress, majority: usize) -> bool {
        self.votes.insert(from, progress);
        self.votes.len() >= majority
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(total: u64) -> Progress {
        Progress {
            history: 1,
            seqs: vec![total],
        }
    }

    fn view<'a>(rule: &'a Eligibility, known: Vec<Ranked<'a>>) -> VoterView<'a> {
        VoterView {
            term: 3,
            voted_for: None,
            primary_failed: true,
            split_seen: false,
            rule,
            known,
        }
    }

    #[test]
    fn one_vote_per_term() {
        let rule = Eligibility::default();
        let p = prog(5);
        let mut v = view(&rule, vec![]);
        v.voted_for = Some(2);
        let req = |candidate, term| Request {
            candidate,
            term,
            progress: &p,
            reason: Reason::Failover,
        };
        assert_eq!(vote_rule(&req(3, 3), &v), Err(Denial::AlreadyVoted(2)));
        assert_eq!(vote_rule(&req(2, 3), &v), Ok(()));
        assert_eq!(vote_rule(&req(3, 4), &v), Ok(()));
        assert_eq!(vote_rule(&req(3, 2), &v), Err(Denial::StaleTerm));
    }

    #[test]
    fn a_healthy_primary_is_not_voted_out() {
        let rule = Eligibility::default();
        let p = prog(5);
        let mut v = view(&rule, vec![]);
        v.primary_failed = false;
        let req = Request {
            candidate: 2,
            term: 4,
            progress: &p,
            reason: Reason::Failover,
        };
        assert_eq!(vote_rule(&req, &v), Err(Denial::PrimaryNotFailed));
        let forced = Request {
            reason: Reason::Forced,
            ..req
        };
        assert_eq!(vote_rule(&forced, &v), Ok(()));
    }

    #[test]
    fn a_better_live_candidate_gets_the_vote_instead() {
        let rule = Eligibility::default();
        let (low, high) = (prog(5), prog(9));
        let known = vec![Ranked {
            id: 7,
            progress: &high,
            is_current_primary: false,
        }];
        let v = view(&rule, known);
        let req = Request {
            candidate: 2,
            term: 4,
            progress: &low,
            reason: Reason::Failover,
        };
        assert_eq!(vote_rule(&req, &v), Err(Denial::BetterCandidate(7)));
    }

    #[test]
    fn a_stale_candidate_is_refused() {
        let rule = Eligibility {
            commit: vec![6],
            primary_total: 6,
            max_lag: 100,
        };
        let p = prog(5);
        let v = view(&rule, vec![]);
        let req = Request {
            candidate: 2,
            term: 4,
            progress: &p,
            reason: Reason::Failover,
        };
        assert_eq!(vote_rule(&req, &v), Err(Denial::NotEligible));
    }

    #[test]
    fn majority_of_grants_wins() {
        let mut c = Candidacy {
            term: 2,
            pre: false,
            reason: Reason::Failover,
            started: 0,
            last_sent: 0,
            votes: BTreeMap::new(),
        };
        assert!(!c.grant(1, prog(1), 2));
        assert!(!c.grant(1, prog(1), 2));
        assert!(c.grant(3, prog(1), 2));
    }
}
