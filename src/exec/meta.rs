//! The hidden database `META_DB`: where keel keeps with the data what is
//! the database's rather than one node's (function libraries, the ACL
//! set). It is logged, snapshotted, replicated and merged like the
//! clients' databases, so what is kept there survives restarts, reaches
//! every backup and survives a failover; no client can SELECT it, and
//! FLUSHALL and eviction leave it alone. `META_EPOCH` moves whenever any
//! path (a command, replay, replication, a merge) changes it.

use keel_shards::META_DB;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::Ctx;
use crate::exec::command::{self, Kind};
use crate::exec::local::LocalShards;
use crate::exec::router::{apply, serve_blocked, Mode};

/// Runs one command on `META_DB` of shard `s` (this core's): a write is
/// recorded like any write; a read is keel's own, so it counts in no
/// keyspace hit or miss (and no write is refused for memory: what keel
/// keeps for itself is small and must not fail).
pub fn command(ls: &LocalShards, s: usize, argv: &[&[u8]]) -> CmdResult {
    let spec =
        command::lookup(argv[0]).ok_or_else(|| CmdError::other("internal: no such command"))?;
    let Kind::Keyed(f, _) = spec.kind else {
        return Err(CmdError::other("internal: not a keyed command"));
    };
    let ctx = Ctx {
        db: META_DB,
        now_ms: crate::server::state::now_ms(),
        max_string: usize::MAX,
        no_touch: false,
        client: 0,
        track: false,
    };
    let mut shard = ls.shard(s);
    apply(f, Mode::WRITE, &mut shard, &ctx, argv)
}

/// Runs `writes` on `META_DB` of shard `s` (this core's) as one unit of
/// records: a backup, a replay or a merge applies all of them or none.
/// `commit` is the router's next commit number when the unit wrote.
pub fn write_unit(
    ls: &LocalShards,
    s: usize,
    writes: &[Vec<Vec<u8>>],
    commit: impl FnOnce() -> u64,
) -> Result<(), CmdError> {
    ls.shard(s).unit_begin();
    let mut failed = None;
    for argv in writes {
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
        if let Err(e) = command(ls, s, &argv) {
            failed = Some(e);
            break;
        }
    }
    let commit = if ls.shard(s).unit_wrote() {
        commit()
    } else {
        0
    };
    ls.shard(s).unit_end(commit, &[s as u64]);
    // Hands the records to the log (and wakes anything they unblock).
    serve_blocked(ls, s);
    failed.map_or(Ok(()), Err)
}
