// Retiring the legacy events (LEGACY_EVENTS): `warn` serves legacy clients and reports each
// connection that uses them; `off` refuses a legacy join with LEGACY_DISABLED and changes nothing
// else. Operators move from one to the next by the dashboard's legacy share (MIGRATION.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServers } from "../lib/setup.mjs";
import { httpGet } from "../lib/server.mjs";
import { connect, expectError, join, sid, waitFor } from "../lib/client.mjs";
import { ackOk, createSession, enhancedJoin } from "../lib/enhanced.mjs";
import { delta, sampleValue, scrapeMetrics } from "../lib/prometheus.mjs";

const [warned, retired] = useServers(
  { LEGACY_EVENTS: "warn", LEGACY_PING_INTERVAL_MS: "0" },
  { LEGACY_EVENTS: "off", LEGACY_PING_INTERVAL_MS: "0" },
);

const scrape = (server) => scrapeMetrics(server.url);

test("LEGACY_EVENTS=warn: legacy clients are served as ever; each legacy connection is counted once and logged", async () => {
  const before = await scrape(warned);
  const sessionId = sid("warned");
  const [a, b] = [await connect(warned.url), await connect(warned.url)];
  await join(a, sessionId);
  await join(b, sessionId);
  a.emit("set_tempo", { sessionId, tempo: 90 });
  await waitFor(b, "snapshot", { tempoBpm: 90 });
  a.emit("play", { sessionId });
  await waitFor(b, "play", { sessionId });
  const enhanced = await connect(warned.url);
  await enhancedJoin(enhanced, sessionId);
  const after = await scrape(warned);
  assert.equal(delta(before, after, "bandsync_legacy_warnings_total"), 2, "two legacy connections, however many events");
  assert.equal(delta(before, after, "bandsync_events_received_total", { event: "join_session", result: "ok", vocabulary: "legacy" }), 2);
  assert.equal(delta(before, after, "bandsync_events_received_total", { event: "session:join", result: "ok", vocabulary: "enhanced" }), 1);
  assert.match(warned.logs(), /a client uses legacy events \(LEGACY_EVENTS=warn\)/);
  // The legacy share the dashboard shows: members by vocabulary, and the session seating both.
  assert.equal(sampleValue(after, "bandsync_members", { vocabulary: "legacy" }), 2);
  assert.equal(sampleValue(after, "bandsync_members", { vocabulary: "enhanced" }), 1);
  assert.equal(sampleValue(after, "bandsync_sessions_mixed"), 1);
});

test("LEGACY_EVENTS=off: a legacy join is refused with LEGACY_DISABLED naming session:join; nothing else changes; enhanced clients are served", async () => {
  const before = await scrape(retired);
  const legacy = await connect(retired.url);
  const sessionId = sid("retired");
  legacy.emit("join_session", { sessionId, displayName: "Old app" });
  const err = await expectError(legacy, "LEGACY_DISABLED");
  assert.match(err.message, /session:join/);
  assert.equal(legacy.connected, true, "refused, not disconnected");
  const missing = await httpGet(`${retired.url}/api/sessions/${encodeURIComponent(sessionId)}`);
  assert.equal(missing.status, 404, "the refused join created no session");

  // The enhanced vocabulary is untouched, and a legacy query still answers.
  const creator = await connect(retired.url);
  const created = await createSession(creator);
  await ackOk(creator, "metronome:start", { sessionId: created.sessionId });
  legacy.emit("sync_request", { sessionId: created.sessionId });
  assert.equal((await waitFor(legacy, "sync_response", { sessionId: created.sessionId })).isPlaying, true);

  const after = await scrape(retired);
  const refused = { event: "join_session", result: "LEGACY_DISABLED", vocabulary: "legacy" };
  assert.equal(delta(before, after, "bandsync_events_received_total", refused), 1);
  assert.equal(delta(before, after, "bandsync_legacy_warnings_total"), 0, "off refuses; it does not warn");
});
