//! CLIENT subcommands that act on other connections or on how this one is
//! served: KILL, PAUSE/UNPAUSE, REPLY, UNBLOCK, NO-TOUCH.
//!
//! # Reaching a connection on another core
//! Every connection's [`ClientInfo`] sits in its executor's client list and
//! carries a [`Signal`]. KILL and UNBLOCK visit every executor (a
//! broadcast, so the closure runs on the connection's own thread), set the
//! signal of the connections they pick and wake them: the connection loop
//! waits on its signal beside its socket (and beside a blocking command's
//! answer), so it ends, or leaves its blocking command, at once.
//!
//! # Pause
//! CLIENT PAUSE sets a server-wide deadline. A command about to run checks
//! it with one relaxed load; while a pause holds it (every command with
//! ALL, those that may write with WRITE) it waits, counted as blocked, and
//! runs when UNPAUSE clears the deadline or the deadline passes.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::parse_i64;
use crate::exec::command::{flags, Spec};
use crate::resp::reply::Reply;
use crate::server::client::ClientInfo;
use crate::server::conn::Conn;
use crate::server::state::now_ms;

use super::ReplyMode;

/// What woke a connection through its [`Signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Killed,
    /// CLIENT UNBLOCK ... TIMEOUT: the blocking command answers as if timed
    /// out.
    UnblockTimeout,
    /// CLIENT UNBLOCK ... ERROR.
    UnblockError,
}

/// The error a blocking command answers when CLIENT UNBLOCK ... ERROR ends it.
pub const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// How CLIENT KILL and CLIENT UNBLOCK reach a connection (on its own core).
#[derive(Default)]
pub struct Signal {
    wake: Cell<Option<Wake>>,
    /// Inside a blocking command (what UNBLOCK may end).
    blocked: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signal({:?})", self.wake.get())
    }
}

impl Signal {
    pub(crate) fn raise(&self, w: Wake) {
        // A kill outranks an unblock.
        if self.wake.get() != Some(Wake::Killed) {
            self.wake.set(Some(w));
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked.get()
    }

    pub fn killed(&self) -> bool {
        self.wake.get() == Some(Wake::Killed)
    }

    pub fn set_blocked(&self, on: bool) {
        self.blocked.set(on);
        if !on && self.wake.get() != Some(Wake::Killed) {
            self.wake.set(None);
        }
    }

    /// Resolves when the connection is killed (or, while blocked,
    /// unblocked), with the reason.
    pub fn wait(&self) -> impl std::future::Future<Output = Wake> + Unpin + '_ {
        futures::future::poll_fn(move |cx| match self.wake.get() {
            Some(w) => Poll::Ready(w),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// CLIENT PAUSE's end (Unix ms; 0: no pause) and mode.
static PAUSE_UNTIL: AtomicU64 = AtomicU64::new(0);
static PAUSE_ALL: AtomicBool = AtomicBool::new(false);

#[inline]
pub fn paused() -> bool {
    PAUSE_UNTIL.load(Ordering::Relaxed) != 0
}

/// Whether a command may write or replicate, which CLIENT PAUSE WRITE holds
/// (EXEC when its transaction has such a command).
fn may_write(conn: &Conn, spec: &Spec) -> bool {
    let w = |s: &Spec| {
        s.has(flags::WRITE)
            || matches!(
                s.name,
                "eval" | "evalsha" | "fcall" | "publish" | "pfcount" | "wait"
            )
    };
    if spec.name == "exec" {
        return conn
            .multi
            .as_ref()
            .is_some_and(|m| m.queued.iter().any(|q| w(q.spec)));
    }
    w(spec)
}

/// Holds a command while a pause applies to it; false if the client was
/// killed meanwhile.
pub async fn wait_pause(conn: &Conn, spec: Option<&'static Spec>) -> bool {
    let Some(spec) = spec else { return true };
    // A command queued inside MULTI does not run yet.
    if conn.multi.is_some() && !matches!(spec.name, "exec" | "multi" | "discard") {
        return true;
    }
    let signal = conn.info.borrow().signal.clone();
    let mut waiting = false;
    loop {
        if signal.killed() {
            break;
        }
        let until = PAUSE_UNTIL.load(Ordering::Relaxed);
        let now = now_ms();
        if until == 0 || now >= until {
            if until != 0 {
                let _ =
                    PAUSE_UNTIL.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            break;
        }
        if !PAUSE_ALL.load(Ordering::Relaxed) && !may_write(conn, spec) {
            break;
        }
        if !waiting {
            waiting = true;
            conn.state.blocked_clients.fetch_add(1, Ordering::Relaxed);
        }
        crate::runtime::sleep(Duration::from_millis((until - now).min(5))).await;
    }
    if waiting {
        conn.state.blocked_clients.fetch_sub(1, Ordering::Relaxed);
    }
    !signal.killed()
}

/// CLIENT KILL's filters.
#[derive(Clone, Default)]
struct Filter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    kind: Option<&'static str>,
    maxage: Option<u64>,
    skipme: bool,
    /// USER: clients logged in as this ACL user.
    user: Option<String>,
}

fn client_kind(c: &ClientInfo) -> &'static str {
    if c.pubsub {
        "pubsub"
    } else {
        "normal"
    }
}

impl Filter {
    fn matches(&self, c: &ClientInfo, me: u64, now: u64) -> bool {
        self.id.is_none_or(|id| c.id == id)
            && self.addr.as_ref().is_none_or(|a| c.addr == *a)
            && self.laddr.as_ref().is_none_or(|a| c.laddr == *a)
            && self.kind.is_none_or(|k| client_kind(c) == k)
            && self
                .maxage
                .is_none_or(|age| now.saturating_sub(c.created_ms) / 1000 >= age)
            && self.user.as_ref().is_none_or(|u| c.user == *u)
            && !(self.skipme && c.id == me)
    }
}

/// Redis's client type names.
fn kind_arg(a: &[u8]) -> Option<&'static str> {
    let s = String::from_utf8_lossy(a).to_lowercase();
    Some(match s.as_str() {
        "normal" => "normal",
        "pubsub" => "pubsub",
        "master" => "master",
        "replica" | "slave" => "replica",
        _ => return None,
    })
}

fn parse_kill(a: &[&[u8]]) -> Result<Filter, CmdError> {
    let mut f = Filter {
        skipme: true,
        ..Default::default()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut i = 2;
    while i < a.len() {
        let Some(v) = a.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        if is(a[i], "id") {
            match parse_i64(v) {
                Some(n) if n > 0 => f.id = Some(n as u64),
                _ => return Err(CmdError::other("client-id should be greater than 0")),
            }
        } else if is(a[i], "type") {
            f.kind =
                Some(kind_arg(v).ok_or_else(|| {
                    CmdError::other(format!("Unknown client type '{}'", text(v)))
                })?);
        } else if is(a[i], "addr") {
            f.addr = Some(text(v));
        } else if is(a[i], "laddr") {
            f.laddr = Some(text(v));
        } else if is(a[i], "user") {
            f.user = Some(text(v));
        } else if is(a[i], "skipme") {
            f.skipme = if is(v, "yes") {
                true
            } else if is(v, "no") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
        } else if is(a[i], "maxage") {
            match parse_i64(v) {
                Some(n) if n >= 0 => f.maxage = Some(n as u64),
                _ => return Err(CmdError::Syntax),
            }
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(f)
}

/// Kills the clients `f` picks on every core; how many.
async fn kill_matching(conn: &Conn, f: Filter) -> Result<usize, CmdError> {
    let me = conn.id();
    // Masters and replicas are not client connections in keel: none match.
    if matches!(f.kind, Some("master" | "replica")) {
        return Ok(0);
    }
    let counts = conn
        .router
        .broadcast(move |ls| {
            let now = now_ms();
            let mut n = 0;
            for c in ls.clients.borrow().iter() {
                let c = c.borrow();
                if !c.signal.killed() && f.matches(&c, me, now) {
                    c.signal.raise(Wake::Killed);
                    n += 1;
                }
            }
            n
        })
        .await?;
    Ok(counts.into_iter().sum())
}

pub async fn kill(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    if a.len() == 3 {
        // The old form: one address, and an error if nobody is there.
        let f = Filter {
            addr: Some(String::from_utf8_lossy(a[2]).into_owned()),
            ..Default::default()
        };
        return match kill_matching(conn, f).await? {
            0 => Err(CmdError::other("No such client")),
            _ => Ok(Reply::Ok),
        };
    }
    let f = parse_kill(a)?;
    if let Some(u) = &f.user {
        if conn.state.acl.store.get(u).is_none() {
            return Err(CmdError::other(format!("No such user '{u}'")));
        }
    }
    Ok(Reply::Int(kill_matching(conn, f).await? as i64))
}

pub fn pause(a: &[&[u8]]) -> CmdResult {
    let ms = match parse_i64(a[2]) {
        None => return Err(CmdError::other("timeout is not an integer or out of range")),
        Some(n) if n < 0 => return Err(CmdError::other("timeout is negative")),
        Some(n) => n as u64,
    };
    let all = match a.get(3) {
        None => true,
        Some(m) if is(m, "all") => true,
        Some(m) if is(m, "write") => false,
        Some(_) => return Err(CmdError::other("CLIENT PAUSE mode must be WRITE or ALL")),
    };
    let until = now_ms().saturating_add(ms.max(1));
    let prev = PAUSE_UNTIL.load(Ordering::Relaxed);
    // A pause in progress is only ever made longer or stricter.
    if prev == 0 || prev <= now_ms() {
        PAUSE_ALL.store(all, Ordering::Relaxed);
    } else if all {
        PAUSE_ALL.store(true, Ordering::Relaxed);
    }
    PAUSE_UNTIL.fetch_max(until, Ordering::Relaxed);
    Ok(Reply::Ok)
}

pub fn unpause() -> CmdResult {
    PAUSE_UNTIL.store(0, Ordering::Relaxed);
    Ok(Reply::Ok)
}

pub fn reply(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    conn.intro.reply = if is(a[2], "on") {
        ReplyMode::On
    } else if is(a[2], "off") {
        ReplyMode::Off
    } else if is(a[2], "skip") {
        // Its own reply is dropped too, then the next command's.
        ReplyMode::Skip
    } else {
        return Err(CmdError::Syntax);
    };
    Ok(Reply::Ok)
}

pub async fn unblock(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let id = parse_i64(a[2]).ok_or(CmdError::NotInteger)?;
    let why = match a.get(3) {
        None => Wake::UnblockTimeout,
        Some(w) if is(w, "timeout") => Wake::UnblockTimeout,
        Some(w) if is(w, "error") => Wake::UnblockError,
        Some(_) => {
            return Err(CmdError::other(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
    };
    let found = conn
        .router
        .broadcast(move |ls| {
            for c in ls.clients.borrow().iter() {
                let c = c.borrow();
                if c.id as i64 == id && c.signal.blocked.get() && c.signal.wake.get().is_none() {
                    c.signal.raise(why);
                    return true;
                }
            }
            false
        })
        .await?;
    Ok(Reply::Int(i64::from(found.into_iter().any(|f| f))))
}

/// CLIENT NO-TOUCH ON|OFF: whether this client's reads leave keys' LRU
/// age alone (`Ctx::no_touch`).
pub fn no_touch(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    conn.intro.no_touch = if is(a[2], "on") {
        true
    } else if is(a[2], "off") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    Ok(Reply::Ok)
}

/// The CLIENT subcommands this module answers, or `None` for the others.
pub async fn client(conn: &mut Conn, sub: &str, a: &[&[u8]]) -> Option<CmdResult> {
    Some(match (sub, a.len()) {
        ("kill", 3..) => kill(conn, a).await,
        ("pause", 3) => pause(a),
        ("pause", 4) => pause(a),
        ("pause", 5..) => Err(CmdError::other(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(a[1])
        ))),
        ("unpause", 2) => unpause(),
        ("reply", 3) => reply(conn, a),
        ("unblock", 3 | 4) => unblock(conn, a).await,
        ("no-touch", 3) => no_touch(conn, a),
        ("kill" | "pause" | "unpause" | "reply" | "unblock" | "no-touch", _) => {
            Err(CmdError::Arity(format!("client|{sub}")))
        }
        _ => return None,
    })
}
