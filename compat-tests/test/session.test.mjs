// join_session / leave_session / capacity / idempotent re-join / one session per socket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import {
  connect,
  connectMany,
  sid,
  mark,
  waitFor,
  waitForEntry,
  expectNo,
  expectError,
  join,
  band,
  names,
  events,
  syncState,
  seqOf,
} from "../lib/client.mjs";
import { assertSnapshot, assertRoomStats, assertMember, assertStampedSince } from "../lib/shapes.mjs";

const server = useServer(NO_RATE_LIMITS);

test("first join: snapshot, then room_stats, then user_joined; first member leads", async () => {
  const a = await connect(server.url);
  const s = sid("first");
  const before = Date.now();
  a.emit("join_session", { sessionId: s, displayName: "Alice" });
  const snap = await waitForEntry(a, "snapshot", { sessionId: s });
  const stats = await waitForEntry(a, "room_stats", { sessionId: s });
  const joined = await waitForEntry(a, "user_joined");
  assert.ok(snap.index < stats.index && stats.index < joined.index, `order: ${names(a).join(", ")}`);

  assertSnapshot(snap.data);
  assert.equal(snap.data.sessionId, s);
  assert.equal(snap.data.tempo, 120);
  assert.equal(snap.data.tempoBpm, 120);
  assert.equal(snap.data.position, 0);
  assert.equal(snap.data.isPlaying, false);
  assert.equal(snap.data.leaderSocketId, a.id);
  assert.equal(snap.data.message, "Alice is leading");
  assert.deepEqual(snap.data.settings, { maxMembers: 8 });
  assert.equal(snap.data.members.length, 1);
  const m = snap.data.members[0];
  assertMember(m);
  assert.deepEqual({ socketId: m.socketId, displayName: m.displayName, role: m.role }, {
    socketId: a.id,
    displayName: "Alice",
    role: "leader",
  });
  assertStampedSince(m.joinedAt, before, 1000, "joinedAt");
  assert.ok(Math.abs(snap.data.serverTimestamp - Date.now()) < 2000);

  assertRoomStats(stats.data);
  assert.equal(stats.data.memberCount, 1);
  assert.equal(stats.data.connectedCount, 1);
  assert.equal(stats.data.isPlaying, false);
  assert.equal(stats.data.tempo, 120);
  assert.equal(stats.data.leader, a.id);

  assert.equal(joined.data.memberCount, 1);
  assertMember(joined.data.member);
  assert.equal(joined.data.member.socketId, a.id);
  assert.equal(joined.data.member.displayName, "Alice");
  assert.equal(joined.data.member.role, "leader");
});

test('default displayName is "User " + last 4 chars of the socket id', async () => {
  const a = await connect(server.url);
  const s = sid("defname");
  const snap = await join(a, s);
  assert.equal(snap.members[0].displayName, `User ${a.id.slice(-4)}`);
  assert.equal(snap.message, `User ${a.id.slice(-4)} is leading`);
  const joined = await waitFor(a, "user_joined");
  assert.equal(joined.member.displayName, `User ${a.id.slice(-4)}`);
});

test("second member joins as follower; room gets room_stats and user_joined", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s = sid("second");
  await join(a, s, { displayName: "A" });
  mark(a, b);
  const snap = await join(b, s, { displayName: "B" });
  assertSnapshot(snap);
  assert.equal(snap.leaderSocketId, a.id);
  assert.equal(snap.message, "A is leading");
  assert.deepEqual(
    snap.members.map((m) => [m.socketId, m.role]),
    [
      [a.id, "leader"],
      [b.id, "follower"],
    ],
  );
  for (const x of [a, b]) {
    const stats = await waitForEntry(x, "room_stats", { sessionId: s });
    const uj = await waitForEntry(x, "user_joined");
    assert.ok(stats.index < uj.index, `room_stats before user_joined on ${x.id}: ${names(x)}`);
    assert.equal(stats.data.memberCount, 2);
    assert.equal(uj.data.memberCount, 2);
    assert.equal(uj.data.member.socketId, b.id);
    assert.equal(uj.data.member.role, "follower");
  }
  await expectNo(a, "snapshot", 150);
});

test('8 clients join "demo"; the 9th gets SESSION_FULL and nothing changes', async () => {
  const clients = await connectMany(server.url, 9);
  const eight = clients.slice(0, 8);
  const ninth = clients[8];
  for (const [i, c] of eight.entries()) {
    const snap = await join(c, "demo");
    assert.equal(snap.members.length, i + 1);
    // Every member so far sees this join before the next one starts.
    await Promise.all(eight.slice(0, i + 1).map((m) => waitFor(m, "user_joined", { memberCount: i + 1 })));
  }
  // Consistent, increasing room_stats / user_joined everywhere.
  for (const [i, c] of eight.entries()) {
    const ev = names(c).filter((n) => n === "room_stats" || n === "user_joined");
    const expectedPairs = 8 - i;
    assert.equal(ev.length, expectedPairs * 2, `member ${i}: ${ev}`);
    const all = events(c);
    const joinedCounts = all.filter((e) => e.event === "user_joined").map((e) => e.data.memberCount);
    const statsCounts = all.filter((e) => e.event === "room_stats").map((e) => e.data.memberCount);
    const expected = Array.from({ length: expectedPairs }, (_, k) => i + 1 + k);
    assert.deepEqual(joinedCounts, expected, `user_joined memberCounts at member ${i}`);
    assert.deepEqual(statsCounts, expected, `room_stats memberCounts at member ${i}`);
    const joinedIds = all.filter((e) => e.event === "user_joined").map((e) => e.data.member.socketId);
    assert.deepEqual(joinedIds, eight.slice(i).map((m) => m.id));
    for (const st of all.filter((e) => e.event === "room_stats")) {
      assertRoomStats(st.data);
      assert.equal(st.data.sessionId, "demo");
      assert.equal(st.data.leader, eight[0].id);
    }
  }

  mark(...clients);
  ninth.emit("join_session", { sessionId: "demo" });
  const err = await expectError(ninth, "SESSION_FULL");
  assert.equal(err.message, "Session at capacity (8 members)");
  await expectNo(ninth, "snapshot", 200);
  for (const m of eight) {
    await expectNo(m, "room_stats", 0);
    await expectNo(m, "user_joined", 0);
  }
  // Membership unchanged: an idempotent re-join by a member shows the same 8.
  const snap = await join(eight[3], "demo");
  assert.equal(snap.members.length, 8);
  assert.deepEqual(
    snap.members.map((m) => m.socketId),
    eight.map((m) => m.id),
  );
  assert.ok(!snap.members.some((m) => m.socketId === ninth.id));
  // The refused client is not a member.
  mark(ninth);
  ninth.emit("update_message", { sessionId: "demo", message: "hi" });
  await expectError(ninth, "NOT_A_MEMBER");
});

test('join with role "leader" takes the lead; previous leader becomes follower', async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s = sid("roleleader");
  await join(a, s, { displayName: "A" });
  const snap = await join(b, s, { displayName: "B", role: "leader" });
  assert.equal(snap.leaderSocketId, b.id);
  assert.equal(snap.message, "B is leading");
  const roles = Object.fromEntries(snap.members.map((m) => [m.socketId, m.role]));
  assert.deepEqual(roles, { [a.id]: "follower", [b.id]: "leader" });
});

test("re-joining the same session is idempotent: snapshot again, no second member, no user_joined", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s = sid("rejoin");
  await join(a, s);
  await join(b, s);
  await waitFor(a, "user_joined", { memberCount: 2 });
  await waitFor(b, "user_joined", { memberCount: 2 });
  mark(a, b);
  const snap = await join(b, s);
  assertSnapshot(snap);
  assert.equal(snap.members.length, 2);
  assert.equal(snap.leaderSocketId, a.id);
  assert.deepEqual(
    snap.members.map((m) => m.socketId),
    [a.id, b.id],
  );
  await expectNo(a, "user_joined", 250);
  await expectNo(b, "user_joined", 0);
  await expectNo(a, "snapshot", 0);
  // Re-join by the leader keeps it the leader.
  const snap2 = await join(a, s);
  assert.equal(snap2.leaderSocketId, a.id);
  assert.equal(snap2.members.length, 2);
});

test("joining another session first leaves the current one", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s1 = sid("one");
  const s2 = sid("two");
  await join(a, s1, { displayName: "A" });
  await join(b, s1, { displayName: "B" });
  await waitFor(b, "user_joined", { memberCount: 2 });
  mark(a, b);
  const snap = await join(a, s2);
  assert.equal(snap.sessionId, s2);
  assert.equal(snap.members.length, 1);
  assert.equal(snap.members[0].socketId, a.id);
  assert.equal(snap.leaderSocketId, a.id);
  // Old room: a led, so b is elected: role_changed, snapshot, room_stats, user_left.
  const rc = await waitForEntry(b, "role_changed");
  const sn = await waitForEntry(b, "snapshot", { sessionId: s1 });
  const st = await waitForEntry(b, "room_stats", { sessionId: s1 });
  const ul = await waitForEntry(b, "user_left");
  assert.ok(rc.index < sn.index && sn.index < st.index && st.index < ul.index, names(b).join(", "));
  assert.equal(rc.data.socketId, b.id);
  assert.equal(sn.data.leaderSocketId, b.id);
  assert.equal(st.data.memberCount, 1);
  assert.equal(ul.data.socketId, a.id);
  assert.equal(ul.data.memberCount, 1);
  assert.equal(ul.data.newLeader, b.id);
  // a no longer belongs to s1.
  const snapB = await join(b, s1);
  assert.deepEqual(
    snapB.members.map((m) => m.socketId),
    [b.id],
  );
  mark(a);
  a.emit("update_message", { sessionId: s1, message: "still here?" });
  await expectError(a, "NOT_A_MEMBER");
});

test("a follower's leave_session: remaining members get room_stats then user_left", async () => {
  const { sessionId: s, members } = await band(server.url, 3);
  const [a, b, c] = members;
  c.emit("leave_session", { sessionId: s });
  for (const x of [a, b]) {
    const st = await waitForEntry(x, "room_stats", { sessionId: s });
    const ul = await waitForEntry(x, "user_left");
    assert.ok(st.index < ul.index, names(x).join(", "));
    assert.equal(st.data.memberCount, 2);
    assert.equal(ul.data.socketId, c.id);
    assert.equal(ul.data.memberCount, 2);
    assert.equal(ul.data.newLeader, null);
    assert.ok(Number.isInteger(ul.data.timestamp));
    await expectNo(x, "role_changed", 0);
  }
  await expectNo(c, "user_left", 200);
  const snap = await join(a, s);
  assert.deepEqual(
    snap.members.map((m) => m.socketId),
    [a.id, b.id],
  );
  assert.equal(snap.leaderSocketId, a.id);
  mark(c);
  c.emit("update_message", { sessionId: s, message: "gone" });
  await expectError(c, "NOT_A_MEMBER");
});

test("the leader's leave_session re-elects: role_changed (reason leader_left), snapshot, room_stats, user_left", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s = sid("leaderleave");
  await join(a, s, { displayName: "A" });
  await join(b, s, { displayName: "B" });
  await join(c, s, { displayName: "C" });
  await waitFor(b, "user_joined", { memberCount: 3 });
  await waitFor(c, "user_joined", { memberCount: 3 });
  mark(a, b, c);
  a.emit("leave_session", { sessionId: s });
  for (const x of [b, c]) {
    const rc = await waitForEntry(x, "role_changed");
    const sn = await waitForEntry(x, "snapshot", { sessionId: s });
    const st = await waitForEntry(x, "room_stats", { sessionId: s });
    const ul = await waitForEntry(x, "user_left");
    assert.ok(rc.index < sn.index && sn.index < st.index && st.index < ul.index, names(x).join(", "));
    assert.equal(rc.data.socketId, b.id);
    assert.equal(rc.data.role, "leader");
    assert.equal(rc.data.previousRole, "follower");
    assert.equal(rc.data.reason, "leader_left");
    assert.ok(Number.isInteger(rc.data.timestamp));
    assert.equal(sn.data.leaderSocketId, b.id);
    assert.equal(sn.data.message, "B is now leading");
    assert.equal(sn.data.isPlaying, false);
    assert.deepEqual(
      sn.data.members.map((m) => [m.socketId, m.role]),
      [
        [b.id, "leader"],
        [c.id, "follower"],
      ],
    );
    assert.equal(st.data.memberCount, 2);
    assert.equal(st.data.leader, b.id);
    assert.equal(ul.data.socketId, a.id);
    assert.equal(ul.data.memberCount, 2);
    assert.equal(ul.data.newLeader, b.id);
  }
});

test("leave_session errors: not a member, unknown session", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s = sid("leaveerr");
  await join(a, s);
  mark(a, b);
  b.emit("leave_session", { sessionId: s });
  await expectError(b, "NOT_A_MEMBER");
  b.emit("leave_session", { sessionId: sid("nosuch") });
  await expectError(b, "SESSION_NOT_FOUND");
  await expectNo(a, "room_stats", 150);
  await expectNo(a, "user_left", 0);
});

test("the last member leaving keeps the (empty) session around", async () => {
  const a = await connect(server.url);
  const s = sid("empty");
  await join(a, s);
  a.emit("leave_session", { sessionId: s });
  await new Promise((r) => setTimeout(r, 100));
  const st = await syncState(a, s);
  assert.equal(st.sessionId, s);
  // Re-joining the empty session makes the joiner its leader.
  const snap = await join(a, s);
  assert.equal(snap.members.length, 1);
  assert.equal(snap.leaderSocketId, a.id);
});

test("a socket is a member of at most one session (switching back and forth)", async () => {
  const a = await connect(server.url);
  const [s1, s2] = [sid("ping"), sid("pong")];
  await join(a, s1);
  await join(a, s2);
  const snap1 = await join(a, s1);
  assert.deepEqual(
    snap1.members.map((m) => m.socketId),
    [a.id],
  );
  const from = seqOf(a);
  a.emit("update_message", { sessionId: s2, message: "x" });
  await expectError(a, "NOT_A_MEMBER", 2000, from);
});

test("a full session admits a new member again once someone leaves", async () => {
  const s = sid("refill");
  const [first, ...rest] = await connectMany(server.url, 9);
  const eight = [first, ...rest.slice(0, 7)];
  const ninth = rest[7];
  for (const c of eight) await join(c, s);
  ninth.emit("join_session", { sessionId: s });
  await expectError(ninth, "SESSION_FULL");
  eight[5].emit("leave_session", { sessionId: s });
  await waitFor(first, "user_left", { memberCount: 7 });
  const from = seqOf(first);
  const snap = await join(ninth, s);
  assert.equal(snap.members.length, 8);
  assert.equal(snap.members.at(-1).socketId, ninth.id);
  assert.equal((await waitFor(first, "user_joined", { memberCount: 8 }, 2000, from)).member.socketId, ninth.id);
});

test('the first member leads even when it asks for role "follower"', async () => {
  const a = await connect(server.url);
  const s = sid("firstfollower");
  const snap = await join(a, s, { displayName: "Solo", role: "follower" });
  assert.equal(snap.leaderSocketId, a.id);
  assert.equal(snap.members[0].role, "leader");
  assert.equal(snap.message, "Solo is leading");
});

test("room_stats: connectedCount equals memberCount for connected members", async () => {
  const { members, sessionId: s } = await band(server.url, 3);
  const x = await connect(server.url);
  await join(x, s);
  const st = await waitFor(members[0], "room_stats", { sessionId: s });
  assert.equal(st.memberCount, 4);
  assert.equal(st.connectedCount, 4);
});

test("sessions are isolated: activity in one reaches nobody in another", async () => {
  const one = await band(server.url, 2);
  const two = await band(server.url, 2);
  one.leader.emit("set_tempo", { sessionId: one.sessionId, tempo: 150 });
  one.leader.emit("play", { sessionId: one.sessionId });
  one.followers[0].emit("chat_message", { sessionId: one.sessionId, message: "only for one" });
  await waitFor(one.followers[0], "scroll_tick");
  await waitFor(one.leader, "chat_message");
  for (const m of two.members) {
    const got = events(m).map((e) => e.event);
    assert.deepEqual(got, [], `session two received ${got}`);
  }
  const st = await syncState(two.leader, two.sessionId);
  assert.deepEqual([st.tempoBpm, st.isPlaying], [120, false]);
  one.leader.emit("stop", { sessionId: one.sessionId });
});

test("a refused join (SESSION_FULL) does not take the client out of its current session", async () => {
  const s = sid("full2");
  const home = sid("home");
  const clients = await connectMany(server.url, 10);
  const [homeLeader, mover, ...rest] = clients;
  await join(homeLeader, home);
  await join(mover, home);
  for (const c of rest) await join(c, s);
  mark(homeLeader, mover);
  mover.emit("join_session", { sessionId: s });
  await expectError(mover, "SESSION_FULL");
  await expectNo(homeLeader, "user_left", 200);
  const snap = await join(homeLeader, home);
  assert.deepEqual(
    snap.members.map((m) => m.socketId),
    [homeLeader.id, mover.id],
  );
  mover.emit("chat_message", { sessionId: home, message: "still home" });
  await waitFor(homeLeader, "chat_message", { message: "still home" });
});

test("9 clients joining at once: exactly 8 members, exactly one SESSION_FULL, consistent counts", async () => {
  const s = sid("race");
  const clients = await connectMany(server.url, 9);
  for (const c of clients) c.emit("join_session", { sessionId: s });
  const outcomes = await Promise.all(
    clients.map(
      (c) =>
        new Promise((resolve) => {
          waitFor(c, "snapshot", { sessionId: s }, 3000).then(() => resolve("joined"), () => {});
          waitFor(c, "error", { code: "SESSION_FULL" }, 3000).then(() => resolve("full"), () => {});
          setTimeout(() => resolve("nothing"), 3500);
        }),
    ),
  );
  assert.equal(outcomes.filter((o) => o === "joined").length, 8, outcomes.join(","));
  assert.equal(outcomes.filter((o) => o === "full").length, 1);
  const members = clients.filter((_, i) => outcomes[i] === "joined");
  await Promise.all(members.map((m) => waitFor(m, "user_joined", { memberCount: 8 }, 3000)));
  const snap = await join(members[0], s);
  assert.equal(snap.members.length, 8);
  assert.equal(new Set(snap.members.map((m) => m.socketId)).size, 8);
  assertSnapshot(snap);
  // Each member saw strictly increasing memberCounts, ending at 8.
  for (const m of members) {
    const counts = events(m)
      .filter((e) => e.event === "user_joined")
      .map((e) => e.data.memberCount);
    assert.deepEqual(
      counts,
      [...counts].sort((x, y) => x - y),
      `user_joined counts at ${m.id}: ${counts}`,
    );
    assert.equal(counts.at(-1), 8);
    assert.equal(new Set(counts).size, counts.length);
  }
});

test("session ids are free-form and case-sensitive", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s1 = `Demo Room #1 / ü ${sid("")}`;
  const s2 = s1.toLowerCase();
  const snapA = await join(a, s1);
  const snapB = await join(b, s2);
  assert.equal(snapA.sessionId, s1);
  assert.equal(snapB.sessionId, s2);
  assert.equal(snapB.members.length, 1);
  assert.equal(snapB.leaderSocketId, b.id);
});
