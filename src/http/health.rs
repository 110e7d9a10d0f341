//! `GET /health` and `GET /health/primary`: whether this node can serve
//! clients now, for DNS health checks and load-balancer target groups.
//!
//! - `/health`: 200 when the node serves clients — an open primary that
//!   hears a majority and has not paused writes, or a backup that is ready
//!   (synced, within `read-max-lag`) and hears a majority; 503 otherwise
//!   (writes paused, not yet synced, lagging, cut off from the majority).
//! - `/health/primary`: 200 only on the open primary (a DNS record for
//!   "the writer").
//!
//! The body is a small JSON object: role, term, ready, lag_ms, zone, and
//! why when the answer is 503.

use crate::exec::router::Router;
use crate::server::commands::replication;
use crate::server::state::ServerState;

use super::Response;

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub async fn health(router: &Router, state: &ServerState, primary_only: bool) -> Response {
    let config = state.config();
    let views = replication::gather_views(router).await.unwrap_or_default();
    let lag_ms = views.iter().map(|v| v.lag_ms).max().unwrap_or(0);
    let backup_ready = replication::is_ready(state, &views);
    let (role, term, majority, paused) = if state.cluster.is_active() {
        let v = state.cluster.view();
        // The majority that matters is of the voters (a learner still
        // copying does not count either way).
        let voters = v.members.iter().filter(|m| m.voter);
        let ok = voters
            .clone()
            .filter(|m| matches!(m.state, "myself" | "ok"))
            .count();
        (v.role, v.term, ok > voters.count() / 2, v.writes_paused)
    } else {
        let role = if state.repl.is_backup() {
            "backup"
        } else {
            "primary"
        };
        (role, 0, true, false)
    };
    let is_primary = role == "primary" && !state.repl.is_backup();
    let why = if paused {
        Some("writes are paused: no replica is eligible for promotion")
    } else if !majority {
        Some("cut off from the majority of the database's members")
    } else if primary_only && !is_primary {
        Some("not the primary")
    } else if !is_primary && !backup_ready {
        Some("not ready: still syncing or behind read-max-lag")
    } else if role != "primary" && role != "backup" {
        Some("an election is running")
    } else {
        None
    };
    let ready = if is_primary { true } else { backup_ready };
    let body = format!(
        "{{\"status\":{},\"role\":{},\"term\":{term},\"ready\":{ready},\"lag_ms\":{},\"zone\":{},\"node\":{}{}}}\n",
        json_str(if why.is_none() { "ok" } else { "unavailable" }),
        json_str(role),
        if is_primary { 0 } else { lag_ms },
        json_str(&config.zone),
        json_str(&config.node_id),
        why.map(|w| format!(",\"why\":{}", json_str(w))).unwrap_or_default(),
    );
    Response::json(if why.is_none() { 200 } else { 503 }, body)
}
