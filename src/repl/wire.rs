//! The messages inside link frames. The first byte names the message.
//!
//! backup → primary: `Hello` once, then `Ack`s.
//! primary → backup: `Welcome` (or `Refused`), for a full sync `Snapshot`
//! chunks, then `Data` (whole write-record frames) and `Ping`s when idle.

use super::link::{put_bytes, put_u64, Cursor, LinkError};

pub const VERSION: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u64,
    pub shards: u64,
    pub shard: u64,
    pub history: u64,
    pub term: u64,
    pub seq: u64,
    pub node_id: String,
    pub zone: String,
    pub client_port: u64,
    /// The backup's masterauth (empty: none).
    pub auth: String,
    /// A new primary pulling what it lacks before it opens (see
    /// `crate::cluster`): any node may serve it, backups included.
    pub pull: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub full: bool,
    pub history: u64,
    pub term: u64,
    /// Partial: the backup's seq; full: the snapshot's.
    pub from_seq: u64,
    pub node_id: String,
    pub zone: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<'a> {
    Hello(Hello),
    Welcome(Welcome),
    Refused(String),
    /// Frames of a snapshot (header, puts, end).
    Snapshot(&'a [u8]),
    /// Write-record frames; the primary was at `primary_seq` at `at_ms`.
    Data {
        primary_seq: u64,
        at_ms: u64,
        frames: &'a [u8],
    },
    Ping {
        primary_seq: u64,
        at_ms: u64,
    },
    Ack {
        seq: u64,
    },
    /// primary → a diverged backup (a split brain's loser): send your records
    /// after `after` (the fork point) before you resync.
    MergeAsk {
        after: u64,
    },
    /// backup → primary: some of those records (whole frames).
    MergeData(&'a [u8]),
    /// backup → primary: that was all; `complete` is false when the backlog
    /// no longer held every record since the fork.
    MergeEnd {
        complete: bool,
    },
}

fn text(c: &mut Cursor<'_>) -> Result<String, LinkError> {
    Ok(String::from_utf8_lossy(c.bytes()?).into_owned())
}

impl Msg<'_> {
    /// Sets the primary's seq in an encoded `Data` message (its head is
    /// written before the records are known).
    pub fn set_data_primary_seq(encoded: &mut [u8], primary_seq: u64) {
        if encoded.first() == Some(&b'D') && encoded.len() >= 9 {
            encoded[1..9].copy_from_slice(&primary_seq.to_le_bytes());
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Msg::Hello(h) => {
                out.push(b'H');
                for v in [h.version, h.shards, h.shard, h.history, h.term, h.seq] {
                    put_u64(out, v);
                }
                put_bytes(out, h.node_id.as_bytes());
                put_bytes(out, h.zone.as_bytes());
                put_u64(out, h.client_port);
                put_bytes(out, h.auth.as_bytes());
                put_u64(out, h.pull as u64);
            }
            Msg::Welcome(w) => {
                out.push(b'W');
                for v in [w.full as u64, w.history, w.term, w.from_seq] {
                    put_u64(out, v);
                }
                put_bytes(out, w.node_id.as_bytes());
                put_bytes(out, w.zone.as_bytes());
                put_bytes(out, w.why.as_bytes());
            }
            Msg::Refused(why) => {
                out.push(b'E');
                put_bytes(out, why.as_bytes());
            }
            Msg::Snapshot(b) => {
                out.push(b'S');
                out.extend_from_slice(b);
            }
            Msg::Data {
                primary_seq,
                at_ms,
                frames,
            } => {
                out.push(b'D');
                put_u64(out, *primary_seq);
                put_u64(out, *at_ms);
                out.extend_from_slice(frames);
            }
            Msg::Ping { primary_seq, at_ms } => {
                out.push(b'P');
                put_u64(out, *primary_seq);
                put_u64(out, *at_ms);
            }
            Msg::Ack { seq } => {
                out.push(b'A');
                put_u64(out, *seq);
            }
            Msg::MergeAsk { after } => {
                out.push(b'M');
                put_u64(out, *after);
            }
            Msg::MergeData(b) => {
                out.push(b'm');
                out.extend_from_slice(b);
            }
            Msg::MergeEnd { complete } => {
                out.push(b'e');
                put_u64(out, *complete as u64);
            }
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Msg<'_>, LinkError> {
        let mut c = Cursor::new(payload);
        Ok(match c.u8()? {
            b'H' => Msg::Hello(Hello {
                version: c.u64()?,
                shards: c.u64()?,
                shard: c.u64()?,
                history: c.u64()?,
                term: c.u64()?,
                seq: c.u64()?,
                node_id: text(&mut c)?,
                zone: text(&mut c)?,
                client_port: c.u64()?,
                auth: text(&mut c)?,
                pull: c.u64()? != 0,
            }),
            b'W' => Msg::Welcome(Welcome {
                full: c.u64()? != 0,
                history: c.u64()?,
                term: c.u64()?,
                from_seq: c.u64()?,
                node_id: text(&mut c)?,
                zone: text(&mut c)?,
                why: text(&mut c)?,
            }),
            b'E' => Msg::Refused(text(&mut c)?),
            b'S' => Msg::Snapshot(c.rest()),
            b'D' => Msg::Data {
                primary_seq: c.u64()?,
                at_ms: c.u64()?,
                frames: c.rest(),
            },
            b'P' => Msg::Ping {
                primary_seq: c.u64()?,
                at_ms: c.u64()?,
            },
            b'A' => Msg::Ack { seq: c.u64()? },
            b'M' => Msg::MergeAsk { after: c.u64()? },
            b'm' => Msg::MergeData(c.rest()),
            b'e' => Msg::MergeEnd {
                complete: c.u64()? != 0,
            },
            _ => return Err(LinkError::Malformed("unknown message")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_head_written_first_takes_its_seq_later() {
        let mut out = Vec::new();
        Msg::Data {
            primary_seq: 0,
            at_ms: 5,
            frames: &[],
        }
        .encode(&mut out);
        out.extend_from_slice(b"records");
        Msg::set_data_primary_seq(&mut out, 42);
        match Msg::decode(&out) {
            Ok(Msg::Data {
                primary_seq: 42,
                at_ms: 5,
                frames: b"records",
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            Msg::Hello(Hello {
                version: VERSION,
                shards: 4,
                shard: 3,
                history: 0xabc,
                term: 2,
                seq: 99,
                node_id: "n2".into(),
                zone: "z2".into(),
                client_port: 6379,
                auth: "pw".into(),
                pull: true,
            }),
            Msg::Welcome(Welcome {
                full: true,
                history: 7,
                term: 1,
                from_seq: 5,
                node_id: "n1".into(),
                zone: "z1".into(),
                why: "history differs".into(),
            }),
            Msg::Refused("no".into()),
            Msg::Snapshot(b"frames"),
            Msg::Data {
                primary_seq: 10,
                at_ms: 11,
                frames: b"xyz",
            },
            Msg::Ping {
                primary_seq: 1,
                at_ms: 2,
            },
            Msg::Ack { seq: 42 },
            Msg::MergeAsk { after: 17 },
            Msg::MergeData(b"frames"),
            Msg::MergeEnd { complete: true },
        ];
        for m in msgs {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(Msg::decode(&out).unwrap(), m);
            // Cut short, a message is malformed, never misread.
            // (raw byte tails excepted: their length is the frame's)
            if out.len() > 1
                && !matches!(m, Msg::Snapshot(_) | Msg::Data { .. } | Msg::MergeData(_))
            {
                assert!(Msg::decode(&out[..out.len() - 1]).is_err());
            }
        }
    }
}
