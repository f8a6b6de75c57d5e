// Across instances a member hears what it would hear on one instance: every change once, in the
// order of the session's revisions, and a join one snapshot (PROTOCOL.md section 5). Three instances
// on a real redis-server; the tempo budget is off so a leader changes tempo as fast as it can.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startCluster, assertLive } from "../lib/cluster.mjs";
import { connect, closeAll, sid, join, events, waitFor, sleep } from "../lib/client.mjs";
import { redisRaw } from "../lib/redis.mjs";
import { scrapeMetrics, delta } from "../lib/prometheus.mjs";
import { ackOk, createSession, enhancedJoin, STREAM_EVENTS } from "../lib/enhanced.mjs";

let cluster;
let A;
let B;
let C;
before(async () => {
  cluster = await startCluster(3, { MAX_SESSION_MEMBERS: "8", RATE_LIMIT_TEMPO_PER_SEC: "0" });
  [A, B, C] = cluster.servers;
});
after(async () => {
  closeAll();
  await cluster?.stop();
});

/** The events `socket` heard from `from` on, streams left out, as "name" strings. */
const heard = (socket, from = 0) =>
  events(socket, { all: true })
    .slice(from)
    .map((e) => e.event)
    .filter((name) => !STREAM_EVENTS.has(name) && !["ping", "auth:handshake"].includes(name));

/** A leader in `vocabulary` on `url`, in a fresh session that is playing. Returns {leader, sessionId}. */
async function playingSession(url, vocabulary) {
  const leader = await connect(url);
  if (vocabulary === "legacy") {
    const sessionId = sid("order");
    await join(leader, sessionId, { displayName: "Lead" });
    leader.emit("play", { sessionId });
    await waitFor(leader, "play", { sessionId });
    return { leader, sessionId };
  }
  const { sessionId } = await createSession(leader, { displayName: "Lead" });
  await ackOk(leader, "metronome:start", { sessionId });
  return { leader, sessionId };
}

/** Joins `socket` to `sessionId` in `vocabulary` without the helpers' follow-up requests. */
async function plainJoin(socket, sessionId, vocabulary) {
  if (vocabulary === "legacy") {
    socket.emit("join_session", { sessionId, displayName: "Joiner" });
    await waitFor(socket, "snapshot", { sessionId });
  } else {
    await enhancedJoin(socket, sessionId, { displayName: "Joiner" });
  }
}

test("a joiner on another instance hears exactly what it hears on the leader's: one snapshot, each vocabulary pair, five times", async () => {
  for (const leaderVocabulary of ["legacy", "enhanced"]) {
    for (const joinerVocabulary of ["legacy", "enhanced"]) {
      const label = `${leaderVocabulary} leader, ${joinerVocabulary} joiner`;
      const seen = [];
      for (const [round, url] of [A.url, B.url, B.url, B.url, B.url, B.url].entries()) {
        const { leader, sessionId } = await playingSession(A.url, leaderVocabulary);
        const joiner = await connect(url);
        const from = events(joiner, { all: true }).length;
        await plainJoin(joiner, sessionId, joinerVocabulary);
        await sleep(400);
        const got = heard(joiner, from);
        seen.push(got.join(","));
        const snapshots = got.filter((name) => name === "snapshot" || name === "session:state_sync");
        assert.equal(snapshots.length, 1, `${label}, round ${round}: ${got.join(", ")}`);
        leader.close();
        joiner.close();
      }
      assert.deepEqual(new Set(seen).size, 1, `${label}: on A (round 0) and on B (rounds 1-5) the joiner hears:\n  ${seen.join("\n  ")}`);
    }
  }
});

/** The member counts `socket` heard announced for its session, in order. */
function memberCounts(socket, vocabulary) {
  const name = vocabulary === "legacy" ? "room_stats" : "session:member_update";
  return events(socket, { all: true })
    .filter((e) => e.event === name)
    .map((e) => e.data.memberCount);
}

const isNonDecreasing = (xs) => xs.every((x, i) => i === 0 || xs[i - 1] <= x);

test("12 racing joins over three instances: every member hears the member count rise, never fall, and end at 8", async () => {
  for (let round = 0; round < 3; round++) {
    const urls = [A.url, B.url, C.url];
    const first = await connect(A.url);
    const sessionId = sid("race");
    await join(first, sessionId);
    const racers = await Promise.all(
      Array.from({ length: 11 }, (_, i) => connect(urls[(i + 1) % 3]).then((socket) => ({ socket, vocabulary: i % 2 ? "legacy" : "enhanced" }))),
    );
    const outcomes = await Promise.all(
      racers.map(({ socket, vocabulary }) => {
        if (vocabulary === "legacy") {
          socket.emit("join_session", { sessionId });
          return Promise.race([
            waitFor(socket, "snapshot", { sessionId }, 3000).then(() => "seated"),
            waitFor(socket, "error", { code: "SESSION_FULL" }, 3000).then(() => "full"),
          ]);
        }
        return new Promise((resolve) => socket.timeout(3000).emit("session:join", { sessionId }, (err, res) => resolve(err ? "timeout" : res.ok ? "seated" : res.error?.code)));
      }),
    );
    assert.equal(outcomes.filter((o) => o === "seated").length, 7, `round ${round}: ${outcomes}`);
    assert.ok(outcomes.every((o) => ["seated", "full", "SESSION_FULL"].includes(o)), `round ${round}: ${outcomes}`);
    const members = [{ socket: first, vocabulary: "legacy" }, ...racers.filter((_, i) => outcomes[i] === "seated")];
    for (const { socket, vocabulary } of members) {
      await waitFor(socket, vocabulary === "legacy" ? "room_stats" : "session:member_update", { memberCount: 8 }, 3000);
    }
    await sleep(200); // anything heard after the last join, out of order, lands
    for (const [i, { socket, vocabulary }] of members.entries()) {
      const counts = memberCounts(socket, vocabulary);
      assert.ok(isNonDecreasing(counts), `round ${round}, member ${i} (${vocabulary}) heard counts ${counts}`);
      assert.equal(counts.at(-1), 8, `round ${round}, member ${i} (${vocabulary}) ends on ${counts.at(-1)}: ${counts}`);
    }
    for (const { socket } of [{ socket: first }, ...racers]) socket.close();
  }
});

/** Tempos 40, 41, … for `n` changes. */
const tempos = (n, base = 40) => Array.from({ length: n }, (_, i) => base + i);

/**
 * What `socket` heard of the session's tempo from event `from` on, in order: `set_tempo` is told to
 * legacy members as a `snapshot`, to enhanced ones as `tempo:change`.
 */
function heardTempos(socket, vocabulary, from = 0) {
  const own = events(socket, { all: true }).slice(from);
  return vocabulary === "legacy"
    ? own.filter((e) => e.event === "snapshot").map((e) => e.data.tempo)
    : own.filter((e) => e.event === "tempo:change").map((e) => e.data.newTempo);
}

/**
 * A legacy leader on A and two members on B, one legacy and one enhanced, in `sessionId`; `from`
 * holds where each member's events stood once the joins had settled.
 */
async function leaderOnAMembersOnB(sessionId) {
  const leader = await connect(A.url);
  await join(leader, sessionId);
  const legacyMember = await connect(B.url);
  await join(legacyMember, sessionId);
  const enhancedMember = await connect(B.url);
  await enhancedJoin(enhancedMember, sessionId);
  await sleep(200);
  const from = [legacyMember, enhancedMember].map((s) => events(s, { all: true }).length);
  return { leader, legacyMember, enhancedMember, from };
}

test("200 tempo changes from a leader on A: members on B hear each once, in the order sent, ending on the last", async () => {
  const sessionId = sid("tempo");
  const { leader, legacyMember, enhancedMember, from } = await leaderOnAMembersOnB(sessionId);
  const sent = tempos(200);
  for (const tempo of sent) leader.emit("set_tempo", { sessionId, tempo });
  await waitFor(legacyMember, "snapshot", { tempo: sent.at(-1) }, 5000);
  await waitFor(enhancedMember, "tempo:change", { newTempo: sent.at(-1) }, 5000);
  await sleep(300);
  assert.deepEqual(heardTempos(legacyMember, "legacy", from[0]), sent);
  assert.deepEqual(heardTempos(enhancedMember, "enhanced", from[1]), sent);
  for (const s of [leader, legacyMember, enhancedMember]) s.close();
});

test("joining on B while a leader on A changes tempo every few ms: the joiner hears only changes newer than its snapshot, in order", async () => {
  for (const vocabulary of ["legacy", "enhanced"]) {
    const sessionId = sid("floor");
    const leader = await connect(A.url);
    await join(leader, sessionId);
    // 200 changes 3 ms apart, and more (up to tempo 300) until the join is answered: the join
    // lands mid-run however slow the machine.
    const sent = [];
    let joined = false;
    const sending = (async () => {
      for (let tempo = 100; tempo <= 300 && (sent.length < 200 || !joined); tempo++) {
        leader.emit("set_tempo", { sessionId, tempo });
        sent.push(tempo);
        await sleep(3);
      }
    })();
    await sleep(150);
    const joiner = await connect(B.url);
    const from = events(joiner, { all: true }).length;
    let joinedAt;
    if (vocabulary === "legacy") {
      // The join's answer is the first thing it hears; tempo snapshots may follow before any reply.
      joiner.emit("join_session", { sessionId });
      joinedAt = (await waitFor(joiner, "snapshot", { sessionId }, 2000, from)).tempo;
    } else joinedAt = (await enhancedJoin(joiner, sessionId)).session.tempo;
    joined = true;
    await sending;
    await waitFor(leader, "snapshot", { tempo: sent.at(-1) }, 5000);
    await sleep(300);
    // The legacy join's own snapshot comes first in what it heard; the rest are the changes.
    const heard = heardTempos(joiner, vocabulary, from).slice(vocabulary === "legacy" ? 1 : 0);
    assert.ok(joinedAt > sent[0] && joinedAt < sent.at(-1), `${vocabulary}: joined mid-run (tempo ${joinedAt})`);
    assert.deepEqual(heard, sent.filter((t) => t > joinedAt), `${vocabulary}: joined at ${joinedAt}`);
    leader.close();
    joiner.close();
  }
});

test("a change stored but never announced (its instance died in between): after REORDER_WAIT_MS members get the current state, then changes flow again", async () => {
  const sessionId = sid("gap");
  const { leader, legacyMember, enhancedMember, from } = await leaderOnAMembersOnB(sessionId);
  const metricsBefore = await scrapeMetrics(B.url);
  // What an instance killed between its write and its announcement leaves behind: one revision no one hears of.
  await redisRaw(cluster.redis.port, [["HINCRBY", `${cluster.prefix}session:${sessionId}`, "rev", "1"]]);
  const started = Date.now();
  leader.emit("set_tempo", { sessionId, tempo: 99 });
  await waitFor(legacyMember, "snapshot", { tempo: 99 }, 2000);
  const state = await waitFor(enhancedMember, "session:state_sync", { tempo: 99 }, 2000);
  const waited = Date.now() - started;
  assert.ok(waited >= 200 && waited < 3000, `the state came ${waited} ms after the change (REORDER_WAIT_MS 250)`);
  assert.equal(state.sessionId, sessionId);
  leader.emit("set_tempo", { sessionId, tempo: 100 });
  await waitFor(enhancedMember, "tempo:change", { newTempo: 100 }, 1000);
  await waitFor(legacyMember, "snapshot", { tempo: 100 }, 1000);
  await sleep(300);
  assert.deepEqual(heardTempos(legacyMember, "legacy", from[0]), [99, 100], "the state once, then the next change");
  assert.deepEqual(heardTempos(enhancedMember, "enhanced", from[1]), [100], "the missing change is not replayed");
  const metricsAfter = await scrapeMetrics(B.url);
  const gaps = (outcome) => delta(metricsBefore, metricsAfter, "bandsync_delivery_gaps_total", { outcome });
  assert.deepEqual([gaps("replaced"), gaps("filled")], [1, 0], "B counted one gap, replaced by the state");
  for (const s of [leader, legacyMember, enhancedMember]) s.close();
});

/** Whether `xs` falls (or stays), then rises (or stays): leaves, then joins. */
function fallsThenRises(xs) {
  const low = xs.indexOf(Math.min(...xs));
  return xs.slice(0, low + 1).every((x, i, a) => i === 0 || a[i - 1] >= x) && isNonDecreasing(xs.slice(low));
}

test("an instance killed and restarted mid-run: the survivors hear every tempo once, in order, and the band shrink then grow", async () => {
  const sessionId = sid("kill");
  // Member i sits on A, B, C in turn and speaks legacy when i is even: the leader is legacy on A,
  // the killed instance C holds a legacy and an enhanced member.
  const urls = [A.url, B.url, C.url];
  const members = [];
  for (let i = 0; i < 6; i++) {
    const socket = await connect(urls[i % 3]);
    const vocabulary = i % 2 ? "enhanced" : "legacy";
    if (vocabulary === "legacy") await join(socket, sessionId);
    else await enhancedJoin(socket, sessionId);
    members.push({ socket, vocabulary, url: urls[i % 3] });
  }
  const leader = members[0].socket;
  const survivors = members.filter((m) => m.url !== C.url);
  await sleep(200);
  for (const m of survivors) m.from = events(m.socket, { all: true }).length;
  const sent = tempos(150, 60);
  const sending = (async () => {
    for (const tempo of sent) {
      leader.emit("set_tempo", { sessionId, tempo });
      await sleep(20);
    }
  })();
  await sleep(700);
  C.proc.kill("SIGKILL");
  await C.exited;
  // Restarted where it was, the instance unseats the members it held before at once.
  const restarted = await cluster.add({}, { port: C.port });
  for (let i = 0; i < 2; i++) await join(await connect(restarted.url), sessionId);
  await sending;
  await waitFor(leader, "snapshot", { tempo: sent.at(-1) }, 5000);
  await sleep(500);
  for (const [i, { socket, vocabulary, from }] of survivors.entries()) {
    const label = `survivor ${i} (${vocabulary})`;
    const own = events(socket, { all: true }).slice(from);
    const heard = heardTempos(socket, vocabulary, from);
    if (vocabulary === "enhanced") {
      assert.deepEqual(heard, sent, label);
    } else {
      // The leaves and joins are told as snapshots too, each with the tempo of its moment.
      assert.deepEqual(heard.filter((t, j) => j === 0 || heard[j - 1] !== t), sent, `${label}: ${heard}`);
      // A change heard twice: the same tempo with the same band (every snapshot has its own
      // timestamps, so whole payloads would never repeat).
      const snapshots = own
        .filter((e) => e.event === "snapshot")
        .map((e) => `${e.data.tempo} ${e.data.members.map((m) => m.socketId).sort()}`);
      assert.equal(new Set(snapshots).size, snapshots.length, `${label} heard a change twice: ${snapshots}`);
    }
    const countEvent = vocabulary === "legacy" ? "room_stats" : "session:member_update";
    const counts = own.filter((e) => e.event === countEvent).map((e) => e.data.memberCount);
    assert.ok(fallsThenRises(counts) && Math.min(...counts) === 4 && counts.at(-1) === 6, `${label} heard counts ${counts}`);
  }
  await assertLive(A, B, restarted);
});
