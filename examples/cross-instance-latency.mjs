// Cross-instance delivery latency: how much later a member on another instance hears a change
// than a member on the instance where it was made.
//
//   node cross-instance-latency.mjs [--messages 500] [--event chat|tempo] [--bin ../target/release/bandsync-server]
//
// Starts its own redis-server and two server instances sharing it (free ports, nothing else
// needed), seats a leader and a listener on instance A and a listener on instance B in one
// session, then the leader sends changes one at a time, 5 ms apart: chat messages (which change no
// state), or with `--event tempo` `set_tempo` (a change with a revision, told as a `snapshot`; the
// tempo budget is lifted for the run). Both listeners record when each one arrives; the program
// prints p50/p99 from send to arrival for the same-instance listener and the cross-instance one,
// side by side.
import { spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const here = path.dirname(fileURLToPath(import.meta.url));
const bin = args.bin ?? path.join(here, "..", "target", "release", "bandsync-server");
const messages = Number(args.messages ?? 500);
const kind = args.event ?? "chat";
if (!["chat", "tempo"].includes(kind)) throw new Error(`--event chat|tempo, not ${kind}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
async function until(check, what) {
  for (let i = 0; i < 100; i++) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} did not come up`);
}
const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))];

const children = [];
const redisPort = await freePort();
children.push(spawn("redis-server", ["--port", String(redisPort), "--save", "", "--appendonly", "no"], { stdio: "ignore" }));
await until(() => new Promise((ok) => net.connect(redisPort, "127.0.0.1").on("connect", () => ok(true)).on("error", () => ok(false))), "redis-server");

const ports = [await freePort(), await freePort()];
for (const port of ports) {
  const env = { ...process.env, PORT: String(port), HOST: "127.0.0.1", REDIS_URL: `redis://127.0.0.1:${redisPort}`, RUST_LOG: "warn", RATE_LIMIT_TEMPO_PER_SEC: "0" };
  children.push(spawn(bin, [], { env, stdio: "ignore" }));
}
for (const port of ports) await until(async () => (await fetch(`http://127.0.0.1:${port}/livez`)).ok, `instance on ${port}`);

const connect = (port) =>
  new Promise((resolve) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], forceNew: true, reconnection: false });
    socket.once("connect", () => resolve(socket));
  });
const [leader, local, remote] = [await connect(ports[0]), await connect(ports[0]), await connect(ports[1])];
for (const socket of [leader, local, remote]) {
  socket.emit("join_session", { sessionId: "latency" });
  await new Promise((r) => socket.once("snapshot", r));
}

const arrivals = { local: [], remote: [] };
const now = () => performance.now() + performance.timeOrigin;
// Tempos 40.0, 40.1, …: each one names its change.
const tempoOf = (i) => 40 + (i % 2600) / 10;
const sentAt = new Map();
for (const [name, socket] of [["local", local], ["remote", remote]]) {
  if (kind === "chat") socket.on("chat_message", (m) => arrivals[name].push(now() - Number(m.message)));
  else socket.on("snapshot", (s) => sentAt.has(s.tempo) && arrivals[name].push(now() - sentAt.get(s.tempo)));
}
for (let i = 0; i < messages; i++) {
  if (kind === "chat") leader.emit("chat_message", { sessionId: "latency", message: String(now()) });
  else {
    sentAt.set(tempoOf(i), now());
    leader.emit("set_tempo", { sessionId: "latency", tempo: tempoOf(i) });
  }
  await sleep(5);
}
await sleep(500);
for (const socket of [leader, local, remote]) socket.close();
for (const child of children) child.kill("SIGTERM");

const report = (name) => {
  const sorted = arrivals[name].sort((a, b) => a - b);
  return `${String(sorted.length).padStart(5)} msgs  p50 ${pct(sorted, 0.5).toFixed(2)} ms  p99 ${pct(sorted, 0.99).toFixed(2)} ms`;
};
console.log(`same instance   ${report("local")}`);
console.log(`cross instance  ${report("remote")}`);
process.exit(0);
