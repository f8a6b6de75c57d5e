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
    /// The leader gave the lead to another member (`role:transfer`).
    Transferred,
}

impl LeadChange {
    /// The reason as the wire names it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadChange::LeaderDisconnected => "leader_disconnected",
            LeadChange::LeaderLeft => "leader_left",
            LeadChange::Joined => "joined",
            LeadChange::TakenOver => "taken_over",
            LeadChange::SteppedDown => "stepped_down",
            LeadChange::HandedOver => "request_approved",
            LeadChange::Granted => "no_leader",
            LeadChange::Transferred => "transfer",
        }
    }
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
    /// A member's connection dropped; its seat is held until `until`.
    Reconnecting {
        socket_id: String,
        until: Millis,
    },
    /// A member took its seat back from a new connection: `previous` was its socket; `member` is
    /// the seat as it now is (lead included). `was_held`: the seat was held for a dropped
    /// connection; otherwise that connection still counted as open (a client back, with its
    /// resume token, before the server saw it drop).
    Resumed {
        previous: String,
        member: Member,
        was_held: bool,
    },
    /// After an approved hand-over: tells the old leader, the new one and the other requesters.
    HandOverSettled {
        previous: String,
        new: String,
        denied: Vec<String>,
    },
    /// Playback starts at `start_time` (possibly a little ahead of now) from `position`.
    Started {
        position: f64,
        tempo: f64,
        start_time: Millis,
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
        ramp_ms: f64,
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
    /// A member's position report, checked against the timeline.
    PositionChecked {
        reported: f64,
        expected: f64,
        drift: f64,
        needs_correction: bool,
    },
    Chat {
        message: String,
        username: Option<String>,
        display_name: String,
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

impl Outcome {
    /// True for the start, stop and seek outcomes, which enhanced members hear of by their own
    /// events rather than a state sync.
    pub fn is_transport(&self) -> bool {
        matches!(self, Outcome::Started { .. } | Outcome::Paused { .. } | Outcome::Stopped | Outcome::Seeked { .. })
    }
}
