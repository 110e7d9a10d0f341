//! The server layer: a client connection's loop ([`conn`]) and what it
//! sends elsewhere on a cluster backup ([`front_door`]), what keel knows
//! about each client ([`client`]), INFO ([`info`]), the operators' tools
//! (slow log, latency monitor, MONITOR, CLIENT KILL/PAUSE: [`introspect`]),
//! client-side caching ([`tracking`]) and the state every executor shares
//! ([`state`]).

pub mod client;
pub mod commands;
pub mod config_rewrite;
pub mod config_table;
pub mod conn;
pub mod front_door;
pub mod histogram;
pub mod info;
pub mod introspect;
pub mod pipeline;
pub mod rates;
pub mod state;
pub mod tracking;
