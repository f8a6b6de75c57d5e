// Enhanced protocol, playback and room events: metronome:start / metronome:stop, tempo:change,
// position:seek, role:transfer, chat:message (PROTOCOL.md section 4).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { connect, events, join, mark, sleep, expectNo, waitFor } from "../lib/client.mjs";
import { ackOk, ackError, expectFlows, enhancedBand, received, currentState } from "../lib/enhanced.mjs";
import { assertSessionState, assertStampedSince } from "../lib/shapes.mjs";

const server = useServer({ LEGACY_PING_INTERVAL_MS: "0" });

const each = (b, names) => b.members.map((m, i) => [m, names, `member ${i}`]);
const only = (got, socket, event) => got.get(socket).find((e) => e.event === event).data;

test("metronome:start: ack {ok: true}; the room gets metronome:start {sessionId, tempo, timeSignature, startTime, positionMs}, no state_sync", async () => {
  const b = await enhancedBand(server.url, 2);
  const t0 = Date.now();
  const res = await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  assert.deepEqual(res, { ok: true });
  const got = await expectFlows(each(b, ["metronome:start"]));
  for (const m of b.members) {
    const ev = only(got, m, "metronome:start");
    assert.deepEqual(Object.keys(ev).sort(), ["positionMs", "sessionId", "startTime", "tempo", "timeSignature"]);
    assert.equal(ev.sessionId, b.sessionId);
    assert.equal(ev.tempo, 120);
    assert.equal(ev.timeSignature, "4/4");
    assert.equal(ev.positionMs, 0);
    // START_LEAD_MS defaults to 250: the first beat is a quarter of a second ahead, so every
    // client hears of the start before it.
    assert.ok(ev.startTime >= t0 + 245 && ev.startTime <= Date.now() + 255, `startTime ${ev.startTime} vs t0 ${t0} + 250`);
  }
  const st = await currentState(b.followers[0], b.sessionId);
  assert.equal(st.isPlaying, true);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
});

test("metronome:start with tempo and timeSignature overrides; they stick in the session state", async () => {
  const b = await enhancedBand(server.url, 2);
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId, tempo: 140, timeSignature: "3/4" });
  const got = await expectFlows(each(b, ["metronome:start"]));
  for (const m of b.members) {
    const ev = only(got, m, "metronome:start");
    assert.equal(ev.tempo, 140);
    assert.equal(ev.timeSignature, "3/4");
  }
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  const st = await currentState(b.followers[0], b.sessionId);
  assert.equal(st.tempo, 140);
  assert.equal(st.timeSignature, "3/4");
});

test("metronome:stop: the room gets metronome:stop {sessionId, stopTime, positionMs} exactly once; the position is kept; streams stop", async () => {
  const b = await enhancedBand(server.url, 2);
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  const { startTime } = await waitFor(b.followers[0], "metronome:start");
  await sleep(startTime + 400 - Date.now());
  mark(...b.members);
  const t0 = Date.now();
  assert.deepEqual(await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId }), { ok: true });
  const got = await expectFlows(each(b, ["metronome:stop"]), { settleMs: 400 });
  for (const m of b.members) {
    const ev = only(got, m, "metronome:stop");
    assert.deepEqual(Object.keys(ev).sort(), ["positionMs", "sessionId", "stopTime"]);
    assert.equal(ev.sessionId, b.sessionId);
    assertStampedSince(ev.stopTime, t0, 5, "stopTime");
    assert.ok(ev.positionMs >= 380 && ev.positionMs <= 700, `positionMs ${ev.positionMs} after ~400 ms`);
  }
  const pos = only(got, b.leader, "metronome:stop").positionMs;
  // No stream after the stop event.
  mark(...b.members);
  await expectNo(b.followers[0], "position:sync", 300);
  await expectNo(b.followers[0], "metronome:beat", 0);
  const st = await currentState(b.followers[0], b.sessionId);
  assert.equal(st.isPlaying, false);
  assert.ok(Math.abs(st.position - pos) <= 1, `state position ${st.position} vs stop ${pos}`);
  // Restart continues from there.
  mark(...b.members);
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  const again = only(await expectFlows(each(b, ["metronome:start"])), b.leader, "metronome:start");
  assert.ok(Math.abs(again.positionMs - pos) <= 1, `restart positionMs ${again.positionMs} vs ${pos}`);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
});

test("order: no stream packet computed before a stop, seek or tempo change arrives after it (40 quick changes while playing, mixed session)", async () => {
  const b = await enhancedBand(server.url, 2);
  const legacy = await connect(server.url);
  await join(legacy, b.sessionId);
  const follower = b.followers[0];
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId, tempo: 120 });
  await waitFor(follower, "position:sync", undefined, 2000);
  mark(follower, legacy);
  await sleep(300); // some of the stream before the changes, so each check below has packets to check
  // Each change lands while ticks for the same session are on their way to the same sockets.
  for (let i = 0; i < 40; i++) {
    const change =
      i % 4 === 0
        ? ["metronome:stop", {}]
        : i % 4 === 1
          ? ["metronome:start", {}]
          : i % 4 === 2
            ? ["position:seek", { positionMs: 1000 * i }]
            : ["tempo:change", { newTempo: 100 + i }];
    await ackOk(b.leader, change[0], { sessionId: b.sessionId, ...change[1] });
    await sleep(7);
  }
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
  await sleep(300);
  // The enhanced follower: after a stop, nothing of the stream until the next start; after a seek
  // or a tempo change, no packet stamped before it.
  // (A beat's beatTime is where it falls on the timeline, not when it was sent: only its arrival
  // while stopped is checked.)
  // Only packets after the first change count as checked: the warm-up's alone prove nothing.
  let playing = true;
  let notBefore = 0;
  let checked = 0;
  let changed = false;
  for (const { event, data } of events(follower)) {
    if (["metronome:stop", "metronome:start", "position:seek", "tempo:change"].includes(event)) changed = true;
    if (event === "metronome:stop") [playing, notBefore] = [false, data.stopTime];
    else if (event === "metronome:start") playing = true;
    else if (event === "position:seek") notBefore = data.serverTime;
    else if (event === "tempo:change") notBefore = data.effectiveTimestamp;
    else if (event === "position:sync" || event === "metronome:beat") {
      assert.ok(playing, `${event} ${JSON.stringify(data)} after metronome:stop`);
      if (event === "position:sync") {
        assert.ok(data.serverTime >= notBefore, `position:sync stamped ${data.serverTime}, before the change at ${notBefore}`);
        if (changed) checked++;
      }
    }
  }
  assert.ok(checked > 10, `only ${checked} position:sync arrived among the changes: nothing was checked`);
  // The legacy member: no scroll_tick after a pause until the next play, none stamped before a seek.
  playing = true;
  notBefore = 0;
  checked = 0;
  changed = false;
  for (const { event, data } of events(legacy)) {
    if (["pause", "play", "seek", "tempo_changed", "snapshot"].includes(event)) changed = true;
    if (event === "pause") [playing, notBefore] = [false, data.serverTimestamp];
    else if (event === "play") playing = true;
    else if (event === "seek") notBefore = data.serverTimestamp;
    else if (event === "scroll_tick") {
      assert.ok(playing, `scroll_tick ${JSON.stringify(data)} after pause`);
      assert.ok(data.serverTimestamp >= notBefore, `scroll_tick stamped ${data.serverTimestamp}, before the change at ${notBefore}`);
      if (changed) checked++;
    }
  }
  assert.ok(checked > 0, "no scroll_tick arrived among the changes: nothing was checked");
});

test("metronome:stop {reset: true}: positionMs 0, once", async () => {
  const b = await enhancedBand(server.url, 2);
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  await sleep(200);
  mark(...b.members);
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId, reset: true });
  const got = await expectFlows(each(b, ["metronome:stop"]));
  for (const m of b.members) assert.equal(only(got, m, "metronome:stop").positionMs, 0);
  const st = await currentState(b.followers[0], b.sessionId);
  assert.deepEqual([st.position, st.isPlaying], [0, false]);
});

test("tempo:change: the room gets tempo:change {sessionId, oldTempo, newTempo, effectiveTimestamp, rampDurationMs} then session:state_sync", async () => {
  const b = await enhancedBand(server.url, 2);
  const t0 = Date.now();
  await ackOk(b.leader, "tempo:change", { sessionId: b.sessionId, newTempo: 132.5 });
  const got = await expectFlows(each(b, ["tempo:change", "session:state_sync"]));
  for (const m of b.members) {
    const tc = only(got, m, "tempo:change");
    assert.deepEqual(Object.keys(tc).sort(), ["effectiveTimestamp", "newTempo", "oldTempo", "rampDurationMs", "sessionId"]);
    assert.deepEqual([tc.sessionId, tc.oldTempo, tc.newTempo, tc.rampDurationMs], [b.sessionId, 120, 132.5, 0]);
    assertStampedSince(tc.effectiveTimestamp, t0, 5, "effectiveTimestamp");
    const st = only(got, m, "session:state_sync");
    assertSessionState(st);
    assert.equal(st.tempo, 132.5);
    assert.equal(st.tempoBpm, 132.5);
    assert.equal(st.tempoNow, 132.5);
  }
  // Bounds are inclusive.
  mark(...b.members);
  await ackOk(b.leader, "tempo:change", { sessionId: b.sessionId, newTempo: 20 });
  await ackOk(b.leader, "tempo:change", { sessionId: b.sessionId, newTempo: 400, rampDurationMs: 500 });
  const got2 = await expectFlows(each(b, ["tempo:change", "session:state_sync", "tempo:change", "session:state_sync"]));
  const tcs = got2.get(b.leader).filter((e) => e.event === "tempo:change").map((e) => e.data);
  assert.deepEqual(
    tcs.map((t) => [t.oldTempo, t.newTempo, t.rampDurationMs]),
    [
      [132.5, 20, 0],
      [20, 400, 500],
    ],
  );
});

test("position:seek: the room gets position:seek {sessionId, positionMs, serverTime}; the timeline continues from there", async () => {
  const b = await enhancedBand(server.url, 2);
  const t0 = Date.now();
  await ackOk(b.leader, "position:seek", { sessionId: b.sessionId, positionMs: 8000 });
  let got = await expectFlows(each(b, ["position:seek"]));
  for (const m of b.members) {
    const ev = only(got, m, "position:seek");
    assert.deepEqual(Object.keys(ev).sort(), ["positionMs", "serverTime", "sessionId"]);
    assert.equal(ev.positionMs, 8000);
    assertStampedSince(ev.serverTime, t0, 5, "serverTime");
  }
  assert.equal((await currentState(b.followers[0], b.sessionId)).position, 8000);
  mark(...b.members);
  await ackOk(b.leader, "metronome:start", { sessionId: b.sessionId });
  assert.equal(only(await expectFlows(each(b, ["metronome:start"])), b.leader, "metronome:start").positionMs, 8000);
  await sleep(200);
  mark(...b.members);
  await ackOk(b.leader, "position:seek", { sessionId: b.sessionId, positionMs: 1000 });
  got = await expectFlows(each(b, ["position:seek"]), { settleMs: 150 });
  const seekAt = only(got, b.followers[0], "position:seek").serverTime;
  const after = received(b.followers[0], "position:sync").map((e) => e.data).filter((d) => d.serverTime > seekAt + 1);
  assert.ok(after.length > 0, "position:sync after the seek");
  for (const d of after) {
    const expected = 1000 + (d.serverTime - seekAt);
    assert.ok(Math.abs(d.positionMs - expected) <= 2, `positionMs ${d.positionMs} vs ${expected} after seek`);
  }
  await ackOk(b.leader, "metronome:stop", { sessionId: b.sessionId });
});

test("role:transfer: leader:election {reason: transfer} + session:state_sync; powers move; playback stops", async () => {
  const b = await enhancedBand(server.url, 3, {}, ["Ann", "Bob", "Cat"]);
  const [a, bob, cat] = b.members;
  await ackOk(a, "metronome:start", { sessionId: b.sessionId });
  await sleep(200);
  mark(...b.members);
  assert.deepEqual(await ackOk(a, "role:transfer", { sessionId: b.sessionId, toSocketId: cat.id }), { ok: true });
  const got = await expectFlows(each(b, ["leader:election", "session:state_sync"]));
  for (const m of b.members) {
    assert.deepEqual(only(got, m, "leader:election"), {
      sessionId: b.sessionId,
      oldLeader: a.id,
      newLeader: cat.id,
      reason: "transfer",
    });
    const st = only(got, m, "session:state_sync");
    assertSessionState(st);
    assert.equal(st.leaderSocketId, cat.id);
    assert.equal(st.isPlaying, false);
    assert.deepEqual(
      st.members.map((x) => x.role),
      ["follower", "follower", "leader"],
    );
  }
  mark(...b.members);
  await expectNo(bob, "position:sync", 300);
  await ackError(a, "tempo:change", { sessionId: b.sessionId, newTempo: 99 }, "NOT_LEADER");
  await ackError(a, "role:transfer", { sessionId: b.sessionId, toSocketId: a.id }, "NOT_LEADER");
  await ackOk(cat, "tempo:change", { sessionId: b.sessionId, newTempo: 99 });
});

test("chat:message: the room (sender included) gets {sessionId, message, displayName, socketId, timestamp}", async () => {
  const b = await enhancedBand(server.url, 2, {}, ["Ann", "Bob"]);
  const t0 = Date.now();
  assert.deepEqual(await ackOk(b.followers[0], "chat:message", { sessionId: b.sessionId, message: "take it from the top" }), {
    ok: true,
  });
  const got = await expectFlows(each(b, ["chat:message"]));
  for (const m of b.members) {
    const c = only(got, m, "chat:message");
    assert.deepEqual(Object.keys(c).sort(), ["displayName", "message", "sessionId", "socketId", "timestamp"]);
    assert.deepEqual(
      [c.sessionId, c.message, c.displayName, c.socketId],
      [b.sessionId, "take it from the top", "Bob", b.followers[0].id],
    );
    assertStampedSince(c.timestamp, t0, 5, "timestamp");
  }
});
