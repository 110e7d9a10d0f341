//! Number parsing and formatting with Redis's exact rules.

use crate::cmd::error::CmdError;

pub use crate::resp::parse::parse_i64;

extern "C" {
    fn keel_ld_add(
        a: *const u8,
        alen: usize,
        b: *const u8,
        blen: usize,
        out: *mut u8,
        cap: usize,
    ) -> i32;
    fn keel_ld_check(a: *const u8, alen: usize) -> i32;
    fn keel_strtod(s: *const u8, len: usize, out: *mut f64, erange: *mut i32) -> std::ffi::c_long;
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The result of C's `strtod` on an argument (read as a C string, so it
/// stops at the first NUL byte).
pub struct Strtod {
    pub value: f64,
    /// Bytes consumed from the start of the argument.
    pub consumed: usize,
    /// Whether `errno` was `ERANGE` (overflow or underflow).
    pub erange: bool,
}

/// Runs C's `strtod` on `s`.
pub fn strtod(s: &[u8]) -> Strtod {
    let mut value = 0.0f64;
    let mut erange = 0i32;
    // SAFETY: `s` is valid for `s.len()` bytes; the helper copies it into a
    // NUL-terminated buffer of its own and writes only through the two
    // out-pointers, which point at live locals.
    let n = unsafe { keel_strtod(s.as_ptr(), s.len(), &mut value, &mut erange) };
    Strtod {
        value,
        consumed: usize::try_from(n).unwrap_or(0),
        erange: erange != 0,
    }
}

/// A double with Redis's `getDoubleFromObject` rules: strtod syntax (hex
/// floats, `inf`, `infinity`), no leading space, no trailing bytes, no
/// overflow or underflow to zero, no NaN. `-0` stays `-0`.
pub fn parse_double(s: &[u8]) -> Option<f64> {
    if s.is_empty() || c_isspace(s[0]) {
        return None;
    }
    let r = strtod(s);
    if r.consumed != s.len()
        || (r.erange && (r.value.is_infinite() || r.value == 0.0))
        || r.value.is_nan()
    {
        return None;
    }
    Some(r.value)
}

/// A score-range bound's number as Redis's `zslParseRange` reads it: strtod
/// up to the first NUL, which must be the whole of it; leading spaces, an
/// empty string (0) and out-of-range values are accepted, NaN is not.
pub fn parse_range_double(s: &[u8]) -> Option<f64> {
    let c_len = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    let r = strtod(s);
    if r.consumed != c_len || r.value.is_nan() {
        return None;
    }
    Some(r.value)
}

/// An integer argument, or Redis's "not an integer" error.
pub fn int_arg(s: &[u8]) -> Result<i64, CmdError> {
    parse_i64(s).ok_or(CmdError::NotInteger)
}

/// A float argument with strtod's syntax (Redis's `getDoubleFromObject`):
/// no spaces, no NaN.
pub fn float_arg(s: &[u8]) -> Result<f64, CmdError> {
    parse_double(s).ok_or(CmdError::NotFloat)
}

/// An increment for HINCRBYFLOAT, read as a `long double` the way Redis
/// reads it: "not a valid float", or "value is NaN or Infinity".
pub fn ld_incr_arg(s: &[u8]) -> Result<(), CmdError> {
    // SAFETY: `s` is valid for `s.len()` bytes and the helper only reads it.
    match unsafe { keel_ld_check(s.as_ptr(), s.len()) } {
        0 => Ok(()),
        -3 => Err(CmdError::other("value is NaN or Infinity")),
        _ => Err(CmdError::NotFloat),
    }
}

/// `current + incr` computed and formatted exactly as Redis's INCRBYFLOAT.
pub fn incr_by_float(current: &[u8], incr: &[u8]) -> Result<Vec<u8>, CmdError> {
    let mut out = vec![0u8; 5 * 1024 + 64];
    // SAFETY: both inputs are valid slices for their lengths, and `out` is a
    // writable buffer of `out.len()` bytes that the helper never overruns
    // (it formats with snprintf bounded by `cap`).
    let n = unsafe {
        keel_ld_add(
            current.as_ptr(),
            current.len(),
            incr.as_ptr(),
            incr.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    match n {
        -1 | -2 => Err(CmdError::NotFloat),
        -3 => Err(CmdError::NanOrInfinity),
        n if n < 0 => Err(CmdError::NotFloat),
        n => {
            out.truncate(n as usize);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incrbyfloat_matches_redis_text() {
        let f = |a: &str, b: &str| {
            String::from_utf8(incr_by_float(a.as_bytes(), b.as_bytes()).unwrap()).unwrap()
        };
        assert_eq!(f("10.50", "0.1"), "10.6");
        assert_eq!(f("0.1", "0.2"), "0.3");
        assert_eq!(f("5.0e3", "2.0e2"), "5200");
        assert_eq!(f("3", "-3"), "0");
        assert!(incr_by_float(b" 1", b"1").is_err());
        assert!(incr_by_float(b"1", b"nan").is_err());
        assert_eq!(incr_by_float(b"1", b"inf"), Err(CmdError::NanOrInfinity));
        assert_eq!(f("1", "0x10"), "17");
    }

    #[test]
    fn doubles_follow_strtod() {
        assert_eq!(parse_double(b"0x10"), Some(16.0));
        assert_eq!(parse_double(b"-INFINITY"), Some(f64::NEG_INFINITY));
        assert!(parse_double(b"-0").is_some_and(|v| v == 0.0 && v.is_sign_negative()));
        assert_eq!(parse_double(b" 1"), None);
        assert_eq!(parse_double(b"nan"), None);
        assert_eq!(parse_double(b"1e400"), None);
        assert_eq!(parse_double(b"1e-400"), None);
        assert_eq!(parse_double(b"1\x002"), None);
        assert_eq!(parse_double(b""), None);
        assert_eq!(parse_range_double(b""), Some(0.0));
        assert_eq!(parse_range_double(b" 5"), Some(5.0));
        assert_eq!(parse_range_double(b"1e999"), Some(f64::INFINITY));
        assert_eq!(parse_range_double(b"nan"), None);
        assert_eq!(parse_range_double(b"5x"), None);
        assert_eq!(
            ld_incr_arg(b"+inf"),
            Err(CmdError::other("value is NaN or Infinity"))
        );
        assert_eq!(ld_incr_arg(b"0x10"), Ok(()));
        assert_eq!(ld_incr_arg(b"x"), Err(CmdError::NotFloat));
    }
}
