//! ACL LOG: refused commands and failed logins, newest first, similar
//! events within a minute counted on one entry, at most `acllog-max-len`
//! entries. Written only when something is refused, so a mutex is fine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::resp::reply::Reply;

/// Events closer than this (ms) with the same reason, context, object and
/// user share an entry.
const GROUPING_MS: u64 = 60_000;
/// How many recent entries are looked at for one to share.
const GROUPING_SCAN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Toplevel,
    Multi,
    Lua,
}

/// What happened, as the log is told it.
pub struct Event {
    pub reason: Reason,
    pub context: Context,
    pub object: Vec<u8>,
    pub username: String,
    pub client_info: String,
}

struct Entry {
    count: u64,
    event: Event,
    entry_id: u64,
    created_ms: u64,
    updated_ms: u64,
}

#[derive(Default)]
pub struct Log {
    inner: Mutex<(VecDeque<Entry>, u64)>,
    /// Refusals by reason since start (INFO stats `acl_access_denied_*`),
    /// in `Reason` order.
    denied: [AtomicU64; 4],
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Entry>, u64)> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn add(&self, event: Event, now_ms: u64, max_len: usize) {
        self.denied[event.reason as usize].fetch_add(1, Ordering::Relaxed);
        let mut g = self.lock();
        let (entries, next_id) = &mut *g;
        let similar = entries.iter().take(GROUPING_SCAN).position(|e| {
            e.event.reason == event.reason
                && e.event.context == event.context
                && e.updated_ms.abs_diff(now_ms) <= GROUPING_MS
                && e.event.object == event.object
                && e.event.username == event.username
        });
        if let Some(i) = similar {
            if let Some(mut e) = entries.remove(i) {
                e.count += 1;
                e.updated_ms = now_ms;
                e.event.client_info = event.client_info;
                entries.push_front(e);
            }
            return;
        }
        entries.push_front(Entry {
            count: 1,
            event,
            entry_id: *next_id,
            created_ms: now_ms,
            updated_ms: now_ms,
        });
        *next_id += 1;
        entries.truncate(max_len);
    }

    /// INFO stats' ACL lines.
    pub fn info_stats(&self, w: &mut impl std::fmt::Write) {
        let n = |r: Reason| self.denied[r as usize].load(Ordering::Relaxed);
        let _ = write!(
            w,
            "acl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:{}\r\n",
            n(Reason::Auth),
            n(Reason::Command),
            n(Reason::Key),
            n(Reason::Channel),
        );
    }

    pub fn reset(&self) {
        self.lock().0.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest `count` entries as ACL LOG answers them.
    pub fn reply(&self, count: usize, now_ms: u64) -> Reply {
        let g = self.lock();
        let s = |t: &'static str| Reply::bulk(t);
        let items =
            g.0.iter()
                .take(count)
                .map(|e| {
                    let ev = &e.event;
                    Reply::Map(vec![
                        (s("count"), Reply::Int(e.count as i64)),
                        (
                            s("reason"),
                            s(match ev.reason {
                                Reason::Command => "command",
                                Reason::Key => "key",
                                Reason::Channel => "channel",
                                Reason::Auth => "auth",
                            }),
                        ),
                        (
                            s("context"),
                            s(match ev.context {
                                Context::Toplevel => "toplevel",
                                Context::Multi => "multi",
                                Context::Lua => "lua",
                            }),
                        ),
                        (s("object"), Reply::Bulk(ev.object.clone())),
                        (s("username"), Reply::bulk(ev.username.clone())),
                        (
                            s("age-seconds"),
                            Reply::Double(now_ms.saturating_sub(e.updated_ms) as f64 / 1000.0),
                        ),
                        (s("client-info"), Reply::bulk(ev.client_info.clone())),
                        (s("entry-id"), Reply::Int(e.entry_id as i64)),
                        (s("timestamp-created"), Reply::Int(e.created_ms as i64)),
                        (s("timestamp-last-updated"), Reply::Int(e.updated_ms as i64)),
                    ])
                })
                .collect();
        Reply::Array(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(object: &str) -> Event {
        Event {
            reason: Reason::Command,
            context: Context::Toplevel,
            object: object.as_bytes().to_vec(),
            username: "u".into(),
            client_info: "id=1".into(),
        }
    }

    #[test]
    fn similar_events_share_an_entry_and_the_log_is_bounded() {
        let log = Log::default();
        log.add(ev("get"), 1000, 3);
        log.add(ev("get"), 2000, 3);
        assert_eq!(log.len(), 1);
        log.add(ev("get"), 2000 + GROUPING_MS + 1, 3);
        assert_eq!(log.len(), 2, "too far apart in time");
        log.add(ev("a"), 0, 3);
        log.add(ev("b"), 0, 3);
        assert_eq!(log.len(), 3);
        match log.reply(10, 0) {
            Reply::Array(items) => {
                assert_eq!(items.len(), 3);
                let Reply::Map(first) = &items[0] else {
                    panic!("an entry is a map")
                };
                assert_eq!(first.len(), 10);
                assert_eq!(first[3].1, Reply::bulk("b"));
                // entry ids count every new entry
                assert_eq!(first[7].1, Reply::Int(3));
            }
            other => panic!("{other:?}"),
        }
        log.reset();
        assert!(log.is_empty());
    }
}
