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
 * displayNames: optional names per member.
 */
export async function enhancedBand(url, n, createExtra = {}, displayNames = []) {
  const members = await connectMany(url, n);
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
  const [e1, l1, e2, l2] = await connectMany(url, 4);
  const { sessionId, bandId } = await createSession(e1, { displayName: "E1", ...createExtra });
  await join(l1, sessionId, { displayName: "L1" });
  await enhancedJoin(e2, sessionId, { displayName: "E2" });
  await join(l2, sessionId, { displayName: "L2" });
  await Promise.all([
    ...[e1, e2].map((e) => waitFor(e, "session:member_update", { memberCount: 4 })),
    ...[l1, l2].map((l) => waitFor(l, "user_joined", { memberCount: 4 })),
  ]);
  mark(e1, l1, e2, l2);
  return {
    sessionId,
    bandId,
    e1,
    l1,
    e2,
    l2,
    all: [e1, l1, e2, l2],
    enhanced: [e1, e2],
    legacy: [l1, l2],
    /** Pairs for expectFlows: every enhanced member expects `enh`, every legacy member `leg` (overrides by socket). */
    expect(enh, leg, overrides = new Map()) {
      const label = { [e1.id]: "E1", [e2.id]: "E2", [l1.id]: "L1", [l2.id]: "L2" };
      return [e1, l1, e2, l2].map((s) => [
        s,
        overrides.has(s) ? overrides.get(s) : [e1, e2].includes(s) ? enh : leg,
        label[s.id],
      ]);
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
