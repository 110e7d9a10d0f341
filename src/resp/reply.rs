//! What a command answers, independent of the protocol version; `resp::encode`
//! turns it into RESP2 or RESP3 bytes.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A simple string, e.g. `+PONG`.
    Status(Cow<'static, str>),
    /// A simple string of bytes that need not be UTF-8 (a script's
    /// `{ok=...}`), with no CR or LF.
    StatusBytes(Vec<u8>),
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
    /// Per-key results (XREAD, XREADGROUP): a map in RESP3, an array of
    /// `[key, value]` arrays in RESP2.
    KeyedArrays(Vec<(Reply, Reply)>),
    /// A double in RESP3, a bulk string in RESP2.
    Double(f64),
    /// A double given by its exact text (GEOPOS's coordinates, printed as
    /// Redis prints a long double): `,text` in RESP3, a bulk string in RESP2.
    DoubleText(Vec<u8>),
    /// A boolean in RESP3, an integer in RESP2.
    Bool(bool),
    /// Verbatim text (`=` with `txt`) in RESP3, a bulk string in RESP2.
    Verbatim(String),
    /// Out-of-band data (pub/sub messages): a push in RESP3, an array in RESP2.
    Push(Vec<Reply>),
}

thread_local! {
    /// Buffers of bulk replies already sent, for the next ones on this core:
    /// a GET's copy of its value costs no allocation once the core is warm.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare buffers kept per core, and the largest kept.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 16 * 1024;

impl Reply {
    /// A bulk reply holding a copy of `bytes`, in a recycled buffer when
    /// one fits.
    pub fn bulk_copy(bytes: &[u8]) -> Reply {
        let spare = if bytes.len() <= SPARE_CAPACITY {
            SPARE.with(|s| s.borrow_mut().pop())
        } else {
            None
        };
        let mut v = spare.unwrap_or_default();
        v.extend_from_slice(bytes);
        Reply::Bulk(v)
    }

    /// Done with this reply (it was encoded): its buffer, if a bulk one of
    /// modest size, serves a later [`Reply::bulk_copy`].
    pub fn recycle(self) {
        if let Reply::Bulk(mut v) = self {
            if v.capacity() > 0 && v.capacity() <= SPARE_CAPACITY {
                v.clear();
                SPARE.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < SPARE_BUFFERS {
                        s.push(v);
                    }
                });
            }
        }
    }

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
