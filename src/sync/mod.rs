//! The sync engine: streams computed from the session timeline, and how late they run.

mod lag;
mod ticker;

pub use lag::LagStats;
pub use ticker::Ticker;
