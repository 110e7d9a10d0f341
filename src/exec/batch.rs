//! Pipelines across shards: the single-key commands of one connection's
//! batch that belong to shards of other cores travel as **one message per
//! core**, not one per command, and run there in the order they were sent.
//!
//! A pipeline of random keys over N cores would otherwise cross cores once
//! per command — a wake-up of the other core and of this one each time —
//! which is what made a multi-shard keel slower than a one-shard keel on
//! `redis-cli --pipe`. Batched, a read of 16 requests costs one round trip
//! per other core.
//!
//! What stays the same for the client: its replies come back in request
//! order (the connection keeps each reply's place, [`crate::server::pipeline`]),
//! and commands on the same key (the same shard) run in the order it sent
//! them. Commands on different shards are on different keys, so no client
//! can tell whether they ran in order or side by side; anything else — a
//! multi-key command, MULTI, a blocking pop, a connection command — waits
//! for the batch in flight first.

use std::sync::Arc;
use std::time::Instant;

use futures::channel::oneshot;

use super::local::{LocalShards, Msg};
use super::router::{apply, borrowed, serve_blocked, Router};
use crate::cmd::error::CmdError;
use crate::cmd::Ctx;
use crate::exec::command::KeyedFn;
use crate::resp::{self, reply::Reply, Protocol};
use crate::server::introspect::{latency, slowlog, slowlog::Who};

/// One command of a batch.
pub struct Item {
    pub f: KeyedFn,
    pub mode: super::router::Mode,
    pub shard: usize,
    pub args: Vec<Vec<u8>>,
    /// A fast command (the latency monitor's "fast-command" event).
    pub fast: bool,
}

/// A batch's replies, encoded back to back: where each ends, and whether it
/// was an error.
#[derive(Default)]
pub struct Replies {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
    pub failed: Vec<bool>,
}

impl Router {
    /// Sends `items` (all on shards of `executor`) as one message; they run
    /// there in order once their shards are free of transactions, each
    /// waking the clients blocked on keys it made ready.
    pub fn send_batch(
        &self,
        executor: usize,
        ctx: Ctx,
        proto: Protocol,
        items: Vec<Item>,
        who: Arc<Who>,
    ) -> Result<oneshot::Receiver<Replies>, CmdError> {
        let mut shards: Vec<usize> = items.iter().map(|i| i.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        let (reply, answer) = oneshot::channel();
        let work = Box::new(move |ls: &LocalShards| {
            let mut out = Replies {
                bytes: Vec::with_capacity(16 * items.len()),
                ends: Vec::with_capacity(items.len()),
                failed: Vec::with_capacity(items.len()),
            };
            for it in items {
                // Timed here, where it runs, for the slow log and the
                // latency monitor of this core.
                let started = Instant::now();
                let r = apply(
                    it.f,
                    it.mode,
                    &mut ls.shard(it.shard),
                    &ctx,
                    &borrowed(&it.args),
                );
                let us = started.elapsed().as_micros() as u64;
                if slowlog::is_slow(us) {
                    slowlog::record(&borrowed(&it.args), us, who.clone());
                }
                if latency::threshold_ms().is_some() {
                    let event = if it.fast { "fast-command" } else { "command" };
                    latency::add_if_needed(event, us / 1000);
                }
                serve_blocked(ls, it.shard);
                out.failed.push(r.is_err());
                let reply = r.unwrap_or_else(|e| Reply::Error(e.to_string().into()));
                resp::encode(&reply, proto, &mut out.bytes);
                reply.recycle();
                out.ends.push(out.bytes.len());
            }
            let _ = reply.send(out);
        });
        self.send_now(
            executor,
            Msg::Run {
                tx: None,
                shards,
                work,
            },
        )?;
        Ok(answer)
    }
}
