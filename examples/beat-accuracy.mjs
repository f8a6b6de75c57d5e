// Beat-accuracy benchmark: how closely N clients with wrong, drifting clocks sound the same beat,
// using the clock module the web page uses (web/bandsync-clock.js) against the real server.
//
//   node beat-accuracy.mjs [--url http://127.0.0.1:3001] [--clients 8] [--beats 40]
//                          [--scenarios loopback,jitter,asym,mobile] [--dist exp|normal|uniform] [--seed 1]
//                          [--max-offset 500] [--max-skew 50] [--start-lead-ms N]
//
// Without --url it starts ../target/release/bandsync-server (or $BANDSYNC_BIN) on a free port
// (with START_LEAD_MS=N when --start-lead-ms is given). Beats are counted from 0, the first beat
// at startTime; beats 1…k are measured. One run takes about 70 s.
//
// Each simulated client i has its own local clock: local = real + offset_i + skew_i·(real − epoch),
// offset_i uniform in ±500 ms, skew_i uniform in ±50 ppm, injected into the clock module as now().
// "real" is this process's monotonic clock on the epoch scale (performance.timeOrigin + now()); the
// server's clock runs at the same rate (same machine), shifted by a constant c that is measured
// first with an undelayed client and removed from the figures.
//
// A network is simulated in the harness: every outgoing emit and every incoming event or ack is
// held for a random delay, in order (as TCP delivers): delay = max(0, D − J + Exp(J)) by default
// (mean D, standard deviation J, queueing-like: rarely faster than D − J, sometimes much slower);
// --dist normal uses D + N(0, J), --dist uniform D + U(−J√3, J√3).
//
// The leader starts the metronome at 120 BPM. Every client runs a scheduler like the web page's:
// every 20 ms it asks the module for the next beats and "schedules" each beat when it is less than
// 100 ms ahead, fixing the local time it would sound at. Those local times are turned back into
// real time by undoing the client's offset and skew: the true instants. Reported:
//   offset error  |applied offset − true offset| per client, sampled every 20 ms while playing
//   beat spread   for each beat, max − min over clients of the true instants
//   beat error    true instant − the server's own beat time (metronome:beat beatTime, less c)
//   bias          mean of (applied − true offset): what an asymmetric path costs (expected (up − down) / 2)
//   start late    how long after startTime (beat 0) each client learned of the start; a client
//                 sounds beat 0 when it learns of it at least a scheduler tick (20 ms) before
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import { BandSyncClock } from "./web/bandsync-clock.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const CLIENTS = Number(args.clients ?? 8);
const BEATS = Number(args.beats ?? 40);
const DIST = args.dist ?? "exp";
const SCHEDULER_TICK_MS = 20;
const LOOKAHEAD_MS = 100;
const MAX_OFFSET_MS = Number(args["max-offset"] ?? 500);
const MAX_SKEW_PPM = Number(args["max-skew"] ?? 50);

const SCENARIOS = {
  loopback: { label: "loopback (D = 0)", up: [0, 0], down: [0, 0] },
  jitter: { label: "D = 30 ms, J = 10 ms each way", up: [30, 10], down: [30, 10] },
  asym: { label: "asymmetric: 40 ms up, 10 ms down, J = 2 ms", up: [40, 2], down: [10, 2] },
  // A phone on a busy 4G or venue Wi-Fi: 60 ms each way, and one in a hundred over 130 ms.
  mobile: { label: "mobile: D = 60 ms, J = 20 ms each way", up: [60, 20], down: [60, 20] },
};
const chosen = (args.scenarios ?? "loopback,jitter,asym").split(",");

// --- randomness (seeded, so runs compare) ---------------------------------------------------
let seed = Number(args.seed ?? 1) >>> 0 || 1;
function random() {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
function delaySampler([mean, jitter]) {
  if (mean === 0 && jitter === 0) return null;
  if (DIST === "normal") return () => Math.max(0, mean + jitter * gaussian());
  if (DIST === "uniform") return () => Math.max(0, mean + jitter * Math.sqrt(3) * (2 * random() - 1));
  return () => Math.max(0, mean - jitter - jitter * Math.log(1 - random()));
}

// --- clocks ---------------------------------------------------------------------------------
const realNow = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (values, q) => {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
const fmt = (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : "n/a");

/** A client's clock: local = real + offset + skew·(real − epoch); and back. */
function skewedClock(offset, skewPpm, epoch) {
  const s = skewPpm * 1e-6;
  return {
    offset,
    skewPpm,
    now: () => {
      const t = realNow();
      return t + offset + s * (t - epoch);
    },
    toReal: (local) => epoch + (local - epoch - offset) / (1 + s),
    /** server − local at real time t, with the server clock = real + c. */
    trueOffset: (t, c) => t + c - (t + offset + s * (t - epoch)),
  };
}

// --- a socket behind a simulated network ----------------------------------------------------
/** A FIFO link: each message is held for a sampled delay, never overtaking the one before. */
function link(sample) {
  if (!sample) return (fn) => fn();
  const queue = [];
  let last = 0;
  let timer = null;
  const pump = () => {
    timer = null;
    const now = realNow();
    while (queue.length && queue[0].at <= now) queue.shift().fn();
    if (queue.length) timer = setTimeout(pump, Math.max(0, queue[0].at - realNow()));
  };
  return (fn) => {
    const at = Math.max(realNow() + sample(), last);
    last = at;
    queue.push({ at, fn });
    if (timer === null) timer = setTimeout(pump, Math.max(0, at - realNow()));
  };
}

/** What the clock module needs of a socket, with every message delayed by the links. */
function delayedSocket(socket, scenario) {
  const up = link(delaySampler(scenario.up));
  const down = link(delaySampler(scenario.down));
  const wrapped = new Map();
  const LOCAL = new Set(["connect", "disconnect", "connect_error"]);
  return {
    get connected() {
      return socket.connected;
    },
    get id() {
      return socket.id;
    },
    on(event, fn) {
      const w = LOCAL.has(event) ? fn : (...a) => down(() => fn(...a));
      wrapped.set(fn, w);
      socket.on(event, w);
      return this;
    },
    off(event, fn) {
      socket.off(event, wrapped.get(fn) ?? fn);
      return this;
    },
    emit(event, ...a) {
      up(() => socket.emit(event, ...a));
      return this;
    },
    timeout(ms) {
      return {
        emitWithAck: (event, ...a) =>
          new Promise((resolve, reject) => {
            up(() =>
              socket
                .timeout(ms)
                .emitWithAck(event, ...a)
                .then(
                  (res) => down(() => resolve(res)),
                  (err) => down(() => reject(err)),
                ),
            );
          }),
      };
    },
  };
}

// --- the server -----------------------------------------------------------------------------
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const bin = process.env.BANDSYNC_BIN ?? path.resolve(here, "..", "target", "release", "bandsync-server");
  if (!existsSync(bin)) throw new Error(`server binary not found at ${bin} (build it, set BANDSYNC_BIN, or pass --url)`);
  const port = await freePort();
  const proc = spawn(bin, [], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      RUST_LOG: "warn",
      ...(args["start-lead-ms"] ? { START_LEAD_MS: String(args["start-lead-ms"]) } : {}),
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  process.on("exit", () => proc.kill("SIGKILL"));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/livez`)).ok) return { url, stop: () => proc.kill("SIGTERM") };
    } catch {}
    await sleep(50);
  }
  throw new Error(`server did not come up on ${url}`);
}

function connect(url) {
  const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

/** c = server clock − this process's clock, from an undelayed client's best samples. */
async function calibrate(url) {
  const socket = await connect(url);
  const samples = [];
  for (let i = 0; i < 300; i++) {
    const t0 = realNow();
    const { t1, t2 } = await socket.timeout(2000).emitWithAck("clock:sync", { t0 });
    const t3 = realNow();
    samples.push({ rtt: t3 - t0 - (t2 - t1), offset: (t1 - t0 + (t2 - t3)) / 2, t1, t2 });
  }
  socket.close();
  samples.sort((a, b) => a.rtt - b.rtt);
  const best = samples.slice(0, 30);
  const offsets = best.map((s) => s.offset).sort((a, b) => a - b);
  const fractional = samples.filter((s) => s.t1 !== Math.round(s.t1)).length;
  return {
    c: offsets[15],
    minRtt: samples[0].rtt,
    medianRtt: samples[150].rtt,
    serverHold: pct(
      samples.map((s) => s.t2 - s.t1),
      0.5,
    ),
    fractional,
    total: samples.length,
  };
}

// --- one scenario ---------------------------------------------------------------------------
async function runScenario(url, key, c) {
  const scenario = SCENARIOS[key];
  const epoch = realNow();
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    const clockModel = skewedClock((2 * random() - 1) * MAX_OFFSET_MS, (2 * random() - 1) * MAX_SKEW_PPM, epoch);
    const raw = await connect(url);
    const socket = delayedSocket(raw, scenario);
    const clock = new BandSyncClock({ socket, now: clockModel.now });
    clients.push({ i, raw, socket, clock, model: clockModel, scheduled: new Map(), serverBeats: new Map(), checks: [] });
  }
  const sessionId = `bench-${key}-${Math.floor(random() * 1e9).toString(36)}`;
  for (const [i, cl] of clients.entries()) {
    const res = await cl.socket.timeout(10_000).emitWithAck("session:join", { sessionId, create: true, displayName: `c${i}` });
    if (!res?.ok) throw new Error(`session:join failed: ${JSON.stringify(res)}`);
    cl.clock.applySessionState(res.session);
    // When the start reaches the client (after the simulated delay), in server time, against the
    // first beat's: positive = late, the first beat already past.
    cl.socket.on("metronome:start", (m) => {
      cl.startLateness = cl.clock.toServer(cl.clock.now()) - m.startTime;
    });
    cl.raw.on("metronome:beat", (b) => {
      const k = (b.bar - 1) * 4 + (b.beat - 1);
      cl.serverBeats.set(k, b.beatTime);
    });
  }
  // Wait for every burst to finish, then a little longer (periodic samples join the window).
  const syncDeadline = realNow() + 20_000;
  while (clients.some((cl) => !cl.clock.synced) && realNow() < syncDeadline) await sleep(50);
  await sleep(1500);
  const preStart = clients.map((cl) => ({
    est: cl.clock.offset,
    truth: cl.model.trueOffset(realNow(), c),
  }));

  const leader = clients[0];
  const started = await leader.socket.timeout(10_000).emitWithAck("metronome:start", { sessionId, tempo: 120 });
  if (!started?.ok) throw new Error(`metronome:start failed: ${JSON.stringify(started)}`);

  const offsetErrors = [];
  const signedErrors = [];
  const deadline = realNow() + (BEATS / 2) * 1000 + 10_000;
  while (clients.some((cl) => !cl.scheduled.has(BEATS)) && realNow() < deadline) {
    for (const cl of clients) {
      const local = cl.clock.now();
      if (cl.clock.isPlaying) {
        const err = cl.clock.offsetAt(local) - cl.model.trueOffset(realNow(), c);
        signedErrors.push(err);
        offsetErrors.push(Math.abs(err));
      }
      for (const b of cl.clock.nextBeats(local, 4)) {
        if (b.index < 1 || b.index > BEATS || cl.scheduled.has(b.index)) continue;
        if (b.localTime - local > LOOKAHEAD_MS) break;
        cl.scheduled.set(b.index, { local: b.localTime, real: cl.model.toReal(b.localTime), server: b.serverTime });
      }
      if (cl.clock.lastBeatCheck && cl.clock.lastBeatCheck.error !== null) cl.checks.push(Math.abs(cl.clock.lastBeatCheck.error));
    }
    await sleep(SCHEDULER_TICK_MS);
  }
  await leader.socket.timeout(10_000).emitWithAck("metronome:stop", { sessionId });
  await sleep(200);

  const spreads = [];
  const beatErrors = [];
  for (let k = 1; k <= BEATS; k++) {
    const reals = clients.map((cl) => cl.scheduled.get(k)?.real).filter(Number.isFinite);
    if (reals.length < clients.length) continue;
    spreads.push(Math.max(...reals) - Math.min(...reals));
    const serverBeat = leader.serverBeats.get(k);
    if (Number.isFinite(serverBeat)) for (const r of reals) beatErrors.push(Math.abs(r - (serverBeat - c)));
  }
  const rtts = clients.map((cl) => cl.clock.rtt);
  const startLateness = clients.map((cl) => cl.startLateness);
  const skews = clients.map((cl) => [cl.model.skewPpm, cl.clock.skewPpm]);
  const modelErr = Math.max(0, ...clients.flatMap((cl) => cl.checks));
  for (const cl of clients) {
    cl.clock.close();
    cl.raw.close();
  }
  return {
    scenario,
    key,
    offsetErrors,
    signedErrors,
    spreads,
    beatErrors,
    rtts,
    startLateness,
    skews,
    modelErr,
    preStart: preStart.map((p) => Math.abs(p.est - p.truth)),
    beatsCompared: spreads.length,
  };
}

function report(r) {
  const line = (name, values, unit = "ms") =>
    `  ${name.padEnd(30)} p50 ${fmt(pct(values, 0.5)).padStart(8)}  p95 ${fmt(pct(values, 0.95)).padStart(8)}  p99 ${fmt(pct(values, 0.99)).padStart(8)}  max ${fmt(Math.max(...values)).padStart(8)} ${unit}  (n=${values.length})`;
  console.log(`\n${r.scenario.label}`);
  console.log(line("offset error |est − true|", r.offsetErrors));
  console.log(line("beat spread (max − min)", r.spreads));
  console.log(line("beat error vs server beatTime", r.beatErrors));
  const bias = r.signedErrors.reduce((a, b) => a + b, 0) / r.signedErrors.length;
  const expected = (r.scenario.up[0] - r.scenario.down[0]) / 2;
  console.log(`  bias (mean est − true)          ${fmt(bias)} ms   expected (up − down)/2 = ${fmt(expected, 1)} ms`);
  console.log(
    `  min RTT per client              ${r.rtts.map((v) => fmt(v, 2)).join(" ")} ms;  offset error at start ${fmt(Math.max(...r.preStart))} ms max`,
  );
  console.log(
    `  skew true/fitted (ppm)          ${r.skews.map(([t, f]) => `${t.toFixed(0)}/${f.toFixed(0)}`).join(" ")}`,
  );
  const late = r.startLateness.filter((v) => v > 0);
  const onTime = r.startLateness.filter((v) => v <= -SCHEDULER_TICK_MS);
  console.log(
    `  metronome:start arrived         ${r.startLateness.map((v) => fmt(v, 1)).join(" ")} ms after startTime; ` +
      `beat 0 already past for ${late.length}/${r.startLateness.length} clients; ` +
      `${onTime.length}/${r.startLateness.length} sound beat 0 (start ≥ ${SCHEDULER_TICK_MS} ms ahead of it)`,
  );
  console.log(`  model vs metronome:beat         max |predicted − beatTime| ${fmt(r.modelErr, 6)} ms; beats compared ${r.beatsCompared}`);
  return { bias, expected };
}

// --- main -----------------------------------------------------------------------------------
const server = args.url ? { url: args.url, stop: () => {} } : await startServer();
const started = realNow();
console.log(
  `beat-accuracy: ${CLIENTS} clients, offsets ±${MAX_OFFSET_MS} ms, skew ±${MAX_SKEW_PPM} ppm, ${BEATS} beats at 120 BPM, ` +
    `delays ${DIST === "exp" ? "max(0, D − J + Exp(J))" : DIST}, server ${server.url}`,
);
const cal = await calibrate(server.url);
console.log(
  `calibration: server − harness clock c = ${fmt(cal.c, 4)} ms (undelayed min RTT ${fmt(cal.minRtt, 3)} ms, median ${fmt(cal.medianRtt, 3)} ms; ` +
    `server t2 − t1 median ${fmt(cal.serverHold, 4)} ms; fractional t1 in ${cal.fractional}/${cal.total})`,
);
const results = [];
for (const key of chosen) {
  if (!SCENARIOS[key]) throw new Error(`unknown scenario ${key} (${Object.keys(SCENARIOS).join(", ")})`);
  const r = await runScenario(server.url, key, cal.c);
  results.push([key, r, report(r)]);
}
console.log("\ngoals (reported, not asserted):");
for (const [key, r] of results) {
  if (key === "loopback") {
    console.log(
      `  loopback: offset error p99 ${fmt(pct(r.offsetErrors, 0.99))} ms (goal ≤ 0.5): ${pct(r.offsetErrors, 0.99) <= 0.5 ? "met" : "MISSED"}; ` +
        `beat spread p99 ${fmt(pct(r.spreads, 0.99))} ms (goal ≤ 1): ${pct(r.spreads, 0.99) <= 1 ? "met" : "MISSED"}`,
    );
  }
  if (key === "jitter") {
    console.log(
      `  30 ± 10 ms: beat spread p95 ${fmt(pct(r.spreads, 0.95))} ms (goal ≤ 3): ${pct(r.spreads, 0.95) <= 3 ? "met" : "MISSED"}; ` +
        `p99 ${fmt(pct(r.spreads, 0.99))} ms (goal ≤ 5): ${pct(r.spreads, 0.99) <= 5 ? "met" : "MISSED"}`,
    );
  }
}
console.log(`total ${((realNow() - started) / 1000).toFixed(1)} s`);
server.stop();
process.exit(0);
