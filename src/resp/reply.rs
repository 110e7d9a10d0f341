//! What a command answers, independent of the protocol version; `resp::encode`
//! turns it into RESP2 or RESP3 bytes.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A simple string, e.g. `+PONG`.
    Status(Cow<'static, str>),
    /// An error line without the leading '-', e.g. `ERR syntax error`.
    Error(Cow<'static, str>),
    /// An error that quotes client bytes verbatim, as Redis does for unknown
    /// commands and protocol errors (they need not be UTF-8).
    ErrorBytes(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// A missing aggregate: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    Array(Vec<Reply>),
    /// Key-value pairs: a map in RESP3, a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// Pairs (ZRANGE WITHSCORES, HRANDFIELD WITHVALUES): an array of
    /// two-element arrays in RESP3, one flat array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
    /// A set in RESP3, an array in RESP2.
    Set(Vec<Reply>),
    /// A double in RESP3, a bulk string in RESP2.
    Double(f64),
    /// A boolean in RESP3, an integer in RESP2.
    Bool(bool),
    /// Verbatim text (`=` with `txt`) in RESP3, a bulk string in RESP2.
    Verbatim(String),
    /// Out-of-band data (pub/sub messages): a push in RESP3, an array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    pub fn status(s: &'static str) -> Reply {
        Reply::Status(Cow::Borrowed(s))
    }

    pub fn bulk(b: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_) | Reply::ErrorBytes(_))
    }

    pub fn bulks<I, B>(items: I) -> Reply
    where
        I: IntoIterator<Item = B>,
        B: Into<Vec<u8>>,
    {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.into())).collect())
    }
}
