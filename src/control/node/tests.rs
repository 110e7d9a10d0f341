//! Transcript tests for one member and a tiny in-process network: each test names
//! the rule it checks.

use super::*;
use crate::control::{Cluster, Config, Member};

fn cluster(n: u32) -> Cluster {
    Cluster {
        members: (0..n)
            .map(|id| Member {
                id,
                zone: (id % 3) as u16,
                voter: true,
                holds_data: true,
            })
            .collect(),
        shards: 2,
    }
}

/// Nodes wired by instant delivery; `cut` holds node pairs that cannot talk.
struct Bench {
    nodes: Vec<Node>,
    up: Vec<bool>,
    cut: Vec<(NodeId, NodeId)>,
    now: Millis,
    actions: Vec<(NodeId, Action)>,
    /// Pulls are never answered (they complete at once otherwise).
    hang_pulls: bool,
}

impl Bench {
    fn new(n: u32) -> Bench {
        let c = cluster(n);
        Bench {
            nodes: (0..n)
                .map(|id| Node::new(id, c.clone(), Config::default(), 1, 0, 1, Some(0)))
                .collect(),
            up: vec![true; n as usize],
            cut: Vec::new(),
            now: 0,
            actions: Vec::new(),
            hang_pulls: false,
        }
    }

    fn set_seqs(&mut self, id: usize, seqs: &[u64]) {
        self.set_progress(id, 1, seqs);
    }

    fn set_progress(&mut self, id: usize, history: Term, seqs: &[u64]) {
        let p = Progress {
            history,
            seqs: seqs.to_vec(),
        };
        let out = self.nodes[id].handle(self.now, Input::Progress(p));
        self.carry(id, out);
    }

    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        self.up[a as usize] && self.up[b as usize] && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn carry(&mut self, from: usize, out: Output) {
        let mut queue = vec![(from, out)];
        while let Some((i, out)) = queue.pop() {
            for a in out.actions {
                if let Action::Pull {
                    shard,
                    from: src,
                    up_to,
                } = &a
                {
                    if self.hang_pulls {
                        self.actions.push((i as NodeId, a));
                        continue;
                    }
                    // Pulls complete at once in this bench.
                    let mut p = self.nodes[i].progress().clone();
                    p.seqs[*shard] =
                        (*up_to).min(self.nodes[*src as usize].progress().seqs[*shard]);
                    let o = self.nodes[i].handle(self.now, Input::Progress(p));
                    queue.push((i, o));
                }
                self.actions.push((i as NodeId, a));
            }
            for e in out.sends {
                if self.linked(i as NodeId, e.to) {
                    let o = self.nodes[e.to as usize].handle(
                        self.now,
                        Input::Receive {
                            from: i as NodeId,
                            msg: e.msg,
                        },
                    );
                    queue.push((e.to as usize, o));
                }
            }
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            for i in 0..self.nodes.len() {
                if self.up[i] {
                    let out = self.nodes[i].handle(self.now, Input::Tick);
                    self.carry(i, out);
                }
            }
        }
    }

    fn opened(&self) -> Vec<(NodeId, Term)> {
        self.actions
            .iter()
            .filter_map(|(n, a)| match a {
                Action::OpenForWrites { term } => Some((*n, *term)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn the_best_survivor_is_elected_after_the_primary_crashes() {
    let mut b = Bench::new(3);
    b.set_seqs(0, &[5, 5]);
    b.set_seqs(1, &[5, 4]);
    b.set_seqs(2, &[5, 5]);
    b.run(500);
    b.up[0] = false;
    b.run(3000);
    assert_eq!(b.opened(), vec![(2, 2)]);
    assert!(b.nodes[1].primary() == Some(2));
}

#[test]
fn the_winner_pulls_what_it_lacks_before_opening() {
    let mut b = Bench::new(3);
    // Node 1 has the most in total, node 2 is ahead on shard 1.
    b.set_seqs(1, &[9, 3]);
    b.set_seqs(2, &[2, 4]);
    b.run(500);
    b.up[0] = false;
    b.run(3000);
    assert_eq!(b.opened(), vec![(1, 2)]);
    assert_eq!(b.nodes[1].progress().seqs, vec![9, 4]);
    let pulled = b.actions.iter().any(|(n, a)| {
        *n == 1
            && *a
                == Action::Pull {
                    shard: 1,
                    from: 2,
                    up_to: 4,
                }
    });
    assert!(pulled);
}

#[test]
fn a_cut_off_member_never_bumps_the_term() {
    let mut b = Bench::new(3);
    b.cut = vec![(0, 2), (1, 2)];
    b.run(5000);
    // Node 2 suspects everyone but cannot win a pre-vote, so the term stays.
    assert_eq!(b.nodes[2].term(), 1);
    b.cut.clear();
    b.run(1000);
    assert!(b
        .actions
        .iter()
        .all(|(_, a)| !matches!(a, Action::StartElection { .. })));
    assert_eq!(b.nodes[0].open_term(), Some(1));
}

#[test]
fn one_flapping_link_to_the_primary_is_not_a_failure() {
    let mut b = Bench::new(3);
    b.cut = vec![(0, 1)];
    b.run(5000);
    assert!(b
        .actions
        .iter()
        .all(|(_, a)| !matches!(a, Action::Failed { node: 0 })));
    assert_eq!(b.opened(), vec![]);
}

#[test]
fn a_cut_off_primary_steps_down_when_it_hears_the_new_term() {
    let mut b = Bench::new(3);
    b.cut = vec![(0, 1), (0, 2)];
    b.run(3000);
    assert_eq!(b.opened().len(), 1);
    assert_eq!(
        b.nodes[0].open_term(),
        Some(1),
        "minority primary stays open"
    );
    assert!(!b.nodes[0].can_accept_strong(b.now), "but holds no lease");
    b.cut.clear();
    b.run(500);
    assert_eq!(b.nodes[0].open_term(), None);
    assert_eq!(b.nodes[0].primary(), b.opened().first().map(|(n, _)| *n));
}

#[test]
fn no_eligible_replica_pauses_writes_and_a_forced_failover_is_logged() {
    let mut b = Bench::new(3);
    b.set_seqs(0, &[10, 10]);
    let out = b.nodes[0].handle(b.now, Input::Commit(vec![10, 10]));
    b.carry(0, out);
    b.set_seqs(1, &[8, 10]);
    b.set_seqs(2, &[10, 7]);
    b.run(500);
    b.up[0] = false;
    b.run(4000);
    assert_eq!(b.opened(), vec![], "nobody holds the commit point");
    assert!(b.nodes[1].writes_paused() || b.nodes[2].writes_paused());
    let out = b.nodes[1].handle(b.now, Input::ForceFailover);
    b.carry(1, out);
    b.run(1000);
    assert!(b
        .actions
        .iter()
        .any(|(n, a)| *n == 1 && matches!(a, Action::ForcedFailover { .. })));
    assert_eq!(b.opened().first().map(|(n, _)| *n), Some(1));
}

#[test]
fn a_handover_opens_the_target_within_a_few_pings_and_only_the_primary_can_ask() {
    let mut b = Bench::new(3);
    b.set_seqs(0, &[10, 10]);
    b.set_seqs(1, &[10, 10]);
    b.set_seqs(2, &[10, 10]);
    b.run(500);
    // A member that is not the primary cannot hand over.
    let out = b.nodes[1].handle(b.now, Input::HandOver { to: 2 });
    b.carry(1, out);
    b.run(300);
    assert_eq!(b.opened(), vec![]);
    let out = b.nodes[0].handle(b.now, Input::HandOver { to: 2 });
    b.carry(0, out);
    let asked = b.now;
    while b.opened().is_empty() && b.now < asked + 2000 {
        b.run(10);
    }
    assert_eq!(b.opened(), vec![(2, 2)]);
    // No lease to wait out (the old primary gave it up): a vote round and
    // one ping from each live member in the new term.
    assert!(
        b.now - asked <= 250,
        "opened {} ms after the handover",
        b.now - asked
    );
    b.run(300);
    assert_eq!(b.nodes[0].primary(), Some(2), "the old primary follows");
    assert!(b.nodes[0].open_term().is_none());
}

/// Node `id` as a learner: holds data, no vote.
fn with_learner(mut c: Cluster, id: NodeId) -> Cluster {
    c.members.push(Member {
        id,
        zone: (id % 3) as u16,
        voter: false,
        holds_data: true,
    });
    c
}

#[test]
fn a_learner_never_stands_even_when_it_holds_the_most() {
    let mut b = Bench::new(3);
    let c = with_learner(cluster(3), 3);
    for n in &mut b.nodes {
        n.set_cluster(c.clone());
    }
    b.nodes
        .push(Node::new(3, c, Config::default(), 1, 0, 1, Some(0)));
    b.up.push(true);
    b.set_seqs(1, &[4, 4]);
    b.set_seqs(2, &[5, 5]);
    b.set_seqs(3, &[9, 9]);
    b.run(500);
    b.up[0] = false;
    b.run(3000);
    // The best voter wins (and then pulls from the learner); writes never
    // pause waiting for a learner that will not stand.
    assert_eq!(b.opened(), vec![(2, 2)]);
    assert_eq!(b.nodes[3].primary(), Some(2));
    assert!(!b.actions.iter().any(|(_, a)| *a == Action::PauseWrites));
}

#[test]
fn after_a_promotion_and_a_removal_the_new_voters_elect() {
    let mut b = Bench::new(3);
    b.run(300);
    // Add 3 as a learner, promote it, then remove 2 (which is gone).
    let learner = with_learner(cluster(3), 3);
    for n in &mut b.nodes {
        n.set_cluster(learner.clone());
    }
    b.nodes.push(Node::new(
        3,
        learner.clone(),
        Config::default(),
        1,
        b.now,
        1,
        Some(0),
    ));
    b.up.push(true);
    b.run(300);
    let mut promoted = learner;
    promoted.members[3].voter = true;
    for n in &mut b.nodes {
        n.set_cluster(promoted.clone());
    }
    b.run(300);
    let mut without_2 = promoted;
    without_2.members.retain(|m| m.id != 2);
    b.up[2] = false;
    for (i, n) in b.nodes.iter_mut().enumerate() {
        if i != 2 {
            n.set_cluster(without_2.clone());
        }
    }
    b.run(2000);
    assert!(b.opened().is_empty(), "no election while the primary lives");
    // Voters 0, 1, 3: with 0 gone, 1 and 3 are a majority.
    b.up[0] = false;
    b.run(3000);
    let opened = b.opened();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(matches!(opened[0], (1, 2) | (3, 2)), "{opened:?}");
}

#[test]
fn a_voter_whose_primary_a_new_list_drops_still_waits_out_its_silence() {
    // A list made elsewhere (by a primary of a later term) drops the primary
    // that 1 and 2 follow; it still runs, and may hold a lease on their last
    // echoes. Its messages no longer count, but neither may vote it out
    // before `node_timeout` of silence, as if it were still a member.
    let mut b = Bench::new(3);
    b.run(300);
    let mut without_0 = cluster(3);
    without_0.members.retain(|m| m.id != 0);
    for n in &mut b.nodes[1..] {
        n.set_cluster(without_0.clone());
    }
    b.run(800);
    let elections = b
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::StartElection { .. }))
        .count();
    assert_eq!(elections, 0, "{:?}", b.actions);
    b.run(3000);
    assert!(matches!(b.opened()[..], [(1 | 2, 2)]), "{:?}", b.opened());
}

#[test]
fn the_winner_merges_only_once_its_pulls_landed() {
    // 1 wins; it lacks shard 1 records that 2 holds (a pull) and 3 is on
    // another history (a merge). A pull is judged done by the shard's seq:
    // a merge applied first would lengthen the log and pass for it.
    let mut b = Bench::new(4);
    b.set_seqs(1, &[9, 3]);
    b.set_seqs(2, &[2, 4]);
    b.set_progress(3, 7, &[1, 1]);
    b.run(500);
    b.up[0] = false;
    b.hang_pulls = true;
    b.run(3000);
    let asked = |b: &Bench, merge: bool| {
        b.actions.iter().any(|(n, a)| {
            *n == 1
                && if merge {
                    matches!(a, Action::MergeFrom { from: 3 })
                } else {
                    matches!(
                        a,
                        Action::Pull {
                            shard: 1,
                            from: 2,
                            ..
                        }
                    )
                }
        })
    };
    assert!(asked(&b, false), "{:?}", b.actions);
    assert!(!asked(&b, true), "a merge went out before the pull landed");
    b.hang_pulls = false;
    b.run(500);
    assert!(asked(&b, true), "{:?}", b.actions);
}
