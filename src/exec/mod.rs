//! How a command executes: the command table ([`command`]), where it runs
//! ([`router`]: key → slot → shard → executor; a pipeline's commands for
//! another core go as one message, [`batch`]), the shards an executor owns
//! and their cross-shard locks ([`local`]), MULTI/WATCH ([`multi`]), blocking
//! waits ([`blocking`]), pub/sub ([`pubsub`]), the hidden database of
//! keel's own records ([`meta`]) and keyspace notifications
//! (which events a command makes, [`keyevents`]; their delivery, [`notify`]).

pub mod batch;
pub mod blocking;
pub mod command;
pub mod keyevents;
pub mod local;
pub mod meta;
pub mod multi;
pub mod notify;
pub mod pubsub;
pub mod router;
