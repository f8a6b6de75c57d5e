// Sync-engine benchmark: how late the scheduler's ticks run, and what clients receive, with N
// sessions playing at once on one instance.
//
//   node sync-load.mjs [--url http://127.0.0.1:3001] [--sessions 1000] [--seconds 10]
//
// Each session gets one enhanced client over websocket that creates it and starts the metronome.
// The program first plays a single session for a few seconds, then all of them, and reads
// GET /debug/sync after each (the scheduler's own tick lag, scheduled vs actual, over the last
// 10 s); it prints both side by side, with the position:sync rate each client got and the delay
// from a message's serverTime to its arrival (same machine, same clock).
import { io } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const url = args.url ?? "http://127.0.0.1:3001";
const sessions = Number(args.sessions ?? 1000);
const seconds = Number(args.seconds ?? 10);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const debugSync = async () => (await fetch(`${url}/debug/sync`)).json();
const pct = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))] : 0);

async function startSession(i) {
  const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  const created = await socket.timeout(10_000).emitWithAck("session:create", { bandId: "bench", sessionName: `s${i}` });
  if (!created.ok) throw new Error(`session:create failed: ${JSON.stringify(created)}`);
  const stats = { socket, syncs: 0, beats: 0, delays: [] };
  socket.on("position:sync", (m) => {
    stats.syncs += 1;
    if (stats.syncs % 8 === 0) stats.delays.push(Date.now() - m.serverTime);
  });
  socket.on("metronome:beat", () => (stats.beats += 1));
  const started = await socket.timeout(10_000).emitWithAck("metronome:start", { sessionId: created.sessionId, tempo: 120 });
  if (!started.ok) throw new Error(`metronome:start failed: ${JSON.stringify(started)}`);
  return stats;
}

const clients = [await startSession(0)];
await sleep(3000);
const before = await debugSync();
console.log(`one session: tick lag p50 ${before.tickLag.p50Ms} ms, p99 ${before.tickLag.p99Ms} ms`);

for (let i = 1; i < sessions; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, sessions - i) }, (_, k) => startSession(i + k)));
  clients.push(...batch);
}
for (const c of clients) {
  c.syncs = 0;
  c.beats = 0;
  c.delays = [];
}
const started = Date.now();
// Let the lag window (10 s) hold only ticks under full load.
await sleep(Math.max(seconds, 10) * 1000);
const elapsed = (Date.now() - started) / 1000;
const after = await debugSync();
for (const c of clients) c.socket.close();

const rates = clients.map((c) => c.syncs / elapsed).sort((a, b) => a - b);
const beats = clients.map((c) => c.beats / elapsed).sort((a, b) => a - b);
const delays = clients.flatMap((c) => c.delays).sort((a, b) => a - b);
const lag = after.tickLag;
console.log(`loaded: playing sessions ${after.playingSessions}, ${seconds} s at ${after.syncRateMs} ms per tick`);
console.log("");
console.log("                      1 session  all sessions");
console.log(`scheduler tick lag p50  ${String(before.tickLag.p50Ms).padStart(7)} ms ${String(lag.p50Ms).padStart(9)} ms`);
console.log(`scheduler tick lag p95  ${String(before.tickLag.p95Ms).padStart(7)} ms ${String(lag.p95Ms).padStart(9)} ms`);
console.log(`scheduler tick lag p99  ${String(before.tickLag.p99Ms).padStart(7)} ms ${String(lag.p99Ms).padStart(9)} ms`);
console.log("");
console.log(`position:sync per client: p1 ${pct(rates, 0.01).toFixed(1)} Hz, median ${pct(rates, 0.5).toFixed(1)} Hz (target ${(1000 / after.syncRateMs).toFixed(1)})`);
console.log(`metronome:beat per client: median ${pct(beats, 0.5).toFixed(2)} /s (120 BPM = 2.00)`);
console.log(`serverTime → arrival: p50 ${pct(delays, 0.5)} ms, p95 ${pct(delays, 0.95)} ms, p99 ${pct(delays, 0.99)} ms`);
process.exit(0);
