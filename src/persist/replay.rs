//! Applying write records to a shard: what recovery does with a log tail
//! and what a backup will do with its primary's stream.
//!
//! Replay runs every command with time frozen at zero, so nothing expires
//! lazily and nothing reads the wall clock: expiries arrive as their own
//! `Del` records, in the order they happened, and every record forces the
//! HLC time the original write took.

use keel_shards::entry_codec::decode_entry;
use keel_shards::record::{Frame, FrameError, Op, Record};
use keel_shards::Shard;

use crate::cmd::{strings, Ctx};
use crate::exec::command::{self, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("record {seq}: unknown command {name:?}")]
    UnknownCommand { seq: u64, name: String },
    #[error("record {seq}: {op:?} record is malformed")]
    Malformed { seq: u64, op: Op },
    #[error("record {seq}: bad entry: {err}")]
    Entry { seq: u64, err: FrameError },
    #[error("a snapshot frame inside a log")]
    UnexpectedFrame,
}

/// Applies one frame of a log (a record or a whole transaction unit).
pub fn apply_frame(s: &mut Shard, frame: &Frame<'_>) -> Result<(), ReplayError> {
    match frame {
        Frame::Record(r) => apply_record(s, r),
        Frame::Unit {
            commit, records, ..
        } => {
            records.iter().try_for_each(|r| apply_record(s, r))?;
            s.applied_commit(*commit);
            Ok(())
        }
        Frame::Header(_) | Frame::End { .. } => Err(ReplayError::UnexpectedFrame),
    }
}

/// Applies one record; the shard ends at the record's seq and time.
pub fn apply_record(s: &mut Shard, r: &Record<'_>) -> Result<(), ReplayError> {
    let db = r.db as usize;
    if db >= keel_shards::STORED_DBS {
        return Err(ReplayError::Malformed {
            seq: r.seq,
            op: r.op,
        });
    }
    let ctx = Ctx {
        db,
        now_ms: 0,
        max_string: usize::MAX,
        no_touch: false,
        client: 0,
        track: false,
    };
    s.replay_at(r.hlc);
    let malformed = || ReplayError::Malformed {
        seq: r.seq,
        op: r.op,
    };
    match r.op {
        Op::Cmd => {
            let name = r.args.first().ok_or_else(malformed)?;
            let spec = command::lookup(name).ok_or_else(|| ReplayError::UnknownCommand {
                seq: r.seq,
                name: String::from_utf8_lossy(name).into_owned(),
            })?;
            // Records come from disk or from a peer: a command with the
            // wrong number of arguments is refused, never run.
            if !spec.arity_ok(r.args.len()) {
                return Err(malformed());
            }
            let Kind::Keyed(f, _) = spec.kind else {
                return Err(ReplayError::UnknownCommand {
                    seq: r.seq,
                    name: spec.name.to_string(),
                });
            };
            // The original wrote and so was valid: an error here would be the
            // command's own deterministic outcome, same as the first time.
            if let Err(e) = f(s, &ctx, &r.args) {
                tracing::debug!(seq = r.seq, "replayed command answered {e}");
            }
        }
        Op::Del => {
            s.delete(db, r.key, 0);
        }
        Op::Put => {
            let bytes = r.args.first().ok_or_else(malformed)?;
            let entry =
                decode_entry(bytes).map_err(|err| ReplayError::Entry { seq: r.seq, err })?;
            s.set(db, r.key, entry, 0);
        }
        Op::FlushDb => {
            s.flush_db(db);
        }
        Op::IncrTo => {
            let value = r.args.first().ok_or_else(malformed)?;
            strings::store_keeping_ttl(s, &ctx, r.key, value);
        }
        // Recovery settles aborted transactions before it replays.
        Op::Abort => {}
    }
    s.replayed(r.seq, r.hlc);
    Ok(())
}

#[cfg(test)]
mod tests;
