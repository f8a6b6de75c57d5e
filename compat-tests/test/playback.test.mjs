// set_tempo, play, pause, stop, seek, scroll_tick, tempo_change, tempo_changed, beat_sync, position_sync.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import {
  connect,
  sid,
  mark,
  sleep,
  waitFor,
  waitForEntry,
  waitForN,
  expectNo,
  expectError,
  join,
  band,
  names,
  events,
  syncState,
} from "../lib/client.mjs";
import { assertSnapshot, assertTimestamp, stateView, assertStampedSince } from "../lib/shapes.mjs";

const server = useServer(NO_RATE_LIMITS);

/** Leader emits `event`, every member gets snapshot then `event`; returns [{snapshot, ev}] per member. */
async function leaderDoes(b, event, payload, timeoutMs = 2000) {
  mark(...b.members);
  b.leader.emit(event, { sessionId: b.sessionId, ...payload });
  return Promise.all(
    b.members.map(async (m) => {
      const snap = await waitForEntry(m, "snapshot", { sessionId: b.sessionId }, timeoutMs);
      const ev = await waitForEntry(m, event, { sessionId: b.sessionId }, timeoutMs);
      assert.ok(snap.index < ev.index, `snapshot before ${event} on ${m.id}: ${names(m)}`);
      assertSnapshot(snap.data);
      return { snapshot: snap.data, ev: ev.data };
    }),
  );
}

test("set_tempo by the leader: room snapshot with the new tempo (fractions allowed, 20 and 400 inclusive)", async () => {
  const b = await band(server.url, 2);
  for (const tempo of [90, 92.5, 20, 400]) {
    mark(...b.members);
    b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo });
    for (const m of b.members) {
      const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId });
      assert.equal(snap.tempo, tempo);
      assert.equal(snap.tempoBpm, tempo);
    }
  }
  const st = await syncState(b.followers[0], b.sessionId);
  assert.equal(st.tempoBpm, 400);
});

test("a follower's set_tempo is refused with NOT_LEADER and nobody's tempo changes", async () => {
  const b = await band(server.url, 3);
  const [leader, f1, f2] = b.members;
  const before = stateView(await join(leader, b.sessionId));
  mark(...b.members);
  f1.emit("set_tempo", { sessionId: b.sessionId, tempo: 150 });
  await expectError(f1, "NOT_LEADER");
  for (const m of b.members) await expectNo(m, "snapshot", m === leader ? 300 : 0);
  const st = await syncState(f2, b.sessionId);
  assert.equal(st.tempoBpm, 120);
  const after = stateView(await join(f2, b.sessionId));
  assert.deepEqual(after, before);
  assert.equal(after.tempo, 120);
});

test("followers cannot drive playback: play, pause, stop, seek, tempo_change, tempo_changed, beat_sync, position_sync → NOT_LEADER", async () => {
  const b = await band(server.url, 2);
  const f = b.followers[0];
  const payloads = {
    play: {},
    pause: {},
    stop: {},
    seek: { position: 1000 },
    tempo_change: { tempo: 100 },
    tempo_changed: { tempo: 100 },
    beat_sync: { beatPosition: 1, masterTime: Date.now() },
    position_sync: { positionMs: 1000, timestamp: Date.now() },
  };
  mark(b.leader);
  for (const [event, payload] of Object.entries(payloads)) {
    mark(f);
    f.emit(event, { sessionId: b.sessionId, ...payload });
    await expectError(f, "NOT_LEADER").catch((e) => {
      throw new Error(`${event}: ${e.message}`);
    });
  }
  await sleep(150);
  assert.deepEqual(names(b.leader), [], "the leader received nothing");
  const st = await syncState(f, b.sessionId);
  assert.deepEqual([st.positionMs, st.tempoBpm, st.isPlaying], [0, 120, false]);
});

test("play: every member gets snapshot then play, then scroll_tick ~every 100 ms tracking the wall clock within 15 ms over 3 s", async () => {
  const b = await band(server.url, 3);
  const t0 = Date.now();
  const res = await leaderDoes(b, "play", {});
  for (const { snapshot, ev } of res) {
    assert.equal(snapshot.isPlaying, true);
    assert.equal(ev.sessionId, b.sessionId);
    assert.equal(ev.tempoBpm, 120);
    assert.ok(Number.isInteger(ev.position) && ev.position >= 0 && ev.position < 100, `play.position ${ev.position}`);
    assertTimestamp(ev.serverTimestamp, "play.serverTimestamp");
    // A legacy play starts at once, whatever START_LEAD_MS (250 by default) gives enhanced starts.
    assert.ok(ev.serverTimestamp >= t0 - 50 && ev.serverTimestamp <= Date.now(), `play at ${ev.serverTimestamp}, sent at ${t0}`);
  }
  await sleep(3000);
  for (const m of b.members) {
    const ticks = events(m).filter((e) => e.event === "scroll_tick");
    assert.ok(ticks.length >= 25 && ticks.length <= 33, `${ticks.length} ticks in ~3 s on ${m.id}`);
    for (const { data } of ticks) {
      assert.equal(data.sessionId, b.sessionId);
      assert.equal(data.tempoBpm, 120);
      assert.ok(Number.isInteger(data.positionMs), `positionMs ${data.positionMs} must be an integer`);
      assert.ok(Number.isInteger(data.serverTimestamp), `serverTimestamp must be an integer`);
    }
    const [first] = ticks;
    const last = ticks.at(-1);
    const span = last.data.serverTimestamp - first.data.serverTimestamp;
    assert.ok(span >= 2400, `ticks span ${span} ms of server time`);
    const intervals = ticks.slice(1).map((t, i) => t.data.serverTimestamp - ticks[i].data.serverTimestamp);
    const mean = intervals.reduce((x, y) => x + y, 0) / intervals.length;
    assert.ok(mean >= 90 && mean <= 110, `mean tick interval ${mean} ms`);
    for (const t of ticks) {
      const dPos = t.data.positionMs - first.data.positionMs;
      const dServer = t.data.serverTimestamp - first.data.serverTimestamp;
      assert.ok(Math.abs(dPos - dServer) <= 15, `positionMs delta ${dPos} vs serverTimestamp delta ${dServer}`);
    }
    // Against the local clock: offset = local receive time - positionMs. Delivery delay only ever adds
    // to it, so compare the smallest offsets (least delayed ticks) of the first and last second: no drift
    // beyond 15 ms over the 3 s; and the typical tick is not more than 15 ms behind the best one.
    const offsets = ticks.map((t) => t.at - t.data.positionMs);
    const minOf = (xs) => Math.min(...xs);
    const drift = minOf(offsets.slice(-10)) - minOf(offsets.slice(0, 10));
    assert.ok(Math.abs(drift) <= 15, `positionMs drifted ${drift} ms against the local clock over ${span} ms`);
    const lateness = offsets.map((o) => o - minOf(offsets)).sort((x, y) => x - y);
    const median = lateness[Math.floor(lateness.length / 2)];
    assert.ok(median <= 15, `median tick lateness vs local clock ${median} ms (all: ${lateness})`);
    // Position is the timeline at serverTimestamp: positionMs ≈ serverTimestamp - play time.
    const playTs = res[0].ev.serverTimestamp;
    const playPos = res[0].ev.position;
    for (const t of ticks) {
      const expected = playPos + (t.data.serverTimestamp - playTs);
      assert.ok(Math.abs(t.data.positionMs - expected) <= 15, `positionMs ${t.data.positionMs} vs timeline ${expected}`);
    }
  }
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("pause freezes the position and stops ticks", async () => {
  const b = await band(server.url, 2);
  await leaderDoes(b, "play", {});
  await sleep(500);
  const lastTick = events(b.followers[0])
    .filter((e) => e.event === "scroll_tick")
    .at(-1);
  assert.ok(lastTick, "ticks before pause");
  const res = await leaderDoes(b, "pause", {});
  for (const { snapshot, ev } of res) {
    assert.equal(snapshot.isPlaying, false);
    assert.equal(ev.sessionId, b.sessionId);
    assert.ok(Number.isInteger(ev.position));
    assert.ok(ev.position >= 450 && ev.position <= 700, `pause position ${ev.position} after ~500 ms of play`);
    assert.ok(ev.position >= lastTick.data.positionMs, "pause position not behind the last tick");
    assert.equal(snapshot.position, ev.position);
    assertTimestamp(ev.serverTimestamp);
  }
  const pausedAt = res[0].ev.position;
  mark(...b.members);
  await expectNo(b.followers[0], "scroll_tick", 400);
  await expectNo(b.leader, "scroll_tick", 0);
  const s1 = await syncState(b.followers[0], b.sessionId);
  await sleep(200);
  const s2 = await syncState(b.followers[0], b.sessionId);
  assert.equal(s1.isPlaying, false);
  assert.equal(s1.positionMs, pausedAt);
  assert.equal(s2.positionMs, pausedAt);
  // Resume continues from the paused position.
  const res2 = await leaderDoes(b, "play", {});
  assert.equal(res2[0].ev.position, pausedAt);
  const tick = await waitFor(b.followers[0], "scroll_tick");
  assert.ok(tick.positionMs >= pausedAt && tick.positionMs <= pausedAt + 200, `tick ${tick.positionMs} after resume`);
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("seek sets the position (paused, then while playing)", async () => {
  const b = await band(server.url, 2);
  let res = await leaderDoes(b, "seek", { position: 5000 });
  for (const { snapshot, ev } of res) {
    assert.equal(ev.position, 5000);
    assert.equal(snapshot.position, 5000);
    assert.equal(snapshot.isPlaying, false);
    assertTimestamp(ev.serverTimestamp);
  }
  assert.equal((await syncState(b.followers[0], b.sessionId)).positionMs, 5000);
  // Still 5000 a little later: paused.
  await sleep(150);
  assert.equal((await syncState(b.followers[0], b.sessionId)).positionMs, 5000);

  res = await leaderDoes(b, "play", {});
  assert.equal(res[0].ev.position, 5000);
  await sleep(300);
  res = await leaderDoes(b, "seek", { position: 1000 });
  for (const { snapshot, ev } of res) {
    assert.equal(ev.position, 1000);
    assert.ok(snapshot.position >= 1000 && snapshot.position < 1050, `snapshot position ${snapshot.position}`);
    assert.equal(snapshot.isPlaying, true);
  }
  mark(b.followers[0]);
  const tick = await waitFor(b.followers[0], "scroll_tick");
  assert.ok(tick.positionMs >= 1000 && tick.positionMs <= 1200, `tick after seek: ${tick.positionMs}`);
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("stop sets the position to 0 and stops ticks", async () => {
  const b = await band(server.url, 2);
  await leaderDoes(b, "seek", { position: 2000 });
  await leaderDoes(b, "play", {});
  await sleep(300);
  const res = await leaderDoes(b, "stop", {});
  for (const { snapshot, ev } of res) {
    assert.equal(snapshot.position, 0);
    assert.equal(snapshot.isPlaying, false);
    assert.equal(ev.sessionId, b.sessionId);
    assertTimestamp(ev.serverTimestamp);
  }
  mark(...b.members);
  await expectNo(b.followers[0], "scroll_tick", 400);
  const st = await syncState(b.followers[0], b.sessionId);
  assert.deepEqual([st.positionMs, st.isPlaying], [0, false]);
});

test("tempo changes do not change the rate of position while playing", async () => {
  const b = await band(server.url, 2);
  await leaderDoes(b, "play", {});
  b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo: 60 });
  await waitFor(b.followers[0], "snapshot", { tempo: 60 });
  mark(b.followers[0]);
  await sleep(1000);
  const ticks = events(b.followers[0]).filter((e) => e.event === "scroll_tick");
  assert.ok(ticks.length >= 7, `${ticks.length} ticks`);
  for (const t of ticks) assert.equal(t.data.tempoBpm, 60);
  const dPos = ticks.at(-1).data.positionMs - ticks[0].data.positionMs;
  const dTs = ticks.at(-1).data.serverTimestamp - ticks[0].data.serverTimestamp;
  assert.ok(Math.abs(dPos - dTs) <= 15, `position advanced ${dPos} ms in ${dTs} ms at 60 BPM`);
  b.leader.emit("stop", { sessionId: b.sessionId });
});

for (const event of ["tempo_change", "tempo_changed"]) {
  test(`${event}: room gets ${event} {oldTempo, newTempo, changeTime, fadeTime, serverTimestamp} then snapshot`, async () => {
    const b = await band(server.url, 2);
    mark(...b.members);
    b.leader.emit(event, { sessionId: b.sessionId, tempo: 140, fadeTime: 500 });
    for (const m of b.members) {
      const ev = await waitForEntry(m, event, { sessionId: b.sessionId });
      const snap = await waitForEntry(m, "snapshot", { sessionId: b.sessionId });
      assert.ok(ev.index < snap.index, `${event} before snapshot: ${names(m)}`);
      assert.equal(ev.data.oldTempo, 120);
      assert.equal(ev.data.newTempo, 140);
      assert.equal(ev.data.fadeTime, 500);
      assertTimestamp(ev.data.changeTime, "changeTime");
      assertTimestamp(ev.data.serverTimestamp, "serverTimestamp");
      if (event === "tempo_changed") assert.equal(ev.data.isRealTime, true);
      assert.equal(snap.data.tempo, 140);
      assert.equal(snap.data.tempoBpm, 140);
    }
    // fadeTime defaults to 0.
    mark(...b.members);
    b.leader.emit(event, { sessionId: b.sessionId, tempo: 100 });
    const ev = await waitFor(b.followers[0], event);
    assert.equal(ev.oldTempo, 140);
    assert.equal(ev.newTempo, 100);
    assert.equal(ev.fadeTime, 0);
    assert.equal((await syncState(b.followers[0], b.sessionId)).tempoBpm, 100);
  });
}

test("beat_sync: room gets {masterTime: serverNow, beatPosition, tempo, drift: serverNow - masterTime}", async () => {
  const b = await band(server.url, 2);
  mark(...b.members);
  const masterTime = Date.now() - 50;
  b.leader.emit("beat_sync", { sessionId: b.sessionId, beatPosition: 3, masterTime });
  for (const m of b.members) {
    const ev = await waitFor(m, "beat_sync", { sessionId: b.sessionId });
    assert.equal(ev.beatPosition, 3);
    assert.equal(ev.tempo, 120);
    assertTimestamp(ev.masterTime, "masterTime");
    assertStampedSince(ev.masterTime, masterTime + 50, 5, "masterTime");
    assert.equal(ev.drift, ev.masterTime - masterTime);
    assert.ok(ev.drift >= 45 && ev.drift < 1000, `drift ${ev.drift}`);
  }
});

test("position_sync: sets the position; room gets {positionMs, serverTime, clientTimestamp}", async () => {
  const b = await band(server.url, 2);
  mark(...b.members);
  const ts = Date.now();
  b.leader.emit("position_sync", { sessionId: b.sessionId, positionMs: 12345, timestamp: ts });
  for (const m of b.members) {
    const ev = await waitFor(m, "position_sync", { sessionId: b.sessionId });
    assert.equal(ev.positionMs, 12345);
    assert.equal(ev.clientTimestamp, ts);
    assertTimestamp(ev.serverTime, "serverTime");
  }
  const st = await syncState(b.followers[0], b.sessionId);
  assert.equal(st.positionMs, 12345);
  assert.equal(st.isPlaying, false);
});

test("sync_response follows the timeline while playing", async () => {
  const b = await band(server.url, 2);
  await leaderDoes(b, "seek", { position: 10_000 });
  await leaderDoes(b, "play", {});
  const s1 = await syncState(b.followers[0], b.sessionId);
  await sleep(500);
  const s2 = await syncState(b.followers[0], b.sessionId);
  assert.equal(s1.isPlaying, true);
  const dPos = s2.positionMs - s1.positionMs;
  const dTime = s2.serverTime - s1.serverTime;
  assert.ok(Math.abs(dPos - dTime) <= 15, `positionMs advanced ${dPos} in ${dTime} ms`);
  assert.ok(s1.positionMs >= 10_000 && s1.positionMs < 10_200);
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("ordering: set_tempo 90 then 100 back to back ends at 100", async () => {
  const b = await band(server.url, 2);
  b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo: 90 });
  b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo: 100 });
  const snaps = await waitForN(b.followers[0], "snapshot", 2, { sessionId: b.sessionId });
  assert.deepEqual(
    snaps.map((s) => s.tempo),
    [90, 100],
  );
  assert.equal((await syncState(b.followers[0], b.sessionId)).tempoBpm, 100);
});

test("ordering: 200 back-to-back set_tempo produce snapshots in send order", async () => {
  const b = await band(server.url, 2);
  const tempos = Array.from({ length: 200 }, (_, i) => 21 + i);
  for (const tempo of tempos) b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo });
  for (const m of b.members) {
    const snaps = await waitForN(m, "snapshot", 200, { sessionId: b.sessionId }, 10_000);
    assert.deepEqual(
      snaps.map((s) => s.tempo),
      tempos,
    );
  }
  assert.equal((await syncState(b.followers[0], b.sessionId)).tempoBpm, 220);
});

test("ordering: play emitted right after join_session (no waiting) works", async () => {
  const a = await connect(server.url);
  const s = sid("eager");
  a.emit("join_session", { sessionId: s });
  a.emit("play", { sessionId: s });
  const snap1 = await waitForEntry(a, "snapshot", { sessionId: s });
  const play = await waitForEntry(a, "play", { sessionId: s });
  assert.equal(snap1.data.isPlaying, false);
  assert.ok(snap1.index < play.index);
  const tick = await waitFor(a, "scroll_tick", { sessionId: s });
  assert.ok(tick.positionMs >= 0);
  assert.equal((await syncState(a, s)).isPlaying, true);
  const errors = events(a).filter((e) => e.event === "error");
  assert.deepEqual(errors, []);
  a.emit("stop", { sessionId: s });
});

test("legacy positions are integers: fractional seek / position_sync come out whole", async () => {
  const b = await band(server.url, 2);
  const res = await leaderDoes(b, "seek", { position: 1234.6 });
  for (const { snapshot, ev } of res) {
    assert.ok(Number.isInteger(ev.position), `seek.position ${ev.position}`);
    assert.ok(Math.abs(ev.position - 1234.6) < 1);
    assert.ok(Number.isInteger(snapshot.position), `snapshot.position ${snapshot.position}`);
  }
  mark(...b.members);
  b.leader.emit("position_sync", { sessionId: b.sessionId, positionMs: 777.25, timestamp: Date.now() });
  const ps = await waitFor(b.followers[0], "position_sync");
  assert.ok(Number.isInteger(ps.positionMs), `position_sync.positionMs ${ps.positionMs}`);
  const st = await syncState(b.followers[0], b.sessionId);
  assert.ok(Number.isInteger(st.positionMs), `sync_response.positionMs ${st.positionMs}`);
  assert.ok(Math.abs(st.positionMs - 777.25) < 1);
});

test("a snapshot taken while playing carries the timeline position at its serverTimestamp", async () => {
  const b = await band(server.url, 2);
  const [{ ev: play }] = await leaderDoes(b, "play", {});
  await sleep(400);
  mark(...b.members);
  b.leader.emit("update_message", { sessionId: b.sessionId, message: "mid-song" });
  const snap = await waitFor(b.followers[0], "snapshot", { message: "mid-song" });
  assert.equal(snap.isPlaying, true);
  const expected = play.position + (snap.serverTimestamp - play.serverTimestamp);
  assert.ok(Math.abs(snap.position - expected) <= 15, `snapshot.position ${snap.position}, timeline ${expected}`);
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("ordering: a burst of mixed leader events right after join is applied in send order", async () => {
  const a = await connect(server.url);
  const f = await connect(server.url);
  const s = sid("burst");
  a.emit("join_session", { sessionId: s });
  a.emit("set_tempo", { sessionId: s, tempo: 90 });
  a.emit("seek", { sessionId: s, position: 1000 });
  a.emit("play", { sessionId: s });
  a.emit("pause", { sessionId: s });
  a.emit("update_message", { sessionId: s, message: "burst" });
  a.emit("seek", { sessionId: s, position: 3000 });
  a.emit("set_tempo", { sessionId: s, tempo: 100 });
  await waitFor(a, "snapshot", { tempo: 100 });
  const order = events(a)
    .map((e) => e.event)
    .filter((n) => !["room_stats", "user_joined", "scroll_tick"].includes(n));
  assert.deepEqual(order, [
    "snapshot", // join
    "snapshot", // tempo 90
    "snapshot",
    "seek",
    "snapshot",
    "play",
    "snapshot",
    "pause",
    "snapshot", // message
    "snapshot",
    "seek",
    "snapshot", // tempo 100
  ]);
  const snap = await join(f, s);
  assert.equal(snap.tempo, 100);
  assert.equal(snap.position, 3000);
  assert.equal(snap.isPlaying, false);
  assert.equal(snap.message, "burst");
  assert.equal(snap.leaderSocketId, a.id);
});

test("play while playing neither resets the position nor doubles the ticks", async () => {
  const b = await band(server.url, 2);
  await leaderDoes(b, "play", {});
  await sleep(300);
  const [{ ev: again }] = await leaderDoes(b, "play", {});
  assert.ok(again.position >= 250 && again.position <= 450, `second play.position ${again.position}`);
  mark(b.followers[0]);
  await sleep(1000);
  const ticks = events(b.followers[0]).filter((e) => e.event === "scroll_tick");
  assert.ok(ticks.length >= 8 && ticks.length <= 12, `${ticks.length} ticks in 1 s after a second play`);
  const pos = ticks.map((t) => t.data.positionMs);
  assert.deepEqual(pos, [...pos].sort((x, y) => x - y), "positions never go backwards");
  b.leader.emit("stop", { sessionId: b.sessionId });
});

test("concurrent set_role leader from two followers leaves exactly one leader", async () => {
  const b = await band(server.url, 3);
  const [, f1, f2] = b.members;
  f1.emit("set_role", { sessionId: b.sessionId, role: "leader" });
  f2.emit("set_role", { sessionId: b.sessionId, role: "leader" });
  await waitFor(b.leader, "snapshot", { leaderSocketId: f1.id });
  await waitFor(b.leader, "snapshot", { leaderSocketId: f2.id });
  await sleep(50);
  const snap = await join(b.leader, b.sessionId);
  assertSnapshot(snap);
  assert.ok([f1.id, f2.id].includes(snap.leaderSocketId));
  assert.equal(snap.members.filter((m) => m.role === "leader").length, 1);
});

test("ordering: 1000 back-to-back chat messages arrive in send order", async () => {
  const b = await band(server.url, 2);
  // Within both bounds a burst meets: the sender's event queue (MAX_QUEUED_EVENTS, 1024) and the
  // receiver's outgoing buffer (1024 packets). Past them, a server that falls behind refuses or
  // drops by design, and this test is about order, not those limits (limits.test.mjs).
  const n = 1000;
  for (let i = 0; i < n; i++) b.followers[0].emit("chat_message", { sessionId: b.sessionId, message: String(i) });
  const got = await waitForN(b.leader, "chat_message", n, undefined, 20_000);
  const seq = got.map((c) => Number(c.message));
  const outOfOrder = seq.filter((v, i) => v !== i).length;
  assert.equal(outOfOrder, 0, `${outOfOrder} of ${n} out of order`);
});
