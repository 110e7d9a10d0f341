//! The primary's side of a shard's streams: a listener per shard on its own
//! core, a handshake that picks partial or full resync, then a sender task
//! (records from the backlog) and an ack reader per backup.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::TcpListener;
use crate::security::stream::PeerStream;
use futures::channel::mpsc;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::StreamExt;

use super::link::{encode_frame, FrameReader, LinkError, LinkStats};
use super::shard::{update_delay, LinkInfo};
use super::wire::{Hello, Msg, Welcome, VERSION};
use crate::exec::local::LocalShards;
use crate::server::state::{now_ms, ServerState};

/// Lock owners for snapshot starts: apart from every transaction id (those
/// carry an executor number in bits 48 and up).
static SNAPSHOT_TX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 62);

/// Bytes of records or snapshot per frame.
const FRAME_BYTES: usize = 256 * 1024;
/// How often an idle link carries a ping.
const PING_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("backup said nothing for {0} s")]
    Timeout(u64),
    #[error("the backup fell behind the backlog")]
    OutOfBacklog,
    #[error("this node became a backup")]
    Demoted,
    #[error("expected a hello")]
    NoHello,
    #[error("unexpected message during a merge")]
    MergeProtocol,
}

/// Accepts backups of shard `id` (runs on its core for the node's life).
pub async fn listen(
    ls: Rc<LocalShards>,
    state: Arc<ServerState>,
    id: usize,
    listener: TcpListener,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = id, "replication accept failed: {e}");
                crate::runtime::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let (ls, state) = (ls.clone(), state.clone());
        crate::runtime::spawn(async move {
            let addr = stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let stream = match PeerStream::accept(&state, stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(shard = id, backup = %addr, "replication link refused: {e}");
                    return;
                }
            };
            if let Err(e) = serve(ls, state, id, stream, addr.clone()).await {
                tracing::info!(shard = id, backup = %addr, "replication link closed: {e}");
            }
        });
    }
}

async fn send(
    w: &mut WriteHalf<PeerStream>,
    msg: &Msg<'_>,
    compress: bool,
    stats: &mut LinkStats,
) -> Result<(), LinkError> {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    let mut out = Vec::with_capacity(payload.len() + 16);
    encode_frame(&mut out, &payload, compress, stats);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message within `secs` seconds.
async fn recv(
    reader: &mut FrameReader,
    r: &mut ReadHalf<PeerStream>,
    secs: u64,
) -> Result<Vec<u8>, StreamError> {
    match crate::runtime::timeout(Duration::from_secs(secs), reader.next(r)).await {
        Some(r) => Ok(r?),
        None => Err(StreamError::Timeout(secs)),
    }
}

/// Why the backup cannot continue from its place, or None when it can.
fn partial_refusal(ls: &LocalShards, id: usize, h: &Hello) -> Option<String> {
    let repls = ls.repl.borrow();
    let r = &repls[ls.local_index(id)];
    let same = h.history == r.history || (h.history == r.prev_history && h.seq <= r.prev_end);
    if h.history == 0 {
        Some("the backup has no history yet".into())
    } else if !same {
        Some(format!(
            "history {:016x} is not this shard's ({:016x})",
            h.history, r.history
        ))
    } else if h.seq > r.backlog.last_seq() {
        Some(format!(
            "the backup is ahead: seq {} > {}",
            h.seq,
            r.backlog.last_seq()
        ))
    } else if !r.backlog.can_serve(h.seq) {
        Some(format!(
            "seq {} is no longer in the backlog (it starts after {})",
            h.seq,
            r.backlog.start_seq()
        ))
    } else {
        None
    }
}

async fn serve(
    ls: Rc<LocalShards>,
    state: Arc<ServerState>,
    id: usize,
    stream: PeerStream,
    addr: String,
) -> Result<(), StreamError> {
    let (mut rd, mut wr) = stream.split();
    let mut reader = FrameReader::new();
    let config = state.config();
    let payload = recv(&mut reader, &mut rd, config.repl_timeout).await?;
    let Msg::Hello(hello) = Msg::decode(&payload)? else {
        return Err(StreamError::NoHello);
    };
    let mut stats = LinkStats::default();
    // A backup asked to serve a stream is routine while a cluster settles
    // who leads (at boot, in a failover): its peer retries elsewhere.
    let mut routine = false;
    let refuse = if hello.version != VERSION {
        Some(format!(
            "replication protocol {} is not {VERSION}",
            hello.version
        ))
    } else if hello.shards != state.shards as u64 {
        Some(format!(
            "shard count mismatch: this primary has {} shards, the backup {}; every node of a database needs the same --shards",
            state.shards, hello.shards
        ))
    } else if config
        .requirepass
        .as_ref()
        .is_some_and(|pw| pw.as_bytes() != hello.auth.as_bytes())
    {
        Some("authentication failed: set masterauth to this primary's requirepass".into())
    } else if hello.shard != id as u64 {
        Some(format!(
            "shard {} connected to the port of shard {id}",
            hello.shard
        ))
    } else if state.repl.is_backup() && !hello.pull {
        routine = true;
        Some("this node is a backup: follow its primary".into())
    } else {
        None
    };
    if let Some(why) = refuse {
        if routine {
            tracing::info!(shard = id, backup = %hello.node_id, "refused: {why}");
        } else {
            tracing::warn!(shard = id, backup = %hello.node_id, "refused: {why}");
        }
        send(&mut wr, &Msg::Refused(why), false, &mut stats).await?;
        return Ok(());
    }
    let compress = hello.zone != config.zone;

    // Records from here on must reach the backlog.
    {
        let mut s = ls.shard(id);
        if !s.journal_on() {
            s.journal_enable(true);
            let seq = s.seq();
            let mut repls = ls.repl.borrow_mut();
            let r = &mut repls[ls.local_index(id)];
            r.backlog = super::backlog::Backlog::new(config.repl_backlog_size as usize, seq);
        }
    }
    // A split brain's loser: take what it wrote past the fork first.
    let diverged = {
        let repls = ls.repl.borrow();
        let r = &repls[ls.local_index(id)];
        !hello.pull
            && hello.history != 0
            && hello.history == r.prev_history
            && hello.seq > r.prev_end
    };
    let mut refusal = partial_refusal(&ls, id, &hello);
    if diverged {
        let mut st = LinkStats::default();
        let why = merge_from(
            &ls,
            &state,
            id,
            &hello,
            &mut rd,
            &mut wr,
            &mut reader,
            &mut st,
        )
        .await?;
        refusal = Some(why);
    }
    let (kick_tx, mut kick) = mpsc::channel(1);
    let link = Rc::new(RefCell::new(LinkInfo {
        backup: hello.node_id.clone(),
        addr,
        client_port: hello.client_port as u16,
        zone: hello.zone.clone(),
        compress,
        in_full_sync: refusal.is_some(),
        sync: if refusal.is_some() { "full" } else { "partial" },
        why: refusal.clone().unwrap_or_default(),
        acked: hello.seq,
        acked_ms: now_ms(),
        stats: LinkStats::default(),
        kick: kick_tx,
        closed: false,
    }));
    ls.repl.borrow_mut()[ls.local_index(id)]
        .links
        .push(link.clone());
    state
        .repl
        .link_up(&hello.node_id, hello.zone == config.zone);
    let result = stream_to(
        &ls,
        &state,
        id,
        &hello,
        refusal,
        link.clone(),
        &mut rd,
        &mut wr,
        &mut reader,
        &mut kick,
    )
    .await;
    link.borrow_mut().closed = true;
    {
        let mut repls = ls.repl.borrow_mut();
        let r = &mut repls[ls.local_index(id)];
        r.links.retain(|l| !Rc::ptr_eq(l, &link));
        update_delay(&state, id, r);
    }
    state.repl.link_down(&hello.node_id);
    result
}

/// Asks a diverged backup for its records since the fork point and merges
/// them into this shard (see `super::merge`); returns the full sync's reason.
#[allow(clippy::too_many_arguments)]
async fn merge_from(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    id: usize,
    hello: &Hello,
    rd: &mut ReadHalf<PeerStream>,
    wr: &mut WriteHalf<PeerStream>,
    reader: &mut FrameReader,
    stats: &mut LinkStats,
) -> Result<String, StreamError> {
    use super::merge::{merge_frames, Fork, MergeStats};
    let i = ls.local_index(id);
    let (after, fork_hlc) = {
        let repls = ls.repl.borrow();
        (repls[i].prev_end, repls[i].fork_hlc)
    };
    tracing::info!(
        shard = id,
        backup = %hello.node_id,
        "{} wrote past the fork (seq {} > {after}): asking for its records to merge",
        hello.node_id,
        hello.seq
    );
    send(wr, &Msg::MergeAsk { after }, false, stats).await?;
    // Our own side since the fork: its deletes must not be undone.
    let mut fork = Fork {
        hlc: fork_hlc,
        ..Fork::default()
    };
    {
        let repls = ls.repl.borrow();
        let b = &repls[i].backlog;
        if !b.can_serve(after) {
            tracing::warn!(
                shard = id,
                "merge: this node's records since the fork left its backlog; deletes made since then may be undone by the merge"
            );
        }
        let mut at = after;
        while let Some((frames, last)) = b.read_after(at, FRAME_BYTES) {
            if last <= at {
                break;
            }
            fork.learn(&frames);
            at = last;
        }
    }
    let secs = state.config().repl_timeout;
    let mut total = MergeStats::default();
    let complete = loop {
        let payload = recv(reader, rd, secs).await?;
        match Msg::decode(&payload)? {
            Msg::MergeData(frames) => {
                let tx = SNAPSHOT_TX.fetch_add(1, Ordering::Relaxed);
                ls.lock(tx, vec![id]).await;
                let st = merge_frames(&mut ls.shard(id), &fork, frames, now_ms());
                ls.unlock(tx, 0, &[]);
                ls.kick_log(id);
                total.add(st);
            }
            Msg::MergeEnd { complete } => break complete,
            _ => return Err(StreamError::MergeProtocol),
        }
    };
    let r = &state.repl;
    r.merges.fetch_add(1, Ordering::Relaxed);
    r.merge_applied.fetch_add(total.applied, Ordering::Relaxed);
    r.merge_skipped.fetch_add(total.skipped, Ordering::Relaxed);
    r.merge_lost.fetch_add(total.refused, Ordering::Relaxed);
    if !complete {
        r.merge_lost.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            shard = id,
            backup = %hello.node_id,
            "merge: {} no longer held every record since the fork; those are lost",
            hello.node_id
        );
    }
    tracing::info!(
        shard = id,
        backup = %hello.node_id,
        "merged {} records of {} (its side won), {} kept as ours, {} refused",
        total.applied,
        hello.node_id,
        total.skipped,
        total.refused
    );
    Ok(format!(
        "diverged past the fork at seq {after}: merged {} of its records ({} kept as ours), then a full sync",
        total.applied, total.skipped
    ))
}

#[allow(clippy::too_many_arguments)]
async fn stream_to(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    id: usize,
    hello: &Hello,
    refusal: Option<String>,
    link: Rc<RefCell<LinkInfo>>,
    rd: &mut ReadHalf<PeerStream>,
    wr: &mut WriteHalf<PeerStream>,
    reader: &mut FrameReader,
    kick: &mut mpsc::Receiver<()>,
) -> Result<(), StreamError> {
    let config = state.config();
    let compress = link.borrow().compress;
    let (history, term) = {
        let repls = ls.repl.borrow();
        (
            repls[ls.local_index(id)].history,
            ls.shard(id).journal_term(),
        )
    };
    let mut after = hello.seq;
    match &refusal {
        None => {
            state.repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(shard = id, backup = %hello.node_id, seq = after, "partial resync");
            let w = Welcome {
                full: false,
                history,
                term,
                from_seq: after,
                node_id: config.node_id.clone(),
                zone: config.zone.clone(),
                why: String::new(),
            };
            let mut st = link.borrow().stats;
            send(wr, &Msg::Welcome(w), compress, &mut st).await?;
            link.borrow_mut().stats = st;
        }
        Some(why) => {
            state.repl.sync_full.fetch_add(1, Ordering::Relaxed);
            if hello.history != 0 {
                state.repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(shard = id, backup = %hello.node_id, "full sync: {why}");
            after = send_snapshot(ls, state, id, &link, why, history, term, wr).await?;
        }
    }

    // Acks arrive on their own task; it wakes the sender when it stops.
    let acks = {
        let (ls, state, link) = (ls.clone(), state.clone(), link.clone());
        let timeout = config.repl_timeout;
        async move {
            loop {
                let payload = match recv(reader, rd, timeout).await {
                    Ok(p) => p,
                    Err(e) => return Err::<(), StreamError>(e),
                };
                if let Ok(Msg::Ack { seq }) = Msg::decode(&payload) {
                    let mut l = link.borrow_mut();
                    l.acked = l.acked.max(seq);
                    l.acked_ms = now_ms();
                    let is_sync = state.repl.sync_backup().as_deref() == Some(l.backup.as_str());
                    drop(l);
                    let mut repls = ls.repl.borrow_mut();
                    let r = &mut repls[ls.local_index(id)];
                    if is_sync {
                        r.release_strong(seq);
                    }
                    // WAIT callers look again.
                    r.ack_watchers.clear();
                    update_delay(&state, id, r);
                }
            }
        }
    };
    let pin = std::cell::Cell::new(None::<u64>);
    let sender = async {
        loop {
            if state.repl.is_backup() && !hello.pull {
                return Err(StreamError::Demoted);
            }
            if state.shutdown.load(Ordering::SeqCst) {
                return Ok(());
            }
            let primary_seq = ls.shard(id).seq();
            // Another link of this kind sent the records from here already:
            // the same bytes go out again.
            let shared = {
                let repls = ls.repl.borrow();
                let r = &repls[ls.local_index(id)];
                let f = r.shared[compress as usize].as_ref();
                f.filter(|f| {
                    f.after == after && f.history == r.history && r.backlog.can_serve(after)
                })
                .map(|f| (f.bytes.clone(), f.last, f.payload_len, f.compressed))
            };
            if let Some((bytes, last, payload_len, compressed)) = shared {
                {
                    let mut l = link.borrow_mut();
                    l.stats.count(compressed, payload_len, bytes.len());
                    l.stats.frames_shared += 1;
                }
                wr.write_all(&bytes).await.map_err(LinkError::from)?;
                wr.flush().await.map_err(LinkError::from)?;
                after = last;
                pin_after(ls, id, &pin, after);
                continue;
            }
            // The records after `after` go straight behind the message head.
            let mut payload = Vec::new();
            Msg::Data {
                primary_seq: 0,
                at_ms: now_ms(),
                frames: &[],
            }
            .encode(&mut payload);
            let head = payload.len();
            let read = {
                let repls = ls.repl.borrow();
                let b = &repls[ls.local_index(id)].backlog;
                if after > b.last_seq() {
                    // (after a snapshot: its last records are on their way
                    // from the journal)
                    Some(after)
                } else {
                    b.read_after_into(after, FRAME_BYTES, &mut payload)
                }
            };
            let Some(last) = read else {
                return Err(StreamError::OutOfBacklog);
            };
            let mut out = Vec::new();
            let out = if payload.len() == head {
                let tick = crate::runtime::sleep(PING_EVERY);
                futures::pin_mut!(tick);
                if let futures::future::Either::Left(_) =
                    futures::future::select(kick.next(), tick).await
                {
                    continue;
                }
                let mut ping = Vec::new();
                Msg::Ping {
                    primary_seq,
                    at_ms: now_ms(),
                }
                .encode(&mut ping);
                encode_frame(&mut out, &ping, compress, &mut link.borrow_mut().stats);
                Rc::new(out)
            } else {
                Msg::set_data_primary_seq(&mut payload, primary_seq.max(last));
                let mut stats = link.borrow().stats;
                let compressed_before = stats.frames_compressed;
                encode_frame(&mut out, &payload, compress, &mut stats);
                link.borrow_mut().stats = stats;
                let out = Rc::new(out);
                let mut repls = ls.repl.borrow_mut();
                let r = &mut repls[ls.local_index(id)];
                r.shared[compress as usize] = Some(super::shard::SharedFrame {
                    history: r.history,
                    after,
                    last,
                    bytes: out.clone(),
                    payload_len: payload.len(),
                    compressed: stats.frames_compressed > compressed_before,
                });
                out
            };
            wr.write_all(&out).await.map_err(LinkError::from)?;
            wr.flush().await.map_err(LinkError::from)?;
            after = last.max(after);
            pin_after(ls, id, &pin, after);
        }
    };
    futures::pin_mut!(acks);
    futures::pin_mut!(sender);
    let r = match futures::future::select(acks, sender).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right((r, _)) => r,
    };
    if let Some(p) = pin.take() {
        ls.repl.borrow_mut()[ls.local_index(id)].backlog.unpin(p);
    }
    r
}

/// Moves a link's pin on the backlog to `after`: what this backup has not
/// been sent yet stays (up to 4 x the backlog's size) even when the backlog
/// would trim it, so a burst of writes does not force a full sync.
fn pin_after(ls: &LocalShards, id: usize, pin: &std::cell::Cell<Option<u64>>, after: u64) {
    let mut repls = ls.repl.borrow_mut();
    let b = &mut repls[ls.local_index(id)].backlog;
    if let Some(p) = pin.replace(Some(b.pin(after))) {
        b.unpin(p);
    }
}

/// Sends a point-in-time snapshot of shard `id`; returns its seq, from
/// which the stream continues.
#[allow(clippy::too_many_arguments)]
async fn send_snapshot(
    ls: &Rc<LocalShards>,
    state: &Arc<ServerState>,
    id: usize,
    link: &Rc<RefCell<LinkInfo>>,
    why: &str,
    history: u64,
    term: u64,
    wr: &mut WriteHalf<PeerStream>,
) -> Result<u64, StreamError> {
    // One snapshotter per shard: wait for a running one (a BGSAVE, another
    // backup's sync) and for no transaction to hold the shard.
    // The shard's lock is taken in turn like a transaction's (polling for a
    // free moment would starve behind a stream of cross-shard writes).
    let header = loop {
        let tx = SNAPSHOT_TX.fetch_add(1, Ordering::Relaxed);
        ls.lock(tx, vec![id]).await;
        let begun = {
            let mut s = ls.shard(id);
            let (term, commit) = (s.journal_term(), s.last_commit());
            s.snapshot_begin(state.shards, term, commit)
        };
        ls.unlock(tx, 0, &[]);
        if let Ok(h) = begun {
            break h;
        }
        crate::runtime::sleep(Duration::from_millis(5)).await;
    };
    // Keep the records after the snapshot until the stream reaches them.
    let pin = ls.repl.borrow_mut()[ls.local_index(id)]
        .backlog
        .pin(header.seq);
    let config = state.config();
    let compress = link.borrow().compress;
    let result = async {
        let w = Welcome {
            full: true,
            history,
            term,
            from_seq: header.seq,
            node_id: config.node_id.clone(),
            zone: config.zone.clone(),
            why: why.to_string(),
        };
        let mut st = link.borrow().stats;
        send(wr, &Msg::Welcome(w), compress, &mut st).await?;
        link.borrow_mut().stats = st;
        let mut chunk = Vec::new();
        loop {
            chunk.clear();
            let done = ls.shard(id).snapshot_step(&mut chunk, FRAME_BYTES);
            let mut st = link.borrow().stats;
            send(wr, &Msg::Snapshot(&chunk), compress, &mut st).await?;
            link.borrow_mut().stats = st;
            if done {
                return Ok::<(), StreamError>(());
            }
            crate::runtime::yield_if_needed().await;
        }
    }
    .await;
    if result.is_err() {
        ls.shard(id).snapshot_abort();
    }
    {
        let mut repls = ls.repl.borrow_mut();
        repls[ls.local_index(id)].backlog.unpin(pin);
    }
    result?;
    link.borrow_mut().in_full_sync = false;
    Ok(header.seq)
}
