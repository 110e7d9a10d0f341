//! A connection's side of pipelines across shards ([`crate::exec::batch`]):
//! which requests may join the batch bound for another core, and putting
//! their replies back in their places in the output.
//!
//! A request joins when it is a single-key command on a shard of another
//! core and nothing asks it to run alone: not inside MULTI, not subscribed,
//! not on a cluster backup (whose reads are routed one by one), and, for a
//! write, no disk error, switchover pause, paused cluster or replication
//! backpressure to meet first. A single-key command on this core's own
//! shard runs at once as usual, the batch staying in flight; any other
//! request first waits for the batch.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::exec::batch::{Item, Replies};
use crate::exec::command::{self, flags, KeyedFn, Kind, Split};
use crate::resp::{self, reply::Reply};
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// Requests queued before the batch is sent without waiting for more.
const MAX_QUEUED: usize = 256;

/// Where a request runs relative to the batch in flight.
pub enum Route {
    /// Joins the batch for the core that owns `shard`.
    Batch(&'static command::Spec, KeyedFn, usize),
    /// Runs here at once; the batch may stay in flight (another shard).
    Inline,
    /// Runs after the batch.
    Alone,
}

struct Queued {
    executor: usize,
    spec: &'static command::Spec,
    started: Instant,
    /// Where its reply goes in the connection's output.
    at: usize,
}

/// The requests of one connection waiting to be sent to other cores.
#[derive(Default)]
pub struct Pipeline {
    items: Vec<Vec<Item>>,
    queued: Vec<Queued>,
}

impl Pipeline {
    pub fn pending(&self) -> bool {
        !self.queued.is_empty()
    }
}

impl Conn {
    /// Where `argv` runs relative to the batch.
    pub fn batch_route(&self, argv: &[&[u8]]) -> Route {
        if !self.authenticated
            || self.multi.is_some()
            || self.subs.active()
            || self.tx.is_some()
            || !self.inflight.is_empty()
            || self.state.repl.is_backup()
        {
            return Route::Alone;
        }
        let Some(spec) = command::lookup(argv[0]) else {
            return Route::Alone;
        };
        let Kind::Keyed(f, Split::Never) = spec.kind else {
            return Route::Alone;
        };
        if !spec.arity_ok(argv.len()) {
            return Route::Alone;
        }
        if spec.has(flags::WRITE) {
            let r = &self.state.repl;
            if self.state.disk_errors.load(Ordering::Relaxed) > 0
                || r.write_pause_until() != 0
                || r.paused()
                || r.any_delay_us() != 0
            {
                return Route::Alone;
            }
        }
        let Some(i) = spec.key_indexes(argv.len()).next() else {
            return Route::Alone;
        };
        let shard = self.router.shard_of(argv[i]);
        if self.router.executor_of(shard) == self.router.me {
            return Route::Inline;
        }
        Route::Batch(spec, f, shard)
    }

    /// Queues a request for the batch; its reply takes this place in `out`.
    pub async fn enqueue(
        &mut self,
        spec: &'static command::Spec,
        f: KeyedFn,
        shard: usize,
        argv: &[&[u8]],
        out: &mut Vec<u8>,
    ) {
        if spec.has(flags::WRITE) {
            self.note_write(spec, argv);
        }
        let executor = self.router.executor_of(shard);
        let p = &mut self.pipeline;
        if p.items.len() <= executor {
            p.items.resize_with(executor + 1, Vec::new);
        }
        p.items[executor].push(Item {
            f,
            deny_oom: spec.has(flags::DENYOOM),
            shard,
            args: argv.iter().map(|a| a.to_vec()).collect(),
        });
        p.queued.push(Queued {
            executor,
            spec,
            started: Instant::now(),
            at: out.len(),
        });
        if p.queued.len() >= MAX_QUEUED {
            self.flush_batch(out).await;
        }
    }

    /// Sends the batch (one message per core), waits for it and splices
    /// each reply into `out` at its place.
    pub async fn flush_batch(&mut self, out: &mut Vec<u8>) {
        if self.pipeline.queued.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.pipeline.items);
        let queued = std::mem::take(&mut self.pipeline.queued);
        let ctx = self.ctx(now_ms());
        let mut answers = Vec::with_capacity(items.len());
        for (executor, items) in items.into_iter().enumerate() {
            if !items.is_empty() {
                let mut stats = self.router.local.stats.borrow_mut();
                stats.batches += 1;
                stats.batched_commands += items.len() as u64;
            }
            answers.push(if items.is_empty() {
                None
            } else {
                self.router
                    .send_batch(executor, ctx, self.proto, items)
                    .ok()
            });
        }
        let mut replies: Vec<Option<Replies>> = Vec::with_capacity(answers.len());
        for a in answers {
            replies.push(match a {
                Some(a) => a.await.ok(),
                None => None,
            });
        }
        let mut merged = Vec::with_capacity(out.len() + 16 * queued.len());
        let mut from = 0;
        let mut next = vec![0usize; replies.len()];
        for q in queued {
            merged.extend_from_slice(&out[from..q.at]);
            from = q.at;
            let k = next[q.executor];
            next[q.executor] += 1;
            let failed = match replies.get(q.executor).and_then(|r| r.as_ref()) {
                Some(r) if k < r.ends.len() => {
                    let start = if k == 0 { 0 } else { r.ends[k - 1] };
                    merged.extend_from_slice(&r.bytes[start..r.ends[k]]);
                    r.failed[k]
                }
                _ => {
                    let e = Reply::Error("ERR the shard's executor is gone".into());
                    resp::encode(&e, self.proto, &mut merged);
                    true
                }
            };
            self.count(q.spec, q.started, failed);
        }
        merged.extend_from_slice(&out[from..]);
        *out = merged;
    }
}
