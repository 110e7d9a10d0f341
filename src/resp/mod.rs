//! RESP, the Redis wire protocol: requests in, replies out ([`reply`]: the
//! reply value a command answers).

pub mod encode;
pub mod frame;
pub mod parse;
pub mod reply;

pub use encode::{encode, Protocol};
pub use parse::{parse, Limits, Parsed, ProtocolError, Source};
