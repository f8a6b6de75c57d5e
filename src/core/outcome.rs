//! What happened, in the order members must hear of it.
//!
//! The core returns outcomes; protocol adapters render each one into the events of every
//! vocabulary. Values that depend on time (positions, timestamps) are computed by the core at the
//! command's `now`, so every rendering carries the same numbers.

use super::{
    Millis,
    command::{LeaveCause, TempoAnnouncement},
    session::Member,
};

/// Why the lead moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadChange {
    /// The leader disconnected; the earliest-joined member took over.
    LeaderDisconnected,
    /// The leader left the session; the earliest-joined member took over.
    LeaderLeft,
    /// A member joined first, or joined asking to lead.
    Joined,
    /// A member took the lead with `set_role`.
    TakenOver,
    /// The leader stepped down; the session has no leader.
    SteppedDown,
    /// The leader approved a member's request.
    HandedOver,
    /// A member asked while nobody led, and got the lead at once.
    Granted,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The whole session state, to everyone seated.
    Snapshot,
    /// The whole session state, to the sender only (a join).
    SnapshotToSender,
    Joined {
        member: Member,
    },
    Left {
        socket_id: String,
        new_leader: Option<String>,
        cause: LeaveCause,
    },
    LeadChanged {
        previous: Option<String>,
        new: Option<String>,
        reason: LeadChange,
    },
    /// After an approved hand-over: tells the old leader, the new one and the other requesters.
    HandOverSettled {
        previous: String,
        new: String,
        denied: Vec<String>,
    },
    Started {
        position: f64,
        tempo: f64,
    },
    Paused {
        position: f64,
    },
    Stopped,
    Seeked {
        position: f64,
    },
    TempoAnnounced {
        old: f64,
        new: f64,
        fade_time: f64,
        announcement: TempoAnnouncement,
    },
    BeatSynced {
        beat_position: f64,
        master_time: f64,
        tempo: f64,
    },
    PositionSynced {
        position: f64,
        client_timestamp: f64,
    },
    Chat {
        message: String,
        username: String,
    },
    RoleNotice {
        role: String,
        previous_role: String,
    },
    /// The request went to the leader, who must answer it.
    LeadRequested {
        leader: String,
        requester: Member,
    },
    LeadDenied {
        requester: String,
    },
}

/// Outcomes of one command, and the time they were computed at.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcomes {
    pub at: Millis,
    pub list: Vec<Outcome>,
}
