//! Socket.IO room names.

use crate::core::Vocabulary;

/// The room of a session's members who speak `vocabulary`.
pub fn session(session_id: &str, vocabulary: Vocabulary) -> String {
    match vocabulary {
        Vocabulary::Legacy => format!("legacy:{session_id}"),
        Vocabulary::Enhanced => format!("enhanced:{session_id}"),
    }
}

/// Subscribers of the `metrics:update` feed.
pub const METRICS: &str = "metrics";

/// The room holding just one socket, so it can be reached by id from any task.
pub fn socket(socket_id: &str) -> String {
    format!("socket:{socket_id}")
}
