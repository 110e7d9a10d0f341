//! Security: ACL users ([`acl`]), TLS configuration ([`tls`]) and the
//! streams TLS wraps ([`stream`]).

pub mod acl;
pub mod stream;
pub mod tls;
