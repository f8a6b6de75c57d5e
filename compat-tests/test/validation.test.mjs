// Bad input of every kind: the sender gets `error {message, code}`, the server stays up, the other
// members receive nothing from it, and the session state is unchanged.
import { test } from "node:test";
import assert from "node:assert/strict";
import { httpGet } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import {
  connect,
  sid,
  mark,
  waitFor,
  waitForEntry,
  expectNothing,
  expectError,
  join,
  events,
  syncState,
} from "../lib/client.mjs";
import { stateView } from "../lib/shapes.mjs";

const NONE = Symbol("no payload");
const long = (n) => "x".repeat(n);

let L, F, O, X; // leader, follower, observer (members); X never joins
let Y; // leads another session T, which the others are not in
const T = sid("other");
// No reconnection grace: a connection the server closes for an oversized packet (a transport error
// to the server, as a network's would be) leaves at once, which the payload tests below watch for.
const server = useServer({ ...NO_RATE_LIMITS, RESUME_GRACE_MS: "0" }, async () => {
  [L, F, O, X, Y] = await Promise.all([0, 1, 2, 3, 4].map(() => connect(server.url)));
  await join(Y, T);
});

/** A fresh session with L (leader), F, O; returns its id and state. */
async function fresh() {
  const S = sid("val");
  mark(L, F, O, X, Y);
  await join(L, S, { displayName: "Leader" });
  await join(F, S, { displayName: "Follower" });
  await join(O, S, { displayName: "Observer" });
  await Promise.all([L, F, O].map((m) => waitFor(m, "user_joined", { memberCount: 3 })));
  // Non-default state so "unchanged" means something.
  L.emit("set_tempo", { sessionId: S, tempo: 130 });
  L.emit("seek", { sessionId: S, position: 4321 });
  L.emit("update_message", { sessionId: S, message: "before" });
  await Promise.all([L, F, O].map((m) => waitFor(m, "snapshot", { message: "before" })));
  const state = stateView(await join(L, S));
  mark(L, F, O, X, Y);
  return { S, state };
}

const senders = () => ({ L, F, O, X });

// [name, sender, event, payload (function of S, or NONE), expected code]
const cases = [
  // missing fields
  ["join_session without sessionId", "O", "join_session", () => ({ displayName: "x" }), "VALIDATION"],
  ["join_session with an empty object", "O", "join_session", () => ({}), "VALIDATION"],
  ["set_tempo without tempo", "L", "set_tempo", (S) => ({ sessionId: S }), "VALIDATION"],
  ["set_tempo without sessionId", "L", "set_tempo", () => ({ tempo: 100 }), "VALIDATION"],
  ["play without sessionId", "L", "play", () => ({}), "VALIDATION"],
  ["seek without position", "L", "seek", (S) => ({ sessionId: S }), "VALIDATION"],
  ["tempo_change without tempo", "L", "tempo_change", (S) => ({ sessionId: S }), "VALIDATION"],
  ["beat_sync without beatPosition", "L", "beat_sync", (S) => ({ sessionId: S, masterTime: Date.now() }), "VALIDATION"],
  ["position_sync without positionMs", "L", "position_sync", (S) => ({ sessionId: S, timestamp: Date.now() }), "VALIDATION"],
  ["update_message without message", "F", "update_message", (S) => ({ sessionId: S }), "VALIDATION"],
  ["chat_message without message", "F", "chat_message", (S) => ({ sessionId: S }), "VALIDATION"],
  ["set_role without role", "F", "set_role", (S) => ({ sessionId: S }), "VALIDATION"],
  ["leave_session without sessionId", "F", "leave_session", () => ({}), "VALIDATION"],
  ["sync_request without sessionId", "X", "sync_request", () => ({}), "VALIDATION"],
  // wrong types
  ["join_session sessionId is a number", "O", "join_session", () => ({ sessionId: 123 }), "VALIDATION"],
  ["join_session displayName is a number", "O", "join_session", (S) => ({ sessionId: S, displayName: 5 }), "VALIDATION"],
  ["join_session role is not leader/follower", "O", "join_session", (S) => ({ sessionId: S, role: "boss" }), "VALIDATION"],
  ['set_tempo tempo "120" (string)', "L", "set_tempo", (S) => ({ sessionId: S, tempo: "120" }), "VALIDATION"],
  ["set_tempo tempo true", "L", "set_tempo", (S) => ({ sessionId: S, tempo: true }), "VALIDATION"],
  ["set_tempo tempo null", "L", "set_tempo", (S) => ({ sessionId: S, tempo: null }), "VALIDATION"],
  ["set_tempo tempo [120]", "L", "set_tempo", (S) => ({ sessionId: S, tempo: [120] }), "VALIDATION"],
  ["play sessionId is a number", "L", "play", () => ({ sessionId: 42 }), "VALIDATION"],
  ['seek position "100" (string)', "L", "seek", (S) => ({ sessionId: S, position: "100" }), "VALIDATION"],
  ['tempo_change fadeTime "slow"', "L", "tempo_change", (S) => ({ sessionId: S, tempo: 100, fadeTime: "slow" }), "VALIDATION"],
  ['beat_sync beatPosition "3"', "L", "beat_sync", (S) => ({ sessionId: S, beatPosition: "3", masterTime: Date.now() }), "VALIDATION"],
  ['position_sync positionMs "100"', "L", "position_sync", (S) => ({ sessionId: S, positionMs: "100", timestamp: Date.now() }), "VALIDATION"],
  ["update_message message is a number", "F", "update_message", (S) => ({ sessionId: S, message: 42 }), "VALIDATION"],
  ["chat_message message is an object", "F", "chat_message", (S) => ({ sessionId: S, message: { text: "x" } }), "VALIDATION"],
  ["chat_message username is a number", "F", "chat_message", (S) => ({ sessionId: S, message: "x", username: 7 }), "VALIDATION"],
  ["set_role role is a number", "F", "set_role", (S) => ({ sessionId: S, role: 1 }), "VALIDATION"],
  // ranges
  ["set_tempo 19", "L", "set_tempo", (S) => ({ sessionId: S, tempo: 19 }), "VALIDATION"],
  ["set_tempo 401", "L", "set_tempo", (S) => ({ sessionId: S, tempo: 401 }), "VALIDATION"],
  ["set_tempo 19.99", "L", "set_tempo", (S) => ({ sessionId: S, tempo: 19.99 }), "VALIDATION"],
  ["set_tempo 0", "L", "set_tempo", (S) => ({ sessionId: S, tempo: 0 }), "VALIDATION"],
  ["set_tempo -120", "L", "set_tempo", (S) => ({ sessionId: S, tempo: -120 }), "VALIDATION"],
  ["set_tempo 1e9", "L", "set_tempo", (S) => ({ sessionId: S, tempo: 1e9 }), "VALIDATION"],
  ["tempo_change 401", "L", "tempo_change", (S) => ({ sessionId: S, tempo: 401 }), "VALIDATION"],
  ["tempo_changed 19", "L", "tempo_changed", (S) => ({ sessionId: S, tempo: 19 }), "VALIDATION"],
  ["seek to a negative position", "L", "seek", (S) => ({ sessionId: S, position: -1 }), "VALIDATION"],
  ["position_sync negative positionMs", "L", "position_sync", (S) => ({ sessionId: S, positionMs: -5, timestamp: Date.now() }), "VALIDATION"],
  // over-long strings
  ["join_session sessionId of 65 chars", "O", "join_session", () => ({ sessionId: long(65) }), "VALIDATION"],
  ["join_session empty sessionId", "O", "join_session", () => ({ sessionId: "" }), "VALIDATION"],
  ["join_session displayName of 65 chars", "O", "join_session", (S) => ({ sessionId: S, displayName: long(65) }), "VALIDATION"],
  ["update_message of 1001 chars", "F", "update_message", (S) => ({ sessionId: S, message: long(1001) }), "VALIDATION"],
  ["chat_message of 1001 chars", "F", "chat_message", (S) => ({ sessionId: S, message: long(1001) }), "VALIDATION"],
  ["chat_message username of 65 chars", "F", "chat_message", (S) => ({ sessionId: S, message: "x", username: long(65) }), "VALIDATION"],
  ["set_tempo sessionId of 65 chars", "L", "set_tempo", () => ({ sessionId: long(65), tempo: 100 }), "VALIDATION"],
  // non-object payloads
  ...["join_session", "set_tempo", "play", "update_message", "chat_message", "leave_session", "sync_request"].flatMap((ev) => {
    const who = ev === "set_tempo" || ev === "play" ? "L" : ev === "sync_request" ? "X" : "F";
    return [
      [`${ev} with a number payload`, who, ev, () => 42, "VALIDATION"],
      [`${ev} with a string payload`, who, ev, (S) => S, "VALIDATION"],
      [`${ev} with an array payload`, who, ev, (S) => [{ sessionId: S }], "VALIDATION"],
      [`${ev} with a null payload`, who, ev, () => null, "VALIDATION"],
      [`${ev} with no payload`, who, ev, NONE, "VALIDATION"],
    ];
  }),
  // unknown session / not a member
  ["set_tempo naming an unknown session", "L", "set_tempo", () => ({ sessionId: sid("nosuch"), tempo: 100 }), "SESSION_NOT_FOUND"],
  ["play naming an unknown session", "X", "play", () => ({ sessionId: sid("nosuch") }), "SESSION_NOT_FOUND"],
  ["chat_message to an unknown session", "F", "chat_message", () => ({ sessionId: sid("nosuch"), message: "x" }), "SESSION_NOT_FOUND"],
  ["set_role in an unknown session", "F", "set_role", () => ({ sessionId: sid("nosuch"), role: "leader" }), "SESSION_NOT_FOUND"],
  ["set_tempo by a non-member", "X", "set_tempo", (S) => ({ sessionId: S, tempo: 100 }), "NOT_A_MEMBER"],
  ["play by a non-member", "X", "play", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  ["seek by a non-member", "X", "seek", (S) => ({ sessionId: S, position: 1 }), "NOT_A_MEMBER"],
  ["set_role by a non-member", "X", "set_role", (S) => ({ sessionId: S, role: "leader" }), "NOT_A_MEMBER"],
  ["beat_sync by a non-member", "X", "beat_sync", (S) => ({ sessionId: S, beatPosition: 1, masterTime: Date.now() }), "NOT_A_MEMBER"],
  ["pause by a non-member", "X", "pause", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  ["stop by a non-member", "X", "stop", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  ["tempo_change by a non-member", "X", "tempo_change", (S) => ({ sessionId: S, tempo: 100 }), "NOT_A_MEMBER"],
  ["position_sync by a non-member", "X", "position_sync", (S) => ({ sessionId: S, positionMs: 5, timestamp: Date.now() }), "NOT_A_MEMBER"],
  ["role_changed notice by a non-member", "X", "role_changed", (S) => ({ sessionId: S, role: "leader", previousRole: "follower" }), "NOT_A_MEMBER"],
  ["leave_session by a non-member", "X", "leave_session", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  // a member of S naming another existing session T
  ["the leader of S sets the tempo of T", "L", "set_tempo", () => ({ sessionId: T, tempo: 100 }), "NOT_A_MEMBER"],
  ["the leader of S plays T", "L", "play", () => ({ sessionId: T }), "NOT_A_MEMBER"],
  ["a member of S chats into T", "F", "chat_message", () => ({ sessionId: T, message: "psst" }), "NOT_A_MEMBER"],
  ["a member of S updates T's message", "F", "update_message", () => ({ sessionId: T, message: "psst" }), "NOT_A_MEMBER"],
  ["a member of S leaves T", "F", "leave_session", () => ({ sessionId: T }), "NOT_A_MEMBER"],
  // roles
  ["play by a follower", "F", "play", (S) => ({ sessionId: S }), "NOT_LEADER"],
  ["stop by a follower", "F", "stop", (S) => ({ sessionId: S }), "NOT_LEADER"],
];

for (const [name, who, event, payload, code] of cases) {
  test(`${name} → ${code}`, async () => {
    const { S, state } = await fresh();
    const sender = senders()[who];
    if (payload === NONE) sender.emit(event);
    else sender.emit(event, payload(S));
    const err = await expectError(sender, code);
    assert.equal(typeof err.message, "string");
    await assertNoEffect(S, state, sender);
  });
}

test("an unknown event name from a legacy socket is ignored, as the Node server did; nothing changes", async () => {
  const { S, state } = await fresh();
  X.emit("JOIN_SESSION", { sessionId: S });
  await assertNoEffect(S, state, X);
  mark(L, F, O, X, Y);
  F.emit("definitely_not_an_event", { sessionId: S });
  await assertNoEffect(S, state, F, []);
});

test("limits are inclusive: 64-char sessionId and displayName, 1000-char message, tempo 20 and 400", async () => {
  const a = await connect(server.url);
  const S = long(63) + "z";
  const snap = await join(a, S, { displayName: "d".repeat(64) });
  assert.equal(snap.sessionId, S);
  assert.equal(snap.members[0].displayName, "d".repeat(64));
  a.emit("update_message", { sessionId: S, message: "m".repeat(1000) });
  assert.equal((await waitFor(a, "snapshot", { message: "m".repeat(1000) })).sessionId, S);
  a.emit("chat_message", { sessionId: S, message: "c".repeat(1000), username: "u".repeat(64) });
  await waitFor(a, "chat_message");
  const errors = events(a).filter((e) => e.event === "error");
  assert.deepEqual(errors, []);
});

test("string limits count characters, not bytes: 64 × \"é\" is a valid sessionId and displayName, 65 is not", async () => {
  const a = await connect(server.url);
  const S = "é".repeat(64);
  const snap = await join(a, S, { displayName: "ü".repeat(64) });
  assert.equal(snap.sessionId, S);
  assert.equal(snap.members[0].displayName, "ü".repeat(64));
  mark(a);
  a.emit("update_message", { sessionId: S, message: "ñ".repeat(1000) });
  assert.equal((await waitFor(a, "snapshot", { sessionId: S })).message, "ñ".repeat(1000));
  a.emit("update_message", { sessionId: S, message: "ñ".repeat(1001) });
  await expectError(a, "VALIDATION");
  a.emit("join_session", { sessionId: "é".repeat(65) });
  await expectError(a, "VALIDATION");
});

for (const transport of ["websocket", "polling"]) {
  test(`a 2 MB payload (${transport}) closes the sender's connection cleanly; the server stays up, the room sees nothing`, async () => {
    const { S, state } = await fresh();
    const big = await connect(server.url, { transport });
    await join(big, S);
    const bigId = big.id;
    await Promise.all([L, F, O].map((m) => waitFor(m, "user_joined", { memberCount: 4 })));
    mark(L, F, O, big);
    big.emit("chat_message", { sessionId: S, message: long(2 * 1024 * 1024) });
    const dc = await waitForEntry(big, "$disconnect", undefined, 5000);
    assert.equal(typeof dc.data, "string");
    assert.equal(big.connected, false);
    // Nothing but the departure reaches the room: no chat_message, no error.
    for (const m of [L, F, O]) {
      await waitFor(m, "user_left", { socketId: bigId }, 3000);
      const got = events(m).map((e) => e.event);
      assert.ok(!got.includes("chat_message"), `${got}`);
    }
    const health = await httpGet(`${server.url}/livez`);
    assert.equal(health.status, 200);
    const after = stateView(await join(L, S));
    assert.deepEqual(after, state);
  });
}

/** Asserts a bad event from `sender` changed nothing; a member sender got `senderGot` (an error) first. */
async function assertNoEffect(S, state, sender, senderGot = ["error"]) {
  const members = [L, F, O];
  if (members.includes(sender)) {
    // Sentinel: the sender's next event is handled after the bad one, so anything the bad one
    // broadcast would arrive before the sentinel.
    sender.emit("chat_message", { sessionId: S, message: "sentinel" });
    await Promise.all(members.map((m) => waitFor(m, "chat_message", { message: "sentinel" })));
    for (const m of members) {
      const got = events(m).map((e) => e.event);
      const upTo = got.slice(0, got.indexOf("chat_message"));
      const expected = m === sender ? senderGot : [];
      assert.deepEqual(upTo, expected, `events at ${m === sender ? "sender" : "other member"} ${m.id}`);
    }
  } else {
    for (const m of members) await expectNothing(m, m === L ? 150 : 0);
  }
  const after = stateView(await join(L, S));
  assert.deepEqual(after, state);
  assert.deepEqual(events(Y), [], "the leader of the other session T received nothing");
  const st = await syncState(X, S);
  assert.deepEqual([st.tempoBpm, st.positionMs, st.isPlaying], [130, 4321, false]);
}
