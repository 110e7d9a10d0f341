//! What a connection on a cluster backup does with the commands that run
//! elsewhere (ARCHITECTURE.md §6): writes, transactions and reads that
//! cannot be served here travel over this core's links
//! ([`crate::cluster::forward`]); [`crate::cluster::route`] decides where.
//!
//! # Pipelining
//! A forwarded command does not hold up the next one: it is sent at once
//! and its reply is spliced into the connection's output, at the place the
//! command had in the client's pipeline, when the batch is settled (before
//! the replies are written, or before anything that must run after it). So
//! a client pipelining 100 writes through a backup waits about one round
//! trip to the primary, not 100. Order is kept because every command in
//! flight for one connection goes over one link (a link is one ordered
//! connection there); a command for another place — a local read, a read
//! for a nearby replica while writes are in flight, WATCH on the client's
//! own link — first waits for what is in flight. A read that arrives while
//! a write is in flight cannot know the write's seq yet, so it follows the
//! write to the primary.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cluster::forward::{self, Answer, ForwardError, Peer, Relayed, Seqs};
use crate::cluster::route::{self, Reason};
use crate::cmd::error::CmdError;
use crate::exec::command::{self, Kind};
use crate::exec::multi;
use crate::exec::router::owned;
use crate::resp::{self, reply::Reply, Protocol};
use crate::server::conn::{After, Conn};
use crate::server::pipeline::Splice;

/// How long a read waits here for the client's own write to arrive before
/// it goes to the primary: about what the replication stream trails a
/// write's reply by, well under a cross-zone round trip.
const OWN_WRITE_WAIT: Duration = Duration::from_millis(1);

/// Commands one connection may have in flight before it waits for them.
const MAX_IN_FLIGHT: usize = 128;

/// A forwarded command whose reply has not been settled yet.
pub struct InFlight {
    answer: Answer,
    spec: &'static command::Spec,
    started: Instant,
    to: (String, u16),
    peer: Peer,
    /// Where its reply goes in the connection's output.
    at: usize,
}

impl InFlight {
    pub fn peer(&self) -> Peer {
        self.peer
    }
}

/// A forwarded blocking command the connection waits for (watching its
/// client meanwhile, as for a local one).
pub struct Awaited {
    pub answer: Answer,
    spec: &'static command::Spec,
    started: Instant,
}

/// A connection's forwarded commands, oldest first.
pub type InFlights = VecDeque<InFlight>;

impl Conn {
    /// Sends `cmds` to `to` on this core's shared link and returns at once;
    /// the reply of the last one takes this place in `out` when settled.
    /// With `seqs`, that place's seqs of those shards come back too (a write).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &mut self,
        to: (String, u16),
        peer: Peer,
        spec: &'static command::Spec,
        cmds: Vec<Vec<Vec<u8>>>,
        seqs: Seqs,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> After {
        let other_link = self
            .inflight
            .back()
            .is_some_and(|f| f.to != to || f.peer != peer);
        if other_link || self.inflight.len() >= MAX_IN_FLIGHT {
            self.settle(out).await;
        }
        let resp3 = self.proto == Protocol::Resp3;
        let answer = forward::submit(&self.state, to.clone(), peer, resp3, self.db, cmds, seqs);
        self.inflight.push_back(InFlight {
            answer,
            spec,
            started,
            to,
            peer,
            at: out.len(),
        });
        After::Continue
    }

    /// A write for the primary (counted as forwarded).
    pub(super) async fn forward_write(
        &mut self,
        primary: (String, u16),
        spec: &'static command::Spec,
        argv: &[&[u8]],
        blocking: bool,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> After {
        self.state
            .repl
            .fwd_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The seqs wanted are those of the shards the write touches.
        let shards = match spec.kind {
            Kind::Keyed(..) => self.router.shards_of(spec, argv),
            _ => Vec::new(),
        };
        if blocking {
            // On a connection of its own (it would hold up the shared
            // link), waited for like a local blocking command: the client
            // leaving cancels it.
            self.settle(out).await;
            let resp3 = self.proto == Protocol::Resp3;
            let cmds = vec![owned(argv)];
            let answer =
                forward::submit_alone(&self.state, primary, resp3, self.db, cmds, Some(shards));
            return After::Forwarded(Box::new(Awaited {
                answer,
                spec,
                started,
            }));
        }
        self.forward(
            primary,
            Peer::Primary,
            spec,
            vec![owned(argv)],
            Some(shards),
            started,
            out,
        )
        .await
    }

    /// A read that cannot be served here: to the nearest ready backup when
    /// this node's copy is not ready (the client's own writes travel with
    /// it, so that backup serves it only once it has them), else to the
    /// primary.
    pub(super) async fn forward_read(
        &mut self,
        primary: (String, u16),
        reason: Reason,
        spec: &'static command::Spec,
        argv: &[&[u8]],
        started: Instant,
        out: &mut Vec<u8>,
    ) -> After {
        let nearby = (reason == Reason::NotReady && !self.routed)
            .then(|| self.state.cluster.nearest_replica())
            .flatten()
            .filter(|_| self.inflight.iter().all(|f| f.peer == Peer::Replica));
        route::count_read(self, Some(reason), nearby.is_some());
        let Some(replica) = nearby else {
            return self
                .forward(
                    primary,
                    Peer::Primary,
                    spec,
                    vec![owned(argv)],
                    None,
                    started,
                    out,
                )
                .await;
        };
        let mut after = vec![b"REPLCONF".to_vec(), b"AFTER".to_vec()];
        after.extend(self.written_seqs.iter().map(|s| s.to_string().into_bytes()));
        self.forward(
            replica,
            Peer::Replica,
            spec,
            vec![after, owned(argv)],
            None,
            started,
            out,
        )
        .await
    }

    /// A read of the client's own write that has not arrived here yet: it
    /// is usually on its way (the record left the primary before the
    /// write's reply did), so wait a moment for it rather than cross zones
    /// for the read. Returns why the read must still go elsewhere, if it
    /// must.
    pub(super) async fn await_own_write(
        &self,
        spec: &'static command::Spec,
        argv: &[&[u8]],
    ) -> Option<Reason> {
        let deadline = Instant::now() + OWN_WRITE_WAIT;
        loop {
            crate::runtime::sleep(Duration::from_micros(100)).await;
            let reason = route::read_reason(self, spec, argv);
            if reason.is_none() {
                let waited = &self.state.repl.reads_waited;
                waited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if reason != Some(Reason::OwnWrite) || Instant::now() >= deadline {
                return reason;
            }
        }
    }

    /// SCAN on a cluster backup: whether it runs on the primary. Cursors
    /// belong to the node that issued them, so a whole iteration runs in
    /// one place: here, unless at its start (cursor 0) this node could not
    /// serve the client a read of every shard (not ready, or the client's
    /// own writes not here yet) — then on the primary, until the client
    /// starts another.
    pub(super) fn scan_on_primary(&mut self, spec: &'static command::Spec, argv: &[&[u8]]) -> bool {
        if argv.get(1).is_some_and(|c| *c == b"0") {
            self.scan_remote = route::read_reason(self, spec, argv).is_some();
        }
        self.scan_remote
    }

    /// Waits for every command in flight and splices each reply into `out`
    /// at its place, remembering the primary's seqs of forwarded writes.
    pub async fn settle(&mut self, out: &mut Vec<u8>) {
        if self.inflight.is_empty() {
            return;
        }
        let items: Vec<InFlight> = self.inflight.drain(..).collect();
        let mut splice = Splice::new(out, items.len());
        for f in items {
            let r = forward::settled(f.answer).await;
            self.relay(f.spec, r, f.started, splice.upto(out, f.at));
        }
        splice.finish(out);
    }

    /// WATCH, UNWATCH and DISCARD on a cluster backup: WATCH runs on this
    /// client's own link to the primary (opened on the first WATCH); UNWATCH
    /// and DISCARD close it. None: not a cluster backup, handle as usual.
    pub(super) async fn watch_on_primary(
        &mut self,
        spec: &'static command::Spec,
        argv: &[&[u8]],
        started: Instant,
        out: &mut Vec<u8>,
    ) -> Option<After> {
        // The watches must see every earlier write of this client.
        self.settle(out).await;
        let target = route::target(self);
        match spec.name {
            "watch" => {
                let target = target?;
                if self.multi.is_some() {
                    return None; // "WATCH inside MULTI is not allowed", as usual
                }
                if self.pinned.as_ref().is_some_and(|p| p.target != target) {
                    self.pinned = None;
                }
                let resp3 = self.proto == Protocol::Resp3;
                let state = self.state.clone();
                let p = self
                    .pinned
                    .get_or_insert_with(|| forward::Pinned::open(&state, target, resp3));
                let r = p.send(self.db, vec![owned(argv)], None).await;
                if r.is_err() {
                    self.pinned = None;
                }
                Some(self.relay(spec, r, started, out))
            }
            _ => {
                // UNWATCH / DISCARD: the primary forgets the watches with
                // the link; the command itself runs here as usual.
                self.pinned = None;
                None
            }
        }
    }

    /// Appends the answer to a forwarded blocking command.
    pub(super) fn relay_awaited(
        &mut self,
        a: &Awaited,
        r: Result<Relayed, ForwardError>,
        out: &mut Vec<u8>,
    ) {
        self.relay(a.spec, r, a.started, out);
    }

    /// Appends a relayed reply (or the forwarding error) and remembers the
    /// primary's seqs it came with.
    fn relay(
        &mut self,
        spec: &'static command::Spec,
        r: Result<Relayed, ForwardError>,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> After {
        match r {
            Ok(r) => {
                let failed = r.bytes.first() == Some(&b'-');
                out.extend_from_slice(&r.bytes);
                if self.written_seqs.len() < r.seqs.len() {
                    self.written_seqs.resize(r.seqs.len(), 0);
                }
                for (mine, s) in self.written_seqs.iter_mut().zip(&r.seqs) {
                    *mine = (*mine).max(*s);
                }
                self.count(spec, started, failed);
            }
            Err(e) => {
                self.count(spec, started, true);
                resp::encode(&Reply::Error(e.to_string().into()), self.proto, out);
            }
        }
        After::Continue
    }

    /// EXEC on a cluster backup: the queued transaction runs on the primary
    /// as one MULTI … EXEC — on the client's own link when it WATCHes (the
    /// watches live on that connection there), else on the shared one.
    pub(super) async fn forward_exec(
        &mut self,
        target: (String, u16),
        spec: &'static command::Spec,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> After {
        let Some(m) = self.multi.take() else {
            return After::Continue;
        };
        if !self.watches.is_empty() {
            // Watched here before this node forwarded: cannot vouch for them.
            multi::unwatch_all(self).await;
            self.pinned = None;
            return self.reply_err(
                CmdError::Raw("EXECABORT the keys were watched before this node became a replica: WATCH again".into()),
                out,
            );
        }
        let mut cmds: Vec<Vec<Vec<u8>>> = vec![vec![b"MULTI".to_vec()]];
        cmds.extend(m.queued.into_iter().map(|q| q.args));
        cmds.push(vec![b"EXEC".to_vec()]);
        self.state
            .repl
            .fwd_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = self.pinned.take() {
            // The transaction runs where its WATCH is.
            self.settle(out).await;
            let r = p.send(self.db, cmds, Some(Vec::new())).await;
            return self.relay(spec, r, started, out);
        }
        let all = Some(Vec::new());
        self.forward(target, Peer::Primary, spec, cmds, all, started, out)
            .await
    }
}
