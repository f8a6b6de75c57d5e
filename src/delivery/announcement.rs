//! What a change says to the members of its session, in a form every instance can read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use crate::{
    core::{Millis, Vocabulary},
    protocol::{Emission, Target},
};

/// One change's events for the members of its session, wherever they are connected.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// One event of an announcement. Its data is encoded once, however many members hear it (and
/// passes through other instances as it is, never parsed there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    pub to: Recipients,
    pub event: Cow<'static, str>,
    pub data: Box<RawValue>,
}

/// `data` as JSON text.
pub fn encode(data: &Value) -> Box<RawValue> {
    // A `Value` has string keys only, so it always encodes.
    serde_json::value::to_raw_value(data).expect("a JSON value always encodes")
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
            data: encode(&emission.data),
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
        Some(Self { to, event: Cow::Borrowed(emission.event), data: encode(&emission.data) })
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
                    data: encode(&json!({"n": 1.5, "name": "Zoë"})),
                },
                Outgoing {
                    to: Recipients::RoomExcept(Vocabulary::Enhanced, "x".into()),
                    event: "session:member_update".into(),
                    data: encode(&json!(null)),
                },
                Outgoing {
                    to: Recipients::Socket("y".into()),
                    event: "leader_request_denied".into(),
                    data: encode(&json!({})),
                },
            ],
        };
        let text = serde_json::to_string(&announcement).unwrap();
        let read: Announcement = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), text);
        assert_eq!(
            (read.revision, read.epoch, read.events[2].to.clone()),
            (Some(7), 12, Recipients::Socket("y".into()))
        );
        assert_eq!(read.events[0].data.get(), r#"{"n":1.5,"name":"Zoë"}"#);
    }

    #[test]
    fn what_is_for_the_sender_alone_stays_out_and_others_leave_the_sender_out() {
        let sender = Emission::new(Target::Sender, "snapshot", json!({}));
        assert!(Outgoing::from_emission(&sender, Some("me")).is_none());
        let others = Emission::new(Target::Others(Vocabulary::Legacy), "snapshot", json!({}));
        assert_eq!(
            Outgoing::from_emission(&others, Some("me")).unwrap().to,
            Recipients::RoomExcept(Vocabulary::Legacy, "me".into())
        );
    }
}
