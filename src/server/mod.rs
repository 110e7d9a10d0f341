//! The server layer: a client connection's loop ([`conn`]) and what it
//! sends elsewhere on a cluster backup ([`front_door`]), what keel knows
//! about each client ([`client`]), INFO ([`info`]) and the state every
//! executor shares ([`state`]), client-side caching ([`tracking`]).

pub mod client;
pub mod commands;
pub mod config_table;
pub mod conn;
pub mod front_door;
pub mod info;
pub mod pipeline;
pub mod state;
pub mod tracking;
