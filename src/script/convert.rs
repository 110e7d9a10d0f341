//! Values crossing between Lua and the server, converted as Redis converts
//! them: command replies into Lua values for `redis.call`, a script's
//! return value into a reply, and Lua numbers into command arguments.

#[cfg(test)]
use mlua::Lua;
use mlua::{Table, Value};

use crate::resp::reply::Reply;

/// Deepest nesting of tables turned into a reply: a table may contain
/// itself, and a reply must end.
const MAX_DEPTH: usize = 256;

/// A Lua number as a command argument, in the shortest text that reads
/// back as the same double (as Redis 7.2 writes it, not Lua's `%.14g`):
/// plain digits for integers below about 10^(digits+7), a decimal point
/// for small exponents, else `d.ddde+XX`.
pub fn number_arg(n: f64) -> String {
    if n.is_nan() {
        return "nan".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let nd = digits.len() as i32;
    // n = digits * 10^k
    let k = exp - (nd - 1);
    let neg = n < 0.0;
    let mut out = String::with_capacity(nd as usize + 8);
    if neg {
        out.push('-');
    }
    let e_abs = (k + nd - 1).abs();
    if k >= 0 && e_abs < nd + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || e_abs < 4) {
        let offset = nd + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        let kept = nd.min(18 - neg as i32) as usize;
        out.push_str(&digits[..1]);
        if kept > 1 {
            out.push('.');
            out.push_str(&digits[1..kept]);
        }
        out.push('e');
        out.push(if k + nd - 1 < 0 { '-' } else { '+' });
        out.push_str(&e_abs.to_string());
    }
    out
}

/// A Lua number as an integer reply: truncated toward zero; what does not
/// fit (and NaN) becomes the smallest integer, as Redis's C cast yields.
pub fn number_reply(n: f64) -> i64 {
    // 2^63: the first double past i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A script's return value (or a table inside it) as a reply. `resp3` is
/// whether the script called `redis.setresp(3)`.
pub fn to_reply(v: &Value, resp3: bool) -> Reply {
    to_reply_at(v, resp3, 0)
}

fn to_reply_at(v: &Value, resp3: bool, depth: usize) -> Reply {
    match v {
        Value::Nil => Reply::Nil,
        Value::Boolean(true) if resp3 => Reply::Bool(true),
        Value::Boolean(false) if resp3 => Reply::Bool(false),
        Value::Boolean(true) => Reply::Int(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Integer(i) => Reply::Int(*i),
        Value::Number(n) => Reply::Int(number_reply(*n)),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Table(t) if depth < MAX_DEPTH => table_reply(t, resp3, depth),
        // A table nested this deep (a table that contains itself): the
        // levels so far, then an error, as Redis ends at Lua's stack limit.
        Value::Table(_) => Reply::Error("ERR reached lua stack limit".into()),
        _ => Reply::Nil,
    }
}

fn field(t: &Table, name: &str) -> Value {
    t.raw_get(name).unwrap_or(Value::Nil)
}

/// An error text safe to send on one line.
pub fn one_line(s: &[u8]) -> String {
    String::from_utf8_lossy(s).replace(['\r', '\n'], " ")
}

/// A script's `{err=}` or `{ok=}` text as Redis sends it: the bytes up to
/// the first NUL (it reads them as a C string), on one line.
fn reply_line(s: &[u8]) -> Vec<u8> {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    s[..end]
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

fn table_reply(t: &Table, resp3: bool, depth: usize) -> Reply {
    if let Value::String(e) = field(t, "err") {
        return Reply::ErrorBytes(reply_line(&e.as_bytes()));
    }
    if let Value::String(s) = field(t, "ok") {
        return Reply::StatusBytes(reply_line(&s.as_bytes()));
    }
    if let Some(n) = number_of(&field(t, "double")) {
        return Reply::Double(n);
    }
    if let Value::String(s) = field(t, "big_number") {
        return Reply::Bulk(s.as_bytes().to_vec());
    }
    if let Value::Table(m) = field(t, "map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            pairs.push((
                to_reply_at(&k, resp3, depth + 1),
                to_reply_at(&v, resp3, depth + 1),
            ));
        }
        return Reply::Map(pairs);
    }
    if let Value::Table(s) = field(t, "set") {
        let members = s
            .pairs::<Value, Value>()
            .flatten()
            .map(|(k, _)| to_reply_at(&k, resp3, depth + 1))
            .collect();
        return Reply::Set(members);
    }
    // An array up to its first nil.
    let mut items = Vec::new();
    for i in 1.. {
        let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
        if v.is_nil() {
            break;
        }
        items.push(to_reply_at(&v, resp3, depth + 1));
    }
    Reply::Array(items)
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_arguments_like_redis_7_2() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (100.0, "100"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (-0.0, "-0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456789012345678.0, "123456789012345680"),
            (1e-7, "1e-7"),
            (0.001, "0.001"),
            (-2.5e-10, "-2.5e-10"),
            (1e300, "1e+300"),
            (42.0, "42"),
            (-17.0, "-17"),
        ];
        for (n, want) in cases {
            assert_eq!(number_arg(*n), *want, "{n}");
        }
    }

    #[test]
    fn numbers_as_replies_truncate() {
        assert_eq!(number_reply(3.99), 3);
        assert_eq!(number_reply(-3.7), -3);
        assert_eq!(number_reply(f64::INFINITY), i64::MIN);
        assert_eq!(number_reply(f64::NAN), i64::MIN);
        assert_eq!(number_reply(9.3e18), i64::MIN);
    }

    #[test]
    fn tables_become_replies() {
        let lua = Lua::new();
        let v: Value = lua.load("return {1, 'a', {2}, nil, 5}").eval().unwrap();
        assert_eq!(
            to_reply(&v, false),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(b"a".to_vec()),
                Reply::Array(vec![Reply::Int(2)])
            ])
        );
        let v: Value = lua.load("return {err='MY bad\\r\\nx\\0y'}").eval().unwrap();
        assert_eq!(
            to_reply(&v, false),
            Reply::ErrorBytes(b"MY bad  x".to_vec())
        );
        let v: Value = lua.load("local t = {} t[1] = t return t").eval().unwrap();
        assert!(matches!(to_reply(&v, false), Reply::Array(_)));
    }
}
