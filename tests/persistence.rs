//! Persistence through real restarts: data and seq counters survive a
//! SIGKILL, a transaction that reached only some shards' logs is dropped
//! whole (and stays dropped), snapshots bound the logs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::Keel;
use keel_shards::record::{walk, Frame};
use keel_shards::slot::shard_of;
use redis::Commands;

fn data_dir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("keel.persist-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    p
}

fn start(dir: &Path, fsync: &str) -> Keel {
    Keel::start(&[
        "--shards",
        "2",
        "--dir",
        dir.to_str().unwrap(),
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
    ])
}

/// Keys that land on shard `want` of 2.
fn keys_on(want: usize, n: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}:{i}"))
        .filter(|k| shard_of(k.as_bytes(), 2) == want)
        .take(n)
        .collect()
}

fn seqs(c: &mut redis::Connection) -> Vec<u64> {
    let info: String = redis::cmd("INFO").arg("shards").query(c).unwrap();
    info.lines()
        .filter(|l| l.starts_with("shard"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("seq=").or_else(|| kv.split(":seq=").nth(1)))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Starts keel on `dir` with `shards`, expecting it to refuse: its stderr.
fn refused_start(dir: &Path, shards: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "--port",
            "0",
            "--shards",
            shards,
            "--appendonly",
            "yes",
            "--dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "keel started on {}", dir.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mget(c: &mut redis::Connection, keys: &[&str]) -> Vec<Option<String>> {
    redis::cmd("MGET").arg(keys).query(c).unwrap()
}

fn kill(mut k: Keel) {
    let _ = k.child.kill();
    let _ = k.child.wait();
}

/// The newest log of a shard, from its manifest.
fn last_log(dir: &Path, shard: usize) -> PathBuf {
    let sd = dir.join(format!("shard-{shard:03}"));
    let manifest = fs::read_to_string(sd.join("MANIFEST")).unwrap();
    let name = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("log "))
        .next_back()
        .expect("a log in the manifest")
        .to_string();
    sd.join(name)
}

#[test]
fn data_and_seq_survive_a_kill() {
    let dir = data_dir("kill");
    let k = start(&dir, "always");
    let mut c = k.client();
    for i in 0..200 {
        let _: () = c.set(format!("key:{i}"), i).unwrap();
    }
    let _: () = c.hset("h", "f", "v").unwrap();
    let _: i64 = c.incr("counter", 5).unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg("key:0")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    let before = seqs(&mut c);
    assert_eq!(before.len(), 2, "INFO shards lists both shards");
    kill(k);

    let k = start(&dir, "always");
    let mut c = k.client();
    let after: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(after, digest, "the keyspace came back whole");
    assert_eq!(seqs(&mut c), before, "seq counters resume where they were");
    let ttl: i64 = c.ttl("key:0").unwrap();
    assert!(ttl > 900 && ttl <= 1000, "absolute expiry kept: {ttl}");
    // Snapshot + new log, then a kill: still whole.
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    for _ in 0..100 {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        if info.contains("aof_rewrite_in_progress:0") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _: () = c.set("after-rewrite", 1).unwrap();
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    kill(k);
    let k = start(&dir, "always");
    let mut c = k.client();
    let after: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(after, digest);
    drop(k);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_transaction_missing_on_one_shard_is_dropped_everywhere() {
    let dir = data_dir("tx");
    let k = start(&dir, "always");
    let mut c = k.client();
    let a = keys_on(0, 2, "a");
    let b = keys_on(1, 2, "b");
    let _: () = c.set(&a[0], "before").unwrap();
    let _: () = c.set(&b[0], "before").unwrap();
    // One transaction over both shards.
    let _: () = redis::pipe()
        .atomic()
        .set(&a[1], "tx")
        .set(&b[1], "tx")
        .query(&mut c)
        .unwrap();
    kill(k);

    // Crash simulation: shard 1's part never reached its log.
    let log = last_log(&dir, 1);
    let bytes = fs::read(&log).unwrap();
    let mut unit_at = None;
    walk(&bytes, |at, f| {
        if matches!(f, Frame::Unit { .. }) {
            unit_at = Some(at);
        }
        true
    });
    let at = unit_at.expect("shard 1's log holds the transaction's unit");
    fs::write(&log, &bytes[..at]).unwrap();

    let k = start(&dir, "always");
    let mut c = k.client();
    let got = mget(&mut c, &[&a[0], &b[0], &a[1], &b[1]]);
    assert_eq!(
        got,
        vec![Some("before".into()), Some("before".into()), None, None],
        "the half-logged transaction is gone from both shards"
    );
    // Later transactions raise both shards' horizons past the dropped one:
    // it must stay dropped on the next start.
    let _: () = redis::pipe()
        .atomic()
        .set(&a[0], "later")
        .set(&b[0], "later")
        .query(&mut c)
        .unwrap();
    kill(k);
    let k = start(&dir, "always");
    let mut c = k.client();
    let got = mget(&mut c, &[&a[0], &b[0], &a[1], &b[1]]);
    assert_eq!(
        got,
        vec![Some("later".into()), Some("later".into()), None, None]
    );
    drop(k);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_second_keel_on_the_same_directory_refuses_to_start() {
    let dir = data_dir("lock");
    let k = start(&dir, "everysec");
    let err = refused_start(&dir, "2");
    assert!(err.contains("in use by another keel"), "{err}");
    drop(k);
    let err = refused_start(&dir, "3");
    assert!(err.contains("holds 2 shards"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_growing_log_is_rewritten_on_its_own() {
    let dir = data_dir("auto");
    let k = Keel::start(&[
        "--shards",
        "1",
        "--dir",
        dir.to_str().unwrap(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--auto-aof-rewrite-min-size",
        "64kb",
        "--auto-aof-rewrite-percentage",
        "100",
    ]);
    let mut c = k.client();
    let value = "x".repeat(100);
    let manifest = dir.join("shard-000").join("MANIFEST");
    let mut rewritten = false;
    // Overwrite a few keys again and again: the log grows, the data not.
    for round in 0..200 {
        for i in 0..50 {
            let _: () = c.set(format!("k{i}"), format!("{value}{round}")).unwrap();
        }
        if fs::read_to_string(&manifest)
            .unwrap_or_default()
            .contains("snapshot ")
        {
            rewritten = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(rewritten, "no automatic rewrite happened");
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    kill(k);
    let k = Keel::start(&[
        "--shards",
        "1",
        "--dir",
        dir.to_str().unwrap(),
        "--appendonly",
        "yes",
    ]);
    let mut c = k.client();
    let after: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(after, digest);
    drop(k);
    let _ = fs::remove_dir_all(&dir);
}
