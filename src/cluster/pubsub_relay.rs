//! Pub/sub across the nodes of a cluster: `SUBSCRIBE` on any node receives
//! what is `PUBLISH`ed through any node.
//!
//! A backup forwards `PUBLISH` to the primary (see `server::conn`), so every
//! message is published exactly once, there. Each backup keeps one
//! `PSUBSCRIBE *` link to the primary (on its first core) and hands every
//! message it receives to its own subscribers on every core, as a local
//! `PUBLISH` would — so a subscriber on a backup sees messages published
//! through the primary, through itself or through another backup, once each.
//! The link follows the primary across failovers; messages published while
//! it reconnects are lost, as in Redis (pub/sub is at-most-once).
//!
//! `SPUBLISH` travels the same way: the link also asks the primary for every
//! shard message (`REPLCONF shard-relay`), as shard channels have no
//! catch-all pattern.
//!
//! `PUBLISH`'s answer counts the primary's receivers, each backup's link
//! among them (one per backup, whatever its subscribers).

use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::security::stream::PeerStream;
use futures::{AsyncReadExt, AsyncWriteExt};

use crate::exec::router::Router;
use crate::resp::frame::{items, reply_len};
use crate::server::state::ServerState;

/// Keeps this backup's subscription link to the primary, for the node's life.
pub async fn run(state: Arc<ServerState>, router: Rc<Router>) {
    while !state.shutdown.load(Ordering::Relaxed) {
        let target = if state.repl.is_following()
            && state.cluster.primary_reachable.load(Ordering::Relaxed)
        {
            state.repl.master()
        } else {
            None
        };
        let Some(target) = target else {
            crate::runtime::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Err(e) = relay(&state, &router, &target).await {
            tracing::debug!("pub/sub link to {}:{}: {e}", target.0, target.1);
        }
        crate::runtime::sleep(Duration::from_millis(100)).await;
    }
}

async fn relay(
    state: &Arc<ServerState>,
    router: &Rc<Router>,
    target: &(String, u16),
) -> Result<(), String> {
    let addr = (target.0.as_str(), target.1)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or("cannot resolve")?;
    let mut c = PeerStream::connect(state, addr, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    if let Some(pw) = state.config().masterauth {
        hello
            .extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes());
    }
    // Shard channels have no pattern that matches them all: the link asks
    // for every shard message first, while it may still send REPLCONF.
    hello.extend_from_slice(b"*2\r\n$8\r\nREPLCONF\r\n$11\r\nshard-relay\r\n");
    hello.extend_from_slice(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n");
    c.write_all(&hello).await.map_err(|e| e.to_string())?;
    c.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        while let Some(n) = reply_len(&buf).map_err(|e| e.to_string())? {
            let frame: Vec<u8> = buf.drain(..n).collect();
            if frame.first() == Some(&b'-') {
                return Err(String::from_utf8_lossy(&frame).trim().to_string());
            }
            let Some(it) = items(&frame) else {
                continue;
            };
            if it.len() == 3 && it[0].eq_ignore_ascii_case(b"smessage") {
                let channel: Arc<[u8]> = it[1].as_slice().into();
                let payload: Arc<[u8]> = it[2].as_slice().into();
                let _ = router
                    .broadcast(move |ls| ls.pubsub.borrow().deliver_shard(&channel, &payload))
                    .await;
            } else if it.len() == 4 && it[0].eq_ignore_ascii_case(b"pmessage") {
                let channel: Arc<[u8]> = it[2].as_slice().into();
                let payload: Arc<[u8]> = it[3].as_slice().into();
                let _ = router
                    .broadcast(move |ls| ls.pubsub.borrow().deliver(&channel, &payload))
                    .await;
            }
        }
        match crate::runtime::timeout(Duration::from_millis(100), c.read(&mut chunk)).await {
            Some(Ok(0)) => return Err("closed".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            None => {
                // A new primary, or this node is no longer a backup.
                if state.repl.master().as_ref() != Some(target)
                    || !state.repl.is_following()
                    || state.shutdown.load(Ordering::Relaxed)
                {
                    return Ok(());
                }
            }
        }
    }
}
