//! Client-side caching, the shard's side: which clients read which keys
//! (default tracking mode), and the invalidations the shard's writes
//! produced and the server has not delivered yet.
//!
//! As in Redis, keys are remembered by name alone, whatever the database:
//! a write to `k` in any database invalidates every client that read a
//! `k`. Entries are forgotten when they are invalidated. Clients in
//! broadcasting mode (BCAST) are not remembered per key: while any exists
//! ([`set_broadcasting`]), every written key is reported, and the server
//! matches it against their prefixes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

static BROADCASTING: AtomicUsize = AtomicUsize::new(0);
/// `tracking-table-max-keys` (0: no limit), for the whole process.
static MAX_KEYS: AtomicUsize = AtomicUsize::new(0);
/// Keys remembered in every shard's table together (INFO's
/// `tracking_total_keys`): the limit is on this sum, as Redis has one table.
static TOTAL_KEYS: AtomicUsize = AtomicUsize::new(0);
/// (key, client) pairs remembered by every shard (`tracking_total_items`).
static TOTAL_ITEMS: AtomicUsize = AtomicUsize::new(0);

/// Sets `tracking-table-max-keys` (0: no limit).
pub fn set_max_keys(max: usize) {
    MAX_KEYS.store(max, Ordering::Relaxed);
}

/// Keys remembered by all shards.
pub fn total_keys() -> usize {
    TOTAL_KEYS.load(Ordering::Relaxed)
}

/// (key, client) pairs remembered by all shards.
pub fn total_items() -> usize {
    TOTAL_ITEMS.load(Ordering::Relaxed)
}

/// Claims one key's eviction while the process holds more than the limit:
/// shards evicting at once never let more go than the excess.
fn claim_eviction() -> bool {
    let max = MAX_KEYS.load(Ordering::Relaxed);
    max != 0
        && TOTAL_KEYS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t > max).then(|| t - 1)
            })
            .is_ok()
}

/// How many clients track in broadcasting mode (process-wide).
pub fn set_broadcasting(n: usize) {
    BROADCASTING.store(n, Ordering::Relaxed);
}

#[inline]
fn broadcasting() -> bool {
    BROADCASTING.load(Ordering::Relaxed) != 0
}

/// One written key: the clients that had read it (may be empty when only
/// broadcasting clients can care), and the client whose command wrote it
/// (0: none known), for NOLOOP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    pub key: Box<[u8]>,
    pub clients: Vec<u64>,
    pub writer: u64,
}

#[derive(Default)]
pub struct Tracking {
    table: HashMap<Box<[u8]>, Vec<u64>>,
    pending: Vec<Invalidation>,
    /// The client whose command runs now (0: none).
    writer: u64,
    /// Set while a flush empties a database: the server sends one
    /// invalidate-everything message instead of one per key.
    muted: bool,
}

impl Tracking {
    /// Remembers that `client` read `key`.
    pub fn remember(&mut self, key: &[u8], client: u64) {
        let (list, new_key) = match self.table.get_mut(key) {
            Some(list) => (list, false),
            None => {
                TOTAL_KEYS.fetch_add(1, Ordering::Relaxed);
                (self.table.entry(key.into()).or_default(), true)
            }
        };
        if !list.contains(&client) {
            list.push(client);
            TOTAL_ITEMS.fetch_add(1, Ordering::Relaxed);
        }
        // Only a new key can take the server past the limit.
        if new_key {
            self.evict(Some(key));
        }
    }

    /// Brings the process within `tracking-table-max-keys` (after the
    /// limit was lowered) as far as this shard's keys allow; whether keys
    /// were let go.
    pub fn trim(&mut self) -> bool {
        self.evict(None)
    }

    /// Lets keys go, sparing `keep` while others remain, as long as the
    /// process holds more than the limit: their clients are told to drop them, as after a write (Redis
    /// evicts from its tracking table the same way).
    fn evict(&mut self, keep: Option<&[u8]>) -> bool {
        let mut any = false;
        while claim_eviction() {
            // Another key first; the one just read if it is our only one
            // (its reader is told at once: the limit holds server-wide).
            let other = self.table.keys().find(|k| Some(&k[..]) != keep);
            let Some(key) = other.or_else(|| self.table.keys().next()).cloned() else {
                // Nothing of ours to let go: the claim goes back.
                TOTAL_KEYS.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let clients = self.table.remove(&key).unwrap_or_default();
            TOTAL_ITEMS.fetch_sub(clients.len(), Ordering::Relaxed);
            self.pending.push(Invalidation {
                key,
                clients,
                writer: 0,
            });
            any = true;
        }
        any
    }

    pub fn set_writer(&mut self, client: u64) {
        self.writer = client;
    }

    /// `key` changed: whoever read it is due an invalidation. One branch
    /// when nobody tracks anything.
    #[inline]
    pub fn changed(&mut self, key: &[u8]) {
        if self.table.is_empty() && !broadcasting() {
            return;
        }
        self.changed_slow(key);
    }

    fn changed_slow(&mut self, key: &[u8]) {
        if self.muted {
            return;
        }
        let clients = match self.table.remove(key) {
            Some(clients) => {
                TOTAL_KEYS.fetch_sub(1, Ordering::Relaxed);
                TOTAL_ITEMS.fetch_sub(clients.len(), Ordering::Relaxed);
                clients
            }
            None => Vec::new(),
        };
        if clients.is_empty() && !broadcasting() {
            return;
        }
        self.pending.push(Invalidation {
            key: key.into(),
            clients,
            writer: self.writer,
        });
    }

    pub fn mute(&mut self, on: bool) {
        self.muted = on;
    }

    /// Forgets every remembered key (FLUSHALL: every client is told to
    /// drop everything).
    pub fn clear(&mut self) {
        TOTAL_KEYS.fetch_sub(self.table.len(), Ordering::Relaxed);
        let items = self.table.values().map(Vec::len).sum();
        TOTAL_ITEMS.fetch_sub(items, Ordering::Relaxed);
        self.table.clear();
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn take_pending(&mut self) -> Vec<Invalidation> {
        std::mem::take(&mut self.pending)
    }

    /// How many keys are remembered.
    pub fn keys(&self) -> usize {
        self.table.len()
    }
}

impl Drop for Tracking {
    /// A table dropped whole (a scratch shard a cross-shard command ran
    /// on) leaves the process-wide counts.
    fn drop(&mut self) {
        if !self.table.is_empty() {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key counters are process-wide: one test at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_full_table_lets_keys_go_with_an_invalidation() {
        let _one = SERIAL.lock();
        let (mut a, mut b) = (Tracking::default(), Tracking::default());
        let base = total_keys();
        set_max_keys(base + 2);
        a.remember(b"a", 1);
        b.remember(b"b", 1);
        assert!(!a.has_pending() && !b.has_pending());
        a.remember(b"c", 2);
        assert_eq!(total_keys(), base + 2);
        let gone = a.take_pending();
        assert_eq!(gone.len(), 1);
        assert_eq!(&gone[0].key[..], b"a");
        // Lowered below what one shard holds: the other lets its key go.
        set_max_keys(base + 1);
        assert!(b.trim());
        assert_eq!(&b.take_pending()[0].key[..], b"b");
        assert_eq!(total_keys(), base + 1);
        set_max_keys(0);
        assert!(!a.trim());
        a.changed(b"c");
        b.changed(b"b");
        assert_eq!(total_keys(), base);
    }

    #[test]
    fn remembered_keys_are_invalidated_once() {
        let _one = SERIAL.lock();
        let mut t = Tracking::default();
        t.changed(b"k");
        assert!(!t.has_pending());
        t.remember(b"k", 7);
        t.remember(b"k", 7);
        t.remember(b"k", 9);
        t.set_writer(9);
        t.changed(b"k");
        t.changed(b"k");
        assert_eq!(
            t.take_pending(),
            vec![Invalidation {
                key: b"k".to_vec().into(),
                clients: vec![7, 9],
                writer: 9
            }]
        );
        assert_eq!(t.keys(), 0);
    }
}
