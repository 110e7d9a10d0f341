//! MEMORY STATS, DOCTOR, MALLOC-STATS and PURGE (MEMORY USAGE runs on the
//! key's shard, `cmd::introspect`).
//!
//! The figures are keel's own accounting: what its shards count for their
//! entries and hash tables (the `used_memory` of INFO), the process's
//! resident size, and the keys per database. keel keeps expiry inside the
//! entry, so it has no separate expires table (its overhead is 0); buffers
//! Redis counts that keel does not account (client buffers, the backlog,
//! script caches) read 0.

use std::sync::atomic::{AtomicU64, Ordering};

use keel_shards::DATABASES;

use crate::cmd::error::{CmdError, CmdResult};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;

/// The most `total.allocated` was when last read (by MEMORY STATS).
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Below this, MEMORY DOCTOR has nothing to say (as Redis's 5 MB).
const SMALL: u64 = 5 * 1024 * 1024;

struct Figures {
    total: u64,
    /// Per database: keys, hash-table bytes.
    dbs: Vec<(u64, u64)>,
}

async fn figures(conn: &Conn) -> Result<Figures, CmdError> {
    let parts = conn
        .router
        .broadcast(|ls| {
            let mut total = 0u64;
            let mut dbs = vec![(0u64, 0u64); DATABASES];
            for id in ls.ids() {
                let s = ls.shard(id);
                total += s.used_memory() as u64;
                for (d, slot) in dbs.iter_mut().enumerate() {
                    slot.0 += s.db_len(d) as u64;
                    slot.1 += s.db_table_bytes(d) as u64;
                }
            }
            (total, dbs)
        })
        .await?;
    let mut f = Figures {
        total: 0,
        dbs: vec![(0, 0); DATABASES],
    };
    for (total, dbs) in parts {
        f.total += total;
        for (slot, d) in f.dbs.iter_mut().zip(dbs) {
            slot.0 += d.0;
            slot.1 += d.1;
        }
    }
    Ok(f)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

async fn stats(conn: &Conn) -> CmdResult {
    let f = figures(conn).await?;
    let peak = PEAK.fetch_max(f.total, Ordering::Relaxed).max(f.total);
    let rss = crate::server::info::rss_bytes();
    let keys: u64 = f.dbs.iter().map(|d| d.0).sum();
    let overhead: u64 = f.dbs.iter().map(|d| d.1).sum();
    let dataset = f.total.saturating_sub(overhead);
    let int = |n: u64| Reply::Int(n as i64);
    let s = |t: &'static str| Reply::bulk(t);
    let mut m = vec![
        (s("peak.allocated"), int(peak)),
        (s("total.allocated"), int(f.total)),
        (s("startup.allocated"), int(0)),
        (s("replication.backlog"), int(0)),
        (s("clients.slaves"), int(0)),
        (s("clients.normal"), int(0)),
        (s("cluster.links"), int(0)),
        (s("aof.buffer"), int(0)),
        (s("lua.caches"), int(0)),
        (s("functions.caches"), int(0)),
    ];
    for (db, (n, table)) in f.dbs.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        m.push((
            Reply::bulk(format!("db.{db}")),
            Reply::Map(vec![
                (s("overhead.hashtable.main"), int(*table)),
                (s("overhead.hashtable.expires"), int(0)),
                (s("overhead.hashtable.slot-to-keys"), int(0)),
            ]),
        ));
    }
    m.extend([
        (s("overhead.total"), int(overhead)),
        (s("keys.count"), int(keys)),
        (
            s("keys.bytes-per-key"),
            int(f.total.checked_div(keys).unwrap_or(0)),
        ),
        (s("dataset.bytes"), int(dataset)),
        (
            s("dataset.percentage"),
            Reply::Double(100.0 * ratio(dataset, f.total)),
        ),
        (
            s("peak.percentage"),
            Reply::Double(100.0 * ratio(f.total, peak)),
        ),
        (s("allocator.allocated"), int(f.total)),
        (s("allocator.active"), int(f.total)),
        (s("allocator.resident"), int(rss)),
        (s("allocator-fragmentation.ratio"), Reply::Double(1.0)),
        (s("allocator-fragmentation.bytes"), int(0)),
        (s("allocator-rss.ratio"), Reply::Double(ratio(rss, f.total))),
        (
            s("allocator-rss.bytes"),
            Reply::Int(rss as i64 - f.total as i64),
        ),
        (s("rss-overhead.ratio"), Reply::Double(1.0)),
        (s("rss-overhead.bytes"), int(0)),
        (s("fragmentation"), Reply::Double(ratio(rss, f.total))),
        (
            s("fragmentation.bytes"),
            Reply::Int(rss as i64 - f.total as i64),
        ),
    ]);
    Ok(Reply::Map(m))
}

async fn doctor(conn: &Conn) -> CmdResult {
    let f = figures(conn).await?;
    let rss = crate::server::info::rss_bytes();
    let text = if f.total < SMALL {
        "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n".to_string()
    } else if ratio(rss, f.total) > 1.4 {
        format!(
            "Sam, I detected a few issues in this Redis instance memory implants:\n\n * High fragmentation: this instance has a memory fragmentation greater than 1.4 (the process holds {rss} bytes for {} bytes of data). keel's memory comes back to the system as its shards shrink; a restart from a snapshot compacts it at once.\n",
            f.total
        )
    } else {
        "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n".to_string()
    };
    Ok(Reply::Verbatim(text))
}

/// The MEMORY subcommands answered here (not on a shard), or `None`.
pub async fn memory(conn: &Conn, a: &[&[u8]]) -> Option<CmdResult> {
    let sub = String::from_utf8_lossy(a.get(1)?).to_lowercase();
    Some(match (sub.as_str(), a.len()) {
        ("stats", 2) => stats(conn).await,
        ("doctor", 2) => doctor(conn).await,
        // keel runs on the system allocator, which keeps no report.
        ("malloc-stats", 2) => Ok(Reply::Verbatim(
            "Stats not supported for the current allocator".into(),
        )),
        ("purge", 2) => Ok(Reply::Ok),
        ("stats" | "doctor" | "malloc-stats" | "purge", _) => {
            Err(CmdError::Arity(format!("memory|{sub}")))
        }
        _ => return None,
    })
}
