// A network drop on stage does not stop the band. A client's connections go through a TCP proxy
// that drops them all for a few seconds (lib/proxy.mjs), and the real socket.io-client reconnects
// by itself, as the app does. The dropped member keeps its seat and lead for RESUME_GRACE_MS while
// the others play on; a join from the new connection takes the seat back. Explicit leaves end the
// seat at once, as before.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { useServers } from "../lib/setup.mjs";
import { httpGet } from "../lib/server.mjs";
import { connect, events, expectNo, join, mark, seqOf, sid, sleep, waitFor } from "../lib/client.mjs";
import { ackError, ackOk, createSession, enhancedJoin } from "../lib/enhanced.mjs";
import { closeProxies, dropFor, onStage } from "../lib/proxy.mjs";

const GRACE_MS = 8000;
const SHORT_GRACE_MS = 1500;
const [main, short, small] = useServers(
  { RESUME_GRACE_MS: String(GRACE_MS), LEGACY_PING_INTERVAL_MS: "0" },
  { RESUME_GRACE_MS: String(SHORT_GRACE_MS), LEGACY_PING_INTERVAL_MS: "0" },
  // Sessions of three: a full band is three phones.
  { RESUME_GRACE_MS: String(GRACE_MS), LEGACY_PING_INTERVAL_MS: "0", MAX_SESSION_MEMBERS: "3" },
);

after(closeProxies);

/** The longest silence in `event` at `socket` between `from` and `to` (ms), edges included. */
function longestGap(socket, event, from, to) {
  const times = events(socket)
    .filter((e) => e.event === event && e.at >= from && e.at <= to)
    .map((e) => e.at);
  let gap = 0;
  let last = from;
  for (const t of [...times, to]) {
    gap = Math.max(gap, t - last);
    last = t;
  }
  return gap;
}

const named = (socket, name) => events(socket).filter((e) => e.event === name);

test("a legacy leader dropped for 5 s: the band plays on without a gap, and the leader takes the lead back with set_role", async (ctx) => {
  const sessionId = sid("stage-legacy");
  const stage = await onStage(main.port);
  const { socket: leader } = stage;
  const followers = [await connect(main.url), await connect(main.url)];
  await join(leader, sessionId, { displayName: "Keys" });
  for (const f of followers) await join(f, sessionId);
  leader.emit("play", { sessionId });
  await waitFor(followers[0], "scroll_tick", undefined, 2000);
  const oldId = leader.id;
  mark(leader, ...followers);
  const from = Date.now();
  await sleep(300);

  const newId = await dropFor(stage, 5000);
  // What the app does on reconnecting: join again, then take the lead back (LEADER_POLICY=open).
  leader.emit("join_session", { sessionId, displayName: "Keys" });
  await waitFor(leader, "snapshot", { sessionId }, 3000);
  leader.emit("set_role", { sessionId, role: "leader" });
  await waitFor(followers[0], "snapshot", (s) => s.leaderSocketId === newId, 3000);
  const back = Date.now();
  ctx.diagnostic(`back in the lead ${back - from} ms after the drop began`);

  // The old seat's grace ends (it was a follower by then): a plain leave, the band still playing.
  const left = await waitFor(followers[0], "user_left", { socketId: oldId }, GRACE_MS + 2000);
  assert.equal(left.newLeader, null, "the lead stays with the returned leader");
  await sleep(500);
  const to = Date.now();
  for (const f of followers) {
    const gap = longestGap(f, "scroll_tick", from, to);
    ctx.diagnostic(`a follower's longest scroll_tick gap: ${gap} ms over ${to - from} ms`);
    assert.ok(gap <= 250, `scroll_tick stopped for ${gap} ms`);
    assert.deepEqual(named(f, "pause").concat(named(f, "stop")), [], "playback stopped");
    assert.ok(
      named(f, "snapshot").every((e) => e.data.isPlaying),
      "a snapshot said the band stopped",
    );
    assert.deepEqual(
      named(f, "role_changed").map((e) => e.data.reason),
      [],
      "the lead moved while the leader was away",
    );
    assert.equal(named(f, "user_left").length, 1, "one leave: the old seat's, once");
  }
  assert.equal((await waitFor(followers[1], "snapshot", (s) => s.leaderSocketId === newId, 500)).isPlaying, true);
});

test("an enhanced leader dropped for 5 s: members hear 'reconnecting', the same userId takes the seat back with the lead, streams never stop", async (ctx) => {
  const stage = await onStage(main.port);
  const { socket: leader } = stage;
  const { sessionId } = await createSession(leader, { userId: "u-keys", displayName: "Keys" });
  const enhancedFollower = await connect(main.url);
  await enhancedJoin(enhancedFollower, sessionId, { userId: "u-drums" });
  const legacyFollower = await connect(main.url);
  await join(legacyFollower, sessionId);
  await ackOk(leader, "metronome:start", { sessionId, tempo: 100 });
  await waitFor(enhancedFollower, "position:sync", undefined, 2000);
  await waitFor(legacyFollower, "scroll_tick", undefined, 2000);
  const oldId = leader.id;
  mark(leader, enhancedFollower, legacyFollower);
  const from = Date.now();
  await sleep(300);

  const back = dropFor(stage, 5000);
  const held = await waitFor(enhancedFollower, "session:member_update", { action: "reconnecting" }, 2000);
  assert.equal(held.socketId, oldId);
  assert.equal(held.memberCount, 3, "the held seat still counts");
  const stored = await httpGet(`${main.url}/api/sessions/${sessionId}`);
  const seat = stored.body.members.find((m) => m.socketId === oldId);
  assert.equal(seat?.reconnecting, true, `the sessions API shows the seat held: ${stored.text}`);

  const newId = await back;
  const answer = await ackOk(leader, "session:join", { sessionId, userId: "u-keys" });
  assert.equal(answer.resumed, true);
  assert.equal(answer.member.socketId, newId);
  assert.equal(answer.member.role, "leader");
  assert.equal(typeof answer.resumeToken, "string");
  const state = await waitFor(leader, "session:state_sync", { sessionId }, 2000);
  assert.equal(state.isPlaying, true, "the returning leader finds the band playing");
  assert.equal(state.leaderSocketId, newId);
  assert.ok(state.position > 4000, `the running position: ${state.position} ms`);

  const update = await waitFor(enhancedFollower, "session:member_update", { action: "reconnected" }, 2000);
  assert.deepEqual([update.previousSocketId, update.socketId, update.memberCount], [oldId, newId, 3]);
  const election = await waitFor(enhancedFollower, "leader:election", undefined, 2000);
  assert.deepEqual([election.oldLeader, election.newLeader, election.reason], [oldId, newId, "resumed"]);
  await waitFor(legacyFollower, "snapshot", (s) => s.leaderSocketId === newId, 2000);
  const backAt = Date.now();

  // The leader drives the band again from its new connection.
  await ackOk(leader, "tempo:change", { sessionId, newTempo: 104 });
  await waitFor(enhancedFollower, "tempo:change", { newTempo: 104 }, 2000);

  // Past the old seat's grace: nobody leaves, nothing stops.
  await sleep(Math.max(0, from + 300 + GRACE_MS + 500 - Date.now()));
  const to = Date.now();
  const gaps = [longestGap(enhancedFollower, "position:sync", from, to), longestGap(legacyFollower, "scroll_tick", from, to)];
  ctx.diagnostic(`back ${backAt - from} ms after the drop; longest gaps position:sync ${gaps[0]} ms, scroll_tick ${gaps[1]} ms`);
  assert.ok(gaps.every((g) => g <= 250), `a stream stopped: ${gaps} ms`);
  assert.deepEqual(named(enhancedFollower, "metronome:stop"), []);
  const left = named(enhancedFollower, "session:member_update").filter((e) => e.data.action === "left");
  assert.deepEqual(left, [], "the seat taken back must not leave when its old grace ends");
  assert.deepEqual(named(legacyFollower, "user_left").concat(named(legacyFollower, "pause")), []);
  assert.deepEqual(
    named(legacyFollower, "snapshot").map((e) => e.data.isPlaying).filter((p) => !p),
    [],
    "legacy members saw the band stop",
  );
});

test("a resume token takes its seat back; an old, foreign or made-up token is refused with UNAUTHORIZED and changes nothing", async () => {
  const stage = await onStage(main.port);
  const { socket: drummer } = stage;
  const creator = await connect(main.url);
  const { sessionId } = await createSession(creator);
  const other = await createSession(await connect(main.url));
  const first = await enhancedJoin(drummer, sessionId, { displayName: "Drums" });
  const token = first.resumeToken;
  assert.match(token, /^[0-9a-f]{32}$/);
  const oldId = drummer.id;

  const back = dropFor(stage, 1500);
  await waitFor(creator, "session:member_update", { action: "reconnecting", socketId: oldId }, 2000);
  const newId = await back;
  const answer = await ackOk(drummer, "session:join", { sessionId, resumeToken: token });
  assert.deepEqual([answer.resumed, answer.member.socketId, answer.member.displayName], [true, newId, "Drums"]);
  assert.notEqual(answer.resumeToken, token, "a fresh token for the seat");
  await waitFor(creator, "session:member_update", { action: "reconnected", socketId: newId }, 2000);
  mark(creator);

  const before = (await httpGet(`${main.url}/api/sessions/${sessionId}`)).body;
  const thief = await connect(main.url);
  for (const [label, payload] of [
    ["the token just spent", { sessionId, resumeToken: token }],
    ["a token of another session's seat", { sessionId, resumeToken: other.ack.resumeToken }],
    ["a made-up token", { sessionId, resumeToken: "0".repeat(32) }],
  ]) {
    const err = await ackError(thief, "session:join", payload, "UNAUTHORIZED");
    assert.match(err.message, /resume token/, label);
  }
  // The current token on the other session's id is not that session's either.
  await ackError(thief, "session:join", { sessionId: other.sessionId, resumeToken: answer.resumeToken }, "UNAUTHORIZED");
  const afterwards = (await httpGet(`${main.url}/api/sessions/${sessionId}`)).body;
  assert.deepEqual(afterwards.members, before.members, "refused joins changed the session");
  await expectNo(creator, "session:member_update", 200);

  // Back before the server saw the drop: the token takes the seat from the connection the server
  // still counts as open, which is closed.
  const quick = await connect(main.url);
  const from = seqOf(drummer);
  const taken = await ackOk(quick, "session:join", { sessionId, resumeToken: answer.resumeToken });
  assert.deepEqual([taken.resumed, taken.member.socketId, taken.member.displayName], [true, quick.id, "Drums"]);
  // The seat's old connection is closed by the server.
  await waitFor(drummer, "$disconnect", (reason) => reason === "io server disconnect", 2000, from);
  const now = (await httpGet(`${main.url}/api/sessions/${sessionId}`)).body;
  assert.deepEqual(now.members.map((m) => m.socketId).sort(), [creator.id, quick.id].sort());
});

test("a drop longer than the grace: the usual leave, exactly once; the returning client gets a new seat", async () => {
  const stage = await onStage(short.port);
  const { socket: leader } = stage;
  const { sessionId, ack: created } = await createSession(leader, { userId: "u-keys" });
  const enhancedFollower = await connect(short.url);
  await enhancedJoin(enhancedFollower, sessionId);
  const legacyFollower = await connect(short.url);
  await join(legacyFollower, sessionId);
  await ackOk(leader, "metronome:start", { sessionId });
  const oldId = leader.id;
  mark(enhancedFollower, legacyFollower);

  const back = dropFor(stage, SHORT_GRACE_MS + 2000);
  await waitFor(enhancedFollower, "session:member_update", { action: "reconnecting" }, 2000);
  const election = await waitFor(enhancedFollower, "leader:election", undefined, SHORT_GRACE_MS + 2000);
  assert.deepEqual([election.oldLeader, election.newLeader, election.reason], [oldId, enhancedFollower.id, "leader_disconnected"]);
  await waitFor(enhancedFollower, "session:state_sync", (st) => !st.isPlaying && st.leaderSocketId === enhancedFollower.id, 1000);
  const changed = await waitFor(legacyFollower, "role_changed", { reason: "leader_disconnected" }, 1000);
  assert.equal(changed.socketId, enhancedFollower.id);
  await waitFor(legacyFollower, "user_left", { socketId: oldId }, 1000);

  const newId = await back;
  await ackError(leader, "session:join", { sessionId, resumeToken: created.resumeToken }, "UNAUTHORIZED");
  const again = await ackOk(leader, "session:join", { sessionId, userId: "u-keys" });
  assert.equal(again.resumed, undefined, "nothing to take back after the grace");
  assert.deepEqual([again.member.socketId, again.member.role], [newId, "follower"]);
  await sleep(300);
  const leaves = named(enhancedFollower, "session:member_update").filter((e) => e.data.action === "left");
  assert.equal(leaves.length, 1, "left exactly once");
  assert.equal(named(legacyFollower, "user_left").length, 1, "user_left exactly once");
});

test("a full legacy band whose leader drops: the app's re-join takes the held seat back, lead included, with no error and no stop", async () => {
  const sessionId = sid("full-legacy");
  const stage = await onStage(small.port);
  const { socket: leader } = stage;
  const followers = [await connect(small.url), await connect(small.url)];
  await join(leader, sessionId);
  for (const f of followers) await join(f, sessionId);
  leader.emit("play", { sessionId });
  await Promise.all([leader, ...followers].map((s) => waitFor(s, "play", undefined, 2000)));
  mark(leader, ...followers);

  const dropped = Date.now();
  const newId = await dropFor(stage, 1500);
  // What the app does on reconnecting: join again. The session is full: the held seat is its own.
  const snapshot = await join(leader, sessionId);
  assert.equal(snapshot.leaderSocketId, newId, "the returning leader leads again");
  assert.equal(snapshot.isPlaying, true);
  assert.equal(snapshot.members.length, 3);
  await waitFor(followers[0], "snapshot", (s) => s.leaderSocketId === newId, 2000);
  await sleep(dropped + GRACE_MS + 1500 - Date.now()); // past the old connection's grace
  const leaderSnapshots = events(leader, { all: true }).filter((e) => e.event === "snapshot" && e.data.leaderSocketId === newId);
  assert.equal(leaderSnapshots.length, 1, `the re-join is answered with one snapshot: ${JSON.stringify(leaderSnapshots)}`);
  for (const socket of [leader, ...followers]) {
    const got = events(socket, { all: true });
    assert.deepEqual(got.filter((e) => e.event === "error").map((e) => e.data), [], "an error reached a musician");
    assert.deepEqual(got.filter((e) => ["pause", "stop", "user_left"].includes(e.event)).map((e) => e.event), []);
  }
  assert.equal((await httpGet(`${small.url}/api/sessions/${sessionId}`)).body.isPlaying, true);
});

test("an explicit disconnect still ends the seat at once, grace or not", async () => {
  const sessionId = sid("explicit");
  const leader = await connect(main.url);
  const follower = await connect(main.url);
  await join(leader, sessionId);
  await join(follower, sessionId);
  leader.emit("play", { sessionId });
  await waitFor(follower, "play", undefined, 2000);
  const started = Date.now();
  leader.disconnect();
  const snap = await waitFor(follower, "snapshot", (s) => !s.isPlaying, 1000);
  assert.equal(snap.message, `${snap.members[0].displayName} is now leading`);
  await waitFor(follower, "user_left", { disconnectReason: "client namespace disconnect" }, 1000);
  assert.ok(Date.now() - started < 1000, "the leave waited");
});
