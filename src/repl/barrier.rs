//! Transactions stay whole on a backup. A transaction that wrote on several
//! shards reaches a backup as one unit per shard, each on its own stream.
//! Each backup shard leaves its part here and stops its stream; the shard
//! whose part completes the set applies every part at once under the
//! node's transaction locks (so no reader sees half of it), then lets the
//! others go on. Units arrive on every stream in commit order, so the
//! lowest pending commit always completes: no cycle of waits.
//!
//! A part may never come: the shard's full sync brought a snapshot that
//! already holds it. [`Barrier::settle`] marks such parts present.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::channel::oneshot;

struct Rendezvous {
    parts: Vec<u64>,
    /// The frames each shard left (None: already in the shard).
    have: HashMap<usize, Option<Vec<u8>>>,
    waiters: Vec<oneshot::Sender<()>>,
}

/// A complete transaction: the frames to apply, per shard, and the streams
/// to release afterwards.
pub struct Ready {
    pub commit: u64,
    pub shards: Vec<usize>,
    pub frames: Vec<(usize, Vec<u8>)>,
    pub waiters: Vec<oneshot::Sender<()>>,
}

pub enum Deposit {
    /// Other parts are missing: wait for whoever completes the set.
    Wait(oneshot::Receiver<()>),
    /// This part completed the set: the caller applies it.
    Apply(Ready),
}

#[derive(Default)]
struct Inner {
    pending: HashMap<u64, Rendezvous>,
    /// Per shard, the last transaction its loaded snapshot holds: its parts
    /// of transactions up to there will never arrive on its stream.
    horizons: HashMap<usize, u64>,
}

#[derive(Default)]
pub struct Barrier {
    inner: Mutex<Inner>,
}

impl Barrier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaves shard `shard`'s part (`frame`) of transaction `commit` over
    /// `parts`. A part left again (after a resync) replaces the first.
    pub fn deposit(&self, commit: u64, parts: &[u64], shard: usize, frame: Vec<u8>) -> Deposit {
        let mut inner = self.lock();
        let Inner { pending, horizons } = &mut *inner;
        let r = pending.entry(commit).or_insert_with(|| Rendezvous {
            parts: parts.to_vec(),
            have: HashMap::new(),
            waiters: Vec::new(),
        });
        r.have.insert(shard, Some(frame));
        // Parts a snapshot already brought are present.
        for &p in parts {
            let p = p as usize;
            if p != shard && horizons.get(&p).is_some_and(|&h| h >= commit) {
                r.have.insert(p, None);
            }
        }
        if let Some(ready) = take_if_complete(pending, commit) {
            return Deposit::Apply(ready);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(r) = pending.get_mut(&commit) {
            r.waiters.push(tx);
        }
        Deposit::Wait(rx)
    }

    /// Shard `shard` loaded a snapshot holding every transaction up to
    /// `horizon`: its parts of those are present. Returns the transactions
    /// this completes, for the caller to apply.
    pub fn settle(&self, shard: usize, horizon: u64) -> Vec<Ready> {
        let mut inner = self.lock();
        let Inner { pending, horizons } = &mut *inner;
        // (a new snapshot replaces what an older one said)
        horizons.insert(shard, horizon);
        let commits: Vec<u64> = pending
            .iter()
            .filter(|(c, r)| **c <= horizon && r.parts.contains(&(shard as u64)))
            .map(|(c, _)| *c)
            .collect();
        let mut out = Vec::new();
        for c in commits {
            if let Some(r) = pending.get_mut(&c) {
                r.have.insert(shard, None);
            }
            out.extend(take_if_complete(pending, c));
        }
        out
    }

    /// Transactions waiting for parts (for INFO).
    pub fn waiting(&self) -> usize {
        self.lock().pending.len()
    }
}

fn take_if_complete(pending: &mut HashMap<u64, Rendezvous>, commit: u64) -> Option<Ready> {
    let r = pending.get(&commit)?;
    if !r.parts.iter().all(|p| r.have.contains_key(&(*p as usize))) {
        return None;
    }
    let r = pending.remove(&commit)?;
    let mut shards: Vec<usize> = r.parts.iter().map(|&p| p as usize).collect();
    shards.sort_unstable();
    shards.dedup();
    let frames = r
        .have
        .into_iter()
        .filter_map(|(s, f)| f.map(|f| (s, f)))
        .collect();
    Some(Ready {
        commit,
        shards,
        frames,
        waiters: r.waiters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_part_applies_and_releases_the_others() {
        let b = Barrier::default();
        let Deposit::Wait(mut rx) = b.deposit(7, &[0, 2], 2, vec![2]) else {
            panic!("one part of two cannot complete");
        };
        let Deposit::Apply(ready) = b.deposit(7, &[0, 2], 0, vec![0]) else {
            panic!("the second part completes");
        };
        assert_eq!(ready.shards, vec![0, 2]);
        let mut frames = ready.frames.clone();
        frames.sort();
        assert_eq!(frames, vec![(0, vec![0]), (2, vec![2])]);
        assert!(rx.try_recv().unwrap().is_none());
        for w in ready.waiters {
            w.send(()).unwrap();
        }
        assert_eq!(rx.try_recv().unwrap(), Some(()));
        assert_eq!(b.waiting(), 0);
    }

    #[test]
    fn a_snapshot_settles_parts_it_holds() {
        let b = Barrier::default();
        assert!(matches!(
            b.deposit(3, &[0, 1], 0, vec![0]),
            Deposit::Wait(_)
        ));
        assert!(matches!(
            b.deposit(9, &[0, 1], 0, vec![9]),
            Deposit::Wait(_)
        ));
        // Shard 1's snapshot holds transactions up to 5: commit 3 completes
        // with shard 0's part only; commit 9 still waits.
        let ready = b.settle(1, 5);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].commit, 3);
        assert_eq!(ready[0].frames, vec![(0, vec![0])]);
        assert_eq!(b.waiting(), 1);
        // A part that arrives after the snapshot settled: shard 1 already
        // holds its half of commit 4, so shard 0's completes it at once.
        let Deposit::Apply(ready) = b.deposit(4, &[0, 1], 0, vec![4]) else {
            panic!("shard 1's part of commit 4 came with its snapshot");
        };
        assert_eq!(ready.frames, vec![(0, vec![4])]);
        assert_eq!(b.waiting(), 1);
    }
}
