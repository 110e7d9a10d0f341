//! `struct`: binary packing with format strings, as Redis 7.0 ships it
//! (Roberto Ierusalimschy's struct library as vendored by Redis).
//!
//! Format letters: `<` `>` (byte order; little by default), `!n` (maximum
//! alignment, a power of two, default 8), `x` (a zero byte), `b/B` `h/H`
//! `l/L` (8 bytes) `T` (8 bytes) `i/I[n]` (n bytes, default 4, at most 32)
//! for signed/unsigned integers, `f` `d` for floats, `c[n]` (n bytes of a
//! string; `c0` is the whole string when packing and, when unpacking, as
//! long as the value unpacked just before), `s` (NUL-terminated), and
//! spaces. The format ends at its first NUL, as a C string does.
//!
//! Numbers become integers the way the C code's casts do on x86-64
//! ([`c_u64`]), so out-of-range and NaN inputs give Redis's bytes, not
//! Rust's saturated ones. Sizes wider than 8 bytes keep only 64 bits of
//! value, again as Redis does.

use mlua::{Lua, Table, Value};

use super::{c_u64, reserve, Args, Fail, Kit, LibResult, Out, MAX_RESULTS};

/// The alignment `!` sets when no number follows it: the strictest
/// alignment of a C scalar on x86-64.
const MAX_ALIGN: u64 = 8;
/// The widest `i`/`I`.
const MAX_INT_SIZE: u64 = 32;

/// Builds the `struct` table.
pub(super) fn create(lua: &Lua, kit: &Kit) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", kit.function(lua, pack)?)?;
    t.raw_set("unpack", kit.function(lua, unpack)?)?;
    t.raw_set("size", kit.function(lua, size)?)?;
    Ok(t)
}

/// Byte order and alignment, changed by the control letters as the format
/// is read.
struct Header {
    little: bool,
    align: u64,
}

/// Reads a format string one option at a time.
struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
    h: Header,
}

impl<'a> Format<'a> {
    fn new(fmt: &'a [u8]) -> Format<'a> {
        // The C code sees a C string: everything after a NUL is ignored.
        let end = fmt.iter().position(|&b| b == 0).unwrap_or(fmt.len());
        Format {
            fmt: &fmt[..end],
            pos: 0,
            h: Header {
                little: true,
                align: 1,
            },
        }
    }

    /// The next option letter and its size in bytes (0 for `s`, `c0`,
    /// controls and unknown letters); digits after `i`, `I`, `c` are read
    /// here.
    fn next(&mut self) -> LibResult<Option<(u8, u64)>> {
        let Some(&opt) = self.fmt.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let size = match opt {
            b'x' | b'b' | b'B' => 1,
            b'h' | b'H' => 2,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let n = self.number(4)?;
                if n > MAX_INT_SIZE {
                    return Err(Fail::msg(format!(
                        "integral size {n} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                n
            }
            _ => 0,
        };
        Ok(Some((opt, size)))
    }

    /// A decimal count after an option, or `default` when none follows; C
    /// `int` range only.
    fn number(&mut self, default: u64) -> LibResult<u64> {
        if !self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut n: u64 = 0;
        while let Some(&b) = self.fmt.get(self.pos).filter(|b| b.is_ascii_digit()) {
            let d = u64::from(b - b'0');
            if n > (i32::MAX as u64) / 10 || n * 10 > i32::MAX as u64 - d {
                return Err(Fail::msg("integral size overflow"));
            }
            n = n * 10 + d;
            self.pos += 1;
        }
        Ok(n)
    }

    /// Padding before an option of `size` bytes at offset `at`. Only
    /// numbers align, to the smaller of their size and `!`'s value. The
    /// mask arithmetic is the C code's, including for sizes like 3 that are
    /// not powers of two.
    fn padding(&self, at: u64, opt: u8, size: u64) -> u64 {
        if size == 0 || opt == b'c' {
            return 0;
        }
        let align = size.min(self.h.align);
        let mask = align.wrapping_sub(1);
        align.wrapping_sub(at & mask) & mask
    }

    /// The control letters (`' '`, `<`, `>`, `!n`); anything else reaching
    /// here is an invalid option.
    fn control(&mut self, opt: u8) -> LibResult<()> {
        match opt {
            b' ' => {}
            b'>' => self.h.little = false,
            b'<' => self.h.little = true,
            b'!' => {
                let a = self.number(MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(Fail::msg(format!("alignment {a} is not a power of 2")));
                }
                self.h.align = a;
            }
            _ => {
                return Err(Fail::arg(
                    1,
                    [&b"invalid format option '"[..], &[opt], b"'"].concat(),
                ))
            }
        }
        Ok(())
    }
}

/// `struct.pack(fmt, ...)`.
fn pack(lua: &Lua, mut a: Args) -> LibResult<Out> {
    let fmt = a.string(lua, 1)?;
    // The C code then pushes a nil after the arguments, so a missing
    // value reads as "got nil", not "got no value".
    a.push_nil();
    let fmt = fmt.as_bytes();
    let mut f = Format::new(&fmt);
    let mut out: Vec<u8> = Vec::new();
    let mut arg = 2;
    while let Some((opt, mut size)) = f.next()? {
        let pad = f.padding(out.len() as u64, opt, size);
        reserve(&mut out, pad as usize + 32, "struct.pack")?;
        out.resize(out.len() + pad as usize, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let v = c_u64(a.number(lua, arg)?);
                arg += 1;
                let bytes = (0..size).map(|i| if i < 8 { (v >> (8 * i)) as u8 } else { 0 });
                if f.h.little {
                    out.extend(bytes);
                } else {
                    let start = out.len();
                    out.extend(bytes);
                    out[start..].reverse();
                }
            }
            b'x' => out.push(0),
            b'f' => {
                let v = a.number(lua, arg)? as f32;
                arg += 1;
                out.extend_from_slice(&if f.h.little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                });
            }
            b'd' => {
                let v = a.number(lua, arg)?;
                arg += 1;
                out.extend_from_slice(&if f.h.little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                });
            }
            b'c' | b's' => {
                let s = a.string(lua, arg)?;
                arg += 1;
                let s = s.as_bytes();
                let len = s.len() as u64;
                if size == 0 {
                    size = len;
                }
                if len < size {
                    // The C code has already moved on to the next argument
                    // when it checks, so it names that one.
                    return Err(Fail::arg(super::arg_index(arg), "string too short"));
                }
                reserve(&mut out, size as usize + 1, "struct.pack")?;
                out.extend_from_slice(&s[..size as usize]);
                if opt == b's' {
                    // `s` is the whole string plus its terminating NUL.
                    out.extend_from_slice(&s[size as usize..]);
                    out.push(0);
                }
            }
            _ => f.control(opt)?,
        }
    }
    Out::one(Value::String(lua.create_string(&out)?))
}

/// `struct.unpack(fmt, data [, pos])`: the values, then the 1-based
/// position after the last byte read.
fn unpack(lua: &Lua, a: Args) -> LibResult<Out> {
    let fmt = a.string(lua, 1)?;
    let fmt = fmt.as_bytes();
    let data = a.string(lua, 2)?;
    let data = data.as_bytes();
    let ld = data.len() as u64;
    // The C code keeps the position in a size_t: negative offsets wrap
    // around to huge ones, which then fail "data string too short".
    let mut pos = a.opt_integer(lua, 3, 1)? as u64;
    if pos == 0 {
        return Err(Fail::arg(3, "offset must be 1 or greater"));
    }
    pos -= 1;
    let results = lua.create_table()?;
    let mut n = 0usize;
    let mut f = Format::new(&fmt);
    while let Some((opt, mut size)) = f.next()? {
        pos = pos.wrapping_add(f.padding(pos, opt, size));
        if pos.checked_add(size).is_none_or(|end| end > ld) {
            return Err(Fail::arg(2, "data string too short"));
        }
        if n >= MAX_RESULTS {
            // Redis's Lua stack is full by now; the trampoline reports it.
            break;
        }
        let at = pos as usize;
        let value = match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[at..at + size as usize];
                let signed = opt.is_ascii_lowercase();
                Some(Value::Number(read_integer(bytes, f.h.little, signed)))
            }
            b'x' => None,
            b'f' => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[at..at + 4]);
                let v = if f.h.little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                };
                Some(Value::Number(f64::from(v)))
            }
            b'd' => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[at..at + 8]);
                let v = if f.h.little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                };
                Some(Value::Number(v))
            }
            b'c' => {
                if size == 0 {
                    // `c0`: the length is the value just unpacked, which
                    // it replaces.
                    let prev = if n == 0 {
                        None
                    } else {
                        Some(results.raw_get::<Value>(n)?)
                    };
                    let len = match prev {
                        Some(v @ (Value::Number(_) | Value::Integer(_) | Value::String(_))) => {
                            lua.coerce_number(v)?
                        }
                        _ => None,
                    };
                    let Some(len) = len else {
                        return Err(Fail::msg("format 'c0' needs a previous size"));
                    };
                    results.raw_set(n, Value::Nil)?;
                    n -= 1;
                    size = c_u64(len);
                    if size > ld - pos {
                        return Err(Fail::arg(2, "data string too short"));
                    }
                }
                Some(Value::String(
                    lua.create_string(&data[at..at + size as usize])?,
                ))
            }
            b's' => {
                let Some(len) = data[at..].iter().position(|&b| b == 0) else {
                    return Err(Fail::msg("unfinished string in data"));
                };
                size = len as u64 + 1;
                Some(Value::String(lua.create_string(&data[at..at + len])?))
            }
            _ => {
                f.control(opt)?;
                None
            }
        };
        if let Some(v) = value {
            n += 1;
            results.raw_set(n, v)?;
        }
        pos += size;
    }
    n += 1;
    // lua_pushinteger of a size_t: the wrapped offset comes back negative.
    results.raw_set(n, Value::Number(pos.wrapping_add(1) as i64 as f64))?;
    Ok(Out::Spread(results, n, "too many results"))
}

/// An integer of `bytes.len()` bytes. Like the C code, only the low 64 bits
/// survive, and the sign bit of a wide signed field is found with the C
/// shift's x86-64 semantics (count taken modulo 64).
fn read_integer(bytes: &[u8], little: bool, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let mut take = |b: &u8| l = (l << 8) | u64::from(*b);
    if little {
        bytes.iter().rev().for_each(&mut take);
    } else {
        bytes.iter().for_each(&mut take);
    }
    if !signed {
        return l as f64;
    }
    let shift = ((bytes.len() as u64 * 8).wrapping_sub(1) & 63) as u32;
    let mask = u64::MAX << shift;
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

/// `struct.size(fmt)`: the bytes `pack` would produce. Unknown letters
/// count as nothing here (only unknown punctuation is an error).
fn size(lua: &Lua, a: Args) -> LibResult<Out> {
    let fmt = a.string(lua, 1)?;
    let fmt = fmt.as_bytes();
    let mut f = Format::new(&fmt);
    let mut total: u64 = 0;
    while let Some((opt, size)) = f.next()? {
        total = total.wrapping_add(f.padding(total, opt, size));
        if opt == b's' {
            return Err(Fail::arg(1, "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(Fail::arg(1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(opt)?;
        }
        total = total.wrapping_add(size);
    }
    Out::one(Value::Number(total as f64))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, eval, hex, lua, unhex};

    /// Hex of `struct.pack(args)`, or the error.
    fn pack(lua: &mlua::Lua, args: &str) -> String {
        let code = format!(
            "local ok, r = pcall(function() return struct.pack({args}) end) \
             if not ok then return 'ERR ' .. r end return r"
        );
        let s: mlua::LuaString = eval(lua, &code);
        let b = s.as_bytes();
        if b.starts_with(b"ERR ") {
            String::from_utf8_lossy(&b).into_owned()
        } else {
            hex(&b)
        }
    }

    /// `struct.unpack(fmt, data, extra...)` results joined by " | ".
    fn unpack(lua: &mlua::Lua, fmt: &str, data_hex: &str, extra: &str) -> String {
        lua.globals()
            .set("D", lua.create_string(unhex(data_hex)).expect("data"))
            .expect("set");
        eval(
            lua,
            &format!(
                "local r = {{pcall(struct.unpack, '{fmt}', D {extra})}} \
                 local out = {{}} for i = 1, table.maxn(r) do \
                 out[#out+1] = type(r[i]) == 'string' and r[1] and string.format('%q', r[i]) \
                 or tostring(r[i]) end return table.concat(out, ' | ')"
            ),
        )
    }

    #[test]
    fn pack_integers_like_redis() {
        let lua = lua();
        for (args, want) in [
            ("'b',1", "01"),
            ("'b',-1", "ff"),
            ("'b',255", "ff"),
            ("'b',256", "00"),
            ("'b',-129", "7f"),
            ("'B',-1", "ff"),
            ("'B',1.7", "01"),
            ("'B',-1.7", "ff"),
            ("'h',1", "0100"),
            ("'>h',1", "0001"),
            ("'<h',1", "0100"),
            ("'H',65535", "ffff"),
            ("'l',1", "0100000000000000"),
            ("'L',-1", "ffffffffffffffff"),
            ("'T',5", "0500000000000000"),
            ("'i',1", "01000000"),
            ("'I',1", "01000000"),
            ("'i3',1", "010000"),
            ("'i4',-2", "feffffff"),
            ("'i5',1", "0100000000"),
            ("'i9',-1", "ffffffffffffffff00"),
            ("'>i9',-1", "00ffffffffffffffff"),
            ("'>I16',-1", "0000000000000000ffffffffffffffff"),
            ("'i0',1", ""),
            ("'>i3',1", "000001"),
            ("'I3',-1", "ffffff"),
            ("'b','12'", "0c"),
            ("'b',2^53", "00"),
            ("'b',1e100", "00"),
            ("'b',-1e100", "00"),
            ("'L',2^64", "0000000000000000"),
            ("'L',2^63", "0000000000000080"),
            ("'l',-2^63", "0000000000000080"),
            ("'i',0/0", "00000000"),
            ("'>L',0/0", "8000000000000000"),
            ("'>L',1/0", "0000000000000000"),
            ("'>L',-1/0", "8000000000000000"),
            ("'>L',2^64-2048", "fffffffffffff800"),
            ("'>L',-0.9", "0000000000000000"),
            ("'>i8',-(2^53)-2", "ffdffffffffffffe"),
            ("'b', 127.5", "7f"),
            ("'>I2', 256.9", "0100"),
        ] {
            assert_eq!(pack(&lua, args), want, "{args}");
        }
    }

    #[test]
    fn pack_other_options_like_redis() {
        let lua = lua();
        for (args, want) in [
            ("'f',1.5", "0000c03f"),
            ("'d',1.5", "000000000000f83f"),
            ("'>d',1.5", "3ff8000000000000"),
            ("'d','1.5'", "000000000000f83f"),
            ("'c','abc'", "61"),
            ("'c3','abc'", "616263"),
            ("'c2','abc'", "6162"),
            ("'c0','abc'", "616263"),
            ("'c0',''", ""),
            ("'c00','a'", "61"),
            ("'c',5", "35"),
            ("'s','abc'", "61626300"),
            ("'s','a\\0b'", "61006200"),
            ("'s',5", "3500"),
            ("'x'", "00"),
            ("'b x b',1,2", "010002"),
            ("'bhb',1,2,3", "01020003"),
            ("'!bh',1,2", "01000200"),
            ("'!4bi',1,2", "0100000002000000"),
            ("'!2bi',1,2", "010002000000"),
            ("'!bd',1,2", "01000000000000000000000000000040"),
            ("'!bl',1,2", "01000000000000000200000000000000"),
            (
                "'!16bi16',1,2",
                "0100000000000000000000000000000002000000000000000000000000000000",
            ),
            ("'!1bi',1,2", "0102000000"),
            ("'!4i2 d',1,2", "010000000000000000000040"),
            ("'!4c3d','abc',2", "616263000000000000000040"),
            ("'!4sd','ab',2", "616200000000000000000040"),
            ("'!2b!4i',1,2", "0100000002000000"),
            ("'<>b',1", "01"),
            ("'b',1,2,3", "01"),
            ("''", ""),
            ("'b\\0b',1,2", "01"),
            ("'!',1", ""),
        ] {
            assert_eq!(pack(&lua, args), want, "{args}");
        }
    }

    #[test]
    fn pack_errors_like_redis() {
        let lua = lua();
        for (args, want) in [
            (
                "'=h',1",
                "bad argument #1 to 'pack' (invalid format option '=')",
            ),
            (
                "'q',1",
                "bad argument #1 to 'pack' (invalid format option 'q')",
            ),
            (
                "'c1x1','a'",
                "bad argument #1 to 'pack' (invalid format option '1')",
            ),
            ("'c3','ab'", "bad argument #3 to 'pack' (string too short)"),
            ("'c10','ab'", "bad argument #3 to 'pack' (string too short)"),
            ("'i33',1", "integral size 33 is larger than limit of 32"),
            ("'i99999999999999',1", "integral size overflow"),
            ("'c2147483648','a'", "integral size overflow"),
            (
                "'b'",
                "bad argument #2 to 'pack' (number expected, got nil)",
            ),
            (
                "'b','x'",
                "bad argument #2 to 'pack' (number expected, got string)",
            ),
            (
                "'b',{}",
                "bad argument #2 to 'pack' (number expected, got table)",
            ),
            (
                "'c'",
                "bad argument #2 to 'pack' (string expected, got nil)",
            ),
            ("'!3bi',1,2", "alignment 3 is not a power of 2"),
            ("'!0bh',1,2", "alignment 0 is not a power of 2"),
            (
                "",
                "bad argument #1 to 'pack' (string expected, got no value)",
            ),
        ] {
            assert_eq!(
                pack(&lua, args),
                format!("ERR user_script:1: {want}"),
                "{args}"
            );
        }
        // The message quotes the raw byte.
        let e: mlua::LuaString = eval(&lua, "local ok, e = pcall(struct.pack, '\\255') return e");
        assert_eq!(
            &e.as_bytes()[..],
            b"bad argument #1 to '?' (invalid format option '\xff')"
        );
    }

    #[test]
    fn unpack_like_redis() {
        let lua = lua();
        for (fmt, data, extra, want) in [
            ("b", "ff", "", "true | -1 | 2"),
            ("B", "ff", "", "true | 255 | 2"),
            ("h", "feff", "", "true | -2 | 3"),
            (">h", "fffe", "", "true | -2 | 3"),
            ("H", "ffff", "", "true | 65535 | 3"),
            ("l", "ffffffffffffffff", "", "true | -1 | 9"),
            ("L", "ffffffffffffffff", "", "true | 1.844674407371e+19 | 9"),
            (
                ">L",
                "8000000000000001",
                "",
                "true | 9.2233720368548e+18 | 9",
            ),
            ("i", "ffffffff", "", "true | -1 | 5"),
            ("I", "ffffffff", "", "true | 4294967295 | 5"),
            ("i3", "ffffff", "", "true | -1 | 4"),
            ("I3", "ffffff", "", "true | 16777215 | 4"),
            ("i9", "ffffffffffffffffff", "", "true | -1 | 10"),
            ("i9", "010000000000000000", "", "true | 1 | 10"),
            ("i9", "000000000000000001", "", "true | 0 | 10"),
            ("I9", "0000000000000000ff", "", "true | 0 | 10"),
            (">i9", "ff7fffffffffffffff", "", "true | -1 | 10"),
            (
                "i16",
                "ffffffffffffffffffffffffffffffff",
                "",
                "true | -1 | 17",
            ),
            (
                ">i8",
                "8000000000000000",
                "",
                "true | -9.2233720368548e+18 | 9",
            ),
            ("f", "0000c03f", "", "true | 1.5 | 5"),
            ("d", "000000000000f83f", "", "true | 1.5 | 9"),
            ("c3", "616263", "", "true | \"abc\" | 4"),
            ("c", "61", "", "true | \"a\" | 2"),
            ("bc0", "03616263", "", "true | \"abc\" | 5"),
            ("Bc0B", "0361626307", "", "true | \"abc\" | 7 | 6"),
            ("ic0", "020000006162", "", "true | \"ab\" | 7"),
            ("Lc0", "ffffffffffffffff6162", "", "true | \"\" | 9"),
            ("bxc0", "01616200", "", "true | \"b\" | 4"),
            ("s", "61620063", "", "true | \"ab\" | 4"),
            ("x", "00", "", "true | 2"),
            ("bxb", "010203", "", "true | 1 | 3 | 4"),
            ("!4bi", "0100000002000000", "", "true | 1 | 2 | 9"),
            ("!4i", "0001000000020000", ", 2", "true | 512 | 9"),
            ("b", "0102", ", 2", "true | 2 | 3"),
            ("b", "0102", ", 1.5", "true | 1 | 2"),
            ("b", "0102", ", nil", "true | 1 | 2"),
            ("", "6162", ", -1", "true | -1"),
            ("", "6162", ", 5", "true | 5"),
            ("i0", "6162", ", 3", "true | 0 | 3"),
            (" ", "01", "", "true | 1"),
            (">!<b", "01", "", "true | 1 | 2"),
        ] {
            assert_eq!(unpack(&lua, fmt, data, extra), want, "{fmt} {data} {extra}");
        }
        let s: String = eval(
            &lua,
            "local a, b = struct.unpack('sc0', '12\\0abcdefghijklmn') return a .. ' ' .. b",
        );
        assert_eq!(s, "abcdefghijkl 16");
    }

    #[test]
    fn unpack_errors_like_redis() {
        let lua = lua();
        let short = "false | bad argument #2 to '?' (data string too short)";
        for (fmt, data, extra, want) in [
            (
                "c0",
                "616263",
                "",
                "false | format 'c0' needs a previous size",
            ),
            (
                "sc0",
                "616200",
                "",
                "false | format 'c0' needs a previous size",
            ),
            ("bc0", "05616263", "", short),
            ("bc0", "ff", "", short),
            ("s", "6162", "", "false | unfinished string in data"),
            ("bb", "01", "", short),
            ("c3b", "6162", "", short),
            ("b", "0102", ", 3", short),
            ("b", "0102", ", -1", short),
            ("b", "01", ", 1e10", short),
            ("x", "6162", ", 3", short),
            ("i0", "6162", ", 4", short),
            ("c1", "", "", short),
            (
                "b",
                "0102",
                ", 0",
                "false | bad argument #3 to '?' (offset must be 1 or greater)",
            ),
            (
                "b",
                "0102",
                ", 'x'",
                "false | bad argument #3 to '?' (number expected, got string)",
            ),
            (
                "q",
                "61",
                "",
                "false | bad argument #1 to '?' (invalid format option 'q')",
            ),
        ] {
            assert_eq!(unpack(&lua, fmt, data, extra), want, "{fmt} {data} {extra}");
        }
        assert_eq!(
            err(&lua, "struct.unpack('b')"),
            "user_script:1: bad argument #2 to 'unpack' (string expected, got no value)"
        );
        // Numbers are accepted where strings are expected, as in Lua.
        let n: f64 = eval(&lua, "local a = struct.unpack('b', 123) return a");
        assert_eq!(n, 49.0);
    }

    #[test]
    fn size_like_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "return table.concat({struct.size('b'), struct.size('bh'), struct.size('!bh'), \
             struct.size('!bd'), struct.size('i3c5'), struct.size('>!4bxd'), struct.size(''), \
             struct.size('x'), struct.size('d'), struct.size('!8bT'), struct.size('q'), \
             struct.size('qQzZ'), struct.size('x1'), struct.size('c2147483647c2147483647'), \
             struct.size('bi16'), struct.size('!bi16'), struct.size('!bi3'), \
             struct.size('!4bi3'), struct.size('!bi5'), struct.size('!bc3'), \
             struct.size('!bT'), struct.size('!bf'), struct.size('!bx'), struct.size('!4bi6'), \
             struct.size('!bi0'), struct.size('!b!'), struct.size('b!8d'), struct.size('!'), \
             struct.size('!b!2h'), struct.size('>!4 i2 <'), struct.size('!16bd'), \
             struct.size('!32bi32'), struct.size('b\\0b')}, ' ')",
        );
        assert_eq!(
            s,
            "1 3 4 16 8 12 0 1 8 16 0 0 1 4294967294 17 24 6 6 10 4 16 8 2 10 1 1 16 0 4 2 16 64 1"
        );
        for (fmt, want) in [
            (
                "s",
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ),
            (
                "!bs",
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ),
            (
                "c0",
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ),
            (
                "bc0",
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ),
            ("=", "bad argument #1 to 'size' (invalid format option '=')"),
            (
                "#b",
                "bad argument #1 to 'size' (invalid format option '#')",
            ),
            ("c99999999999999999999", "integral size overflow"),
            ("c2147483648", "integral size overflow"),
            ("!99999999999", "integral size overflow"),
            (
                "i214748365",
                "integral size 214748365 is larger than limit of 32",
            ),
            (
                "i2147483647",
                "integral size 2147483647 is larger than limit of 32",
            ),
            ("i2147483648", "integral size overflow"),
            ("!17b", "alignment 17 is not a power of 2"),
            ("!3", "alignment 3 is not a power of 2"),
            ("q!3", "alignment 3 is not a power of 2"),
            ("!0", "alignment 0 is not a power of 2"),
        ] {
            assert_eq!(
                err(&lua, &format!("struct.size('{fmt}')")),
                format!("user_script:1: {want}"),
                "{fmt}"
            );
        }
    }

    #[test]
    fn many_results_overflow_like_redis() {
        let lua = lua();
        let n: i64 = eval(
            &lua,
            "return select('#', struct.unpack(string.rep('b', 7000), string.rep('\\1', 7000)))",
        );
        assert_eq!(n, 7001);
        assert_eq!(
            err(&lua, "struct.unpack(string.rep('i0', 100000), '')"),
            "user_script:1: stack overflow (too many results)"
        );
    }

    #[test]
    fn round_trips() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "local p = struct.pack('>!4 b h i l f d s c3 I3', -5, 1000, -70000, 2^40, 0.5, \
             1/3, 'hi', 'xyz', 65535) \
             local t = {struct.unpack('>!4 b h i l f d s c3 I3', p)} \
             for i = 1, #t do t[i] = tostring(t[i]) end return table.concat(t, ' ')",
        );
        assert_eq!(
            s,
            "-5 1000 -70000 1099511627776 0.5 0.33333333333333 hi xyz 65535 38"
        );
    }
}
