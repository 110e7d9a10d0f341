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
}

/// An integer argument, or Redis's "not an integer" error.
pub fn int_arg(s: &[u8]) -> Result<i64, CmdError> {
    parse_i64(s).ok_or(CmdError::NotInteger)
}

/// A float argument with strtod's syntax (Redis's `getDoubleFromObject`):
/// no spaces, no NaN.
pub fn float_arg(s: &[u8]) -> Result<f64, CmdError> {
    let text = std::str::from_utf8(s).map_err(|_| CmdError::NotFloat)?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(CmdError::NotFloat);
    }
    let v: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        t => t.parse().map_err(|_| CmdError::NotFloat)?,
    };
    if v.is_nan() {
        return Err(CmdError::NotFloat);
    }
    Ok(v)
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
    }
}
