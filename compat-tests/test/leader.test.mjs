// Disconnects: leader re-election, playback stop, event order at the remaining members.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import {
  connectMany,
  sid,
  mark,
  sleep,
  waitFor,
  waitForEntry,
  expectNo,
  expectError,
  join,
  names,
  syncState,
} from "../lib/client.mjs";
import { assertSnapshot, assertRoomStats, assertTimestamp } from "../lib/shapes.mjs";

const server = useServer();

async function joinAll(sockets, sessionId, names_ = []) {
  for (const [i, s] of sockets.entries()) await join(s, sessionId, names_[i] ? { displayName: names_[i] } : {});
  await Promise.all(sockets.map((s) => waitFor(s, "user_joined", { memberCount: sockets.length })));
  mark(...sockets);
}

test("leader disconnects while playing: earliest member leads, playback stops; role_changed, snapshot, room_stats, user_left in order", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s = sid("lead");
  await joinAll([a, b, c], s, ["Ann", "Bob", "Cat"]);
  a.emit("play", { sessionId: s });
  await waitFor(b, "scroll_tick");
  await waitFor(c, "scroll_tick");
  const aId = a.id;
  mark(b, c);
  a.disconnect();
  for (const x of [b, c]) {
    const rc = await waitForEntry(x, "role_changed");
    const sn = await waitForEntry(x, "snapshot", { sessionId: s });
    const st = await waitForEntry(x, "room_stats", { sessionId: s });
    const ul = await waitForEntry(x, "user_left");
    const order = names(x).filter((n) => n !== "scroll_tick");
    assert.deepEqual(order, ["role_changed", "snapshot", "room_stats", "user_left"], `order at ${x.id}`);
    assert.ok(rc.index < sn.index && sn.index < st.index && st.index < ul.index);

    assert.equal(rc.data.socketId, b.id);
    assert.equal(rc.data.role, "leader");
    assert.equal(rc.data.previousRole, "follower");
    assert.equal(rc.data.reason, "leader_disconnected");
    assertTimestamp(rc.data.timestamp);

    assertSnapshot(sn.data);
    assert.equal(sn.data.leaderSocketId, b.id);
    assert.equal(sn.data.isPlaying, false);
    assert.equal(sn.data.message, "Bob is now leading");
    assert.deepEqual(
      sn.data.members.map((m) => [m.socketId, m.role]),
      [
        [b.id, "leader"],
        [c.id, "follower"],
      ],
    );

    assertRoomStats(st.data);
    assert.equal(st.data.memberCount, 2);
    assert.equal(st.data.isPlaying, false);
    assert.equal(st.data.leader, b.id);

    assert.equal(ul.data.socketId, aId);
    assert.equal(ul.data.memberCount, 2);
    assert.equal(ul.data.newLeader, b.id);
    assert.equal(typeof ul.data.disconnectReason, "string");
    assertTimestamp(ul.data.timestamp);
  }
  // No ticks after the stop.
  mark(b, c);
  await expectNo(c, "scroll_tick", 400);
  assert.equal((await syncState(c, s)).isPlaying, false);
  // b leads now; c does not.
  mark(b, c);
  c.emit("set_tempo", { sessionId: s, tempo: 77 });
  await expectError(c, "NOT_LEADER");
  b.emit("set_tempo", { sessionId: s, tempo: 77 });
  assert.equal((await waitFor(c, "snapshot", { sessionId: s })).tempo, 77);
});

test("the earliest-joined remaining member is elected, not the next in line by id or recency", async () => {
  const [a, b, c, d] = await connectMany(server.url, 4);
  const s = sid("earliest");
  await joinAll([a, b, c, d], s);
  // c takes the lead, then disconnects: a (joined first) must be elected.
  c.emit("set_role", { sessionId: s, role: "leader" });
  await Promise.all([a, b, d].map((x) => waitFor(x, "snapshot", { leaderSocketId: c.id })));
  mark(a, b, d);
  c.disconnect();
  for (const x of [a, b, d]) {
    const rc = await waitFor(x, "role_changed");
    assert.equal(rc.socketId, a.id);
    const sn = await waitFor(x, "snapshot", { sessionId: s });
    assert.equal(sn.leaderSocketId, a.id);
    const ul = await waitFor(x, "user_left");
    assert.equal(ul.newLeader, a.id);
    assert.equal(ul.memberCount, 3);
  }
});

test("a follower disconnects: no role_changed; snapshot, room_stats, user_left {newLeader: null, disconnectReason}", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s = sid("follower");
  await joinAll([a, b, c], s);
  const cId = c.id;
  c.disconnect();
  for (const x of [a, b]) {
    const sn = await waitForEntry(x, "snapshot", { sessionId: s });
    const st = await waitForEntry(x, "room_stats", { sessionId: s });
    const ul = await waitForEntry(x, "user_left");
    assert.deepEqual(names(x), ["snapshot", "room_stats", "user_left"], `order at ${x.id}`);
    assert.ok(sn.index < st.index && st.index < ul.index);
    assert.equal(sn.data.leaderSocketId, a.id);
    assert.deepEqual(
      sn.data.members.map((m) => m.socketId),
      [a.id, b.id],
    );
    assert.equal(st.data.memberCount, 2);
    assert.equal(ul.data.socketId, cId);
    assert.equal(ul.data.memberCount, 2);
    assert.equal(ul.data.newLeader, null);
    assert.equal(typeof ul.data.disconnectReason, "string");
    assertTimestamp(ul.data.timestamp);
  }
  await expectNo(a, "role_changed", 100);
});

test("a follower's disconnect does not stop playback", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s = sid("keepplaying");
  await joinAll([a, b, c], s);
  a.emit("play", { sessionId: s });
  await waitFor(b, "scroll_tick");
  c.disconnect();
  await waitFor(b, "user_left");
  mark(b);
  await waitFor(b, "scroll_tick");
  assert.equal((await syncState(b, s)).isPlaying, true);
  a.emit("stop", { sessionId: s });
});

test("successive leader disconnects walk down the join order; the last one out leaves the session in place", async () => {
  const [a, b, c] = await connectMany(server.url, 3);
  const s = sid("chain");
  await joinAll([a, b, c], s);
  a.disconnect();
  await waitFor(c, "user_left", { newLeader: b.id });
  b.disconnect();
  const ul = await waitFor(c, "user_left", { memberCount: 1 });
  assert.equal(ul.newLeader, c.id);
  const snap = await join(c, s);
  assert.equal(snap.leaderSocketId, c.id);
  assert.equal(snap.members.length, 1);
  const cId = c.id;
  c.disconnect();
  await sleep(150);
  const [x] = await connectMany(server.url, 1);
  const st = await syncState(x, s);
  assert.equal(st.sessionId, s);
  assert.equal(st.isPlaying, false);
  assert.ok(cId);
});

test("the leader switching to another session mid-song stops playback in the old one and hands over", async () => {
  const [a, b] = await connectMany(server.url, 2);
  const s = sid("switch");
  await joinAll([a, b], s, ["Ann", "Bob"]);
  a.emit("play", { sessionId: s });
  await waitFor(b, "scroll_tick");
  mark(b);
  await join(a, sid("elsewhere"));
  const rc = await waitFor(b, "role_changed");
  assert.equal(rc.socketId, b.id);
  const sn = await waitFor(b, "snapshot", { sessionId: s });
  assert.equal(sn.isPlaying, false);
  assert.equal(sn.leaderSocketId, b.id);
  assert.equal(sn.message, "Bob is now leading");
  await waitFor(b, "user_left");
  mark(b);
  await expectNo(b, "scroll_tick", 350);
});
