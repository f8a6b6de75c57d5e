//! What a change says to the members of its session, in a form every instance can read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    core::{Millis, Vocabulary},
    protocol::{Emission, Target},
};

/// One change's events for the members of its session, wherever they are connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The instance that made the change.
    pub origin: String,
    pub session_id: String,
    /// When the session was created: a session removed and made again under the same id starts
    /// its revisions over.
    pub epoch: Millis,
    /// The revision the change made; `None` for one that made none (a chat line, or a change
    /// stored on one instance alone during a Redis outage), which goes out as it comes.
    pub revision: Option<u64>,
    pub events: Vec<Outgoing>,
}

/// One event of an announcement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub to: Recipients,
    pub event: Cow<'static, str>,
    pub data: Value,
}

/// Who among the session's members hears an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Recipients {
    /// Every member who speaks this vocabulary.
    Room(Vocabulary),
    /// Every member who speaks this vocabulary but one socket (the one the change was for, which
    /// has its own answer).
    RoomExcept(Vocabulary, String),
    /// One member, by socket id.
    Socket(String),
}

impl Outgoing {
    /// `emission`, for one socket alone.
    pub fn to_socket(emission: &Emission, socket_id: &str) -> Self {
        Self {
            to: Recipients::Socket(socket_id.to_owned()),
            event: Cow::Borrowed(emission.event),
            data: emission.data.clone(),
        }
    }

    /// The emission for the members of the session; `None` for one meant for the sender alone.
    pub fn from_emission(emission: &Emission, sender: Option<&str>) -> Option<Self> {
        let to = match &emission.target {
            Target::Sender => return None,
            Target::Room(vocabulary) => Recipients::Room(*vocabulary),
            Target::Others(vocabulary) => match sender {
                Some(sender) => Recipients::RoomExcept(*vocabulary, sender.to_owned()),
                None => Recipients::Room(*vocabulary),
            },
            Target::Socket(id) => Recipients::Socket(id.clone()),
        };
        Some(Self { to, event: Cow::Borrowed(emission.event), data: emission.data.clone() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_announcement_reads_back_as_written() {
        let announcement = Announcement {
            origin: "a:1".into(),
            session_id: "s".into(),
            epoch: 12,
            revision: Some(7),
            events: vec![
                Outgoing {
                    to: Recipients::Room(Vocabulary::Legacy),
                    event: "room_stats".into(),
                    data: json!({"n": 1}),
                },
                Outgoing {
                    to: Recipients::RoomExcept(Vocabulary::Enhanced, "x".into()),
                    event: "session:member_update".into(),
                    data: json!(null),
                },
                Outgoing { to: Recipients::Socket("y".into()), event: "leader_request_denied".into(), data: json!({}) },
            ],
        };
        let text = serde_json::to_string(&announcement).unwrap();
        assert_eq!(serde_json::from_str::<Announcement>(&text).unwrap(), announcement);
    }

    #[test]
    fn what_is_for_the_sender_alone_stays_out_and_others_leave_the_sender_out() {
        let sender = Emission::new(Target::Sender, "snapshot", json!({}));
        assert_eq!(Outgoing::from_emission(&sender, Some("me")), None);
        let others = Emission::new(Target::Others(Vocabulary::Legacy), "snapshot", json!({}));
        assert_eq!(
            Outgoing::from_emission(&others, Some("me")).unwrap().to,
            Recipients::RoomExcept(Vocabulary::Legacy, "me".into())
        );
    }
}
