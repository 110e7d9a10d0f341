//! Persistence: the shards' write records on disk, snapshots, recovery.
//!
//! - [`replay`]: applies write records to a shard (recovery, and later the
//!   backups of replication).

pub mod replay;
