//! keel's storage engine: one [`Shard`] per core-owned slice of the keyspace.
//!
//! The engine does no I/O and reads no clock: callers pass the time in. It
//! knows nothing of sockets, peers or elections, so every piece can be tested
//! (and later replayed from write records) deterministically.
//!
//! # Layout
//! - [`slot`]: key → slot (`crc16`, hash tags) → shard.
//! - [`dict`]: the keyspace hash table (stable scan cursors, sampling).
//! - [`value`]: what a key holds ([`Value`], [`Entry`]).
//! - [`shard`]: a shard's databases, write sequence, expiry, memory, eviction.
//! - [`digest`]: the order-independent keyspace checksum of `DEBUG DIGEST`.
//! - [`glob`]: Redis glob patterns for `KEYS` and `SCAN MATCH`.

pub mod dict;
pub mod digest;
pub mod glob;
pub mod shard;
pub mod slot;
pub mod value;

pub use digest::Digest;
pub use shard::{EvictionPolicy, OutOfMemory, Shard, ShardStats, DATABASES};
pub use value::{Entry, Value};
