//! Streams computed from the session timeline: the per-instance ticker.

mod ticker;

pub use ticker::Ticker;
