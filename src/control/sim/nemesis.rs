//! Fault schedules: which faults the simulator injects, and when.
//!
//! A schedule is generated from the run's seed before the run starts, so a seed
//! names one exact fault history. Faults aimed at "the primary" are resolved when
//! they fire, against whoever is primary at that instant.

use super::super::rng::SeededRng;
use super::super::NodeId;
use super::membership::Change;

/// One fault (or its repair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Crash the current open primary (or `fallback` if none is open).
    CrashPrimary {
        fallback: NodeId,
    },
    Crash(NodeId),
    Restart(NodeId),
    /// Pause the current primary for `ms` (or `fallback`).
    PausePrimary {
        fallback: NodeId,
        ms: u64,
    },
    Pause(NodeId, u64),
    /// Cut off every node of the current primary's zone.
    IsolatePrimaryZone,
    /// Put nodes in these partition groups (index = node id).
    Partition(Vec<u32>),
    /// One partition group again.
    Heal,
    /// Cut / restore the link between two nodes.
    Cut(NodeId, NodeId),
    Uncut(NodeId, NodeId),
    /// An operator asks the open primary for a membership change (retried
    /// until a primary free to take it accepts it).
    Ask(Change),
}

/// The families of schedules the tests and the soak run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// No faults but the network's own drops, duplicates and reordering.
    Calm,
    /// The primary crashes once (restarting later or not).
    CrashPrimary,
    /// The primary's whole zone is cut off, then comes back.
    ZoneOutage,
    /// Random partitions of any node sets, healed and re-cut.
    Partitions,
    /// Pauses shorter than half of `node_timeout`: must cause no failover.
    ShortPauses,
    /// Long pauses (up to three `node_timeout`s), primary included.
    LongPauses,
    /// One link flapping up and down: must cause no failover.
    Flapping,
    /// A random mix of all of the above, overlapping.
    Mixed,
    /// Membership changes asked of the primary at random times (add a
    /// joiner, remove a voter, replace a voter), the primary crashed right
    /// after some of them, among partitions, pauses and flapping links.
    /// Not in [`Nemesis::ALL`]: it needs joiners ([`SimConfig::joiners`]) and
    /// has its own sweeps.
    ///
    /// [`SimConfig::joiners`]: super::SimConfig::joiners
    Membership,
}

impl Nemesis {
    pub const ALL: [Nemesis; 8] = [
        Nemesis::Calm,
        Nemesis::CrashPrimary,
        Nemesis::ZoneOutage,
        Nemesis::Partitions,
        Nemesis::ShortPauses,
        Nemesis::LongPauses,
        Nemesis::Flapping,
        Nemesis::Mixed,
    ];

    /// Whether this nemesis must never cause an election.
    pub fn must_not_fail_over(self) -> bool {
        matches!(
            self,
            Nemesis::Calm | Nemesis::ShortPauses | Nemesis::Flapping
        )
    }
}

/// Builds the schedule of `nemesis` for `n` nodes over `[start, end)` ms.
pub fn schedule(
    nemesis: Nemesis,
    rng: &mut SeededRng,
    n: u32,
    node_timeout: u64,
    start: u64,
    end: u64,
) -> Vec<(u64, Fault)> {
    let mut out = Vec::new();
    let any = |rng: &mut SeededRng| rng.range(0, u64::from(n - 1)) as NodeId;
    match nemesis {
        Nemesis::Calm => {}
        Nemesis::CrashPrimary => {
            let t = rng.range(start, start + 1000);
            let victim = any(rng);
            out.push((t, Fault::CrashPrimary { fallback: victim }));
            if rng.chance(0.5) {
                // Restart later; the restarted node must come back as a backup.
                out.push((rng.range(t + 500, end), Fault::Restart(u32::MAX)));
            }
        }
        Nemesis::ZoneOutage => {
            let t = rng.range(start, start + 1000);
            out.push((t, Fault::IsolatePrimaryZone));
            out.push((rng.range(t + 2500, end.max(t + 2501)), Fault::Heal));
        }
        Nemesis::Partitions => {
            let mut t = start;
            while t < end {
                let groups: Vec<u32> = (0..n).map(|_| rng.range(0, 1) as u32).collect();
                out.push((t, Fault::Partition(groups)));
                t += rng.range(300, 4000);
                out.push((t.min(end), Fault::Heal));
                t += rng.range(200, 3000);
            }
        }
        Nemesis::ShortPauses => {
            let mut t = start;
            while t < end {
                let ms = rng.range(10, node_timeout * 9 / 20);
                if rng.chance(0.5) {
                    out.push((
                        t,
                        Fault::PausePrimary {
                            fallback: any(rng),
                            ms,
                        },
                    ));
                } else {
                    out.push((t, Fault::Pause(any(rng), ms)));
                }
                t += ms + rng.range(50, 1500);
            }
        }
        Nemesis::LongPauses => {
            let mut t = start;
            while t < end {
                let ms = rng.range(100, node_timeout * 3);
                out.push((
                    t,
                    Fault::PausePrimary {
                        fallback: any(rng),
                        ms,
                    },
                ));
                t += ms + rng.range(500, 4000);
            }
        }
        Nemesis::Flapping => {
            let a = any(rng);
            let mut b = any(rng);
            if b == a {
                b = (a + 1) % n;
            }
            let mut t = start;
            while t < end {
                out.push((t, Fault::Cut(a, b)));
                t += rng.range(20, node_timeout / 2);
                out.push((t.min(end), Fault::Uncut(a, b)));
                t += rng.range(20, node_timeout / 2);
            }
        }
        Nemesis::Mixed => {
            let kinds = [
                Nemesis::CrashPrimary,
                Nemesis::ZoneOutage,
                Nemesis::Partitions,
                Nemesis::ShortPauses,
                Nemesis::LongPauses,
                Nemesis::Flapping,
            ];
            for _ in 0..rng.range(2, 3) {
                let k = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
                let s = rng.range(start, (start + end) / 2);
                out.extend(schedule(k, rng, n, node_timeout, s, end));
            }
            // Crashed nodes come back at some point.
            for id in 0..n {
                if rng.chance(0.3) {
                    let t = rng.range(start, end);
                    out.push((t, Fault::Crash(id)));
                    out.push((rng.range(t + 100, end.max(t + 101)), Fault::Restart(id)));
                }
            }
        }
        Nemesis::Membership => {
            // Requests spread over the fault window, the last a second before
            // its end so the steps it starts can commit.
            for _ in 0..rng.range(3, 6) {
                let t = rng.range(start, end.saturating_sub(1000).max(start));
                let c = match rng.range(0, 9) {
                    0..=3 => Change::AddJoiner,
                    4..=6 => Change::RemoveVoter {
                        pick: rng.next_u64(),
                    },
                    _ => Change::Replace {
                        pick: rng.next_u64(),
                    },
                };
                out.push((t, Fault::Ask(c)));
                if rng.chance(0.3) {
                    // The primary crashes mid-change: whoever wins next finds
                    // the pending work in the list and finishes it.
                    let c = t + rng.range(10, 600);
                    out.push((c, Fault::CrashPrimary { fallback: any(rng) }));
                    out.push((
                        rng.range(c + 300, end.max(c + 301)),
                        Fault::Restart(u32::MAX),
                    ));
                }
            }
            let kinds = [
                Nemesis::Partitions,
                Nemesis::ShortPauses,
                Nemesis::LongPauses,
                Nemesis::ZoneOutage,
                Nemesis::Flapping,
            ];
            for _ in 0..rng.range(1, 2) {
                let k = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
                let s = rng.range(start, (start + end) / 2);
                out.extend(schedule(k, rng, n, node_timeout, s, end));
            }
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out
}
