//! One client connection: read bytes, parse requests, run each command in
//! order, write every reply of a batch with one send.
//!
//! A connection lives on the executor that accepted it. Its commands run
//! inline when their keys are on a local shard and travel as messages
//! otherwise (`exec/router.rs`); either way replies come back in request
//! order, because the connection awaits each command before starting the
//! next — or, for commands forwarded elsewhere on a cluster backup, keeps
//! their places in the output until they are answered
//! ([`super::front_door`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::Either;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};

use crate::cluster::forward::{ForwardError, Peer};
use crate::cmd::error::{unknown_command, CmdError};
use crate::cmd::Ctx;
use crate::exec::blocking::{self, Blocked};
use crate::exec::command::{self, flags, Kind};
use crate::exec::local::TxId;
use crate::exec::multi::{self, MultiState, Queued, Watch};
use crate::exec::pubsub::{self, Subscriptions};
use crate::exec::router::{owned, Router};
use crate::resp::reply::Reply;
use crate::resp::{self, Limits, Parsed, Protocol, Source};
use crate::server::client::ClientInfo;
use crate::server::commands;
use crate::server::pipeline::Route;
use crate::server::state::{now_ms, ServerState};

/// What a node outside the database answers for data (Redis's word for a
/// replica that cannot serve its data; clients retry elsewhere).
const NOT_A_MEMBER: &str = "MASTERDOWN This node is not a member of the database (waiting to be added with KEEL NODE ADD, or removed): connect to a member";

/// Replies are flushed early when a batch's output grows past this.
const FLUSH_AT: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Commands that may block the connection.
const BLOCKING: &[&str] = &[
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
];

/// Commands a RESP2 connection in subscribed mode may still send.
const SUBSCRIBED_OK: &[&str] = &[
    "subscribe",
    "psubscribe",
    "unsubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "ping",
    "quit",
    "reset",
];

/// What the connection does after a command.
pub enum After {
    Continue,
    Close,
    /// The server is stopping (SHUTDOWN): the connection drops at once,
    /// with no reply, as Redis's does (clients read the drop as success).
    Vanish,
    /// A blocking command is waiting for data (or its timeout).
    Block(Box<Blocked>),
    /// A blocking command forwarded to the primary is waiting there.
    Forwarded(Box<crate::server::front_door::Awaited>),
}

/// A connection's state, as commands see and change it.
pub struct Conn {
    pub router: Rc<Router>,
    pub state: Arc<ServerState>,
    pub info: Rc<RefCell<ClientInfo>>,
    pub db: usize,
    pub proto: Protocol,
    pub authenticated: bool,
    pub max_string: usize,
    /// Commands queued since MULTI.
    pub multi: Option<MultiState>,
    pub watches: Vec<Watch>,
    /// The transaction this connection is running (inside EXEC).
    pub tx: Option<TxId>,
    pub subs: Subscriptions,
    /// Executors whose shards a write touched since replies were last sent:
    /// under `appendfsync always` the replies wait until those shards'
    /// records are durable.
    pub wrote: RefCell<Vec<usize>>,
    /// On a cluster backup: per shard, the primary's seq when it answered
    /// this client's latest forwarded write (read-your-writes).
    pub written_seqs: Vec<u64>,
    /// On a cluster backup: this client's own link to the primary while it
    /// WATCHes (its transaction runs there).
    pub pinned: Option<crate::cluster::forward::Pinned>,
    /// On a cluster backup: this client's SCAN iteration runs on the
    /// primary (decided when it started, at cursor 0).
    pub scan_remote: bool,
    /// Requests bound for other cores' shards, sent as one message each.
    pub pipeline: crate::server::pipeline::Pipeline,
    /// Forwarded commands whose replies are not in the output yet.
    pub inflight: crate::server::front_door::InFlights,
    /// A backup's link sent this connection's reads here (REPLCONF AFTER):
    /// reads this node cannot serve go to the primary, never further.
    pub routed: bool,
    /// MONITOR, CLIENT REPLY, NO-TOUCH (see `server::introspect`).
    pub intro: crate::server::introspect::ConnIntro,
    /// The ACL user this connection runs as (see `crate::security::acl`).
    pub acl: crate::security::acl::ConnAcl,
}

/// The -MISCONF error naming what the log write failed with.
fn disk_error(conn: &Conn) -> String {
    let why = conn
        .state
        .disk_error
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    format!("MISCONF Errors writing to the AOF file: {why}")
}

impl Conn {
    /// A new client's state (RESP2, database 0).
    pub fn new(
        router: Rc<Router>,
        state: Arc<ServerState>,
        info: Rc<RefCell<ClientInfo>>,
        authenticated: bool,
    ) -> Conn {
        let max_string = state.config().proto_max_bulk_len as usize;
        let acl = crate::security::acl::ConnAcl::new(&state.acl);
        Conn {
            acl,
            router,
            state,
            info,
            db: 0,
            proto: Protocol::Resp2,
            authenticated,
            max_string,
            multi: None,
            watches: Vec::new(),
            tx: None,
            subs: Default::default(),
            wrote: Default::default(),
            written_seqs: Vec::new(),
            pinned: None,
            inflight: Default::default(),
            pipeline: Default::default(),
            routed: false,
            scan_remote: false,
            intro: Default::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.info.borrow().id
    }

    /// Remembers which executors' logs a write command's replies wait for.
    /// Strong consistency on a primary: replies to writes wait for the sync
    /// backup.
    pub fn strong(&self) -> bool {
        self.state.repl.strong && !self.state.repl.is_backup()
    }

    /// Whether replies to writes wait (for the log or the sync backup).
    fn replies_wait(&self) -> bool {
        self.state.fsync_always.load(Ordering::Relaxed) || self.strong()
    }

    pub(super) fn note_write(&self, spec: &'static command::Spec, argv: &[&[u8]]) {
        // Queued in MULTI: nothing is written until EXEC.
        if !self.replies_wait() || (self.multi.is_some() && spec.name != "exec") {
            return;
        }
        match spec.kind {
            Kind::Keyed(..) => {
                let mut w = self.wrote.borrow_mut();
                for s in self.router.shards_of(spec, argv) {
                    let e = self.router.executor_of(s);
                    if !w.contains(&e) {
                        w.push(e);
                    }
                }
            }
            // EXEC, FLUSHALL, blocking pops...: any shard.
            _ => self.note_write_everywhere(),
        }
    }

    pub(crate) fn note_write_everywhere(&self) {
        if self.replies_wait() {
            *self.wrote.borrow_mut() = (0..self.router.executors()).collect();
        }
    }

    pub fn ctx(&self, now_ms: u64) -> Ctx {
        Ctx {
            db: self.db,
            now_ms,
            max_string: self.max_string,
            no_touch: self.intro.no_touch,
            client: self.id(),
            // (read-only commands only: see `exec::router::apply`)
            track: self
                .subs
                .tracking
                .as_deref()
                .is_some_and(crate::server::tracking::ConnTracking::remembers),
        }
    }

    /// Runs one request and appends its reply to `out`.
    /// `found` is `command::lookup(argv[0])`, done once by the caller.
    /// Around it, the introspection hooks: CLIENT PAUSE before; the slow
    /// log, latency monitor, MONITOR and CLIENT REPLY after.
    pub async fn execute(
        &mut self,
        found: Option<&'static command::Spec>,
        argv: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> After {
        use crate::server::introspect;
        if !introspect::before(self, found, argv).await {
            // Killed while CLIENT PAUSE held it: the command never runs.
            return After::Vanish;
        }
        let mark = out.len();
        let started = Instant::now();
        let queued = self.multi.is_some();
        let after = match found {
            Some(spec)
                if spec.name == "memory"
                    && self.authenticated
                    && self.multi.is_none()
                    && !self.subs.active()
                    && !self.state.scripts.busy() =>
            {
                if let Some(e) = crate::security::acl::gate::check(self, spec, argv) {
                    return self.reply_err(e, out);
                }
                match introspect::memory::memory(self, argv).await {
                    Some(r) => {
                        let failed = r.is_err();
                        let reply = r.unwrap_or_else(|e| Reply::Error(e.to_string().into()));
                        resp::encode(&reply, self.proto, out);
                        self.count(spec, started, failed);
                        After::Continue
                    }
                    None => self.execute_inner(found, argv, out).await,
                }
            }
            _ => self.execute_inner(found, argv, out).await,
        };
        // Queued in MULTI (still in it, not its end): not run yet.
        let queued = queued
            && self.multi.is_some()
            && !found.is_some_and(|s| matches!(s.name, "multi" | "watch"));
        let ran = introspect::Ran {
            started,
            queued,
            blocked: matches!(after, After::Block(_)),
            mark,
        };
        introspect::after(self, found, argv, ran, out);
        after
    }

    async fn execute_inner(
        &mut self,
        found: Option<&'static command::Spec>,
        argv: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> After {
        let started = Instant::now();
        let Some(spec) = found else {
            if let Some(m) = &mut self.multi {
                m.aborted = true;
            }
            resp::encode(&Reply::ErrorBytes(unknown_command(argv)), self.proto, out);
            self.router.local.stats.borrow_mut().error_replies += 1;
            return After::Continue;
        };
        if !spec.arity_ok(argv.len()) {
            // Refused before it ran: a rejected call (INFO commandstats).
            self.router.local.stats.borrow_mut().by_command[command::index_of(spec)].rejected += 1;
            let e = CmdError::Arity(spec.name.to_string());
            if spec.name == "exec" {
                self.multi = None;
                // A rejected EXEC ends the transaction, naming the reason.
                let why = e.to_string();
                let why = why.strip_prefix("ERR ").unwrap_or(&why);
                let abort = format!("EXECABORT Transaction discarded because of: {why}");
                multi::unwatch_all(self).await;
                return self.reply_err(CmdError::Raw(abort), out);
            }
            return self.reply_err(e, out);
        }
        if !self.authenticated && !spec.has(flags::NOAUTH) {
            return self.reply_err(CmdError::NoAuth, out);
        }
        if let Some(e) = crate::security::acl::gate::check(self, spec, argv) {
            return self.reply_err(e, out);
        }
        if self.subs.tracking.is_some() {
            crate::server::tracking::next_command(self, spec);
        }
        if self.state.scripts.busy() && !crate::script::allowed_while_busy(spec.name, argv) {
            return self.reply_err(CmdError::Raw(crate::script::BUSY.into()), out);
        }
        if self.state.cluster.outside.load(Ordering::Relaxed)
            && (spec.has(flags::WRITE) || crate::cluster::route::routed_read(spec))
        {
            return self.reply_err(CmdError::Raw(NOT_A_MEMBER.into()), out);
        }
        if spec.has(flags::WRITE) || spec.name == "exec" {
            // A log that cannot be written refuses writes (reads go on), as
            // Redis does; the log task retries and clears the error.
            if spec.has(flags::WRITE)
                && self.state.disk_errors.load(Ordering::Relaxed) > 0
                && self.multi.is_none()
            {
                return self.reply_err(CmdError::Raw(disk_error(self)), out);
            }
            if spec.has(flags::WRITE) && self.state.repl.write_pause_until() != 0 {
                // A planned switchover: the write waits (bounded) and then
                // meets whatever this node is afterwards (-READONLY once it
                // follows the new primary).
                crate::repl::wait_switchover(&self.state).await;
            }
            if spec.has(flags::WRITE) && self.state.repl.paused() {
                return self.reply_err(
                    CmdError::Raw("CLUSTERDOWN Writes are paused: no replica is eligible for promotion without losing acknowledged writes (reads are served; FAILOVER FORCE overrides)".into()),
                    out,
                );
            }
            if spec.has(flags::WRITE) && self.state.repl.is_backup() {
                // A cluster backup forwards writes to the primary; inside
                // MULTI they queue here and EXEC forwards the transaction.
                if let Some(target) = crate::cluster::route::target(self) {
                    if self.multi.is_none() {
                        let blocking = BLOCKING.contains(&spec.name);
                        return self
                            .forward_write(target, spec, argv, blocking, started, out)
                            .await;
                    }
                }
            }
            // Not forwarded: it runs (or queues) here after what is in flight.
            self.settle(out).await;
            if spec.has(flags::WRITE)
                && self.state.repl.is_backup()
                && !(self.multi.is_some() && crate::cluster::route::target(self).is_some())
            {
                return self.reply_err(
                    CmdError::Raw("READONLY You can't write against a read only replica.".into()),
                    out,
                );
            }
            if self.multi.is_none() {
                crate::repl::backpressure(self, spec, argv).await;
            }
            self.note_write(spec, argv);
        }
        if self.subs.active()
            && self.proto == Protocol::Resp2
            && !SUBSCRIBED_OK.contains(&spec.name)
        {
            return self.reply_err(
                CmdError::other(format!(
                    "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    spec.name
                )),
                out,
            );
        }
        if self.multi.is_some() && matches!(spec.name, "save" | "shutdown") {
            // Redis's no-multi commands: refused, and EXEC will abort.
            return self.reply_err(
                CmdError::other("Command not allowed inside a transaction"),
                out,
            );
        }
        if let Some(m) = &mut self.multi {
            if !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            ) {
                m.queued.push(Queued {
                    spec,
                    args: owned(argv),
                });
                resp::encode(&Reply::status("QUEUED"), self.proto, out);
                return After::Continue;
            }
        }
        if matches!(spec.name, "watch" | "unwatch" | "discard") {
            if let Some(after) = self.watch_on_primary(spec, argv, started, out).await {
                return after;
            }
        }
        if spec.name == "exec" && self.multi.as_ref().is_some_and(|m| m.aborted) {
            // An aborted EXEC unwatches everything, here and on the primary.
            self.pinned = None;
        }
        if spec.name == "exec" && self.multi.as_ref().is_some_and(|m| !m.aborted) {
            if let Some(target) = crate::cluster::route::target(self) {
                return self.forward_exec(target, spec, started, out).await;
            }
        }
        if matches!(spec.name, "publish" | "spublish") && self.multi.is_none() {
            // Published once, on the primary; every node's relay delivers it.
            if let Some(target) = crate::cluster::route::target(self) {
                let publish = vec![owned(argv)];
                return self
                    .forward(target, Peer::Primary, spec, publish, None, started, out)
                    .await;
            }
        }
        if self.multi.is_none() && !spec.has(flags::WRITE) {
            if let Some(target) = crate::cluster::route::target(self) {
                if spec.name == "scan" {
                    if self.scan_on_primary(spec, argv) {
                        let scan = vec![owned(argv)];
                        return self
                            .forward(target, Peer::Primary, spec, scan, None, started, out)
                            .await;
                    }
                } else {
                    let mut reason = crate::cluster::route::read_reason(self, spec, argv);
                    // (A link from another backup is shared by its clients:
                    // it never waits.)
                    if reason == Some(crate::cluster::route::Reason::OwnWrite)
                        && self.inflight.is_empty()
                        && !self.routed
                    {
                        reason = self.await_own_write(spec, argv).await;
                    }
                    match reason {
                        Some(reason) => {
                            return self
                                .forward_read(target, reason, spec, argv, started, out)
                                .await
                        }
                        None if crate::cluster::route::routed_read(spec) => {
                            crate::cluster::route::count_read(self, None, false)
                        }
                        None => {}
                    }
                }
            }
        }
        // Whatever runs here runs after what this client has in flight.
        self.settle(out).await;
        if let Some(verb) = spec.name.strip_suffix("subscribe") {
            let (space, unsub) = match verb.strip_suffix("un") {
                Some(space) => (pubsub::Space::of_command(space), true),
                None => (pubsub::Space::of_command(verb), false),
            };
            let replies = if unsub {
                pubsub::unsubscribe(self, argv, space)
            } else {
                pubsub::subscribe(self, argv, space)
            };
            for r in &replies {
                resp::encode(r, self.proto, out);
            }
            return After::Continue;
        }
        if spec.name == "ping" && self.subs.active() && self.proto == Protocol::Resp2 {
            // In subscribed mode Redis answers PING as a message-shaped array.
            let msg = argv.get(1).map_or(Vec::new(), |m| m.to_vec());
            resp::encode(
                &Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(msg)]),
                self.proto,
                out,
            );
            return After::Continue;
        }
        let now = now_ms();
        {
            let mut info = self.info.borrow_mut();
            info.last_ms = now;
            info.last_cmd.clear();
            crate::server::introspect::command_name(spec, argv, &mut info.last_cmd);
        }
        let (result, after) = match spec.kind {
            Kind::Conn if BLOCKING.contains(&spec.name) => {
                match blocking::start(self, spec.name, argv).await {
                    blocking::Start::Done(r) => (r, After::Continue),
                    blocking::Start::Wait(b) => {
                        self.count(spec, started, false);
                        return After::Block(b);
                    }
                }
            }
            // streams: XREAD / XREADGROUP with BLOCK
            Kind::Keyed(..) if blocking::is_stream_block(spec.name, argv) => {
                match blocking::start_stream(self, spec.name, argv).await {
                    blocking::Start::Done(r) => (r, After::Continue),
                    blocking::Start::Wait(b) => {
                        self.count(spec, started, false);
                        return After::Block(b);
                    }
                }
            }
            Kind::Keyed(f, split) => (
                self.router
                    .run(spec, f, split, self.ctx(now), argv, None)
                    .await,
                After::Continue,
            ),
            Kind::Conn => commands::run(self, spec, argv, now).await,
        };
        let failed = result.is_err();
        let reply = result.unwrap_or_else(|e| Reply::Error(e.to_string().into()));
        resp::encode(&reply, self.proto, out);
        reply.recycle();
        {
            let mut info = self.info.borrow_mut();
            info.db = self.db;
            info.proto = self.proto;
        }
        self.count(spec, started, failed);
        after
    }

    pub(crate) fn count(&self, spec: &'static command::Spec, started: Instant, failed: bool) {
        let mut stats = self.router.local.stats.borrow_mut();
        stats.total_commands += 1;
        let us = started.elapsed().as_micros() as u64;
        let i = command::index_of(spec);
        stats.record_latency(spec, i, us);
        let s = &mut stats.by_command[i];
        s.calls += 1;
        s.usec += us;
        if failed {
            s.failed += 1;
            stats.error_replies += 1;
        }
    }

    pub(super) fn reply_err(&mut self, e: CmdError, out: &mut Vec<u8>) -> After {
        // A command that cannot even be queued dooms the transaction.
        if let Some(m) = &mut self.multi {
            m.aborted = true;
        }
        resp::encode(&Reply::Error(e.to_string().into()), self.proto, out);
        self.router.local.stats.borrow_mut().error_replies += 1;
        After::Continue
    }
}

/// A client connection's byte stream: a socket, or a TLS session on one.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Written bytes may wait in the stream (a TLS session's records when
    /// the socket's queue is full) until it is flushed.
    const BUFFERS: bool = false;
}

impl Transport for crate::runtime::TcpStream {}

impl Transport for crate::security::stream::TlsClient {
    const BUFFERS: bool = true;
}

/// Writes `bytes` whole, flushed if the stream buffers (TLS).
pub async fn send<S: Transport>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    if S::BUFFERS {
        stream.flush().await?;
    }
    Ok(())
}

/// Serves one client until it disconnects, misbehaves or says QUIT.
pub async fn serve<S: Transport>(mut stream: S, mut conn: Conn) {
    let config = conn.state.config();
    let limits = Limits {
        max_bulk_len: config.proto_max_bulk_len,
        max_multibulk_len: config.max_multibulk_len,
    };
    let query_limit = config.client_query_buffer_limit as usize;
    let mut input: Vec<u8> = Vec::new();
    let mut parsed = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut scratch: Vec<u8> = Vec::new();
    let mut argv_store: Vec<(usize, usize)> = Vec::new();
    // The argument list's allocation, reused from request to request.
    let mut argv_spare: Vec<&[u8]> = Vec::new();
    // `input` is zeroed once when it grows and never again: bytes
    // `parsed..filled` are unparsed input, the rest is room to read into.
    input.resize(READ_CHUNK, 0);
    let mut filled = 0usize;
    // CLIENT KILL (from any core) ends the connection through this.
    let signal = conn.info.borrow().signal.clone();
    'conn: loop {
        make_room(&mut input, filled);
        let subscribed = conn.subs.active() || conn.subs.listening;
        let read = if let Some(inbox) = conn.subs.inbox.as_mut().filter(|_| subscribed) {
            // Subscribed: wait for input or a published message, whichever
            // comes first. A pending read is resumed by the next call.
            let read = stream.read(&mut input[filled..]);
            futures::pin_mut!(read);
            let killed = signal.wait();
            futures::pin_mut!(killed);
            match futures::future::select(futures::future::select(read, inbox.next()), killed).await
            {
                Either::Right(_) => break 'conn,
                Either::Left((Either::Left((r, _)), _)) => r,
                Either::Left((Either::Right((Some(m), _)), _)) => {
                    if let Some(r) = m.reply_for(conn.proto, conn.subs.active()) {
                        resp::encode(&r, conn.proto, &mut out);
                    }
                    drain_messages(&mut conn, &mut out);
                    if write_out(&mut stream, &mut out, &mut conn).await.is_err() {
                        break;
                    }
                    continue;
                }
                Either::Left((Either::Right((None, _)), _)) => continue,
            }
        } else if let Some(lines) = conn.intro.monitor.as_mut() {
            // MONITOR: input, or the lines of commands run anywhere.
            let read = stream.read(&mut input[filled..]);
            futures::pin_mut!(read);
            let killed = signal.wait();
            futures::pin_mut!(killed);
            match futures::future::select(futures::future::select(read, lines.next()), killed).await
            {
                Either::Right(_) => break 'conn,
                Either::Left((Either::Left((r, _)), _)) => r,
                Either::Left((Either::Right((Some(line), _)), _)) => {
                    out.extend_from_slice(&line);
                    while let Ok(line) = lines.try_recv() {
                        out.extend_from_slice(&line);
                    }
                    if write_out(&mut stream, &mut out, &mut conn).await.is_err() {
                        break;
                    }
                    continue;
                }
                Either::Left((Either::Right((None, _)), _)) => continue,
            }
        } else {
            let read = stream.read(&mut input[filled..]);
            futures::pin_mut!(read);
            let killed = signal.wait();
            futures::pin_mut!(killed);
            match futures::future::select(read, killed).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => break 'conn,
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Stopping (SHUTDOWN, SIGTERM): new requests get the dropped
        // connection a stopped server gives, not half a shutdown.
        if conn
            .state
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            break 'conn;
        }
        filled += n;
        conn.router.local.stats.borrow_mut().net_input_bytes += n as u64;

        let mut close = false;
        loop {
            match resp::parse(&input[parsed..filled], &limits, &mut ranges, &mut scratch) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Nothing { consumed }) => parsed += consumed,
                Ok(Parsed::Request { consumed, source }) => {
                    argv_store.clear();
                    argv_store.extend_from_slice(&ranges);
                    let base: &[u8] = match source {
                        Source::Input => &input[parsed..filled],
                        Source::Scratch => &scratch,
                    };
                    let mut argv = recycle(std::mem::take(&mut argv_spare));
                    argv.extend(argv_store.iter().map(|&(s, e)| &base[s..e]));
                    let after = match conn.batch_route(&argv) {
                        Route::Batch(spec, f, shard) => {
                            conn.enqueue(spec, f, shard, &argv, &mut out).await;
                            After::Continue
                        }
                        Route::Inline(found) => conn.execute(found, &argv, &mut out).await,
                        Route::Alone(found) => {
                            conn.flush_batch(&mut out).await;
                            if found.is_some_and(|s| s.name == "client") {
                                // CLIENT LIST/INFO show the query buffer as
                                // Redis does: the running command still in it.
                                conn.info.borrow_mut().qbuf = filled - parsed;
                            }
                            conn.execute(found, &argv, &mut out).await
                        }
                    };
                    argv_spare = recycle(argv);
                    parsed += consumed;
                    match after {
                        After::Continue => {}
                        After::Close => {
                            close = true;
                            break;
                        }
                        After::Vanish => break 'conn,
                        After::Forwarded(mut awaited) => {
                            if write_out(&mut stream, &mut out, &mut conn).await.is_err() {
                                break 'conn;
                            }
                            let answer = &mut awaited.answer;
                            match wait_client_or(
                                &mut stream,
                                &mut input,
                                &mut filled,
                                &conn,
                                answer,
                            )
                            .await
                            {
                                Some(r) => {
                                    let r = r.unwrap_or(Err(ForwardError::Lost));
                                    conn.relay_awaited(&awaited, r, &mut out);
                                }
                                // Dropping the answer closes the link there.
                                None => break 'conn,
                            }
                        }
                        After::Block(blocked) => {
                            // Answer what came before, then wait; input that
                            // arrives meanwhile is kept for afterwards.
                            if write_out(&mut stream, &mut out, &mut conn).await.is_err() {
                                break 'conn;
                            }
                            match wait_blocked(
                                &mut stream,
                                &mut input,
                                &mut filled,
                                &mut conn,
                                *blocked,
                            )
                            .await
                            {
                                Some(reply) => {
                                    // The pop it answers is a write: under
                                    // `always` it waits for the log too.
                                    conn.note_write_everywhere();
                                    let mark = out.len();
                                    resp::encode(&reply, conn.proto, &mut out);
                                    crate::server::introspect::blocked_done(
                                        &mut conn, &mut out, mark,
                                    );
                                }
                                None => break 'conn,
                            }
                        }
                    }
                    if out.len() >= FLUSH_AT
                        && write_out(&mut stream, &mut out, &mut conn).await.is_err()
                    {
                        break 'conn;
                    }
                }
                Err(e) => {
                    // Redis answers a protocol error and then closes.
                    resp::encode(&Reply::ErrorBytes(e.reply()), conn.proto, &mut out);
                    close = true;
                    break;
                }
            }
        }
        if parsed == filled {
            filled = 0;
        } else if parsed > 0 {
            input.copy_within(parsed..filled, 0);
            filled -= parsed;
        }
        parsed = 0;
        conn.info.borrow_mut().qbuf = filled;
        drain_messages(&mut conn, &mut out);
        if filled > query_limit {
            tracing::warn!(
                client = conn.id(),
                "closing client that exceeded client-query-buffer-limit"
            );
            close = true;
        }
        let due = !out.is_empty() || !conn.inflight.is_empty() || conn.pipeline.pending();
        if due && write_out(&mut stream, &mut out, &mut conn).await.is_err() {
            break;
        }
        if close {
            break;
        }
        // Give back memory a large request left behind.
        if filled == 0 && input.len() > 4 * READ_CHUNK {
            input = vec![0; READ_CHUNK];
        }
    }
    let _ = stream.close().await;
    multi::unwatch_all(&mut conn).await;
    pubsub::unsubscribe_all(&mut conn);
    crate::server::introspect::leave(&mut conn);
}

/// Grows `input` (doubling) when less than half a read's worth of room is
/// left after its `filled` bytes.
fn make_room(input: &mut Vec<u8>, filled: usize) {
    if input.len() - filled < READ_CHUNK / 2 {
        let grow = input.len().max(READ_CHUNK);
        input.resize(input.len() + grow, 0);
    }
}

/// An empty list with `v`'s allocation, for slices of another lifetime (the
/// input buffer they pointed into is about to change): one allocation for
/// a connection's argument lists rather than one per request.
fn recycle<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

/// Waits for a blocked command's answer, its timeout, or the client leaving
/// (then `None`). Bytes the client sends meanwhile are buffered.
async fn wait_blocked<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut Vec<u8>,
    filled: &mut usize,
    conn: &mut Conn,
    mut b: Blocked,
) -> Option<Reply> {
    use crate::server::introspect::clients::{Wake, UNBLOCKED};
    conn.state
        .blocked_clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // CLIENT KILL and CLIENT UNBLOCK (from any core) end the wait too.
    let signal = conn.info.borrow().signal.clone();
    signal.set_blocked(true);
    let outcome = loop {
        make_room(input, *filled);
        let timer = async {
            let sleep = async {
                match b.deadline {
                    Some(d) => {
                        crate::runtime::sleep(d.saturating_duration_since(Instant::now())).await
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            futures::pin_mut!(sleep);
            match futures::future::select(sleep, signal.wait()).await {
                Either::Left(_) => None,
                Either::Right((why, _)) => Some(why),
            }
        };
        let read = stream.read(&mut input[*filled..]);
        futures::pin_mut!(timer);
        futures::pin_mut!(read);
        let answer_or_timer = futures::future::select(&mut b.answer, timer);
        match futures::future::select(answer_or_timer, read).await {
            Either::Left((Either::Left((Ok(reply), _)), _)) => break Some(reply),
            Either::Left((Either::Left((Err(_), _)), _)) => break Some(b.timeout_reply.clone()),
            Either::Left((Either::Right((Some(Wake::Killed), _)), _)) => {
                b.claim.store(true, std::sync::atomic::Ordering::SeqCst);
                break None;
            }
            Either::Left((Either::Right((why, _)), _)) => {
                if !b.claim.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    if why == Some(Wake::UnblockError) {
                        break Some(Reply::Error(UNBLOCKED.into()));
                    }
                    break Some(b.timeout_reply.clone());
                }
                // A shard won the claim first: its answer is on the way.
                break Some((&mut b.answer).await.unwrap_or(b.timeout_reply.clone()));
            }
            Either::Right((Ok(n), _)) if n > 0 => {
                *filled += n;
                if *filled > conn.state.config().client_query_buffer_limit as usize {
                    b.claim.store(true, std::sync::atomic::Ordering::SeqCst);
                    break None;
                }
            }
            Either::Right(_) => {
                // The client is gone. If a shard already popped for it, the
                // answer is lost with the connection, as with any reply.
                b.claim.store(true, std::sync::atomic::Ordering::SeqCst);
                break None;
            }
        }
    };
    signal.set_blocked(false);
    conn.state
        .blocked_clients
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    blocking::cancel_all(conn, &b.claim, std::mem::take(&mut b.keys)).await;
    outcome
}

/// Waits for `answer` while buffering what the client sends meanwhile;
/// `None` if the client leaves (or overflows its query buffer) first.
async fn wait_client_or<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    input: &mut Vec<u8>,
    filled: &mut usize,
    conn: &Conn,
    answer: &mut futures::channel::oneshot::Receiver<T>,
) -> Option<Result<T, futures::channel::oneshot::Canceled>> {
    loop {
        make_room(input, *filled);
        let read = stream.read(&mut input[*filled..]);
        futures::pin_mut!(read);
        match futures::future::select(&mut *answer, read).await {
            Either::Left((r, _)) => return Some(r),
            Either::Right((Ok(n), _)) if n > 0 => {
                *filled += n;
                if *filled > conn.state.config().client_query_buffer_limit as usize {
                    return None;
                }
            }
            Either::Right(_) => return None,
        }
    }
}

/// Appends every message already waiting for a subscriber.
fn drain_messages(conn: &mut Conn, out: &mut Vec<u8>) {
    let subscribed = conn.subs.active();
    if let Some(inbox) = conn.subs.inbox.as_mut() {
        while let Ok(m) = inbox.try_recv() {
            if let Some(r) = m.reply_for(conn.proto, subscribed) {
                resp::encode(&r, conn.proto, out);
            }
        }
    }
}

/// Completes the replies in `out` before they may be sent: replies from
/// other cores and forwarded ones take their places, and writes wait until
/// they are durable (`appendfsync always`) and, in strong mode, held by the
/// sync backup. An error means the replies must not be sent.
pub async fn finish_replies(conn: &mut Conn, out: &mut Vec<u8>) -> std::io::Result<()> {
    conn.flush_batch(out).await;
    conn.settle(out).await;
    let wrote = std::mem::take(&mut *conn.wrote.borrow_mut());
    if !wrote.is_empty() {
        // Group commit: one fsync per shard covers every client whose
        // records were written with it.
        let _ = conn.router.wait_durable(&wrote).await;
        if conn.strong() && !crate::repl::wait_sync_backup(conn, &wrote).await {
            // Never acknowledge what the sync backup did not confirm: the
            // client sees the connection drop, an unknown outcome.
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the sync backup did not confirm a strong write",
            ));
        }
    }
    Ok(())
}

async fn write_out<S: Transport>(
    stream: &mut S,
    out: &mut Vec<u8>,
    conn: &mut Conn,
) -> std::io::Result<()> {
    finish_replies(conn, out).await?;
    send(stream, out).await?;
    conn.router.local.stats.borrow_mut().net_output_bytes += out.len() as u64;
    out.clear();
    if out.capacity() > 4 * FLUSH_AT {
        *out = Vec::with_capacity(READ_CHUNK);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::recycle;

    #[test]
    fn recycling_keeps_the_allocation() {
        let data = [b"GET".to_vec(), b"key".to_vec()];
        let mut v: Vec<&[u8]> = Vec::with_capacity(8);
        v.extend(data.iter().map(|a| a.as_slice()));
        let ptr = v.as_ptr() as usize;
        let again = recycle(v);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 8);
        assert_eq!(again.as_ptr() as usize, ptr);
    }
}
