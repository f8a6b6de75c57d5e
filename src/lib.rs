//! # bandsync-server
//!
//! A Socket.IO server that keeps a band in time: one member leads, everyone's metronome and song
//! position follow. It speaks the wire protocol of the existing BandSync clients unchanged.
//!
//! ## Layout
//!
//! - [`config`]: every setting, its environment name, default and bounds.
//! - [`core`]: the session rules, pure: `apply(session, command, now) -> outcomes`.
//! - [`protocol`]: event payloads in, rendered events out, for the legacy and enhanced
//!   vocabularies; the only code that knows event names.
//! - [`store`]: where sessions live (embedded in memory by default).
//! - [`delivery`]: which members on this instance hear each change, in the session's revision
//!   order and once each, wherever the change was made.
//! - [`gateway`]: the socket.io handlers; one ordered queue per socket, its rate limits, and who
//!   may connect.
//! - [`sync`]: the sync engine, one scheduler per instance streaming positions and beats.
//! - [`tasks`]: periodic chores: the idle-session sweep and the metrics feed.
//! - [`clock`]: the one clock every timestamp comes from.
//! - [`telemetry`]: the Prometheus metrics, by name.
//! - [`http`]: health, liveness and readiness routes; the accept loop with its timeouts, CORS and
//!   security headers.
//! - [`server`]: wires it all together and serves until shut down.

pub mod clock;
pub mod config;
pub mod core;
pub mod delivery;
pub mod gateway;
pub mod http;
pub mod protocol;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod sync;
pub mod tasks;
pub mod telemetry;
