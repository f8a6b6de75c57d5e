// What the real clients send, at the rate they send it, passes: a leader dragging the tempo
// slider (the app emits set_tempo from the slider's change callback, tens of times a second),
// BandSync's own 50-event latency burst, heartbeat_response and events a newer app adds, and a
// client re-joining a few times in a second. All with the default rate limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { band, connect, connectMany, events, expectNo, join, mark, quiet, sid, sleep, syncState, waitFor, waitForN } from "../lib/client.mjs";
import { httpGet } from "../lib/server.mjs";
import { ack, ackError, ackOk, createSession, enhancedBand } from "../lib/enhanced.mjs";
import { delta, scrapeMetrics } from "../lib/prometheus.mjs";

const server = useServer({ LEGACY_PING_INTERVAL_MS: "0" });

const scrape = () => scrapeMetrics(server.url);

const DRAG_SECONDS = 12;
const DRAG_HZ = 60;
/** Where the leader's hand lets go: a value the sweep below passes through, never rests on. */
const LET_GO = 99;

/** A slider dragged back and forth between 60 and 180 BPM, `n` values, ending on LET_GO. */
const sliderValues = (n) =>
  Array.from({ length: n }, (_, i) => (i === n - 1 ? LET_GO : 60 + Math.round(60 * (1 - Math.cos(i / 40)))));

/** Calls send(value) for each value at `hz`, on a schedule that does not drift. */
async function drag(values, hz, send) {
  const start = Date.now();
  for (let i = 0; i < values.length; i++) {
    const due = start + (i * 1000) / hz;
    if (due > Date.now()) await sleep(due - Date.now());
    send(values[i]);
  }
}

/** Asserts `seen` is `sent` with values left out, never reordered. */
function assertInOrder(seen, sent, label) {
  let at = -1;
  for (const value of seen) {
    at = sent.indexOf(value, at + 1);
    assert.ok(at >= 0, `${label}: the values heard are not in the order sent: ${seen.join(",")}`);
  }
}

/** Three members over `transport`: a legacy band (set_tempo) or an enhanced one (tempo:change with acks). */
async function slidingBand(vocabulary, transport) {
  const b =
    vocabulary === "legacy"
      ? await band(server.url, 3, sid(`drag-${transport}`), { transport })
      : await enhancedBand(server.url, 3, {}, [], { transport });
  return { vocabulary, transport, ...b };
}

/** The tempos a member heard, in order: from snapshots (legacy) or tempo:change (enhanced). */
const tempoHeard = (socket, vocabulary) =>
  vocabulary === "legacy"
    ? events(socket).filter((e) => e.event === "snapshot").map((e) => e.data.tempoBpm)
    : events(socket).filter((e) => e.event === "tempo:change").map((e) => e.data.newTempo);

test(`a ${DRAG_SECONDS} s tempo slider drag at ${DRAG_HZ} events/s: every member ends on the value let go of; the leader hears no error`, async (ctx) => {
  const bands = await Promise.all(
    ["legacy", "enhanced"].flatMap((vocabulary) => ["websocket", "polling"].map((t) => slidingBand(vocabulary, t))),
  );
  const before = await scrape();
  const values = sliderValues(DRAG_SECONDS * DRAG_HZ);
  const acks = new Map(bands.map((b) => [b, []]));
  await Promise.all(
    bands.map((b) =>
      drag(values, DRAG_HZ, (tempo) => {
        if (b.vocabulary === "legacy") b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo });
        else acks.get(b).push(ack(b.leader, "tempo:change", { sessionId: b.sessionId, newTempo: tempo }, 10_000));
      }),
    ),
  );
  for (const b of bands) {
    const label = `${b.vocabulary} over ${b.transport}`;
    for (const f of b.followers) {
      await waitFor(f, b.vocabulary === "legacy" ? "snapshot" : "tempo:change", (d) => (d.tempoBpm ?? d.newTempo) === LET_GO, 5000);
      await quiet(f, b.vocabulary === "legacy" ? "snapshot" : "session:state_sync", 600);
      const heard = tempoHeard(f, b.vocabulary);
      assert.equal(heard.at(-1), LET_GO, `${label}: a member ended on ${heard.at(-1)}, the slider on ${LET_GO}`);
      assertInOrder(heard, values, label);
      ctx.diagnostic(`${label}: a member heard ${heard.length} of ${values.length} values`);
      if (b.vocabulary === "enhanced") {
        const states = events(f).filter((e) => e.event === "session:state_sync");
        assert.equal(states.at(-1)?.data.tempo, LET_GO, `${label}: the last state_sync`);
      }
    }
    // No later change moves it: a second of silence, and the server's own state agrees.
    mark(...b.followers);
    await expectNo(b.followers[0], b.vocabulary === "legacy" ? "snapshot" : "tempo:change", 1000);
    if (b.vocabulary === "legacy") assert.equal((await syncState(b.followers[0], b.sessionId)).tempoBpm, LET_GO);
    // The leader: no error, no disconnect (the recorder logs it as $disconnect); an enhanced
    // leader's every request acknowledged ok.
    const errors = events(b.leader, { all: true }).filter((e) => /^(error|\$disconnect)/.test(e.event));
    assert.deepEqual(errors.map((e) => [e.event, e.data]), [], `${label}: the leader got errors or was disconnected`);
    assert.equal(b.leader.connected, true);
    if (b.vocabulary === "enhanced") {
      const answers = await Promise.all(acks.get(b));
      const refused = answers.filter((a) => a?.ok !== true);
      assert.deepEqual(refused, [], `${label}: refused tempo:change acks`);
      assert.equal(answers.at(-1).coalesced, undefined, `${label}: the value let go of must be applied`);
    }
  }
  const after = await scrape();
  const coalesced = delta(before, after, "bandsync_coalesced_total", { class: "tempo" });
  assert.ok(coalesced > 0, "a drag at 60/s past the tempo budget coalesces");
  assert.equal(delta(before, after, "bandsync_rate_limited_total", { class: "tempo" }), 0, "no tempo event was refused");
  ctx.diagnostic(`${coalesced} tempo events coalesced over the four drags`);
});

test("BandSync's latency burst: 50 set_tempo at once give 50 snapshots, in order, to the sender and the band", async () => {
  const { members, sessionId } = await band(server.url, 2, sid("burst50"));
  const sent = Array.from({ length: 50 }, (_, i) => 100 + i);
  for (const tempo of sent) members[0].emit("set_tempo", { sessionId, tempo });
  for (const m of members) {
    const snapshots = await waitForN(m, "snapshot", 50, undefined, 5000);
    assert.deepEqual(
      snapshots.map((s) => s.tempoBpm),
      sent,
    );
  }
  assert.equal(events(members[0]).filter((e) => e.event === "error").length, 0);
});

test("an enhanced burst of 60 tempo:change: each acknowledged ok and announced, in order", async () => {
  const { sessionId, leader, followers: [follower] } = await enhancedBand(server.url, 2);
  const sent = Array.from({ length: 60 }, (_, i) => 61 + i);
  const answers = await Promise.all(sent.map((newTempo) => ack(leader, "tempo:change", { sessionId, newTempo }, 5000)));
  assert.ok(answers.every((a) => a.ok === true && a.coalesced === undefined), JSON.stringify(answers.slice(0, 3)));
  const changes = await waitForN(follower, "tempo:change", 60, undefined, 5000);
  assert.deepEqual(
    changes.map((c) => c.newTempo),
    sent,
  );
});

test("acknowledgements of coalesced requests carry the answer of the request that replaced them: a follower's 90 tempo:change are all NOT_LEADER", async () => {
  const { sessionId, followers: [follower] } = await enhancedBand(server.url, 2);
  const answers = await Promise.all(
    Array.from({ length: 90 }, (_, i) => ack(follower, "tempo:change", { sessionId, newTempo: 61 + i }, 10_000)),
  );
  const coalesced = answers.filter((a) => a.coalesced === true);
  assert.ok(coalesced.length > 0, "90 at once, past the burst of 60: some were coalesced");
  assert.deepEqual(
    [...new Set(answers.map((a) => `${a.ok}:${a.error?.code}`))],
    ["false:NOT_LEADER"],
    JSON.stringify(answers.slice(-3)),
  );
});

test("heartbeat_response and events a newer app adds are ignored for legacy sockets; an unknown enhanced event with an ack gets VALIDATION", async () => {
  const before = await scrape();
  const [seated, loose] = await connectMany(server.url, 2);
  const sessionId = sid("ignored");
  await join(seated, sessionId);
  mark(seated, loose);
  for (const socket of [seated, loose]) {
    socket.emit("heartbeat_response", { timestamp: Date.now(), serverTimestamp: Date.now() });
    socket.emit("song_library_update", { sessionId, songs: ["Intro", "Verse"] });
  }
  // Handled in order: by the sync_response, whatever they caused has been sent.
  await syncState(seated, sessionId);
  await syncState(loose, sessionId);
  await expectNo(seated, "error", 200);
  await expectNo(loose, "error", 0);
  assert.equal(seated.connected && loose.connected, true);

  const enhanced = await connect(server.url);
  const err = await ackError(enhanced, "setlist:reorder", { order: [2, 1] }, "VALIDATION");
  assert.match(err.message, /Unknown event: setlist:reorder/);

  const after = await scrape();
  const ev = "bandsync_events_received_total";
  assert.equal(delta(before, after, ev, { event: "other", result: "ignored", vocabulary: "other" }), 4, "counted under event=\"other\"");
  assert.equal(delta(before, after, ev, { event: "other", result: "VALIDATION", vocabulary: "other" }), 1);
});

test("5 joins within a second pass: a legacy client trying session names, an enhanced one re-joining", async () => {
  const legacy = await connect(server.url);
  const names = Array.from({ length: 5 }, (_, i) => sid(`try${i}`));
  mark(legacy);
  const started = Date.now();
  for (const name of names) legacy.emit("join_session", { sessionId: name, displayName: "Drums" });
  for (const name of names) await waitFor(legacy, "snapshot", { sessionId: name }, 3000);
  assert.ok(Date.now() - started < 1000, "the five joins took over a second: not the pattern under test");
  assert.equal(events(legacy).filter((e) => e.event === "error").length, 0, "a join was refused");
  // Each join moved the socket: it sits in the last session only.
  const seated = [];
  for (const name of names) seated.push((await httpGet(`${server.url}/api/sessions/${name}`)).body.members.length);
  assert.deepEqual(seated, [0, 0, 0, 0, 1]);

  const enhanced = await connect(server.url);
  const { sessionId } = await createSession(enhanced);
  const answers = await Promise.all(Array.from({ length: 5 }, () => ack(enhanced, "session:join", { sessionId })));
  assert.deepEqual(
    answers.map((a) => a.ok),
    [true, true, true, true, true],
    JSON.stringify(answers.find((a) => !a.ok)),
  );
  await ackOk(enhanced, "session:leave", { sessionId });
});
