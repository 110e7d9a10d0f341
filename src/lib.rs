//! keel: a Redis-compatible, highly available key-value server.
//!
//! # Layout
//! - [`control`]: the HA control plane as pure state machines (failure detection,
//!   election, safety check, split brain) and its seeded simulator.

pub mod control;

pub fn placeholder() {}
