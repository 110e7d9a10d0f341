//! RESP, the Redis wire protocol: requests in, replies out.

pub mod encode;
pub mod parse;

pub use encode::{encode, Protocol};
pub use parse::{parse, Limits, Parsed, ProtocolError, Source};
