//! Long soak of the control-plane simulator, and the source of the figures in
//! the control-plane section of `bench/RESULTS.md`.
//!
//! ```text
//! cargo run --release --example sim_soak -- --seeds 2000
//! cargo run --release --example sim_soak -- --replay 1234 --nodes 3 --nemesis Mixed [--strong] [--arbiter]
//! cargo run --release --example sim_soak -- --seeds 500 --nemesis Membership [--draft-rule restamp|...|all]
//! ```
//!
//! `--draft-rule` runs one membership rule (or all) as the first draft of
//! keel's driver had it instead of the fix (see `MembershipRules`).

use keel::control::sim::{run_seed, FailoverTimes, MembershipRules, Nemesis, SimConfig};

struct Args {
    seeds: u64,
    replay: Option<u64>,
    nodes: u32,
    nemesis: Option<Nemesis>,
    strong: bool,
    arbiter: bool,
    rules: MembershipRules,
}

fn parse() -> Args {
    let mut a = Args {
        seeds: 500,
        replay: None,
        nodes: 3,
        nemesis: None,
        strong: false,
        arbiter: false,
        rules: MembershipRules::default(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seeds" => a.seeds = val.parse().unwrap_or(a.seeds),
            "--replay" => a.replay = val.parse().ok(),
            "--nodes" => a.nodes = val.parse().unwrap_or(3),
            "--draft-rule" => match val.as_str() {
                "all" => a.rules = MembershipRules::FIRST_DRAFT,
                "push_unheard" => a.rules.push_unheard = false,
                "answer_non_members" => a.rules.answer_non_members = false,
                "rejoin" => a.rules.rejoin = false,
                "restamp" => a.rules.restamp = false,
                other => {
                    eprintln!("unknown rule {other}");
                    std::process::exit(2);
                }
            },
            "--nemesis" => {
                a.nemesis = Nemesis::ALL
                    .into_iter()
                    .chain([Nemesis::Membership])
                    .find(|n| format!("{n:?}") == val)
            }
            "--strong" => {
                a.strong = true;
                i += 1;
                continue;
            }
            "--arbiter" => {
                a.arbiter = true;
                i += 1;
                continue;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// Builds a simulation config for a nemesis and a consistency mode.
type Layout = fn(Nemesis, bool) -> SimConfig;

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

fn summary(name: &str, v: &mut [u64]) {
    if v.is_empty() {
        println!("{name:<28} (no samples)");
        return;
    }
    let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    println!(
        "{name:<28} n={:<6} p50={p50:>5} ms  p99={p99:>5} ms  max={max:>5} ms",
        v.len()
    );
}

fn main() {
    let a = parse();
    if let Some(seed) = a.replay {
        let nemesis = a.nemesis.unwrap_or(Nemesis::Mixed);
        let mut cfg = if a.arbiter {
            SimConfig::two_zones_with_arbiter(nemesis, a.strong)
        } else {
            SimConfig::three_zones(a.nodes, nemesis, a.strong)
        };
        cfg.rules = a.rules;
        cfg.trace = true;
        match run_seed(seed, &cfg) {
            Ok(r) => {
                for l in &r.trace {
                    println!("{l}");
                }
                println!(
                    "seed {seed}: ok elections={} failover={:?} heals={:?} lists={} removed={} removed_writes={}",
                    r.elections, r.failover, r.heals, r.list_changes, r.removed, r.removed_writes
                );
            }
            Err(v) => {
                println!("{v}");
                for l in &v.trace {
                    println!("{l}");
                }
                std::process::exit(1);
            }
        }
        return;
    }
    let started = std::time::Instant::now();
    let mut failures = 0u64;
    let mut runs = 0u64;
    let nemeses: Vec<Nemesis> = a.nemesis.map(|n| vec![n]).unwrap_or(Nemesis::ALL.to_vec());
    let layouts: [(&str, Layout); 3] = [
        ("3 nodes, 3 zones", |n, s| SimConfig::three_zones(3, n, s)),
        ("5 nodes, 3 zones", |n, s| SimConfig::three_zones(5, n, s)),
        ("2 zones + arbiter", SimConfig::two_zones_with_arbiter),
    ];
    let mut fo: Vec<FailoverTimes> = Vec::new();
    let mut fo_by_layout: Vec<(&str, Vec<u64>)> =
        layouts.iter().map(|(l, _)| (*l, Vec::new())).collect();
    let mut heal: Vec<u64> = Vec::new();
    let mut unprotected = 0u64;
    let mut pauses = 0u64;
    let mut split = 0u64;
    let mut loser = 0u64;
    let mut refused = 0u64;
    // Membership: lists made, nodes removed, back in, writes dropped with them.
    let mut lists = [0u64; 4];
    let mut per_nemesis: Vec<(Nemesis, u64, u64, u64)> = Vec::new();
    for nemesis in &nemeses {
        let (mut n_runs, mut n_fail, mut n_elections) = (0, 0, 0);
        for strong in [false, true] {
            for (li, (_, make)) in layouts.iter().enumerate() {
                let mut cfg = make(*nemesis, strong);
                cfg.rules = a.rules;
                for seed in 0..a.seeds {
                    runs += 1;
                    n_runs += 1;
                    match run_seed(seed, &cfg) {
                        Err(v) => {
                            failures += 1;
                            n_fail += 1;
                            if failures <= 5 {
                                println!(
                                    "FAIL layout={} strong={strong} nemesis={nemesis:?}: {v}",
                                    layouts[li].0
                                );
                            }
                        }
                        Ok(r) => {
                            n_elections += r.elections;
                            unprotected += r.unprotected_strong_acks;
                            pauses += r.write_pauses;
                            split += r.split_brain_elections;
                            loser += r.loser_merges;
                            refused += r.hlc_refused;
                            lists[0] += r.list_changes;
                            lists[1] += r.removed;
                            lists[2] += r.rejoined;
                            lists[3] += r.removed_writes;
                            if matches!(nemesis, Nemesis::CrashPrimary | Nemesis::ZoneOutage) {
                                fo.extend(r.failover);
                                fo_by_layout[li].1.extend(r.failover.map(|f| f.total()));
                            }
                            if matches!(nemesis, Nemesis::ZoneOutage | Nemesis::Partitions) {
                                heal.extend(r.heals.iter().copied());
                            }
                        }
                    }
                }
            }
        }
        per_nemesis.push((*nemesis, n_runs, n_fail, n_elections));
    }
    println!(
        "runs={runs} failures={failures} wall={:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "{:<14} {:>6} {:>9} {:>10}",
        "nemesis", "runs", "failures", "elections"
    );
    for (n, r, f, e) in &per_nemesis {
        println!("{:<14} {r:>6} {f:>9} {e:>10}", format!("{n:?}"));
    }
    println!();
    println!(
        "failover (primary crash or zone cut off -> new primary open for writes), all layouts:"
    );
    summary(
        "failover total",
        &mut fo.iter().map(|f| f.total()).collect::<Vec<_>>(),
    );
    summary(
        "  detection",
        &mut fo.iter().map(|f| f.detection).collect::<Vec<_>>(),
    );
    summary(
        "  election",
        &mut fo.iter().map(|f| f.election).collect::<Vec<_>>(),
    );
    summary(
        "  catch-up",
        &mut fo.iter().map(|f| f.catch_up).collect::<Vec<_>>(),
    );
    for (l, v) in &mut fo_by_layout {
        summary(&format!("total, {l}"), v);
    }
    println!();
    summary("heal to convergence", &mut heal);
    let false_failovers: u64 = per_nemesis
        .iter()
        .filter(|(n, ..)| n.must_not_fail_over())
        .map(|(.., e)| *e)
        .sum();
    println!("false failovers (elections under Calm, ShortPauses, Flapping): {false_failovers}");
    println!("elections started by the split-brain check: {split}");
    println!("merges asked by an open primary of a diverged member: {loser}");
    println!("remote HLCs refused for drift: {refused}");
    println!("safety-check write pauses: {pauses}; strong acks outside the guarantee (every holder down): {unprotected}");
    if lists[0] > 0 {
        println!(
            "member lists made: {}; nodes removed: {}, back in a newer list: {}; eventual writes left only on removed nodes: {}",
            lists[0], lists[1], lists[2], lists[3]
        );
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
