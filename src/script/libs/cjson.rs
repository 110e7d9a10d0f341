//! `cjson`: JSON for scripts, as Redis 7.0 ships it (lua-cjson 2.1.0).
//!
//! What a script can observe and what this file reproduces:
//! - `encode`: a table is an array when every key is an integer in
//!   1..=2^31-1 (holes become `null`), else an object; an empty table is
//!   `{}`. Too-sparse arrays are an error unless `encode_sparse_array`
//!   allows converting them. Numbers print as C's `%.14g`; `/` is escaped;
//!   NaN/Inf are errors by default. Depth past `encode_max_depth` (1000) is
//!   an error.
//! - `decode`: numbers go through C `strtod` rules, so hex, `inf` and `nan`
//!   are accepted by default; `null` becomes `cjson.null`, the NULL light
//!   userdata, shared by every instance. Errors name the offending token
//!   and its 1-based byte position.
//! - the configuration functions, per instance (`cjson.new()` makes a fresh
//!   one), with lua-cjson's argument checks and messages.
//!
//! Nesting is walked iteratively (see [`Spill`]): Rust recursion on a
//! script-controlled depth could overflow the thread's stack.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{LightUserData, Lua, Table, Value};

use super::{as_number, reserve, too_large, type_name, Args, Fail, Kit, LibResult, Out, Spill};

/// The deepest nesting Redis's encoder reaches before Lua's C stack
/// (LUAI_MAXCSTACK) runs out, whatever `encode_max_depth` says.
const ENCODE_DEPTH_CEILING: i32 = 7997;
/// The same for the decoder.
const DECODE_DEPTH_CEILING: i32 = 7998;

/// `cjson.null`: the NULL light userdata, so every instance's `null` (and
/// every decoded `null`) is the same value.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// What `encode_invalid_numbers` allows.
#[derive(Clone, Copy, PartialEq)]
enum Invalid {
    Off = 0,
    On = 1,
    Null = 2,
}

/// One instance's settings, shared by its functions.
#[derive(Clone, Copy)]
struct Config {
    sparse_convert: bool,
    sparse_ratio: i32,
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    encode_invalid: Invalid,
    decode_invalid: bool,
    keep_buffer: bool,
    precision: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid: Invalid::Off,
            decode_invalid: true,
            keep_buffer: true,
            precision: 14,
        }
    }
}

type Shared = Rc<Cell<Config>>;

/// Builds a `cjson` table: the global one, and each `cjson.new()`.
pub(super) fn create(lua: &Lua, kit: &Kit) -> mlua::Result<Table> {
    let cfg: Shared = Rc::new(Cell::new(Config::default()));
    let t = lua.create_table()?;
    let c = cfg.clone();
    let k = kit.clone();
    t.raw_set(
        "encode",
        kit.function(lua, move |lua, a| {
            if a.len() != 1 {
                return Err(Fail::arg(1, "expected 1 argument"));
            }
            let mut enc = Encoder {
                lua,
                kit: &k,
                cfg: c.get(),
                out: Vec::new(),
            };
            enc.encode(a.get(1).cloned().unwrap_or(Value::Nil))?;
            Out::one(Value::String(lua.create_string(&enc.out)?))
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        kit.function(lua, move |lua, a| {
            if a.len() != 1 {
                return Err(Fail::arg(1, "expected 1 argument"));
            }
            let s = a.string(lua, 1)?;
            let v = decode(lua, c.get(), &s.as_bytes())?;
            Out::one(v)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "encode_sparse_array",
        kit.function(lua, move |lua, a| {
            arg_count(&a, 3)?;
            let mut cfg = c.get();
            let mut convert = usize::from(cfg.sparse_convert);
            enum_option(lua, &a, 1, &["off", "on"], &mut convert)?;
            int_option(lua, &a, 2, &mut cfg.sparse_ratio, 0, i32::MAX)?;
            int_option(lua, &a, 3, &mut cfg.sparse_safe, 0, i32::MAX)?;
            cfg.sparse_convert = convert == 1;
            c.set(cfg);
            Out::many(vec![
                Value::Boolean(cfg.sparse_convert),
                Value::Number(f64::from(cfg.sparse_ratio)),
                Value::Number(f64::from(cfg.sparse_safe)),
            ])
        })?,
    )?;
    let depth_fn = |set: fn(&mut Config) -> &mut i32| {
        let c = cfg.clone();
        kit.function(lua, move |lua, a| {
            arg_count(&a, 1)?;
            let mut cfg = c.get();
            int_option(lua, &a, 1, set(&mut cfg), 1, i32::MAX)?;
            c.set(cfg);
            Out::one(Value::Number(f64::from(*set(&mut cfg))))
        })
    };
    t.raw_set("encode_max_depth", depth_fn(|c| &mut c.encode_max_depth)?)?;
    t.raw_set("decode_max_depth", depth_fn(|c| &mut c.decode_max_depth)?)?;
    let c = cfg.clone();
    t.raw_set(
        "encode_number_precision",
        kit.function(lua, move |lua, a| {
            arg_count(&a, 1)?;
            let mut cfg = c.get();
            int_option(lua, &a, 1, &mut cfg.precision, 1, 14)?;
            c.set(cfg);
            Out::one(Value::Number(f64::from(cfg.precision)))
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "encode_keep_buffer",
        kit.function(lua, move |lua, a| {
            // Buffer reuse is an allocation detail; only the flag is kept.
            arg_count(&a, 1)?;
            let mut cfg = c.get();
            let mut v = usize::from(cfg.keep_buffer);
            enum_option(lua, &a, 1, &["off", "on"], &mut v)?;
            cfg.keep_buffer = v == 1;
            c.set(cfg);
            Out::one(Value::Boolean(cfg.keep_buffer))
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "encode_invalid_numbers",
        kit.function(lua, move |lua, a| {
            arg_count(&a, 1)?;
            let mut cfg = c.get();
            let mut v = cfg.encode_invalid as usize;
            enum_option(lua, &a, 1, &["off", "on", "null"], &mut v)?;
            cfg.encode_invalid = match v {
                0 => Invalid::Off,
                1 => Invalid::On,
                _ => Invalid::Null,
            };
            c.set(cfg);
            Out::one(match cfg.encode_invalid {
                Invalid::Off => Value::Boolean(false),
                Invalid::On => Value::Boolean(true),
                Invalid::Null => Value::String(lua.create_string("null")?),
            })
        })?,
    )?;
    let c = cfg;
    t.raw_set(
        "decode_invalid_numbers",
        kit.function(lua, move |lua, a| {
            arg_count(&a, 1)?;
            let mut cfg = c.get();
            let mut v = usize::from(cfg.decode_invalid);
            enum_option(lua, &a, 1, &["off", "on"], &mut v)?;
            cfg.decode_invalid = v == 1;
            c.set(cfg);
            Out::one(Value::Boolean(cfg.decode_invalid))
        })?,
    )?;
    let k = kit.clone();
    t.raw_set(
        "new",
        kit.function(lua, move |lua, _| Out::one(Value::Table(create(lua, &k)?)))?,
    )?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

/// At most `max` arguments, else lua-cjson's "found too many arguments".
fn arg_count(a: &Args, max: usize) -> LibResult<()> {
    if a.len() > max {
        return Err(Fail::arg(
            super::arg_index(max + 1),
            "found too many arguments",
        ));
    }
    Ok(())
}

/// An integer setting: absent or nil reads it, anything else must be a
/// number whose C `int` value lies in `min..=max`. lua-cjson reports a
/// range error against argument 1 whichever argument it was.
fn int_option(
    lua: &Lua,
    a: &Args,
    i: usize,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> LibResult<()> {
    if a.is_none_or_nil(i) {
        return Ok(());
    }
    // luaL_checkinteger, then stored in a C int: the low 32 bits.
    let v = a.integer(lua, i)? as i32;
    if v < min || v > max {
        return Err(Fail::arg(
            1,
            format!("expected integer between {min} and {max}"),
        ));
    }
    *setting = v;
    Ok(())
}

/// An enumerated setting: a boolean means "off"/"on", else the string must
/// be one of `options` (`luaL_checkoption`).
fn enum_option(
    lua: &Lua,
    a: &Args,
    i: usize,
    options: &[&str],
    setting: &mut usize,
) -> LibResult<()> {
    match a.get(i) {
        None | Some(Value::Nil) => Ok(()),
        Some(Value::Boolean(b)) => {
            *setting = usize::from(*b);
            Ok(())
        }
        Some(_) => {
            let s = a.string(lua, i)?;
            let s = s.as_bytes();
            match options.iter().position(|o| o.as_bytes() == &s[..]) {
                Some(p) => {
                    *setting = p;
                    Ok(())
                }
                None => Err(Fail::arg(
                    super::arg_index(i),
                    [&b"invalid option '"[..], &s, b"'"].concat(),
                )),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Where the encoder is inside one table.
enum Frame {
    /// Writing elements `next..=len`.
    Array { next: i64, len: i64 },
    /// Walking entries with `next`; `first` until one was written.
    Object { first: bool },
}

struct Encoder<'a> {
    lua: &'a Lua,
    kit: &'a Kit,
    cfg: Config,
    out: Vec<u8>,
}

impl Encoder<'_> {
    /// Appends the JSON text of `root`.
    fn encode(&mut self, root: Value) -> LibResult<()> {
        let max_depth = self.cfg.encode_max_depth.min(ENCODE_DEPTH_CEILING);
        let mut frames: Vec<Frame> = Vec::new();
        // The table being walked and, for an object, the key last visited;
        // the same pair for every enclosing table waits in `spill`.
        let mut spill = Spill::new();
        let mut current: Option<Table> = None;
        let mut key = Value::Nil;
        let mut pending = Some(root);
        loop {
            if let Some(v) = pending.take() {
                if let Value::Table(t) = v {
                    let depth = super::arg_index(frames.len() + 1);
                    if depth > max_depth {
                        return Err(Fail::msg(format!(
                            "Cannot serialise, excessive nesting ({depth})"
                        )));
                    }
                    let (len, items) = self.array_length(&t)?;
                    if let Some(parent) = current.take() {
                        spill.push(self.lua, Value::Table(parent))?;
                        spill.push(self.lua, std::mem::take(&mut key))?;
                    }
                    current = Some(t);
                    if len > 0 {
                        // A hole prints as "null,", an element as at least
                        // two bytes: refuse a hopeless array up front.
                        let elements = items.min(len);
                        let least = 5 * (len - elements) + 2 * elements;
                        if least > super::MAX_OUTPUT as i64 {
                            return Err(too_large("Cannot serialise table"));
                        }
                        self.out.push(b'[');
                        frames.push(Frame::Array { next: 1, len });
                    } else {
                        self.out.push(b'{');
                        frames.push(Frame::Object { first: true });
                    }
                } else {
                    self.scalar(&v)?;
                }
            }
            let (Some(frame), Some(table)) = (frames.last_mut(), current.as_ref()) else {
                return Ok(());
            };
            let done = match frame {
                Frame::Array { next, len } => {
                    if *next <= *len {
                        if *next > 1 {
                            self.out.push(b',');
                        }
                        pending = Some(table.raw_get(*next)?);
                        *next += 1;
                        false
                    } else {
                        self.out.push(b']');
                        true
                    }
                }
                Frame::Object { first } => match self.kit.next(table, std::mem::take(&mut key))? {
                    Some((k, v)) => {
                        if !*first {
                            self.out.push(b',');
                        }
                        *first = false;
                        self.key(&k)?;
                        self.out.push(b':');
                        key = k;
                        pending = Some(v);
                        false
                    }
                    None => {
                        self.out.push(b'}');
                        true
                    }
                },
            };
            if done {
                frames.pop();
                if frames.is_empty() {
                    return Ok(());
                }
                key = spill.pop()?;
                current = match spill.pop()? {
                    Value::Table(t) => Some(t),
                    _ => None,
                };
            }
        }
    }

    /// lua-cjson's array test, quirks included: the largest key is kept in
    /// a C `int`, so a key past 2^31-1 (or inf) stores INT_MIN there and
    /// the outcome depends on the keys visited after it. Returns the array
    /// length (0 or less means an object: `{}` for an empty table) and the
    /// number of entries. A sparse array is an error, or an object when
    /// converting.
    fn array_length(&self, t: &Table) -> LibResult<(i64, i64)> {
        let (mut max, mut items) = (0i32, 0i32);
        // Values are read as booleans: that takes no mlua reference.
        for pair in t.pairs::<Value, bool>() {
            match as_number(&pair?.0) {
                Some(n) if n >= 1.0 && n.floor() == n => {
                    if n > f64::from(max) {
                        max = c_int(n);
                    }
                    items = items.wrapping_add(1);
                }
                // Like the C loop, stop at the first other key.
                _ => return Ok((-1, 0)),
            }
        }
        let cfg = &self.cfg;
        // C int arithmetic, as lua-cjson does it.
        if cfg.sparse_ratio > 0
            && max > items.wrapping_mul(cfg.sparse_ratio)
            && max > cfg.sparse_safe
        {
            if cfg.sparse_convert {
                return Ok((-1, 0));
            }
            return Err(Fail::msg(
                "Cannot serialise table: excessively sparse array",
            ));
        }
        Ok((i64::from(max), i64::from(items)))
    }

    /// An object key: strings as they are, numbers as their JSON text in
    /// quotes; anything else is an error.
    fn key(&mut self, k: &Value) -> LibResult<()> {
        match k {
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                let n = as_number(k).unwrap_or(0.0);
                reserve(&mut self.out, 32, "Cannot serialise table")?;
                self.out.push(b'"');
                self.number(n)?;
                self.out.push(b'"');
                Ok(())
            }
            other => Err(Fail::msg(format!(
                "Cannot serialise {}: table key must be a number or string",
                type_name(other)
            ))),
        }
    }

    /// Everything but a table.
    fn scalar(&mut self, v: &Value) -> LibResult<()> {
        reserve(&mut self.out, 32, "Cannot serialise value")?;
        match v {
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::Boolean(true) => self.out.extend_from_slice(b"true"),
            Value::Boolean(false) => self.out.extend_from_slice(b"false"),
            Value::Integer(_) | Value::Number(_) => self.number(as_number(v).unwrap_or(0.0))?,
            Value::String(s) => self.string(&s.as_bytes())?,
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"null"),
            other => {
                return Err(Fail::msg(format!(
                    "Cannot serialise {}: type not supported",
                    type_name(other)
                )))
            }
        }
        Ok(())
    }

    fn number(&mut self, n: f64) -> LibResult<()> {
        if n.is_finite() {
            format_g(&mut self.out, n, self.cfg.precision);
            return Ok(());
        }
        match self.cfg.encode_invalid {
            Invalid::Off => Err(Fail::msg("Cannot serialise number: must not be NaN or Inf")),
            Invalid::Null => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Invalid::On => {
                let text: &[u8] = if n.is_nan() {
                    b"nan"
                } else if n > 0.0 {
                    b"inf"
                } else {
                    b"-inf"
                };
                self.out.extend_from_slice(text);
                Ok(())
            }
        }
    }

    /// A quoted string with lua-cjson's escapes: the short forms, `\/`,
    /// `\u00XX` for the other control bytes and DEL; other bytes (UTF-8 or
    /// not) as they are.
    fn string(&mut self, s: &[u8]) -> LibResult<()> {
        // Escapes can grow the text up to six times; checked after.
        reserve(
            &mut self.out,
            s.len().saturating_add(2),
            "Cannot serialise string",
        )?;
        self.out.push(b'"');
        let mut rest = s;
        while !rest.is_empty() {
            // Copy the run that needs no escaping in one go.
            let plain = rest
                .iter()
                .position(|&b| b < 0x20 || matches!(b, b'"' | b'\\' | b'/' | 0x7f))
                .unwrap_or(rest.len());
            self.out.extend_from_slice(&rest[..plain]);
            let Some((&b, tail)) = rest[plain..].split_first() else {
                break;
            };
            rest = tail;
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'/' => b"\\/",
                b'\x08' => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\x0c' => b"\\f",
                b'\r' => b"\\r",
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(HEX[usize::from(b >> 4)]);
                    self.out.push(HEX[usize::from(b & 15)]);
                    continue;
                }
            };
            self.out.extend_from_slice(short);
        }
        self.out.push(b'"');
        if self.out.len() > super::MAX_OUTPUT {
            return Err(too_large("Cannot serialise string"));
        }
        Ok(())
    }
}

/// C's `(int)d` on x86-64: truncation, INT_MIN when out of range or NaN.
fn c_int(d: f64) -> i32 {
    if d.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&d) {
        i32::MIN
    } else {
        d as i32
    }
}

/// C's `printf("%.*g", precision, n)` for a finite `n`: the shortest of
/// fixed or exponent notation, trailing zeros dropped, exponent with a sign
/// and at least two digits.
fn format_g(out: &mut Vec<u8>, n: f64, precision: i32) {
    let p = precision.clamp(1, 14) as usize;
    if n.is_sign_negative() {
        out.push(b'-');
    }
    let n = n.abs();
    // Small integers, the common case, print as themselves.
    if n.fract() == 0.0 && n < 10f64.powi(p as i32) {
        out.extend_from_slice((n as u64).to_string().as_bytes());
        return;
    }
    let (digits, exp) = significant_digits(n, p);
    if exp < -4 || exp >= p as i32 {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(e.to_string().as_bytes());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        for i in 0..int_len {
            out.push(digits.get(i).copied().unwrap_or(b'0'));
        }
        if digits.len() > int_len {
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..]);
        }
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-exp - 1) as usize, b'0');
        out.extend_from_slice(&digits);
    }
}

/// The decimal digits of `n` (positive, finite, nonzero) rounded to at most
/// `p` significant digits, trailing zeros dropped, and the decimal exponent
/// of the first. For a normal double (p <= 15) Rust's shortest round-trip
/// digits are cheap and, unless they end in exactly a tie at the cut,
/// round to the same `p` digits as the exact binary value does (what C's
/// printf rounds): the shortest digits are within half an ulp, far less
/// than half a unit of the 15th digit. Ties and subnormals take Rust's
/// exact formatting, which rounds half to even as glibc does.
fn significant_digits(n: f64, p: usize) -> (Vec<u8>, i32) {
    let split = |text: &str| -> (Vec<u8>, i32) {
        let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
        let digits = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        (digits, exp.parse().unwrap_or(0))
    };
    if n < f64::MIN_POSITIVE {
        // Subnormals are too coarse for the shortest digits to stand in
        // for the exact value.
        let (mut digits, exp) = split(&format!("{:.*e}", p - 1, n));
        while digits.len() > 1 && digits.last() == Some(&b'0') {
            digits.pop();
        }
        return (digits, exp);
    }
    let (mut digits, mut exp) = split(&format!("{n:e}"));
    if digits.len() > p {
        if &digits[p..] == b"5" {
            (digits, exp) = split(&format!("{:.*e}", p - 1, n));
        } else {
            let up = digits[p] >= b'5';
            digits.truncate(p);
            if up {
                // Propagate the carry; all nines become 1 and a new exponent.
                let mut i = p;
                loop {
                    if i == 0 {
                        digits.insert(0, b'1');
                        digits.truncate(p);
                        exp += 1;
                        break;
                    }
                    i -= 1;
                    if digits[i] == b'9' {
                        digits[i] = b'0';
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        }
    }
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp)
}

// ---------------------------------------------------------------------------
// Decoding

/// A lexical token, named in errors as lua-cjson names it.
#[derive(Clone, Copy, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    /// Its bytes are in `Decoder::text`.
    Str,
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(msg) => msg,
        }
    }
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    decode_invalid: bool,
    /// The last string token's bytes.
    text: Vec<u8>,
    /// Where the last token started (0-based).
    index: usize,
}

/// Where the decoder is inside one container.
enum DFrame {
    /// The next element goes at this index.
    Array(i64),
    /// The member being read goes under this key.
    Object(Vec<u8>),
}

/// `cjson.decode`.
fn decode(lua: &Lua, cfg: Config, bytes: &[u8]) -> LibResult<Value> {
    // lua-cjson refuses a document whose first two bytes hold a NUL.
    if bytes.len() >= 2 && (bytes[0] == 0 || bytes[1] == 0) {
        return Err(Fail::msg("JSON parser does not support UTF-16 or UTF-32"));
    }
    // The C parser reads a NUL-terminated buffer: text ends at the first NUL.
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut d = Decoder {
        data: &bytes[..end],
        pos: 0,
        decode_invalid: cfg.decode_invalid,
        text: Vec::new(),
        index: 0,
    };
    let max_depth = cfg.decode_max_depth.min(DECODE_DEPTH_CEILING);
    let mut frames: Vec<DFrame> = Vec::new();
    // The container being filled; enclosing ones wait in `spill`.
    let mut spill = Spill::new();
    let mut current: Option<Table> = None;
    let mut tok = d.next();
    let root = 'value: loop {
        // `tok` starts a value.
        let mut value = match tok {
            Tok::ObjBegin | Tok::ArrBegin => {
                let depth = super::arg_index(frames.len() + 1);
                if depth > max_depth {
                    return Err(Fail::msg(format!(
                        "Found too many nested data structures ({depth}) at character {}",
                        d.index + 1
                    )));
                }
                if let Some(parent) = current.take() {
                    spill.push(lua, Value::Table(parent))?;
                }
                current = Some(lua.create_table()?);
                let object = tok == Tok::ObjBegin;
                tok = d.next();
                if object && tok != Tok::ObjEnd {
                    frames.push(DFrame::Object(d.member_key(tok)?));
                    tok = d.next();
                    continue 'value;
                }
                if !object && tok != Tok::ArrEnd {
                    frames.push(DFrame::Array(1));
                    continue 'value;
                }
                // Empty: finished as soon as opened.
                frames.push(DFrame::Array(1));
                finish(&mut frames, &mut current, &mut spill)?
            }
            Tok::Str => Value::String(lua.create_string(&d.text)?),
            Tok::Num(n) => Value::Number(n),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => null(),
            other => return Err(d.expected("value", other)),
        };
        // Store the finished value, closing every container it completes.
        loop {
            let (Some(frame), Some(table)) = (frames.last_mut(), current.as_ref()) else {
                break 'value value;
            };
            match frame {
                DFrame::Array(n) => {
                    table.raw_set(*n, value)?;
                    *n += 1;
                    tok = d.next();
                    match tok {
                        Tok::Comma => {
                            tok = d.next();
                            continue 'value;
                        }
                        Tok::ArrEnd => {}
                        other => return Err(d.expected("comma or array end", other)),
                    }
                }
                DFrame::Object(key) => {
                    table.raw_set(lua.create_string(&key)?, value)?;
                    tok = d.next();
                    match tok {
                        Tok::Comma => {
                            let key_tok = d.next();
                            *key = d.member_key(key_tok)?;
                            tok = d.next();
                            continue 'value;
                        }
                        Tok::ObjEnd => {}
                        other => return Err(d.expected("comma or object end", other)),
                    }
                }
            }
            value = finish(&mut frames, &mut current, &mut spill)?;
        }
    };
    match d.next() {
        Tok::End => Ok(root),
        other => Err(d.expected("the end", other)),
    }
}

/// Closes the innermost container: it becomes a value, and its parent (if
/// any) comes back from the spill.
fn finish(
    frames: &mut Vec<DFrame>,
    current: &mut Option<Table>,
    spill: &mut Spill,
) -> LibResult<Value> {
    frames.pop();
    let done = current.take().map_or(Value::Nil, Value::Table);
    if !frames.is_empty() {
        if let Value::Table(parent) = spill.pop()? {
            *current = Some(parent);
        }
    }
    Ok(done)
}

impl Decoder<'_> {
    /// "Expected X but found Y at character N".
    fn expected(&self, what: &str, found: Tok) -> Fail {
        Fail::msg(format!(
            "Expected {what} but found {} at character {}",
            found.name(),
            self.index + 1
        ))
    }

    /// An object member's key (given its token) and the colon after it.
    fn member_key(&mut self, tok: Tok) -> LibResult<Vec<u8>> {
        if tok != Tok::Str {
            return Err(self.expected("object key string", tok));
        }
        let key = std::mem::take(&mut self.text);
        match self.next() {
            Tok::Colon => Ok(key),
            other => Err(self.expected("colon", other)),
        }
    }

    fn byte(&self, at: usize) -> u8 {
        self.data.get(at).copied().unwrap_or(0)
    }

    /// The next token; `self.index` is where it starts.
    fn next(&mut self) -> Tok {
        while matches!(self.byte(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        self.index = self.pos;
        let rest = &self.data[self.pos.min(self.data.len())..];
        let single = match self.byte(self.pos) {
            0 => return Tok::End,
            b'{' => Tok::ObjBegin,
            b'}' => Tok::ObjEnd,
            b'[' => Tok::ArrBegin,
            b']' => Tok::ArrEnd,
            b':' => Tok::Colon,
            b',' => Tok::Comma,
            b'"' => return self.string(),
            b'-' | b'0'..=b'9' => {
                if !self.decode_invalid && is_invalid_number(rest) {
                    return Tok::Error("invalid number");
                }
                return self.number();
            }
            _ => {
                for (word, tok) in [
                    (&b"true"[..], Tok::Bool(true)),
                    (&b"false"[..], Tok::Bool(false)),
                    (&b"null"[..], Tok::Null),
                ] {
                    if rest.starts_with(word) {
                        self.pos += word.len();
                        return tok;
                    }
                }
                if self.decode_invalid && is_invalid_number(rest) {
                    return self.number();
                }
                return Tok::Error("invalid token");
            }
        };
        self.pos += 1;
        single
    }

    fn number(&mut self) -> Tok {
        match strtod(&self.data[self.pos..]) {
            Some((n, len)) => {
                self.pos += len;
                Tok::Num(n)
            }
            None => Tok::Error("invalid number"),
        }
    }

    /// A string token; errors point at the offending escape or the end.
    fn string(&mut self) -> Tok {
        self.text.clear();
        self.pos += 1;
        loop {
            let b = self.byte(self.pos);
            match b {
                // The text was cut at its first NUL: 0 here is the end.
                0 => {
                    self.index = self.pos;
                    return Tok::Error("unexpected end of string");
                }
                b'"' => {
                    self.pos += 1;
                    return Tok::Str;
                }
                b'\\' => {
                    let escape = match self.byte(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            if !self.unicode_escape() {
                                self.index = self.pos;
                                return Tok::Error("invalid unicode escape code");
                            }
                            continue;
                        }
                        _ => {
                            self.index = self.pos;
                            return Tok::Error("invalid escape code");
                        }
                    };
                    self.text.push(escape);
                    self.pos += 2;
                }
                _ => {
                    self.text.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// `\uXXXX` at `self.pos` (a surrogate pair as two escapes) as UTF-8;
    /// false when malformed.
    fn unicode_escape(&mut self) -> bool {
        let Some(mut cp) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut len = 6;
        if (0xdc00..0xe000).contains(&cp) {
            return false;
        }
        if (0xd800..0xdc00).contains(&cp) {
            if self.byte(self.pos + 6) != b'\\' || self.byte(self.pos + 7) != b'u' {
                return false;
            }
            match self.hex4(self.pos + 8) {
                Some(low) if (0xdc00..0xe000).contains(&low) => {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                    len = 12;
                }
                _ => return false,
            }
        }
        let mut buf = [0u8; 4];
        let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
        self.text
            .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        self.pos += len;
        true
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0;
        for i in 0..4 {
            v = v * 16 + char::from(self.byte(at + i)).to_digit(16)?;
        }
        Some(v)
    }
}

/// lua-cjson's test for numbers JSON forbids but `strtod` reads: a leading
/// `+`, a leading zero followed by a digit or `x`, `inf`, `nan`.
fn is_invalid_number(p: &[u8]) -> bool {
    let q = match p.first() {
        Some(b'+') => return true,
        Some(b'-') => &p[1..],
        _ => p,
    };
    if q.first() == Some(&b'0') {
        if let Some(b) = q.get(1) {
            if b.is_ascii_digit() || *b == b'x' || *b == b'X' {
                return true;
            }
        }
    }
    let head = &q[..q.len().min(3)];
    head.eq_ignore_ascii_case(b"inf") || head.eq_ignore_ascii_case(b"nan")
}

/// glibc `strtod` on `s` (no leading whitespace): the value and how many
/// bytes it read, or `None` when it reads nothing. Decimal, hex (with an
/// optional binary exponent), `inf`/`infinity`, `nan`/`nan(chars)`.
fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let (neg, start) = match s.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let rest = &s[start..];
    let sign = |v: f64| if neg { -v } else { v };
    let starts_ci =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts_ci(b"inf") {
        let len = if starts_ci(b"infinity") { 8 } else { 3 };
        return Some((sign(f64::INFINITY), start + len));
    }
    if starts_ci(b"nan") {
        let mut len = 3;
        if rest.get(3) == Some(&b'(') {
            let body = rest[4..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            if rest.get(4 + body) == Some(&b')') {
                len = 5 + body;
            }
        }
        return Some((sign(f64::NAN), start + len));
    }
    let is_hex = |at: usize| rest.get(at).is_some_and(u8::is_ascii_hexdigit);
    if rest.len() > 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && (is_hex(2) || (rest[2] == b'.' && is_hex(3)))
    {
        let (v, len) = hex_float(&rest[2..]);
        return Some((sign(v), start + 2 + len));
    }
    let digits = |from: usize| {
        rest[from.min(rest.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int = digits(0);
    let mut len = int;
    let mut frac = 0;
    if rest.get(len) == Some(&b'.') {
        frac = digits(len + 1);
        len += 1 + frac;
    }
    if int + frac == 0 {
        return None;
    }
    if matches!(rest.get(len), Some(b'e' | b'E')) {
        let signed = usize::from(matches!(rest.get(len + 1), Some(b'+' | b'-')));
        let exp = digits(len + 1 + signed);
        if exp > 0 {
            len += 1 + signed + exp;
        }
    }
    let text = std::str::from_utf8(&rest[..len]).ok()?;
    let v: f64 = text.parse().ok()?;
    Some((sign(v), start + len))
}

/// The digits after "0x": a hex mantissa with an optional point and `p`
/// exponent, correctly rounded to a double. Returns the value and length.
fn hex_float(s: &[u8]) -> (f64, usize) {
    let (mut m, mut exp, mut sticky) = (0u64, 0i64, false);
    let mut i = 0;
    let mut seen_point = false;
    loop {
        match s.get(i) {
            Some(b'.') if !seen_point => seen_point = true,
            Some(b) if b.is_ascii_hexdigit() => {
                let d = u64::from(char::from(*b).to_digit(16).unwrap_or(0));
                if m >> 60 == 0 {
                    m = m << 4 | d;
                    if seen_point {
                        exp -= 4;
                    }
                } else {
                    sticky |= d != 0;
                    if !seen_point {
                        exp += 4;
                    }
                }
            }
            _ => break,
        }
        i += 1;
    }
    if matches!(s.get(i), Some(b'p' | b'P')) {
        let neg = s.get(i + 1) == Some(&b'-');
        let signed = usize::from(matches!(s.get(i + 1), Some(b'+' | b'-')));
        let count = s[(i + 1 + signed).min(s.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if count > 0 {
            let mut e: i64 = 0;
            for b in &s[i + 1 + signed..i + 1 + signed + count] {
                // Saturate: anything this large is already 0 or inf.
                e = (e * 10 + i64::from(b - b'0')).min(1 << 20);
            }
            exp += if neg { -e } else { e };
            i += 1 + signed + count;
        }
    }
    (compose(m, sticky, exp), i)
}

/// `m * 2^exp` (plus a nonzero tail below `m` when `sticky`) rounded to the
/// nearest double, ties to even, with subnormals and overflow handled.
fn compose(m: u64, sticky: bool, exp: i64) -> f64 {
    if m == 0 {
        return 0.0;
    }
    let lz = m.leading_zeros();
    let m = m << lz;
    // The value is m * 2^(exp - lz) with m's top bit at 63, so its leading
    // bit has weight 2^top.
    let top = exp - i64::from(lz) + 63;
    if top > 1023 {
        return f64::INFINITY;
    }
    // Mantissa bits the result can hold: 53, fewer once subnormal.
    let keep = if top >= -1022 { 53 } else { 53 - (-1022 - top) };
    if keep <= 0 {
        let above_half = keep == 0 && (m > 1 << 63 || (m == 1 << 63 && sticky));
        return if above_half { f64::from_bits(1) } else { 0.0 };
    }
    let shift = (64 - keep) as u32;
    let rem = m & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    let mut q = m >> shift;
    if rem > half || (rem == half && (sticky || q & 1 == 1)) {
        q += 1;
    }
    if keep < 53 {
        // Subnormal: q counts units of 2^-1074, which is the bit pattern
        // (a carry into bit 52 yields the smallest normal, also correctly).
        return f64::from_bits(q);
    }
    let mut top = top;
    if q == 1 << 53 {
        q >>= 1;
        top += 1;
    }
    if top > 1023 {
        return f64::INFINITY;
    }
    f64::from_bits((((top + 1023) as u64) << 52) | (q & ((1 << 52) - 1)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, eval, lua};
    use super::*;

    fn enc(lua: &Lua, expr: &str) -> String {
        eval(lua, &format!("return cjson.encode({expr})"))
    }

    /// A decoded value re-encoded (with `tostring` for scalars), or the
    /// error text.
    fn dec(lua: &Lua, json: &str) -> String {
        lua.globals().set("J", json).expect("set J");
        eval(
            lua,
            "local ok, v = pcall(cjson.decode, J)\n\
             if not ok then return 'ERR ' .. v end\n\
             if type(v) == 'table' then return cjson.encode(v) end\n\
             if v == cjson.null then return 'NULL' end\n\
             return type(v) .. ' ' .. tostring(v)",
        )
    }

    #[test]
    fn encodes_tables_like_redis() {
        let lua = lua();
        assert_eq!(enc(&lua, "{1,2,{a=1}}"), r#"[1,2,{"a":1}]"#);
        assert_eq!(enc(&lua, "{}"), "{}");
        assert_eq!(enc(&lua, "{[1]=1,[2]=2,[4]=4}"), "[1,2,null,4]");
        assert_eq!(
            enc(&lua, "{[1]=1,[10]=2}"),
            "[1,null,null,null,null,null,null,null,null,2]"
        );
        assert_eq!(enc(&lua, "{[3]=1}"), "[null,null,1]");
        assert_eq!(enc(&lua, "{nil,nil,3}"), "[null,null,3]");
        assert_eq!(enc(&lua, "{[1]=1, x=2}"), r#"{"1":1,"x":2}"#);
        assert_eq!(enc(&lua, "{[0]=1}"), r#"{"0":1}"#);
        assert_eq!(enc(&lua, "{[1.5]=1}"), r#"{"1.5":1}"#);
        assert_eq!(enc(&lua, "{[-1]=1}"), r#"{"-1":1}"#);
        assert_eq!(enc(&lua, "{[2^31]=1}"), r#"{"2147483648":1}"#);
        // lua-cjson keeps the largest key in a C int: a huge key counts as
        // INT_MIN, and what follows it decides.
        assert_eq!(enc(&lua, "{[2^31]=false,[1]=true}"), "[true]");
        assert_eq!(enc(&lua, "{[1e20]=false,[1]=true}"), "[true]");
        assert_eq!(
            enc(&lua, "{[1]=true,[2^31]=false}"),
            r#"{"1":true,"2147483648":false}"#
        );
        assert_eq!(
            enc(&lua, "{[2^31+5]=false,[1]=true, [2]=3}"),
            r#"{"1":true,"2":3,"2147483653":false}"#
        );
        assert_eq!(enc(&lua, "{[2^53]=1}"), r#"{"9.007199254741e+15":1}"#);
        assert_eq!(enc(&lua, "{a=cjson.null}"), r#"{"a":null}"#);
        assert_eq!(enc(&lua, "{cjson.null}"), "[null]");
        // Hash order is Lua's own `next` order, as in Redis.
        assert_eq!(enc(&lua, "{a=1,b=2,c=3}"), r#"{"a":1,"c":3,"b":2}"#);
        assert_eq!(enc(&lua, "{{{}}}"), "[[{}]]");
    }

    #[test]
    fn sparse_arrays_match_redis() {
        let lua = lua();
        let sparse = "user_script:1: Cannot serialise table: excessively sparse array";
        assert_eq!(err(&lua, "cjson.encode({[1]=1,[11]=2})"), sparse);
        assert_eq!(err(&lua, "cjson.encode({[11]=1})"), sparse);
        assert_eq!(err(&lua, "cjson.encode({[2^31-1]=1})"), sparse);
        assert_eq!(
            enc(&lua, "{[10]=1}"),
            "[null,null,null,null,null,null,null,null,null,1]"
        );
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_sparse_array(true) return c.encode({[1]=1,[20]=2})",
        );
        assert_eq!(s, r#"{"1":1,"20":2}"#);
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_sparse_array(false, 3, 0) return c.encode({[1]=1,[3]=2})",
        );
        assert_eq!(s, "[1,null,2]");
        let e: String = eval(
            &lua,
            "local c = cjson.new() c.encode_sparse_array(false, 1, 0) \
             local ok, e = pcall(c.encode, {[2]=2}) return e",
        );
        assert_eq!(e, "Cannot serialise table: excessively sparse array");
        let n: i64 = eval(
            &lua,
            "local c = cjson.new() c.encode_sparse_array(false, 0) return #c.encode({[2000]=1})",
        );
        assert_eq!(n, 1999 * 5 + 3);
    }

    #[test]
    fn numbers_print_as_percent_14g() {
        let lua = lua();
        for (expr, want) in [
            ("1/3", "0.33333333333333"),
            ("100", "100"),
            ("1e15", "1e+15"),
            ("123456789012345", "1.2345678901234e+14"),
            ("12345678901234567", "1.2345678901235e+16"),
            ("-0", "-0"),
            ("1e-5", "1e-05"),
            ("0.1", "0.1"),
            ("1e100", "1e+100"),
            ("2^53", "9.007199254741e+15"),
            ("nil", "null"),
            ("true", "true"),
            ("cjson.null", "null"),
        ] {
            assert_eq!(enc(&lua, expr), want, "{expr}");
        }
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_number_precision(3) \
             return c.encode({1/3, 1234, 12345, [3.14159]=1})",
        );
        assert_eq!(s, r#"{"1":0.333,"2":1.23e+03,"3":1.23e+04,"3.14":1}"#);
    }

    #[test]
    fn format_g_agrees_with_c_printf() {
        // Lua 5.1's string.format is C's sprintf: compare over awkward values.
        let lua = Lua::new();
        let values = [
            0.5,
            1.5,
            2.5,
            0.125,
            0.375,
            1e21,
            1e-7,
            123456.5,
            9.5,
            99.95,
            0.0001,
            0.00001,
            1.7976931348623157e308,
            5e-324,
            2.2250738585072014e-308,
            4503599627370497.5,
            -3.25,
            1e14,
            1e15,
            999999999999999.0,
            0.1 + 0.2,
            8.875,
            1.0 / 3.0,
            -0.0,
            0.0,
            1e-4 - 1e-20,
            99999999999999.5,
            1e100,
            123456789012345.0,
            0.95,
            0.05,
        ];
        // And a spread of pseudo-random doubles, ties and near-ties.
        let mut values = values.to_vec();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 3 {
                0 => f64::from_bits(x >> 2) % 1e6,
                1 => (x % 100_000) as f64 / 64.0,
                _ => f64::from_bits(x),
            };
            if v.is_finite() {
                values.push(v);
            }
        }
        let printf: mlua::Function = lua
            .load("return function(p, v) return string.format('%.' .. p .. 'g', v) end")
            .eval()
            .expect("printf");
        for &v in &values {
            for p in 1..=14 {
                let want: String = printf.call((p, v)).expect("format");
                let mut got = Vec::new();
                format_g(&mut got, v, p);
                assert_eq!(String::from_utf8_lossy(&got), want, "{v} at {p}");
            }
        }
    }

    #[test]
    fn strings_escape_like_redis() {
        let lua = lua();
        // redis: hex of cjson.encode of bytes 0..255
        let hex: String = eval(
            &lua,
            "local s = '' for i = 0, 255 do s = s .. string.char(i) end \
             local e = cjson.encode(s) local t = {} \
             for i = 1, #e do t[#t+1] = string.format('%02x', e:byte(i)) end \
             return table.concat(t)",
        );
        let mut want = String::from("22");
        let esc = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for b in 0u8..=255 {
            want += &match b {
                8 => esc("\\b"),
                9 => esc("\\t"),
                10 => esc("\\n"),
                12 => esc("\\f"),
                13 => esc("\\r"),
                b'"' => esc("\\\""),
                b'\\' => esc("\\\\"),
                b'/' => esc("\\/"),
                0..=31 | 127 => esc(&format!("\\u{b:04x}")),
                _ => format!("{b:02x}"),
            };
        }
        want += "22";
        assert_eq!(hex, want);
        assert_eq!(enc(&lua, r#"'a/b"c'"#), r#""a\/b\"c""#);
    }

    #[test]
    fn encode_errors_match_redis() {
        let lua = lua();
        let nan = "user_script:1: Cannot serialise number: must not be NaN or Inf";
        assert_eq!(err(&lua, "cjson.encode(0/0)"), nan);
        assert_eq!(err(&lua, "cjson.encode(-1/0)"), nan);
        assert_eq!(err(&lua, "cjson.encode({[1/0]=1})"), nan);
        assert_eq!(
            err(&lua, "cjson.encode()"),
            "user_script:1: bad argument #1 to 'encode' (expected 1 argument)"
        );
        assert_eq!(
            err(&lua, "cjson.encode(1, 2)"),
            "user_script:1: bad argument #1 to 'encode' (expected 1 argument)"
        );
        assert_eq!(
            err(&lua, "cjson.encode(tostring)"),
            "user_script:1: Cannot serialise function: type not supported"
        );
        assert_eq!(
            err(&lua, "cjson.encode({f=tostring})"),
            "user_script:1: Cannot serialise function: type not supported"
        );
        assert_eq!(
            err(&lua, "cjson.encode({[true]=1})"),
            "user_script:1: Cannot serialise boolean: table key must be a number or string"
        );
        assert_eq!(
            err(&lua, "cjson.encode({[cjson.null]=1})"),
            "user_script:1: Cannot serialise userdata: table key must be a number or string"
        );
        assert_eq!(
            err(&lua, "cjson.encode(coroutine.create(function() end))"),
            "user_script:1: Cannot serialise thread: type not supported"
        );
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_invalid_numbers(true) \
             return c.encode({1/0, -1/0, 0/0, -(0/0)}) .. c.encode({[1/0]=1})",
        );
        assert_eq!(s, r#"[inf,-inf,nan,nan]{"inf":1}"#);
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_invalid_numbers('null') \
             return c.encode({1/0, -1/0, 0/0}) .. c.encode({[1/0]=1})",
        );
        assert_eq!(s, r#"[null,null,null]{"null":1}"#);
    }

    #[test]
    fn encode_depth_limits_match_redis() {
        let lua = lua();
        let n: i64 = eval(
            &lua,
            "local t = {} local c = t for i = 1, 999 do c[1] = {} c = c[1] end \
             return #cjson.encode(t)",
        );
        assert_eq!(n, 2000);
        let deep = "user_script:1: Cannot serialise, excessive nesting (1001)";
        assert_eq!(
            err(
                &lua,
                "(function() local t = {} local c = t for i = 1, 1000 do c[1] = {} c = c[1] end \
                 return cjson.encode(t) end)()"
            ),
            deep
        );
        assert_eq!(
            err(
                &lua,
                "(function() local t = {} local c = t for i = 1, 1000 do c.a = {} c = c.a end \
                 return cjson.encode(t) end)()"
            ),
            deep
        );
        assert_eq!(
            err(
                &lua,
                "(function() local t = {} t[1] = t return cjson.encode(t) end)()"
            ),
            deep
        );
        let s: String = eval(
            &lua,
            "local c = cjson.new() c.encode_max_depth(3) \
             local a = c.encode({{{}}}) local ok, e = pcall(c.encode, {{{{}}}}) return a .. e",
        );
        assert_eq!(s, "[[{}]]Cannot serialise, excessive nesting (4)");
        // Raised limits stop where Redis's Lua stack stops them.
        let e: String = eval(
            &lua,
            "local c = cjson.new() c.encode_max_depth(2147483647) \
             local t = {} t[1] = t local ok, e = pcall(c.encode, t) return e",
        );
        assert_eq!(e, "Cannot serialise, excessive nesting (7998)");
        let n: i64 = eval(
            &lua,
            "local c = cjson.new() c.encode_max_depth(5000) \
             local t = {} local x = t for i = 1, 4999 do x.k = {} x = x.k end \
             return #c.encode(t)",
        );
        assert_eq!(n, 4999 * 6 + 2);
    }

    #[test]
    fn decodes_like_redis() {
        let lua = lua();
        for (json, want) in [
            ("[1,2,3]", "[1,2,3]"),
            (
                r#"{"a":[1,{"b":null}],"c":true}"#,
                r#"{"a":[1,{"b":null}],"c":true}"#,
            ),
            (r#"  "x"  "#, "string x"),
            ("1", "number 1"),
            ("-0", "number -0"),
            ("1e5", "number 100000"),
            ("1E+2", "number 100"),
            ("0x10", "number 16"),
            ("010", "number 10"),
            ("1.", "number 1"),
            ("+1", "number 1"),
            ("nan", "number nan"),
            ("-nan", "number -nan"),
            ("NaN", "number nan"),
            ("inf", "number inf"),
            ("Infinity", "number inf"),
            ("-inf", "number -inf"),
            ("iNf", "number inf"),
            ("1e400", "number inf"),
            ("1e-400", "number 0"),
            ("-0x1p3", "number -8"),
            ("0x1.8p1", "number 3"),
            ("0X1A", "number 26"),
            ("nan(123)", "number nan"),
            (
                "123456789012345678901234567890",
                "number 1.2345678901235e+29",
            ),
            ("[]", "{}"),
            ("{}", "{}"),
            ("null", "NULL"),
            ("[null,1]", "[null,1]"),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            ("\t\n\r [1]", "[1]"),
            ("[1,2]\0xx", "[1,2]"),
        ] {
            assert_eq!(dec(&lua, json), want, "{json}");
        }
        let same: bool = eval(&lua, "return cjson.decode('null') == cjson.null");
        assert!(same);
        let same: bool = eval(&lua, "return cjson.new().null == cjson.null");
        assert!(same);
        let s: String = eval(&lua, "return tostring(cjson.null)");
        assert_eq!(s, "userdata: (nil)");
        let n: f64 = eval(&lua, "return cjson.decode(123)");
        assert_eq!(n, 123.0);
    }

    #[test]
    fn decode_strings_like_redis() {
        let lua = lua();
        for (json, want) in [
            (r#""a\/b""#, "a/b".as_bytes()),
            (r#""\u0041\u00e9\u20ac""#, "Aé€".as_bytes()),
            (r#""\ud83d\ude00""#, "😀".as_bytes()),
            (r#""\ud800\udc00""#, "𐀀".as_bytes()),
            (r#""\u0000""#, b"\0"),
            (r#""\b\f\n\r\t\"\\""#, b"\x08\x0c\n\r\t\"\\"),
            ("\"a\tb\x01c\"", b"a\tb\x01c"),
            ("\"\u{ff}\"", "\u{ff}".as_bytes()),
        ] {
            lua.globals().set("J", json).expect("set");
            let s: mlua::LuaString = eval(&lua, "return cjson.decode(J)");
            assert_eq!(&s.as_bytes()[..], want, "{json}");
        }
        let raw: mlua::LuaString = eval(&lua, "return cjson.decode('\"\\255\\254\"')");
        assert_eq!(&raw.as_bytes()[..], b"\xff\xfe");
    }

    #[test]
    fn decode_errors_match_redis() {
        let lua = lua();
        for (json, want) in [
            (
                ".5",
                "Expected value but found invalid token at character 1",
            ),
            (
                "-",
                "Expected value but found invalid number at character 1",
            ),
            ("", "Expected value but found T_END at character 1"),
            (" ", "Expected value but found T_END at character 2"),
            ("[1,]", "Expected value but found T_ARR_END at character 4"),
            (
                r#"{"a":1,}"#,
                "Expected object key string but found T_OBJ_END at character 8",
            ),
            (
                "[1 2]",
                "Expected comma or array end but found T_NUMBER at character 4",
            ),
            (
                "{1:2}",
                "Expected object key string but found T_NUMBER at character 2",
            ),
            (
                r#"{"a" 1}"#,
                "Expected colon but found T_NUMBER at character 6",
            ),
            (
                "[1",
                "Expected comma or array end but found T_END at character 3",
            ),
            (
                r#""abc"#,
                "Expected value but found unexpected end of string at character 5",
            ),
            (
                "tru",
                "Expected value but found invalid token at character 1",
            ),
            ("1 2", "Expected the end but found T_NUMBER at character 3"),
            (
                "1e",
                "Expected the end but found invalid token at character 2",
            ),
            (
                "0x",
                "Expected the end but found invalid token at character 2",
            ),
            (
                "nanx",
                "Expected the end but found invalid token at character 4",
            ),
            (
                "1.5.5",
                "Expected the end but found invalid token at character 4",
            ),
            (
                "- 1",
                "Expected value but found invalid number at character 1",
            ),
            (
                "truex",
                "Expected the end but found invalid token at character 5",
            ),
            (
                "[truex]",
                "Expected comma or array end but found invalid token at character 6",
            ),
            (
                "[nul]",
                "Expected value but found invalid token at character 2",
            ),
            (
                "+",
                "Expected value but found invalid number at character 1",
            ),
            (
                "+x",
                "Expected value but found invalid number at character 1",
            ),
            (
                "-infinit",
                "Expected the end but found invalid token at character 5",
            ),
            (
                "[1abc]",
                "Expected comma or array end but found invalid token at character 3",
            ),
            (
                r#""\ud83d""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\ude00""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\ud83d\u0041""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\u00zz""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\u12"#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\x""#,
                "Expected value but found invalid escape code at character 2",
            ),
            (
                r#""abc\"#,
                "Expected value but found invalid escape code at character 5",
            ),
            (
                r#"[1,"\q"]"#,
                "Expected value but found invalid escape code at character 5",
            ),
            (
                r#"{"a":1} {"#,
                "Expected the end but found T_OBJ_BEGIN at character 9",
            ),
            (
                "1 [",
                "Expected the end but found T_ARR_BEGIN at character 3",
            ),
            (
                r#"1 "x""#,
                "Expected the end but found T_STRING at character 3",
            ),
            (
                "1 true",
                "Expected the end but found T_BOOLEAN at character 3",
            ),
            ("1 null", "Expected the end but found T_NULL at character 3"),
            (
                r#"{"a":1 "b"}"#,
                "Expected comma or object end but found T_STRING at character 8",
            ),
            (
                r#"{"a"::1}"#,
                "Expected value but found T_COLON at character 6",
            ),
            (
                "[1:]",
                "Expected comma or array end but found T_COLON at character 3",
            ),
            (
                r#"{"a":1,"b"}"#,
                "Expected colon but found T_OBJ_END at character 11",
            ),
            ("]", "Expected value but found T_ARR_END at character 1"),
            (",", "Expected value but found T_COMMA at character 1"),
            (
                "\x0c[1]",
                "Expected value but found invalid token at character 1",
            ),
            (
                "\x0b[1]",
                "Expected value but found invalid token at character 1",
            ),
            (
                "1\0garbage",
                "JSON parser does not support UTF-16 or UTF-32",
            ),
            (" \0", "JSON parser does not support UTF-16 or UTF-32"),
            (
                "\"a\0b\"",
                "Expected value but found unexpected end of string at character 3",
            ),
            (
                "[1\0",
                "Expected comma or array end but found T_END at character 3",
            ),
            ("\0", "Expected value but found T_END at character 1"),
            (
                "{\"a\":1\0}",
                "Expected comma or object end but found T_END at character 7",
            ),
        ] {
            assert_eq!(dec(&lua, json), format!("ERR {want}"), "{json:?}");
        }
        assert_eq!(
            err(&lua, "cjson.decode('{')"),
            "user_script:1: Expected object key string but found T_END at character 2"
        );
        assert_eq!(
            err(&lua, "cjson.decode(nil)"),
            "user_script:1: bad argument #1 to 'decode' (string expected, got nil)"
        );
        assert_eq!(
            err(&lua, "cjson.decode({})"),
            "user_script:1: bad argument #1 to 'decode' (string expected, got table)"
        );
        assert_eq!(
            err(&lua, "cjson.decode('1', '2')"),
            "user_script:1: bad argument #1 to 'decode' (expected 1 argument)"
        );
    }

    #[test]
    fn strict_numbers_match_redis() {
        let lua = lua();
        lua.load("strict = cjson.new() strict.decode_invalid_numbers(false)")
            .exec()
            .expect("strict");
        for (json, want) in [
            (
                "00",
                "ERR Expected value but found invalid number at character 1",
            ),
            (
                "-01",
                "ERR Expected value but found invalid number at character 1",
            ),
            (
                "0x10",
                "ERR Expected value but found invalid number at character 1",
            ),
            (
                "+1",
                "ERR Expected value but found invalid token at character 1",
            ),
            (
                "inf",
                "ERR Expected value but found invalid token at character 1",
            ),
            (
                "-inf",
                "ERR Expected value but found invalid number at character 1",
            ),
            (
                "-nan",
                "ERR Expected value but found invalid number at character 1",
            ),
            (
                "[1,nan]",
                "ERR Expected value but found invalid token at character 4",
            ),
            (
                "0e",
                "ERR Expected the end but found invalid token at character 2",
            ),
            ("0", "0"),
            ("0.5", "0.5"),
            ("-0", "-0"),
            ("1.e5", "100000"),
        ] {
            lua.globals().set("J", json).expect("set");
            let got: String = eval(
                &lua,
                "local ok, v = pcall(strict.decode, J) \
                 if ok then return tostring(v) end return 'ERR ' .. v",
            );
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn decode_depth_limits_match_redis() {
        let lua = lua();
        let n: i64 = eval(
            &lua,
            "return #cjson.encode(cjson.decode(string.rep('[', 1000) .. string.rep(']', 1000)))",
        );
        assert_eq!(n, 2000);
        for (expr, at) in [
            ("string.rep('[', 1001)", 1001),
            ("string.rep('{\"a\":', 1001)", 5001),
            ("'  ' .. string.rep('[', 1001)", 1003),
            ("string.rep('[1,', 1001)", 3001),
        ] {
            assert_eq!(
                err(&lua, &format!("cjson.decode({expr})")),
                format!(
                    "user_script:1: Found too many nested data structures (1001) at character {at}"
                )
            );
        }
        assert_eq!(
            err(&lua, "cjson.decode(string.rep('[', 1000))"),
            "user_script:1: Expected value but found T_END at character 1001"
        );
        let e: String = eval(
            &lua,
            "local c = cjson.new() c.decode_max_depth(2147483647) \
             local ok, e = pcall(c.decode, string.rep('[', 100000)) return e",
        );
        assert_eq!(
            e,
            "Found too many nested data structures (7999) at character 7999"
        );
        let n: i64 = eval(
            &lua,
            "local c = cjson.new() c.decode_max_depth(7000) \
             local t = c.decode(string.rep('{\"k\":', 6999) .. '1' .. string.rep('}', 6999)) \
             local d = 0 while type(t) == 'table' do d = d + 1 t = t.k end return d",
        );
        assert_eq!(n, 6999);
    }

    #[test]
    fn configuration_matches_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "local c = cjson.new() local a, b, d = c.encode_sparse_array() \
             return table.concat({tostring(a), b, d, c.encode_max_depth(), c.decode_max_depth(), \
             c.encode_number_precision(), tostring(c.encode_keep_buffer()), \
             tostring(c.encode_invalid_numbers()), tostring(c.decode_invalid_numbers())}, ' ')",
        );
        assert_eq!(s, "false 2 10 1000 1000 14 true false true");
        let s: String = eval(
            &lua,
            "local c = cjson.new() \
             return table.concat({tostring(c.encode_keep_buffer('off')), \
             tostring(c.encode_keep_buffer('on')), tostring(c.encode_invalid_numbers('null')), \
             tostring(c.encode_invalid_numbers('on')), tostring(c.encode_invalid_numbers(false)), \
             c.encode_max_depth('7'), c.encode_max_depth(2.5), c.encode_max_depth(2^32+5), \
             c.encode_max_depth(nil), select(2, c.encode_sparse_array(false, 2^32+3)), \
             tostring((c.encode_sparse_array('on', '3', 4)))}, ' ')",
        );
        assert_eq!(s, "false true null true false 7 2 5 5 3 true");
        // Each instance has its own settings; the global one keeps its own.
        let n: f64 = eval(
            &lua,
            "local c = cjson.new() c.encode_max_depth(5) return cjson.encode_max_depth()",
        );
        assert_eq!(n, 1000.0);
        for (call, want) in [
            ("encode_keep_buffer('xx')", "bad argument #1 to 'encode_keep_buffer' (invalid option 'xx')"),
            ("encode_keep_buffer(1)", "bad argument #1 to 'encode_keep_buffer' (invalid option '1')"),
            ("encode_keep_buffer({})", "bad argument #1 to 'encode_keep_buffer' (string expected, got table)"),
            ("encode_keep_buffer(true, 2)", "bad argument #2 to 'encode_keep_buffer' (found too many arguments)"),
            ("decode_invalid_numbers('null')", "bad argument #1 to 'decode_invalid_numbers' (invalid option 'null')"),
            ("encode_invalid_numbers('ON')", "bad argument #1 to 'encode_invalid_numbers' (invalid option 'ON')"),
            ("encode_max_depth(0)", "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)"),
            ("encode_max_depth(2147483648)", "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)"),
            ("encode_max_depth(1e100)", "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)"),
            ("encode_max_depth(0/0)", "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)"),
            ("encode_max_depth('x')", "bad argument #1 to 'encode_max_depth' (number expected, got string)"),
            ("encode_max_depth(true)", "bad argument #1 to 'encode_max_depth' (number expected, got boolean)"),
            ("encode_max_depth(nil, nil)", "bad argument #2 to 'encode_max_depth' (found too many arguments)"),
            ("encode_number_precision(15)", "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)"),
            ("encode_sparse_array(nil, -1)", "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)"),
            ("encode_sparse_array(nil, 1, -1)", "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)"),
            ("encode_sparse_array(nil, 'x')", "bad argument #2 to 'encode_sparse_array' (number expected, got string)"),
            ("encode_sparse_array(nil, 1, 'x')", "bad argument #3 to 'encode_sparse_array' (number expected, got string)"),
            ("encode_sparse_array(1, 2, 3, 4, 5)", "bad argument #4 to 'encode_sparse_array' (found too many arguments)"),
            ("encode_sparse_array(1)", "bad argument #1 to 'encode_sparse_array' (invalid option '1')"),
        ] {
            assert_eq!(
                err(&lua, &format!("cjson.new().{call}")),
                format!("user_script:1: {want}"),
                "{call}"
            );
        }
    }

    #[test]
    fn module_fields_match_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "local t = {} for k, v in pairs(cjson) do t[#t+1] = k .. '=' .. type(v) end \
             table.sort(t) return table.concat(t, ' ')",
        );
        assert_eq!(
            s,
            "_NAME=string _VERSION=string decode=function decode_invalid_numbers=function \
             decode_max_depth=function encode=function encode_invalid_numbers=function \
             encode_keep_buffer=function encode_max_depth=function \
             encode_number_precision=function encode_sparse_array=function new=function \
             null=userdata"
        );
        let s: String = eval(&lua, "return cjson._NAME .. ' ' .. cjson._VERSION");
        assert_eq!(s, "cjson 2.1.0");
        let b: bool = eval(&lua, "return cjson.new().encode ~= cjson.encode");
        assert!(b);
    }

    #[test]
    fn hex_floats_round_correctly() {
        for (text, want) in [
            ("1p0", 1.0),
            ("1.8p1", 3.0),
            ("fffffffffffff8p-3", 9007199254740991.0),
            ("1fffffffffffffp0", 9007199254740991.0),
            ("20000000000001p0", 9007199254740992.0),
            ("20000000000003p0", 9007199254740996.0),
            ("200000000000011p-4", 9007199254740994.0),
            ("1p-1074", 5e-324),
            ("1p-1075", 0.0),
            ("1.8p-1075", 5e-324),
            ("1p1023", 2f64.powi(1023)),
            ("1p1024", f64::INFINITY),
            ("1p-1022", 2.2250738585072014e-308),
            ("fffffffffffffp-1074", f64::from_bits((1 << 52) - 1)),
            (".8", 0.5),
            ("10", 16.0),
            ("1p+2", 4.0),
            ("1p", 1.0),
        ] {
            let (v, _) = hex_float(text.as_bytes());
            assert_eq!(v, want, "0x{text}");
        }
        assert_eq!(strtod(b"0x"), Some((0.0, 1)));
        assert_eq!(strtod(b"0x1p"), Some((1.0, 3)));
        assert_eq!(strtod(b"-"), None);
    }

    /// JSON equality with numbers compared as doubles and empty arrays as
    /// empty objects (Lua cannot tell them apart).
    fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (a, b) {
            (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
            (J::Array(x), J::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
            }
            (J::Object(x), J::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
            }
            (J::Array(x), J::Object(y)) | (J::Object(y), J::Array(x)) => {
                x.is_empty() && y.is_empty()
            }
            _ => a == b,
        }
    }

    #[test]
    fn round_trips_through_serde_json() {
        // An independent parser checks the decoder and encoder together.
        let lua = lua();
        let docs = [
            r#"{"a":[1,2.5,-3e-7,{"b":"x\u00e9\n"}],"c":null,"d":true}"#,
            r#"[[],[[]],{},"\/\\\"",12345678901234,0.1,1e300]"#,
        ];
        for doc in docs {
            lua.globals().set("J", doc).expect("set");
            let back: String = eval(&lua, "return cjson.encode(cjson.decode(J))");
            let a: serde_json::Value = serde_json::from_str(doc).expect("doc");
            let b: serde_json::Value = serde_json::from_str(&back).expect("back");
            assert!(same_json(&a, &b), "{doc} -> {back}");
        }
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        let lua = lua();
        // A self-referencing table through both array and object paths.
        assert_eq!(
            err(
                &lua,
                "(function() local t = {} t.x = {t} return cjson.encode(t) end)()"
            ),
            "user_script:1: Cannot serialise, excessive nesting (1001)"
        );
        // Exponential output from shared sub-tables stops at the cap.
        let e = err(
            &lua,
            "(function() local t = {string.rep('x', 1000)} \
             for i = 1, 40 do t = {t, t} end return cjson.encode(t) end)()",
        );
        assert!(e.starts_with("user_script:1: Cannot serialise"), "{e}");
        // Deep garbage decodes to an error, not a crash.
        let e = err(&lua, "cjson.decode(string.rep('[{\"\":', 100000))");
        assert!(
            e.contains("Found too many nested data structures (1001)"),
            "{e}"
        );
        let e = err(
            &lua,
            "(function() local c = cjson.new() c.encode_sparse_array(false, 0) \
             return c.encode({[2^31-1] = 1}) end)()",
        );
        assert!(
            e.starts_with("user_script:1: Cannot serialise table: result larger"),
            "{e}"
        );
    }
}
