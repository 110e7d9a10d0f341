//! keel: a Redis-compatible, highly available key-value server,
//! thread-per-core on io_uring.
//!
//! ```text
//!  clients ──► listener per core (SO_REUSEPORT) ──► connection task
//!                                                    │ parse RESP, look up command
//!                                                    │ key → slot → shard
//!              ┌─────────────────────────────────────┼───────────────────────┐
//!              ▼                                     ▼                       ▼
//!       executor 0 (core 0)                  executor 1 (core 1)   ...
//!       shards 0, E, 2E...                   shards 1, E+1...
//!       inline when local ◄── messages (Msg::Run/Lock/Unlock) ──► inbox
//! ```
//!
//! # Layout
//! One folder per layer; the data path reads top-down:
//! - `main.rs`: flags → [`config`] → [`runtime::run`].
//! - [`runtime`]: one pinned thread per core running keel's executor on
//!   its own io_uring ring (tasks, timers, completion-based sockets, files);
//!   listeners, inbox, active expiry. The only code that names io_uring.
//! - [`server`]: [`server::conn`], a connection's read → parse → execute →
//!   write loop; [`server::commands`], the commands that act on the
//!   connection (CLIENT, SELECT, INFO, CONFIG, REPLICAOF, SAVE...);
//!   [`server::info`], [`server::client`], [`server::state`]: INFO, client
//!   bookkeeping, shared state; [`server::introspect`]: SLOWLOG, LATENCY,
//!   MONITOR, CLIENT KILL/PAUSE/REPLY/UNBLOCK, MEMORY STATS and the hooks
//!   around every command that feed them.
//! - [`resp`]: the RESP parser and reply encoder; [`resp::reply`]: the reply
//!   value.
//! - [`exec`]: how a command executes.
//!   - [`exec::command`]: the command table (arity, flags, keys, handler).
//!   - [`exec::router`]: key → shard → executor; inline or message;
//!     cross-shard transactions over the locks of [`exec::local`].
//!   - [`exec::multi`]: MULTI/EXEC/WATCH over the same cross-shard locks.
//!   - [`exec::pubsub`]: subscriptions per executor, PUBLISH to every
//!     executor.
//!   - [`exec::blocking`]: BLPOP and friends: waiters per key, served in
//!     order.
//! - [`cmd`]: the keyed command implementations, one file per family (a
//!   handler sees a shard and a narrow [`cmd::Ctx`], never the connection);
//!   [`cmd::numbers`]: number parsing and formatting with Redis's rules.
//! - [`control`]: the HA control plane as pure state machines (failure
//!   detection, election, safety check, split brain) and its seeded
//!   simulator.
//! - [`cluster`]: the cluster bus that drives [`control`] on the network
//!   (a thread per link, off the data cores) and turns its decisions into
//!   replication: follow, pull, promote, step down, pause.
//! - [`persist`]: the data directory, per-shard logs (group commit, fsync
//!   policies, disk errors), snapshot files, recovery and replay.
//! - [`repl`]: replication — per-shard streams to backups (handshake,
//!   backlog, snapshots, acks, backpressure), the backup's side, the barrier
//!   that keeps cross-shard transactions whole, link frames, and the merge
//!   of a split brain's loser ([`repl::merge`]).
//! - [`http`]: REST, `/health`, `/metrics`; [`script`]: Lua.
//! - [`security`]: [`security::acl`], ACL users (rules, checks, the user
//!   table, ACL file and log); [`security::tls`], TLS (rustls) for the
//!   client and HTTP ports and the links between nodes, and the streams it
//!   wraps.
//! - [`demo`]: `keel demo`, three nodes on one machine and the faults
//!   (kill, pause, restart) and live view that show a failover.
//! - The storage engine is the `keel-shards` crate (no I/O).

pub mod cluster;
pub mod cmd;
pub mod config;
pub mod control;
pub mod demo;
pub mod exec;
pub mod http;
pub mod persist;
pub mod repl;
pub mod resp;
pub mod runtime;
pub mod script;
pub mod security;
pub mod server;

/// The Redis version keel answers to in INFO and HELLO: the release whose
/// semantics it follows, so client libraries enable the right features.
pub const REDIS_VERSION: &str = "7.2.4";
