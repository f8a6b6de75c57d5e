// Process lifecycle: SIGTERM, bad settings, the idle sweep, settings that shape sessions.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, spawnServer, httpGet } from "../lib/server.mjs";
import { connect, closeAll, sid, sleep, waitFor, waitForEntry, expectError, join, events } from "../lib/client.mjs";
import { pollHttp } from "../lib/cluster.mjs";
import { startProxy } from "../lib/proxy.mjs";

const started = [];
async function start(env) {
  const s = await startServer(env);
  started.push(s);
  return s;
}
after(async () => {
  closeAll();
  await Promise.all(started.map((s) => s.stop()));
});

test("SIGTERM: connected clients are disconnected and the process exits 0 within 5 s", async () => {
  const server = await start();
  const ws = await connect(server.url, { transport: "websocket" });
  const poll = await connect(server.url, { transport: "polling" });
  const s = sid("term");
  await join(ws, s);
  await join(poll, s);
  ws.emit("play", { sessionId: s });
  await waitFor(poll, "scroll_tick");
  const t0 = Date.now();
  const code = await Promise.race([server.stop(), sleep(5000).then(() => "timeout")]);
  const elapsed = Date.now() - t0;
  assert.equal(code, 0, `exit code after SIGTERM (${elapsed} ms); logs:\n${server.logs().slice(-2000)}`);
  assert.ok(elapsed < 5000, `exit took ${elapsed} ms`);
  await waitForEntry(ws, "$disconnect", undefined, 1000);
  await waitForEntry(poll, "$disconnect", undefined, 3000);
  assert.equal(ws.connected, false);
  assert.equal(poll.connected, false);
});

test("SIGTERM while seats are held for dropped connections: the held seats end, nothing panics, exit 0 within 5 s", async () => {
  const server = await start();
  const s = sid("held");
  const proxies = [];
  for (let i = 0; i < 6; i++) {
    const proxy = await startProxy(server.port);
    proxies.push(proxy);
    const client = await connect(proxy.url);
    await join(client, s);
    if (i === 0) client.emit("play", { sessionId: s });
  }
  // Every connection drops: their seats are held (RESUME_GRACE_MS, 15 s by default).
  for (const proxy of proxies) await proxy.close();
  await pollHttp(
    `${server.url}/api/sessions/${s}`,
    (r) => r.body?.members?.length === 6 && r.body.members.every((m) => m.reconnecting),
  );
  const code = await Promise.race([server.stop(), sleep(5000).then(() => "timeout")]);
  assert.equal(code, 0, `exit code after SIGTERM; logs:\n${server.logs().slice(-2000)}`);
  assert.doesNotMatch(server.logs(), /panicked/);
  assert.equal(server.logs().match(/seat's grace ended; left/g)?.length, 6, "each held seat ended before the exit");
});

test("SIGTERM with no clients exits 0 promptly", async () => {
  const server = await start();
  const t0 = Date.now();
  const code = await server.stop();
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 5000);
});

for (const [setting, value, pattern] of [
  ["PORT", "abc", /PORT|port/],
  ["MAX_SESSION_MEMBERS", "0", /MAX_SESSION_MEMBERS|max[-_]session[-_]members/i],
  ["LEADER_POLICY", "bogus", /LEADER_POLICY|leader[-_]policy/i],
  ["LEGACY_TICK_MS", "fast", /LEGACY_TICK_MS|legacy[-_]tick[-_]ms/i],
  ["LEGACY_PING_INTERVAL_MS", "-5", /LEGACY_PING_INTERVAL_MS|legacy[-_]ping[-_]interval[-_]ms/i],
  ["SESSION_IDLE_TIMEOUT_MS", "soon", /SESSION_IDLE_TIMEOUT_MS|session[-_]idle[-_]timeout[-_]ms/i],
  ["LOG_FORMAT", "xml", /LOG_FORMAT|log[-_]format/i],
]) {
  test(`bad setting ${setting}=${value}: exits non-zero naming the setting on stderr`, async () => {
    const s = await spawnServer({ [setting]: value });
    const res = await Promise.race([s.exited, sleep(5000).then(() => null)]);
    if (!res) {
      s.proc.kill("SIGKILL");
      assert.fail(`still running 5 s after start with ${setting}=${value}; logs:\n${s.logs()}`);
    }
    assert.notEqual(res.code, 0, `exit code with ${setting}=${value}`);
    assert.notEqual(res.code, null, `killed by ${res.signal}`);
    assert.match(s.stderr(), pattern, `stderr should name ${setting}; stderr:\n${s.stderr()}\nstdout:\n${s.stdout()}`);
  });
}

test("idle sweep: an empty session is removed after SESSION_IDLE_TIMEOUT_MS, an occupied one is kept", async () => {
  const server = await start({ SESSION_IDLE_TIMEOUT_MS: "300", CLEANUP_INTERVAL_MS: "100" });
  const [a, b, x] = await Promise.all([connect(server.url), connect(server.url), connect(server.url)]);
  const gone = sid("idle");
  const kept = sid("busy");
  await join(a, gone);
  await join(b, kept);
  a.emit("leave_session", { sessionId: gone });
  await sleep(50);
  x.emit("sync_request", { sessionId: gone });
  assert.equal((await waitFor(x, "sync_response", { sessionId: gone })).sessionId, gone, "still there right after leaving");
  await sleep(900);
  x.emit("sync_request", { sessionId: gone });
  await expectError(x, "SESSION_NOT_FOUND");
  x.emit("sync_request", { sessionId: kept });
  assert.equal((await waitFor(x, "sync_response", { sessionId: kept })).sessionId, kept, "occupied session kept");
  const health = await httpGet(`${server.url}/health`);
  assert.equal(health.body.sessions.active, 1, "/health sessions.active after the sweep");
});

test("idle sweep also removes a session emptied by a disconnect", async () => {
  const server = await start({ SESSION_IDLE_TIMEOUT_MS: "300", CLEANUP_INTERVAL_MS: "100" });
  const [a, x] = await Promise.all([connect(server.url), connect(server.url)]);
  const s = sid("idledc");
  await join(a, s);
  a.disconnect();
  await sleep(900);
  x.emit("sync_request", { sessionId: s });
  await expectError(x, "SESSION_NOT_FOUND");
  // The id can be used again: a new session, new leader.
  const snap = await join(x, s);
  assert.equal(snap.members.length, 1);
  assert.equal(snap.leaderSocketId, x.id);
});

test("MAX_SESSION_MEMBERS=2: settings.maxMembers is 2 and the third join gets SESSION_FULL", async () => {
  const server = await start({ MAX_SESSION_MEMBERS: "2" });
  const [a, b, c] = await Promise.all([0, 1, 2].map(() => connect(server.url)));
  const s = sid("cap2");
  assert.deepEqual((await join(a, s)).settings, { maxMembers: 2 });
  await join(b, s);
  c.emit("join_session", { sessionId: s });
  const err = await expectError(c, "SESSION_FULL");
  assert.equal(err.message, "Session at capacity (2 members)");
});

test("LEGACY_TICK_MS=50: scroll_tick every ~50 ms", async () => {
  const server = await start({ LEGACY_TICK_MS: "50" });
  const a = await connect(server.url);
  const s = sid("tick50");
  await join(a, s);
  a.emit("play", { sessionId: s });
  const first = await waitFor(a, "scroll_tick");
  await sleep(1000);
  const ticks = events(a).filter((e) => e.event === "scroll_tick");
  assert.ok(ticks.length >= 17 && ticks.length <= 24, `${ticks.length} ticks in ~1 s`);
  assert.ok(first);
});
