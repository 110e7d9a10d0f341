//! Bus frames and the control-plane messages inside them.
//!
//! A frame is `len u32 | crc32 u32 | body` (little-endian, `len` counts the
//! body), and a body is `version u8 | counter varint | kind u8 | fields`;
//! after the hello every body's fields start with the sender's member-list
//! [`Ident`], so the receiver knows which membership the message speaks of.
//! The counter numbers the frames of one connection from 1: a frame that
//! does not carry the next number (a replay, a duplicate, a lost frame) is
//! refused and the link closed. The first frame of a connection is a
//! [`Hello`]; every later one a [`Message`].
//!
//! Everything a peer sends is input: lengths, counts and enum tags are
//! checked, and any error closes the link — the bus never panics on a bad
//! frame and never hands the control plane half a message.

use super::members::{Entry, Ident, MemberList, MAX_MEMBERS};
use crate::config::parse_host_port;
use crate::control::messages::{Message, Ping, Reason};
use crate::control::progress::Progress;
use crate::control::NodeId;

/// The bus protocol's version: a peer speaking another is refused.
pub const VERSION: u8 = 4;
/// The largest body a peer may send (a ping of 1024 shards is ~20 KiB).
pub const MAX_BODY: usize = 256 << 10;
/// Most shards, suspects or commit points one message may list.
const MAX_LIST: u64 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("bad crc32")]
    Crc,
    #[error("protocol version {0}, expected {VERSION}")]
    Version(u8),
    #[error("frame {got} where {want} was due (replayed or out of order)")]
    Counter { got: u64, want: u64 },
    #[error("truncated message")]
    Truncated,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("bad field: {0}")]
    Field(&'static str),
}

/// The first frame on a bus connection: who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `database-name`: a node of another database is refused.
    pub database: String,
    /// The caller's node id as the topology names it.
    pub node: String,
    /// The caller's `masterauth` (empty: none); checked against `requirepass`.
    pub auth: String,
    /// The caller's member list when it called: two nodes that both still
    /// hold their configuration's list (version 0) must list the same
    /// members, or they would number them differently — such a link is
    /// refused.
    pub ident: Ident,
}

/// What a frame after the hello carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carried {
    /// A control-plane message.
    Control(Message),
    /// The sender's member list, for a peer that holds an older one.
    Members(MemberList),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_list(out: &mut Vec<u8>, v: &[u64]) {
    put_varint(out, v.len() as u64);
    for x in v {
        put_varint(out, *x);
    }
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(x) => {
            out.push(1);
            put_varint(out, x);
        }
    }
}

fn put_ident(out: &mut Vec<u8>, i: &Ident) {
    put_varint(out, i.version);
    put_varint(out, i.term);
    put_varint(out, u64::from(i.digest));
}

fn put_addr(out: &mut Vec<u8>, a: &(String, u16)) {
    put_text(out, &format!("{}:{}", a.0, a.1));
}

fn put_members(out: &mut Vec<u8>, l: &MemberList) {
    put_varint(out, l.version);
    put_varint(out, l.term);
    put_varint(out, u64::from(l.next_id));
    put_varint(out, l.members.len() as u64);
    for e in &l.members {
        put_varint(out, u64::from(e.id));
        put_text(out, &e.name);
        put_text(out, &e.zone);
        put_text(out, &e.region);
        put_addr(out, &e.client);
        put_addr(out, &e.bus);
        out.push(u8::from(e.arbiter) | u8::from(e.voter) << 1);
        put_text(out, e.replaces.as_deref().unwrap_or(""));
    }
}

fn put_progress(out: &mut Vec<u8>, p: &Progress) {
    put_varint(out, p.history);
    put_list(out, &p.seqs);
}

/// Reads fields off a body, refusing anything short or out of range.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let (&x, rest) = self.b.split_first().ok_or(WireError::Truncated)?;
        self.b = rest;
        Ok(x)
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Field("varint longer than 10 bytes"))
    }

    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Field("boolean")),
        }
    }

    fn text(&mut self) -> Result<String, WireError> {
        let n = self.varint()?;
        if n > self.b.len() as u64 {
            return Err(WireError::Truncated);
        }
        let (s, rest) = self.b.split_at(n as usize);
        self.b = rest;
        String::from_utf8(s.to_vec()).map_err(|_| WireError::Field("text is not UTF-8"))
    }

    fn list(&mut self) -> Result<Vec<u64>, WireError> {
        let n = self.varint()?;
        if n > MAX_LIST || n > self.b.len() as u64 {
            return Err(WireError::Field("list length"));
        }
        (0..n).map(|_| self.varint()).collect()
    }

    fn opt(&mut self) -> Result<Option<u64>, WireError> {
        Ok(if self.bool()? {
            Some(self.varint()?)
        } else {
            None
        })
    }

    fn node(&mut self) -> Result<NodeId, WireError> {
        NodeId::try_from(self.varint()?).map_err(|_| WireError::Field("node id"))
    }

    fn ident(&mut self) -> Result<Ident, WireError> {
        Ok(Ident {
            version: self.varint()?,
            term: self.varint()?,
            digest: u32::try_from(self.varint()?).map_err(|_| WireError::Field("digest"))?,
        })
    }

    fn addr(&mut self) -> Result<(String, u16), WireError> {
        parse_host_port(&self.text()?).ok_or(WireError::Field("address"))
    }

    fn members(&mut self) -> Result<MemberList, WireError> {
        let version = self.varint()?;
        let term = self.varint()?;
        let next_id = self.node()?;
        let n = self.varint()?;
        if n > MAX_MEMBERS as u64 || n > self.b.len() as u64 {
            return Err(WireError::Field("member count"));
        }
        let mut members: Vec<Entry> = Vec::new();
        for _ in 0..n {
            let id = self.node()?;
            let name = self.text()?;
            let (zone, region) = (self.text()?, self.text()?);
            let (client, bus) = (self.addr()?, self.addr()?);
            let flags = self.u8()?;
            if flags > 3 {
                return Err(WireError::Field("member flags"));
            }
            let replaces = Some(self.text()?).filter(|r| !r.is_empty());
            if id >= next_id || members.iter().any(|e| e.id >= id || e.name == name) {
                return Err(WireError::Field("member ids out of order or repeated"));
            }
            let e = Entry {
                id,
                name,
                zone,
                region,
                client,
                bus,
                arbiter: flags & 1 != 0,
                voter: flags & 2 != 0,
                replaces,
            };
            e.check().map_err(WireError::Field)?;
            members.push(e);
        }
        Ok(MemberList {
            version,
            term,
            next_id,
            members,
        })
    }

    fn progress(&mut self) -> Result<Progress, WireError> {
        Ok(Progress {
            history: self.varint()?,
            seqs: self.list()?,
        })
    }

    fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Field("trailing bytes"))
        }
    }
}

fn reason_code(r: Reason) -> u8 {
    match r {
        Reason::Failover => 0,
        Reason::SplitBrain => 1,
        Reason::Forced => 2,
        Reason::Handover => 3,
    }
}

fn reason_of(c: u8) -> Result<Reason, WireError> {
    match c {
        0 => Ok(Reason::Failover),
        1 => Ok(Reason::SplitBrain),
        2 => Ok(Reason::Forced),
        3 => Ok(Reason::Handover),
        _ => Err(WireError::Field("election reason")),
    }
}

/// Appends one frame holding `body` to `out`.
fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

fn head(counter: u64, kind: u8) -> Vec<u8> {
    let mut b = vec![VERSION];
    put_varint(&mut b, counter);
    b.push(kind);
    b
}

/// The frame of a connection's hello (its counter is 1).
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let mut b = head(1, b'H');
    put_text(&mut b, &h.database);
    put_text(&mut b, &h.node);
    put_text(&mut b, &h.auth);
    put_ident(&mut b, &h.ident);
    let mut out = Vec::new();
    frame(&mut out, &b);
    out
}

/// The frame of message number `counter` on its connection, sent by a
/// node holding the list `ident`.
pub fn encode_message(counter: u64, ident: &Ident, c: &Carried) -> Vec<u8> {
    let mut b;
    let m = match c {
        Carried::Control(m) => m,
        Carried::Members(l) => {
            b = head(counter, b'M');
            put_ident(&mut b, ident);
            put_members(&mut b, l);
            let mut out = Vec::new();
            frame(&mut out, &b);
            return out;
        }
    };
    match m {
        Message::Ping(p) => {
            b = head(counter, b'P');
            put_ident(&mut b, ident);
            put_varint(&mut b, p.term);
            put_varint(&mut b, p.sent_at);
            put_opt(&mut b, p.echo);
            put_opt(&mut b, p.primary.map(u64::from));
            b.push(p.open as u8);
            put_progress(&mut b, &p.progress);
            put_list(&mut b, &p.commit);
            let suspects: Vec<u64> = p.suspects.iter().map(|s| u64::from(*s)).collect();
            put_list(&mut b, &suspects);
            b.push(p.paused as u8);
            b.push(p.serving as u8);
        }
        Message::RequestVote {
            term,
            pre,
            progress,
            reason,
        } => {
            b = head(counter, b'R');
            put_ident(&mut b, ident);
            put_varint(&mut b, *term);
            b.push(*pre as u8);
            put_progress(&mut b, progress);
            b.push(reason_code(*reason));
        }
        Message::Vote {
            term,
            pre,
            granted,
            progress,
        } => {
            b = head(counter, b'V');
            put_ident(&mut b, ident);
            put_varint(&mut b, *term);
            b.push(*pre as u8);
            b.push(*granted as u8);
            put_progress(&mut b, progress);
        }
        Message::Handover { term } => {
            b = head(counter, b'F');
            put_ident(&mut b, ident);
            put_varint(&mut b, *term);
        }
    }
    let mut out = Vec::new();
    frame(&mut out, &b);
    out
}

/// A body checked for version and counter, with its kind.
fn open(body: &[u8], want: u64) -> Result<(u8, Reader<'_>), WireError> {
    let mut r = Reader { b: body };
    let v = r.u8()?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let got = r.varint()?;
    if got != want {
        return Err(WireError::Counter { got, want });
    }
    Ok((r.u8()?, r))
}

/// Decodes a hello body (the connection's first frame).
pub fn decode_hello(body: &[u8]) -> Result<Hello, WireError> {
    let (kind, mut r) = open(body, 1)?;
    if kind != b'H' {
        return Err(WireError::Kind(kind));
    }
    let h = Hello {
        database: r.text()?,
        node: r.text()?,
        auth: r.text()?,
        ident: r.ident()?,
    };
    r.end()?;
    Ok(h)
}

/// Decodes the body of frame number `counter` on its connection: the
/// sender's list and what the frame carries.
pub fn decode_message(body: &[u8], counter: u64) -> Result<(Ident, Carried), WireError> {
    let (kind, mut r) = open(body, counter)?;
    if !b"PRVFM".contains(&kind) {
        return Err(WireError::Kind(kind));
    }
    let ident = r.ident()?;
    if kind == b'M' {
        let l = r.members()?;
        r.end()?;
        return Ok((ident, Carried::Members(l)));
    }
    let m = match kind {
        b'P' => Message::Ping(Ping {
            term: r.varint()?,
            sent_at: r.varint()?,
            echo: r.opt()?,
            primary: match r.opt()? {
                Some(p) => Some(NodeId::try_from(p).map_err(|_| WireError::Field("primary"))?),
                None => None,
            },
            open: r.bool()?,
            progress: r.progress()?,
            commit: r.list()?,
            suspects: {
                let n = r.varint()?;
                if n > MAX_LIST {
                    return Err(WireError::Field("list length"));
                }
                (0..n).map(|_| r.node()).collect::<Result<_, _>>()?
            },
            paused: r.bool()?,
            serving: r.bool()?,
        }),
        b'R' => Message::RequestVote {
            term: r.varint()?,
            pre: r.bool()?,
            progress: r.progress()?,
            reason: reason_of(r.u8()?)?,
        },
        b'V' => Message::Vote {
            term: r.varint()?,
            pre: r.bool()?,
            granted: r.bool()?,
            progress: r.progress()?,
        },
        b'F' => Message::Handover { term: r.varint()? },
        k => return Err(WireError::Kind(k)),
    };
    r.end()?;
    Ok((ident, Carried::Control(m)))
}

/// Splits the next frame off `buf`: `Ok(None)` while it is incomplete,
/// else its body and the bytes it used.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_BODY {
        return Err(WireError::TooLong(len));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[8..8 + len];
    if crc32fast::hash(body) != crc {
        return Err(WireError::Crc);
    }
    Ok(Some((body, 8 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Ident = Ident {
        version: 3,
        term: 9,
        digest: 0xfeed,
    };

    fn samples() -> Vec<Carried> {
        let list = MemberList {
            version: 3,
            term: 9,
            next_id: 5,
            members: vec![
                Entry {
                    id: 0,
                    name: "a".into(),
                    zone: "z1".into(),
                    region: "r".into(),
                    client: ("10.0.0.1".into(), 6379),
                    bus: ("10.0.0.1".into(), 26379),
                    arbiter: false,
                    voter: true,
                    replaces: None,
                },
                Entry {
                    id: 4,
                    name: "e".into(),
                    zone: "z3".into(),
                    region: "".into(),
                    client: ("host.example".into(), 7000),
                    bus: ("host.example".into(), 27000),
                    arbiter: true,
                    voter: false,
                    replaces: Some("c".into()),
                },
            ],
        };
        let mut v: Vec<Carried> = control().into_iter().map(Carried::Control).collect();
        v.push(Carried::Members(list));
        v
    }

    fn control() -> Vec<Message> {
        vec![
            Message::Ping(Ping {
                term: 7,
                sent_at: 123_456,
                echo: Some(99),
                primary: Some(2),
                open: true,
                progress: Progress {
                    history: 6,
                    seqs: vec![1, 300, u64::MAX],
                },
                commit: vec![0, 5, 9],
                suspects: vec![1, 3],
                paused: false,
                serving: true,
            }),
            Message::Ping(Ping {
                term: 0,
                sent_at: 0,
                echo: None,
                primary: None,
                open: false,
                progress: Progress::default(),
                commit: vec![],
                suspects: vec![],
                paused: true,
                serving: false,
            }),
            Message::RequestVote {
                term: 8,
                pre: true,
                progress: Progress {
                    history: 7,
                    seqs: vec![4, 4],
                },
                reason: Reason::SplitBrain,
            },
            Message::Handover { term: 9 },
            Message::Vote {
                term: 8,
                pre: false,
                granted: true,
                progress: Progress {
                    history: 7,
                    seqs: vec![3, 5],
                },
            },
        ]
    }

    #[test]
    fn messages_round_trip() {
        for (i, m) in samples().into_iter().enumerate() {
            let f = encode_message(i as u64 + 2, &ID, &m);
            let (body, used) = split_frame(&f).unwrap().unwrap();
            assert_eq!(used, f.len());
            assert_eq!(decode_message(body, i as u64 + 2).unwrap(), (ID, m));
        }
        let h = Hello {
            database: "keel".into(),
            node: "a".into(),
            auth: "pw".into(),
            ident: ID,
        };
        let f = encode_hello(&h);
        let (body, _) = split_frame(&f).unwrap().unwrap();
        assert_eq!(decode_hello(body).unwrap(), h);
    }

    #[test]
    fn a_replayed_or_skipped_frame_is_refused() {
        let m = &samples()[0];
        let f = encode_message(5, &ID, m);
        let (body, _) = split_frame(&f).unwrap().unwrap();
        assert_eq!(
            decode_message(body, 6),
            Err(WireError::Counter { got: 5, want: 6 })
        );
        assert_eq!(
            decode_message(body, 4),
            Err(WireError::Counter { got: 5, want: 4 })
        );
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused_never_a_panic() {
        for m in samples() {
            let f = encode_message(3, &ID, &m);
            for cut in 0..f.len() {
                assert!(matches!(split_frame(&f[..cut]), Ok(None)));
            }
            for i in 0..f.len() {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[i] ^= 1 << bit;
                    // Only a flip in the length can pass the crc (a shorter
                    // body): then it must not decode to the message.
                    if let Ok(Some((body, _))) = split_frame(&g) {
                        assert_ne!(decode_message(body, 3).ok(), Some((ID, m.clone())));
                    }
                }
            }
            // Garbage bodies with a valid crc: decoded or refused, never a panic.
            let (body, _) = split_frame(&f).unwrap().unwrap();
            for cut in 0..body.len() {
                assert!(decode_message(&body[..cut], 3).is_err());
            }
        }
        let mut big = Vec::new();
        big.extend_from_slice(&((MAX_BODY + 1) as u32).to_le_bytes());
        big.extend_from_slice(&[0; 8]);
        assert_eq!(split_frame(&big), Err(WireError::TooLong(MAX_BODY + 1)));
    }

    #[test]
    fn wrong_version_and_kind_are_refused() {
        let mut b = vec![9u8, 1, b'P'];
        assert_eq!(decode_message(&b, 1), Err(WireError::Version(9)));
        b[0] = VERSION;
        b[2] = b'Z';
        assert_eq!(decode_message(&b, 1), Err(WireError::Kind(b'Z')));
        assert_eq!(decode_hello(&b), Err(WireError::Kind(b'Z')));
    }
}
