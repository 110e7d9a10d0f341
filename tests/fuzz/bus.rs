//! The cluster bus: frames (length, crc32), the numbered messages of a
//! connection, and the control-plane messages inside them.

use keel::cluster::members::Ident;
use keel::cluster::wire::{
    decode_hello, decode_message, encode_hello, encode_message, split_frame, Carried, Hello,
    WireError, MAX_BODY, VERSION,
};
use keel::control::{Message, Ping, Progress, Reason};
use proptest::prelude::*;

use crate::{bytes, config, cuts, largest_allocation, mutate, mutations};

fn progress() -> impl Strategy<Value = Progress> {
    (any::<u64>(), prop::collection::vec(any::<u64>(), 0..6))
        .prop_map(|(history, seqs)| Progress { history, seqs })
}

fn reason() -> impl Strategy<Value = Reason> {
    prop::sample::select(vec![
        Reason::Failover,
        Reason::SplitBrain,
        Reason::Forced,
        Reason::Handover,
    ])
}

fn message() -> impl Strategy<Value = Message> {
    let ping = (
        (
            any::<u64>(),
            any::<u64>(),
            any::<Option<u64>>(),
            any::<Option<u32>>(),
        ),
        (
            any::<bool>(),
            progress(),
            prop::collection::vec(any::<u64>(), 0..6),
        ),
        (
            prop::collection::vec(any::<u32>(), 0..6),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (term, sent_at, echo, primary),
                (open, progress, commit),
                (suspects, paused, serving),
            )| {
                Message::Ping(Ping {
                    term,
                    sent_at,
                    echo,
                    primary,
                    open,
                    progress,
                    commit,
                    suspects,
                    paused,
                    serving,
                })
            },
        );
    prop_oneof![
        ping,
        (any::<u64>(), any::<bool>(), progress(), reason()).prop_map(
            |(term, pre, progress, reason)| Message::RequestVote {
                term,
                pre,
                progress,
                reason,
            }
        ),
        (any::<u64>(), any::<bool>(), any::<bool>(), progress()).prop_map(
            |(term, pre, granted, progress)| Message::Vote {
                term,
                pre,
                granted,
                progress,
            }
        ),
        any::<u64>().prop_map(|term| Message::Handover { term }),
    ]
}

fn ident() -> impl Strategy<Value = Ident> {
    (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(version, term, digest)| Ident {
        version,
        term,
        digest,
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    (".{0,10}", ".{0,10}", ".{0,10}", ident()).prop_map(|(database, node, auth, ident)| Hello {
        database,
        node,
        auth,
        ident,
    })
}

/// The list every control message below is sent from.
const IDENT: Ident = Ident {
    version: 7,
    term: 3,
    digest: 0xabcd,
};

fn enc(counter: u64, m: &Message) -> Vec<u8> {
    encode_message(counter, &IDENT, &Carried::Control(m.clone()))
}

/// A control message, or the error that refused the body (a list is
/// not a control message).
fn dec(body: &[u8], counter: u64) -> Result<Message, WireError> {
    match decode_message(body, counter)? {
        (i, Carried::Control(m)) if i == IDENT => Ok(m),
        (_, Carried::Control(_)) => Err(WireError::Field("ident")),
        (_, Carried::Members(_)) => Err(WireError::Kind(b'M')),
    }
}

/// A connection's frames: its hello, then messages numbered from 2.
fn connection(h: &Hello, msgs: &[Message]) -> (Vec<u8>, Vec<usize>) {
    let mut out = encode_hello(h);
    let mut ends = vec![out.len()];
    for (i, m) in msgs.iter().enumerate() {
        out.extend_from_slice(&enc(i as u64 + 2, m));
        ends.push(out.len());
    }
    (out, ends)
}

/// What the reading side of a link gets from `input` arriving in pieces
/// ending at `cuts`: the hello, the messages, and the error that closed
/// the link, if any.
fn read_link(input: &[u8], cuts: &[usize]) -> (Option<Hello>, Vec<Message>, Option<WireError>) {
    let mut buf = Vec::new();
    let mut fed = 0;
    let (mut hello, mut msgs) = (None, Vec::new());
    let mut counter = 1;
    for &c in cuts {
        buf.extend_from_slice(&input[fed..c]);
        fed = c;
        loop {
            let (body, used) = match split_frame(&buf) {
                Ok(Some((body, used))) => (body.to_vec(), used),
                Ok(None) => break,
                Err(e) => return (hello, msgs, Some(e)),
            };
            buf.drain(..used);
            let decoded = if counter == 1 {
                decode_hello(&body).map(|h| hello = Some(h))
            } else {
                dec(&body, counter).map(|m| msgs.push(m))
            };
            if let Err(e) = decoded {
                return (hello, msgs, Some(e));
            }
            counter += 1;
        }
    }
    (hello, msgs, None)
}

/// `body` under a correct length and crc.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// What must hold of any body a peer sends as frame `counter`: a message
/// whose own encoding is no longer and decodes to it, or a refusal.
fn check_body(body: &[u8], counter: u64) -> Result<(), TestCaseError> {
    let most = 64 + 16 * body.len();
    let (hello, big) = largest_allocation(|| decode_hello(body));
    prop_assert!(
        big <= most,
        "{} bytes allocated at once for {} bytes",
        big,
        body.len()
    );
    let (message, big) = largest_allocation(|| decode_message(body, counter));
    prop_assert!(
        big <= most,
        "{} bytes allocated at once for {} bytes",
        big,
        body.len()
    );
    if let Ok(h) = hello {
        let again = encode_hello(&h);
        prop_assert!(again.len() - 8 <= body.len());
        prop_assert_eq!(decode_hello(&again[8..]), Ok(h));
    }
    if let Ok((ident, Carried::Members(l))) = &message {
        // Every member took a few bytes at least; the list re-encodes to
        // itself in no more bytes.
        prop_assert!(l.members.len() * 8 <= body.len());
        let again = encode_message(counter, ident, &Carried::Members(l.clone()));
        prop_assert!(again.len() - 8 <= body.len());
        prop_assert_eq!(
            decode_message(&again[8..], counter),
            Ok((*ident, Carried::Members(l.clone())))
        );
    }
    if let Ok((ident, Carried::Control(m))) = message {
        // Every listed item took a byte at least.
        let lists = match &m {
            Message::Ping(p) => p.progress.seqs.len() + p.commit.len() + p.suspects.len(),
            Message::RequestVote { progress, .. } | Message::Vote { progress, .. } => {
                progress.seqs.len()
            }
            Message::Handover { .. } => 0,
        };
        prop_assert!(lists <= body.len());
        let again = encode_message(counter, &ident, &Carried::Control(m.clone()));
        prop_assert!(again.len() - 8 <= body.len());
        prop_assert_eq!(
            decode_message(&again[8..], counter),
            Ok((ident, Carried::Control(m)))
        );
    }
    Ok(())
}

/// Bodies that get past the version and the counter often.
fn body_soup() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(b"HPRVFMx".to_vec()), bytes(60)).prop_map(|(kind, rest)| {
        let mut b = vec![VERSION, 3, kind];
        b.extend_from_slice(&rest);
        b
    })
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/bus.txt"))]

    /// Every message decodes to itself as the frame it was numbered for,
    /// using exactly its frame, and is refused as any other.
    #[test]
    fn messages_round_trip_as_their_number_only(
        m in message(),
        counter in 2u64..u64::MAX,
        other in any::<u64>(),
    ) {
        let f = enc(counter, &m);
        let (body, used) = split_frame(&f).ok().flatten().ok_or_else(|| TestCaseError::fail("no frame"))?;
        prop_assert_eq!(used, f.len());
        prop_assert_eq!(dec(body, counter), Ok(m));
        if other != counter {
            prop_assert_eq!(dec(body, other), Err(WireError::Counter { got: counter, want: other }));
        }
    }

    /// A connection read in any pieces yields its hello and messages in
    /// order; cut anywhere, the frames wholly before the cut, then a wait.
    #[test]
    fn connections_read_the_same_in_any_pieces(
        h in hello(),
        msgs in prop::collection::vec(message(), 0..6),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (wire, ends) = connection(&h, &msgs);
        prop_assert_eq!(
            read_link(&wire, &cuts(wire.len(), &raw)),
            (Some(h.clone()), msgs.clone(), None)
        );
        let cut = cut.index(wire.len() + 1);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let (got_hello, got, err) = read_link(&wire[..cut], &[cut]);
        prop_assert_eq!(got_hello, (whole > 0).then(|| h.clone()));
        prop_assert_eq!(&got[..], &msgs[..whole.saturating_sub(1)]);
        prop_assert_eq!(err, None);
    }

    /// Arbitrary bytes: a body inside the input and the limit, a wait for a
    /// length within the limit, or a refusal; any body is a message that
    /// re-encodes to itself or is refused.
    #[test]
    fn any_bytes_split_wait_or_are_refused(
        buf in prop_oneof![bytes(200), body_soup().prop_map(|b| framed(&b))],
        counter in prop_oneof![Just(3u64), any::<u64>()],
    ) {
        match split_frame(&buf) {
            Ok(Some((body, used))) => {
                prop_assert_eq!(used, body.len() + 8);
                prop_assert!(used <= buf.len() && body.len() <= MAX_BODY);
                check_body(body, counter)?;
            }
            Ok(None) => {
                if buf.len() >= 8 {
                    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    prop_assert!(len <= MAX_BODY && buf.len() < 8 + len);
                }
            }
            Err(WireError::TooLong(n)) => prop_assert!(n > MAX_BODY),
            Err(e) => prop_assert_eq!(e, WireError::Crc),
        }
    }

    /// Valid bodies damaged under a correct crc (a peer's bug, not the
    /// wire's): a message that re-encodes to itself, or a refusal.
    #[test]
    fn damaged_bodies_are_consistent_or_refused(
        m in message(),
        h in hello(),
        hello_first in any::<bool>(),
        muts in mutations(3),
    ) {
        let (f, counter) = if hello_first { (encode_hello(&h), 1) } else { (enc(5, &m), 5) };
        let mut body = f[8..].to_vec();
        mutate(&mut body, &muts);
        check_body(&body, counter)?;
    }

    /// A damaged connection yields only what was sent, all of it before
    /// the damage, and then is refused or waits: never a message that was
    /// not sent.
    #[test]
    fn damaged_connections_yield_only_sent_messages(
        h in hello(),
        msgs in prop::collection::vec(message(), 1..6),
        muts in mutations(3),
    ) {
        let (mut wire, ends) = connection(&h, &msgs);
        let lowest = mutate(&mut wire, &muts);
        let (got_hello, got, _) = read_link(&wire, &[wire.len()]);
        let intact = ends.iter().filter(|&&e| e <= lowest).count();
        if let Some(g) = got_hello {
            prop_assert_eq!(g, h);
        } else {
            prop_assert_eq!(intact, 0);
        }
        prop_assert!(got.len() <= msgs.len());
        prop_assert_eq!(&got[..], &msgs[..got.len()]);
        prop_assert!(got.len() >= intact.saturating_sub(1));
    }
}
