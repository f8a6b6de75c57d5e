//! Socket.IO room names.

/// The room of a session's legacy members.
pub fn legacy(session_id: &str) -> String {
    format!("legacy:{session_id}")
}

/// The room holding just one socket, so it can be reached by id from any task.
pub fn socket(socket_id: &str) -> String {
    format!("socket:{socket_id}")
}
