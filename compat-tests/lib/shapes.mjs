// Shape checks for the legacy payloads (PROTOCOL.md section 2).
import assert from "node:assert/strict";

const isInt = (v) => Number.isInteger(v);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
/** An integer ms-since-epoch timestamp within a minute of now. */
export function assertTimestamp(v, what = "timestamp") {
  assert.ok(isInt(v), `${what} must be an integer, got ${JSON.stringify(v)}`);
  assert.ok(Math.abs(v - Date.now()) < 60_000, `${what} ${v} is not close to now (${Date.now()})`);
}

export function assertMember(m) {
  assert.equal(typeof m, "object");
  assert.equal(typeof m.socketId, "string");
  assert.equal(typeof m.displayName, "string");
  assert.ok(m.role === "leader" || m.role === "follower", `role ${m.role}`);
  assertTimestamp(m.joinedAt, "member.joinedAt");
  assertTimestamp(m.lastPingAt, "member.lastPingAt");
}

export function assertSnapshot(s) {
  assert.equal(typeof s, "object");
  for (const k of [
    "sessionId",
    "message",
    "tempo",
    "tempoBpm",
    "position",
    "isPlaying",
    "leaderSocketId",
    "members",
    "createdAt",
    "lastActiveAt",
    "settings",
    "serverTimestamp",
  ]) {
    assert.ok(k in s, `snapshot lacks ${k}: ${JSON.stringify(s)}`);
  }
  assert.equal(typeof s.sessionId, "string");
  assert.equal(typeof s.message, "string");
  assert.ok(isNum(s.tempo));
  assert.equal(s.tempo, s.tempoBpm);
  assert.ok(isInt(s.position) && s.position >= 0, `snapshot.position must be an integer >= 0: ${s.position}`);
  assert.equal(typeof s.isPlaying, "boolean");
  assert.ok(s.leaderSocketId === null || typeof s.leaderSocketId === "string");
  assert.ok(Array.isArray(s.members), "members must be an array");
  s.members.forEach(assertMember);
  assertTimestamp(s.createdAt, "createdAt");
  assertTimestamp(s.lastActiveAt, "lastActiveAt");
  assertTimestamp(s.serverTimestamp, "serverTimestamp");
  assert.equal(typeof s.settings, "object");
  assert.ok(isInt(s.settings.maxMembers));
  if (s.leaderSocketId !== null) {
    const leaders = s.members.filter((m) => m.role === "leader").map((m) => m.socketId);
    assert.deepEqual(leaders, [s.leaderSocketId], "exactly the leaderSocketId member has role leader");
  } else {
    assert.ok(!s.members.some((m) => m.role === "leader"), "no leader role when leaderSocketId is null");
  }
}

export function assertRoomStats(r) {
  for (const k of ["sessionId", "memberCount", "connectedCount", "isPlaying", "tempo", "position", "leader", "uptime"]) {
    assert.ok(k in r, `room_stats lacks ${k}: ${JSON.stringify(r)}`);
  }
  assert.ok(isInt(r.memberCount));
  assert.ok(isInt(r.connectedCount));
  assert.equal(typeof r.isPlaying, "boolean");
  assert.ok(isNum(r.tempo));
  assert.ok(isInt(r.position) && r.position >= 0);
  assert.ok(r.leader === null || typeof r.leader === "string");
  assert.ok(isNum(r.uptime) && r.uptime >= 0);
}

/** Keys a caller may compare to decide "state unchanged". */
export function stateView(snap) {
  return {
    message: snap.message,
    tempo: snap.tempo,
    tempoBpm: snap.tempoBpm,
    position: snap.position,
    isPlaying: snap.isPlaying,
    leaderSocketId: snap.leaderSocketId,
    members: snap.members.map((m) => [m.socketId, m.displayName, m.role]),
  };
}

// ---- Enhanced payloads (PROTOCOL.md section 4) ----

const isStrOrNull = (v) => v === null || typeof v === "string";

/** A member record as the enhanced protocol renders it (legacy fields plus userId, instrument, preferredRole, protocol). */
export function assertEnhancedMember(m) {
  assertMember(m);
  for (const k of ["userId", "instrument", "preferredRole", "protocol"]) assert.ok(k in m, `member lacks ${k}: ${JSON.stringify(m)}`);
  assert.ok(isStrOrNull(m.userId), `member.userId ${JSON.stringify(m.userId)}`);
  assert.ok(isStrOrNull(m.instrument), `member.instrument ${JSON.stringify(m.instrument)}`);
  assert.ok(isStrOrNull(m.preferredRole), `member.preferredRole ${JSON.stringify(m.preferredRole)}`);
  assert.ok(m.protocol === "legacy" || m.protocol === "enhanced", `member.protocol ${m.protocol}`);
}

/** `session:state_sync` / ack `session`: the snapshot plus bandId, sessionName, timeSignature, creatorId, tempoNow. */
export function assertSessionState(s) {
  assertSnapshot(s);
  for (const k of ["bandId", "sessionName", "timeSignature", "creatorId", "tempoNow"]) {
    assert.ok(k in s, `session state lacks ${k}: ${JSON.stringify(s)}`);
  }
  assert.ok(isStrOrNull(s.bandId));
  assert.ok(isStrOrNull(s.sessionName));
  assert.ok(isStrOrNull(s.creatorId));
  assert.match(s.timeSignature, /^\d+\/\d+$/);
  assert.ok(isNum(s.tempoNow), `tempoNow ${s.tempoNow}`);
  s.members.forEach(assertEnhancedMember);
}

/** A server timestamp taken between `since` (a client `Date.now()` read before the request) and
 *  now, each within `slackMs`. The message says by how much and which way it missed, so a failure
 *  tells a server clock behind or ahead of this one apart from a slow step. */
export function assertStampedSince(v, since, slackMs, what = "timestamp") {
  const now = Date.now();
  assert.ok(isNum(v), `${what} must be a number, got ${JSON.stringify(v)}`);
  assert.ok(
    v >= since - slackMs && v <= now + slackMs,
    `${what} ${v}: ${v - since} ms after the request was sent, ${now - v} ms before now (each may be off by ${slackMs} ms)`,
  );
}

/** A millisecond timestamp (fractions allowed) within `tolMs` of the local clock. */
export function assertNear(v, tolMs = 1000, what = "timestamp") {
  assert.ok(isNum(v), `${what} must be a number, got ${JSON.stringify(v)}`);
  assert.ok(Math.abs(v - Date.now()) <= tolMs, `${what} ${v} is ${v - Date.now()} ms from now`);
}
