//! A seeded deterministic simulator for the control plane.
//!
//! N [`Node`](super::Node)s in zones run against a virtual clock (1 ms steps), a
//! network that delays, drops, duplicates and reorders, and a nemesis that
//! partitions (any node sets, or a whole zone), crashes and restarts, pauses, and
//! flaps links; every node's clock has its own offset and rate drift. Each node
//! carries a small data model (per-shard logs of write ids, commit points, writes
//! acknowledged in strong mode), and the invariants in [`invariants`] are checked
//! at every step. Everything random comes from the run's seed: a failing seed is
//! printed with the trace of its last events and replays exactly with
//! [`run_seed`] (set `trace: true` for the event log).
//!
//! # Membership changes
//! The member list can change during a run, as keel's network layer changes it
//! (`cluster::members`, `cluster/driver/membership.rs`), modelled rather than
//! run: every node holds a versioned list, every control message carries its
//! sender's list identity and reaches the receiving [`Node`](super::Node) only
//! if both hold the same list, newer lists are pushed to nodes behind and
//! adopted at once, and the open primary takes one step at a time (add a
//! learner, promote it once caught up, remove a member), each once the last
//! committed. *Joiners* ([`SimConfig::joiners`]) start outside the list and
//! copy the data by replication once added; a removed node stops taking part.
//! The [`Nemesis::Membership`] schedule asks the primary for changes among
//! crashes, partitions and pauses, and L1–L3 in [`invariants`] check the lists.
//!
//! What the model leaves out: names, addresses and digests (a member is its
//! id; identities are (version, term)), the cluster file (a node's list simply
//! survives its crashes), version-0 lists from differing `[[nodes]]`, changes
//! asked by an edited configuration, arbiters joining, a primary replacing
//! itself (it waits for a failover, as keel's does, but no operator moves the
//! primary), and the data a learner copies beyond what the stream and pulls
//! carry (no snapshot transfer). Four rules of the driver's first draft were
//! found wanting here (one unsafe, three stuck); the driver now follows the
//! fixes the model runs by default. [`MembershipRules`] names each, and the
//! tests pin a counterexample for each draft rule, so a return to it fails.
//!
//! # Layout
//! - [`network`]: the message queue and link faults.
//! - [`nemesis`]: fault schedules.
//! - [`membership`]: the member list and one step from it.
//! - [`world`]: nodes, data, the step loop; `world/coordinator.rs` moves lists
//!   and takes the steps.
//! - [`invariants`]: what is checked, and when.

pub mod invariants;
pub mod membership;
pub mod nemesis;
pub mod network;
pub mod world;

use std::fmt;

use super::{Config, Member};
pub use membership::{Change, MemberList};
pub use nemesis::{Fault, Nemesis};
pub use network::LinkModel;

/// One simulation's parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub members: Vec<Member>,
    /// Data nodes that start outside the list, waiting to be added (ids
    /// after the members'); the `Membership` nemesis adds them.
    pub joiners: u32,
    pub shards: usize,
    pub control: Config,
    /// Strong consistency mode (writes need a cross-zone backup ack and a lease).
    pub strong: bool,
    pub link: LinkModel,
    pub nemesis: Nemesis,
    /// Faults added to the nemesis's schedule (a hand-written scenario).
    pub script: Vec<(u64, Fault)>,
    /// Faults are injected within `[fault_start, fault_end)`.
    pub fault_start: u64,
    pub fault_end: u64,
    /// After `fault_end` everything heals and the run goes on this long.
    pub heal: u64,
    /// A client write is offered to every open primary this often (ms).
    pub write_every: u64,
    /// Primaries stream to backups this often (ms).
    pub repl_every: u64,
    /// Nodes' timers tick this often (ms).
    pub tick_every: u64,
    pub max_clock_offset: u64,
    /// HLC drift bound: a remote HLC further ahead than this is refused.
    pub max_clock_drift: u64,
    /// Clock-rate drift bound, parts per million.
    pub max_drift_ppm: u64,
    /// I5: a healthy majority has an open primary within this long (ms).
    pub liveness_bound: u64,
    pub rules: MembershipRules,
    /// Check L1 and L2. Off only to watch what a breach of them leads to.
    pub list_checks: bool,
    pub trace: bool,
}

impl SimConfig {
    /// `n` data nodes spread round-robin over three zones (1 ms across zones),
    /// keel's default timeouts; under the `Membership` nemesis, two joiners
    /// more (zones continue round-robin).
    pub fn three_zones(n: u32, nemesis: Nemesis, strong: bool) -> SimConfig {
        let members = (0..n)
            .map(|id| Member {
                id,
                zone: (id % 3) as u16,
                voter: true,
                holds_data: true,
            })
            .collect();
        SimConfig {
            members,
            joiners: if nemesis == Nemesis::Membership { 2 } else { 0 },
            shards: 2,
            control: Config::default(),
            strong,
            link: LinkModel::default(),
            nemesis,
            script: Vec::new(),
            fault_start: 1_000,
            fault_end: 9_000,
            heal: 5_000,
            write_every: 10,
            repl_every: 20,
            tick_every: 10,
            max_clock_offset: 5_000,
            max_clock_drift: 10_000,
            max_drift_ppm: 20_000,
            liveness_bound: 5_000,
            rules: MembershipRules::default(),
            list_checks: true,
            trace: false,
        }
    }

    /// Two data zones plus an arbiter (a voter without data) in a third zone.
    pub fn two_zones_with_arbiter(nemesis: Nemesis, strong: bool) -> SimConfig {
        let mut c = SimConfig::three_zones(3, nemesis, strong);
        c.members[2].holds_data = false;
        c.members[1].zone = 1;
        c
    }
}

/// The membership rules the simulator found wanting in the first draft of
/// keel's driver (`cluster/driver/membership.rs`). Each `true` is a fix the
/// simulator found needed; the default models the fixes — which the driver
/// now follows — and [`MembershipRules::FIRST_DRAFT`] the draft, whose
/// counterexamples the tests pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipRules {
    /// Every tick, also send the list to members never heard since this
    /// node started. keel sends it only to members heard on an older list,
    /// so a learner that missed the one push made when it was added (down,
    /// cut off, a lost frame) never hears of it: it never copies, is never
    /// promoted, and the change in progress blocks every later one.
    pub push_unheard: bool,
    /// Answer a node heard on an older list (in any frame, a list it sends
    /// included) with ours, whether or not it is still a member. keel
    /// answers members' control frames, and removed members only while its
    /// in-memory farewell lasts (10 s, lost on a restart): a removed member
    /// that was down or cut off meanwhile never learns it, and a removed
    /// primary stays open in eventual mode, taking writes nobody will keep.
    pub answer_non_members: bool,
    /// A node that finds itself left out of a newer list stops taking part
    /// but keeps listening, and comes back (term and vote kept) if a newer
    /// list still has it. keel stops it for good; yet the list that removed
    /// it may lose to one made in a later term from the same version, which
    /// keeps it as a voter: a voter that never comes back.
    pub rejoin: bool,
    /// A new primary's first step is its list again, as the next version in
    /// its own term; it takes no other step (and no request) before that one
    /// committed. Raft's rule (a leader commits an entry of its term before
    /// it changes the configuration), for the same reason: without it, a
    /// step made by an older primary that a minority holds and one made by
    /// the new primary from the version before both commit, and two such
    /// steps may change two voters between committed lists — with an even
    /// number of voters their majorities need not meet (L1).
    pub restamp: bool,
}

impl MembershipRules {
    /// The driver's first draft (to f18bf7d), as the pinned runs replay it.
    pub const FIRST_DRAFT: MembershipRules = MembershipRules {
        push_unheard: false,
        answer_non_members: false,
        rejoin: false,
        restamp: false,
    };
}

impl Default for MembershipRules {
    fn default() -> Self {
        MembershipRules {
            push_unheard: true,
            answer_non_members: true,
            rejoin: true,
            restamp: true,
        }
    }
}

/// Failover time split into its phases (virtual ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailoverTimes {
    /// Primary lost → a member sees it failed (majority suspicion).
    pub detection: u64,
    /// Failed → a candidate has a majority.
    pub election: u64,
    /// Won → open for writes (fresh progress, pulls, merges).
    pub catch_up: u64,
}

impl FailoverTimes {
    pub fn total(&self) -> u64 {
        self.detection + self.election + self.catch_up
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub elections: u64,
    /// Elections started by the split-brain check.
    pub split_brain_elections: u64,
    /// Merges an open primary asked of a member on a diverged history.
    pub loser_merges: u64,
    /// Remote HLCs refused for running more than `max_clock_drift` ahead.
    pub hlc_refused: u64,
    pub failover: Option<FailoverTimes>,
    /// Time from each return to a fault-free world to convergence (ms).
    pub heals: Vec<u64>,
    pub write_pauses: u64,
    pub forced: u64,
    pub acked: u64,
    /// Strong acks missing at an open whose every holder was down or cut off
    /// (a double fault: outside the guarantee, counted not failed).
    pub unprotected_strong_acks: u64,
    /// Member lists proposed by a primary.
    pub list_changes: u64,
    /// Nodes that learned they were removed and stopped.
    pub removed: u64,
    /// Removed nodes back in a newer list (the list that removed them lost).
    pub rejoined: u64,
    /// Eventual-mode writes whose only copies are on removed nodes at the
    /// end: taken by a cut-off primary and not merged back before an
    /// operator removed it (counted, not failed; see I6).
    pub removed_writes: u64,
    /// The last events, when the run was traced.
    pub trace: Vec<String>,
}

/// A violated invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    pub seed: u64,
    pub t: u64,
    pub what: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} violated at t={} ms: {}",
            self.seed, self.t, self.what
        )?;
        for l in self.trace.iter().rev().take(60).rev() {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// Runs one seed; the same seed and config always give the same result.
pub fn run_seed(seed: u64, cfg: &SimConfig) -> Result<Report, Violation> {
    world::World::new(seed, cfg.clone()).run()
}

#[cfg(test)]
mod tests;
