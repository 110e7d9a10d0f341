//! `cmsgpack`: MessagePack for scripts, as Redis 7.0 ships it
//! (lua-cmsgpack 0.4.0).
//!
//! - `pack(v1, v2, ...)`: each value's encoding, concatenated. A number is
//!   an integer when the C cast to int64 gives it back exactly (smallest
//!   int/uint form), else a float32 when that is exact, else a float64.
//!   Strings are always the str family (never bin). A table is an array
//!   when its keys are exactly 1..n (an empty table too), else a map. Tables
//!   nested 16 deep, functions, userdata and threads encode as nil.
//! - `unpack(s)`: every value in `s`, as multiple results;
//!   `unpack_one(s [, offset])` and `unpack_limit(s, limit [, offset])`
//!   return the next 0-based offset (-1 at the end) before the values.
//!   bin and ext types are rejected ("Bad data format in input."), as in
//!   Redis's copy. uint64 values come back as int64, as in Redis.
//!
//! Decoding is iterative (see [`Spill`]); the depth and result limits are
//! Redis's, which come from the 8000-slot Lua stack. Decoded tables start
//! empty and grow, as Redis's do, so `pairs` visits them in Redis's order.

use mlua::{Lua, Table, Value};

use super::{as_number, c_i64, reserve, Args, Fail, Kit, LibResult, Out, Spill, MAX_RESULTS};

/// The most arguments `pack` takes.
const MAX_PACK_ARGS: usize = 4000;
/// Tables nested this deep are packed as nil.
const MAX_NESTING: usize = 16;
/// Redis's decoder runs out of Lua stack once the results so far plus two
/// slots per open container pass this.
const STACK_SLOTS: usize = 7998;
const TOO_MANY: &str = "too many return values at once; use unpack_one or unpack_limit instead.";

/// Builds the `cmsgpack` table.
pub(super) fn create(lua: &Lua, kit: &Kit) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", kit.function(lua, pack)?)?;
    t.raw_set("unpack", kit.function(lua, |lua, a| unpack(lua, &a, 0, 0))?)?;
    t.raw_set(
        "unpack_one",
        kit.function(lua, |lua, a| {
            let offset = a.opt_integer(lua, 2, 0)?;
            unpack(lua, &a, 1, offset)
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        kit.function(lua, |lua, a| {
            let limit = a.integer(lua, 2)?;
            let offset = a.opt_integer(lua, 3, 0)?;
            unpack(lua, &a, limit, offset)
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

// ---------------------------------------------------------------------------
// Packing

/// `cmsgpack.pack(...)`.
fn pack(lua: &Lua, a: Args) -> LibResult<Out> {
    if a.len() == 0 {
        return Err(Fail::arg(0, "MessagePack pack needs input."));
    }
    // Redis asks Lua for as many free stack slots as there are arguments,
    // which the 8000-slot stack refuses past 4000.
    if a.len() > MAX_PACK_ARGS {
        return Err(Fail::arg(0, "Too many arguments for MessagePack pack."));
    }
    let mut out = Vec::new();
    for i in 1..=a.len() {
        encode(&mut out, a.get(i).unwrap_or(&Value::Nil), 0)?;
    }
    Out::one(Value::String(lua.create_string(&out)?))
}

/// Appends `v`. Recursion is bounded by [`MAX_NESTING`].
fn encode(out: &mut Vec<u8>, v: &Value, level: usize) -> LibResult<()> {
    reserve(out, 9, "cmsgpack.pack")?;
    match v {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(_) | Value::Number(_) => encode_number(out, as_number(v).unwrap_or(0.0)),
        Value::String(s) => {
            let s = s.as_bytes();
            let len = s.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            reserve(out, len, "cmsgpack.pack")?;
            out.extend_from_slice(&s);
        }
        Value::Table(t) if level < MAX_NESTING => encode_table(out, t, level)?,
        // nil, too-deep tables, and every type MessagePack cannot carry.
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    let i = c_i64(n);
    if i as f64 == n {
        encode_integer(out, i);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The smallest form: unsigned families for non-negative values.
fn encode_integer(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        if i <= 0x7f {
            out.push(i as u8);
        } else if i <= 0xff {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as u8);
    } else if i >= -128 {
        out.extend_from_slice(&[0xd0, i as u8]);
    } else if i >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -(1 << 31) {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// An array when the keys are exactly 1..n (number keys only, as the C
/// code tests the key's type), else a map in `next` order.
fn encode_table(out: &mut Vec<u8>, t: &Table, level: usize) -> LibResult<()> {
    let (mut count, mut max, mut array) = (0u64, 0f64, true);
    t.for_each(|k: Value, _: Value| {
        count += 1;
        match as_number(&k) {
            Some(n) if n > 0.0 && c_i64(n) as f64 == n => max = max.max(n),
            _ => array = false,
        }
        Ok(())
    })?;
    if array && max == count as f64 {
        container_header(out, count, 0x90, 0xdc);
        for i in 1..=count {
            encode(out, &t.raw_get::<Value>(i)?, level + 1)?;
        }
    } else {
        container_header(out, count, 0x80, 0xde);
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            encode(out, &k, level + 1)?;
            encode(out, &v, level + 1)?;
        }
    }
    Ok(())
}

/// fixarray/fixmap up to 15, then the 16- and 32-bit forms.
fn container_header(out: &mut Vec<u8>, n: u64, fix: u8, wide16: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Unpacking

/// `unpack`, `unpack_one` and `unpack_limit`: up to `limit` values from
/// byte `offset` (0-based). `limit` and `offset` both 0 mean every value
/// and no offset in the results.
fn unpack(lua: &Lua, a: &Args, limit: i64, offset: i64) -> LibResult<Out> {
    let s = a.string(lua, 1)?;
    let data = s.as_bytes();
    let len = data.len();
    // The C code prints these 64-bit values with %d.
    if offset < 0 || limit < 0 {
        return Err(Fail::msg(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        )));
    }
    if offset as u64 > len as u64 {
        return Err(Fail::msg(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        )));
    }
    let all = limit == 0 && offset == 0;
    let limit = if all { i64::MAX } else { limit };
    let results = lua.create_table()?;
    // Slot 1 is kept for the offset when one is returned.
    let first = if all { 1 } else { 2 };
    let mut d = Decoder {
        lua,
        data: &data,
        pos: offset as usize,
        count: 0,
    };
    let mut done: i64 = 0;
    while d.pos < len && done < limit {
        if d.count >= MAX_RESULTS {
            // Redis's Lua stack is full by now; the trampoline says so.
            break;
        }
        let v = d.value()?;
        results.raw_set(first + d.count, v)?;
        d.count += 1;
        done += 1;
    }
    let mut n = d.count;
    if !all {
        let next = if d.pos >= len { -1.0 } else { d.pos as f64 };
        results.raw_set(1, next)?;
        n += 1;
    }
    Ok(Out::Spread(results, n, TOO_MANY))
}

struct Decoder<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
    /// Values already decoded by this call (they occupy Redis's stack).
    count: usize,
}

/// Where the decoder is inside one container.
enum Frame {
    /// `left` elements still to read; the next goes at `next`.
    Array { next: i64, left: u64 },
    /// `left` pairs still to read; `have_key` once the key is read.
    Map { left: u64, have_key: bool },
}

/// What one header byte starts.
enum Head {
    Value(Value),
    Array(u64),
    Map(u64),
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> LibResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| Fail::msg("Missing bytes in input."))?;
        let data: &'a [u8] = self.data;
        let bytes = &data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> LibResult<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn string(&mut self, n: usize) -> LibResult<Head> {
        let bytes = self.take(n)?;
        Ok(Head::Value(Value::String(self.lua.create_string(bytes)?)))
    }

    /// Reads one header (and a scalar's body).
    fn head(&mut self) -> LibResult<Head> {
        let b = self.take(1)?[0];
        let num = |n: f64| Ok(Head::Value(Value::Number(n)));
        match b {
            0x00..=0x7f => num(f64::from(b)),
            0xe0..=0xff => num(f64::from(b as i8)),
            0x80..=0x8f => Ok(Head::Map(u64::from(b & 0x0f))),
            0x90..=0x9f => Ok(Head::Array(u64::from(b & 0x0f))),
            0xa0..=0xbf => self.string(usize::from(b & 0x1f)),
            0xc0 => Ok(Head::Value(Value::Nil)),
            0xc2 => Ok(Head::Value(Value::Boolean(false))),
            0xc3 => Ok(Head::Value(Value::Boolean(true))),
            0xca => num(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => num(f64::from_bits(self.be(8)?)),
            0xcc => num(self.be(1)? as f64),
            0xcd => num(self.be(2)? as f64),
            0xce => num(self.be(4)? as f64),
            // uint64 is read as int64, as Redis's copy does.
            0xcf | 0xd3 => num(self.be(8)? as i64 as f64),
            0xd0 => num(f64::from(self.be(1)? as u8 as i8)),
            0xd1 => num(f64::from(self.be(2)? as u16 as i16)),
            0xd2 => num(f64::from(self.be(4)? as u32 as i32)),
            0xd9 => {
                let n = self.be(1)? as usize;
                self.string(n)
            }
            0xda => {
                let n = self.be(2)? as usize;
                self.string(n)
            }
            0xdb => {
                let n = self.be(4)? as usize;
                self.string(n)
            }
            0xdc => Ok(Head::Array(self.be(2)?)),
            0xdd => Ok(Head::Array(self.be(4)?)),
            0xde => Ok(Head::Map(self.be(2)?)),
            0xdf => Ok(Head::Map(self.be(4)?)),
            // c1 (never used), bin, ext and fixext.
            _ => Err(Fail::msg("Bad data format in input.")),
        }
    }

    /// Starts a container inside the current one, if the Lua stack Redis
    /// would be using has room for it.
    fn open(
        &mut self,
        frame: Frame,
        frames: &mut Vec<Frame>,
        spill: &mut Spill,
        current: &mut Option<Table>,
        key: &mut Value,
    ) -> LibResult<()> {
        let map = matches!(frame, Frame::Map { .. });
        if self.count + 2 * (frames.len() + 1) > STACK_SLOTS {
            return Err(Fail::msg(if map {
                format!("stack overflow ({TOO_MANY})")
            } else {
                "stack overflow (in function mp_decode_to_lua_array)".to_string()
            }));
        }
        // Redis starts every decoded table empty and lets it grow: the
        // growth history decides the layout, and so the `pairs` order.
        let table = self.lua.create_table()?;
        if let Some(parent) = current.replace(table) {
            spill.push(self.lua, Value::Table(parent))?;
            spill.push(self.lua, std::mem::take(key))?;
        }
        frames.push(frame);
        Ok(())
    }

    /// One complete value, containers included, without recursion.
    fn value(&mut self) -> LibResult<Value> {
        let mut frames: Vec<Frame> = Vec::new();
        // The container being filled and (in a map) the key read for it;
        // the pairs of the enclosing containers wait in `spill`.
        let mut spill = Spill::new();
        let mut current: Option<Table> = None;
        let mut key = Value::Nil;
        loop {
            let mut value = match self.head()? {
                Head::Value(v) => v,
                Head::Array(0) | Head::Map(0) => Value::Table(self.lua.create_table()?),
                Head::Array(n) => {
                    let frame = Frame::Array { next: 1, left: n };
                    self.open(frame, &mut frames, &mut spill, &mut current, &mut key)?;
                    continue;
                }
                Head::Map(n) => {
                    let frame = Frame::Map {
                        left: n,
                        have_key: false,
                    };
                    self.open(frame, &mut frames, &mut spill, &mut current, &mut key)?;
                    continue;
                }
            };
            // Store the value, closing every container it completes.
            loop {
                let (Some(frame), Some(table)) = (frames.last_mut(), current.as_ref()) else {
                    return Ok(value);
                };
                let left = match frame {
                    Frame::Array { next, left } => {
                        table.raw_set(*next, value)?;
                        *next += 1;
                        *left -= 1;
                        *left
                    }
                    Frame::Map { left, have_key } => {
                        if !*have_key {
                            key = value;
                            *have_key = true;
                            break;
                        }
                        match &key {
                            Value::Nil => return Err(Fail::raw("table index is nil")),
                            Value::Number(n) if n.is_nan() => {
                                return Err(Fail::raw("table index is NaN"))
                            }
                            _ => {}
                        }
                        table.raw_set(std::mem::take(&mut key), value)?;
                        *have_key = false;
                        *left -= 1;
                        *left
                    }
                };
                if left > 0 {
                    break;
                }
                frames.pop();
                value = current.take().map_or(Value::Nil, Value::Table);
                if !frames.is_empty() {
                    key = spill.pop()?;
                    if let Value::Table(parent) = spill.pop()? {
                        current = Some(parent);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, eval, hex, lua, unhex};

    fn pack(lua: &mlua::Lua, args: &str) -> String {
        let s: mlua::LuaString = eval(lua, &format!("return cmsgpack.pack({args})"));
        hex(&s.as_bytes())
    }

    /// `f(bytes, extra)` results: "(count) v1 | v2 ...", or the error.
    fn call(lua: &mlua::Lua, f: &str, data_hex: &str, extra: &str) -> String {
        lua.globals()
            .set("D", lua.create_string(unhex(data_hex)).expect("data"))
            .expect("set");
        eval(
            lua,
            &format!(
                "local function dump(v, d) \
                   if type(v) == 'string' then return string.format('%q', v) end \
                   if type(v) ~= 'table' then return tostring(v) end \
                   local keys = {{}} for k in pairs(v) do keys[#keys+1] = k end \
                   table.sort(keys, function(a, b) return tostring(a) < tostring(b) end) \
                   local parts = {{}} for _, k in ipairs(keys) do \
                     parts[#parts+1] = '[' .. dump(k) .. ']=' .. dump(v[k]) end \
                   return '{{' .. table.concat(parts, ',') .. '}}' end \
                 local r = {{n = 0}} \
                 local function cap(...) r.n = select('#', ...) \
                   for i = 1, r.n do r[i] = (select(i, ...)) end end \
                 cap(pcall({f}, D {extra})) \
                 if not r[1] then return 'ERR ' .. r[2] end \
                 local out = {{}} for i = 2, r.n do out[#out+1] = dump(r[i]) end \
                 return '(' .. (r.n - 1) .. ') ' .. table.concat(out, ' | ')"
            ),
        )
    }

    #[test]
    fn packs_like_redis() {
        let lua = lua();
        for (args, want) in [
            ("nil", "c0"),
            ("true", "c3"),
            ("false", "c2"),
            ("0", "00"),
            ("127", "7f"),
            ("128", "cc80"),
            ("255", "ccff"),
            ("256", "cd0100"),
            ("65535", "cdffff"),
            ("65536", "ce00010000"),
            ("4294967295", "ceffffffff"),
            ("4294967296", "cf0000000100000000"),
            ("-1", "ff"),
            ("-32", "e0"),
            ("-33", "d0df"),
            ("-128", "d080"),
            ("-129", "d1ff7f"),
            ("-32768", "d18000"),
            ("-32769", "d2ffff7fff"),
            ("-2147483648", "d280000000"),
            ("-2147483649", "d3ffffffff7fffffff"),
            ("2^53", "cf0020000000000000"),
            ("2^63", "ca5f000000"),
            ("2^64", "ca5f800000"),
            ("-2^63", "d38000000000000000"),
            ("-2^64", "cadf800000"),
            ("1.5", "ca3fc00000"),
            ("0.1", "cb3fb999999999999a"),
            ("-0", "00"),
            ("1/0", "ca7f800000"),
            ("0/0", "cbfff8000000000000"),
            ("1e300", "cb7e37e43c8800759c"),
            ("1e20", "cb4415af1d78b58c40"),
            ("16777217", "ce01000001"),
            ("2^24+1.5", "cb4170000018000000"),
            ("''", "a0"),
            ("'abc'", "a3616263"),
            ("{}", "90"),
            ("{1,2,3}", "93010203"),
            ("{a=1}", "81a16101"),
            ("{1,2,a=1}", "8301010202a16101"),
            ("{[1]=1,[3]=3}", "8201010303"),
            ("{[2]=1}", "810201"),
            ("{['1']=5}", "81a13105"),
            ("{[1.5]=1}", "81ca3fc0000001"),
            ("{[0]=1}", "810001"),
            ("{[-1]=1}", "81ff01"),
            ("{[true]=1}", "81c301"),
            ("{[2^53]=1}", "81cf002000000000000001"),
            ("{1,2,[2.0]=3}", "920102"),
            ("{[{1}]=1}", "81910101"),
            ("1,2,3", "010203"),
            ("cjson.null", "c0"),
            ("{cjson.null}", "91c0"),
            ("tostring", "c0"),
            ("{x=tostring}", "81a178c0"),
            ("coroutine.create(function() end)", "c0"),
            (
                "{{{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}}}",
                "91919191919191919191919191919191c0",
            ),
        ] {
            assert_eq!(pack(&lua, args), want, "{args}");
        }
        assert_eq!(
            pack(&lua, "(function() local t = {} t.a = t return t end)()"),
            format!("{}c0", "81a161".repeat(16))
        );
    }

    #[test]
    fn pack_sizes_switch_like_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "local function head(v, n) return table.concat({cmsgpack.pack(v):byte(1, n)}, ',') end \
             local function arr(n) local t = {} for i = 1, n do t[i] = i end return t end \
             local function map(n) local t = {} for i = 1, n do t['k' .. i] = i end return t end \
             return table.concat({head(string.rep('a', 31), 1), head(string.rep('a', 32), 2), \
             head(string.rep('a', 255), 2), head(string.rep('a', 256), 3), \
             head(string.rep('a', 65535), 3), head(string.rep('a', 65536), 5), \
             head(arr(15), 1), head(arr(16), 3), head(arr(65536), 5), \
             head(map(15), 1), head(map(16), 3)}, ' ')",
        );
        assert_eq!(
            s,
            "191 217,32 217,255 218,1,0 218,255,255 219,0,1,0,0 159 220,0,16 221,0,1,0,0 \
             143 222,0,16"
        );
        assert_eq!(
            err(&lua, "cmsgpack.pack()"),
            "user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.)"
        );
        let n: i64 = eval(
            &lua,
            "local t = {} for i = 1, 4000 do t[i] = 1 end return #cmsgpack.pack(unpack(t))",
        );
        assert_eq!(n, 4000);
        assert_eq!(
            err(
                &lua,
                "(function() local t = {} for i = 1, 4001 do t[i] = 1 end \
                 return cmsgpack.pack(unpack(t)) end)()"
            ),
            "user_script:1: bad argument #0 to 'pack' (Too many arguments for MessagePack pack.)"
        );
    }

    #[test]
    fn unpacks_like_redis() {
        let lua = lua();
        for (data, want) in [
            ("00", "(1) 0"),
            ("7f", "(1) 127"),
            ("ff", "(1) -1"),
            ("e0", "(1) -32"),
            ("cc80", "(1) 128"),
            ("cd0100", "(1) 256"),
            ("ceffffffff", "(1) 4294967295"),
            ("cfffffffffffffffff", "(1) -1"),
            ("cf8000000000000000", "(1) -9.2233720368548e+18"),
            ("cf7fffffffffffffff", "(1) 9.2233720368548e+18"),
            ("d0df", "(1) -33"),
            ("d280000000", "(1) -2147483648"),
            ("d38000000000000000", "(1) -9.2233720368548e+18"),
            ("ca3fc00000", "(1) 1.5"),
            ("cb3fb999999999999a", "(1) 0.1"),
            ("cb7ff8000000000000", "(1) nan"),
            ("c0", "(1) nil"),
            ("c0c0", "(2) nil | nil"),
            ("c2", "(1) false"),
            ("c3", "(1) true"),
            ("a3616263", "(1) \"abc\""),
            ("d903616263", "(1) \"abc\""),
            ("da0003616263", "(1) \"abc\""),
            ("db00000003616263", "(1) \"abc\""),
            ("93010203", "(1) {[1]=1,[2]=2,[3]=3}"),
            ("dc0003010203", "(1) {[1]=1,[2]=2,[3]=3}"),
            ("dd00000003010203", "(1) {[1]=1,[2]=2,[3]=3}"),
            ("82a161c0a16202", "(1) {[\"b\"]=2}"),
            ("8101c0", "(1) {}"),
            ("90", "(1) {}"),
            ("80", "(1) {}"),
            ("de0000", "(1) {}"),
            ("de0001a16101", "(1) {[\"a\"]=1}"),
            ("df00000001a16101", "(1) {[\"a\"]=1}"),
            ("", "(0) "),
            ("010203", "(3) 1 | 2 | 3"),
            ("9291018101a178", "(1) {[1]={[1]=1},[2]={[1]=\"x\"}}"),
            ("81910102", "(1) {[{[1]=1}]=2}"),
        ] {
            assert_eq!(call(&lua, "cmsgpack.unpack", data, ""), want, "{data}");
        }
    }

    #[test]
    fn unpack_errors_like_redis() {
        let lua = lua();
        let missing = "ERR Missing bytes in input.";
        let bad = "ERR Bad data format in input.";
        for (data, want) in [
            ("d180", missing),
            ("a3", missing),
            ("a361", missing),
            ("93", missing),
            ("9301", missing),
            ("9fc0", missing),
            ("dd00000001", missing),
            ("ddffffffff01", missing),
            ("dfffffffff0101", missing),
            ("db00ffffff6161", missing),
            ("dcffff01", missing),
            ("81c0", missing),
            ("c403616263", bad),
            ("c50003616263", bad),
            ("c600000003616263", bad),
            ("c1", bad),
            ("c4", bad),
            ("c7", bad),
            ("c8", bad),
            ("c9", bad),
            ("d4", bad),
            ("d8", bad),
            ("81c001", "ERR table index is nil"),
            ("81c0c0", "ERR table index is nil"),
            ("81cb7ff800000000000001", "ERR table index is NaN"),
        ] {
            assert_eq!(call(&lua, "cmsgpack.unpack", data, ""), want, "{data}");
        }
        assert_eq!(
            err(&lua, "cmsgpack.unpack('\\209')"),
            "user_script:1: Missing bytes in input."
        );
        // Numbers are read as their string form.
        let n: f64 = eval(&lua, "return cmsgpack.unpack(1)");
        assert_eq!(n, 49.0);
    }

    #[test]
    fn unpack_one_and_limit_like_redis() {
        let lua = lua();
        for (f, data, extra, want) in [
            ("cmsgpack.unpack_one", "010203", "", "(2) 1 | 1"),
            ("cmsgpack.unpack_one", "", "", "(1) -1"),
            ("cmsgpack.unpack_one", "01", "", "(2) -1 | 1"),
            ("cmsgpack.unpack_one", "c0", "", "(2) -1 | nil"),
            ("cmsgpack.unpack_one", "010203", ", 1", "(2) 2 | 2"),
            ("cmsgpack.unpack_one", "010203", ", 2", "(2) -1 | 3"),
            ("cmsgpack.unpack_one", "010203", ", 3", "(1) -1"),
            ("cmsgpack.unpack_one", "010203", ", 1.5", "(2) 2 | 2"),
            ("cmsgpack.unpack_one", "010203", ", 1, 2", "(2) 2 | 2"),
            ("cmsgpack.unpack_limit", "010203", ", 0", "(3) 1 | 2 | 3"),
            ("cmsgpack.unpack_limit", "010203", ", 1", "(2) 1 | 1"),
            ("cmsgpack.unpack_limit", "010203", ", 2", "(3) 2 | 1 | 2"),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 5",
                "(4) -1 | 1 | 2 | 3",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 2, 1",
                "(3) -1 | 2 | 3",
            ),
            ("cmsgpack.unpack_limit", "010203", ", 2, 3", "(1) -1"),
            ("cmsgpack.unpack_limit", "010203", ", 0, 1", "(1) 1"),
            ("cmsgpack.unpack_limit", "010203", ", 1.9", "(2) 1 | 1"),
            ("cmsgpack.unpack_limit", "010203", ", '2'", "(3) 2 | 1 | 2"),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 2^32+1",
                "(4) -1 | 1 | 2 | 3",
            ),
            ("cmsgpack.unpack_limit", "", ", 0", "(0) "),
            ("cmsgpack.unpack_limit", "", ", 1, 0", "(1) -1"),
        ] {
            assert_eq!(call(&lua, f, data, extra), want, "{f} {data} {extra}");
        }
        for (f, data, extra, want) in [
            (
                "cmsgpack.unpack_one",
                "010203",
                ", 4",
                "Start offset 4 greater than input length 3.",
            ),
            (
                "cmsgpack.unpack_one",
                "010203",
                ", -1",
                "Invalid request to unpack with offset of -1 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_one",
                "010203",
                ", 'x'",
                "bad argument #2 to '?' (number expected, got string)",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", -1",
                "Invalid request to unpack with offset of 0 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 2, -2",
                "Invalid request to unpack with offset of -2 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 1, 4",
                "Start offset 4 greater than input length 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", nil",
                "bad argument #2 to '?' (number expected, got nil)",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 1e100",
                "Invalid request to unpack with offset of 0 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 1, 2^32+1",
                "Start offset 1 greater than input length 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "010203",
                ", 1, 2^31",
                "Start offset -2147483648 greater than input length 3.",
            ),
            (
                "cmsgpack.unpack_limit",
                "",
                ", -1",
                "Invalid request to unpack with offset of 0 and limit of 0.",
            ),
            (
                "cmsgpack.unpack_limit",
                "",
                ", 1, 1",
                "Start offset 1 greater than input length 0.",
            ),
        ] {
            assert_eq!(
                call(&lua, f, data, extra),
                format!("ERR {want}"),
                "{f} {data} {extra}"
            );
        }
    }

    #[test]
    fn stack_limits_like_redis() {
        let lua = lua();
        let n: i64 = eval(
            &lua,
            "return select('#', cmsgpack.unpack(string.rep(string.char(1), 7998)))",
        );
        assert_eq!(n, 7998);
        let too_many = "stack overflow (too many return values at once; use unpack_one or \
                        unpack_limit instead.)";
        assert_eq!(
            err(&lua, "cmsgpack.unpack(string.rep(string.char(1), 8000))"),
            format!("user_script:1: {too_many}")
        );
        let e: String = eval(
            &lua,
            "local ok, e = pcall(cmsgpack.unpack, string.rep(string.char(1), 100000)) return e",
        );
        assert_eq!(e, too_many);
        // Nesting: 3999 levels decode, 4000 do not.
        let d: i64 = eval(
            &lua,
            "local r = cmsgpack.unpack(string.rep(string.char(0x91), 3999) .. string.char(1)) \
             local d = 0 while type(r) == 'table' do d = d + 1 r = r[1] end return d",
        );
        assert_eq!(d, 3999);
        let e: String = eval(
            &lua,
            "local ok, e = pcall(cmsgpack.unpack, \
             string.rep(string.char(0x91), 4000) .. string.char(1)) return e",
        );
        assert_eq!(e, "stack overflow (in function mp_decode_to_lua_array)");
        assert_eq!(
            err(
                &lua,
                "cmsgpack.unpack(string.rep(string.char(0x91), 100000))"
            ),
            "user_script:1: stack overflow (in function mp_decode_to_lua_array)"
        );
        let e: String = eval(
            &lua,
            "local ok, e = pcall(cmsgpack.unpack, \
             string.rep(string.char(0x81, 0xa1, 0x61), 5000)) return e",
        );
        assert_eq!(e, too_many);
        let d: i64 = eval(
            &lua,
            "local r = cmsgpack.unpack(string.rep(string.char(0x81, 0xa1, 0x61), 3999) .. '\\1') \
             local d = 0 while type(r) == 'table' do d = d + 1 r = r.a end return d",
        );
        assert_eq!(d, 3999);
    }

    #[test]
    fn round_trips() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "local t = {1, -2, 3.25, 'x', {a = {b = {true, false}}}, string.rep('z', 300)} \
             local u = cmsgpack.unpack(cmsgpack.pack(t)) \
             return cjson.encode(u)",
        );
        assert_eq!(
            s,
            format!(
                "[1,-2,3.25,\"x\",{{\"a\":{{\"b\":[true,false]}}}},\"{}\"]",
                "z".repeat(300)
            )
        );
        let s: String = eval(
            &lua,
            "local p = cmsgpack.pack(1, 'two', {3}) local a, b, c = cmsgpack.unpack(p) \
             return a .. b .. c[1]",
        );
        assert_eq!(s, "1two3");
    }

    #[test]
    fn decoded_tables_iterate_in_redis_order() {
        // Redis grows each decoded table from empty; the layout, and so the
        // order `pairs` walks, follows from that.
        let lua = lua();
        let s: String = eval(
            &lua,
            "local t = {} for i = 1, 3000 do t['k' .. i] = i end \
             local u = cmsgpack.unpack(cmsgpack.pack(t)) local ks = {} \
             for k in pairs(u) do ks[#ks+1] = k if #ks > 10 then break end end \
             return table.concat(ks, ',')",
        );
        assert_eq!(
            s,
            "k1243,k1618,k2829,k833,k2838,k359,k2546,k1472,k1548,k645,k2023"
        );
        let s: String = eval(
            &lua,
            "local u = cmsgpack.unpack('\\220\\0\\40' .. string.rep('\\192\\1', 20)) \
             local ks = {} for k in pairs(u) do ks[#ks+1] = k end return table.concat(ks, ',')",
        );
        assert_eq!(s, "30,4,8,16,32,34,18,36,10,20,40,22,6,12,24,26,14,28,38,2");
    }

    #[test]
    fn module_fields_match_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "return table.concat({cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, \
             cmsgpack._DESCRIPTION}, '|')",
        );
        assert_eq!(
            s,
            "cmsgpack|lua-cmsgpack 0.4.0|Copyright (C) 2012, Salvatore Sanfilippo|\
             MessagePack C implementation for Lua"
        );
    }
}
