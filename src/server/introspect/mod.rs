//! What operators reach for to see and steer a running server: the slow
//! log ([`slowlog`]), the latency monitor ([`latency`]), MONITOR
//! ([`monitor`]), the CLIENT subcommands that act on other connections or
//! on how this one is served ([`clients`]) and MEMORY STATS/DOCTOR
//! ([`memory`]).
//!
//! The connection calls two hooks around every command ([`Conn::execute`]
//! in `server::conn`): [`before`] (a paused server holds the command; a
//! script is shown to monitors before the commands it runs) and [`after`]
//! (the slow log, the latency monitor, monitors, and CLIENT REPLY's
//! silence). Both cost a few relaxed atomic loads when nothing is switched
//! on.

pub mod clients;
pub mod latency;
pub mod memory;
pub mod monitor;
pub mod slowlog;

use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc::UnboundedReceiver;

use crate::cmd::error::CmdError;
use crate::exec::command::{flags, Spec};
use crate::resp::reply::Reply;
use crate::server::conn::Conn;
use slowlog::Who;

/// CLIENT REPLY's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// CLIENT REPLY SKIP just ran: its own reply and the next are dropped.
    Skip,
    /// The next command's reply is dropped.
    SkipNext,
}

/// A connection's share of this module's state.
#[derive(Default)]
pub struct ConnIntro {
    /// In MONITOR mode: the lines of the commands every core runs.
    pub monitor: Option<UnboundedReceiver<Vec<u8>>>,
    pub reply: ReplyMode,
    /// CLIENT NO-TOUCH: reads leave keys' LRU age alone.
    pub no_touch: bool,
    /// A blocking command waiting for its answer: its arguments and the
    /// time its first attempt took, for the slow log once it is answered
    /// (Redis logs a blocked command when it completes).
    blocked: Option<(Vec<Vec<u8>>, u64)>,
    /// The address and name the slow log records, kept while the name
    /// stays the same (shared by a pipeline batch's commands).
    who: Option<Arc<Who>>,
}

impl ConnIntro {
    /// Whether a request must go through [`Conn::execute`] rather than join
    /// a pipeline batch to another core (which runs it there unseen by
    /// these hooks).
    #[inline]
    pub fn unbatched(&self) -> bool {
        self.reply != ReplyMode::On || self.no_touch || monitor::active() || clients::paused()
    }
}

/// Who runs this connection's commands, as the slow log names them.
pub fn who(conn: &mut Conn) -> Arc<Who> {
    let info = conn.info.borrow();
    match &conn.intro.who {
        Some(w) if w.name == info.name && w.addr == info.addr => w.clone(),
        _ => {
            let w = Arc::new(Who {
                addr: info.addr.clone(),
                name: info.name.clone(),
            });
            drop(info);
            conn.intro.who = Some(w.clone());
            w
        }
    }
}

/// Scripts are shown to monitors before they run, so the commands they run
/// follow them, as in Redis.
fn shown_before(spec: &Spec) -> bool {
    matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// Commands monitors never see: administrative ones, as Redis hides them.
fn hidden(spec: &Spec) -> bool {
    spec.has(flags::ADMIN) || spec.name == "monitor"
}

/// Before a command runs: waits out CLIENT PAUSE, feeds monitors a script.
/// False when the client was killed while it waited.
#[inline]
pub async fn before(conn: &mut Conn, spec: Option<&'static Spec>, argv: &[&[u8]]) -> bool {
    if clients::paused() && !clients::wait_pause(conn, spec).await {
        return false;
    }
    if monitor::active() && spec.is_some_and(shown_before) {
        let addr = conn.info.borrow().addr.clone();
        monitor::feed(conn.db, &addr, argv);
    }
    true
}

/// How a command went, for [`after`].
pub struct Ran {
    pub started: Instant,
    /// Only queued in MULTI: it has not run yet.
    pub queued: bool,
    /// Waiting in a blocking command (answered later, [`blocked_done`]).
    pub blocked: bool,
    /// Where its reply starts in the output.
    pub mark: usize,
}

/// After a command ran (its reply appended to `out` from `ran.mark` on):
/// the slow log, the latency monitor, monitors, and CLIENT REPLY.
#[inline]
pub fn after(
    conn: &mut Conn,
    spec: Option<&'static Spec>,
    argv: &[&[u8]],
    ran: Ran,
    out: &mut Vec<u8>,
) {
    let Ran {
        started,
        queued,
        blocked,
        mark,
    } = ran;
    if let Some(spec) = spec {
        let us = started.elapsed().as_micros() as u64;
        if blocked {
            // Logged, and its reply let through or not, once answered.
            conn.intro.blocked = Some((argv.iter().map(|a| a.to_vec()).collect(), us));
            if monitor::active() {
                let addr = conn.info.borrow().addr.clone();
                monitor::feed(conn.db, &addr, argv);
            }
            return;
        }
        // EXEC is not logged itself (Redis's skip_slowlog); a command only
        // queued in MULTI has not run.
        if !queued && spec.name != "exec" && slowlog::is_slow(us) {
            let w = who(conn);
            slowlog::record(argv, us, w);
        }
        if !queued && is_container(spec) && argv.len() > 1 {
            // A subcommand refused before it ran is not a run.
            let reply = &out[mark.min(out.len())..];
            let refused = reply.starts_with(b"-ERR unknown subcommand")
                || reply.starts_with(b"-ERR wrong number of arguments");
            let mut name = String::new();
            command_name(spec, argv, &mut name);
            if !refused && name.contains('|') {
                let mut stats = conn.router.local.stats.borrow_mut();
                stats.record_sub_latency(&name, us);
            }
        }
        if latency::threshold_ms().is_some() && !queued {
            let event = if spec.has(flags::FAST) {
                "fast-command"
            } else {
                "command"
            };
            latency::add_if_needed(event, us / 1000);
        }
        if monitor::active() && !hidden(spec) && !shown_before(spec) {
            let addr = conn.info.borrow().addr.clone();
            monitor::feed(conn.db, &addr, argv);
        }
    }
    if out.get(mark) == Some(&b'-') {
        conn.router
            .local
            .stats
            .borrow_mut()
            .note_error(&out[mark..]);
    }
    if spec.is_some_and(|s| {
        matches!(
            s.name,
            "subscribe"
                | "psubscribe"
                | "ssubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "sunsubscribe"
                | "reset"
        )
    }) {
        let on = conn.subs.active();
        conn.info.borrow_mut().pubsub = on;
        crate::security::acl::gate::note_subscriptions(conn);
    }
    reply_mode(conn, out, mark, spec);
}

/// Commands whose whole answer is pub/sub notifications: Redis delivers
/// them even under CLIENT REPLY OFF or SKIP, in RESP2 as in RESP3, so a
/// client that silenced its replies still learns what it subscribed to.
const PUSHING: &[&str] = &[
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

/// A blocking command's answer was appended to `out` from `mark` on: the
/// slow log entry for it, and CLIENT REPLY's silence.
pub fn blocked_done(conn: &mut Conn, out: &mut Vec<u8>, mark: usize) {
    if let Some((argv, us)) = conn.intro.blocked.take() {
        if slowlog::is_slow(us) {
            let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
            let w = who(conn);
            slowlog::record(&argv, us, w);
        }
        // Woken with an error (its key or group gone, CLIENT UNBLOCK
        // ERROR): a failed call in INFO commandstats and errorstats; one
        // its user may no longer run (ACL changed while it waited) was
        // refused before it ran: a rejected call, as Redis 7.2 counts it.
        if out.get(mark) == Some(&b'-') {
            let mut stats = conn.router.local.stats.borrow_mut();
            stats.note_error(&out[mark..]);
            stats.error_replies += 1;
            if let Some(spec) = argv.first().and_then(|n| crate::exec::command::lookup(n)) {
                let c = &mut stats.by_command[crate::exec::command::index_of(spec)];
                if out[mark..].starts_with(b"-NOPERM") {
                    c.rejected += 1;
                } else {
                    c.failed += 1;
                }
            }
        }
    }
    reply_mode(conn, out, mark, None);
}

/// CLIENT REPLY OFF and SKIP drop the reply just appended, but never a
/// push: [`PUSHING`] commands keep their whole answer, and RESP3 push
/// frames (invalidations, keyspace messages) that came out with a reply
/// stay.
fn reply_mode(conn: &mut Conn, out: &mut Vec<u8>, mark: usize, spec: Option<&'static Spec>) {
    match conn.intro.reply {
        ReplyMode::On => return,
        ReplyMode::Off => {}
        ReplyMode::Skip => conn.intro.reply = ReplyMode::SkipNext,
        ReplyMode::SkipNext => conn.intro.reply = ReplyMode::On,
    }
    if !spec.is_some_and(|s| PUSHING.contains(&s.name)) {
        keep_pushes(out, mark);
    }
}

/// Drops every frame after `mark` but RESP3 pushes (`>`).
fn keep_pushes(out: &mut Vec<u8>, mark: usize) {
    let mut read = mark;
    let mut write = mark;
    while read < out.len() {
        let end = match crate::resp::frame::reply_len(&out[read..]) {
            Ok(Some(n)) => read + n,
            // Our own output is whole; if it is not, silence all of it.
            _ => break,
        };
        if out[read] == b'>' {
            out.copy_within(read..end, write);
            write += end - read;
        }
        read = end;
    }
    out.truncate(write);
}

/// Commands whose first argument names a subcommand.
const CONTAINERS: &[&str] = &[
    "client", "config", "object", "memory", "slowlog", "latency", "command", "script", "function",
    "pubsub", "xinfo", "xgroup", "cluster", "acl",
];

/// Whether a command's first argument names a subcommand: looked up by
/// the command's place in the table (this runs for every command).
#[inline]
pub fn is_container(spec: &'static Spec) -> bool {
    static TABLE: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        crate::exec::command::COMMANDS
            .iter()
            .map(|s| CONTAINERS.contains(&s.name))
            .collect()
    });
    table
        .get(crate::exec::command::index_of(spec))
        .copied()
        .unwrap_or(false)
}

/// A command's full name as CLIENT LIST's `cmd=` shows it: `client|list`
/// for a subcommand, as Redis 7 names it.
pub fn command_name(spec: &'static Spec, argv: &[&[u8]], out: &mut String) {
    out.push_str(spec.name);
    if let Some(sub) = argv.get(1).filter(|_| is_container(spec)) {
        if sub.len() <= 32 && sub.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
            out.push('|');
            out.extend(sub.iter().map(|c| c.to_ascii_lowercase() as char));
        }
    }
}

/// When a connection ends or RESETs: out of MONITOR mode.
pub fn leave(conn: &mut Conn) {
    if conn.intro.monitor.take().is_some() {
        monitor::stop(conn.id());
        conn.info.borrow_mut().monitor = false;
    }
}

/// The parameters this module applies when CONFIG SET changes them.
pub fn config_changed(name: &str, value: &str) {
    let n = value.parse::<i64>().unwrap_or(0);
    match name {
        "slowlog-log-slower-than" => slowlog::set_slower_than(n),
        "slowlog-max-len" => slowlog::set_max_len(usize::try_from(n).unwrap_or(0)),
        "latency-monitor-threshold" => latency::set_threshold_ms(u64::try_from(n).unwrap_or(0)),
        _ => {}
    }
}

/// MONITOR: refused inside MULTI, as Redis refuses it; else this connection
/// receives every command run from now on (see the connection loop).
pub fn monitor_cmd(conn: &mut Conn) -> crate::cmd::error::CmdResult {
    // Inside EXEC: a transaction's client expects one reply per command.
    if conn.tx.is_some() {
        return Err(CmdError::other(
            "MONITOR isn't allowed for DENY BLOCKING client",
        ));
    }
    if conn.intro.monitor.is_none() {
        conn.intro.monitor = Some(monitor::start(conn.id()));
        conn.info.borrow_mut().monitor = true;
    }
    Ok(Reply::Ok)
}

/// A HELP reply: one status line each.
pub(crate) fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
}

pub(crate) fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::UnknownSubcommand {
        cmd: cmd.into(),
        sub: String::from_utf8_lossy(sub).into_owned(),
    }
}
