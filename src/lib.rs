//! # bandsync-server
//!
//! A Socket.IO server that keeps a band in time: one member leads, everyone's metronome and song
//! position follow. It speaks the wire protocol of the existing BandSync clients unchanged.
//!
//! ## Layout
//!
//! - [`config`]: every setting, its environment name, default and bounds.
//! - [`core`]: the session rules, pure: `apply(session, command, now) -> outcomes`.
//! - [`protocol`]: event payloads in, rendered events out; the only code that knows event names.
//! - [`store`]: where sessions live (embedded in memory by default).
//! - [`gateway`]: the socket.io handlers; one ordered queue per socket.
//! - [`sync`]: the per-instance ticker that streams positions to playing sessions.
//! - [`http`]: health, liveness and readiness routes.
//! - [`server`]: wires it all together and serves until shut down.

pub mod clock;
pub mod config;
pub mod core;
pub mod gateway;
pub mod http;
pub mod protocol;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod sync;
