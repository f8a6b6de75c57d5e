// Enhanced protocol, sessions: auth:handshake, session:create, session:join, session:leave,
// band:session_list, leader:election on join / leave / disconnect (PROTOCOL.md section 4).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import { connect, connectMany, sid, mark, sleep, waitFor, join, events } from "../lib/client.mjs";
import {
  ack,
  ackOk,
  ackError,
  expectPushedError,
  expectFlows,
  flowEvents,
  createSession,
  enhancedJoin,
  enhancedBand,
} from "../lib/enhanced.mjs";
import { assertSessionState, assertEnhancedMember, assertTimestamp, assertStampedSince } from "../lib/shapes.mjs";

const server = useServer({ LEGACY_PING_INTERVAL_MS: "0", ...NO_RATE_LIMITS });

test("auth:handshake on connect: serverId, serverVersion, protocols, features, limits, serverTime (every client version)", async () => {
  for (const [version, transport] of [
    ["4.8.1", "websocket"],
    ["4.7.5", "default"],
    ["2.5.0", "polling"],
  ]) {
    const t0 = Date.now();
    const s = await connect(server.url, { version, transport });
    const hs = await waitFor(s, "auth:handshake").catch((e) => {
      throw new Error(`${version}/${transport}: ${e.message}`);
    });
    assert.equal(typeof hs.serverId, "string");
    assert.ok(hs.serverId.length > 0);
    assert.equal(typeof hs.serverVersion, "string");
    assert.deepEqual(hs.protocols, ["legacy", "enhanced"]);
    assert.ok(Array.isArray(hs.features) && hs.features.every((f) => typeof f === "string"), `features ${hs.features}`);
    assert.equal(typeof hs.limits, "object");
    assert.equal(hs.limits.maxSessionMembers, 8);
    assert.equal(hs.limits.syncRateMs, 12.5);
    assert.ok(Number.isInteger(hs.limits.maxPayloadBytes) && hs.limits.maxPayloadBytes > 0);
    assertStampedSince(hs.serverTime, t0, 5, "serverTime");
    // Exactly one handshake per connection.
    await sleep(100);
    assert.equal(events(s, { all: true }).filter((e) => e.event === "auth:handshake").length, 1);
  }
});

test("session:create: ack {ok, sessionId: session_<ms>_<random>, session}; the creator is seated as leader", async () => {
  const a = await connect(server.url);
  const bandId = sid("band");
  const t0 = Date.now();
  const res = await ackOk(a, "session:create", { bandId, sessionName: "Friday", userId: "u-1", displayName: "Ann" });
  const m = /^session_(\d+)_([a-z0-9]+)$/.exec(res.sessionId);
  assert.ok(m, `sessionId ${res.sessionId}`);
  assertStampedSince(Number(m[1]), t0, 5, "sessionId time");
  const s = res.session;
  assertSessionState(s);
  assert.equal(s.sessionId, res.sessionId);
  assert.equal(s.bandId, bandId);
  assert.equal(s.sessionName, "Friday");
  assert.equal(s.timeSignature, "4/4");
  assert.equal(s.creatorId, a.id);
  assert.equal(s.tempo, 120);
  assert.equal(s.tempoNow, 120);
  assert.equal(s.isPlaying, false);
  assert.equal(s.position, 0);
  assert.equal(s.leaderSocketId, a.id);
  assert.equal(s.settings.maxMembers, 8);
  assert.equal(s.members.length, 1);
  const [me] = s.members;
  assert.equal(me.socketId, a.id);
  assert.equal(me.role, "leader");
  assert.equal(me.userId, "u-1");
  assert.equal(me.displayName, "Ann");
  assert.equal(me.protocol, "enhanced");
  // The creator: session:state_sync first; then session:member_update (joined) and leader:election
  // (joined), in an order the protocol does not fix.
  await waitFor(a, "leader:election");
  await sleep(200);
  const got = flowEvents(a);
  const names = got.map((x) => x.event);
  assert.equal(names[0], "session:state_sync", names.join(", "));
  assert.deepEqual([...names].sort(), ["leader:election", "session:member_update", "session:state_sync"], names.join(", "));
  const byName = Object.fromEntries(got.map((x) => [x.event, x.data]));
  assertSessionState(byName["session:state_sync"]);
  assert.equal(byName["session:state_sync"].sessionId, res.sessionId);
  const mu = byName["session:member_update"];
  assert.equal(mu.sessionId, res.sessionId);
  assert.equal(mu.action, "joined");
  assert.equal(mu.memberCount, 1);
  assertEnhancedMember(mu.member);
  assert.equal(mu.member.socketId, a.id);
  assert.deepEqual(byName["leader:election"], {
    sessionId: res.sessionId,
    oldLeader: null,
    newLeader: a.id,
    reason: "joined",
  });
});

test("session:create honours tempo, timeSignature and maxMembers; ids are unique", async () => {
  const a = await connect(server.url);
  const b = await connect(server.url);
  const r1 = await ackOk(a, "session:create", {
    bandId: sid("band"),
    sessionName: "Odd",
    tempo: 96.5,
    timeSignature: "7/8",
    maxMembers: 3,
  });
  assert.equal(r1.session.tempo, 96.5);
  assert.equal(r1.session.tempoBpm, 96.5);
  assert.equal(r1.session.timeSignature, "7/8");
  assert.equal(r1.session.settings.maxMembers, 3);
  const r2 = await ackOk(b, "session:create", { bandId: sid("band"), sessionName: "Even", maxMembers: 8 });
  assert.notEqual(r1.sessionId, r2.sessionId);
  assert.equal(r2.session.settings.maxMembers, 8);
});

test("session:create errors: missing bandId / sessionName, maxMembers 9, timeSignature \"4\", tempo out of range → VALIDATION", async () => {
  const a = await connect(server.url);
  const bad = [
    { sessionName: "x" },
    { bandId: sid("band") },
    { bandId: sid("band"), sessionName: "x", maxMembers: 9 },
    { bandId: sid("band"), sessionName: "x", timeSignature: "4" },
    { bandId: sid("band"), sessionName: "x", tempo: 401 },
    { bandId: sid("band"), sessionName: "x", tempo: 19 },
  ];
  for (const p of bad) await ackError(a, "session:create", p, "VALIDATION");
  mark(a);
  for (const p of bad) await expectPushedError(a, "session:create", p, "VALIDATION");
  // Nothing was created: the socket is in no session, and the band lists are empty.
  const list = await ackOk(a, "band:session_list", { bandId: bad[2].bandId });
  assert.deepEqual(list.sessions, []);
  await sleep(100);
  assert.deepEqual(
    flowEvents(a).filter((e) => !e.event.startsWith("error:")),
    [],
    "no state_sync / member_update after refused creates",
  );
});

test("session:join: ack {ok, session, member, serverTime}; the joiner gets session:state_sync then session:member_update; the room gets member_update", async () => {
  const {
    sessionId,
    members: [a, b],
  } = await enhancedBand(server.url, 2, {}, ["Ann", "Bob"]);
  const c = await connect(server.url);
  mark(a, b, c);
  const t0 = Date.now();
  const res = await ackOk(c, "session:join", {
    sessionId,
    userId: "u-cat",
    displayName: "Cat",
    instrument: "drums",
    preferredRole: "follower",
  });
  assertStampedSince(res.serverTime, t0, 5, "serverTime");
  assertSessionState(res.session);
  assert.equal(res.session.sessionId, sessionId);
  assert.deepEqual(
    res.session.members.map((m) => [m.socketId, m.role]),
    [
      [a.id, "leader"],
      [b.id, "follower"],
      [c.id, "follower"],
    ],
  );
  assertEnhancedMember(res.member);
  assert.deepEqual(
    [res.member.socketId, res.member.userId, res.member.displayName, res.member.instrument, res.member.preferredRole],
    [c.id, "u-cat", "Cat", "drums", "follower"],
  );
  assert.equal(res.member.role, "follower");
  assert.equal(res.member.protocol, "enhanced");
  const got = await expectFlows([
    [a, ["session:member_update"], "A"],
    [b, ["session:member_update"], "B"],
    [c, ["session:state_sync", "session:member_update"], "C (joiner)"],
  ]);
  const sync = got.get(c)[0].data;
  assertSessionState(sync);
  assert.equal(sync.members.length, 3);
  for (const x of [a, b, c]) {
    const mu = got.get(x).at(-1).data;
    assert.equal(mu.sessionId, sessionId);
    assert.equal(mu.action, "joined");
    assert.equal(mu.memberCount, 3);
    assert.deepEqual(mu.member, res.member);
  }
});

test("session:join of an unknown session: SESSION_NOT_FOUND (ack and error:session); create: true creates it with the joiner as leader", async () => {
  const a = await connect(server.url);
  const s = sid("enh-new");
  await ackError(a, "session:join", { sessionId: s }, "SESSION_NOT_FOUND");
  mark(a);
  await expectPushedError(a, "session:join", { sessionId: s }, "SESSION_NOT_FOUND");
  const res = await ackOk(a, "session:join", { sessionId: s, create: true, displayName: "Ann" });
  assert.equal(res.session.sessionId, s);
  assert.equal(res.session.leaderSocketId, a.id);
  assert.equal(res.member.role, "leader");
  assert.equal(res.session.timeSignature, "4/4");
  const election = await waitFor(a, "leader:election", { sessionId: s });
  assert.deepEqual(election, { sessionId: s, oldLeader: null, newLeader: a.id, reason: "joined" });
});

test("session:join of a session created by a legacy client works; state_sync shows both protocols", async () => {
  const [l, e] = await connectMany(server.url, 2);
  const s = sid("legacy-made");
  await join(l, s, { displayName: "Leg" });
  mark(l);
  const res = await ackOk(e, "session:join", { sessionId: s, displayName: "Enh" });
  assertSessionState(res.session);
  assert.deepEqual(
    res.session.members.map((m) => [m.displayName, m.protocol, m.role]),
    [
      ["Leg", "legacy", "leader"],
      ["Enh", "enhanced", "follower"],
    ],
  );
  await expectFlows([
    [l, ["room_stats", "user_joined"], "legacy"],
    [e, ["session:state_sync", "session:member_update"], "enhanced joiner"],
  ]);
});

test("re-joining the same session is idempotent: ack ok, session:state_sync again, no member_update, no second seat", async () => {
  const {
    sessionId,
    members: [a, b],
  } = await enhancedBand(server.url, 2);
  const res = await ackOk(b, "session:join", { sessionId });
  assert.equal(res.session.members.length, 2);
  assert.equal(res.member.socketId, b.id);
  await expectFlows([
    [a, [], "A"],
    [b, ["session:state_sync"], "B (re-joiner)"],
  ]);
});

test("SESSION_FULL: a session created with maxMembers 2 refuses the third (enhanced ack, error:session, legacy error)", async () => {
  const {
    sessionId,
    members: [a, b],
  } = await enhancedBand(server.url, 2, { maxMembers: 2 });
  const [c, l] = await connectMany(server.url, 2);
  await ackError(c, "session:join", { sessionId }, "SESSION_FULL");
  await expectPushedError(c, "session:join", { sessionId }, "SESSION_FULL");
  l.emit("join_session", { sessionId });
  const err = await waitFor(l, "error");
  assert.equal(err.code, "SESSION_FULL");
  await expectFlows([
    [a, [], "A"],
    [b, [], "B"],
  ]);
  const st = (await ackOk(a, "session:join", { sessionId })).session;
  assert.equal(st.members.length, 2);
});

test("session:join errors: missing sessionId, non-object payload → VALIDATION", async () => {
  const a = await connect(server.url);
  await ackError(a, "session:join", {}, "VALIDATION");
  await ackError(a, "session:join", 42, "VALIDATION");
  mark(a);
  await expectPushedError(a, "session:join", {}, "VALIDATION");
});

test("session:leave: ack {ok: true}; the room gets member_update {action: left, socketId, memberCount}; the leaver gets nothing more", async () => {
  const {
    sessionId,
    members: [a, b, c],
  } = await enhancedBand(server.url, 3);
  const res = await ack(c, "session:leave", { sessionId });
  assert.deepEqual(res, { ok: true });
  const got = await expectFlows([
    [a, ["session:member_update"], "A"],
    [b, ["session:member_update"], "B"],
    [c, [], "C (leaver)"],
  ]);
  for (const x of [a, b]) {
    assert.deepEqual(got.get(x)[0].data, { sessionId, action: "left", socketId: c.id, memberCount: 2 });
  }
  // No longer a member.
  await ackError(c, "chat:message", { sessionId, message: "still here?" }, "NOT_A_MEMBER");
  await ackError(c, "session:leave", { sessionId }, "NOT_A_MEMBER");
});

test("session:leave errors: unknown session → SESSION_NOT_FOUND, not a member → NOT_A_MEMBER, missing sessionId → VALIDATION", async () => {
  const [a, x] = await connectMany(server.url, 2);
  const { sessionId } = await createSession(a);
  await ackError(x, "session:leave", { sessionId: sid("nope") }, "SESSION_NOT_FOUND");
  await ackError(x, "session:leave", { sessionId }, "NOT_A_MEMBER");
  await ackError(x, "session:leave", {}, "VALIDATION");
  mark(x, a);
  await expectPushedError(x, "session:leave", { sessionId: sid("nope") }, "SESSION_NOT_FOUND");
  await expectPushedError(x, "session:leave", { sessionId }, "NOT_A_MEMBER");
  await expectPushedError(x, "session:leave", {}, "VALIDATION");
  await expectFlows([[a, [], "A"]]);
});

for (const how of ["leave", "disconnect"]) {
  const reason = how === "leave" ? "leader_left" : "leader_disconnected";
  test(`the leader's ${how}: remaining enhanced members get leader:election {reason: ${reason}}, session:state_sync, member_update`, async () => {
    const {
      sessionId,
      members: [a, b, c],
    } = await enhancedBand(server.url, 3, {}, ["Ann", "Bob", "Cat"]);
    const aId = a.id;
    if (how === "leave") assert.deepEqual(await ack(a, "session:leave", { sessionId }), { ok: true });
    else a.disconnect();
    const got = await expectFlows([
      [b, ["leader:election", "session:state_sync", "session:member_update"], "B"],
      [c, ["leader:election", "session:state_sync", "session:member_update"], "C"],
    ]);
    for (const x of [b, c]) {
      const [el, st, mu] = got.get(x).map((e) => e.data);
      assert.deepEqual(el, { sessionId, oldLeader: aId, newLeader: b.id, reason });
      assertSessionState(st);
      assert.equal(st.leaderSocketId, b.id);
      assert.equal(st.isPlaying, false);
      assert.deepEqual(
        st.members.map((m) => [m.socketId, m.role]),
        [
          [b.id, "leader"],
          [c.id, "follower"],
        ],
      );
      assert.deepEqual(mu, { sessionId, action: "left", socketId: aId, memberCount: 2 });
    }
    if (how === "leave") await expectFlows([[a, [], "A (leaver)"]], { settleMs: 0 });
  });
}

test("a follower's disconnect: enhanced members get session:member_update {action: left} only", async () => {
  const {
    sessionId,
    members: [a, b],
  } = await enhancedBand(server.url, 2);
  const bId = b.id;
  b.disconnect();
  const got = await expectFlows([[a, ["session:member_update"], "A"]]);
  assert.deepEqual(got.get(a)[0].data, { sessionId, action: "left", socketId: bId, memberCount: 1 });
});

test("joining another session first leaves the current one", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s1 = await createSession(a);
  const s2 = await createSession(b);
  await enhancedJoin(c, s1.sessionId);
  await waitFor(a, "session:member_update", { memberCount: 2 });
  mark(a, b, c);
  await ackOk(c, "session:join", { sessionId: s2.sessionId });
  const got = await expectFlows([
    [a, ["session:member_update"], "A (old session)"],
    [b, ["session:member_update"], "B (new session)"],
    [c, ["session:state_sync", "session:member_update"], "C"],
  ]);
  assert.deepEqual(got.get(a)[0].data, { sessionId: s1.sessionId, action: "left", socketId: c.id, memberCount: 1 });
  assert.equal(got.get(b)[0].data.action, "joined");
  assert.equal(got.get(b)[0].data.memberCount, 2);
  assert.equal((await ackOk(a, "session:join", { sessionId: s1.sessionId })).session.members.length, 1);
});

test("band:session_list: only that band's sessions with {sessionId, sessionName, memberCount, isPlaying, tempo, createdAt}; without ack emitted back", async () => {
  const [a, b, c, x] = await connectMany(server.url, 4);
  const bandA = sid("bandA");
  const bandB = sid("bandB");
  const s1 = await createSession(a, { bandId: bandA, sessionName: "One", tempo: 100 });
  const s2 = await createSession(b, { bandId: bandA, sessionName: "Two" });
  await createSession(c, { bandId: bandB, sessionName: "Other" });
  await enhancedJoin(x, s2.sessionId);
  await ackOk(b, "metronome:start", { sessionId: s2.sessionId });
  const res = await ackOk(x, "band:session_list", { bandId: bandA });
  assert.equal(res.bandId, bandA);
  assert.ok(Array.isArray(res.sessions));
  const byId = Object.fromEntries(res.sessions.map((s) => [s.sessionId, s]));
  assert.deepEqual(Object.keys(byId).sort(), [s1.sessionId, s2.sessionId].sort());
  for (const s of res.sessions) {
    assert.deepEqual(Object.keys(s).sort(), ["createdAt", "isPlaying", "memberCount", "sessionId", "sessionName", "tempo"]);
    assertTimestamp(s.createdAt, "createdAt");
  }
  assert.deepEqual(
    [byId[s1.sessionId].sessionName, byId[s1.sessionId].memberCount, byId[s1.sessionId].isPlaying, byId[s1.sessionId].tempo],
    ["One", 1, false, 100],
  );
  assert.deepEqual(
    [byId[s2.sessionId].sessionName, byId[s2.sessionId].memberCount, byId[s2.sessionId].isPlaying, byId[s2.sessionId].tempo],
    ["Two", 2, true, 120],
  );
  // Without an ack: emitted back under the same name.
  mark(x);
  x.emit("band:session_list", { bandId: bandB });
  const pushed = await waitFor(x, "band:session_list");
  assert.equal(pushed.bandId, bandB);
  assert.deepEqual(
    pushed.sessions.map((s) => s.sessionName),
    ["Other"],
  );
  assert.ok(!("ok" in pushed) || pushed.ok === true);
  // Unknown band: empty; missing bandId: VALIDATION.
  assert.deepEqual((await ackOk(x, "band:session_list", { bandId: sid("nobody") })).sessions, []);
  await ackError(x, "band:session_list", {}, "VALIDATION");
  await expectPushedError(x, "band:session_list", {}, "VALIDATION");
  await ackOk(b, "metronome:stop", { sessionId: s2.sessionId });
});
