//! Event payloads in, rendered events out: the only code that knows event names and shapes.
//!
//! [`legacy`] parses the snake_case events existing clients send into [`legacy::Request`]s;
//! [`legacy_render`] turns core outcomes back into their events. Each rendered event is an
//! [`Emission`] with a [`Target`], which the gateway delivers.

pub mod legacy;
pub mod legacy_render;
pub mod payload;
pub mod validate;

use serde_json::Value;

/// Who an emission goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The socket whose event is being handled.
    Sender,
    /// Every member of the session who speaks this vocabulary.
    Room,
    /// One socket, by id.
    Socket(String),
}

/// One event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub target: Target,
    pub event: &'static str,
    pub data: Value,
}

impl Emission {
    pub fn new(target: Target, event: &'static str, data: Value) -> Self {
        Self { target, event, data }
    }
}

/// Length limits for strings in payloads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Session ids, display names, user names.
    pub max_name: usize,
    /// Session messages and chat lines.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_name: 64, max_message: 1000 }
    }
}
