//! Values crossing between Lua and the server, converted as Redis converts
//! them: command replies into Lua values for `redis.call`, a script's
//! return value into a reply, and Lua numbers into command arguments.

use std::ffi::{c_int, CStr};

use mlua::{ffi, Lua};

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
    // The common case, an integer of at most 15 digits with fewer than 8
    // trailing zeros (counts, milliseconds): its plain digits, which the
    // general rule below also gives, without formatting and re-reading.
    if n.fract() == 0.0 && n.abs() < 1e15 {
        let i = n as i64;
        if i % 100_000_000 != 0 {
            return itoa::Buffer::new().format(i).to_owned();
        }
    }
    shortest(n)
}

/// `number_arg` for any finite, non-zero double.
fn shortest(n: f64) -> String {
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

/// The field names a returned table is probed for, in this order, as Redis
/// probes them: `{err=}`, `{ok=}`, then the RESP3 shapes.
const PROBE_NAMES: [&CStr; 6] = [c"err", c"ok", c"double", c"big_number", c"map", c"set"];
const ERR: usize = 0;
const OK: usize = 1;
const DOUBLE: usize = 2;
const BIG_NUMBER: usize = 3;
const MAP: usize = 4;
const SET: usize = 5;

/// Stack slots reading a reply may take: at most two per nesting level.
pub const REPLY_STACK: c_int = 2 * MAX_DEPTH as c_int + 8;

/// Registry references to the probed field names. Held there for the life
/// of the state, so pushing one is a copy: no allocation, no error.
#[derive(Clone, Copy)]
pub struct Probes([c_int; 6]);

impl Probes {
    pub fn new(lua: &Lua) -> mlua::Result<Probes> {
        let mut refs = [0; 6];
        // SAFETY: pushes six strings and moves each into the registry; an
        // allocation failure unwinds through mlua's protected call with
        // nothing of ours live.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                for (r, name) in refs.iter_mut().zip(PROBE_NAMES) {
                    ffi::lua_pushstring(state, name.as_ptr());
                    *r = ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
                }
            })?;
        }
        Ok(Probes(refs))
    }
}

/// The value at absolute stack index `idx` (or a table inside it) as a
/// reply; `resp3` is whether the script called `redis.setresp(3)`.
///
/// # Safety
/// `state` is a live Lua state with `REPLY_STACK` free slots (reserved by
/// the caller while nothing of Rust's was live). Every Lua call here is one
/// that neither allocates nor raises (`type`, `toboolean`, `tonumber`,
/// `tolstring` of strings only, `rawget`, `rawgeti`, `next`), so no
/// longjmp can skip the Rust values being built.
pub unsafe fn reply_at(
    state: *mut ffi::lua_State,
    idx: c_int,
    probes: &Probes,
    resp3: bool,
    depth: usize,
) -> Reply {
    match ffi::lua_type(state, idx) {
        ffi::LUA_TNIL => Reply::Nil,
        ffi::LUA_TBOOLEAN => match (ffi::lua_toboolean(state, idx) != 0, resp3) {
            (b, true) => Reply::Bool(b),
            (true, false) => Reply::Int(1),
            (false, false) => Reply::Nil,
        },
        ffi::LUA_TNUMBER => Reply::Int(number_reply(ffi::lua_tonumber(state, idx))),
        ffi::LUA_TSTRING => Reply::Bulk(string_at(state, idx).to_vec()),
        ffi::LUA_TTABLE if depth < MAX_DEPTH => table_reply(state, idx, probes, resp3, depth),
        // A table nested this deep (a table that contains itself): the
        // levels so far, then an error, as Redis ends at Lua's stack limit.
        ffi::LUA_TTABLE => Reply::Error("ERR reached lua stack limit".into()),
        _ => Reply::Nil,
    }
}

/// The bytes of the string at `idx`, borrowed from the stack.
unsafe fn string_at<'a>(state: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(state, idx, &mut len);
    if p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// Pushes `t[name]` (raw) for the table at `idx`; returns its type.
unsafe fn probe(state: *mut ffi::lua_State, idx: c_int, probes: &Probes, which: usize) -> c_int {
    ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, probes.0[which].into());
    ffi::lua_rawget(state, idx);
    ffi::lua_type(state, -1)
}

unsafe fn table_reply(
    state: *mut ffi::lua_State,
    idx: c_int,
    probes: &Probes,
    resp3: bool,
    depth: usize,
) -> Reply {
    let top = ffi::lua_gettop(state);
    let reply = 'found: {
        if probe(state, idx, probes, ERR) == ffi::LUA_TSTRING {
            break 'found Some(Reply::ErrorBytes(reply_line(string_at(state, -1))));
        }
        ffi::lua_settop(state, top);
        if probe(state, idx, probes, OK) == ffi::LUA_TSTRING {
            break 'found Some(Reply::StatusBytes(reply_line(string_at(state, -1))));
        }
        ffi::lua_settop(state, top);
        if probe(state, idx, probes, DOUBLE) == ffi::LUA_TNUMBER {
            break 'found Some(Reply::Double(ffi::lua_tonumber(state, -1)));
        }
        ffi::lua_settop(state, top);
        if probe(state, idx, probes, BIG_NUMBER) == ffi::LUA_TSTRING {
            break 'found Some(Reply::Bulk(string_at(state, -1).to_vec()));
        }
        ffi::lua_settop(state, top);
        if probe(state, idx, probes, MAP) == ffi::LUA_TTABLE {
            let m = ffi::lua_gettop(state);
            let mut pairs = Vec::new();
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, m) != 0 {
                let v = ffi::lua_gettop(state);
                pairs.push((
                    reply_at(state, v - 1, probes, resp3, depth + 1),
                    reply_at(state, v, probes, resp3, depth + 1),
                ));
                ffi::lua_settop(state, v - 1);
            }
            break 'found Some(Reply::Map(pairs));
        }
        ffi::lua_settop(state, top);
        if probe(state, idx, probes, SET) == ffi::LUA_TTABLE {
            let s = ffi::lua_gettop(state);
            let mut members = Vec::new();
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, s) != 0 {
                let v = ffi::lua_gettop(state);
                members.push(reply_at(state, v - 1, probes, resp3, depth + 1));
                ffi::lua_settop(state, v - 1);
            }
            break 'found Some(Reply::Set(members));
        }
        None
    };
    ffi::lua_settop(state, top);
    if let Some(r) = reply {
        return r;
    }
    // An array up to its first nil.
    let mut items = Vec::new();
    for i in 1.. {
        ffi::lua_rawgeti(state, idx, i);
        if ffi::lua_type(state, -1) == ffi::LUA_TNIL {
            ffi::lua_settop(state, top);
            break;
        }
        items.push(reply_at(state, top + 1, probes, resp3, depth + 1));
        ffi::lua_settop(state, top);
    }
    Reply::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Value;

    /// A Lua value as a reply, through `reply_at` (for tests).
    fn to_reply(lua: &Lua, v: Value, resp3: bool) -> Reply {
        let probes = Probes::new(lua).unwrap();
        let mut out = Reply::Nil;
        // SAFETY: the value is argument 1 of the protected call, and the stack
        // is reserved first.
        unsafe {
            lua.exec_raw::<()>(v, |state| {
                ffi::lua_checkstack(state, REPLY_STACK);
                out = reply_at(state, 1, &probes, resp3, 0);
            })
            .unwrap();
        }
        out
    }

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
            (120_000_001.0, "120000001"),
            (100_000_000.0, "1e+8"),
            (12_300_000.0, "12300000"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1e+15"),
            (-123_456_789_012.0, "-123456789012"),
        ];
        for (n, want) in cases {
            assert_eq!(number_arg(*n), *want, "{n}");
        }
    }

    #[test]
    fn integer_shortcut_agrees_with_the_general_rule() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Spread over every magnitude below 10^16, with trailing zeros.
            let digits = (x % 16) as i32 + 1;
            let mut n = ((x >> 8) % 10u64.pow(digits as u32)) as f64;
            n *= 10f64.powi(((x >> 4) % 10) as i32);
            if (x >> 3) & 1 == 1 {
                n = -n;
            }
            if n != 0.0 && n.abs() < 1e16 {
                assert_eq!(number_arg(n), shortest(n), "{n}");
            }
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
            to_reply(&lua, v, false),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(b"a".to_vec()),
                Reply::Array(vec![Reply::Int(2)])
            ])
        );
        let v: Value = lua.load("return {err='MY bad\\r\\nx\\0y'}").eval().unwrap();
        assert_eq!(
            to_reply(&lua, v, false),
            Reply::ErrorBytes(b"MY bad  x".to_vec())
        );
        let v: Value = lua.load("local t = {} t[1] = t return t").eval().unwrap();
        assert!(matches!(to_reply(&lua, v, false), Reply::Array(_)));
        let v: Value = lua.load("return {ok='fine', err=7}").eval().unwrap();
        assert_eq!(
            to_reply(&lua, v, false),
            Reply::StatusBytes(b"fine".to_vec())
        );
        let v: Value = lua.load("return {3.99, -2.5, true, false}").eval().unwrap();
        assert_eq!(
            to_reply(&lua, v, false),
            Reply::Array(vec![
                Reply::Int(3),
                Reply::Int(-2),
                Reply::Int(1),
                Reply::Nil
            ])
        );
    }

    #[test]
    fn resp3_shapes_become_replies() {
        let lua = Lua::new();
        let v: Value = lua
            .load("return {map={a={double=1.5}}, set={x=true}}")
            .eval()
            .unwrap();
        assert_eq!(
            to_reply(&lua, v, true),
            Reply::Map(vec![(Reply::Bulk(b"a".to_vec()), Reply::Double(1.5))])
        );
        let v: Value = lua.load("return {set={x=true}}").eval().unwrap();
        assert_eq!(
            to_reply(&lua, v, true),
            Reply::Set(vec![Reply::Bulk(b"x".to_vec())])
        );
        let v: Value = lua.load("return {big_number='123', false}").eval().unwrap();
        assert_eq!(to_reply(&lua, v, true), Reply::Bulk(b"123".to_vec()));
        let v: Value = lua.load("return {true, false}").eval().unwrap();
        assert_eq!(
            to_reply(&lua, v, true),
            Reply::Array(vec![Reply::Bool(true), Reply::Bool(false)])
        );
    }
}
