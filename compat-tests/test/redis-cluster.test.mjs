// Several instances sharing one Redis form one service: members of a session on different instances,
// every room event crossing over exactly once (PROTOCOL.md sections 2 and 5), position streams computed
// locally at their rates, atomic joins, session discovery, /health and /readyz, and start-up against an
// unreachable or password-protected Redis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { startServer, spawnServer, httpGet, freePort, sleep } from "../lib/server.mjs";
import { startRedis, keyPrefix } from "../lib/redis.mjs";
import { startCluster, redisEnv, assertLive, bandAcross, mixedAcross } from "../lib/cluster.mjs";
import { connect, closeAll, sid, mark, waitFor, expectError, expectNo, join, events, seqOf } from "../lib/client.mjs";
import {
  ack,
  ackOk,
  expectFlows,
  createSession,
  received,
  enhancedLeaderWalk,
  legacyLeaderWalk,
  eventData as data,
  currentState,
  enhancedStateView,
} from "../lib/enhanced.mjs";
import { assertSnapshot } from "../lib/shapes.mjs";

let cluster;
let A;
let B;
const extra = []; // instances and redis-servers started inside tests
before(async () => {
  cluster = await startCluster(2, { MAX_SESSION_MEMBERS: "8" });
  [A, B] = cluster.servers;
});
after(async () => {
  closeAll();
  await Promise.all(extra.map((x) => x.stop()));
  await cluster?.stop();
});

/** Runs `action`, then expects each [socket, names] pair's exact non-stream event list. */
async function stepPairs(all, pairs, label, action, opts = {}) {
  mark(...all);
  await action();
  return expectFlows(pairs, { label, timeoutMs: 3000, settleMs: 300, ...opts });
}

/** For the mixed session: enhanced members expect `enh`, legacy members `leg`. */
const step = (m, label, action, enh, leg, overrides) => stepPairs(m.all, m.expect(enh, leg, overrides), label, action);

test("/health on every instance: redis connected, status healthy; /readyz 200; serverId defaults to <hostname>:<port>, SERVER_ID overrides it", async () => {
  for (const s of [A, B]) {
    const h = await httpGet(`${s.url}/health`);
    assert.equal(h.status, 200);
    assert.equal(h.body.redis, "connected", `${s.url}/health: ${h.text}`);
    assert.equal(h.body.status, "healthy");
    assert.equal(h.body.ok, true);
    assert.equal(h.body.serverId, `${hostname()}:${s.port}`, "default instance id");
    assert.equal((await httpGet(`${s.url}/readyz`)).status, 200, `${s.url}/readyz`);
    const c = await connect(s.url);
    const hs = await waitFor(c, "auth:handshake");
    assert.equal(hs.serverId, h.body.serverId, "auth:handshake.serverId is the instance id");
    c.close();
  }
  const named = await startServer({ ...cluster.env, SERVER_ID: "custom-instance-7" });
  extra.push(named);
  const h = await httpGet(`${named.url}/health`);
  assert.equal(h.body.serverId, "custom-instance-7");
  assert.equal(h.body.redis, "connected");
  await assertLive(A, B, named);
});

test("legacy band over two instances: joins and every section 2 room event cross over exactly once", async () => {
  // leader@A, f1@B, f2@A, f3@B
  const b = await bandAcross([A.url, B.url], 4);
  const [L, f1, f2, f3] = b.members;
  const S = b.sessionId;
  const all = b.members;
  const each = (names, overrides = new Map()) =>
    all.map((s, i) => [s, overrides.has(s) ? overrides.get(s) : names, `${i === 0 ? "leader" : "f" + i}@${i % 2 ? "B" : "A"}`]);

  // A fifth member joins through B.
  const x = await connect(B.url);
  let got = await stepPairs(all, each(["room_stats", "user_joined"]), "x joins on B", () => join(x, S, { displayName: "X" }));
  for (const s of all) {
    assert.equal(data(got, s, "user_joined").member.socketId, x.id);
    assert.equal(data(got, s, "user_joined").memberCount, 5);
    assert.equal(data(got, s, "room_stats").memberCount, 5);
  }
  const everyone = [...all, x];
  const each5 = (names, overrides = new Map()) =>
    everyone.map((s) => [s, overrides.has(s) ? overrides.get(s) : names]);

  got = await stepPairs(everyone, each5(["snapshot"]), "set_tempo", () => L.emit("set_tempo", { sessionId: S, tempo: 100 }));
  for (const s of everyone) {
    assertSnapshot(data(got, s, "snapshot"));
    assert.equal(data(got, s, "snapshot").tempo, 100);
    assert.equal(data(got, s, "snapshot").members.length, 5);
  }
  got = await stepPairs(everyone, each5(["tempo_change", "snapshot"]), "tempo_change", () =>
    L.emit("tempo_change", { sessionId: S, tempo: 105, fadeTime: 100 }),
  );
  for (const s of everyone) {
    const tc = data(got, s, "tempo_change");
    assert.deepEqual([tc.oldTempo, tc.newTempo, tc.fadeTime], [100, 105, 100]);
  }
  got = await stepPairs(everyone, each5(["tempo_changed", "snapshot"]), "tempo_changed", () =>
    L.emit("tempo_changed", { sessionId: S, tempo: 108 }),
  );
  for (const s of everyone) assert.equal(data(got, s, "tempo_changed").isRealTime, true);

  got = await stepPairs(everyone, each5(["snapshot", "play"]), "play", () => L.emit("play", { sessionId: S }));
  for (const s of everyone) {
    assert.equal(data(got, s, "snapshot").isPlaying, true);
    assert.equal(data(got, s, "play").tempoBpm, 108);
  }
  got = await stepPairs(everyone, each5(["beat_sync"]), "beat_sync", () =>
    L.emit("beat_sync", { sessionId: S, beatPosition: 7, masterTime: Date.now() }),
  );
  for (const s of everyone) assert.equal(data(got, s, "beat_sync").beatPosition, 7);
  got = await stepPairs(everyone, each5(["position_sync"]), "position_sync", () =>
    L.emit("position_sync", { sessionId: S, positionMs: 5000, timestamp: Date.now() }),
  );
  for (const s of everyone) assert.equal(data(got, s, "position_sync").positionMs, 5000);
  got = await stepPairs(everyone, each5(["snapshot", "pause"]), "pause", () => L.emit("pause", { sessionId: S }));
  const paused = data(got, L, "pause").position;
  for (const s of everyone) assert.equal(data(got, s, "pause").position, paused, "same pause position everywhere");
  got = await stepPairs(everyone, each5(["snapshot", "seek"]), "seek", () => L.emit("seek", { sessionId: S, position: 2500 }));
  for (const s of everyone) assert.equal(data(got, s, "seek").position, 2500);
  await stepPairs(everyone, each5(["snapshot", "stop"]), "stop", () => L.emit("stop", { sessionId: S }));

  got = await stepPairs(everyone, each5(["snapshot"]), "update_message by f1@B", () =>
    f1.emit("update_message", { sessionId: S, message: "from B" }),
  );
  for (const s of everyone) assert.equal(data(got, s, "snapshot").message, "from B");
  got = await stepPairs(everyone, each5(["chat_message"]), "chat_message by f3@B", () =>
    f3.emit("chat_message", { sessionId: S, message: "hello A", username: "F3" }),
  );
  for (const s of everyone) {
    assert.equal(data(got, s, "chat_message").message, "hello A");
    assert.equal(data(got, s, "chat_message").socketId, f3.id);
  }
  got = await stepPairs(everyone, each5(["role_changed"]), "role_changed notice by f2@A", () =>
    f2.emit("role_changed", { sessionId: S, role: "leader", previousRole: "follower" }),
  );
  for (const s of everyone) assert.equal(data(got, s, "role_changed").socketId, f2.id);

  got = await stepPairs(everyone, each5(["snapshot"]), "set_role leader by f1@B", () =>
    f1.emit("set_role", { sessionId: S, role: "leader" }),
  );
  for (const s of everyone) {
    assert.equal(data(got, s, "snapshot").leaderSocketId, f1.id);
    assert.equal(data(got, s, "snapshot").message, "Leader connected");
  }
  // The old leader on A is refused now; the new one on B drives A.
  mark(L);
  L.emit("set_tempo", { sessionId: S, tempo: 77 });
  await expectError(L, "NOT_LEADER");
  got = await stepPairs(everyone, each5(["snapshot"]), "set_tempo by the new leader f1@B", () =>
    f1.emit("set_tempo", { sessionId: S, tempo: 140 }),
  );
  for (const s of everyone) assert.equal(data(got, s, "snapshot").tempo, 140);

  got = await stepPairs(everyone, each5(["room_stats", "user_left"], new Map([[f2, []]])), "leave_session by f2@A", () =>
    f2.emit("leave_session", { sessionId: S }),
  );
  assert.equal(data(got, f1, "user_left").socketId, f2.id);
  assert.equal(data(got, f1, "user_left").memberCount, 4);
  const xid = x.id;
  got = await stepPairs(
    everyone,
    each5(["snapshot", "room_stats", "user_left"], new Map([[f2, []], [x, []]])),
    "x@B disconnects",
    () => x.disconnect(),
  );
  for (const s of [L, f1, f3]) {
    assert.equal(data(got, s, "user_left").socketId, xid);
    assert.equal(data(got, s, "user_left").memberCount, 3);
    assert.equal(data(got, s, "snapshot").members.length, 3);
  }
  await assertLive(A, B);
});

test("mixed session over two instances (E1, L2 on A; L1, E2 on B), driven by the enhanced leader on A: every row of section 5", async () => {
  const m = await mixedAcross(A.url, B.url);
  const S = m.sessionId;
  // member joined
  const e3 = await connect(B.url);
  let got = await step(
    m,
    "E3 joins on B",
    () => ackOk(e3, "session:join", { sessionId: S, displayName: "E3" }),
    ["session:member_update"],
    ["room_stats", "user_joined"],
  );
  for (const e of m.enhanced) assert.equal(data(got, e, "session:member_update").member.socketId, e3.id);
  for (const l of m.legacy) assert.equal(data(got, l, "user_joined").memberCount, 5);
  const l3 = await connect(A.url);
  got = await step(
    m,
    "L3 joins on A",
    () => join(l3, S, { displayName: "L3" }),
    ["session:member_update"],
    ["room_stats", "user_joined"],
  );
  for (const e of m.enhanced) assert.equal(data(got, e, "session:member_update").memberCount, 6);

  const walk = await enhancedLeaderWalk(m, step, "from B");
  assert.equal(data(walk.start, m.e2, "metronome:start").startTime, data(walk.start, m.e1, "metronome:start").startTime);
  assert.equal(data(walk.pause, m.e2, "metronome:stop").positionMs, data(walk.pause, m.e1, "metronome:stop").positionMs);
  for (const l of m.legacy) assert.equal(data(walk.chat, l, "chat_message").username, "E2");

  // member left (enhanced leave on B, legacy disconnect on A); the newcomers are quiet by now.
  got = await step(
    m,
    "E2@B session:leave",
    () => ackOk(m.e2, "session:leave", { sessionId: S }),
    ["session:member_update"],
    ["room_stats", "user_left"],
    new Map([[m.e2, []]]),
  );
  assert.deepEqual(data(got, m.e1, "session:member_update"), { sessionId: S, action: "left", socketId: m.e2.id, memberCount: 5 });
  const l2 = m.l2.id;
  got = await step(
    m,
    "L2@A disconnects",
    () => m.l2.disconnect(),
    ["session:member_update"],
    ["snapshot", "room_stats", "user_left"],
    new Map([
      [m.e2, []],
      [m.l2, []],
    ]),
  );
  assert.equal(data(got, m.e1, "session:member_update").socketId, l2);
  assert.equal(data(got, m.l1, "user_left").socketId, l2);
  await assertLive(A, B);
});

test("mixed session over two instances, driven by a legacy leader on B: every row of section 5", async () => {
  const m = await mixedAcross(A.url, B.url);
  const walk = await legacyLeaderWalk(m, step, m.l1 /* on B */, m.l2);
  for (const e of m.enhanced) assert.equal(data(walk.chat, e, "chat:message").displayName, "L2");
  await assertLive(A, B);
});

test("a leader's disconnect on A re-elects across instances: the earliest-joined remaining member (on B) leads, playback stops", async () => {
  const m = await mixedAcross(A.url, B.url);
  await step(m, "start", () => ackOk(m.e1, "metronome:start", { sessionId: m.sessionId }), ["metronome:start"], ["snapshot", "play"]);
  const e1 = m.e1.id;
  const got = await step(
    m,
    "E1@A disconnects",
    () => m.e1.disconnect(),
    ["leader:election", "session:state_sync", "session:member_update"],
    ["role_changed", "snapshot", "room_stats", "user_left"],
    new Map([[m.e1, []]]),
  );
  assert.deepEqual(data(got, m.e2, "leader:election"), {
    sessionId: m.sessionId,
    oldLeader: e1,
    newLeader: m.l1.id,
    reason: "leader_disconnected",
  });
  assert.equal(data(got, m.e2, "session:state_sync").isPlaying, false);
  for (const l of m.legacy) {
    const rc = data(got, l, "role_changed");
    assert.deepEqual([rc.socketId, rc.reason], [m.l1.id, "leader_disconnected"]);
    assert.equal(data(got, l, "snapshot").isPlaying, false);
    assert.equal(data(got, l, "user_left").newLeader, m.l1.id);
  }
  mark(m.l1, m.l2, m.e2);
  await expectNo(m.l2, "scroll_tick", 300);
  await expectNo(m.e2, "position:sync", 0);
});

test("leader hand-over by request across instances: requester on B, leader on A", async () => {
  const b = await bandAcross([A.url, B.url], 3);
  const [a, f1, f2] = b.members; // a@A, f1@B, f2@A
  f1.emit("request_leader", { sessionId: b.sessionId });
  const req = await waitFor(a, "leader_handoff_request", { requesterId: f1.id }, 3000);
  assert.equal(req.sessionId, b.sessionId);
  assert.equal((await waitFor(f1, "leader_request_sent", undefined, 3000)).currentLeader, a.id);
  mark(a, f1, f2);
  a.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: f1.id });
  for (const m of b.members) {
    const lc = await waitFor(m, "leader_changed", undefined, 3000);
    assert.equal(lc.newLeaderId, f1.id);
    assert.equal((await waitFor(m, "snapshot", { sessionId: b.sessionId }, 3000)).leaderSocketId, f1.id);
  }
  await waitFor(a, "leader_handoff_completed", undefined, 3000);
  await waitFor(f1, "leader_request_approved", undefined, 3000);
});

test("streams: each instance streams to its own sockets at the configured rates, once each, on one timeline", async () => {
  const m = await mixedAcross(A.url, B.url);
  const startAck = ackOk(m.e1, "metronome:start", { sessionId: m.sessionId });
  await startAck;
  const st = await waitFor(m.e2, "metronome:start", undefined, 3000);
  const plays = new Map();
  for (const l of m.legacy) plays.set(l, await waitFor(l, "play", undefined, 3000));
  await sleep(Math.max(0, st.startTime + 2500 - Date.now()));
  await ackOk(m.e1, "metronome:stop", { sessionId: m.sessionId });
  const from = st.startTime + 200;
  const to = from + 2000;
  const beatsOf = new Map();
  for (const l of m.legacy) {
    const play = plays.get(l);
    const ticks = received(l, "scroll_tick").map((e) => e.data);
    const win = ticks.filter((d) => d.serverTimestamp >= from && d.serverTimestamp < to);
    assert.ok(win.length >= 18 && win.length <= 22, `${win.length} scroll_tick in 2 s (10/s) on ${l === m.l1 ? "L1@B" : "L2@A"}`);
    const stamps = ticks.map((d) => d.serverTimestamp);
    assert.equal(new Set(stamps).size, stamps.length, "no scroll_tick twice");
    // The start is scheduled START_LEAD_MS ahead: play says where the song is at its serverTimestamp,
    // the start, and the position holds until then.
    assert.equal(play.serverTimestamp, st.startTime, "play is stamped with the scheduled start");
    for (const d of ticks) {
      const off = d.positionMs - play.position - Math.max(0, d.serverTimestamp - play.serverTimestamp);
      assert.ok(Math.abs(off) <= 15, `scroll_tick ${d.positionMs} at ${d.serverTimestamp} is ${off} ms off the timeline`);
    }
  }
  for (const e of m.enhanced) {
    const name = e === m.e1 ? "E1@A" : "E2@B";
    const ps = received(e, "position:sync").map((x) => x.data);
    const win = ps.filter((d) => d.serverTime >= from && d.serverTime < to);
    assert.ok(win.length >= 144 && win.length <= 176, `${win.length} position:sync in 2 s (80 Hz ± 10 %) on ${name}`);
    for (const d of ps) {
      if (d.serverTime < st.startTime) continue;
      const off = d.positionMs - st.positionMs - (d.serverTime - st.startTime);
      assert.ok(Math.abs(off) <= 3, `${name}: position:sync ${d.positionMs} at ${d.serverTime} is ${off} ms off the timeline`);
    }
    const beats = received(e, "metronome:beat")
      .map((x) => x.data)
      .filter((d) => d.beatTime >= st.startTime && d.beatTime < st.startTime + 2000);
    beatsOf.set(name, beats.map((d) => `${d.bar}.${d.beat}@${d.beatTime - st.startTime}`));
  }
  // Every instance sends its own members the same beats, each once: bar 1 beat 1 at startTime, then every 500 ms.
  const want = ["1.1@0", "1.2@500", "1.3@1000", "1.4@1500"];
  assert.deepEqual(
    Object.fromEntries(beatsOf),
    { "E1@A": want, "E2@B": want },
    "metronome:beat in the first 2 s at 120 BPM (bar.beat@ms after startTime)",
  );
  await assertLive(A, B);
});

/** Waits until the client either joined `S` (own snapshot listing it) or was refused with SESSION_FULL. */
async function legacyOutcome(c, S, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const e of events(c)) {
      if (e.event === "error" && e.data?.code === "SESSION_FULL") return "full";
      if (e.event === "snapshot" && e.data?.sessionId === S && e.data.members?.some((x) => x.socketId === c.id)) return "in";
      if (e.event === "error") return `error ${JSON.stringify(e.data)}`;
    }
    await sleep(20);
  }
  return "no answer";
}

async function enhancedOutcome(c, S) {
  const res = await ack(c, "session:join", { sessionId: S, create: true }, 5000).catch((e) => ({ timeout: e.message }));
  if (res?.ok === true) return "in";
  if (res?.ok === false && res.error?.code === "SESSION_FULL") return "full";
  return `unexpected ack ${JSON.stringify(res)}`;
}

for (const [round, enhancedEvery] of [
  [1, 0],
  [2, 0],
  [3, 2],
]) {
  const what = enhancedEvery ? "half legacy join_session, half enhanced session:join {create: true}" : "legacy join_session";
  test(`atomic joins (round ${round}, ${what}): 12 clients over two instances at once, max 8 → exactly 8 get in, all reach 8`, async () => {
    const S = sid("race");
    const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(i % 2 ? B.url : A.url)));
    const isEnh = (i) => enhancedEvery && Math.floor(i / 2) % enhancedEvery === 1;
    mark(...clients);
    const outcomes = await Promise.all(
      clients.map((c, i) => {
        if (isEnh(i)) return enhancedOutcome(c, S);
        c.emit("join_session", { sessionId: S, displayName: `R${i}` });
        return legacyOutcome(c, S);
      }),
    );
    const bad = outcomes.filter((o) => o !== "in" && o !== "full");
    assert.deepEqual(bad, [], `every join is either admitted or refused with SESSION_FULL: ${JSON.stringify(outcomes)}`);
    const inside = clients.filter((_, i) => outcomes[i] === "in");
    const outside = clients.filter((_, i) => outcomes[i] === "full");
    assert.equal(inside.length, 8, `admitted: ${inside.length} of 12 (${JSON.stringify(outcomes)})`);
    assert.equal(outside.length, 4);
    for (const [i, c] of clients.entries()) {
      if (outcomes[i] === "full" && !isEnh(i)) {
        const err = events(c).find((e) => e.event === "error").data;
        assert.equal(err.message, "Session at capacity (8 members)");
      }
    }
    await sleep(1000); // let every room broadcast land
    const insideIds = inside.map((c) => c.id).sort();
    for (const c of inside) {
      const i = clients.indexOf(c);
      if (isEnh(i)) {
        // Joins admitted at the same moment on different instances are announced by each instance
        // as it applies them, so their announcements may cross on the way; the counts they carry
        // are each exact for their own join, and the state the member then reads is the truth.
        const ups = received(c, "session:member_update").map((e) => e.data);
        const most = Math.max(...ups.map((u) => u.memberCount));
        assert.equal(most, 8, `session:member_update counts on ${c.id}: ${JSON.stringify(ups.map((u) => u.memberCount))}`);
        const st = await ackOk(c, "session:join", { sessionId: S });
        assert.deepEqual(st.session.members.map((x) => x.socketId).sort(), insideIds);
      } else {
        const stats = received(c, "room_stats").map((e) => e.data);
        const most = Math.max(...stats.map((st) => st.memberCount));
        assert.equal(most, 8, `room_stats counts on ${c.id}: ${JSON.stringify(stats.map((st) => st.memberCount))}`);
        const snap = await join(c, S, {}, 3000); // idempotent re-join: the state again
        assert.deepEqual(snap.members.map((x) => x.socketId).sort(), insideIds, "the 8 admitted, each once");
        assert.equal(snap.leaderSocketId !== null, true);
        assert.equal(snap.members.filter((x) => x.role === "leader").length, 1, "one leader");
      }
    }
    // The refused are not members.
    for (const c of outside) {
      mark(c);
      c.emit("update_message", { sessionId: S, message: "not mine" });
      await expectError(c, "NOT_A_MEMBER", 3000);
    }
    for (const c of clients) c.close();
    await assertLive(A, B);
  });
}

test("discovery: band:session_list on B lists a session created with session:create on A; a legacy client joins it through B", async () => {
  const a = await connect(A.url);
  const b = await connect(B.url);
  const bandId = sid("xbandid");
  const { sessionId } = await createSession(a, { bandId, sessionName: "Across", tempo: 132, displayName: "Creator" });
  const list = await ackOk(b, "band:session_list", { bandId });
  assert.equal(list.bandId, bandId);
  const found = list.sessions.find((s) => s.sessionId === sessionId);
  assert.ok(found, `session ${sessionId} not listed on B: ${JSON.stringify(list)}`);
  assert.deepEqual([found.sessionName, found.memberCount, found.isPlaying, found.tempo], ["Across", 1, false, 132]);
  // Without an ack it is emitted back.
  b.emit("band:session_list", { bandId });
  const pushed = await waitFor(b, "band:session_list", { bandId });
  assert.ok(pushed.sessions.some((s) => s.sessionId === sessionId));
  // The session is real on B: a legacy client joins it there.
  const l = await connect(B.url);
  const snap = await join(l, sessionId, { displayName: "Late" });
  assert.equal(snap.tempo, 132);
  assert.equal(snap.members.length, 2);
  assert.equal(snap.leaderSocketId, a.id);
  const list2 = await ackOk(a, "band:session_list", { bandId });
  assert.equal(list2.sessions.find((s) => s.sessionId === sessionId)?.memberCount, 2);
  await assertLive(A, B);
});

// ---- start-up against an unreachable or password-protected Redis ----

/** Spawns an instance that must fail: resolves with {code, elapsed, stderr}. */
async function mustFail(env) {
  const t0 = Date.now();
  const s = await spawnServer({ LEGACY_PING_INTERVAL_MS: "0", ...env });
  const res = await Promise.race([s.exited, sleep(8000).then(() => null)]);
  if (!res) {
    const live = await httpGet(`http://127.0.0.1:${s.port}/livez`).catch(() => null);
    s.proc.kill("SIGKILL");
    await s.exited;
    assert.fail(`still running 8 s after start (livez ${live?.status}); logs:\n${s.logs()}`);
  }
  const elapsed = Date.now() - t0;
  await Promise.race([s.closed, sleep(1000)]); // the last output
  return { ...res, elapsed, stderr: s.stderr(), logs: s.logs() };
}

let secured;
test("start-up: unreachable Redis (nothing listening) → exits non-zero within 8 s, stderr names the address and the reason", async () => {
  const port = await freePort();
  for (const env of [{ REDIS_URL: `redis://127.0.0.1:${port}` }, { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port) }]) {
    const r = await mustFail({ ...env, REDIS_KEY_PREFIX: keyPrefix() });
    assert.notEqual(r.code, 0, `exit code (${JSON.stringify(env)})`);
    assert.notEqual(r.code, null, `killed by ${r.signal}`);
    assert.match(r.stderr, /cannot connect to Redis at /, `stderr:\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot connect to Redis at \\S*127\\.0\\.0\\.1:${port}\\S*:? .*\\S`), `stderr names the address and a reason:\n${r.stderr}`);
  }
});

test("start-up: a wrong or missing password → exits non-zero within 8 s, stderr says why, the password is not echoed", async () => {
  secured = await startRedis({ password: "s3cretpw" });
  extra.push(secured);
  const base = `redis://127.0.0.1:${secured.port}`;
  const cases = [
    ["REDIS_PASSWORD=wr0ngpw", { REDIS_URL: base, REDIS_PASSWORD: "wr0ngpw" }],
    ["redis://:wr0ngpw@…", { REDIS_URL: `redis://:wr0ngpw@127.0.0.1:${secured.port}` }],
    ["REDIS_HOST/PORT + REDIS_PASSWORD=wr0ngpw", { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(secured.port), REDIS_PASSWORD: "wr0ngpw" }],
    ["no password", { REDIS_URL: base }],
  ];
  const results = await Promise.all(cases.map(([, env]) => mustFail({ ...env, REDIS_KEY_PREFIX: keyPrefix() })));
  for (const [i, r] of results.entries()) {
    const label = cases[i][0];
    assert.notEqual(r.code, 0, `${label}: exit code`);
    assert.notEqual(r.code, null, `${label}: killed by ${r.signal}`);
    assert.match(r.stderr, /cannot connect to Redis at /, `${label}: stderr:\n${r.stderr}`);
    assert.match(r.stderr, /WRONGPASS|NOAUTH|auth|password/i, `${label}: stderr gives the reason:\n${r.stderr}`);
    assert.ok(!r.logs.includes("wr0ngpw"), `${label}: the password appears in the output:\n${r.logs}`);
  }
});

test("start-up: the right password works (REDIS_URL with it, REDIS_URL + REDIS_PASSWORD, REDIS_HOST/PORT/PASSWORD/DB)", async () => {
  secured ??= await startRedis({ password: "s3cretpw" });
  if (!extra.includes(secured)) extra.push(secured);
  const prefix = keyPrefix();
  const envs = [
    { REDIS_URL: `redis://:s3cretpw@127.0.0.1:${secured.port}` },
    { REDIS_URL: `redis://127.0.0.1:${secured.port}`, REDIS_PASSWORD: "s3cretpw" },
    { REDIS_HOST: "127.0.0.1", REDIS_PORT: String(secured.port), REDIS_PASSWORD: "s3cretpw", REDIS_DB: "0" },
  ];
  // One after the other (simultaneous starts are the next test's subject).
  const servers = [];
  for (const e of envs) {
    const s = await startServer({ ...e, REDIS_KEY_PREFIX: prefix, LEGACY_PING_INTERVAL_MS: "0" });
    servers.push(s);
    extra.push(s);
  }
  for (const s of servers) {
    const h = await httpGet(`${s.url}/health`);
    assert.equal(h.body.redis, "connected", `${s.url}: ${h.text}`);
    assert.equal((await httpGet(`${s.url}/readyz`)).status, 200);
    assert.ok(!s.logs().includes("s3cretpw"), `the password appears in the log:\n${s.logs()}`);
  }
  // They form one service: a session joined on the first is seen on the third.
  const [x, y] = [await connect(servers[0].url), await connect(servers[2].url)];
  const S = sid("pw");
  await join(x, S);
  mark(x);
  const snap = await join(y, S);
  assert.equal(snap.members.length, 2);
  await waitFor(x, "user_joined", { memberCount: 2 }, 3000);
  await assertLive(...servers);
});

test("instances of one service started at the same moment all come up (4 rounds of 3 simultaneous starts)", async () => {
  const failures = [];
  for (let round = 1; round <= 4; round++) {
    const env = redisEnv(cluster.redis, keyPrefix());
    const res = await Promise.allSettled([0, 1, 2].map(() => startServer(env)));
    for (const r of res) {
      if (r.status === "fulfilled") extra.push(r.value);
      else failures.push(`round ${round}: ${r.reason.message.split("\n").filter((l) => l.startsWith("bandsync-server")).join(" ") || r.reason.message.slice(0, 300)}`);
    }
    const up = res.filter((r) => r.status === "fulfilled").map((r) => r.value);
    for (const s of up) assert.equal((await httpGet(`${s.url}/health`)).body.redis, "connected");
    await Promise.all(up.map((s) => s.stop()));
  }
  assert.deepEqual(failures, [], `${failures.length} of 12 simultaneous starts failed`);
});

test("leader-only actions stay leader-only: every one, in both vocabularies, from followers on either instance, is refused with NOT_LEADER and changes nothing", async () => {
  const m = await mixedAcross(A.url, B.url);
  const S = m.sessionId;
  const before = await currentState(m.e1, S);
  const legacyControls = [
    ["set_tempo", { tempo: 99 }],
    ["tempo_change", { tempo: 98, fadeTime: 100 }],
    ["tempo_changed", { tempo: 97 }],
    ["play", {}],
    ["pause", {}],
    ["stop", {}],
    ["seek", { position: 5000 }],
    ["beat_sync", { beatPosition: 3, masterTime: Date.now() }],
    ["position_sync", { positionMs: 4000, timestamp: Date.now() }],
    ["approve_leader_request", { requesterId: m.l1.id }],
    ["deny_leader_request", { requesterId: m.l1.id }],
  ];
  const enhancedControls = [
    ["metronome:start", { tempo: 150 }],
    ["metronome:stop", { reset: true }],
    ["tempo:change", { newTempo: 151, rampDurationMs: 1000 }],
    ["position:seek", { positionMs: 6000 }],
    ["role:transfer", { toSocketId: m.l2.id }],
  ];
  mark(...m.all);
  // L1 and E2 sit on B, L2 on A; the leader E1 is on A.
  for (const follower of [m.l1, m.e2, m.l2]) {
    for (const [event, payload] of legacyControls) {
      const from = seqOf(follower);
      follower.emit(event, { sessionId: S, ...payload });
      await expectError(follower, "NOT_LEADER", 3000, from);
    }
    for (const [event, payload] of enhancedControls) {
      const res = await ack(follower, event, { sessionId: S, ...payload }, 3000);
      assert.equal(res.error?.code, "NOT_LEADER", `${event} by ${m.nameOf(follower)}: ${JSON.stringify(res)}`);
    }
  }
  for (const s of m.all) {
    await expectNo(s, "snapshot", 100);
    await expectNo(s, "session:state_sync", 100);
  }
  const after = await currentState(m.e1, S);
  assert.deepEqual(enhancedStateView(after), enhancedStateView(before));
});
