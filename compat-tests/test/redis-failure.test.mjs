// Failures of a Redis-backed service: an instance restarted after kill -9 (sessions survive, clients
// reconnect by themselves), an instance lost for good (its members leave the sessions on the others),
// and Redis outages (SIGSTOP: instances keep serving their own sockets, report degraded, log it once,
// and when Redis returns merge what each did into the stored sessions: a band split over two
// instances keeps both sides' changes, a join the stored session refuses is undone). The scenarios
// use separate Redis servers and instances and run concurrently.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, httpGet, sleep } from "../lib/server.mjs";
import { startRedis, keyPrefix } from "../lib/redis.mjs";
import { redisEnv, assertLive, pollHttp } from "../lib/cluster.mjs";
import { connect, closeAll, sid, mark, waitFor, waitForEntry, seqOf, join, events, syncState, expectNo, expectError } from "../lib/client.mjs";
import { enhancedJoin, received } from "../lib/enhanced.mjs";
import { parsePrometheusText, totalOf } from "../lib/prometheus.mjs";

const owned = []; // everything to stop in after(): instances and redis-servers
const own = (x) => (owned.push(x), x);
after(async () => {
  closeAll();
  // Instances first (a paused Redis is resumed by its stop()).
  await Promise.all(owned.filter((x) => "url" in x && !("host" in x)).map((x) => x.stop()));
  await Promise.all(owned.filter((x) => "host" in x).map((x) => x.stop()));
});

const countLines = (text, needle) => text.split("\n").filter((l) => l.includes(needle)).length;

/** Resolves with the first own-join snapshot of `socket` for `S` at or after event index `from`. */
function ownSnapshot(socket, S, from, timeoutMs) {
  return waitForEntry(
    socket,
    "snapshot",
    (d) => d.sessionId === S && d.members?.some((m) => m.socketId === socket.id),
    timeoutMs,
    from,
  );
}

describe("Redis failures", { concurrency: true }, () => {
  test("restart survival: kill -9 a single instance, restart it on the same port; clients reconnect and rejoin, the session is intact and still playing", async (t) => {
    const redis = own(await startRedis());
    const env = redisEnv(redis, keyPrefix());
    const first = own(await startServer(env));
    const S = sid("restart");
    const names = ["Leader", "F1", "F2"];
    const clients = [];
    for (const name of names) {
      const c = await connect(first.url, {
        reconnection: true,
        reconnectionDelay: 200,
        reconnectionDelayMax: 800,
        timeoutMs: 3000,
      });
      await join(c, S, { displayName: name });
      // Like the app: join again on every (re)connect.
      c.on("connect", () => c.emit("join_session", { sessionId: S, displayName: name }));
      clients.push(c);
    }
    const [leader, f1, f2] = clients;
    const message = "Chorus x2, then bridge";
    leader.emit("set_tempo", { sessionId: S, tempo: 90 });
    await waitFor(f2, "snapshot", { tempo: 90 });
    leader.emit("update_message", { sessionId: S, message });
    await waitFor(f2, "snapshot", { message });
    mark(f1);
    leader.emit("play", { sessionId: S });
    const play = await waitFor(f1, "play", { sessionId: S });
    await waitFor(f1, "scroll_tick");
    await sleep(700);

    const port = first.port;
    const marks = clients.map((c) => seqOf(c));
    await first.kill();
    await Promise.all(clients.map((c) => waitForEntry(c, "$disconnect", undefined, 3000, marks[clients.indexOf(c)])));
    const second = own(await startServer(env, { port }));
    t.diagnostic(`restarted on ${port}`);

    // Each client reconnects by itself and re-joins; wait for each one's own snapshot.
    const back = await Promise.all(clients.map((c, i) => ownSnapshot(c, S, marks[i], 10_000)));
    // The server's order of the re-joins is what counts: the first back saw the fewest members
    // (local arrival order can differ, the three clients share one event loop).
    const order = back
      .map((e, i) => ({ e, c: clients[i], name: names[i] }))
      .sort((x, y) => x.e.data.members.length - y.e.data.members.length || x.e.at - y.e.at);
    const firstBack = order[0];
    t.diagnostic(`first back: ${firstBack.name}; members seen on rejoin: ${order.map((o) => `${o.name}:${o.e.data.members.length}`).join(", ")}`);
    for (const { e, c, name } of order) {
      const snap = e.data;
      assert.equal(snap.tempo, 90, `${name}: tempo after the restart`);
      assert.equal(snap.message, message, `${name}: message after the restart`);
      assert.equal(snap.isPlaying, true, `${name}: isPlaying after the restart`);
      const expected = play.position + (snap.serverTimestamp - play.serverTimestamp);
      assert.ok(
        Math.abs(snap.position - expected) <= 300,
        `${name}: position ${snap.position} at ${snap.serverTimestamp}, expected ≈ ${expected} (play at ${play.serverTimestamp})`,
      );
      assert.ok(snap.members.some((m) => m.socketId === c.id));
    }
    const fb = firstBack.e.data;
    assert.deepEqual(
      fb.members.map((m) => m.socketId),
      [firstBack.c.id],
      `the first one back finds itself alone (no members left over from before the kill): ${JSON.stringify(fb.members)}`,
    );
    assert.equal(fb.leaderSocketId, firstBack.c.id, "the first one back leads");

    // Everyone back: exactly the three new sockets, one leader; ticks run on the timeline.
    await sleep(300);
    const probe = await connect(second.url);
    const seen = await join(probe, S, { displayName: "Probe" });
    assert.deepEqual(
      seen.members.map((m) => m.socketId).sort(),
      [...clients.map((c) => c.id), probe.id].sort(),
      "members after everyone rejoined",
    );
    assert.equal(seen.leaderSocketId, firstBack.c.id);
    assert.equal(seen.isPlaying, true);
    probe.close();
    const other = order[1].c;
    mark(other);
    const tick = await waitFor(other, "scroll_tick", { sessionId: S }, 2000);
    const off = tick.positionMs - play.position - (tick.serverTimestamp - play.serverTimestamp);
    assert.ok(Math.abs(off) <= 300, `scroll_tick after the restart is ${off} ms off the timeline`);
    // The new leader leads.
    mark(other);
    firstBack.c.emit("set_tempo", { sessionId: S, tempo: 96 });
    await waitFor(other, "snapshot", { tempo: 96 }, 2000);
    for (const c of clients) c.close();
    await assertLive(second);
  });

  test("instance loss: kill -9 instance A; within 15 s B's members see A's members leave (\"instance lost\"), the earliest remaining member leads, playback stops", async (t) => {
    const redis = own(await startRedis());
    const env = redisEnv(redis, keyPrefix());
    const A = own(await startServer(env));
    const B = own(await startServer(env));
    const S = sid("loss");
    // Join order: LA@A (leader), LB1@B, EA@A (enhanced), EB@B (enhanced), LB3@B.
    const LA = await connect(A.url);
    const LB1 = await connect(B.url);
    const EA = await connect(A.url);
    const EB = await connect(B.url);
    const LB3 = await connect(B.url);
    await join(LA, S, { displayName: "LA" });
    await join(LB1, S, { displayName: "LB1" });
    await enhancedJoin(EA, S, { displayName: "EA" });
    await enhancedJoin(EB, S, { displayName: "EB" });
    await join(LB3, S, { displayName: "LB3" });
    await waitFor(LB1, "user_joined", { memberCount: 5 }, 3000);
    LA.emit("play", { sessionId: S });
    await waitFor(LB3, "scroll_tick", { sessionId: S }, 3000);
    await waitFor(EB, "position:sync", { sessionId: S }, 3000);
    const [laId, eaId] = [LA.id, EA.id]; // (a socket's id is gone once it is disconnected)
    const lost = [laId, eaId];
    const survivors = [LB1, EB, LB3];
    mark(...survivors);
    const t0 = Date.now();
    await A.kill();

    // Legacy survivors: a user_left per lost member, with the reason.
    const deadline = t0 + 15_000;
    for (const l of [LB1, LB3]) {
      for (const id of lost) {
        const ul = await waitFor(l, "user_left", { socketId: id }, Math.max(1, deadline - Date.now()));
        assert.equal(ul.disconnectReason, "instance lost", `user_left for ${id === laId ? "LA" : "EA"}: ${JSON.stringify(ul)}`);
        assert.equal(ul.sessionId ?? S, S);
      }
    }
    t.diagnostic(`B noticed the loss after ${Date.now() - t0} ms`);
    for (const id of lost) await waitFor(EB, "session:member_update", { action: "left", socketId: id }, Math.max(1, deadline - Date.now()));
    await sleep(300); // the rest of those broadcasts
    for (const l of [LB1, LB3]) {
      const ev = events(l).filter((e) => !["scroll_tick", "$disconnect"].includes(e.event));
      const i = ev.findIndex((e) => e.event === "role_changed");
      assert.ok(i >= 0, `no role_changed: ${ev.map((e) => e.event).join(", ")}`);
      assert.deepEqual(
        [ev[i].data.socketId, ev[i].data.role, ev[i].data.previousRole, ev[i].data.reason],
        [LB1.id, "leader", "follower", "leader_disconnected"],
      );
      const snap = ev.slice(i + 1).find((e) => e.event === "snapshot");
      assert.ok(snap, `a snapshot after role_changed: ${ev.map((e) => e.event).join(", ")}`);
      assert.equal(ev[i + 1].event, "snapshot", `role_changed is followed by snapshot: ${ev.map((e) => e.event).join(", ")}`);
      assert.equal(snap.data.leaderSocketId, LB1.id);
      assert.equal(snap.data.isPlaying, false);
      const last = ev.filter((e) => e.event === "snapshot").at(-1).data;
      assert.deepEqual(last.members.map((m) => m.socketId).sort(), survivors.map((s) => s.id).sort());
      const leftFor = ev.filter((e) => e.event === "user_left").map((e) => e.data.socketId);
      assert.deepEqual(leftFor.sort(), [...lost].sort(), "one user_left per lost member");
      const uls = ev.filter((e) => e.event === "user_left").map((e) => e.data);
      assert.equal(uls.at(-1).memberCount, 3);
    }
    const el = received(EB, "leader:election").map((e) => e.data);
    assert.deepEqual(el, [{ sessionId: S, oldLeader: laId, newLeader: LB1.id, reason: "leader_disconnected" }]);
    const lastSync = received(EB, "session:state_sync").at(-1)?.data;
    assert.equal(lastSync?.leaderSocketId, LB1.id);
    assert.equal(lastSync?.isPlaying, false);
    // Playback stopped: no more ticks on B; the new leader leads.
    assert.equal((await syncState(LB3, S)).isPlaying, false);
    mark(LB3, EB);
    await sleep(400);
    assert.equal(received(LB3, "scroll_tick").length, 0, "scroll_tick after playback stopped");
    assert.equal(received(EB, "position:sync").length, 0, "position:sync after playback stopped");
    LB1.emit("set_tempo", { sessionId: S, tempo: 101 });
    assert.equal((await waitFor(EB, "tempo:change", undefined, 2000)).newTempo, 101);
    assert.equal(A.proc.exitCode === null && A.proc.signalCode === "SIGKILL", true);
    for (const c of survivors) c.close();
    await assertLive(B);
  });

  test("a band split by an outage over two instances: both sides' changes are merged when Redis returns, nobody's seat is lost", async (t) => {
    const redis = own(await startRedis());
    const env = redisEnv(redis, keyPrefix());
    const A = own(await startServer(env));
    const B = own(await startServer(env));
    const S = sid("split");
    const LA = await connect(A.url);
    const FB = await connect(B.url);
    await join(LA, S, { displayName: "LA" });
    await join(FB, S, { displayName: "FB" });
    const [JA, JB] = [await connect(A.url), await connect(B.url)];

    redis.pause();
    try {
      // Each instance serves the band from its own copy: a newcomer on each side, a tempo change
      // on A's side, a message on B's side (the first command on each waits for Redis's timeout).
      LA.emit("set_tempo", { sessionId: S, tempo: 140 });
      await waitFor(LA, "snapshot", { tempo: 140 }, 4000);
      const onA = await join(JA, S, { displayName: "JA" }, 4000);
      FB.emit("update_message", { sessionId: S, message: "from B's side" });
      await waitFor(FB, "snapshot", { message: "from B's side" }, 4000);
      const onB = await join(JB, S, { displayName: "JB" }, 4000);
      assert.deepEqual(onA.members.map((m) => m.socketId).sort(), [LA.id, FB.id, JA.id].sort(), "A's copy");
      assert.deepEqual(onB.members.map((m) => m.socketId).sort(), [LA.id, FB.id, JB.id].sort(), "B's copy");
    } finally {
      redis.resume();
    }

    // Once both have written back, either instance shows the union of what both sides did.
    const everyone = [LA.id, FB.id, JA.id, JB.id].sort();
    const members = (state) => state.members.map((m) => m.socketId).sort();
    const merged = (r) =>
      r.status === 200 && JSON.stringify(members(r.body)) === JSON.stringify(everyone) && r.body.message === "from B's side";
    for (const [name, s] of [
      ["A", A],
      ["B", B],
    ]) {
      const seen = (await pollHttp(`${s.url}/api/sessions/${S}`, merged, 8000)).body;
      assert.deepEqual(members(seen), everyone, `members seen through ${name}`);
      assert.equal(seen.tempo, 140, `tempo seen through ${name}`);
      assert.equal(seen.message, "from B's side", `message seen through ${name}`);
    }
    // Nobody was unseated, and the band works across the instances again.
    mark(JA, JB);
    LA.emit("set_tempo", { sessionId: S, tempo: 120 });
    await waitFor(JB, "snapshot", { tempo: 120 }, 3000);
    await waitFor(JA, "snapshot", { tempo: 120 }, 3000);
    await expectNo(JA, "error", 100);
    await expectNo(JB, "error", 100);
    for (const c of [LA, FB, JA, JB]) c.close();
    await assertLive(A, B);
  });

  test("a join made during an outage to a locked session the instance never saw: refused when Redis returns, the joiner is unseated and hears the session no more", async (t) => {
    const redis = own(await startRedis());
    const env = redisEnv(redis, keyPrefix());
    const B = own(await startServer(env));
    const S = sid("locked");
    const owner = await connect(B.url);
    await join(owner, S, { displayName: "Owner", passcode: "violet" });
    // A starts after the session was announced: it has never seen it.
    const A = own(await startServer(env));
    const ghost = await connect(A.url);
    redis.pause();
    let during;
    try {
      // A cannot check the session: it serves an open copy of its own (the first command waits
      // for Redis's timeout).
      during = await join(ghost, S, { displayName: "Ghost" }, 6000);
    } finally {
      redis.resume();
    }
    assert.deepEqual(during.members.map((m) => m.socketId), [ghost.id]);
    const tResume = Date.now();

    // The write-back replays the join onto the stored session, which refuses it.
    const unseated = await waitFor(ghost, "error", { code: "NOT_A_MEMBER" }, 10_000);
    t.diagnostic(`unseated ${Date.now() - tResume} ms after SIGCONT: ${unseated.message}`);
    await pollHttp(`${A.url}/health`, (r) => r.body?.redis === "connected", 3000);
    assert.ok(A.stdout().includes("the stored session refused"), "A logs the refused change");

    // The session is as its owner left it: locked, one member.
    const intruder = await connect(B.url);
    intruder.emit("join_session", { sessionId: S });
    await expectError(intruder, "UNAUTHORIZED", 3000);
    const friend = await connect(A.url);
    const seen = await join(friend, S, { displayName: "Friend", passcode: "violet" }, 3000);
    assert.deepEqual(seen.members.map((m) => m.socketId).sort(), [owner.id, friend.id].sort());

    // The ghost hears nothing more of it, on either instance's broadcasts.
    mark(ghost, friend);
    owner.emit("update_message", { sessionId: S, message: "members only" });
    await waitFor(friend, "snapshot", { message: "members only" }, 3000);
    await expectNo(ghost, "snapshot", 300);
    assert.deepEqual(events(ghost).filter((e) => e.data?.sessionId === S), []);
    // A seats the friend alone: the ghost's seat was given back, once, and closing gives back the rest.
    const members = (r) => totalOf(parsePrometheusText(r.text), "bandsync_members");
    assert.equal(members(await httpGet(`${A.url}/metrics`)), 1, "bandsync_members on A");
    for (const c of [owner, ghost, intruder, friend]) c.close();
    await pollHttp(`${A.url}/metrics`, (r) => members(r) === 0, 3000);
    await assertLive(A, B);
  });

  test("Redis outage (SIGSTOP 10 s): instances keep serving their sockets, report degraded once, and write back after SIGCONT", async (t) => {
    const redis = own(await startRedis());
    const env = redisEnv(redis, keyPrefix());
    const A = own(await startServer(env));
    const B = own(await startServer(env));
    const S = sid("outage");
    const S2 = sid("outageB");
    const [LA, FA, EA] = [await connect(A.url), await connect(A.url), await connect(A.url)];
    const [LB, FB] = [await connect(B.url), await connect(B.url)];
    await join(LA, S, { displayName: "LA" });
    await join(FA, S, { displayName: "FA" });
    await enhancedJoin(EA, S, { displayName: "EA" });
    await join(LB, S2, { displayName: "LB" });
    await join(FB, S2, { displayName: "FB" });
    LA.emit("set_tempo", { sessionId: S, tempo: 100 });
    await waitFor(EA, "tempo:change", { newTempo: 100 });
    for (const s of [A, B]) {
      const h = await httpGet(`${s.url}/health`);
      assert.equal(h.body.redis, "connected");
      assert.equal(h.body.status, "healthy");
    }
    assert.equal(countLines(A.stdout(), "redis unreachable"), 0);

    mark(LA, FA, EA, LB, FB);
    redis.pause();
    const tPause = Date.now();
    try {
      // The first change may wait for the command to time out (≤ ~2 s)...
      let t1 = Date.now();
      LA.emit("set_tempo", { sessionId: S, tempo: 110 });
      await waitFor(FA, "snapshot", { tempo: 110 }, 3500);
      assert.equal((await waitFor(EA, "tempo:change", undefined, 1000)).newTempo, 110);
      const firstMs = Date.now() - t1;
      // ...later ones are not held up per event.
      t1 = Date.now();
      LA.emit("play", { sessionId: S });
      await waitFor(FA, "play", { sessionId: S }, 1500);
      await waitFor(EA, "metronome:start", { sessionId: S }, 1500);
      const playMs = Date.now() - t1;
      t1 = Date.now();
      LA.emit("update_message", { sessionId: S, message: "during the outage" });
      const snap = await waitFor(FA, "snapshot", { message: "during the outage" }, 1500);
      await waitFor(EA, "session:state_sync", { message: "during the outage" }, 1500);
      const msgMs = Date.now() - t1;
      assert.equal(snap.tempo, 110);
      assert.equal(snap.isPlaying, true);
      // Streams keep running on A.
      mark(FA, EA);
      await waitFor(FA, "scroll_tick", { sessionId: S }, 1000);
      await waitFor(EA, "position:sync", { sessionId: S }, 1000);
      // B's own session works too.
      t1 = Date.now();
      LB.emit("set_tempo", { sessionId: S2, tempo: 130 });
      await waitFor(FB, "snapshot", { tempo: 130 }, 3500);
      const bMs = Date.now() - t1;
      t.diagnostic(`during the outage: set_tempo ${firstMs} ms, play ${playMs} ms, update_message ${msgMs} ms; on B set_tempo ${bMs} ms`);

      for (const s of [A, B]) {
        const h = await pollHttp(`${s.url}/health`, (r) => r.body?.redis === "disconnected", 4000);
        assert.equal(h.body.status, "degraded", `${s.url}/health during the outage: ${h.text}`);
        await pollHttp(`${s.url}/readyz`, (r) => r.status === 503, 4000);
      }
      // More events during the outage do not log again.
      LA.emit("update_message", { sessionId: S, message: "during the outage" });
      FA.emit("chat_message", { sessionId: S, message: "still here" });
      await waitFor(EA, "chat:message", { message: "still here" }, 1500);
      const left = tPause + 10_000 - Date.now();
      assert.ok(left > 0, `the outage checks took longer than the 10 s outage (${-left} ms over)`);
      await sleep(left);
      // Still degraded at the end of the outage.
      assert.equal((await httpGet(`${A.url}/readyz`)).status, 503, "/readyz on A at the end of the outage");
    } finally {
      redis.resume();
    }
    const tResume = Date.now();
    for (const s of [A, B]) {
      await pollHttp(`${s.url}/health`, (r) => r.body?.redis === "connected" && r.body?.status === "healthy", 6000);
      await pollHttp(`${s.url}/readyz`, (r) => r.status === 200, 3000);
    }
    t.diagnostic(`both healthy ${Date.now() - tResume} ms after SIGCONT`);
    for (const [name, s] of [
      ["A", A],
      ["B", B],
    ]) {
      const out = s.stdout();
      assert.equal(countLines(out, "redis unreachable"), 1, `${name}: lines with "redis unreachable" in the log:\n${out.split("\n").filter((l) => /redis/i.test(l)).join("\n")}`);
      assert.ok(out.includes("redis reachable again"), `${name}: no "redis reachable again" in the log:\n${out.split("\n").filter((l) => /redis/i.test(l)).join("\n")}`);
    }

    // The changes made during the outage are in Redis: joining through the other instance shows them.
    const NB = await connect(B.url);
    let seen = await join(NB, S, { displayName: "NB" }, 3000);
    for (const deadline = Date.now() + 4000; seen.tempo !== 110 && Date.now() < deadline; ) {
      await sleep(250);
      seen = await join(NB, S, {}, 3000); // an idempotent re-join re-sends the state
    }
    assert.equal(seen.tempo, 110, `tempo seen through B after the outage: ${JSON.stringify(seen)}`);
    assert.equal(seen.message, "during the outage");
    assert.equal(seen.isPlaying, true);
    assert.deepEqual(seen.members.map((m) => m.socketId).sort(), [LA.id, FA.id, EA.id, NB.id].sort());
    assert.equal(seen.leaderSocketId, LA.id);
    const NA = await connect(A.url);
    const seen2 = await join(NA, S2, { displayName: "NA" }, 3000);
    assert.equal(seen2.tempo, 130, "B's change during the outage, seen through A");
    // Cross-instance delivery works again.
    mark(NB, NA);
    LA.emit("set_tempo", { sessionId: S, tempo: 115 });
    await waitFor(NB, "snapshot", { tempo: 115 }, 3000);
    LB.emit("update_message", { sessionId: S2, message: "back" });
    await waitFor(NA, "snapshot", { message: "back" }, 3000);
    for (const c of [LA, FA, EA, LB, FB, NB, NA]) c.close();
    await assertLive(A, B);
  });
});
