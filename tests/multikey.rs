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

#[test]
fn multi_exec_transfers_conserve_the_total_across_shards() {
    let keel = Keel::start(&["--shards", "4"]);
    let accounts: Vec<String> = (0..5).map(|i| format!("bank:{i}")).collect();
    {
        let mut c = keel.client();
        for a in &accounts {
            let _: () = c.set(a, 1000).unwrap();
        }
    }
    let movers: Vec<_> = (0..4)
        .map(|w| {
            let (url, accounts) = (keel.url(), accounts.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for i in 0..150usize {
                    let from = &accounts[(i + w) % accounts.len()];
                    let to = &accounts[(i * 3 + w + 1) % accounts.len()];
                    let _: () = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(from)
                        .arg(7)
                        .ignore()
                        .cmd("INCRBY")
                        .arg(to)
                        .arg(7)
                        .ignore()
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    let auditors: Vec<_> = (0..2)
        .map(|_| {
            let (url, accounts) = (keel.url(), accounts.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..200 {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for a in &accounts {
                        pipe.cmd("GET").arg(a);
                    }
                    let balances: Vec<i64> = pipe.query(&mut c).unwrap();
                    assert_eq!(balances.iter().sum::<i64>(), 5000, "saw {balances:?}");
                }
            })
        })
        .collect();
    for t in movers.into_iter().chain(auditors) {
        t.join().unwrap();
    }
    let mut c = keel.client();
    let total: i64 = c.mget::<_, Vec<i64>>(&accounts).unwrap().iter().sum();
    assert_eq!(total, 5000);
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changed() {
    let keel = Keel::start(&["--shards", "2"]);
    let mut c = keel.client();
    let mut other = keel.client();
    let _: () = c.set("w:a", 1).unwrap();
    let _: () = redis::cmd("WATCH")
        .arg("w:a")
        .arg("w:b")
        .query(&mut c)
        .unwrap();
    let _: () = other.set("w:b", "changed").unwrap();
    let r: Option<Vec<String>> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("w:a")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None, "EXEC ran although a watched key changed");
    assert_eq!(c.get::<_, i64>("w:a").unwrap(), 1);
    // Unchanged watched keys let EXEC through; WATCH ends with EXEC.
    let _: () = redis::cmd("WATCH").arg("w:a").query(&mut c).unwrap();
    let r: Option<Vec<String>> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("w:a")
        .arg(3)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, Some(vec!["OK".to_string()]));
    let _: () = other.set("w:a", 4).unwrap();
    let r: Option<Vec<String>> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("w:a")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, Some(vec!["OK".to_string()]));
    // Queueing errors abort with EXECABORT; runtime errors do not.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    assert!(redis::cmd("GET").query::<String>(&mut c).is_err());
    let e = redis::cmd("EXEC")
        .query::<redis::Value>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("discarded because of previous errors"),
        "{e}"
    );
    // The INCR on a string fails inside EXEC; the pipeline reports it, but the
    // other commands of the transaction still ran.
    let _ = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("w:a")
        .cmd("SET")
        .arg("w:s")
        .arg("x")
        .cmd("INCR")
        .arg("w:s")
        .query::<redis::Value>(&mut c);
    let s: String = c.get("w:s").unwrap();
    assert_eq!(s, "x");
    assert_eq!(c.get::<_, i64>("w:a").unwrap(), 6);
}
