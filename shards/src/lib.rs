//! keel's storage engine: one [`Shard`] per core-owned slice of the keyspace.
//!
//! The engine does no I/O and reads no clock: callers pass the time in. It
//! knows nothing of sockets, peers or elections, so every piece can be tested
//! (and later replayed from write records) deterministically.
//!
//! # Layout
//! - [`slot`]: key → slot (`crc16`, hash tags) → shard.
//! - [`table`]: the chained hash table (stable scan cursors, sampling).
//! - [`keyspace`]: the keys of a database, one compact node per key.
//! - [`dict`]: the member tables of the collection types.
//! - [`value`]: what a key holds ([`Value`], [`Entry`]).
//! - [`hash`], [`set`], [`zset`], [`list`]: the collection types (the sorted
//!   set is an order-statistic treap plus a member → score table).
//! - [`packed`]: the byte-packed records of small hashes and sorted sets.
//! - [`hlc`]: hybrid logical clock timestamps carried by every write.
//! - [`stream`]: the stream type (packed blocks of entries, consumer groups).
//! - [`hll`]: HyperLogLog strings in Redis's format (PFADD/PFCOUNT/PFMERGE).
//! - [`merge`]: the merge rules used to heal a split brain (pure functions).
//! - [`shard`]: a shard's databases, write sequence, expiry, memory, eviction.
//! - [`record`]: the write-record format (frames, units, snapshot header)
//!   shared by logs, snapshots and replication.
//! - [`journal`]: the records a shard produced and the log has not taken.
//! - [`entry_codec`]: one key's entry as bytes (the `Put` record's argument).
//! - [`snapshot`]: point-in-time snapshots of a running shard, and loading them.
//! - [`digest`]: the order-independent keyspace checksum of `DEBUG DIGEST`.
//! - [`tracking`]: client-side caching: who read which key, invalidations due.
//! - [`glob`]: Redis glob patterns for `KEYS` and `SCAN MATCH`.
//! - [`notify`]: keyspace notification classes and the events a shard produced.

pub mod dict;
pub mod digest;
pub mod entry_codec;
pub mod glob;
pub mod hash;
pub mod hlc;
pub mod hll;
pub mod journal;
pub mod keyspace;
pub mod list;
pub mod merge;
pub mod notify;
pub mod packed;
pub mod record;
pub mod set;
pub mod shard;
pub mod slot;
pub mod snapshot;
pub mod stream;
mod stream_codec;
pub mod table;
pub mod tracking;
pub mod value;
pub mod zset;

pub use digest::Digest;
pub use hash::Hash;
pub use hlc::Hlc;
pub use keyspace::{EntryRef, ValueRef};
pub use list::List;
pub use set::Set;
pub use shard::{
    EvictionPolicy, OutOfMemory, Shard, ShardStats, DATABASES, META_DB, META_EPOCH, STORED_DBS,
};
pub use stream::{Stream, StreamId};
pub use value::{Entry, Typed, Value};
pub use zset::ZSet;
