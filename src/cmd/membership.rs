//! KEEL NODE: changing the database's members while it runs, on the
//! primary (see `cluster::members` for how a change proceeds).
//!
//! - `KEEL NODE ADD <id> <client host:port> <bus host:port> <zone> <region> [ARBITER]`
//!   — the node joins as a learner, copies every shard, then votes.
//! - `KEEL NODE REMOVE <id>` — the member leaves the list.
//! - `KEEL NODE REPLACE <old-id> <id> <client> <bus> <zone> <region>` —
//!   `<id>` joins as a learner; once it votes, `<old-id>` leaves. This is how
//!   a failed node is replaced, and a replica moved to another zone.
//! - `KEEL NODES` — the members as this node knows them, one per line.
//!
//! Each returns once the primary took the change on; INFO cluster's
//! `cluster_membership` follows it to the end (`idle`). One change at a
//! time: another is refused while one runs.

use crate::cluster::members::{valid_name, Entry};
use crate::cluster::{ClusterView, Command, MemberCommand};
use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::config::parse_host_port;
use crate::resp::reply::Reply;
use crate::server::state::ServerState;

fn err(s: impl AsRef<str>) -> CmdError {
    CmdError::Raw(format!("ERR {}", s.as_ref()))
}

fn text(a: &[u8]) -> Result<String, CmdError> {
    String::from_utf8(a.to_vec()).map_err(|_| err("arguments must be UTF-8 text"))
}

pub fn keel(state: &ServerState, a: &[&[u8]]) -> CmdResult {
    if is(a[1], "nodes") && a.len() == 2 {
        return nodes(state);
    }
    if !is(a[1], "node") || a.len() < 3 {
        return Err(err(
            "unknown KEEL subcommand; try KEEL NODES, KEEL NODE ADD|REMOVE|REPLACE",
        ));
    }
    if !state.cluster.is_active() {
        return Err(err(
            "KEEL NODE needs a [[nodes]] topology: this node runs no cluster bus",
        ));
    }
    let sub = a[2];
    let cmd = if is(sub, "add") && (a.len() == 8 || a.len() == 9) {
        let arbiter = match a.get(8) {
            None => false,
            Some(x) if is(x, "arbiter") => true,
            Some(_) => return Err(CmdError::Syntax),
        };
        MemberCommand::Add(entry(&a[3..8], arbiter, None)?)
    } else if is(sub, "remove") && a.len() == 4 {
        MemberCommand::Remove(text(a[3])?)
    } else if is(sub, "replace") && a.len() == 9 {
        let old = text(a[3])?;
        MemberCommand::Add(entry(&a[4..9], false, Some(old))?)
    } else {
        return Err(CmdError::Arity("keel|node".into()));
    };
    let v = state.cluster.view();
    check(&v, &cmd)?;
    state.cluster.command(Command::Member(cmd));
    // Visible at once (the driver takes the command within one tick).
    if let Ok(mut view) = state.cluster.view.lock() {
        view.membership = "change requested".into();
    }
    Ok(Reply::Ok)
}

fn entry(a: &[&[u8]], arbiter: bool, replaces: Option<String>) -> Result<Entry, CmdError> {
    let name = text(a[0])?;
    if !valid_name(&name) {
        return Err(err(format!(
            "invalid node id '{name}' (printable, no spaces, ',' or '=')"
        )));
    }
    let addr = |what: &str, b: &[u8]| {
        let s = text(b)?;
        parse_host_port(&s).ok_or_else(|| err(format!("invalid {what} address '{s}' (host:port)")))
    };
    let (zone, region) = (text(a[3])?, text(a[4])?);
    if !valid_name(&zone) || !valid_name(&region) {
        return Err(err("zone and region must be printable words"));
    }
    let e = Entry {
        id: 0,
        name,
        zone,
        region,
        client: addr("client", a[1])?,
        bus: addr("bus", a[2])?,
        arbiter,
        voter: false,
        replaces,
    };
    e.check().map_err(|what| err(format!("invalid {what}")))?;
    Ok(e)
}

/// What the view shows a moment ago; the driver checks again.
fn check(v: &ClusterView, cmd: &MemberCommand) -> Result<(), CmdError> {
    if v.role != "primary" {
        return Err(err(match &v.primary {
            Some(p) => {
                let at = v
                    .members
                    .iter()
                    .find(|m| &m.name == p)
                    .map(|m| format!(" at {}:{}", m.client.0, m.client.1))
                    .unwrap_or_default();
                format!("membership changes run on the primary: {p}{at}")
            }
            None => "membership changes run on the primary, and none is known now".into(),
        }));
    }
    // Removing the learner (or the replacement) that does not catch up
    // cancels the change in progress; anything else waits for it to end.
    let removal = match cmd {
        MemberCommand::Remove(n) => v
            .members
            .iter()
            .any(|m| &m.name == n && (!m.voter || m.replaces.is_some())),
        MemberCommand::Add(_) => false,
    };
    let busy = v.membership_busy || v.membership == "change requested";
    if (busy || !removal) && !v.membership.is_empty() && v.membership != "idle" {
        return Err(err(format!(
            "a membership change is in progress ({}); wait until INFO cluster shows cluster_membership:idle",
            v.membership
        )));
    }
    let me = v.primary.as_deref().unwrap_or("");
    let known = |n: &str| v.members.iter().any(|m| m.name == n);
    match cmd {
        MemberCommand::Add(e) => {
            if known(&e.name) {
                return Err(err(format!("a member with id '{}' already exists", e.name)));
            }
            if let Some(old) = &e.replaces {
                if !known(old) {
                    return Err(err(format!("no member with id '{old}'")));
                }
            }
        }
        MemberCommand::Remove(n) if n == me => {
            return Err(err(
                "the primary cannot remove itself: move it first (FAILOVER TO another node)",
            ))
        }
        MemberCommand::Remove(n) => {
            if !known(n) {
                return Err(err(format!("no member with id '{n}'")));
            }
            let voters = v.members.iter().filter(|m| m.voter).count();
            if voters == 1 && v.members.iter().any(|m| &m.name == n && m.voter) {
                return Err(err(format!("removing '{n}' would leave no voter")));
            }
        }
    }
    Ok(())
}

/// One line per member: id, client, bus, zone, region, role, state.
fn nodes(state: &ServerState) -> CmdResult {
    if !state.cluster.is_active() {
        return Ok(Reply::Bulk(Vec::new()));
    }
    let v = state.cluster.view();
    let mut out = String::new();
    for m in &v.members {
        let role = match (m.arbiter, m.voter) {
            (true, _) => "arbiter",
            (false, true) => "voter",
            (false, false) => "learner",
        };
        let replaces = m
            .replaces
            .as_ref()
            .map(|r| format!(",replaces={r}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {}:{} {}:{} {} {} {role}{replaces} {}\n",
            m.name, m.client.0, m.client.1, m.bus.0, m.bus.1, m.zone, m.region, m.state
        ));
    }
    Ok(Reply::Bulk(out.into_bytes()))
}
