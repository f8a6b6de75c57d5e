// GET /, /health, /livez, /readyz.
import { test } from "node:test";
import assert from "node:assert/strict";
import { httpGet } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import { connect, sid, join } from "../lib/client.mjs";

const server = useServer();

test("GET / → {ok: true, service: \"bandsync-server\", version, uptime}", async () => {
  const r = await httpGet(`${server.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /application\/json/);
  assert.equal(r.body.ok, true);
  assert.equal(r.body.service, "bandsync-server");
  assert.equal(typeof r.body.version, "string");
  assert.ok(r.body.version.length > 0);
  assert.equal(typeof r.body.uptime, "number");
  assert.ok(r.body.uptime >= 0);
});

test("GET /health shape; counts follow connections and sessions", async () => {
  const r0 = await httpGet(`${server.url}/health`);
  assert.equal(r0.status, 200);
  assert.match(r0.headers.get("content-type") ?? "", /application\/json/);
  const h0 = r0.body;
  assert.equal(h0.status, "healthy");
  assert.equal(h0.ok, true);
  assert.ok(Number.isInteger(h0.timestamp) && Math.abs(h0.timestamp - Date.now()) < 5000, `timestamp ${h0.timestamp}`);
  for (const k of ["current", "peak", "total"]) assert.ok(Number.isInteger(h0.connections?.[k]), `connections.${k}`);
  assert.ok(Number.isInteger(h0.sessions?.active), "sessions.active");
  assert.equal(h0.redis, "disabled");
  assert.equal(typeof h0.uptime, "number");
  assert.equal(typeof h0.serverId, "string");
  assert.ok(h0.serverId.length > 0);

  const a = await connect(server.url);
  const b = await connect(server.url, { transport: "polling" });
  await join(a, sid("health"));
  const h1 = (await httpGet(`${server.url}/health`)).body;
  assert.ok(h1.connections.current >= h0.connections.current + 2, `current ${h0.connections.current} → ${h1.connections.current}`);
  assert.ok(h1.connections.peak >= h1.connections.current);
  assert.ok(h1.connections.total >= h0.connections.total + 2);
  assert.ok(h1.sessions.active >= h0.sessions.active + 1);
  assert.ok(h1.uptime >= h0.uptime);
  assert.equal(h1.serverId, h0.serverId);

  a.disconnect();
  b.disconnect();
  await new Promise((r) => setTimeout(r, 200));
  const h2 = (await httpGet(`${server.url}/health`)).body;
  assert.equal(h2.connections.current, h1.connections.current - 2);
  assert.ok(h2.connections.peak >= h1.connections.current);
  assert.equal(h2.connections.total, h1.connections.total);
});

test("GET /health uptime is in milliseconds", async () => {
  const h1 = (await httpGet(`${server.url}/health`)).body;
  await new Promise((r) => setTimeout(r, 300));
  const h2 = (await httpGet(`${server.url}/health`)).body;
  const d = h2.uptime - h1.uptime;
  assert.ok(d >= 250 && d < 2000, `uptime advanced ${d} in ~300 ms`);
});

test("GET /livez and /readyz answer 200", async () => {
  assert.equal((await httpGet(`${server.url}/livez`)).status, 200);
  assert.equal((await httpGet(`${server.url}/readyz`)).status, 200);
});

test("Socket.IO and HTTP share the port; unknown paths are not 200", async () => {
  const r = await httpGet(`${server.url}/definitely/not/here`);
  assert.notEqual(r.status, 200);
  const eio = await httpGet(`${server.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(eio.status, 200);
  assert.match(eio.text, /^0\{.*"sid"/);
});

test("Socket.IO polling answers cross-origin requests (browser web page on another origin)", async () => {
  const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
    headers: { Origin: "http://example.test:8080" },
    signal: AbortSignal.timeout(3000),
  });
  await res.text();
  assert.equal(res.status, 200);
  const allow = res.headers.get("access-control-allow-origin");
  assert.ok(allow === "*" || allow === "http://example.test:8080", `access-control-allow-origin: ${allow}`);
});
