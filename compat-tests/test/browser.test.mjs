// The demo page at /demo/ in a real (headless) Chromium: two pages join one session, the first
// leads and starts the metronome at 120 BPM, the second follows. Needs playwright-core (a
// devDependency) and Debian's chromium at /usr/bin/chromium (or $CHROMIUM_PATH); the test command
// installs both. A missing one FAILS this test with a message saying what to install.
//
// BANDSYNC_DEMO_FROM_DISK=1 serves the page's files from examples/web instead of the binary (to
// work on the page without rebuilding); by default the binary's own /demo files are used, and a
// binary whose files differ from examples/web fails with a message to rebuild it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer, REPO_ROOT, sleep } from "../lib/server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const WEB = path.join(REPO_ROOT, "examples", "web");
const FILES = ["index.html", "app.js", "bandsync-clock.js", "style.css", "vendor/socket.io.esm.min.js"];
const FROM_DISK = process.env.BANDSYNC_DEMO_FROM_DISK === "1";
const TYPES = { html: "text/html", js: "text/javascript", css: "text/css" };

let server;
let context;
let userDataDir;

before(async () => {
  server = await startServer();
});

after(async () => {
  await context?.close().catch(() => {});
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await server?.stop();
});

async function launch() {
  let playwright;
  try {
    playwright = await import("playwright-core");
  } catch (e) {
    assert.fail(
      `playwright-core is not installed (${e.code ?? e.message}): run \`npm ci\` in compat-tests ` +
        `(it is a devDependency, playwright-core 1.65.1; never \`npx playwright install\`)`,
    );
  }
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium not found at ${CHROMIUM}: install Debian's package (\`apt-get install -y chromium\`) or set CHROMIUM_PATH`,
  );
  userDataDir = mkdtempSync(path.join(os.tmpdir(), "bandsync-chromium-"));
  context = await playwright.chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
      // Two pages play at once: neither may be throttled as a background tab.
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  if (FROM_DISK) {
    await context.route(`${server.url}/demo/**`, (route) => {
      const name = new URL(route.request().url()).pathname.replace(/^\/demo\/?/, "") || "index.html";
      if (!FILES.includes(name)) return route.fulfill({ status: 404, body: "not found" });
      return route.fulfill({
        status: 200,
        contentType: TYPES[name.split(".").pop()],
        body: readFileSync(path.join(WEB, name)),
      });
    });
  }
  return context;
}

/** Opens the page, joins `session` as `name` through the form; resolves with the page. */
async function openAndJoin(session, name) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // Files fulfilled by the test itself (BANDSYNC_DEMO_FROM_DISK) are not from a loopback
    // address, so Chromium's local-network checks refuse the websocket upgrade to 127.0.0.1
    // (socket.io stays on polling). Pages served by the binary are same-origin: not an issue.
    if (FROM_DISK && /LOCAL_NETWORK_ACCESS/.test(m.text())) return;
    problems.push(m.text());
  });
  page.problems = problems;
  const res = await page.goto(`${server.url}/demo/`);
  assert.equal(res.status(), 200, "GET /demo/");
  await page.waitForFunction(() => window.bandsync?.connected === true, null, { timeout: 10_000 }).catch((e) => {
    throw new Error(
      `the page never connected (window.bandsync missing or not connected${problems.length ? `; page errors: ${problems.join(" | ")}` : ""}); ` +
        `is /demo/app.js the one from examples/web (see the first test)? ${e.message}`,
    );
  });
  await page.fill("#session-name", session);
  await page.fill("#display-name", name);
  await page.click("#join-btn");
  await page.waitForFunction((s) => window.bandsync.sessionId === s, session, { timeout: 10_000 });
  return page;
}

const state = (page) =>
  page.evaluate(() => ({
    connected: window.bandsync.connected,
    sessionId: window.bandsync.sessionId,
    isPlaying: window.bandsync.isPlaying,
    isLeader: window.bandsync.isLeader,
    members: window.bandsync.members,
    synced: window.bandsync.synced,
    offset: window.bandsync.offset,
    rtt: window.bandsync.rtt,
    positionMs: window.bandsync.positionMs(),
  }));

test("the demo page's files are served at /demo/ as built from examples/web", async () => {
  for (const name of FILES) {
    const res = await fetch(`${server.url}/demo/${name === "index.html" ? "" : name}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, `/demo/${name}`);
    if (!FROM_DISK) {
      assert.ok(
        body.equals(readFileSync(path.join(WEB, name))),
        `/demo/${name} differs from examples/web/${name}: the binary embeds the page at build time; ` +
          `rebuild it (cargo build --release) or run with BANDSYNC_DEMO_FROM_DISK=1`,
      );
    }
  }
  const html = FROM_DISK
    ? readFileSync(path.join(WEB, "index.html"), "utf8")
    : await (await fetch(`${server.url}/demo/`)).text();
  assert.match(html, /src="\.\/app\.js"/, "relative URLs, nothing from the internet");
  assert.doesNotMatch(html, /https?:\/\//);
});

test("two browser pages: one leads at 120 BPM, the other follows on the same beat schedule", { timeout: 60_000 }, async (t) => {
  await launch();
  const session = `browser-${Math.random().toString(36).slice(2, 8)}`;
  const lead = await openAndJoin(session, "Lead");
  const follow = await openAndJoin(session, "Follow");

  // Members and who leads, on both pages.
  await follow.waitForFunction(() => window.bandsync.members.length === 2, null, { timeout: 5000 });
  await lead.waitForFunction(() => window.bandsync.members.length === 2, null, { timeout: 5000 });
  const [ls, fs] = [await state(lead), await state(follow)];
  assert.equal(ls.isLeader, true, "the first page leads");
  assert.equal(fs.isLeader, false, "the second follows");
  assert.deepEqual(ls.members.map((m) => m.displayName).sort(), ["Follow", "Lead"]);
  assert.deepEqual(fs.members.map((m) => m.displayName).sort(), ["Follow", "Lead"]);
  assert.equal(await lead.isVisible("#leader-controls"), true, "leader controls shown to the leader");
  assert.equal(await follow.isVisible("#leader-controls"), false, "and hidden from the follower");
  assert.match(await follow.textContent("#members"), /Lead ★/);

  // Both clocks synced before the start.
  for (const page of [lead, follow]) await page.waitForFunction(() => window.bandsync.synced, null, { timeout: 10_000 });

  await lead.fill("#tempo-input", "120");
  await lead.click("#start-btn");
  await follow.waitForFunction(() => window.bandsync.isPlaying, null, { timeout: 5000 });
  await lead.waitForFunction(() => window.bandsync.isPlaying, null, { timeout: 5000 });
  assert.equal(await follow.textContent("#play-state"), "playing");

  // The follower's position advances with the clock, from the first beat (START_LEAD_MS ahead).
  await follow.waitForFunction(() => window.bandsync.positionMs() > 0, null, { timeout: 5000 });
  const p1 = (await state(follow)).positionMs;
  await sleep(600);
  const p2 = (await state(follow)).positionMs;
  assert.ok(p2 - p1 > 400 && p2 - p1 < 900, `position advanced ${p2 - p1} ms in ~600 ms (${p1} → ${p2})`);
  assert.notEqual(await follow.textContent("#bar"), "–");

  // The beat schedules, in server time, match within 5 ms, and so do the local times at which the
  // pages would sound them (both pages read the same machine's clock).
  const compare = async (label) => {
    const [a, b] = await Promise.all(
      [lead, follow].map((p) => p.evaluate(() => window.bandsync.nextBeatsDetailed(8))),
    );
    const plain = await follow.evaluate(() => window.bandsync.nextBeats(8));
    assert.equal(plain.length, 8, "nextBeats(8) gives 8 server times");
    assert.ok(plain.every((t, i) => i === 0 || t > plain[i - 1]), "increasing");
    const byIndex = new Map(a.map((x) => [x.index, x]));
    let compared = 0;
    let worstServer = 0;
    let worstLocal = 0;
    for (const y of b) {
      const x = byIndex.get(y.index);
      if (!x) continue;
      compared++;
      worstServer = Math.max(worstServer, Math.abs(x.serverTime - y.serverTime));
      worstLocal = Math.max(worstLocal, Math.abs(x.localTime - y.localTime));
    }
    assert.ok(compared >= 6, `${label}: beats in common ${compared}`);
    if (worstServer > 5) {
      // The two models differ: show them, and the position:sync that repaired them, if any.
      for (const [who, p] of [["lead", lead], ["follow", follow]]) {
        const dump = await p.evaluate(() => JSON.stringify({ timeline: window.bandsync.clock.timeline, repairs: window.bandsync.clock.repairs }));
        t.diagnostic(`${who}: ${dump}`);
      }
    }
    assert.ok(worstServer <= 5, `${label}: server-time schedules differ by ${worstServer} ms`);
    assert.ok(worstLocal <= 5, `${label}: local schedules differ by ${worstLocal} ms`);
    // 120 BPM: 500 ms apart.
    if (label === "120 BPM") {
      for (let i = 1; i < b.length; i++) assert.ok(Math.abs(b[i].serverTime - b[i - 1].serverTime - 500) < 1e-6);
    }
    t.diagnostic(`${label}: ${compared} beats compared; server-time schedules differ by ${worstServer.toFixed(4)} ms, local by ${worstLocal.toFixed(4)} ms`);
    return { worstServer, worstLocal };
  };
  await compare("120 BPM");

  // A tempo ramp from the leader's controls: both pages follow it onto the same schedule.
  await lead.fill("#tempo-input", "150");
  await lead.fill("#ramp-input", "2000");
  await lead.click("#tempo-btn");
  await follow.waitForFunction(() => window.bandsync.clock.timeline.tempo === 150, null, { timeout: 5000 });
  await sleep(300);
  await compare("ramp to 150 BPM");

  const [lf, ff] = [await state(lead), await state(follow)];
  t.diagnostic(`offsets ${lf.offset.toFixed(3)} / ${ff.offset.toFixed(3)} ms, min RTT ${lf.rtt.toFixed(3)} / ${ff.rtt.toFixed(3)} ms`);
  assert.ok(lf.rtt < 50 && ff.rtt < 50, `loopback RTTs ${lf.rtt} / ${ff.rtt} ms`);
  assert.deepEqual(lead.problems, [], "no errors on the leader's page");
  assert.deepEqual(follow.problems, [], "no errors on the follower's page");
});
