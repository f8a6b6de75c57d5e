// The main flow over websocket, polling and polling→websocket with socket.io-client 4.8.1 and 4.7.5;
// socket.io-client 2.x (Engine.IO v3) connects, joins and gets a snapshot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/setup.mjs";
import { NO_RATE_LIMITS } from "../lib/server.mjs";
import { connect, sid, mark, sleep, waitFor, waitForEntry, join, syncState } from "../lib/client.mjs";
import { assertSnapshot, assertRoomStats } from "../lib/shapes.mjs";

const server = useServer(NO_RATE_LIMITS);

async function waitUpgrade(socket, timeoutMs = 3000) {
  const engine = socket.io.engine;
  if (engine.transport.name === "websocket") return;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no upgrade to websocket within ${timeoutMs} ms`)), timeoutMs);
    engine.once("upgrade", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** join, room_stats/user_joined, set_tempo, play + scroll_tick, chat, pause, leave — between two clients. */
async function mainFlow(a, b) {
  const s = sid("flow");
  const snapA = await join(a, s, { displayName: "A" });
  assertSnapshot(snapA);
  assert.equal(snapA.leaderSocketId, a.id);
  const snapB = await join(b, s, { displayName: "B" });
  assertSnapshot(snapB);
  assert.equal(snapB.members.length, 2);
  const stats = await waitFor(a, "room_stats", { memberCount: 2 });
  assertRoomStats(stats);
  const uj = await waitFor(a, "user_joined", { memberCount: 2 });
  assert.equal(uj.member.socketId, b.id);
  await waitFor(b, "user_joined", { memberCount: 2 });

  mark(a, b);
  a.emit("set_tempo", { sessionId: s, tempo: 96 });
  assert.equal((await waitFor(b, "snapshot", { sessionId: s })).tempo, 96);

  a.emit("play", { sessionId: s });
  const snap = await waitForEntry(b, "snapshot", { sessionId: s, isPlaying: true });
  const play = await waitForEntry(b, "play", { sessionId: s });
  assert.ok(snap.index < play.index);
  assert.equal(play.data.tempoBpm, 96);
  const t1 = await waitFor(b, "scroll_tick", { sessionId: s });
  const t2 = await waitFor(b, "scroll_tick", { sessionId: s });
  assert.ok(t2.positionMs > t1.positionMs);

  b.emit("chat_message", { sessionId: s, message: "hello from b" });
  const chat = await waitFor(a, "chat_message", { message: "hello from b" });
  assert.equal(chat.socketId, b.id);

  a.emit("pause", { sessionId: s });
  const pause = await waitFor(b, "pause", { sessionId: s });
  assert.ok(pause.position >= t2.positionMs);

  const st = await syncState(b, s);
  assert.equal(st.isPlaying, false);
  assert.equal(st.tempoBpm, 96);

  b.emit("leave_session", { sessionId: s });
  const ul = await waitFor(a, "user_left");
  assert.equal(ul.socketId, b.id);
  assert.equal(ul.memberCount, 1);
}

for (const version of ["4.8.1", "4.7.5"]) {
  for (const transport of ["websocket", "polling", "default"]) {
    test(`main flow: socket.io-client ${version}, transport ${transport}`, async () => {
      const a = await connect(server.url, { version, transport });
      const b = await connect(server.url, { version, transport });
      if (transport === "default") {
        await Promise.all([waitUpgrade(a), waitUpgrade(b)]);
        assert.equal(a.io.engine.transport.name, "websocket");
      } else {
        assert.equal(a.io.engine.transport.name, transport);
      }
      await mainFlow(a, b);
      if (transport === "polling") assert.equal(b.io.engine.transport.name, "polling");
    });
  }
}

test("mixed transports and client versions share one session", async () => {
  const a = await connect(server.url, { version: "4.8.1", transport: "websocket" });
  const b = await connect(server.url, { version: "4.7.5", transport: "default" });
  const c = await connect(server.url, { version: "4.8.1", transport: "polling" });
  const s = sid("mixed");
  await join(a, s);
  await join(b, s);
  await join(c, s);
  mark(a, b, c);
  a.emit("set_tempo", { sessionId: s, tempo: 142 });
  for (const x of [a, b, c]) assert.equal((await waitFor(x, "snapshot", { sessionId: s })).tempo, 142);
});

test("polling: many events back to back keep their order", async () => {
  const a = await connect(server.url, { transport: "polling" });
  const b = await connect(server.url, { transport: "polling" });
  const s = sid("pollorder");
  await join(a, s);
  await join(b, s);
  mark(a, b);
  const tempos = Array.from({ length: 50 }, (_, i) => 60 + i);
  for (const tempo of tempos) a.emit("set_tempo", { sessionId: s, tempo });
  const got = [];
  for (let i = 0; i < tempos.length; i++) got.push((await waitFor(b, "snapshot", { sessionId: s }, 5000)).tempo);
  assert.deepEqual(got, tempos);
});

for (const transport of ["websocket", "default", "polling"]) {
  test(`socket.io-client 2.5.0 (Engine.IO v3, ${transport}) connects, joins and gets a snapshot`, async () => {
    const old = await connect(server.url, { version: "2.5.0", transport });
    assert.ok(old.id);
    if (transport === "default") await waitUpgrade(old);
    assert.equal(old.io.engine.transport.name, transport === "polling" ? "polling" : "websocket");
    const s = sid("eio3");
    const snap = await join(old, s, { displayName: "Old" });
    assertSnapshot(snap);
    assert.equal(snap.members.length, 1);
    assert.equal(snap.members[0].displayName, "Old");
    assert.equal(snap.leaderSocketId, snap.members[0].socketId);
    // A v4 client in the same session drives it; the v2 client follows.
    const v4 = await connect(server.url);
    await join(v4, s, { role: "leader" });
    mark(old);
    v4.emit("set_tempo", { sessionId: s, tempo: 101 });
    assert.equal((await waitFor(old, "snapshot", { sessionId: s })).tempo, 101);
    old.emit("chat_message", { sessionId: s, message: "from 2.x" });
    await waitFor(v4, "chat_message", { message: "from 2.x" });
    await sleep(10);
  });
}
