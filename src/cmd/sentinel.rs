//! The Sentinel discovery commands, answered by every node on its client
//! port, so that Sentinel-aware clients (redis-py's `Sentinel`, ioredis in
//! sentinel mode, Jedis...) find the primary with nothing but keel: each
//! node plays the Sentinel of its own database, named `database-name`.
//!
//! Only discovery is answered (`GET-MASTER-ADDR-BY-NAME`, `MASTERS`,
//! `MASTER`, `REPLICAS`/`SLAVES`, `SENTINELS`, `MYID`, `CKQUORUM`); failover
//! itself is keel's own (the cluster bus), so Sentinel's configuration
//! commands are refused. `+switch-master` is published by the cluster driver.

use crate::cluster::{ClusterView, MemberView};
use crate::cmd::error::{CmdError, CmdResult};
use crate::resp::reply::Reply;
use crate::server::state::ServerState;

/// A stable 40-hex-digit id for `name` (Sentinel's `myid`/`runid` shape).
pub fn sentinel_id(database: &str, name: &str) -> String {
    (0..5u8)
        .map(|i| {
            let mut h = crc32fast::Hasher::new();
            h.update(&[i]);
            h.update(database.as_bytes());
            h.update(&[0]);
            h.update(name.as_bytes());
            format!("{:08x}", h.finalize())
        })
        .collect()
}

fn kv(pairs: Vec<(&str, String)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
            .collect(),
    )
}

/// The members as this node sees them; a node without a topology is a
/// database of one.
fn members(state: &ServerState) -> (ClusterView, Vec<MemberView>) {
    let c = state.config();
    if state.cluster.is_active() {
        let v = state.cluster.view();
        let m = v.members.clone();
        return (v, m);
    }
    let port = state.port.load(std::sync::atomic::Ordering::Relaxed) as u16;
    let ip = if c.bind.is_empty() {
        "127.0.0.1".to_string()
    } else {
        c.bind.clone()
    };
    let me = MemberView {
        name: c.node_id.clone(),
        client: (ip, port),
        zone: c.zone.clone(),
        state: "myself",
        ..MemberView::default()
    };
    let v = ClusterView {
        term: 0,
        role: if state.repl.is_backup() {
            "backup"
        } else {
            "primary"
        },
        primary: (!state.repl.is_backup()).then(|| c.node_id.clone()),
        members: vec![me.clone()],
        ..ClusterView::default()
    };
    (v, vec![me])
}

fn down_flags(m: &MemberView) -> &'static str {
    match m.state {
        "failed" => ",s_down,o_down",
        "suspected" => ",s_down",
        _ => "",
    }
}

fn master_reply(state: &ServerState, v: &ClusterView, ms: &[MemberView]) -> Option<Reply> {
    let c = state.config();
    let name = v.primary.as_deref()?;
    let p = ms.iter().find(|m| m.name == name)?;
    let replicas = ms.iter().filter(|m| m.name != name && !m.arbiter).count();
    let sentinels = ms.len().saturating_sub(1);
    Some(kv(vec![
        ("name", c.database_name.clone()),
        ("ip", p.client.0.clone()),
        ("port", p.client.1.to_string()),
        ("runid", sentinel_id(&c.database_name, &p.name)),
        ("flags", format!("master{}", down_flags(p))),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", "0".into()),
        (
            "last-ok-ping-reply",
            p.heard_ms_ago.unwrap_or(0).to_string(),
        ),
        ("last-ping-reply", p.heard_ms_ago.unwrap_or(0).to_string()),
        ("down-after-milliseconds", c.node_timeout.to_string()),
        ("info-refresh", "0".into()),
        ("role-reported", "master".into()),
        ("role-reported-time", "0".into()),
        ("config-epoch", v.term.to_string()),
        ("num-slaves", replicas.to_string()),
        ("num-other-sentinels", sentinels.to_string()),
        ("quorum", (ms.len() / 2 + 1).to_string()),
        ("failover-timeout", (3 * c.node_timeout).to_string()),
        ("parallel-syncs", "1".into()),
    ]))
}

fn no_such_master() -> CmdError {
    CmdError::Raw("ERR No such master with that name".into())
}

/// `SENTINEL <subcommand> [name]`.
pub fn sentinel(state: &ServerState, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_ascii_lowercase();
    let c = state.config();
    let named = |i: usize| a.get(i).is_some_and(|n| *n == c.database_name.as_bytes());
    let need_name = || -> Result<(), CmdError> {
        match a.len() {
            3 if named(2) => Ok(()),
            3 => Err(no_such_master()),
            _ => Err(CmdError::Arity(format!("sentinel|{sub}"))),
        }
    };
    let (v, ms) = members(state);
    match sub.as_str() {
        "myid" if a.len() == 2 => Ok(Reply::bulk(sentinel_id(&c.database_name, &c.node_id))),
        "get-master-addr-by-name" => {
            if a.len() != 3 {
                return Err(CmdError::Arity("sentinel|get-master-addr-by-name".into()));
            }
            if !named(2) {
                return Ok(Reply::NilArray);
            }
            let p = v
                .primary
                .as_deref()
                .and_then(|n| ms.iter().find(|m| m.name == n));
            Ok(match p {
                Some(p) => Reply::bulks([p.client.0.clone(), p.client.1.to_string()]),
                None => Reply::NilArray,
            })
        }
        "masters" if a.len() == 2 => Ok(Reply::Array(
            master_reply(state, &v, &ms).into_iter().collect(),
        )),
        "master" => {
            need_name()?;
            master_reply(state, &v, &ms).ok_or_else(no_such_master)
        }
        "replicas" | "slaves" => {
            need_name()?;
            let primary = v.primary.clone().unwrap_or_default();
            let p = ms.iter().find(|m| m.name == primary);
            let (mh, mp) = p.map_or((String::new(), 0), |p| p.client.clone());
            Ok(Reply::Array(
                ms.iter()
                    .filter(|m| m.name != primary && !m.arbiter)
                    .map(|m| {
                        kv(vec![
                            ("name", format!("{}:{}", m.client.0, m.client.1)),
                            ("ip", m.client.0.clone()),
                            ("port", m.client.1.to_string()),
                            ("runid", sentinel_id(&c.database_name, &m.name)),
                            ("flags", format!("slave{}", down_flags(m))),
                            ("link-pending-commands", "0".into()),
                            ("link-refcount", "1".into()),
                            ("last-ping-sent", "0".into()),
                            ("last-ok-ping-reply", m.heard_ms_ago.unwrap_or(0).to_string()),
                            ("last-ping-reply", m.heard_ms_ago.unwrap_or(0).to_string()),
                            ("down-after-milliseconds", c.node_timeout.to_string()),
                            ("info-refresh", "0".into()),
                            ("role-reported", "slave".into()),
                            ("role-reported-time", "0".into()),
                            ("master-link-down-time", "0".into()),
                            (
                                "master-link-status",
                                if m.state == "failed" { "err" } else { "ok" }.into(),
                            ),
                            ("master-host", mh.clone()),
                            ("master-port", mp.to_string()),
                            ("slave-priority", "100".into()),
                            ("slave-repl-offset", m.total_seq.unwrap_or(0).to_string()),
                        ])
                    })
                    .collect(),
            ))
        }
        "sentinels" => {
            need_name()?;
            Ok(Reply::Array(
                ms.iter()
                    .filter(|m| m.state != "myself")
                    .map(|m| {
                        kv(vec![
                            ("name", sentinel_id(&c.database_name, &m.name)),
                            ("ip", m.client.0.clone()),
                            ("port", m.client.1.to_string()),
                            ("runid", sentinel_id(&c.database_name, &m.name)),
                            ("flags", format!("sentinel{}", down_flags(m))),
                            ("link-pending-commands", "0".into()),
                            ("link-refcount", "1".into()),
                            ("last-hello-message", m.heard_ms_ago.unwrap_or(0).to_string()),
                            ("voted-leader", "?".into()),
                            ("voted-leader-epoch", "0".into()),
                        ])
                    })
                    .collect(),
            ))
        }
        "ckquorum" => {
            need_name()?;
            let ok = ms.iter().filter(|m| matches!(m.state, "myself" | "ok")).count();
            let need = ms.len() / 2 + 1;
            if ok >= need {
                Ok(Reply::Status(
                    format!("OK {ok} usable Sentinels. Quorum and failover authorization can be reached").into(),
                ))
            } else {
                Err(CmdError::Raw(format!(
                    "NOQUORUM {ok} usable Sentinels. Not enough available Sentinels to reach the majority and authorize a failover"
                )))
            }
        }
        "monitor" | "remove" | "set" | "reset" | "failover" | "flushconfig" | "config" => {
            Err(CmdError::Raw(format!(
                "ERR SENTINEL {} is not supported: keel fails over by itself (use FAILOVER on the primary)",
                sub.to_uppercase()
            )))
        }
        _ => Err(CmdError::Raw(format!(
            "ERR Unknown sentinel subcommand '{}'",
            String::from_utf8_lossy(a[1])
        ))),
    }
}
