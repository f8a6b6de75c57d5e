//! What a member asks of a session, independent of the event vocabulary it arrived in.
//!
//! Every field is already validated: protocol adapters parse payloads into these types, so the
//! core only decides whether the request is allowed in the session's current state.

use super::session::Vocabulary;

/// Which legacy tempo announcement the leader asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempoAnnouncement {
    /// `set_tempo`: the change shows in the next snapshot only.
    Silent,
    /// `tempo_change`.
    Change,
    /// `tempo_changed`, the real-time variant.
    Changed,
}

/// Why a member leaves its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveCause {
    /// `leave_session`, or joining another session.
    Left,
    /// The connection closed; the text says why (transport close, ping timeout, …).
    Disconnected(String),
}

/// A request to change a session, made by the socket `by`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub by: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Seats the sender, creating the session when missing.
    Join {
        display_name: String,
        wants_lead: bool,
        vocabulary: Vocabulary,
        /// Seats of a session this join creates.
        max_members: usize,
    },
    Leave(LeaveCause),
    /// Takes the lead at once (`wants_lead`) or steps down.
    SetRole {
        wants_lead: bool,
    },
    SetTempo {
        tempo: f64,
        announcement: TempoAnnouncement,
        fade_time: f64,
    },
    Play,
    Pause,
    Stop,
    Seek {
        position: f64,
    },
    BeatSync {
        beat_position: f64,
        master_time: f64,
    },
    PositionSync {
        position: f64,
        client_timestamp: f64,
    },
    UpdateMessage {
        message: String,
    },
    Chat {
        message: String,
        username: Option<String>,
    },
    /// A member's announcement of a role change; changes no role.
    RoleNotice {
        role: String,
        previous_role: String,
    },
    Heartbeat,
    RequestLead,
    ApproveLead {
        requester: String,
    },
    DenyLead {
        requester: String,
    },
}

impl Action {
    /// True for the controls only the leader may use.
    pub fn needs_lead(&self) -> bool {
        matches!(
            self,
            Action::SetTempo { .. }
                | Action::Play
                | Action::Pause
                | Action::Stop
                | Action::Seek { .. }
                | Action::BeatSync { .. }
                | Action::PositionSync { .. }
                | Action::ApproveLead { .. }
                | Action::DenyLead { .. }
        )
    }
}
