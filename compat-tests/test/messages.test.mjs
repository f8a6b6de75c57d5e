// update_message, chat_message, role_changed notice, sync_request, latency_probe, heartbeat,
// ping/pong, connection_quality, client-sent error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServers } from "../lib/setup.mjs";
import {
  connect,
  sid,
  mark,
  sleep,
  waitFor,
  waitForN,
  expectNo,
  expectNothing,
  expectError,
  join,
  band,
  syncState,
  events,
} from "../lib/client.mjs";
import { assertTimestamp, assertStampedSince } from "../lib/shapes.mjs";

const QUALITIES = ["unknown", "excellent", "good", "fair", "poor"];
const [server, pingServer] = useServers({}, { LEGACY_PING_INTERVAL_MS: "200" });

function assertQuality(q, socketId) {
  for (const k of ["socketId", "latency", "packetLoss", "connectionDuration", "pingCount", "pongCount", "timeouts", "quality"]) {
    assert.ok(k in q, `connection_quality lacks ${k}: ${JSON.stringify(q)}`);
  }
  assert.equal(q.socketId, socketId);
  assert.ok(QUALITIES.includes(q.quality), `quality ${q.quality}`);
  assert.equal(typeof q.packetLoss, "number");
  assert.ok(q.packetLoss >= 0 && q.packetLoss <= 100);
  assert.equal(Math.round(q.packetLoss * 100) / 100, q.packetLoss, "packetLoss has at most 2 decimals");
  assert.ok(Number.isInteger(q.pingCount) && Number.isInteger(q.pongCount) && Number.isInteger(q.timeouts));
  assert.ok(typeof q.connectionDuration === "number" && q.connectionDuration >= 0);
}

test("update_message by any member: room snapshot with the message", async () => {
  const b = await band(server.url, 3);
  const f = b.followers[0];
  f.emit("update_message", { sessionId: b.sessionId, message: "Verse 2, watch the bridge" });
  for (const m of b.members) {
    const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId });
    assert.equal(snap.message, "Verse 2, watch the bridge");
  }
  // Empty message and exactly 1000 characters are fine.
  mark(...b.members);
  b.leader.emit("update_message", { sessionId: b.sessionId, message: "x".repeat(1000) });
  assert.equal((await waitFor(f, "snapshot", { sessionId: b.sessionId })).message, "x".repeat(1000));
  b.leader.emit("update_message", { sessionId: b.sessionId, message: "" });
  assert.equal((await waitFor(f, "snapshot", { sessionId: b.sessionId })).message, "");
});

test("update_message: non-member → NOT_A_MEMBER, unknown session → SESSION_NOT_FOUND; room untouched", async () => {
  const b = await band(server.url, 2);
  const x = await connect(server.url);
  x.emit("update_message", { sessionId: b.sessionId, message: "intruder" });
  await expectError(x, "NOT_A_MEMBER");
  x.emit("update_message", { sessionId: sid("nosuch"), message: "hello?" });
  await expectError(x, "SESSION_NOT_FOUND");
  for (const m of b.members) await expectNothing(m, m === b.leader ? 200 : 0);
  const snap = await join(b.leader, b.sessionId);
  assert.notEqual(snap.message, "intruder");
});

test("chat_message: room gets {sessionId, message, username, timestamp, socketId}", async () => {
  const b = await band(server.url, 3);
  const [, f1] = b.members;
  f1.emit("chat_message", { sessionId: b.sessionId, message: "hi all", username: "Drums" });
  for (const m of b.members) {
    const c = await waitFor(m, "chat_message", { sessionId: b.sessionId });
    assert.equal(c.message, "hi all");
    assert.equal(c.username, "Drums");
    assert.equal(c.socketId, f1.id);
    assertTimestamp(c.timestamp);
  }
  // Default username.
  b.leader.emit("chat_message", { sessionId: b.sessionId, message: "no name" });
  const c = await waitFor(f1, "chat_message", { message: "no name" });
  assert.equal(c.username, `User ${b.leader.id.slice(-4)}`);
  assert.equal(c.socketId, b.leader.id);
  // chat changes no state: no snapshot
  await expectNo(f1, "snapshot", 150);
});

test("chat_message from a non-member is refused and not broadcast", async () => {
  const b = await band(server.url, 2);
  const x = await connect(server.url);
  x.emit("chat_message", { sessionId: b.sessionId, message: "spam" });
  await expectError(x, "NOT_A_MEMBER");
  await expectNo(b.leader, "chat_message", 200);
  await expectNo(b.followers[0], "chat_message", 0);
});

test("role_changed from a member is a notice to the room and changes no role", async () => {
  const b = await band(server.url, 3);
  const f = b.followers[0];
  f.emit("role_changed", { sessionId: b.sessionId, role: "leader", previousRole: "follower" });
  for (const m of b.members) {
    const rc = await waitFor(m, "role_changed");
    assert.equal(rc.socketId, f.id);
    assert.equal(rc.role, "leader");
    assert.equal(rc.previousRole, "follower");
    assertTimestamp(rc.timestamp);
  }
  await expectNo(b.leader, "snapshot", 150);
  const snap = await join(f, b.sessionId);
  assert.equal(snap.leaderSocketId, b.leader.id);
  assert.equal(snap.members.find((m) => m.socketId === f.id).role, "follower");
  // The leader keeps its powers, the notifier has none.
  f.emit("set_tempo", { sessionId: b.sessionId, tempo: 99 });
  await expectError(f, "NOT_LEADER");
});

test("sync_request: anyone (even a non-member) gets sync_response; unknown session → SESSION_NOT_FOUND", async () => {
  const b = await band(server.url, 2);
  b.leader.emit("set_tempo", { sessionId: b.sessionId, tempo: 133 });
  await waitFor(b.leader, "snapshot", { tempo: 133 });
  const x = await connect(server.url);
  for (const who of [b.followers[0], x]) {
    const before = Date.now();
    const r = await syncState(who, b.sessionId);
    assert.deepEqual(Object.keys(r).sort(), ["isPlaying", "positionMs", "serverTime", "sessionId", "tempoBpm"]);
    assert.equal(r.sessionId, b.sessionId);
    assert.equal(r.positionMs, 0);
    assert.equal(r.tempoBpm, 133);
    assert.equal(r.isPlaying, false);
    assertTimestamp(r.serverTime, "serverTime");
    assertStampedSince(r.serverTime, before, 5, "serverTime");
  }
  mark(x);
  x.emit("sync_request", { sessionId: sid("nosuch") });
  await expectError(x, "SESSION_NOT_FOUND");
  await expectNo(x, "sync_response", 100);
});

test("latency_probe → latency_response {clientTimestamp, serverTimestamp}", async () => {
  const x = await connect(server.url);
  const ts = Date.now();
  x.emit("latency_probe", { timestamp: ts });
  const r = await waitFor(x, "latency_response");
  assert.equal(r.clientTimestamp, ts);
  assert.ok(typeof r.serverTimestamp === "number" && Math.abs(r.serverTimestamp - Date.now()) < 1000);
  // With a sessionId too.
  const b = await band(server.url, 1);
  b.leader.emit("latency_probe", { timestamp: 42, sessionId: b.sessionId });
  assert.equal((await waitFor(b.leader, "latency_response")).clientTimestamp, 42);
});

test("heartbeat → heartbeat_response {timestamp, serverTimestamp}, refreshes lastPingAt", async () => {
  const b = await band(server.url, 2);
  const f = b.followers[0];
  const snap0 = await join(f, b.sessionId);
  const m0 = snap0.members.find((m) => m.socketId === f.id);
  await sleep(150);
  const ts = Date.now();
  f.emit("heartbeat", { timestamp: ts, sessionId: b.sessionId });
  const r = await waitFor(f, "heartbeat_response");
  assert.equal(r.timestamp, ts);
  assertTimestamp(r.serverTimestamp, "serverTimestamp");
  const snap1 = await join(b.leader, b.sessionId);
  const m1 = snap1.members.find((m) => m.socketId === f.id);
  assert.ok(m1.lastPingAt >= m0.lastPingAt + 100, `lastPingAt ${m0.lastPingAt} → ${m1.lastPingAt}`);
  // Without a session.
  const x = await connect(server.url);
  x.emit("heartbeat", { timestamp: 7 });
  assert.equal((await waitFor(x, "heartbeat_response")).timestamp, 7);
});

test("server ping every LEGACY_PING_INTERVAL_MS; every 5th pong brings connection_quality", async () => {
  const x = await connect(pingServer.url);
  x.on("ping", (p) => x.emit("pong", { timestamp: p.timestamp }));
  const pings = await waitForN(x, "ping", 3, undefined, 2000);
  for (const p of pings) assertTimestamp(p.timestamp, "ping.timestamp");
  const q = await waitFor(x, "connection_quality", undefined, 3000);
  assertQuality(q, x.id);
  assert.equal(q.pongCount, 5);
  assert.ok(q.pingCount >= 5);
  assert.ok(q.latency >= 0 && q.latency < 100, `latency ${q.latency}`);
  assert.ok(["excellent", "good"].includes(q.quality), `quality ${q.quality}`);
  // No second report before the 10th pong.
  mark(x);
  await expectNo(x, "connection_quality", 500);
  const q2 = await waitFor(x, "connection_quality", undefined, 2000);
  assert.equal(q2.pongCount, 10);
});

test("ping interval is honoured (~200 ms)", async () => {
  const x = await connect(pingServer.url);
  mark(x);
  await sleep(1100);
  const pings = events(x, { all: true }).filter((e) => e.event === "ping");
  assert.ok(pings.length >= 4 && pings.length <= 7, `${pings.length} pings in 1.1 s`);
});

test("connection_quality on demand; quality is unknown before any pong", async () => {
  const x = await connect(server.url);
  x.emit("connection_quality");
  const q = await waitFor(x, "connection_quality");
  assertQuality(q, x.id);
  assert.equal(q.quality, "unknown");
  assert.equal(q.pongCount, 0);
});

test("connection_quality on demand after pongs reports them", async () => {
  const x = await connect(pingServer.url);
  x.on("ping", (p) => x.emit("pong", { timestamp: p.timestamp }));
  await waitForN(x, "ping", 2, undefined, 2000);
  await sleep(50);
  mark(x);
  x.emit("connection_quality");
  const q = await waitFor(x, "connection_quality");
  assertQuality(q, x.id);
  assert.ok(q.pongCount >= 2);
  assert.notEqual(q.quality, "unknown");
});

test("unanswered pings count as packet loss", async () => {
  const x = await connect(pingServer.url);
  await waitForN(x, "ping", 4, undefined, 2000);
  await sleep(250);
  x.emit("connection_quality");
  const q = await waitFor(x, "connection_quality");
  assertQuality(q, x.id);
  assert.equal(q.pongCount, 0);
  assert.ok(q.pingCount >= 4);
  assert.ok(q.packetLoss > 0, `packetLoss ${q.packetLoss} with ${q.pingCount} pings and no pong`);
  assert.equal(q.quality, "unknown");
});

test("a client-sent error event gets nothing back; the server carries on", async () => {
  const b = await band(server.url, 2);
  b.leader.emit("error", { message: "client-side oops", code: "X" });
  b.leader.emit("error", "plain string");
  b.leader.emit("error");
  await expectNothing(b.leader, 300);
  await expectNothing(b.followers[0], 0);
  b.leader.emit("latency_probe", { timestamp: 1 });
  await waitFor(b.leader, "latency_response");
});

test("unknown extra fields in payloads are ignored (newer clients send more)", async () => {
  const a = await connect(server.url);
  const s = sid("extra");
  const snap = await join(a, s, { displayName: "Extra", userId: "u-1", instrument: "bass", clientTime: Date.now() });
  assert.equal(snap.members[0].displayName, "Extra");
  mark(a);
  a.emit("set_tempo", { sessionId: s, tempo: 101, source: "tap", clientTime: 1 });
  assert.equal((await waitFor(a, "snapshot", { sessionId: s })).tempo, 101);
  a.emit("chat_message", { sessionId: s, message: "x", color: "red" });
  await waitFor(a, "chat_message");
  a.emit("play", { sessionId: s, reason: "count-in" });
  await waitFor(a, "play");
  a.emit("stop", { sessionId: s, foo: null });
  await waitFor(a, "stop");
  assert.deepEqual(
    events(a).filter((e) => e.event === "error"),
    [],
  );
});

test("legacy events sent with an acknowledgement callback are still handled", async () => {
  const a = await connect(server.url);
  const s = sid("ack");
  a.emit("join_session", { sessionId: s }, () => {});
  await waitFor(a, "snapshot", { sessionId: s });
  a.emit("set_tempo", { sessionId: s, tempo: 88 }, () => {});
  assert.equal((await waitFor(a, "snapshot", { tempo: 88 })).sessionId, s);
});
