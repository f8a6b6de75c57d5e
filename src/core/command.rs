//! What a member asks of a session, independent of the event vocabulary it arrived in.
//!
//! Every field is already validated: protocol adapters parse payloads into these types, so the
//! core only decides whether the request is allowed in the session's current state.

use super::{
    Millis,
    passcode::Passcode,
    session::{Role, TimeSignature, Vocabulary},
};

/// Which tempo announcement legacy members get besides the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempoAnnouncement {
    /// `set_tempo`: the change shows in the snapshot only.
    Silent,
    /// `tempo_change`.
    Change,
    /// `tempo_changed`, the real-time variant; also what an enhanced `tempo:change` shows as.
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

/// Who is joining: the member record to seat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Joiner {
    /// The name to show; without one, `"User " + last 4 characters of the socket id`.
    pub display_name: Option<String>,
    pub vocabulary: Vocabulary,
    pub user_id: Option<String>,
    pub instrument: Option<String>,
    pub preferred_role: Option<Role>,
    /// The server instance holding the joiner's connection.
    pub instance: Option<String>,
    /// The passcode offered: required by a locked session, and locks a session the join creates.
    pub passcode: Option<Passcode>,
    /// Digest of the resume token this join hands the joiner (enhanced joins), kept with its seat.
    pub resume_digest: Option<String>,
    /// Digest of a resume token the joiner gives: the join takes that seat back.
    pub resume_claim: Option<String>,
}

/// The settings of a session a join creates.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSetup {
    pub max_members: usize,
    pub band_id: Option<String>,
    pub session_name: Option<String>,
    pub tempo: Option<f64>,
    pub time_signature: Option<TimeSignature>,
}

impl SessionSetup {
    pub fn with_max_members(max_members: usize) -> Self {
        Self { max_members, band_id: None, session_name: None, tempo: None, time_signature: None }
    }
}

/// Whether a join may, must or must not create the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Creation {
    /// Legacy `join_session`, or `session:join {create: true}`.
    IfMissing(SessionSetup),
    /// `session:join`: a missing session is `SESSION_NOT_FOUND`.
    MustExist,
    /// `session:create`, under a fresh id.
    New(SessionSetup),
    /// The instance holds `MAX_SESSIONS` sessions: an existing session may be joined, none created.
    AtCapacity { max_sessions: usize },
}

/// A request to change a session, made by the socket `by`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub by: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Seats the sender.
    Join {
        /// Boxed: the joiner's profile is most of a join, and joins are rare next to other actions.
        joiner: Box<Joiner>,
        wants_lead: bool,
        creation: Creation,
    },
    Leave(LeaveCause),
    /// The member's connection dropped (not a leave): its seat and lead are held until `until`,
    /// for it to take back by joining again (see `core::resume`).
    Suspend {
        until: Millis,
    },
    /// Takes the lead at once (`wants_lead`) or steps down.
    SetRole {
        wants_lead: bool,
    },
    /// Sets the tempo, moving to it linearly over `ramp_ms` while playing.
    SetTempo {
        tempo: f64,
        announcement: TempoAnnouncement,
        ramp_ms: f64,
    },
    /// Starts playing `lead_ms` from now, optionally at a new tempo and time signature.
    Start {
        tempo: Option<f64>,
        time_signature: Option<TimeSignature>,
        lead_ms: i64,
    },
    /// Stops playing: holds the position (pause) or rewinds to 0 (`reset`).
    Stop {
        reset: bool,
    },
    Seek {
        position: f64,
    },
    BeatSync {
        beat_position: f64,
        master_time: f64,
    },
    /// The leader sets the position (legacy `position_sync`).
    PositionSync {
        position: f64,
        client_timestamp: f64,
    },
    /// A member reports where it is; it is corrected when off by more than `threshold_ms`.
    PositionReport {
        position: f64,
        client_time: f64,
        threshold_ms: f64,
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
    /// The leader hands the lead to another member directly.
    Transfer {
        to: String,
    },
    /// The server unseats members whose connection went with their server instance.
    Evict {
        sockets: Vec<String>,
        reason: String,
    },
}

impl Action {
    /// True for the controls only the leader may use.
    pub fn needs_lead(&self) -> bool {
        matches!(
            self,
            Action::SetTempo { .. }
                | Action::Start { .. }
                | Action::Stop { .. }
                | Action::Seek { .. }
                | Action::BeatSync { .. }
                | Action::PositionSync { .. }
                | Action::ApproveLead { .. }
                | Action::DenyLead { .. }
                | Action::Transfer { .. }
        )
    }
}
