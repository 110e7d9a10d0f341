//! One member's control-plane state machine.
//!
//! # Protocol
//! - Every `ping_interval` the node pings every member with its term, its view of
//!   the primary, whether it is itself an open primary, its progress, the commit
//!   points it knows, its suspect list, and an echo of the last ping it got from the
//!   recipient (the strong-mode lease rides on that echo).
//! - Failure: when its primary is failed ([`detector`](super::detector)), a data
//!   member schedules a candidacy after a seeded random delay; at that time it
//!   reschedules if an election is in progress, stands if it is the best eligible
//!   candidate it knows, waits for the better one otherwise, and counts a failed
//!   round for the [`safety`](super::safety) check when nobody is eligible.
//! - Standing: a pre-vote first (nobody records anything), then the real vote in
//!   `term + 1`; a candidate re-asks silent voters every ping and gives up the
//!   round after `election_timeout`.
//! - Winning: the winner (role `CatchingUp`) catches up before it opens for writes
//!   (see `node/catch_up.rs`).
//! - Higher terms (Raft's rule): any message with a higher term is adopted at once;
//!   a candidate, a catching-up node or an open primary steps down. Because terms
//!   only move after a pre-vote majority, a member that was cut off cannot disrupt
//!   a healthy primary when it comes back. A primary cut off in a minority does not
//!   hear the new term and, in eventual mode, stays writable (the design's choice);
//!   when the partition heals it hears the new term, steps down and resyncs as a
//!   backup, offering its records since the fork point for merge first.
//! - Split brain: two primaries that hear each other therefore resolve in one
//!   ping. The periodic [`split_brain`](super::split_brain) check covers the case
//!   only a third member can see (two primaries that cannot hear each other): it
//!   starts a fresh election, whose winner merges every other history.
//!
//! # Invariants
//! - At most one node wins a term (see [`election`](super::election)).
//! - A strong-mode primary accepts writes only while a majority of voters (itself
//!   included) echoed a ping it sent less than `lease` ago and still in its term.
//!   A failover vote needs `node_timeout` of silence from the old primary, and a
//!   split-brain or forced winner waits one lease before opening; with clock rates
//!   within a few percent, leases never overlap.
//! - Persistent across restarts: term, vote, believed primary, and whether this node
//!   was the open primary; everything else is rebuilt from pings.

use std::collections::{BTreeMap, BTreeSet};

mod catch_up;

use super::detector::FailureDetector;
use super::election::{vote_rule, Candidacy, Request, VoterView};
use super::messages::{Action, Envelope, Input, Message, Output, Ping, Reason};
use super::progress::{best, Eligibility, Progress, Ranked};
use super::rng::SeededRng;
use super::safety::SafetyCheck;
use super::split_brain::SplitBrainCheck;
use super::{Cluster, Config, Millis, NodeId, Term};

/// What this node last heard from a peer's ping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerView {
    pub heard_at: Millis,
    pub term: Term,
    pub primary: Option<NodeId>,
    pub open: bool,
    pub progress: Progress,
    pub commit: Vec<u64>,
    pub paused: bool,
    pub serving: bool,
}

pub use catch_up::CatchUp;

/// A node's role in the database.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    Candidate(Candidacy),
    CatchingUp(CatchUp),
    /// Primary of `term`, open for writes.
    Primary {
        term: Term,
    },
}

/// A member's control-plane state machine. See the module doc.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    me: NodeId,
    cluster: Cluster,
    cfg: Config,
    rng: SeededRng,
    now: Millis,
    term: Term,
    voted_for: Option<NodeId>,
    primary: Option<NodeId>,
    role: Role,
    progress: Progress,
    commit: Vec<u64>,
    peers: BTreeMap<NodeId, PeerView>,
    /// This node serves reads (gossiped in pings; see [`Ping::serving`]).
    serving: bool,
    detector: FailureDetector,
    safety: SafetyCheck,
    split: SplitBrainCheck,
    next_ping: Millis,
    election_at: Option<(Millis, Reason)>,
    last_election_activity: Millis,
    primary_total: u64,
    echo_from: BTreeMap<NodeId, Millis>,
    lease: BTreeMap<NodeId, Millis>,
    failed_reported: BTreeSet<NodeId>,
    /// `cluster.voters()`, cached: asked on every tick.
    voters: Vec<NodeId>,
    /// As open primary: the history this node followed before it opened. Members
    /// on it hold prefixes of our log; members on any other history diverged.
    prior_history: Term,
    /// As open primary: our seq per shard when we took over (the fork point of
    /// the prior history: records past it on that history were written by an old
    /// primary after we were elected).
    takeover: Vec<u64>,
    /// As open primary: when each diverged member was last asked to merge.
    loser_merges: BTreeMap<NodeId, Millis>,
    /// When the primary this node followed was last heard, if a new list
    /// dropped it: it may still hold a lease on this node's echoes.
    left_primary: Option<Millis>,
}

impl Node {
    /// A node booting at `now` into `term` with `primary` as the known primary (from
    /// the cluster file). The primary itself boots open.
    pub fn new(
        me: NodeId,
        cluster: Cluster,
        cfg: Config,
        seed: u64,
        now: Millis,
        term: Term,
        primary: Option<NodeId>,
    ) -> Node {
        let ids: Vec<NodeId> = cluster.members.iter().map(|m| m.id).collect();
        let shards = cluster.shards;
        let role = if primary == Some(me) {
            Role::Primary { term }
        } else {
            Role::Follower
        };
        Node {
            me,
            detector: FailureDetector::new(me, ids, cfg.node_timeout, now),
            safety: SafetyCheck::new(cfg.safety_retries),
            voters: cluster.voters(),
            prior_history: term,
            takeover: Vec::new(),
            loser_merges: BTreeMap::new(),
            left_primary: None,
            cluster,
            rng: SeededRng::new(seed ^ (u64::from(me) << 32)),
            now,
            term,
            voted_for: None,
            primary,
            role,
            progress: Progress::empty(term, shards),
            commit: vec![0; shards],
            peers: BTreeMap::new(),
            serving: false,
            split: SplitBrainCheck::default(),
            next_ping: now,
            election_at: None,
            last_election_activity: now,
            primary_total: 0,
            echo_from: BTreeMap::new(),
            lease: BTreeMap::new(),
            failed_reported: BTreeSet::new(),
            cfg,
        }
    }

    /// Restart after a crash at `now`: keeps the persistent part, rebuilds the rest.
    pub fn restart(&mut self, now: Millis) {
        let ids: Vec<NodeId> = self.cluster.members.iter().map(|m| m.id).collect();
        self.now = now;
        self.detector = FailureDetector::new(self.me, ids, self.cfg.node_timeout, now);
        self.peers.clear();
        self.echo_from.clear();
        self.lease.clear();
        self.election_at = None;
        self.last_election_activity = now;
        self.next_ping = now;
        self.split = SplitBrainCheck::default();
        self.failed_reported.clear();
        self.role = match self.role {
            Role::Primary { term } => Role::Primary { term },
            _ => Role::Follower,
        };
        if self.role == Role::Follower && self.primary == Some(self.me) {
            self.primary = None;
        }
        // A restart hears nobody: the silence of a primary that left starts
        // afresh, as every member's does.
        if self.left_primary.is_some() {
            self.left_primary = Some(now);
        }
    }

    /// The membership changed (online, one step at a time): members that
    /// left are forgotten, new ones start as just heard (as at a restart,
    /// nobody is suspected on arrival); everything else — term, vote, role,
    /// the lease from members that stay — carries on. A primary that left
    /// is forgotten too, but not its silence: a failover vote still waits
    /// `node_timeout` from when it was last heard (see `primary_failed`).
    pub fn set_cluster(&mut self, cluster: Cluster) {
        let ids: BTreeSet<NodeId> = cluster.members.iter().map(|m| m.id).collect();
        if let Some(p) = self.primary.filter(|p| !ids.contains(p) && *p != self.me) {
            self.left_primary = Some(self.detector.last_heard(p).unwrap_or(self.now));
        }
        self.detector.set_members(&ids, self.now);
        self.peers.retain(|id, _| ids.contains(id));
        self.echo_from.retain(|id, _| ids.contains(id));
        self.lease.retain(|id, _| ids.contains(id));
        self.failed_reported.retain(|id| ids.contains(id));
        self.loser_merges.retain(|id, _| ids.contains(id));
        if self.primary.is_some_and(|p| !ids.contains(&p)) {
            self.primary = None;
        }
        if let Role::Candidate(c) = &mut self.role {
            c.votes.retain(|id, _| cluster.is_voter(*id));
        }
        self.voters = cluster.voters();
        self.cluster = cluster;
    }

    /// Whether `id` may become primary: a member that holds data and votes.
    /// A learner (holds data, does not vote yet) is still copying: it never
    /// stands and no voter waits for it to.
    fn is_candidate(&self, id: NodeId) -> bool {
        self.cluster.holds_data(id) && self.cluster.is_voter(id)
    }

    fn may_stand(&self) -> bool {
        self.is_candidate(self.me)
    }

    pub fn id(&self) -> NodeId {
        self.me
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> &Role {
        &self.role
    }
    pub fn primary(&self) -> Option<NodeId> {
        self.primary
    }
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
    /// The highest commit point per shard this node knows.
    pub fn commit(&self) -> &[u64] {
        &self.commit
    }
    /// The commit points `peer` last said it knows (from its pings).
    pub fn peer_commit(&self, peer: NodeId) -> Option<&[u64]> {
        self.peers.get(&peer).map(|v| v.commit.as_slice())
    }
    /// Whom this node voted for in its term (persistent across restarts).
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// A node rebuilt from its cluster file: its vote in its term.
    pub fn restore_vote(&mut self, v: Option<NodeId>) {
        self.voted_for = v;
    }
    /// Whether this node suspects `peer` now (silent for `node_timeout`).
    pub fn suspects(&self, peer: NodeId) -> bool {
        self.detector.suspects(peer, self.now)
    }
    /// Whether a majority of voters suspect `peer` now.
    pub fn is_failed(&self, peer: NodeId) -> bool {
        self.detector.is_failed(peer, &self.voters, self.now)
    }
    /// The progress `peer` last reported (pings, votes).
    /// Whether `peer` said in its latest ping that it serves reads.
    pub fn peer_serving(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|v| v.serving)
    }
    /// Sets what this node's pings say about serving reads.
    pub fn set_serving(&mut self, serving: bool) {
        self.serving = serving;
    }
    pub fn peer_progress(&self, peer: NodeId) -> Option<&Progress> {
        self.peers.get(&peer).map(|v| &v.progress)
    }
    /// When `peer` was last heard (this node's clock).
    pub fn last_heard(&self, peer: NodeId) -> Option<Millis> {
        self.detector.last_heard(peer)
    }
    pub fn writes_paused(&self) -> bool {
        self.safety.paused()
    }
    /// The term this node is open primary of, if any.
    pub fn open_term(&self) -> Option<Term> {
        match self.role {
            Role::Primary { term } => Some(term),
            _ => None,
        }
    }

    /// Eventual mode: this node takes writes.
    pub fn can_accept_writes(&self) -> bool {
        self.open_term().is_some() && !self.safety.paused()
    }

    /// Strong mode: this node takes writes and holds a majority lease at `now`.
    pub fn can_accept_strong(&self, now: Millis) -> bool {
        if !self.can_accept_writes() {
            return false;
        }
        let holders = self
            .voters
            .iter()
            .filter(|v| {
                **v == self.me
                    || self
                        .lease
                        .get(v)
                        .is_some_and(|e| e.saturating_add(self.cfg.lease) > now)
            })
            .count();
        holders > self.voters.len() / 2
    }

    /// Feeds one input at local time `now`.
    pub fn handle(&mut self, now: Millis, input: Input) -> Output {
        self.now = self.now.max(now);
        let mut out = Output::default();
        match input {
            Input::Tick => self.on_tick(&mut out),
            Input::Receive { from, msg } => self.on_message(from, msg, &mut out),
            Input::Progress(p) => {
                self.progress = p;
                self.catch_up(&mut out);
            }
            Input::Commit(c) => self.learn_commit(&c),
            Input::Merged { from } => {
                if let Role::CatchingUp(cu) = &mut self.role {
                    cu.merges.remove(&from);
                }
                if self.open_term().is_some() {
                    // Give the loser time to resync before asking again.
                    self.loser_merges
                        .insert(from, self.now + self.cfg.node_timeout);
                }
                self.catch_up(&mut out);
            }
            Input::ForceFailover => {
                if self.may_stand() && self.role == Role::Follower {
                    self.stand(Reason::Forced, &mut out);
                }
            }
            Input::TookOver(seqs) => {
                if self.open_term().is_some() {
                    if self.takeover.len() < seqs.len() {
                        self.takeover.resize(seqs.len(), 0);
                    }
                    for (t, s) in self.takeover.iter_mut().zip(seqs) {
                        *t = (*t).max(s);
                    }
                }
            }
            Input::HandOver { to } => {
                if self.open_term().is_some() && to != self.me && self.is_candidate(to) {
                    out.sends.push(Envelope {
                        to,
                        msg: Message::Handover { term: self.term },
                    });
                }
            }
        }
        out
    }

    fn on_tick(&mut self, out: &mut Output) {
        let now = self.now;
        if now >= self.next_ping {
            self.send_pings(out);
            self.next_ping = now + self.cfg.ping_interval;
        }
        self.report_failures(out);
        if let Role::Candidate(c) = &self.role {
            let age = now.saturating_sub(c.started);
            if age >= self.cfg.election_timeout {
                // Our own round timing out is not "an election in progress".
                let reason = c.reason;
                self.role = Role::Follower;
                let delay = self.rng.range(0, self.cfg.election_jitter);
                self.election_at = Some((now + delay, reason));
            } else if now.saturating_sub(c.last_sent) >= self.cfg.ping_interval {
                // Ask again whoever has not answered: one lost message should
                // cost a ping interval, not a whole round.
                let mut c = c.clone();
                c.last_sent = now;
                self.send_requests(&c, out);
                self.role = Role::Candidate(c);
            }
        }
        self.catch_up(out);
        self.check_split_brain();
        self.check_failover();
        self.maybe_stand(out);
    }

    fn send_pings(&mut self, out: &mut Output) {
        let suspects = self.detector.suspect_list(self.now);
        for m in &self.cluster.members {
            if m.id == self.me {
                continue;
            }
            out.sends.push(Envelope {
                to: m.id,
                msg: Message::Ping(Ping {
                    term: self.term,
                    sent_at: self.now,
                    echo: self.echo_from.get(&m.id).copied(),
                    primary: self.primary,
                    open: self.open_term().is_some(),
                    progress: self.progress.clone(),
                    commit: self.commit.clone(),
                    suspects: suspects.clone(),
                    paused: self.safety.paused(),
                    serving: self.serving,
                }),
            });
        }
    }

    fn report_failures(&mut self, out: &mut Output) {
        for m in &self.cluster.members {
            if m.id == self.me {
                continue;
            }
            let failed = self.detector.is_failed(m.id, &self.voters, self.now);
            if failed && self.failed_reported.insert(m.id) {
                out.actions.push(Action::Failed { node: m.id });
            } else if !failed {
                self.failed_reported.remove(&m.id);
            }
        }
    }

    /// The failover gate: no open primary has been heard for `node_timeout`, and the
    /// primary this node follows (if any) is failed by a majority. Requiring the
    /// silence here, not just the majority verdict, is what makes the lease safe.
    fn primary_failed(&self) -> bool {
        let open_heard = self
            .peers
            .values()
            .any(|v| v.open && self.now.saturating_sub(v.heard_at) < self.cfg.node_timeout);
        if open_heard {
            return false;
        }
        // The lease argument needs this node silent from its old primary for
        // `node_timeout` before it helps elect another, whether or not the
        // old primary is still in our list: a list can drop it (one made by
        // a primary this node never followed) while its lease still counts
        // this node's last echo.
        if self
            .left_primary
            .is_some_and(|h| self.now.saturating_sub(h) < self.cfg.node_timeout)
        {
            return false;
        }
        match self.primary {
            Some(p) if p == self.me => false,
            // The primary we follow says it is not primary any more (it restarted
            // mid catch-up, say): nobody holds the term, and it holds no lease.
            Some(p)
                if self
                    .peers
                    .get(&p)
                    .is_some_and(|v| !v.open && v.primary != Some(p) && v.term >= self.term) =>
            {
                true
            }
            Some(p) => {
                self.detector.suspects(p, self.now)
                    && self.detector.is_failed(p, &self.voters, self.now)
            }
            None => true,
        }
    }

    fn election_in_progress(&self) -> bool {
        self.primary.is_none()
            && self.now.saturating_sub(self.last_election_activity) < self.cfg.election_timeout
    }

    fn check_failover(&mut self) {
        if !self.may_stand() || self.role != Role::Follower {
            return;
        }
        let need = match self.primary {
            Some(_) => self.primary_failed(),
            None => !self.election_in_progress(),
        };
        match self.election_at {
            None if need => {
                let delay = self.rng.range(0, self.cfg.election_jitter);
                self.election_at = Some((self.now + delay, Reason::Failover));
            }
            Some((_, Reason::Failover)) if self.primary.is_some() && !need => {
                self.election_at = None;
            }
            _ => {}
        }
    }

    /// Who claims to be an open primary. A claim of a term older than ours
    /// is not a second primary to elect over: our next ping carries our
    /// term and the claimant steps down on it (an old primary coming back
    /// from a pause or a partition; its writes are merged as a loser's).
    fn claims(&self) -> BTreeMap<NodeId, Term> {
        let mut claims: BTreeMap<NodeId, Term> = self
            .peers
            .iter()
            .filter(|(_, v)| v.open && self.now.saturating_sub(v.heard_at) < self.cfg.node_timeout)
            .filter(|(_, v)| v.term >= self.term)
            .map(|(id, v)| (*id, v.term))
            .collect();
        if let Some(t) = self.open_term() {
            claims.insert(self.me, t);
        }
        claims
    }

    fn check_split_brain(&mut self) {
        let claims = self.claims();
        let found = self
            .split
            .run(self.now, self.cfg.split_check_interval, &claims);
        // Only followers stand: an open primary that hears a higher term steps
        // down by itself, so two primaries that hear each other resolve at once;
        // the check is for views that only a third member can compare.
        if found.is_some()
            && self.may_stand()
            && self.election_at.is_none()
            && self.role == Role::Follower
        {
            let delay = self.rng.range(0, self.cfg.election_jitter);
            self.election_at = Some((self.now + delay, Reason::SplitBrain));
        }
    }

    fn still_needed(&self, reason: Reason) -> bool {
        match reason {
            Reason::Forced | Reason::Handover => true,
            Reason::SplitBrain => self.split.seen_recently(self.now, self.cfg.node_timeout),
            Reason::Failover => self.role == Role::Follower && self.primary_failed(),
        }
    }

    fn eligibility(&self) -> Eligibility {
        Eligibility {
            commit: self.commit.clone(),
            primary_total: self.primary_total,
            max_lag: self.cfg.failover_max_lag,
        }
    }

    /// Live data members this node knows, itself included, for ranking.
    fn known_candidates(&self, reason: Reason) -> Vec<Ranked<'_>> {
        let failed_primary = match reason {
            Reason::Failover => self.primary.filter(|p| *p != self.me),
            _ => None,
        };
        let mut v = Vec::new();
        if self.may_stand() {
            v.push(Ranked {
                id: self.me,
                progress: &self.progress,
                is_current_primary: self.open_term().is_some(),
            });
        }
        for (id, pv) in &self.peers {
            if self.is_candidate(*id)
                && !self.detector.suspects(*id, self.now)
                && Some(*id) != failed_primary
            {
                v.push(Ranked {
                    id: *id,
                    progress: &pv.progress,
                    is_current_primary: self.primary == Some(*id) || pv.open,
                });
            }
        }
        v
    }

    fn maybe_stand(&mut self, out: &mut Output) {
        let Some((at, reason)) = self.election_at else {
            return;
        };
        if self.now < at {
            return;
        }
        self.election_at = None;
        if !self.still_needed(reason) || self.role != Role::Follower {
            return;
        }
        if reason != Reason::Forced && self.election_in_progress() {
            let delay = self
                .rng
                .range(self.cfg.election_jitter / 2, self.cfg.election_jitter * 2);
            self.election_at = Some((self.now + delay, reason));
            return;
        }
        let rule = self.eligibility();
        let winner = best(self.known_candidates(reason), &rule);
        match winner {
            None => {
                if let Some(a) = self.safety.no_eligible_round() {
                    out.actions.push(a);
                }
                self.election_at = Some((self.now + self.cfg.election_timeout, reason));
            }
            Some(b) => {
                if let Some(a) = self.safety.eligible_seen() {
                    out.actions.push(a);
                }
                if b == self.me {
                    self.stand(reason, out);
                } else {
                    // Give the better member two pings' time to stand; if views
                    // disagree, the next pings settle them and this re-evaluates.
                    let delay = self.rng.range(0, self.cfg.election_jitter);
                    self.election_at =
                        Some((self.now + 2 * self.cfg.ping_interval + delay, reason));
                }
            }
        }
    }

    /// Starts the pre-vote for `term + 1`.
    fn stand(&mut self, reason: Reason, out: &mut Output) {
        self.election_at = None;
        let mut c = Candidacy {
            term: self.term + 1,
            pre: true,
            reason,
            started: self.now,
            last_sent: self.now,
            votes: BTreeMap::new(),
        };
        let is_voter = self.cluster.is_voter(self.me);
        let enough = is_voter && c.grant(self.me, self.progress.clone(), self.cluster.majority());
        self.send_requests(&c, out);
        self.role_before_candidacy(out);
        self.role = Role::Candidate(c);
        if enough {
            self.start_real_vote(out);
        }
    }

    /// A primary that stands again (split brain, forced) is no longer open.
    fn role_before_candidacy(&mut self, out: &mut Output) {
        if self.open_term().is_some() {
            out.actions.push(Action::StepDown { term: self.term });
        }
    }

    fn send_requests(&self, c: &Candidacy, out: &mut Output) {
        for v in self.voters.iter().copied() {
            if v != self.me && !c.votes.contains_key(&v) {
                out.sends.push(Envelope {
                    to: v,
                    msg: Message::RequestVote {
                        term: c.term,
                        pre: c.pre,
                        progress: self.progress.clone(),
                        reason: c.reason,
                    },
                });
            }
        }
    }

    /// The pre-vote passed: bump the term and ask for real votes.
    fn start_real_vote(&mut self, out: &mut Output) {
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        c.pre = false;
        c.started = self.now;
        c.last_sent = self.now;
        c.votes.clear();
        let c = c.clone();
        self.term = c.term;
        self.primary = None;
        self.last_election_activity = self.now;
        out.actions.push(Action::StartElection {
            term: c.term,
            reason: c.reason,
        });
        if c.reason == Reason::Forced {
            out.actions.push(Action::ForcedFailover { term: c.term });
        }
        let mut won = false;
        if self.cluster.is_voter(self.me) {
            self.voted_for = Some(self.me);
            if let Role::Candidate(cc) = &mut self.role {
                won = cc.grant(self.me, self.progress.clone(), self.cluster.majority());
            }
        } else {
            self.voted_for = None;
        }
        self.send_requests(&c, out);
        if won {
            self.win(out);
        }
    }

    /// Raft's rule: a higher term is adopted at once; leaders and candidates step
    /// down. Safe from disruption because terms only move after a pre-vote.
    fn adopt_term(&mut self, term: Term, primary: Option<NodeId>, out: &mut Output) {
        if term <= self.term {
            return;
        }
        self.term = term;
        self.voted_for = None;
        self.primary = primary.filter(|p| *p != self.me);
        if self.role != Role::Follower {
            self.role = Role::Follower;
            out.actions.push(Action::StepDown { term });
        }
        match self.primary {
            None => self.last_election_activity = self.now,
            Some(x) => out.actions.push(Action::Follow { primary: x, term }),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Output) {
        if from == self.me || self.cluster.member(from).is_none() {
            return;
        }
        self.detector.heard(from, self.now);
        match msg {
            Message::Ping(p) => self.on_ping(from, p, out),
            Message::Handover { term } => {
                // Only from the primary we follow, in our term: anyone else's
                // word is no reason to stand.
                if term == self.term
                    && self.primary == Some(from)
                    && self.role == Role::Follower
                    && self.may_stand()
                {
                    self.stand(Reason::Handover, out);
                }
            }
            Message::RequestVote {
                term,
                pre,
                progress,
                reason,
            } => self.on_request_vote(from, term, pre, progress, reason, out),
            Message::Vote {
                term,
                pre,
                granted,
                progress,
            } => {
                if !pre {
                    self.adopt_term(term, None, out);
                }
                if let Some(pv) = self.peers.get_mut(&from) {
                    pv.progress = progress.clone();
                }
                let majority = self.cluster.majority();
                let is_voter = self.cluster.is_voter(from);
                let enough = match &mut self.role {
                    Role::Candidate(c) if c.term == term && c.pre == pre && granted && is_voter => {
                        c.grant(from, progress, majority)
                    }
                    _ => false,
                };
                if enough && pre {
                    self.start_real_vote(out);
                } else if enough {
                    self.win(out);
                }
            }
        }
    }

    fn learn_commit(&mut self, c: &[u64]) {
        if self.commit.len() < c.len() {
            self.commit.resize(c.len(), 0);
        }
        for (mine, theirs) in self.commit.iter_mut().zip(c) {
            *mine = (*mine).max(*theirs);
        }
    }

    fn on_ping(&mut self, from: NodeId, p: Ping, out: &mut Output) {
        self.detector.gossip(from, &p.suspects);
        self.echo_from.insert(from, p.sent_at);
        self.learn_commit(&p.commit);
        if let (Role::Primary { term }, Some(e)) = (&self.role, p.echo) {
            if p.term == *term {
                let l = self.lease.entry(from).or_insert(e);
                *l = (*l).max(e);
            }
        }
        let announced = if p.open { Some(from) } else { p.primary };
        if p.term > self.term {
            self.adopt_term(p.term, announced, out);
        } else if p.term == self.term && self.primary.is_none() {
            if let Some(x) = announced.filter(|x| *x != self.me) {
                self.primary = Some(x);
                if self.role == Role::Follower {
                    out.actions.push(Action::Follow {
                        primary: x,
                        term: self.term,
                    });
                }
            }
        }
        if Some(from) == self.primary {
            self.primary_total = p.progress.total();
        }
        self.merge_from_loser(from, &p, out);
        self.peers.insert(
            from,
            PeerView {
                heard_at: self.now,
                term: p.term,
                primary: p.primary,
                open: p.open,
                progress: p.progress,
                commit: p.commit,
                paused: p.paused,
                serving: p.serving,
            },
        );
    }

    /// Split brain, after the fact: a member that now follows our term but whose
    /// data is on a history we never followed, or on our prior history past the
    /// point where we took over, was a primary (or its backup) on the other side. Ask it for its records since the fork point; it resyncs as a
    /// backup afterwards.
    fn merge_from_loser(&mut self, from: NodeId, p: &Ping, out: &mut Output) {
        let Some(term) = self.open_term() else {
            return;
        };
        let h = p.progress.history;
        let past_fork = p
            .progress
            .seqs
            .iter()
            .enumerate()
            .any(|(k, s)| *s > self.takeover.get(k).copied().unwrap_or(0));
        let diverged = h != term && (h != self.prior_history || past_fork);
        if !self.cluster.holds_data(from) || p.term < term || !diverged {
            return;
        }
        let due = self
            .loser_merges
            .get(&from)
            .is_none_or(|t| self.now >= t.saturating_add(2 * self.cfg.ping_interval));
        if due {
            self.loser_merges.insert(from, self.now);
            out.actions.push(Action::MergeFrom { from });
        }
    }

    fn on_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre: bool,
        progress: Progress,
        reason: Reason,
        out: &mut Output,
    ) {
        if !self.cluster.is_voter(self.me) {
            return;
        }
        // Judge with the view from before the request: adopting its term first
        // would forget who the primary is.
        let rule = self.eligibility();
        let decision = {
            let view = VoterView {
                term: self.term,
                voted_for: self.voted_for,
                primary_failed: self.primary_failed(),
                split_seen: self.split.seen_recently(self.now, self.cfg.node_timeout),
                rule: &rule,
                known: self.known_candidates(reason),
            };
            let req = Request {
                candidate: from,
                term,
                progress: &progress,
                reason,
            };
            vote_rule(&req, &view)
        };
        // A learner never stands; a request from one is a confused peer.
        let granted = decision.is_ok() && self.is_candidate(from);
        if !pre {
            self.adopt_term(term, None, out);
            if granted && self.voted_for != Some(from) {
                self.voted_for = Some(from);
                self.primary = None;
                self.election_at = None;
                self.last_election_activity = self.now;
                out.actions.push(Action::Voted {
                    term,
                    candidate: from,
                });
            }
        }
        out.sends.push(Envelope {
            to: from,
            msg: Message::Vote {
                term,
                pre,
                granted,
                progress: self.progress.clone(),
            },
        });
    }

    fn win(&mut self, out: &mut Output) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        self.primary = Some(self.me);
        let wait = match c.reason {
            // The old primary handed over: it took no write since.
            Reason::Failover | Reason::Handover => 0,
            // No silence was required of voters: wait out any older lease.
            Reason::SplitBrain | Reason::Forced => self.cfg.lease + self.cfg.lease / 4,
        };
        out.actions.push(Action::Won { term: c.term });
        self.role = Role::CatchingUp(CatchUp {
            term: c.term,
            reason: c.reason,
            won_at: self.now,
            open_not_before: self.now + wait,
            planned: false,
            pulls: Vec::new(),
            merges: BTreeSet::new(),
            last_request: self.now,
            votes: c.votes,
        });
        self.catch_up(out);
    }
}

#[cfg(test)]
mod tests;
