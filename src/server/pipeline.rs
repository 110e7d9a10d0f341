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

use futures::channel::oneshot;

use crate::exec::batch::{Item, Replies};
use crate::exec::command::{self, flags, KeyedFn, Kind, Split};
use crate::exec::router::owned;
use crate::resp::{self, reply::Reply};
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// Requests for one core sent as soon as this many have gathered, so that
/// core works while this one goes on parsing and running its own.
const SEND_AT: usize = 32;
/// Requests in flight before the connection waits for their replies.
const MAX_QUEUED: usize = 1024;

/// Rebuilds a connection's output with late replies put in their places:
/// the bytes written meanwhile stay in order around them. Shared by the
/// batches to other cores and by the front door's forwarded commands.
pub(super) struct Splice {
    merged: Vec<u8>,
    from: usize,
}

impl Splice {
    pub(super) fn new(out: &[u8], late: usize) -> Splice {
        Splice {
            merged: Vec::with_capacity(out.len() + 16 * late),
            from: 0,
        }
    }

    /// Copies what `out` holds up to `at`; the next late reply goes after it
    /// (write it into the returned buffer).
    pub(super) fn upto(&mut self, out: &[u8], at: usize) -> &mut Vec<u8> {
        self.merged.extend_from_slice(&out[self.from..at]);
        self.from = at;
        &mut self.merged
    }

    /// Copies the rest of `out` and makes the result the output.
    pub(super) fn finish(mut self, out: &mut Vec<u8>) {
        self.merged.extend_from_slice(&out[self.from..]);
        *out = self.merged;
    }
}

/// Where a request runs relative to the batch in flight.
pub enum Route {
    /// Joins the batch for the core that owns `shard`.
    Batch(&'static command::Spec, KeyedFn, usize),
    /// Runs here at once; the batch may stay in flight (another shard).
    /// With the command found in the table (looked up once per request).
    Inline(Option<&'static command::Spec>),
    /// Runs after the batch.
    Alone(Option<&'static command::Spec>),
}

struct Queued {
    executor: usize,
    spec: &'static command::Spec,
    started: Instant,
    /// Where its reply goes in the connection's output.
    at: usize,
}

/// The requests of one connection bound for other cores: per core, those
/// not sent yet and the answers of the batches sent; and every request's
/// place in the output, in request order.
#[derive(Default)]
pub struct Pipeline {
    items: Vec<Vec<Item>>,
    /// Per core, the answers of the batches sent and how many requests each
    /// carried.
    sent: Vec<Vec<(oneshot::Receiver<Replies>, usize)>>,
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
        let found = command::lookup(argv[0]);
        let Some(spec) = found else {
            return Route::Alone(found);
        };
        let alone = Route::Alone(found);
        // One core: nothing is ever batched.
        if self.router.executors() == 1
            || !self.authenticated
            || !self.acl.unrestricted(&self.state.acl)
            || self.multi.is_some()
            || self.subs.active()
            || self.subs.tracking.is_some()
            || self.tx.is_some()
            || !self.inflight.is_empty()
            || self.state.repl.is_backup()
            || self.state.scripts.busy()
            || self.intro.unbatched()
        {
            // (A busy script: every command meets -BUSY in `execute`.)
            return alone;
        }
        let Kind::Keyed(f, Split::Never) = spec.kind else {
            return alone;
        };
        if !spec.arity_ok(argv.len()) {
            return alone;
        }
        if spec.has(flags::WRITE) {
            let r = &self.state.repl;
            if self.state.disk_errors.load(Ordering::Relaxed) > 0
                || r.write_pause_until() != 0
                || r.paused()
                || r.any_delay_us() != 0
            {
                return alone;
            }
        }
        let Some(i) = spec.key_indexes(argv.len()).next() else {
            return alone;
        };
        let shard = self.router.shard_of(argv[i]);
        if self.router.executor_of(shard) == self.router.me {
            return Route::Inline(found);
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
            p.sent.resize_with(executor + 1, Vec::new);
        }
        p.items[executor].push(Item {
            f,
            mode: crate::exec::router::Mode::of(spec),
            shard,
            args: owned(argv),
            fast: spec.has(flags::FAST),
        });
        p.queued.push(Queued {
            executor,
            spec,
            started: Instant::now(),
            at: out.len(),
        });
        if p.items[executor].len() >= SEND_AT {
            self.send_batch(executor);
        }
        if self.pipeline.queued.len() >= MAX_QUEUED {
            self.flush_batch(out).await;
        }
    }

    /// Sends what is gathered for `executor` as one message.
    fn send_batch(&mut self, executor: usize) {
        let items = std::mem::take(&mut self.pipeline.items[executor]);
        if items.is_empty() {
            return;
        }
        {
            let mut stats = self.router.local.stats.borrow_mut();
            stats.batches += 1;
            stats.batched_commands += items.len() as u64;
        }
        let ctx = self.ctx(now_ms());
        let n = items.len();
        let who = crate::server::introspect::who(self);
        let answer = match self
            .router
            .send_batch(executor, ctx, self.proto, items, who)
        {
            Ok(a) => a,
            // The executor is gone: a dropped answer reads as an error.
            Err(_) => oneshot::channel().1,
        };
        self.pipeline.sent[executor].push((answer, n));
    }

    /// Sends what is gathered, waits for every batch in flight and splices
    /// each reply into `out` at its place.
    pub async fn flush_batch(&mut self, out: &mut Vec<u8>) {
        if self.pipeline.queued.is_empty() {
            return;
        }
        for executor in 0..self.pipeline.items.len() {
            self.send_batch(executor);
        }
        let sent = std::mem::take(&mut self.pipeline.sent);
        let queued = std::mem::take(&mut self.pipeline.queued);
        self.pipeline.sent.resize_with(sent.len(), Vec::new);
        // Per core, its batches' replies in the order they were sent.
        let mut replies: Vec<Vec<(Option<Replies>, usize)>> = Vec::with_capacity(sent.len());
        for answers in sent {
            let mut got = Vec::with_capacity(answers.len());
            for (a, n) in answers {
                got.push((a.await.ok(), n));
            }
            replies.push(got);
        }
        let mut splice = Splice::new(out, queued.len());
        // Per core: which batch, and which reply in it, comes next.
        let mut next = vec![(0usize, 0usize); replies.len()];
        for q in queued {
            let merged = splice.upto(out, q.at);
            let (b, k) = next[q.executor];
            let (batch, len) = match replies[q.executor].get(b) {
                Some((r, n)) => (r.as_ref(), *n),
                None => (None, 0),
            };
            let failed = match batch {
                Some(r) if k < r.ends.len() => {
                    let start = if k == 0 { 0 } else { r.ends[k - 1] };
                    merged.extend_from_slice(&r.bytes[start..r.ends[k]]);
                    if r.failed[k] {
                        let reply = &r.bytes[start..r.ends[k]];
                        self.router.local.stats.borrow_mut().note_error(reply);
                    }
                    r.failed[k]
                }
                _ => {
                    let e = Reply::Error("ERR the shard's executor is gone".into());
                    resp::encode(&e, self.proto, merged);
                    true
                }
            };
            next[q.executor] = if k + 1 >= len { (b + 1, 0) } else { (b, k + 1) };
            self.count(q.spec, q.started, failed);
        }
        splice.finish(out);
    }
}
