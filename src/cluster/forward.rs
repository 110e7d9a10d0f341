//! Forwarding to the primary: what a backup does with a command that must
//! run there (a write, a transaction, a read its client's own write has not
//! reached yet).
//!
//! # Links
//! One pipelined link per core and protocol (RESP2 / RESP3) to the primary's
//! client port, shared by every client connection of that core — so no
//! connection ever changes cores. A request is a few commands sent back to
//! back (`SELECT` when the link's database differs, the command or a whole
//! `MULTI … EXEC`, then `REPLCONF SEQS` after writes); the replies come back
//! in order and the command's reply is relayed byte for byte
//! ([`crate::resp::frame`]), so the client cannot tell it travelled. The
//! `REPLCONF SEQS` answer — every shard's seq on the primary just after the
//! write — is what the client's connection remembers for read-your-writes.
//!
//! # Failures
//! A link that breaks, or whose primary is no longer the one this node
//! follows (a failover), answers every request still in flight with a
//! `-TRYAGAIN` error saying the command may or may not have run: never a
//! silent drop, never a retry that could apply a write twice. The next
//! request opens a link to whoever is primary then.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::security::stream::PeerStream;
use futures::channel::{mpsc, oneshot};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

use crate::resp::frame::reply_len;
use crate::server::state::ServerState;

/// Requests queued per link before new ones are refused.
const QUEUE: usize = 4096;

/// A relayed reply, and the primary's shard seqs after it (writes only).
pub struct Relayed {
    pub bytes: Vec<u8>,
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    #[error("TRYAGAIN the primary could not be reached: {0}")]
    Unreachable(String),
    #[error("TRYAGAIN the link to the primary broke before it answered: the command may or may not have run")]
    Lost,
    #[error("TRYAGAIN too many commands are waiting for the primary")]
    Busy,
}

struct Request {
    db: usize,
    cmds: Vec<Vec<Vec<u8>>>,
    seqs: Seqs,
    reply: oneshot::Sender<Result<Relayed, ForwardError>>,
}

/// Who is at the other end of a link, which decides when it is stale.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    /// The primary this node follows: stale once it follows another.
    Primary,
    /// A ready replica serving reads for this node (nearest first): stale
    /// once the cluster no longer lists it as ready.
    Replica,
}

struct Link {
    target: (String, u16),
    peer: Peer,
    resp3: bool,
    tx: mpsc::Sender<Request>,
    dead: Rc<Cell<bool>>,
}

thread_local! {
    /// This core's links (a thread per core: one set per executor).
    static LINKS: RefCell<Vec<Link>> = const { RefCell::new(Vec::new()) };
}

/// Whether a request asks for the shard seqs after it (a write), and of
/// which shards (empty: all).
pub type Seqs = Option<Vec<usize>>;

/// Answers to a request: the relayed reply, or why there is none.
pub type Answer = oneshot::Receiver<Result<Relayed, ForwardError>>;

/// Starts a link task to `target` with room for `room` queued requests.
/// `patient`: no idle limit (a blocking command waits as long as asked).
fn spawn_link(
    state: &Arc<ServerState>,
    target: (String, u16),
    peer: Peer,
    resp3: bool,
    room: usize,
    patient: bool,
) -> (mpsc::Sender<Request>, Rc<Cell<bool>>) {
    let (tx, rx) = mpsc::channel(room);
    let dead = Rc::new(Cell::new(false));
    let link = run(
        state.clone(),
        target,
        peer,
        resp3,
        rx,
        dead.clone(),
        patient,
    );
    crate::runtime::spawn(link);
    (tx, dead)
}

/// Queues `cmds` for the node at `target` (database `db`) on this core's
/// shared link and returns at once; with `seqs`, the answer also carries
/// that node's shard seqs right after them. Requests submitted in order
/// run there in that order (one connection, pipelined), so a client may
/// have several in flight.
pub fn submit(
    state: &Arc<ServerState>,
    target: (String, u16),
    peer: Peer,
    resp3: bool,
    db: usize,
    cmds: Vec<Vec<Vec<u8>>>,
    seqs: Seqs,
) -> Answer {
    let tx = LINKS.with(|links| {
        let mut links = links.borrow_mut();
        links.retain(|l| !l.dead.get());
        if let Some(l) = links
            .iter()
            .find(|l| l.target == target && l.resp3 == resp3 && l.peer == peer)
        {
            return l.tx.clone();
        }
        let (tx, dead) = spawn_link(state, target.clone(), peer, resp3, QUEUE, false);
        links.push(Link {
            target,
            peer,
            resp3,
            tx: tx.clone(),
            dead,
        });
        tx
    });
    send(tx, db, cmds, seqs)
}

/// Sends `cmds` on a connection of their own, closed afterwards: for a
/// blocking command, which would hold up every request behind it on the
/// shared link. Dropping the answer (the client left) closes that
/// connection, and the primary drops the blocked command with it — so a
/// departed client takes nothing pushed later.
pub fn submit_alone(
    state: &Arc<ServerState>,
    target: (String, u16),
    resp3: bool,
    db: usize,
    cmds: Vec<Vec<Vec<u8>>>,
    seqs: Seqs,
) -> Answer {
    let (tx, _) = spawn_link(state, target, Peer::Primary, resp3, 1, true);
    send(tx, db, cmds, seqs)
}

/// The outcome of an answer (a link that vanished lost the request).
pub async fn settled(answer: Answer) -> Result<Relayed, ForwardError> {
    answer.await.unwrap_or(Err(ForwardError::Lost))
}

/// A link of one client's own, for as long as it WATCHes: the primary keeps
/// WATCH state per connection, so the WATCH, the MULTI … EXEC after it and
/// nothing else must share a connection there. Dropping it closes the link
/// (and the primary forgets the watches).
pub struct Pinned {
    tx: mpsc::Sender<Request>,
    pub target: (String, u16),
}

impl Pinned {
    pub fn open(state: &Arc<ServerState>, target: (String, u16), resp3: bool) -> Pinned {
        let (tx, _) = spawn_link(state, target.clone(), Peer::Primary, resp3, 16, false);
        Pinned { tx, target }
    }

    pub async fn send(
        &self,
        db: usize,
        cmds: Vec<Vec<Vec<u8>>>,
        seqs: Seqs,
    ) -> Result<Relayed, ForwardError> {
        settled(send(self.tx.clone(), db, cmds, seqs)).await
    }
}

fn send(mut tx: mpsc::Sender<Request>, db: usize, cmds: Vec<Vec<Vec<u8>>>, seqs: Seqs) -> Answer {
    let (reply, answer) = oneshot::channel();
    let req = Request {
        db,
        cmds,
        seqs,
        reply,
    };
    if let Err(e) = tx.try_send(req) {
        let _ = e.into_inner().reply.send(Err(ForwardError::Busy));
    }
    answer
}

fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, argv: &[A]) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", argv.len());
    for a in argv {
        let a = a.as_ref();
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `*N :s0 :s1 ...` → the seqs.
fn parse_seqs(frame: &[u8]) -> Vec<u64> {
    frame
        .split(|b| *b == b'\n')
        .skip(1)
        .filter_map(|l| l.strip_prefix(b":"))
        .filter_map(|l| std::str::from_utf8(l).ok()?.trim().parse().ok())
        .collect()
}

/// What a request waits for: its frames, and which to relay.
struct Pending {
    frames: usize,
    deliver: usize,
    seqs: bool,
    got: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Relayed, ForwardError>>,
}

async fn run(
    state: Arc<ServerState>,
    target: (String, u16),
    peer: Peer,
    resp3: bool,
    mut rx: mpsc::Receiver<Request>,
    dead: Rc<Cell<bool>>,
    patient: bool,
) {
    let pending: RefCell<VecDeque<Pending>> = RefCell::new(VecDeque::new());
    let r = session(&state, &target, peer, resp3, &mut rx, &pending, patient).await;
    dead.set(true);
    // Worth a line when something was lost or the link could not be made;
    // a link closed because its primary moved or the node stops is routine.
    let lost = !pending.borrow().is_empty();
    match &r {
        Err(e @ ForwardError::Unreachable(_)) => {
            tracing::info!("forwarding link to {}:{} failed: {e}", target.0, target.1)
        }
        Err(e) if lost => {
            tracing::info!("forwarding link to {}:{} closed: {e}", target.0, target.1)
        }
        _ => tracing::debug!("forwarding link to {}:{} closed", target.0, target.1),
    }
    let fail = r.err().unwrap_or(ForwardError::Lost);
    for p in pending.borrow_mut().drain(..) {
        let _ = p.reply.send(Err(ForwardError::Lost));
    }
    rx.close();
    while let Ok(req) = rx.try_recv() {
        let _ = req.reply.send(Err(fail.clone()));
    }
}

async fn session(
    state: &Arc<ServerState>,
    target: &(String, u16),
    peer: Peer,
    resp3: bool,
    rx: &mut mpsc::Receiver<Request>,
    pending: &RefCell<VecDeque<Pending>>,
    patient: bool,
) -> Result<(), ForwardError> {
    let addr = (target.0.as_str(), target.1)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ForwardError::Unreachable(format!("cannot resolve {}", target.0)))?;
    let mut c = PeerStream::connect(state, addr, Duration::from_secs(2))
        .await
        .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
    // Authenticate as a peer (masterauth) and speak the clients' protocol.
    let mut hello = Vec::new();
    let mut expect = 0;
    let auth = state.config().masterauth.clone();
    if let Some(pw) = &auth {
        encode(&mut hello, &[b"AUTH".as_slice(), pw.as_bytes()]);
        expect += 1;
    }
    if resp3 {
        encode(&mut hello, &[b"HELLO".as_slice(), b"3"]);
        expect += 1;
    }
    let mut buf = Vec::new();
    if expect > 0 {
        c.write_all(&hello)
            .await
            .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
        c.flush()
            .await
            .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
        let mut chunk = vec![0u8; 16 << 10];
        while expect > 0 {
            match reply_len(&buf) {
                Ok(Some(n)) => {
                    if buf[0] == b'-' {
                        let why = String::from_utf8_lossy(&buf[1..n]).trim().to_string();
                        return Err(ForwardError::Unreachable(why));
                    }
                    buf.drain(..n);
                    expect -= 1;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(ForwardError::Unreachable(e.to_string())),
            }
            let n = crate::runtime::timeout(Duration::from_secs(2), c.read(&mut chunk))
                .await
                .ok_or_else(|| ForwardError::Unreachable("no answer to AUTH/HELLO".into()))?
                .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
            if n == 0 {
                return Err(ForwardError::Unreachable(
                    "closed during the handshake".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let (mut rd, mut wr) = c.split();
    let writer = async {
        let mut db = 0usize;
        let mut out = Vec::new();
        while let Some(first) = rx.next().await {
            // Everything queued meanwhile goes out with one write.
            out.clear();
            let mut next = Some(first);
            while let Some(req) = next {
                let mut frames = 0;
                if req.db != db {
                    encode(
                        &mut out,
                        &[b"SELECT".as_slice(), req.db.to_string().as_bytes()],
                    );
                    db = req.db;
                    frames += 1;
                }
                for cmd in &req.cmds {
                    encode(&mut out, cmd);
                }
                frames += req.cmds.len();
                let deliver = frames - 1;
                if let Some(shards) = &req.seqs {
                    let mut ask = vec![b"REPLCONF".to_vec(), b"SEQS".to_vec()];
                    ask.extend(shards.iter().map(|s| s.to_string().into_bytes()));
                    encode(&mut out, &ask);
                    frames += 1;
                }
                pending.borrow_mut().push_back(Pending {
                    frames,
                    deliver,
                    seqs: req.seqs.is_some(),
                    got: Vec::with_capacity(frames),
                    reply: req.reply,
                });
                next = if out.len() < 256 << 10 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                return Err(ForwardError::Lost);
            }
        }
        // Every sender is gone: let the answers still due arrive first.
        while !pending.borrow().is_empty() {
            crate::runtime::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    };
    let reader = async {
        let mut chunk = vec![0u8; 64 << 10];
        let mut idle = 0u32;
        loop {
            loop {
                let n = match reply_len(&buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(_) => return Err(ForwardError::Lost),
                };
                let frame: Vec<u8> = buf.drain(..n).collect();
                let mut q = pending.borrow_mut();
                let Some(p) = q.front_mut() else {
                    return Err(ForwardError::Lost);
                };
                p.got.push(frame);
                if p.got.len() == p.frames {
                    let Some(mut p) = q.pop_front() else {
                        return Err(ForwardError::Lost);
                    };
                    let seqs = if p.seqs {
                        p.got.last().map(|f| parse_seqs(f)).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let bytes = std::mem::take(&mut p.got[p.deliver]);
                    let _ = p.reply.send(Ok(Relayed { bytes, seqs }));
                }
            }
            // Wake every 50 ms to notice a new primary; a link with work in
            // flight and nothing heard for repl-timeout is dead.
            match crate::runtime::timeout(Duration::from_millis(50), rd.read(&mut chunk)).await {
                Some(Ok(0)) | Some(Err(_)) => return Err(ForwardError::Lost),
                Some(Ok(n)) => {
                    idle = 0;
                    buf.extend_from_slice(&chunk[..n]);
                }
                None => {
                    let stale = match peer {
                        Peer::Primary => state.repl.master().as_ref() != Some(target),
                        Peer::Replica => !state.cluster.serves_reads(target),
                    };
                    if stale || state.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(ForwardError::Lost);
                    }
                    let abandoned = {
                        let q = pending.borrow();
                        !q.is_empty() && q.iter().all(|p| p.reply.is_canceled())
                    };
                    if patient && abandoned {
                        // Nobody waits for the answer (the client left).
                        return Err(ForwardError::Lost);
                    }
                    if patient || pending.borrow().is_empty() {
                        idle = 0;
                    } else {
                        idle += 1;
                        if u64::from(idle) * 50 > state.config().repl_timeout * 1000 {
                            return Err(ForwardError::Lost);
                        }
                    }
                }
            }
        }
    };
    futures::pin_mut!(writer);
    futures::pin_mut!(reader);
    match futures::future::select(writer, reader).await {
        futures::future::Either::Left((r, _)) | futures::future::Either::Right((r, _)) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_parse_from_an_integer_array() {
        assert_eq!(parse_seqs(b"*3\r\n:5\r\n:0\r\n:17\r\n"), vec![5, 0, 17]);
        assert_eq!(parse_seqs(b"*0\r\n"), Vec::<u64>::new());
    }
}
