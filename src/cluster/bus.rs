//! The cluster bus's sockets: one outbound link to every other member and
//! whatever inbound links the members open to this one.
//!
//! # Why plain threads, off the data cores
//! The bus carries a few small messages per member every 100 ms; what
//! matters is that they are never late because a core is busy with client
//! work (a late ping is a false suspicion), and that a member that does not
//! answer costs nothing but its own link. So each link is a blocking thread
//! of its own, outside the per-core executors: a stalled peer blocks only
//! its writer thread, whose bounded queue then drops (pings are resent
//! every interval; every exchange of the control plane is retried), and a
//! connect to a partitioned peer times out on that thread alone.
//!
//! # Links
//! - Outbound, per peer: connect (bounded), send a [`Hello`], then frames
//!   numbered from 2. On any error: close, back off (50 ms doubling to
//!   250 ms), reconnect; what was queued meanwhile is dropped as stale.
//! - Inbound: the first frame must be a hello naming this database, a
//!   member of this node's list other than this node, and the right
//!   password (`requirepass`, which peers present as `masterauth`). Then
//!   each frame must carry the next number. Anything else is logged and
//!   closes the link; nothing of it reaches the control plane.
//! - The links follow the member list: the driver adds a writer for a new
//!   member and drops the writer of a removed one ([`Bus::set_peers`]); a
//!   list for a node that has no link (one waiting to be added, one just
//!   removed) goes on a connection of its own ([`Bus::push`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::members::{Ident, MemberList};
use super::topology::Topology;
use super::wire::{self, Carried, Hello, WireError};
use crate::control::{Message, NodeId};
use crate::security::stream::{BlockingPeer, BusTlsSource};

/// Messages queued per outbound link before new ones are dropped.
const QUEUE: usize = 64;
/// Inbound messages queued for the driver before new ones are dropped.
const INBOX: usize = 1024;
/// Most inbound links open at once.
const MAX_INBOUND: usize = 64;

/// Counters the INFO section shows.
#[derive(Default)]
pub struct BusStats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Messages dropped because a link's queue was full.
    pub dropped: AtomicU64,
    /// Inbound links refused (bad hello, bad frame, replay, unknown member).
    pub refused: AtomicU64,
    pub connects: AtomicU64,
    inbound: AtomicUsize,
}

/// What a link's writer sends: a frame's content and the sender's list.
type Outgoing = (Ident, Carried);

/// A frame from a peer, by the name its hello gave.
pub struct Inbound {
    pub from: String,
    pub ident: Ident,
    pub carried: Carried,
}

/// One outbound link.
struct Link {
    name: String,
    addr: (String, u16),
    tx: SyncSender<Outgoing>,
}

/// What the driver holds: a queue per peer and the inbox.
pub struct Bus {
    out: BTreeMap<NodeId, Link>,
    pub inbox: Receiver<Inbound>,
    pub stats: Arc<BusStats>,
    creds: Credentials,
    tls: BusTlsSource,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
}

/// The member list as the links check it: shared with the readers.
#[derive(Default)]
struct Roster {
    ident: Ident,
    names: Vec<String>,
    /// Removed members: their links are taken so that one calling on an
    /// old list can be told (the driver answers with the list).
    departed: Vec<String>,
}

/// Who may talk to us, and what we present.
#[derive(Clone)]
struct Credentials {
    database: String,
    me: String,
    /// What peers must present (`requirepass`).
    expect: Option<String>,
    /// What we present (`masterauth`).
    present: String,
    /// Our member list now.
    roster: Arc<Mutex<Roster>>,
}

impl Credentials {
    fn ident(&self) -> Ident {
        self.roster.lock().map(|r| r.ident).unwrap_or_default()
    }
}

impl Bus {
    /// Sends `m` to `to`, from a node holding the list `ident`, if its link
    /// has room; never blocks.
    pub fn send(&self, to: NodeId, ident: Ident, m: Message) {
        if let Some(l) = self.out.get(&to) {
            self.queue(&l.tx, (ident, Carried::Control(m)));
        }
    }

    fn queue(&self, q: &SyncSender<Outgoing>, m: Outgoing) {
        match q.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Makes the links follow `topo`: a writer for each member but this
    /// node, none for a member that left (its thread ends with its queue).
    pub fn set_peers(&mut self, topo: &Topology) {
        if let Ok(mut r) = self.creds.roster.lock() {
            r.ident = topo.list.ident();
            r.names = topo.peers.iter().map(|p| p.name.clone()).collect();
        }
        self.out.retain(|id, l| {
            topo.peer(*id)
                .is_some_and(|p| p.id != topo.me && p.name == l.name && p.bus == l.addr)
        });
        for p in &topo.peers {
            if p.id == topo.me || self.out.contains_key(&p.id) {
                continue;
            }
            match self.writer(&p.name, &p.bus) {
                Ok(tx) => {
                    self.out.insert(
                        p.id,
                        Link {
                            name: p.name.clone(),
                            addr: p.bus.clone(),
                            tx,
                        },
                    );
                }
                Err(e) => tracing::warn!("bus: cannot start a link to {}: {e}", p.name),
            }
        }
    }

    /// Removed members whose links are still taken (see [`Roster`]).
    pub fn set_departed(&self, names: Vec<String>) {
        if let Ok(mut r) = self.creds.roster.lock() {
            r.departed = names;
        }
    }

    /// Sends `list` to the node `name` at `addr`: on its link if it has
    /// one, else on a connection of its own that closes once sent.
    pub fn push(&self, name: &str, addr: &(String, u16), ident: Ident, list: &MemberList) {
        let m = (ident, Carried::Members(list.clone()));
        if let Some(l) = self.out.values().find(|l| l.name == name) {
            self.queue(&l.tx, m);
            return;
        }
        let (tx, rx) = sync_channel(1);
        let _ = tx.try_send(m);
        drop(tx);
        let (name, addr, creds, tls, stats, shutdown) = (
            name.to_string(),
            addr.clone(),
            self.creds.clone(),
            self.tls.clone(),
            self.stats.clone(),
            self.shutdown.clone(),
        );
        let _ = std::thread::Builder::new()
            .name(format!("keel-bus-push-{name}"))
            .spawn(move || writer_loop(name, addr, creds, tls, rx, stats, shutdown));
    }

    fn writer(&self, name: &str, addr: &(String, u16)) -> std::io::Result<SyncSender<Outgoing>> {
        let (tx, rx) = sync_channel(QUEUE);
        let (addr, creds, stats, shutdown, tls) = (
            addr.clone(),
            self.creds.clone(),
            self.stats.clone(),
            self.shutdown.clone(),
            self.tls.clone(),
        );
        let peer = name.to_string();
        std::thread::Builder::new()
            .name(format!("keel-bus-{name}"))
            .spawn(move || writer_loop(peer, addr, creds, tls, rx, stats, shutdown))?;
        Ok(tx)
    }
}

fn resolve(addr: &(String, u16)) -> Option<SocketAddr> {
    (addr.0.as_str(), addr.1).to_socket_addrs().ok()?.next()
}

/// Starts the listener and a writer per peer. `bind` is the bus address
/// this node listens on; `me` its name; `list` the members it knows and
/// `topo` its place among them (None for a node waiting to be added: it
/// listens, and links come with the list that adds it).
#[allow(clippy::too_many_arguments)]
pub fn start(
    me: &str,
    topo: Option<&Topology>,
    list: &MemberList,
    bind: SocketAddr,
    database: &str,
    requirepass: Option<String>,
    masterauth: Option<String>,
    tls: BusTlsSource,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<Bus> {
    let listener = TcpListener::bind(bind)?;
    let stats = Arc::new(BusStats::default());
    let creds = Credentials {
        database: database.to_string(),
        me: me.to_string(),
        expect: requirepass,
        present: masterauth.unwrap_or_default(),
        roster: Arc::new(Mutex::new(Roster {
            ident: list.ident(),
            names: list.members.iter().map(|e| e.name.clone()).collect(),
            departed: Vec::new(),
        })),
    };
    let (in_tx, inbox) = sync_channel(INBOX);
    {
        let (creds, stats, shutdown, tls) =
            (creds.clone(), stats.clone(), shutdown.clone(), tls.clone());
        std::thread::Builder::new()
            .name("keel-bus-accept".into())
            .spawn(move || accept_loop(listener, creds, tls, in_tx, stats, shutdown))?;
    }
    let mut bus = Bus {
        out: BTreeMap::new(),
        inbox,
        stats,
        creds,
        tls,
        shutdown,
    };
    if let Some(t) = topo {
        bus.set_peers(t);
    }
    Ok(bus)
}

fn writer_loop(
    peer: String,
    addr: (String, u16),
    creds: Credentials,
    tls: BusTlsSource,
    rx: Receiver<Outgoing>,
    stats: Arc<BusStats>,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut logged = false;
    while !shutdown.load(Ordering::Relaxed) {
        let conn = resolve(&addr)
            .ok_or_else(|| std::io::Error::other("cannot resolve"))
            .and_then(|a| {
                let s = TcpStream::connect_timeout(&a, Duration::from_millis(500))?;
                let _ = s.set_nodelay(true);
                // A peer that stops reading (or never finishes a TLS
                // handshake) must not hold this thread for long.
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                BlockingPeer::connect(s, tls().as_ref(), a)
            });
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                if !logged {
                    tracing::debug!("bus: cannot reach {peer} at {}:{}: {e}", addr.0, addr.1);
                    logged = true;
                }
                // What queued while the peer was away is stale now; a
                // link whose member left ends here.
                loop {
                    match rx.try_recv() {
                        Ok(_) => continue,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
                std::thread::sleep(backoff);
                // Capped low: a member that comes back must hear the
                // current term within a few pings, before it does harm.
                backoff = (backoff * 2).min(Duration::from_millis(250));
                continue;
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        logged = false;
        backoff = Duration::from_millis(50);
        let hello = wire::encode_hello(&Hello {
            database: creds.database.clone(),
            node: creds.me.clone(),
            auth: creds.present.clone(),
            ident: creds.ident(),
        });
        if s.write_all(&hello).and_then(|_| s.flush()).is_err() {
            continue;
        }
        let mut counter = 1u64;
        loop {
            if shutdown.load(Ordering::Relaxed) {
                return;
            }
            let (ident, m) = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            counter += 1;
            let mut buf = wire::encode_message(counter, &ident, &m);
            // Send what else is queued in the same write.
            while let Ok((ident, m)) = rx.try_recv() {
                counter += 1;
                buf.extend_from_slice(&wire::encode_message(counter, &ident, &m));
            }
            if let Err(e) = s.write_all(&buf).and_then(|_| s.flush()) {
                tracing::debug!("bus: link to {peer} lost: {e}");
                break;
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    creds: Credentials,
    tls: BusTlsSource,
    inbox: SyncSender<Inbound>,
    stats: Arc<BusStats>,
    shutdown: Arc<std::sync::atomic::AtomicBool>,
) {
    for conn in listener.incoming() {
        if shutdown.load(Ordering::Relaxed) {
            return;
        }
        let Ok(s) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if stats.inbound.load(Ordering::Relaxed) >= MAX_INBOUND {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.inbound.fetch_add(1, Ordering::Relaxed);
        let (creds, inbox, stats2, tls) =
            (creds.clone(), inbox.clone(), stats.clone(), tls.clone());
        let spawned = std::thread::Builder::new()
            .name("keel-bus-in".into())
            .spawn(move || {
                let who = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                let linked = BlockingPeer::accept(s, tls().as_ref())
                    .map_err(|e| InboundError::Refused(format!("TLS: {e}")));
                if let Err(e) = linked.and_then(|s| read_loop(s, &creds, &inbox, &stats2)) {
                    stats2.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("bus: refused a link from {who}: {e}");
                }
                stats2.inbound.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            stats.inbound.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum InboundError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0}")]
    Refused(String),
}

/// Reads one frame's body; Ok(None) at a clean end of the stream.
fn next_body(s: &mut BlockingPeer, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, InboundError> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some((body, used)) = wire::split_frame(buf)? {
            let body = body.to_vec();
            buf.drain(..used);
            return Ok(Some(body));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A silent or broken link just ends; the detector notices.
            Err(_) => return Ok(None),
        }
    }
}

fn read_loop(
    mut s: BlockingPeer,
    creds: &Credentials,
    inbox: &SyncSender<Inbound>,
    stats: &BusStats,
) -> Result<(), InboundError> {
    let _ = s.tcp().set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let Some(body) = next_body(&mut s, &mut buf)? else {
        return Ok(());
    };
    let hello = wire::decode_hello(&body)?;
    if hello.database != creds.database {
        return Err(InboundError::Refused(format!(
            "database {:?} is not {:?}",
            hello.database, creds.database
        )));
    }
    if let Some(pw) = &creds.expect {
        if pw != &hello.auth {
            return Err(InboundError::Refused(format!(
                "node {:?} presented a wrong password (set masterauth to requirepass)",
                hello.node
            )));
        }
    }
    if hello.node == creds.me {
        return Err(InboundError::Refused(
            "a link from this node's own id".into(),
        ));
    }
    let (mine, known) = creds
        .roster
        .lock()
        .map(|r| {
            let known = r.names.contains(&hello.node) || r.departed.contains(&hello.node);
            (r.ident, known)
        })
        .unwrap_or_default();
    // Two lists still from the configuration must be the same list: each
    // numbers members by its own sorted names. (Lists changed online carry
    // their numbers with them, and the newer one is sent to the other.)
    if hello.ident.version == 0 && mine.version == 0 && hello.ident.digest != mine.digest {
        return Err(InboundError::Refused(format!(
            "node {:?} lists other members than this node's [[nodes]]: every node needs the same [[nodes]] ids and arbiters",
            hello.node
        )));
    }
    // A node not in our list may still bring a newer one (we may be the
    // last to hear of its addition); anything else from it is dropped by
    // the driver, which knows the list of the moment.
    if !known && !hello.ident.newer_than(&mine) {
        return Err(InboundError::Refused(format!(
            "node {:?} is not a member of this database",
            hello.node
        )));
    }
    // Pings come every 100 ms: a link silent for long is dead.
    let _ = s.tcp().set_read_timeout(Some(Duration::from_secs(30)));
    let mut counter = 1u64;
    while let Some(body) = next_body(&mut s, &mut buf)? {
        counter += 1;
        let (ident, carried) = wire::decode_message(&body, counter)?;
        stats.received.fetch_add(1, Ordering::Relaxed);
        let m = Inbound {
            from: hello.node.clone(),
            ident,
            carried,
        };
        if inbox.try_send(m).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}
