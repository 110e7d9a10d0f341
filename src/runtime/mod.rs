//! The thread-per-core runtime: one pinned thread per core running keel's
//! own executor on one io_uring ring ([`executor`], [`ring`]), each with its
//! own listener (SO_REUSEPORT: the kernel spreads connections over the
//! cores), its shards, an inbox for work from other executors, and the
//! active-expiry timer.
//!
//! Why not glommio any more: glommio 0.9's sockets are readiness-based — a
//! `recv` and a `send` syscall per request plus a poll armed on the ring
//! after each read — and it cannot let another ring share its wait. A
//! bare loop on the `io-uring` crate with multishot receive into provided
//! buffers and every reply of a turn submitted in one `io_uring_enter`
//! measured 7.6 µs of server CPU per unpipelined GET against redis-server's
//! 9.4–10.3 µs and keel-on-glommio's 15.5–17.2 µs (same machine, same
//! redis-benchmark load; bench/RESULTS.md). So the executor, timers, sockets
//! and files are keel's own, in this module and nowhere else: the rest of
//! keel speaks of tasks, sleeps, streams and files.
//!
//! Restarts: before the executors bind, the port is bound once without
//! SO_REUSEPORT, waiting while anything still holds it — so a keel restarted
//! on the same port never joins the SO_REUSEPORT group of a dead process's
//! sockets (whose teardown io_uring defers for tens of milliseconds). And
//! the SIGTERM handler itself shuts every listener down, so connections
//! made while keel stops are refused, not accepted and then reset.

pub mod executor;
pub mod file;
pub mod mesh;
pub mod net;
mod ring;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::exec::local::{LocalShards, Msg};
use crate::exec::router::Router;
use crate::server::client::ClientInfo;
use crate::server::conn::{self, Conn};
use crate::server::state::{now_ms, ServerState};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("invalid listen address {0}")]
    Address(String),
    #[error("cannot start executor {0}: {1}")]
    Executor(usize, String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, String),
    #[error(transparent)]
    Persist(#[from] crate::persist::PersistError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// Sleeps on the current executor's timer.
pub async fn sleep(d: Duration) {
    executor::Sleep::until(Instant::now() + d).await;
}

/// Lets the other ready tasks of this core run first.
pub async fn yield_now() {
    executor::YieldNow::default().await;
}

/// Yields if this core's current turn has run tasks for a while (long
/// loops call it so clients are served meanwhile).
pub async fn yield_if_needed() {
    if executor::with(|e| e.turn_elapsed()) > Duration::from_micros(500) {
        yield_now().await;
    }
}

/// A spawned task's result; dropping the handle lets the task run on.
pub struct JoinHandle<T>(futures::channel::oneshot::Receiver<T>);

impl<T> std::future::Future for JoinHandle<T> {
    /// None if the task was dropped before finishing (its core stopped).
    type Output = Option<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.ok())
    }
}

/// Runs `f` as a task of this core.
pub fn spawn<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> JoinHandle<T> {
    let (tx, rx) = futures::channel::oneshot::channel();
    executor::spawn_boxed(Box::pin(async move {
        let _ = tx.send(f.await);
    }));
    JoinHandle(rx)
}

/// Runs blocking work (a file-system call that may stall) on a thread of
/// its own, so the core keeps serving meanwhile.
pub async fn spawn_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("keel-blocking".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    match spawned {
        Ok(_) => match rx.await {
            Ok(r) => r,
            Err(_) => panic!("blocking work panicked"),
        },
        Err(e) => panic!("cannot start a thread for blocking work: {e}"),
    }
}

/// `f`'s output, or None if it takes longer than `d`.
pub async fn timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    let tick = sleep(d);
    futures::pin_mut!(f);
    futures::pin_mut!(tick);
    match futures::future::select(f, tick).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes
    // into the zeroed set we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let cpus: Vec<usize> = if ok {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The executors' client listeners (-1: none): the signal handler shuts
/// them down at once, so a connection made after SIGTERM is refused rather
/// than accepted by a server about to cut it. An executor clears its entry
/// before its listener closes.
/// (Plain listeners first, then the TLS ones.)
static CLIENT_FDS: [std::sync::atomic::AtomicI32; 2 * MAX_EXECUTORS] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; 2 * MAX_EXECUTORS];
const MAX_EXECUTORS: usize = 1024;

/// Shuts every registered client listener down (new connections refused).
/// Stops taking new client connections (every executor's listener is shut;
/// pending accepts fail). Used by SIGTERM's handler and by SHUTDOWN.
pub fn shut_listeners() {
    for fd in &CLIENT_FDS {
        let fd = fd.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: shutdown(2) is async-signal-safe; a registered fd is a
            // listener still open.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    shut_listeners();
}

fn install_signal_handlers() {
    // SAFETY: the handler only touches atomics and calls shutdown(2), both
    // signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with
    // its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!("cannot pin an executor to cpu {cpu}");
        }
    }
}

/// Tells systemd (Type=notify) about our state, when run under it.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let r = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = r {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    let addr: SocketAddr = format!("{}:{}", config.bind, config.port)
        .parse()
        .map_err(|_| RuntimeError::Address(format!("{}:{}", config.bind, config.port)))?;
    let cpus = allowed_cpus();
    let shards = config.shards.unwrap_or(cpus.len()).max(1);
    let executors = shards.min(cpus.len()).max(1);
    let tls = if config.tls.wanted() {
        let t = crate::security::tls::Tls::new(&config.tls)
            .map_err(|e| RuntimeError::Config(format!("TLS: {e}")))?;
        Some(t)
    } else {
        None
    };
    let state = Arc::new(ServerState::new(config.clone(), shards, executors, tls));
    // Redis's default tracking table size.
    keel_shards::tracking::set_max_keys(1_000_000);
    // What an earlier CONFIG REWRITE saved, before anything reads the
    // configuration.
    crate::server::commands::apply_saved(&state, &config.redis_saved)
        .map_err(RuntimeError::Config)?;
    state.acl.load_file().map_err(RuntimeError::Config)?;
    let config = state.config();
    install_signal_handlers();
    // Before any executor starts: a node the cluster holds must never take
    // a write, not even in its first instant.
    let cluster = crate::cluster::driver::prepare(&state).map_err(RuntimeError::Cluster)?;
    // Load what the data directory holds before anyone can connect.
    let mut loaded: Vec<Vec<_>> = (0..executors).map(|_| Vec::new()).collect();
    for (g, shard) in crate::persist::start(&config, &state)?
        .into_iter()
        .enumerate()
    {
        loaded[g % executors].push(shard);
    }

    let lanes = mesh::mesh::<Msg>(executors, config.cross_core_queue_depth as usize);
    let (bound_tx, bound_rx) = std_mpsc::channel::<Result<SocketAddr, RuntimeError>>();
    let mut handles = Vec::new();
    // Nothing else may hold the port (a dead keel's sockets, say): wait
    // for it, then let the executors form their own SO_REUSEPORT group.
    let mut port = wait_for_port(addr)?;
    // Executor 0 binds first, so that with port 0 the others share its port.
    for ((e, (inboxes, inbox)), mine) in lanes.into_iter().enumerate().zip(loaded) {
        let listen = SocketAddr::new(addr.ip(), port);
        let (st, bound_tx) = (state.clone(), bound_tx.clone());
        let cpu = cpus[e];
        let failed = bound_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("keel-{e}"))
            .spawn(move || {
                pin_to(cpu);
                let main = executor_main(e, listen, st, inboxes, inbox, bound_tx, mine);
                if let Err(err) = executor::block_on(main) {
                    let _ = failed.send(Err(RuntimeError::Executor(e, err.to_string())));
                }
            })
            .map_err(|err| RuntimeError::Executor(e, err.to_string()))?;
        handles.push(handle);
        match bound_rx.recv() {
            Ok(Ok(a)) => port = a.port(),
            Ok(Err(err)) => {
                state.shutdown.store(true, Ordering::SeqCst);
                return Err(err);
            }
            Err(_) => return Err(RuntimeError::Executor(e, "exited during start".into())),
        }
    }
    state.port.store(port as u64, Ordering::SeqCst);
    tracing::info!(
        "keel {} ready on {}:{} with {shards} shards on {executors} cores",
        env!("CARGO_PKG_VERSION"),
        addr.ip(),
        port
    );
    if let Some(boot) = cluster {
        if let Err(e) = crate::cluster::driver::start(boot, state.clone()) {
            state.shutdown.store(true, Ordering::SeqCst);
            return Err(RuntimeError::Cluster(e));
        }
    }
    sd_notify("READY=1");
    while !SIGNALLED.load(Ordering::SeqCst) && !state.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("shutting down");
    sd_notify("STOPPING=1");
    // New connections are refused from now on (the executors' pending
    // accepts fail), whatever the executors' teardown takes.
    shut_listeners();
    state.shutdown.store(true, Ordering::SeqCst);
    // Executors stop accepting and finish their turn; connections still open
    // are cut. Joining is bounded: a connection stuck in a pending I/O must
    // not keep the process alive after SIGTERM.
    let (done_tx, done_rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        for h in handles {
            let _ = h.join();
        }
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(Duration::from_secs(3)).is_err() {
        tracing::warn!("executors did not stop within 3 s; exiting anyway");
    }
    Ok(())
}

/// The HTTP listener of executor `me`: executor 0 picks the port (the
/// configured one, else the client port + 1000, else a free one), the
/// others share it. None when HTTP is off (`--http-port 0`).
fn bind_http(
    me: usize,
    client: SocketAddr,
    state: &ServerState,
) -> Result<Option<TcpListener>, RuntimeError> {
    let configured = state.config().http_port;
    if configured == Some(0) {
        return Ok(None);
    }
    let want = if me > 0 {
        state.http_port.load(Ordering::SeqCst) as u16
    } else {
        configured.unwrap_or_else(|| match client.port() {
            0 => 0,
            p => p.checked_add(1000).unwrap_or(0),
        })
    };
    let at = SocketAddr::new(client.ip(), want);
    let l = match bind_client(at).map(|(l, _)| l) {
        Ok(l) => l,
        Err(e) if me == 0 && configured.is_none() && want != 0 => {
            tracing::warn!("http port {want} unavailable ({e}); using a free one");
            let any = SocketAddr::new(client.ip(), 0);
            bind_client(any)
                .map(|(l, _)| l)
                .map_err(|e| RuntimeError::Listen(any, format!("http: {e}")))?
        }
        Err(e) => return Err(RuntimeError::Listen(at, format!("http: {e}"))),
    };
    if me == 0 {
        let port = l.local_addr().map(|a| a.port()).unwrap_or(want);
        state.http_port.store(port as u64, Ordering::SeqCst);
    }
    Ok(Some(l))
}

/// Keeps executor `me`'s listener registered for [`shut_listeners`] while it
/// lives.
struct ShutOnSignal(usize);

impl ShutOnSignal {
    fn register(me: usize, fd: i32) -> Option<ShutOnSignal> {
        let slot = CLIENT_FDS.get(me)?;
        slot.store(fd, Ordering::SeqCst);
        Some(ShutOnSignal(me))
    }
}

impl Drop for ShutOnSignal {
    fn drop(&mut self) {
        if let Some(slot) = CLIENT_FDS.get(self.0) {
            slot.store(-1, Ordering::SeqCst);
        }
    }
}

/// An executor's client listener: SO_REUSEPORT (one per executor, the
/// kernel spreads connections), and its fd for [`shut_listeners`].
fn bind_client(addr: SocketAddr) -> std::io::Result<(TcpListener, i32)> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::IntoRawFd;
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    let fd = s.into_raw_fd();
    Ok((TcpListener::from_fd(fd), fd))
}

/// Waits (up to 3 s) until `addr` can be bound without SO_REUSEPORT — no
/// socket of another process holds it — and returns its port (the one the
/// kernel picked, for port 0).
fn wait_for_port(addr: SocketAddr) -> Result<u16, RuntimeError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match std::net::TcpListener::bind(addr) {
            // Closed at once (a plain socket, not io_uring's): the executors
            // bind the port next.
            Ok(l) => {
                return l
                    .local_addr()
                    .map(|a| a.port())
                    .map_err(|e| RuntimeError::Listen(addr, e.to_string()))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(RuntimeError::Listen(addr, e.to_string())),
        }
    }
}

/// Gives every shard of this executor its replication state, a listener
/// for backups (port `peer-port + shard`) and a follower task (idle unless
/// REPLICAOF names a primary).
fn start_replication(
    local: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    router: &Rc<Router>,
    addr: SocketAddr,
) -> Result<(), RuntimeError> {
    let config = state.config();
    let base = match config.peer_port {
        0 if config.port != 0 => config.port.checked_add(10000).unwrap_or(0),
        p => p,
    };
    for id in local.ids() {
        let i = local.local_index(id);
        let seq = local.shard(id).seq();
        let history = local
            .disks
            .shards
            .borrow()
            .get(i)
            .map_or(0, |d| d.manifest.history);
        // A backup's shard must not expire or evict on its own, from the
        // first instant (its seq must stay its primary's).
        if state.repl.is_following() || state.repl.held() {
            local.shard(id).set_follower(true);
        }
        let r =
            crate::repl::shard::ShardRepl::new(id, history, seq, config.repl_backlog_size as usize);
        if history == 0 && !state.repl.is_following() {
            // A primary's first id: on disk at once, so a restart keeps it.
            crate::persist::disk::store_history(local, i, r.history);
        } else if let Some(d) = local.disks.shards.borrow_mut().get_mut(i) {
            d.manifest.history = r.history;
        }
        local.repl.borrow_mut().push(r);
        let port = if base == 0 {
            0
        } else {
            base.checked_add(id as u16).unwrap_or(0)
        };
        let peer = SocketAddr::new(addr.ip(), port);
        // Without SO_REUSEPORT: a replication port shared with another
        // process would hand some backups' connections to the wrong node.
        let listener = match TcpListener::bind_exclusive(peer) {
            Ok(l) => l,
            // The implicit port (client + 10000) may be taken: any free port
            // will do, backups ask for it (REPLCONF PEER).
            Err(e) if config.peer_port == 0 && port != 0 => {
                tracing::warn!(
                    shard = id,
                    "replication port {port} unavailable ({e}); using a free one"
                );
                let any = SocketAddr::new(addr.ip(), 0);
                TcpListener::bind_exclusive(any)
                    .map_err(|e| RuntimeError::Listen(any, format!("replication port: {e}")))?
            }
            Err(e) => return Err(RuntimeError::Listen(peer, format!("replication port: {e}"))),
        };
        let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        state.repl.set_peer_port(id, bound);
        spawn(crate::repl::primary::listen(
            local.clone(),
            state.clone(),
            id,
            listener,
        ));
        spawn(crate::repl::backup::follow(
            local.clone(),
            state.clone(),
            router.clone(),
            id,
        ));
    }
    Ok(())
}

async fn executor_main(
    me: usize,
    addr: SocketAddr,
    state: Arc<ServerState>,
    inboxes: Vec<mesh::Sender<Msg>>,
    mut inbox: mesh::Receiver<Msg>,
    bound: std_mpsc::Sender<Result<SocketAddr, RuntimeError>>,
    mine: Vec<(keel_shards::Shard, crate::persist::disk::ShardDisk)>,
) {
    let executors = inboxes.len();
    let (shards, disks): (Vec<_>, Vec<_>) = mine.into_iter().unzip();
    let local = Rc::new(LocalShards::with_shards(me, executors, shards));
    let _ = local.notify_hub.set(state.keyspace_hub.clone());
    let _ = local.tracking.set(state.tracking.clone());
    spawn(crate::exec::notify::run(local.clone()));
    *local.disks.shards.borrow_mut() = disks;
    let disk_tasks = crate::persist::disk::start(local.clone(), state.clone()).await;
    let (limit, policy) = state.shard_memory_limit();
    for id in local.ids() {
        local.shard(id).set_memory_limit(limit, policy);
    }
    let router = Rc::new(Router::new(
        state.shards,
        me,
        inboxes,
        local.clone(),
        state.commits.clone(),
    ));
    crate::script::engine::install(router.clone(), state.clone());
    if let Err(e) = start_replication(&local, &state, &router, addr) {
        let _ = bound.send(Err(e));
        return;
    }

    // Work from other executors, a batch per wake: each message handled in
    // turn, never awaiting inside the loop (see exec/local.rs).
    let inbox_local = local.clone();
    *local.inbox.borrow_mut() = Some(inbox.drain_handle());
    spawn(async move {
        let mut batch = Vec::new();
        loop {
            inbox.recv_batch(&mut batch).await;
            for msg in batch.drain(..) {
                inbox_local.handle(msg);
            }
        }
    });

    // Pub/sub across nodes: a backup relays what its primary publishes.
    if me == 0 && state.cluster.is_active() {
        spawn(crate::cluster::pubsub_relay::run(
            state.clone(),
            router.clone(),
        ));
    }

    // The shards' facts for the cluster driver (a thread off the cores), at
    // the driver's own tick: more often would only wake the core for
    // nothing (a backup's seqs are published as it applies records).
    if state.cluster.is_active() {
        let (facts_local, facts_state) = (local.clone(), state.clone());
        spawn(async move {
            let mut seen = 0;
            while !facts_state.shutdown.load(Ordering::Relaxed) {
                crate::cluster::publish_facts(&facts_local, &facts_state);
                crate::cluster::deliver_notices(&facts_local, &facts_state, &mut seen);
                sleep(Duration::from_millis(10)).await;
            }
        });
    }

    // The database's ACL set, loaded whenever the data changes it (on the
    // executor that owns it).
    if router.executor_of(router.shard_of(crate::security::acl::shared::ACL_KEY)) == me {
        spawn(crate::security::acl::shared::watch(
            router.clone(),
            state.clone(),
        ));
    }

    // Active expiry, ten times a second, as Redis's default hz.
    let expiry_local = local.clone();
    spawn(async move {
        loop {
            sleep(Duration::from_millis(100)).await;
            let now = now_ms();
            // The latency monitor's "expire-cycle" event: one tick's time.
            let started = std::time::Instant::now();
            for id in expiry_local.ids() {
                if !expiry_local.is_free(&[id]) {
                    continue;
                }
                // Keep going while a quarter of what was sampled had expired,
                // bounded so one tick never stalls the shard for long.
                for _ in 0..16 {
                    let (walked, expired) = expiry_local.shard(id).active_expire(now, 200);
                    if walked == 0 || expired * 4 < walked {
                        break;
                    }
                }
                expiry_local.kick_log(id);
            }
            let ms = started.elapsed().as_millis() as u64;
            crate::server::introspect::latency::add_if_needed("expire-cycle", ms);
            // INFO's instantaneous figures: this core's counters now.
            let mut stats = expiry_local.stats.borrow_mut();
            let (c, i, o) = (
                stats.total_commands,
                stats.net_input_bytes,
                stats.net_output_bytes,
            );
            stats.rates.sample(now, c, i, o);
        }
    });

    let (listener, fd) = match bind_client(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = bound.send(Err(RuntimeError::Listen(addr, e.to_string())));
            return;
        }
    };
    let local_addr = listener.local_addr().unwrap_or(addr);
    let _registered = ShutOnSignal::register(me, fd);
    match bind_http(me, local_addr, &state) {
        Ok(Some(l)) => {
            let (router, state) = (router.clone(), state.clone());
            spawn(async move {
                loop {
                    match l.accept().await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            let (router, state) = (router.clone(), state.clone());
                            spawn(crate::http::serve(s, router, state));
                        }
                        Err(e) => {
                            tracing::warn!("http accept failed: {e}");
                            sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            });
        }
        Ok(None) => {}
        Err(e) => {
            let _ = bound.send(Err(e));
            return;
        }
    }
    let _ = bound.send(Ok(local_addr));

    let stop_state = state.clone();
    let stop = async move {
        while !stop_state.shutdown.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(50)).await;
        }
    };
    let tls_listener = match (&state.tls, state.config().tls.port) {
        (Some(_), port) if port != 0 => {
            let tls_addr = SocketAddr::new(addr.ip(), port);
            match bind_client(tls_addr) {
                Ok((l, fd)) => Some((l, ShutOnSignal::register(MAX_EXECUTORS + me, fd))),
                Err(e) => {
                    tracing::warn!("cannot listen for TLS clients on {tls_addr}: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let accept = accept_clients(&listener, false, &router, &state, &local);
    let accept_tls = async {
        match &tls_listener {
            Some((l, _)) => accept_clients(l, true, &router, &state, &local).await,
            None => futures::future::pending().await,
        }
    };
    let accept = futures::future::select(Box::pin(accept), Box::pin(accept_tls));
    futures::pin_mut!(stop);
    futures::pin_mut!(accept);
    futures::future::select(stop, accept).await;
    // Let the logs write, fsync and close what they hold.
    for d in local.disks.shards.borrow_mut().iter_mut() {
        d.kick();
    }
    for t in disk_tasks {
        t.await;
    }
}

/// Takes client connections from `listener` until keel stops; with `tls`,
/// each one's handshake runs first (on this core, bounded in time) and a
/// client that fails it is dropped with a line at info level: a port
/// scanner or a client without the right certificate is no server error.
async fn accept_clients(
    listener: &TcpListener,
    tls: bool,
    router: &Rc<Router>,
    state: &Arc<ServerState>,
    local: &Rc<LocalShards>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(_) if state.shutdown.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst) => {
                // The socket was shut down: keel is stopping.
                sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let connected = state.connected_clients.fetch_add(1, Ordering::SeqCst) + 1;
        state.total_connections.fetch_add(1, Ordering::Relaxed);
        let config = state.config();
        if connected as u64 > config.maxclients {
            state.connected_clients.fetch_sub(1, Ordering::SeqCst);
            state.rejected_connections.fetch_add(1, Ordering::Relaxed);
            if !tls {
                let mut s = stream;
                let _ = futures::AsyncWriteExt::write_all(
                    &mut s,
                    b"-ERR max number of clients reached\r\n",
                )
                .await;
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let info = Rc::new(std::cell::RefCell::new(ClientInfo::accepted(
            state, &stream,
        )));
        let conn = Conn::new(
            router.clone(),
            state.clone(),
            info.clone(),
            state.acl.auto_login(),
        );
        let acceptor = if tls {
            state.tls.as_ref().and_then(|t| t.acceptor())
        } else {
            None
        };
        let (state, local) = (state.clone(), local.clone());
        spawn(async move {
            match acceptor {
                None => {
                    local.clients.borrow_mut().push(info.clone());
                    conn::serve(stream, conn).await;
                    local.clients.borrow_mut().retain(|c| !Rc::ptr_eq(c, &info));
                }
                Some(a) => {
                    let peer = info.borrow().addr.clone();
                    let handshake = a.accept(crate::security::stream::Queued(stream));
                    match timeout(crate::security::tls::HANDSHAKE_TIMEOUT, handshake).await {
                        Some(Ok(s)) => {
                            local.clients.borrow_mut().push(info.clone());
                            conn::serve(s, conn).await;
                            local.clients.borrow_mut().retain(|c| !Rc::ptr_eq(c, &info));
                        }
                        Some(Err(e)) => tracing::info!("TLS handshake with {peer} failed: {e}"),
                        None => tracing::info!("TLS handshake with {peer} timed out"),
                    }
                }
            }
            state.connected_clients.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests;
