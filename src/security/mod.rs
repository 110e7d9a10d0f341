//! Security: TLS configuration and the streams it wraps.

pub mod stream;
pub mod tls;
