//! The other ways a command reaches a shard, each checked as Redis checks
//! it: EXEC runs its queue again through the check, a script's
//! `redis.call` runs with its caller's permissions, a blocked command is
//! checked again when it is served if users changed meanwhile, and a REST
//! request runs as the user its token names.

use std::sync::Arc;

use super::check::{message, Denied};
use super::gate::{authenticate, check, log_denied, login, refresh, sort_patterns};
use super::log::Context;
use super::user::User;
use super::Acl;
use crate::cmd::error::CmdError;
use crate::exec::command::{self, Spec};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

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
