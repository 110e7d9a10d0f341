//! The simulated network: delays, drops, duplicates, reordering, partitions and
//! flapping links, all decided by the world's seeded generator.
//!
//! Messages wait in a queue ordered by delivery time and then by send order, so two
//! runs with the same seed deliver the same messages at the same instants. Faults
//! are judged at delivery time as well as at send time: a partition that starts
//! while a message is in flight drops it, as a cut cable would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::super::rng::SeededRng;
use super::super::NodeId;

/// Link behaviour.
#[derive(Clone, Debug)]
pub struct LinkModel {
    /// One-way delay inside a zone, ms.
    pub same_zone_delay: u64,
    /// One-way delay across zones, ms.
    pub cross_zone_delay: u64,
    /// Extra random delay, up to this many ms (reorders messages).
    pub jitter: u64,
    /// Probability a message is dropped.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            same_zone_delay: 0,
            cross_zone_delay: 1,
            jitter: 2,
            drop: 0.01,
            duplicate: 0.01,
        }
    }
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct InFlight<M> {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: M,
}

/// The queue of messages in flight plus the partition and link state.
pub struct Network<M> {
    pub model: LinkModel,
    /// Partition group per node (index = node id); nodes talk only within a group.
    pub group: Vec<u32>,
    /// Links that are currently cut both ways (flapping nemesis), as (a, b), a < b.
    pub cut: Vec<(NodeId, NodeId)>,
    zones: Vec<u16>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<InFlight<M>>>,
    free: Vec<usize>,
    seq: u64,
}

impl<M: Clone> Network<M> {
    pub fn new(model: LinkModel, zones: Vec<u16>) -> Self {
        Network {
            model,
            group: vec![0; zones.len()],
            cut: Vec::new(),
            zones,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// Whether `a` and `b` can currently exchange messages.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        let (x, y) = (a.min(b), a.max(b));
        self.group[a as usize] == self.group[b as usize] && !self.cut.contains(&(x, y))
    }

    /// Sends `msg` at `now`; it may be dropped, delayed or duplicated.
    pub fn send(&mut self, rng: &mut SeededRng, now: u64, from: NodeId, to: NodeId, msg: M) {
        if !self.connected(from, to) || rng.chance(self.model.drop) {
            return;
        }
        let copies = if rng.chance(self.model.duplicate) {
            2
        } else {
            1
        };
        let base = if self.zones[from as usize] == self.zones[to as usize] {
            self.model.same_zone_delay
        } else {
            self.model.cross_zone_delay
        };
        if copies == 2 {
            let at = now + base + rng.range(0, self.model.jitter);
            self.push(
                at,
                InFlight {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        let at = now + base + rng.range(0, self.model.jitter);
        self.push(at, InFlight { from, to, msg });
    }

    /// Puts a message back for later delivery (its receiver is paused).
    pub fn push(&mut self, at: u64, m: InFlight<M>) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(m);
                i
            }
            None => {
                self.slots.push(Some(m));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// The next message due at or before `now`, if any (still subject to faults).
    pub fn pop_due(&mut self, now: u64) -> Option<InFlight<M>> {
        loop {
            let Reverse((at, _, slot)) = *self.queue.peek()?;
            if at > now {
                return None;
            }
            self.queue.pop();
            let m = self.slots[slot].take();
            self.free.push(slot);
            match m {
                Some(m) if self.connected(m.from, m.to) => return Some(m),
                _ => continue,
            }
        }
    }
}
