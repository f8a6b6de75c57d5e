// Enhanced protocol errors (PROTOCOL.md sections 4 and 6): with an ack → {ok: false, error: {code, message}};
// without → error:validation (bad payload) or error:session (state) {code, message, event}.
// A refused request changes nothing and reaches nobody else.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import { connect, sid, mark, join, sleep, waitFor } from "../lib/client.mjs";
import {
  ackOk,
  ackError,
  errorChannel,
  flow,
  expectFlows,
  enhancedBand,
  enhancedStateView,
  currentState,
} from "../lib/enhanced.mjs";

const server = useServer({ LEGACY_PING_INTERVAL_MS: "0", ...NO_RATE_LIMITS });

// [label, who ("L" leader, "F" follower, "X" outsider), event, payload(S, ids), code]
const CASES = [
  ["session:create without bandId", "X", "session:create", () => ({ sessionName: "x" }), "VALIDATION"],
  ["session:join without sessionId", "X", "session:join", () => ({}), "VALIDATION"],
  ["session:join of an unknown session", "X", "session:join", () => ({ sessionId: sid("nope") }), "SESSION_NOT_FOUND"],
  ["session:leave by an outsider", "X", "session:leave", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  ["session:leave of an unknown session", "F", "session:leave", () => ({ sessionId: sid("nope") }), "SESSION_NOT_FOUND"],
  ["band:session_list without bandId", "X", "band:session_list", () => ({}), "VALIDATION"],
  ["metronome:start by a follower", "F", "metronome:start", (S) => ({ sessionId: S }), "NOT_LEADER"],
  ["metronome:start by an outsider", "X", "metronome:start", (S) => ({ sessionId: S }), "NOT_A_MEMBER"],
  ["metronome:start of an unknown session", "L", "metronome:start", () => ({ sessionId: sid("nope") }), "SESSION_NOT_FOUND"],
  ["metronome:start tempo 19", "L", "metronome:start", (S) => ({ sessionId: S, tempo: 19 }), "VALIDATION"],
  ["metronome:start timeSignature \"4\"", "L", "metronome:start", (S) => ({ sessionId: S, timeSignature: "4" }), "VALIDATION"],
  ["metronome:stop by a follower", "F", "metronome:stop", (S) => ({ sessionId: S }), "NOT_LEADER"],
  ["metronome:stop without sessionId", "L", "metronome:stop", () => ({}), "VALIDATION"],
  ["tempo:change by a follower", "F", "tempo:change", (S) => ({ sessionId: S, newTempo: 100 }), "NOT_LEADER"],
  ["tempo:change 19", "L", "tempo:change", (S) => ({ sessionId: S, newTempo: 19 }), "VALIDATION"],
  ["tempo:change 401", "L", "tempo:change", (S) => ({ sessionId: S, newTempo: 401 }), "VALIDATION"],
  ["tempo:change as a string", "L", "tempo:change", (S) => ({ sessionId: S, newTempo: "fast" }), "VALIDATION"],
  ["tempo:change without newTempo", "L", "tempo:change", (S) => ({ sessionId: S }), "VALIDATION"],
  ["tempo:change negative ramp", "L", "tempo:change", (S) => ({ sessionId: S, newTempo: 100, rampDurationMs: -1 }), "VALIDATION"],
  ["position:seek by a follower", "F", "position:seek", (S) => ({ sessionId: S, positionMs: 10 }), "NOT_LEADER"],
  ["position:seek negative", "L", "position:seek", (S) => ({ sessionId: S, positionMs: -1 }), "VALIDATION"],
  ["position:seek without positionMs", "L", "position:seek", (S) => ({ sessionId: S }), "VALIDATION"],
  ["position:sync by an outsider", "X", "position:sync", (S) => ({ sessionId: S, positionMs: 0, clientTime: Date.now() }), "NOT_A_MEMBER"],
  ["position:sync without positionMs", "F", "position:sync", (S) => ({ sessionId: S, clientTime: Date.now() }), "VALIDATION"],
  ["role:transfer by a follower", "F", "role:transfer", (S, ids) => ({ sessionId: S, toSocketId: ids.F }), "NOT_LEADER"],
  ["role:transfer without toSocketId", "L", "role:transfer", (S) => ({ sessionId: S }), "VALIDATION"],
  ["role:transfer to an outsider", "L", "role:transfer", (S, ids) => ({ sessionId: S, toSocketId: ids.X }), ["VALIDATION", "NOT_A_MEMBER"]],
  ["chat:message by an outsider", "X", "chat:message", (S) => ({ sessionId: S, message: "hi" }), "NOT_A_MEMBER"],
  ["chat:message without message", "F", "chat:message", (S) => ({ sessionId: S }), "VALIDATION"],
  ["chat:message empty", "F", "chat:message", (S) => ({ sessionId: S, message: "" }), "VALIDATION"],
  ["chat:message of 5000 chars", "F", "chat:message", (S) => ({ sessionId: S, message: "x".repeat(5000) }), "VALIDATION"],
  ["clock:sync without t0", "X", "clock:sync", () => ({}), "VALIDATION"],
  ["clock:sync t0 a string", "X", "clock:sync", () => ({ t0: "now" }), "VALIDATION"],
  ["latency:probe without timestamp", "X", "latency:probe", () => ({}), "VALIDATION"],
];

/** Leader L and follower F (enhanced), legacy member G, outsider X; marked clean. */
async function setup() {
  const b = await enhancedBand(server.url, 2);
  const [L, F] = b.members;
  const [G, X] = await Promise.all([connect(server.url), connect(server.url)]);
  await join(G, b.sessionId);
  await ackOk(L, "position:seek", { sessionId: b.sessionId, positionMs: 1500 });
  await Promise.all([waitFor(G, "seek"), waitFor(L, "position:seek"), waitFor(F, "position:seek")]);
  const before = enhancedStateView(await currentState(F, b.sessionId));
  mark(L, F, G, X);
  return { S: b.sessionId, L, F, G, X, before, ids: { L: L.id, F: F.id, G: G.id, X: X.id } };
}

async function assertUnchanged(ctx, refusedBy) {
  // Nobody but the refused senders heard anything (their own error:* pushes are theirs alone).
  const others = [
    [ctx.L, "L"],
    [ctx.F, "F"],
    [ctx.G, "G (legacy)"],
  ].filter(([s]) => !refusedBy.has(s));
  await expectFlows(
    others.map(([s, name]) => [s, [], name]),
    { settleMs: 200 },
  );
  const after = enhancedStateView(await currentState(ctx.F, ctx.S));
  assert.deepEqual(after, ctx.before, "the session state changed after refused requests");
}

test("every enhanced request refused with an ack: {ok: false, error: {code, message}}; nothing changes, nobody hears", async () => {
  const ctx = await setup();
  for (const [label, who, event, payload, code] of CASES) {
    await ackError(ctx[who], event, payload(ctx.S, ctx.ids), code).catch((e) => {
      throw new Error(`${label}: ${e.message}`);
    });
  }
  await assertUnchanged(ctx, new Set());
});

test("the same requests without an ack: error:validation / error:session {code, message, event} to the sender alone", async () => {
  const ctx = await setup();
  for (const [label, who, event, payload, code] of CASES) {
    const codes = Array.isArray(code) ? code : [code];
    const sender = ctx[who];
    const waits = [...new Set(codes.map(errorChannel))].map((ch) =>
      waitFor(sender, ch, { event }).then((data) => ({ ch, data })),
    );
    sender.emit(event, payload(ctx.S, ctx.ids));
    const { ch, data } = await Promise.any(waits).catch(() => {
      throw new Error(`${label}: no error:validation / error:session for ${event}`);
    });
    assert.ok(codes.includes(data.code), `${label}: code ${data.code}, expected ${codes.join("|")}`);
    assert.equal(ch, errorChannel(data.code), `${label}: ${data.code} came as ${ch}`);
    assert.equal(data.event, event);
    assert.ok(typeof data.message === "string" && data.message.length > 0, `${label}: message`);
  }
  await sleep(200);
  // Each sender got exactly one error push per refused request and nothing else; G heard nothing.
  for (const [s, who] of [
    [ctx.L, "L"],
    [ctx.F, "F"],
    [ctx.X, "X"],
  ]) {
    const got = flow(s);
    const want = CASES.filter((c) => c[1] === who).length;
    assert.equal(got.length, want, `${who} got ${got.join(", ")}`);
    assert.ok(
      got.every((n) => n === "error:validation" || n === "error:session"),
      `${who} got ${got.join(", ")}`,
    );
  }
  await expectFlows([[ctx.G, [], "G (legacy)"]], { settleMs: 0 });
  const after = enhancedStateView(await currentState(ctx.F, ctx.S));
  assert.deepEqual(after, ctx.before, "the session state changed after refused requests");
});
