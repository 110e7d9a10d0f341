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
//! # Layout
//! - [`network`]: the message queue and link faults.
//! - [`nemesis`]: fault schedules.
//! - [`world`]: nodes, data, the step loop.
//! - [`invariants`]: what is checked, and when.

pub mod invariants;
pub mod nemesis;
pub mod network;
pub mod world;

use std::fmt;

use super::{Config, Member};
pub use nemesis::Nemesis;
pub use network::LinkModel;

/// One simulation's parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub members: Vec<Member>,
    pub shards: usize,
    pub control: Config,
    /// Strong consistency mode (writes need a cross-zone backup ack and a lease).
    pub strong: bool,
    pub link: LinkModel,
    pub nemesis: Nemesis,
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
    pub trace: bool,
}

impl SimConfig {
    /// `n` data nodes spread round-robin over three zones (1 ms across zones),
    /// keel's default timeouts.
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
            shards: 2,
            control: Config::default(),
            strong,
            link: LinkModel::default(),
            nemesis,
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
