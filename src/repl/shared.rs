//! What replication shares across cores: the primary to follow (REPLICAOF
//! changes it at run time), Redis's resync counters, the write delay each
//! shard asks for, and which backup is the sync backup. Everything per
//! stream lives on its shard's core ([`super::shard`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::barrier::Barrier;

#[derive(Default)]
pub struct Peers {
    /// Open links per backup id (one per shard when all are up).
    pub links: HashMap<String, usize>,
    /// The backup strong-mode writes wait for: the configured one, or the
    /// first to connect — preferring one in another zone than this node's —
    /// until it has no link left.
    pub sync: Option<String>,
    /// Zones of connected backups: true when in this node's zone.
    pub same_zone: HashMap<String, bool>,
    /// The configured sync backup (`sync-backup`), if any and not this
    /// node itself.
    pub configured: Option<String>,
    /// In a cluster: the backups that may be the sync backup — the members
    /// that vote and hold data. A learner still copying, or a node removed
    /// from the database, may hold a link but could never be elected, so a
    /// commit point it alone acknowledged would stop every election.
    pub eligible: Option<std::collections::HashSet<String>>,
}

impl Peers {
    /// The sync backup an unconfigured primary picks among the connected
    /// backups: another zone's first, then the lowest id.
    fn choose(&self) -> Option<String> {
        let zone_of = |b: &String| self.same_zone.get(b).copied().unwrap_or(false);
        self.links
            .keys()
            .filter(|b| self.may_sync(b))
            .min_by_key(|b| (zone_of(b), (*b).clone()))
            .cloned()
    }

    fn may_sync(&self, id: &str) -> bool {
        self.eligible.as_ref().is_none_or(|e| e.contains(id))
    }
}

pub struct ReplShared {
    /// The primary this node follows (its client address), if any.
    master: Mutex<Option<(String, u16)>>,
    /// Whether `master` is set: read on every write (-READONLY), so an
    /// atomic beside the lock.
    following: AtomicBool,
    /// Bumped whenever `master` changes: follower tasks restart their link.
    pub epoch: AtomicU64,
    /// The replication port each shard listens on.
    pub peer_ports: Mutex<Vec<u16>>,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Merges of a split brain's loser: shards merged, records applied,
    /// records the winner's side won, records lost (damaged, or no longer
    /// in the loser's backlog).
    pub merges: AtomicU64,
    pub merge_applied: AtomicU64,
    pub merge_skipped: AtomicU64,
    pub merge_lost: AtomicU64,
    /// Routing on a backup of a cluster: writes forwarded to the primary,
    /// reads forwarded (strong mode, replica not ready, the client's own
    /// write not here yet) and reads served here.
    pub fwd_writes: AtomicU64,
    pub fwd_reads_strong: AtomicU64,
    pub fwd_reads_not_ready: AtomicU64,
    pub fwd_reads_own_write: AtomicU64,
    pub reads_local: AtomicU64,
    /// Of the reads forwarded as not ready, those sent to a nearby ready
    /// backup instead of the primary; and reads this node served for
    /// another backup's clients.
    pub reads_nearby: AtomicU64,
    /// Reads served here after waiting a moment for the client's own write.
    pub reads_waited: AtomicU64,
    pub reads_for_others: AtomicU64,
    /// Microseconds each shard's writes are delayed (backpressure).
    pub delay_us: Vec<AtomicU64>,
    pub peers: Mutex<Peers>,
    /// Strong-mode writes whose backup did not confirm in time (the client
    /// connection was closed instead of acknowledging them).
    pub strong_timeouts: AtomicU64,
    pub barrier: Barrier,
    /// Backpressure: the most a write waits, and the lag that costs half.
    pub max_delay_us: u64,
    pub half_delay_lag: u64,
    /// Consistency mode strong (else eventual).
    pub strong: bool,
    /// The cluster bus's say (see `crate::cluster`): this node is no open
    /// primary even with no primary to follow (it stepped down, or boots
    /// without knowing who leads). Writes are refused; shards do not promote.
    hold: AtomicBool,
    /// A fresh first primary waits to hear a majority before its first
    /// write: writes are refused, but its shards are primaries already.
    gate: AtomicBool,
    /// The safety check paused writes: no replica is eligible for promotion.
    paused: AtomicBool,
    /// FAILOVER FORCE made this node primary: strong-mode writes are
    /// acknowledged without a sync backup until one connects.
    degraded: AtomicBool,
    /// A planned switchover holds writes (they wait, not fail) until this
    /// Unix ms; 0: no hold.
    write_pause_until: AtomicU64,
    /// Promotion requests (the cluster opened this node for writes) and, per
    /// shard, the last request its follower task carried out.
    promote_req: AtomicU64,
    promoted: Vec<AtomicU64>,
    /// Per shard: a survivor to pull from before opening (overrides `master`).
    pulls: Mutex<Vec<Option<(String, u16)>>>,
    /// What each shard's core publishes for the cluster driver, which runs
    /// off the data cores: applied seq, whether it follows, the REPLICAOF
    /// epoch of the link it is online on (u64::MAX: none), and what the
    /// sync backup acknowledged.
    pub published: Vec<ShardFacts>,
}

/// One shard's facts, published by its core (see `ReplShared::published`).
#[derive(Default)]
pub struct ShardFacts {
    pub seq: AtomicU64,
    pub follower: AtomicBool,
    pub online_epoch: AtomicU64,
    pub sync_acked: AtomicU64,
    /// The shard's replication history id.
    pub history: AtomicU64,
    /// A backup's shard is synced and within read-max-lag (a primary's
    /// always is): reads of it may be served here.
    pub ready: AtomicBool,
    /// The seq at which the shard last promoted (left its primary's history).
    pub promoted_at: AtomicU64,
    /// What each streaming backup (by node id) acknowledged.
    pub acked_by: Mutex<Vec<(String, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplShared {
    pub fn new(shards: usize, c: &crate::config::Config) -> Self {
        let master = c.replicaof.clone();
        // A node whose configuration names itself (every node shares one
        // config, and the sync backup may be elected primary) has no
        // configured sync backup while it is primary: it picks one as an
        // unconfigured primary does, or its strong writes would wait for a
        // link from itself forever.
        let sync_backup = c.sync_backup.clone().filter(|s| *s != c.node_id);
        ReplShared {
            following: AtomicBool::new(master.is_some()),
            master: Mutex::new(master),
            epoch: AtomicU64::new(0),
            peer_ports: Mutex::new(vec![0; shards]),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            merges: AtomicU64::new(0),
            merge_applied: AtomicU64::new(0),
            merge_skipped: AtomicU64::new(0),
            merge_lost: AtomicU64::new(0),
            fwd_writes: AtomicU64::new(0),
            fwd_reads_strong: AtomicU64::new(0),
            fwd_reads_not_ready: AtomicU64::new(0),
            reads_nearby: AtomicU64::new(0),
            reads_waited: AtomicU64::new(0),
            reads_for_others: AtomicU64::new(0),
            fwd_reads_own_write: AtomicU64::new(0),
            reads_local: AtomicU64::new(0),
            delay_us: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            peers: Mutex::new(Peers {
                configured: sync_backup,
                ..Peers::default()
            }),
            strong_timeouts: AtomicU64::new(0),
            barrier: Barrier::default(),
            max_delay_us: c.repl_backpressure_max_us,
            half_delay_lag: c.repl_backpressure_lag,
            strong: c.consistency == crate::config::Consistency::Strong,
            hold: AtomicBool::new(false),
            gate: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            write_pause_until: AtomicU64::new(0),
            promote_req: AtomicU64::new(0),
            promoted: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            pulls: Mutex::new(vec![None; shards]),
            published: (0..shards).map(|_| ShardFacts::default()).collect(),
        }
    }

    pub fn master(&self) -> Option<(String, u16)> {
        lock(&self.master).clone()
    }

    /// Not an open primary: following one, or held by the cluster.
    pub fn is_backup(&self) -> bool {
        self.following.load(Ordering::Relaxed)
            || self.hold.load(Ordering::Relaxed)
            || self.gate.load(Ordering::Relaxed)
    }

    pub fn set_gate(&self, on: bool) {
        self.gate.store(on, Ordering::SeqCst);
    }

    /// Following a primary (as opposed to held with nobody to follow).
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    pub fn held(&self) -> bool {
        self.hold.load(Ordering::SeqCst)
    }

    pub fn set_hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn set_degraded(&self, on: bool) {
        self.degraded.store(on, Ordering::SeqCst);
    }

    /// Writes wait until this Unix ms (a switchover); 0: they do not.
    pub fn write_pause_until(&self) -> u64 {
        self.write_pause_until.load(Ordering::Relaxed)
    }

    pub fn set_write_pause_until(&self, ms: u64) {
        self.write_pause_until.store(ms, Ordering::SeqCst);
    }

    pub fn set_paused(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }

    /// Asks every shard to promote (start a history of its own) even while
    /// held; returns the request's number.
    pub fn request_promotion(&self) -> u64 {
        self.promote_req.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn promotion_requested(&self) -> u64 {
        self.promote_req.load(Ordering::SeqCst)
    }

    /// Shard `id` carried out promotion request `req` (or had nothing to do).
    pub fn promoted(&self, id: usize, req: u64) {
        if let Some(p) = self.promoted.get(id) {
            p.fetch_max(req, Ordering::SeqCst);
        }
    }

    /// Whether shard `id` has yet to carry out request `req`.
    pub fn is_promotion_pending(&self, id: usize, req: u64) -> bool {
        self.promoted
            .get(id)
            .is_some_and(|p| p.load(Ordering::SeqCst) < req)
    }

    /// Whether every shard carried out request `req`.
    pub fn all_promoted(&self, req: u64) -> bool {
        self.promoted
            .iter()
            .all(|p| p.load(Ordering::SeqCst) >= req)
    }

    /// Pull shard `id` from `from` (None: stop pulling); a change restarts
    /// the shard's link.
    pub fn set_pull(&self, id: usize, from: Option<(String, u16)>) {
        let mut p = lock(&self.pulls);
        if let Some(slot) = p.get_mut(id) {
            if *slot != from {
                *slot = from;
                self.epoch.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Where shard `id` streams from: a pull source, else the primary; the
    /// flag says it is a pull.
    pub fn source(&self, id: usize) -> Option<((String, u16), bool)> {
        if let Some(Some(p)) = lock(&self.pulls).get(id) {
            return Some((p.clone(), true));
        }
        self.master().map(|m| (m, false))
    }

    /// REPLICAOF: follow `m` (or nobody).
    pub fn set_master(&self, m: Option<(String, u16)>) {
        let mut master = lock(&self.master);
        self.following.store(m.is_some(), Ordering::SeqCst);
        *master = m;
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn peer_ports(&self) -> Vec<u16> {
        lock(&self.peer_ports).clone()
    }

    pub fn set_peer_port(&self, shard: usize, port: u16) {
        if let Some(p) = lock(&self.peer_ports).get_mut(shard) {
            *p = port;
        }
    }

    /// The delay a write on `shards` waits (the largest of theirs).
    pub fn write_delay_us(&self, shards: impl IntoIterator<Item = usize>) -> u64 {
        shards
            .into_iter()
            .filter_map(|s| self.delay_us.get(s))
            .map(|d| d.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    pub fn any_delay_us(&self) -> u64 {
        self.write_delay_us(0..self.delay_us.len())
    }

    /// A link of backup `id` opened; `same_zone`: it is in this node's zone.
    pub fn link_up(&self, id: &str, same_zone: bool) {
        let mut p = lock(&self.peers);
        *p.links.entry(id.to_string()).or_default() += 1;
        p.same_zone.insert(id.to_string(), same_zone);
        // A backup is back: strong mode has its confirmation again.
        self.degraded.store(false, Ordering::SeqCst);
        let sync_same = p
            .sync
            .as_ref()
            .is_some_and(|s| p.same_zone.get(s).copied().unwrap_or(false));
        if !p.may_sync(id) {
            return;
        }
        if p.sync.is_none() {
            p.sync = Some(p.configured.clone().unwrap_or_else(|| id.to_string()));
        } else if p.configured.is_none() && sync_same && !same_zone {
            // The sync backup is this node's pair in another zone: a zone
            // that goes dark must not take both copies of a strong write.
            p.sync = Some(id.to_string());
        }
    }

    /// A link of backup `id` closed.
    pub fn link_down(&self, id: &str) {
        let mut p = lock(&self.peers);
        if let Some(n) = p.links.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                p.links.remove(id);
            }
        }
        // An elected (not configured) sync backup that is wholly gone hands
        // over to a backup still connected.
        if p.configured.is_none() && p.sync.as_deref() == Some(id) && !p.links.contains_key(id) {
            p.sync = p.choose();
        }
    }

    pub fn sync_backup(&self) -> Option<String> {
        lock(&self.peers).sync.clone()
    }

    /// The membership changed: `eligible` may be the sync backup from now
    /// on. A sync backup no longer eligible (removed, say) hands over to a
    /// connected one that is, as when its links close.
    pub fn set_sync_eligible(&self, eligible: std::collections::HashSet<String>) {
        let mut p = lock(&self.peers);
        p.eligible = Some(eligible);
        if p.configured.as_deref().is_some_and(|c| !p.may_sync(c)) {
            p.configured = None;
        }
        let keep = p
            .sync
            .as_deref()
            .is_some_and(|s| p.may_sync(s) && p.links.contains_key(s));
        if !keep && p.configured.is_none() {
            p.sync = p.choose();
        }
    }

    /// CONFIG SET sync-backup: `id` (a connected backup) becomes the one
    /// strong-mode writes wait for, from the next write on; None goes back
    /// to choosing one (another zone's first). Each write waits for the
    /// sync backup to acknowledge its own seq, which covers every record
    /// before it, so the switch needs no pause. `me` (this node's id) is
    /// never its own sync backup.
    pub fn set_sync_backup(&self, id: Option<&str>, me: &str) -> Result<(), String> {
        let mut p = lock(&self.peers);
        match id.filter(|i| *i != me) {
            Some(i) if !p.links.contains_key(i) => {
                Err(format!("no backup named '{i}' is connected to this node"))
            }
            Some(i) if !p.may_sync(i) => Err(format!(
                "'{i}' does not vote (a learner still copying): it cannot be the sync backup yet"
            )),
            Some(i) => {
                p.configured = Some(i.to_string());
                p.sync = Some(i.to_string());
                Ok(())
            }
            None => {
                p.configured = None;
                if !p.sync.as_ref().is_some_and(|s| p.links.contains_key(s)) {
                    p.sync = p.choose();
                }
                Ok(())
            }
        }
    }

    /// As primary: whether the copies are placed across zones — `ok`, or
    /// what is degraded and why (ARCHITECTURE.md §6, placement).
    pub fn placement(&self) -> String {
        let p = lock(&self.peers);
        let other_zone = p
            .links
            .keys()
            .filter(|b| p.same_zone.get(*b) == Some(&false))
            .count();
        match p.sync.as_ref() {
            None => "degraded: no backup connected".into(),
            Some(_) if other_zone == 0 => {
                "degraded: no backup in another zone (a dark zone takes every copy)".into()
            }
            Some(s) if p.same_zone.get(s) == Some(&true) => {
                format!("degraded: the sync backup {s} is in the primary's zone")
            }
            Some(_) => "ok".into(),
        }
    }
}
