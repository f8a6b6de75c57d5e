// Operations: the Prometheus exposition (GET /metrics), the JSON API (/api/sessions, /api/metrics),
// the metrics:update feed and the logs (LOG_FORMAT=json, DEBUG_SYNC_ENGINE). PROTOCOL.md sections 4 and 7.
//
// /metrics is parsed two ways: by promtool (`promtool check metrics`, Debian's prometheus package; CI
// installs it, PROMTOOL=/path overrides) and by the strict parser in lib/prometheus.mjs, which the
// deltas are read from. promtool decision: the exposition must pass with exit 0. promtool 2.x exits 1
// when the text does not parse and 3 when it parses but has lint problems (printed on stderr, e.g.
// "no help text", a counter without _total, a non-base unit); both fail the test, since a Prometheus
// lint step in CI or a reviewer's `promtool check metrics` would flag them too. Whatever promtool prints
// while exiting 0 is informational and accepted.
//
// Each kind of check gets its own server, so counts on one are not disturbed by the others.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { httpGet, sleep } from "../lib/server.mjs";
import { useServers } from "../lib/setup.mjs";
import { connect, connectMany, sid, mark, waitFor, expectNo, expectError, join, seqOf, syncState } from "../lib/client.mjs";
import { ack, ackOk, createSession, enhancedJoin, enhancedBand, received } from "../lib/enhanced.mjs";
import {
  parsePrometheusText,
  sampleValue,
  valueOr0,
  delta,
  totalOf,
  allLabels,
  promtoolCheck,
  PROMTOOL,
} from "../lib/prometheus.mjs";

const [
  metricsServer, // /metrics deltas: app ping off, so event counts are exactly the test's own
  apiServer, // /api/*: app ping every 100 ms, for avgLatency
  feedServer, // metrics:update every 250 ms
  logServer, // LOG_FORMAT=json at info
  debugServer, // DEBUG_SYNC_ENGINE=true
] = useServers(
  { LEGACY_PING_INTERVAL_MS: "0" },
  { LEGACY_PING_INTERVAL_MS: "100" },
  { LEGACY_PING_INTERVAL_MS: "0", METRICS_INTERVAL_MS: "250" },
  { LEGACY_PING_INTERVAL_MS: "0", LOG_FORMAT: "json", RUST_LOG: "info" },
  { LEGACY_PING_INTERVAL_MS: "0", LOG_FORMAT: "json", RUST_LOG: "info", DEBUG_SYNC_ENGINE: "true" },
);

/** A distinctive random string (must never show up in the metrics). */
const secret = (prefix) => `${prefix}${randomBytes(6).toString("hex")}`;

/** GET /metrics, checked for status and content type, parsed strictly. */
async function scrape(server) {
  const r = await httpGet(`${server.url}/metrics`);
  assert.equal(r.status, 200, `/metrics status ${r.status}`);
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain/, "content-type");
  let parsed;
  try {
    parsed = parsePrometheusText(r.text);
  } catch (e) {
    throw new Error(`/metrics is not valid Prometheus text: ${e.message}\n${r.text}`);
  }
  return { text: r.text, parsed };
}

/** Polls `fn` (async) until it returns a truthy value; returns it (the last value on timeout). */
async function until(fn, ms = 3000, step = 50) {
  const deadline = Date.now() + ms;
  let v;
  while (!(v = await fn()) && Date.now() < deadline) await sleep(step);
  return v;
}

const scrapes = []; // every exposition fetched from metricsServer, for promtool and the label scan

test("strict Prometheus text parser (lib/prometheus.mjs): escapes, HELP/TYPE, histograms; rejects malformed text", () => {
  const good = [
    "# HELP x_total A \\\\ backslash and a \\n newline.",
    "# TYPE x_total counter",
    'x_total{path="/a\\"b\\\\c\\nd",code="200",} 3 1700000000000',
    'x_total{code="500"} 1e3',
    "",
    "# TYPE h_seconds histogram",
    'h_seconds_bucket{op="r",le="0.1"} 1',
    'h_seconds_bucket{op="r",le="+Inf"} 2',
    'h_seconds_sum{op="r"} 0.3',
    'h_seconds_count{op="r"} 2',
    "# just a comment",
    "g NaN",
    "g2 -Inf",
    "",
  ].join("\n");
  const p = parsePrometheusText(good);
  assert.equal(p.families.get("x_total").help, "A \\ backslash and a \n newline.");
  assert.equal(p.families.get("x_total").type, "counter");
  assert.equal(sampleValue(p, "x_total", { path: '/a"b\\c\nd', code: "200" }), 3);
  assert.equal(p.samples[0].timestamp, 1700000000000);
  assert.equal(sampleValue(p, "x_total", { code: "500" }), 1000);
  assert.equal(sampleValue(p, "h_seconds_count", { op: "r" }), 2);
  assert.equal(sampleValue(p, "h_seconds_bucket", { op: "r", le: "+Inf" }), 2);
  assert.equal(p.families.get("h_seconds").samples.length, 4);
  assert.ok(Number.isNaN(sampleValue(p, "g")));
  assert.equal(sampleValue(p, "g2"), -Infinity);
  assert.equal(sampleValue(p, "x_total", { code: "404" }), undefined);
  assert.equal(valueOr0(p, "x_total", { code: "404" }), 0);

  const bad = {
    "unterminated label value": 'a{b="c} 1\n',
    "invalid escape": 'a{b="\\t"} 1\n',
    "missing value": "a{b=\"c\"}\n",
    "bad value": "a 1x\n",
    "bad metric name": "1a 1\n",
    "duplicate series": 'a{b="c"} 1\na{b="c"} 2\n',
    "duplicate label": 'a{b="c",b="d"} 1\n',
    "TYPE after samples": "a 1\n# TYPE a gauge\n",
    "second TYPE": "# TYPE a gauge\n# TYPE a counter\na 1\n",
    "unknown TYPE": "# TYPE a thing\na 1\n",
    "family split in two groups": "a 1\nb 1\na{x=\"y\"} 2\n",
    "no final newline": "a 1",
    "negative counter": "# TYPE a_total counter\na_total -1\n",
    "bucket without le": "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
    "buckets not cumulative": '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "no +Inf bucket": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "+Inf bucket != count": '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n',
    "bare histogram sample": "# TYPE h histogram\nh 1\n",
  };
  for (const [what, text] of Object.entries(bad)) {
    assert.throws(() => parsePrometheusText(text), Error, `should reject: ${what}`);
  }
});

test("/metrics: counters, gauges and histograms follow a known amount of traffic; no ids, names or text in any label", async () => {
  const url = metricsServer.url;
  const before = await scrape(metricsServer);
  scrapes.push(before);
  const secrets = [];
  const keep = (s) => (secrets.push(s), s);

  // 3 websocket + 2 polling connections.
  const ws = await connectMany(url, 3, { transport: "websocket" });
  const pl = await connectMany(url, 2, { transport: "polling" });
  for (const s of [...ws, ...pl]) keep(s.id);
  // 4 legacy joins: A gets ws0 (leader), ws1, pl0; C gets pl1. B is enhanced (session:create by ws2).
  const sidA = keep(secret("opsA-"));
  const sidC = keep(secret("opsC-"));
  const dn = Array.from({ length: 5 }, () => keep(secret("Dn")));
  await join(ws[0], sidA, { displayName: dn[0] });
  await join(ws[1], sidA, { displayName: dn[1] });
  await join(pl[0], sidA, { displayName: dn[2] });
  await join(pl[1], sidC, { displayName: dn[3] });
  const JOINS = 4;
  const B = await createSession(ws[2], {
    bandId: keep(secret("band-")),
    sessionName: keep(secret("Sn")),
    displayName: dn[4],
    userId: keep(secret("uid-")),
  });
  keep(B.sessionId);

  // A refused event (follower set_tempo) and an event the server does not know.
  const from = seqOf(ws[1]);
  ws[1].emit("set_tempo", { sessionId: sidA, tempo: 100 });
  await expectError(ws[1], "NOT_LEADER", 2000, from);
  const weird = keep(secret("evt-"));
  mark(ws[0]);
  ws[0].emit(weird, { sessionId: sidA, text: weird });
  // Handled in order: by the sync_response, whatever the unknown event caused has been sent.
  await syncState(ws[0], sidA);
  await expectNo(ws[0], "error", 100);

  // User text: chat (legacy and enhanced), a message line.
  const chat = keep(secret("chat "));
  ws[0].emit("chat_message", { sessionId: sidA, message: chat, username: keep(secret("Un")) });
  await waitFor(ws[1], "chat_message", { message: chat });
  const chat2 = keep(secret("chat2 "));
  ws[2].emit("chat:message", { sessionId: B.sessionId, message: chat2 });
  await waitFor(ws[2], "chat:message", { message: chat2 });
  const line = keep(secret("msg "));
  ws[0].emit("update_message", { sessionId: sidA, message: line });
  await waitFor(ws[1], "snapshot", { message: line });

  // clock:sync without an rtt, then with one (12.5 ms).
  const rtt = "bandsync_clock_sync_rtt_seconds";
  const c0 = await scrape(metricsServer);
  const a1 = await ack(ws[2], "clock:sync", { t0: Date.now() });
  assert.equal(typeof a1.t1, "number", `clock:sync ack ${JSON.stringify(a1)}`);
  const c1 = await scrape(metricsServer);
  await ack(ws[2], "clock:sync", { t0: Date.now(), rtt: 12.5 });
  const c2 = await scrape(metricsServer);
  scrapes.push(c0, c1, c2);
  assert.equal(delta(c0.parsed, c1.parsed, `${rtt}_count`), 0, "clock:sync {t0} alone must not record an rtt");
  assert.equal(delta(c0.parsed, c1.parsed, "bandsync_events_received_total", { event: "clock:sync", result: "ok", vocabulary: "enhanced" }), 1);
  assert.equal(delta(c1.parsed, c2.parsed, `${rtt}_count`), 1, "clock:sync {t0, rtt: 12.5} records one rtt");
  const sumDelta = delta(c1.parsed, c2.parsed, `${rtt}_sum`);
  assert.ok(Math.abs(sumDelta - 0.0125) < 1e-9, `rtt sum grew by ${sumDelta} s, expected 0.0125 (12.5 ms in seconds)`);
  assert.equal(delta(c1.parsed, c2.parsed, `${rtt}_bucket`, { le: "0.025" }), 1, "12.5 ms falls in le=0.025");
  assert.equal(delta(c1.parsed, c2.parsed, `${rtt}_bucket`, { le: "0.01" }), 0, "12.5 ms is not ≤ 10 ms");
  assert.equal(c2.parsed.families.get(rtt)?.type, "histogram");

  // Everything seated: the mid scrape.
  const mid = await scrape(metricsServer);
  scrapes.push(mid);
  const b = before.parsed;
  const m = mid.parsed;
  const ev = "bandsync_events_received_total";
  assert.equal(delta(b, m, ev, { event: "join_session", result: "ok", vocabulary: "legacy" }), JOINS, "join_session ok");
  assert.equal(delta(b, m, ev, { event: "session:create", result: "ok", vocabulary: "enhanced" }), 1, "session:create ok");
  assert.equal(delta(b, m, ev, { event: "set_tempo", result: "NOT_LEADER", vocabulary: "legacy" }), 1, "follower set_tempo → NOT_LEADER");
  assert.equal(delta(b, m, ev, { event: "set_tempo", result: "ok", vocabulary: "legacy" }), 0, "no set_tempo succeeded");
  assert.equal(delta(b, m, ev, { event: "other", result: "ignored", vocabulary: "other" }), 1, `unknown event "${weird}" under event="other"`);
  assert.equal(delta(b, m, ev, { event: "chat_message", result: "ok", vocabulary: "legacy" }), 1);
  assert.equal(delta(b, m, ev, { event: "chat:message", result: "ok", vocabulary: "enhanced" }), 1);
  assert.equal(m.families.get(ev)?.type, "counter");
  assert.equal(
    delta(b, m, "bandsync_event_duration_seconds_count", { event: "join_session" }),
    JOINS,
    "event_duration_seconds_count{join_session}",
  );
  assert.equal(m.families.get("bandsync_event_duration_seconds")?.type, "histogram");
  const snapshots = delta(b, m, "bandsync_events_emitted_total", { event: "snapshot" });
  assert.ok(snapshots >= JOINS, `events_emitted_total{snapshot} grew by ${snapshots}, expected ≥ ${JOINS}`);
  assert.equal(delta(b, m, "bandsync_connections_total", { transport: "websocket" }), 3, "connections_total{websocket}");
  assert.equal(delta(b, m, "bandsync_connections_total", { transport: "polling" }), 2, "connections_total{polling}");
  assert.equal(delta(b, m, "bandsync_connections", { transport: "websocket" }), 3, "connections{websocket} gauge");
  assert.equal(delta(b, m, "bandsync_connections", { transport: "polling" }), 2, "connections{polling} gauge");
  assert.equal(m.families.get("bandsync_connections")?.type, "gauge");
  assert.equal(m.families.get("bandsync_connections_total")?.type, "counter");
  assert.equal(sampleValue(m, "bandsync_sessions"), valueOr0(b, "bandsync_sessions") + 3, "bandsync_sessions (A, B, C)");
  // Four legacy joins, one enhanced session:create.
  assert.equal(delta(b, m, "bandsync_members", { vocabulary: "legacy" }), JOINS, "bandsync_members{legacy}");
  assert.equal(delta(b, m, "bandsync_members", { vocabulary: "enhanced" }), 1, "bandsync_members{enhanced}");
  assert.equal(sampleValue(m, "bandsync_sessions_playing"), 0);

  // build_info{version, server_id} = 1, with the values / and /health report.
  const info = (await httpGet(`${url}/`)).body;
  const health = (await httpGet(`${url}/health`)).body;
  assert.equal(sampleValue(m, "bandsync_build_info", { version: info.version, server_id: health.serverId }), 1, "build_info");
  assert.equal(m.families.get("bandsync_build_info").samples.length, 1, "one build_info series");

  // One session playing: sessions_playing 1, and the ticker's lag histogram keeps counting.
  ws[0].emit("play", { sessionId: sidA });
  await waitFor(ws[1], "play", { sessionId: sidA });
  const p1 = await scrape(metricsServer);
  assert.equal(sampleValue(p1.parsed, "bandsync_sessions_playing"), 1, "sessions_playing while A plays");
  await sleep(300);
  const p2 = await scrape(metricsServer);
  assert.equal(sampleValue(p2.parsed, "bandsync_sessions_playing"), 1);
  const lag = delta(p1.parsed, p2.parsed, "bandsync_tick_lag_seconds_count");
  assert.ok(lag >= 10, `tick_lag_seconds_count grew by ${lag} in 300 ms of playing (80 Hz ticks)`);
  const ticks = delta(p1.parsed, p2.parsed, "bandsync_events_emitted_total", { event: "scroll_tick" });
  assert.ok(ticks >= 1, `events_emitted_total{scroll_tick} grew by ${ticks} in 300 ms`);
  ws[0].emit("pause", { sessionId: sidA });
  await waitFor(ws[1], "pause", { sessionId: sidA });
  const p3 = await scrape(metricsServer);
  assert.equal(sampleValue(p3.parsed, "bandsync_sessions_playing"), 0, "sessions_playing after pause");
  scrapes.push(p1, p2, p3);

  // Everyone leaves: the connection gauges and members return to where they were; sessions stay (idle).
  for (const s of [...ws, ...pl]) s.disconnect();
  const gaugesBack = (p) =>
    ["websocket", "polling"].every(
      (t) => valueOr0(p, "bandsync_connections", { transport: t }) === valueOr0(b, "bandsync_connections", { transport: t }),
    ) && totalOf(p, "bandsync_members") === totalOf(b, "bandsync_members");
  let last;
  await until(async () => gaugesBack((last = await scrape(metricsServer)).parsed), 3000, 100);
  scrapes.push(last);
  const l = last.parsed;
  for (const t of ["websocket", "polling"]) {
    assert.equal(
      valueOr0(l, "bandsync_connections", { transport: t }),
      valueOr0(b, "bandsync_connections", { transport: t }),
      `connections{${t}} back to its earlier value`,
    );
  }
  for (const vocabulary of ["legacy", "enhanced"]) {
    const [now, was] = [l, b].map((p) => valueOr0(p, "bandsync_members", { vocabulary }));
    assert.equal(now, was, `members{${vocabulary}} back to its earlier value`);
  }
  assert.equal(sampleValue(l, "bandsync_sessions"), valueOr0(b, "bandsync_sessions") + 3, "empty sessions are kept");
  assert.equal(delta(m, l, "bandsync_connections_total", { transport: "websocket" }), 0, "a counter never goes back");

  // No id, name or user text in any label value, nor anywhere in the exposition.
  for (const { text, parsed } of scrapes) {
    const leaks = allLabels(parsed).filter(([, v]) => secrets.some((s) => v.includes(s)));
    assert.deepEqual(leaks, [], "label values carrying ids, names or user text");
    const inText = secrets.filter((s) => text.includes(s));
    assert.deepEqual(inText, [], "ids, names or user text in the exposition");
  }
  // Event labels come from a closed set of protocol names.
  for (const [k, v] of allLabels(l)) {
    if (k === "event") assert.match(v, /^[a-z_]+(:[a-z_]+)?$/, `event label ${JSON.stringify(v)}`);
  }
});

test(`promtool check metrics accepts the exposition, before and after traffic (exit 0; ${PROMTOOL})`, async () => {
  const now = await scrape(metricsServer);
  const texts = [...scrapes, now].map((s) => s.text);
  assert.ok(texts.length >= 2, "a scrape before and one after the traffic");
  const results = texts.map((text) => ({ text, ...promtoolCheck(text) }));
  assert.ok(results[0].available, `promtool not runnable (${results[0].stderr}); install Debian's prometheus package or set PROMTOOL`);
  for (const [i, r] of results.entries()) {
    assert.notEqual(r.status, 1, `scrape ${i}: promtool cannot parse the exposition (exit 1)\n${r.stdout}${r.stderr}\n--- exposition:\n${r.text}`);
  }
  const problems = [...new Set(results.flatMap((r) => `${r.stdout}\n${r.stderr}`.split("\n")).filter((l) => l.trim()))];
  const statuses = results.map((r) => r.status);
  assert.ok(
    statuses.every((st) => st === 0),
    `promtool check metrics exits ${statuses.join(", ")} for the ${results.length} scrapes (3 = lint problems); it reports:\n  ${problems.join("\n  ")}`,
  );
});

test("GET /api/sessions lists exactly the sessions clients created; ?bandId= filters; /api/sessions/{id}; 404 for an unknown id", async () => {
  const url = apiServer.url;
  const r0 = await httpGet(`${url}/api/sessions`);
  assert.equal(r0.status, 200);
  assert.match(r0.headers.get("content-type") ?? "", /application\/json/);
  assert.deepEqual(r0.body.sessions, [], "no session yet");
  assert.equal(r0.body.count, 0);

  // A legacy session L (2 members, tempo 133) and enhanced X1 (2 members, 96 BPM, 3/4, playing) and X2
  // of band X, Y1 of band Y.
  const [l1, l2, e1, e2, e3, e4] = await connectMany(url, 6);
  const sidL = sid("api-L");
  await join(l1, sidL, { displayName: "Lena" });
  await join(l2, sidL, { displayName: "Lars" });
  l1.emit("set_tempo", { sessionId: sidL, tempo: 133 });
  await waitFor(l2, "snapshot", { tempo: 133 });
  const bandX = sid("bandX");
  const bandY = sid("bandY");
  const X1 = await createSession(e1, { bandId: bandX, sessionName: "X one", tempo: 96, timeSignature: "3/4", displayName: "Xena" });
  await enhancedJoin(e2, X1.sessionId, { displayName: "Xavi" });
  const X2 = await createSession(e3, { bandId: bandX, sessionName: "X two" });
  const Y1 = await createSession(e4, { bandId: bandY, sessionName: "Y one" });
  await ackOk(e1, "metronome:start", { sessionId: X1.sessionId });
  await waitFor(e2, "metronome:start", { sessionId: X1.sessionId });

  const expected = [
    { sessionId: sidL, sessionName: null, memberCount: 2, isPlaying: false, tempo: 133 },
    { sessionId: X1.sessionId, sessionName: "X one", memberCount: 2, isPlaying: true, tempo: 96 },
    { sessionId: X2.sessionId, sessionName: "X two", memberCount: 1, isPlaying: false, tempo: 120 },
    { sessionId: Y1.sessionId, sessionName: "Y one", memberCount: 1, isPlaying: false, tempo: 120 },
  ];
  const strip = ({ createdAt, ...rest }) => rest;
  const byId = (a, b) => a.sessionId.localeCompare(b.sessionId);
  const r1 = await httpGet(`${url}/api/sessions`);
  assert.equal(r1.status, 200);
  assert.equal(r1.body.count, 4, JSON.stringify(r1.body));
  assert.deepEqual(r1.body.sessions.map(strip).sort(byId), [...expected].sort(byId), "the sessions clients created");
  const created = r1.body.sessions.map((s) => s.createdAt);
  for (const c of created) assert.ok(Number.isInteger(c) && Math.abs(c - Date.now()) < 10_000, `createdAt ${c}`);
  assert.deepEqual(created, [...created].sort((a, b) => a - b), "oldest first");

  const xs = await httpGet(`${url}/api/sessions?bandId=${encodeURIComponent(bandX)}`);
  assert.equal(xs.status, 200);
  assert.deepEqual(xs.body.sessions.map(strip).sort(byId), expected.slice(1, 3).sort(byId), "band X's sessions");
  assert.equal(xs.body.count, 2);
  const ys = await httpGet(`${url}/api/sessions?bandId=${encodeURIComponent(bandY)}`);
  assert.deepEqual(ys.body.sessions.map((s) => s.sessionId), [Y1.sessionId]);
  const none = await httpGet(`${url}/api/sessions?bandId=${sid("nobody")}`);
  assert.equal(none.status, 200);
  assert.deepEqual(none.body, { sessions: [], count: 0 });

  // One session: the state members see.
  const s1 = await httpGet(`${url}/api/sessions/${encodeURIComponent(X1.sessionId)}`);
  assert.equal(s1.status, 200);
  assert.match(s1.headers.get("content-type") ?? "", /application\/json/);
  const st = s1.body;
  assert.equal(st.sessionId, X1.sessionId);
  assert.equal(st.bandId, bandX);
  assert.equal(st.sessionName, "X one");
  assert.equal(st.tempo, 96);
  assert.equal(st.tempoBpm, 96);
  assert.equal(st.timeSignature, "3/4");
  assert.equal(st.isPlaying, true);
  assert.equal(st.leaderSocketId, e1.id);
  assert.ok(Number.isInteger(st.serverTimestamp) && Math.abs(st.serverTimestamp - Date.now()) < 5000, "serverTimestamp");
  assert.deepEqual(
    st.members.map((mm) => [mm.socketId, mm.displayName, mm.role]),
    [
      [e1.id, "Xena", "leader"],
      [e2.id, "Xavi", "follower"],
    ],
  );
  const sl = (await httpGet(`${url}/api/sessions/${encodeURIComponent(sidL)}`)).body;
  assert.equal(sl.sessionId, sidL);
  assert.equal(sl.tempo, 133);
  assert.equal(sl.timeSignature, "4/4");
  assert.equal(sl.bandId, null);
  assert.deepEqual(sl.members.map((mm) => mm.socketId), [l1.id, l2.id]);

  // A leave shows in the list.
  l2.emit("leave_session", { sessionId: sidL });
  await waitFor(l1, "user_left", { socketId: l2.id });
  const afterLeave = (await httpGet(`${url}/api/sessions`)).body.sessions.find((s) => s.sessionId === sidL);
  assert.equal(afterLeave.memberCount, 1);

  const missing = sid("no-such-session");
  const r404 = await httpGet(`${url}/api/sessions/${missing}`);
  assert.equal(r404.status, 404);
  assert.equal(r404.body?.error?.code, "SESSION_NOT_FOUND", r404.text);
  assert.equal(typeof r404.body.error.message, "string");
  await ackOk(e1, "metronome:stop", { sessionId: X1.sessionId });
});

test("GET /api/metrics: connections, sessions {active, avgSize}, performance {avgLatency from ping/pong, syncDrift from position reports}", async () => {
  const url = apiServer.url;
  const m0r = await httpGet(`${url}/api/metrics`);
  assert.equal(m0r.status, 200);
  assert.match(m0r.headers.get("content-type") ?? "", /application\/json/);
  const m0 = m0r.body;
  assert.deepEqual(Object.keys(m0).sort(), ["connections", "performance", "sessions", "timestamp"]);
  assert.deepEqual(Object.keys(m0.connections).sort(), ["current", "peak", "total"]);
  assert.deepEqual(Object.keys(m0.sessions).sort(), ["active", "avgSize"]);
  assert.deepEqual(Object.keys(m0.performance).sort(), ["avgLatency", "syncDrift"]);
  assert.ok(Number.isInteger(m0.timestamp) && Math.abs(m0.timestamp - Date.now()) < 5000, `timestamp ${m0.timestamp}`);
  // Nobody has answered a ping or reported a position on this server yet.
  assert.equal(m0.performance.avgLatency, 0, "avgLatency before any pong");
  assert.equal(m0.performance.syncDrift, 0, "syncDrift before any position report");

  // A client answering the app-level ping (every 100 ms here) 20 ms later, as over a real network.
  const p = await connect(url);
  p.on("ping", (d) => setTimeout(() => p.connected && p.emit("pong", { timestamp: d.timestamp }), 20));
  await waitFor(p, "connection_quality", undefined, 3000); // every 5th pong
  // An enhanced member reporting a position 200 ms ahead of the timeline while playing.
  const band = await enhancedBand(url, 2);
  await ackOk(band.leader, "metronome:start", { sessionId: band.sessionId });
  const started = await waitFor(band.followers[0], "metronome:start", { sessionId: band.sessionId });
  await sleep(100);
  const now = Date.now();
  const reported = started.positionMs + (now - started.startTime) + 200;
  band.followers[0].emit("position:sync", { sessionId: band.sessionId, positionMs: reported, clientTime: now });
  const corr = await waitFor(band.followers[0], "position:correction", { sessionId: band.sessionId });

  const m1 = (await httpGet(`${url}/api/metrics`)).body;
  const health = (await httpGet(`${url}/health`)).body;
  const list = (await httpGet(`${url}/api/sessions`)).body.sessions;
  assert.ok(m1.performance.avgLatency > 0, `avgLatency ${m1.performance.avgLatency} after ping/pong traffic`);
  assert.ok(m1.performance.avgLatency >= 10 && m1.performance.avgLatency < 1000, `avgLatency ${m1.performance.avgLatency} ms for ~20 ms pongs`);
  assert.ok(m1.performance.syncDrift > 0, `syncDrift ${m1.performance.syncDrift} after a drifting position report`);
  assert.ok(
    Math.abs(m1.performance.syncDrift - Math.abs(corr.drift)) < 5,
    `syncDrift ${m1.performance.syncDrift} vs the one report's drift ${corr.drift}`,
  );
  // Connections: 3 more than before (p and the band of 2); figures agree with /health.
  assert.equal(m1.connections.current, m0.connections.current + 3);
  assert.equal(m1.connections.total, m0.connections.total + 3);
  assert.ok(m1.connections.peak >= m1.connections.current);
  assert.equal(m1.connections.current, health.connections.current);
  // Sessions: as many as listed; avgSize the mean member count, 2 decimals.
  assert.equal(m1.sessions.active, list.length);
  assert.equal(m1.sessions.active, m0.sessions.active + 1);
  const mean = list.reduce((n, s) => n + s.memberCount, 0) / list.length;
  assert.equal(m1.sessions.avgSize, Math.round(mean * 100) / 100, `avgSize for member counts ${list.map((s) => s.memberCount)}`);
  await ackOk(band.leader, "metronome:stop", { sessionId: band.sessionId });
});

test("metrics:update every METRICS_INTERVAL_MS (250) to subscribers only; metrics:unsubscribe stops it", async () => {
  const url = feedServer.url;
  const [sub, other] = await connectMany(url, 2);
  await join(other, sid("feed"));
  mark(sub, other);
  await ackOk(sub, "metrics:subscribe");
  const t0 = Date.now();
  await sleep(1300);
  const updates = received(sub, "metrics:update").filter((e) => e.at <= t0 + 1300);
  assert.ok(updates.length >= 4 && updates.length <= 6, `${updates.length} metrics:update in 1.3 s at 250 ms`);
  for (const { data: u, at } of updates) {
    assert.deepEqual(Object.keys(u).sort(), ["activeSessions", "avgLatency", "connectedClients", "lastMetricsUpdate", "syncDrift"]);
    for (const k of Object.keys(u)) assert.equal(typeof u[k], "number", `${k}: ${JSON.stringify(u)}`);
    assert.equal(u.activeSessions, 1);
    assert.equal(u.connectedClients, 2);
    assert.equal(u.avgLatency, 0);
    assert.equal(u.syncDrift, 0);
    assert.ok(Math.abs(at - u.lastMetricsUpdate) < 200, `received at ${at}, lastMetricsUpdate ${u.lastMetricsUpdate}`);
  }
  const stamps = updates.map((e) => e.data.lastMetricsUpdate);
  const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
  for (const g of gaps) assert.ok(g >= 150 && g <= 350, `lastMetricsUpdate gaps ${gaps} (250 ms expected)`);
  const mean = gaps.reduce((a, g) => a + g, 0) / gaps.length;
  assert.ok(Math.abs(mean - 250) <= 25, `mean gap ${mean} ms`);
  await expectNo(other, "metrics:update", 0);

  await ackOk(sub, "metrics:unsubscribe");
  mark(sub);
  await expectNo(sub, "metrics:update", 700);
  await expectNo(other, "metrics:update", 0);
});

/** The complete stdout lines of a server (a trailing partial line is left out). */
function stdoutLines(server) {
  const lines = server.stdout().split("\n");
  lines.pop();
  return lines;
}

/** Parsed JSON log lines (every line must be one JSON object). */
function jsonLines(server) {
  return stdoutLines(server).map((line, i) => {
    let v;
    try {
      v = JSON.parse(line);
    } catch {
      throw new Error(`stdout line ${i + 1} is not JSON: ${JSON.stringify(line.slice(0, 300))}`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v))
      throw new Error(`stdout line ${i + 1} is not one JSON object: ${line.slice(0, 300)}`);
    return v;
  });
}

/** Waits for a log line matching `pred`; returns it. */
async function waitLog(server, what, pred, ms = 3000) {
  const found = await until(() => jsonLines(server).find(pred), ms, 25);
  assert.ok(found, `no log line for ${what}; stdout:\n${server.stdout().slice(-4000)}`);
  return found;
}

test("LOG_FORMAT=json: one JSON object per stdout line; connect, join, refusal and leave are logged; nothing per tick while playing", async () => {
  const srv = logServer;
  const sessionId = sid("log");
  const a = await connect(srv.url);
  const conn = await waitLog(srv, "a's connection", (l) => l.message === "connected" && l.socket === a.id);
  assert.equal(conn.level, "INFO");
  await join(a, sessionId, { displayName: "Logan" });
  const joined = await waitLog(srv, "a's join", (l) => l.message === "joined" && l.socket === a.id);
  assert.equal(joined.session, sessionId, `join line ${JSON.stringify(joined)}`);
  assert.equal(joined.socket, a.id);
  const b = await connect(srv.url, { transport: "polling" });
  await waitLog(srv, "b's connection (polling)", (l) => l.message === "connected" && l.socket === b.id);
  await join(b, sessionId);
  await waitLog(srv, "b's join", (l) => l.message === "joined" && l.socket === b.id && l.session === sessionId);

  const from = seqOf(b);
  b.emit("set_tempo", { sessionId, tempo: 90 });
  await expectError(b, "NOT_LEADER", 2000, from);
  const refused = await waitLog(srv, "b's refused set_tempo", (l) => l.message === "refused" && l.socket === b.id);
  assert.equal(refused.code, "NOT_LEADER", JSON.stringify(refused));
  assert.equal(refused.event, "set_tempo");

  // 1 s of playing: no line at all (per tick logging would show as 10+ scroll ticks' and 80 sync ticks' worth).
  mark(b);
  a.emit("play", { sessionId });
  await waitFor(b, "play", { sessionId });
  await sleep(150);
  const n1 = stdoutLines(srv).length;
  await sleep(1000);
  const during = stdoutLines(srv).slice(n1);
  assert.ok(received(b, "scroll_tick").length >= 8, `the session played (${received(b, "scroll_tick").length} scroll_tick)`);
  assert.deepEqual(during, [], `lines logged during 1 s of playing at info:\n${during.join("\n")}`);
  a.emit("pause", { sessionId });
  await waitFor(b, "pause", { sessionId });

  b.emit("leave_session", { sessionId });
  await waitFor(a, "user_left", { socketId: b.id });
  const left = await waitLog(srv, "b's leave", (l) => l.message === "left" && l.socket === b.id);
  assert.equal(left.session, sessionId);
  const aId = a.id; // the client forgets its id on disconnect
  a.disconnect();
  await waitLog(srv, "a's disconnect", (l) => l.message === "disconnected" && l.socket === aId);

  const lines = jsonLines(srv);
  assert.ok(lines.length >= 8, `${lines.length} log lines`);
  for (const l of lines) {
    assert.equal(typeof l.timestamp, "string", JSON.stringify(l));
    assert.ok(["ERROR", "WARN", "INFO"].includes(l.level), `level ${l.level} at RUST_LOG=info: ${JSON.stringify(l)}`);
    assert.equal(typeof l.target, "string", JSON.stringify(l));
  }
  assert.ok(!lines.some((l) => String(l.target).includes("bandsync_server::sync")), "no sync-engine lines without DEBUG_SYNC_ENGINE");
});

test("DEBUG_SYNC_ENGINE=true: sync-engine debug lines (target bandsync_server::sync…) when playback starts and stops", async () => {
  const srv = debugServer;
  const sessionId = sid("dbg");
  const [a, b] = await connectMany(srv.url, 2);
  await join(a, sessionId);
  await join(b, sessionId);
  const isSync = (l) => String(l.target).includes("bandsync_server::sync") && l.session === sessionId;
  assert.deepEqual(jsonLines(srv).filter(isSync), [], "no sync-engine line about the session before it plays");
  a.emit("play", { sessionId });
  await waitFor(b, "play", { sessionId });
  const started = await waitLog(srv, "streams started", (l) => isSync(l) && /start/.test(l.message));
  assert.equal(started.level, "DEBUG", JSON.stringify(started));
  a.emit("stop", { sessionId });
  await waitFor(b, "stop", { sessionId });
  const stopped = await waitLog(srv, "streams stopped", (l) => isSync(l) && /stop/.test(l.message));
  assert.equal(stopped.level, "DEBUG");
  // Other modules stay at info.
  const debugElsewhere = jsonLines(srv).filter((l) => l.level === "DEBUG" && !String(l.target).startsWith("bandsync_server::sync"));
  assert.deepEqual(debugElsewhere, [], "DEBUG lines outside the sync engine");
});
