//! HyperLogLog values stored in plain strings, in the exact format of Redis 7.0.
//!
//! Redis keeps a HyperLogLog in an ordinary string value, so clients read it with
//! `GET`, copy it with `SET`, and tools move it between servers as bytes. keel
//! therefore produces the same bytes redis-server 7.0.15 produces for the same
//! commands, and the same estimates, so a value can travel between the two in
//! either direction. Everything here is a pure function over bytes; the command
//! layer looks keys up and maps [`HllError`] to the reply text.
//!
//! # Format
//! A 16-byte header: `"HYLL"`, the encoding (0 dense, 1 sparse), three unused
//! bytes (kept as found), and the cached cardinality as a little-endian `u64`
//! whose top bit marks the cache as stale. Then the 16384 registers:
//! - dense: 6 bits per register, packed from the low bit of each byte upwards
//!   (always 12288 bytes);
//! - sparse: run-length opcodes. `00llllll` is 1..=64 zero registers,
//!   `01llllll llllllll` is 1..=16384 zero registers, and `1vvvvvll` is 1..=4
//!   registers holding the value 1..=32 (each field stores its number minus one).
//!
//! # Commands
//! - `PFADD key e...`: a missing key starts as [`new`] and the reply is 1 even
//!   with no elements; otherwise the reply is 1 if any [`add`] returned `true`.
//!   [`add`] leaves the value untouched when it fails, and Redis keeps the
//!   elements applied before a failure, so store the value as it stands.
//! - `PFCOUNT key`: [`count`]. It rewrites the cached cardinality when the cache
//!   was stale ([`cached`] returned `None`), which makes this read a write that
//!   must be logged and replicated. Reply with the result cast to `i64`: Redis
//!   replies with a signed integer, and an overflowing estimate is `1 << 63`.
//! - `PFCOUNT k1 k2...`: [`count_union`] over the keys that exist; no cache.
//! - `PFMERGE dest src...`: [`merge`], with the existing sources.
//!
//! Redis checks each key's header before using it and reports `WRONGTYPE` for a
//! string that is not a HyperLogLog, and `INVALIDOBJ` for one whose sparse
//! registers do not add up; [`check`] tells the two apart without changing
//! anything. Keys are checked in command order, so the first bad key decides the
//! error, as in Redis.
//!
//! # Damaged values
//! A client can `SET` any bytes, so nothing here trusts the payload. The
//! behaviour on damaged values follows the installed Redis (Debian's 7.0.15,
//! which includes the fix for CVE-2025-32023): a sparse payload is valid only if
//! its runs cover exactly 16384 registers, with no run past the end. `PFADD`
//! only reads the opcodes up to the register it changes, so it can succeed on a
//! value that `PFCOUNT` then rejects. Redis reads a byte past the end of the
//! string as zero (its strings carry a terminating zero byte), which matters for
//! a value ending in the first byte of a two-byte zero-run opcode; that is
//! reproduced too.

use thiserror::Error;

const MAGIC: &[u8] = b"HYLL";
const HEADER_LEN: usize = 16;
/// Bits of the hash that pick the register.
const INDEX_BITS: u32 = 14;
const REGISTERS: usize = 1 << INDEX_BITS;
/// Hash bits left to count zeros in, so register values are 1..=Q+1.
const Q: usize = 64 - INDEX_BITS as usize;
const DENSE_LEN: usize = HEADER_LEN + REGISTERS * 6 / 8;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// Byte of the header holding the cache's stale flag in its top bit.
const STALE_BYTE: usize = 15;
const SPARSE_VALUE_MAX: u8 = 32;
const SPARSE_VALUE_RUN_MAX: usize = 4;
const SHORT_ZERO_RUN_MAX: usize = 64;
/// Seed of the element hash; any other seed would give other registers.
const SEED: u64 = 0xadc8_3b19;
/// 0.5 / ln 2, the estimator's bias constant for many registers.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

pub mod debug;

/// Redis's default `hll-sparse-max-bytes`: the size above which a sparse value
/// is converted to dense (the header counts towards it).
pub const DEFAULT_SPARSE_MAX_BYTES: usize = 3000;

/// Why a value cannot be used as a HyperLogLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HllError {
    /// Not a HyperLogLog: too short, wrong magic, unknown encoding, or a dense
    /// value of the wrong length.
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    Invalid,
    /// A HyperLogLog header over sparse registers that do not add up to 16384.
    #[error("INVALIDOBJ Corrupted HLL object detected")]
    Corrupt,
}

/// The value `PFADD` stores for a new key: sparse, all registers zero, with the
/// cache marked stale (Redis marks it on every change, creation included).
pub fn new() -> Vec<u8> {
    let mut v = header(SPARSE);
    push_zero_run(&mut v, REGISTERS);
    v
}

/// Whether `v` passes the header checks every HyperLogLog command makes first.
/// A value that passes can still be [`HllError::Corrupt`]; see [`check`].
pub fn is_valid(v: &[u8]) -> bool {
    v.len() >= HEADER_LEN
        && v.starts_with(MAGIC)
        && match v[4] {
            DENSE => v.len() == DENSE_LEN,
            SPARSE => true,
            _ => false,
        }
}

/// Checks `v` fully: [`HllError::Invalid`] if the header is wrong, and
/// [`HllError::Corrupt`] if the sparse registers do not add up, the cases in
/// which Redis answers `WRONGTYPE` and `INVALIDOBJ` respectively.
pub fn check(v: &[u8]) -> Result<(), HllError> {
    check_header(v)?;
    if v[4] == SPARSE {
        walk_sparse(&v[HEADER_LEN..], |_, _, _| {})?;
    }
    Ok(())
}

/// The cached cardinality, if `v` is a HyperLogLog whose cache is current.
pub fn cached(v: &[u8]) -> Option<u64> {
    if !is_valid(v) || v[STALE_BYTE] & 0x80 != 0 {
        return None;
    }
    let mut card = [0u8; 8];
    card.copy_from_slice(&v[8..HEADER_LEN]);
    Some(u64::from_le_bytes(card))
}

/// Adds one element (`PFADD`). Returns `true` if a register grew, in which case
/// the cache is marked stale. A sparse value turns dense when the element needs
/// a register above 32 or when the change would make it longer than
/// `sparse_max_bytes`. On error `v` is unchanged.
pub fn add(v: &mut Vec<u8>, element: &[u8], sparse_max_bytes: usize) -> Result<bool, HllError> {
    check_header(v)?;
    let (index, value) = hash_element(element);
    let changed = raise(v, index, value, sparse_max_bytes)?;
    if changed {
        mark_stale(v);
    }
    Ok(changed)
}

/// Estimates the cardinality of one value (`PFCOUNT key`). A current cache is
/// returned as is, without looking at the registers (as Redis does); otherwise
/// the estimate is computed and written into the header.
pub fn count(v: &mut [u8]) -> Result<u64, HllError> {
    check_header(v)?;
    if let Some(card) = cached(v) {
        return Ok(card);
    }
    let mut histogram = [0u32; 64];
    if v[4] == DENSE {
        for i in 0..REGISTERS {
            histogram[usize::from(get_register(&v[HEADER_LEN..], i))] += 1;
        }
    } else {
        walk_sparse(&v[HEADER_LEN..], |_, run, value| {
            histogram[usize::from(value)] += run as u32;
        })?;
    }
    let card = estimate(&histogram);
    v[8..HEADER_LEN].copy_from_slice(&card.to_le_bytes());
    Ok(card)
}

/// Estimates the cardinality of the union of several values (`PFCOUNT k1 k2...`,
/// given the keys that exist). Caches are neither read nor written.
pub fn count_union(values: &[&[u8]]) -> Result<u64, HllError> {
    let mut max = [0u8; REGISTERS];
    for v in values {
        fold_max(&mut max, v)?;
    }
    let mut histogram = [0u32; 64];
    for &r in &max {
        histogram[usize::from(r)] += 1;
    }
    Ok(estimate(&histogram))
}

/// `PFMERGE dest src...`: the new destination value, holding the register-wise
/// maximum of `dest` (when the key exists) and `values` (the sources that exist).
///
/// As in Redis 7.0, the result is not always dense: an existing destination
/// keeps its bytes and encoding and has the maximum written into it register by
/// register, exactly as `PFADD` would, so a sparse result only turns dense when
/// a source is dense or the usual `sparse_max_bytes` and value limits demand it.
/// The cache is always marked stale.
pub fn merge(
    values: &[&[u8]],
    dest: Option<&[u8]>,
    sparse_max_bytes: usize,
) -> Result<Vec<u8>, HllError> {
    let mut max = [0u8; REGISTERS];
    let mut any_dense = false;
    for v in dest.into_iter().chain(values.iter().copied()) {
        any_dense |= fold_max(&mut max, v)?;
    }
    let mut out = dest.map_or_else(new, <[u8]>::to_vec);
    if any_dense && out[4] == SPARSE {
        to_dense(&mut out)?;
    }
    for (index, &value) in max.iter().enumerate() {
        if value > 0 {
            // Redis carries on past a register it fails to write, which can
            // only happen after the first split truncated a destination ending
            // in half a zero-run opcode; carrying on keeps the bytes identical.
            let _ = raise(&mut out, index, value, sparse_max_bytes);
        }
    }
    mark_stale(&mut out);
    Ok(out)
}

/// Joins two copies of a HyperLogLog after a network partition: the register-wise
/// maximum, which is commutative, associative and idempotent.
///
/// The two copies may have reached the same registers by different routes, and
/// sparse bytes depend on the route, so the result is re-encoded from the
/// registers alone: the same registers always give the same bytes, whatever the
/// argument order. It is sparse (runs packed greedily from register 0) when
/// every register fits and the result is at most [`DEFAULT_SPARSE_MAX_BYTES`],
/// dense otherwise, with zeroed unused bytes and a stale cache.
pub fn merge_max(a: &[u8], b: &[u8]) -> Result<Vec<u8>, HllError> {
    let mut max = [0u8; REGISTERS];
    fold_max(&mut max, a)?;
    fold_max(&mut max, b)?;
    if max.iter().all(|&r| r <= SPARSE_VALUE_MAX) {
        let mut v = header(SPARSE);
        for run in max.chunk_by(|x, y| x == y) {
            match run[0] {
                0 => push_zero_run(&mut v, run.len()),
                value => {
                    for part in run.chunks(SPARSE_VALUE_RUN_MAX) {
                        v.push(value_op(value, part.len()));
                    }
                }
            }
        }
        if v.len() <= DEFAULT_SPARSE_MAX_BYTES {
            return Ok(v);
        }
    }
    let mut v = header(DENSE);
    v.resize(DENSE_LEN, 0);
    for (i, &r) in max.iter().enumerate() {
        set_register(&mut v[HEADER_LEN..], i, r);
    }
    Ok(v)
}

fn check_header(v: &[u8]) -> Result<(), HllError> {
    if is_valid(v) {
        Ok(())
    } else {
        Err(HllError::Invalid)
    }
}

/// A header with the given encoding, zeroed unused bytes and a stale cache.
fn header(encoding: u8) -> Vec<u8> {
    // Room for what follows: a dense value's registers, or a sparse value's
    // first few opcodes (it grows as registers fill).
    let room = if encoding == DENSE {
        DENSE_LEN
    } else {
        HEADER_LEN + 16
    };
    let mut v = Vec::with_capacity(room);
    v.extend_from_slice(MAGIC);
    v.push(encoding);
    v.extend_from_slice(&[0; 11]);
    mark_stale(&mut v);
    v
}

/// Marks the cached cardinality stale by setting one bit; the other cache bytes
/// keep their old value, which Redis leaves in place too.
fn mark_stale(v: &mut [u8]) {
    if let Some(b) = v.get_mut(STALE_BYTE) {
        *b |= 0x80;
    }
}

/// MurmurHash64A (64-bit MurmurHash2), reading blocks as little endian so the
/// result is the same on every machine, like Redis's copy of it.
fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let le = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
    };
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut k = le(block).wrapping_mul(M);
        k ^= k >> R;
        h = (h ^ k.wrapping_mul(M)).wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        h = (h ^ le(tail)).wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^ (h >> R)
}

/// The register an element lands in, and the value it offers that register: one
/// more than the number of zero bits above the index bits, counted from the low
/// end. A guard bit keeps the value at most Q + 1.
fn hash_element(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> INDEX_BITS) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Reads dense register `i`. The byte after the last one reads as zero, since a
/// register never spills into it.
fn get_register(regs: &[u8], i: usize) -> u8 {
    let (byte, shift) = (i * 6 / 8, i * 6 % 8);
    let lo = u16::from(regs.get(byte).copied().unwrap_or(0));
    let hi = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    ((lo | hi << 8) >> shift) as u8 & 63
}

fn set_register(regs: &mut [u8], i: usize, value: u8) {
    let (byte, shift) = (i * 6 / 8, i * 6 % 8);
    let mask = 63u16 << shift;
    let bits = u16::from(value & 63) << shift;
    if let Some(b) = regs.get_mut(byte) {
        *b = (*b & !(mask as u8)) | bits as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b = (*b & !((mask >> 8) as u8)) | (bits >> 8) as u8;
    }
}

/// One sparse opcode: a run of `run` registers holding `value` (0 for the
/// zero-run opcodes), and its length in bytes.
struct Op {
    run: usize,
    value: u8,
    len: usize,
}

/// Decodes the opcode at `pos`, or `None` past the end. The second byte of a
/// long zero run may lie past the end; it then reads as zero, like Redis's
/// string terminator.
fn op_at(v: &[u8], pos: usize) -> Option<Op> {
    let b = *v.get(pos)?;
    let low6 = usize::from(b & 0x3f);
    let (run, value, len) = match b >> 6 {
        0 => (low6 + 1, 0, 1),
        1 => {
            let next = usize::from(v.get(pos + 1).copied().unwrap_or(0));
            ((low6 << 8 | next) + 1, 0, 2)
        }
        _ => (usize::from(b & 3) + 1, (b >> 2 & 0x1f) + 1, 1),
    };
    Some(Op { run, value, len })
}

fn value_op(value: u8, run: usize) -> u8 {
    0x80 | (value - 1) << 2 | (run - 1) as u8
}

/// Appends one zero-run opcode for `run` (1..=16384) registers, using the short
/// form whenever it fits, as Redis does.
fn push_zero_run(v: &mut Vec<u8>, run: usize) {
    let n = run - 1;
    if run > SHORT_ZERO_RUN_MAX {
        v.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        v.push(n as u8);
    }
}

/// Calls `f(first, run, value)` for each run of a sparse payload, in order.
/// Fails unless the runs cover exactly the 16384 registers; no run that would
/// pass the end is reported.
fn walk_sparse(payload: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), HllError> {
    let (mut pos, mut first) = (0, 0);
    while let Some(op) = op_at(payload, pos) {
        if first + op.run > REGISTERS {
            return Err(HllError::Corrupt);
        }
        f(first, op.run, op.value);
        first += op.run;
        pos += op.len;
    }
    if first == REGISTERS {
        Ok(())
    } else {
        Err(HllError::Corrupt)
    }
}

/// Raises each register of `max` to the register of `v`; returns whether `v`
/// is dense.
fn fold_max(max: &mut [u8; REGISTERS], v: &[u8]) -> Result<bool, HllError> {
    check_header(v)?;
    if v[4] == DENSE {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(get_register(&v[HEADER_LEN..], i));
        }
        return Ok(true);
    }
    walk_sparse(&v[HEADER_LEN..], |first, run, value| {
        for m in max.iter_mut().skip(first).take(run) {
            *m = (*m).max(value);
        }
    })?;
    Ok(false)
}

/// Sets register `index` to `value` if that is larger; returns whether it was.
/// The header must already be valid. Does not touch the cache flag.
fn raise(
    v: &mut Vec<u8>,
    index: usize,
    value: u8,
    sparse_max_bytes: usize,
) -> Result<bool, HllError> {
    if v[4] == DENSE {
        return Ok(raise_dense(&mut v[HEADER_LEN..], index, value));
    }
    if value > SPARSE_VALUE_MAX {
        return promote_and_raise(v, index, value);
    }
    // Find the opcode covering `index`. Only the opcodes up to it are read, so a
    // damaged tail goes unnoticed here, as in Redis.
    let (mut pos, mut first, mut prev) = (HEADER_LEN, 0, None);
    let op = loop {
        let op = op_at(v, pos).ok_or(HllError::Corrupt)?;
        if index < first + op.run {
            break op;
        }
        prev = Some(pos);
        pos += op.len;
        first += op.run;
    };
    if op.value >= value {
        return Ok(false);
    }
    if op.run == 1 && op.len == 1 {
        // A one-register opcode becomes a value opcode in place.
        v[pos] = value_op(value, 1);
    } else {
        // Split the run around `index`: the registers before it, the new value,
        // the registers after it, each keeping the run's old value.
        let last = first + op.run - 1;
        let mut seq = Vec::with_capacity(5);
        let push_old = |seq: &mut Vec<u8>, run: usize| match op.value {
            0 => push_zero_run(seq, run),
            old => seq.push(value_op(old, run)),
        };
        if index > first {
            push_old(&mut seq, index - first);
        }
        seq.push(value_op(value, 1));
        if index < last {
            push_old(&mut seq, last - index);
        }
        let new_len = v.len() + seq.len() - op.len;
        if seq.len() > op.len && new_len > sparse_max_bytes {
            return promote_and_raise(v, index, value);
        }
        // A two-byte opcode whose second byte was past the end is replaced as if
        // it had both bytes, and the result cut to Redis's new length.
        let after = (pos + op.len).min(v.len());
        v.splice(pos..after, seq);
        v.truncate(new_len);
    }
    merge_value_ops(v, prev.unwrap_or(HEADER_LEN));
    Ok(true)
}

/// Joins neighbouring value opcodes with the same value whose runs fit in one
/// opcode, looking at five opcodes from `pos` (the one before the change), the
/// same window Redis looks at, so both leave identical bytes.
fn merge_value_ops(v: &mut Vec<u8>, mut pos: usize) {
    for _ in 0..5 {
        let Some(op) = op_at(v, pos) else { break };
        if op.value > 0 {
            if let Some(next) = op_at(v, pos + 1).filter(|n| n.value == op.value) {
                if op.run + next.run <= SPARSE_VALUE_RUN_MAX {
                    v[pos + 1] = value_op(op.value, op.run + next.run);
                    v.remove(pos);
                    continue;
                }
            }
        }
        pos += op.len;
    }
}

fn raise_dense(regs: &mut [u8], index: usize, value: u8) -> bool {
    if value <= get_register(regs, index) {
        return false;
    }
    set_register(regs, index, value);
    true
}

fn promote_and_raise(v: &mut Vec<u8>, index: usize, value: u8) -> Result<bool, HllError> {
    to_dense(v)?;
    Ok(raise_dense(&mut v[HEADER_LEN..], index, value))
}

/// Converts a sparse value to dense, keeping the rest of the header (unused
/// bytes and cache) as it is. On error `v` is unchanged.
fn to_dense(v: &mut Vec<u8>) -> Result<(), HllError> {
    let mut dense = vec![0u8; DENSE_LEN];
    dense[..HEADER_LEN].copy_from_slice(&v[..HEADER_LEN]);
    dense[4] = DENSE;
    let regs = &mut dense[HEADER_LEN..];
    walk_sparse(&v[HEADER_LEN..], |first, run, value| {
        for i in first..first + run {
            set_register(regs, i, value);
        }
    })?;
    *v = dense;
    Ok(())
}

/// Otmar Ertl's estimator ("New cardinality estimation algorithms for
/// HyperLogLog sketches", 2017) over the histogram of register values, with the
/// same operations in the same order as Redis so the rounding agrees. Values
/// above Q + 1 (only found in hand-made dense values) count for nothing.
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histogram[Q + 1])) / m);
    for &h in histogram[1..=Q].iter().rev() {
        z += f64::from(h);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    let e = (ALPHA_INF * m * m / z).round();
    // Redis rounds through a signed 64-bit integer; an estimate beyond its range
    // (or infinite, when every register is above Q) comes out as 1 << 63.
    if e < (1u64 << 63) as f64 {
        e as u64
    } else {
        1 << 63
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected bytes and counts come from redis-server 7.0.15 (Debian
    //! 7.0.15-1~deb12u10) running the same commands, with `hll-sparse-max-bytes`
    //! at its default of 3000 unless a test says otherwise.

    use super::*;

    const LIMIT: usize = DEFAULT_SPARSE_MAX_BYTES;

    fn unhex(s: &str) -> Vec<u8> {
        let digit = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
        (0..s.len()).step_by(2).map(digit).collect()
    }

    /// A sparse value with a stale cache and the given payload (hex).
    fn stale(payload: &str) -> Vec<u8> {
        unhex(&format!("48594c4c010000000000000000000080{payload}"))
    }

    /// `PFADD` of `elements` with the given limit; true if any changed.
    fn pfadd(v: &mut Vec<u8>, elements: &[&str], limit: usize) -> bool {
        let mut changed = false;
        for e in elements {
            changed |= add(v, e.as_bytes(), limit).unwrap();
        }
        changed
    }

    /// A new key after `PFADD` of `prefix0 .. prefix{n-1}`.
    fn build(prefix: &str, n: usize) -> Vec<u8> {
        let mut v = new();
        for i in 0..n {
            add(&mut v, format!("{prefix}{i}").as_bytes(), LIMIT).unwrap();
        }
        v
    }

    fn abc() -> Vec<u8> {
        let mut v = new();
        pfadd(&mut v, &["a", "b", "c"], LIMIT);
        v
    }

    /// All registers, read from a dense copy.
    fn registers(v: &[u8]) -> Vec<u8> {
        let mut dense = v.to_vec();
        if dense[4] == SPARSE {
            to_dense(&mut dense).unwrap();
        }
        (0..REGISTERS)
            .map(|i| get_register(&dense[HEADER_LEN..], i))
            .collect()
    }

    fn crc_len(v: &[u8]) -> (u32, usize) {
        (crc32fast::hash(v), v.len())
    }

    #[test]
    fn small_sparse_values_match_redis() {
        assert_eq!(new(), stale("7fff"));
        assert_eq!(check(&new()), Ok(()));
        let mut v = abc();
        assert_eq!(v, stale("60f38050b1844bfb80425a"));
        assert!(
            !pfadd(&mut v, &["a"], LIMIT),
            "a repeated element changes nothing"
        );
        assert!(!pfadd(&mut v, &["a", "b"], LIMIT));
        assert_eq!(
            (cached(&v), count(&mut v), cached(&v)),
            (None, Ok(3), Some(3))
        );
        assert_eq!(
            v,
            unhex("48594c4c01000000030000000000000060f38050b1844bfb80425a")
        );
        assert!(pfadd(&mut v, &["d"], LIMIT));
        // The stale flag goes on top of the old cached count.
        let want = "48594c4c0100000003000000000000805c7b8044768050b1844bfb80425a";
        assert_eq!(v, unhex(want));
        // Turning dense keeps the header, old cached count included.
        assert!(pfadd(&mut v, &["e"], 0));
        assert_eq!(v[..HEADER_LEN], unhex("48594c4c000000000300000000000080"));
        assert_eq!(crc_len(&v), (0x87e0_9b1f, DENSE_LEN));

        assert_eq!(crc_len(&build("e", 100)), (0x431d_c335, 285));
        let mut v = build("n10-", 10);
        let payload = "48028c44f4804b798041198047408044a58445b8844123840c804e4f804548";
        assert_eq!(v, stale(payload));
        assert_eq!(count(&mut v), Ok(10));
        assert_eq!(
            v,
            unhex(&format!("48594c4c010000000a00000000000000{payload}"))
        );
    }

    #[test]
    fn promotion_to_dense_matches_redis() {
        let (mut v, mut replies, mut model) = (new(), Vec::new(), vec![0u8; REGISTERS]);
        for i in 0..5000 {
            let e = format!("e{i}");
            replies.push(b'0' + u8::from(pfadd(&mut v, &[&e], LIMIT)));
            let (index, value) = hash_element(e.as_bytes());
            model[index] = model[index].max(value);
            match i + 1 {
                1683 => assert_eq!(crc_len(&v), (0x6f5e_a35f, 3000), "last sparse value"),
                1684 => assert_eq!(crc_len(&v), (0x2dce_bf9e, DENSE_LEN), "first dense"),
                n if n % 500 == 0 => assert_eq!(registers(&v), model, "after {n} adds"),
                _ => {}
            }
        }
        // The 5000 PFADD replies, as a string of 0s and 1s.
        assert_eq!(replies.iter().filter(|&&r| r == b'1').count(), 4506);
        assert_eq!(crc32fast::hash(&replies), 0x3ede_a439);
        assert_eq!(crc_len(&v), (0x156a_9cf7, DENSE_LEN));
        assert_eq!(registers(&v), model);
    }

    #[test]
    fn lower_sparse_limit_matches_redis() {
        let mut v = new();
        for i in 0..100 {
            assert!(pfadd(&mut v, &[&format!("e{i}")], 100));
        }
        assert_eq!(crc_len(&v), (0x5f95_6719, DENSE_LEN));
        let mut abcd = abc();
        pfadd(&mut abcd, &["d"], LIMIT);
        let merged = merge(&[&abcd, &build("e", 100)], None, 100).unwrap();
        assert_eq!(crc_len(&merged), (0x89e9_62d6, DENSE_LEN));

        // A value already over the limit (the setting was lowered) stays sparse
        // through changes that do not lengthen it: in-place updates, and splits
        // into as many bytes as before.
        let mut v = build("e", 100);
        assert!(pfadd(
            &mut v,
            &["x1716", "x1783", "x3063", "x4005", "x4489"],
            100
        ));
        assert_eq!(crc_len(&v), (0x1bb4_d723, 285));
        let n1000 = build("n1000-", 1000);
        for (e, want) in [
            ("x122", (0x6af1_98ab, 1904)),
            ("x1583", (0xfbdf_f862, 1905)),
            ("x12260", (0x08f7_c04d, 1905)),
            ("x0", (0x3058_12a8, DENSE_LEN)),
        ] {
            let mut v = n1000.clone();
            assert!(pfadd(&mut v, &[e], 1000));
            assert_eq!(crc_len(&v), want, "{e}");
        }
        let mut v = n1000;
        pfadd(&mut v, &["x122", "x1583", "x12260"], 1000);
        assert_eq!(crc_len(&v), (0xcc4e_b3fb, DENSE_LEN));
    }

    #[test]
    fn counts_match_redis() {
        let mut n1000 = build("n1000-", 1000);
        assert_eq!(crc_len(&n1000), (0x8c37_3967, 1905));
        assert_eq!(count(&mut n1000), Ok(1003));
        assert_eq!(crc_len(&n1000), (0x21f0_de26, 1905));
        let mut n100000 = build("n100000-", 100_000);
        assert_eq!(crc_len(&n100000), (0x8697_9b60, DENSE_LEN));
        assert_eq!(count(&mut n100000), Ok(100_430));
        assert_eq!(crc_len(&n100000), (0x3cf8_5a39, DENSE_LEN));
        assert_eq!(count(&mut n100000), Ok(100_430), "served from the cache");
        assert_eq!(crc_len(&n100000), (0x3cf8_5a39, DENSE_LEN));

        let (n10, e100) = (build("n10-", 10), build("e", 100));
        assert_eq!(count_union(&[&n10, &n1000]), Ok(1014));
        assert_eq!(count_union(&[&n10, &n1000, &n100000, &e100]), Ok(101_534));
        assert_eq!(count_union(&[&e100, &e100]), Ok(100));
        assert_eq!(count_union(&[]), Ok(0));
    }

    #[test]
    fn merges_match_redis() {
        let mut abcd = abc();
        count(&mut abcd).unwrap();
        pfadd(&mut abcd, &["d"], LIMIT);
        let e100 = build("e", 100);
        // Sparse sources give a sparse result in 7.0: no conversion to dense.
        let mut m = merge(&[&abcd, &e100], None, LIMIT).unwrap();
        assert_eq!((crc_len(&m), count(&mut m)), ((0xa33f_a6f0, 296), Ok(104)));
        // An existing destination keeps its own bytes (stale cache included).
        let m = merge(&[&e100], Some(&abcd), LIMIT).unwrap();
        assert_eq!(crc_len(&m), (0xd7cb_2cbb, 296));
        // One dense source makes the result dense.
        let mut m = merge(&[&e100, &build("n100000-", 100_000)], None, LIMIT).unwrap();
        assert_eq!(
            (crc_len(&m), count(&mut m)),
            ((0xdf33_2cb0, DENSE_LEN), Ok(100_496))
        );
        // Sparse sources whose union outgrows the limit turn dense mid-merge.
        let (u, v) = (build("u", 1000), build("v", 1000));
        assert_eq!(
            (crc_len(&u), crc_len(&v)),
            ((0x42f8_a1b8, 1885), (0xf1dc_6c2e, 1921))
        );
        let mut m = merge(&[&u, &v], None, LIMIT).unwrap();
        assert_eq!(
            (crc_len(&m), count(&mut m)),
            ((0x4076_14d1, DENSE_LEN), Ok(2002))
        );
        // No sources: a new key is the empty value; an existing one goes stale.
        assert_eq!(merge(&[], None, LIMIT), Ok(new()));
        let mut n1000 = build("n1000-", 1000);
        count(&mut n1000).unwrap();
        let m = merge(&[], Some(&n1000), LIMIT).unwrap();
        assert_eq!(crc_len(&m), (0x75a8_1492, 1905));
    }

    #[test]
    fn invalid_values_are_refused() {
        let dense = build("n10-", 10_000);
        assert_eq!(dense.len(), DENSE_LEN);
        let good = new();
        for bad in [
            b"hello".to_vec(),
            b"HYLLgarbage!garbage!garbage".to_vec(),
            b"HYLL\x01\0\0\0\0\0\0\0\0\0\0".to_vec(),
            dense[..DENSE_LEN - 1].to_vec(),
            [dense.as_slice(), b"\0"].concat(),
        ] {
            assert!(!is_valid(&bad));
            assert_eq!(check(&bad), Err(HllError::Invalid));
            let mut v = bad.clone();
            assert_eq!(add(&mut v, b"zz", LIMIT), Err(HllError::Invalid));
            assert_eq!(v, bad);
            assert_eq!(count(&mut v), Err(HllError::Invalid));
            assert_eq!(count_union(&[&good, &bad]), Err(HllError::Invalid));
            assert_eq!(merge(&[&bad], Some(&good), LIMIT), Err(HllError::Invalid));
            assert_eq!(merge(&[&good], Some(&bad), LIMIT), Err(HllError::Invalid));
            assert_eq!(merge_max(&good, &bad), Err(HllError::Invalid));
        }
    }

    #[test]
    fn corrupt_sparse_values_behave_like_redis() {
        // Header only; "garbage" (runs past 16384); 16384 zeros then one more
        // value; 16383 zeros then a run of two; 16384 zeros then one more zero.
        for payload in ["", "67617262616765", "7fff88", "7ffe89", "7fff00"] {
            let bad = stale(payload);
            assert!(is_valid(&bad));
            assert_eq!(check(&bad), Err(HllError::Corrupt), "{payload}");
            assert_eq!(count(&mut bad.clone()), Err(HllError::Corrupt));
            assert_eq!(count_union(&[&abc(), &bad]), Err(HllError::Corrupt));
            assert_eq!(merge(&[&bad], None, LIMIT), Err(HllError::Corrupt));
            assert_eq!(merge_max(&bad, &abc()), Err(HllError::Corrupt));
            // A forced conversion to dense fails and leaves the value alone.
            let mut v = bad.clone();
            assert_eq!(add(&mut v, b"zz", 0), Err(HllError::Corrupt));
            assert_eq!(v, bad);
        }
        // PFADD only reads up to the register it changes, so it can succeed.
        let mut v = stale("7fff88");
        assert!(pfadd(&mut v, &["zz", "a", "b"], LIMIT));
        assert_eq!(v, stale("4ad98066cb844bfb80425a88"));
        for header in [
            "48594c4c010000000000000000000080",
            "48594c4c010000000000000000000000",
        ] {
            let mut v = unhex(&format!("{header}67617262616765"));
            assert!(pfadd(&mut v, &["zz", "a", "b"], LIMIT));
            assert_eq!(v, stale("4ad9805c864a44844bfb805c1f616765"));
        }
        // A current cache is returned without looking at the registers.
        let mut v = unhex("48594c4c01000000000000000000000067617262616765");
        assert_eq!(count(&mut v), Ok(0));
    }

    #[test]
    fn value_ending_in_half_an_opcode_matches_redis() {
        // Zeros for 255 registers, then the first byte of a long zero run whose
        // missing second byte reads as 0: 16129 more zeros, 16384 in all.
        let lone = stale("40fe7f");
        assert_eq!(check(&lone), Ok(()));
        assert_eq!(count_union(&[&lone, &abc()]), Ok(3));
        let mut v = lone.clone();
        assert_eq!(count(&mut v), Ok(0));
        assert_eq!(v, unhex("48594c4c01000000000000000000000040fe7f"));
        // Splitting that run keeps Redis's length, one byte short of the split.
        for (e, want) in [
            ("a", "40fe70a7844e"),
            ("b", "40fe7ca48042"),
            ("c", "40fe5ff4805f"),
            ("e1", "40fe7d4d8441"),
            ("e2", "40fe7c578442"),
            ("e3", "40fe6c978452"),
        ] {
            let mut v = lone.clone();
            assert!(pfadd(&mut v, &[e], LIMIT));
            assert_eq!(v, stale(want), "{e}");
        }
        let mut v = lone.clone();
        assert!(pfadd(&mut v, &["a", "b", "c", "e1", "e2", "e3"], LIMIT));
        assert_eq!(v, stale("40fe5ff4804ca184440e844bae84404b8040a78441"));
        let mut v = lone;
        assert!(pfadd(&mut v, &["zz", "a", "b"], 0));
        assert_eq!((crc32fast::hash(&v), count(&mut v)), (0xb301_b434, Ok(3)));
    }

    #[test]
    fn hand_made_sparse_encoding_matches_redis() {
        // A valid value Redis never writes itself: a one-register long zero run
        // at 8436, where "c" lands. It is split like any long run (into one
        // byte), not overwritten in place like a one-register short run.
        for (e, want) in [
            ("a", "60f3400050b1844e57"),
            ("b", "60f340005cae80425a"),
            ("c", "60f3805f0a"),
        ] {
            let mut v = stale("60f340005f0a");
            assert!(pfadd(&mut v, &[e], LIMIT));
            assert_eq!(v, stale(want), "{e}");
        }
    }

    #[test]
    fn extreme_dense_registers_match_redis() {
        let dense_of = |value: u8, odd: Option<(usize, u8)>| {
            let mut v = header(DENSE);
            v.resize(DENSE_LEN, 0);
            for i in 0..REGISTERS {
                let r = odd.filter(|&(at, _)| at == i).map_or(value, |(_, r)| r);
                set_register(&mut v[HEADER_LEN..], i, r);
            }
            v
        };
        let mut ones = dense_of(63, None);
        assert!(ones[HEADER_LEN..].iter().all(|&b| b == 0xff));
        // Redis replies -9223372036854775808 and stores 1 << 63, whose top bit
        // reads as a stale cache, so the next count computes it again.
        assert_eq!(count(&mut ones), Ok(1 << 63));
        assert_eq!((crc32fast::hash(&ones), cached(&ones)), (0x2193_3183, None));
        assert_eq!(count_union(&[&ones, &new()]), Ok(1 << 63));
        assert_eq!(count(&mut dense_of(50, None)), Ok(1 << 63));
        assert_eq!(count(&mut dense_of(52, Some((7, 50)))), Ok(1 << 63));
    }

    #[test]
    fn merge_max_is_a_join() {
        let values = [
            new(),
            abc(),
            build("e", 100),
            build("u", 1000),
            build("v", 1000),
            build("n10-", 10_000),
        ];
        assert_eq!(merge_max(&new(), &new()), Ok(new()));
        for a in &values {
            for b in &values {
                let ab = merge_max(a, b).unwrap();
                assert_eq!(check(&ab), Ok(()));
                assert_eq!(merge_max(b, a).unwrap(), ab, "commutative");
                assert_eq!(merge_max(&ab, &ab).unwrap(), ab, "idempotent");
                assert_eq!(merge_max(&ab, b).unwrap(), ab, "absorbs its inputs");
                assert_eq!(count(&mut ab.clone()), count_union(&[a, b]));
                for c in &values[3..] {
                    let bc = merge_max(b, c).unwrap();
                    assert_eq!(merge_max(a, &bc), merge_max(&ab, c), "associative");
                }
            }
        }
        let (u, v) = (&values[3], &values[4]);
        let uv = merge_max(u, v).unwrap();
        assert_eq!(uv[4], DENSE, "too big for sparse");
        assert_eq!(
            registers(&uv),
            registers(&merge(&[u, v], None, LIMIT).unwrap())
        );
    }

    #[test]
    fn damaged_values_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let good = build("e", 100);
        let dense = build("n10-", 10_000);
        for round in 0..2000 {
            // Damage a valid value: overwrite bytes, cut it short, or extend it.
            let mut v = if round % 8 == 0 {
                dense.clone()
            } else {
                good.clone()
            };
            for _ in 0..1 + next() % 4 {
                let at = HEADER_LEN + next() % (v.len() - HEADER_LEN);
                v[at] = next() as u8;
            }
            match round % 3 {
                0 => v.truncate(HEADER_LEN + next() % (v.len() - HEADER_LEN)),
                1 => v.extend((0..next() % 4).map(|_| next() as u8)),
                _ => {}
            }
            let element = next().to_le_bytes();
            let _ = (check(&v), count_union(&[&v, &good]), merge_max(&v, &good));
            let _ = (
                merge(&[&good], Some(&v), 100),
                merge(&[&v], Some(&good), LIMIT),
            );
            for limit in [0, 300, LIMIT] {
                let mut w = v.clone();
                let _ = (add(&mut w, &element, limit), add(&mut w, b"a", limit));
                let _ = count(&mut w);
            }
        }
    }
}
