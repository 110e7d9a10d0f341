//! RESP: the request parser (client bytes → arguments) and the reply framer
//! (where another node's reply ends), each against its encoder.

use std::borrow::Cow;

use keel::resp::frame::{items, reply_len};
use keel::resp::parse::INLINE_MAX;
use keel::resp::reply::Reply;
use keel::resp::{encode, parse, Limits, Parsed, Protocol, ProtocolError, Source};
use proptest::prelude::*;

use crate::{bytes, config, cuts, largest_allocation, multibulk, mutate, mutations};

type Args = Vec<Vec<u8>>;

/// Parses one request from `buf`; its arguments as bytes.
fn run(buf: &[u8], limits: &Limits) -> Result<(Parsed, Args), ProtocolError> {
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let (p, big) = largest_allocation(|| parse(buf, limits, &mut ranges, &mut scratch));
    // However many arguments a header announces, room is made for at most
    // 1024 before they arrive.
    assert!(
        big <= 16 * 1024 + 16 * buf.len(),
        "{big} bytes allocated at once for {} bytes of input",
        buf.len()
    );
    let p = p?;
    // The ranges mean something only with a request.
    let base = match p {
        Parsed::Request {
            source: Source::Scratch,
            ..
        } => &scratch[..],
        Parsed::Request { .. } => buf,
        _ => return Ok((p, Vec::new())),
    };
    let args = ranges
        .iter()
        .map(|&(s, e)| {
            assert!(
                s <= e && e <= base.len(),
                "range {s}..{e} of {}",
                base.len()
            );
            base[s..e].to_vec()
        })
        .collect();
    Ok((p, args))
}

/// The requests a connection gets from `input` arriving in pieces that end
/// at `cuts`, and the error that closed it, if any.
fn stream(input: &[u8], cuts: &[usize], limits: &Limits) -> (Vec<Args>, Option<ProtocolError>) {
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    for &c in cuts {
        buf.extend_from_slice(&input[fed..c]);
        fed = c;
        loop {
            match run(&buf, limits) {
                Ok((Parsed::Incomplete, _)) => break,
                Ok((Parsed::Request { consumed, .. }, args)) => {
                    out.push(args);
                    buf.drain(..consumed);
                }
                Ok((Parsed::Nothing { consumed }, _)) => {
                    buf.drain(..consumed);
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Bytes that look like RESP often enough to reach deep into the parser.
fn resp_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"0".to_vec()),
        (0u32..12).prop_map(|n| n.to_string().into_bytes()),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x".to_vec()),
        Just(b" ".to_vec()),
        "[a-fA-F0-9]{1,3}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0u64..48, 0u64..12).prop_map(|(b, m)| Limits {
            max_bulk_len: b,
            max_multibulk_len: m,
        }),
    ]
}

/// What must hold of the parse of any `buf` (shorter than [`INLINE_MAX`]):
/// a request or a skip comes with the bytes it used, is the same parsed
/// from those bytes alone or with more after them, and every shorter
/// prefix waits for more; an error stands whatever follows it.
fn check_parse(buf: &[u8], limits: &Limits, tail: &[u8]) -> Result<(), TestCaseError> {
    assert!(buf.len() < INLINE_MAX);
    let whole = run(buf, limits);
    let mut longer = buf.to_vec();
    longer.extend_from_slice(tail);
    match &whole {
        Ok((Parsed::Incomplete, args)) => {
            prop_assert!(args.is_empty());
        }
        Ok((p @ (Parsed::Request { .. } | Parsed::Nothing { .. }), args)) => {
            let consumed = match *p {
                Parsed::Request { consumed, source } => {
                    prop_assert!(!args.is_empty());
                    if source == Source::Input {
                        prop_assert!(args.len() as u64 <= limits.max_multibulk_len);
                        for a in args {
                            prop_assert!(a.len() as u64 <= limits.max_bulk_len);
                        }
                    }
                    consumed
                }
                Parsed::Nothing { consumed } => {
                    prop_assert!(args.is_empty());
                    consumed
                }
                Parsed::Incomplete => unreachable!(),
            };
            prop_assert!(consumed > 0 && consumed <= buf.len());
            prop_assert_eq!(&run(&buf[..consumed], limits), &whole);
            prop_assert_eq!(&run(&longer, limits), &whole);
            for k in 0..consumed {
                prop_assert_eq!(
                    run(&buf[..k], limits),
                    Ok((Parsed::Incomplete, vec![])),
                    "prefix of {} bytes",
                    k
                );
            }
        }
        Err(e) => {
            prop_assert!(e.reply().starts_with(b"ERR Protocol error: "));
            prop_assert_eq!(&run(&longer, limits), &whole);
        }
    }
    Ok(())
}

/// An inline argument as `redis-cli` would quote it (`style` 0: double
/// quotes with escapes, 1: single quotes, 2: bare), falling back to double
/// quotes where the chosen style cannot carry the bytes.
fn quote(a: &[u8], style: u8, first: bool) -> Vec<u8> {
    let special = |c: &u8| c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'\\');
    // (a request whose first byte is '*' is a multibulk one)
    let bare_ok = !(a.is_empty() || a.iter().any(special) || first && a[0] == b'*');
    if style == 2 && bare_ok {
        return a.to_vec();
    }
    if style == 1 && !a.iter().any(|c| matches!(c, b'\'' | b'\\' | b'\n')) {
        return [&b"'"[..], a, b"'"].concat();
    }
    let mut out = vec![b'"'];
    for &c in a {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b' '..=b'~' => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}

fn reply() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        Just(Reply::Ok),
        "[ -~]{0,12}".prop_map(|s| Reply::Status(Cow::Owned(s))),
        prop::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |c| *c != b'\r' && *c != b'\n'),
            0..12
        )
        .prop_map(Reply::StatusBytes),
        "[ -~]{0,12}".prop_map(|s| Reply::Error(Cow::Owned(s))),
        bytes(12).prop_map(Reply::ErrorBytes),
        any::<i64>().prop_map(Reply::Int),
        bytes(40).prop_map(Reply::Bulk),
        Just(Reply::Nil),
        Just(Reply::NilArray),
        any::<f64>().prop_map(Reply::Double),
        "-?[0-9]{1,5}\\.[0-9]{1,5}".prop_map(|s| Reply::DoubleText(s.into_bytes())),
        any::<bool>().prop_map(Reply::Bool),
        ".{0,12}".prop_map(Reply::Verbatim),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let pairs = || prop::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Push),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
            pairs().prop_map(Reply::Map),
            pairs().prop_map(Reply::Pairs),
            pairs().prop_map(Reply::KeyedArrays),
        ]
    })
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Resp2), Just(Protocol::Resp3)]
}

/// Bytes made of reply type bytes, numbers and line ends.
fn reply_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        prop::sample::select(b"+-:$*%~>|_,#(=!".to_vec()).prop_map(|b| vec![b]),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-1".to_vec()),
        (0u32..8).prop_map(|n| n.to_string().into_bytes()),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/resp.txt"))]

    /// Arbitrary bytes: a request, a skip, "need more" or Redis's error.
    #[test]
    fn any_input_parses_to_a_request_more_or_an_error(
        buf in prop_oneof![bytes(256), resp_soup()],
        limits in limits(),
        tail in bytes(16),
    ) {
        check_parse(&buf, &limits, &tail)?;
    }

    /// Requests encoded back to back and delivered in any pieces come out
    /// whole, in order, each having used exactly its bytes.
    #[test]
    fn multibulk_requests_round_trip_in_any_pieces(
        reqs in prop::collection::vec(prop::collection::vec(bytes(40), 1..6), 1..5),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let wire: Vec<u8> = reqs.iter().flat_map(|r| multibulk(r)).collect();
        let first = multibulk(&reqs[0]);
        prop_assert_eq!(
            run(&wire, &Limits::default()),
            Ok((Parsed::Request { consumed: first.len(), source: Source::Input }, reqs[0].clone()))
        );
        prop_assert_eq!(stream(&wire, &cuts(wire.len(), &raw), &Limits::default()), (reqs, None));
    }

    /// Inline requests quoted as `redis-cli` quotes them parse back to
    /// their arguments, in any pieces.
    #[test]
    fn inline_requests_round_trip_in_any_pieces(
        args in prop::collection::vec((bytes(20), 0u8..3), 1..6),
        crlf in any::<bool>(),
        raw in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let quoted: Vec<Vec<u8>> =
            args.iter().enumerate().map(|(i, (a, s))| quote(a, *s, i == 0)).collect();
        let mut line = quoted.join(&b" "[..]);
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let want: Vec<Vec<u8>> = args.into_iter().map(|(a, _)| a).collect();
        prop_assert_eq!(
            run(&line, &Limits::default()),
            Ok((Parsed::Request { consumed: line.len(), source: Source::Scratch }, want.clone()))
        );
        prop_assert_eq!(
            stream(&line, &cuts(line.len(), &raw), &Limits::default()),
            (vec![want], None)
        );
    }

    /// Counts and lengths over the limits are refused as soon as their
    /// header is read, before the bytes they announce arrive.
    #[test]
    fn lengths_over_the_limits_are_refused_at_their_header(
        lens in prop::collection::vec(0usize..64, 0..12),
        max_bulk in 0u64..64,
        max_multibulk in 0u64..12,
    ) {
        let limits = Limits { max_bulk_len: max_bulk, max_multibulk_len: max_multibulk };
        let args: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'x'; n]).collect();
        let wire = multibulk(&args);
        let header = format!("*{}\r\n", lens.len()).len();
        let got = run(&wire, &limits);
        if lens.len() as u64 > max_multibulk {
            prop_assert_eq!(&got, &Err(ProtocolError::MultibulkLength));
            prop_assert_eq!(run(&wire[..header], &limits), got);
        } else if let Some(bad) = lens.iter().position(|&n| n as u64 > max_bulk) {
            prop_assert_eq!(&got, &Err(ProtocolError::BulkLength));
            // Up to the bad argument's length line, and not a byte more.
            let before: usize = multibulk(&args[..bad]).len() - format!("*{bad}\r\n").len();
            let upto = header + before + format!("${}\r\n", lens[bad]).len();
            prop_assert_eq!(run(&wire[..upto], &limits), got);
        } else if lens.is_empty() {
            prop_assert_eq!(got, Ok((Parsed::Nothing { consumed: wire.len() }, vec![])));
        } else {
            prop_assert_eq!(got, Ok((Parsed::Request { consumed: wire.len(), source: Source::Input }, args)));
        }
    }

    /// A damaged request: refused, waiting, or arguments that re-encode to
    /// themselves; never a panic.
    #[test]
    fn damaged_requests_are_refused_or_consistent(
        args in prop::collection::vec(bytes(24), 1..5),
        muts in mutations(4),
        limits in limits(),
    ) {
        let mut wire = multibulk(&args);
        mutate(&mut wire, &muts);
        check_parse(&wire, &limits, b"*1\r\n$4\r\nPING\r\n")?;
        if let Ok((Parsed::Request { .. }, got)) = run(&wire, &limits) {
            let again = multibulk(&got);
            prop_assert_eq!(
                run(&again, &Limits::default()),
                Ok((Parsed::Request { consumed: again.len(), source: Source::Input }, got))
            );
        }
    }

    /// The framer finds exactly where an encoded reply ends, waits on any
    /// prefix of it, and is not misled by what follows.
    #[test]
    fn encoded_replies_are_framed_exactly(r in reply(), proto in protocol()) {
        let mut wire = Vec::new();
        encode(&r, proto, &mut wire);
        prop_assert_eq!(reply_len(&wire), Ok(Some(wire.len())));
        let mut more = wire.clone();
        more.extend_from_slice(b"+NEXT\r\n");
        prop_assert_eq!(reply_len(&more), Ok(Some(wire.len())));
        for k in 0..wire.len() {
            prop_assert_eq!(reply_len(&wire[..k]), Ok(None), "prefix of {} bytes", k);
        }
    }

    /// A pub/sub message's items read back as the bytes encoded.
    #[test]
    fn message_items_read_back(
        parts in prop::collection::vec(prop_oneof![
            bytes(20).prop_map(Reply::Bulk),
            any::<i64>().prop_map(Reply::Int),
        ], 0..6),
        push in any::<bool>(),
        proto in protocol(),
    ) {
        let want: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| match p {
                Reply::Bulk(b) => b.clone(),
                Reply::Int(n) => n.to_string().into_bytes(),
                _ => unreachable!(),
            })
            .collect();
        let r = if push { Reply::Push(parts) } else { Reply::Array(parts) };
        let mut wire = Vec::new();
        encode(&r, proto, &mut wire);
        prop_assert_eq!(items(&wire), Some(want));
    }

    /// Arbitrary bytes: a reply's length (self-contained, inside the
    /// input), "need more", or an error that more bytes do not undo.
    #[test]
    fn any_input_frames_to_a_length_more_or_an_error(
        buf in prop_oneof![bytes(256), reply_soup()],
        tail in reply_soup(),
    ) {
        let mut longer = buf.clone();
        longer.extend_from_slice(&tail);
        // (a pub/sub reader looks at the items of any complete reply)
        let (_, big) = largest_allocation(|| items(&buf));
        prop_assert!(big <= 64 + 16 * buf.len(), "{} bytes allocated at once", big);
        let (framed, big) = largest_allocation(|| reply_len(&buf));
        prop_assert_eq!(big, 0);
        match framed {
            Ok(Some(n)) => {
                prop_assert!(n > 0 && n <= buf.len());
                prop_assert_eq!(reply_len(&buf[..n]), Ok(Some(n)));
                prop_assert_eq!(reply_len(&longer), Ok(Some(n)));
                for k in 0..n {
                    prop_assert_eq!(reply_len(&buf[..k]), Ok(None), "prefix of {} bytes", k);
                }
            }
            Ok(None) => {}
            Err(e) => prop_assert_eq!(reply_len(&longer), Err(e)),
        }
    }
}
