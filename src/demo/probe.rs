//! A tiny blocking RESP client for the demo's own questions to its nodes
//! (INFO, mostly). The demo runs outside any executor, so plain blocking
//! sockets with short timeouts are the right tool: a paused or dead node
//! must cost the caller at most a timeout, never a hang.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one question may take before the node counts as not answering.
pub const TIMEOUT: Duration = Duration::from_millis(700);

/// One reply, reduced to what the demo needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    Int(i64),
    Error(String),
    Nil,
}

/// Why a node gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// Sends one command to 127.0.0.1:`port` on a fresh connection and reads
/// its reply.
pub fn call(port: u16, args: &[&str]) -> Result<Reply, ProbeError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    (&stream).write_all(req.as_bytes())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Text(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest
            .parse()
            .map(Reply::Int)
            .map_err(|_| ProbeError::Protocol(line.to_string())),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| ProbeError::Protocol(line.to_string()))?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            // The reply is small (INFO sections); cap it anyway.
            if len > 16 << 20 {
                return Err(ProbeError::Protocol(format!("bulk of {len} bytes")));
            }
            let mut buf = vec![0; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(Reply::Text(String::from_utf8_lossy(&buf).into_owned()))
        }
        _ => Err(ProbeError::Protocol(line.to_string())),
    }
}

/// INFO of the given sections as field → value.
pub fn info(port: u16, sections: &[&str]) -> Result<HashMap<String, String>, ProbeError> {
    let mut args = vec!["INFO"];
    args.extend_from_slice(sections);
    match call(port, &args)? {
        Reply::Text(t) => Ok(t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()),
        other => Err(ProbeError::Protocol(format!("{other:?}"))),
    }
}

/// What the demo shows of one node: its role and readiness as INFO tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// `primary`, `backup`, `candidate`... as INFO cluster's `cluster_role`.
    pub role: String,
    pub term: u64,
    /// The id of the primary this node follows or is.
    pub primary: String,
    /// A backup's worst shard lag in ms (0 on the primary).
    pub lag_ms: u64,
    /// A backup: synced and within read-max-lag. A primary: always.
    pub ready: bool,
    pub commands: u64,
    /// How each shard last synced as a backup ("partial", "full"), joined.
    pub last_sync: String,
    /// On the primary: each backup's lag as the primary measures it, worst
    /// shard's ms and records summed over shards (0 when it has everything).
    pub links: HashMap<String, Lag>,
}

/// How far one backup is behind the primary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    pub ms: u64,
    pub records: u64,
}

/// One `shardN_link_<backup>:state=..,lag_records=..,lag_ms=..` line.
fn link_lag(key: &str, value: &str) -> Option<(String, Lag)> {
    let rest = key.strip_prefix("shard")?;
    let (shard, backup) = rest.split_once("_link_")?;
    shard.parse::<u64>().ok()?;
    if backup.ends_with("_why") {
        return None;
    }
    let field = |name: &str| {
        value
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    Some((
        backup.to_string(),
        Lag {
            ms: field("lag_ms")?,
            records: field("lag_records")?,
        },
    ))
}

/// Asks one node for its view; `None` when it does not answer (down,
/// paused, starting).
pub fn view(port: u16) -> Option<NodeView> {
    info(port, &["cluster", "replication", "stats"])
        .ok()
        .map(|f| view_of(&f))
}

/// The view from INFO's cluster, replication and stats fields.
fn view_of(f: &HashMap<String, String>) -> NodeView {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let role = f.get("cluster_role").cloned().unwrap_or_default();
    let is_primary = role == "primary";
    let mut syncs: Vec<(u64, String)> = f
        .iter()
        .filter_map(|(k, v)| {
            let shard = k.strip_prefix("shard")?.strip_suffix("_last_sync")?;
            Some((shard.parse().ok()?, v.clone()))
        })
        .collect();
    syncs.sort();
    // "full: the backup has no history yet" → "full": the why is in INFO.
    let mut kinds: Vec<String> = syncs
        .into_iter()
        .map(|(_, v)| v.split(':').next().unwrap_or_default().trim().to_string())
        .collect();
    let mut links: HashMap<String, Lag> = HashMap::new();
    for (k, v) in f {
        if let Some((backup, lag)) = link_lag(k, v) {
            let e = links.entry(backup).or_default();
            e.ms = e.ms.max(lag.ms);
            e.records += lag.records;
        }
    }
    kinds.dedup();
    NodeView {
        term: num("cluster_term"),
        primary: f.get("cluster_primary").cloned().unwrap_or_default(),
        lag_ms: if is_primary { 0 } else { num("replica_lag_ms") },
        ready: is_primary || f.get("replica_ready").map(String::as_str) == Some("1"),
        commands: num("total_commands_processed"),
        last_sync: if is_primary {
            String::new()
        } else {
            kinds.join(",")
        },
        links,
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> HashMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_primary_sums_each_backups_lag_over_shards() {
        let v = view_of(&fields(
            "cluster_role:primary\ncluster_term:3\ncluster_primary:b\ntotal_commands_processed:17\n\
             shard0_link_a:state=online,sync=partial,acked=9,lag_records=2,lag_bytes=10,lag_ms=4,compress=1\n\
             shard1_link_a:state=online,sync=partial,acked=9,lag_records=3,lag_bytes=10,lag_ms=7,compress=1\n\
             shard1_link_a_why:backlog\n\
             shard0_link_c:state=online,sync=full,acked=9,lag_records=0,lag_bytes=0,lag_ms=0,compress=1\n",
        ));
        assert_eq!(
            (v.role.as_str(), v.term, v.primary.as_str()),
            ("primary", 3, "b")
        );
        assert!(v.ready);
        assert_eq!(v.commands, 17);
        assert_eq!(v.links["a"], Lag { ms: 7, records: 5 });
        assert_eq!(v.links["c"], Lag { ms: 0, records: 0 });
        assert_eq!(v.links.len(), 2);
        assert_eq!(v.last_sync, "");
    }

    #[test]
    fn a_backup_reports_readiness_lag_and_how_it_synced() {
        let v = view_of(&fields(
            "cluster_role:backup\ncluster_term:2\ncluster_primary:b\nreplica_ready:1\nreplica_lag_ms:12\n\
             shard1_last_sync:full: the backup has no history yet\nshard0_last_sync:partial\n",
        ));
        assert!(v.ready);
        assert_eq!(v.lag_ms, 12);
        assert_eq!(v.last_sync, "partial,full");
        let not_ready = view_of(&fields("cluster_role:backup\nreplica_ready:0\n"));
        assert!(!not_ready.ready);
        let same = view_of(&fields(
            "cluster_role:backup\nshard0_last_sync:partial\nshard1_last_sync:partial\n",
        ));
        assert_eq!(same.last_sync, "partial");
    }
}
