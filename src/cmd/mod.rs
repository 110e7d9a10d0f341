//! Command implementations, one file per family. Keyed commands run on the
//! shard that owns their keys and see only that [`Shard`]; connection and
//! server commands live in `server.rs` and `connection.rs`.

pub mod connection;
pub mod error;
pub mod expiry;
pub mod keys;
pub mod server;
pub mod strings;

use keel_shards::{Entry, Shard, Value};

use error::CmdError;

/// What a keyed command may know besides its shard and arguments.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The connection's selected database.
    pub db: usize,
    /// Wall-clock time in Unix milliseconds, read once per command.
    pub now_ms: u64,
    /// `proto-max-bulk-len`: the largest string a command may build.
    pub max_string: usize,
}

/// The string a key holds: `Ok(None)` when absent, WRONGTYPE when it holds
/// another type.
pub fn get_string<'a>(
    s: &'a mut Shard,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a [u8]>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms) {
        None => Ok(None),
        Some(Entry {
            value: Value::Str(v),
            ..
        }) => Ok(Some(v)),
        Some(_) => Err(CmdError::WrongType),
    }
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}
