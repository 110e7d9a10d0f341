//! A backup shard's side: find the primary's replication port for this
//! shard, present (history, term, seq), load a snapshot when the primary
//! sends one, then apply its records — exactly as it produced them, into
//! this shard's own journal too — and acknowledge them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::security::stream::PeerStream;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use keel_shards::record::{decode_frame, Frame};
use keel_shards::snapshot::Loader;
use keel_shards::{Shard, STORED_DBS};

use super::barrier::{Deposit, Ready};
use super::link::{encode_frame, FrameReader, LinkError, LinkStats};
use super::shard::new_history;
use super::wire::{Hello, Msg, VERSION};
use crate::exec::local::LocalShards;
use crate::exec::router::Router;
use crate::persist::replay;
use crate::server::state::{now_ms, ServerState};

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot reach the primary at {0}: {1}")]
    Connect(String, String),
    #[error("the primary refused: {0}")]
    Refused(String),
    #[error("the primary answered {0:?} to REPLCONF PEER")]
    Peer(String),
    #[error("shard count mismatch: the primary has {primary} shards, this node {mine}; every node of a database needs the same --shards")]
    Shards { primary: usize, mine: usize },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the primary said nothing for {0} s")]
    Timeout(u64),
    #[error("unexpected message from the primary")]
    Unexpected,
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    #[error("bad record: {0}")]
    Record(String),
    #[error("REPLICAOF changed")]
    Retarget,
}

/// Follows the primary named by REPLICAOF (or the configuration) with shard
/// `id`, for the node's life; promotes the shard on REPLICAOF NO ONE.
pub async fn follow(ls: Rc<LocalShards>, state: Arc<ServerState>, router: Rc<Router>, id: usize) {
    let i = ls.local_index(id);
    loop {
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let epoch = state.repl.epoch.load(Ordering::SeqCst);
        let Some(((host, port), pull)) = state.repl.source(id) else {
            // No primary: promote, unless the cluster holds this node (it
            // stepped down or waits to learn who leads) and has not asked.
            let req = state.repl.promotion_requested();
            if ls.shard(id).is_follower()
                && (!state.repl.held() || state.repl.is_promotion_pending(id, req))
            {
                promote(&ls, &state, id);
            }
            if !ls.shard(id).is_follower() {
                state.repl.promoted(id, req);
            }
            crate::runtime::sleep(Duration::from_millis(20)).await;
            continue;
        };
        become_follower(&ls, &state, id);
        let r = {
            // A primary that went silent (stopped, cut off) would hold the
            // link in a read or a connect for up to repl-timeout: a new
            // target (a failover, a pull, REPLICAOF) must not wait for it.
            // Loading a snapshot is left to finish (it owns the shard).
            let watch = async {
                loop {
                    crate::runtime::sleep(Duration::from_millis(20)).await;
                    let moved = state.repl.epoch.load(Ordering::SeqCst) != epoch
                        || state.shutdown.load(Ordering::SeqCst);
                    if moved && ls.repl.borrow()[i].follow.state != "sync" {
                        return;
                    }
                }
            };
            let work = link(&ls, &state, &router, id, &host, port, epoch, pull);
            futures::pin_mut!(watch);
            futures::pin_mut!(work);
            match futures::future::select(work, watch).await {
                futures::future::Either::Left((r, _)) => r,
                futures::future::Either::Right(_) => Err(FollowError::Retarget),
            }
        };
        {
            let mut repls = ls.repl.borrow_mut();
            let f = &mut repls[i].follow;
            f.state = "connect";
            if let Err(e) = &r {
                if !matches!(e, FollowError::Retarget) {
                    f.last_error = e.to_string();
                }
            }
        }
        if let Err(e) = r {
            tracing::info!(shard = id, "replication link to {host}:{port}: {e}");
        }
        // Retry in a quarter second (a new primary refuses backups until
        // it opens), at once if REPLICAOF changed.
        for _ in 0..12 {
            if state.repl.epoch.load(Ordering::SeqCst) != epoch
                || state.shutdown.load(Ordering::SeqCst)
            {
                break;
            }
            crate::runtime::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn become_follower(ls: &LocalShards, state: &ServerState, id: usize) {
    let mut s = ls.shard(id);
    s.set_follower(true);
    if !s.journal_on() {
        // Its records feed its own backlog from now on.
        s.journal_enable(true);
        let seq = s.seq();
        let cap = state.config().repl_backlog_size as usize;
        ls.repl.borrow_mut()[ls.local_index(id)].backlog = super::backlog::Backlog::new(cap, seq);
    }
}

/// REPLICAOF NO ONE: the shard starts a history of its own, remembering
/// where it left its primary's (backups of the same primary that are not
/// past that point can continue from it).
fn promote(ls: &LocalShards, state: &ServerState, id: usize) {
    let mut s = ls.shard(id);
    s.set_follower(false);
    let seq = s.seq();
    let mut repls = ls.repl.borrow_mut();
    let r = &mut repls[ls.local_index(id)];
    r.prev_history = r.history;
    r.prev_end = seq;
    r.fork_hlc = s.hlc_last();
    r.history = new_history(id);
    r.follow.state = "none";
    r.follow.synced = false;
    let history = r.history;
    drop(repls);
    if let Some(f) = state.repl.published.get(id) {
        f.promoted_at.store(seq, Ordering::SeqCst);
    }
    crate::persist::disk::store_history(ls, ls.local_index(id), history);
    tracing::info!(shard = id, seq, "promoted: new history {history:016x}");
}

/// Sends the new primary this shard's records after `after` (from the
/// backlog), then whether they were all there.
async fn offer(
    ls: &LocalShards,
    id: usize,
    c: &mut PeerStream,
    after: u64,
) -> Result<(), FollowError> {
    let i = ls.local_index(id);
    let mut at = after;
    let complete = ls.repl.borrow()[i].backlog.can_serve(after);
    let mut sent = 0u64;
    loop {
        let next = ls.repl.borrow()[i].backlog.read_after(at, 256 * 1024);
        let Some((frames, last)) = next else {
            break;
        };
        if last <= at {
            break;
        }
        send(c, &Msg::MergeData(&frames)).await?;
        sent += last - at;
        at = last;
    }
    send(c, &Msg::MergeEnd { complete }).await?;
    tracing::info!(
        shard = id,
        "offered {sent} records written past the fork (seq {after}) for merge{}",
        if complete {
            ""
        } else {
            "; older ones had left the backlog"
        }
    );
    Ok(())
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, FollowError> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| FollowError::Connect(format!("{host}:{port}"), "cannot resolve".into()))
}

/// A link to the primary (in TLS with `tls-replication yes`).
async fn connect(
    state: &ServerState,
    addr: SocketAddr,
    secs: u64,
) -> Result<PeerStream, FollowError> {
    PeerStream::connect(state, addr, Duration::from_secs(secs))
        .await
        .map_err(|e| FollowError::Connect(addr.to_string(), e.to_string()))
}

/// Asks the primary's client port for its replication ports.
async fn peer_ports(
    state: &ServerState,
    addr: SocketAddr,
    secs: u64,
    auth: Option<&str>,
) -> Result<(usize, Vec<u16>), FollowError> {
    let mut c = connect(state, addr, secs).await?;
    let mut ask = Vec::new();
    if let Some(pw) = auth {
        ask.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes());
    }
    ask.extend_from_slice(b"*2\r\n$8\r\nREPLCONF\r\n$4\r\nPEER\r\n");
    c.write_all(&ask).await.map_err(LinkError::from)?;
    c.flush().await.map_err(LinkError::from)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // "$len\r\n<text>\r\n" or an error line; a few hundred bytes at most.
    let text = loop {
        let n = with_timeout(c.read(&mut chunk), secs)
            .await?
            .map_err(LinkError::from)?;
        if n == 0 {
            return Err(FollowError::Peer(String::from_utf8_lossy(&buf).into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return Err(FollowError::Peer("(too long)".into()));
        }
        let mut s = String::from_utf8_lossy(&buf).into_owned();
        if auth.is_some() {
            // AUTH's answer first: +OK, or the error that explains it all.
            match s.split_once("\r\n") {
                None => continue,
                Some(("+OK", rest)) => s = rest.to_string(),
                Some((first, _)) => return Err(FollowError::Peer(first.to_string())),
            }
        }
        if s.starts_with('-') && s.ends_with("\r\n") {
            return Err(FollowError::Peer(s.trim().into()));
        }
        let mut lines = s.split("\r\n");
        if let (Some(_), Some(body), Some(_)) = (lines.next(), lines.next(), lines.next()) {
            break body.to_string();
        }
    };
    // "<id> <zone> <region> <shards> <port>,<port>..."
    let f: Vec<&str> = text.split(' ').collect();
    let bad = || FollowError::Peer(text.clone());
    let shards: usize = f.get(3).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ports: Vec<u16> = f
        .get(4)
        .ok_or_else(bad)?
        .split(',')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    Ok((shards, ports))
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = T>,
    secs: u64,
) -> Result<T, FollowError> {
    crate::runtime::timeout(Duration::from_secs(secs), f)
        .await
        .ok_or(FollowError::Timeout(secs))
}

async fn send(c: &mut PeerStream, msg: &Msg<'_>) -> Result<(), LinkError> {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    let mut out = Vec::new();
    encode_frame(&mut out, &payload, false, &mut LinkStats::default());
    c.write_all(&out).await?;
    c.flush().await?;
    Ok(())
}

fn set_state(ls: &LocalShards, id: usize, state: &'static str) {
    ls.repl.borrow_mut()[ls.local_index(id)].follow.state = state;
}

#[allow(clippy::too_many_arguments)]
async fn link(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    router: &Rc<Router>,
    id: usize,
    host: &str,
    port: u16,
    epoch: u64,
    pull: bool,
) -> Result<(), FollowError> {
    let i = ls.local_index(id);
    let config = state.config();
    let secs = config.repl_timeout;
    set_state(ls, id, "connect");
    let addr = resolve(host, port)?;
    let (shards, ports) = peer_ports(state, addr, secs, config.masterauth.as_deref()).await?;
    if shards != state.shards {
        return Err(FollowError::Shards {
            primary: shards,
            mine: state.shards,
        });
    }
    let peer = SocketAddr::new(addr.ip(), *ports.get(id).ok_or(FollowError::Unexpected)?);
    let mut c = connect(state, peer, secs).await?;
    set_state(ls, id, "handshake");
    let hello = {
        let s = ls.shard(id);
        let repls = ls.repl.borrow();
        Hello {
            version: VERSION,
            shards: state.shards as u64,
            shard: id as u64,
            // A shard that never synced has nothing to continue from.
            history: if repls[i].follow.synced || s.seq() > 0 {
                repls[i].history
            } else {
                0
            },
            term: s.journal_term(),
            seq: s.seq(),
            node_id: config.node_id.clone(),
            zone: config.zone.clone(),
            client_port: state.port.load(Ordering::Relaxed),
            auth: config.masterauth.clone().unwrap_or_default(),
            pull,
        }
    };
    send(&mut c, &Msg::Hello(hello)).await?;
    let mut reader = FrameReader::new();
    let welcome = loop {
        let payload = with_timeout(reader.next(&mut c), secs).await??;
        match Msg::decode(&payload)? {
            Msg::Welcome(w) => break w,
            Msg::Refused(why) => return Err(FollowError::Refused(why)),
            // We were a primary on the other side of a split: offer what we
            // wrote past the fork before our copy is replaced.
            Msg::MergeAsk { after } => offer(ls, id, &mut c, after).await?,
            _ => return Err(FollowError::Unexpected),
        }
    };
    {
        let mut repls = ls.repl.borrow_mut();
        let f = &mut repls[i].follow;
        f.last_error.clear();
    }
    if welcome.full {
        set_state(ls, id, "sync");
        load_snapshot(
            ls,
            state,
            router,
            id,
            &mut c,
            &mut reader,
            welcome.history,
            secs,
        )
        .await?;
        let mut repls = ls.repl.borrow_mut();
        let f = &mut repls[i].follow;
        f.full_syncs += 1;
        f.last_sync = format!("full: {}", welcome.why);
    } else {
        let seq = ls.shard(id).seq();
        let mut repls = ls.repl.borrow_mut();
        let r = &mut repls[i];
        r.follow.partial_syncs += 1;
        r.follow.last_sync = "partial".into();
        // Continuing on a promoted primary's history (PSYNC2's way): adopt
        // its id and remember ours up to here, so a backup of ours — or of
        // our old primary — can still continue from us if we are promoted.
        if welcome.history != r.history && !pull {
            r.prev_history = r.history;
            r.prev_end = seq;
            r.history = welcome.history;
            drop(repls);
            crate::persist::disk::store_history(ls, i, welcome.history);
        }
    }
    {
        let mut repls = ls.repl.borrow_mut();
        let f = &mut repls[i].follow;
        f.synced = true;
        f.state = "online";
        f.synced_ms = now_ms();
        f.link_epoch = epoch;
    }
    tracing::info!(
        shard = id,
        "following {host}:{port} ({})",
        if welcome.full {
            "full sync"
        } else {
            "partial resync"
        }
    );
    let seq = ls.shard(id).seq();
    send(&mut c, &Msg::Ack { seq }).await?;
    loop {
        if state.repl.epoch.load(Ordering::SeqCst) != epoch {
            return Err(FollowError::Retarget);
        }
        let payload = with_timeout(reader.next(&mut c), secs).await??;
        let (primary_seq, at_ms, frames) = match Msg::decode(&payload)? {
            Msg::Data {
                primary_seq,
                at_ms,
                frames,
            } => (primary_seq, at_ms, Some(frames)),
            Msg::Ping { primary_seq, at_ms } => (primary_seq, at_ms, None),
            _ => return Err(FollowError::Unexpected),
        };
        if let Some(frames) = frames {
            apply_stream(ls, state, router, id, frames).await?;
            ls.kick_log(id);
        }
        let seq = ls.shard(id).seq();
        {
            let now = now_ms();
            let mut repls = ls.repl.borrow_mut();
            let r = &mut repls[i];
            r.follow.primary_seq = primary_seq;
            r.follow.last_io_ms = now;
            r.follow.received = reader.stats();
            if seq >= primary_seq {
                // Caught up with the primary as it was when it sent this
                // (its clock): time in flight and queued counts as lag.
                r.follow.caught_up_ms = r.follow.caught_up_ms.max(at_ms.min(now));
            }
        }
        // One ack per burst: frames already buffered are applied first.
        if !reader.has_frame() {
            send(&mut c, &Msg::Ack { seq }).await?;
        }
    }
}

/// Replaces the shard's contents with the primary's snapshot.
#[allow(clippy::too_many_arguments)]
async fn load_snapshot(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    router: &Rc<Router>,
    id: usize,
    c: &mut PeerStream,
    reader: &mut FrameReader,
    history: u64,
    secs: u64,
) -> Result<(), FollowError> {
    let i = ls.local_index(id);
    // No disk snapshot may begin or run while the shard is replaced.
    let logging = {
        let mut disks = ls.disks.shards.borrow_mut();
        disks.get_mut(i).map(|d| {
            d.loading = true;
            d.logging
        })
    }
    .unwrap_or(false);
    let r = async {
        while ls.shard(id).snapshot_running()
            || ls
                .disks
                .shards
                .borrow()
                .get(i)
                .is_some_and(|d| d.snapshot_running)
        {
            crate::runtime::sleep(Duration::from_millis(5)).await;
        }
        // The files on disk belong to no history until the next snapshot.
        ls.repl.borrow_mut()[i].history = 0;
        if logging {
            let (manifest, dir) = {
                let mut disks = ls.disks.shards.borrow_mut();
                let d = &mut disks[i];
                d.manifest.history = 0;
                (d.manifest.clone(), d.dir.clone())
            };
            crate::persist::disk::off_core(move || manifest.write(&dir))
                .await
                .map_err(|e| FollowError::Snapshot(e.to_string()))?;
        }
        {
            let mut s = ls.shard(id);
            s.journal_enable(false);
            for db in 0..STORED_DBS {
                s.flush_db(db);
            }
        }
        let mut loader = Loader::new();
        let mut buf: Vec<u8> = Vec::new();
        while !loader.done() {
            let payload = with_timeout(reader.next(c), secs).await??;
            let Msg::Snapshot(bytes) = Msg::decode(&payload)? else {
                return Err(FollowError::Unexpected);
            };
            buf.extend_from_slice(bytes);
            let n = loader
                .feed(&mut ls.shard(id), &buf)
                .map_err(|e| FollowError::Snapshot(format!("{e:?}")))?;
            buf.drain(..n);
        }
        let header = loader.header().ok_or(FollowError::Unexpected)?;
        {
            let mut s = ls.shard(id);
            s.applied_commit(header.commit);
            s.journal_enable(true);
        }
        let cap = state.config().repl_backlog_size as usize;
        {
            let mut repls = ls.repl.borrow_mut();
            let r = &mut repls[i];
            r.history = history;
            r.backlog = super::backlog::Backlog::new(cap, header.seq);
        }
        // Transactions the snapshot already holds this shard's part of.
        for ready in state.repl.barrier.settle(id, header.commit) {
            apply_ready(router, ready).await?;
        }
        Ok(())
    }
    .await;
    {
        let mut s = ls.shard(id);
        if !s.journal_on() {
            s.journal_enable(true);
        }
    }
    let mut disks = ls.disks.shards.borrow_mut();
    if let Some(d) = disks.get_mut(i) {
        d.loading = false;
        if r.is_ok() && logging {
            d.history_after_snapshot = Some(history);
            d.request_snapshot(None);
        }
    }
    r
}

/// Applies one frame to a shard as the primary produced it, and keeps its
/// bytes in the shard's journal (for its log and backlog).
fn apply_frame_bytes(s: &mut Shard, raw: &[u8]) -> Result<(), String> {
    let (frame, _) = decode_frame(raw).map_err(|e| e.to_string())?;
    let on = s.journal_on();
    s.journal_enable(false);
    let r = replay::apply_frame(s, &frame).map_err(|e| e.to_string());
    s.journal_enable(on);
    s.journal_append_frames(raw, s.seq());
    r
}

/// Applies the record frames of one `Data` message in order; a transaction
/// over several shards waits at the barrier for its other parts.
async fn apply_stream(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    router: &Rc<Router>,
    id: usize,
    frames: &[u8],
) -> Result<(), FollowError> {
    let mut at = 0;
    while at < frames.len() {
        let (frame, n) =
            decode_frame(&frames[at..]).map_err(|e| FollowError::Record(e.to_string()))?;
        let raw = &frames[at..at + n];
        at += n;
        let cross = match &frame {
            Frame::Unit { commit, parts, .. } if parts.len() > 1 => {
                // Parts name shards of this node, this one among them.
                let valid = parts.iter().all(|&p| (p as usize) < state.shards)
                    && parts.contains(&(id as u64));
                if !valid {
                    return Err(FollowError::Record(format!(
                        "transaction {commit} names shards {parts:?}"
                    )));
                }
                Some((*commit, parts.clone()))
            }
            _ => None,
        };
        match cross {
            None => {
                // Readers must not see a shard a transaction holds.
                ls.wait_free(&[id]).await;
                apply_frame_bytes(&mut ls.shard(id), raw).map_err(FollowError::Record)?
            }
            Some((commit, parts)) => {
                match state.repl.barrier.deposit(commit, &parts, id, raw.to_vec()) {
                    Deposit::Wait(rx) => {
                        if rx.await.is_err() {
                            return Err(FollowError::Record(format!(
                                "transaction {commit} was not applied"
                            )));
                        }
                    }
                    Deposit::Apply(ready) => apply_ready(router, ready).await?,
                }
            }
        }
    }
    // Readers on other cores compare their clients' writes with this (the
    // front door's read-your-writes check): keep it fresh, never ahead.
    if let Some(f) = state.repl.published.get(id) {
        f.seq.store(ls.shard(id).seq(), Ordering::Release);
    }
    Ok(())
}

/// Applies every part of a complete transaction under the node's locks, so
/// readers see all of it or none, then releases the waiting streams.
async fn apply_ready(router: &Rc<Router>, ready: Ready) -> Result<(), FollowError> {
    let tx = router.new_tx();
    router
        .begin(tx, &ready.shards)
        .await
        .map_err(|e| FollowError::Record(e.to_string()))?;
    let mut result = Ok(());
    for (shard, frame) in ready.frames {
        let r = router
            .on_shard(shard, Some(tx), move |s| apply_frame_bytes(s, &frame))
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(FollowError::Record(e)),
            Err(e) => result = Err(FollowError::Record(e.to_string())),
        }
    }
    router.end(tx, &ready.shards);
    for w in ready.waiters {
        let _ = w.send(());
    }
    result
}
