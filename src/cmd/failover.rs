//! FAILOVER: a planned switchover with Redis's syntax, run on the primary —
//! `FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]`. Writes wait (they
//! do not fail) while the target catches up; the primary then hands over on
//! the cluster bus, the target opens without waiting out a lease, and the
//! held writes meet `-READONLY` here, so clients move to the new primary.
//!
//! keel's own addition: `FAILOVER FORCE` on a *backup* makes it primary now,
//! skipping the eligibility check — the operator's way out when the safety
//! check paused writes because no replica holds every acknowledged write.
//! It is logged and counted in INFO (`cluster_forced_failovers`).

use crate::cluster::Command;
use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::config::parse_host_port;
use crate::resp::reply::Reply;
use crate::server::state::ServerState;

/// With no TIMEOUT, how long writes may be held waiting for the target.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

fn err(s: &str) -> CmdError {
    CmdError::Raw(format!("ERR {s}"))
}

pub fn failover(state: &ServerState, a: &[&[u8]]) -> CmdResult {
    if !state.cluster.is_active() {
        return Err(err(
            "FAILOVER needs a [[nodes]] topology: this node runs no cluster bus",
        ));
    }
    let (mut to, mut force, mut abort, mut timeout) = (None, false, false, None);
    let mut i = 1;
    while i < a.len() {
        if is(a[i], "to") && i + 2 < a.len() {
            let target = format!(
                "{} {}",
                String::from_utf8_lossy(a[i + 1]),
                String::from_utf8_lossy(a[i + 2])
            );
            to = Some(parse_host_port(&target).ok_or_else(|| err("Invalid port"))?);
            i += 3;
        } else if is(a[i], "force") {
            force = true;
            i += 1;
        } else if is(a[i], "abort") {
            abort = true;
            i += 1;
        } else if is(a[i], "timeout") && i + 1 < a.len() {
            let ms: i64 = std::str::from_utf8(a[i + 1])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err("value is not an integer or out of range"))?;
            if ms <= 0 {
                return Err(err("FAILOVER timeout must be greater than 0"));
            }
            timeout = Some(ms as u64);
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let v = state.cluster.view();
    if abort {
        if to.is_some() || force || timeout.is_some() {
            return Err(CmdError::Syntax);
        }
        if v.failover_state == "no-failover" {
            return Err(err("No failover in progress."));
        }
        state.cluster.command(Command::Abort);
        return Ok(Reply::Ok);
    }
    if v.role != "primary" {
        // keel's operator override, on a backup: become primary now.
        if force && to.is_none() && timeout.is_none() {
            state.cluster.command(Command::Force);
            return Ok(Reply::Ok);
        }
        return Err(err("FAILOVER is not valid when server is a replica."));
    }
    if force && (to.is_none() || timeout.is_none()) {
        return Err(err(
            "FAILOVER with force option requires both a timeout and target HOST and IP.",
        ));
    }
    if v.failover_state != "no-failover" {
        return Err(err("FAILOVER already in progress."));
    }
    let me = v.primary.clone().unwrap_or_default();
    let live: Vec<_> = v
        .members
        .iter()
        .filter(|m| m.name != me && !m.arbiter && m.state == "ok")
        .collect();
    let target = match to {
        Some((host, port)) => v
            .members
            .iter()
            .find(|m| m.client.1 == port && m.client.0 == host && m.name != me && !m.arbiter)
            .ok_or_else(|| err("FAILOVER target HOST and PORT is not a replica."))?,
        // The backup furthest ahead takes over.
        None => *live
            .iter()
            .max_by_key(|m| (m.total_seq.unwrap_or(0), std::cmp::Reverse(m.name.clone())))
            .ok_or_else(|| err("FAILOVER requires connected replicas."))?,
    };
    if target.state != "ok" {
        return Err(err("FAILOVER target replica is not online."));
    }
    // Visible at once, as Redis sets it before replying (the driver takes
    // the command over within one tick).
    if let Ok(mut view) = state.cluster.view.lock() {
        view.failover_state = "waiting-for-sync";
    }
    // Writes are held from the reply on (the driver keeps or lifts it).
    let timeout_ms = timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
    state.repl.set_write_pause_until(
        crate::server::state::now_ms() + timeout_ms + crate::cluster::driver::HANDOVER_WAIT_MS,
    );
    state.cluster.command(Command::Switchover {
        to: target.name.clone(),
        timeout_ms,
        force,
    });
    Ok(Reply::Ok)
}
