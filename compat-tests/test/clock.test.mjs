// Unit tests of the client clock module (examples/web/bandsync-clock.js) on synthetic samples and
// events: no server. Offset estimation, RTT outlier rejection, drift, slewing, and beat times
// across a tempo ramp against an independent computation of the server's maths.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BandSyncClock, Timeline, estimateOffset } from "../../examples/web/bandsync-clock.js";

/** Seeded PRNG (mulberry32), so failures reproduce. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One NTP exchange: the client sends at local t0; up/down are the one-way delays; the server
 * holds it `hold` ms. Local = server − offset (the true offset is server − local).
 */
function exchange(t0, offset, up, down, hold = 0.01) {
  const t1 = t0 + offset + up;
  const t2 = t1 + hold;
  const t3 = t2 - offset + down;
  return { t0, t1, t2, t3 };
}

/** A clock fed by hand: manual local time, no socket. */
function manualClock(extra = {}) {
  const state = { t: 1_000_000 };
  const clock = new BandSyncClock({ now: () => state.t, ...extra });
  return { clock, state };
}

/** Feeds n exchanges at `offset`, `gap` ms apart, advancing the manual clock. */
function feed(clock, state, n, offset, { up = () => 0.2, down = () => 0.2, gap = 50 } = {}) {
  for (let i = 0; i < n; i++) {
    const u = up(i);
    const d = down(i);
    const s = exchange(state.t, offset, u, d);
    state.t = s.t3;
    clock.addSample(s);
    state.t += gap;
  }
}

const samplesOf = (list) =>
  list.map(({ t0, t1, t2, t3 }) => ({
    t0,
    t1,
    t2,
    t3,
    rtt: t3 - t0 - (t2 - t1),
    offset: (t1 - t0 + (t2 - t3)) / 2,
    at: (t0 + t3) / 2,
  }));

test("NTP offset of one exchange is exact with symmetric delays", () => {
  const { clock, state } = manualClock();
  const s = clock.addSample(exchange(state.t, 1234.5678, 7, 7, 0.3));
  assert.ok(Math.abs(s.offset - 1234.5678) < 1e-9, `offset ${s.offset}`);
  assert.ok(Math.abs(s.rtt - 14) < 1e-9, `rtt ${s.rtt}`);
  assert.ok(Math.abs(clock.offset - 1234.5678) < 1e-9);
});

test("offset estimate on jittered samples with a known offset", () => {
  const random = rng(42);
  for (const trueOffset of [-487.25, 0.125, 312.9]) {
    // Queueing-like one-way delays: 20 ms base + exponential jitter of mean 10 ms, each way.
    const delay = () => 20 - 10 * Math.log(1 - random());
    const list = [];
    let t = 5_000_000;
    for (let i = 0; i < 32; i++) {
      const s = exchange(t, trueOffset, delay(), delay());
      list.push(s);
      t = s.t3 + 10;
    }
    const e = estimateOffset(samplesOf(list));
    // A single sample is off by up to (up − down) / 2, tens of ms here; the estimate by far less.
    const worst = Math.max(...samplesOf(list).map((s) => Math.abs(s.offset - trueOffset)));
    assert.ok(worst > 5, `jitter should spoil single samples (worst ${worst})`);
    assert.ok(Math.abs(e.offset - trueOffset) < 2, `estimate ${e.offset} vs ${trueOffset}`);
    assert.equal(e.slope, 0, "no drift fitted within one burst");
  }
  // Small symmetric jitter (loopback-like): sub-0.1 ms.
  const list = [];
  let t = 1e6;
  for (let i = 0; i < 24; i++) {
    const s = exchange(t, 42.42, 0.05 + 0.1 * random(), 0.05 + 0.1 * random());
    list.push(s);
    t = s.t3 + 10;
  }
  assert.ok(Math.abs(estimateOffset(samplesOf(list)).offset - 42.42) < 0.05);
});

test("a few huge-RTT, asymmetric samples do not move the estimate", () => {
  const good = [];
  let t = 2e6;
  for (let i = 0; i < 20; i++) {
    const s = exchange(t, 100, 0.5, 0.5);
    good.push(s);
    t = s.t3 + 20;
  }
  const base = estimateOffset(samplesOf(good)).offset;
  assert.ok(Math.abs(base - 100) < 1e-9);
  // Five stalls: 450 ms up, 50 ms down (each alone 200 ms off), mixed in among the good ones.
  const bad = [3, 7, 11, 15, 19].map((i) => exchange(good[i].t0 + 5, 100, 450, 50));
  const e = estimateOffset(samplesOf([...good, ...bad]));
  assert.ok(Math.abs(e.offset - 100) < 0.01, `estimate moved to ${e.offset}`);
  assert.equal(e.rtt, 1 + 0.01 - 0.01, "min RTT");

  // The same through the clock, and the outliers' own offsets really are far off.
  const { clock, state } = manualClock();
  feed(clock, state, 20, 100, { up: () => 0.5, down: () => 0.5 });
  for (let i = 0; i < 5; i++) {
    const s = clock.addSample(exchange(state.t, 100, 450, 50));
    assert.ok(Math.abs(s.offset - 300) < 1e-6);
    state.t = s.t3 + 20;
  }
  assert.ok(Math.abs(clock.offset - 100) < 0.01, `clock offset ${clock.offset}`);
});

test("a drifting local clock: the drift is fitted and the offset followed", () => {
  // Local runs 40 ppm fast: offset (server − local) falls 0.04 ms per second.
  const { clock, state } = manualClock({ burstSize: 8 });
  const skew = 40e-6;
  const offsetAt = (local) => 250 - skew * (local - 1_000_000);
  feed(clock, state, 8, offsetAt(state.t), { gap: 10 });
  for (let k = 0; k < 30; k++) {
    state.t += 2000;
    feed(clock, state, 3, offsetAt(state.t), { gap: 10 });
  }
  assert.ok(Math.abs(clock.skewPpm - 40) < 2, `skew ${clock.skewPpm} ppm`);
  assert.ok(Math.abs(clock.offset - offsetAt(state.t)) < 0.05, `offset ${clock.offset} vs ${offsetAt(state.t)}`);
  // 60 s of drift is 2.4 ms: a plain median over the window would lag by about half of it.
  assert.ok(Math.abs(offsetAt(state.t) - 250) > 2);
});

/** A clock that is synced (burst done) at `offset` and playing at `tempo` from startTime. */
function playingClock(offset, tempo = 120) {
  const { clock, state } = manualClock({ burstSize: 16 });
  feed(clock, state, 16, offset);
  assert.equal(clock.synced, true);
  const startTime = Math.floor(state.t + offset) + 100;
  clock.handleEvent("metronome:start", { sessionId: "s", tempo, timeSignature: "4/4", startTime, positionMs: 0 });
  assert.equal(clock.isPlaying, true);
  return { clock, state, startTime };
}

test("slewing: while playing a new estimate is approached at most 0.5 ms/s, never jumped to", () => {
  const { clock, state } = playingClock(100);
  assert.ok(Math.abs(clock.offset - 100) < 1e-6);
  // The path changes: the estimate moves to 105 ms (a window's worth of new samples).
  feed(clock, state, 64, 105, { gap: 5 });
  const t0 = state.t;
  assert.ok(Math.abs(clock.targetOffset - 105) < 0.01, `target ${clock.targetOffset}`);
  assert.ok(clock.offset - 100 <= 0.5 * ((t0 - 1_000_000) / 1000) + 1e-6, "moved no faster than the rate");
  assert.ok(clock.offset < 101, `applied ${clock.offset} must not jump to 105`);
  // Continuity: over the next 12 s, no step larger than the rate allows.
  let previous = clock.offsetAt(t0);
  for (let t = t0 + 10; t <= t0 + 12_000; t += 10) {
    const now = clock.offsetAt(t);
    assert.ok(Math.abs(now - previous) <= 0.5 * 0.01 + 1e-9, `jump of ${now - previous} ms at ${t - t0} ms`);
    previous = now;
  }
  assert.ok(Math.abs(clock.offsetAt(t0 + 2000) - clock.offsetAt(t0) - 1) < 1e-6, "1 ms in 2 s");
  assert.ok(Math.abs(clock.offsetAt(t0 + 12_000) - 105) < 0.01, "reached after the slew");
  // Beats move as smoothly: the local time of a beat shifts by the slewed amount only.
  const k = 40;
  state.t = t0;
  const before = clock.localTimeOfBeat(k);
  state.t = t0 + 1000;
  const after = clock.localTimeOfBeat(k);
  assert.ok(Math.abs(before - after) <= 0.5 + 1e-6, `beat ${k} moved ${before - after} ms in 1 s`);
});

test("slewing: far off it steps at once, and before playback it always steps", () => {
  const { clock, state } = playingClock(100);
  const stepped = [];
  clock.on("sync", (e) => stepped.push(e.stepped));
  feed(clock, state, 64, 160, { gap: 5 });
  assert.ok(stepped.includes(true), "60 ms off: a step");
  assert.ok(Math.abs(clock.offset - 160) < 0.01, `applied ${clock.offset}: 60 ms off must step`);

  const idle = manualClock({ burstSize: 16 });
  feed(idle.clock, idle.state, 16, 100);
  feed(idle.clock, idle.state, 64, 103, { gap: 5 });
  assert.equal(idle.clock.isPlaying, false);
  assert.ok(Math.abs(idle.clock.offset - 103) < 0.01, `not playing: step to 103, got ${idle.clock.offset}`);

  // Stopping lifts the slew limit again.
  clock.handleEvent("metronome:stop", { sessionId: "s", stopTime: Math.floor(clock.serverNow()), positionMs: 0 });
  feed(clock, state, 64, 163, { gap: 5 });
  assert.ok(Math.abs(clock.offset - 163) < 0.01);
});

// ---- beat times: an independent computation of the server's timeline maths --------------------

/**
 * Beats elapsed at server time t for: start at S (beat 0) at tempo a; at E a linear ramp from the
 * tempo then sounding (a) to b over R ms; b after. Closed form of the integral of tempo.
 */
function beatsClosedForm(t, { S, a, E, b, R }) {
  if (t <= S) return 0;
  if (t <= E) return ((t - S) * a) / 60_000;
  const beforeRamp = ((E - S) * a) / 60_000;
  const e = Math.min(t - E, R);
  const inRamp = (a * e + ((b - a) * e * e) / (2 * R)) / 60_000;
  const afterRamp = (Math.max(0, t - E - R) * b) / 60_000;
  return beforeRamp + inRamp + afterRamp;
}

/** The time of beat k by bisection on the closed form (no quadratic formula). */
function timeOfBeatBisect(k, p) {
  let lo = p.S;
  let hi = p.S + 3_600_000;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (beatsClosedForm(mid, p) < k) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

test("beat times across a tempo ramp match an independent closed form", () => {
  for (const [a, b, R] of [
    [120, 180, 2000],
    [140, 60, 3000],
    [90, 91, 10_000],
    [200, 40, 1500],
  ]) {
    const offset = -321.75;
    const { clock, startTime: S } = playingClock(offset, a);
    const E = S + 1250; // mid-beat
    const p = { S, a, E, b, R };
    const check = (from, to) => {
      for (let k = from; k <= to; k++) {
        const want = timeOfBeatBisect(k, p);
        const server = clock.serverTimeOfBeat(k);
        assert.ok(Math.abs(server - want) < 1e-6, `${a}→${b}/${R}: beat ${k} at ${server}, closed form ${want}`);
        const local = clock.localTimeOfBeat(k);
        assert.ok(Math.abs(local - (want - offset)) < 1e-6, `beat ${k} local ${local}`);
      }
    };
    const beforeRamp = Math.ceil(beatsClosedForm(E, p));
    check(0, beforeRamp - 1); // before the ramp is announced: constant tempo
    clock.handleEvent("tempo:change", { sessionId: "s", oldTempo: a, newTempo: b, effectiveTimestamp: E, rampDurationMs: R });
    // From the change on (earlier beats are history the server's timeline no longer holds either).
    check(beforeRamp, Math.ceil(beatsClosedForm(E + R + 5000, p)));
    // The tempo in the middle of the ramp is halfway, and beats stay continuous through it.
    assert.ok(Math.abs(clock.tempoAt(E + R / 2) - (a + b) / 2) < 1e-9);
    for (const t of [E, E + 1, E + R / 3, E + R, E + R + 777]) {
      assert.ok(Math.abs(clock.beatAt(t) - beatsClosedForm(t, p)) < 1e-9, `beat count at ${t - S}`);
    }
  }
});

test("the server's own ramp examples (src/core/timeline.rs tests)", () => {
  const tl = new Timeline();
  tl.playAt(0, 0);
  tl.rampTempo(180, 2000, 1000);
  assert.equal(tl.tempoAt(2000), 150);
  assert.ok(Math.abs(tl.beatAt(3000) - 7) < 1e-9);
  assert.ok(Math.abs(tl.beatAt(4000) - 10) < 1e-9);
  assert.ok(Math.abs(tl.timeOfBeat(7) - 3000) < 1e-6);
  assert.ok(Math.abs(tl.timeOfBeat(10) - 4000) < 1e-6);
  // Cutting a ramp keeps the beat.
  const cut = new Timeline();
  cut.playAt(0, 0);
  cut.rampTempo(60, 4000, 0);
  const before = cut.beatAt(1000);
  assert.equal(cut.tempoAt(1000), 105);
  cut.reanchor(1000);
  assert.ok(Math.abs(cut.beatAt(1000) - before) < 1e-9);
  // A ramp announced mid-ramp starts from the tempo sounding then (oldTempo).
  const { clock, startTime: S } = playingClock(0);
  clock.handleEvent("tempo:change", { sessionId: "s", oldTempo: 120, newTempo: 60, effectiveTimestamp: S + 1000, rampDurationMs: 4000 });
  const mid = clock.beatAt(S + 2000);
  clock.handleEvent("tempo:change", { sessionId: "s", oldTempo: 105, newTempo: 200, effectiveTimestamp: S + 2000, rampDurationMs: 1000 });
  assert.ok(Math.abs(clock.beatAt(S + 2000) - mid) < 1e-9, "continuous at the second change");
  assert.equal(clock.tempoAt(S + 2500), (105 + 200) / 2);
});

test("nextBeats: bar and beat numbers, server and local times, first beat at startTime", () => {
  const { clock, state, startTime } = playingClock(500);
  const beats = clock.nextBeats(state.t, 6);
  assert.equal(beats.length, 6);
  assert.deepEqual(
    beats.map((b) => [b.index, b.bar, b.beat, b.downbeat]),
    [
      [0, 1, 1, true],
      [1, 1, 2, false],
      [2, 1, 3, false],
      [3, 1, 4, false],
      [4, 2, 1, true],
      [5, 2, 2, false],
    ],
  );
  assert.equal(beats[0].serverTime, startTime);
  for (const [i, b] of beats.entries()) {
    assert.ok(Math.abs(b.serverTime - (startTime + 500 * i)) < 1e-9);
    assert.ok(Math.abs(b.localTime - (b.serverTime - 500)) < 1e-9);
  }
  // Halfway through beat 9, the next beat is 10.
  const local = clock.localTimeOfBeat(9) + 250;
  assert.equal(clock.nextBeats(local, 1)[0].index, 10);
  assert.ok(Math.abs(clock.positionAt(local) - (9 * 500 + 250)) < 1e-9);
  clock.handleEvent("metronome:stop", { sessionId: "s", stopTime: startTime + 6000, positionMs: 6000 });
  assert.deepEqual(clock.nextBeats(local, 4), []);
  assert.equal(clock.localTimeOfBeat(3), null);
});

test("a late joiner's guessed beat count is repaired by position:sync", () => {
  const { clock } = manualClock();
  // Joined while playing at 100 BPM in 3/4 after a tempo change: the join state has no beat count.
  clock.applySessionState({ isPlaying: true, tempo: 100, tempoNow: 100, position: 12_345, serverTimestamp: 2_000_000, timeSignature: "3/4" });
  assert.equal(clock.timeline.beatKnown, false);
  // The server says: at 2_000_010, bar 7, beat 2, 0.25 into it.
  clock.handleEvent("position:sync", {
    sessionId: "s",
    positionMs: 12_355,
    serverTime: 2_000_010,
    beat: 2,
    bar: 7,
    beatProgress: 0.25,
    tempo: 100,
  });
  assert.equal(clock.timeline.beatKnown, true);
  const count = 6 * 3 + 1 + 0.25;
  assert.ok(Math.abs(clock.beatAt(2_000_010) - count) < 1e-9);
  const next = clock.serverTimeOfBeat(20);
  assert.ok(Math.abs(next - (2_000_010 + 0.75 * 600)) < 1e-9, `beat 20 at ${next}`);
  // A consistent position:sync changes nothing.
  const anchor = clock.timeline;
  clock.handleEvent("position:sync", { sessionId: "s", positionMs: 12_955, serverTime: 2_000_610, beat: 2, bar: 7, beatProgress: 0.25 + 1, tempo: 100 });
  assert.deepEqual(clock.timeline, anchor);
});

test("position:sync: a stale one is ignored, one stray one too; a persistent disagreement repairs", () => {
  const { clock, startTime: S } = playingClock(0);
  clock.handleEvent("tempo:change", { sessionId: "s", oldTempo: 120, newTempo: 150, effectiveTimestamp: S + 1000, rampDurationMs: 2000 });
  const exact = clock.timeline;
  const want = clock.serverTimeOfBeat(12);
  // Computed by the server just before the change, delivered just after it: older than the anchor.
  clock.handleEvent("position:sync", { sessionId: "s", positionMs: 999, serverTime: S + 999, beat: 2, bar: 1, beatProgress: 0.998, tempo: 120 });
  assert.deepEqual(clock.timeline, exact, "a position:sync older than the last change is ignored");
  // One that disagrees (at the old tempo), then agreeing ones: nothing changes.
  const sync = (t, tempoOverride) => {
    const beats = clock.beatAt(t);
    const whole = Math.floor(beats);
    clock.handleEvent("position:sync", {
      sessionId: "s",
      positionMs: t - S,
      serverTime: t,
      beat: (whole % 4) + 1,
      bar: Math.floor(whole / 4) + 1,
      beatProgress: beats - whole,
      tempo: tempoOverride ?? clock.tempoAt(t),
    });
  };
  sync(S + 1010, 120);
  sync(S + 1022);
  sync(S + 1035);
  assert.deepEqual(clock.timeline, exact, "a stray position:sync does not undo the ramp");
  assert.equal(clock.serverTimeOfBeat(12), want);
  // A tempo change this client missed: the server keeps saying 100 BPM. After 4, the model follows.
  const missed = (t) =>
    clock.handleEvent("position:sync", { sessionId: "s", positionMs: t - S, serverTime: t, beat: 1, bar: 3, beatProgress: 0.5, tempo: 100 });
  missed(S + 5000);
  missed(S + 5012);
  missed(S + 5025);
  assert.deepEqual(clock.timeline, exact);
  missed(S + 5037);
  assert.equal(clock.tempoAt(S + 6000), 100);
  assert.ok(Math.abs(clock.beatAt(S + 5037) - 8.5) < 1e-9);
  assert.ok(Math.abs(clock.serverTimeOfBeat(9) - (S + 5037 + 300)) < 1e-9);
  assert.equal(clock.repairs.length, 1);
});

test("seek, pause and resume follow the server's anchors", () => {
  const tl = new Timeline();
  tl.seek(1000, 0);
  tl.playAt(500, 100);
  assert.equal(tl.positionAt(300), 1000);
  assert.equal(tl.positionAt(700), 1200);
  assert.ok(Math.abs(tl.timeOfBeat(tl.beatAt(500)) - 500) < 1e-9);
  // Through the clock: pause at 2 s in, resume later: the beat count carries on from the pause.
  const { clock, startTime: S } = playingClock(0);
  clock.handleEvent("metronome:stop", { sessionId: "s", stopTime: S + 2250, positionMs: 2250 });
  assert.ok(Math.abs(clock.beatAt(S + 9999) - 4.5) < 1e-9);
  clock.handleEvent("metronome:start", { sessionId: "s", tempo: 120, timeSignature: "4/4", startTime: S + 10_000, positionMs: 2250 });
  assert.ok(Math.abs(clock.serverTimeOfBeat(5) - (S + 10_250)) < 1e-9);
  clock.handleEvent("position:seek", { sessionId: "s", positionMs: 60_000, serverTime: S + 11_000 });
  assert.ok(Math.abs(clock.beatAt(S + 11_000) - 120) < 1e-9, "seek: beat = position × tempo");
});

test("syncing through a socket: burst on connect, t0 echoed, offset found", async () => {
  const localNow = () => performance.now() + 1e6;
  const trueOffset = 777.125;
  const handlers = new Map();
  let requests = 0;
  const socket = {
    connected: true,
    on: (e, fn) => handlers.set(e, fn),
    off: (e) => handlers.delete(e),
    timeout: () => ({
      emitWithAck: async (event, payload) => {
        assert.equal(event, "clock:sync");
        requests++;
        await new Promise((r) => setTimeout(r, 1));
        const t1 = localNow() + trueOffset;
        return { t0: payload.t0, t1, t2: t1 + 0.01 };
      },
    }),
  };
  const clock = new BandSyncClock({ socket, now: localNow, burstSize: 16, burstGapMs: 0, intervalMs: 50 });
  const synced = new Promise((resolve) => clock.on("sync", resolve));
  await synced;
  assert.ok(requests >= 16, `burst of 16, got ${requests}`);
  assert.equal(clock.synced, true);
  // The fake answers ~1 ms late one way and at once the other: the estimate is off by half of
  // that, and a little more when a busy machine runs the fake's timers late.
  assert.ok(Math.abs(clock.offset - trueOffset) <= 1, `offset ${clock.offset}, rtt ${clock.rtt}`);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(requests > 16, "periodic samples follow the burst");
  assert.ok(handlers.has("metronome:start") && handlers.has("position:sync") && handlers.has("tempo:change"));
  clock.close();
  assert.equal(handlers.size, 0, "close detaches every handler");
  const after = requests;
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(requests <= after + 3, "no more sampling after close");
});
