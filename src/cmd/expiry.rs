//! Expiry arguments shared by SET, GETEX and the EXPIRE family: turning
//! `EX 10` or `PXAT 1700000000000` into an absolute Unix-millisecond time
//! with Redis's overflow checks.

use super::error::CmdError;
use crate::cmd::numbers::int_arg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// An absolute expiry from a relative or absolute argument. Non-positive or
/// overflowing times are `invalid expire time in '<cmd>' command`.
pub fn absolute_expiry(
    arg: &[u8],
    unit: Unit,
    relative: bool,
    now_ms: u64,
    cmd: &str,
) -> Result<u64, CmdError> {
    let n = int_arg(arg)?;
    let invalid = || CmdError::InvalidExpire(cmd.to_string());
    if n <= 0 {
        return Err(invalid());
    }
    let ms = match unit {
        Unit::Seconds => n.checked_mul(1000).ok_or_else(invalid)?,
        Unit::Millis => n,
    };
    let at = if relative {
        ms.checked_add(now_ms as i64).ok_or_else(invalid)?
    } else {
        ms
    };
    Ok(at as u64)
}
