// Spawns the bandsync-server binary on a free port and waits until it is live.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, "..", "..");
export const BIN = process.env.BANDSYNC_BIN
  ? path.resolve(process.env.BANDSYNC_BIN)
  : path.join(REPO_ROOT, "target", "release", "bandsync-server");

const running = new Set();
// Safety net: never leave a child behind (a server a test file forgot to stop; SIGKILL also ends a
// SIGSTOPped redis-server).
process.on("exit", () => {
  for (const proc of running) {
    try {
      proc.kill("SIGKILL");
    } catch {}
  }
});

/** Registers a spawned child to be SIGKILLed if it is still running when the test process exits. */
export function killOnExit(proc) {
  running.add(proc);
  const forget = () => running.delete(proc);
  proc.on("exit", forget);
  proc.on("error", forget);
  return proc;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawns the binary with `env` on top of the test defaults. Does not wait for readiness.
 * Options: {port} to listen on a fixed port (e.g. to restart an instance where it was) instead of a free one.
 * Returns {proc, port, logs(), stderr(), stdout(), exited: Promise<{code, signal}>, closed: Promise (output drained)}.
 */
export async function spawnServer(env = {}, { port: fixedPort } = {}) {
  if (!existsSync(BIN)) throw new Error(`server binary not found at ${BIN} (set BANDSYNC_BIN)`);
  const port = fixedPort ?? (await freePort());
  const fullEnv = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_FORMAT: "json",
    RUST_LOG: "info",
    ...env,
  };
  const proc = killOnExit(spawn(BIN, [], { env: fullEnv, stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  let err = "";
  let all = "";
  proc.stdout.on("data", (d) => {
    out += d;
    all += d;
  });
  proc.stderr.on("data", (d) => {
    err += d;
    all += d;
  });
  const exited = new Promise((resolve) => {
    proc.on("exit", (code, signal) => resolve({ code, signal }));
    proc.on("error", (e) => {
      all += `\n[spawn error] ${e.message}`;
      resolve({ code: null, signal: null, error: e });
    });
  });
  // 'exit' may come before the last output is read; 'close' comes after the pipes are drained.
  const closed = new Promise((resolve) => proc.on("close", resolve));
  return {
    proc,
    port: Number(fullEnv.PORT) || port,
    exited,
    closed,
    logs: () => all,
    stdout: () => out,
    stderr: () => err,
  };
}

/**
 * Starts the server and waits until GET /livez answers 200 (10 s max).
 * Options: {port} (a fixed port, see spawnServer).
 * Returns {url, port, env, proc, exited, stop(): Promise<exitCode>, kill(): Promise (SIGKILL),
 * logs(), stdout(), stderr(): string}.
 */
export async function startServer(env = {}, { port } = {}) {
  const s = await spawnServer(env, { port });
  const url = `http://127.0.0.1:${s.port}`;
  let exitInfo = null;
  s.exited.then((info) => (exitInfo = info));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exitInfo) {
      await Promise.race([s.closed, sleep(500)]); // the last output
      throw new Error(
        `server exited before becoming live (code ${exitInfo.code}, signal ${exitInfo.signal}). Logs:\n${s.logs()}`,
      );
    }
    try {
      const res = await fetch(`${url}/livez`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {}
    if (Date.now() > deadline) {
      s.proc.kill("SIGKILL");
      throw new Error(`server not live on ${url}/livez after 10 s. Logs:\n${s.logs()}`);
    }
    await sleep(50);
  }
  let stopping = null;
  return {
    url,
    port: s.port,
    env,
    proc: s.proc,
    logs: s.logs,
    stdout: s.stdout,
    stderr: s.stderr,
    exited: s.exited,
    /** SIGKILL (kill -9, no clean-up in the server); resolves once the process is gone. */
    async kill() {
      if (!exitInfo) s.proc.kill("SIGKILL");
      await s.exited;
    },
    /** SIGTERM, then resolve with the exit code (SIGKILL after 10 s; then resolves with the signal name). */
    stop() {
      if (stopping) return stopping;
      stopping = (async () => {
        if (!exitInfo) {
          s.proc.kill("SIGTERM");
          const timer = setTimeout(() => s.proc.kill("SIGKILL"), 10_000);
          await s.exited;
          clearTimeout(timer);
        }
        const info = await s.exited;
        return info.code ?? info.signal;
      })();
      return stopping;
    },
  };
}

/** GET a path, returning {status, headers, body (parsed JSON when possible), text}. */
export async function httpGet(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, body, text };
}

/**
 * Server env without per-socket rate limits, for files whose tests send bursts from one socket to
 * test something else (the order of 2,000 events, dozens of refusals in a row). The limits
 * themselves are tested in limits.test.mjs and hostile.test.mjs, under the defaults.
 */
export const NO_RATE_LIMITS = Object.fromEntries(
  ["JOINS", "TEMPO", "SEEKS", "MESSAGES", "BEATS", "POSITIONS", "CHAT", "CLOCK_SYNC", "CONTROL", "OTHER"].map((c) => [`RATE_LIMIT_${c}_PER_SEC`, "0"]),
);
