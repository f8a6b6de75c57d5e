//! The BandSync requests the load tools send, in either vocabulary, and how each one is confirmed.
//!
//! Enhanced requests that need confirming carry an acknowledgement; the legacy vocabulary has
//! none, so a legacy join is confirmed by the `snapshot` the server sends the joiner (or refused by
//! an `error`). Playback and tempo requests are sent without waiting: their effects arrive as room
//! events, which is what the tools measure, and failures arrive as error events.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use anyhow::anyhow;
use bandsync_server::config::{DEFAULT_LEGACY_TICK_MS, DEFAULT_SYNC_RATE_MS};
use serde_json::{Value, json};

use super::{client::Client, lock, wire::Fields};

/// How long a join or create may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vocabulary {
    Legacy,
    Enhanced,
}

impl Vocabulary {
    /// The periodic stream a playing session sends this vocabulary.
    pub fn stream_event(self) -> &'static str {
        match self {
            Vocabulary::Legacy => "scroll_tick",
            Vocabulary::Enhanced => "position:sync",
        }
    }

    /// The server's default period of that stream (`LEGACY_TICK_MS`, `SYNC_RATE_MS`).
    pub fn stream_period_ms(self) -> f64 {
        match self {
            Vocabulary::Legacy => DEFAULT_LEGACY_TICK_MS as f64,
            Vocabulary::Enhanced => DEFAULT_SYNC_RATE_MS,
        }
    }

    /// The tempo an event announces, if it is the event that tells this vocabulary of a tempo set.
    pub fn announced_tempo(self, name: &str, fields: &Fields) -> Option<f64> {
        match self {
            Vocabulary::Legacy if name == "snapshot" => fields.tempo,
            Vocabulary::Enhanced if name == "tempo:change" => fields.new_tempo,
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Vocabulary::Legacy => "legacy",
            Vocabulary::Enhanced => "enhanced",
        }
    }
}

/// A request the server refused, with its error code.
#[derive(Debug, thiserror::Error)]
#[error("{event} refused: {code}")]
pub struct Refused {
    pub event: &'static str,
    pub code: String,
    /// The refusal came as an `error` event, which the connection's handler has seen (and counted)
    /// already; an acknowledgement's refusal is seen only here.
    pub reported_as_event: bool,
}

/// The server's error events, in both vocabularies.
pub fn is_error_event(name: &str) -> bool {
    matches!(name, "error" | "error:validation" | "error:session")
}

/// The code counted for an error event or refused acknowledgement that names none.
const UNKNOWN_CODE: &str = "UNKNOWN";

/// Error codes the server sent during a run, with counts.
#[derive(Debug, Default)]
pub struct ErrorCodes(Mutex<BTreeMap<String, u64>>);

impl ErrorCodes {
    pub fn count(&self, code: &str) {
        *lock(&self.0).entry(code.to_owned()).or_default() += 1;
    }

    /// Counts the event `name` when it is one of the server's error events.
    pub fn count_event(&self, name: &str, fields: &Fields) {
        if is_error_event(name) {
            self.count(fields.code.as_deref().unwrap_or(UNKNOWN_CODE));
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        lock(&self.0).clone()
    }
}

/// Creates a session led by `client` and returns its id. Enhanced sessions get a server-chosen id;
/// legacy ones use `legacy_id` (joining it first makes the client leader, or `set_role` does).
pub async fn open(
    client: &Client,
    vocabulary: Vocabulary,
    legacy_id: &str,
    display_name: &str,
) -> anyhow::Result<String> {
    match vocabulary {
        Vocabulary::Enhanced => {
            let payload = json!({ "bandId": "loadtest", "sessionName": legacy_id, "displayName": display_name });
            let answer = client.emit_with_ack("session:create", payload, TIMEOUT).await?;
            check_ack("session:create", &answer)?;
            answer["sessionId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("session:create answered without a sessionId: {answer}"))
        }
        Vocabulary::Legacy => {
            let snapshot = join_legacy(client, legacy_id, display_name).await?;
            if snapshot.leader_socket_id.as_deref() != Some(client.socket_id.as_str()) {
                let payload = json!({ "sessionId": legacy_id, "role": "leader" });
                let (name, fields) =
                    client.emit_and_expect("set_role", payload, &["snapshot", "error"], TIMEOUT).await?;
                legacy_answer("set_role", &name, fields)?;
            }
            Ok(legacy_id.to_owned())
        }
    }
}

/// Joins an existing session as a member.
pub async fn join(client: &Client, vocabulary: Vocabulary, session_id: &str, display_name: &str) -> anyhow::Result<()> {
    match vocabulary {
        Vocabulary::Enhanced => {
            let payload = json!({ "sessionId": session_id, "displayName": display_name });
            let answer = client.emit_with_ack("session:join", payload, TIMEOUT).await?;
            check_ack("session:join", &answer)
        }
        Vocabulary::Legacy => {
            join_legacy(client, session_id, display_name).await?;
            Ok(())
        }
    }
}

async fn join_legacy(client: &Client, session_id: &str, display_name: &str) -> anyhow::Result<Fields> {
    let payload = json!({ "sessionId": session_id, "displayName": display_name });
    let (name, fields) = client.emit_and_expect("join_session", payload, &["snapshot", "error"], TIMEOUT).await?;
    legacy_answer("join_session", &name, fields)
}

fn legacy_answer(event: &'static str, name: &str, fields: Fields) -> anyhow::Result<Fields> {
    if name == "error" {
        let code = fields.code.unwrap_or_else(|| UNKNOWN_CODE.to_owned());
        return Err(Refused { event, code, reported_as_event: true }.into());
    }
    Ok(fields)
}

fn check_ack(event: &'static str, answer: &Value) -> anyhow::Result<()> {
    if answer["ok"] == true {
        return Ok(());
    }
    let code = answer["error"]["code"].as_str().unwrap_or(UNKNOWN_CODE).to_owned();
    Err(Refused { event, code, reported_as_event: false }.into())
}

pub fn leave(client: &Client, vocabulary: Vocabulary, session_id: &str) {
    let name = match vocabulary {
        Vocabulary::Legacy => "leave_session",
        Vocabulary::Enhanced => "session:leave",
    };
    client.emit(name, json!({ "sessionId": session_id }));
}

/// Starts playback (leader only).
pub fn start(client: &Client, vocabulary: Vocabulary, session_id: &str) {
    let name = match vocabulary {
        Vocabulary::Legacy => "play",
        Vocabulary::Enhanced => "metronome:start",
    };
    client.emit(name, json!({ "sessionId": session_id }));
}

/// Stops playback (leader only); a legacy leader may pause instead, keeping the position.
pub fn stop(client: &Client, vocabulary: Vocabulary, session_id: &str, pause: bool) {
    let name = match vocabulary {
        Vocabulary::Legacy if pause => "pause",
        Vocabulary::Legacy => "stop",
        Vocabulary::Enhanced => "metronome:stop",
    };
    client.emit(name, json!({ "sessionId": session_id }));
}

/// Sets the tempo (leader only), with the request each vocabulary's apps send.
pub fn set_tempo(client: &Client, vocabulary: Vocabulary, session_id: &str, tempo: u32) {
    match vocabulary {
        Vocabulary::Legacy => client.emit("set_tempo", json!({ "sessionId": session_id, "tempo": tempo })),
        Vocabulary::Enhanced => client.emit("tempo:change", json!({ "sessionId": session_id, "newTempo": tempo })),
    }
}
