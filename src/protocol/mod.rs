//! Event payloads in, rendered events out: the only code that knows event names and shapes.
//!
//! [`legacy`] parses the snake_case events existing clients send, [`enhanced`] the colon-style
//! ones; both become the same core commands. [`render`] turns the core's outcomes back into the
//! events of both vocabularies, each for its own room. Each rendered event is an [`Emission`]
//! with a [`Target`], which the gateway delivers.

pub mod enhanced;
pub mod enhanced_render;
pub mod legacy;
pub mod legacy_render;
pub mod payload;
pub mod validate;

use serde_json::Value;

use crate::core::{CoreError, Millis, Outcome, Session, Vocabulary};

/// The context outcomes are rendered in.
pub struct Scene<'a> {
    /// The session after the command.
    pub session: &'a Session,
    /// The socket whose command it was.
    pub by: &'a str,
    /// The vocabulary the sender sits in the session with (for replies meant for it alone).
    pub sender_vocabulary: Vocabulary,
    /// The time the command was applied at.
    pub now: Millis,
}

/// Every emission for `outcomes`: each change once per vocabulary, each to its own room.
pub fn render(outcomes: &[Outcome], scene: &Scene<'_>) -> Vec<Emission> {
    let mut emissions = legacy_render::render(outcomes, scene);
    emissions.extend(enhanced_render::render(outcomes, scene));
    emissions
}

/// Who an emission goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The socket whose event is being handled.
    Sender,
    /// Every member of the session who speaks this vocabulary.
    Room(Vocabulary),
    /// Every member of the session who speaks this vocabulary, but the sender (which gets an
    /// answer of its own).
    Others(Vocabulary),
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

/// An event, parsed by whichever vocabulary knows its name.
#[derive(Debug)]
pub enum Parsed {
    Legacy(Result<legacy::Request, CoreError>),
    Enhanced(Result<enhanced::Request, CoreError>),
    /// A name neither vocabulary knows.
    Unknown,
}

/// Parses `event` in the vocabulary that knows it.
pub fn parse(event: &str, payload: &Value, limits: Limits) -> Parsed {
    if let Some(parsed) = legacy::parse(event, payload, limits) {
        return Parsed::Legacy(parsed);
    }
    enhanced::parse(event, payload, limits).map_or(Parsed::Unknown, Parsed::Enhanced)
}

impl Parsed {
    /// True for a well-formed change to a session (`set_tempo`, `seek`, `tempo:change` …): the
    /// gateway may let a newer one take its place while it waits, where a malformed one must
    /// still be refused.
    pub fn is_session_change(&self) -> bool {
        matches!(
            self,
            Parsed::Legacy(Ok(legacy::Request::Session { .. }))
                | Parsed::Enhanced(Ok(enhanced::Request::Session { .. }))
        )
    }
}
