//! Bitmaps: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO.
//!
//! A bitmap is a string; bit 0 is the most significant bit of byte 0, as
//! in Redis. Commands that change one change it in place
//! ([`with_string`]): the string is then held out of line with room to
//! grow, so SETBIT at increasing offsets costs what Redis's does, not a
//! copy of the whole bitmap per call. Every one of these commands is
//! deterministic, so its record is the command itself.

use keel_shards::Shard;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::numbers::parse_i64;
use crate::cmd::{get_string, is, make_room, with_string, Ctx};
use crate::resp::reply::Reply;

fn err(text: &str) -> CmdError {
    CmdError::Raw(text.into())
}

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// A bit offset argument: `n`, or `#n` (in units of `bits`) where allowed;
/// refused past the largest string a command may build.
fn bit_offset(arg: &[u8], ctx: &Ctx, units_of: Option<u32>) -> Result<u64, CmdError> {
    let (text, scale) = match (arg.first(), units_of) {
        (Some(b'#'), Some(bits)) => (&arg[1..], bits as i64),
        _ => (arg, 1),
    };
    let n = parse_i64(text)
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n >= 0)
        .ok_or_else(|| err(BAD_OFFSET))? as u64;
    if (n >> 3) >= ctx.max_string as u64 {
        return Err(err(BAD_OFFSET));
    }
    Ok(n)
}

/// Grows `v` with zero bytes to hold bit `bit`.
fn grow_to_bit(v: &mut Vec<u8>, bit: u64) -> bool {
    let need = (bit >> 3) as usize + 1;
    if v.len() < need {
        make_room(v, need);
        v.resize(need, 0);
        return true;
    }
    false
}

fn get_bit(v: &[u8], bit: u64) -> u8 {
    v.get((bit >> 3) as usize)
        .map_or(0, |b| (b >> (7 - (bit & 7))) & 1)
}

pub fn setbit(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let bit = bit_offset(a[2], ctx, None)?;
    let on = match a[3] {
        b"1" => true,
        b"0" => false,
        _ => return Err(err("ERR bit is not an integer or out of range")),
    };
    with_string(s, ctx, a[1], |v| {
        let grew = grow_to_bit(v, bit);
        let byte = &mut v[(bit >> 3) as usize];
        let mask = 1u8 << (7 - (bit & 7));
        let old = (*byte & mask != 0) as i64;
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        // Setting a bit to what it was is no write (no record, no dirty
        // count), as in Redis 7.0; creating or growing the string is one.
        Ok((Reply::Int(old), grew || old != on as i64))
    })
}

pub fn getbit(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let bit = bit_offset(a[2], ctx, None)?;
    let v = get_string(s, ctx, a[1])?.unwrap_or(b"");
    Ok(Reply::Int(get_bit(v, bit) as i64))
}

/// A `start end [BYTE|BIT]` range over a string of `len` bytes, as an
/// inclusive range of bits; `None` when it is empty.
fn bit_range(len: usize, start: i64, end: i64, in_bits: bool) -> Option<(u64, u64)> {
    let total = if in_bits { len as i64 * 8 } else { len as i64 };
    let mut start = if start < 0 { total + start } else { start };
    let mut end = if end < 0 { total + end } else { end };
    start = start.max(0);
    end = end.max(0).min(total - 1);
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if in_bits {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    })
}

/// The `BYTE|BIT` word at `a[i]`, if any: whether the range is in bits.
fn unit(a: &[&[u8]], i: usize) -> Result<bool, CmdError> {
    match a.get(i) {
        None => Ok(false),
        Some(w) if is(w, "byte") => Ok(false),
        Some(w) if is(w, "bit") => Ok(true),
        Some(_) => Err(CmdError::Syntax),
    }
}

/// Set bits in the inclusive bit range.
fn count_bits(v: &[u8], first: u64, last: u64) -> u64 {
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let mut n: u64 = v[fb..=lb].iter().map(|b| b.count_ones() as u64).sum();
    // Take off the bits of the edge bytes outside the range: the `first & 7`
    // high bits of the first byte, the `7 - last & 7` low bits of the last.
    let head = (0xff00u16 >> (first & 7)) as u8;
    let tail = (0xffu16 >> ((last & 7) + 1)) as u8;
    n -= (v[fb] & head).count_ones() as u64;
    n -= (v[lb] & tail).count_ones() as u64;
    n
}

pub fn bitcount(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // A missing key counts 0 before its arguments are read (Redis 7.0).
    let Some(v) = get_string(s, ctx, a[1])? else {
        return Ok(Reply::Int(0));
    };
    let (start, end, in_bits) = match a.len() {
        2 => (0, -1, false),
        4 | 5 => {
            let start = parse_i64(a[2]).ok_or(CmdError::NotInteger)?;
            let end = parse_i64(a[3]).ok_or(CmdError::NotInteger)?;
            // An empty range from the end answers before the unit is read.
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Int(0));
            }
            (start, end, unit(a, 4)?)
        }
        _ => return Err(CmdError::Syntax),
    };
    Ok(Reply::Int(match bit_range(v.len(), start, end, in_bits) {
        None => 0,
        Some((first, last)) => count_bits(v, first, last) as i64,
    }))
}

pub fn bitpos(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let want = match parse_i64(a[2]).ok_or(CmdError::NotInteger)? {
        0 => 0u8,
        1 => 1u8,
        _ => return Err(err("ERR The bit argument must be 1 or 0.")),
    };
    // A missing key is an endless run of zeros, whatever the range.
    let Some(v) = get_string(s, ctx, a[1])? else {
        return Ok(Reply::Int(if want == 1 { -1 } else { 0 }));
    };
    if a.len() > 6 {
        return Err(CmdError::Syntax);
    }
    let start = a
        .get(3)
        .map(|w| parse_i64(w).ok_or(CmdError::NotInteger))
        .transpose()?;
    let end = a
        .get(4)
        .map(|w| parse_i64(w).ok_or(CmdError::NotInteger))
        .transpose()?;
    let in_bits = unit(a, 5)?;
    let Some((first, last)) = bit_range(v.len(), start.unwrap_or(0), end.unwrap_or(-1), in_bits)
    else {
        return Ok(Reply::Int(-1));
    };
    if let Some(p) = find_bit(v, first, last, want) {
        return Ok(Reply::Int(p as i64));
    }
    // A clear bit not found with no end given: the string reads as padded
    // with zeros, so the answer is the first bit past its end.
    Ok(Reply::Int(if want == 0 && end.is_none() {
        v.len() as i64 * 8
    } else {
        -1
    }))
}

/// The first bit equal to `want` in the inclusive bit range.
fn find_bit(v: &[u8], first: u64, last: u64, want: u8) -> Option<u64> {
    let skip = if want == 1 { 0x00 } else { 0xff };
    let mut bit = first;
    while bit <= last {
        let byte = v[(bit >> 3) as usize];
        // Whole bytes without the bit are passed over at once.
        if bit & 7 == 0 && last - bit >= 7 && byte == skip {
            bit += 8;
            continue;
        }
        if (byte >> (7 - (bit & 7))) & 1 == want {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

pub fn bitop(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = match a[1] {
        w if is(w, "and") => Op::And,
        w if is(w, "or") => Op::Or,
        w if is(w, "xor") => Op::Xor,
        w if is(w, "not") => Op::Not,
        _ => return Err(CmdError::Syntax),
    };
    let sources = &a[3..];
    if op == Op::Not && sources.len() != 1 {
        return Err(err(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(sources.len());
    for key in sources {
        values.push(get_string(s, ctx, key)?.map_or_else(Vec::new, |v| v.to_vec()));
    }
    let len = values.iter().map(Vec::len).max().unwrap_or(0);
    if len == 0 {
        s.delete(ctx.db, a[2], ctx.now_ms);
        return Ok(Reply::Int(0));
    }
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().enumerate() {
        // A shorter source reads as zeros past its end.
        let mut bytes = values.iter().map(|v| v.get(i).copied().unwrap_or(0));
        let first = bytes.next().unwrap_or(0);
        *byte = match op {
            Op::Not => !first,
            Op::And => bytes.fold(first, |x, b| x & b),
            Op::Or => bytes.fold(first, |x, b| x | b),
            Op::Xor => bytes.fold(first, |x, b| x ^ b),
        };
    }
    s.set_string(ctx.db, a[2], &out, Some(0), ctx.now_ms);
    Ok(Reply::Int(len as i64))
}

/// How BITFIELD's SET and INCRBY treat a value that does not fit.
#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

enum FieldOp {
    Get,
    Set(i64),
    Incr(i64),
}

struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let bad = || {
        err("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")
    };
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(bad()),
    };
    let bits = parse_i64(&arg[1..]).ok_or_else(bad)?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(bad());
    }
    Ok((signed, bits as u32))
}

fn parse_fields(a: &[&[u8]], ctx: &Ctx, read_only: bool) -> Result<Vec<Field>, CmdError> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut i = 2;
    while i < a.len() {
        let word = a[i];
        let takes = if is(word, "get") {
            2
        } else if is(word, "set") || is(word, "incrby") {
            3
        } else if is(word, "overflow") {
            1
        } else {
            return Err(CmdError::Syntax);
        };
        if i + takes >= a.len() {
            return Err(CmdError::Syntax);
        }
        if is(word, "overflow") {
            overflow = match a[i + 1] {
                w if is(w, "wrap") => Overflow::Wrap,
                w if is(w, "sat") => Overflow::Sat,
                w if is(w, "fail") => Overflow::Fail,
                _ => return Err(err("ERR Invalid OVERFLOW type specified")),
            };
            i += 2;
            continue;
        }
        let (signed, bits) = field_type(a[i + 1])?;
        let offset = bit_offset(a[i + 2], ctx, Some(bits))?;
        let op = if is(word, "get") {
            FieldOp::Get
        } else {
            let n = parse_i64(a[i + 3]).ok_or(CmdError::NotInteger)?;
            if is(word, "set") {
                FieldOp::Set(n)
            } else {
                FieldOp::Incr(n)
            }
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        i += takes + 1;
    }
    // Checked once every operation has parsed, as Redis does.
    if read_only && fields.iter().any(|f| !matches!(f.op, FieldOp::Get)) {
        return Err(err("ERR BITFIELD_RO only supports the GET subcommand"));
    }
    Ok(fields)
}

/// The `bits` bits at `offset`, as an unsigned number (past the end: 0).
fn read_field(v: &[u8], offset: u64, bits: u32) -> u64 {
    (0..bits as u64).fold(0, |n, j| (n << 1) | get_bit(v, offset + j) as u64)
}

fn write_field(v: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..bits as u64 {
        let bit = offset + j;
        let mask = 1u8 << (7 - (bit & 7));
        let byte = &mut v[(bit >> 3) as usize];
        if (value >> (bits as u64 - 1 - j)) & 1 == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

fn as_signed(raw: u64, bits: u32) -> i64 {
    // Sign-extend from the field's top bit.
    ((raw << (64 - bits)) as i64) >> (64 - bits)
}

/// What a SET or INCRBY leaves in a field: `Ok` when `value + incr` fits,
/// else what the overflow mode makes of it (`Err(None)`: FAIL). The checks
/// are Redis's, with its 64-bit wrapping arithmetic kept on purpose: for
/// the few inputs where that arithmetic wraps (a value of i64::MIN), Redis
/// saturates the other way, and a user moving between the two must see the
/// same bits.
fn fit_signed(value: i64, incr: i64, bits: u32, overflow: Overflow) -> Result<i64, Option<i64>> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let up = value > max
        || (bits != 64 && incr > max_incr)
        || (value >= 0 && incr > 0 && incr > max_incr);
    let down = !up
        && (value < min
            || (bits != 64 && incr < min_incr)
            || (value < 0 && incr < 0 && incr < min_incr));
    if !up && !down {
        return Ok(value.wrapping_add(incr));
    }
    Err(match overflow {
        Overflow::Fail => None,
        Overflow::Sat => Some(if up { max } else { min }),
        Overflow::Wrap => {
            let mut c = (value as u64).wrapping_add(incr as u64);
            if bits < 64 {
                // Sign-extend from the field's top bit.
                let high = u64::MAX << bits;
                c = if c & (1 << (bits - 1)) != 0 {
                    c | high
                } else {
                    c & !high
                };
            }
            Some(c as i64)
        }
    })
}

/// [`fit_signed`] for an unsigned field (at most 63 bits).
fn fit_unsigned(value: u64, incr: i64, bits: u32, overflow: Overflow) -> Result<u64, Option<u64>> {
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let up = value > max || (incr > 0 && incr > max_incr);
    let down = !up && incr < 0 && incr < min_incr;
    if !up && !down {
        return Ok(value.wrapping_add(incr as u64));
    }
    Err(match overflow {
        Overflow::Fail => None,
        Overflow::Sat => Some(if up { max } else { 0 }),
        Overflow::Wrap => Some(value.wrapping_add(incr as u64) & max),
    })
}

/// Runs one field operation on `v`; its reply and whether it wrote.
fn run_field(v: &mut [u8], f: &Field) -> (Reply, bool) {
    let raw = read_field(v, f.offset, f.bits);
    let (new, reply) = if f.signed {
        let old = as_signed(raw, f.bits);
        let (fitted, reply_new) = match f.op {
            FieldOp::Get => return (Reply::Int(old), false),
            FieldOp::Set(n) => (fit_signed(n, 0, f.bits, f.overflow), false),
            FieldOp::Incr(n) => (fit_signed(old, n, f.bits, f.overflow), true),
        };
        match fitted {
            Ok(n) | Err(Some(n)) => (n as u64, if reply_new { n } else { old }),
            Err(None) => return (Reply::Nil, false),
        }
    } else {
        let (fitted, reply_new) = match f.op {
            FieldOp::Get => return (Reply::Int(raw as i64), false),
            // A negative value is set from its 64-bit pattern, a huge one.
            FieldOp::Set(n) => (fit_unsigned(n as u64, 0, f.bits, f.overflow), false),
            FieldOp::Incr(n) => (fit_unsigned(raw, n, f.bits, f.overflow), true),
        };
        match fitted {
            Ok(n) | Err(Some(n)) => (n, if reply_new { n as i64 } else { raw as i64 }),
            Err(None) => return (Reply::Nil, false),
        }
    };
    write_field(v, f.offset, f.bits, new);
    // Only a changed value counts as a write (Redis 7.0's dirty count).
    let mask = u64::MAX >> (64 - f.bits);
    (Reply::Int(reply), new & mask != raw)
}

pub fn bitfield(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let fields = parse_fields(a, ctx, false)?;
    let highest = fields
        .iter()
        .filter(|f| !matches!(f.op, FieldOp::Get))
        .map(|f| f.offset + f.bits as u64 - 1)
        .max();
    let Some(highest) = highest else {
        return read_fields(s, ctx, a[1], &fields);
    };
    with_string(s, ctx, a[1], |v| {
        // The string grows to the highest field written, even when every
        // write then fails its overflow check (as Redis).
        let mut wrote = grow_to_bit(v, highest);
        let replies = fields
            .iter()
            .map(|f| {
                let (r, w) = run_field(v, f);
                wrote |= w;
                r
            })
            .collect();
        Ok((Reply::Array(replies), wrote))
    })
}

pub fn bitfield_ro(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let fields = parse_fields(a, ctx, true)?;
    read_fields(s, ctx, a[1], &fields)
}

fn read_fields(s: &mut Shard, ctx: &Ctx, key: &[u8], fields: &[Field]) -> CmdResult {
    let v = get_string(s, ctx, key)?.unwrap_or(b"");
    Ok(Reply::Array(
        fields
            .iter()
            .map(|f| {
                let raw = read_field(v, f.offset, f.bits);
                Reply::Int(if f.signed {
                    as_signed(raw, f.bits)
                } else {
                    raw as i64
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_fit_like_redis() {
        assert_eq!(fit_unsigned(300, 0, 8, Overflow::Wrap), Err(Some(44)));
        assert_eq!(fit_unsigned(300, 0, 8, Overflow::Sat), Err(Some(255)));
        assert_eq!(fit_unsigned(0, -1, 8, Overflow::Sat), Err(Some(0)));
        assert_eq!(fit_unsigned(5, 3, 8, Overflow::Fail), Ok(8));
        assert_eq!(fit_signed(128, 0, 8, Overflow::Wrap), Err(Some(-128)));
        assert_eq!(fit_signed(-129, 0, 8, Overflow::Sat), Err(Some(-128)));
        assert_eq!(
            fit_signed(i64::MAX, 1, 64, Overflow::Wrap),
            Err(Some(i64::MIN))
        );
        assert_eq!(fit_signed(i64::MAX, 1, 64, Overflow::Fail), Err(None));
        assert_eq!(fit_signed(5, 0, 4, Overflow::Fail), Ok(5));
        // Redis's wrapping arithmetic: i64::MIN into i1 saturates up, to 0.
        assert_eq!(fit_signed(i64::MIN, 0, 1, Overflow::Sat), Err(Some(0)));
    }

    #[test]
    fn counts_respect_bit_edges() {
        let v = [0xffu8, 0x0f, 0xf0];
        assert_eq!(count_bits(&v, 0, 23), 16);
        assert_eq!(count_bits(&v, 4, 11), 4);
        assert_eq!(count_bits(&v, 12, 19), 8);
        assert_eq!(count_bits(&v, 13, 13), 1);
        assert_eq!(find_bit(&v, 8, 23, 1), Some(12));
        assert_eq!(find_bit(&v, 0, 7, 0), None);
        assert_eq!(find_bit(&v, 0, 23, 0), Some(8));
    }

    #[test]
    fn fields_read_and_write_across_bytes() {
        let mut v = vec![0u8; 3];
        write_field(&mut v, 5, 12, 0xabc);
        assert_eq!(read_field(&v, 5, 12), 0xabc);
        assert_eq!(as_signed(read_field(&v, 5, 4), 4), -6);
        assert_eq!(read_field(&v, 100, 8), 0);
    }
}
