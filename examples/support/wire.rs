//! Engine.IO v4 / Socket.IO v5 text packets, as much of them as a load client needs.
//!
//! Over websocket every frame holds exactly one Engine.IO packet: a type digit and its data. Type
//! `4` (message) carries a Socket.IO packet: a type digit, an optional namespace (`/name,`, absent
//! for `/`), an optional acknowledgement id, then JSON. Incoming events are decoded lazily: the
//! event name is borrowed from the frame and only the few payload fields the measurements read are
//! kept, so a client handling thousands of stream packets a second does not build JSON trees.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::Value;

/// One incoming websocket text frame, classified.
#[derive(Debug, PartialEq)]
pub enum Packet<'a> {
    /// Engine.IO open (`0{...}`), sent once by the server after the upgrade.
    Open,
    /// Engine.IO close (`1`).
    Close,
    /// Engine.IO ping (`2`): the server's heartbeat, to be answered with a pong (`3`).
    Ping,
    /// Socket.IO connect (`40{"sid":...}`) with the socket id the server uses in `socketId` fields.
    Connect(Option<String>),
    /// Socket.IO connect error (`44{...}`), with its raw JSON.
    ConnectError(&'a str),
    /// Socket.IO disconnect (`41`): the server closed the namespace.
    Disconnect,
    /// Socket.IO event (`42[...]`): the JSON array `["name", payload, ...]`.
    Event(&'a str),
    /// Socket.IO acknowledgement (`43<id>[...]`): the id and the JSON array of answers.
    Ack(u64, &'a str),
    /// Anything else (pong, noop, upgrade, binary attachments): ignored by this client.
    Other,
}

/// Classifies one text frame without parsing its JSON (except the small connect packet).
pub fn classify(frame: &str) -> Packet<'_> {
    let mut chars = frame.chars();
    match chars.next() {
        Some('0') => Packet::Open,
        Some('1') => Packet::Close,
        Some('2') => Packet::Ping,
        Some('4') => {
            let Some(kind) = chars.next() else { return Packet::Other };
            let (id, data) = split_id(skip_namespace(chars.as_str()));
            match kind {
                '0' => Packet::Connect(connect_sid(data)),
                '1' => Packet::Disconnect,
                '2' => Packet::Event(data),
                '3' => id.map_or(Packet::Other, |id| Packet::Ack(id, data)),
                '4' => Packet::ConnectError(data),
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    }
}

/// Drops a `/namespace,` prefix; the default namespace has none.
fn skip_namespace(packet: &str) -> &str {
    if packet.starts_with('/') { packet.split_once(',').map_or("", |(_, rest)| rest) } else { packet }
}

/// Splits the leading acknowledgement id, if any, from the JSON that follows it.
fn split_id(packet: &str) -> (Option<u64>, &str) {
    let digits = packet.bytes().take_while(u8::is_ascii_digit).count();
    (packet[..digits].parse().ok(), &packet[digits..])
}

fn connect_sid(data: &str) -> Option<String> {
    let value: Value = serde_json::from_str(data).ok()?;
    value.get("sid")?.as_str().map(str::to_owned)
}

/// The first answer of an acknowledgement (`43<id>[answer]`), `null` when there is none.
pub fn decode_ack(data: &str) -> Value {
    serde_json::from_str::<Vec<Value>>(data).ok().and_then(|answers| answers.into_iter().next()).unwrap_or(Value::Null)
}

/// Encodes `42["name",payload]`, or `42<id>["name",payload]` when an acknowledgement is asked for.
pub fn encode_event(name: &str, payload: &Value, ack: Option<u64>) -> String {
    let array = serde_json::to_string(&(name, payload)).expect("a JSON value always serialises");
    match ack {
        Some(id) => format!("42{id}{array}"),
        None => format!("42{array}"),
    }
}

/// The payload fields the load clients read; every other field is skipped without being stored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fields {
    /// `position:sync`, `position:seek`, `sync_response`, `position_sync`.
    pub server_time: Option<f64>,
    /// `scroll_tick`, `snapshot` and most legacy events.
    pub server_timestamp: Option<f64>,
    /// `snapshot`, `session:state_sync`, `position:sync`.
    pub tempo: Option<f64>,
    /// `tempo:change`, `tempo_change`.
    pub new_tempo: Option<f64>,
    /// The legacy app-level `ping {timestamp}`, echoed back in `pong`.
    pub timestamp: Option<f64>,
    /// `error`, `error:validation`, `error:session`.
    pub code: Option<String>,
    pub leader_socket_id: Option<String>,
}

/// Decodes an event array into its name and the fields of its first argument.
///
/// A payload whose known fields have unexpected types still yields the name (with empty fields),
/// so such an event is counted rather than lost. `None` only for a frame that is not an event array
/// with a string name.
pub fn decode_event(json: &str) -> Option<(&str, Fields)> {
    parse_event(json, true).or_else(|_| parse_event(json, false)).ok().map(|event| (event.name, event.fields))
}

struct EventArray<'a> {
    name: &'a str,
    fields: Fields,
}

fn parse_event(json: &str, with_fields: bool) -> serde_json::Result<EventArray<'_>> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    (&mut deserializer).deserialize_seq(EventVisitor { with_fields })
}

struct EventVisitor {
    with_fields: bool,
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = EventArray<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event array [name, payload, ...]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(name) = seq.next_element::<&'de str>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let fields = if self.with_fields {
            seq.next_element::<Payload>()?.map(|payload| payload.0).unwrap_or_default()
        } else {
            Fields::default()
        };
        // Further arguments (and, without fields, the payload itself) are skipped.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(EventArray { name, fields })
    }
}

/// An event argument: an object yields its fields, any other JSON value yields none.
struct Payload(Fields);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Payload, A::Error> {
        Fields::deserialize(MapAccessDeserializer::new(map)).map(Payload)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Payload(Fields::default()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload(Fields::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engine_and_socket_packets() {
        assert_eq!(classify("2"), Packet::Ping);
        assert_eq!(classify(r#"0{"sid":"x"}"#), Packet::Open);
        assert_eq!(classify(r#"40{"sid":"abc"}"#), Packet::Connect(Some("abc".into())));
        assert_eq!(classify(r#"42["a",1]"#), Packet::Event(r#"["a",1]"#));
        assert_eq!(classify(r#"4312[{"ok":true}]"#), Packet::Ack(12, r#"[{"ok":true}]"#));
        assert_eq!(classify(r#"42/admin,["a"]"#), Packet::Event(r#"["a"]"#));
    }

    #[test]
    fn decodes_known_fields_and_skips_the_rest() {
        let json = r#"["snapshot",{"tempo":90,"members":[{"socketId":"a"}],"leaderSocketId":"a","x":{"y":[1]}}]"#;
        let (name, fields) = decode_event(json).unwrap();
        assert_eq!(name, "snapshot");
        assert_eq!(fields.tempo, Some(90.0));
        assert_eq!(fields.leader_socket_id.as_deref(), Some("a"));
        let (name, fields) = decode_event(r#"["odd",{"tempo":"fast"}]"#).unwrap();
        assert_eq!((name, fields.tempo), ("odd", None));
        assert_eq!(decode_event(r#"["bare"]"#).unwrap().0, "bare");
        assert_eq!(decode_event(r#"["num",5,6]"#).unwrap().0, "num");
    }

    #[test]
    fn encodes_events_with_and_without_ack() {
        let payload = serde_json::json!({"sessionId": "s"});
        assert_eq!(encode_event("play", &payload, None), r#"42["play",{"sessionId":"s"}]"#);
        assert_eq!(encode_event("play", &payload, Some(7)), r#"427["play",{"sessionId":"s"}]"#);
        assert_eq!(decode_ack(r#"[{"ok":true}]"#)["ok"], true);
    }
}
