//! Where a client connection meets the ACL: logging in (AUTH, HELLO ...
//! AUTH, RESET), the check before every command it runs or queues, the
//! ACL log entries of what is refused, and closing the connections of
//! deleted users. The other ways a command runs (EXEC, scripts, blocked
//! commands, REST) are in [`super::paths`].

use std::sync::Arc;

use super::check::{command_name, message, Denied};
use super::log::{Context, Event, Reason};
use super::user::User;
use super::Acl;
use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::exec::command::{self, Spec};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// Before a command runs (or is queued in MULTI): takes a changed user
/// table into account, then refuses what the user may not run. For a
/// user that may run everything this is one atomic load and one test.
#[inline]
pub fn check(conn: &mut Conn, spec: &'static Spec, argv: &[&[u8]]) -> Option<CmdError> {
    let epoch = conn.state.acl.store.epoch();
    if epoch != conn.acl.epoch {
        refresh(conn, epoch);
    }
    if conn.acl.user.unrestricted {
        return None;
    }
    refused(conn, spec, argv)
}

/// The connection's user as the table has it now. A user deleted meanwhile
/// may run nothing (its connection is being closed).
pub(super) fn refresh(conn: &mut Conn, epoch: u64) {
    let name = conn.acl.user.name.clone();
    conn.acl.user = conn
        .state
        .acl
        .store
        .get(&name)
        .unwrap_or_else(|| Arc::new(User::new(&name)));
    conn.acl.epoch = epoch;
}

#[cold]
fn refused(conn: &mut Conn, spec: &'static Spec, argv: &[&[u8]]) -> Option<CmdError> {
    let user = conn.acl.user.clone();
    if let Err(d) = user.check(spec, argv) {
        let context = if conn.multi.is_some() {
            Context::Multi
        } else {
            Context::Toplevel
        };
        let info = {
            // The log's client line names the command refused, as Redis's.
            let mut info = conn.info.borrow_mut();
            info.last_cmd.clear();
            crate::server::introspect::command_name(spec, argv, &mut info.last_cmd);
            info.line(now_ms())
        };
        log_denied(&conn.state.acl, d, context, &user, spec, argv, info);
        // A refused command counts as rejected (INFO commandstats).
        conn.router.local.stats.borrow_mut().by_command[command::index_of(spec)].rejected += 1;
        return Some(CmdError::Raw(format!(
            "NOPERM {}",
            message(d, &user.name, spec, argv)
        )));
    }
    sort_patterns(&user, spec, argv)
}

/// SORT's BY and GET patterns may read any key: Redis allows them only to
/// users that may read every key.
pub(super) fn sort_patterns(user: &User, spec: &'static Spec, argv: &[&[u8]]) -> Option<CmdError> {
    if !matches!(spec.name, "sort" | "sort_ro") || user.reads_every_key() {
        return None;
    }
    for (i, w) in argv.iter().enumerate().skip(2) {
        if is(w, "by") && argv.get(i + 1).is_some_and(|p| p.contains(&b'*')) {
            return Some(CmdError::other(
                "BY option of SORT denied due to insufficient ACL permissions.",
            ));
        }
        if is(w, "get") && i + 1 < argv.len() {
            return Some(CmdError::other(
                "GET option of SORT denied due to insufficient ACL permissions.",
            ));
        }
    }
    None
}

pub(super) fn log_denied(
    acl: &Acl,
    d: Denied,
    context: Context,
    user: &User,
    spec: &'static Spec,
    argv: &[&[u8]],
    client_info: String,
) {
    let (reason, object) = match d {
        Denied::Command => (Reason::Command, command_name(spec, argv).into_bytes()),
        Denied::Key(i) => (Reason::Key, argv[i].to_vec()),
        Denied::Channel(i) => (Reason::Channel, argv[i].to_vec()),
    };
    let event = Event {
        reason,
        context,
        object,
        username: user.name.clone(),
        client_info,
    };
    acl.log.add(event, now_ms(), acl.log_max());
}

/// The connection now runs as `user`.
pub fn login(conn: &mut Conn, user: Arc<User>) {
    conn.info.borrow_mut().user = user.name.clone();
    conn.acl.user = user;
    conn.acl.epoch = conn.state.acl.store.epoch();
    conn.authenticated = true;
}

/// Checks a user/password pair; a failure is logged and answered with
/// -WRONGPASS.
pub fn authenticate(
    conn: &mut Conn,
    command: &[u8],
    name: &[u8],
    pass: &[u8],
) -> Result<Arc<User>, CmdError> {
    // (the table may have changed since the connection last looked)
    let epoch = conn.state.acl.store.epoch();
    if let Some(u) = conn.state.acl.authenticate(name, pass) {
        conn.acl.epoch = epoch;
        return Ok(u);
    }
    let event = Event {
        reason: Reason::Auth,
        context: if conn.multi.is_some() {
            Context::Multi
        } else {
            Context::Toplevel
        },
        object: command.to_vec(),
        username: String::from_utf8_lossy(name).into_owned(),
        client_info: conn.info.borrow().line(now_ms()),
    };
    let acl = &conn.state.acl;
    acl.log.add(event, now_ms(), acl.log_max());
    Err(CmdError::WrongPass)
}

/// AUTH password | AUTH user password.
pub fn auth(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let (name, pass): (&[u8], &[u8]) = match a.len() {
        2 => {
            let default_nopass = conn.state.acl.store.get("default").is_none_or(|d| d.nopass);
            if default_nopass {
                return Err(CmdError::other(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (b"default", a[1])
        }
        3 => (a[1], a[2]),
        _ => return Err(CmdError::Syntax),
    };
    let user = authenticate(conn, a[0], name, pass)?;
    login(conn, user);
    Ok(Reply::Ok)
}

/// RESET: back to `default`, logged in only if it needs no password.
pub fn reset(conn: &mut Conn) {
    let acl = &conn.state.acl;
    let default = acl
        .store
        .get("default")
        .unwrap_or_else(|| Arc::new(User::default_user()));
    let auto = default.enabled && default.nopass;
    conn.info.borrow_mut().user = default.name.clone();
    conn.acl.user = default;
    conn.acl.epoch = acl.store.epoch();
    conn.authenticated = auto;
}

/// Closes every connection (on every core) logged in as one of `names`;
/// the calling connection gets its reply first.
pub async fn disconnect_users(
    router: &crate::exec::router::Router,
    names: Vec<String>,
) -> Result<(), CmdError> {
    use crate::server::introspect::clients::Wake;
    if names.is_empty() {
        return Ok(());
    }
    router
        .broadcast(move |ls| {
            for c in ls.clients.borrow().iter() {
                let c = c.borrow();
                if names.contains(&c.user) && !c.signal.killed() {
                    c.signal.raise(Wake::Killed);
                }
            }
        })
        .await?;
    Ok(())
}

/// After a subscription change: a client whose user's channels are
/// restricted keeps a copy of its subscriptions where other cores can see
/// them (so that narrowing the user's channels closes only the
/// subscribers it no longer allows). Unrestricted users keep none.
pub fn note_subscriptions(conn: &Conn) {
    let restricted = !conn.acl.user.all_selectors().any(|s| s.all_channels);
    let s = &conn.subs;
    let list = (restricted && s.active()).then(|| {
        s.channels
            .iter()
            .chain(&s.shard_channels)
            .map(|c| (c.clone(), false))
            .chain(s.patterns.iter().map(|p| (p.clone(), true)))
            .collect()
    });
    conn.info.borrow_mut().subscribed = list;
}

/// Closes the subscribed connections of `user` (every core) whose
/// subscriptions it no longer allows, as Redis does when channel
/// permissions are revoked. A subscriber whose subscriptions were not
/// kept (its user could use every channel then) is closed.
pub async fn disconnect_revoked_subscribers(conn: &Conn, user: Arc<User>) -> Result<(), CmdError> {
    use crate::server::introspect::clients::Wake;
    if user.all_selectors().any(|s| s.all_channels) {
        return Ok(());
    }
    conn.router
        .broadcast(move |ls| {
            for c in ls.clients.borrow().iter() {
                let c = c.borrow();
                if c.user != user.name || !c.pubsub || c.signal.killed() {
                    continue;
                }
                let allowed = c.subscribed.as_ref().is_some_and(|subs| {
                    subs.iter().all(|(name, pattern)| {
                        user.all_selectors()
                            .any(|s| super::check::channel_allowed(s, name, *pattern))
                    })
                });
                if !allowed {
                    c.signal.raise(Wake::Killed);
                }
            }
        })
        .await?;
    Ok(())
}
