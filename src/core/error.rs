//! Why a request was refused. A refused request changes nothing.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    #[error("{0}")]
    Validation(String),
    #[error("Session not found")]
    SessionNotFound,
    #[error("Session at capacity ({max} members)")]
    SessionFull { max: usize },
    #[error("Not a member of this session")]
    NotAMember,
    #[error("Only the leader can do this")]
    NotLeader,
    /// Over a rate limit; the text names what there was too much of (`chat`, `queued` …).
    #[error("Too many {0} events; slow down")]
    RateLimited(&'static str),
    /// A locked session, and no passcode or a wrong one.
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("The server is at its limit of {max} sessions")]
    TooManySessions { max: usize },
    /// `LEGACY_EVENTS=off`: the text names the enhanced event to use instead.
    #[error("Legacy events are turned off on this server: use {0} instead")]
    LegacyDisabled(&'static str),
    #[error("Internal error")]
    Internal,
}

impl CoreError {
    /// The wire code of section 6 of the protocol.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Validation(_) => "VALIDATION",
            CoreError::SessionNotFound => "SESSION_NOT_FOUND",
            CoreError::SessionFull { .. } => "SESSION_FULL",
            CoreError::NotAMember => "NOT_A_MEMBER",
            CoreError::NotLeader => "NOT_LEADER",
            CoreError::RateLimited(_) => "RATE_LIMITED",
            CoreError::Unauthorized(_) => "UNAUTHORIZED",
            CoreError::TooManySessions { .. } => "SERVER_FULL",
            CoreError::LegacyDisabled(_) => "LEGACY_DISABLED",
            CoreError::Internal => "INTERNAL",
        }
    }
}
