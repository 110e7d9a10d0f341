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
        let list = self.table.entry(key.into()).or_default();
        if !list.contains(&client) {
            list.push(client);
        }
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
        let clients = self.table.remove(key).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_keys_are_invalidated_once() {
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
