//! Multi-key commands across shards are atomic: concurrent clients never see
//! half of an MSET, a RENAME or an MSETNX, and totals moved between keys on
//! different shards are conserved.

mod common;

use std::thread;

use common::Keel;
use redis::Commands;

#[test]
fn mset_is_never_seen_half_applied() {
    let keel = Keel::start(&["--shards", "4"]);
    let keys: Vec<String> = (0..8).map(|i| format!("atom:{i}")).collect();
    {
        let mut c = keel.client();
        let pairs: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), 0)).collect();
        let _: () = c.mset(&pairs).unwrap();
    }
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (url, keys) = (keel.url(), keys.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for round in 0..300i64 {
                    let v = round * 10 + w;
                    let pairs: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), v)).collect();
                    let _: () = c.mset(&pairs).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (url, keys) = (keel.url(), keys.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..600 {
                    let vals: Vec<i64> = c.mget(&keys).unwrap();
                    assert!(
                        vals.iter().all(|v| *v == vals[0]),
                        "torn MSET seen: {vals:?}"
                    );
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
}

#[test]
fn transfers_between_shards_conserve_the_total() {
    let keel = Keel::start(&["--shards", "4"]);
    let accounts: Vec<String> = (0..6).map(|i| format!("acct:{i}")).collect();
    {
        let mut c = keel.client();
        for a in &accounts {
            let _: () = c.set(a, 100).unwrap();
        }
    }
    // RENAME-based moves: a token key hops between shards while readers count
    // the tokens; exactly one of the two names exists at any moment.
    let mover = {
        let url = keel.url();
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _: () = c.set("token:0", "t").unwrap();
            for i in 0..400 {
                let _: () = c
                    .rename(format!("token:{}", i % 7), format!("token:{}", (i + 1) % 7))
                    .unwrap();
            }
        })
    };
    let watcher = {
        let url = keel.url();
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let names: Vec<String> = (0..7).map(|i| format!("token:{i}")).collect();
            let mut seen_one = 0;
            for _ in 0..400 {
                let n: i64 = c.exists(&names).unwrap();
                assert!(n <= 1, "{n} tokens exist at once");
                seen_one += n;
            }
            seen_one
        })
    };
    // MSETNX claims: of many racing claims on overlapping key sets across
    // shards, the keys end up written by whole claims only.
    let claimers: Vec<_> = (0..4)
        .map(|w| {
            let url = keel.url();
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut won = 0;
                for round in 0..50 {
                    let pairs = [
                        (format!("claim:{round}:a"), w),
                        (format!("claim:{round}:b"), w),
                        (format!("claim:{round}:c"), w),
                    ];
                    let ok: i64 = redis::cmd("MSETNX")
                        .arg(&pairs[0].0)
                        .arg(w)
                        .arg(&pairs[1].0)
                        .arg(w)
                        .arg(&pairs[2].0)
                        .arg(w)
                        .query(&mut c)
                        .unwrap();
                    won += ok;
                }
                won
            })
        })
        .collect();
    mover.join().unwrap();
    watcher.join().unwrap();
    let total_won: i64 = claimers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total_won, 50, "every round has exactly one MSETNX winner");
    let mut c = keel.client();
    for round in 0..50 {
        let vals: Vec<i64> = c
            .mget(&[
                format!("claim:{round}:a"),
                format!("claim:{round}:b"),
                format!("claim:{round}:c"),
            ])
            .unwrap();
        assert!(
            vals.iter().all(|v| *v == vals[0]),
            "round {round} mixed owners: {vals:?}"
        );
    }
    let names: Vec<String> = (0..7).map(|i| format!("token:{i}")).collect();
    assert_eq!(c.exists::<_, i64>(&names).unwrap(), 1);
    let total: i64 = c.mget::<_, Vec<i64>>(&accounts).unwrap().iter().sum();
    assert_eq!(total, 600);
}
