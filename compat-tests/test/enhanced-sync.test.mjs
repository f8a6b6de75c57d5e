// Enhanced protocol, time and streams: position:sync (80 Hz) and metronome:beat streams, tempo ramps,
// time signatures, START_LEAD_MS, position:correction, clock:sync, latency:probe, metrics feed.
// Rates and timings are measured on the server's own timestamps over windows, so they hold on a busy machine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServers } from "../lib/setup.mjs";
import { connect, mark, sleep, waitFor, expectNo, events } from "../lib/client.mjs";
import { ack, ackOk, enhancedBand, mixedSession, received } from "../lib/enhanced.mjs";
import { assertStampedSince } from "../lib/shapes.mjs";

const [server, leadServer] = useServers(
  { LEGACY_PING_INTERVAL_MS: "0", METRICS_INTERVAL_MS: "200" },
  { LEGACY_PING_INTERVAL_MS: "0", START_LEAD_MS: "300" },
);

const payloads = (socket, event) => received(socket, event).map((e) => e.data);

/** Starts playback by the band's leader; resolves with the follower's metronome:start payload. */
async function start(b, extra = {}) {
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId, ...extra });
  return waitFor(b.followers[0] ?? b.leader, "metronome:start", { sessionId: b.sessionId });
}

/** Waits until the local clock passes server time `t` (+ slack for delivery). */
const until = (t, slack = 150) => sleep(Math.max(0, t + slack - Date.now()));

/** Beat index on the beat timeline: 0 for bar 1 beat 1. */
const beatIndex = (d, perBar) => (d.bar - 1) * perBar + (d.beat - 1);

/** Checks beats form a gap-free sequence (each the next beat, wrapping into the next bar). */
function assertBeatSequence(beats, perBar) {
  for (const d of beats) {
    assert.ok(Number.isInteger(d.beat) && d.beat >= 1 && d.beat <= perBar, `beat ${d.beat} of ${perBar}`);
    assert.ok(Number.isInteger(d.bar) && d.bar >= 1, `bar ${d.bar}`);
  }
  for (let i = 1; i < beats.length; i++) {
    assert.equal(
      beatIndex(beats[i], perBar),
      beatIndex(beats[i - 1], perBar) + 1,
      `beat ${beats[i - 1].bar}.${beats[i - 1].beat} followed by ${beats[i].bar}.${beats[i].beat}`,
    );
  }
}

test("position:sync streams at 80 Hz ± 10 % (144–176 in 2 s of server time); positionMs agrees with serverTime within 2 ms", async () => {
  const b = await enhancedBand(server.url, 2);
  const st = await start(b);
  await sleep(2600);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  for (const m of b.members) {
    const ps = payloads(m, "position:sync");
    assert.ok(ps.length > 0, "no position:sync");
    // Count over a 2 s window of server time, starting 200 ms in.
    const from = st.startTime + 200;
    const inWindow = ps.filter((d) => d.serverTime >= from && d.serverTime < from + 2000).length;
    assert.ok(inWindow >= 144 && inWindow <= 176, `${inWindow} position:sync in 2 s (80 Hz ± 10 % is 144–176)`);
    for (const d of ps) {
      assert.deepEqual(Object.keys(d).sort(), ["bar", "beat", "beatProgress", "positionMs", "serverTime", "sessionId", "tempo"]);
      assert.equal(d.sessionId, b.sessionId);
      assert.equal(d.tempo, 120);
      assert.ok(d.beatProgress >= 0 && d.beatProgress <= 1, `beatProgress ${d.beatProgress}`);
      assert.ok(Number.isInteger(d.beat) && d.beat >= 1 && d.beat <= 4, `beat ${d.beat}`);
      assert.ok(Number.isInteger(d.bar) && d.bar >= 1, `bar ${d.bar}`);
      if (d.serverTime < st.startTime) continue;
      const offset = d.positionMs - st.positionMs - (d.serverTime - st.startTime);
      assert.ok(Math.abs(offset) <= 2, `positionMs ${d.positionMs} at serverTime ${d.serverTime}: ${offset} ms off the timeline`);
      // beat/bar/beatProgress describe the same point: beats elapsed = positionMs / 500 at 120 BPM.
      const beats = beatIndex(d, 4) + d.beatProgress;
      assert.ok(Math.abs(beats - d.positionMs / 500) <= 0.02, `bar ${d.bar} beat ${d.beat} + ${d.beatProgress} at ${d.positionMs} ms`);
    }
  }
});

test("metronome:beat: 120 BPM for 3 s is 6 ± 1 beats, 500 ms apart (± 1 ms), beats 1..4 then the bar increments", async () => {
  const b = await enhancedBand(server.url, 2);
  const st = await start(b);
  await until(st.startTime + 3000);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  for (const m of b.members) {
    const beats = payloads(m, "metronome:beat").filter((d) => d.beatTime < st.startTime + 3000);
    assert.ok(beats.length >= 5 && beats.length <= 7, `${beats.length} beats in 3 s at 120 BPM`);
    for (const d of beats) {
      assert.deepEqual(Object.keys(d).sort(), ["bar", "beat", "beatTime", "sessionId", "tempo"]);
      assert.equal(d.sessionId, b.sessionId);
      assert.equal(d.tempo, 120);
    }
    assert.deepEqual([beats[0].bar, beats[0].beat], [1, 1]);
    assert.ok(Math.abs(beats[0].beatTime - st.startTime) <= 1, `first beatTime ${beats[0].beatTime} vs startTime ${st.startTime}`);
    assertBeatSequence(beats, 4);
    for (let i = 1; i < beats.length; i++) {
      const dt = beats[i].beatTime - beats[i - 1].beatTime;
      assert.ok(Math.abs(dt - 500) <= 1, `beat interval ${dt} ms at 120 BPM`);
    }
    assert.ok(beats.some((d) => d.bar === 2 && d.beat === 1), "bar 2 starts after beat 4");
  }
});

test('timeSignature "3/4" at 150 BPM: beats cycle 1,2,3 every 400 ms; position:sync beat stays within 1..3', async () => {
  const b = await enhancedBand(server.url, 2, { timeSignature: "3/4", tempo: 150 });
  const st = await start(b);
  assert.equal(st.timeSignature, "3/4");
  assert.equal(st.tempo, 150);
  await until(st.startTime + 2000);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  const m = b.followers[0];
  const beats = payloads(m, "metronome:beat").filter((d) => d.beatTime < st.startTime + 2000);
  assert.deepEqual(
    beats.map((d) => `${d.bar}.${d.beat}`),
    ["1.1", "1.2", "1.3", "2.1", "2.2"],
  );
  assertBeatSequence(beats, 3);
  for (let i = 1; i < beats.length; i++) {
    const dt = beats[i].beatTime - beats[i - 1].beatTime;
    assert.ok(Math.abs(dt - 400) <= 1, `beat interval ${dt} ms at 150 BPM`);
  }
  const ps = payloads(m, "position:sync").filter((d) => d.serverTime >= st.startTime);
  assert.ok(ps.length > 50);
  for (const d of ps) {
    assert.ok(d.beat >= 1 && d.beat <= 3, `position:sync beat ${d.beat} in 3/4`);
    const total = beatIndex(d, 3) + d.beatProgress;
    assert.ok(Math.abs(total - d.positionMs / 400) <= 0.02, `bar ${d.bar} beat ${d.beat} + ${d.beatProgress} at ${d.positionMs} ms`);
  }
});

test("tempo ramp 120 → 180 over 1000 ms while playing: position:sync.tempo rises monotonically over ~1 s; beats stay continuous", async () => {
  const b = await enhancedBand(server.url, 2);
  const st = await start(b);
  await sleep(1100);
  await ackOk(b.leader, "tempo:change", { sessionId: b.sessionId, newTempo: 180, rampDurationMs: 1000 });
  const tc = await waitFor(b.followers[0], "tempo:change");
  assert.deepEqual([tc.oldTempo, tc.newTempo, tc.rampDurationMs], [120, 180, 1000]);
  const eff = tc.effectiveTimestamp;
  await until(eff + 1800);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  const m = b.followers[0];

  const ps = payloads(m, "position:sync").filter((d) => d.serverTime >= eff);
  assert.ok(ps.length > 100, `${ps.length} position:sync after the change`);
  for (let i = 1; i < ps.length; i++) {
    assert.ok(ps[i].tempo >= ps[i - 1].tempo, `tempo went down: ${ps[i - 1].tempo} → ${ps[i].tempo} at ${ps[i].serverTime}`);
  }
  assert.ok(ps[0].tempo >= 120 && ps[0].tempo < 130, `first tempo after the change ${ps[0].tempo}`);
  assert.equal(ps.at(-1).tempo, 180);
  const reached = ps.find((d) => d.tempo >= 180);
  const took = reached.serverTime - eff;
  assert.ok(took >= 900 && took <= 1150, `ramp reached 180 after ${took} ms (expected about 1000)`);
  for (const d of ps) {
    const t = Math.min(1, (d.serverTime - eff) / 1000);
    const linear = 120 + 60 * t;
    assert.ok(Math.abs(d.tempo - linear) <= 5, `tempo ${d.tempo} at ${d.serverTime - eff} ms into the ramp (linear: ${linear})`);
    // Position stays song milliseconds: unaffected by the tempo.
    const offset = d.positionMs - st.positionMs - (d.serverTime - st.startTime);
    assert.ok(Math.abs(offset) <= 2, `positionMs ${offset} ms off the timeline during the ramp`);
  }

  const beats = payloads(m, "metronome:beat");
  assertBeatSequence(beats, 4);
  const intervals = beats.slice(1).map((d, i) => ({ at: beats[i].beatTime, dt: d.beatTime - beats[i].beatTime }));
  assert.ok(intervals.length >= 6, `${intervals.length} beat intervals`);
  for (const { at, dt } of intervals) {
    assert.ok(dt >= 60000 / 180 - 1 && dt <= 500 + 1, `beat interval ${dt} ms at ${at - eff} ms from the change`);
    if (at + dt <= eff) assert.ok(Math.abs(dt - 500) <= 1, `interval ${dt} before the ramp`);
    if (at >= eff + 1000) assert.ok(Math.abs(dt - 60000 / 180) <= 1, `interval ${dt} after the ramp`);
  }
  for (let i = 1; i < intervals.length; i++) {
    assert.ok(
      intervals[i].dt <= intervals[i - 1].dt + 1,
      `beat intervals must shrink smoothly: ${intervals.map((x) => x.dt.toFixed(1)).join(", ")}`,
    );
  }
  assert.ok(
    intervals.some(({ dt }) => dt < 499 && dt > 334),
    `some beat falls inside the ramp: ${intervals.map((x) => x.dt.toFixed(1)).join(", ")}`,
  );
});

test("START_LEAD_MS=300: metronome:start.startTime ≈ now + 300; the first beat is beat 1 of bar 1 at startTime", async () => {
  const b = await enhancedBand(leadServer.url, 2);
  const t0 = Date.now();
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  const t1 = Date.now();
  for (const m of b.members) {
    const st = await waitFor(m, "metronome:start");
    assert.equal(st.positionMs, 0);
    assert.ok(
      st.startTime >= t0 + 300 - 2 && st.startTime <= t1 + 300 + 2,
      `startTime ${st.startTime - t0} ms after the request (ack after ${t1 - t0} ms)`,
    );
    const first = await waitFor(m, "metronome:beat", undefined, 2000);
    assert.deepEqual([first.bar, first.beat], [1, 1]);
    assert.equal(first.beatTime, st.startTime);
    assert.ok(
      payloads(m, "metronome:beat").every((d) => d.beatTime >= st.startTime),
      "no beat before startTime",
    );
  }
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
});

test("position:correction: a 100 ms drift (ahead or behind) corrects the reporter alone; a 10 ms drift does not", async () => {
  const b = await enhancedBand(server.url, 2);
  const [leader, f] = b.members;
  const st = await start(b);
  const timeline = (t) => st.positionMs + (t - st.startTime);
  await sleep(300);
  for (const delta of [100, -100]) {
    mark(leader, f);
    const now = Date.now();
    const reported = timeline(now) + delta;
    assert.deepEqual(await ack(f, "position:sync", { sessionId: b.sessionId, positionMs: reported, clientTime: now }), {
      ok: true,
    });
    const c = await waitFor(f, "position:correction");
    assert.deepEqual(Object.keys(c).sort(), ["correctPosition", "drift", "reportedPosition", "serverTime", "sessionId"]);
    assert.equal(c.sessionId, b.sessionId);
    assert.equal(c.reportedPosition, reported);
    assert.ok(Math.abs(c.correctPosition - timeline(now)) <= 2, `correctPosition ${c.correctPosition} vs ${timeline(now)}`);
    assert.ok(Math.abs(Math.abs(c.drift) - 100) <= 2, `drift ${c.drift}`);
    assert.ok(Math.abs(Math.abs(c.drift) - Math.abs(c.reportedPosition - c.correctPosition)) <= 1, `drift ${c.drift}`);
    assertStampedSince(c.serverTime, now, 2, "serverTime");
    await expectNo(leader, "position:correction", 100);
  }
  mark(leader, f);
  for (const delta of [10, -10, 0]) {
    const now = Date.now();
    f.emit("position:sync", { sessionId: b.sessionId, positionMs: timeline(now) + delta, clientTime: now });
  }
  await expectNo(f, "position:correction", 400);
  // The leader's own report is checked as well.
  const now = Date.now();
  leader.emit("position:sync", { sessionId: b.sessionId, positionMs: timeline(now) + 100, clientTime: now });
  await waitFor(leader, "position:correction");
  await expectNo(f, "position:correction", 100);
  await ackOk(leader, "metronome:stop", { sessionId: b.sessionId });
});

test("position:correction uses the arrival time when clientTime is more than 1 s off, and is never sent while stopped", async () => {
  const b = await enhancedBand(server.url, 2);
  const f = b.followers[0];
  const st = await start(b);
  const timeline = (t) => st.positionMs + (t - st.startTime);
  await sleep(300);
  mark(f);
  // Correct for now, but stamped a minute ago: the server must use the arrival time.
  f.emit("position:sync", { sessionId: b.sessionId, positionMs: timeline(Date.now()), clientTime: Date.now() - 60_000 });
  await expectNo(f, "position:correction", 300);
  // Wrong for now, stamped far in the future: corrected against the arrival time.
  const now = Date.now();
  f.emit("position:sync", { sessionId: b.sessionId, positionMs: timeline(now) + 500, clientTime: now + 60_000 });
  const c = await waitFor(f, "position:correction");
  assert.ok(Math.abs(Math.abs(c.drift) - 500) <= 20, `drift ${c.drift} against the arrival time`);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  mark(f);
  f.emit("position:sync", { sessionId: b.sessionId, positionMs: 99_999, clientTime: Date.now() });
  await expectNo(f, "position:correction", 300);
});

test("streams in a mixed session: enhanced get position:sync + metronome:beat and never scroll_tick; legacy the reverse; all stop at stop", async () => {
  const m = await mixedSession(server.url);
  await ackOk(m.e1, "metronome:start", { sessionId: m.sessionId });
  await sleep(1200);
  const count = (s, ev) => events(s).filter((e) => e.event === ev).length;
  for (const e of m.enhanced) {
    assert.ok(count(e, "position:sync") >= 60, `${count(e, "position:sync")} position:sync in 1.2 s`);
    assert.ok(count(e, "metronome:beat") >= 2, `${count(e, "metronome:beat")} beats in 1.2 s`);
    assert.equal(count(e, "scroll_tick"), 0, "enhanced member got scroll_tick");
  }
  for (const l of m.legacy) {
    assert.ok(count(l, "scroll_tick") >= 8, `${count(l, "scroll_tick")} scroll_tick in 1.2 s`);
    assert.equal(count(l, "position:sync"), 0, "legacy member got position:sync");
    assert.equal(count(l, "metronome:beat"), 0, "legacy member got metronome:beat");
  }
  await ackOk(m.e1, "metronome:stop", { sessionId: m.sessionId });
  // Each member from its own view of the stop: packets sent before it reach one socket before its
  // stop, but may reach another after someone else's.
  mark(m.e1); // its answer follows everything sent to it before the stop
  const stop = await waitFor(m.e2, "metronome:stop");
  mark(m.e2);
  for (const l of m.legacy) {
    await waitFor(l, "pause");
    mark(l);
  }
  await sleep(350);
  for (const s of m.all) {
    for (const ev of ["metronome:beat", "scroll_tick"]) assert.equal(count(s, ev), 0, `${ev} after stop`);
    // position:sync is volatile: socketioxide sends it apart from the reliable queue, so one sent
    // just before the stop may land just after it. None may describe a moment after the stop.
    const late = received(s, "position:sync").filter((e) => e.data.serverTime > stop.stopTime);
    assert.deepEqual(late, [], "position:sync from after the stop");
  }
});

test("clock:sync: ack {t0, t1, t2} with t0 ≤ t1 ≤ t2 ≤ receipt (fractional ms); without ack clock:sync_response", async () => {
  const a = await connect(server.url);
  let fractional = false;
  for (let i = 0; i < 10; i++) {
    const t0 = Date.now();
    const r = await ack(a, "clock:sync", { t0 });
    const t3 = Date.now();
    assert.deepEqual(Object.keys(r).sort(), ["t0", "t1", "t2"]);
    assert.equal(r.t0, t0);
    assert.ok(r.t1 <= r.t2, `t1 ${r.t1} > t2 ${r.t2}`);
    assert.ok(r.t1 >= t0 - 2 && r.t2 <= t3 + 2, `t1 ${r.t1 - t0}, t2 ${r.t2 - t0} ms after t0; receipt at ${t3 - t0}`);
    if (!Number.isInteger(r.t1) || !Number.isInteger(r.t2)) fractional = true;
  }
  assert.ok(fractional, "t1/t2 carry fractions of a millisecond");
  mark(a);
  const t0 = Date.now() + 0.25;
  a.emit("clock:sync", { t0 });
  const r = await waitFor(a, "clock:sync_response");
  assert.equal(r.t0, t0);
  assert.ok(r.t1 <= r.t2 && Math.abs(r.t1 - Date.now()) < 1000);
});

test("latency:probe with a number or {timestamp}: latency:response {clientTimestamp, serverTimestamp}", async () => {
  const a = await connect(server.url);
  for (const payload of [12345, { timestamp: 67890 }]) {
    mark(a);
    const t0 = Date.now();
    a.emit("latency:probe", payload);
    const r = await waitFor(a, "latency:response");
    assert.deepEqual(Object.keys(r).sort(), ["clientTimestamp", "serverTimestamp"]);
    assert.equal(r.clientTimestamp, typeof payload === "number" ? payload : payload.timestamp);
    assertStampedSince(r.serverTimestamp, t0, 2, "serverTimestamp");
  }
});

test("metrics:subscribe → metrics:update every METRICS_INTERVAL_MS (200); metrics:unsubscribe stops it", async () => {
  const [a, other] = await Promise.all([connect(server.url), connect(server.url)]);
  mark(a, other);
  a.emit("metrics:subscribe");
  const first = await waitFor(a, "metrics:update", undefined, 1000);
  assert.deepEqual(Object.keys(first).sort(), ["activeSessions", "avgLatency", "connectedClients", "lastMetricsUpdate", "syncDrift"]);
  for (const k of ["activeSessions", "avgLatency", "connectedClients", "syncDrift"]) {
    assert.ok(typeof first[k] === "number" && first[k] >= 0, `${k} ${first[k]}`);
  }
  assert.ok(first.connectedClients >= 2, `connectedClients ${first.connectedClients}`);
  assert.ok(Math.abs(first.lastMetricsUpdate - Date.now()) < 1000);
  mark(a);
  await sleep(1000);
  const updates = payloads(a, "metrics:update");
  assert.ok(updates.length >= 3 && updates.length <= 7, `${updates.length} metrics:update in 1 s at 200 ms`);
  const gaps = updates.slice(1).map((u, i) => u.lastMetricsUpdate - updates[i].lastMetricsUpdate);
  for (const g of gaps) assert.ok(g >= 150 && g <= 300, `metrics interval ${g} ms (${gaps})`);
  await expectNo(other, "metrics:update", 0);
  a.emit("metrics:unsubscribe");
  await sleep(250);
  mark(a);
  await expectNo(a, "metrics:update", 500);
});
