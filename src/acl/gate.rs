//! Where connections meet the ACL: logging in (AUTH, HELLO ... AUTH,
//! RESET), the check before every command a connection or a script runs,
//! and the ACL log entries of what is refused.

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
fn refresh(conn: &mut Conn, epoch: u64) {
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

/// EXEC checks each queued command again (the user may have changed since
/// it was queued); a refused one answers in its place, as in Redis.
pub fn recheck_at_exec(conn: &mut Conn, spec: &'static Spec, argv: &[&[u8]]) -> Option<CmdError> {
    let epoch = conn.state.acl.store.epoch();
    if epoch != conn.acl.epoch {
        refresh(conn, epoch);
    }
    if conn.acl.user.unrestricted {
        return None;
    }
    let user = conn.acl.user.clone();
    let d = user.check(spec, argv).err()?;
    let info = conn.info.borrow().line(now_ms());
    log_denied(&conn.state.acl, d, Context::Multi, &user, spec, argv, info);
    let reason = match d {
        Denied::Command => "no permission to execute the command or subcommand",
        Denied::Key(_) => "no permission to touch the specified keys",
        Denied::Channel(_) => "no permission to access one of the channels used as arguments",
    };
    Some(CmdError::Raw(format!(
        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"
    )))
}

/// SORT's BY and GET patterns may read any key: Redis allows them only to
/// users that may read every key.
fn sort_patterns(user: &User, spec: &'static Spec, argv: &[&[u8]]) -> Option<CmdError> {
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

fn log_denied(
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
pub async fn disconnect_users(conn: &Conn, names: Vec<String>) -> Result<(), CmdError> {
    use crate::server::introspect::clients::Wake;
    if names.is_empty() {
        return Ok(());
    }
    conn.router
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

/// What a script needs to check the commands it calls: its caller's user.
/// Absent when the caller may run everything.
#[derive(Clone)]
pub struct ScriptAcl {
    pub user: Arc<User>,
    pub acl: Arc<Acl>,
    pub client_info: Arc<str>,
}

impl ScriptAcl {
    /// For a script `conn` is about to run.
    pub fn of(conn: &Conn) -> Option<ScriptAcl> {
        if conn.acl.user.unrestricted {
            return None;
        }
        Some(ScriptAcl {
            user: conn.acl.user.clone(),
            acl: conn.state.acl.clone(),
            client_info: conn.info.borrow().line(now_ms()).into(),
        })
    }

    /// A command the script calls runs with its caller's permissions.
    pub fn check(&self, spec: &'static Spec, argv: &[&[u8]]) -> Result<(), CmdError> {
        if let Err(d) = self.user.check(spec, argv) {
            let info = self.client_info.to_string();
            log_denied(&self.acl, d, Context::Lua, &self.user, spec, argv, info);
            return Err(CmdError::Raw(format!(
                "ERR ACL failure in script: {}",
                message(d, &self.user.name, spec, argv)
            )));
        }
        match sort_patterns(&self.user, spec, argv) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// What a REST bearer token says about ACL users.
pub enum RestToken {
    /// Not `user:password` of a user: the REST tokens decide.
    NotAUser,
    /// `user:password` of this user: the request runs as it.
    User(Arc<User>),
    /// `user:password` of a user, with a wrong password (or the user off).
    Refused,
}

/// REST: a token `user:password` naming an ACL user logs the request in
/// as that user (a failed one is logged in ACL LOG as a failed AUTH).
pub fn rest_token(conn: &mut Conn, token: Option<&str>) -> RestToken {
    let Some((name, pass)) = token.and_then(|t| t.split_once(':')) else {
        return RestToken::NotAUser;
    };
    if conn.state.acl.store.get(name).is_none() {
        return RestToken::NotAUser;
    }
    match authenticate(conn, b"AUTH", name.as_bytes(), pass.as_bytes()) {
        Ok(u) => RestToken::User(u),
        Err(_) => RestToken::Refused,
    }
}

/// REST requests authorised by the REST tokens (or none) run as
/// `default`.
pub fn login_default(conn: &mut Conn) {
    if conn.acl.user.name != "default" {
        let default = conn
            .state
            .acl
            .store
            .get("default")
            .unwrap_or_else(|| Arc::new(User::default_user()));
        login(conn, default);
    }
}

/// REST event streams (`/subscribe/...`, `/psubscribe/...`): the NOPERM
/// text when the user may not subscribe to all of `names`.
pub fn subscribe_refused(conn: &mut Conn, patterns: bool, names: &[Vec<u8>]) -> Option<String> {
    let verb: &[u8] = if patterns {
        b"psubscribe"
    } else {
        b"subscribe"
    };
    let spec = command::lookup(verb)?;
    let mut argv: Vec<&[u8]> = vec![verb];
    argv.extend(names.iter().map(|n| n.as_slice()));
    check(conn, spec, &argv).map(|e| e.to_string())
}

/// What a blocked command needs to be checked again when it is served:
/// Redis refuses a blocked command whose user changed meanwhile.
pub struct BlockedAcl {
    acl: Arc<Acl>,
    user: String,
    epoch: u64,
    spec: Option<&'static Spec>,
    argv: Vec<Vec<u8>>,
    client_info: String,
}

impl BlockedAcl {
    pub fn of(conn: &Conn, name: &str, argv: &[&[u8]]) -> Arc<BlockedAcl> {
        Arc::new(BlockedAcl {
            acl: conn.state.acl.clone(),
            user: conn.acl.user.name.clone(),
            epoch: conn.acl.epoch,
            spec: command::lookup(name.as_bytes()),
            argv: argv.iter().map(|a| a.to_vec()).collect(),
            client_info: conn.info.borrow().line(now_ms()),
        })
    }

    /// The error to answer instead of serving, if the user may no longer
    /// run the command (nothing to do while the user table is unchanged).
    pub fn recheck(&self) -> Option<Reply> {
        if self.acl.store.epoch() == self.epoch {
            return None;
        }
        let spec = self.spec?;
        let user = self
            .acl
            .store
            .get(&self.user)
            .unwrap_or_else(|| Arc::new(User::new(&self.user)));
        let argv: Vec<&[u8]> = self.argv.iter().map(|a| a.as_slice()).collect();
        let d = user.check(spec, &argv).err()?;
        let context = Context::Toplevel;
        let info = self.client_info.clone();
        log_denied(&self.acl, d, context, &user, spec, &argv, info);
        Some(Reply::Error(
            format!("NOPERM {}", message(d, &user.name, spec, &argv)).into(),
        ))
    }
}
