//! Model checking of keel's control plane with stateright.
//!
//! The model drives the real [`keel::control::Node`] state machines — not a
//! re-statement of them — through every interleaving stateright can reach within a
//! bound: any node may tick (advance its own clock one step and run its timers), any
//! message in flight may be delivered or dropped, and the initial primary may crash
//! once, or be cut off from everyone (still running, still believing it is
//! primary) and later healed. Clocks may drift apart by at most one step (bounded clock-rate skew).
//!
//! Data is fixed: the primary and one backup hold 3 records, the other backup(s)
//! 2; the primary knows commit point 3 (a strong-mode ack the lagging backup missed).
//! Pulls complete at once (the winner adopts the source's seq), merges too.
//!
//! Abstractions, stated so the bound is honest: at most one ping per (sender,
//! receiver) is in flight (a newer ping replaces an older one: that is one of the
//! behaviours a lossy network allows, but the reordering of two pings on one link
//! is not explored); at most `drops` messages are dropped; clocks stop at the
//! horizon.
//!
//! Properties (the simulator's safety invariants, restated over the model):
//! - `one winner per term`: no two nodes ever open as primary of the same term;
//! - `no stale promotion`: a node opening in a new term holds the commit point
//!   (every strong-acknowledged record);
//! - `one strong writer`: at most one node can accept strong-mode writes at once;
//! - `no failover while healthy`: no term beyond the first starts while the
//!   initial primary is up and no message was dropped;
//! - `failover happens` (sometimes): after the crash some node opens a new term
//!   (guards against a vacuous model).

use keel::control::{
    Action, Cluster, Config, Input, Member, Message, Node, NodeId, Output, Progress, Term,
};
use stateright::{Checker, Model, Property};

const STEP: u64 = 100;

/// Which fault the exploration starts from. Each is checked separately so that a
/// depth-first search with a time budget reaches deep into every one of them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// The primary is crashed from the start.
    Crashed,
    /// The primary is cut off from the start and may be healed at any point.
    Isolated,
    /// No fault but dropped messages: nobody may fail over.
    Healthy,
    /// The primary may crash or be cut off at any point.
    Late,
}

#[derive(Clone, Debug)]
struct ControlModel {
    n: u32,
    horizon: u64,
    drops: u8,
    scenario: Scenario,
    cfg: Config,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    nodes: Vec<Node>,
    clocks: Vec<u64>,
    up: Vec<bool>,
    net: Vec<(NodeId, NodeId, Message)>,
    opened: Vec<(Term, NodeId)>,
    drops_left: u8,
    crashed: bool,
    dropped_any: bool,
    /// 0 = never cut off, 1 = the initial primary is cut off, 2 = healed.
    cut: u8,
}

#[derive(Clone, Debug, PartialEq)]
enum Act {
    Tick(usize),
    Deliver(usize),
    Drop(usize),
    CrashPrimary,
    /// Cut the initial primary off from everyone (it keeps running).
    IsolatePrimary,
    Heal,
}

fn config() -> Config {
    Config {
        ping_interval: STEP,
        node_timeout: 3 * STEP,
        election_jitter: 0,
        election_timeout: 2 * STEP,
        safety_retries: 2,
        failover_max_lag: 100,
        split_check_interval: STEP,
        lease: STEP,
        catchup_wait: 2 * STEP,
    }
}

fn seqs_of(i: usize) -> u64 {
    if i <= 1 {
        3
    } else {
        2
    }
}

impl ControlModel {
    fn new(n: u32, horizon: u64, drops: u8, scenario: Scenario) -> Self {
        ControlModel {
            n,
            horizon,
            drops,
            scenario,
            cfg: config(),
        }
    }

    fn apply(&self, s: &mut State, i: usize, out: Output) {
        for e in out.sends {
            let m = (i as NodeId, e.to, e.msg);
            if let Message::Ping(_) = m.2 {
                // Newest ping per link replaces the older one.
                s.net.retain(|(f, t, old)| {
                    !(*f == m.0 && *t == m.1 && matches!(old, Message::Ping(_)))
                });
            }
            if !s.net.contains(&m) {
                s.net.push(m);
            }
        }
        let mut follow_up = Vec::new();
        for a in out.actions {
            match a {
                Action::OpenForWrites { term } => s.opened.push((term, i as NodeId)),
                Action::Pull { shard, from, up_to } => {
                    let mut p = s.nodes[i].progress().clone();
                    let src = s.nodes[from as usize].progress().seqs[shard];
                    p.seqs[shard] = p.seqs[shard].max(src.min(up_to));
                    follow_up.push(Input::Progress(p));
                }
                Action::MergeFrom { from } => follow_up.push(Input::Merged { from }),
                _ => {}
            }
        }
        for inp in follow_up {
            let now = s.clocks[i];
            let out = s.nodes[i].handle(now, inp);
            self.apply(s, i, out);
        }
        s.net.sort();
    }
}

impl Model for ControlModel {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        let members: Vec<Member> = (0..self.n)
            .map(|id| Member {
                id,
                zone: (id % 3) as u16,
                voter: true,
                holds_data: true,
            })
            .collect();
        let cluster = Cluster { members, shards: 1 };
        let mut nodes = Vec::new();
        for id in 0..self.n {
            let mut node = Node::new(id, cluster.clone(), self.cfg.clone(), 7, 0, 1, Some(0));
            let p = Progress {
                history: 1,
                seqs: vec![seqs_of(id as usize)],
            };
            node.handle(0, Input::Progress(p));
            if id == 0 {
                node.handle(0, Input::Commit(vec![3]));
            }
            nodes.push(node);
        }
        let mut up = vec![true; self.n as usize];
        up[0] = self.scenario != Scenario::Crashed;
        vec![State {
            nodes,
            clocks: vec![0; self.n as usize],
            up,
            net: Vec::new(),
            opened: Vec::new(),
            drops_left: self.drops,
            crashed: self.scenario == Scenario::Crashed,
            dropped_any: false,
            cut: u8::from(self.scenario == Scenario::Isolated),
        }]
    }

    fn actions(&self, s: &State, acts: &mut Vec<Act>) {
        // Faults first, so the depth-first search dives into them early.
        if self.scenario == Scenario::Late && !s.crashed && s.cut == 0 {
            acts.push(Act::CrashPrimary);
            acts.push(Act::IsolatePrimary);
        }
        if s.cut == 1 {
            acts.push(Act::Heal);
        }
        let low = (0..s.nodes.len())
            .filter(|i| s.up[*i])
            .map(|i| s.clocks[i])
            .min()
            .unwrap_or(0);
        for i in 0..s.nodes.len() {
            if s.up[i] && s.clocks[i] + STEP <= self.horizon && s.clocks[i] <= low {
                acts.push(Act::Tick(i));
            }
        }
        for k in 0..s.net.len() {
            acts.push(Act::Deliver(k));
            if s.drops_left > 0 {
                acts.push(Act::Drop(k));
            }
        }
    }

    fn next_state(&self, last: &State, a: Act) -> Option<State> {
        let mut s = last.clone();
        match a {
            Act::Tick(i) => {
                s.clocks[i] += STEP;
                let now = s.clocks[i];
                let out = s.nodes[i].handle(now, Input::Tick);
                self.apply(&mut s, i, out);
            }
            Act::Deliver(k) => {
                let (from, to, msg) = s.net.remove(k);
                let i = to as usize;
                let cut_off = s.cut == 1 && (from == 0 || to == 0);
                if s.up[i] && !cut_off {
                    let now = s.clocks[i];
                    let out = s.nodes[i].handle(now, Input::Receive { from, msg });
                    self.apply(&mut s, i, out);
                }
            }
            Act::Drop(k) => {
                s.net.remove(k);
                s.drops_left -= 1;
                s.dropped_any = true;
            }
            Act::CrashPrimary => {
                s.crashed = true;
                s.up[0] = false;
                s.net.retain(|(f, t, _)| *f != 0 && *t != 0);
            }
            Act::IsolatePrimary => s.cut = 1,
            Act::Heal => s.cut = 2,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one winner per term", |_, s: &State| {
                s.opened
                    .iter()
                    .all(|(t, n)| s.opened.iter().all(|(t2, n2)| t != t2 || n == n2))
            }),
            Property::always("no stale promotion", |_, s: &State| {
                s.nodes.iter().all(|n| match n.open_term() {
                    Some(t) if t > 1 => n.progress().seqs[0] >= 3,
                    _ => true,
                })
            }),
            Property::always("one strong writer", |_, s: &State| {
                (0..s.nodes.len())
                    .filter(|i| s.up[*i] && s.nodes[*i].can_accept_strong(s.clocks[*i]))
                    .count()
                    <= 1
            }),
            Property::always("no failover while healthy", |_, s: &State| {
                s.crashed || s.cut > 0 || s.dropped_any || s.nodes.iter().all(|n| n.term() == 1)
            }),
            Property::sometimes("failover happens", |_, s: &State| {
                s.opened.iter().any(|(t, n)| *t > 1 && *n != 0)
            }),
        ]
    }
}

fn check(model: ControlModel, secs: u64) -> usize {
    let scenario = model.scenario;
    let checker = model
        .checker()
        .threads(2)
        .timeout(std::time::Duration::from_secs(secs))
        .spawn_dfs()
        .join();
    checker.assert_no_discovery("one winner per term");
    checker.assert_no_discovery("no stale promotion");
    checker.assert_no_discovery("one strong writer");
    checker.assert_no_discovery("no failover while healthy");
    if matches!(scenario, Scenario::Crashed | Scenario::Isolated) {
        assert!(
            checker.discovery("failover happens").is_some(),
            "{scenario:?}: the model never reached a failover: the bound is too small to mean anything"
        );
    }
    eprintln!(
        "{scenario:?}: explored {} states ({} unique), max depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    checker.unique_state_count()
}

fn budget() -> u64 {
    std::env::var("KEEL_MC_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

#[test]
fn three_nodes_primary_crash() {
    assert!(check(ControlModel::new(3, 1200, 1, Scenario::Crashed), budget()) > 1000);
}

#[test]
fn three_nodes_primary_cut_off_then_healed() {
    assert!(check(ControlModel::new(3, 1200, 1, Scenario::Isolated), budget()) > 1000);
}

#[test]
fn three_nodes_healthy_with_drops() {
    assert!(check(ControlModel::new(3, 1000, 2, Scenario::Healthy), budget()) > 1000);
}

#[test]
fn three_nodes_faults_at_any_time() {
    assert!(check(ControlModel::new(3, 1000, 1, Scenario::Late), budget()) > 1000);
}

/// Five nodes: the state space is far larger and the search stops at its time
/// budget. Too slow for CI; run by hand:
/// `KEEL_MC_SECS=300 cargo test --release --test control_model -- --ignored`.
#[test]
#[ignore]
fn five_nodes_primary_crash_and_cut_off() {
    let secs = budget();
    assert!(check(ControlModel::new(5, 1200, 1, Scenario::Crashed), secs) > 1000);
    assert!(check(ControlModel::new(5, 1200, 1, Scenario::Isolated), secs) > 1000);
}
