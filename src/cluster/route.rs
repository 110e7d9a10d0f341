//! Where a command runs when a client talks to a backup of a cluster
//! (ARCHITECTURE.md §6): writes and transactions go to the primary
//! ([`super::forward`]); a read is served here only when (1) the local
//! replica of its shards is ready (synced, within `read-max-lag`), (2) the
//! client is not inside MULTI, and (3) the client's own latest write on
//! those shards — the seq the primary answered it at — is already applied
//! here; strong mode reads only from the primary. Otherwise the read is
//! forwarded too. Nothing the client sees changes but latency.
//!
//! While the primary is not heard (a failover is running, or writes are
//! paused), nothing is forwarded: writes are refused at once
//! (`-READONLY`/`-CLUSTERDOWN`) and reads are served here, as the failover
//! design promises — availability of reads over waiting for a primary.

use std::sync::atomic::Ordering;

use crate::cluster::forward::Peer;
use crate::exec::command::{Kind, Spec};
use crate::server::conn::Conn;

/// Why a read must go to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Strong,
    NotReady,
    OwnWrite,
}

/// The primary to forward to, when this node is a cluster backup that
/// follows one (None: serve or refuse here as before).
pub fn target(conn: &Conn) -> Option<(String, u16)> {
    let c = &conn.state.cluster;
    if !c.is_active()
        || !conn.state.repl.is_following()
        || !c.primary_reachable.load(Ordering::Relaxed)
    {
        return None;
    }
    conn.state.repl.master()
}

/// A shard's applied seq here: exact for this core's shards, the last
/// published (never ahead of the truth) for the others.
pub fn local_seq(conn: &Conn, shard: usize) -> u64 {
    if conn.router.local.ids().any(|id| id == shard) {
        return conn.router.local.shard(shard).seq();
    }
    conn.state
        .repl
        .published
        .get(shard)
        .map_or(0, |f| f.seq.load(Ordering::Acquire))
}

/// Keyspace-wide reads: they see every shard, so every shard must pass.
fn whole_keyspace(spec: &'static Spec) -> bool {
    matches!(spec.name, "dbsize" | "keys" | "randomkey" | "scan")
}

/// Whether `spec` is a read this module routes (and counts).
pub fn routed_read(spec: &'static Spec) -> bool {
    matches!(spec.kind, Kind::Keyed(..)) || whole_keyspace(spec)
}

/// Whether a keyed read must be forwarded, and why (None: serve it here).
pub fn read_reason(conn: &Conn, spec: &'static Spec, argv: &[&[u8]]) -> Option<Reason> {
    let whole = whole_keyspace(spec);
    if !routed_read(spec) {
        return None;
    }
    let repl = &conn.state.repl;
    if repl.strong {
        return Some(Reason::Strong);
    }
    if conn.inflight.iter().any(|f| f.peer() == Peer::Primary) {
        // A write in flight has no seq yet: the read follows it there.
        return Some(Reason::OwnWrite);
    }
    let shards: Vec<usize> = if whole {
        (0..conn.state.shards).collect()
    } else {
        conn.router.shards_of(spec, argv)
    };
    let not_ready = shards.iter().any(|s| {
        !repl
            .published
            .get(*s)
            .is_some_and(|f| f.ready.load(Ordering::Relaxed))
    });
    if not_ready {
        return Some(Reason::NotReady);
    }
    let behind = shards.iter().any(|s| {
        let mine = conn.written_seqs.get(*s).copied().unwrap_or(0);
        mine > 0 && local_seq(conn, *s) < mine
    });
    behind.then_some(Reason::OwnWrite)
}

/// Counts a read served here or forwarded (`nearby`: to a ready backup
/// near this node rather than to the primary).
pub fn count_read(conn: &Conn, reason: Option<Reason>, nearby: bool) {
    let r = &conn.state.repl;
    if nearby {
        r.reads_nearby.fetch_add(1, Ordering::Relaxed);
    }

    let c = match reason {
        None if conn.routed => &r.reads_for_others,
        None => &r.reads_local,
        Some(Reason::Strong) => &r.fwd_reads_strong,
        Some(Reason::NotReady) => &r.fwd_reads_not_ready,
        Some(Reason::OwnWrite) => &r.fwd_reads_own_write,
    };
    c.fetch_add(1, Ordering::Relaxed);
}
