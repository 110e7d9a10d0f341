//! Seeded runs: every nemesis, eventual and strong mode, 3 and 5 nodes, and a
//! two-zone layout with an arbiter. `KEEL_SIM_SEEDS` sets seeds per scenario.
//! Then membership changes (`KEEL_SIM_MEMBERSHIP_SEEDS`), and the runs that
//! fail under the first draft of keel's driver rules where the model (and
//! now the driver) runs a fix.

use super::*;

fn seeds() -> u64 {
    std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

fn sweep(name: &str, make: impl Fn(u64) -> SimConfig + Sync) {
    sweep_seeds(name, seeds(), make);
}

/// Runs seeds `0..n` of `make` on two threads; fails with the traces of the
/// first failing seeds (and with any election under a nemesis that must
/// cause none).
fn sweep_seeds(name: &str, n: u64, make: impl Fn(u64) -> SimConfig + Sync) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|lane| {
                let make = &make;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for seed in (lane..n).step_by(2) {
                        let cfg = make(seed);
                        let r = run_seed(seed, &cfg);
                        match r {
                            Err(v) => {
                                // Replay with the trace on, to print what happened.
                                let mut t = cfg.clone();
                                t.trace = true;
                                let again = run_seed(seed, &t).err().map(|v| v.to_string());
                                bad.push(again.unwrap_or_else(|| format!("{v} (did not replay!)")));
                            }
                            Ok(rep) if cfg.nemesis.must_not_fail_over() && rep.elections > 0 => {
                                bad.push(format!(
                                    "seed {seed}: {} elections under {:?}",
                                    rep.elections, cfg.nemesis
                                ));
                            }
                            Ok(_) => {}
                        }
                        if bad.len() >= 2 {
                            break;
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{name}: {} failing seeds\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn nemesis_of(seed: u64) -> Nemesis {
    Nemesis::ALL[(seed % Nemesis::ALL.len() as u64) as usize]
}

#[test]
fn same_seed_replays_exactly() {
    let cfg = SimConfig::three_zones(3, Nemesis::Mixed, false);
    let a = run_seed(11, &cfg).map(|r| (r.elections, r.acked, r.failover, r.heals.clone()));
    let b = run_seed(11, &cfg).map(|r| (r.elections, r.acked, r.failover, r.heals.clone()));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn crash_of_the_primary_fails_over_and_converges() {
    // Some seeds restart the primary before `node_timeout`: no failover is then the
    // right outcome. Most must fail over, and all must converge.
    let cfg = SimConfig::three_zones(3, Nemesis::CrashPrimary, false);
    let mut failovers = 0;
    for seed in 0..8 {
        let r = run_seed(seed, &cfg).unwrap_or_else(|v| panic!("{v}"));
        assert!(r.acked > 0, "seed {seed} acknowledged no write");
        if let Some(f) = r.failover {
            failovers += 1;
            assert!(f.detection >= cfg.control.node_timeout - cfg.control.ping_interval);
        }
    }
    assert!(failovers >= 4, "only {failovers} of 8 crashes failed over");
}

#[test]
fn a_cut_off_primary_zone_is_merged_back_after_the_heal() {
    // Eventual mode: the cut-off primary keeps taking writes. After the heal its
    // records since the fork point reach the new primary either because the new
    // primary asks (`MergeFrom`, counted) or because the loser offers them when it
    // resyncs; I6 fails the run if any acknowledged write is missing at the end.
    let mut merges = 0;
    for nodes in [3, 5] {
        let cfg = SimConfig::three_zones(nodes, Nemesis::ZoneOutage, false);
        for seed in 0..10 {
            let r = run_seed(seed, &cfg).unwrap_or_else(|v| panic!("{v}"));
            assert!(r.failover.is_some(), "seed {seed}: no failover");
            merges += r.loser_merges;
        }
    }
    assert!(merges > 0, "no merge from a diverged member was ever asked");
}

#[test]
fn a_pause_under_half_the_timeout_never_fails_over() {
    let cfg = SimConfig::three_zones(5, Nemesis::ShortPauses, true);
    for seed in 0..4 {
        let r = run_seed(seed, &cfg).unwrap_or_else(|v| panic!("{v}"));
        assert_eq!(r.elections, 0, "seed {seed}");
    }
}

#[test]
fn three_nodes_eventual_every_nemesis() {
    sweep("3 nodes eventual", |s| {
        SimConfig::three_zones(3, nemesis_of(s), false)
    });
}

#[test]
fn three_nodes_strong_every_nemesis() {
    sweep("3 nodes strong", |s| {
        SimConfig::three_zones(3, nemesis_of(s), true)
    });
}

#[test]
fn five_nodes_eventual_every_nemesis() {
    sweep("5 nodes eventual", |s| {
        SimConfig::three_zones(5, nemesis_of(s), false)
    });
}

#[test]
fn five_nodes_strong_every_nemesis() {
    sweep("5 nodes strong", |s| {
        SimConfig::three_zones(5, nemesis_of(s), true)
    });
}

#[test]
fn two_zones_with_an_arbiter() {
    sweep("2 zones + arbiter", |s| {
        SimConfig::two_zones_with_arbiter(nemesis_of(s), s % 2 == 0)
    });
}

/// Seeds per membership sweep: `KEEL_SIM_MEMBERSHIP_SEEDS`, else half of
/// `KEEL_SIM_SEEDS` (membership runs carry two joiners more: at 250 seeds
/// the two sweeps add about 20 s to the suite in debug on 2 cores).
fn membership_seeds() -> u64 {
    std::env::var("KEEL_SIM_MEMBERSHIP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seeds() / 2)
}

/// The `Membership` nemesis over `voters` starting voters, strong mode on
/// even seeds, eventual on odd ones.
fn membership_sweep(name: &str, voters: u32) {
    sweep_seeds(name, membership_seeds(), |seed| {
        SimConfig::three_zones(voters, Nemesis::Membership, seed % 2 == 0)
    });
}

#[test]
fn three_voters_membership_changes() {
    membership_sweep("3 voters, membership", 3);
}

#[test]
fn five_voters_membership_changes() {
    membership_sweep("5 voters, membership", 5);
}

#[test]
fn a_replacement_and_an_addition_complete_without_faults() {
    // Replace a voter (learner, promotion, removal), then add a joiner
    // (learner, promotion): after the first primary's re-stamp, five steps.
    let mut cfg = SimConfig::three_zones(3, Nemesis::Calm, true);
    cfg.joiners = 2;
    cfg.script = vec![
        (1_000, Fault::Ask(Change::Replace { pick: 1 })),
        (2_000, Fault::Ask(Change::AddJoiner)),
    ];
    let r = run_seed(3, &cfg).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!((r.list_changes, r.removed), (6, 1), "{r:?}");
    assert!(r.acked > 0);
}

/// Runs `cfg` with one of the driver's first-draft rules in place of the fix:
/// the run must fail with a violation starting `expect`, and pass with the fix.
fn draft_rule_fails(
    seed: u64,
    mut cfg: SimConfig,
    keel: impl Fn(&mut MembershipRules),
    expect: &str,
) {
    run_seed(seed, &cfg).unwrap_or_else(|v| panic!("with the fix: {v}"));
    keel(&mut cfg.rules);
    match run_seed(seed, &cfg) {
        Err(v) => assert!(v.what.starts_with(expect), "{v}"),
        Ok(_) => panic!("seed {seed} passes with the draft's rule: no longer a counterexample"),
    }
}

#[test]
fn draft_push_rule_strands_a_joiner_that_missed_its_push() {
    // keel sends the list only to members heard on an older one: the joiner
    // (never heard) that missed the one push made when it was added waits
    // forever, and its learner entry blocks every later change.
    let cfg = SimConfig::three_zones(3, Nemesis::Membership, false);
    draft_rule_fails(
        7,
        cfg,
        |r| r.push_unheard = false,
        "I6: replicas did not converge",
    );
}

#[test]
fn draft_farewell_misses_a_removed_primary_that_was_away() {
    // n0, the primary, is cut off; n1 wins and removes it; n1 restarts
    // (its in-memory farewell to n0 gone) and n0 comes back still open on
    // its old list, taking eventual writes, told by nobody.
    let cfg = SimConfig::three_zones(3, Nemesis::Membership, false);
    draft_rule_fails(
        32,
        cfg,
        |r| r.answer_non_members = false,
        "I6: replicas did not converge",
    );
}

#[test]
fn draft_stops_a_node_removed_by_a_list_that_then_lost() {
    // A removal made by an older primary reaches a node, which stops for
    // good; a list made in a later term from the same version wins and
    // still has it as a voter, which never comes back.
    let cfg = SimConfig::three_zones(5, Nemesis::Membership, false);
    draft_rule_fails(
        5,
        cfg,
        |r| r.rejoin = false,
        "I6: replicas did not converge",
    );
}

#[test]
fn draft_without_a_restamp_commits_two_removals_and_loses_a_strong_write() {
    // Four voters n0..n3, n0 primary of term 1, strong mode.
    // - n0 is cut off and removes n3: list (1,1) = {0,1,2}, held by n0 only;
    // - n1 wins term 2 on the version-0 list and, once n0 is cut off with n2
    //   instead, removes n0: list (1,2) = {1,2,3}, committed by n1 and n3;
    // - n2 takes (1,1) from n0 (newer than version 0), and n0 and n2, a
    //   majority of (1,1), elect n0 in term 3 while n1 and n3, a majority of
    //   (1,2), acknowledge strong writes: the two majorities do not meet.
    // L1 fails first; without it, n0 opens without a write acknowledged in
    // term 2. With the re-stamp, n1's first step is (2,2) = version 0 again,
    // committed before the second cut: n2 never takes (2,1), and n0 and n2
    // are no majority of (2,2).
    let mut cfg = SimConfig::three_zones(4, Nemesis::Calm, true);
    cfg.script = vec![
        (1_000, Fault::Partition(vec![1, 0, 0, 0])),
        (1_050, Fault::Ask(Change::RemoveVoter { pick: 2 })),
        (2_590, Fault::Partition(vec![0, 1, 0, 1])),
        (2_600, Fault::Ask(Change::RemoveVoter { pick: 0 })),
    ];
    draft_rule_fails(1, cfg.clone(), |r| r.restamp = false, "L1:");
    cfg.list_checks = false;
    draft_rule_fails(1, cfg, |r| r.restamp = false, "I2:");
}
