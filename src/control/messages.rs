//! What goes in and out of a [`Node`](super::Node): peer messages, local inputs,
//! and the actions the node asks its driver to perform.
//!
//! Every message carries the sender's term, so a stale peer is recognised on the
//! first message it sends. A node never blocks on a reply: every exchange is
//! retried by the next ping or tick, so lost and duplicated messages are harmless.

use super::{progress::Progress, Millis, NodeId, Term};

/// Why an election was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The primary is failed (a majority of voters suspect it).
    Failover,
    /// The periodic check saw two primaries.
    SplitBrain,
    /// An operator forced a failover to this candidate (logged, bypasses eligibility).
    Forced,
    /// A planned switchover: the open primary caught this candidate up, stopped
    /// taking writes and handed over ([`Message::Handover`]). Bypasses the
    /// failover gate; no lease to wait out, the old primary gave it up.
    Handover,
}

/// The periodic message every member sends every other: liveness, gossip, views.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ping {
    pub term: Term,
    /// Sender's clock when sent; echoed back so a primary can hold a lease.
    pub sent_at: Millis,
    /// The `sent_at` of the latest ping the sender received from the recipient.
    pub echo: Option<Millis>,
    /// Who the sender believes is primary in `term`.
    pub primary: Option<NodeId>,
    /// The sender is a primary open for writes.
    pub open: bool,
    pub progress: Progress,
    /// Highest commit point per shard the sender knows.
    pub commit: Vec<u64>,
    /// Members the sender suspects (silent for `node_timeout`).
    pub suspects: Vec<NodeId>,
    /// The sender has paused writes (safety check).
    pub paused: bool,
    /// The sender serves reads: every shard synced and within
    /// `read-max-lag` (fed by its driver; backups nearby send reads there
    /// when their own copy is not ready).
    pub serving: bool,
}

/// A message between members of one database.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Message {
    Ping(Ping),
    /// A candidate asks for a vote in `term`. With `pre`, it only asks whether it
    /// *would* get the vote (pre-vote): nobody changes state, so a member that
    /// cannot win — cut off in a minority, say — never bumps the term and never
    /// disrupts a healthy primary when it comes back.
    RequestVote {
        term: Term,
        pre: bool,
        progress: Progress,
        reason: Reason,
    },
    /// A voter's answer; `progress` is the voter's, so the winner knows what to pull.
    Vote {
        term: Term,
        pre: bool,
        granted: bool,
        progress: Progress,
    },
    /// The open primary of `term` hands over to the recipient (a planned
    /// switchover: it has stopped taking writes and the recipient holds all
    /// of them). Only the recipient's own primary can hand over.
    Handover {
        term: Term,
    },
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Message::Ping(p) => p.term,
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::Handover { term } => *term,
        }
    }
}

/// A message addressed to one member.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub to: NodeId,
    pub msg: Message,
}

/// What the driver tells a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Timers: the node's clock now reads the `now` passed with the input.
    Tick,
    /// A message arrived from a peer.
    Receive { from: NodeId, msg: Message },
    /// The local replica's progress changed (writes applied, pull finished).
    Progress(Progress),
    /// As primary: the commit point per shard (strong-mode acks).
    Commit(Vec<u64>),
    /// A merge requested with [`Action::MergeFrom`] was applied.
    Merged { from: NodeId },
    /// An operator forces a failover to this node. Logged; skips eligibility.
    ForceFailover,
    /// As open primary: the seq of every shard where this node stopped
    /// following its old primary (known exactly only once it promoted);
    /// raises the takeover point that tells diverged members from prefixes.
    TookOver(Vec<u64>),
    /// As open primary: hand over to `to` (planned switchover). The driver
    /// has stopped writes and seen `to` acknowledge every record first.
    HandOver { to: NodeId },
}

/// What a node asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A majority of voters suspect this member.
    Failed { node: NodeId },
    /// This node won a pre-vote and stands as candidate for `term`.
    StartElection { term: Term, reason: Reason },
    /// This node voted for `candidate` in `term`.
    Voted { term: Term, candidate: NodeId },
    /// This node won `term` and is catching up before opening.
    Won { term: Term },
    /// Fetch shard `shard` from `from` up to seq `up_to` (catch-up before opening).
    Pull {
        shard: usize,
        from: NodeId,
        up_to: u64,
    },
    /// Ask `from` for its records since the fork point and merge them.
    MergeFrom { from: NodeId },
    /// This node is the primary of `term` and open for writes.
    OpenForWrites { term: Term },
    /// This node stopped being primary (or candidate) because of `term`.
    StepDown { term: Term },
    /// Follow `primary` as a backup (resync from it).
    Follow { primary: NodeId, term: Term },
    /// The safety check found no eligible replica: stop taking writes.
    PauseWrites,
    /// An eligible replica is back: writes may resume.
    ResumeWrites,
    /// An operator forced a failover; recorded so it is never silent.
    ForcedFailover { term: Term },
}

/// Everything one input produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub sends: Vec<Envelope>,
    pub actions: Vec<Action>,
}
