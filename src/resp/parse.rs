//! The RESP request parser: client bytes → argument lists.
//!
//! Requests are parsed in place: a multibulk request's arguments are byte
//! ranges into the connection's read buffer, found with `memchr`, so the
//! common path copies nothing. Inline requests (`redis-cli` pipes, telnet)
//! may contain quotes and escapes, so their arguments are unescaped into a
//! scratch buffer instead.
//!
//! Partial input is normal: `Incomplete` means "read more and call again with
//! the same bytes". Bad input yields the error Redis sends for it, after
//! which the connection is closed, as Redis does.

use memchr::memchr;
use thiserror::Error;

/// Longest inline request or length line without a newline (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;

/// Limits on what one request may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Most arguments in one request.
    pub max_multibulk_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as u64,
        }
    }
}

/// A protocol violation. The display text is exactly Redis's reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: too big mbulk count string")]
    MultibulkLine,
    #[error("Protocol error: too big bulk count string")]
    BulkLine,
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The error line sent to the client (without '-'): the offending byte
    /// of `expected '$'` is quoted raw, as Redis sends it.
    pub fn reply(&self) -> Vec<u8> {
        match self {
            ProtocolError::ExpectedDollar(c) => {
                let mut v = b"ERR Protocol error: expected '$', got '".to_vec();
                v.push(*c);
                v.push(b'\'');
                v
            }
            other => format!("ERR {other}").into_bytes(),
        }
    }
}

/// Where a parsed request's argument ranges point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Into the read buffer that was parsed.
    Input,
    /// Into the scratch buffer (an unescaped inline request).
    Scratch,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A request of `args.len()` arguments that used `consumed` bytes.
    Request { consumed: usize, source: Source },
    /// Bytes that hold no request (an empty line, `*0`): skip them.
    Nothing { consumed: usize },
}

/// Parses one request from the start of `buf`. On `Request`, `args` holds its
/// argument ranges (into `buf`, or into `scratch` for inline requests).
pub fn parse(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<(usize, usize)>,
    scratch: &mut Vec<u8>,
) -> Result<Parsed, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, args, scratch),
    }
}

/// Reads a `\r\n`-terminated decimal after a one-byte prefix at `at`.
/// Returns (value or None if not a number, index after the line).
fn length_line(buf: &[u8], at: usize) -> Option<(Option<i64>, usize)> {
    let nl = memchr(b'\n', &buf[at..])? + at;
    let end = if nl > at && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((parse_i64(&buf[at + 1..end]), nl + 1))
}

/// Strict decimal parsing, as Redis's `string2ll`: optional '-', digits, no
/// spaces, no '+', no leading zeros, fits in i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<(usize, usize)>,
) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = length_line(buf, 0) else {
        return if buf.len() > INLINE_MAX {
            Err(ProtocolError::MultibulkLine)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let count = match count {
        Some(n) if n > limits.max_multibulk_len as i64 => {
            return Err(ProtocolError::MultibulkLength)
        }
        Some(n) if n <= 0 => return Ok(Parsed::Nothing { consumed: pos }),
        Some(n) => n as usize,
        None => return Err(ProtocolError::MultibulkLength),
    };
    args.reserve(count.min(1024));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(Parsed::Incomplete),
            Some(b'$') => {}
            Some(&c) => return Err(ProtocolError::ExpectedDollar(c)),
        }
        let Some((len, data)) = length_line(buf, pos) else {
            return if buf.len() - pos > INLINE_MAX {
                Err(ProtocolError::BulkLine)
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        let len = match len {
            Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len => n as usize,
            _ => return Err(ProtocolError::BulkLength),
        };
        // The payload is followed by CRLF, which is skipped unchecked, as Redis
        // does.
        if buf.len() < data + len + 2 {
            return Ok(Parsed::Incomplete);
        }
        args.push((data, data + len));
        pos = data + len + 2;
    }
    Ok(Parsed::Request {
        consumed: pos,
        source: Source::Input,
    })
}

fn parse_inline(
    buf: &[u8],
    args: &mut Vec<(usize, usize)>,
    scratch: &mut Vec<u8>,
) -> Result<Parsed, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        return if buf.len() > INLINE_MAX {
            Err(ProtocolError::InlineTooBig)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    scratch.clear();
    split_args(line, args, scratch)?;
    if args.is_empty() {
        return Ok(Parsed::Nothing { consumed: nl + 1 });
    }
    Ok(Parsed::Request {
        consumed: nl + 1,
        source: Source::Scratch,
    })
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line into arguments with the quoting rules of
/// `redis-cli`: "double quotes" with \n \r \t \b \a \xHH escapes, 'single
/// quotes' with only \' escaped; a closing quote must be followed by a space.
fn split_args(
    line: &[u8],
    args: &mut Vec<(usize, usize)>,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = out.len();
        let (mut dq, mut sq) = (false, false);
        loop {
            if dq {
                match line.get(i) {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if i + 3 < line.len() && line[i + 1] == b'x' => {
                        match (hex(line[i + 2]), hex(line[i + 3])) {
                            (Some(h), Some(l)) => {
                                out.push(h * 16 + l);
                                i += 4;
                                continue;
                            }
                            _ => {
                                out.push(b'x');
                                i += 2;
                                continue;
                            }
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        out.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            c => c,
                        });
                        i += 2;
                        continue;
                    }
                    Some(b'"') => {
                        if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(&c) => out.push(c),
                }
            } else if sq {
                match line.get(i) {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        out.push(b'\'');
                        i += 2;
                        continue;
                    }
                    Some(b'\'') => {
                        if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(&c) => out.push(c),
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => dq = true,
                    Some(b'\'') => sq = true,
                    Some(&c) => out.push(c),
                }
            }
            i += 1;
        }
        args.push((start, out.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Result<(Parsed, Vec<Vec<u8>>), ProtocolError> {
        let mut args = Vec::new();
        let mut scratch = Vec::new();
        let p = parse(input, &Limits::default(), &mut args, &mut scratch)?;
        let base = match p {
            Parsed::Request {
                source: Source::Scratch,
                ..
            } => &scratch[..],
            _ => input,
        };
        let v = args.iter().map(|&(s, e)| base[s..e].to_vec()).collect();
        Ok((p, v))
    }

    #[test]
    fn multibulk_whole_and_partial() {
        let req = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
        let (p, args) = run(req).unwrap();
        assert_eq!(
            p,
            Parsed::Request {
                consumed: req.len(),
                source: Source::Input
            }
        );
        assert_eq!(args, vec![b"GET".to_vec(), b"foo".to_vec()]);
        for cut in 0..req.len() {
            assert_eq!(
                run(&req[..cut]).unwrap().0,
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_lengths_get_redis_errors() {
        assert_eq!(run(b"*x\r\n").unwrap_err(), ProtocolError::MultibulkLength);
        assert_eq!(
            run(b"*3000000000\r\n").unwrap_err(),
            ProtocolError::MultibulkLength
        );
        assert_eq!(
            run(b"*1\r\n$600000000\r\n").unwrap_err(),
            ProtocolError::BulkLength
        );
        assert_eq!(
            run(b"*1\r\n$-1\r\n").unwrap_err(),
            ProtocolError::BulkLength
        );
        assert_eq!(
            run(b"*1\r\n:1\r\n").unwrap_err(),
            ProtocolError::ExpectedDollar(b':')
        );
        assert_eq!(run(b"*0\r\n").unwrap().0, Parsed::Nothing { consumed: 4 });
        let long = vec![b'1'; INLINE_MAX + 10];
        let mut mb = b"*".to_vec();
        mb.extend_from_slice(&long);
        assert_eq!(run(&mb).unwrap_err(), ProtocolError::MultibulkLine);
        assert_eq!(run(&long).unwrap_err(), ProtocolError::InlineTooBig);
    }

    #[test]
    fn inline_with_quotes() {
        let (_, args) = run(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n").unwrap();
        assert_eq!(
            args,
            vec![
                b"set".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        assert_eq!(
            run(b"set \"abc\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        assert_eq!(
            run(b"set \"a\"b\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        assert_eq!(run(b"   \r\n").unwrap().0, Parsed::Nothing { consumed: 5 });
        assert_eq!(run(b"PING").unwrap().0, Parsed::Incomplete);
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"+1",
            b" 1",
            b"01",
            b"-0",
            b"",
            b"-",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", std::str::from_utf8(bad));
        }
    }
}
