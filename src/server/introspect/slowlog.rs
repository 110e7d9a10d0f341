//! SLOWLOG: the commands that ran longer than `slowlog-log-slower-than`.
//!
//! # Per core, merged on read
//! Each executor thread keeps its own log (a thread-local deque, newest
//! first): recording an entry takes no lock and touches no other core. Only
//! the entry's id comes from one server-wide counter, taken when an entry is
//! recorded (a slow command, not every command), so ids stay unique and
//! increase in the order entries were made. SLOWLOG GET asks every core for
//! its newest entries and merges them by id, newest first; LEN and RESET
//! visit every core the same way.
//!
//! Each core keeps at most `slowlog-max-len` entries, and a read keeps the
//! newest `slowlog-max-len` of the union, so the log a client sees is the
//! one Redis would keep.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::numbers::parse_i64;
use crate::resp::reply::Reply;
use crate::server::conn::Conn;

/// `slowlog-log-slower-than` in microseconds (negative: off).
static SLOWER_THAN: AtomicI64 = AtomicI64::new(10_000);
/// `slowlog-max-len`.
static MAX_LEN: AtomicUsize = AtomicUsize::new(128);
/// The next entry's id, server-wide.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Redis keeps this many arguments of a command (the last one saying how
/// many more there were) and this many bytes of each.
const MAX_ARGC: usize = 32;
const MAX_STRING: usize = 128;

pub fn set_slower_than(us: i64) {
    SLOWER_THAN.store(us, Ordering::Relaxed);
}

pub fn set_max_len(n: usize) {
    MAX_LEN.store(n, Ordering::Relaxed);
}

/// Whether a command that took `us` microseconds goes in the log.
#[inline]
pub fn is_slow(us: u64) -> bool {
    let t = SLOWER_THAN.load(Ordering::Relaxed);
    t >= 0 && us >= t as u64
}

/// Who ran a command, as the log names them (shared by the commands of one
/// pipeline batch).
#[derive(Debug, Default)]
pub struct Who {
    pub addr: String,
    pub name: String,
}

#[derive(Clone)]
struct Entry {
    id: u64,
    unix_secs: u64,
    us: u64,
    argv: Vec<Vec<u8>>,
    who: Arc<Who>,
}

thread_local! {
    /// This core's log, newest first.
    static LOG: RefCell<VecDeque<Entry>> = const { RefCell::new(VecDeque::new()) };
}

/// The arguments as Redis keeps them: at most 32, each at most 128 bytes.
fn trimmed(argv: &[&[u8]]) -> Vec<Vec<u8>> {
    let keep = if argv.len() > MAX_ARGC {
        MAX_ARGC - 1
    } else {
        argv.len()
    };
    let mut out: Vec<Vec<u8>> = argv[..keep]
        .iter()
        .map(|a| {
            if a.len() > MAX_STRING {
                let mut v = a[..MAX_STRING].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes(),
                );
                v
            } else {
                a.to_vec()
            }
        })
        .collect();
    if keep < argv.len() {
        out.push(format!("... ({} more arguments)", argv.len() - keep).into_bytes());
    }
    out
}

/// Records a command that took `us` microseconds on this core's log (the
/// caller checked [`is_slow`]).
pub fn record(argv: &[&[u8]], us: u64, who: Arc<Who>) {
    let max = MAX_LEN.load(Ordering::Relaxed);
    if max == 0 {
        return;
    }
    let e = Entry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        unix_secs: crate::server::state::now_ms() / 1000,
        us,
        argv: trimmed(argv),
        who,
    };
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        l.push_front(e);
        l.truncate(max);
    });
}

fn entry_reply(e: Entry) -> Reply {
    Reply::Array(vec![
        Reply::Int(e.id as i64),
        Reply::Int(e.unix_secs as i64),
        Reply::Int(e.us as i64),
        Reply::Array(e.argv.into_iter().map(Reply::Bulk).collect()),
        Reply::bulk(e.who.addr.as_bytes()),
        Reply::bulk(e.who.name.as_bytes()),
    ])
}

const HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

pub async fn slowlog(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match (sub.as_str(), a.len()) {
        ("help", 2) => Ok(super::help(HELP)),
        ("reset", 2) => {
            conn.router
                .broadcast(|_| LOG.with(|l| l.borrow_mut().clear()))
                .await?;
            Ok(Reply::Ok)
        }
        ("len", 2) => {
            let lens = conn
                .router
                .broadcast(|_| LOG.with(|l| l.borrow().len()))
                .await?;
            let n = lens.into_iter().sum::<usize>();
            Ok(Reply::Int(n.min(MAX_LEN.load(Ordering::Relaxed)) as i64))
        }
        ("get", 2 | 3) => {
            let count = match a.get(2) {
                None => 10,
                Some(c) => match parse_i64(c) {
                    Some(-1) => usize::MAX,
                    Some(n) if n >= 0 => n as usize,
                    _ => {
                        return Err(CmdError::other(
                            "count should be greater than or equal to -1",
                        ))
                    }
                },
            };
            let count = count.min(MAX_LEN.load(Ordering::Relaxed));
            let parts = conn
                .router
                .broadcast(move |_| {
                    LOG.with(|l| l.borrow().iter().take(count).cloned().collect::<Vec<_>>())
                })
                .await?;
            let mut all: Vec<Entry> = parts.into_iter().flatten().collect();
            all.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
            all.truncate(count);
            Ok(Reply::Array(all.into_iter().map(entry_reply).collect()))
        }
        ("get", _) => Err(CmdError::other(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
            String::from_utf8_lossy(a[1])
        ))),
        ("help" | "reset" | "len", _) => Err(CmdError::Arity(format!("slowlog|{sub}"))),
        _ => Err(super::unknown_sub("SLOWLOG", a[1])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_trimmed_as_redis_trims_them() {
        let args: Vec<Vec<u8>> = (0..34).map(|i| i.to_string().into_bytes()).collect();
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let t = trimmed(&argv);
        assert_eq!(t.len(), 32);
        assert_eq!(t[30], b"30");
        assert_eq!(t[31], b"... (3 more arguments)");
        let long = vec![b'A'; 129];
        let t = trimmed(&[b"set", &long]);
        assert_eq!(t[1].len(), 128 + "... (1 more bytes)".len());
        assert!(t[1].ends_with(b"A... (1 more bytes)"));
    }
}
