//! Socket.IO room names, and the namespace they live in.

use socketioxide::{SocketIo, adapter::Adapter, operators::BroadcastOperators};

use crate::core::Vocabulary;

/// Operators on the namespace `/`, where every room is; `None` once the server has closed it at
/// shutdown, when there is no one left to send to. (`SocketIo::to` and `local` panic then.)
pub fn namespace<A: Adapter>(io: &SocketIo<A>) -> Option<BroadcastOperators<A>> {
    io.of("/")
}

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
