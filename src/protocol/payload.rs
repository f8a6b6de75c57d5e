//! JSON shapes shared by several events: the member record, the session snapshot, room stats.

use serde_json::{Value, json};

use crate::core::{Member, Millis, Session};

pub fn member(member: &Member) -> Value {
    json!({
        "socketId": member.socket_id,
        "displayName": member.display_name,
        "role": member.role.as_str(),
        "joinedAt": member.joined_at,
        "lastPingAt": member.last_ping_at,
    })
}

/// Legacy payloads carry whole milliseconds.
pub fn whole_ms(value: f64) -> i64 {
    value.round() as i64
}

/// The whole session, with the timeline position at `now`.
pub fn snapshot(session: &Session, now: Millis) -> Value {
    json!({
        "sessionId": session.id,
        "message": session.message,
        "tempo": session.timeline.tempo,
        "tempoBpm": session.timeline.tempo,
        "position": whole_ms(session.timeline.position_at(now)),
        "isPlaying": session.timeline.is_playing,
        "leaderSocketId": session.leader,
        "members": session.members.iter().map(member).collect::<Vec<_>>(),
        "createdAt": session.created_at,
        "lastActiveAt": session.last_active_at,
        "settings": { "maxMembers": session.max_members },
        "serverTimestamp": now,
    })
}

pub fn room_stats(session: &Session, now: Millis) -> Value {
    json!({
        "sessionId": session.id,
        "memberCount": session.members.len(),
        "connectedCount": session.connected_count(),
        "isPlaying": session.timeline.is_playing,
        "tempo": session.timeline.tempo,
        "position": whole_ms(session.timeline.position_at(now)),
        "leader": session.leader,
        "uptime": now - session.created_at,
    })
}

/// `{displayName, joinedAt}` of a member, for the roles events.
pub fn member_info(session: &Session, socket_id: &str) -> Value {
    match session.member(socket_id) {
        Some(m) => json!({ "displayName": m.display_name, "joinedAt": m.joined_at }),
        None => Value::Null,
    }
}

/// The enhanced member record: the legacy one plus the enhanced profile.
pub fn enhanced_member(member: &Member) -> Value {
    let mut record = self::member(member);
    record["userId"] = json!(member.user_id);
    record["instrument"] = json!(member.instrument);
    record["preferredRole"] = json!(member.preferred_role.map(|r| r.as_str()));
    record["protocol"] = json!(member.vocabulary.as_str());
    // The seat is held for a member whose connection dropped, until this server time.
    record["reconnecting"] = json!(member.is_reconnecting());
    if let Some(until) = member.reconnecting_until {
        record["reconnectingUntil"] = json!(until);
    }
    record
}

/// `session:state_sync`: the snapshot plus the enhanced fields.
pub fn state_sync(session: &Session, now: Millis) -> Value {
    let mut state = snapshot(session, now);
    state["members"] = session.members.iter().map(enhanced_member).collect();
    state["bandId"] = json!(session.band_id);
    state["sessionName"] = json!(session.session_name);
    state["timeSignature"] = json!(session.time_signature.to_string());
    state["creatorId"] = json!(session.creator_id);
    state["tempoNow"] = json!(session.timeline.tempo_at(now));
    state
}

/// One line of `band:session_list` and the sessions API.
pub fn summary(session: &Session) -> Value {
    json!({
        "sessionId": session.id,
        "sessionName": session.session_name,
        "memberCount": session.members.len(),
        "isPlaying": session.timeline.is_playing,
        "tempo": session.timeline.tempo,
        "createdAt": session.created_at,
    })
}
