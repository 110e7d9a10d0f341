//! Command errors. Inside keel they are typed; at the connection edge their
//! display text becomes the RESP error line, worded exactly as Redis words it
//! (clients and tests match on these strings).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CmdError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR unknown subcommand '{sub}'. Try {cmd} HELP.")]
    UnknownSubcommand { cmd: String, sub: String },
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("ERR DB index is out of range")]
    DbIndex,
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    #[error("ERR {0}")]
    Other(String),
    /// An error with its own prefix (e.g. `NOPROTO ...`).
    #[error("{0}")]
    Raw(String),
}

impl CmdError {
    pub fn other(msg: impl Into<String>) -> Self {
        CmdError::Other(msg.into())
    }
}

/// The error for a command name nobody knows, quoting its first arguments
/// byte for byte as Redis does (they need not be UTF-8).
pub fn unknown_command(args: &[&[u8]]) -> Vec<u8> {
    let cut = |b: &[u8]| b[..b.len().min(128)].to_vec();
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend(args.first().map(|a| cut(a)).unwrap_or_default());
    msg.extend_from_slice(b"', with args beginning with: ");
    for a in args.iter().skip(1).take(50) {
        msg.push(b'\'');
        msg.extend(cut(a));
        msg.extend_from_slice(b"' ");
    }
    msg
}

pub type CmdResult = Result<crate::resp::reply::Reply, CmdError>;
