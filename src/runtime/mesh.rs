//! Bounded queues between cores: one lane per (sender core, receiver core)
//! pair, drained by the receiver a whole batch at a time.
//!
//! A message costs a lock of its lane (uncontended but by the one receiver)
//! and no allocation once the lane has grown; the receiver is woken once
//! per batch, not once per message (a flag says a wake is already due).
//! A full lane makes [`Sender::send`] wait: a core that outruns another is
//! slowed down instead of queueing without bound. [`Sender::send_now`]
//! never waits, for the messages that free what others wait for (a
//! transaction's unlock): refusing or delaying those could only deadlock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// The receiver is gone (its core stopped).
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

struct Lane<T> {
    items: VecDeque<T>,
    /// Senders waiting for room.
    blocked: Vec<Waker>,
}

struct Inbox<T> {
    lanes: Vec<Mutex<Lane<T>>>,
    capacity: usize,
    /// A wake of the receiver is due (set by senders, cleared by a drain).
    flagged: AtomicBool,
    receiver: Mutex<Option<Waker>>,
    closed: AtomicBool,
}

impl<T> Inbox<T> {
    fn notify(&self) {
        if !self.flagged.swap(true, Ordering::AcqRel) {
            let waker = self.receiver.lock().ok().and_then(|mut w| w.take());
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// Sends from one core to one other.
pub struct Sender<T> {
    lane: usize,
    inbox: Arc<Inbox<T>>,
}

impl<T> Sender<T> {
    /// Queues `msg`, waiting while the lane is full.
    pub async fn send(&self, msg: T) -> Result<(), Closed> {
        let mut msg = Some(msg);
        std::future::poll_fn(|cx| {
            if self.inbox.closed.load(Ordering::Acquire) {
                return Poll::Ready(Err(Closed));
            }
            let Ok(mut lane) = self.inbox.lanes[self.lane].lock() else {
                return Poll::Ready(Err(Closed));
            };
            if lane.items.len() >= self.inbox.capacity {
                lane.blocked.push(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(m) = msg.take() {
                lane.items.push_back(m);
            }
            drop(lane);
            self.inbox.notify();
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues `msg` at once, past the bound if need be.
    pub fn send_now(&self, msg: T) -> Result<(), Closed> {
        if self.inbox.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        match self.inbox.lanes[self.lane].lock() {
            Ok(mut lane) => lane.items.push_back(msg),
            Err(_) => return Err(Closed),
        }
        self.inbox.notify();
        Ok(())
    }
}

/// A core's end of all its lanes.
pub struct Receiver<T> {
    inbox: Arc<Inbox<T>>,
}

impl<T> Receiver<T> {
    /// Waits until some lane holds messages, then moves every queued
    /// message into `out` (each lane's in the order sent).
    pub async fn recv_batch(&mut self, out: &mut Vec<T>) {
        std::future::poll_fn(|cx| {
            if !self.inbox.flagged.swap(false, Ordering::AcqRel) {
                if let Ok(mut w) = self.inbox.receiver.lock() {
                    *w = Some(cx.waker().clone());
                }
                // A sender may have flagged between the check and the waker
                // being stored: look once more.
                if !self.inbox.flagged.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
            }
            for lane in &self.inbox.lanes {
                let blocked = match lane.lock() {
                    Ok(mut l) => {
                        out.extend(l.items.drain(..));
                        std::mem::take(&mut l.blocked)
                    }
                    Err(_) => Vec::new(),
                };
                for w in blocked {
                    w.wake();
                }
            }
            Poll::Ready(())
        })
        .await
    }
}

impl<T> Receiver<T> {
    /// A second handle on this inbox for draining it without awaiting, from
    /// code that must wait synchronously on this core (a script waiting for
    /// another core's answer, see `exec::local`).
    pub fn drain_handle(&self) -> Drain<T> {
        Drain {
            inbox: self.inbox.clone(),
        }
    }
}

/// Drains a core's inbox without awaiting (see [`Receiver::drain_handle`]).
pub struct Drain<T> {
    inbox: Arc<Inbox<T>>,
}

impl<T> Drain<T> {
    /// Moves every queued message into `out`; whether there was any. The
    /// receiver's wake flag is left alone: a wake already due finds the
    /// lanes empty, which costs one look.
    pub fn try_drain(&self, out: &mut Vec<T>) -> bool {
        let before = out.len();
        for lane in &self.inbox.lanes {
            let blocked = match lane.lock() {
                Ok(mut l) if !l.items.is_empty() => {
                    out.extend(l.items.drain(..));
                    std::mem::take(&mut l.blocked)
                }
                _ => Vec::new(),
            };
            for w in blocked {
                w.wake();
            }
        }
        out.len() > before
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.inbox.closed.store(true, Ordering::Release);
        for lane in &self.inbox.lanes {
            let blocked = lane
                .lock()
                .map(|mut l| {
                    l.items.clear();
                    std::mem::take(&mut l.blocked)
                })
                .unwrap_or_default();
            for w in blocked {
                w.wake();
            }
        }
    }
}

/// Queues between `cores` cores, `capacity` messages per lane: for each
/// core, its senders (indexed by receiving core) and its receiver.
pub fn mesh<T>(cores: usize, capacity: usize) -> Vec<(Vec<Sender<T>>, Receiver<T>)> {
    let inboxes: Vec<Arc<Inbox<T>>> = (0..cores)
        .map(|_| {
            Arc::new(Inbox {
                lanes: (0..cores)
                    .map(|_| {
                        Mutex::new(Lane {
                            items: VecDeque::new(),
                            blocked: Vec::new(),
                        })
                    })
                    .collect(),
                capacity: capacity.max(1),
                flagged: AtomicBool::new(false),
                receiver: Mutex::new(None),
                closed: AtomicBool::new(false),
            })
        })
        .collect();
    (0..cores)
        .map(|me| {
            let senders = inboxes
                .iter()
                .map(|inbox| Sender {
                    lane: me,
                    inbox: inbox.clone(),
                })
                .collect();
            (
                senders,
                Receiver {
                    inbox: inboxes[me].clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{executor, spawn};

    #[test]
    fn two_cores_exchange_everything_in_order_through_small_lanes() {
        const N: u64 = 50_000;
        let ends = mesh::<(usize, u64)>(2, 8);
        let threads: Vec<_> = ends
            .into_iter()
            .enumerate()
            .map(|(me, (senders, mut receiver))| {
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    executor::block_on(async move {
                        let other = 1 - me;
                        // Sends all of its messages while receiving the
                        // other's: a full lane makes the sender wait.
                        let sending = spawn(async move {
                            for i in 0..N {
                                senders[other].send((me, i)).await.unwrap();
                            }
                            senders
                        });
                        let mut batch = Vec::new();
                        let mut batches = 0;
                        while got.len() < N as usize {
                            receiver.recv_batch(&mut batch).await;
                            batches += 1;
                            got.append(&mut batch);
                        }
                        let _senders = sending.await;
                        assert!(batches <= N as usize);
                        assert!(got.iter().all(|&(from, _)| from == 1 - me));
                        let order: Vec<u64> = got.iter().map(|&(_, i)| i).collect();
                        assert_eq!(order, (0..N).collect::<Vec<_>>());
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_stopped_receiver_refuses_and_releases_waiting_senders() {
        let mut ends = mesh::<u32>(2, 1);
        let (_, receiver1) = ends.pop().unwrap();
        let (senders0, _) = ends.pop().unwrap();
        executor::block_on(async move {
            senders0[1].send(1).await.unwrap();
            // Past the bound only with send_now.
            senders0[1].send_now(2).unwrap();
            let waiting = spawn(async move {
                let r = senders0[1].send(3).await;
                (r, senders0)
            });
            crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
            drop(receiver1);
            let (r, senders0) = waiting.await.unwrap();
            assert_eq!(r, Err(Closed));
            assert_eq!(senders0[1].send_now(4), Err(Closed));
        })
        .unwrap();
    }
}
