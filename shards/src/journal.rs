//! A shard's journal: the write records it produced and has not handed to
//! the log yet.
//!
//! Records come from two places. The shard itself records the writes nobody
//! asked for: a key found expired, a key evicted, a database flushed. The
//! caller that runs a command brackets it with [`Shard::command_begin`] and
//! [`Shard::command_end`]; if the command wrote, its record is its argument
//! vector, or the deterministic form the command supplied with
//! [`Shard::rewrite`] (relative expiry as `PEXPIREAT`, `SPOP` as `SREM`...).
//!
//! A transaction's records on this shard are grouped into one unit frame
//! between [`Shard::unit_begin`] and [`Shard::unit_end`], so a reader applies
//! all of them or none.
//!
//! The journal is off by default (scratch shards, tests, no persistence):
//! then nothing is encoded and the cost is one branch per write.

use crate::hlc::Hlc;
use crate::record::{self, Op, Record};
use crate::shard::Shard;

/// A command's record in the form replay needs, when its argument vector is
/// not deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub op: Op,
    pub key: Vec<u8>,
    pub args: Vec<Vec<u8>>,
}

impl Rewrite {
    /// A deterministic command, name first.
    pub fn cmd<A: AsRef<[u8]>>(argv: &[A]) -> Rewrite {
        Rewrite {
            op: Op::Cmd,
            key: Vec::new(),
            args: argv.iter().map(|a| a.as_ref().to_vec()).collect(),
        }
    }
}

#[derive(Default)]
pub struct Journal {
    pub(crate) on: bool,
    /// The term records are stamped with.
    pub term: u64,
    /// Framed records ready for the log.
    out: Vec<u8>,
    /// Seq of the last record in `out`.
    out_seq: u64,
    /// The records of an open transaction unit, and how many.
    unit: Option<(Vec<u8>, usize)>,
    /// Seq of the last record produced (in `out` or in the open unit).
    last_seq: u64,
    /// The first HLC time issued since the current command began: the time
    /// its record carries, so replay stamps exactly what the original did.
    pub(crate) first_hlc: Option<Hlc>,
    /// Seq when the current command began, and the writes recorded on their
    /// own since (expiries, evictions), which are not the command's.
    mark: u64,
    implicit: u64,
    rewrite: Option<Rewrite>,
    /// The commit number of the last transaction unit this shard applied.
    last_commit: u64,
}

impl Shard {
    /// Turns recording on or off. Records produced while off are not kept.
    pub fn journal_enable(&mut self, on: bool) {
        let seq = self.seq();
        let j = self.journal_mut();
        j.on = on;
        j.last_seq = seq;
        j.out_seq = seq;
    }

    pub fn journal_on(&self) -> bool {
        self.journal().on
    }

    /// Starts a command: writes from here to [`Shard::command_end`] are its.
    pub fn command_begin(&mut self) {
        let seq = self.seq();
        let j = self.journal_mut();
        if j.on {
            j.mark = seq;
            j.implicit = 0;
            j.rewrite = None;
            j.first_hlc = None;
        }
    }

    /// Whether writes are being recorded (a log or a replication stream
    /// wants them): a handler can skip building a rewrite nobody reads.
    pub fn journaling(&self) -> bool {
        self.journal().on
    }

    /// Replaces the current command's record by a deterministic form.
    pub fn rewrite(&mut self, r: Rewrite) {
        let j = self.journal_mut();
        if j.on {
            j.rewrite = Some(r);
        }
    }

    /// Ends a command run on database `db` with arguments `argv`: records it
    /// if it wrote.
    pub fn command_end(&mut self, db: usize, argv: &[&[u8]]) {
        let seq = self.seq();
        let j = self.journal_mut();
        if !j.on || seq - j.mark <= j.implicit {
            return;
        }
        match j.rewrite.take() {
            Some(r) => {
                let args: Vec<&[u8]> = r.args.iter().map(|a| &a[..]).collect();
                self.emit(db, r.op, &r.key, &args);
            }
            None => self.emit(db, Op::Cmd, b"", argv),
        }
        let j = self.journal_mut();
        j.mark = seq;
        j.implicit = 0;
    }

    /// Records a write the shard made on its own (expiry, eviction, flush).
    pub(crate) fn record_implicit(&mut self, db: usize, op: Op, key: &[u8]) {
        if !self.journal().on {
            return;
        }
        self.journal_mut().implicit += 1;
        // Not the command's time: leave `first_hlc` for the command.
        let hlc = self.hlc_last();
        self.emit_at(db, op, key, &[], hlc);
    }

    /// Records that `key` now holds exactly its current entry (or is gone):
    /// for writes made outside a command, such as keys written back by a
    /// cross-shard command.
    pub fn record_put(&mut self, db: usize, key: &[u8]) {
        if !self.journal().on {
            return;
        }
        match self.entry_bytes_of(db, key) {
            Some(bytes) => self.emit(db, Op::Put, key, &[&bytes]),
            None => self.emit(db, Op::Del, key, &[]),
        }
    }

    /// Records that transaction `commit` is void (see `Op::Abort`).
    pub fn record_abort(&mut self, commit: u64) {
        if self.journal().on {
            let c = commit.to_le_bytes();
            self.emit(0, Op::Abort, b"", &[&c]);
        }
    }

    fn emit(&mut self, db: usize, op: Op, key: &[u8], args: &[&[u8]]) {
        let hlc = match self.journal_mut().first_hlc.take() {
            Some(h) => h,
            None => self.hlc_last(),
        };
        self.emit_at(db, op, key, args, hlc);
    }

    fn emit_at(&mut self, db: usize, op: Op, key: &[u8], args: &[&[u8]], hlc: Hlc) {
        let seq = self.seq();
        let j = self.journal_mut();
        let r = Record {
            seq,
            term: j.term,
            hlc,
            db: db as u8,
            op,
            key,
            args: std::borrow::Cow::Borrowed(args),
        };
        match &mut j.unit {
            Some((body, count)) => {
                record::put_unit_record(body, &r);
                *count += 1;
            }
            None => {
                record::encode_record(&mut j.out, &r);
                j.out_seq = seq;
            }
        }
        j.last_seq = seq;
    }

    /// Opens a transaction unit: records until [`Shard::unit_end`] form one
    /// frame.
    pub fn unit_begin(&mut self) {
        let j = self.journal_mut();
        if j.on && j.unit.is_none() {
            j.unit = Some((Vec::new(), 0));
        }
    }

    /// Whether the open unit holds any record.
    pub fn unit_wrote(&self) -> bool {
        matches!(self.journal().unit, Some((_, n)) if n > 0)
    }

    /// Closes the open unit as transaction `commit` over shards `parts`.
    pub fn unit_end(&mut self, commit: u64, parts: &[u64]) {
        let seq = self.journal().last_seq;
        let j = self.journal_mut();
        if let Some((body, count)) = j.unit.take() {
            if count > 0 {
                record::encode_unit(&mut j.out, commit, parts, count, &body);
                j.out_seq = seq;
                j.last_commit = j.last_commit.max(commit);
            }
        }
    }

    /// The commit number of the last transaction this shard applied.
    pub fn last_commit(&self) -> u64 {
        self.journal().last_commit
    }

    /// Replay and recovery: a transaction `commit` was applied.
    pub fn applied_commit(&mut self, commit: u64) {
        let j = self.journal_mut();
        j.last_commit = j.last_commit.max(commit);
    }

    /// The term records are stamped with.
    pub fn journal_term(&self) -> u64 {
        self.journal().term
    }

    /// Takes the framed records not yet handed out, with the seq of the last.
    pub fn take_journal(&mut self) -> (Vec<u8>, u64) {
        let j = self.journal_mut();
        (std::mem::take(&mut j.out), j.out_seq)
    }

    /// A backup: appends frames exactly as its primary produced them (the
    /// shard applied them with recording paused), ending at `last_seq`.
    pub fn journal_append_frames(&mut self, frames: &[u8], last_seq: u64) {
        let j = self.journal_mut();
        if j.on {
            j.out.extend_from_slice(frames);
            j.out_seq = last_seq;
            j.last_seq = last_seq;
        }
    }

    /// Whether records wait to be taken.
    pub fn journal_pending(&self) -> bool {
        !self.journal().out.is_empty()
    }

    /// Seq of the last record produced, including an open unit's.
    pub fn last_record_seq(&self) -> u64 {
        self.journal().last_seq
    }
}
