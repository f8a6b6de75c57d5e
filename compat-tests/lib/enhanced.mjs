// Helpers for the enhanced (colon-style) protocol, PROTOCOL.md sections 4 and 5.
import assert from "node:assert/strict";
import { connectMany, join, mark, sleep, sid, events, waitFor } from "./client.mjs";

/** Stream events (left out of event-name comparisons). */
export const STREAM_EVENTS = new Set(["scroll_tick", "position:sync", "metronome:beat"]);

/** Emits with a Socket.IO acknowledgement; resolves with the ack payload (rejects after timeoutMs). */
export function ack(socket, event, payload, timeoutMs = 2000) {
  const s = socket.timeout(timeoutMs);
  return payload === undefined ? s.emitWithAck(event) : s.emitWithAck(event, payload);
}

/** Emits with an ack and asserts `{ok: true}`; resolves with the ack. */
export async function ackOk(socket, event, payload, timeoutMs) {
  const res = await ack(socket, event, payload, timeoutMs);
  assert.equal(res?.ok, true, `${event} ${JSON.stringify(payload)} was refused: ${JSON.stringify(res)}`);
  return res;
}

/** Emits with an ack and asserts `{ok: false, error: {code, message}}`; resolves with the error. */
export async function ackError(socket, event, payload, code) {
  const res = await ack(socket, event, payload);
  const what = `${event} ${JSON.stringify(payload)?.slice(0, 120)}`;
  assert.equal(res?.ok, false, `${what} should be refused with ${code}: ${JSON.stringify(res)}`);
  assert.equal(typeof res.error, "object", `${what}: ack.error: ${JSON.stringify(res)}`);
  const codes = Array.isArray(code) ? code : [code];
  assert.ok(codes.includes(res.error.code), `${what}: expected code ${codes.join("|")}, got ${JSON.stringify(res)}`);
  assert.ok(typeof res.error.message === "string" && res.error.message.length > 0, `${what}: error.message`);
  return res.error;
}

/** State errors go out as `error:session`; bad payloads as `error:validation`. */
export const errorChannel = (code) => (code === "VALIDATION" ? "error:validation" : "error:session");

/** Emits without an ack and expects `error:validation|error:session {code, message, event}`; returns it. */
export async function expectPushedError(socket, event, payload, code) {
  const channel = errorChannel(code);
  const p = waitFor(socket, channel, { event });
  socket.emit(event, payload);
  const err = await p.catch((e) => {
    throw new Error(`${event} without ack: ${e.message}`);
  });
  assert.equal(err.code, code, `${event}: ${JSON.stringify(err)}`);
  assert.equal(err.event, event);
  assert.ok(typeof err.message === "string" && err.message.length > 0, `${event}: message ${JSON.stringify(err)}`);
  return err;
}

/** Non-stream events since the last mark: [{event, data, at}] (no ping/auth:handshake/$disconnect). */
export const flowEvents = (socket) =>
  events(socket).filter((e) => !STREAM_EVENTS.has(e.event) && e.event !== "$disconnect");

/** Names of the non-stream events since the last mark. */
export const flow = (socket) => flowEvents(socket).map((e) => e.event);

/** Stream (or any) events named `event` since the last mark: [{data, at}]. */
export const received = (socket, event) => events(socket).filter((e) => e.event === event);

/**
 * Expects, for each [socket, names] pair, that the socket receives exactly `names` (non-stream
 * events, in order) since the last mark: waits until every socket has at least as many as expected
 * (timeoutMs), then `settleMs` more for extras. Returns a Map socket -> flowEvents.
 */
export async function expectFlows(pairs, { timeoutMs = 2000, settleMs = 250, label = "" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && pairs.some(([s, want]) => flow(s).length < want.length)) await sleep(10);
  await sleep(settleMs);
  const out = new Map();
  const problems = [];
  for (const [s, want, name = s.id] of pairs) {
    const got = flow(s);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      problems.push(`${name}: expected [${want.join(", ")}]\n      got      [${got.join(", ")}]`);
    }
    out.set(s, flowEvents(s));
  }
  assert.ok(problems.length === 0, `${label ? label + ": " : ""}event lists differ:\n    ${problems.join("\n    ")}`);
  return out;
}

/** session:create; resolves once the creator's own join events have landed. Returns {sessionId, session, bandId}. */
export async function createSession(socket, extra = {}) {
  const bandId = extra.bandId ?? sid("band");
  const res = await ackOk(socket, "session:create", { bandId, sessionName: "Rehearsal", ...extra });
  await waitFor(socket, "leader:election", { sessionId: res.sessionId, reason: "joined" });
  await waitFor(socket, "session:member_update", { sessionId: res.sessionId, action: "joined" });
  return { sessionId: res.sessionId, session: res.session, bandId, ack: res };
}

/** session:join; resolves with the ack once the joiner's own member_update has landed. */
export async function enhancedJoin(socket, sessionId, extra = {}) {
  const res = await ackOk(socket, "session:join", { sessionId, ...extra });
  await waitFor(socket, "session:member_update", (d) => d.sessionId === sessionId && d.member?.socketId === socket.id);
  return res;
}

/**
 * n enhanced websocket clients in a fresh session: the first creates it (and leads), the others join
 * in order; resolves once every member has seen memberCount n, all marked clean.
 * displayNames: optional names per member; connectOpts: options for connect (e.g. {transport: "polling"}).
 */
export async function enhancedBand(url, n, createExtra = {}, displayNames = [], connectOpts = {}) {
  const members = await connectMany(url, n, connectOpts);
  const dn = (i) => (displayNames[i] ? { displayName: displayNames[i] } : {});
  const { sessionId, bandId } = await createSession(members[0], { ...dn(0), ...createExtra });
  for (let i = 1; i < n; i++) await enhancedJoin(members[i], sessionId, dn(i));
  // (enhancedJoin already consumed the last joiner's own update.)
  await Promise.all(members.slice(0, -1).map((m) => waitFor(m, "session:member_update", { sessionId, memberCount: n })));
  mark(...members);
  return { sessionId, bandId, members, leader: members[0], followers: members.slice(1) };
}

/**
 * A mixed session: e1 (enhanced, creator and leader), l1 (legacy), e2 (enhanced), l2 (legacy),
 * joined in that order, all marked clean. Extra options go to session:create.
 */
export async function mixedSession(url, createExtra = {}) {
  return joinMixed(await connectMany(url, 4), createExtra);
}

/**
 * Shared by mixedSession and lib/cluster.mjs's mixedAcross: joins four connected sockets [e1, l1, e2, l2]
 * as a mixed session (displayNames E1, L1, E2, L2; `labels` name them in expectFlows messages), waits
 * (timeoutMs each) until all see memberCount 4, marks them clean.
 */
export async function joinMixed([e1, l1, e2, l2], createExtra = {}, labels = ["E1", "L1", "E2", "L2"], timeoutMs) {
  const { sessionId, bandId } = await createSession(e1, { displayName: "E1", ...createExtra });
  await join(l1, sessionId, { displayName: "L1" });
  await enhancedJoin(e2, sessionId, { displayName: "E2" });
  await join(l2, sessionId, { displayName: "L2" });
  await Promise.all([
    ...[e1, e2].map((e) => waitFor(e, "session:member_update", { memberCount: 4 }, timeoutMs)),
    ...[l1, l2].map((l) => waitFor(l, "user_joined", { memberCount: 4 }, timeoutMs)),
  ]);
  mark(e1, l1, e2, l2);
  const all = [e1, l1, e2, l2];
  const label = new Map(all.map((s, i) => [s, labels[i]]));
  return {
    sessionId,
    bandId,
    e1,
    l1,
    e2,
    l2,
    all,
    enhanced: [e1, e2],
    legacy: [l1, l2],
    /** A member's label (E1, L1, ... or as given). */
    nameOf: (s) => label.get(s),
    /** Pairs for expectFlows: every enhanced member expects `enh`, every legacy member `leg` (overrides by socket). */
    expect(enh, leg, overrides = new Map()) {
      return all.map((s) => [s, overrides.has(s) ? overrides.get(s) : [e1, e2].includes(s) ? enh : leg, label.get(s)]);
    },
  };
}

/** The enhanced member record view used to compare "nothing changed". */
export function enhancedStateView(s) {
  return {
    message: s.message,
    tempo: s.tempo,
    position: s.isPlaying ? "playing" : s.position,
    isPlaying: s.isPlaying,
    timeSignature: s.timeSignature,
    leaderSocketId: s.leaderSocketId,
    settings: s.settings,
    members: s.members.map((m) => [m.socketId, m.displayName, m.role, m.protocol]),
  };
}

/** Current session state through an idempotent re-join by an enhanced member. */
export async function currentState(socket, sessionId) {
  const res = await ackOk(socket, "session:join", { sessionId });
  return res.session;
}

/** The data of the first `event` in one socket's entry of an expectFlows result (undefined if none). */
export const eventData = (got, socket, event) => got.get(socket).find((e) => e.event === event)?.data;

/**
 * PROTOCOL.md section 5 driven by the enhanced leader E1 of a mixed session `m` (one instance or several):
 * tempo:change, metronome:start, metronome:stop (pause), position:seek, metronome:start again,
 * metronome:stop reset, chat:message from E2 (`chatMessage`), role:transfer E1 → L1. Each goes through
 * `step(m, label, action, enh, leg)` (the caller's expectFlows wrapper) with the checks every caller makes;
 * returns each step's expectFlows result {tempo, start, pause, seek, reset, chat, transfer} for its own checks.
 */
export async function enhancedLeaderWalk(m, step, chatMessage) {
  const S = m.sessionId;
  const data = eventData;
  const tempo = await step(
    m,
    "tempo:change",
    () => ackOk(m.e1, "tempo:change", { sessionId: S, newTempo: 100 }),
    ["tempo:change", "session:state_sync"],
    ["tempo_changed", "snapshot"],
  );
  for (const l of m.legacy) {
    assert.equal(data(tempo, l, "tempo_changed").newTempo, 100);
    assert.equal(data(tempo, l, "snapshot").tempo, 100);
  }
  for (const e of m.enhanced) assert.equal(data(tempo, e, "session:state_sync").tempo, 100);

  const start = await step(
    m,
    "metronome:start",
    () => ackOk(m.e1, "metronome:start", { sessionId: S }),
    ["metronome:start"],
    ["snapshot", "play"],
  );
  for (const l of m.legacy) assert.equal(data(start, l, "play").tempoBpm, 100);

  const pause = await step(
    m,
    "metronome:stop (pause)",
    () => ackOk(m.e1, "metronome:stop", { sessionId: S }),
    ["metronome:stop"],
    ["snapshot", "pause"],
  );
  const pausedAt = data(pause, m.e1, "metronome:stop").positionMs;
  for (const l of m.legacy) assert.equal(data(pause, l, "pause").position, Math.round(pausedAt));

  const seek = await step(
    m,
    "position:seek",
    () => ackOk(m.e1, "position:seek", { sessionId: S, positionMs: 4000 }),
    ["position:seek"],
    ["snapshot", "seek"],
  );
  for (const l of m.legacy) assert.equal(data(seek, l, "seek").position, 4000);
  for (const e of m.enhanced) assert.equal(data(seek, e, "position:seek").positionMs, 4000);

  await step(m, "metronome:start again", () => ackOk(m.e1, "metronome:start", { sessionId: S }), ["metronome:start"], [
    "snapshot",
    "play",
  ]);
  const reset = await step(
    m,
    "metronome:stop reset",
    () => ackOk(m.e1, "metronome:stop", { sessionId: S, reset: true }),
    ["metronome:stop"],
    ["snapshot", "stop"],
  );
  for (const e of m.enhanced) assert.equal(data(reset, e, "metronome:stop").positionMs, 0);

  const chat = await step(
    m,
    `chat:message from ${m.nameOf(m.e2)}`,
    () => ackOk(m.e2, "chat:message", { sessionId: S, message: chatMessage }),
    ["chat:message"],
    ["chat_message"],
  );
  for (const l of m.legacy) assert.equal(data(chat, l, "chat_message").message, chatMessage);

  const transfer = await step(
    m,
    `role:transfer ${m.nameOf(m.e1)} → ${m.nameOf(m.l1)}`,
    () => ackOk(m.e1, "role:transfer", { sessionId: S, toSocketId: m.l1.id }),
    ["leader:election", "session:state_sync"],
    ["role_changed", "snapshot"],
  );
  for (const e of m.enhanced) {
    assert.deepEqual(data(transfer, e, "leader:election"), {
      sessionId: S,
      oldLeader: m.e1.id,
      newLeader: m.l1.id,
      reason: "transfer",
    });
    assert.equal(data(transfer, e, "session:state_sync").leaderSocketId, m.l1.id);
  }
  for (const l of m.legacy) assert.equal(data(transfer, l, "snapshot").leaderSocketId, m.l1.id);
  return { tempo, start, pause, seek, reset, chat, transfer };
}

/**
 * PROTOCOL.md section 5 driven by legacy clients of a mixed session `m`: the legacy `leader` takes over
 * (set_role), then set_tempo, tempo_change with fadeTime, tempo_changed, play, pause, seek, play again,
 * stop; the other legacy member (`other`) sends update_message and chat_message; the leader leaves.
 * Each goes through `step(m, label, action, enh, leg, overrides)` with the checks every caller makes;
 * returns each step's expectFlows result for the caller's own checks.
 */
export async function legacyLeaderWalk(m, step, leader, other) {
  const S = m.sessionId;
  const L = leader;
  const data = eventData;
  const takeOver = await step(
    m,
    `${m.nameOf(L)} set_role leader (takes over)`,
    () => L.emit("set_role", { sessionId: S, role: "leader" }),
    ["leader:election", "session:state_sync"],
    // set_role's own rendering (section 2): a room snapshot.
    ["snapshot"],
  );
  for (const e of m.enhanced) {
    assert.deepEqual(data(takeOver, e, "leader:election"), {
      sessionId: S,
      oldLeader: m.e1.id,
      newLeader: L.id,
      reason: "taken_over",
    });
  }

  const setTempo = await step(
    m,
    "set_tempo",
    () => L.emit("set_tempo", { sessionId: S, tempo: 90 }),
    ["tempo:change", "session:state_sync"],
    ["snapshot"],
  );
  for (const e of m.enhanced) {
    const tc = data(setTempo, e, "tempo:change");
    assert.deepEqual([tc.oldTempo, tc.newTempo], [120, 90]);
  }

  const tempoChange = await step(
    m,
    "tempo_change with fadeTime",
    () => L.emit("tempo_change", { sessionId: S, tempo: 95, fadeTime: 200 }),
    ["tempo:change", "session:state_sync"],
    ["tempo_change", "snapshot"],
  );
  for (const e of m.enhanced) assert.equal(data(tempoChange, e, "tempo:change").rampDurationMs, 200);

  const tempoChanged = await step(
    m,
    "tempo_changed",
    () => L.emit("tempo_changed", { sessionId: S, tempo: 97 }),
    ["tempo:change", "session:state_sync"],
    ["tempo_changed", "snapshot"],
  );

  let got = await step(m, "play", () => L.emit("play", { sessionId: S }), ["metronome:start"], ["snapshot", "play"]);
  for (const e of m.enhanced) assert.equal(data(got, e, "metronome:start").tempo, 97);

  await step(m, "pause", () => L.emit("pause", { sessionId: S }), ["metronome:stop"], ["snapshot", "pause"]);
  got = await step(
    m,
    "seek",
    () => L.emit("seek", { sessionId: S, position: 2500 }),
    ["position:seek"],
    ["snapshot", "seek"],
  );
  for (const e of m.enhanced) assert.equal(data(got, e, "position:seek").positionMs, 2500);
  await step(m, "play again", () => L.emit("play", { sessionId: S }), ["metronome:start"], ["snapshot", "play"]);
  got = await step(m, "stop", () => L.emit("stop", { sessionId: S }), ["metronome:stop"], ["snapshot", "stop"]);
  for (const e of m.enhanced) assert.equal(data(got, e, "metronome:stop").positionMs, 0);

  got = await step(
    m,
    `update_message from ${m.nameOf(other)}`,
    () => other.emit("update_message", { sessionId: S, message: "bridge twice" }),
    ["session:state_sync"],
    ["snapshot"],
  );
  for (const e of m.enhanced) assert.equal(data(got, e, "session:state_sync").message, "bridge twice");

  const chat = await step(
    m,
    `chat_message from ${m.nameOf(other)}`,
    () => other.emit("chat_message", { sessionId: S, message: "from legacy" }),
    ["chat:message"],
    ["chat_message"],
  );
  for (const e of m.enhanced) assert.equal(data(chat, e, "chat:message").socketId, other.id);

  const leave = await step(
    m,
    `leader ${m.nameOf(L)} leave_session`,
    () => L.emit("leave_session", { sessionId: S }),
    ["leader:election", "session:state_sync", "session:member_update"],
    ["role_changed", "snapshot", "room_stats", "user_left"],
    new Map([[L, []]]),
  );
  for (const e of m.enhanced) {
    assert.deepEqual(data(leave, e, "leader:election"), {
      sessionId: S,
      oldLeader: L.id,
      newLeader: m.e1.id,
      reason: "leader_left",
    });
  }
  assert.equal(data(leave, other, "role_changed").reason, "leader_left");
  return { takeOver, setTempo, tempoChange, tempoChanged, chat, leave };
}
