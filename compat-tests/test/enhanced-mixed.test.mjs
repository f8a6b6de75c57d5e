// One core, two renderings (PROTOCOL.md section 5): a mixed session of four clients
// (E1 enhanced leader, L1 legacy, E2 enhanced, L2 legacy) walked through every row of the table,
// driven from either vocabulary. After each step every member's full list of non-stream event
// names is compared: legacy members get only legacy events, enhanced members only enhanced ones,
// each exactly once, nothing extra.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { connect, mark, join } from "../lib/client.mjs";
import { ackOk, expectFlows, mixedSession, enhancedLeaderWalk, legacyLeaderWalk, eventData as data } from "../lib/enhanced.mjs";
import { assertSessionState, assertSnapshot } from "../lib/shapes.mjs";

const server = useServer({ LEGACY_PING_INTERVAL_MS: "0" });

/** Runs `action`, then expects enhanced members to get `enh` and legacy members `leg` (overrides per socket). */
async function step(m, label, action, enh, leg, overrides) {
  mark(...m.all);
  await action();
  return expectFlows(m.expect(enh, leg, overrides), { label });
}

test("row 'member joined': an enhanced and a legacy newcomer", async () => {
  const m = await mixedSession(server.url);
  const e3 = await connect(server.url);
  let got = await step(
    m,
    "enhanced E3 joins",
    () => ackOk(e3, "session:join", { sessionId: m.sessionId, displayName: "E3" }),
    ["session:member_update"],
    ["room_stats", "user_joined"],
  );
  for (const e of m.enhanced) {
    const mu = data(got, e, "session:member_update");
    assert.equal(mu.action, "joined");
    assert.equal(mu.member.socketId, e3.id);
    assert.equal(mu.member.protocol, "enhanced");
    assert.equal(mu.memberCount, 5);
  }
  for (const l of m.legacy) assert.equal(data(got, l, "user_joined").memberCount, 5);
  await expectFlows([[e3, ["session:state_sync", "session:member_update"], "E3"]], { settleMs: 0 });

  const l3 = await connect(server.url);
  mark(e3);
  got = await step(
    m,
    "legacy L3 joins",
    () => join(l3, m.sessionId, { displayName: "L3" }),
    ["session:member_update"],
    ["room_stats", "user_joined"],
  );
  for (const e of m.enhanced) {
    const mu = data(got, e, "session:member_update");
    assert.equal(mu.member.socketId, l3.id);
    assert.equal(mu.member.protocol, "legacy");
    assert.equal(mu.memberCount, 6);
  }
  await expectFlows(
    [
      [e3, ["session:member_update"], "E3"],
      // join() follows join_session with a sync_request.
      [l3, ["snapshot", "room_stats", "user_joined", "sync_response"], "L3"],
    ],
    { settleMs: 0 },
  );
});

test("row 'member left': enhanced session:leave, legacy leave_session, and follower disconnects of both kinds", async () => {
  let m = await mixedSession(server.url);
  let got = await step(
    m,
    "E2 session:leave",
    () => ackOk(m.e2, "session:leave", { sessionId: m.sessionId }),
    ["session:member_update"],
    ["room_stats", "user_left"],
    new Map([[m.e2, []]]),
  );
  assert.deepEqual(data(got, m.e1, "session:member_update"), {
    sessionId: m.sessionId,
    action: "left",
    socketId: m.e2.id,
    memberCount: 3,
  });
  assert.equal(data(got, m.l1, "user_left").socketId, m.e2.id);
  got = await step(
    m,
    "L2 leave_session",
    () => m.l2.emit("leave_session", { sessionId: m.sessionId }),
    ["session:member_update"],
    ["room_stats", "user_left"],
    new Map([
      [m.e2, []],
      [m.l2, []],
    ]),
  );
  assert.equal(data(got, m.e1, "session:member_update").socketId, m.l2.id);
  assert.equal(data(got, m.e1, "session:member_update").memberCount, 2);

  m = await mixedSession(server.url);
  const e2 = m.e2.id;
  got = await step(
    m,
    "E2 disconnects",
    () => m.e2.disconnect(),
    ["session:member_update"],
    ["snapshot", "room_stats", "user_left"],
    new Map([[m.e2, []]]),
  );
  assert.equal(data(got, m.e1, "session:member_update").socketId, e2);
  const l2 = m.l2.id;
  got = await step(
    m,
    "L2 disconnects",
    () => m.l2.disconnect(),
    ["session:member_update"],
    ["snapshot", "room_stats", "user_left"],
    new Map([
      [m.e2, []],
      [m.l2, []],
    ]),
  );
  assert.equal(data(got, m.e1, "session:member_update").socketId, l2);
});

test("rows 'tempo set', 'start', 'pause / stop', 'seek', 'message, chat', 'leader change' driven by the enhanced leader", async () => {
  const m = await mixedSession(server.url);
  const S = m.sessionId;
  const walk = await enhancedLeaderWalk(m, step, "from enhanced");
  for (const l of m.legacy) {
    const tc = data(walk.tempo, l, "tempo_changed");
    assert.equal(tc.isRealTime, true);
    assert.equal(tc.oldTempo, 120);
  }
  for (const e of m.enhanced) assert.equal(data(walk.tempo, e, "tempo:change").newTempo, 100);
  for (const l of m.legacy) assert.equal(data(walk.start, l, "snapshot").isPlaying, true);
  for (const l of m.legacy) assert.equal(data(walk.reset, l, "snapshot").position, 0);
  for (const l of m.legacy) {
    const c = data(walk.chat, l, "chat_message");
    assert.equal(c.socketId, m.e2.id);
    assert.equal(typeof c.username, "string");
  }
  for (const e of m.enhanced) assertSessionState(data(walk.transfer, e, "session:state_sync"));
  for (const l of m.legacy) {
    const rc = data(walk.transfer, l, "role_changed");
    assert.equal(rc.socketId, m.l1.id);
    assert.equal(rc.role, "leader");
    assert.equal(rc.previousRole, "follower");
    assert.equal(rc.reason, "transfer");
    assertSnapshot(data(walk.transfer, l, "snapshot"));
  }

  const got = await step(
    m,
    "a refused role:transfer (E2 does not lead) reaches nobody but E2",
    () => m.e2.emit("role:transfer", { sessionId: S, toSocketId: m.e2.id }),
    [],
    [],
    new Map([[m.e2, ["error:session"]]]),
  );
  assert.equal(data(got, m.e2, "error:session").code, "NOT_LEADER");
});

test("rows 'leader change', 'tempo set', 'start', 'pause / stop', 'seek', 'message, chat', 'member left' driven by legacy clients", async () => {
  const m = await mixedSession(server.url);
  const walk = await legacyLeaderWalk(m, step, m.l2, m.l1);
  for (const e of m.enhanced) assert.equal(data(walk.takeOver, e, "session:state_sync").leaderSocketId, m.l2.id);
  for (const e of m.enhanced) {
    assert.equal(data(walk.setTempo, e, "tempo:change").rampDurationMs, 0);
    assert.equal(data(walk.setTempo, e, "session:state_sync").tempo, 90);
  }
  for (const e of m.enhanced) {
    const tc = data(walk.tempoChange, e, "tempo:change");
    assert.deepEqual([tc.oldTempo, tc.newTempo], [90, 95]);
  }
  for (const e of m.enhanced) assert.equal(data(walk.tempoChanged, e, "tempo:change").newTempo, 97);
  for (const e of m.enhanced) {
    const c = data(walk.chat, e, "chat:message");
    assert.equal(c.message, "from legacy");
    assert.equal(c.displayName, "L1");
  }
  assert.equal(data(walk.leave, m.l1, "role_changed").socketId, m.e1.id);
});

for (const how of ["session:leave", "disconnect"]) {
  test(`row 'leader change' / 'member left': the enhanced leader's ${how}`, async () => {
    const m = await mixedSession(server.url);
    const reason = how === "disconnect" ? "leader_disconnected" : "leader_left";
    const e1 = m.e1.id;
    const got = await step(
      m,
      `E1 ${how}`,
      () => (how === "disconnect" ? m.e1.disconnect() : ackOk(m.e1, "session:leave", { sessionId: m.sessionId })),
      ["leader:election", "session:state_sync", "session:member_update"],
      ["role_changed", "snapshot", "room_stats", "user_left"],
      new Map([[m.e1, []]]),
    );
    // The earliest-joined remaining member (L1) leads.
    assert.deepEqual(data(got, m.e2, "leader:election"), {
      sessionId: m.sessionId,
      oldLeader: e1,
      newLeader: m.l1.id,
      reason,
    });
    for (const l of m.legacy) {
      const rc = data(got, l, "role_changed");
      assert.deepEqual([rc.socketId, rc.role, rc.previousRole, rc.reason], [m.l1.id, "leader", "follower", reason]);
      assert.equal(data(got, l, "user_left").socketId, e1);
      assert.equal(data(got, l, "user_left").newLeader, m.l1.id);
    }
  });
}

test("role:transfer between enhanced members while playing: both renderings, playback stops", async () => {
  const m = await mixedSession(server.url);
  await step(m, "start", () => ackOk(m.e1, "metronome:start", { sessionId: m.sessionId }), ["metronome:start"], [
    "snapshot",
    "play",
  ]);
  const got = await step(
    m,
    "role:transfer E1 → E2",
    () => ackOk(m.e1, "role:transfer", { sessionId: m.sessionId, toSocketId: m.e2.id }),
    ["leader:election", "session:state_sync"],
    ["role_changed", "snapshot"],
  );
  for (const e of m.enhanced) assert.equal(data(got, e, "session:state_sync").isPlaying, false);
  for (const l of m.legacy) assert.equal(data(got, l, "snapshot").isPlaying, false);
});

test("an enhanced chat:message names its author to legacy members by the author's displayName", async () => {
  // The same message must not carry two different author names in one session: enhanced members
  // see chat:message.displayName, legacy members chat_message.username.
  const m = await mixedSession(server.url);
  const got = await step(
    m,
    "chat:message from E2",
    () => ackOk(m.e2, "chat:message", { sessionId: m.sessionId, message: "who am I" }),
    ["chat:message"],
    ["chat_message"],
  );
  assert.equal(data(got, m.e1, "chat:message").displayName, "E2");
  for (const l of m.legacy) assert.equal(data(got, l, "chat_message").username, "E2");
});
