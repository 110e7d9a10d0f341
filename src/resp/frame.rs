//! Finding where one RESP reply ends, without building it: what a node
//! needs to relay another node's reply byte for byte (forwarding). RESP2 and
//! RESP3 types, nested aggregates included; attributes (`|`) count as part
//! of the value they precede.

/// Nesting deeper than this is refused (a peer is input too).
const MAX_DEPTH: usize = 64;
/// The most elements one aggregate may announce.
const MAX_ITEMS: i64 = 1 << 24;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown reply type {0:?}")]
    Type(u8),
    #[error("bad length")]
    Length,
    #[error("nested too deep")]
    Depth,
}

/// The line at `at` and the index after its CRLF. A line ends at CRLF
/// only, as clients read it: a bare LF is part of the line (waiting for a
/// CRLF after it would wait forever).
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = memchr::memmem::find(rest, b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(s: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(FrameError::Length)
}

/// The length of the first complete reply in `buf`: Ok(None) while more
/// bytes are needed.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    value_end(buf, 0, 0)
}

fn value_end(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, FrameError> {
    if depth > MAX_DEPTH {
        return Err(FrameError::Depth);
    }
    let Some(&t) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    match t {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(next)),
        b'$' | b'!' | b'=' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let end = next + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(FrameError::Length);
            }
            Ok(Some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some(next));
            }
            if n > MAX_ITEMS {
                return Err(FrameError::Length);
            }
            let items = if matches!(t, b'%' | b'|') { n * 2 } else { n };
            let mut pos = next;
            for _ in 0..items {
                match value_end(buf, pos, depth + 1)? {
                    Some(p) => pos = p,
                    None => return Ok(None),
                }
            }
            // An attribute decorates the value after it.
            if t == b'|' {
                return value_end(buf, pos, depth + 1);
            }
            Ok(Some(pos))
        }
        other => Err(FrameError::Type(other)),
    }
}

/// The items of a complete array reply whose items are bulk strings or
/// integers (a pub/sub message), as bytes; None for anything else.
pub fn items(frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (head, mut at) = line(frame, 1)?;
    if !matches!(frame.first(), Some(b'*') | Some(b'>')) {
        return None;
    }
    let n = number(head).ok()?;
    // (each item takes 3 bytes at least: a count cannot reserve more)
    let mut out = Vec::with_capacity((n.max(0) as usize).min(frame.len() / 3));
    for _ in 0..n {
        let t = *frame.get(at)?;
        let (h, next) = line(frame, at + 1)?;
        match t {
            b':' | b'+' => {
                out.push(h.to_vec());
                at = next;
            }
            b'$' => {
                let len = usize::try_from(number(h).ok()?).ok()?;
                out.push(frame.get(next..next + len)?.to_vec());
                at = next + len + 2;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_each_reply_type_and_waits_for_more() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":42\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"*-1\r\n",
            b"%1\r\n+k\r\n*1\r\n_\r\n",
            b">2\r\n+message\r\n$1\r\nx\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n",
            b"=7\r\ntxt:abc\r\n",
            b",1.5\r\n",
        ];
        for c in cases {
            let mut buf = c.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                reply_len(&buf),
                Ok(Some(c.len())),
                "{:?}",
                String::from_utf8_lossy(c)
            );
            for cut in 0..c.len() {
                assert_eq!(
                    reply_len(&c[..cut]),
                    Ok(None),
                    "cut {cut} of {:?}",
                    String::from_utf8_lossy(c)
                );
            }
        }
    }

    #[test]
    fn items_of_a_message() {
        let m = b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$3\r\nhi!\r\n";
        assert_eq!(
            items(m),
            Some(vec![
                b"pmessage".to_vec(),
                b"*".to_vec(),
                b"ch".to_vec(),
                b"hi!".to_vec()
            ])
        );
        assert_eq!(
            items(b"*2\r\n$10\r\npsubscribe\r\n:1\r\n"),
            Some(vec![b"psubscribe".to_vec(), b"1".to_vec()])
        );
        assert_eq!(items(b"*2\r\n$5\r\npsubscribe\r\n:1\r\n"), None);
        assert_eq!(items(b"+OK\r\n"), None);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(reply_len(b"?x\r\n"), Err(FrameError::Type(b'?')));
        assert_eq!(reply_len(b"$x\r\n"), Err(FrameError::Length));
        assert_eq!(reply_len(b"$1\r\nabXX"), Err(FrameError::Length));
        let deep = "*1\r\n".repeat(100);
        assert_eq!(reply_len(deep.as_bytes()), Err(FrameError::Depth));
    }

    /// Found by the fuzz target (tests/fuzz/resp.rs): a line holding a
    /// bare LF was waited on forever, and a count announcing more items
    /// than the frame could hold was reserved for (an abort).
    #[test]
    fn a_bare_lf_is_line_content_and_counts_reserve_no_more_than_the_bytes() {
        assert_eq!(reply_len(b"+OK\nmore\r\n:1\r\n"), Ok(Some(10)));
        assert_eq!(reply_len(b"*1\r\n-ERR a\nb\r\n"), Ok(Some(14)));
        assert_eq!(reply_len(b"+OK\n"), Ok(None));
        assert_eq!(items(b"*6491346299213890800\r\n:1\r\n"), None);
        assert_eq!(items(b"*1\r\n+a\nb\r\n"), Some(vec![b"a\nb".to_vec()]));
    }
}
