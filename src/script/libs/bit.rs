//! `bit`: LuaBitOp's 32-bit operations on Lua numbers.
//!
//! Every argument becomes a 32-bit integer the LuaBitOp way: add 2^52+2^51
//! so the double's low mantissa bits hold the value rounded to an integer
//! (ties to even) modulo 2^32, then read those bits. That is why 2^32 is 0,
//! 1.5 is 2 and 1e100 is 630506365. Results are signed 32-bit numbers.

use mlua::{Lua, Table, Value};

use super::{Args, Kit, LibResult, Out};

/// Builds the `bit` table.
pub(super) fn create(lua: &Lua, kit: &Kit) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", kit.function(lua, |lua, a| ret(arg(lua, &a, 1)?))?)?;
    t.raw_set("bnot", kit.function(lua, |lua, a| ret(!arg(lua, &a, 1)?))?)?;
    t.raw_set(
        "band",
        kit.function(lua, |lua, a| fold(lua, &a, |x, y| x & y))?,
    )?;
    t.raw_set(
        "bor",
        kit.function(lua, |lua, a| fold(lua, &a, |x, y| x | y))?,
    )?;
    t.raw_set(
        "bxor",
        kit.function(lua, |lua, a| fold(lua, &a, |x, y| x ^ y))?,
    )?;
    t.raw_set(
        "lshift",
        kit.function(lua, |lua, a| shift(lua, &a, |x, n| x << n))?,
    )?;
    t.raw_set(
        "rshift",
        kit.function(lua, |lua, a| shift(lua, &a, |x, n| x >> n))?,
    )?;
    t.raw_set(
        "arshift",
        kit.function(lua, |lua, a| {
            shift(lua, &a, |x, n| ((x as i32) >> n) as u32)
        })?,
    )?;
    t.raw_set(
        "rol",
        kit.function(lua, |lua, a| shift(lua, &a, u32::rotate_left))?,
    )?;
    t.raw_set(
        "ror",
        kit.function(lua, |lua, a| shift(lua, &a, u32::rotate_right))?,
    )?;
    t.raw_set(
        "bswap",
        kit.function(lua, |lua, a| ret(arg(lua, &a, 1)?.swap_bytes()))?,
    )?;
    t.raw_set("tohex", kit.function(lua, tohex)?)?;
    Ok(t)
}

/// A number's 32 bits, as LuaBitOp reads them.
pub(super) fn tobit(n: f64) -> u32 {
    // 2^52 + 2^51: after this addition the unit sits in the lowest
    // mantissa bit, so the low 32 bits of the representation are the
    // rounded integer modulo 2^32 (and garbage-but-stable for NaN/huge).
    (n + 6_755_399_441_055_744.0).to_bits() as u32
}

/// Argument `i` as 32 bits (`luaL_checknumber` rules for what is accepted).
fn arg(lua: &Lua, a: &Args, i: usize) -> LibResult<u32> {
    a.number(lua, i).map(tobit)
}

/// The result as the signed 32-bit number LuaBitOp pushes.
fn ret(b: u32) -> LibResult<Out> {
    Out::one(Value::Number(f64::from(b as i32)))
}

/// `band`/`bor`/`bxor`: one or more arguments. LuaBitOp reads the first,
/// then the rest from the last one down, which decides which bad argument
/// an error names.
fn fold(lua: &Lua, a: &Args, op: fn(u32, u32) -> u32) -> LibResult<Out> {
    let mut acc = arg(lua, a, 1)?;
    for i in (2..=a.len()).rev() {
        acc = op(acc, arg(lua, a, i)?);
    }
    ret(acc)
}

/// The shifts and rotations: the count is taken modulo 32.
fn shift(lua: &Lua, a: &Args, op: fn(u32, u32) -> u32) -> LibResult<Out> {
    let x = arg(lua, a, 1)?;
    let n = arg(lua, a, 2)? & 31;
    ret(op(x, n))
}

/// `tohex(x [, n])`: the low `|n|` hex digits (at most 8, default 8),
/// upper case when `n` is negative.
fn tohex(lua: &Lua, a: Args) -> LibResult<Out> {
    let mut x = arg(lua, &a, 1)?;
    // An absent count means 8; an explicit nil is a type error, as in C.
    let mut n = if a.get(2).is_none() {
        8
    } else {
        arg(lua, &a, 2)? as i32
    };
    let digits: &[u8; 16] = if n < 0 {
        n = n.wrapping_neg();
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    // i32::MIN stays negative after negation; Redis prints 8 digits then.
    let n = if !(0..=8).contains(&n) { 8 } else { n as usize };
    let mut buf = [0u8; 8];
    for slot in buf[..n].iter_mut().rev() {
        *slot = digits[(x & 15) as usize];
        x >>= 4;
    }
    Out::one(Value::String(lua.create_string(&buf[..n])?))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, eval, lua};

    /// `tostring` of each expression, space-separated.
    fn show(lua: &mlua::Lua, exprs: &str) -> String {
        eval(
            lua,
            &format!(
                "local r = {{}} for _, v in ipairs({{{exprs}}}) do r[#r+1] = tostring(v) end \
                 return table.concat(r, ' ')"
            ),
        )
    }

    #[test]
    fn tobit_wraps_and_rounds_like_redis() {
        let lua = lua();
        // Values from redis-server 7.0.15.
        assert_eq!(
            show(
                &lua,
                "bit.tobit(1), bit.tobit(2^32), bit.tobit(2^31), bit.tobit(-1), \
                 bit.tobit(0xffffffff), bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-1.5), \
                 bit.tobit(-2.5), bit.tobit(0.5), bit.tobit(2^52), bit.tobit(2^53+2), \
                 bit.tobit(1e100), bit.tobit(-1e100), bit.tobit(0/0), bit.tobit(1/0), \
                 bit.tobit(-1/0), bit.tobit(4294967295.5), bit.tobit(2^51+0.5), bit.tobit(-0), \
                 bit.tobit(2^31-0.5), bit.tobit(3.5), bit.tobit(-(2^31)-0.5), \
                 bit.tobit(2^52+2^51), bit.tobit(2^52+1), bit.tobit(-(2^52))"
            ),
            "1 0 -2147483648 -1 -1 2 2 -2 -2 0 0 1 630506365 630506365 0 0 0 0 0 0 \
             -2147483648 4 -2147483648 0 0 0"
        );
        assert_eq!(show(&lua, "bit.tobit('10'), bit.tobit('0x10')"), "10 16");
    }

    #[test]
    fn operations_match_redis() {
        let lua = lua();
        assert_eq!(
            show(
                &lua,
                "bit.band(0xff, 0x0f0), bit.band(-1), bit.band(1,3,5,7), bit.bor(1,2,4), \
                 bit.bor(1), bit.bxor(1,3), bit.bxor(1,3,7), bit.bnot(0), bit.bnot(-1), \
                 bit.bnot(2^32)"
            ),
            "240 -1 1 7 1 2 5 -1 0 -1"
        );
        assert_eq!(
            show(
                &lua,
                "bit.lshift(1, 31), bit.lshift(1, 32), bit.lshift(1, 33), bit.lshift(1, -1), \
                 bit.lshift(0x80000000, 1), bit.rshift(-1, 1), bit.rshift(-1, 32), \
                 bit.rshift(-1, 31), bit.arshift(-256, 4), bit.arshift(0x80000000, 31), \
                 bit.arshift(1, 33)"
            ),
            "-2147483648 1 2 -2147483648 0 2147483647 -1 1 -16 -1 0"
        );
        assert_eq!(
            show(
                &lua,
                "bit.rol(0x12345678, 4), bit.rol(0x12345678, 36), bit.ror(0x12345678, 4), \
                 bit.ror(1, 1), bit.rol(1, -1), bit.bswap(0x12345678), bit.bswap(0xff), \
                 bit.bswap(-1)"
            ),
            "591751041 591751041 -2128394905 -2147483648 -2147483648 2018915346 -16777216 -1"
        );
        assert_eq!(
            show(
                &lua,
                "bit.lshift(1.5, 1), bit.lshift(1, 1.5), bit.lshift('3', '1'), \
                 bit.band(1,2,3,4,5,6,7,8,9,10), bit.lshift(1, 2, 3)"
            ),
            "4 4 6 0 4"
        );
    }

    #[test]
    fn tohex_matches_redis() {
        let lua = lua();
        let s: String = eval(
            &lua,
            "return table.concat({bit.tohex(1), bit.tohex(-1), bit.tohex(255, 2), \
             bit.tohex(255, -2), bit.tohex(0x12345678, 4), bit.tohex(0x12345678, -8), \
             bit.tohex(1, 0), bit.tohex(1, 9), bit.tohex(1, -9), bit.tohex(1, 100), \
             bit.tohex(1, 2^32+3), bit.tohex(1, '3'), bit.tohex(1, 2.7), bit.tohex(1, -2.7), \
             bit.tohex(0xabcdef01, -2^31), bit.tohex(0xabcdef01, 2^31), \
             bit.tohex(0xabcdef01, -8), bit.tohex(0xabcdef01, -1/0), \
             bit.tohex(0xabcdef01, 0/0), bit.tohex(-1.5)}, ',')",
        );
        assert_eq!(
            s,
            "00000001,ffffffff,ff,FF,5678,12345678,,00000001,00000001,00000001,001,001,001,\
             001,ABCDEF01,ABCDEF01,ABCDEF01,,,fffffffe"
        );
    }

    #[test]
    fn argument_errors_match_redis() {
        let lua = lua();
        assert_eq!(
            err(&lua, "bit.band('x')"),
            "user_script:1: bad argument #1 to 'band' (number expected, got string)"
        );
        assert_eq!(
            err(&lua, "bit.band()"),
            "user_script:1: bad argument #1 to 'band' (number expected, got no value)"
        );
        assert_eq!(
            err(&lua, "bit.band(1, 2, nil)"),
            "user_script:1: bad argument #3 to 'band' (number expected, got nil)"
        );
        assert_eq!(
            err(&lua, "bit.bor(0.5, nil, nil)"),
            "user_script:1: bad argument #3 to 'bor' (number expected, got nil)"
        );
        assert_eq!(
            err(&lua, "bit.bxor(1, 'x', 2, {})"),
            "user_script:1: bad argument #4 to 'bxor' (number expected, got table)"
        );
        assert_eq!(
            err(&lua, "bit.band('x', nil)"),
            "user_script:1: bad argument #1 to 'band' (number expected, got string)"
        );
        assert_eq!(
            err(&lua, "bit.lshift(1)"),
            "user_script:1: bad argument #2 to 'lshift' (number expected, got no value)"
        );
        assert_eq!(
            err(&lua, "bit.tobit({})"),
            "user_script:1: bad argument #1 to 'tobit' (number expected, got table)"
        );
        assert_eq!(
            err(&lua, "bit.tohex(1, nil)"),
            "user_script:1: bad argument #2 to 'tohex' (number expected, got nil)"
        );
    }

    #[test]
    fn many_arguments_fold() {
        let lua = lua();
        let n: f64 = eval(
            &lua,
            "local t = {} for i = 1, 5000 do t[i] = 2^(i % 32) end return bit.bor(unpack(t))",
        );
        assert_eq!(n, -1.0);
    }
}
