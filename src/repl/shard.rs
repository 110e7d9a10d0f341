//! One shard's replication state, on its own core: its history, its
//! backlog, the links to its backups (as primary) and its link to the
//! primary (as backup).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use futures::channel::{mpsc, oneshot};

use super::backlog::Backlog;
use super::link::LinkStats;
use crate::exec::local::LocalShards;
use crate::server::state::{now_ms, ServerState};

/// A stream to one backup, as the primary's shard sees it.
#[derive(Clone)]
pub struct LinkInfo {
    pub backup: String,
    pub addr: String,
    pub client_port: u16,
    pub zone: String,
    pub compress: bool,
    /// Still sending the snapshot of a full sync.
    pub in_full_sync: bool,
    /// How this stream began: "partial" or "full", and why.
    pub sync: &'static str,
    pub why: String,
    pub acked: u64,
    pub acked_ms: u64,
    pub stats: LinkStats,
    pub kick: mpsc::Sender<()>,
    pub closed: bool,
}

impl LinkInfo {
    /// Wakes the link's sender (records or a close are waiting).
    pub fn kick(&mut self) {
        let _ = self.kick.try_send(());
    }
}

/// A backup shard's stream from its primary.
#[derive(Default)]
pub struct Follow {
    /// "connect", "handshake", "sync" (loading a snapshot) or "online".
    pub state: &'static str,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    /// The last sync: "partial" or "full", with the primary's reason.
    pub last_sync: String,
    pub last_error: String,
    /// The primary's seq as last heard, and when this shard had applied
    /// everything up to a point the primary announced (for lag in ms).
    pub primary_seq: u64,
    pub caught_up_ms: u64,
    pub last_io_ms: u64,
    /// The initial sync is done (the shard holds a whole state of the
    /// primary's history).
    pub synced: bool,
    /// When the last sync finished: until every shard caught up with its
    /// primary after the latest of these, the shards may hold different
    /// points in time (each full sync is its own shard's snapshot).
    pub synced_ms: u64,
    /// The REPLICAOF epoch of the link that went online last.
    pub link_epoch: u64,
    pub received: LinkStats,
}

/// A records frame as one link encoded (and maybe compressed) it: the next
/// link of the same kind at the same place sends these bytes as they are,
/// so a shard encodes and compresses each stretch of records once however
/// many backups stream it.
pub struct SharedFrame {
    /// The records it carries: seq `after` + 1 to `last` of `history` (a
    /// history's record at a seq never changes).
    pub history: u64,
    pub after: u64,
    pub last: u64,
    /// The whole frame, head included.
    pub bytes: Rc<Vec<u8>>,
    pub payload_len: usize,
    pub compressed: bool,
}

pub struct ShardRepl {
    /// The history this shard's records belong to, and the one it branched
    /// from (with the last seq they share) after a promotion.
    pub history: u64,
    pub prev_history: u64,
    pub prev_end: u64,
    /// The shard's clock when it left `prev_history` (a merge's fork time).
    pub fork_hlc: keel_shards::Hlc,
    pub backlog: Backlog,
    pub links: Vec<Rc<RefCell<LinkInfo>>>,
    pub follow: Follow,
    /// Strong-mode replies waiting for the sync backup to apply a seq.
    strong: Vec<(u64, oneshot::Sender<()>)>,
    /// WAIT callers to wake at the next ack (dropping a sender wakes it).
    pub ack_watchers: Vec<oneshot::Sender<()>>,
    /// The latest records frame per kind: [raw, compressed].
    pub shared: [Option<SharedFrame>; 2],
}

/// A fresh history id: differs between runs and shards.
pub fn new_history(shard: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let h = ahash::RandomState::new().hash_one((nanos, std::process::id(), shard));
    h.max(1)
}

impl ShardRepl {
    pub fn new(shard: usize, history: u64, seq: u64, backlog_bytes: usize) -> Self {
        ShardRepl {
            history: if history == 0 {
                new_history(shard)
            } else {
                history
            },
            prev_history: 0,
            prev_end: 0,
            fork_hlc: keel_shards::Hlc::default(),
            backlog: Backlog::new(backlog_bytes, seq),
            links: Vec::new(),
            follow: Follow {
                state: "none",
                ..Follow::default()
            },
            strong: Vec::new(),
            ack_watchers: Vec::new(),
            shared: [None, None],
        }
    }

    /// The slowest streaming backup's lag in bytes (backups still in full
    /// sync are left out: they cannot catch up faster by our waiting).
    pub fn worst_lag_bytes(&self, now: u64) -> u64 {
        self.links
            .iter()
            .map(|l| l.borrow())
            .filter(|l| !l.in_full_sync && !l.closed)
            .map(|l| self.backlog.lag(l.acked, now).0)
            .max()
            .unwrap_or(0)
    }

    /// Replies waiting for seq `seq` to reach the sync backup; None when it
    /// already has.
    pub fn wait_acked(&mut self, sync: Option<&str>, seq: u64) -> Option<oneshot::Receiver<()>> {
        let acked = self
            .links
            .iter()
            .map(|l| l.borrow())
            .filter(|l| Some(l.backup.as_str()) == sync)
            .map(|l| l.acked)
            .max()
            .unwrap_or(0);
        if acked >= seq {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.strong.push((seq, tx));
        Some(rx)
    }

    /// The sync backup acknowledged `seq`.
    pub fn release_strong(&mut self, seq: u64) {
        self.strong.retain(|(s, _)| *s > seq);
    }
}

/// The smooth write delay for a lag: 0 at no lag, half of `cap_us` at
/// `half_at` bytes, approaching `cap_us` — no step anywhere.
pub fn delay_for(lag_bytes: u64, cap_us: u64, half_at: u64) -> u64 {
    let l = lag_bytes as f64;
    let h = half_at.max(1) as f64;
    (cap_us as f64 * l * l / (l * l + h * h)) as u64
}

/// Recomputes shard `id`'s write delay from its backups' lag.
pub fn update_delay(state: &ServerState, id: usize, r: &ShardRepl) {
    let c = &state.repl;
    let d = delay_for(
        r.worst_lag_bytes(now_ms()),
        c.max_delay_us,
        c.half_delay_lag,
    );
    if let Some(a) = state.repl.delay_us.get(id) {
        a.store(d, Ordering::Relaxed);
    }
}

/// Hands records the shard produced to its backlog and wakes its links.
pub fn feed(ls: &LocalShards, state: &ServerState, id: usize, bytes: Vec<u8>, seq: u64) {
    if bytes.is_empty() {
        return;
    }
    let mut repls = ls.repl.borrow_mut();
    let Some(r) = repls.get_mut(ls.local_index(id)) else {
        return;
    };
    r.backlog.append(bytes, seq, now_ms());
    for l in &r.links {
        l.borrow_mut().kick();
    }
    if !r.links.is_empty() {
        update_delay(state, id, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_smoothly_to_its_cap() {
        assert_eq!(delay_for(0, 1000, 1 << 20), 0);
        assert_eq!(delay_for(1 << 20, 1000, 1 << 20), 500);
        let mut last = 0;
        for kb in 1..10_000u64 {
            let d = delay_for(kb * 1024, 1000, 1 << 20);
            assert!(
                d >= last && d - last <= 5,
                "no step: {last} -> {d} at {kb} KiB"
            );
            assert!(d <= 1000);
            last = d;
        }
        assert!(last > 980);
    }
}
