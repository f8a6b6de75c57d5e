//! The state of one session and its members.

use serde::{Deserialize, Serialize};

use super::{Millis, timeline::Timeline};

/// A member's part in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// The event vocabulary a member joined with; every change is rendered to it in that vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vocabulary {
    Legacy,
    Enhanced,
}

/// One connected socket seated in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub socket_id: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: Millis,
    /// Last `heartbeat` (or join) from this member.
    pub last_ping_at: Millis,
    pub vocabulary: Vocabulary,
}

/// Everything the server knows about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// Free text line shown to the band ("Alice is leading").
    pub message: String,
    pub timeline: Timeline,
    pub leader: Option<String>,
    /// In join order: the first is the earliest joined, next in line on re-election.
    pub members: Vec<Member>,
    pub created_at: Millis,
    pub last_active_at: Millis,
    pub max_members: usize,
    /// Members waiting for the leader to answer their request for the lead, oldest first.
    pub pending_leader_requests: Vec<String>,
}

impl Session {
    pub fn new(id: impl Into<String>, max_members: usize, now: Millis) -> Self {
        Self {
            id: id.into(),
            message: String::new(),
            timeline: Timeline::default(),
            leader: None,
            members: Vec::new(),
            created_at: now,
            last_active_at: now,
            max_members,
            pending_leader_requests: Vec::new(),
        }
    }

    pub fn member(&self, socket_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.socket_id == socket_id)
    }

    pub(crate) fn member_mut(&mut self, socket_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.socket_id == socket_id)
    }

    pub fn is_leader(&self, socket_id: &str) -> bool {
        self.leader.as_deref() == Some(socket_id)
    }

    pub fn is_full(&self) -> bool {
        self.members.len() >= self.max_members
    }

    /// Makes `socket_id` the leader and every other member a follower.
    pub(crate) fn set_leader(&mut self, socket_id: Option<&str>) {
        self.leader = socket_id.map(str::to_owned);
        for member in &mut self.members {
            member.role = if Some(member.socket_id.as_str()) == socket_id { Role::Leader } else { Role::Follower };
        }
        if let Some(id) = socket_id {
            self.pending_leader_requests.retain(|r| r != id);
        }
    }

    /// True when nobody is seated and the last activity is older than `idle_timeout`.
    pub fn is_idle(&self, now: Millis, idle_timeout: Millis) -> bool {
        self.members.is_empty() && now - self.last_active_at >= idle_timeout
    }
}

/// `"User " + last 4 characters of the socket id`, the name of a member who gave none.
pub fn default_display_name(socket_id: &str) -> String {
    let chars: Vec<char> = socket_id.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("User {tail}")
}
