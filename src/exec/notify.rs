//! Keyspace notifications, the publishing side: a shard's events become
//! Pub/Sub messages on `__keyspace@<db>__:<key>` (payload: the event) and
//! `__keyevent@<db>__:<event>` (payload: the key), delivered to
//! subscribers on every core.
//!
//! # Protocol
//! Every executor has a mailbox in the server's [`Hub`]: a queue of
//! message batches and a waker. Publishing pushes one batch into every
//! mailbox, then delivers what its own mailbox holds at once (so its own
//! subscribers see events in the order they happened, including earlier
//! ones from other cores still queued); each executor runs [`run`], which
//! delivers its mailbox when woken. One queue per receiver, shared by all
//! senders, keeps one order: an event published after another (in real
//! time) reaches every subscriber after it.
//!
//! PUBLISH itself goes through the executors' messages (see `pubsub.rs`);
//! keyspace events take this path because they are produced where no
//! await is possible (inside a shard's work) and must not wait on a full
//! cross-core lane.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::task::AtomicWaker;
use keel_shards::notify::{self as n, KeyEvent};

use crate::exec::local::LocalShards;

/// A channel and its payload.
type Message = (Arc<[u8]>, Arc<[u8]>);
type Batch = Arc<Vec<Message>>;

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Batch>>,
    waker: AtomicWaker,
}

/// Every executor's mailbox for keyspace events.
pub struct Hub {
    boxes: Vec<Mailbox>,
}

impl Hub {
    pub fn new(executors: usize) -> Arc<Hub> {
        Arc::new(Hub {
            boxes: (0..executors).map(|_| Mailbox::default()).collect(),
        })
    }
}

/// The messages of `events`, by the channels on now.
fn messages(events: &[KeyEvent]) -> Vec<Message> {
    let f = n::flags();
    let mut out = Vec::with_capacity(events.len() * 2);
    for e in events {
        if f & n::KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{}__:", e.db).into_bytes();
            ch.extend_from_slice(&e.key);
            out.push((ch.into(), e.event.as_bytes().into()));
        }
        if f & n::KEYEVENT != 0 {
            let ch = format!("__keyevent@{}__:{}", e.db, e.event).into_bytes();
            out.push((ch.into(), e.key.clone().into()));
        }
    }
    out
}

/// Publishes the events shard `global` noted (called after work on it).
pub fn flush(ls: &LocalShards, global: usize) {
    let events = ls.shard(global).take_events();
    publish(ls, &events);
}

/// Publishes `events` to the subscribers of every core.
pub fn publish(ls: &LocalShards, events: &[KeyEvent]) {
    let Some(hub) = ls.notify_hub.get() else {
        return;
    };
    if events.is_empty() {
        return;
    }
    let batch: Batch = Arc::new(messages(events));
    for (e, mb) in hub.boxes.iter().enumerate() {
        if let Ok(mut q) = mb.queue.lock() {
            q.push_back(batch.clone());
        }
        if e != ls.executor {
            mb.waker.wake();
        }
    }
    deliver_pending(ls, hub);
}

/// Delivers this executor's mailbox to its subscribers.
fn deliver_pending(ls: &LocalShards, hub: &Hub) {
    let Some(mb) = hub.boxes.get(ls.executor) else {
        return;
    };
    let batches: Vec<Batch> = match mb.queue.lock() {
        Ok(mut q) => q.drain(..).collect(),
        Err(_) => return,
    };
    if batches.is_empty() {
        return;
    }
    let reg = ls.pubsub.borrow();
    for b in batches {
        for (channel, payload) in b.iter() {
            reg.deliver(channel, payload);
        }
    }
}

/// An executor's delivery task: delivers its mailbox whenever another core
/// filled it.
pub async fn run(ls: Rc<LocalShards>) {
    let Some(hub) = ls.notify_hub.get().cloned() else {
        return;
    };
    let me = ls.executor;
    loop {
        std::future::poll_fn(|cx| {
            let mb = &hub.boxes[me];
            mb.waker.register(cx.waker());
            let ready = mb.queue.lock().map(|q| !q.is_empty()).unwrap_or(false);
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        deliver_pending(&ls, &hub);
    }
}
