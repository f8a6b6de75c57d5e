// Hardening as a client sees it: per-socket rate limits by event class, connection caps, the
// shared token, session passcodes, MAX_SESSIONS, enforced CORS and the security headers.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { useServers } from "../lib/setup.mjs";
import {
  band,
  collect,
  connect,
  expectError,
  expectNo,
  join,
  mark,
  sid,
  sleep,
  waitFor,
  events,
} from "../lib/client.mjs";
import { ack, ackError, ackOk, createSession } from "../lib/enhanced.mjs";
import { pollHttp } from "../lib/cluster.mjs";
import { pollingUrl, wsUrl } from "../lib/raw.mjs";
import { delta, sampleValue, scrapeMetrics } from "../lib/prometheus.mjs";

const [limited, capped, guarded, fewSessions, cors] = useServers(
  // Default rate limits, with a flood cut off sooner than the 10 s default so the test is short.
  { RATE_LIMIT_DISCONNECT_AFTER_MS: "2500", LEGACY_PING_INTERVAL_MS: "0" },
  // Connection caps; X-Forwarded-For stands in for distinct client addresses.
  { MAX_CONNECTIONS: "4", MAX_CONNECTIONS_PER_IP: "2", TRUST_PROXY: "true" },
  { AUTH_TOKEN: "s3cret-token" },
  { MAX_SESSIONS: "2" },
  { CORS_ORIGIN: "https://band.example" },
);

const scrape = (server) => scrapeMetrics(server.url);
/** `error {code: RATE_LIMITED}` received since the socket's last mark. */
const rateLimitNotices = (socket) =>
  events(socket, { all: true }).filter((e) => e.event === "error" && e.data?.code === "RATE_LIMITED");

/** Resolves with the connect_error message, or rejects if the client connects. */
async function refusedWith(url, opts) {
  try {
    const socket = await connect(url, opts);
    socket.close();
  } catch (err) {
    return err.message;
  }
  throw new Error("the connection was accepted");
}

test("a chat flood: the burst passes, the rest is dropped with one RATE_LIMITED; other classes are unaffected", async () => {
  const before = await scrape(limited);
  const { sessionId, leader, followers } = await band(limited.url, 3);
  for (let i = 0; i < 50; i++) leader.emit("chat_message", { sessionId, message: `line ${i}` });
  // The tempo class has a budget of its own: this goes through in the middle of the chat flood.
  leader.emit("set_tempo", { sessionId, tempo: 133 });
  await waitFor(followers[0], "snapshot", (s) => s.tempoBpm === 133);
  const heard = await collect(followers[1], "chat_message", 500);
  assert.equal(heard.length, 10, "RATE_LIMIT_CHAT_BURST=10: ten lines, the first ten");
  assert.deepEqual(
    heard.map((c) => c.message),
    Array.from({ length: 10 }, (_, i) => `line ${i}`),
  );
  assert.equal(rateLimitNotices(leader).length, 1, "one notice for the whole burst");
  assert.match(rateLimitNotices(leader)[0].data.message, /chat/);
  // A second later the budget is back.
  await sleep(1100);
  leader.emit("chat_message", { sessionId, message: "after the pause" });
  await waitFor(followers[0], "chat_message", { message: "after the pause" });
  assert.equal(leader.connected, true);
  const after = await scrape(limited);
  assert.equal(delta(before, after, "bandsync_rate_limited_total", { class: "chat" }), 40);
});

test("enhanced requests over the limit are answered in their acks; the clock burst of 32 samples passes", async () => {
  const socket = await connect(limited.url);
  const answers = await Promise.all(
    Array.from({ length: 13 }, () => ack(socket, "session:join", { sessionId: sid("nowhere") })),
  );
  const codes = answers.map((a) => a.error?.code);
  // RATE_LIMIT_JOINS_BURST=10: ten joins are handled (and refused for the missing session).
  assert.deepEqual(codes, [...Array(10).fill("SESSION_NOT_FOUND"), ...Array(3).fill("RATE_LIMITED")]);
  const samples = await Promise.all(Array.from({ length: 32 }, (_, i) => ack(socket, "clock:sync", { t0: i })));
  assert.ok(
    samples.every((s, i) => s.t0 === i && typeof s.t1 === "number"),
    JSON.stringify(samples.slice(0, 3)),
  );
});

test("a socket that keeps flooding is disconnected after RATE_LIMIT_DISCONNECT_AFTER_MS; a well-behaved member stays", async () => {
  const { sessionId, leader, followers } = await band(limited.url, 3);
  const [calm, listener] = followers;
  const started = Date.now();
  const disconnected = new Promise((resolve) => leader.once("disconnect", (reason) => resolve({ reason, at: Date.now() })));
  const flood = setInterval(() => {
    for (let i = 0; i < 5; i++) leader.emit("chat_message", { sessionId, message: `spam ${i}` });
  }, 20);
  const polite = setInterval(() => calm.emit("chat_message", { sessionId, message: "still here" }), 500);
  const { reason, at } = await Promise.race([
    disconnected,
    sleep(6000).then(() => ({ reason: "still connected", at: Date.now() })),
  ]);
  clearInterval(flood);
  clearInterval(polite);
  // The DISCONNECT packet is sent, but a flooder's connection is often reset while its own events
  // are unread, which discards the packet: "transport close" is what such a client sees then.
  assert.ok(["io server disconnect", "transport close"].includes(reason), `disconnect reason: ${reason}`);
  const flooded = at - started;
  assert.ok(flooded >= 2500 && flooded < 4500, `disconnected after ${flooded} ms of flooding`);
  const notices = rateLimitNotices(leader).length;
  assert.ok(notices >= 2 && notices <= Math.ceil(flooded / 1000) + 1, `${notices} notices in ${flooded} ms`);
  assert.equal(calm.connected, true, "the member sending at a normal rate stays");
  await waitFor(listener, "chat_message", { message: "still here" });
  // The flooder's leave is a normal one: the lead moves on.
  await waitFor(listener, "role_changed", { socketId: calm.id, reason: "leader_disconnected" }, 3000);
  assert.match(limited.logs(), /disconnected: kept flooding past its rate limits/);
});

test("MAX_CONNECTIONS and MAX_CONNECTIONS_PER_IP refuse with a connect_error that says which, and free places are reused", async () => {
  const from = (address) => ({ extraHeaders: { "x-forwarded-for": address } });
  const a1 = await connect(capped.url, from("203.0.113.1"));
  await connect(capped.url, from("203.0.113.1"));
  assert.match(await refusedWith(capped.url, from("203.0.113.1")), /Too many connections from your address: 2 at most/);
  await connect(capped.url, from("203.0.113.2"));
  await connect(capped.url, { ...from("203.0.113.2"), transport: "polling" });
  assert.match(await refusedWith(capped.url, from("203.0.113.3")), /Server full: 4 connections at most/);
  a1.close();
  // The place comes back once the server has seen the close.
  await pollHttp(`${capped.url}/health`, (r) => r.body?.connections?.current === 3, 2000);
  const again = await connect(capped.url, from("203.0.113.3"));
  assert.ok(again.connected, "a freed place is given to the next client");
  assert.match(capped.logs(), /connection refused/);
  const metrics = await scrape(capped);
  assert.equal(sampleValue(metrics, "bandsync_connections_refused_total", { reason: "max_connections" }), 1);
  assert.equal(sampleValue(metrics, "bandsync_connections_refused_total", { reason: "max_connections_per_ip" }), 1);
});

test("AUTH_TOKEN: no token or a wrong one is refused; the token in auth or in the query connects (socket.io-client 2 too)", async () => {
  assert.match(await refusedWith(guarded.url), /Unauthorized/);
  assert.match(await refusedWith(guarded.url, { auth: { token: "wrong" } }), /Unauthorized/);
  const byAuth = await connect(guarded.url, { auth: { token: "s3cret-token" } });
  const byQuery = await connect(guarded.url, { query: { token: "s3cret-token" } });
  const legacyClient = await connect(guarded.url, { version: "2.5.0", query: { token: "s3cret-token" } });
  const sessionId = sid("auth");
  for (const s of [byAuth, byQuery, legacyClient]) await join(s, sessionId);
  await waitFor(byAuth, "room_stats", { memberCount: 3 });
  assert.match(guarded.logs(), /connection refused/);
  assert.doesNotMatch(guarded.logs(), /s3cret-token/, "the token never reaches the log");
});

test("a passcode set by the creator: joiners without it or with a wrong one get UNAUTHORIZED; it never appears in state", async () => {
  const [leader, intruder, friend] = await Promise.all([connect(limited.url), connect(limited.url), connect(limited.url)]);
  const sessionId = sid("locked");
  const snapshot = await join(leader, sessionId, { passcode: "violet" });
  mark(leader);
  intruder.emit("join_session", { sessionId });
  assert.match((await expectError(intruder, "UNAUTHORIZED")).message, /needs a passcode/);
  intruder.emit("join_session", { sessionId, passcode: "Violet" });
  assert.match((await expectError(intruder, "UNAUTHORIZED")).message, /Wrong passcode/);
  await expectNo(leader, "user_joined", 200);
  const joined = await join(friend, sessionId, { passcode: "violet" });
  assert.equal(joined.members.length, 2);
  for (const state of [snapshot, joined]) assert.doesNotMatch(JSON.stringify(state), /violet|passcode/i);

  // The enhanced vocabulary: session:create sets it, session:join must give it.
  const [creator, joiner] = await Promise.all([connect(limited.url), connect(limited.url)]);
  const { sessionId: enhancedId, session } = await createSession(creator, { passcode: "blue moon" });
  assert.doesNotMatch(JSON.stringify(session), /blue moon|passcode/i);
  await ackError(joiner, "session:join", { sessionId: enhancedId }, "UNAUTHORIZED");
  await ackOk(joiner, "session:join", { sessionId: enhancedId, passcode: "blue moon" });
});

test("MAX_SESSIONS: no new session past the limit (SERVER_FULL), existing sessions can still be joined", async () => {
  const [first, second] = [sid("cap"), sid("cap")];
  const sockets = await Promise.all([1, 2, 3, 4].map(() => connect(fewSessions.url)));
  await join(sockets[0], first);
  const { sessionId: second2 } = await createSession(sockets[1]);
  sockets[2].emit("join_session", { sessionId: second });
  assert.match((await expectError(sockets[2], "SERVER_FULL")).message, /limit of 2 sessions/);
  await ackError(sockets[3], "session:create", { bandId: "b", sessionName: "third" }, "SERVER_FULL");
  const joined = await join(sockets[2], first);
  assert.equal(joined.members.length, 2);
  await ackOk(sockets[3], "session:join", { sessionId: second2 });
  const listed = await (await fetch(`${fewSessions.url}/api/sessions`)).json();
  assert.deepEqual(listed.sessions.map((s) => s.sessionId).sort(), [first, second2].sort());
  assert.match(fewSessions.logs(), /session limit reached/);
});

test("CORS_ORIGIN is enforced on polling and on the websocket handshake; requests without an Origin, or from the server's own, pass", async () => {
  const polling = pollingUrl(cors.url);
  const foreign = await fetch(polling, { headers: { origin: "https://evil.example" } });
  assert.equal(foreign.status, 403);
  assert.match((await foreign.json()).message, /not allowed/);
  const friendly = await fetch(polling, { headers: { origin: "https://band.example" } });
  assert.equal(friendly.status, 200);
  assert.equal(friendly.headers.get("access-control-allow-origin"), "https://band.example");
  assert.match(await friendly.text(), /^0\{"sid"/);
  const native = await fetch(polling);
  assert.equal(native.status, 200);
  await native.text();

  const opened = (origin) =>
    new Promise((resolve) => {
      const ws = new WebSocket(wsUrl(cors.url), { origin });
      ws.once("open", () => {
        ws.close();
        resolve(200);
      });
      ws.once("unexpected-response", (_req, res) => {
        resolve(res.statusCode);
        ws.terminate();
      });
      ws.once("error", () => resolve("error"));
    });
  assert.equal(await opened("https://evil.example"), 403);
  assert.equal(await opened("https://band.example"), 200);
  // Same origin: React Native's websocket sends the server's own address, as does a served page.
  assert.equal(await opened(cors.url), 200);
  assert.match(cors.logs(), /origin not in CORS_ORIGIN/);
});

test("every HTTP answer carries nosniff, DENY and no-referrer", async () => {
  for (const path of ["/", "/health", "/metrics", "/api/sessions", "/no-such-page", "/socket.io/?EIO=4&transport=polling"]) {
    const res = await fetch(`${limited.url}${path}`);
    await res.arrayBuffer();
    assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    assert.equal(res.headers.get("x-frame-options"), "DENY", path);
    assert.equal(res.headers.get("referrer-policy"), "no-referrer", path);
  }
});
