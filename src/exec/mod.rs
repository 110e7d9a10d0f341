//! How a command executes: the command table ([`command`]), where it runs
//! ([`router`]: key → slot → shard → executor; a pipeline's commands for
//! another core go as one message, [`batch`]), the shards an executor owns
//! and their cross-shard locks ([`local`]), MULTI/WATCH ([`multi`]), blocking
//! waits ([`blocking`]) and pub/sub ([`pubsub`]).

pub mod batch;
pub mod blocking;
pub mod command;
pub mod local;
pub mod multi;
pub mod pubsub;
pub mod router;
