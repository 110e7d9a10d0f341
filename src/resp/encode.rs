//! Reply → RESP2 / RESP3 bytes.

use crate::resp::reply::Reply;

/// The protocol a connection speaks (`HELLO 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

fn push_int(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, prefix: u8, b: &[u8]) {
    push_int(out, prefix, b.len() as i64);
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Formats a double as Redis 7.0 does for replies (`%.17g`; `inf`, `-inf`).
/// Redis 7.2 switched to the shortest round-trip digits; keel follows the
/// 7.0 server the differential test runs against.
pub fn format_double(d: f64) -> String {
    let mut buf = [0u8; DOUBLE_MAX];
    String::from_utf8_lossy(double_text(d, &mut buf)).into_owned()
}

/// The longest `%.17g` text: sign, 17 digits, a point and `e-308`, or
/// `-0.000` and 17 digits.
pub const DOUBLE_MAX: usize = 32;

/// `%.17g` of `d` written into `buf`, without touching the heap (scores in
/// a ZRANGE reply are formatted by the dozen): integers below 2^53 as their
/// digits, the rest from Rust's exact 17-digit scientific form, laid out as
/// `%g` chooses (fixed for exponents -4..16, else `d.ddde±XX`, trailing
/// zeros dropped).
pub fn double_text(d: f64, buf: &mut [u8; DOUBLE_MAX]) -> &[u8] {
    use std::io::Write;
    if d.is_nan() {
        return b"nan";
    }
    if d.is_infinite() {
        return if d > 0.0 { b"inf" } else { b"-inf" };
    }
    if d == 0.0 {
        return if d.is_sign_negative() { b"-0" } else { b"0" };
    }
    if d.fract() == 0.0 && d.abs() < 9_007_199_254_740_992.0 {
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cur, "{}", d as i64);
        let n = cur.position() as usize;
        return &buf[..n];
    }
    // d.dddddddddddddddde±X: 17 significant digits, exactly rounded.
    let mut sci = [0u8; DOUBLE_MAX];
    let mut cur = std::io::Cursor::new(&mut sci[..]);
    let _ = write!(cur, "{d:.16e}");
    let n = cur.position() as usize;
    let sci = &sci[..n];
    let neg = sci[0] == b'-';
    let body = if neg { &sci[1..] } else { sci };
    let e_at = body.iter().position(|c| *c == b'e').unwrap_or(body.len());
    let exp: i32 = std::str::from_utf8(&body[e_at + 1..])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let mut digits = [b'0'; 17];
    let mut k = 0;
    for c in body[..e_at].iter().filter(|c| c.is_ascii_digit()) {
        if k < 17 {
            digits[k] = *c;
            k += 1;
        }
    }
    // Significant digits left once trailing zeros go.
    let sig = digits.iter().rposition(|c| *c != b'0').map_or(1, |i| i + 1);
    let mut o = 0;
    let mut put = |b: u8| {
        buf[o] = b;
        o += 1;
    };
    if neg {
        put(b'-');
    }
    if !(-4..17).contains(&exp) {
        put(digits[0]);
        if sig > 1 {
            put(b'.');
            digits[1..sig].iter().for_each(|c| put(*c));
        }
        put(b'e');
        put(if exp < 0 { b'-' } else { b'+' });
        let x = exp.unsigned_abs();
        if x >= 100 {
            put(b'0' + (x / 100) as u8);
        }
        put(b'0' + ((x / 10) % 10) as u8);
        put(b'0' + (x % 10) as u8);
    } else if exp >= 0 {
        let int = exp as usize + 1;
        digits[..int].iter().for_each(|c| put(*c));
        if sig > int {
            put(b'.');
            digits[int..sig].iter().for_each(|c| put(*c));
        }
    } else {
        put(b'0');
        put(b'.');
        (0..(-exp - 1)).for_each(|_| put(b'0'));
        digits[..sig].iter().for_each(|c| put(*c));
    }
    &buf[..o]
}

/// An aggregate: its type byte and length, then each item.
fn push_items(out: &mut Vec<u8>, prefix: u8, items: &[Reply], proto: Protocol) {
    push_int(out, prefix, items.len() as i64);
    for r in items {
        encode(r, proto, out);
    }
}

/// Key-value pairs: a map or array header (pairs counted once in RESP3,
/// flattened in RESP2), each pair wrapped in `*2` when `nested`.
fn push_pairs(
    out: &mut Vec<u8>,
    prefix: u8,
    pairs: &[(Reply, Reply)],
    proto: Protocol,
    nested: bool,
) {
    let v3 = proto == Protocol::Resp3;
    push_int(
        out,
        prefix,
        if v3 { pairs.len() } else { 2 * pairs.len() } as i64,
    );
    for (k, v) in pairs {
        if nested {
            out.extend_from_slice(b"*2\r\n");
        }
        encode(k, proto, out);
        encode(v, proto, out);
    }
}

fn push_error(out: &mut Vec<u8>, e: &[u8]) {
    out.push(b'-');
    // An error is one line: a newline inside would desync the client.
    out.extend(
        e.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    out.extend_from_slice(b"\r\n");
}

pub fn encode(reply: &Reply, proto: Protocol, out: &mut Vec<u8>) {
    let v3 = proto == Protocol::Resp3;
    match reply {
        Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
        Reply::Status(s) => {
            out.push(b'+');
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Reply::StatusBytes(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Error(e) => push_error(out, e.as_bytes()),
        Reply::ErrorBytes(e) => push_error(out, e),
        Reply::Int(n) => push_int(out, b':', *n),
        Reply::Bulk(b) => push_bulk(out, b'$', b),
        Reply::Nil if v3 => out.extend_from_slice(b"_\r\n"),
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::NilArray if v3 => out.extend_from_slice(b"_\r\n"),
        Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) => push_items(out, b'*', items, proto),
        Reply::Push(items) => push_items(out, if v3 { b'>' } else { b'*' }, items, proto),
        Reply::Pairs(pairs) => {
            // RESP3: an array of [key, value] pairs; RESP2: one flat array.
            push_pairs(out, b'*', pairs, proto, v3);
        }
        Reply::Set(items) => push_items(out, if v3 { b'~' } else { b'*' }, items, proto),
        Reply::Map(pairs) => push_pairs(out, if v3 { b'%' } else { b'*' }, pairs, proto, false),
        Reply::KeyedArrays(pairs) if v3 => push_pairs(out, b'%', pairs, proto, false),
        Reply::KeyedArrays(pairs) => {
            push_int(out, b'*', pairs.len() as i64);
            for (k, v) in pairs {
                out.extend_from_slice(b"*2\r\n");
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Reply::DoubleText(s) if v3 => {
            out.push(b',');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Reply::DoubleText(s) => push_bulk(out, b'$', s),
        Reply::Double(d) => {
            let mut buf = [0u8; DOUBLE_MAX];
            let s = double_text(*d, &mut buf);
            if v3 {
                out.push(b',');
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            } else {
                push_bulk(out, b'$', s);
            }
        }
        Reply::Bool(b) if v3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Reply::Bool(b) => push_int(out, b':', *b as i64),
        Reply::Verbatim(s) if v3 => {
            push_int(out, b'=', s.len() as i64 + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Reply::Verbatim(s) => push_bulk(out, b'$', s.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: Reply, p: Protocol) -> String {
        let mut out = Vec::new();
        encode(&r, p, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        use Protocol::*;
        assert_eq!(enc(Reply::Nil, Resp2), "$-1\r\n");
        assert_eq!(enc(Reply::Nil, Resp3), "_\r\n");
        let m = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(enc(m.clone(), Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(m, Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(Reply::Double(1.5), Resp3), ",1.5\r\n");
        assert_eq!(enc(Reply::Double(1.5), Resp2), "$3\r\n1.5\r\n");
        let t = || Reply::DoubleText(b"13.36138933897018433".to_vec());
        assert_eq!(enc(t(), Resp3), ",13.36138933897018433\r\n");
        assert_eq!(enc(t(), Resp2), "$20\r\n13.36138933897018433\r\n");
        assert_eq!(
            enc(Reply::Error("ERR a\r\nb".into()), Resp2),
            "-ERR a  b\r\n"
        );
    }

    #[test]
    fn doubles_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1.1), "1.1000000000000001");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(1e16), "10000000000000000");
        assert_eq!(format_double(1e17), "1e+17");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(-2.5e-7), "-2.4999999999999999e-07");
        assert_eq!(format_double(-12345.5), "-12345.5");
        assert_eq!(format_double(1e300), "1.0000000000000001e+300");
        assert_eq!(format_double(-5e-324), "-4.9406564584124654e-324");
        assert_eq!(
            format_double(123456789012345680.0),
            "1.2345678901234568e+17"
        );
        assert_eq!(format_double(0.000123), "0.00012300000000000001");
        assert_eq!(format_double(9007199254740993.0), "9007199254740992");
    }

    /// The `%.17g` of the old formatter (strings all the way), kept to
    /// check the allocation-free one against.
    fn reference(d: f64) -> String {
        if d.is_nan() {
            return "nan".into();
        }
        if d.is_infinite() {
            return if d > 0.0 { "inf".into() } else { "-inf".into() };
        }
        if d == 0.0 {
            return if d.is_sign_negative() { "-0" } else { "0" }.into();
        }
        let sci = format!("{d:.16e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let trim = |s: &str| -> String {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s.to_string()
            }
        };
        if !(-4..17).contains(&exp) {
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
        } else {
            trim(&format!("{d:.*}", (16 - exp) as usize))
        }
    }

    proptest::proptest! {
        #[test]
        fn double_text_matches_the_reference(bits in proptest::prelude::any::<u64>()) {
            let d = f64::from_bits(bits);
            proptest::prop_assert_eq!(format_double(d), reference(d));
        }

        #[test]
        fn double_text_matches_on_everyday_scores(n in -1_000_000i64..1_000_000, div in 1u32..10_000) {
            let d = n as f64 / f64::from(div);
            proptest::prop_assert_eq!(format_double(d), reference(d));
        }
    }
}
