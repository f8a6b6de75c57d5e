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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vocabulary {
    #[default]
    Legacy,
    Enhanced,
}

impl Vocabulary {
    /// The name member records and metrics give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Vocabulary::Legacy => "legacy",
            Vocabulary::Enhanced => "enhanced",
        }
    }
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
    /// The enhanced protocol's own account id, when the client gives one.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub instrument: Option<String>,
    #[serde(default)]
    pub preferred_role: Option<Role>,
    /// The server instance holding this member's connection, so the others can unseat it if that
    /// instance dies.
    #[serde(default)]
    pub instance: Option<String>,
    /// Set while the member's connection is gone and its seat, lead included, is held for it to
    /// come back: until when (`RESUME_GRACE_MS` after the drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnecting_until: Option<Millis>,
    /// Digest of the member's resume token (enhanced members): a join that gives the token takes
    /// this seat back. Never rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_digest: Option<String>,
}

impl Member {
    /// True while the member's connection is gone and its seat is held for it.
    pub fn is_reconnecting(&self) -> bool {
        self.reconnecting_until.is_some()
    }
}

/// Beats per bar over the note value that gets the beat, written `"4/4"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TimeSignature {
    pub beats_per_bar: u8,
    pub note_value: u8,
}

impl Default for TimeSignature {
    fn default() -> Self {
        Self { beats_per_bar: 4, note_value: 4 }
    }
}

impl std::fmt::Display for TimeSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.beats_per_bar, self.note_value)
    }
}

impl std::str::FromStr for TimeSignature {
    type Err = String;

    /// `"3/4"`, `"7/8"`: 1–32 beats per bar over a note value of 1, 2, 4, 8, 16 or 32.
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("timeSignature must look like \"4/4\", not \"{text}\"");
        let (beats, note) = text.trim().split_once('/').ok_or_else(invalid)?;
        let beats_per_bar: u8 = beats.trim().parse().map_err(|_| invalid())?;
        let note_value: u8 = note.trim().parse().map_err(|_| invalid())?;
        if !(1..=32).contains(&beats_per_bar) || ![1, 2, 4, 8, 16, 32].contains(&note_value) {
            return Err(invalid());
        }
        Ok(Self { beats_per_bar, note_value })
    }
}

impl From<TimeSignature> for String {
    fn from(signature: TimeSignature) -> Self {
        signature.to_string()
    }
}

impl TryFrom<String> for TimeSignature {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// Everything the server knows about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// Free text line shown to the band ("Alice is leading").
    pub message: String,
    /// True when a member wrote the message (`update_message`), false when the server did; a band
    /// returning to its session keeps a message it wrote.
    #[serde(default)]
    pub message_by_band: bool,
    pub timeline: Timeline,
    pub leader: Option<String>,
    /// In join order: the first is the earliest joined, next in line on re-election.
    pub members: Vec<Member>,
    pub created_at: Millis,
    pub last_active_at: Millis,
    pub max_members: usize,
    /// Members waiting for the leader to answer their request for the lead, oldest first.
    pub pending_leader_requests: Vec<String>,
    /// The band this session belongs to, for discovery (`band:session_list`).
    #[serde(default)]
    pub band_id: Option<String>,
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub time_signature: TimeSignature,
    /// The socket that created the session with `session:create`.
    #[serde(default)]
    pub creator_id: Option<String>,
    /// Digest of the passcode joiners must give; `None` for an open session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode_digest: Option<String>,
}

impl Session {
    pub fn new(id: impl Into<String>, max_members: usize, now: Millis) -> Self {
        Self {
            id: id.into(),
            message: String::new(),
            message_by_band: false,
            timeline: Timeline::default(),
            leader: None,
            members: Vec::new(),
            created_at: now,
            last_active_at: now,
            max_members,
            pending_leader_requests: Vec::new(),
            band_id: None,
            session_name: None,
            time_signature: TimeSignature::default(),
            creator_id: None,
            passcode_digest: None,
        }
    }

    /// The server's own message line ("Alice is leading").
    pub(crate) fn announce(&mut self, message: String) {
        self.message = message;
        self.message_by_band = false;
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

    /// Whether some member speaks `vocabulary`.
    pub fn seats(&self, vocabulary: Vocabulary) -> bool {
        self.members.iter().any(|m| m.vocabulary == vocabulary)
    }

    /// Whether members of both vocabularies sit in the session.
    pub fn is_mixed(&self) -> bool {
        self.seats(Vocabulary::Legacy) && self.seats(Vocabulary::Enhanced)
    }

    /// True when every seat is taken; a seat held for a member who is reconnecting is taken.
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.max_members
    }

    /// Members with a connection now: those not reconnecting.
    pub fn connected_count(&self) -> usize {
        self.members.iter().filter(|m| !m.is_reconnecting()).count()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_signatures_parse_and_print() {
        let three_four: TimeSignature = "3/4".parse().unwrap();
        assert_eq!(three_four.beats_per_bar, 3);
        assert_eq!(three_four.to_string(), "3/4");
        for bad in ["4", "0/4", "4/3", "x/4", "33/4", ""] {
            assert!(bad.parse::<TimeSignature>().is_err(), "{bad}");
        }
    }

    #[test]
    fn default_display_name_takes_the_last_four_characters() {
        assert_eq!(default_display_name("abcdefgh"), "User efgh");
        assert_eq!(default_display_name("ab"), "User ab");
    }
}
